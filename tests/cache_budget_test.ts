import assert from "node:assert/strict";
import {
  blocksWithin,
  blockWeight,
  CACHE_CEILING_BYTES,
  CACHE_FLOOR_BYTES,
  cacheBytesForMachine,
  DEFAULT_CACHE_BYTES,
  MIB,
  splitCacheBudget,
} from "../lib/block/cache_budget.ts";

Deno.test("the machine-sized cache budget is 1/64 of available memory between floor and ceiling", () => {
  assert.equal(cacheBytesForMachine(undefined), DEFAULT_CACHE_BYTES);
  assert.equal(cacheBytesForMachine(0), DEFAULT_CACHE_BYTES);
  assert.equal(cacheBytesForMachine(64 * MIB), CACHE_FLOOR_BYTES);
  assert.equal(cacheBytesForMachine(1024 * MIB), 16 * MIB);
  assert.equal(cacheBytesForMachine(64 * 1024 * MIB), CACHE_CEILING_BYTES);
});

Deno.test("the budget's shares add up, and a small filesystem caps it", () => {
  const big = splitCacheBudget(32 * MIB, { blockSize: 4096, blocksCount: 1 << 22 });
  assert.equal(big.total, 32 * MIB);
  const parts = big.blocks + big.pinned + big.inodes + big.lookups + big.maps + big.xattrs +
    big.nameMaps;
  assert.ok(parts <= big.total && parts > big.total - 16, `${parts} of ${big.total}`);
  // 16 MiB filesystem: at most an eighth of it (but 1 MiB at the least).
  assert.equal(splitCacheBudget(32 * MIB, { blockSize: 4096, blocksCount: 4096 }).total, 2 * MIB);
  assert.equal(splitCacheBudget(32 * MIB, { blockSize: 1024, blocksCount: 1024 }).total, MIB);
});

Deno.test("block counts follow from bytes and the block size", () => {
  // The same bytes hold four times as many 1 KiB blocks as 4 KiB blocks (bookkeeping aside).
  const small = blocksWithin(8 * MIB, 1024);
  const large = blocksWithin(8 * MIB, 4096);
  assert.equal(small, Math.floor(8 * MIB / blockWeight(1024)));
  assert.ok(small > 3 * large && small < 4 * large);
  // 64 KiB blocks: a count-based cache of 8192 blocks would have held 512 MiB.
  assert.ok(blocksWithin(8 * MIB, 65536) * 65536 <= 8 * MIB);
  assert.equal(blocksWithin(0, 4096), 16, "at least 16 blocks");
});
