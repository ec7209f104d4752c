import assert from "node:assert/strict";
import fc from "fast-check";
import { dirHash } from "../lib/ondisk/dir_hash.ts";
import { htreeLookup } from "../lib/ext4/htree.ts";
import { hashIsSigned, parseDxRoot } from "../lib/ondisk/dx.ts";
import { type DirectorySource, iterateDirectory } from "../lib/ext4/dir.ts";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import { Superblock } from "../lib/ondisk/superblock.ts";
import { makeImage, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { nameOf, RawImage } from "./raw_image.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs"];
const enc = new TextEncoder();

/** Names with bytes >= 0x80, so signed and unsigned hashes place them differently. */
function names(n: number, pad: number): string[] {
  const accents = ["é", "ö", "ß", "日", "€", "a", "b", "Z"];
  return Array.from(
    { length: n },
    (_, i) => `${accents[i % 8]}${i.toString(36)}-${accents[(i >> 3) % 8]}${"n".repeat(pad)}`,
  );
}

/** Links every name to one of a few files (much faster than creating inodes). */
async function linkAll(m: string, dir: string, list: string[]): Promise<Map<string, number>> {
  await Deno.mkdir(`${m}/${dir}`, { recursive: true });
  const inos: number[] = [];
  for (let k = 0; k < 3; k++) {
    await Deno.writeTextFile(`${m}/${dir}-src${k}`, "");
    inos.push((await Deno.lstat(`${m}/${dir}-src${k}`)).ino!);
  }
  const out = new Map<string, number>();
  list.forEach((name, i) => {
    Deno.linkSync(`${m}/${dir}-src${i % 3}`, `${m}/${dir}/${name}`);
    out.set(name, inos[i % 3]);
  });
  return out;
}

async function checkAllNames(
  raw: RawImage,
  dir: DirectorySource,
  expected: Map<string, number>,
  deleted: string[] = [],
): Promise<void> {
  const ctx = { sb: raw.sb };
  for (const [name, ino] of expected) {
    const hit = await htreeLookup(dir, enc.encode(name), ctx);
    assert.ok(hit, `${name} found through the index`);
    assert.equal(hit.ino, ino, name);
    assert.equal(nameOf(hit.name), name);
  }
  const absentNames = ["nope", "é0-é", "x".repeat(255), ...names(50, 3).map((s) => s + "?")];
  for (const absent of [...absentNames, ...deleted]) {
    assert.equal(await htreeLookup(dir, enc.encode(absent), ctx), null, absent);
  }
  // The linear listing holds the same names.
  let count = 0;
  for await (const r of iterateDirectory(dir, ctx)) {
    const n = nameOf(r.name);
    if (n !== "." && n !== "..") {
      assert.equal(expected.get(n), r.ino, n);
      count++;
    }
  }
  assert.equal(count, expected.size);
}

