import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { dirHash, DxHashVersion } from "../lib/ondisk/dir_hash.ts";
import { htreeLookup } from "../lib/ext4/htree.ts";
import type { DirectorySource } from "../lib/ext4/dir.ts";
import { DirFileType } from "../lib/ondisk/dirent.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { readFileMap } from "../lib/ext4/file_map_write.ts";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { dxLimit } from "../lib/ondisk/dx.ts";
import { decodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw } from "../lib/ext4/inode.ts";
import {
  addEntry,
  createFile,
  listEntries,
  lookupEntry,
  makeDirectory,
} from "../lib/ext4/namei.ts";
import { removeDirectory, unlinkEntry } from "../lib/ext4/unlink.ts";
import { renameEntry } from "../lib/ext4/rename.ts";
import { formatUuid } from "../lib/ondisk/superblock.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import {
  fsck,
  IMAGE_TOOLS,
  type Layout,
  LAYOUTS,
  type LoadedFs,
  loadFs,
  mkfsImage,
} from "./write_fixtures.ts";
import type { OpContext } from "../lib/ext4/context.ts";

const enc = new TextEncoder();

testWith(
  "directory hashes agree with debugfs dx_hash (half_md4, tea, legacy; with and without seed)",
  ["debugfs", "mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/h.img`;
    await runOk("mkfs.ext4", ["-q", "-F", img, "8M"]);
    const fs = await loadFs(await Deno.readFile(img));
    const seed = formatUuid(fs.sb.hashSeedBytes);
    const names = fc.sample(fc.stringMatching(/^[a-zA-Z0-9._-]{1,70}$/), { numRuns: 6, seed: 42 });
    names.push("é-non-ascii-ü".normalize("NFC"));
    for (
      const [alg, version] of [["half_md4", DxHashVersion.HALF_MD4], ["tea", DxHashVersion.TEA], [
        "legacy",
        DxHashVersion.LEGACY,
      ]] as const
    ) {
      for (const name of names) {
        for (const s of [null, seed]) {
          const out = await runOk("debugfs", [
            "-R",
            `dx_hash -h ${alg}${s ? ` -s ${s}` : ""} -- ${name}`,
            img,
          ]);
          const m = out.match(/is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)/)!;
          const mine = dirHash(
            enc.encode(name),
            version,
            s ? fs.sb.hashSeed : new Uint32Array(4),
            true,
          );
          assert.equal(mine.major, Number.parseInt(m[1], 16), `${alg} ${name} ${s}`);
          assert.equal(mine.minor, Number.parseInt(m[2], 16), `${alg} minor ${name}`);
        }
      }
    }
  },
);

async function isIndexed(fs: LoadedFs, tx: Transaction, ino: number): Promise<boolean> {
  return (decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)).flags &
    InodeFlags.INDEX) !== 0;
}

