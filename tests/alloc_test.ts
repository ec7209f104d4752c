import assert from "node:assert/strict";
import fc from "fast-check";
import { Allocator, type Extent } from "../lib/ext4/alloc.ts";
import {
  blocksInGroup,
  countZeros,
  readBlockBitmap,
  readInodeBitmap,
} from "../lib/ondisk/bitmap.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { CorruptError, type Ext4Error } from "../lib/errors.ts";
import {
  groupFirstBlock,
  GroupFlags,
  readGroupDescriptors,
} from "../lib/ondisk/group_descriptor.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { BlockCache, type Transaction } from "../lib/txn/transaction.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { run, runOk, tempDir, testWith } from "./helpers.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  type LoadedFs,
  loadFs,
  mkfsImage,
  parseFsck,
} from "./write_fixtures.ts";

/** Everything the allocator's state consists of, as e2fsck would count it. */
interface Snapshot {
  blockBitmaps: Uint8Array[];
  inodeBitmaps: Uint8Array[];
  free: number[];
  freeInodes: number[];
  dirs: number[];
  sbFree: number;
  sbFreeInodes: number;
}

async function snapshot(fs: LoadedFs): Promise<Snapshot> {
  const { sb, gdt, cache } = fs;
  const s: Snapshot = {
    blockBitmaps: [],
    inodeBitmaps: [],
    free: [],
    freeInodes: [],
    dirs: [],
    sbFree: sb.freeBlocksCount,
    sbFreeInodes: sb.freeInodesCount,
  };
  for (let g = 0; g < sb.groupCount; g++) {
    const gd = gdt.get(g);
    const bb = await readBlockBitmap(cache, sb, gdt, g);
    const ib = await readInodeBitmap(cache, sb, gdt, g);
    // Only the bits of the group: padding is checked separately.
    s.blockBitmaps.push(bb.subarray(0, Math.ceil(blocksInGroup(sb, g) / 8)));
    s.inodeBitmaps.push(ib.subarray(0, sb.inodesPerGroup / 8));
    s.free.push(gd.freeBlocksCount);
    s.freeInodes.push(gd.freeInodesCount);
    s.dirs.push(gd.usedDirsCount);
    assert.equal(
      countZeros(bb, blocksInGroup(sb, g)),
      gd.freeBlocksCount,
      `group ${g} free blocks`,
    );
    assert.equal(countZeros(ib, sb.inodesPerGroup), gd.freeInodesCount, `group ${g} free inodes`);
  }
  assert.equal(sb.freeBlocksCount, fs.alloc.freeBlockCount, "superblock free blocks = sum");
  assert.equal(sb.freeInodesCount, fs.alloc.freeInodeCount, "superblock free inodes = sum");
  return s;
}

/** Reloads the filesystem from its device bytes, as a fresh mount would see it. */
async function reload(fs: LoadedFs): Promise<LoadedFs> {
  return await loadFs(Uint8Array.from(fs.dev.bytes));
}

type Op =
  | { kind: "blocks"; goal: number; count: number; contiguous: boolean }
  | { kind: "inode"; dir: boolean; parent: number; top: boolean }
  | { kind: "freeBlocks"; pick: number; part: number }
  | { kind: "freeInode"; pick: number }
  | { kind: "end"; commit: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("blocks" as const),
      goal: fc.double({ min: 0, max: 1, noNaN: true }),
      count: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })),
      contiguous: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("inode" as const),
      dir: fc.boolean(),
      parent: fc.nat(40),
      top: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("freeBlocks" as const),
      pick: fc.nat(),
      part: fc.nat(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("freeInode" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("end" as const), commit: fc.boolean() }) },
);

/** The ownerless allocations made so far. */
interface Model {
  extents: Extent[];
  inodes: Map<number, boolean>;
}

function cloneModel(m: Model): Model {
  return { extents: [...m.extents], inodes: new Map(m.inodes) };
}