for (
  const v of [
    { alg: "legacy", version: 0, unsigned: false, csum: true },
    { alg: "half_md4", version: 1, unsigned: false, csum: true },
    { alg: "tea", version: 2, unsigned: false, csum: false },
    { alg: "legacy", version: 0, unsigned: true, csum: false },
    { alg: "half_md4", version: 1, unsigned: true, csum: true },
    { alg: "tea", version: 2, unsigned: true, csum: true },
  ]
) {
  const label = `${v.alg} ${v.unsigned ? "unsigned" : "signed"}${v.csum ? " metadata_csum" : ""}`;
  testWith(`htree lookup finds every name (${label})`, NEEDS, async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/h.img`;
    await makeImage(img, {
      size: "16M",
      args: ["-b", "1024", ...(v.csum ? [] : ["-O", "^metadata_csum"])],
    });
    await runOk("tune2fs", ["-E", `hash_alg=${v.alg}`, img]);
    // s_flags: 1 = signed hash, 2 = unsigned; the kernel hashes new names accordingly.
    await runOk("debugfs", ["-w", "-R", `ssv flags ${v.unsigned ? 2 : 1}`, img]);
    let expected = new Map<string, number>();
    const deleted: string[] = [];
    await withKernelMount(img, async (m) => {
      expected = await linkAll(m, "d", names(3000, 30));
      // Deleted names leave unused records in the leaves; they must not be found.
      for (const [i, name] of [...expected.keys()].entries()) {
        if (i % 7 !== 3) continue;
        await Deno.remove(`${m}/d/${name}`);
        expected.delete(name);
        deleted.push(name);
      }
    });
    const raw = await RawImage.load(img);
    assert.equal(hashIsSigned(raw.sb), !v.unsigned);
    const dir = await raw.directory(await raw.ino("/d"));
    assert.ok(dir.isHtree);
    const { info } = parseDxRoot((await dir.readBlock(0))!, raw.sb, dir.ino);
    assert.equal(info.hashVersion, v.version);
    assert.equal(info.indirectLevels, 1, "two index levels");
    await checkAllNames(raw, dir, expected, deleted);
    // "." and ".." come from block 0.
    const root = (await raw.directory(2)).ino;
    assert.equal((await htreeLookup(dir, enc.encode("."), { sb: raw.sb }))?.ino, dir.ino);
    assert.equal((await htreeLookup(dir, enc.encode(".."), { sb: raw.sb }))?.ino, root);
  });
}

testWith("large_dir: a 3-level htree on 1 KiB blocks", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/ld.img`;
  let expected = new Map<string, number>();
  await makeImage(img, {
    size: "64M",
    args: ["-b", "1024", "-O", "large_dir", "-N", "2048"],
    populate: async (m) => {
      // ~40k names of 250 bytes: three per leaf, enough to fill a 2-level index.
      const list = Array.from({ length: 40000 }, (_, i) => `${i.toString(36)}-${"L".repeat(243)}`);
      expected = await linkAll(m, "big", list);
    },
  });
  const raw = await RawImage.load(img);
  const dir = await raw.directory(await raw.ino("/big"));
  const { info } = parseDxRoot((await dir.readBlock(0))!, raw.sb, dir.ino);
  assert.equal(info.indirectLevels, 2, "three index levels");
  await checkAllNames(raw, dir, expected);
});

testWith(
  "unindexed, inline and casefolded directories are left to the linear scan",
  NEEDS,
  async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/u.img`;
    await makeImage(img, {
      size: "8M",
      args: ["-O", "inline_data"],
      populate: async (m) => {
        await Deno.mkdir(`${m}/small`);
        await Deno.writeTextFile(`${m}/small/a`, "");
        await Deno.mkdir(`${m}/inline`);
        await Deno.writeTextFile(`${m}/inline/a`, "");
        for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${m}/small/file-${i}`, "");
      },
    });
    const raw = await RawImage.load(img);
    const ctx = { sb: raw.sb };
    const small = await raw.directory(await raw.ino("/small"));
    assert.ok(!small.isHtree && !small.inlineData);
    assert.equal(await htreeLookup(small, enc.encode("a"), ctx), undefined);
    const inline = await raw.directory(await raw.ino("/inline"));
    assert.ok(inline.inlineData);
    assert.equal(await htreeLookup(inline, enc.encode("a"), ctx), undefined);
    const folded = { ...small, isHtree: true, flags: 0x40000000 };
    assert.equal(await htreeLookup(folded, enc.encode("a"), ctx), undefined);
  },
);