for (
  const [label, layout, extra] of [
    ["ext4 1k half_md4", LAYOUTS[3], "half_md4"],
    ["ext4 tea", LAYOUTS[2], "tea"],
    ["ext4 ^metadata_csum legacy", LAYOUTS[4], "legacy"],
  ] as const
) {
  testWith(
    `htree on ${label}: a directory becomes indexed, grows a node level, and stays e2fsck-clean and kernel-readable`,
    [...IMAGE_TOOLS, "tune2fs", "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const img = `${dir.path}/tuned.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, layout));
      await runOk("tune2fs", ["-E", `hash_alg=${extra}`, img]);
      const fs = await loadFs(await Deno.readFile(img));
      assert.equal(fs.sb.defHashVersion, { legacy: 0, half_md4: 1, tea: 2 }[extra]);
      let tx = fs.cache.begin();
      const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
      const d = await makeDirectory(ctx(), 2, "many", { perm: 0o755 });
      // Enough long names that the root's index fills and a node level appears on 1 KiB
      // blocks (123 leaves), fewer on 4 KiB blocks.
      const n = fs.sb.blockSize === 1024 ? 6000 : 3000;
      const name = (i: number) => `entry-number-${i}-${"x".repeat(i % 40)}`;
      const inos: number[] = [];
      for (let i = 0; i < n; i++) {
        inos.push(await createFile(ctx(), d, name(i), new Uint8Array(0), { perm: 0o644 }));
        if (i % 1000 === 999) {
          await tx.commit();
          tx = fs.cache.begin();
        }
      }
      assert.ok(await isIndexed(fs, tx, d));
      const levels = (await tx.read(
        await (async () => {
          const f = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, d));
          return new DataView(f.block.buffer).getUint32(12 + 8, true);
        })(),
      ))[0x1e];
      if (fs.sb.blockSize === 1024) assert.equal(levels, 1, "a node level below the root");
      for (let i = 0; i < n; i += 97) assert.equal(await lookupEntry(ctx(), d, name(i)), inos[i]);
      assert.equal(await lookupEntry(ctx(), d, "not-there"), 0);
      // Remove a third, rename some across into the root (itself indexed once full).
      for (let i = 0; i < n; i += 3) await unlinkEntry(ctx(), d, name(i));
      for (let i = 1; i < 400; i += 3) await renameEntry(ctx(), d, name(i), 2, `moved-${i}`);
      await tx.commit();
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const want = new Set<string>();
      for (let i = 0; i < n; i++) if (i % 3 !== 0 && !(i < 400 && i % 3 === 1)) want.add(name(i));
      const path = `${dir.path}/h.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      const got = await withKernelMount(path, async (mnt) => {
        const names = new Set<string>();
        for await (const e of Deno.readDir(`${mnt}/many`)) names.add(e.name);
        // The kernel's own lookups go through the index.
        for (let i = 2; i < n; i += 301) {
          if (want.has(name(i))) await Deno.stat(`${mnt}/many/${name(i)}`);
        }
        await Deno.stat(`${mnt}/moved-1`);
        return names;
      }, { readOnly: true });
      assert.deepEqual(got, want);
      // Empty it and remove it.
      tx = fs.cache.begin();
      for (const nm of want) await unlinkEntry(ctx(), d, nm);
      await removeDirectory(ctx(), 2, "many");
      await tx.commit();
      const clean = await fsck(dir.path, fs.dev.bytes);
      assert.equal(clean.code, 0, clean.output);
    },
  );
}

testWith("htree: directories indexed by the kernel are extended and shrunk by ext4ts", [
  ...IMAGE_TOOLS,
  "root",
  "loop",
  "kernel-ext4",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/k.img`;
  await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[2]));
  await withKernelMount(path, async (mnt) => {
    await Deno.mkdir(`${mnt}/kdir`);
    for (let i = 0; i < 2000; i++) {
      await Deno.writeFile(`${mnt}/kdir/kernel-file-${i}`, new Uint8Array(0));
    }
  });
  const fs = await loadFs(await Deno.readFile(path));
  const tx = fs.cache.begin();
  const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
  const d = await lookupEntry(ctx, 2, "kdir");
  assert.ok(await isIndexed(fs, tx, d), "the kernel indexed it");
  assert.ok(await lookupEntry(ctx, d, "kernel-file-1234"));
  for (let i = 0; i < 2000; i += 2) await unlinkEntry(ctx, d, `kernel-file-${i}`);
  for (let i = 0; i < 1500; i++) {
    await createFile(ctx, d, `ext4ts-file-${i}`, new Uint8Array(0), { perm: 0o600 });
  }
  await tx.commit();
  const check = await fsck(dir.path, fs.dev.bytes);
  assert.equal(check.code, 0, check.output);
  await Deno.writeFile(path, fs.dev.bytes);
  const names = await withKernelMount(path, async (mnt) => {
    const out = new Set<string>();
    for await (const e of Deno.readDir(`${mnt}/kdir`)) out.add(e.name);
    await Deno.stat(`${mnt}/kdir/ext4ts-file-777`);
    await Deno.stat(`${mnt}/kdir/kernel-file-777`);
    return out;
  }, { readOnly: true });
  const want = new Set<string>();
  for (let i = 1; i < 2000; i += 2) want.add(`kernel-file-${i}`);
  for (let i = 0; i < 1500; i++) want.add(`ext4ts-file-${i}`);
  assert.deepEqual(names, want);
});

// ---------------------------------------------------------------- three index levels (large_dir)

