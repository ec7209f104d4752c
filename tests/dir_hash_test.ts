import assert from "node:assert/strict";
import fc from "fast-check";
import { dirHash, DxHashVersion } from "../lib/ondisk/dir_hash.ts";
import { Ext4Error } from "../lib/errors.ts";
import { runOk, tempDir, testWith } from "./helpers.ts";

const enc = new TextEncoder();

/** A deterministic pseudo-random generator (xorshift32), so the names are reproducible. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * Names debugfs can take as one argument (no spaces, quotes or leading "-"): ASCII and
 * multi-byte UTF-8, whose bytes >= 0x80 tell the signed and unsigned variants apart.
 */
function names(count: number): string[] {
  const next = rng(0xe47);
  const pieces = [
    ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=,:@%~",
    "é",
    "ö",
    "ß",
    "日本",
    "€",
    "\u{1f600}",
    "ÿ",
  ];
  const out = ["a", "hello", "lost+found", ".", "..", "x".repeat(255), "é".repeat(127)];
  for (const len of [1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200, 255]) {
    out.push(Array.from({ length: len }, (_, i) => pieces[i % 60]).join(""));
  }
  while (out.length < count) {
    const target = 1 + (next() % 120);
    let s = "";
    while (enc.encode(s).length < target) s += pieces[next() % pieces.length];
    // debugfs would take a leading "-" for an option.
    if (enc.encode(s).length <= 255 && !s.startsWith("-")) out.push(s);
  }
  return out;
}

function seedWords(uuid: string): Uint32Array {
  const hex = uuid.replaceAll("-", "");
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return new Uint32Array(bytes.buffer);
}

testWith("dirHash matches debugfs dx_hash for every version, seed and many names", [
  "debugfs",
  "mkfs.ext4",
], async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/h.img`;
  await runOk("mkfs.ext4", ["-q", "-F", img, "4M"]);
  const list = names(220);
  const seeds = [
    "00000000-0000-0000-0000-000000000000",
    "01234567-89ab-cdef-0123-456789abcdef",
    "f00dfeed-0bad-cafe-dead-beef12345678",
  ];
  const cases: { name: string; version: number; seed: string }[] = [];
  for (const seed of seeds) {
    for (const version of [0, 1, 2, 3, 4, 5]) {
      for (const name of list) cases.push({ name, version, seed });
    }
  }
  // debugfs takes the hash version by number (its names for the unsigned ones do not parse).
  const script = cases.map((c) => `dx_hash -h ${c.version} -s ${c.seed} ${c.name}`).join("\n");
  await Deno.writeTextFile(`${tmp.path}/cmds`, script + "\n");
  const out = await runOk("debugfs", ["-f", `${tmp.path}/cmds`, img]);
  const got = [...out.matchAll(/^Hash of .* is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)$/gm)];
  assert.equal(got.length, cases.length, "one debugfs answer per name");
  let differing = 0;
  cases.forEach((c, i) => {
    const h = dirHash(enc.encode(c.name), c.version, seedWords(c.seed), true);
    const major = parseInt(got[i][1], 16);
    const minor = parseInt(got[i][2], 16);
    assert.equal(h.major, major, `${c.name} v${c.version} seed ${c.seed}: major`);
    assert.equal(h.minor, minor, `${c.name} v${c.version} seed ${c.seed}: minor`);
    if (c.version >= 3) {
      const signed = dirHash(enc.encode(c.name), c.version - 3, seedWords(c.seed), true);
      if (signed.major !== major) differing++;
    }
  });
  assert.ok(differing > 100, "signed and unsigned variants differ on non-ASCII names");
});

Deno.test("dirHash: the signed flag selects the unsigned variant for versions 0-2", () => {
  const name = enc.encode("héllo-wörld");
  const seed = new Uint32Array(4);
  for (const v of [0, 1, 2]) {
    assert.deepEqual(dirHash(name, v, seed, false), dirHash(name, v + 3, seed, true));
    assert.deepEqual(dirHash(name, v + 3, seed, false), dirHash(name, v + 3, seed, true));
  }
  // ASCII names hash the same either way.
  assert.deepEqual(
    dirHash(enc.encode("plain"), 1, seed, false),
    dirHash(enc.encode("plain"), 1, seed, true),
  );
});

Deno.test("dirHash: bit 0 clear, the EOF value avoided, siphash and unknown versions refused", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 255 }),
      fc.integer({ min: 0, max: 5 }),
      fc.uint32Array({ minLength: 4, maxLength: 4 }),
      fc.boolean(),
      (name, version, seed, signed) => {
        const { major, minor } = dirHash(name, version, seed, signed);
        assert.equal(major & 1, 0);
        assert.notEqual(major, 0xfffffffe);
        assert.ok(major >= 0 && major <= 0xffffffff && minor >= 0 && minor <= 0xffffffff);
      },
    ),
    { numRuns: 3000 },
  );
  assert.throws(
    () => dirHash(enc.encode("a"), DxHashVersion.SIPHASH, new Uint32Array(4), true),
    Ext4Error,
  );
  assert.throws(() => dirHash(enc.encode("a"), 7, new Uint32Array(4), true), Ext4Error);
});