testWith(
  "a corrupt index: fall back (undefined) or CorruptError, as the kernel",
  NEEDS,
  async () => {
    await using tmp = await tempDir();
    const mk = async (name: string, csum: boolean) => {
      const img = `${tmp.path}/${name}.img`;
      let expected = new Map<string, number>();
      await makeImage(img, {
        size: "16M",
        args: ["-b", "1024", ...(csum ? [] : ["-O", "^metadata_csum"])],
        populate: async (m) => {
          expected = await linkAll(m, "d", names(3000, 30));
        },
      });
      const raw = await RawImage.load(img);
      return { raw, dir: await raw.directory(await raw.ino("/d")), expected };
    };
    const plain = await mk("plain", false);
    const csum = await mk("csum", true);
    const name = enc.encode([...plain.expected.keys()][1234]);
    const patched = (dir: DirectorySource, logical: number, f: (b: Uint8Array) => void) => ({
      ...dir,
      readBlock: async (l: number) => {
        const b = (await dir.readBlock(l))!.slice();
        if (l === logical) f(b);
        return b;
      },
    });
    const ctxPlain = { sb: plain.raw.sb };
    assert.ok(await htreeLookup(plain.dir, name, ctxPlain));
    // Structural damage in the root: the kernel's ERR_BAD_DX_DIR, a linear fallback.
    for (
      const [what, f] of [
        ["hash version", (b: Uint8Array) => (b[28] = 9)],
        ["unused flags", (b: Uint8Array) => (b[31] = 1)],
        ["depth", (b: Uint8Array) => (b[30] = 2)],
        ["limit", (b: Uint8Array) => (b[32] ^= 1)],
        ["count 0", (b: Uint8Array) => (b[34] = b[35] = 0)],
      ] as const
    ) {
      assert.equal(
        await htreeLookup(patched(plain.dir, 0, f), name, ctxPlain),
        undefined,
        what,
      );
    }
    // A cycle: an index entry pointing back to the root.
    assert.equal(
      await htreeLookup(
        patched(plain.dir, 0, (b) => {
          const v = new DataView(b.buffer);
          const count = v.getUint16(34, true);
          for (let i = 0; i < count; i++) v.setUint32(36 + 8 * i, 0, true);
        }),
        name,
        ctxPlain,
      ),
      undefined,
    );
    // A pointer past the end of the directory.
    await assert.rejects(
      () =>
        htreeLookup(
          patched(plain.dir, 0, (b) => {
            const v = new DataView(b.buffer);
            const count = v.getUint16(34, true);
            for (let i = 0; i < count; i++) v.setUint32(36 + 8 * i, 0x0ffffff0, true);
          }),
          name,
          ctxPlain,
        ),
      /past the end of the directory/,
    );
    // Under metadata_csum a changed index byte fails the dx_tail checksum.
    const ctxCsum = { sb: csum.raw.sb };
    const cname = enc.encode([...csum.expected.keys()][77]);
    assert.ok(await htreeLookup(csum.dir, cname, ctxCsum));
    await assert.rejects(
      () => htreeLookup(patched(csum.dir, 0, (b) => (b[40] ^= 0x10)), cname, ctxCsum),
      (e: unknown) => e instanceof CorruptError && /dx_tail checksum mismatch/.test(e.message),
    );
    // The same for an interior dx_node, and for a leaf (its dirent tail).
    const { index } = parseDxRoot((await csum.dir.readBlock(0))!, csum.raw.sb, csum.dir.ino);
    const nodes = new Set(index.entries.map((e) => e.block));
    const nodeBroken: DirectorySource = {
      ...csum.dir,
      readBlock: async (l: number) => {
        const b = (await csum.dir.readBlock(l))!.slice();
        if (nodes.has(l)) b[12] ^= 0x10;
        return b;
      },
    };
    await assert.rejects(
      () => htreeLookup(nodeBroken, cname, ctxCsum),
      (e: unknown) =>
        e instanceof CorruptError &&
        /directory index of inode \d+ \(logical block \d+\)/.test(e.message) &&
        /dx_tail checksum mismatch/.test(e.message) && !e.message.includes("logical block 0)"),
    );
    const hit = await htreeLookup(csum.dir, cname, ctxCsum);
    const leafOf = async (dir: DirectorySource, name: Uint8Array) => {
      // Find the leaf holding the name by scanning linearly.
      const bs = csum.raw.sb.blockSize;
      for await (const r of iterateDirectory(dir, ctxCsum)) {
        if (r.ino === hit!.ino && nameOf(r.name) === nameOf(name)) {
          return Math.floor((r.offset - 1) / bs);
        }
      }
      throw new Error("not found");
    };
    const leaf = await leafOf(csum.dir, cname);
    await assert.rejects(
      () => htreeLookup(patched(csum.dir, leaf, (b) => (b[20] ^= 1)), cname, ctxCsum),
      (e: unknown) => e instanceof CorruptError && /checksum mismatch/.test(e.message),
    );
    // Mutated index blocks: only Ext4Errors, and every lookup ends.
    const list = [...plain.expected.keys()].slice(0, 20).map((s) => enc.encode(s));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(0, 1, 2, 3),
        fc.array(fc.tuple(fc.nat(1023), fc.nat(255)), { minLength: 1, maxLength: 8 }),
        fc.nat(19),
        fc.boolean(),
        async (logical, muts, k, useCsum) => {
          const base = useCsum ? csum : plain;
          const src = patched(base.dir, logical, (b) => {
            for (const [i, v] of muts) b[i] = v;
          });
          try {
            await htreeLookup(src, useCsum ? cname : list[k], { sb: base.raw.sb });
          } catch (e) {
            if (!(e instanceof Ext4Error)) throw e;
          }
        },
      ),
      { numRuns: 400 },
    );
  },
);