/** 1 KiB blocks and names of ~250 bytes: three entries per leaf, so tens of thousands of
 * entries fill the root and one node level (123 × 126 leaves at most). */
const LARGE_DIR_1K: Layout = {
  name: "ext4-1k-large_dir",
  mkfs: "mkfs.ext4",
  args: ["-b", "1024", "-O", "large_dir", "-N", "40000"],
  size: "64M",
};
const PLAIN_1K: Layout = { ...LARGE_DIR_1K, name: "ext4-1k", args: ["-b", "1024", "-N", "40000"] };
const longName = (tag: string, i: number) =>
  `${tag}-${String(i).padStart(6, "0")}-${"n".repeat(240)}`;

/** `indirect_levels` and `count` of a directory's dx_root. */
async function dxRoot(
  fs: LoadedFs,
  tx: Transaction,
  ino: number,
): Promise<{ levels: number; count: number }> {
  const f = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino));
  const map = await readFileMap(tx, fs.sb, ino, f);
  const root = await tx.read(map.extents[0].physical);
  return {
    levels: root[0x1e],
    count: new DataView(root.buffer, root.byteOffset).getUint16(0x22, true),
  };
}

/** The number of index nodes on each level below the root (from the counts of the level above). */
async function dxShape(fs: LoadedFs, tx: Transaction, ino: number): Promise<number[]> {
  const f = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino));
  const map = await readFileMap(tx, fs.sb, ino, f);
  const phys = (logical: number) => {
    const e = map.extents.find((x) => logical >= x.logical && logical < x.logical + x.length)!;
    return e.physical + logical - e.logical;
  };
  const entries = (block: Uint8Array, off: number) => {
    const v = new DataView(block.buffer, block.byteOffset);
    const out: number[] = [];
    for (let i = 0; i < v.getUint16(off + 2, true); i++) {
      out.push(v.getUint32(off + 8 * i + 4, true));
    }
    return out;
  };
  const root = await tx.read(phys(0));
  const shape: number[] = [];
  let level = entries(root, 0x20);
  for (let l = 0; l < root[0x1e]; l++) {
    shape.push(level.length);
    const next: number[] = [];
    for (const b of level) next.push(...entries(await tx.read(phys(b)), 0x08));
    level = next;
  }
  return shape;
}

/**
 * Looks every name up through the reader's index walk (`htreeLookup`, never its linear
 * fallback) on the image: present names give their inode, absent ones null.
 */
async function readerLookups(
  bytes: Uint8Array,
  dirIno: number,
  present: Map<string, number>,
  absent: string[],
): Promise<void> {
  const reader = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(bytes)));
  try {
    const inode = await reader.inode(dirIno);
    const bs = reader.superblock.blockSize;
    const src: DirectorySource = {
      ino: dirIno,
      generation: inode.generation,
      size: inode.size,
      blockSize: bs,
      inlineData: null,
      isHtree: (inode.flags & InodeFlags.INDEX) !== 0,
      flags: inode.flags,
      readBlock: async (logical) => {
        const p = await reader.mapBlock(inode, logical);
        return p === null ? null : await reader.readBlock(p);
      },
    };
    const ctx = { sb: reader.superblock };
    for (const [name, ino] of present) {
      const hit = await htreeLookup(src, enc.encode(name), ctx);
      assert.ok(hit !== undefined, "the reader walks the index");
      assert.equal(hit?.ino, ino, name.slice(0, 20));
    }
    for (const name of absent) {
      assert.equal(await htreeLookup(src, enc.encode(name), ctx), null, name.slice(0, 20));
    }
  } finally {
    await reader.close();
  }
}

/** The names the kernel lists in `dir` of the image, and a stat of a sample of them. */
async function kernelNames(
  path: string,
  dir: string,
  sample: string[],
): Promise<Set<string>> {
  return await withKernelMount(path, async (mnt) => {
    const names = new Set<string>();
    for await (const e of Deno.readDir(`${mnt}/${dir}`)) names.add(e.name);
    for (const n of sample) await Deno.stat(`${mnt}/${dir}/${n}`);
    return names;
  }, { readOnly: true });
}

/** Every `step`-th key of a map. */
function every<T>(m: Map<string, T>, step: number): string[] {
  return [...m.keys()].filter((_, i) => i % step === 0);
}

