/**
 * The contents of inodes that are not regular files or directories: symlinks (fast, target
 * in `i_block`; slow, target in a data block) and device numbers of character and block
 * devices (old and new encodings, as the kernel writes them). FIFOs and sockets have none.
 *
 * @module
 */

import type { Allocator } from "./alloc.ts";
import { Ext4Error } from "../errors.ts";
import { type NewFileData, writeNewFileData } from "./file_write.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/** Longest target kept in `i_block` (the kernel stores it with its NUL in 60 bytes). */
export const FAST_SYMLINK_MAX = 59;
/** Longest symlink target: PATH_MAX without its NUL (and at most a block less one byte). */
export const SYMLINK_MAX = 4095;

/**
 * The mapping fields of a new symlink to `target`: fast (in `i_block`) when it fits, else a
 * data block (extents where the filesystem has them). The inode's size is `target.length`.
 *
 * @example
 * ```ts ignore
 * const link = await symlinkData(tx, alloc, sb, { ino, generation, target: enc.encode("/etc") });
 * ```
 */
export async function symlinkData(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  options: { ino: number; generation: number; target: Uint8Array },
): Promise<NewFileData> {
  const { target } = options;
  if (target.length === 0 || target.length > Math.min(SYMLINK_MAX, sb.blockSize - 1)) {
    throw new Ext4Error("NAME_TOO_LONG", `symlink target of ${target.length} bytes`);
  }
  if (target.includes(0)) throw new Ext4Error("INVALID", "a symlink target cannot hold NUL");
  if (target.length <= FAST_SYMLINK_MAX) {
    const iBlock = new Uint8Array(60);
    iBlock.set(target);
    return { iBlock, flags: 0, blocks512: 0, extents: [], mapBlocks: [] };
  }
  return await writeNewFileData(tx, alloc, sb, {
    ino: options.ino,
    generation: options.generation,
    data: target,
  });
}

/**
 * `i_block` of a character or block device: the old 16-bit encoding in word 0 when major
 * and minor are below 256, else the new 32-bit one in word 1.
 *
 * @example
 * ```ts
 * import { deviceBlock } from "./special.ts";
 * console.log(new DataView(deviceBlock(8, 1).buffer).getUint32(0, true)); // 2049
 * ```
 */
export function deviceBlock(major: number, minor: number): Uint8Array {
  if (
    !Number.isInteger(major) || !Number.isInteger(minor) || major < 0 || minor < 0 ||
    major > 0xfff || minor > 0xfffff
  ) {
    throw new Ext4Error("INVALID", `device number ${major}:${minor} is out of range`);
  }
  const iBlock = new Uint8Array(60);
  const v = new DataView(iBlock.buffer);
  if (major < 256 && minor < 256) v.setUint32(0, (major << 8) | minor, true);
  else v.setUint32(4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  return iBlock;
}

/** Inverse of {@link deviceBlock}. */
export function decodeDeviceBlock(iBlock: Uint8Array): { major: number; minor: number } {
  const v = new DataView(iBlock.buffer, iBlock.byteOffset, iBlock.byteLength);
  const old = v.getUint32(0, true);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const dev = v.getUint32(4, true);
  return { major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}
