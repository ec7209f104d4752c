import assert from "node:assert/strict";
import fc from "fast-check";
import { DirFileType } from "../lib/ondisk/dirent.ts";
import type { Ext4Error } from "../lib/errors.ts";
import {
  findExtent,
  insertExtents,
  markWritten,
  readFileMap,
  removeRange,
} from "../lib/ext4/file_map_write.ts";
import {
  fallocateRange,
  punchHole,
  truncateFile,
  writeFileRange,
} from "../lib/ext4/file_update.ts";
import { writeNewFileData } from "../lib/ext4/file_write.ts";
import { decodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw } from "../lib/ext4/inode.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  linkIntoRoot,
  type LoadedFs,
  loadFs,
  mkfsImage,
  parseFsck,
  writeTestInode,
} from "./write_fixtures.ts";
import type { OpContext } from "../lib/ext4/context.ts";

Deno.test("extent lists: remove, insert and mark written agree with a per-block model", () => {
  const extArb = fc.array(
    fc.record({
      gap: fc.nat(5),
      len: fc.integer({ min: 1, max: 6 }),
      unwritten: fc.boolean(),
      pgap: fc.nat(3),
    }),
    { maxLength: 12 },
  );
  fc.assert(fc.property(extArb, fc.nat(60), fc.nat(20), (specs, from, n) => {
    let logical = 0;
    let physical = 100;
    const list = specs.map((s) => {
      logical += s.gap;
      physical += s.pgap;
      const e = { logical, physical, length: s.len, ...(s.unwritten ? { unwritten: true } : {}) };
      logical += s.len;
      physical += s.len;
      return e;
    });
    const model = (l: typeof list) => {
      const m = new Map<number, [number, boolean]>();
      for (const e of l) {
        for (let i = 0; i < e.length; i++) m.set(e.logical + i, [e.physical + i, !!e.unwritten]);
      }
      return m;
    };
    const before = model(list);
    const joined = insertExtents([], list);
    assert.deepEqual(model(joined), before);
    for (const [lb, [p]] of before) {
      assert.equal(findExtent(joined, lb)!.physical + lb - findExtent(joined, lb)!.logical, p);
    }
    const { kept, removed } = removeRange(joined, from, from + n);
    const after = model(kept);
    let freed = 0;
    for (const r of removed) freed += r.length;
    for (const [lb, v] of before) {
      if (lb >= from && lb < from + n) assert.ok(!after.has(lb));
      else assert.deepEqual(after.get(lb), v);
    }
    assert.equal(freed, before.size - after.size);
    const written = model(markWritten(joined, from, from + n));
    for (const [lb, [p, u]] of before) {
      assert.deepEqual(written.get(lb), [p, lb >= from && lb < from + n ? false : u]);
    }
  }));
});

/** Creates an empty regular file /NAME with the write path; returns its inode. */
async function createEmpty(fs: LoadedFs, tx: Transaction, name: string): Promise<number> {
  const { sb, alloc } = fs;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const generation = ino * 13;
  const data = await writeNewFileData(tx, alloc, sb, { ino, generation, data: new Uint8Array(0) });
  const t = { sec: 1700000000, nsec: 0 };
  await writeTestInode(fs, tx, ino, {
    mode: 0o100644,
    size: 0,
    generation,
    time: t,
    blocks512: 0,
    flags: data.flags,
    block: data.iBlock,
  });
  await linkIntoRoot(fs, tx, name, ino, DirFileType.REG_FILE);
  return ino;
}

type FileOp =
  | { kind: "write"; offset: number; length: number; seed: number }
  | { kind: "truncate"; size: number }
  | { kind: "punch"; offset: number; length: number }
  | { kind: "fallocate"; offset: number; length: number; keepSize: boolean }
  | { kind: "commit" };