/** e2fsck -fn clean, the kernel lists exactly `model`, and the reader's index finds it all. */
async function checkBigDir(
  dir: string,
  fs: LoadedFs,
  dirIno: number,
  model: Map<string, number>,
  gone: string[],
): Promise<void> {
  const check = await fsck(dir, fs.dev.bytes);
  assert.equal(check.code, 0, check.output);
  const path = `${dir}/big.img`;
  await Deno.writeFile(path, fs.dev.bytes);
  try {
    const listed = await kernelNames(path, "big", every(model, 97));
    assert.equal(listed.size, model.size);
    assert.deepEqual(listed, new Set(model.keys()));
  } finally {
    await Deno.remove(path);
  }
  await readerLookups(fs.dev.bytes, dirIno, model, gone);
}

const BIG_DIR_NEEDS = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"];

testWith(
  "htree on a 1 KiB large_dir filesystem grows to three levels, shrinks and grows again, e2fsck-clean and as the kernel reads it",
  BIG_DIR_NEEDS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LARGE_DIR_1K));
    let tx = fs.cache.begin();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    const big = await makeDirectory(ctx(), 2, "big", { perm: 0o755 });
    const model = new Map<string, number>();
    const add = async (name: string) => {
      model.set(name, await createFile(ctx(), big, name, new Uint8Array(0), { perm: 0o644 }));
      if (model.size % 1000 === 0) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    };
    // Until the root's level is full and a level is added (~23 000 names), then until a node
    // of the new level splits (the root takes a second entry).
    let i = 0;
    while ((await dxRoot(fs, tx, big)).levels < 2) {
      assert.ok(i < 36000, "three levels within 36000 names");
      for (const end = i + 250; i < end;) await add(longName("a", i++));
    }
    while ((await dxRoot(fs, tx, big)).count < 2) {
      assert.ok(i < 40000, "a second-level node splits within 40000 names");
      for (const end = i + 250; i < end;) await add(longName("a", i++));
    }
    await tx.commit();
    tx = fs.cache.begin();
    const [first, second] = await dxShape(fs, tx, big);
    assert.ok(first >= 2 && second > dxLimit(fs.sb, true), `nodes per level: ${first}, ${second}`);
    // ext4ts's own lookups go through three levels.
    for (const name of every(model, 331)) {
      assert.equal(await lookupEntry(ctx(), big, name), model.get(name));
    }
    assert.equal(await lookupEntry(ctx(), big, longName("zz", 1)), 0);
    await checkBigDir(dir.path, fs, big, model, [longName("zz", 1), longName("a", i)]);

    // Remove two names in three; the index keeps its shape (the kernel never shrinks it).
    const gone: string[] = [];
    for (const name of [...model.keys()].filter((_, k) => k % 3 !== 1)) {
      await unlinkEntry(ctx(), big, name);
      model.delete(name);
      gone.push(name);
      if (gone.length % 2000 === 0) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    await tx.commit();
    tx = fs.cache.begin();
    assert.equal((await dxRoot(fs, tx, big)).levels, 2);
    await checkBigDir(dir.path, fs, big, model, gone.filter((_, k) => k % 50 === 0));

    // New names reuse the room the removals left, and may split leaves again.
    for (let k = 0; k < 3000; k++) await add(longName("b", k));
    await tx.commit();
    tx = fs.cache.begin();
    await checkBigDir(dir.path, fs, big, model, gone.filter((_, k) => k % 50 === 1));
    tx.abort();
  },
);

