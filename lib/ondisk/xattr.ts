/**
 * The extended attribute codec (kernel fs/ext4/xattr.h), pure: the in-inode area (after
 * `i_extra_isize`, magic 0xEA020000), the external xattr block (`i_file_acl`: header with
 * refcount and hash, entries from the start, values from the end), name prefixes, entry and
 * block hashes as the kernel computes them (`ext4_xattr_hash_entry`, `ext4_xattr_rehash`),
 * the block checksum, the kernel's entry order, and laying entries out for the write path.
 * Reading an inode's attributes (and EA inodes) and changing them is lib/ext4/xattr.ts.
 *
 * Entries store a name index (a prefix such as "user.") and the rest of the name. Every
 * offset and size is checked as the kernel's `check_xattrs` does; a violation is a
 * {@link CorruptError} naming the inode (and block).
 *
 * Kernel view: listxattr shows only names with a handler — user., trusted., security.,
 * gnu. and the two POSIX ACLs — so system.data (inline data), system.richacl, lustre. and the
 * encryption context are hidden ({@link HANDLED_XATTR_INDEXES}).
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError } from "../errors.ts";
import { Incompat } from "./features.ts";
import type { Superblock } from "./superblock.ts";

/** `e_name_index` values. */
export const XattrIndex = {
  USER: 1,
  POSIX_ACL_ACCESS: 2,
  POSIX_ACL_DEFAULT: 3,
  TRUSTED: 4,
  LUSTRE: 5,
  SECURITY: 6,
  SYSTEM: 7,
  RICHACL: 8,
  ENCRYPTION: 9,
  HURD: 10,
} as const;

/** Magic of the in-inode xattr area and of xattr blocks. */
export const XATTR_MAGIC = 0xea020000;
/** Size of the xattr block header. */
export const XATTR_BLOCK_HEADER_SIZE = 32;
/** Size of an entry before its name. */
export const XATTR_ENTRY_HEADER_SIZE = 16;
/** Most inodes that may share one xattr block (the kernel's EXT4_XATTR_REFCOUNT_MAX). */
export const XATTR_REFCOUNT_MAX = 1024;
/** Largest value size the kernel accepts on disk. */
const XATTR_SIZE_MAX = (1 << 24) - 1;
/** Inode fields used here. */
const I_FILE_ACL_LO = 0x68;
const I_FILE_ACL_HIGH = 0x76;
const I_EXTRA_ISIZE = 0x80;
const GOOD_OLD_INODE_SIZE = 128;

/**
 * Name index → prefix: the one table of names both ways, for the reader and the writer.
 * The ACL (and richacl) prefixes are whole names: nothing may follow them.
 */
export const XATTR_PREFIXES: Readonly<Record<number, string>> = {
  [XattrIndex.USER]: "user.",
  [XattrIndex.POSIX_ACL_ACCESS]: "system.posix_acl_access",
  [XattrIndex.POSIX_ACL_DEFAULT]: "system.posix_acl_default",
  [XattrIndex.TRUSTED]: "trusted.",
  [XattrIndex.LUSTRE]: "lustre.",
  [XattrIndex.SECURITY]: "security.",
  [XattrIndex.SYSTEM]: "system.",
  [XattrIndex.RICHACL]: "system.richacl",
  [XattrIndex.ENCRYPTION]: "encryption.",
  [XattrIndex.HURD]: "gnu.",
};

/**
 * Name indexes with an ext4 xattr handler: the ones the kernel's listxattr shows and its
 * setxattr accepts (others, such as system.data, are internal or foreign).
 */
export const HANDLED_XATTR_INDEXES: ReadonlySet<number> = new Set<number>([
  XattrIndex.USER,
  XattrIndex.POSIX_ACL_ACCESS,
  XattrIndex.POSIX_ACL_DEFAULT,
  XattrIndex.TRUSTED,
  XattrIndex.SECURITY,
  XattrIndex.HURD,
]);

/**
 * The full name of an attribute from its index and stored suffix, e.g. (1, "foo") →
 * "user.foo". Unknown indexes get "index<N>." so nothing is lost.
 *
 * @example
 * ```ts
 * import { xattrFullName } from "./xattr.ts";
 * console.log(xattrFullName(1, new TextEncoder().encode("mime"))); // user.mime
 * ```
 */
export function xattrFullName(index: number, suffix: Uint8Array): string {
  const prefix = XATTR_PREFIXES[index] ?? `index${index}.`;
  return prefix + new TextDecoder().decode(suffix);
}

/**
 * Splits a full name into the index and suffix ext4 stores, picking the longest matching
 * prefix (as the kernel does: "system.posix_acl_access" before "system."). Null for a
 * prefix ext4 cannot store.
 *
 * @example
 * ```ts
 * import { splitXattrName } from "./xattr.ts";
 * console.log(splitXattrName("user.a")); // { index: 1, suffix: Uint8Array(1) [ 97 ] }
 * ```
 */
