/**
 * Linear directory blocks, pure (no I/O): the `ext4_dir_entry_2` records, `rec_len` on
 * 64 KiB blocks, the metadata_csum tail of leaf blocks (find, verify, set), the walk over a
 * block's records with the kernel's `ext4_check_dir_entry` rules (one set of checks for
 * reading and writing), encoding, packing, inserting, removing and retargeting entries, and
 * inline directories' entries. Index (dx) blocks are ./dx.ts; reading the blocks of a
 * directory is lib/ext4/dir.ts.
 *
 * A bad record is a {@link CorruptError} naming the directory inode and logical block.
 *
 * Resume cookies: each {@link DirRecord} carries `offset`, the logical byte position just
 * after the entry (where the next one starts). It is > 0 and stable while the directory does
 * not change. Inline directories use the kernel's positions: "." at 0, ".." at 12, and an
 * entry at byte `o` of the inline data at `o + 20`.
 *
 * Over 700 lines because it is one on-disk structure, and reading and writing it share
 * the record walk and its checks; split, the two halves would drift again.
 *
 * @module
 */

import { crc32c } from "./checksum.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import { Compat, Incompat } from "./features.ts";
import { type FileType, fileTypeOfMode } from "./inode.ts";
import type { Superblock } from "./superblock.ts";
import { isDxNode, verifyDxChecksum } from "./dx.ts";
import { markVerified, wasVerified } from "./verified.ts";
import {
  DIRENT_HEADER,
  dirRecLen,
  inodeChecksumSeed,
  recLenFromDisk,
  recLenToDisk,
} from "./dir_record.ts";

export { dirRecLen, inodeChecksumSeed, recLenFromDisk, recLenToDisk } from "./dir_record.ts";

/** What directory parsing needs to know about the filesystem. */
export interface DirContext {
  /** The filesystem's superblock (features, checksum seed, block size). */
  sb: Superblock;
}

/** One live directory entry (inode number != 0). */
export interface DirRecord {
  /** Inode number the entry points to (`inode`); never 0. */
  ino: number;
  /** The name's bytes as stored (not necessarily UTF-8); a copy, independent of the block. */
  name: Uint8Array;
  /** The on-disk file type code ({@link DirFileType}); 0 without the filetype feature. */
  fileType: number;
  /** Resume cookie: the logical byte position just after this entry; always > 0. */
  offset: number;
}

/** Where a directory block comes from, for checksums and error messages. */
export interface DirBlockLocation {
  /** The directory's inode number (seeds metadata_csum block checksums). */
  ino: number;
  /** The directory's `i_generation` (seeds metadata_csum block checksums). */
  generation: number;
  /** Logical block number within the directory. */
  logical: number;
  /** The directory is hash-indexed: block 0 and blocks whose fake entry spans the block are index blocks. */
  isHtree?: boolean;
}

/** `file_type` codes of directory entries. */
export const DirFileType = {
  UNKNOWN: 0,
  REG_FILE: 1,
  DIR: 2,
  CHRDEV: 3,
  BLKDEV: 4,
  FIFO: 5,
  SOCK: 6,
  SYMLINK: 7,
  /** The fake file type of the metadata_csum tail entry. */
  DIR_CSUM: 0xde,
} as const;

/** The `file_type` code of each kind of inode. */
const DIRENT_TYPE_OF: Record<FileType, number> = {
  file: DirFileType.REG_FILE,
  dir: DirFileType.DIR,
  chardev: DirFileType.CHRDEV,
  blockdev: DirFileType.BLKDEV,
  fifo: DirFileType.FIFO,
  socket: DirFileType.SOCK,
  symlink: DirFileType.SYMLINK,
  unknown: DirFileType.UNKNOWN,
};

/**
 * The directory entry `file_type` code ({@link DirFileType}) for a full `st_mode`.
 *
 * @example
 * ```ts
 * import { direntTypeOfMode } from "./dirent.ts";
 * console.log(direntTypeOfMode(0o040755)); // 2
 * ```
 */
export function direntTypeOfMode(mode: number): number {
  return DIRENT_TYPE_OF[fileTypeOfMode(mode)];
}