testWith(
  "htree without large_dir: the fill ends in NO_SPACE (ENOSPC) before any change, the directory intact and e2fsck-clean; the kernel refuses the same name",
  BIG_DIR_NEEDS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, PLAIN_1K));
    let tx = fs.cache.begin();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    const big = await makeDirectory(ctx(), 2, "big", { perm: 0o755 });
    const model = new Map<string, number>();
    let refused: Ext4Error | null = null;
    let i = 0;
    for (; i < 40000 && !refused; i++) {
      try {
        const name = longName("a", i);
        model.set(name, await createFile(ctx(), big, name, new Uint8Array(0), { perm: 0o644 }));
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
        refused = e;
      }
      if (i % 1000 === 999 && !refused) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    assert.ok(refused, "the index fills up");
    assert.equal(refused.code, "NO_SPACE", refused.message);
    assert.equal(refused.errno, Errno.ENOSPC);
    assert.match(refused.message, /index full/);
    // A refusal, not a failure: the transaction is still open and holds the batch so far.
    assert.equal(tx.state, "open");
    const full = longName("a", i - 1);
    const before = tx.metadataBlocks;
    await assert.rejects(
      addEntry(ctx(), big, full, 11, DirFileType.REG_FILE),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx.metadataBlocks, before, "addEntry refused before changing a block");
    const moved = await createFile(ctx(), 2, "to-move", new Uint8Array(0), { perm: 0o644 });
    await assert.rejects(
      renameEntry(ctx(), 2, "to-move", big, full),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx.state, "open");
    assert.equal(await lookupEntry(ctx(), 2, "to-move"), moved);
    await tx.commit();
    tx = fs.cache.begin();
    assert.deepEqual(await dxRoot(fs, tx, big), { levels: 1, count: dxLimit(fs.sb, true) });
    await checkBigDir(dir.path, fs, big, model, [full]);
    tx.abort();
    // The kernel agrees: the same name hits the same full leaf under a full index.
    const path = `${dir.path}/full.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    const kernelError = await withKernelMount(path, async (mnt) => {
      try {
        (await Deno.open(`${mnt}/big/${full}`, { write: true, createNew: true })).close();
        return "created";
      } catch (e) {
        return String(e);
      }
    });
    assert.match(kernelError, /No space left on device|os error 28/);
    const after = await fsck(dir.path, await Deno.readFile(path));
    assert.equal(after.code, 0, after.output);
  },
);

testWith(
  "htree: a directory the kernel grew to three levels (large_dir) is extended and shrunk by ext4ts",
  BIG_DIR_NEEDS,
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/k.img`;
    await Deno.writeFile(
      path,
      await mkfsImage(dir.path, {
        ...LARGE_DIR_1K,
        size: "96M",
        args: [...LARGE_DIR_1K.args.slice(0, -1), "48000"],
      }),
    );
    const kernel = 30000;
    await withKernelMount(path, async (mnt) => {
      await Deno.mkdir(`${mnt}/big`);
      for (let i = 0; i < kernel; i++) {
        (await Deno.open(`${mnt}/big/${longName("k", i)}`, { write: true, createNew: true }))
          .close();
      }
    });
    const fs = await loadFs(await Deno.readFile(path));
    await Deno.remove(path);
    let tx = fs.cache.begin();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    const big = await lookupEntry(ctx(), 2, "big");
    assert.equal((await dxRoot(fs, tx, big)).levels, 2, "the kernel built three levels");
    const model = new Map<string, number>();
    for (let i = 0; i < kernel; i++) {
      const name = longName("k", i);
      const ino = await lookupEntry(ctx(), big, name);
      assert.ok(ino, name.slice(0, 10));
      model.set(name, ino);
    }
    const shape = await dxShape(fs, tx, big);
    const gone: string[] = [];
    for (let i = 0; i < kernel; i += 2) {
      const name = longName("k", i);
      await unlinkEntry(ctx(), big, name);
      model.delete(name);
      gone.push(name);
    }
    await tx.commit();
    tx = fs.cache.begin();
    for (let i = 0; i < 20000; i++) {
      const name = longName("x", i);
      model.set(name, await createFile(ctx(), big, name, new Uint8Array(0), { perm: 0o600 }));
      if (i % 1000 === 999) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    await tx.commit();
    tx = fs.cache.begin();
    assert.equal((await dxRoot(fs, tx, big)).levels, 2);
    // ext4ts split the kernel's second-level nodes.
    const grown = await dxShape(fs, tx, big);
    assert.ok(grown[1] > shape[1], `nodes per level ${shape} -> ${grown}`);
    await checkBigDir(dir.path, fs, big, model, gone.filter((_, k) => k % 25 === 0));
    tx.abort();
  },
);

/**
 * Eight 245-byte names with one legacy hash (0x0010a25a, checked with `debugfs dx_hash`):
 * three fit in a 1 KiB leaf, so they spill over a chain of leaves whose index entries carry
 * the hash with the continuation bit.
 */