async function applyOp(fs: LoadedFs, tx: Transaction, model: Model, op: Op): Promise<void> {
  const { sb, alloc } = fs;
  if (op.kind === "blocks") {
    const goal = sb.firstDataBlock + Math.floor(op.goal * (sb.blocksCount - sb.firstDataBlock));
    const free = alloc.freeBlockCount;
    if (op.count > free) {
      await assert.rejects(
        () => alloc.allocateBlocks(tx, goal, op.count),
        (e: Ext4Error) => e.code === "NO_SPACE",
      );
      assert.equal(tx.state, "open");
      return;
    }
    const got = await alloc.allocateBlocks(tx, goal, op.count, {
      contiguousPreferred: op.contiguous,
    });
    assert.equal(got.reduce((n, e) => n + e.length, 0), op.count);
    for (const e of got) {
      assert.ok(
        e.length <= 32768 && e.start >= sb.firstDataBlock && e.start + e.length <= sb.blocksCount,
      );
      model.extents.push(e);
    }
    if (op.contiguous && got.length === 1) assert.equal(got[0].length, op.count);
  } else if (op.kind === "inode") {
    const parent = op.parent % sb.groupCount;
    if (alloc.freeInodeCount === 0) return;
    const ino = await alloc.allocateInode(tx, {
      dir: op.dir,
      parentGroup: parent,
      topLevel: op.top,
    });
    assert.ok(ino >= sb.firstIno && ino <= sb.inodesCount);
    assert.ok(!model.inodes.has(ino), `inode ${ino} handed out twice`);
    model.inodes.set(ino, op.dir);
  } else if (op.kind === "freeBlocks") {
    if (model.extents.length === 0) return;
    const i = op.pick % model.extents.length;
    const e = model.extents[i];
    // Free the whole extent or its tail.
    const keep = op.part % e.length;
    await alloc.freeBlocks(tx, e.start + keep, e.length - keep);
    if (keep === 0) model.extents.splice(i, 1);
    else model.extents[i] = { start: e.start, length: keep };
  } else if (op.kind === "freeInode") {
    if (model.inodes.size === 0) return;
    const ino = [...model.inodes.keys()][op.pick % model.inodes.size];
    await alloc.freeInode(tx, ino, { dir: model.inodes.get(ino)! });
    model.inodes.delete(ino);
  }
}

function blocksOf(model: Model): number[] {
  const out: number[] = [];
  for (const e of model.extents) for (let i = 0; i < e.length; i++) out.push(e.start + i);
  return out.sort((a, b) => a - b);
}

/** e2fsck -fy on a copy: the per-group free counts it finds (stored, counted). */
async function fsckFixCounts(
  dir: string,
  bytes: Uint8Array,
): Promise<Map<number, [number, number]>> {
  const path = `${dir}/fix.img`;
  await Deno.writeFile(path, bytes);
  const r = await run("e2fsck", ["-fy", path]);
  await Deno.remove(path);
  const out = new Map<number, [number, number]>();
  for (
    const m of r.stdout.matchAll(
      /Free blocks count wrong for group #(\d+) \((\d+), counted=(\d+)\)/g,
    )
  ) {
    out.set(Number(m[1]), [Number(m[2]), Number(m[3])]);
  }
  return out;
}

for (const layout of LAYOUTS) {
  testWith(
    `alloc on ${layout.name}: random allocate/free sequences, then e2fsck sees exactly the ownerless allocations; freeing all restores the image`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const original = await snapshot(await loadFs(image));
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
          const fs = await loadFs(image);
          let committed: Model = { extents: [], inodes: new Map() };
          let model = cloneModel(committed);
          let committedGds = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
          let tx = fs.cache.begin();
          for (const op of ops) {
            if (op.kind === "end") {
              if (op.commit) {
                await tx.commit();
                committed = cloneModel(model);
                committedGds = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
              } else {
                tx.abort();
                model = cloneModel(committed);
                fs.gdt.descriptors.forEach((gd, g) => assert.deepEqual(gd.bytes, committedGds[g]));
              }
              tx = fs.cache.begin();
            } else {
              await applyOp(fs, tx, model, op);
            }
          }
          await tx.commit();
          const now = await snapshot(fs);
          await snapshot(await reload(fs)); // the device holds the same, consistent state

          // e2fsck -fn: exactly our ownerless blocks and inodes, nothing else.
          const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
          assert.deepEqual(r.other, []);
          assert.deepEqual(r.blockMinus.sort((a, b) => a - b), blocksOf(model));
          assert.deepEqual(r.blockPlus, []);
          assert.deepEqual(
            r.inodeMinus.sort((a, b) => a - b),
            [...model.inodes.keys()].sort((a, b) => a - b),
          );
          assert.deepEqual(r.inodePlus, []);
          const dirsPerGroup = new Map<number, number>();
          for (const [ino, isDir] of model.inodes) {
            if (isDir) {
              const g = fs.alloc.groupOfInode(ino);
              dirsPerGroup.set(g, (dirsPerGroup.get(g) ?? 0) + 1);
            }
          }
          assert.deepEqual(
            new Map([...r.groupDirs].map(([g, [stored, counted]]) => [g, stored - counted])),
            dirsPerGroup,
          );
          // e2fsck's own free counts: what we store, and what it counts once the bitmaps are
          // fixed (the original counts).
          const counts = await fsckFixCounts(dir.path, fs.dev.bytes);
          for (let g = 0; g < fs.sb.groupCount; g++) {
            const c = counts.get(g);
            if (c) {
              assert.equal(c[0], now.free[g]);
              assert.equal(c[1], original.free[g]);
            } else assert.equal(now.free[g], original.free[g]);
          }

          // Free everything: e2fsck clean, bitmaps and counters exactly as before.
          const tx2 = fs.cache.begin();
          for (const e of model.extents) await fs.alloc.freeBlocks(tx2, e.start, e.length);
          for (const [ino, isDir] of model.inodes) {
            await fs.alloc.freeInode(tx2, ino, { dir: isDir });
          }
          await tx2.commit();
          const clean = await fsck(dir.path, fs.dev.bytes);
          assert.equal(clean.code, 0, clean.output);
          const after = await snapshot(await reload(fs));
          assert.deepEqual(after, original);
        }),
        { numRuns: 4 },
      );
    },
  );
}