/**
 * The kind of object a directory entry's `file_type` code names, or undefined for 0
 * (unknown, or no filetype feature) and codes no kind has: the inverse of
 * {@link direntTypeOfMode}.
 *
 * @example
 * ```ts
 * import { fileTypeOfDirentType } from "./dirent.ts";
 * console.log(fileTypeOfDirentType(2)); // dir
 * ```
 */
export function fileTypeOfDirentType(code: number): FileType | undefined {
  return FILE_TYPE_OF_DIRENT.get(code);
}

/** {@link DIRENT_TYPE_OF} inverted, without UNKNOWN. */
const FILE_TYPE_OF_DIRENT = new Map<number, FileType>(
  (Object.entries(DIRENT_TYPE_OF) as [FileType, number][])
    .filter(([, code]) => code !== DirFileType.UNKNOWN)
    .map(([type, code]) => [code, type]),
);

/** Inode flags that matter to directories. */
export const DirInodeFlags = {
  INDEX: 0x1000,
  ENCRYPT: 0x800,
  INLINE_DATA: 0x10000000,
  CASEFOLD: 0x40000000,
} as const;

/** Size of the metadata_csum tail of a leaf block (`struct ext4_dir_entry_tail`). */
export const DIRENT_TAIL_SIZE = 12;
/**
 * The offset of the metadata_csum tail in a leaf block, or -1 when the last 12 bytes are not
 * a tail (`inode` 0, `rec_len` 12, `name_len` 0, `file_type` 0xde).
 *
 * @example
 * ```ts
 * import { findDirentTail } from "./dirent.ts";
 * console.log(findDirentTail(new Uint8Array(1024))); // -1
 * ```
 */
export function findDirentTail(block: Uint8Array): number {
  const t = block.length - DIRENT_TAIL_SIZE;
  if (t < 0) return -1;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (v.getUint32(t, true) !== 0) return -1;
  if (recLenFromDisk(v.getUint16(t + 4, true), block.length) !== DIRENT_TAIL_SIZE) return -1;
  if (block[t + 6] !== 0 || block[t + 7] !== DirFileType.DIR_CSUM) return -1;
  return t;
}

/**
 * The crc32c a leaf block's tail should hold: over the block up to the tail, seeded with the
 * directory inode's checksum seed.
 *
 * @example
 * ```ts ignore
 * const ok = dirLeafChecksum(sb, ino, gen, block) === storedChecksum;
 * ```
 */
export function dirLeafChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): number {
  return crc32c(
    inodeChecksumSeed(sb, ino, generation),
    block.subarray(0, block.length - DIRENT_TAIL_SIZE),
  );
}

/**
 * Writes a metadata_csum tail into the last 12 bytes of a leaf block and stores its
 * checksum (the write path: the records must end where the tail starts).
 *
 * @example
 * ```ts ignore
 * setDirentTail(sb, ino, gen, block);
 * ```
 */
export function setDirentTail(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): void {
  writeTailHeader(block);
  new DataView(block.buffer, block.byteOffset, block.byteLength)
    .setUint32(block.length - 4, dirLeafChecksum(sb, ino, generation, block), true);
  // Right by construction: the next lookup in this image need not compute it again.
  markVerified(block, ino, generation);
}

