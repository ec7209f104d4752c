import assert from "node:assert/strict";
import { readExtentTree } from "../lib/ext4/extents.ts";
import { readBlockMap } from "../lib/ext4/indirect.ts";
import { readMapped, seekRuns } from "../lib/ext4/file_map.ts";
import { CorruptError } from "../lib/errors.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import type { Superblock } from "../lib/ondisk/superblock.ts";

const BS = 1024;
const fakeSb = (blocks = 4096) =>
  ({
    blocksCount: blocks,
    firstDataBlock: 1,
    hasMetadataCsum: false,
    blockSize: BS,
    csumSeed: 0,
  }) as unknown as Superblock;

function header(node: Uint8Array, entries: number, max: number, depth: number): DataView {
  const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
  v.setUint16(0, 0xf30a, true);
  v.setUint16(2, entries, true);
  v.setUint16(4, max, true);
  v.setUint16(6, depth, true);
  return v;
}
function leaf(v: DataView, k: number, lblk: number, len: number, pblk: number): void {
  const e = 12 + 12 * k;
  v.setUint32(e, lblk, true);
  v.setUint16(e + 4, len, true);
  v.setUint16(e + 6, Math.floor(pblk / 2 ** 32), true);
  v.setUint32(e + 8, pblk % 2 ** 32, true);
}
function index(v: DataView, k: number, lblk: number, child: number): void {
  const e = 12 + 12 * k;
  v.setUint32(e, lblk, true);
  v.setUint32(e + 4, child, true);
  v.setUint16(e + 8, 0, true);
}

Deno.test("extent tree of depth 2 maps leaves in order, unwritten flagged", async () => {
  const blocks = new Map<number, Uint8Array>();
  const root = new Uint8Array(60);
  index(header(root, 2, 4, 2), 0, 0, 100);
  index(new DataView(root.buffer), 1, 1000, 101);
  const mid0 = new Uint8Array(BS);
  index(header(mid0, 2, 84, 1), 0, 0, 200);
  index(new DataView(mid0.buffer), 1, 500, 201);
  const mid1 = new Uint8Array(BS);
  index(header(mid1, 1, 84, 1), 0, 1000, 202);
  const l0 = new Uint8Array(BS);
  leaf(header(l0, 2, 84, 0), 0, 0, 10, 300);
  leaf(new DataView(l0.buffer), 1, 20, 32768 + 5, 400); // unwritten
  const l1 = new Uint8Array(BS);
  leaf(header(l1, 1, 84, 0), 0, 500, 3, 500);
  const l2 = new Uint8Array(BS);
  leaf(header(l2, 1, 84, 0), 0, 1000, 32768, 1000); // exactly 32768 initialized blocks
  for (const [b, d] of [[100, mid0], [101, mid1], [200, l0], [201, l1], [202, l2]] as const) {
    blocks.set(b, d);
  }
  const runs = await readExtentTree(
    fakeSb(100000),
    { ino: 12, generation: 0, iBlock: root },
    (b) => Promise.resolve(blocks.get(b)!),
  );
  assert.deepEqual(runs, [
    { logical: 0, physical: 300, length: 10, unwritten: false },
    { logical: 20, physical: 400, length: 5, unwritten: true },
    { logical: 500, physical: 500, length: 3, unwritten: false },
    { logical: 1000, physical: 1000, length: 32768, unwritten: false },
  ]);
});

Deno.test("extent tree cycles, bad magic, bad depth and out-of-range blocks are CORRUPT", async () => {
  const root = new Uint8Array(60);
  index(header(root, 1, 4, 1), 0, 0, 100);
  const selfRef = new Uint8Array(BS);
  index(header(selfRef, 1, 84, 1), 0, 0, 100); // depth does not decrease
  await assert.rejects(
    readExtentTree(
      fakeSb(),
      { ino: 5, generation: 0, iBlock: root },
      () => Promise.resolve(selfRef),
    ),
    CorruptError,
  );
  const bad = new Uint8Array(60);
  await assert.rejects(
    readExtentTree(fakeSb(), { ino: 5, generation: 0, iBlock: bad }, () => Promise.resolve(bad)),
    /bad magic/,
  );
  const far = new Uint8Array(60);
  leaf(header(far, 1, 4, 0), 0, 0, 10, 5000);
  await assert.rejects(
    readExtentTree(fakeSb(), { ino: 5, generation: 0, iBlock: far }, () => Promise.resolve(far)),
    /outside the filesystem/,
  );
  const overlap = new Uint8Array(60);
  const v = header(overlap, 2, 4, 0);
  leaf(v, 0, 0, 10, 50);
  leaf(v, 1, 5, 10, 80);
  await assert.rejects(
    readExtentTree(
      fakeSb(),
      { ino: 5, generation: 0, iBlock: overlap },
      () => Promise.resolve(overlap),
    ),
    /overlapping/,
  );
  // A cycle at equal depth: two index entries pointing to the same child.
  const twice = new Uint8Array(60);
  const tv = header(twice, 2, 4, 1);
  index(tv, 0, 0, 100);
  index(tv, 1, 10, 100);
  const child = new Uint8Array(BS);
  leaf(header(child, 1, 84, 0), 0, 0, 1, 60);
  await assert.rejects(
    readExtentTree(
      fakeSb(),
      { ino: 5, generation: 0, iBlock: twice },
      () => Promise.resolve(child),
    ),
    /referenced twice/,
  );
});