testWith(
  "allocation spreads top-level directories across groups and keeps files near their parent",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const tx = fs.cache.begin();
    const groups = new Set<number>();
    for (let i = 0; i < fs.sb.groupCount; i++) {
      groups.add(
        fs.alloc.groupOfInode(await fs.alloc.allocateInode(tx, { dir: true, topLevel: true })),
      );
    }
    assert.ok(
      groups.size >= Math.min(4, fs.sb.groupCount - 1),
      `directories went to ${[...groups]}`,
    );
    for (let i = 0; i < 5; i++) {
      assert.equal(
        fs.alloc.groupOfInode(await fs.alloc.allocateInode(tx, { dir: false, parentGroup: 3 })),
        3,
      );
    }
    // Blocks: goal-directed and contiguous.
    const goal = groupFirstBlock(fs.sb, 4) + 100;
    const [e] = await fs.alloc.allocateBlocks(tx, goal, 50, { contiguousPreferred: true });
    assert.deepEqual(e, { start: goal, length: 50 });
    const [next] = await fs.alloc.allocateBlocks(tx, goal, 10, { contiguousPreferred: true });
    assert.equal(next.start, goal + 50, "the next run follows the previous one");
    tx.abort();
  },
);

testWith(
  "ENOSPC: allocate until full, then the failing call changes nothing",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const free = fs.alloc.freeBlockCount;
    const tx = fs.cache.begin();
    const all = await fs.alloc.allocateBlocks(tx, 0, free - 3, { contiguousPreferred: true });
    assert.equal(all.reduce((n, e) => n + e.length, 0), free - 3);
    const last = await fs.alloc.allocateBlocks(tx, 0, 3);
    assert.equal(fs.alloc.freeBlockCount, 0);
    const gds = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
    const sbBytes = Uint8Array.from(fs.sb.bytes);
    const dirty = tx.metadataBlocks;
    await assert.rejects(
      () => fs.alloc.allocateBlocks(tx, 0, 1),
      (e: Ext4Error) => e.code === "NO_SPACE" && e.errno === 28,
    );
    assert.equal(tx.state, "open");
    assert.equal(tx.metadataBlocks, dirty);
    fs.gdt.descriptors.forEach((gd, g) => assert.deepEqual(gd.bytes, gds[g]));
    assert.deepEqual(fs.sb.bytes, sbBytes);
    await tx.commit();
    const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
    assert.deepEqual(r.other, []);
    assert.equal(r.blockMinus.length, free);
    assert.deepEqual(
      r.blockMinus.sort((a, b) => a - b),
      blocksOf({ extents: [...all, ...last], inodes: new Map() }),
    );
    const reloaded = await reload(fs);
    assert.equal(reloaded.sb.freeBlocksCount, 0);

    // Inodes too.
    const tx2 = reloaded.cache.begin();
    const n = reloaded.alloc.freeInodeCount;
    for (let i = 0; i < n; i++) {
      await reloaded.alloc.allocateInode(tx2, {
        dir: i % 7 === 0,
        parentGroup: i % 5,
      });
    }
    await assert.rejects(
      () => reloaded.alloc.allocateInode(tx2, { dir: false }),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx2.state, "open");
    await tx2.commit();
    const r2 = parseFsck((await fsck(dir.path, reloaded.dev.bytes)).output);
    assert.deepEqual(r2.other, []);
    assert.equal(r2.inodeMinus.length, n);
  },
);