const COLLIDING = ["a01lX", "iVLUe", "rakfn", "w5G3v", "CZCEF", "IUB9b", "JOQn3", "4YHYa"].map((
  s,
) => `${"c".repeat(240)}${s}`);
const COLLIDING_HASH = 0x0010a25a;

testWith(
  "htree: names with one hash spill over leaves with continuation entries; lookups, EXISTS and removal follow the chain",
  [...IMAGE_TOOLS, "tune2fs", "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/c.img`;
    await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[3]));
    await runOk("tune2fs", ["-E", "hash_alg=legacy", path]);
    const fs = await loadFs(await Deno.readFile(path));
    for (const n of COLLIDING) {
      assert.equal(
        dirHash(enc.encode(n), DxHashVersion.LEGACY, fs.sb.hashSeed, true).major,
        COLLIDING_HASH,
      );
    }
    const tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const d = await makeDirectory(ctx, 2, "big", { perm: 0o755 });
    const model = new Map<string, number>();
    const add = async (name: string) =>
      model.set(name, await createFile(ctx, d, name, new Uint8Array(0), { perm: 0o644 }));
    for (let i = 0; i < 40; i++) {
      await add(longName("o", i));
      if (i % 5 === 0) await add(COLLIDING[i / 5]);
    }
    // The chain: index entries with the colliding hash and bit 0 set.
    const f = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, d));
    const root = await tx.read((await readFileMap(tx, fs.sb, d, f)).extents[0].physical);
    const rv = new DataView(root.buffer, root.byteOffset);
    const hashes: number[] = [];
    for (let i = 1; i < rv.getUint16(0x22, true); i++) {
      hashes.push(rv.getUint32(0x20 + 8 * i, true));
    }
    assert.ok(hashes.includes(COLLIDING_HASH | 1), "a continuation entry");
    for (const n of COLLIDING) {
      assert.equal(await lookupEntry(ctx, d, n), model.get(n));
      await assert.rejects(
        createFile(ctx, d, n, new Uint8Array(0), { perm: 0o644 }),
        (e: Ext4Error) => e.code === "EXISTS",
      );
    }
    await tx.commit();
    const check = async (gone: string[]) => {
      const r = await fsck(dir.path, fs.dev.bytes);
      assert.equal(r.code, 0, r.output);
      await Deno.writeFile(path, fs.dev.bytes);
      const listed = await kernelNames(path, "big", COLLIDING.filter((n) => model.has(n)));
      assert.deepEqual(listed, new Set(model.keys()));
      await readerLookups(fs.dev.bytes, d, model, gone);
    };
    await check([]);
    // Remove names along the chain (the last ones sit in its later leaves), then add back.
    const tx2 = fs.cache.begin();
    const ctx2: OpContext = { tx: tx2, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const gone = [COLLIDING[7], COLLIDING[5], COLLIDING[0], COLLIDING[2]];
    for (const n of gone) {
      await unlinkEntry(ctx2, d, n);
      model.delete(n);
      assert.equal(await lookupEntry(ctx2, d, n), 0);
    }
    for (const n of [COLLIDING[7], COLLIDING[2]]) {
      model.set(n, await createFile(ctx2, d, n, new Uint8Array(0), { perm: 0o600 }));
    }
    await tx2.commit();
    await check([COLLIDING[5], COLLIDING[0]]);
  },
);