/** The fake entry of the tail: inode 0, rec_len 12, name_len 0, file type 0xde. */
function writeTailHeader(block: Uint8Array): void {
  const t = block.length - DIRENT_TAIL_SIZE;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(t, 0, true);
  v.setUint16(t + 4, DIRENT_TAIL_SIZE, true);
  block[t + 6] = 0;
  block[t + 7] = DirFileType.DIR_CSUM;
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

/** True when the filesystem stores file types in directory entries. */
function hasFiletype(sb: Superblock): boolean {
  return (sb.incompat & Incompat.FILETYPE) !== 0;
}

/**
 * True when the directory is hash-indexed as the kernel sees it (`is_dx`): the inode has the
 * INDEX flag and the filesystem the dir_index feature.
 *
 * @example
 * ```ts ignore
 * if (isIndexedDirectory(sb, (flags & DirInodeFlags.INDEX) !== 0)) console.log("htree");
 * ```
 */
export function isIndexedDirectory(sb: Superblock, isHtree: boolean): boolean {
  return isHtree && (sb.compat & Compat.DIR_INDEX) !== 0;
}

/** One record of a block walk, live or not. */
export interface RawDirent {
  /** Byte position of the record within the walked buffer. */
  pos: number;
  recLen: number;
  ino: number;
  nameLen: number;
  fileType: number;
  name: Uint8Array;
}

/**
 * Walks the records of `buf[start, end)`, checking each as the kernel's
 * `ext4_check_dir_entry` does, and returns all of them (including unused ones, inode 0).
 * `recLenBase` is the size `rec_len` is decoded against (the block size). `where` names the
 * structure in errors.
 *
 * @example
 * ```ts ignore
 * const recs = walkDirents(block, 0, block.length, sb, block.length, "directory inode 2 block 0");
 * ```
 */
export function walkDirents(
  buf: Uint8Array,
  start: number,
  end: number,
  sb: Superblock,
  recLenBase: number,
  where: string,
): RawDirent[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ft = hasFiletype(sb);
  const out: RawDirent[] = [];
  let pos = start;
  // Each record is at least 12 bytes, so the walk ends after at most (end-start)/12 steps.
  while (pos < end) {
    const recLen = checkDirent(buf, v, pos, end, sb, recLenBase, where);
    const nameLen = buf[pos + 6];
    out.push({
      pos,
      recLen,
      ino: v.getUint32(pos, true),
      nameLen,
      fileType: ft ? buf[pos + 7] : 0,
      name: buf.slice(pos + DIRENT_HEADER, pos + DIRENT_HEADER + nameLen),
    });
    pos += recLen;
  }
  return out;
}

/**
 * Checks the record at `pos` of `buf[.., end)` as the kernel's `ext4_check_dir_entry` does
 * and returns its decoded `rec_len`: the one set of checks every reader and writer of
 * directory records goes through. `name_len` is the 8-bit field of `ext4_dir_entry_2`.
 */
function checkDirent(
  buf: Uint8Array,
  v: DataView,
  pos: number,
  end: number,
  sb: Superblock,
  recLenBase: number,
  where: string,
): number {
  if (pos + DIRENT_HEADER > end) {
    badDirent(where, pos, "directory entry header overruns the block");
  }
  const recLen = recLenFromDisk(v.getUint16(pos + 4, true), recLenBase);
  const nameLen = buf[pos + 6];
  if (recLen < DIRENT_HEADER + 4 || recLen % 4 !== 0 || recLen < dirRecLen(nameLen)) {
    if (recLen < dirRecLen(1)) badDirent(where, pos, `rec_len ${recLen} is smaller than minimal`);
    if (recLen % 4 !== 0) badDirent(where, pos, `rec_len ${recLen} % 4 != 0`);
    badDirent(where, pos, `rec_len ${recLen} is too small for name_len ${nameLen}`);
  }
  if (pos + recLen > end) badDirent(where, pos, `directory entry overrun (rec_len ${recLen})`);
  // A superblock without an inode count (a synthetic one) bounds nothing.
  const ino = v.getUint32(pos, true);
  const inodes = sb.inodesCount;
  if (inodes > 0 && ino > inodes) badDirent(where, pos, `inode ${ino} out of bounds`);
  return recLen;
}

/** The error of a record {@link checkDirent} refuses (kept out of line: it runs per record). */
function badDirent(where: string, pos: number, detail: string): never {
  throw new CorruptError(where, `bad entry: ${detail} at offset ${pos}`);
}

function blockWhere(loc: DirBlockLocation | undefined): string {
  return loc ? `directory inode ${loc.ino} (logical block ${loc.logical})` : "directory block";
}

/** A parsed record with its position within the directory. */
export interface PositionedRecord extends DirRecord {
  pos: number;
}

/**
 * {@link parseDirectoryBlock}, each record with its start position too (for readers that
 * resume inside a block).
 *
 * @example
 * ```ts ignore
 * const recs = parseDirectoryBlockPositioned(block, { sb }, { ino: 2, generation: 0, logical: 0 });
 * ```
 */
export function parseDirectoryBlockPositioned(
  block: Uint8Array,
  ctx: DirContext,
  loc: DirBlockLocation | undefined,
): PositionedRecord[] {
  const end = checkedRecordsEnd(block, ctx, loc);
  const bs = block.length;
  const base = loc ? loc.logical * bs : 0;
  const out: PositionedRecord[] = [];
  for (const d of walkDirents(block, 0, end, ctx.sb, bs, blockWhere(loc))) {
    if (d.ino === 0) continue;
    out.push({
      ino: d.ino,
      name: d.name,
      fileType: d.fileType,
      pos: base + d.pos,
      offset: base + d.pos + d.recLen,
    });
  }
  return out;
}

/**
 * The first live entry of a directory block whose name `matches` accepts, checked as
 * {@link parseDirectoryBlock} checks the block (size, checksum tail or dx tail, every record
 * up to the match) — without decoding the other entries: a lookup in a leaf of hundreds of
 * names allocates nothing for them. `matches` is the exact name (compared in place) or a
 * predicate that sees a view of the stored name (do not keep it); the returned record holds a
 * copy.
 *
 * @example
 * ```ts ignore
 * const hit = findInDirectoryBlock(block, { sb }, loc, (n) => sameBytes(n, name));
 * ```
 */
export function findInDirectoryBlock(
  block: Uint8Array,
  ctx: DirContext,
  loc: DirBlockLocation | undefined,
  matches: ((stored: Uint8Array) => boolean) | Uint8Array,
): DirRecord | null {
  const end = checkedRecordsEnd(block, ctx, loc);
  const sb = ctx.sb;
  const bs = block.length;
  const where = blockWhere(loc);
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const ft = hasFiletype(sb);
  const base = loc ? loc.logical * bs : 0;
  const exact = matches instanceof Uint8Array ? matches : null;
  for (let pos = 0; pos < end;) {
    const recLen = checkDirent(block, v, pos, end, sb, bs, where);
    const ino = v.getUint32(pos, true);
    if (ino !== 0) {
      const nameLen = block[pos + 6];
      // An exact name is compared in place: no view per record.
      const found = exact
        ? nameLen === exact.length && sameBytesAt(block, pos + DIRENT_HEADER, exact)
        : (matches as (stored: Uint8Array) => boolean)(
          block.subarray(pos + DIRENT_HEADER, pos + DIRENT_HEADER + nameLen),
        );
      if (found) {
        const name = block.subarray(pos + DIRENT_HEADER, pos + DIRENT_HEADER + nameLen);
        return {
          ino,
          name: name.slice(),
          fileType: ft ? block[pos + 7] : 0,
          offset: base + pos + recLen,
        };
      }
    }
    pos += recLen;
  }
  return null;
}

/** True when `block` holds `name`'s bytes at `at`. */
function sameBytesAt(block: Uint8Array, at: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) if (block[at + i] !== name[i]) return false;
  return true;
}