testWith("a discarded transaction leaves memory and device as they were", IMAGE_TOOLS, async () => {
  await using dir = await tempDir();
  const image = await mkfsImage(dir.path, LAYOUTS[2]);
  const fs = await loadFs(image);
  const before = await snapshot(fs);
  const tx = fs.cache.begin();
  await fs.alloc.allocateBlocks(tx, 0, 5000);
  await fs.alloc.allocateInode(tx, { dir: true });
  tx.abort();
  assert.deepEqual(await snapshot(fs), before);
  assert.deepEqual(fs.dev.bytes, image);
});

testWith(
  "the free block and inode sums follow every change, and are counted again after an abort",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const { alloc, gdt, sb } = fs;
    const summed = () => {
      let blocks = 0, inodes = 0;
      for (let g = 0; g < sb.groupCount; g++) {
        blocks += gdt.get(g).freeBlocksCount;
        inodes += gdt.get(g).freeInodesCount;
      }
      return { blocks, inodes };
    };
    const kept = () => ({ blocks: alloc.freeBlockCount, inodes: alloc.freeInodeCount });
    assert.deepEqual(kept(), summed());
    let tx = fs.cache.begin();
    const runs = await alloc.allocateBlocks(tx, 0, 3000);
    const ino = await alloc.allocateInode(tx, { dir: false });
    await tx.commit();
    assert.deepEqual(kept(), summed());
    assert.deepEqual({ blocks: sb.freeBlocksCount, inodes: sb.freeInodesCount }, summed());
    // An abort puts the descriptors back behind the sums' back.
    const after = summed();
    tx = fs.cache.begin();
    await alloc.allocateBlocks(tx, 0, 700);
    await alloc.allocateInode(tx, { dir: true });
    await alloc.freeBlocks(tx, runs[0].start, 10);
    assert.deepEqual(kept(), summed(), "within the transaction");
    tx.abort();
    assert.deepEqual(summed(), after);
    assert.deepEqual(kept(), after, "after the abort");
    tx = fs.cache.begin();
    await alloc.freeInode(tx, ino, { dir: false });
    for (const r of runs) await alloc.freeBlocks(tx, r.start, r.length);
    await tx.commit();
    assert.deepEqual(kept(), summed());
    assert.deepEqual({ blocks: sb.freeBlocksCount, inodes: sb.freeInodesCount }, summed());
  },
);

testWith(
  "freeing what is free or what is metadata is a CorruptError and aborts",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const before = await snapshot(fs);
    let tx = fs.cache.begin();
    const [e] = await fs.alloc.allocateBlocks(tx, 0, 4);
    await fs.alloc.freeBlocks(tx, e.start, 4);
    await assert.rejects(() => fs.alloc.freeBlocks(tx, e.start, 1), CorruptError);
    assert.equal(tx.state, "aborted");
    tx = fs.cache.begin();
    const bitmapBlock = fs.gdt.get(0).blockBitmap;
    await assert.rejects(() => fs.alloc.freeBlocks(tx, bitmapBlock, 1), /metadata/);
    tx = fs.cache.begin();
    await assert.rejects(
      () => fs.alloc.freeBlocks(tx, fs.sb.blocksCount - 1, 2),
      (x: Ext4Error) => x.code === "INVALID",
    );
    await assert.rejects(
      () => fs.alloc.freeInode(tx, 2, { dir: true }),
      (x: Ext4Error) => x.code === "INVALID",
    );
    await assert.rejects(
      () => fs.alloc.freeInode(tx, fs.sb.firstIno + 5, { dir: false }),
      CorruptError,
    );
    assert.deepEqual(await snapshot(fs), before);
  },
);

testWith(
  "features ext4ts cannot keep consistent refuse writing with the reason",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    for (
      const [args, reason] of [
        [["-O", "bigalloc", "-C", "16384"], /bigalloc/],
        [["-b", "4096", "-O", "bigalloc", "-C", "65536"], /bigalloc/],
        [["-O", "quota"], /quota/],
      ] as const
    ) {
      const path = `${dir.path}/x.img`;
      await runOk("mkfs.ext4", ["-q", "-F", ...args, path, "64M"]);
      const dev = new MemoryBlockDevice(await Deno.readFile(path));
      const sb = await readSuperblock(dev);
      const gdt = await readGroupDescriptors(dev, sb);
      assert.throws(
        () => new Allocator(sb, gdt),
        (e: Ext4Error) => e.code === "READ_ONLY" && reason.test(e.message),
      );
    }
  },
);