const LIMIT = 3 * 1024 * 1024;
const offsetArb = fc.oneof(fc.nat(70000), fc.nat(LIMIT));
const fileOpArb: fc.Arbitrary<FileOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      offset: offsetArb,
      length: fc.integer({ min: 0, max: 50000 }),
      seed: fc.nat(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("truncate" as const), size: offsetArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("punch" as const),
      offset: offsetArb,
      length: fc.nat(90000),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("fallocate" as const),
      offset: offsetArb,
      length: fc.integer({ min: 1, max: 90000 }),
      keepSize: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("commit" as const) }) },
);

/** The model: the file's bytes. */
function applyModel(model: Uint8Array, op: FileOp, extents: boolean): Uint8Array {
  switch (op.kind) {
    case "write": {
      if (op.length === 0) return model;
      const end = op.offset + op.length;
      const out = new Uint8Array(Math.max(model.length, end));
      out.set(model);
      out.set(pattern(op.seed, op.length), op.offset);
      return out;
    }
    case "truncate": {
      const out = new Uint8Array(op.size);
      out.set(model.subarray(0, Math.min(model.length, op.size)));
      return out;
    }
    case "punch": {
      const out = Uint8Array.from(model);
      out.fill(0, op.offset, Math.min(model.length, op.offset + op.length));
      return out;
    }
    case "fallocate": {
      if (!extents || op.keepSize) return model;
      const out = new Uint8Array(Math.max(model.length, op.offset + op.length));
      out.set(model);
      return out;
    }
    default:
      return model;
  }
}

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0], LAYOUTS[4]]) {
  testWith(
    `file updates on ${layout.name}: random writes, truncates, punches and fallocates match a model in the kernel, e2fsck-clean`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      await fc.assert(
        fc.asyncProperty(fc.array(fileOpArb, { minLength: 1, maxLength: 14 }), async (ops) => {
          const fs = await loadFs(image);
          const extents = (fs.sb.incompat & 0x40) !== 0;
          let tx = fs.cache.begin();
          const ino = await createEmpty(fs, tx, "f");
          await tx.commit();
          tx = fs.cache.begin();
          let model: Uint8Array = new Uint8Array(0);
          const ctx = (): OpContext => ({
            tx,
            alloc: fs.alloc,
            sb: fs.sb,
            gdt: fs.gdt,
            now: { sec: 1700000001, nsec: 7 },
          });
          for (const op of ops) {
            if (op.kind === "commit") {
              await tx.commit();
              tx = fs.cache.begin();
              continue;
            }
            if (op.kind === "write") {
              await writeFileRange(ctx(), ino, op.offset, pattern(op.seed, op.length));
            } else if (op.kind === "truncate") await truncateFile(ctx(), ino, op.size);
            else if (op.kind === "punch") await punchHole(ctx(), ino, op.offset, op.length);
            else if (extents) {
              await fallocateRange(ctx(), ino, op.offset, op.length, { keepSize: op.keepSize });
            } else {
              await assert.rejects(
                () => fallocateRange(ctx(), ino, op.offset, op.length),
                (e: Ext4Error) => e.code === "UNSUPPORTED",
              );
              continue;
            }
            model = applyModel(model, op, extents);
          }
          await tx.commit();
          const f = decodeInode(fs.sb, await readInodeRaw(fs.cache.begin(), fs.sb, fs.gdt, ino));
          fs.cache.active!.abort();
          assert.equal(f.size, model.length);
          assert.equal(!!(f.flags & InodeFlags.EXTENTS), extents);
          const check = await fsck(dir.path, fs.dev.bytes);
          assert.equal(check.code, 0, check.output + JSON.stringify(ops));
          const path = `${dir.path}/u.img`;
          await Deno.writeFile(path, fs.dev.bytes);
          const got = await withKernelMount(path, (mnt) => Deno.readFile(`${mnt}/f`), {
            readOnly: true,
          });
          assert.equal(got.length, model.length);
          assert.ok(got.every((b, i) => b === model[i]), "contents equal the model");
        }),
        { numRuns: 5 },
      );
    },
  );
}

