/**
 * fscrypt no-key names: the encoding against fixed vectors and its edge cases, and an oracle
 * test: encrypted trees made through a kernel mount (key added by ioctl), listed by the
 * kernel without the key and by ext4ts; names, targets, sizes and errors must be identical,
 * and every no-key name must look up to the kernel's inode.
 */
import assert from "node:assert/strict";
import { Ext4 } from "../mod.ts";
import { matchesNoKeyDigest, noKeyName, parseNoKeyName } from "../lib/ondisk/fscrypt_name.ts";
import { treeListingBytes } from "../lib/report/tree_listing.ts";
import {
  makeImage,
  ROOT,
  run,
  runCli,
  runOk,
  tempDir,
  testWith,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";

const POPULATE = `${ROOT}tests/fixtures/populate_encrypted.py`;
const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "python3", "tune2fs"];
const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("noKeyName: hashes little-endian, then the ciphertext, as unpadded base64url", () => {
  const cipher = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
  const name = dec.decode(noKeyName(cipher, 0x12345678, 0x9abcdef0));
  const bytes = new Uint8Array([0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a, ...cipher]);
  const want = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
  assert.equal(name, want);
  assert.equal(name.length, 32);
});

Deno.test("noKeyName: ciphertexts over 149 bytes take the 252-character digest form", () => {
  const a = new Uint8Array(200).fill(1);
  const b = a.slice();
  b[199] = 2; // differs after the first 149 bytes: only the digest tells them apart
  const na = noKeyName(a, 0, 0);
  const nb = noKeyName(b, 0, 0);
  assert.equal(na.length, 252);
  assert.notDeepEqual(na, nb);
  assert.equal(noKeyName(new Uint8Array(149), 0, 0).length, Math.ceil(157 * 4 / 3));
  const pa = parseNoKeyName(na)!;
  assert.equal(pa.cipher, undefined);
  assert.ok(matchesNoKeyDigest(pa, a));
  assert.ok(!matchesNoKeyDigest(pa, b));
  assert.ok(!matchesNoKeyDigest(pa, a.subarray(0, 149)));
});

Deno.test("parseNoKeyName: round trip, and what the kernel rejects", () => {
  for (const len of [1, 16, 32, 100, 149]) {
    const cipher = Uint8Array.from({ length: len }, (_, i) => (i * 31 + len) & 0xff);
    const p = parseNoKeyName(noKeyName(cipher, 7, 9))!;
    assert.deepEqual([p.hash, p.minorHash, p.cipher], [7, 9, cipher]);
  }
  assert.equal(parseNoKeyName(enc.encode("hello.txt")), null); // "." is not base64url
  assert.equal(parseNoKeyName(enc.encode("AAAAAAAAAAA")), null); // 8 bytes: no ciphertext
  assert.deepEqual(parseNoKeyName(enc.encode("AAAAAAAAAAAB"))?.cipher, new Uint8Array([1]));
  assert.equal(parseNoKeyName(enc.encode("AAAAAAAAAAAAB")), null); // stray low bits
  assert.equal(parseNoKeyName(enc.encode("A+AAAAAAAAAAAAAA")), null); // base64, not url
  // Between the longest short form and the digest form: no valid structure.
  assert.equal(parseNoKeyName(noKeyName(new Uint8Array(150), 0, 0).subarray(0, 216)), null);
  assert.equal(parseNoKeyName(new Uint8Array(253).fill(0x41)), null);
});

/** Prints the inode of each path argv[2:] under argv[1], or -1 when the lookup fails. */
const LSTAT_EACH = `
import os, sys
for p in sys.argv[2:]:
    try:
        print(os.lstat(sys.argv[1] + p).st_ino)
    except OSError:
        print(-1)
`;

