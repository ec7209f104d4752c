/**
 * The arithmetic every directory block shares — a record's size, `rec_len` on disk (64 KiB
 * blocks), the per-inode metadata_csum seed — apart from the leaf codec (dirent.ts) and the
 * index codec (dx.ts), which both build on it.
 *
 * @module
 */

import { crc32cU32 } from "./checksum.ts";
import type { Superblock } from "./superblock.ts";

/** Header of a directory entry before its name. */
export const DIRENT_HEADER = 8;

/**
 * The space a directory entry with a name of `nameLen` bytes needs: 8-byte header plus the
 * name, rounded up to 4.
 *
 * @example
 * ```ts
 * import { dirRecLen } from "./dir_record.ts";
 * console.log(dirRecLen(1), dirRecLen(5)); // 12 16
 * ```
 */
export function dirRecLen(nameLen: number): number {
  return (DIRENT_HEADER + nameLen + 3) & ~3;
}

/**
 * Decodes an on-disk `rec_len`. On 64 KiB blocks a record spanning the whole block cannot be
 * written in 16 bits: 65535 (or 0) stands for the block size, and the low two bits carry
 * bits 16–17 of the length.
 *
 * @example
 * ```ts
 * import { recLenFromDisk } from "./dir_record.ts";
 * console.log(recLenFromDisk(4096, 4096), recLenFromDisk(0xffff, 65536)); // 4096 65536
 * ```
 */
export function recLenFromDisk(raw: number, blockSize: number): number {
  if (blockSize < 65536) return raw;
  if (raw === 0xffff || raw === 0) return blockSize;
  return (raw & 0xfffc) | ((raw & 3) << 16);
}

/**
 * Encodes a `rec_len` for the disk (the inverse of {@link recLenFromDisk}).
 *
 * @example
 * ```ts
 * import { recLenToDisk } from "./dir_record.ts";
 * console.log(recLenToDisk(65536, 65536).toString(16)); // ffff
 * ```
 */
export function recLenToDisk(len: number, blockSize: number): number {
  if (blockSize < 65536) return len;
  if (len === blockSize) return blockSize === 65536 ? 0xffff : 0;
  return (len & 0xfffc) | ((len >>> 16) & 3);
}

/**
 * The per-inode checksum seed of metadata_csum: crc32c of the inode number and generation,
 * continuing from the filesystem seed.
 *
 * @example
 * ```ts ignore
 * const seed = inodeChecksumSeed(sb, 2, 0);
 * ```
 */
export function inodeChecksumSeed(sb: Superblock, ino: number, generation: number): number {
  return crc32cU32(crc32cU32(sb.csumSeed, ino >>> 0), generation >>> 0);
}