testWith(
  "htree: a damaged index is refused as CORRUPT (never a crash, a hang or a re-signed block)",
  [...IMAGE_TOOLS],
  async () => {
    await using dir = await tempDir();
    const base = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    let tx = base.cache.begin();
    const mk = (fs: LoadedFs, t: Transaction): OpContext => ({
      tx: t,
      alloc: fs.alloc,
      sb: fs.sb,
      gdt: fs.gdt,
    });
    const d = await makeDirectory(mk(base, tx), 2, "big", { perm: 0o755 });
    const names: string[] = [];
    for (let i = 0; i < 700; i++) {
      names.push(longName("d", i));
      await createFile(mk(base, tx), d, names[i], new Uint8Array(0), { perm: 0o644 });
    }
    await tx.commit();
    tx = base.cache.begin();
    assert.equal((await dxRoot(base, tx, d)).levels, 1);
    const f = decodeInode(base.sb, await readInodeRaw(tx, base.sb, base.gdt, d));
    const map = await readFileMap(tx, base.sb, d, f);
    const phys = (logical: number) => {
      const e = map.extents.find((x) => logical >= x.logical && logical < x.logical + x.length)!;
      return e.physical + logical - e.logical;
    };
    const bs = base.sb.blockSize;
    const rootAt = phys(0) * bs;
    const rootBytes = base.dev.bytes.subarray(rootAt, rootAt + bs);
    const rv = new DataView(rootBytes.buffer, rootBytes.byteOffset, bs);
    const nodes: number[] = [];
    for (let i = 0; i < rv.getUint16(0x22, true); i++) nodes.push(rv.getUint32(0x24 + 8 * i, true));
    tx.abort();

    /** Runs lookups and inserts on a damaged copy; every failure must be CORRUPT. */
    const damaged = async (label: string, damage: (bytes: Uint8Array) => void) => {
      const bytes = Uint8Array.from(base.dev.bytes);
      damage(bytes);
      const fs = await loadFs(bytes);
      const t = fs.cache.begin();
      let corrupt = 0;
      const fresh = Array.from({ length: 60 }, (_, i) => longName("new", i));
      for (const name of [...names.slice(0, 60), ...fresh]) {
        try {
          if (name.startsWith("new-")) {
            await createFile(mk(fs, t), d, name, new Uint8Array(0), { perm: 0o644 });
          } else await lookupEntry(mk(fs, t), d, name);
        } catch (e) {
          assert.ok(e instanceof Ext4Error && e.code === "CORRUPT", `${label}: ${e}`);
          corrupt++;
          if (t.state !== "open") break;
        }
      }
      assert.ok(corrupt > 0, `${label}: the damage was noticed`);
      if (t.state === "open") t.abort();
    };
    const u16 = (bytes: Uint8Array, at: number, v: number) =>
      new DataView(bytes.buffer).setUint16(at, v, true);
    const u32 = (bytes: Uint8Array, at: number, v: number) =>
      new DataView(bytes.buffer).setUint32(at, v, true);
    await damaged("three levels without large_dir", (b) => {
      b[rootAt + 0x1e] = 2;
    });
    await damaged("root count 0", (b) => u16(b, rootAt + 0x22, 0));
    await damaged("root limit", (b) => u16(b, rootAt + 0x20, 200));
    await damaged("info length", (b) => {
      b[rootAt + 0x1d] = 12;
    });
    await damaged("root points past the end", (b) => {
      for (let i = 0; i < nodes.length; i++) u32(b, rootAt + 0x24 + 8 * i, 1 << 20);
    });
    await damaged("root points at itself", (b) => {
      for (let i = 0; i < nodes.length; i++) u32(b, rootAt + 0x24 + 8 * i, 0);
    });
    await damaged("node count beyond its limit", (b) => {
      for (const n of nodes) u16(b, phys(n) * bs + 0x0a, 500);
    });
    await damaged("node entries point back at the node", (b) => {
      for (const n of nodes) {
        const at = phys(n) * bs;
        const count = new DataView(b.buffer).getUint16(at + 0x0a, true);
        for (let i = 0; i < count; i++) u32(b, at + 0x0c + 8 * i, n);
      }
    });
    // Bad dx tail checksums: lookups and leaf inserts go on (the reader verifies index blocks);
    // the first insert that would rewrite an index block refuses to re-sign it.
    await damaged("index checksums", (b) => {
      for (const n of [0, ...nodes]) {
        const at = phys(n) * bs;
        const limit = new DataView(b.buffer).getUint16(at + (n === 0 ? 0x20 : 0x08), true);
        b[at + (n === 0 ? 0x20 : 0x08) + 8 * limit + 4] ^= 0xff;
      }
    });
  },
);

