/**
 * Extended attributes for the write path: names and their on-disk prefixes, the in-inode
 * area (after `i_extra_isize`) and the xattr block (header, sorted entries, values from the
 * end, entry and block hashes, metadata_csum checksum), POSIX ACLs converted between the
 * kernel's xattr format and ext4's compact one, and setting or removing attributes of an
 * inode through a transaction.
 *
 * Attributes go into the inode body while they fit, the rest into one xattr block. A block
 * shared with other inodes (refcount > 1) is left to them (its count lowered) and the inode
 * gets its own; sharing identical blocks between inodes is not done yet.
 *
 * @module
 */

import type { Allocator } from "./alloc.ts";
import type { BlockReader } from "./bitmap.ts";
import { XATTR_MAGIC, xattrBlockChecksum } from "./xattr.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
import type { GroupDescriptorTable } from "./group_descriptor.ts";
import { InodeFlags } from "./inode.ts";
import {
  decodeInode,
  encodeInode,
  type InodeFields,
  type InodeTime,
  readInodeRaw,
  writeInode,
} from "./inode_write.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** `h_magic` / ibody magic. */
const BLOCK_HEADER = 32;
const ENTRY_HEADER = 16;

/** Name index → prefix, longest first where prefixes overlap. */
const PREFIXES: [number, string][] = [
  [2, "system.posix_acl_access"],
  [3, "system.posix_acl_default"],
  [8, "system.richacl"],
  [1, "user."],
  [4, "trusted."],
  [6, "security."],
  [7, "system."],
];

/** An attribute: full name ("user.foo") and value (ACLs in the kernel's xattr format). */
export interface Xattr {
  /** Full name with its namespace prefix, e.g. "user.foo" or "system.posix_acl_access". */
  name: string;
  /** The value's bytes (may be empty). */
  value: Uint8Array;
}

interface RawEntry {
  index: number;
  name: Uint8Array;
  /** Value as stored on disk (ACLs in ext4's format). */
  value: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Splits a full name into its name index and the stored suffix. */
export function splitXattrName(name: string): { index: number; suffix: Uint8Array } {
  for (const [index, prefix] of PREFIXES) {
    if (index === 2 || index === 3 || index === 8) {
      if (name === prefix) return { index, suffix: new Uint8Array(0) };
      continue;
    }
    if (name.startsWith(prefix) && name.length > prefix.length) {
      const suffix = enc.encode(name.slice(prefix.length));
      if (suffix.length > 255) {
        throw new Ext4Error("NAME_TOO_LONG", `xattr name ${name} is too long`);
      }
      return { index, suffix };
    }
  }
  throw new Ext4Error("UNSUPPORTED", `xattr namespace of ${name} is not supported`, {
    errno: 95,
  });
}

function fullName(index: number, suffix: Uint8Array): string {
  const p = PREFIXES.find(([i]) => i === index);
  if (!p) throw new CorruptError("xattr entry", `unknown name index ${index}`);
  return index === 2 || index === 3 || index === 8 ? p[1] : p[1] + dec.decode(suffix);
}

// ---- POSIX ACLs ----

const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;

/** Kernel xattr format (version 2, 8-byte entries) → ext4's on-disk ACL (version 1). */
export function aclToDisk(value: Uint8Array): Uint8Array {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || v.getUint32(0, true) !== 2) {
    throw new Ext4Error("INVALID", "not a POSIX ACL (version 2) value");
  }
  const parts: number[] = [1, 0, 0, 0];
  for (let o = 4; o < value.length; o += 8) {
    const tag = v.getUint16(o, true);
    const perm = v.getUint16(o + 2, true);
    parts.push(tag & 0xff, tag >> 8, perm & 0xff, perm >> 8);
    if (tag === ACL_USER || tag === ACL_GROUP) {
      const id = v.getUint32(o + 4, true);
      parts.push(id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24);
    } else if (![ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER].includes(tag)) {
      throw new Ext4Error("INVALID", `unknown ACL tag 0x${tag.toString(16)}`);
    }
  }
  return Uint8Array.from(parts);
}

