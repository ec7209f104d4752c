/**
 * Extended attributes: the in-inode area (after `i_extra_isize`, magic 0xEA020000), the
 * external xattr block (`i_file_acl`), values stored in EA inodes (ea_inode), and the names
 * and values the kernel's listxattr/getxattr present.
 *
 * Entries store a name index (a prefix such as "user.") and the rest of the name. Every
 * offset and size is checked as the kernel's `check_xattrs` does; a violation is a
 * {@link CorruptError} naming the inode (and block).
 *
 * Kernel view: listxattr shows only names with a handler — user., trusted., security.,
 * gnu. and the two POSIX ACLs — so system.data (inline data), system.richacl, lustre. and the
 * encryption context are hidden. ACL values are returned in the VFS's `posix_acl_xattr`
 * format (version 2), converted from ext4's compact on-disk format.
 *
 * @module
 */

import { ext4AclToXattr } from "./acl.ts";
import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
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
const BLOCK_HEADER_SIZE = 32;
/** Size of an entry before its name. */
const ENTRY_HEADER_SIZE = 16;
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

/** What {@link readXattrs} needs: the raw inode and ways to read blocks and EA inodes. */
export interface XattrSource {
  /** The superblock (block size, checksum seed, features). */
  sb: Superblock;
  /** The inode number (checksums of in-inode entries and error messages). */
  ino: number;
  /** The full on-disk inode record (inode size bytes). */
  inodeBytes: Uint8Array;
  /** Reads filesystem block `block` (the xattr block `i_file_acl`). */
  readBlock(block: number): Promise<Uint8Array>;
  /** The first `size` bytes of the EA inode `ino`. */
  readEaInode(ino: number, size: number): Promise<Uint8Array>;
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
    if (e + ENTRY_HEADER_SIZE > end) bad(`e_name out of bounds at offset ${e}`);
    const nameLen = region[e];
    const next = e + ((ENTRY_HEADER_SIZE + nameLen + 3) & ~3);
    if (next + 4 > end) bad(`e_name out of bounds at offset ${e}`);
    if (region.subarray(e + ENTRY_HEADER_SIZE, e + ENTRY_HEADER_SIZE + nameLen).includes(0)) {
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
    const suffix = region.slice(s + ENTRY_HEADER_SIZE, s + ENTRY_HEADER_SIZE + nameLen);
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
 * import { Ext4 } from "../mod.ts";
 * import { encodeXattrBlock } from "./xattr_block.ts";
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
  if (block.length !== sb.blockSize || block.length < BLOCK_HEADER_SIZE + 4) {
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
  return parseEntries(sb, block, BLOCK_HEADER_SIZE, 0, true, where);
}

/**
 * Every stored attribute of an inode — in-inode ones first, then the xattr block's — with
 * EA-inode values read. Includes what the kernel hides (system.data and others).
 *
 * @example
 * ```ts ignore
 * for (const e of await readRawXattrs(src)) console.log(e.name, e.valueSize);
 * ```
 */
export async function readRawXattrs(src: XattrSource): Promise<XattrEntry[]> {
  const { sb, ino } = src;
  const entries = parseInodeXattrs(sb, ino, src.inodeBytes);
  const blockNr = xattrBlockNumber(sb, src.inodeBytes);
  if (blockNr !== 0) {
    if (blockNr < sb.firstDataBlock || blockNr >= sb.blocksCount) {
      throw new CorruptError(`inode ${ino}`, `xattr block ${blockNr} out of range`);
    }
    entries.push(...parseXattrBlock(sb, ino, blockNr, await src.readBlock(blockNr)));
  }
  for (const e of entries) {
    if (e.valueInum === 0) continue;
    const value = await src.readEaInode(e.valueInum, e.valueSize);
    if (value.length !== e.valueSize) {
      throw new CorruptError(
        `EA inode ${e.valueInum} of inode ${ino}`,
        `holds ${value.length} bytes, the entry says ${e.valueSize}`,
      );
    }
    e.value = value;
  }
  return entries;
}

/**
 * The attributes the kernel lists for an inode, in listxattr order, with the values its
 * getxattr returns (POSIX ACLs converted to the posix_acl_xattr format). When a name occurs
 * twice (in the inode and in the block), the first wins, as getxattr finds it.
 *
 * @example
 * ```ts ignore
 * const xattrs = await readXattrs({ sb, ino, inodeBytes, readBlock, readEaInode });
 * console.log([...xattrs.keys()]); // [ "user.comment", "system.posix_acl_access" ]
 * ```
 */
export async function readXattrs(src: XattrSource): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const e of await readRawXattrs(src)) {
    if (!HANDLED_XATTR_INDEXES.has(e.index) || out.has(e.name)) continue;
    let value = e.value;
    if (e.index === XattrIndex.POSIX_ACL_ACCESS || e.index === XattrIndex.POSIX_ACL_DEFAULT) {
      try {
        value = ext4AclToXattr(value);
      } catch (err) {
        if (err instanceof Ext4Error) {
          throw new CorruptError(`${e.name} of inode ${src.ino}`, err.message);
        }
        throw err;
      }
    }
    out.set(e.name, value);
  }
  return out;
}
