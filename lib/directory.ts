/**
 * Linear directories: the `ext4_dir_entry_2` records of a directory block, the checksum
 * tail of metadata_csum leaf blocks and the dx_tail of index blocks, and iteration over
 * every entry of a directory — block-based (linear or hash-indexed, read linearly) or
 * inline (in the inode).
 *
 * Every entry is checked the way the kernel's `ext4_check_dir_entry` does; a bad record is a
 * {@link CorruptError} naming the directory inode and logical block.
 *
 * Resume cookies: each {@link DirRecord} carries `offset`, the logical byte position just
 * after the entry (where the next one starts). It is > 0 and stable while the directory does
 * not change; {@link iterateDirectory} resumes at any such position. Inline directories use
 * the kernel's positions: "." at 0, ".." at 12, and an entry at byte `o` of the inline data
 * at `o + 20`.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError, Errno } from "./errors.ts";
import { Compat, Incompat } from "./features.ts";
import { type FileType, fileTypeOfMode } from "./ondisk/inode.ts";
import type { Superblock } from "./superblock.ts";

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

/** A directory as the parsers see it; the reader core builds it from the inode. */
export interface DirectorySource {
  /** The directory's inode number (seeds metadata_csum block checksums). */
  ino: number;
  /** The directory's `i_generation` (seeds metadata_csum block checksums). */
  generation: number;
  /** `i_size`. */
  size: number;
  /** Block size in bytes. */
  blockSize: number;
  /** For inline directories: the 60 bytes of `i_block` followed by the system.data value. */
  inlineData: Uint8Array | null;
  /** Reads logical block `logical`; null for a hole. */
  readBlock(logical: number): Promise<Uint8Array | null>;
  /** The inode has the INDEX flag (EXT4_INDEX_FL). */
  isHtree: boolean;
  /** Optional: `i_flags`, so lookups can refuse casefolded or encrypted-casefolded dirs. */
  flags?: number;
  /**
   * Optional: the first mapped logical block >= `from`, or null when none is left. Lets
   * iteration jump over holes instead of asking for every block of a sparse directory.
   */
  nextMappedBlock?(from: number): Promise<number | null>;
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
 * import { direntTypeOfMode } from "./directory.ts";
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
 * import { fileTypeOfDirentType } from "./directory.ts";
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
/** Size of the tail of an index block (`struct dx_tail`). */
export const DX_TAIL_SIZE = 8;
/** Header of a directory entry before its name. */
const DIRENT_HEADER = 8;

/**
 * The space a directory entry with a name of `nameLen` bytes needs: 8-byte header plus the
 * name, rounded up to 4.
 *
 * @example
 * ```ts
 * import { dirRecLen } from "./directory.ts";
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
 * import { recLenFromDisk } from "./directory.ts";
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
 * import { recLenToDisk } from "./directory.ts";
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

/**
 * The offset of the metadata_csum tail in a leaf block, or -1 when the last 12 bytes are not
 * a tail (`inode` 0, `rec_len` 12, `name_len` 0, `file_type` 0xde).
 *
 * @example
 * ```ts
 * import { findDirentTail } from "./directory.ts";
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
 * Where the `dx_countlimit` of an index block is: 8 in a dx_node (one fake entry spanning
 * the block), 32 in a dx_root ("." of 12 bytes, ".." spanning the rest, then the 8-byte
 * root info), or -1 when the block has neither shape.
 *
 * @example
 * ```ts
 * import { dxCountOffset } from "./directory.ts";
 * const node = new Uint8Array(1024);
 * node[5] = 4; // rec_len 1024
 * console.log(dxCountOffset(node)); // 8
 * ```
 */
export function dxCountOffset(block: Uint8Array): number {
  const bs = block.length;
  if (bs < 40) return -1;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const first = recLenFromDisk(v.getUint16(4, true), bs);
  if (first === bs) return 8;
  if (first !== 12) return -1;
  if (recLenFromDisk(v.getUint16(16, true), bs) !== bs - 12) return -1;
  // dx_root_info: reserved_zero u32, hash_version u8, info_length u8 (8), ...
  if (v.getUint32(24, true) !== 0 || block[29] !== 8) return -1;
  return 32;
}

/** Result of checking an index block's dx_tail. */
export type DxChecksumResult =
  | { ok: true }
  | { ok: false; reason: string };

/**
 * Computes the dx_tail checksum of an index block (dx_root or dx_node): crc32c over the
 * header and the `count` entries in use, then the tail's reserved word and a zero checksum
 * field. Returns where the tail is and the checksum, or why the block has no usable tail.
 *
 * @example
 * ```ts ignore
 * const r = computeDxChecksum(sb, ino, gen, block);
 * if ("checksum" in r) new DataView(block.buffer).setUint32(r.tail + 4, r.checksum, true);
 * ```
 */
export function computeDxChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): { tail: number; checksum: number } | { reason: string } {
  const off = dxCountOffset(block);
  if (off < 0) return { reason: "not an index block" };
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const limit = v.getUint16(off, true);
  const count = v.getUint16(off + 2, true);
  const tail = off + limit * 8;
  if (tail + DX_TAIL_SIZE > block.length) {
    return { reason: `no space for the dx_tail checksum (limit ${limit})` };
  }
  if (count > limit) return { reason: `count ${count} exceeds limit ${limit}` };
  let c = crc32c(inodeChecksumSeed(sb, ino, generation), block.subarray(0, off + count * 8));
  c = crc32c(c, block.subarray(tail, tail + 4));
  c = crc32cU32(c, 0);
  return { tail, checksum: c };
}