/**
 * Checks a directory block as a whole (its size; the dx tail of an index block, or the leaf's
 * checksum tail under metadata_csum, verified when `loc` names the directory) and returns
 * where its records end.
 */
function checkedRecordsEnd(
  block: Uint8Array,
  ctx: DirContext,
  loc: DirBlockLocation | undefined,
): number {
  const sb = ctx.sb;
  const bs = block.length;
  const where = blockWhere(loc);
  if (bs !== sb.blockSize) {
    throw new CorruptError(where, `block is ${bs} bytes, expected ${sb.blockSize}`);
  }
  let end = bs;
  const dx = loc?.isHtree === true && (loc.logical === 0 || isDxNode(sb, block));
  if (dx) {
    if (sb.hasMetadataCsum && !wasVerified(block, loc.ino, loc.generation)) {
      const r = verifyDxChecksum(sb, loc.ino, loc.generation, block);
      if (!r.ok) {
        throw new CorruptError(
          `directory index of inode ${loc.ino} (logical block ${loc.logical})`,
          r.reason,
        );
      }
      markVerified(block, loc.ino, loc.generation);
    }
  } else if (sb.hasMetadataCsum) {
    const tail = findDirentTail(block);
    if (tail < 0) throw new CorruptError(where, "no space for the directory leaf checksum");
    if (loc && !wasVerified(block, loc.ino, loc.generation)) {
      const stored = new DataView(block.buffer, block.byteOffset, block.byteLength)
        .getUint32(tail + 8, true);
      const computed = dirLeafChecksum(sb, loc.ino, loc.generation, block);
      if (stored !== computed) {
        throw new CorruptError(
          where,
          `checksum mismatch (stored 0x${hex(stored)}, computed 0x${hex(computed)})`,
          { errno: Errno.EBADMSG }, // the kernel's EFSBADCRC
        );
      }
      markVerified(block, loc.ino, loc.generation);
    }
    end = tail;
  }
  return end;
}