/** ext4's on-disk ACL → the kernel's xattr format. */
export function aclFromDisk(value: Uint8Array): Uint8Array {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < 4 || v.getUint32(0, true) !== 1) {
    throw new CorruptError("POSIX ACL", "bad version");
  }
  const out: number[] = [2, 0, 0, 0];
  let o = 4;
  while (o < value.length) {
    if (o + 4 > value.length) throw new CorruptError("POSIX ACL", "truncated entry");
    const tag = v.getUint16(o, true);
    const perm = v.getUint16(o + 2, true);
    let id = 0xffffffff;
    if (tag === ACL_USER || tag === ACL_GROUP) {
      if (o + 8 > value.length) throw new CorruptError("POSIX ACL", "truncated entry");
      id = v.getUint32(o + 4, true);
      o += 8;
    } else o += 4;
    out.push(tag & 0xff, tag >> 8, perm & 0xff, perm >> 8);
    out.push(id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24);
  }
  return Uint8Array.from(out);
}

function isAcl(index: number): boolean {
  return index === 2 || index === 3;
}

// ---- hashes and checksums ----

/** The hash of one entry (name, then the value in little-endian words). */
export function xattrEntryHash(name: Uint8Array, value: Uint8Array): number {
  let h = 0;
  for (const c of name) h = ((h << 5) ^ (h >>> 27) ^ ((c << 24) >> 24)) >>> 0;
  const words = Math.ceil(value.length / 4);
  for (let i = 0; i < words; i++) {
    const w = (value[4 * i] | ((value[4 * i + 1] ?? 0) << 8) | ((value[4 * i + 2] ?? 0) << 16) |
      ((value[4 * i + 3] ?? 0) << 24)) >>> 0;
    h = ((h << 16) ^ (h >>> 16) ^ w) >>> 0;
  }
  return h;
}

// ---- layout ----

function entrySize(e: RawEntry): number {
  return (ENTRY_HEADER + e.name.length + 3) & ~3;
}

function valueSize(e: RawEntry): number {
  return (e.value.length + 3) & ~3;
}

/** Writes entries at `entriesAt` and values down from `end`; offsets relative to `base`. */
function layOut(
  area: Uint8Array,
  entries: RawEntry[],
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
    val -= valueSize(x);
    area.set(x.value, val);
    const h = hashes ? xattrEntryHash(x.name, x.value) : 0;
    area[e] = x.name.length;
    area[e + 1] = x.index;
    v.setUint16(e + 2, x.value.length ? val - base : 0, true);
    v.setUint32(e + 4, 0, true);
    v.setUint32(e + 8, x.value.length, true);
    v.setUint32(e + 12, h, true);
    area.set(x.name, e + ENTRY_HEADER);
    out.push(h);
    e += entrySize(x);
  }
  v.setUint32(e, 0, true); // end of entries
  return out;
}

/** Parses entries from `entriesAt`, values at `base + offs`, all inside `[0, end)`. */
function parseEntries(
  area: Uint8Array,
  entriesAt: number,
  end: number,
  base: number,
  where: string,
): RawEntry[] {
  const v = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const out: RawEntry[] = [];
  let e = entriesAt;
  for (let n = 0; n < 4096; n++) {
    if (e + 4 > end) throw new CorruptError(where, "entries run past the end");
    if (v.getUint32(e, true) === 0) return out;
    if (e + ENTRY_HEADER > end) throw new CorruptError(where, "entry runs past the end");
    const nameLen = area[e];
    const index = area[e + 1];
    const offs = v.getUint16(e + 2, true);
    const inum = v.getUint32(e + 4, true);
    const size = v.getUint32(e + 8, true);
    if (inum !== 0) throw new Ext4Error("UNSUPPORTED", `${where}: value in an xattr inode`);
    if (
      e + ENTRY_HEADER + nameLen > end || (size && (base + offs + size > end || base + offs < e))
    ) {
      throw new CorruptError(where, `entry at ${e} is out of bounds`);
    }
    out.push({
      index,
      name: area.slice(e + ENTRY_HEADER, e + ENTRY_HEADER + nameLen),
      value: area.slice(base + offs, base + offs + size),
    });
    e += (ENTRY_HEADER + nameLen + 3) & ~3;
  }
  throw new CorruptError(where, "too many entries");
}

function ibodyStart(sb: Superblock, raw: Uint8Array): number | null {
  if (sb.inodeSize <= 128) return null;
  const extra = raw[0x80] | (raw[0x81] << 8);
  const start = 128 + extra;
  return start + 4 + 4 <= sb.inodeSize ? start : null;
}

