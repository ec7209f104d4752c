/**
 * How much memory the caches of one filesystem object may hold, in bytes, and how it is shared
 * out: metadata blocks, decoded inode records, block maps, lookups, xattr maps, name maps of
 * large unindexed directories, and journal images logged but not yet written home.
 *
 * The total comes from the machine ({@link cacheBytesForMachine}: a fraction of the memory
 * available, between a floor and a ceiling, as fuse2fs sizes its disk cache) or from the user
 * (the mount option `cache_size=`, fuse2fs's name), and is capped by what the filesystem could
 * fill ({@link splitCacheBudget}). Counts follow from bytes: a cache of 4 KiB blocks holds a
 * quarter as many blocks as one of 1 KiB blocks.
 *
 * @module
 */

/** One mebibyte. */
export const MIB = 1024 * 1024;
/** The smallest total a machine-sized budget gets. */
export const CACHE_FLOOR_BYTES = 4 * MIB;
/** The largest total a machine-sized budget gets (fuse2fs's default disk cache is 32 MiB). */
export const CACHE_CEILING_BYTES = 32 * MIB;
/** The total when nothing says otherwise (a library open that knows nothing of the machine). */
export const DEFAULT_CACHE_BYTES = 16 * MIB;
/** The share of the machine's available memory a machine-sized budget takes (1/64). */
const MACHINE_SHARE = 64;

/** Bytes each cache of a filesystem object may hold (see {@link splitCacheBudget}). */
export interface CacheBudget {
  /** The whole budget. */
  total: number;
  /** Metadata blocks: inode tables, directories, bitmaps, extent and indirect blocks. */
  blocks: number;
  /** Decoded inode records. */
  inodes: number;
  /** Successful name lookups. */
  lookups: number;
  /** Block maps (run lists) of files. */
  maps: number;
  /** Xattr maps. */
  xattrs: number;
  /** Name maps of large unindexed directories. */
  nameMaps: number;
  /** Journal images committed but not yet written home (pinned until a checkpoint). */
  pinned: number;
}

/**
 * Estimated bytes one cached block costs: its image plus the JavaScript objects around it
 * (Uint8Array, ArrayBuffer, map entry; measured ~250 bytes on Deno 2.9).
 *
 * @example
 * ```ts
 * import { blockWeight } from "./cache_budget.ts";
 * console.log(blockWeight(4096)); // 4346
 * ```
 */
export function blockWeight(blockSize: number): number {
  return blockSize + 250;
}

/**
 * The machine-sized total: 1/64 of `availableBytes` (the kernel's MemAvailable) between
 * {@link CACHE_FLOOR_BYTES} and {@link CACHE_CEILING_BYTES}; {@link DEFAULT_CACHE_BYTES} when
 * the available memory is unknown.
 *
 * @example
 * ```ts
 * import { cacheBytesForMachine, MIB } from "./cache_budget.ts";
 * console.log(cacheBytesForMachine(512 * MIB) / MIB); // 8
 * console.log(cacheBytesForMachine(64 * 1024 * MIB) / MIB); // 32
 * ```
 */
export function cacheBytesForMachine(availableBytes: number | undefined): number {
  if (availableBytes === undefined || !(availableBytes > 0)) return DEFAULT_CACHE_BYTES;
  const share = Math.floor(availableBytes / MACHINE_SHARE);
  return Math.min(CACHE_CEILING_BYTES, Math.max(CACHE_FLOOR_BYTES, share));
}

/**
 * Shares `totalBytes` out between the caches of a filesystem of `blocksCount` blocks of
 * `blockSize` bytes. The total is first capped at an eighth of the filesystem's size (at least
 * 1 MiB): a small filesystem's metadata never fills a large cache. Then 40% for metadata
 * blocks, 25% for pinned journal images, 13% for inode records, 10% for block maps (a file of
 * many extents has a long one), 5% for each of lookups and name maps, 2% for xattr maps.
 *
 * @example
 * ```ts
 * import { MIB, splitCacheBudget } from "./cache_budget.ts";
 * const b = splitCacheBudget(32 * MIB, { blockSize: 4096, blocksCount: 1 << 20 });
 * console.log(b.blocks / MIB, b.pinned / MIB); // 12.8 8
 * console.log(splitCacheBudget(32 * MIB, { blockSize: 1024, blocksCount: 4096 }).total / MIB); // 1
 * ```
 */
export function splitCacheBudget(
  totalBytes: number,
  fs: { blockSize: number; blocksCount: number },
): CacheBudget {
  const cap = Math.max(MIB, Math.floor((fs.blockSize * fs.blocksCount) / 8));
  const total = Math.max(0, Math.min(totalBytes, cap));
  const part = (share: number) => Math.floor(total * share);
  return {
    total,
    blocks: part(0.40),
    pinned: part(0.25),
    inodes: part(0.13),
    lookups: part(0.05),
    maps: part(0.10),
    xattrs: part(0.02),
    nameMaps: part(0.05),
  };
}

/**
 * How many blocks of `blockSize` bytes fit in `bytes` of cache, each costing
 * {@link blockWeight} (at least 16, what a block cache keeps at the least).
 *
 * @example
 * ```ts
 * import { blocksWithin, MIB } from "./cache_budget.ts";
 * console.log(blocksWithin(4 * MIB, 4096)); // 965
 * ```
 */
export function blocksWithin(bytes: number, blockSize: number): number {
  return Math.max(16, Math.floor(bytes / blockWeight(blockSize)));
}