/**
 * Parses one directory block into its live entries.
 *
 * Under metadata_csum a leaf block must end in a checksum tail, verified when `loc` gives
 * the directory's inode number and generation. Index blocks of a hash-indexed directory
 * (`loc.isHtree`) hold no real entries beyond "." and ".." of the dx_root; their dx_tail
 * checksum is verified instead. Without `loc` no checksum can be checked and offsets are
 * relative to the block.
 *
 * @example
 * ```ts ignore
 * const entries = parseDirectoryBlock(block, { sb }, { ino: 2, generation: 0, logical: 0 });
 * for (const e of entries) console.log(e.ino, new TextDecoder().decode(e.name));
 * ```
 */
export function parseDirectoryBlock(
  block: Uint8Array,
  ctx: DirContext,
  loc?: DirBlockLocation,
): DirRecord[] {
  return parseDirectoryBlockPositioned(block, ctx, loc).map(({ ino, name, fileType, offset }) => ({
    ino,
    name,
    fileType,
    offset,
  }));
}

/** A record without its start position. */
export function stripPosition(r: DirRecord): DirRecord {
  return { ino: r.ino, name: r.name, fileType: r.fileType, offset: r.offset };
}

/** Size of the parent inode number at the start of an inline directory. */
export const INLINE_DOTDOT_SIZE = 4;
/** Size of `i_block`, the first part of inline data. */
export const INLINE_IBLOCK_SIZE = 60;
/**
 * Inline entries are reported at their byte position plus this, leaving room for the
 * synthesized "." (position 0) and ".." (position 12), as the kernel's readdir does.
 */
const INLINE_EXTRA_OFFSET = dirRecLen(1) + dirRecLen(2) - INLINE_DOTDOT_SIZE;

/**
 * {@link parseInlineDirectory}, each record with its start position too.
 *
 * @example
 * ```ts ignore
 * const recs = parseInlineDirectoryPositioned(data, 12, { sb });
 * ```
 */
export function parseInlineDirectoryPositioned(
  data: Uint8Array,
  dirIno: number,
  ctx: DirContext,
): PositionedRecord[] {
  const where = `inline directory inode ${dirIno}`;
  if (data.length < INLINE_IBLOCK_SIZE) {
    throw new CorruptError(where, `inline data is ${data.length} bytes, less than i_block`);
  }
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const parent = v.getUint32(0, true);
  if (parent > ctx.sb.inodesCount) {
    throw new CorruptError(where, `parent inode ${parent} out of bounds`);
  }
  const out: PositionedRecord[] = [
    { ino: dirIno, name: new Uint8Array([0x2e]), fileType: DirFileType.DIR, pos: 0, offset: 12 },
    {
      ino: parent,
      name: new Uint8Array([0x2e, 0x2e]),
      fileType: DirFileType.DIR,
      pos: 12,
      offset: 24,
    },
  ];
  // The entries in i_block and those in the system.data value are two runs, each tiled by
  // its own records, as the kernel writes and looks them up (ext4_find_inline_entry);
  // rec_len decodes against the block size.
  const bs = ctx.sb.blockSize;
  const recs = walkDirents(data, INLINE_DOTDOT_SIZE, INLINE_IBLOCK_SIZE, ctx.sb, bs, where)
    .concat(walkDirents(data, INLINE_IBLOCK_SIZE, data.length, ctx.sb, bs, where));
  for (const d of recs) {
    if (d.ino === 0) continue;
    out.push({
      ino: d.ino,
      name: d.name,
      fileType: d.fileType,
      pos: d.pos + INLINE_EXTRA_OFFSET,
      offset: d.pos + d.recLen + INLINE_EXTRA_OFFSET,
    });
  }
  return out;
}