export function splitXattrName(name: string): { index: number; suffix: Uint8Array } | null {
  let best: { index: number; prefix: string } | null = null;
  for (const [k, prefix] of Object.entries(XATTR_PREFIXES)) {
    if (name.startsWith(prefix) && (!best || prefix.length > best.prefix.length)) {
      best = { index: Number(k), prefix };
    }
  }
  if (!best) return null;
  const suffix = new TextEncoder().encode(name.slice(best.prefix.length));
  // The ACL names are complete: nothing may follow them.
  if (
    (best.index === XattrIndex.POSIX_ACL_ACCESS || best.index === XattrIndex.POSIX_ACL_DEFAULT ||
      best.index === XattrIndex.RICHACL) && suffix.length > 0
  ) return null;
  return { index: best.index, suffix };
}

/** One stored attribute, as on disk. */
export interface XattrEntry {
  /** `e_name_index`: the name prefix, an {@link XattrIndex} value (1 = "user.", …). */
  index: number;
  /** The name without its prefix. */
  suffix: Uint8Array;
  /** Prefix + suffix, e.g. "user.foo". */
  name: string;
  /** Value bytes; for an EA-inode value, empty until resolved by {@link readRawXattrs}. */
  value: Uint8Array;
  /** `e_value_size`: the value's length in bytes. */
  valueSize: number;
  /** Inode holding the value (ea_inode), else 0. */
  valueInum: number;
  /** `e_hash` as stored. */
  hash: number;
  /** Where the entry lives. */
  inBlock: boolean;
}

/**
 * Parses entries from `region` (starting at `first`) whose values are at `valueBase +
 * e_value_offs`, with the kernel's bounds checks. `where` names the structure in errors.
 */
function parseEntries(
  sb: Superblock,
  region: Uint8Array,
  first: number,
  valueBase: number,
  inBlock: boolean,
  where: string,
): XattrEntry[] {
  const v = new DataView(region.buffer, region.byteOffset, region.byteLength);
  const end = region.length;
  const bad = (detail: string): never => {
    throw new CorruptError(where, detail);
  };
  // Names first: find the terminating zero word; each entry is >= 16 bytes, so this ends.
  const starts: number[] = [];
  let e = first;
  for (;;) {
    if (e + 4 > end) bad("xattr entries run past the end (no terminator)");
    if (v.getUint32(e, true) === 0) break;
    if (e + XATTR_ENTRY_HEADER_SIZE > end) bad(`e_name out of bounds at offset ${e}`);
    const nameLen = region[e];
    const next = e + ((XATTR_ENTRY_HEADER_SIZE + nameLen + 3) & ~3);
    if (next + 4 > end) bad(`e_name out of bounds at offset ${e}`);
    if (
      region.subarray(e + XATTR_ENTRY_HEADER_SIZE, e + XATTR_ENTRY_HEADER_SIZE + nameLen).includes(
        0,
      )
    ) {
      bad(`bad e_name length at offset ${e}`);
    }
    starts.push(e);
    e = next;
  }
  const namesEnd = e + 4;
  const hasEaInode = (sb.incompat & Incompat.EA_INODE) !== 0;
  const out: XattrEntry[] = [];
  for (const s of starts) {
    const nameLen = region[s];
    const index = region[s + 1];
    const offs = v.getUint16(s + 2, true);
    const valueInum = v.getUint32(s + 4, true);
    const size = v.getUint32(s + 8, true);
    const hash = v.getUint32(s + 12, true);
    if (valueInum !== 0) {
      if (!hasEaInode) bad("ea_inode value without the ea_inode feature");
      if (valueInum === 2 || valueInum < sb.firstIno || valueInum > sb.inodesCount) {
        bad(`invalid ea_inode ${valueInum}`);
      }
    }
    if (size > XATTR_SIZE_MAX) bad(`e_value size ${size} too large`);
    let value: Uint8Array = new Uint8Array(0);
    if (size !== 0 && valueInum === 0) {
      const avail = end - valueBase;
      if (offs > avail) bad(`e_value out of bounds (offset ${offs})`);
      const start = valueBase + offs;
      if (start < namesEnd || size > end - start || ((size + 3) & ~3) > end - start) {
        bad(`overlapping e_value (offset ${offs}, size ${size})`);
      }
      value = region.slice(start, start + size);
    }
    const suffix = region.slice(s + XATTR_ENTRY_HEADER_SIZE, s + XATTR_ENTRY_HEADER_SIZE + nameLen);
    out.push({
      index,
      suffix,
      name: xattrFullName(index, suffix),
      value,
      valueSize: size,
      valueInum,
      hash,
      inBlock,
    });
  }
  return out;
}