Deno.test("block map: direct, single, double and triple indirect with holes", async () => {
  const per = BS / 4;
  const blocks = new Map<number, Uint8Array>();
  const iBlock = new Uint8Array(60);
  const iv = new DataView(iBlock.buffer);
  iv.setUint32(0, 10, true);
  iv.setUint32(4, 11, true); // contiguous with 10
  // block 2..11: holes
  iv.setUint32(12 * 4, 20, true); // single indirect
  const ind = new Uint8Array(BS);
  new DataView(ind.buffer).setUint32(4 * 3, 30, true); // logical 12+3
  blocks.set(20, ind);
  iv.setUint32(13 * 4, 21, true); // double
  const dind = new Uint8Array(BS);
  new DataView(dind.buffer).setUint32(4 * 1, 22, true);
  blocks.set(21, dind);
  const dind1 = new Uint8Array(BS);
  new DataView(dind1.buffer).setUint32(0, 40, true); // logical 12+per+per*1+0
  blocks.set(22, dind1);
  iv.setUint32(14 * 4, 23, true); // triple
  const t = new Uint8Array(BS);
  new DataView(t.buffer).setUint32(0, 24, true);
  blocks.set(23, t);
  const t1 = new Uint8Array(BS);
  new DataView(t1.buffer).setUint32(0, 25, true);
  blocks.set(24, t1);
  const t2 = new Uint8Array(BS);
  new DataView(t2.buffer).setUint32(4 * 2, 50, true); // logical 12+per+per^2+2
  blocks.set(25, t2);
  const tripleBase = 12 + per + per * per;
  const size = (tripleBase + 3) * BS;
  const runs = await readBlockMap(
    fakeSb(),
    { ino: 12, iBlock, size },
    (b) => Promise.resolve(blocks.get(b)!),
  );
  assert.deepEqual(runs, [
    { logical: 0, physical: 10, length: 2, unwritten: false },
    { logical: 15, physical: 30, length: 1, unwritten: false },
    { logical: 12 + per + per, physical: 40, length: 1, unwritten: false },
    { logical: tripleBase + 2, physical: 50, length: 1, unwritten: false },
  ]);
  // A size that ends before the triple-indirect part never reads it.
  const short = await readBlockMap(
    fakeSb(),
    { ino: 12, iBlock, size: 16 * BS },
    (b) => {
      assert.ok(b === 20, `unexpected read of block ${b}`);
      return Promise.resolve(blocks.get(b)!);
    },
  );
  assert.equal(short.length, 2);
  // Indirect cycles are refused.
  const loop = new Uint8Array(BS);
  new DataView(loop.buffer).setUint32(0, 21, true);
  await assert.rejects(
    readBlockMap(
      fakeSb(),
      { ino: 12, iBlock, size },
      (b) => Promise.resolve(b === 21 ? loop : blocks.get(b)!),
    ),
    CorruptError,
  );
});

Deno.test("readMapped reads runs, holes and unwritten as zeros, short at EOF", async () => {
  const disk = new Uint8Array(64 * BS);
  for (let i = 0; i < disk.length; i++) disk[i] = (i / BS) & 0xff;
  const dev = new MemoryBlockDevice(disk);
  const runs = [
    { logical: 0, physical: 5, length: 2, unwritten: false },
    { logical: 4, physical: 7, length: 1, unwritten: false },
    { logical: 5, physical: 9, length: 1, unwritten: true },
  ];
  const size = 6 * BS + 100;
  const all = await readMapped(dev, BS, runs, size, 0, 1 << 20, "test");
  assert.equal(all.length, size);
  assert.equal(all[0], 5);
  assert.equal(all[BS + 1], 6);
  assert.equal(all[2 * BS], 0); // hole
  assert.equal(all[4 * BS + 3], 7);
  assert.equal(all[5 * BS], 0); // unwritten
  assert.equal(all[6 * BS + 50], 0); // past last run
  const mid = await readMapped(dev, BS, runs, size, BS - 2, 4, "test");
  assert.deepEqual([...mid], [5, 5, 6, 6]);
  assert.equal((await readMapped(dev, BS, runs, size, size, 10, "test")).length, 0);
  assert.equal(seekRuns(runs, BS, size, 2 * BS, "data"), 4 * BS);
  assert.equal(seekRuns(runs, BS, size, 0, "hole"), 2 * BS);
  assert.equal(seekRuns(runs, BS, size, 4 * BS, "hole"), 5 * BS);
  assert.equal(seekRuns(runs, BS, size, 6 * BS, "data"), -1);
});

Deno.test("extent and index pointers above 2^32 (64bit filesystems)", async () => {
  const high = 2 ** 32 + 12345;
  const root = new Uint8Array(60);
  const rv = header(root, 1, 4, 1);
  rv.setUint32(12, 0, true);
  rv.setUint32(16, (high + 1) % 2 ** 32, true); // ei_leaf_lo
  rv.setUint16(20, Math.floor((high + 1) / 2 ** 32), true); // ei_leaf_hi
  const leafBlock = new Uint8Array(BS);
  leaf(header(leafBlock, 1, 84, 0), 0, 7, 3, high);
  const reads: number[] = [];
  const runs = await readExtentTree(
    fakeSb(2 ** 33),
    { ino: 12, generation: 0, iBlock: root },
    (b) => {
      reads.push(b);
      return Promise.resolve(leafBlock);
    },
  );
  assert.deepEqual(reads, [high + 1]);
  assert.deepEqual(runs, [{ logical: 7, physical: high, length: 3, unwritten: false }]);
});
