/**
 * Encoding extended attributes for the write path: entry and block hashes as the kernel
 * computes them (`ext4_xattr_hash_entry`, `ext4_xattr_rehash`), the kernel's entry order,
 * laying entries out in the in-inode area or an xattr block (entries from the start, values
 * from the end), and comparing a set of attributes with a block's.
 *
 * Parsing is the reader's (lib/xattr.ts); this is its inverse.
 *
 * @module
 */

import type { Superblock } from "./superblock.ts";
import { XATTR_MAGIC, xattrBlockChecksum } from "./xattr.ts";

/** Size of the xattr block header. */
export const XATTR_BLOCK_HEADER_SIZE = 32;
/** Size of an entry before its name. */
export const XATTR_ENTRY_HEADER_SIZE = 16;
/** Most inodes that may share one xattr block (the kernel's EXT4_XATTR_REFCOUNT_MAX). */
export const XATTR_REFCOUNT_MAX = 1024;

/** An attribute as stored: name index, name suffix, value bytes (ACLs in ext4's format). */
export interface StoredXattr {
  /** `e_name_index`, e.g. 1 for "user.". */
  index: number;
  /** The name without its prefix. */
  suffix: Uint8Array;
  /** The value as stored on disk. */
  value: Uint8Array;
}

/**
 * The hash of one entry: the name, then the value in little-endian 32-bit words (zero
 * padded). Name bytes count as unsigned chars, as the kernel computes it since 6.2 for every
 * filesystem (checked against a kernel-made block); `signed` gives the legacy variant of
 * kernels built with signed chars, which e2fsck also accepts.
 *
 * @example
 * ```ts
 * import { xattrEntryHash } from "./xattr_block.ts";
 * console.log(xattrEntryHash(new TextEncoder().encode("a"), new Uint8Array(0))); // 97
 * ```
 */
export function xattrEntryHash(suffix: Uint8Array, value: Uint8Array, signed = false): number {
  let h = 0;
  for (const b of suffix) {
    const c = signed && b >= 128 ? b - 256 : b;
    h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  }
  const words = (value.length + 3) >>> 2;
  for (let i = 0; i < words; i++) {
    const o = 4 * i;
    const w = (value[o] | ((value[o + 1] ?? 0) << 8) | ((value[o + 2] ?? 0) << 16) |
      ((value[o + 3] ?? 0) << 24)) >>> 0;
    h = ((h << 16) ^ (h >>> 16) ^ w) >>> 0;
  }
  return h;
}

/**
 * The block hash `h_hash` from the entry hashes in block order (`ext4_xattr_rehash`); 0 when
 * an entry hash is 0, which the kernel reads as "never share this block".
 *
 * @example
 * ```ts
 * import { xattrBlockHash } from "./xattr_block.ts";
 * console.log(xattrBlockHash([5])); // 5
 * ```
 */
export function xattrBlockHash(entryHashes: number[]): number {
  let h = 0;
  for (const eh of entryHashes) {
    if (eh === 0) return 0;
    h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
  }
  return h;
}

/**
 * The order of entries in an xattr block (the kernel's sorted search): by name index, name
 * length, then name bytes.
 *
 * @example
 * ```ts ignore
 * entries.sort(compareXattrs);
 * ```
 */
export function compareXattrs(
  a: { index: number; suffix: Uint8Array },
  b: { index: number; suffix: Uint8Array },
): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.suffix.length !== b.suffix.length) return a.suffix.length - b.suffix.length;
  for (let i = 0; i < a.suffix.length; i++) {
    if (a.suffix[i] !== b.suffix[i]) return a.suffix[i] - b.suffix[i];
  }
  return 0;
}

/**
 * Bytes an attribute takes: its entry (header + name, 4-aligned) and its value (4-aligned).
 *
 * @example
 * ```ts
 * import { xattrSpace } from "./xattr_block.ts";
 * console.log(xattrSpace({ index: 1, suffix: new Uint8Array(1), value: new Uint8Array(5) })); // 28
 * ```
 */
export function xattrSpace(e: StoredXattr): number {
  return ((XATTR_ENTRY_HEADER_SIZE + e.suffix.length + 3) & ~3) + ((e.value.length + 3) & ~3);
}

/**
 * Writes `entries` at `entriesAt` (then the zero terminator) and their values down from
 * `end`, value offsets relative to `base`; entry hashes when `hashes` (blocks), else 0 (the
 * in-inode area, as the kernel leaves them). Returns the entry hashes. The caller has
 * checked that everything fits.
 *
 * @example
 * ```ts ignore
 * layOutXattrs(inodeBytes, entries, start + 4, sb.inodeSize, start + 4, false);
 * ```
 */