testWith(
  "file updates: ENOSPC in the middle of a write discards the whole transaction",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    let tx = fs.cache.begin();
    const ino = await createEmpty(fs, tx, "big");
    await tx.commit();
    const image = Uint8Array.from(fs.dev.bytes);
    const freeAtStart = [fs.alloc.freeBlockCount, fs.sb.freeBlocksCount];
    tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    await writeFileRange(ctx, ino, 0, new Uint8Array(10000).fill(1));
    const free = fs.alloc.freeBlockCount;
    const gds = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
    await assert.rejects(
      () => writeFileRange(ctx, ino, 1 << 20, new Uint8Array((free + 10) * fs.sb.blockSize)),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx.state, "aborted");
    assert.notDeepEqual(
      fs.gdt.descriptors.map((gd) => gd.bytes),
      gds,
      "the earlier write is discarded too",
    );
    assert.deepEqual(fs.dev.bytes, image);
    assert.deepEqual([fs.alloc.freeBlockCount, fs.sb.freeBlocksCount], freeAtStart);
    const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
    assert.deepEqual(r.other, []);
  },
);

testWith(
  "file updates: ENOSPC for an extent tree block after the data blocks were found discards the write; the file, free counts and image are as before",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const bs = fs.sb.blockSize;
    const per = Math.floor((bs - 12) / 12);
    let tx = fs.cache.begin();
    const f = await createEmpty(fs, tx, "f");
    const g = await createEmpty(fs, tx, "g");
    const h = await createEmpty(fs, tx, "h");
    const k = await createEmpty(fs, tx, "k");
    await tx.commit();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    // Interleaved one-block appends: f gets two full leaves of one-block extents.
    tx = fs.cache.begin();
    for (let i = 0; i < 2 * per; i++) {
      await writeFileRange(ctx(), f, i * bs, pattern(i, bs));
      await writeFileRange(ctx(), g, i * bs, pattern(i + 7, bs));
    }
    await tx.commit();
    // Fill the filesystem with unwritten blocks of h until one block is left.
    for (let round = 0; round < 50 && fs.alloc.freeBlockCount > 1; round++) {
      tx = fs.cache.begin();
      const want = fs.alloc.freeBlockCount - 1 - (round % 2 === 0 ? 0 : 1);
      try {
        const size = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, h)).size;
        await fallocateRange(ctx(), h, size, Math.max(1, want) * bs);
        await tx.commit();
      } catch (e) {
        assert.equal((e as Ext4Error).code, "NO_SPACE");
      }
    }
    assert.equal(fs.alloc.freeBlockCount, 1);
    const image = Uint8Array.from(fs.dev.bytes);
    const counts = [fs.alloc.freeBlockCount, fs.sb.freeBlocksCount];
    // One more block for f fits, but its full leaf must split and there is no block for that.
    tx = fs.cache.begin();
    await assert.rejects(
      () => writeFileRange(ctx(), f, 2 * per * bs, pattern(99, bs)),
      (e: Ext4Error) => e.code === "NO_SPACE" && e.errno === 28,
    );
    assert.equal(tx.state, "aborted");
    assert.deepEqual(fs.dev.bytes, image);
    assert.deepEqual([fs.alloc.freeBlockCount, fs.sb.freeBlocksCount], counts);
    // The block itself was there: a file whose root has room takes it.
    tx = fs.cache.begin();
    await writeFileRange(ctx(), k, 0, pattern(5, 10));
    await tx.commit();
    assert.equal(fs.alloc.freeBlockCount, 0);
    const r = await fsck(dir.path, fs.dev.bytes);
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "fallocate of more than 32767 contiguous blocks splits the unwritten extents (e2fsck-clean)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(
      await mkfsImage(dir.path, {
        name: "big",
        mkfs: "mkfs.ext4",
        args: ["-b", "4096", "-O", "^has_journal"],
        size: "384M", // three full groups: the last one wholly free
      }),
    );
    let tx = fs.cache.begin();
    const ino = await createEmpty(fs, tx, "big");
    await tx.commit();
    tx = fs.cache.begin();
    // 32768 blocks: the allocator finds them in one run (group 2).
    await fallocateRange({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt }, ino, 0, 128 << 20);
    await tx.commit();
    const t = fs.cache.begin();
    const map = await readFileMap(
      t,
      fs.sb,
      ino,
      decodeInode(fs.sb, await readInodeRaw(t, fs.sb, fs.gdt, ino)),
    );
    t.abort();
    assert.deepEqual(map.extents.map((e) => [e.length, e.unwritten]), [[32767, true], [1, true]]);
    const r = await fsck(dir.path, fs.dev.bytes);
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "file updates: an overwrite in place reads no whole block and, with the times already set in the current 4 ms tick, changes no metadata (the kernel's coarse clock)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const bs = fs.sb.blockSize;
    let tx = fs.cache.begin();
    const ino = await createEmpty(fs, tx, "f");
    await tx.commit();
    // Device reads, by block: the data blocks a commit wrote are not kept in the cache.
    const reads: number[] = [];
    const read = fs.dev.read.bind(fs.dev);
    fs.dev.read = (offset, buffer) => {
      reads.push(Math.floor(offset / bs));
      return read(offset, buffer);
    };
    const model = new Uint8Array(5 * bs);
    /** One write at time `ms` (milliseconds into a second); the metadata blocks it changed. */
    const write = async (ms: number, offset: number, data: Uint8Array, restamp = false) => {
      tx = fs.cache.begin();
      const now = { sec: 1_800_000_000, nsec: ms * 1_000_000 };
      const ctx = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now };
      await writeFileRange(ctx, ino, offset, data, { restamp });
      const changed = tx.metadataBlocks;
      await tx.commit();
      model.set(data, offset);
      return changed;
    };
    /** The file's mtime and contents as committed. */
    const committed = async () => {
      const t = fs.cache.begin();
      try {
        const f = decodeInode(fs.sb, await readInodeRaw(t, fs.sb, fs.gdt, ino));
        const back = new Uint8Array(f.size);
        for (const e of (await readFileMap(t, fs.sb, ino, f)).extents) {
          for (let i = 0; i < e.length; i++) {
            back.set(await t.read(e.physical + i), (e.logical + i) * bs);
          }
        }
        return { mtime: f.mtime, data: back };
      } finally {
        t.abort();
      }
    };
    assert.ok(await write(1, 0, pattern(1, 4 * bs)) > 0, "allocating");
    reads.length = 0;
    assert.equal(await write(2, bs, pattern(2, bs)), 0, "whole block, same tick: no metadata");
    assert.deepEqual(reads, [], "a whole block is not read");
    assert.equal(await write(3, 2 * bs + 100, pattern(3, 100)), 0, "partial block, same tick");
    assert.equal(reads.length, 1, "the partial block is read once");
    let now = await committed();
    assert.deepEqual(now.mtime, { sec: 1_800_000_000, nsec: 1_000_000 });
    assert.deepEqual(now.data, model.subarray(0, 4 * bs));
    assert.ok(await write(5, bs, pattern(4, bs)) > 0, "the next tick restamps the times");
    assert.deepEqual((await committed()).mtime, { sec: 1_800_000_000, nsec: 5_000_000 });
    assert.ok(await write(4, bs, pattern(5, bs)) > 0, "a clock set back restamps them too");
    assert.ok(await write(4, 4 * bs, pattern(6, bs)) > 0, "growing the file is metadata");
    now = await committed();
    assert.deepEqual(now.mtime, { sec: 1_800_000_000, nsec: 4_000_000 });
    assert.deepEqual(now.data, model);
    // Times shown since (a stat): the next write restamps them within the tick too.
    assert.equal(await write(6, 0, pattern(7, bs)), 0, "same tick, not shown: data alone");
    assert.ok(await write(7, 0, pattern(8, bs), true) > 0, "same tick, shown: restamped");
    assert.deepEqual((await committed()).mtime, { sec: 1_800_000_000, nsec: 7_000_000 });
    const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
    assert.deepEqual(r.other, []);
  },
);
