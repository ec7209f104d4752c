/**
 * Extended attributes of an inode (kernel fs/ext4/xattr.c): the one reader of an inode's
 * attributes ({@link readRawXattrs}, {@link readXattrs}: in-inode first, then the xattr block,
 * EA-inode values through the caller), used by the read path and, through a transaction
 * ({@link xattrSourceOf}), by the writer; and setting and removing them through a transaction,
 * as the kernel's setxattr/removexattr do on ext4.
 *
 * Kernel view: listxattr shows only names with a handler, and ACL values are returned in the
 * VFS's `posix_acl_xattr` format (version 2), converted from ext4's compact on-disk format.
 *
 * Names and values are checked first, with the kernel's errors: no handler for the
 * namespace (EOPNOTSUPP), an empty or over-long name (ERANGE), a value over 64 KiB (E2BIG),
 * a bad POSIX ACL (EINVAL; an unknown version EOPNOTSUPP), a default ACL on a non-directory
 * (EACCES). Placement is the kernel's: an attribute being set goes into the inode body if it
 * fits there, else into the one xattr block (ENOSPC when that overflows); attributes not
 * changed stay where they are. Setting an access ACL updates the mode's permission bits and
 * stores nothing when the ACL says no more than the mode; a chmod rewrites the access ACL
 * ({@link chmodAccessAcl}), as the kernel does.
 *
 * xattr blocks are shared between inodes with identical out-of-inode attributes, as the
 * kernel does with mbcache: a block the session has read or written with the same contents
 * (found by block hash in lib/ext4/xattr_share.ts) gets one more reference (at most 1024), instead
 * of a new block. A shared block is never changed in place: an inode that changes its
 * attributes takes another block (copy on write) and the old one loses a reference; a block
 * is freed when its last reference goes. Names, prefixes, parsing and encoding are the codec's
 * (lib/ondisk/xattr.ts, lib/ondisk/acl.ts).
 *
 * @module
 */

import {
  type AclEntry,
  aclFromXattr,
  aclModeBits,
  AclTag,
  aclToXattr,
  decodeExt4Acl,
  encodeExt4Acl,
  ext4AclToXattr,
  validateAcl,
} from "../ondisk/acl.ts";
import type { Allocator } from "./alloc.ts";
import type { BlockReader } from "../ondisk/bitmap.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import {
  changeTime,
  decodeInode,
  encodeInode,
  type InodeFields,
  type InodeTime,
} from "../ondisk/inode.ts";
import { loadInode, readInodeRaw, writeInode } from "./inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";
import {
  compareXattrs,
  encodeXattrBlock,
  HANDLED_XATTR_INDEXES,
  layOutXattrs,
  parseInodeXattrs,
  parseXattrBlock,
  sameXattrs,
  setXattrBlockRefcount,
  splitXattrName,
  type StoredXattr,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
  XATTR_REFCOUNT_MAX,
  xattrBlockHeader,
  xattrBlockNumber,
  type XattrEntry,
  XattrIndex,
  xattrSetHash,
  xattrSpace,
} from "../ondisk/xattr.ts";
import { type XattrBlockIndex, xattrBlockIndex } from "./xattr_share.ts";
import { releaseXattrBlock } from "./xattr_release.ts";

/** The VFS's limit on a name, prefix included (XATTR_NAME_MAX). */
const XATTR_NAME_MAX = 255;
/** The VFS's limit on a value (XATTR_SIZE_MAX). */
const XATTR_VALUE_MAX = 65536;
/** The in-inode area: its magic, and the terminator that must follow the entries. */
const IBODY_OVERHEAD = 8;

/** One change for {@link setXattrs}: a value to set, or null to remove the attribute. */
export interface XattrChange {
  /** Full name, e.g. "user.mime". */
  name: string;
  /** The new value (ACLs in the kernel's posix_acl_xattr format), or null to remove. */
  value: Uint8Array | null;
}

const enc = new TextEncoder();