/**
 * Parses an inline directory: `data` is the 60 bytes of `i_block` (a 4-byte parent inode
 * number, then entries) followed by the system.data xattr value (more entries). Returns
 * "." and ".." synthesized from the directory's own and the parent's inode numbers, then
 * the live entries, with the kernel's readdir positions as cookies.
 *
 * @example
 * ```ts ignore
 * const entries = parseInlineDirectory(readInlineData(src), 12, { sb });
 * ```
 */
export function parseInlineDirectory(
  data: Uint8Array,
  dirIno: number,
  ctx: DirContext,
): DirRecord[] {
  return parseInlineDirectoryPositioned(data, dirIno, ctx).map(stripPosition);
}

/** One entry to write. */
export interface NewDirEntry {
  /** Inode number the entry points to (`inode`). */
  ino: number;
  /** The name's bytes (1..255 bytes, no '/' or NUL). */
  name: Uint8Array;
  /** A {@link DirFileType} code (ignored without the filetype feature). */
  type: number;
}

/** One entry found in a block. */
export interface DirBlockEntry {
  offset: number;
  ino: number;
  recLen: number;
  name: Uint8Array;
  type: number;
}

function readRecLen(v: DataView, o: number, bs: number): number {
  return recLenFromDisk(v.getUint16(o + 4, true), bs);
}

function writeRecLen(v: DataView, o: number, len: number, bs: number): void {
  v.setUint16(o + 4, recLenToDisk(len, bs), true);
}

/** The usable end of a block: before the checksum tail when metadata_csum is on. */
export function dirBlockEnd(sb: Superblock): number {
  return sb.blockSize - (sb.hasMetadataCsum ? DIRENT_TAIL_SIZE : 0);
}

/**
 * The entries of a linear directory block (including unused ones, inode 0), checked: record
 * lengths must be multiples of 4, hold their name, and tile the block exactly.
 */
export function parseDirBlock(
  sb: Superblock,
  block: Uint8Array,
  where = "directory block",
  end: number = dirBlockEnd(sb),
): DirBlockEntry[] {
  return walkDirents(block, 0, end, sb, sb.blockSize, where).map((d) => ({
    offset: d.pos,
    ino: d.ino,
    recLen: d.recLen,
    name: d.name,
    type: d.fileType,
  }));
}

function putEntry(
  sb: Superblock,
  block: Uint8Array,
  o: number,
  recLen: number,
  e: NewDirEntry,
): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(o, e.ino, true);
  writeRecLen(v, o, recLen, sb.blockSize);
  if (hasFiletype(sb)) {
    block[o + 6] = e.name.length;
    block[o + 7] = e.type;
  } else {
    v.setUint16(o + 6, e.name.length, true);
  }
  block.set(e.name, o + 8);
  // Zero the padding so identical directories have identical bytes.
  block.fill(0, o + 8 + e.name.length, o + dirRecLen(e.name.length));
}

function checkName(name: Uint8Array): void {
  if (name.length === 0 || name.length > 255) {
    throw new Ext4Error("NAME_TOO_LONG", `a name must be 1..255 bytes, got ${name.length}`);
  }
  if (name.includes(0) || name.includes(0x2f)) {
    throw new Ext4Error("INVALID", "a name cannot hold NUL or '/'");
  }
}

/** An empty directory block: one unused entry spanning it, and the tail. */
export function emptyDirBlock(sb: Superblock): Uint8Array {
  const block = new Uint8Array(sb.blockSize);
  const v = new DataView(block.buffer);
  writeRecLen(v, 0, dirBlockEnd(sb), sb.blockSize);
  initTail(sb, block);
  return block;
}

/**
 * A directory block holding `entries` packed from its start, in the order given (the last
 * record spans the rest of the block), with the metadata_csum tail (checksum not yet set);
 * or null when they do not fit. Linear time, unlike repeated {@link insertDirEntry} calls.
 *
 * @example
 * ```ts ignore
 * const block = packDirBlock(sb, sortedByHash) ?? split();
 * setDirBlockChecksum(sb, dirIno, dirGeneration, block);
 * ```
 */