testWith(
  "htree: an index rebuilt by e2fsck -fD is extended and shrunk by ext4ts",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/d.img`;
    await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[3]));
    await withKernelMount(path, async (mnt) => {
      await Deno.mkdir(`${mnt}/big`);
      for (let i = 0; i < 1500; i++) {
        (await Deno.open(`${mnt}/big/${longName("k", i)}`, { write: true, createNew: true }))
          .close();
      }
      for (let i = 0; i < 1500; i += 3) await Deno.remove(`${mnt}/big/${longName("k", i)}`);
    });
    // -D repacks the directory and rebuilds its index (fuller leaves than the kernel's).
    const r = await run("e2fsck", ["-fyD", path]);
    assert.ok(r.code <= 1, r.stdout + r.stderr);
    const fs = await loadFs(await Deno.readFile(path));
    const tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const big = await lookupEntry(ctx, 2, "big");
    assert.equal((await dxRoot(fs, tx, big)).levels, 1);
    const model = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      if (i % 3 === 0) continue;
      const ino = await lookupEntry(ctx, big, longName("k", i));
      assert.ok(ino);
      model.set(longName("k", i), ino);
    }
    for (let i = 1; i < 1500; i += 3) {
      await unlinkEntry(ctx, big, longName("k", i));
      model.delete(longName("k", i));
    }
    for (let i = 0; i < 1500; i++) {
      model.set(
        longName("e", i),
        await createFile(ctx, big, longName("e", i), new Uint8Array(0), { perm: 0o644 }),
      );
    }
    await tx.commit();
    await checkBigDir(dir.path, fs, big, model, [longName("k", 0), longName("k", 1)]);
  },
);

testWith(
  "htree on 64 KiB blocks: whole-block records use the 64 KiB rec_len encoding, e2fsck-clean",
  [...IMAGE_TOOLS],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(
      await mkfsImage(dir.path, {
        name: "ext4-64k",
        mkfs: "mkfs.ext4",
        args: ["-b", "65536"],
        size: "256M",
      }),
    );
    const tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const d = await makeDirectory(ctx, 2, "d", { perm: 0o755 });
    const name = (i: number) => `entry-${i}-${"x".repeat(i % 200)}`;
    for (let i = 0; i < 3000; i++) {
      await createFile(ctx, d, name(i), new Uint8Array(0), { perm: 0o644 });
    }
    assert.ok(await isIndexed(fs, tx, d));
    for (let i = 0; i < 3000; i += 2) await unlinkEntry(ctx, d, name(i));
    for (let i = 0; i < 3000; i++) {
      assert.equal(await lookupEntry(ctx, d, name(i)) !== 0, i % 2 === 1, name(i));
    }
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

testWith(
  "htree: random inserts and removals of names of every length (1..255) agree with a model through a node level, e2fsck-clean",
  [...IMAGE_TOOLS],
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[3]);
    for (const seed of [1, 2, 3]) {
      const fs = await loadFs(image);
      let state = seed * 0x9e3779b9;
      const rand = (n: number) => {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        return (state >>> 0) % n;
      };
      const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
      let tx = fs.cache.begin();
      const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
      const d = await makeDirectory(ctx(), 2, "mixed", { perm: 0o755 });
      const model = new Map<string, number>();
      for (let op = 0; op < 8000; op++) {
        if (model.size > 0 && rand(10) < 3) {
          const names = [...model.keys()];
          const victim = names[rand(names.length)];
          await unlinkEntry(ctx(), d, victim);
          model.delete(victim);
        } else {
          // Mostly short names, some up to 255 bytes: leaves hold very different counts.
          const len = rand(4) === 0 ? 1 + rand(255) : 1 + rand(24);
          let name = "";
          for (let i = 0; i < len; i++) name += chars[rand(chars.length)];
          if (name === "." || name === ".." || model.has(name)) continue;
          model.set(name, await createFile(ctx(), d, name, new Uint8Array(0), { perm: 0o644 }));
        }
        if (op % 1000 === 999) {
          await tx.commit();
          tx = fs.cache.begin();
        }
      }
      assert.equal((await dxRoot(fs, tx, d)).levels, 1, "a node level");
      const listed = new Map(
        (await listEntries(ctx(), d)).map((e) => [new TextDecoder().decode(e.name), e.ino]),
      );
      assert.deepEqual(listed, model, `seed ${seed}`);
      for (const [name, ino] of model) assert.equal(await lookupEntry(ctx(), d, name), ino);
      await tx.commit();
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, `seed ${seed}: ${check.output}`);
    }
  },
);