export function layOutXattrs(
  area: Uint8Array,
  entries: StoredXattr[],
  entriesAt: number,
  end: number,
  base: number,
  hashes: boolean,
): number[] {
  const v = new DataView(area.buffer, area.byteOffset, area.byteLength);
  let e = entriesAt;
  let val = end;
  const out: number[] = [];
  for (const x of entries) {
    val -= (x.value.length + 3) & ~3;
    area.set(x.value, val);
    const h = hashes ? xattrEntryHash(x.suffix, x.value) : 0;
    area[e] = x.suffix.length;
    area[e + 1] = x.index;
    v.setUint16(e + 2, x.value.length ? val - base : 0, true);
    v.setUint32(e + 4, 0, true);
    v.setUint32(e + 8, x.value.length, true);
    v.setUint32(e + 12, h, true);
    area.set(x.suffix, e + XATTR_ENTRY_HEADER_SIZE);
    out.push(h);
    e += (XATTR_ENTRY_HEADER_SIZE + x.suffix.length + 3) & ~3;
  }
  v.setUint32(e, 0, true);
  return out;
}

/**
 * The image of an xattr block holding `entries` (sorted with {@link compareXattrs}) with
 * reference count `refcount`, its `h_hash` set and, under metadata_csum, its checksum for
 * block number `blockNr`.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const value = new TextEncoder().encode("hello");
 * const entries = [{ index: 1, suffix: new TextEncoder().encode("comment"), value }]; // user.comment
 * const block = encodeXattrBlock(sb, 1000, entries, 1);
 * console.log(block.length, new DataView(block.buffer).getUint32(0, true).toString(16)); // 1024 ea020000
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function encodeXattrBlock(
  sb: Superblock,
  blockNr: number,
  entries: StoredXattr[],
  refcount: number,
): Uint8Array {
  const img = new Uint8Array(sb.blockSize);
  const v = new DataView(img.buffer);
  v.setUint32(0, XATTR_MAGIC, true);
  v.setUint32(4, refcount, true);
  v.setUint32(8, 1, true);
  const hashes = layOutXattrs(img, entries, XATTR_BLOCK_HEADER_SIZE, img.length, 0, true);
  v.setUint32(12, xattrBlockHash(hashes), true);
  if (sb.hasMetadataCsum) v.setUint32(16, xattrBlockChecksum(sb, blockNr, img), true);
  return img;
}

/**
 * The block hash a block holding `entries` (sorted) would carry.
 *
 * @example
 * ```ts ignore
 * const hash = xattrSetHash(entries);
 * ```
 */
export function xattrSetHash(entries: StoredXattr[]): number {
  return xattrBlockHash(entries.map((e) => xattrEntryHash(e.suffix, e.value)));
}

/** The header fields of an xattr block image the sharing logic needs. */
export interface XattrBlockHeader {
  /** `h_refcount`: how many inodes use the block. */
  refcount: number;
  /** `h_hash`: the block hash (0: never shared). */
  hash: number;
}

/**
 * Reads `h_refcount` and `h_hash` of a block image (no checks: parse it first).
 *
 * @example
 * ```ts ignore
 * const { refcount, hash } = xattrBlockHeader(img);
 * ```
 */
export function xattrBlockHeader(img: Uint8Array): XattrBlockHeader {
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  return { refcount: v.getUint32(4, true), hash: v.getUint32(12, true) };
}

/**
 * Sets `h_refcount` of a block image in place, with its checksum.
 *
 * @example
 * ```ts ignore
 * setXattrBlockRefcount(sb, blockNr, await tx.getWritable(blockNr), 2);
 * ```
 */
export function setXattrBlockRefcount(
  sb: Superblock,
  blockNr: number,
  img: Uint8Array,
  refcount: number,
): void {
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  v.setUint32(4, refcount, true);
  if (sb.hasMetadataCsum) v.setUint32(16, xattrBlockChecksum(sb, blockNr, img), true);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * True when a parsed block holds exactly `entries`, in order (what `ext4_xattr_cmp` decides
 * before the kernel shares a block); an entry whose value lives in an EA inode never matches.
 *
 * @example
 * ```ts ignore
 * if (sameXattrs(entries, parseXattrBlock(sb, ino, b, img))) share(b);
 * ```
 */
export function sameXattrs(
  entries: StoredXattr[],
  stored: (StoredXattr & { valueInum?: number })[],
): boolean {
  if (entries.length !== stored.length) return false;
  return entries.every((e, i) => {
    const s = stored[i];
    return (s.valueInum ?? 0) === 0 && s.index === e.index && sameBytes(s.suffix, e.suffix) &&
      sameBytes(s.value, e.value);
  });
}