testWith("hash collisions continue into the next leaf only when bit 0 says so", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/s.img`;
  await makeImage(img, { size: "4M", args: ["-b", "1024", "-O", "^metadata_csum"] });
  const raw = await RawImage.load(img);
  const sb = raw.sb;
  const target = enc.encode("target");
  const h = dirHash(target, 1, sb.hashSeed, hashIsSigned(sb)).major;
  const leaf = (name: string, ino: number) => {
    const b = new Uint8Array(1024);
    const v = new DataView(b.buffer);
    v.setUint32(0, ino, true);
    v.setUint16(4, 1024, true);
    b[6] = name.length;
    b[7] = 1;
    b.set(enc.encode(name), 8);
    return b;
  };
  const root = (third: number) => {
    const b = new Uint8Array(1024);
    const v = new DataView(b.buffer);
    v.setUint32(0, 2, true);
    v.setUint16(4, 12, true);
    b[6] = 1;
    b[7] = 2;
    b[8] = 0x2e;
    v.setUint32(12, 2, true);
    v.setUint16(16, 1012, true);
    b[18] = 2;
    b[19] = 2;
    b[20] = b[21] = 0x2e;
    b[28] = 1; // half_md4
    b[29] = 8;
    v.setUint16(32, (1024 - 32) / 8, true);
    v.setUint16(34, 3, true);
    v.setUint32(36, 1, true);
    v.setUint32(40, h, true);
    v.setUint32(44, 2, true);
    v.setUint32(48, third, true);
    v.setUint32(52, 3, true);
    return b;
  };
  const src = (third: number): DirectorySource => {
    const blocks = [root(third), leaf("first", 11), leaf("other", 12), leaf("target", 13)];
    return {
      ino: 2,
      generation: 0,
      size: 4096,
      blockSize: 1024,
      inlineData: null,
      isHtree: true,
      readBlock: (l) => Promise.resolve(blocks[l] ?? null),
    };
  };
  const ctx = { sb };
  assert.equal((await htreeLookup(src((h | 1) >>> 0), target, ctx))?.ino, 13);
  assert.equal(await htreeLookup(src(h + 2), target, ctx), null);
  assert.equal(await htreeLookup(src(h + 2), enc.encode("other"), ctx), null, "wrong leaf");
  // Without dir_index on the filesystem the INDEX flag is ignored.
  const bytes = sb.bytes.slice();
  bytes[0x5c] &= ~0x20;
  assert.equal(await htreeLookup(src(h), target, { sb: new Superblock(bytes) }), undefined);
});
