import assert from "node:assert/strict";
import fc from "fast-check";
import { DirFileType } from "../lib/ondisk/dirent.ts";
import { CorruptError, type Ext4Error } from "../lib/errors.ts";
import { readExtentTree } from "../lib/ext4/extents.ts";
import { ExtentTreeEditor } from "../lib/ext4/extents_edit.ts";
import {
  emptyExtentRoot,
  EXTENT_MAGIC,
  extentBlockChecksum,
  extentsPerBlock,
  type FileExtent,
} from "../lib/ondisk/extent.ts";
import { maxFileSize } from "../lib/ext4/file_map_write.ts";
import { punchHole, truncateFile, writeFileRange } from "../lib/ext4/file_update.ts";
import { InodeFlags } from "../lib/ondisk/inode.ts";
import { decodeInode, encodeInode } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { pattern } from "./file_fixtures.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  linkIntoRoot,
  type LoadedFs,
  loadFs,
  mkfsImage,
  writeTestInode,
} from "./write_fixtures.ts";

const TIME = { sec: 1700000000, nsec: 0 };

/** Creates an empty extent-mapped regular file /NAME; returns its inode and generation. */
async function createEmpty(
  fs: LoadedFs,
  tx: Transaction,
  name: string,
): Promise<{ ino: number; generation: number }> {
  const ino = await fs.alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const generation = ino * 7 + 3;
  await writeTestInode(fs, tx, ino, {
    mode: 0o100644,
    size: 0,
    generation,
    time: TIME,
    blocks512: 0,
    flags: InodeFlags.EXTENTS,
    block: emptyExtentRoot(),
  });
  await linkIntoRoot(fs, tx, name, ino, DirFileType.REG_FILE);
  return { ino, generation };
}

interface TreeShape {
  depth: number;
  extents: FileExtent[];
  /** Tree blocks by level below the root (index 0: the root's children). */
  levels: number[][];
  /** Entries per tree block. */
  entries: Map<number, number>;
}

/**
 * Walks the tree on its own and asserts the invariants: magic, eh_max (4 in the root, a full
 * block below), eh_entries ≤ eh_max, depth one less per level, keys sorted, extents disjoint,
 * each index key equal to its child's first key, no empty node below the root, checksums, and
 * a root with one child only when that child would not fit in the root.
 */
async function checkTree(
  fs: LoadedFs,
  tx: Transaction,
  owner: { ino: number; generation: number },
  iBlock: Uint8Array,
): Promise<TreeShape> {
  const per = extentsPerBlock(fs.sb.blockSize);
  const shape: TreeShape = { depth: 0, extents: [], levels: [], entries: new Map() };
  const seen = new Set<number>();
  const walk = async (
    node: Uint8Array,
    block: number | null,
    level: number,
    depth: number | null,
  ): Promise<number | undefined> => {
    const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
    assert.equal(v.getUint16(0, true), EXTENT_MAGIC);
    const entries = v.getUint16(2, true);
    const max = v.getUint16(4, true);
    const d = v.getUint16(6, true);
    assert.equal(v.getUint32(8, true), 0, "eh_generation");
    assert.equal(max, block === null ? 4 : per, "eh_max");
    assert.ok(entries <= max);
    if (depth !== null) assert.equal(d, depth, `depth of block ${block}`);
    else shape.depth = d;
    assert.ok(d <= 5);
    if (block !== null) {
      assert.ok(entries > 0, `tree block ${block} is empty`);
      shape.entries.set(block, entries);
      if (fs.sb.hasMetadataCsum) {
        assert.equal(
          v.getUint32(12 + 12 * max, true),
          extentBlockChecksum(fs.sb, owner.ino, owner.generation, node),
        );
      }
    }
    let first: number | undefined;
    let prev = -1;
    for (let i = 0; i < entries; i++) {
      const o = 12 + 12 * i;
      const key = v.getUint32(o, true);
      assert.ok(key > prev, "keys sorted");
      prev = key;
      first ??= key;
      if (d === 0) {
        const raw = v.getUint16(o + 4, true);
        const e: FileExtent = {
          logical: key,
          physical: v.getUint32(o + 8, true) + v.getUint16(o + 6, true) * 2 ** 32,
          length: raw > 32768 ? raw - 32768 : raw,
        };
        if (raw > 32768) e.unwritten = true;
        const last = shape.extents.at(-1);
        if (last) assert.ok(last.logical + last.length <= key, "extents disjoint");
        shape.extents.push(e);
      } else {
        const child = v.getUint32(o + 4, true) + v.getUint16(o + 8, true) * 2 ** 32;
        assert.ok(!seen.has(child));
        seen.add(child);
        (shape.levels[level] ??= []).push(child);
        const childFirst = await walk(await tx.read(child), child, level + 1, d - 1);
        assert.equal(key, childFirst, `index key of block ${child} = its first key`);
        if (block === null && entries === 1) {
          const n = (await tx.read(child))[2] | ((await tx.read(child))[3] << 8);
          assert.ok(n > 4, "a single child that fits in the root is pulled up");
        }
      }
    }
    return first;
  };
  await walk(iBlock, null, 0, null);
  // The reader agrees (checksums, bounds, order).
  const runs = await readExtentTree(fs.sb, { ...owner, iBlock }, (b) => tx.read(b));
  assert.deepEqual(
    runs.map((r) => [r.logical, r.physical, r.length, r.unwritten]),
    shape.extents.map((e) => [e.logical, e.physical, e.length, !!e.unwritten]),
  );
  return shape;
}

