/**
 * Property tests: the extent-tree and block-map walkers over arbitrary bytes either return
 * a sorted, non-overlapping run list inside the filesystem or throw CorruptError, always in
 * bounded time.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { readExtentTree } from "../lib/ext4/extents.ts";
import { readBlockMap } from "../lib/ext4/indirect.ts";
import { CorruptError } from "../lib/errors.ts";
import type { BlockRun } from "../lib/ext4/file_map.ts";
import type { Superblock } from "../lib/ondisk/superblock.ts";

const BS = 1024;
const BLOCKS = 24; // blocks held in the test "disk"; the rest read as zeros
const FS_BLOCKS = 200;
const ZERO = new Uint8Array(BS);
const sb = {
  blocksCount: FS_BLOCKS,
  firstDataBlock: 1,
  hasMetadataCsum: false,
  blockSize: BS,
  csumSeed: 0,
} as unknown as Superblock;

function checkRuns(runs: BlockRun[]): void {
  let end = -1;
  for (const r of runs) {
    assert.ok(r.length > 0 && r.logical > end - 1 && r.logical >= end);
    assert.ok(r.physical >= 1 && r.physical + r.length <= FS_BLOCKS);
    end = r.logical + r.length;
  }
}

/** Small blocks filled with plausible extent headers or random bytes. */
const disk = fc.array(
  fc.oneof(
    fc.uint8Array({ minLength: BS, maxLength: BS }),
    fc.tuple(
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 5 }),
      fc.array(fc.integer({ min: 0, max: 80 }), { minLength: 30, maxLength: 30 }),
    ).map(([entries, depth, words]) => {
      const b = new Uint8Array(BS);
      const v = new DataView(b.buffer);
      v.setUint16(0, 0xf30a, true);
      v.setUint16(2, entries, true);
      v.setUint16(4, 84, true);
      v.setUint16(6, depth, true);
      words.forEach((w, i) => v.setUint32(12 + 4 * i, w, true));
      return b;
    }),
  ),
  { minLength: BLOCKS, maxLength: BLOCKS },
);

Deno.test("extent tree walker: runs or CorruptError for arbitrary trees", async () => {
  let mapped = 0;
  await fc.assert(
    fc.asyncProperty(disk, fc.integer({ min: 0, max: BLOCKS - 1 }), async (blocks, rootFrom) => {
      const root = blocks[rootFrom].slice(0, 60);
      root[4] = 4; // eh_max of an i_block root
      root[5] = 0;
      if (root[2] > 4) root[2] = 4;
      try {
        const runs = await readExtentTree(
          sb,
          { ino: 12, generation: 0, iBlock: root },
          (b) => Promise.resolve(blocks[b] ?? ZERO),
        );
        checkRuns(runs);
        if (runs.length > 0) mapped++;
      } catch (e) {
        if (!(e instanceof CorruptError)) throw e;
      }
    }),
    { numRuns: 600, seed: 42 },
  );
  assert.ok(mapped > 10, `only ${mapped} trees mapped anything: the property is vacuous`);
});

Deno.test("block map walker: runs or CorruptError for arbitrary maps", async () => {
  let mapped = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ minLength: BS, maxLength: BS }), {
        minLength: BLOCKS,
        maxLength: BLOCKS,
      }),
      fc.uint8Array({ minLength: 60, maxLength: 60 }),
      fc.integer({ min: 0, max: 2 ** 40 }),
      async (blocks, iBlock, size) => {
        // Keep pointers small so some walks succeed.
        const ib = iBlock.map((x, i) => (i % 4 === 0 ? x % 30 : 0));
        const bl = blocks.map((b) => b.map((x, i) => (i % 4 === 0 ? x % 30 : 0)));
        try {
          const runs = await readBlockMap(
            sb,
            { ino: 12, iBlock: ib, size },
            (b) => Promise.resolve(bl[b] ?? ZERO),
          );
          checkRuns(runs);
          if (runs.length > 0) mapped++;
        } catch (e) {
          if (!(e instanceof CorruptError)) throw e;
        }
      },
    ),
    { numRuns: 300, seed: 7 },
  );
  assert.ok(mapped > 10, `only ${mapped} maps mapped anything: the property is vacuous`);
});