testWith(
  "crash consistency: every prefix of the write log up to a flush is a consistent image",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0]]) {
      const image = await mkfsImage(dir.path, layout);
      const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(image)));
      const sb = await readSuperblock(log);
      const gdt = await readGroupDescriptors(log, sb);
      const cache = new BlockCache(log, sb.blockSize);
      const alloc = new Allocator(sb, gdt);
      // After each commit: the log length and the ownerless blocks/inodes at that point.
      const states: { end: number; blocks: number[]; inodes: number[] }[] = [
        { end: 0, blocks: [], inodes: [] },
      ];
      const model: Model = { extents: [], inodes: new Map() };
      for (let round = 0; round < 6; round++) {
        const tx = cache.begin();
        const got = await alloc.allocateBlocks(
          tx,
          (round * 7919) % sb.blocksCount,
          300 + round * 500,
          {
            contiguousPreferred: round % 2 === 0,
          },
        );
        for (const e of got) {
          tx.writeData(e.start, new Uint8Array(e.length * sb.blockSize).fill(round + 1));
          model.extents.push(e);
        }
        model.inodes.set(
          await alloc.allocateInode(tx, { dir: round % 3 === 0, parentGroup: round }),
          round % 3 === 0,
        );
        if (round >= 2) {
          const e = model.extents.shift()!;
          await alloc.freeBlocks(tx, e.start, e.length);
        }
        await tx.commit();
        states.push({
          end: log.entries.length,
          blocks: blocksOf(model),
          inodes: [...model.inodes.keys()].sort((a, b) => a - b),
        });
      }
      const boundaries = log.flushBoundaries();
      assert.ok(boundaries.length >= 12, "data and metadata flushes");
      for (const b of boundaries) {
        const state = states.filter((s) => s.end <= b).at(-1)!;
        const r = parseFsck((await fsck(dir.path, log.replay(image, b))).output);
        assert.deepEqual(r.other, [], `${layout.name} prefix ${b}`);
        assert.deepEqual(
          r.blockMinus.sort((x, y) => x - y),
          state.blocks,
          `${layout.name} prefix ${b}`,
        );
        assert.deepEqual(r.blockPlus, []);
        assert.deepEqual(r.inodeMinus.sort((x, y) => x - y), state.inodes);
      }
    }
  },
);

testWith(
  "inode records coming into use in a table not yet zeroed are zeroed; itable_unused follows",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const fs = await loadFs(image);
    const { sb, gdt } = fs;
    const g = gdt.descriptors.findIndex((gd) =>
      (gd.flags & GroupFlags.INODE_UNINIT) && !(gd.flags & GroupFlags.ITABLE_ZEROED) &&
      gd.freeBlocksCount > 0
    );
    assert.ok(g > 0, "mkfs with lazy_itable_init leaves groups whose table is not zeroed");
    // Garbage in the table, as a device that was never zeroed could hold.
    const table = gdt.get(g).inodeTable * sb.blockSize;
    fs.dev.bytes.fill(0xff, table, table + sb.inodeTableBlocksPerGroup * sb.blockSize);
    const tx = fs.cache.begin();
    const inos: number[] = [];
    for (let i = 0; i < 3; i++) {
      inos.push(
        await fs.alloc.allocateInode(tx, { dir: false, parentGroup: g }),
      );
    }
    assert.deepEqual(inos, [1, 2, 3].map((i) => g * sb.inodesPerGroup + i));
    assert.equal(gdt.get(g).itableUnused, sb.inodesPerGroup - 3);
    await tx.commit();
    for (let i = 0; i < 3 * sb.inodeSize; i++) assert.equal(fs.dev.bytes[table + i], 0);
    assert.equal(
      fs.dev.bytes[table + 3 * sb.inodeSize],
      0xff,
      "records beyond the used ones untouched",
    );
    const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
    assert.deepEqual(r.other, []);
    assert.deepEqual(r.inodeMinus.sort((a, b) => a - b), inos);
  },
);