type Model = Map<number, [number, boolean]>;

function modelOf(extents: FileExtent[]): Model {
  const m: Model = new Map();
  for (const e of extents) {
    for (let i = 0; i < e.length; i++) m.set(e.logical + i, [e.physical + i, !!e.unwritten]);
  }
  return m;
}

type TreeOp =
  | {
    kind: "insert";
    at: number;
    count: number;
    gap: number;
    len: number;
    unwritten: boolean;
    batch: boolean;
  }
  | { kind: "remove"; from: number; len: number }
  | { kind: "written"; from: number; len: number }
  | { kind: "commit" };

const TOP = 2 ** 32 - 1; // first logical block past the last one a file may have
const atArb = fc.oneof(
  { weight: 6, arbitrary: fc.nat(4000) },
  { weight: 1, arbitrary: fc.integer({ min: TOP - 400, max: TOP - 1 }) },
);
const treeOpArb: fc.Arbitrary<TreeOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("insert" as const),
      at: atArb,
      count: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 150, max: 400 })),
      gap: fc.nat(2),
      len: fc.integer({ min: 1, max: 3 }),
      unwritten: fc.boolean(),
      batch: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("remove" as const),
      from: atArb,
      len: fc.oneof(fc.nat(30), fc.nat(3000)),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("written" as const),
      from: atArb,
      len: fc.nat(200),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("commit" as const) }) },
);