/**
 * The in-inode xattr entries of a raw inode (values of EA inodes not yet read). Empty when
 * the inode has no room or no magic after `i_extra_isize`.
 *
 * @example
 * ```ts ignore
 * const entries = parseInodeXattrs(sb, 12, inodeBytes);
 * ```
 */
export function parseInodeXattrs(
  sb: Superblock,
  ino: number,
  inodeBytes: Uint8Array,
): XattrEntry[] {
  const isz = Math.min(inodeBytes.length, sb.inodeSize);
  if (isz <= GOOD_OLD_INODE_SIZE) return [];
  const v = new DataView(inodeBytes.buffer, inodeBytes.byteOffset, inodeBytes.byteLength);
  const extra = v.getUint16(I_EXTRA_ISIZE, true);
  const where = `in-inode xattrs of inode ${ino}`;
  if (extra & 3 || GOOD_OLD_INODE_SIZE + extra > isz) {
    throw new CorruptError(`inode ${ino}`, `bad i_extra_isize ${extra} (inode size ${isz})`);
  }
  const hdr = GOOD_OLD_INODE_SIZE + extra;
  // The kernel only looks for xattrs when the magic and one more word fit.
  if (hdr + 8 > isz || v.getUint32(hdr, true) !== XATTR_MAGIC) return [];
  const region = inodeBytes.subarray(0, isz);
  return parseEntries(sb, region, hdr + 4, hdr + 4, false, where);
}

/**
 * The xattr block number in `i_file_acl` (with the high 16 bits on 64bit filesystems);
 * 0 when the inode has no xattr block.
 *
 * @example
 * ```ts ignore
 * const block = xattrBlockNumber(sb, inodeBytes);
 * ```
 */
export function xattrBlockNumber(sb: Superblock, inodeBytes: Uint8Array): number {
  const v = new DataView(inodeBytes.buffer, inodeBytes.byteOffset, inodeBytes.byteLength);
  const lo = v.getUint32(I_FILE_ACL_LO, true);
  const hi = sb.is64bit ? v.getUint16(I_FILE_ACL_HIGH, true) : 0;
  return lo + hi * 2 ** 32;
}

/**
 * The checksum an xattr block should carry under metadata_csum: crc32c of the 64-bit block
 * number, then the block with the checksum field read as zero, from the filesystem seed.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../../mod.ts";
 * import { encodeXattrBlock } from "./xattr.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const block = encodeXattrBlock(sb, 1000, [], 1); // an empty xattr block for block 1000
 * const ok = xattrBlockChecksum(sb, 1000, block) === new DataView(block.buffer).getUint32(16, true);
 * console.log(ok); // true
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function xattrBlockChecksum(sb: Superblock, blockNr: number, block: Uint8Array): number {
  let c = crc32cU32(sb.csumSeed, blockNr % 2 ** 32);
  c = crc32cU32(c, Math.floor(blockNr / 2 ** 32));
  c = crc32c(c, block.subarray(0, 16));
  c = crc32cU32(c, 0);
  return crc32c(c, block.subarray(20));
}

/**
 * Parses an xattr block: checks the header (magic, h_blocks = 1) and, under metadata_csum,
 * the checksum, then the entries.
 *
 * @example
 * ```ts ignore
 * const entries = parseXattrBlock(sb, 12, blockNr, await readBlock(blockNr));
 * ```
 */
export function parseXattrBlock(
  sb: Superblock,
  ino: number,
  blockNr: number,
  block: Uint8Array,
): XattrEntry[] {
  const where = `xattr block ${blockNr} of inode ${ino}`;
  if (block.length !== sb.blockSize || block.length < XATTR_BLOCK_HEADER_SIZE + 4) {
    throw new CorruptError(where, `block has ${block.length} bytes`);
  }
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const magic = v.getUint32(0, true);
  const blocks = v.getUint32(8, true);
  if (magic !== XATTR_MAGIC || blocks !== 1) {
    throw new CorruptError(
      where,
      `invalid header (magic 0x${magic.toString(16)}, h_blocks ${blocks})`,
    );
  }
  if (sb.hasMetadataCsum) {
    const stored = v.getUint32(16, true);
    const computed = xattrBlockChecksum(sb, blockNr, block);
    if (stored !== computed) {
      throw new CorruptError(
        where,
        `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`,
      );
    }
  }
  return parseEntries(sb, block, XATTR_BLOCK_HEADER_SIZE, 0, true, where);
}

// ---- encoding (the write path) ----

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
 * import { xattrEntryHash } from "./xattr.ts";
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
 * import { xattrBlockHash } from "./xattr.ts";
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
 * import { xattrSpace } from "./xattr.ts";
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
 * ```ts ignore
 * const img = encodeXattrBlock(sb, blockNr, entries, 1);
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