/** The attributes of an inode (in-inode first, then its block), values as getxattr gives them. */
export async function readXattrs(
  reader: BlockReader,
  sb: Superblock,
  ino: number,
  raw: Uint8Array,
  fields: InodeFields,
): Promise<Xattr[]> {
  const entries = await readRawXattrs(reader, sb, ino, raw, fields);
  return entries.map((e) => ({
    name: fullName(e.index, e.name),
    value: isAcl(e.index) ? aclFromDisk(e.value) : e.value,
  }));
}

async function readRawXattrs(
  reader: BlockReader,
  sb: Superblock,
  ino: number,
  raw: Uint8Array,
  fields: InodeFields,
): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  const start = ibodyStart(sb, raw);
  if (start !== null) {
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (v.getUint32(start, true) === XATTR_MAGIC) {
      out.push(...parseEntries(raw, start + 4, sb.inodeSize, start + 4, `xattrs in inode ${ino}`));
    }
  }
  if (fields.fileAcl) {
    if (fields.fileAcl >= sb.blocksCount || fields.fileAcl < sb.firstDataBlock) {
      throw new CorruptError(
        `inode ${ino}`,
        `xattr block ${fields.fileAcl} is outside the filesystem`,
      );
    }
    const block = await reader.read(fields.fileAcl);
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    if (v.getUint32(0, true) !== XATTR_MAGIC || v.getUint32(8, true) !== 1) {
      throw new CorruptError(`xattr block ${fields.fileAcl} of inode ${ino}`, "bad header");
    }
    out.push(
      ...parseEntries(block, BLOCK_HEADER, sb.blockSize, 0, `xattr block ${fields.fileAcl}`),
    );
  }
  return out;
}

function isSystemData(index: number, name: Uint8Array): boolean {
  return index === 7 && name.length === 4 && name[0] === 0x64 && name[1] === 0x61 &&
    name[2] === 0x74 && name[3] === 0x61; // "data"
}

function compareEntries(a: RawEntry, b: RawEntry): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.name.length !== b.name.length) return a.name.length - b.name.length;
  for (let i = 0; i < a.name.length; i++) if (a.name[i] !== b.name[i]) return a.name[i] - b.name[i];
  return 0;
}

/** Options for {@link setXattr}. */
export interface SetXattrOptions {
  /** Fail with EXISTS if the attribute is there (XATTR_CREATE). */
  create?: boolean;
  /** Fail with NOT_FOUND (ENODATA) if it is not (XATTR_REPLACE). */
  replace?: boolean;
  /** ctime to stamp (default: now). */
  now?: InodeTime;
  /** Allow changing "system.data" of an inline-data inode (for lib/inline_write.ts only). */
  inlineData?: boolean;
}

/**
 * Sets (or with `value === null` removes) attribute `name` of inode `ino`, rewriting the
 * inode's attribute area and block. A refused call (EXISTS, NOT_FOUND with errno ENODATA, a
 * bad name) changes nothing; ENOSPC when the attributes do not fit the inode and one block,
 * and any other failure while writing, discard the transaction.
 *
 * @example
 * ```ts ignore
 * await setXattr(tx, alloc, sb, gdt, ino, "user.mime", enc.encode("text/plain"));
 * ```
 */
export async function setXattr(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  name: string,
  value: Uint8Array | null,
  options: SetXattrOptions = {},
): Promise<void> {
  const { index, suffix } = splitXattrName(name);
  const stored = value === null ? null : isAcl(index) ? aclToDisk(value) : value;
  if (stored && stored.length > sb.blockSize - BLOCK_HEADER - ENTRY_HEADER - 4 - suffix.length) {
    throw new Ext4Error("NO_SPACE", `xattr ${name} of ${stored.length} bytes cannot fit`);
  }
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const fields = decodeInode(sb, raw);
  if (
    (fields.flags & InodeFlags.INLINE_DATA) && !options.inlineData && isSystemData(index, suffix)
  ) {
    // The inline data itself: only lib/inline_write.ts changes it.
    throw new Ext4Error("UNSUPPORTED", `system.data of inline inode ${ino} is not an attribute`);
  }
  const entries = await readRawXattrs(tx, sb, ino, raw, fields);
  const probe: RawEntry = { index, name: suffix, value: new Uint8Array(0) };
  const at = entries.findIndex((e) => compareEntries(e, probe) === 0);
  if (at >= 0 && options.create) throw new Ext4Error("EXISTS", `xattr ${name} exists`);
  if (at < 0 && (options.replace || stored === null)) {
    throw new Ext4Error("NOT_FOUND", `no xattr ${name}`, { errno: 61 });
  }
  if (stored === null) entries.splice(at, 1);
  else if (at >= 0) entries[at] = { index, name: suffix, value: stored };
  else entries.push({ index, name: suffix, value: stored });
  try {
    await writeXattrs(tx, alloc, sb, gdt, ino, raw, fields, entries, options.now);
  } catch (e) {
    tx.abort();
    throw e;
  }
}