for (const [layout, runs] of [[LAYOUTS[3], 20], [LAYOUTS[2], 8], [LAYOUTS[4], 5]] as const) {
  testWith(
    `extent tree edits on ${layout.name}: random inserts, removes and conversions keep the tree valid and equal to a per-block model`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const depths = new Set<number>();
      await fc.assert(
        fc.asyncProperty(fc.array(treeOpArb, { minLength: 1, maxLength: 30 }), async (ops) => {
          const fs = await loadFs(image);
          let tx = fs.cache.begin();
          const owner = await createEmpty(fs, tx, "t");
          await tx.commit();
          tx = fs.cache.begin();
          let iBlock = emptyExtentRoot();
          let tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, { ...owner, iBlock });
          let treeBlocks = 0; // from editors already finished
          const model: Model = new Map();
          const freeBefore = fs.alloc.freeBlockCount;
          const writeInodeNow = async () => {
            const done = await tree.finish();
            iBlock = done.iBlock;
            treeBlocks += tree.treeBlocksDelta;
            const last = Math.max(-1, ...model.keys());
            await writeInode(
              tx,
              fs.sb,
              fs.gdt,
              owner.ino,
              encodeInode(fs.sb, owner.ino, {
                ...decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, owner.ino)),
                size: (last + 1) * fs.sb.blockSize,
                blocks512: (model.size + treeBlocks) * (fs.sb.blockSize / 512),
                block: iBlock,
              }),
            );
          };
          for (const op of ops) {
            if (op.kind === "commit") {
              await writeInodeNow();
              await tx.commit();
              tx = fs.cache.begin();
              tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, { ...owner, iBlock });
              continue;
            }
            if (op.kind === "insert") {
              const added: FileExtent[] = [];
              for (let i = 0; i < op.count; i++) {
                const lb = op.at + i * (op.len + op.gap);
                let len = Math.min(op.len, TOP - lb);
                for (let j = 0; j < len; j++) if (model.has(lb + j)) len = j;
                if (len <= 0) continue;
                const goal = model.get(lb - 1)?.[0] ?? 5000 + (lb % 3000);
                let logical = lb;
                for (const r of await fs.alloc.allocateBlocks(tx, goal + 1, len)) {
                  const e: FileExtent = { logical, physical: r.start, length: r.length };
                  if (op.unwritten) e.unwritten = true;
                  added.push(e);
                  logical += r.length;
                }
              }
              if (op.batch) await tree.insert(added);
              else for (const e of added) await tree.insert([e]);
              for (const [lb, v] of modelOf(added)) model.set(lb, v);
            } else if (op.kind === "remove") {
              const to = op.from + op.len;
              const removed = await tree.remove(op.from, to);
              const got = new Set<number>();
              for (const r of removed) {
                for (let i = 0; i < r.length; i++) got.add(r.start + i);
                await fs.alloc.freeBlocks(tx, r.start, r.length);
              }
              const want = new Set<number>();
              for (const [lb, [p]] of model) {
                if (lb >= op.from && lb < to) {
                  want.add(p);
                  model.delete(lb);
                }
              }
              assert.deepEqual(got, want, "removed runs are the blocks mapped there");
            } else {
              await tree.markWritten(op.from, op.from + op.len);
              for (const [lb, [p]] of model) {
                if (lb >= op.from && lb < op.from + op.len) model.set(lb, [p, false]);
              }
            }
            const { iBlock: now } = await tree.finish();
            const shape = await checkTree(fs, tx, owner, now);
            depths.add(shape.depth);
            assert.deepEqual(modelOf(shape.extents), model);
            const blocks = shape.levels.flat();
            assert.equal(blocks.length, treeBlocks + tree.treeBlocksDelta, "tree block count");
            for (const b of blocks) assert.ok(await fs.alloc.isBlockInUse(tx, b));
          }
          await writeInodeNow();
          await tx.commit();
          assert.equal(
            fs.alloc.freeBlockCount,
            freeBefore - model.size - treeBlocks,
            "free blocks: data and tree blocks only",
          );
          const check = await fsck(dir.path, fs.dev.bytes);
          assert.equal(check.code, 0, check.output + JSON.stringify(ops));
        }),
        { numRuns: runs },
      );
      // The runs reach trees with index levels (1 KiB blocks: two of them).
      assert.ok(depths.has(layout.name === "ext4-1k" ? 2 : 1), `depths seen: ${[...depths]}`);
    },
  );
}

testWith(
  "extent tree edits: appends keep leaves full; the tree grows to depth 2 and removing from the end shrinks it back to the inode",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const per = extentsPerBlock(fs.sb.blockSize);
    let tx = fs.cache.begin();
    const owner = await createEmpty(fs, tx, "a");
    await tx.commit();
    tx = fs.cache.begin();
    const tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, { ...owner, iBlock: emptyExtentRoot() });
    const n = 4 * per + 10;
    const depths = new Set<number>();
    for (let i = 0; i < n; i++) {
      const [r] = await fs.alloc.allocateBlocks(tx, 9000, 1);
      await tree.insert([{ logical: 2 * i, physical: r.start, length: 1 }]);
      depths.add(tree.depth);
    }
    assert.deepEqual([...depths], [0, 1, 2]);
    let shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    const leaves = shape.levels[shape.depth - 1];
    assert.equal(leaves.length, Math.ceil(n / per), "appended leaves are full");
    const group = fs.alloc.groupOfBlock(9000);
    for (const b of shape.levels.flat()) {
      assert.equal(fs.alloc.groupOfBlock(b), group, `tree block ${b} lies near the data`);
    }
    assert.ok(leaves.slice(0, -1).every((b) => shape.entries.get(b) === per));
    const seen = [tree.depth];
    for (let end = 2 * n; end > 0; end -= 37) {
      for (const r of await tree.remove(Math.max(0, end - 37), end)) {
        await fs.alloc.freeBlocks(tx, r.start, r.length);
      }
      seen.push(tree.depth);
      shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    }
    assert.equal(shape.extents.length, 0);
    assert.equal(tree.depth, 0);
    assert.ok(seen.includes(1) && seen.includes(2));
    assert.equal(tree.treeBlocksDelta, 0, "every tree block freed");
    tx.abort();
  },
);