testWith("only the primary descriptor table and superblock are written", IMAGE_TOOLS, async () => {
  await using dir = await tempDir();
  const image = await mkfsImage(dir.path, LAYOUTS[2]);
  const fs = await loadFs(image);
  const tx = fs.cache.begin();
  const got = await fs.alloc.allocateBlocks(tx, 0, 10);
  await tx.commit();
  // Group 1 holds a superblock and descriptor backup (sparse_super): unchanged.
  const bs = fs.sb.blockSize;
  const g1 = groupFirstBlock(fs.sb, 1) * bs;
  assert.deepEqual(fs.dev.bytes.subarray(g1, g1 + 2 * bs), image.subarray(g1, g1 + 2 * bs));
  const tx2 = fs.cache.begin();
  for (const e of got) await fs.alloc.freeBlocks(tx2, e.start, e.length);
  await tx2.commit();
  const clean = await fsck(dir.path, fs.dev.bytes);
  assert.equal(clean.code, 0, clean.output);
});

testWith(
  "reserved blocks: kept free when asked, usable by default (root)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const reserved = fs.sb.reservedBlocksCount;
    assert.ok(reserved > 0);
    const tx = fs.cache.begin();
    const free = fs.alloc.freeBlockCount;
    await fs.alloc.allocateBlocks(tx, 0, free - reserved, { keepReserved: true });
    await assert.rejects(
      () => fs.alloc.allocateBlocks(tx, 0, 1, { keepReserved: true }),
      (e: Ext4Error) => e.code === "NO_SPACE" && /reserved/.test(e.message),
    );
    await fs.alloc.allocateBlocks(tx, 0, reserved);
    assert.equal(fs.alloc.freeBlockCount, 0);
    tx.abort();
  },
);

/** Every block of `extents`, one by one. */
function blocksIn(extents: Extent[]): number[] {
  return extents.flatMap((e) => Array.from({ length: e.length }, (_, i) => e.start + i));
}

testWith(
  "blocks freed in a transaction are not handed out again before it commits; after, they are",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    for (const layout of [LAYOUTS[0], LAYOUTS[2], LAYOUTS[6]]) {
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      let tx = fs.cache.begin();
      const a = await fs.alloc.allocateBlocks(tx, 0, 300, { contiguousPreferred: true });
      await tx.commit();
      // Free A, then allocate at A's own place: A's blocks are skipped.
      tx = fs.cache.begin();
      for (const e of a) await fs.alloc.freeBlocks(tx, e.start, e.length);
      const b = await fs.alloc.allocateBlocks(tx, a[0].start, 300, { contiguousPreferred: true });
      const c = await fs.alloc.allocateBlocks(tx, a[0].start, 40);
      const old = new Set(blocksIn(a));
      for (const blk of [...blocksIn(b), ...blocksIn(c)]) {
        assert.ok(!old.has(blk), `${layout.name}: block ${blk} of A handed out again`);
      }
      await tx.commit();
      assert.deepEqual(parseFsck((await fsck(dir.path, fs.dev.bytes)).output).other, []);
      // Committed: A's blocks are free for the next transaction.
      tx = fs.cache.begin();
      const d = await fs.alloc.allocateBlocks(tx, a[0].start, 300, { contiguousPreferred: true });
      assert.deepEqual(d, a, layout.name);
      await tx.commit();
    }
  },
);

testWith(
  "ENOSPC when only blocks freed by the same transaction are free; they are reusable after its commit",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    let tx = fs.cache.begin();
    const all = await fs.alloc.allocateBlocks(tx, 0, fs.alloc.freeBlockCount);
    await tx.commit();
    assert.equal(fs.alloc.freeBlockCount, 0);
    const victim = all[all.length - 1];
    tx = fs.cache.begin();
    await fs.alloc.freeBlocks(tx, victim.start, victim.length);
    assert.equal(fs.alloc.freeBlockCount, victim.length);
    await assert.rejects(
      () => fs.alloc.allocateBlocks(tx, 0, 1),
      (e: Ext4Error) =>
        e.code === "NO_SPACE" && e.errno === 28 &&
        /freed by this transaction, reusable once it commits/.test(e.message),
    );
    assert.equal(tx.state, "open");
    await tx.commit();
    tx = fs.cache.begin();
    const again = await fs.alloc.allocateBlocks(tx, 0, victim.length);
    assert.deepEqual(blocksIn(again), blocksIn([victim]));
    await tx.commit();
    const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
    assert.deepEqual(r.other, []);
  },
);