/**
 * Verifies the dx_tail checksum of an index block under metadata_csum.
 *
 * @example
 * ```ts ignore
 * const r = verifyDxChecksum(sb, ino, gen, block);
 * if (!r.ok) throw new Error(r.reason);
 * ```
 */
export function verifyDxChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): DxChecksumResult {
  const r = computeDxChecksum(sb, ino, generation, block);
  if ("reason" in r) return { ok: false, reason: r.reason };
  const stored = new DataView(block.buffer, block.byteOffset, block.byteLength)
    .getUint32(r.tail + 4, true);
  if (stored !== r.checksum) {
    return {
      ok: false,
      reason: `dx_tail checksum mismatch (stored 0x${hex(stored)}, computed 0x${hex(r.checksum)})`,
    };
  }
  return { ok: true };
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
  const t = block.length - DIRENT_TAIL_SIZE;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(t, 0, true);
  v.setUint16(t + 4, DIRENT_TAIL_SIZE, true);
  block[t + 6] = 0;
  block[t + 7] = DirFileType.DIR_CSUM;
  v.setUint32(t + 8, dirLeafChecksum(sb, ino, generation, block), true);
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
    const bad = (detail: string): never => {
      throw new CorruptError(where, `${detail} at offset ${pos}`);
    };
    if (pos + DIRENT_HEADER > end) bad("directory entry header overruns the block");
    const ino = v.getUint32(pos, true);
    const recLen = recLenFromDisk(v.getUint16(pos + 4, true), recLenBase);
    const nameLen = buf[pos + 6];
    const fileType = ft ? buf[pos + 7] : 0;
    if (recLen < dirRecLen(1)) bad(`rec_len ${recLen} is smaller than minimal`);
    if (recLen % 4 !== 0) bad(`rec_len ${recLen} % 4 != 0`);
    if (recLen < dirRecLen(nameLen)) bad(`rec_len ${recLen} is too small for name_len ${nameLen}`);
    if (pos + recLen > end) bad(`directory entry overrun (rec_len ${recLen})`);
    if (ino > sb.inodesCount) bad(`inode ${ino} out of bounds`);
    out.push({
      pos,
      recLen,
      ino,
      nameLen,
      fileType,
      name: buf.slice(pos + DIRENT_HEADER, pos + DIRENT_HEADER + nameLen),
    });
    pos += recLen;
  }
  return out;
}

function blockWhere(loc: DirBlockLocation | undefined): string {
  return loc ? `directory inode ${loc.ino} (logical block ${loc.logical})` : "directory block";
}

/**
 * True when a block of an indexed directory is an index block: block 0 (dx_root) or a block
 * whose first record is an unused entry spanning the whole block (dx_node). An empty leaf
 * without metadata_csum has the same shape; it holds no entries either way.
 */
function isDxBlock(block: Uint8Array, logical: number): boolean {
  if (logical === 0) return true;
  if (block.length < 8) return false;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return v.getUint32(0, true) === 0 &&
    recLenFromDisk(v.getUint16(4, true), block.length) === block.length;
}

/** A parsed record with its position within the directory. */
interface PositionedRecord extends DirRecord {
  pos: number;
}

