/** Unit tests of the Python-compatible name decoding that orders tree listings. */
import assert from "node:assert/strict";
import { pythonCodePoints } from "../lib/report/tree_listing.ts";
import { testWith } from "./helpers.ts";

const b = (...xs: number[]) => new Uint8Array(xs);

Deno.test("pythonCodePoints: valid UTF-8 decodes to its code points", () => {
  assert.deepEqual(pythonCodePoints(new TextEncoder().encode("aé€😀")), [
    0x61,
    0xe9,
    0x20ac,
    0x1f600,
  ]);
});

Deno.test("pythonCodePoints: every byte outside a valid sequence becomes U+DC00+byte", () => {
  assert.deepEqual(pythonCodePoints(b(0xff)), [0xdcff]);
  assert.deepEqual(pythonCodePoints(b(0xe2, 0x82, 0x41)), [0xdce2, 0xdc82, 0x41]); // truncated
  assert.deepEqual(pythonCodePoints(b(0xc0, 0xaf)), [0xdcc0, 0xdcaf]); // overlong "/"
  assert.deepEqual(pythonCodePoints(b(0xe0, 0x80, 0xaf)), [0xdce0, 0xdc80, 0xdcaf]); // overlong
  assert.deepEqual(pythonCodePoints(b(0xed, 0xa0, 0x80)), [0xdced, 0xdca0, 0xdc80]); // surrogate
  assert.deepEqual(pythonCodePoints(b(0xf4, 0x90, 0x80, 0x80)), [0xdcf4, 0xdc90, 0xdc80, 0xdc80]);
  assert.deepEqual(pythonCodePoints(b(0xc3)), [0xdcc3]); // cut at the end
  assert.deepEqual(pythonCodePoints(b(0x80, 0xc3, 0xa9)), [0xdc80, 0xe9]);
});

testWith("pythonCodePoints: agrees with python3 on random bytes", ["python3"], async () => {
  const python = new Deno.Command("python3", {
    args: [
      "-c",
      "import sys,json\nfor l in sys.stdin:\n  print(json.dumps([ord(c) for c in bytes.fromhex(l.strip()).decode('utf-8','surrogateescape')]))",
    ],
    stdin: "piped",
    stdout: "piped",
  });
  // Random bytes biased to UTF-8 lead and continuation bytes.
  const pool = [0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed];
  pool.push(0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff);
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  const inputs: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const n = 1 + (rnd() % 8);
    inputs.push(Uint8Array.from({ length: n }, () => pool[rnd() % pool.length]));
  }
  const hex = (x: Uint8Array) => Array.from(x, (v) => v.toString(16).padStart(2, "0")).join("");
  const child = python.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(inputs.map(hex).join("\n") + "\n"));
  await w.close();
  const out = new TextDecoder().decode((await child.output()).stdout).trim().split("\n");
  assert.equal(out.length, inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    assert.deepEqual(pythonCodePoints(inputs[i]), JSON.parse(out[i]), hex(inputs[i]));
  }
});