/**
 * The name index and stored suffix of `name` for setxattr, with the kernel's refusals:
 * NAME_TOO_LONG with errno ERANGE for an empty name or one over 255 bytes, UNSUPPORTED
 * (EOPNOTSUPP) for a namespace ext4 has no handler for, INVALID for a bare prefix such as
 * "user.". `internal` admits "system.data" (inline data's own attribute).
 *
 * @example
 * ```ts
 * import { xattrNameForWrite } from "./xattr.ts";
 * console.log(xattrNameForWrite("user.mime").index); // 1
 * ```
 */
export function xattrNameForWrite(
  name: string,
  options: { internal?: boolean } = {},
): { index: number; suffix: Uint8Array } {
  const bytes = enc.encode(name).length;
  if (bytes === 0 || bytes > XATTR_NAME_MAX) {
    throw new Ext4Error("NAME_TOO_LONG", `xattr name of ${bytes} bytes (1..255)`, {
      errno: Errno.ERANGE,
    });
  }
  const split = splitXattrName(name);
  const internal = options.internal && split?.index === XattrIndex.SYSTEM &&
    name === "system.data";
  if (!split || (!HANDLED_XATTR_INDEXES.has(split.index) && !internal)) {
    const why = name === "system.data"
      ? "system.data holds inline data, not an attribute"
      : `xattr namespace of ${name} is not supported`;
    throw new Ext4Error("UNSUPPORTED", why, { errno: Errno.EOPNOTSUPP });
  }
  const whole = split.index === XattrIndex.POSIX_ACL_ACCESS ||
    split.index === XattrIndex.POSIX_ACL_DEFAULT;
  if (!whole && split.suffix.length === 0) {
    throw new Ext4Error("INVALID", `xattr name ${name} has nothing after its prefix`);
  }
  return split;
}

/** A change checked and converted to what is stored. */
interface Prepared {
  name: string;
  index: number;
  suffix: Uint8Array;
  /** The stored value, or null to remove. */
  stored: Uint8Array | null;
  /** A removal that is no error when the attribute is absent (an empty ACL). */
  missingOk: boolean;
  /** The entries of an ACL being set. */
  acl: AclEntry[] | null;
}

function prepare(change: XattrChange, internal: boolean): Prepared {
  const { index, suffix } = xattrNameForWrite(change.name, { internal });
  const out: Prepared = {
    name: change.name,
    index,
    suffix,
    stored: change.value,
    missingOk: false,
    acl: null,
  };
  if (change.value === null) return out;
  if (change.value.length > XATTR_VALUE_MAX) {
    throw new Ext4Error("INVALID", `xattr ${change.name}: value of ${change.value.length} bytes`, {
      errno: Errno.E2BIG,
    });
  }
  if (index === XattrIndex.POSIX_ACL_ACCESS || index === XattrIndex.POSIX_ACL_DEFAULT) {
    const acl = aclFromXattr(change.value);
    if (acl.length === 0) return { ...out, stored: null, missingOk: true };
    validateAcl(acl);
    return { ...out, stored: encodeExt4Acl(acl), acl };
  }
  return out;
}

/** An xattr block as loaded: number, parsed entries and header. */
interface LoadedBlock {
  nr: number;
  entries: StoredXattr[];
  refcount: number;
  hash: number;
}

/** What an inode holds: its in-inode attributes and its block. */
interface Loaded {
  body: StoredXattr[];
  block: LoadedBlock | null;
}

/**
 * An {@link XattrSource} reading through a transaction (or any block reader). The writer
 * keeps no values in EA inodes: one found there is UNSUPPORTED.
 *
 * @example
 * ```ts ignore
 * const xattrs = await readXattrs(xattrSourceOf(tx, sb, ino, await readInodeRaw(tx, sb, gdt, ino)));
 * ```
 */
export function xattrSourceOf(
  reader: BlockReader,
  sb: Superblock,
  ino: number,
  raw: Uint8Array,
): XattrSource {
  return {
    sb,
    ino,
    inodeBytes: raw,
    readBlock: (block) => reader.read(block),
    readEaInode: (eaIno) =>
      Promise.reject(
        new Ext4Error("UNSUPPORTED", `an xattr of inode ${ino} is stored in EA inode ${eaIno}`),
      ),
  };
}