testWith(
  "extent tree edits: a depth-3 tree (1 KiB blocks): index nodes split in the middle, then everything goes and the root is a leaf again",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const per = extentsPerBlock(fs.sb.blockSize);
    const tx = fs.cache.begin();
    const owner = { ino: 12, generation: 9 };
    const tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, { ...owner, iBlock: emptyExtentRoot() });
    const model: Model = new Map();
    // Only the mapping is edited: physical blocks repeat (the tree does not care), logical gaps
    // keep every extent apart.
    const add = async (logical: number, physical: number) => {
      await tree.insert([{ logical, physical, length: 1 }]);
      model.set(logical, [physical, false]);
    };
    const n = 4 * per * per + 500; // more than a depth-2 tree holds
    for (let i = 0; i < n; i++) await add(4 * i, 100 + (i % 5000) * 2);
    assert.equal(tree.depth, 3);
    let shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    assert.deepEqual(modelOf(shape.extents), model);
    // Inserts in the middle split full leaves and index nodes in halves.
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let k = 0; k < 3000; k++) {
      const lb = 4 * (next() % n) + 2;
      if (!model.has(lb)) await add(lb, 20000 + (k % 9000));
    }
    shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    assert.deepEqual(modelOf(shape.extents), model);
    assert.ok(
      shape.levels[1].slice(0, -1).some((b) => shape.entries.get(b)! <= per / 2 + 1),
      "an index node was split in halves",
    );
    // Remove scattered ranges, then everything: freed nodes, merged neighbours, lower depth.
    for (let k = 0; k < 40; k++) {
      const from = next() % (4 * n);
      await tree.remove(from, from + (next() % 3000));
      for (const lb of [...model.keys()]) if (lb >= from && lb < from + 3000) model.delete(lb);
    }
    await tree.remove(0, 2 ** 32);
    shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    assert.equal(shape.extents.length, 0);
    assert.equal(tree.depth, 0);
    assert.equal(tree.treeBlocksDelta, 0, "every tree block freed");
    tx.abort();
  },
);

testWith(
  "extent tree edits: neighbours merge up to 32768 written and 32767 unwritten blocks",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const tx = fs.cache.begin();
    const owner = { ino: 12, generation: 1 };
    const lengths = async (pieces: FileExtent[]) => {
      const tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, {
        ...owner,
        iBlock: emptyExtentRoot(),
      });
      for (const p of pieces) await tree.insert([p]);
      const shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
      return shape.extents.map((e) => e.length);
    };
    // Only the mapping is edited here: the physical blocks need not be allocated.
    const run = (logical: number, length: number, unwritten = false): FileExtent => ({
      logical,
      physical: 100 + logical,
      length,
      ...(unwritten ? { unwritten } : {}),
    });
    assert.deepEqual(await lengths([run(0, 16384), run(16384, 16384)]), [32768]);
    assert.deepEqual(await lengths([run(0, 16384, true), run(16384, 16384, true)]), [
      16384,
      16384,
    ]);
    assert.deepEqual(await lengths([run(0, 16383, true), run(16383, 16384, true)]), [32767]);
    assert.deepEqual(await lengths([run(0, 20000), run(20000, 20000)]), [20000, 20000]);
    // Different states or a physical gap do not merge; a hole between is filled and joins all.
    assert.deepEqual(await lengths([run(0, 4), run(4, 4, true)]), [4, 4]);
    assert.deepEqual(
      await lengths([run(0, 4), { logical: 4, physical: 2000, length: 4 }]),
      [4, 4],
    );
    assert.deepEqual(await lengths([run(0, 4), run(8, 4), run(4, 4)]), [12]);
    // Marking the middle of an unwritten extent written splits it in three.
    const tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, { ...owner, iBlock: emptyExtentRoot() });
    await tree.insert([run(0, 30, true)]);
    await tree.markWritten(10, 20);
    const shape = await checkTree(fs, tx, owner, (await tree.finish()).iBlock);
    assert.deepEqual(shape.extents.map((e) => [e.logical, e.length, !!e.unwritten]), [
      [0, 10, true],
      [10, 10, false],
      [20, 10, true],
    ]);
    tx.abort();
  },
);