function parseBlockPositioned(
  block: Uint8Array,
  ctx: DirContext,
  loc: DirBlockLocation | undefined,
): PositionedRecord[] {
  const sb = ctx.sb;
  const bs = block.length;
  const where = blockWhere(loc);
  if (bs !== sb.blockSize) {
    throw new CorruptError(where, `block is ${bs} bytes, expected ${sb.blockSize}`);
  }
  let end = bs;
  const dx = loc?.isHtree === true && isDxBlock(block, loc.logical);
  if (dx) {
    if (sb.hasMetadataCsum) {
      const r = verifyDxChecksum(sb, loc.ino, loc.generation, block);
      if (!r.ok) {
        throw new CorruptError(
          `directory index of inode ${loc.ino} (logical block ${loc.logical})`,
          r.reason,
        );
      }
    }
  } else if (sb.hasMetadataCsum) {
    const tail = findDirentTail(block);
    if (tail < 0) throw new CorruptError(where, "no space for the directory leaf checksum");
    if (loc) {
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
    }
    end = tail;
  }
  const base = loc ? loc.logical * bs : 0;
  const out: PositionedRecord[] = [];
  for (const d of walkDirents(block, 0, end, sb, bs, where)) {
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
  return parseBlockPositioned(block, ctx, loc).map(({ ino, name, fileType, offset }) => ({
    ino,
    name,
    fileType,
    offset,
  }));
}

/**
 * Iterates every live entry of a directory, "." and ".." included, in on-disk order.
 * Block directories are read block by block (holes skipped, index blocks of hash-indexed
 * directories contributing only "." and ".."); inline directories are read from
 * `dir.inlineData`, with "." and ".." synthesized as the kernel's readdir does.
 *
 * `from` resumes after an entry: pass the `offset` of the last entry seen, and iteration
 * continues with the entries that start at or after that position.
 *
 * With `onCorruptBlock`, a block that fails its checks is reported to it and skipped, as the
 * kernel's readdir does; without it the CorruptError propagates.
 *
 * @example
 * ```ts ignore
 * for await (const e of iterateDirectory(dir, { sb })) console.log(e.ino, e.name);
 * ```
 */
export async function* iterateDirectory(
  dir: DirectorySource,
  ctx: DirContext,
  from = 0,
  onCorruptBlock?: (error: CorruptError) => void,
): AsyncGenerator<DirRecord> {
  if (dir.inlineData) {
    for (const r of parseInlinePositioned(dir.inlineData, dir.ino, ctx)) {
      if (r.pos >= from) yield strip(r);
    }
    return;
  }
  const bs = dir.blockSize;
  if (bs !== ctx.sb.blockSize) {
    throw new CorruptError(
      `directory inode ${dir.ino}`,
      `block size ${bs} does not match the filesystem's ${ctx.sb.blockSize}`,
    );
  }
  if (!Number.isSafeInteger(dir.size) || dir.size < 0) {
    throw new CorruptError(`directory inode ${dir.ino}`, `impossible size ${dir.size}`);
  }
  const blocks = Math.ceil(dir.size / bs);
  const htree = isIndexedDirectory(ctx.sb, dir.isHtree);
  let logical = Math.max(0, Math.floor(from / bs));
  while (logical < blocks) {
    if (dir.nextMappedBlock) {
      const next = await dir.nextMappedBlock(logical);
      if (next === null || next >= blocks) return;
      if (!Number.isSafeInteger(next) || next < logical) {
        throw new CorruptError(
          `directory inode ${dir.ino}`,
          `block map went backwards at ${logical}`,
        );
      }
      logical = next;
    }
    const block = await dir.readBlock(logical);
    if (block) {
      const loc = { ino: dir.ino, generation: dir.generation, logical, isHtree: htree };
      let records: PositionedRecord[];
      try {
        records = parseBlockPositioned(block, ctx, loc);
      } catch (e) {
        // The kernel's readdir reports a corrupt block and goes on with the next one.
        if (!(e instanceof CorruptError) || !onCorruptBlock) throw e;
        onCorruptBlock(e);
        records = [];
      }
      for (const r of records) {
        if (r.pos >= from) yield strip(r);
      }
    }
    logical++;
  }
}

function strip(r: DirRecord): DirRecord {
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

function parseInlinePositioned(
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
  // The entries in i_block and those in the system.data value form one sequence, exactly
  // like the kernel's buffer of both; rec_len decodes against the block size.
  const recs = walkDirents(
    data,
    INLINE_DOTDOT_SIZE,
    data.length,
    ctx.sb,
    ctx.sb.blockSize,
    where,
  );
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
  return parseInlinePositioned(data, dirIno, ctx).map(strip);
}