/** An inode's attributes as stored, in the inode and in its block (with the block's header). */
async function loadXattrs(
  reader: BlockReader,
  sb: Superblock,
  ino: number,
  raw: Uint8Array,
): Promise<Loaded> {
  const all = await readRawXattrs(xattrSourceOf(reader, sb, ino, raw));
  const stored = (inBlock: boolean) =>
    all.filter((e) => e.inBlock === inBlock)
      .map((e): StoredXattr => ({ index: e.index, suffix: e.suffix, value: e.value }));
  const nr = xattrBlockNumber(sb, raw);
  if (nr === 0) return { body: stored(false), block: null };
  const { refcount, hash } = xattrBlockHeader(await reader.read(nr));
  if (refcount === 0) {
    throw new CorruptError(`xattr block ${nr} of inode ${ino}`, "reference count 0");
  }
  return { body: stored(false), block: { nr, entries: stored(true), refcount, hash } };
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
 * Every stored attribute of an inode — in-inode ones first, then the xattr block's — with
 * EA-inode values read. Includes what the kernel hides (system.data and others).
 *
 * @example
 * ```ts ignore
 * for (const e of await readRawXattrs(src)) console.log(e.name, e.valueSize);
 * ```
 */
export async function readRawXattrs(src: XattrSource): Promise<XattrEntry[]> {
  const entries = parseInodeXattrs(src.sb, src.ino, src.inodeBytes);
  entries.push(...await readBlockXattrs(src));
  for (const e of entries) await readEaValue(src, e);
  return entries;
}

/**
 * The first stored attribute `match` accepts, looked up as the kernel's `ext4_xattr_get`: in
 * the inode body, and only when it is not there in the xattr block; its value read from its
 * EA inode if it has one.
 *
 * @example
 * ```ts ignore
 * const def = await findRawXattr(src, (e) => e.index === XattrIndex.POSIX_ACL_DEFAULT);
 * ```
 */
export async function findRawXattr(
  src: XattrSource,
  match: (e: XattrEntry) => boolean,
): Promise<XattrEntry | undefined> {
  // Without an xattr block (the common case) no block read is awaited: every create looks for
  // its parent's default ACL here.
  const found = parseInodeXattrs(src.sb, src.ino, src.inodeBytes).find(match) ??
    (xattrBlockNumber(src.sb, src.inodeBytes) === 0
      ? undefined
      : (await readBlockXattrs(src)).find(match));
  if (found) await readEaValue(src, found);
  return found;
}

/** The entries of the inode's xattr block (none without one). */
async function readBlockXattrs(src: XattrSource): Promise<XattrEntry[]> {
  const { sb, ino } = src;
  const blockNr = xattrBlockNumber(sb, src.inodeBytes);
  if (blockNr === 0) return [];
  if (blockNr < sb.firstDataBlock || blockNr >= sb.blocksCount) {
    throw new CorruptError(`inode ${ino}`, `xattr block ${blockNr} out of range`);
  }
  return parseXattrBlock(sb, ino, blockNr, await src.readBlock(blockNr));
}

/** Fills in the value of an entry kept in an EA inode. */
async function readEaValue(src: XattrSource, e: XattrEntry): Promise<void> {
  if (e.valueInum === 0) return;
  const value = await src.readEaInode(e.valueInum, e.valueSize);
  if (value.length !== e.valueSize) {
    throw new CorruptError(
      `EA inode ${e.valueInum} of inode ${src.ino}`,
      `holds ${value.length} bytes, the entry says ${e.valueSize}`,
    );
  }
  e.value = value;
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

/** Options for {@link setXattr}. */
export interface SetXattrOptions {
  /** Fail with EXISTS if the attribute is there (XATTR_CREATE). */
  create?: boolean;
  /** Fail with NOT_FOUND (ENODATA) if it is not (XATTR_REPLACE). */
  replace?: boolean;
  /** ctime to stamp (default: now). */
  now?: InodeTime;
  /**
   * Allow changing "system.data", the inline data's own attribute (for lib/ext4/inline.ts
   * only; it must stay in the inode body: NO_SPACE, discarding the transaction, if it would
   * not). Ordinary attributes of inline-data inodes need no option: "system.data" stays put.
   */
  inlineData?: boolean;
}

/**
 * Sets (or with `value === null` removes) attribute `name` of inode `ino`, rewriting the
 * inode's attribute area and its xattr block (shared with identical sets where possible). A
 * refused call (EXISTS, NOT_FOUND with errno ENODATA, a bad name or value, ENOSPC because the
 * attributes do not fit the inode and one block) changes nothing; a failure while writing
 * discards the transaction.
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
  try {
    await setXattrs(tx, alloc, sb, gdt, ino, [{ name, value }], options);
  } catch (e) {
    // Name the attribute that did not fit, as a caller copying many needs to say which.
    if (e instanceof Ext4Error && e.code === "NO_SPACE" && value !== null) {
      throw new Ext4Error(
        "NO_SPACE",
        `xattr ${name} of ${value.length} bytes cannot fit (${e.message})`,
        { errno: e.errno },
      );
    }
    throw e;
  }
}

/**
 * Applies several changes to the attributes of inode `ino` in order, writing the inode and
 * its block once (what `put` wants for a file's whole set: no intermediate blocks). Every
 * change is checked before anything is written; `create`/`replace` apply to each.
 *
 * @example
 * ```ts ignore
 * await setXattrs(tx, alloc, sb, gdt, ino, [
 *   { name: "user.a", value: enc.encode("1") },
 *   { name: "system.posix_acl_default", value: acl },
 * ]);
 * ```
 */
export async function setXattrs(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  changes: XattrChange[],
  options: SetXattrOptions = {},
): Promise<void> {
  const prepared = changes.map((c) => prepare(c, options.inlineData ?? false));
  const { raw, f: fields } = await loadInode(tx, sb, gdt, ino);
  const loaded = await loadXattrs(tx, sb, ino, raw);
  if (loaded.block && loaded.block.refcount < XATTR_REFCOUNT_MAX) {
    xattrBlockIndex(tx).add(loaded.block.hash, loaded.block.nr);
  }
  // Where each attribute is: untouched ones stay; set ones are placed by planLayout.
  const entries: Placed[] = [
    ...loaded.body.map((e): Placed => ({ ...e, where: "body" })),
    ...(loaded.block?.entries ?? []).map((e): Placed => ({ ...e, where: "block" })),
  ];
  let mode = fields.mode;
  const isDir = (mode & 0o170000) === 0o040000;
  for (const c of prepared) {
    let value = c.stored;
    let missingOk = c.missingOk;
    if (c.index === XattrIndex.POSIX_ACL_DEFAULT && !isDir) {
      if (value === null && missingOk) continue;
      throw new Ext4Error("PERMISSION", `a default ACL needs a directory (inode ${ino})`);
    }
    if (c.index === XattrIndex.POSIX_ACL_ACCESS && c.acl) {
      // posix_acl_update_mode: the mode follows the ACL; one that says no more is not stored.
      const { mode: bits, equivalent } = aclModeBits(c.acl);
      mode = (mode & ~0o777) | bits;
      if (equivalent) [value, missingOk] = [null, true];
    }
    const at = entries.findIndex((e) => compareXattrs(e, c) === 0);
    if (at >= 0 && options.create) throw new Ext4Error("EXISTS", `xattr ${c.name} exists`);
    if (at < 0 && (options.replace || value === null)) {
      if (value === null && missingOk) continue;
      throw new Ext4Error("NOT_FOUND", `no xattr ${c.name}`, { errno: Errno.ENODATA });
    }
    if (value === null) entries.splice(at, 1);
    else if (at >= 0) entries[at] = { index: c.index, suffix: c.suffix, value, where: null };
    else entries.push({ index: c.index, suffix: c.suffix, value, where: null });
  }
  const plan = planLayout(sb, raw, ino, entries);
  if (plan.inBlock.some(isSystemData)) {
    // The kernel reads inline data only from the inode body; lib/ext4/inline.ts converts.
    tx.abort();
    throw new Ext4Error("NO_SPACE", `inline data of inode ${ino} would leave its inode body`);
  }
  await tx.discardOnError(async () => {
    await writeXattrs(tx, alloc, sb, gdt, ino, raw, fields, mode, plan, loaded.block, options.now);
  });
}

/**
 * After a chmod to `mode`, brings the access ACL of inode `ino` (if it has one) in line, as the
 * kernel's `posix_acl_chmod`: the owner entry takes the owner bits, the mask (or, without one,
 * the owning group entry) the group bits, the other entry the other bits. No ACL, no change.
 *
 * @example
 * ```ts ignore
 * await chmodAccessAcl(tx, alloc, sb, gdt, ino, 0o100640);
 * ```
 */
export async function chmodAccessAcl(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  mode: number,
  now?: InodeTime,
): Promise<void> {
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const { body, block } = await loadXattrs(tx, sb, ino, raw);
  const acl = [...body, ...(block?.entries ?? [])].find((e) =>
    e.index === XattrIndex.POSIX_ACL_ACCESS
  );
  if (!acl) return;
  const entries = decodeExt4Acl(acl.value, `access ACL of inode ${ino}`);
  const hasMask = entries.some((e) => e.tag === AclTag.MASK);
  const updated = entries.map((e): AclEntry => {
    if (e.tag === AclTag.USER_OBJ) return { ...e, perm: (mode >> 6) & 7 };
    if (e.tag === (hasMask ? AclTag.MASK : AclTag.GROUP_OBJ)) {
      return { ...e, perm: (mode >> 3) & 7 };
    }
    if (e.tag === AclTag.OTHER) return { ...e, perm: mode & 7 };
    return e;
  });
  await setXattrs(tx, alloc, sb, gdt, ino, [
    { name: "system.posix_acl_access", value: aclToXattr(updated) },
  ], { now, inlineData: true }); // the inode's other attributes (system.data too) stay put
}

function isSystemData(e: StoredXattr): boolean {
  return e.index === XattrIndex.SYSTEM && e.suffix.length === 4 && e.suffix[0] === 0x64 &&
    e.suffix[1] === 0x61 && e.suffix[2] === 0x74 && e.suffix[3] === 0x61; // "data"
}

function ibodyStart(sb: Superblock, raw: Uint8Array): number | null {
  if (sb.inodeSize <= 128) return null;
  const extra = raw[0x80] | (raw[0x81] << 8);
  const start = 128 + extra;
  return start + IBODY_OVERHEAD <= sb.inodeSize ? start : null;
}

/** Where each attribute goes. */
interface Layout {
  start: number | null;
  inBody: StoredXattr[];
  /** Sorted in the block's order. */
  inBlock: StoredXattr[];
}

/** An attribute and where it is: in the inode, in the block, or (set now) to be placed. */
type Placed = StoredXattr & { where: "body" | "block" | null };

/**
 * Where attributes go, as the kernel places them: those not changed stay where they are;
 * each one set goes into the inode if it fits there, else into the block. NO_SPACE (before
 * any change) when the block overflows.
 */
function planLayout(sb: Superblock, raw: Uint8Array, ino: number, entries: Placed[]): Layout {
  const start = ibodyStart(sb, raw);
  let room = start === null ? 0 : sb.inodeSize - start - IBODY_OVERHEAD;
  for (const e of entries) if (e.where === "body") room -= xattrSpace(e);
  if (room < 0) throw new CorruptError(`inode ${ino}`, "in-inode xattrs overflow the inode");
  const where = entries.map((e) => {
    if (e.where) return e.where;
    const need = xattrSpace(e);
    if (need > room) return "block";
    room -= need;
    return "body";
  });
  const strip = ({ index, suffix, value }: Placed): StoredXattr => ({ index, suffix, value });
  const inBody = entries.filter((_, i) => where[i] === "body").map(strip);
  const inBlock = entries.filter((_, i) => where[i] === "block").map(strip).sort(compareXattrs);
  const blockNeed = inBlock.reduce((a, e) => a + xattrSpace(e), XATTR_BLOCK_HEADER_SIZE + 4);
  if (blockNeed > sb.blockSize) {
    throw new Ext4Error("NO_SPACE", `xattrs of inode ${ino} do not fit the inode and one block`);
  }
  return { start, inBody, inBlock };
}

async function writeXattrs(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  raw: Uint8Array,
  fields: InodeFields,
  mode: number,
  plan: Layout,
  old: LoadedBlock | null,
  now?: InodeTime,
): Promise<void> {
  const body = Uint8Array.from(raw);
  if (plan.start !== null) {
    body.fill(0, plan.start);
    if (plan.inBody.length > 0) {
      new DataView(body.buffer).setUint32(plan.start, XATTR_MAGIC, true);
      layOutXattrs(body, plan.inBody, plan.start + 4, sb.inodeSize, plan.start + 4, false);
    }
  }
  const fileAcl = await placeXattrBlock(tx, alloc, sb, gdt, ino, old, plan.inBlock);
  const per = sb.blockSize / 512;
  const blocks512 = fields.blocks512 + ((fileAcl ? 1 : 0) - (old ? 1 : 0)) * per;
  const t = changeTime(now);
  const updated = encodeInode(
    sb,
    ino,
    { ...decodeInode(sb, body), mode, fileAcl, blocks512, ctime: t },
    body,
  );
  await writeInode(tx, sb, gdt, ino, updated);
}

/**
 * The block an inode's out-of-inode attributes `set` go to, given the block it had (`old`):
 * none for an empty set; `old` itself when it already holds them; a shared block holding the
 * same (one more reference); `old` rewritten in place when the inode is its only user; else a
 * new block. The old block loses this inode's reference unless kept.
 */
async function placeXattrBlock(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  old: LoadedBlock | null,
  set: StoredXattr[],
): Promise<number> {
  if (set.length === 0) {
    if (old) await releaseXattrBlock(tx, alloc, sb, old.nr);
    return 0;
  }
  if (old && sameXattrs(set, old.entries)) return old.nr;
  const index = xattrBlockIndex(tx);
  const hash = xattrSetHash(set);
  const shared = await findSharable(tx, alloc, sb, index, hash, set, old?.nr ?? 0);
  if (shared) {
    const img = await tx.getWritable(shared);
    const refcount = xattrBlockHeader(img).refcount + 1;
    setXattrBlockRefcount(sb, shared, img, refcount);
    if (refcount >= XATTR_REFCOUNT_MAX) index.remove(hash, shared);
    if (old) await releaseXattrBlock(tx, alloc, sb, old.nr);
    return shared;
  }
  if (old && old.refcount === 1) {
    index.remove(old.hash, old.nr);
    (await tx.getWritable(old.nr)).set(encodeXattrBlock(sb, old.nr, set, 1));
    index.add(hash, old.nr);
    return old.nr;
  }
  const goal = gdt.get(Math.floor((ino - 1) / sb.inodesPerGroup)).inodeTable;
  const [run] = await alloc.allocateBlocks(tx, goal, 1);
  tx.newBlock(run.start).set(encodeXattrBlock(sb, run.start, set, 1));
  index.add(hash, run.start);
  if (old) await releaseXattrBlock(tx, alloc, sb, old.nr);
  return run.start;
}

/**
 * A block from the index that can take one more reference for `set`: re-checked on the block
 * itself (in the filesystem, allocated, a valid xattr block with this hash, refcount below
 * the limit, the same entries). Entries that no longer hold are dropped from the index.
 */
async function findSharable(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  index: XattrBlockIndex,
  hash: number,
  set: StoredXattr[],
  exclude: number,
): Promise<number> {
  for (const b of index.candidates(hash)) {
    if (b === exclude) continue;
    let verdict: "share" | "collision" | "stale" = "stale";
    try {
      if (b >= sb.firstDataBlock && b < sb.blocksCount && await alloc.isBlockInUse(tx, b)) {
        const img = await tx.read(b);
        const head = xattrBlockHeader(img);
        const entries = parseXattrBlock(sb, 0, b, img);
        if (head.hash === hash && head.refcount >= 1 && head.refcount < XATTR_REFCOUNT_MAX) {
          verdict = sameXattrs(set, entries) ? "share" : "collision";
        }
      }
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
    }
    if (verdict === "share") return b;
    if (verdict === "stale") index.remove(hash, b);
  }
  return 0;
}