testWith(
  "extent tree edits: corrupt trees are CorruptErrors naming the inode and the block",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const build = async () => {
      const fs = await loadFs(image);
      const tx = fs.cache.begin();
      const owner = await createEmpty(fs, tx, "c");
      const tree = new ExtentTreeEditor(tx, fs.alloc, fs.sb, {
        ...owner,
        iBlock: emptyExtentRoot(),
      });
      for (let i = 0; i < 6; i++) {
        const [r] = await fs.alloc.allocateBlocks(tx, 3000 + 2 * i, 1);
        await tree.insert([{ logical: 10 * i, physical: r.start, length: 1 }]);
      }
      const { iBlock } = await tree.finish();
      const leaf = new DataView(iBlock.buffer).getUint32(16, true);
      return { fs, tx, owner, iBlock, leaf };
    };
    const expectCorrupt = async (
      change: (t: Awaited<ReturnType<typeof build>>, img: Uint8Array) => void,
      re: RegExp,
    ) => {
      const t = await build();
      change(t, await t.tx.getWritable(t.leaf));
      const tree = new ExtentTreeEditor(t.tx, t.fs.alloc, t.fs.sb, {
        ...t.owner,
        iBlock: t.iBlock,
      });
      await assert.rejects(
        () => tree.lookup(20),
        (e: Ext4Error) =>
          e instanceof CorruptError && e.message.includes(`inode ${t.owner.ino}`) &&
          e.message.includes(`block ${t.leaf}`) && re.test(e.message),
      );
    };
    // Changes with the checksum made right again, so the structural check is what fails.
    const resum = (t: Awaited<ReturnType<typeof build>>, img: Uint8Array) => {
      new DataView(img.buffer, img.byteOffset).setUint32(
        12 + 12 * extentsPerBlock(t.fs.sb.blockSize),
        extentBlockChecksum(t.fs.sb, t.owner.ino, t.owner.generation, img),
        true,
      );
    };
    await expectCorrupt((_, img) => img[0] = 0, /magic/);
    await expectCorrupt((t, img) => (img[6] = 3, resum(t, img)), /depth/);
    await expectCorrupt((t, img) => (img[24] = 0, resum(t, img)), /order/);
    await expectCorrupt((t, img) => (img[20] = 0xff, img[23] = 0xff, resum(t, img)), /bad extent/);
    await expectCorrupt((_, img) => img[13] ^= 1, /checksum/);
    await expectCorrupt((_, img) => (img[4] = 0xff, img[5] = 1), /eh_max/);
    // Two index entries naming the same block.
    const t = await build();
    const root = Uint8Array.from(t.iBlock);
    const v = new DataView(root.buffer);
    v.setUint16(2, 2, true);
    v.setUint32(24, 100, true);
    v.setUint32(28, t.leaf, true);
    const tree = new ExtentTreeEditor(t.tx, t.fs.alloc, t.fs.sb, { ...t.owner, iBlock: root });
    await assert.rejects(
      () => tree.remove(0, 200),
      (e: Ext4Error) =>
        e instanceof CorruptError && /referenced twice/.test(e.message) &&
        e.message.includes(`block ${t.leaf}`),
    );
    // A root deeper than 5.
    const deep = Uint8Array.from(t.iBlock);
    deep[6] = 6;
    const bad = new ExtentTreeEditor(t.tx, t.fs.alloc, t.fs.sb, { ...t.owner, iBlock: deep });
    await assert.rejects(() => bad.lookup(0), (e: Ext4Error) => e.code === "CORRUPT");
    t.tx.abort();
  },
);

/** Reads `length` bytes at `offset` of a file in a kernel mount. */
async function kernelRead(path: string, offset: number, length: number): Promise<Uint8Array> {
  using f = await Deno.open(path);
  await f.seek(offset, Deno.SeekMode.Start);
  const buf = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = await f.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return buf.subarray(0, got);
}