export function packDirBlock(sb: Superblock, entries: NewDirEntry[]): Uint8Array | null {
  const end = dirBlockEnd(sb);
  let total = 0;
  for (const e of entries) {
    checkName(e.name);
    total += dirRecLen(e.name.length);
  }
  if (total > end) return null;
  if (entries.length === 0) return emptyDirBlock(sb);
  const block = new Uint8Array(sb.blockSize);
  let o = 0;
  entries.forEach((e, i) => {
    const len = i === entries.length - 1 ? end - o : dirRecLen(e.name.length);
    putEntry(sb, block, o, len, e);
    o += len;
  });
  initTail(sb, block);
  return block;
}

/** The first block of a new directory: "." and "..", the rest free. */
export function newDirectoryBlock(sb: Superblock, ino: number, parentIno: number): Uint8Array {
  const block = new Uint8Array(sb.blockSize);
  putEntry(sb, block, 0, 12, { ino, name: new Uint8Array([0x2e]), type: DirFileType.DIR });
  putEntry(sb, block, 12, dirBlockEnd(sb) - 12, {
    ino: parentIno,
    name: new Uint8Array([0x2e, 0x2e]),
    type: DirFileType.DIR,
  });
  initTail(sb, block);
  return block;
}

function initTail(sb: Superblock, block: Uint8Array): void {
  if (!sb.hasMetadataCsum) return;
  writeTailHeader(block);
  new DataView(block.buffer, block.byteOffset, block.byteLength)
    .setUint32(block.length - 4, 0, true);
}

/**
 * Inserts an entry into a linear block where it fits: an unused entry large enough, or the
 * slack after a live entry (which is split). Returns false when the block has no room.
 * Throws `EXISTS` if the name is already there.
 *
 * @example
 * ```ts ignore
 * const block = await tx.getWritable(dirBlock);
 * if (!insertDirEntry(sb, block, { ino, name, type: DirFileType.REG_FILE })) { ... add a block ... }
 * setDirBlockChecksum(sb, dirIno, dirGeneration, block);
 * ```
 */
export function insertDirEntry(
  sb: Superblock,
  block: Uint8Array,
  entry: NewDirEntry,
  end: number = dirBlockEnd(sb),
): boolean {
  checkName(entry.name);
  const need = dirRecLen(entry.name.length);
  // Allocation-free (this runs for every entry created): the checking scan first, then the
  // first slot that fits, on the structure the scan validated.
  const scan = scanDirBlock(sb, block, entry.name, "directory block", end);
  if (scan.ino) {
    throw new Ext4Error("EXISTS", `${new TextDecoder().decode(entry.name)} already exists`);
  }
  if (!scan.room) return false;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const bs = sb.blockSize;
  for (let o = 0; o < end;) {
    const recLen = readRecLen(v, o, bs);
    const ino = v.getUint32(o, true);
    if (ino === 0 && recLen >= need) {
      putEntry(sb, block, o, recLen, entry);
      return true;
    }
    const used = ino === 0 ? 0 : dirRecLen(block[o + 6]);
    if (ino !== 0 && recLen - used >= need) {
      writeRecLen(v, o, used, bs);
      putEntry(sb, block, o + used, recLen - used, entry);
      return true;
    }
    o += recLen;
  }
  return false;
}

/**
 * One allocation-free pass over a block: the inode of the live entry named `name` (0 if
 * none) and whether an entry of that name's length would fit. Structure errors are
 * CorruptError as in {@link parseDirBlock}.
 */
export function scanDirBlock(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  where = "directory block",
  end: number = dirBlockEnd(sb),
): { ino: number; room: boolean } {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const need = dirRecLen(name.length);
  const bs = sb.blockSize; // a getter: read once, not per record
  let room = false;
  let o = 0;
  while (o < end) {
    const recLen = checkDirent(block, v, o, end, sb, bs, where);
    const nameLen = block[o + 6];
    const ino = v.getUint32(o, true);
    if (ino === 0) {
      if (recLen >= need) room = true;
    } else {
      if (recLen - dirRecLen(nameLen) >= need) room = true;
      if (nameLen === name.length) {
        let same = true;
        for (let i = 0; i < nameLen; i++) {
          if (block[o + 8 + i] !== name[i]) {
            same = false;
            break;
          }
        }
        if (same) return { ino, room };
      }
    }
    o += recLen;
  }
  return { ino: 0, room };
}