async function writeXattrs(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  raw: Uint8Array,
  fields: InodeFields,
  entries: RawEntry[],
  now?: InodeTime,
): Promise<void> {
  const bs = sb.blockSize;
  // In the inode while they fit, in order; the rest in the block.
  const start = ibodyStart(sb, raw);
  const inBody: RawEntry[] = [];
  const inBlock: RawEntry[] = [];
  let room = start === null ? 0 : sb.inodeSize - start - 4 - 4;
  for (const e of entries) {
    const need = entrySize(e) + valueSize(e);
    if (need <= room && inBlock.length === 0) {
      inBody.push(e);
      room -= need;
    } else inBlock.push(e);
  }
  inBlock.sort(compareEntries);
  if (
    (fields.flags & InodeFlags.INLINE_DATA) && inBlock.some((e) => isSystemData(e.index, e.name))
  ) {
    // The kernel reads inline data only from the inode body.
    throw new Ext4Error("NO_SPACE", `inline data of inode ${ino} would leave its inode body`);
  }
  const blockNeed = inBlock.reduce((a, e) => a + entrySize(e) + valueSize(e), BLOCK_HEADER + 4);
  if (blockNeed > bs) throw new Ext4Error("NO_SPACE", `xattrs of inode ${ino} do not fit`);

  const body = Uint8Array.from(raw);
  if (start !== null) {
    body.fill(0, start);
    if (inBody.length > 0) {
      new DataView(body.buffer).setUint32(start, XATTR_MAGIC, true);
      layOut(body, inBody, start + 4, sb.inodeSize, start + 4, false);
    }
  }

  let fileAcl = fields.fileAcl;
  let blocks512 = fields.blocks512;
  const per = bs / 512;
  if (fileAcl) {
    const old = await tx.getWritable(fileAcl);
    const v = new DataView(old.buffer, old.byteOffset, old.byteLength);
    const refs = v.getUint32(4, true);
    if (refs > 1) {
      // Shared: leave it to the others.
      v.setUint32(4, refs - 1, true);
      if (sb.hasMetadataCsum) v.setUint32(16, xattrBlockChecksum(sb, fileAcl, old), true);
      fileAcl = 0;
      blocks512 -= per;
    } else if (inBlock.length === 0) {
      await alloc.freeBlocks(tx, fileAcl, 1, { metadata: true });
      fileAcl = 0;
      blocks512 -= per;
    }
  }
  if (inBlock.length > 0) {
    if (!fileAcl) {
      const [e] = await alloc.allocateBlocks(
        tx,
        gdt.get(Math.floor((ino - 1) / sb.inodesPerGroup))
          .inodeTable,
        1,
      );
      fileAcl = e.start;
      blocks512 += per;
    }
    const img = tx.newBlock(fileAcl);
    const v = new DataView(img.buffer);
    v.setUint32(0, XATTR_MAGIC, true);
    v.setUint32(4, 1, true);
    v.setUint32(8, 1, true);
    const hashes = layOut(img, inBlock, BLOCK_HEADER, bs, 0, true);
    let h = 0;
    for (const eh of hashes) {
      if (eh === 0) {
        h = 0;
        break;
      }
      h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
    }
    v.setUint32(12, h, true);
    if (sb.hasMetadataCsum) v.setUint32(16, xattrBlockChecksum(sb, fileAcl, img), true);
  }
  const ms = Date.now();
  const t = now ?? { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
  const updated = encodeInode(
    sb,
    ino,
    { ...decodeInode(sb, body), fileAcl, blocks512, ctime: t },
    body,
  );
  await writeInode(tx, sb, gdt, ino, updated);
}