function atobUrl(s: string): Uint8Array {
  const b64 = s.replaceAll("-", "+").replaceAll("_", "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0));
}

function btoaUrl(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}

function firstDifference(a: string, b: string): string {
  const la = a.split("\n");
  const lb = b.split("\n");
  const out: string[] = [];
  for (let i = 0; i < Math.max(la.length, lb.length) && out.length < 6; i++) {
    if (la[i] !== lb[i]) out.push(`line ${i + 1}:\n  kernel: ${la[i]}\n  ext4ts: ${lb[i]}`);
  }
  return out.join("\n");
}

for (
  const c of [
    { name: "4k blocks, dir_index", args: ["-b", "4096", "-O", "encrypt"], indexed: true },
    {
      name: "inline_data (encrypted directories never inline)",
      args: ["-b", "4096", "-O", "encrypt,inline_data"],
      indexed: true,
    },
    {
      name: "1k blocks, no dir_index",
      args: ["-b", "1024", "-O", "encrypt,^dir_index"],
      indexed: false,
    },
    {
      // dir_index turned on afterwards: multi-block directories stay unindexed (the kernel
      // reads them linearly, hashes 0) while one-block ones are read through the index code.
      name: "dir_index enabled after populating",
      args: ["-b", "1024", "-O", "encrypt,^dir_index"],
      indexed: false,
      tune: ["-O", "dir_index"],
    },
  ]
) {
  testWith(
    `oracle: encrypted directories without the key (${c.name}) list as the kernel's`,
    NEEDS,
    async () => {
      await using dir = await tempDir();
      const img = `${dir.path}/fs.img`;
      await makeImage(img, {
        args: c.args,
        size: "32M",
        populate: (m) => runOk("python3", [POPULATE, m]).then(() => {}),
      });
      if (c.tune) await runOk("tune2fs", [...c.tune, img]);
      // Remounted: the key added while populating is gone.
      const kernel = await withKernelMount(img, async (m) => {
        const r = await run("python3", [TREE_LISTING, m]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdoutBytes;
      }, { readOnly: true });
      const text = dec.decode(kernel);
      assert.match(text, /\tERR:126\t/, "the kernel could not read encrypted contents");
      assert.match(text, /\/plain\/visible\tf/);
      const fs = await Ext4.open(img);
      try {
        const ours = await treeListingBytes(fs);
        if (dec.decode(ours) !== text) assert.fail(firstDifference(text, dec.decode(ours)));
        // Every no-key name (short and digest form, in linear and indexed directories)
        // resolves to the kernel's inode.
        let looked = 0;
        let digests = 0;
        for (const line of text.trim().split("\n").slice(1)) {
          const [path, , , , , , , , , ino] = line.split("\t");
          assert.equal(String((await fs.lstat(path)).ino), ino, path);
          looked++;
          if (path.split("/").pop()!.length === 252) digests++;
        }
        assert.ok(looked > 400 && digests > 80, `${looked} lookups, ${digests} digest names`);
        // Plaintext names and broken no-key names are not found, like the kernel answers.
        await assert.rejects(fs.lstat("/enc/hello.txt"), /no such file/);
        await assert.rejects(fs.lstat("/enc/AAAAAAAAAAAB"), /no such file/);
        await assert.rejects(fs.lstat("/enc/AAAAAAAAAAAAB"), /no such file/);
        // The big directory: the one with the most entries.
        const counts = new Map<string, number>();
        for (const line of text.split("\n")) {
          const parent = line.split("\t")[0].replace(/\/[^/]*$/, "");
          counts.set(parent, (counts.get(parent) ?? 0) + 1);
        }
        const bigPath = [...counts].sort((a, b) => b[1] - a[1])[0][0];
        assert.ok(counts.get(bigPath)! >= 400);
        const big = await fs.lstat(bigPath);
        assert.equal(await fs.lookupIno(big.ino, "entry-0001"), null);
        assert.equal((big.flags & 0x1000) !== 0, c.indexed, "big is hash-indexed");
        if (c.name.startsWith("4k")) {
          // ls shows the kernel's names, in byte order.
          const r = await runCli(["ls", img, bigPath]);
          assert.equal(r.code, 0, r.stderr);
          const names = text.split("\n").map((l) => l.split("\t")[0])
            .filter((p) => p.startsWith(bigPath + "/")).map((p) => p.slice(bigPath.length + 1));
          assert.equal(r.stdout, names.sort().join("\n") + "\n");
        }
        // Digest names with altered hashes: found or not exactly as the kernel finds them
        // (an index is probed with the hash the name carries).
        const digestPaths = text.split("\n").map((l) => l.split("\t")[0])
          .filter((p) => p.length - p.lastIndexOf("/") === 253).slice(0, 6);
        const forged: string[] = [];
        for (const path of digestPaths) {
          const at = path.lastIndexOf("/") + 1;
          const p = parseNoKeyName(enc.encode(path.slice(at)))!;
          for (const h of [p.hash ^ 2, p.hash ^ 0x80000000, 0, 0xfffffffe]) {
            const raw = atobUrl(path.slice(at));
            new DataView(raw.buffer).setUint32(0, h >>> 0, true);
            forged.push(path.slice(0, at) + btoaUrl(raw));
          }
        }
        const theirs = await withKernelMount(img, async (m) => {
          const r = await runOk("python3", ["-c", LSTAT_EACH, m, ...forged]);
          return r.trim().split("\n");
        }, { readOnly: true });
        const mine: string[] = [];
        for (const path of forged) {
          mine.push(String(await fs.lstat(path).then((st) => st.ino, () => -1)));
        }
        assert.deepEqual(mine, theirs);
        if (c.indexed) assert.ok(mine.includes("-1") && mine.some((i) => i !== "-1"));
        // Only the key can read contents: ENOKEY, as the kernel.
        const first = text.split("\n").find((l) => l.startsWith("/enc/") && l.includes("\tf\t"))!;
        await assert.rejects(fs.readFile(first.split("\t")[0]), (e: { errno?: number }) => {
          assert.equal(e.errno, 126);
          return true;
        });
      } finally {
        await fs.close();
      }
    },
  );
}