testWith(
  "a file fragmented into thousands of extents by interleaved writes (depth 2), then punched and truncated back to depth 0: e2fsck-clean and read back by the kernel at each stage",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const bs = fs.sb.blockSize;
    const per = extentsPerBlock(bs);
    let tx = fs.cache.begin();
    const a = await createEmpty(fs, tx, "a");
    const b = await createEmpty(fs, tx, "b");
    await tx.commit();
    const models = new Map([[a.ino, new Uint8Array(0)], [b.ino, new Uint8Array(0)]]);
    const write = async (ino: number, offset: number, data: Uint8Array) => {
      const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME };
      await writeFileRange(ctx, ino, offset, data);
      const m = models.get(ino)!;
      const out = new Uint8Array(Math.max(m.length, offset + data.length));
      out.set(m);
      out.set(data, offset);
      models.set(ino, out);
    };
    const depthOf = async (ino: number) => {
      const t = fs.cache.begin();
      const f = decodeInode(fs.sb, await readInodeRaw(t, fs.sb, fs.gdt, ino));
      t.abort();
      return f.block[6] | (f.block[7] << 8);
    };
    const stage = async (name: string) => {
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, `${name}: ${check.output}`);
      const path = `${dir.path}/frag.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      await withKernelMount(path, async (mnt) => {
        for (const [ino, m] of models) {
          const got = await Deno.readFile(`${mnt}/${ino === a.ino ? "a" : "b"}`);
          assert.equal(got.length, m.length, `${name}: size`);
          assert.ok(got.every((x, i) => x === m[i]), `${name}: contents of inode ${ino}`);
        }
      }, { readOnly: true });
    };
    // Interleaved one-block appends: each file's blocks alternate with the other's.
    const n = 4 * per + 200;
    tx = fs.cache.begin();
    for (let i = 0; i < n; i++) {
      await write(a.ino, i * bs, pattern(i, bs));
      await write(b.ino, i * bs, pattern(100000 + i, bs));
      if (i % 256 === 255) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    // Random overwrites and partial writes across the fragmented file.
    for (let i = 0; i < 200; i++) {
      await write(a.ino, (i * 7919 % n) * bs + (i % 3) * 100, pattern(500000 + i, 3000));
    }
    await tx.commit();
    assert.equal(await depthOf(a.ino), 2);
    await stage("depth 2");
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME });
    // Punch most of the middle: few extents are left, in two leaves that merge.
    tx = fs.cache.begin();
    await punchHole(ctx(), a.ino, 3 * bs + 17, (n - 6) * bs);
    const ma = models.get(a.ino)!;
    ma.fill(0, 3 * bs + 17, Math.min(ma.length, (n - 3) * bs + 17));
    await tx.commit();
    assert.ok(await depthOf(a.ino) <= 1);
    await stage("punched");
    tx = fs.cache.begin();
    await truncateFile(ctx(), b.ino, 2 * bs + 5);
    models.set(b.ino, models.get(b.ino)!.slice(0, 2 * bs + 5));
    await truncateFile(ctx(), a.ino, bs + 1);
    models.set(a.ino, models.get(a.ino)!.slice(0, bs + 1));
    await tx.commit();
    assert.equal(await depthOf(a.ino), 0);
    assert.equal(await depthOf(b.ino), 0);
    await stage("truncated");
  },
);

testWith(
  "sparse files at the top of the logical range: the last block (2^32 - 2 with 4 KiB blocks) is written and read back by the kernel; past s_maxbytes is EFBIG",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const bs = fs.sb.blockSize;
    const max = maxFileSize(fs.sb, "extents");
    assert.equal(max, (2 ** 32 - 1) * bs);
    let tx = fs.cache.begin();
    const { ino } = await createEmpty(fs, tx, "top");
    await tx.commit();
    tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME };
    const head = pattern(1, 5000);
    const tail = pattern(2, bs + 300);
    await writeFileRange(ctx, ino, 0, head);
    // The last byte a file may hold is max - 1: its block is 2^32 - 2.
    await writeFileRange(ctx, ino, max - tail.length, tail);
    const efbig = (e: Ext4Error) => e.errno === 27;
    await assert.rejects(() => writeFileRange(ctx, ino, max - 10, new Uint8Array(11)), efbig);
    await assert.rejects(() => writeFileRange(ctx, ino, max, new Uint8Array(1)), efbig);
    await assert.rejects(() => truncateFile(ctx, ino, max + 1), efbig);
    assert.equal(tx.state, "open", "EFBIG is refused before any change");
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/top.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      const st = await Deno.stat(`${mnt}/top`);
      assert.equal(st.size, max);
      assert.deepEqual(await kernelRead(`${mnt}/top`, 0, head.length), head);
      assert.deepEqual(await kernelRead(`${mnt}/top`, max - tail.length, tail.length + 10), tail);
      const mid = await kernelRead(`${mnt}/top`, 2 ** 40, 4096);
      assert.ok(mid.every((x) => x === 0), "the hole reads as zeros");
    }, { readOnly: true });
    // Truncating to the largest size keeps the last block; down to 0 frees it all.
    tx = fs.cache.begin();
    await truncateFile({ ...ctx, tx }, ino, max);
    await truncateFile({ ...ctx, tx }, ino, 0);
    await tx.commit();
    const again = await fsck(dir.path, fs.dev.bytes);
    assert.equal(again.code, 0, again.output);
  },
);

/** Block `i` of the kernel-written file: bytes (i + j) mod 256, as the Python writer makes them. */
function kernelBlock(i: number, bs: number): Uint8Array {
  const out = new Uint8Array(bs);
  for (let j = 0; j < bs; j++) out[j] = (i + j) & 0xff;
  return out;
}

const KERNEL_WRITER = `
import os, sys
mnt, n, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(mnt + "/frag", os.O_CREAT | os.O_WRONLY, 0o644)
for i in range(n):
    os.pwrite(fd, bytes((i + j) % 256 for j in range(256)) * (bs // 256), 2 * i * bs)
os.fsync(fd)
os.close(fd)
fd = os.open(mnt + "/prealloc", os.O_CREAT | os.O_WRONLY, 0o644)
os.posix_fallocate(fd, 0, 600 * bs)
for i in list(range(10, 20)) + list(range(300, 305)):
    os.pwrite(fd, bytes((i + j) % 256 for j in range(256)) * (bs // 256), i * bs)
os.fsync(fd)
os.close(fd)
`;
import type { OpContext } from "../lib/ext4/context.ts";

type KernelOp =
  | { kind: "write"; file: 0 | 1; block: number; skew: number; length: number; seed: number }
  | { kind: "punch"; file: 0 | 1; block: number; length: number }
  | { kind: "truncate"; file: 0 | 1; block: number };

testWith(
  "trees the kernel built (depth 2, unwritten extents) changed in place by ext4ts: e2fsck-clean and read back by the kernel",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"],
  async () => {
    await using dir = await tempDir();
    const bs = 4096;
    const n = 1700; // five full leaves and more: depth 2
    const path = `${dir.path}/kernel.img`;
    await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[2]));
    await Deno.writeTextFile(`${dir.path}/w.py`, KERNEL_WRITER);
    await withKernelMount(path, async (mnt) => {
      const r = await new Deno.Command("python3", {
        args: [`${dir.path}/w.py`, mnt, String(n), String(bs)],
      }).output();
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    });
    const image = await Deno.readFile(path);
    const base: Uint8Array[] = [new Uint8Array((2 * n - 1) * bs), new Uint8Array(600 * bs)];
    for (let i = 0; i < n; i++) base[0].set(kernelBlock(i, bs), 2 * i * bs);
    for (const i of [...Array(10).keys()].map((k) => k + 10).concat([300, 301, 302, 303, 304])) {
      base[1].set(kernelBlock(i, bs), i * bs);
    }
    const span = [2 * n, 600];
    const opArb: fc.Arbitrary<KernelOp> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant("write" as const),
          file: fc.constantFrom(0 as const, 1 as const),
          block: fc.nat(3500),
          skew: fc.nat(bs - 1),
          length: fc.integer({ min: 1, max: 40000 }),
          seed: fc.nat(),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("punch" as const),
          file: fc.constantFrom(0 as const, 1 as const),
          block: fc.nat(3500),
          length: fc.nat(1500 * bs),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("truncate" as const),
          file: fc.constantFrom(0 as const, 1 as const),
          block: fc.nat(3500),
        }),
      },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 10 }), async (ops) => {
        const fs = await loadFs(image);
        const names = ["frag", "prealloc"];
        // Inodes 12 and 13: the first files made in a fresh filesystem.
        const inos = [12, 13];
        const models = base.map((b) => Uint8Array.from(b));
        const tx = fs.cache.begin();
        const first = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, 12));
        assert.equal(first.block[6], 2, "the kernel's tree has depth 2");
        const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME };
        for (const op of ops) {
          const ino = inos[op.file];
          const m = models[op.file];
          const at = (op.block % (span[op.file] + 50)) * bs;
          if (op.kind === "write") {
            const data = pattern(op.seed, op.length);
            await writeFileRange(ctx, ino, at + op.skew, data);
            const out = new Uint8Array(Math.max(m.length, at + op.skew + data.length));
            out.set(m);
            out.set(data, at + op.skew);
            models[op.file] = out;
          } else if (op.kind === "punch") {
            await punchHole(ctx, ino, at, op.length);
            m.fill(0, at, Math.min(m.length, at + op.length));
          } else {
            await truncateFile(ctx, ino, at);
            const out = new Uint8Array(at);
            out.set(m.subarray(0, Math.min(m.length, at)));
            models[op.file] = out;
          }
        }
        await tx.commit();
        const check = await fsck(dir.path, fs.dev.bytes);
        assert.equal(check.code, 0, check.output + JSON.stringify(ops));
        const out = `${dir.path}/after.img`;
        await Deno.writeFile(out, fs.dev.bytes);
        await withKernelMount(out, async (mnt) => {
          for (let f = 0; f < 2; f++) {
            const got = await Deno.readFile(`${mnt}/${names[f]}`);
            assert.equal(got.length, models[f].length, `size of ${names[f]}`);
            assert.ok(got.every((x, i) => x === models[f][i]), `contents of ${names[f]}`);
          }
        }, { readOnly: true });
      }),
      { numRuns: 6 },
    );
  },
);

testWith(
  "block-map files (ext2) end where the kernel's s_bitmap_maxbytes says: the last byte is written and read back, one more is EFBIG",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[0]));
    const max = maxFileSize(fs.sb, "blockmap");
    // What the kernel answers on this layout (4 KiB blocks, no huge_file), found with pwrite.
    assert.equal(max, 2196873666560);
    let tx = fs.cache.begin();
    const ino = await fs.alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
    await writeTestInode(fs, tx, ino, {
      mode: 0o100644,
      size: 0,
      generation: 5,
      time: TIME,
      blocks512: 0,
      flags: 0,
      block: new Uint8Array(60),
    });
    await linkIntoRoot(fs, tx, "end", ino, DirFileType.REG_FILE);
    await tx.commit();
    tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME };
    const tail = pattern(3, 100);
    await writeFileRange(ctx, ino, max - tail.length, tail);
    await assert.rejects(
      () => writeFileRange(ctx, ino, max, new Uint8Array(1)),
      (e: Ext4Error) => e.errno === 27,
    );
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/end.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      assert.equal((await Deno.stat(`${mnt}/end`)).size, max);
      assert.deepEqual(await kernelRead(`${mnt}/end`, max - tail.length, 200), tail);
    }, { readOnly: true, type: "ext2" });
  },
);

testWith(
  "a sparse file of 28 000+ one-block extents (1 KiB blocks, depth 3) written, read back by the kernel, punched and truncated to depth 0, e2fsck-clean at each stage",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const bs = fs.sb.blockSize;
    const per = extentsPerBlock(bs);
    let tx = fs.cache.begin();
    const { ino } = await createEmpty(fs, tx, "deep");
    await tx.commit();
    const n = 4 * per * per + 100;
    let model = new Uint8Array((2 * n - 1) * bs);
    tx = fs.cache.begin();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME });
    for (let i = 0; i < n; i++) {
      const data = kernelBlock(i, bs);
      await writeFileRange(ctx(), ino, 2 * i * bs, data);
      model.set(data, 2 * i * bs);
      if (i % 4096 === 4095) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    await tx.commit();
    const depth = async () => {
      const t = fs.cache.begin();
      const f = decodeInode(fs.sb, await readInodeRaw(t, fs.sb, fs.gdt, ino));
      t.abort();
      return f.block[6];
    };
    const stage = async (name: string) => {
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, `${name}: ${check.output}`);
      const path = `${dir.path}/deep.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      const got = await withKernelMount(path, (mnt) => Deno.readFile(`${mnt}/deep`), {
        readOnly: true,
      });
      assert.equal(got.length, model.length, `${name}: size`);
      assert.ok(got.every((x, i) => x === model[i]), `${name}: contents`);
    };
    assert.equal(await depth(), 3);
    await stage("depth 3");
    tx = fs.cache.begin();
    await punchHole(ctx(), ino, 10 * bs, (2 * n - 30) * bs);
    model.fill(0, 10 * bs, (2 * n - 20) * bs);
    await tx.commit();
    assert.ok(await depth() <= 1);
    await stage("punched");
    tx = fs.cache.begin();
    await truncateFile(ctx(), ino, 3 * bs);
    model = model.slice(0, 3 * bs);
    await tx.commit();
    assert.equal(await depth(), 0);
    await stage("truncated");
  },
);