/** True when an entry with a name of `nameLen` bytes fits in the block (see {@link insertDirEntry}). */
export function dirBlockHasRoom(entries: DirBlockEntry[], nameLen: number): boolean {
  const need = dirRecLen(nameLen);
  return entries.some((e) =>
    e.ino === 0 ? e.recLen >= need : e.recLen - dirRecLen(e.name.length) >= need
  );
}

/** Where a live entry sits in a linear block: its record, the previous record (-1: none). */
interface LocatedDirent {
  pos: number;
  prev: number;
  recLen: number;
  ino: number;
}

/**
 * The live entry named `name` in `block[0, end)`, found in place (nothing decoded or copied
 * for the other records), every record up to it checked as {@link walkDirents} checks them —
 * as the kernel's ext4_find_dest_de/ext4_generic_delete_entry check what they walk over.
 */
function locateDirEntry(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  end: number,
): LocatedDirent | null {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const bs = sb.blockSize;
  let prev = -1;
  for (let pos = 0; pos < end;) {
    const recLen = checkDirent(block, v, pos, end, sb, bs, "directory block");
    const ino = v.getUint32(pos, true);
    if (
      ino !== 0 && block[pos + 6] === name.length &&
      sameBytesAt(block, pos + DIRENT_HEADER, name)
    ) {
      return { pos, prev, recLen, ino };
    }
    prev = pos;
    pos += recLen;
  }
  return null;
}

/**
 * Removes the entry named `name`: merged into the previous entry's record, or (the first
 * entry of the block) marked unused. Returns the removed entry's inode, or 0 if absent.
 */
export function removeDirEntry(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  end: number = dirBlockEnd(sb),
): number {
  const e = locateDirEntry(sb, block, name, end);
  if (!e) return 0;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (e.prev < 0) {
    // The kernel's ext4_generic_delete_entry: unused, all but the record length wiped.
    v.setUint32(e.pos, 0, true);
    block.fill(0, e.pos + 6, e.pos + e.recLen);
  } else {
    const prevLen = readRecLen(v, e.prev, sb.blockSize);
    writeRecLen(v, e.prev, prevLen + e.recLen, sb.blockSize);
    block.fill(0, e.pos, e.pos + 8 + name.length);
  }
  return e.ino;
}

/**
 * Points the live entry `name` at another inode (and file type) in place. Returns the inode
 * it pointed to, or 0 if there is no such entry.
 */
export function retargetDirEntry(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  ino: number,
  type: number,
  end: number = dirBlockEnd(sb),
): number {
  const e = locateDirEntry(sb, block, name, end);
  if (!e) return 0;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(e.pos, ino, true);
  if (hasFiletype(sb)) block[e.pos + 7] = type;
  return e.ino;
}

/**
 * True when two names are the same bytes.
 *
 * @example
 * ```ts
 * import { sameName } from "./dirent.ts";
 * console.log(sameName(new Uint8Array([0x61]), new Uint8Array([0x61]))); // true
 * ```
 */
export function sameName(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * True for "." and "..".
 *
 * @example
 * ```ts
 * import { isDotName } from "./dirent.ts";
 * console.log(isDotName(new Uint8Array([0x2e, 0x2e]))); // true
 * ```
 */
export function isDotName(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/** Stores the tail checksum of a linear directory block (no-op without metadata_csum). */
export function setDirBlockChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): void {
  if (!sb.hasMetadataCsum) return;
  const o = findDirentTail(block);
  if (o < 0) throw new CorruptError(`directory block of inode ${ino}`, "no checksum tail");
  new DataView(block.buffer, block.byteOffset, block.byteLength)
    .setUint32(o + 8, dirLeafChecksum(sb, ino, generation, block), true);
  // Right by construction: the next lookup in this image need not compute it again.
  markVerified(block, ino, generation);
}

/** True when the tail checksum matches (always true without metadata_csum). */
export function dirBlockChecksumValid(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): boolean {
  if (!sb.hasMetadataCsum) return true;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return v.getUint32(sb.blockSize - 4, true) === dirLeafChecksum(sb, ino, generation, block);
}
