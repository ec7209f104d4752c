/**
 * Inline data (the inline_data feature): small files and directories kept inside the inode.
 * The first 60 bytes live in `i_block`; anything beyond lives in the value of the in-inode
 * xattr "system.data" (index 7, name "data"), which exists (possibly empty) on every inode
 * with the INLINE_DATA flag.
 *
 * Inline directories are parsed by {@link parseInlineDirectory} (re-exported here from
 * lib/ondisk/dirent.ts): `i_block` starts with the parent's inode number, then entries; the
 * system.data value holds more entries.
 *
 * @module
 */

import { CorruptError } from "../errors.ts";
import type { Superblock } from "./superblock.ts";
import { parseInodeXattrs, XattrIndex } from "./xattr.ts";

export { parseInlineDirectory } from "./dirent.ts";

/** Bytes of inline data held in `i_block`. */
export const INLINE_IBLOCK_BYTES = 60;
/** The inode flag of inline data. */
export const INLINE_DATA_FL = 0x10000000;
const I_BLOCK = 0x28;
const I_FLAGS = 0x20;
const SYSTEM_DATA = new TextEncoder().encode("data");

/**
 * True when a raw inode has the INLINE_DATA flag.
 *
 * @example
 * ```ts
 * import { hasInlineData } from "./inline_data.ts";
 * console.log(hasInlineData(new Uint8Array(256))); // false
 * ```
 */
export function hasInlineData(inodeBytes: Uint8Array): boolean {
  const v = new DataView(inodeBytes.buffer, inodeBytes.byteOffset, inodeBytes.byteLength);
  return (v.getUint32(I_FLAGS, true) & INLINE_DATA_FL) !== 0;
}

/**
 * The value of the system.data xattr of a raw inode, or null when there is none.
 *
 * @example
 * ```ts ignore
 * const extra = parseInlineDataXattr(sb, ino, inodeBytes);
 * ```
 */
export function parseInlineDataXattr(
  sb: Superblock,
  ino: number,
  inodeBytes: Uint8Array,
): Uint8Array | null {
  for (const e of parseInodeXattrs(sb, ino, inodeBytes)) {
    if (
      e.index === XattrIndex.SYSTEM && e.suffix.length === SYSTEM_DATA.length &&
      e.suffix.every((b, i) => b === SYSTEM_DATA[i])
    ) {
      if (e.valueInum !== 0) {
        throw new CorruptError(`inode ${ino}`, "system.data stored in an EA inode");
      }
      return e.value;
    }
  }
  return null;
}

/**
 * All inline data of a raw inode: the 60 bytes of `i_block` followed by the system.data
 * value. This is `DirectorySource.inlineData` for an inline directory.
 *
 * @example
 * ```ts ignore
 * const data = readInlineData(sb, ino, inodeBytes);
 * ```
 */
export function readInlineData(sb: Superblock, ino: number, inodeBytes: Uint8Array): Uint8Array {
  if (inodeBytes.length < I_BLOCK + INLINE_IBLOCK_BYTES) {
    throw new CorruptError(`inode ${ino}`, `record of ${inodeBytes.length} bytes is too short`);
  }
  const extra = parseInlineDataXattr(sb, ino, inodeBytes);
  const out = new Uint8Array(INLINE_IBLOCK_BYTES + (extra?.length ?? 0));
  out.set(inodeBytes.subarray(I_BLOCK, I_BLOCK + INLINE_IBLOCK_BYTES));
  if (extra) out.set(extra, INLINE_IBLOCK_BYTES);
  return out;
}

/**
 * The contents of an inline *file* of `size` bytes (`i_size`). A size beyond the inline
 * data is a {@link CorruptError}, as the kernel refuses to read it.
 *
 * @example
 * ```ts ignore
 * const bytes = readInlineFile(sb, ino, inodeBytes, size);
 * ```
 */
export function readInlineFile(
  sb: Superblock,
  ino: number,
  inodeBytes: Uint8Array,
  size: number,
): Uint8Array {
  const data = readInlineData(sb, ino, inodeBytes);
  if (size > data.length) {
    throw new CorruptError(
      `inline data of inode ${ino}`,
      `i_size ${size} exceeds the ${data.length} inline bytes`,
    );
  }
  return data.slice(0, size);
}
