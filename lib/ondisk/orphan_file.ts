/**
 * The orphan file (compat feature orphan_file, e2fsprogs 1.47+): a special inode, named by
 * the superblock's `s_orphan_file_inum`, whose blocks each hold an array of 32-bit inode
 * numbers (0 = free slot) and end in an 8-byte tail: the magic 0x0b10ca04 and, under
 * metadata_csum, a crc32c of the orphan file's inode number and generation, the block's
 * (physical, 64-bit) number and the slots. The ro_compat flag orphan_present says entries
 * may exist. Shared by the write path (lib/orphan_write.ts) and the cleanup after journal
 * replay (lib/ext4/orphans_replay.ts).
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import type { Superblock } from "./superblock.ts";

/** `ob_magic` of an orphan file block's tail. */
export const ORPHAN_BLOCK_MAGIC = 0x0b10ca04;

/** Bytes of the tail (magic, checksum) at the end of each orphan file block. */
export const ORPHAN_BLOCK_TAIL = 8;

/**
 * Inode slots in one orphan file block.
 *
 * @example
 * ```ts ignore
 * orphanSlotsPerBlock(sb); // 1022 with 4 KiB blocks
 * ```
 */
export function orphanSlotsPerBlock(sb: Superblock): number {
  return (sb.blockSize - ORPHAN_BLOCK_TAIL) / 4;
}

/**
 * The checksum of orphan file block `blk` (its physical number) with contents `b`, for the
 * orphan file inode `file` (number and generation).
 *
 * @example
 * ```ts ignore
 * const sum = orphanBlockChecksum(sb, { ino: 12, gen }, blk, block);
 * ```
 */
export function orphanBlockChecksum(
  sb: Superblock,
  file: { ino: number; gen: number },
  blk: number,
  b: Uint8Array,
): number {
  const le64 = new Uint8Array(8);
  const v = new DataView(le64.buffer);
  v.setUint32(0, blk % 2 ** 32, true);
  v.setUint32(4, Math.floor(blk / 2 ** 32), true);
  let c = crc32cU32(sb.csumSeed, file.ino);
  c = crc32cU32(c, file.gen);
  c = crc32c(c, le64);
  return crc32c(c, b.subarray(0, b.length - ORPHAN_BLOCK_TAIL));
}
