/**
 * The inode record codec (`struct ext4_inode`), pure: where a record lives in the inode table,
 * every field decoded the way the kernel decodes it (uid/gid high halves, 64-bit sizes,
 * timestamps with nanoseconds and epoch bits, huge_file block counts, device numbers), the
 * encoder the write path uses, and the metadata_csum checksum (verify and set). The reader's
 * {@link Inode} view and the writer's {@link decodeInode} share one set of field rules.
 * Reading and writing records through a device or a transaction is lib/ext4/inode.ts.
 *
 * Over 700 lines because the record is one structure whose field rules the reader's view, the
 * writer's decoder and encoder, and the checksum must share: split, they would drift apart.
 *
 * @module
 */

import { crc32c, crc32cRange, crc32cU32 } from "./checksum.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import { RoCompat } from "./features.ts";
import type { GroupDescriptorTable } from "./group_descriptor.ts";
import type { Superblock } from "./superblock.ts";

/** The 128-byte base record every inode has. */
export const GOOD_OLD_INODE_SIZE = 128;

/** `i_flags` bits the reader cares about. */
export const InodeFlags = {
  SECRM: 0x1,
  UNRM: 0x2,
  COMPR: 0x4,
  SYNC: 0x8,
  IMMUTABLE: 0x10,
  APPEND: 0x20,
  NODUMP: 0x40,
  NOATIME: 0x80,
  ENCRYPT: 0x800,
  INDEX: 0x1000,
  IMAGIC: 0x2000,
  JOURNAL_DATA: 0x4000,
  NOTAIL: 0x8000,
  DIRSYNC: 0x10000,
  TOPDIR: 0x20000,
  HUGE_FILE: 0x40000,
  EXTENTS: 0x80000,
  VERITY: 0x100000,
  EA_INODE: 0x200000,
  INLINE_DATA: 0x10000000,
  PROJINHERIT: 0x20000000,
  CASEFOLD: 0x40000000,
} as const;

/** File type bits of `i_mode` (`S_IFMT` and friends). */
export const Mode = {
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
} as const;

/** The kind of object an inode is. */
export type FileType =
  | "file"
  | "dir"
  | "symlink"
  | "chardev"
  | "blockdev"
  | "fifo"
  | "socket"
  | "unknown";

/** The `i_mode` type bits of each kind of object (0 for unknown). */
const MODE_TYPE_OF: Record<FileType, number> = {
  file: Mode.IFREG,
  dir: Mode.IFDIR,
  symlink: Mode.IFLNK,
  chardev: Mode.IFCHR,
  blockdev: Mode.IFBLK,
  fifo: Mode.IFIFO,
  socket: Mode.IFSOCK,
  unknown: 0,
};

/** {@link MODE_TYPE_OF} inverted, without unknown. */
const FILE_TYPE_OF_MODE = new Map<number, FileType>(
  (Object.entries(MODE_TYPE_OF) as [FileType, number][])
    .filter(([type]) => type !== "unknown")
    .map(([type, bits]) => [bits, type]),
);

/**
 * The `i_mode` type bits of a kind of object: the inverse of {@link fileTypeOfMode}.
 *
 * @example
 * ```ts
 * import { modeTypeOfFileType } from "./inode.ts";
 * console.log(modeTypeOfFileType("dir").toString(8)); // 40000
 * ```
 */
export function modeTypeOfFileType(type: FileType): number {
  return MODE_TYPE_OF[type];
}

/**
 * A point in time: seconds since the epoch (may be negative, or beyond 2038 up to 2446) and
 * nanoseconds. The inode's `i_*time` holds the signed low 32 bits of the seconds; its
 * `i_*time_extra` holds the nanoseconds and two epoch bits.
 */
export interface Timespec {
  /** Seconds since 1970-01-01 UTC (negative before). */
  sec: number;
  /** Nanoseconds, 0..999 999 999 (0 when the record has no `_extra` field). */
  nsec: number;
}

/** The write path's name for {@link Timespec} (the same type). */
export type InodeTime = Timespec;

/**
 * The time to stamp on a change: `fixed` when the caller pinned one (tests, reproducible
 * images), else the clock (millisecond resolution, as Date gives).
 *
 * @example
 * ```ts
 * import { changeTime } from "./inode.ts";
 * console.log(changeTime({ sec: 1, nsec: 5 })); // { sec: 1, nsec: 5 }
 * console.log(changeTime().sec > 1_700_000_000); // true
 * ```
 */
export function changeTime(fixed?: Timespec): Timespec {
  if (fixed) return fixed;
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

/**
 * Splits a time into the 32-bit seconds field and the `_extra` word (epoch bits, nsec).
 *
 * @example
 * ```ts
 * import { encodeTime } from "./inode.ts";
 * console.log(encodeTime({ sec: -1, nsec: 0 })); // { lo: 4294967295, extra: 0 }
 * ```
 */
export function encodeTime(t: Timespec): { lo: number; extra: number } {
  if (
    !Number.isSafeInteger(t.sec) || !Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec > 999999999
  ) {
    throw new Ext4Error("INVALID", `invalid time ${t.sec}.${t.nsec}`);
  }
  const lo = t.sec | 0; // the signed low 32 bits
  const epoch = (t.sec - lo) / 2 ** 32;
  if (epoch < 0 || epoch > 3) {
    throw new Ext4Error("INVALID", `time ${t.sec} is outside what ext4 can store (1901..2446)`);
  }
  return { lo: lo >>> 0, extra: ((t.nsec << 2) | epoch) >>> 0 };
}

/**
 * Inverse of {@link encodeTime}: `extra` is undefined when the record has no `_extra` field.
 *
 * @example
 * ```ts
 * import { decodeTime } from "./inode.ts";
 * console.log(decodeTime(0x80000000, 4 | 1)); // { sec: 2147483648, nsec: 1 }
 * ```
 */
export function decodeTime(lo: number, extra: number | undefined): Timespec {
  const sec = (lo | 0) + (extra === undefined ? 0 : (extra & 3) * 2 ** 32);
  return { sec, nsec: extra === undefined ? 0 : extra >>> 2 };
}

/** `i_extra_isize`'s offset; the fields after the 128-byte base count only below its end. */
const EXTRA_ISIZE = 0x80;
const CSUM_LO = 0x7c;
const CSUM_HI = 0x82;

/**
 * True when the extra field ending at byte `end` of the record lies inside `i_extra_isize`
 * (the kernel's EXT4_FITS_IN_INODE); never for a 128-byte record.
 */
function fitsInRecord(bytes: Uint8Array, end: number): boolean {
  if (bytes.length <= GOOD_OLD_INODE_SIZE || end > bytes.length) return false;
  const extra = bytes[EXTRA_ISIZE] | (bytes[EXTRA_ISIZE + 1] << 8);
  return GOOD_OLD_INODE_SIZE + extra >= end;
}

/**
 * The file type of a full `st_mode`.
 *
 * @example
 * ```ts
 * import { fileTypeOfMode } from "./inode.ts";
 * console.log(fileTypeOfMode(0o100644)); // file
 * ```
 */
export function fileTypeOfMode(mode: number): FileType {
  return FILE_TYPE_OF_MODE.get(mode & Mode.IFMT) ?? "unknown";
}

/**
 * A decoded inode record. Holds the raw bytes (`bytes`, the full on-disk record) so that the
 * in-inode xattr area and `i_block` can be parsed by other modules.
 *
 * @example
 * ```ts ignore
 * const inode = await readInode(device, sb, groups, 2);
 * console.log(inode.type, inode.size, inode.mtime);
 * ```
 */
export class Inode {
  /** The inode number. */
  readonly ino: number;
  /** The whole on-disk record (`s_inode_size` bytes). */
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  readonly #sb: Superblock;

  /** Wraps a raw record (not validated: use {@link parseInode}). */
  constructor(sb: Superblock, ino: number, bytes: Uint8Array) {
    if (bytes.length < GOOD_OLD_INODE_SIZE) {
      throw new CorruptError(`inode ${ino}`, `record is only ${bytes.length} bytes`);
    }
    this.#sb = sb;
    this.ino = ino;
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #u16(o: number): number {
    return this.#view.getUint16(o, true);
  }
  #u32(o: number): number {
    return this.#view.getUint32(o, true);
  }

  /** `i_extra_isize`, 0 for 128-byte records. */
  get extraIsize(): number {
    return this.bytes.length > GOOD_OLD_INODE_SIZE ? this.#u16(0x80) : 0;
  }
  #fits(end: number): boolean {
    return fitsInRecord(this.bytes, end);
  }

  /** Full `st_mode`: type bits and permissions. */
  get mode(): number {
    return this.#u16(0x0);
  }
  /** The kind of object, from the mode's type bits. */
  get type(): FileType {
    return fileTypeOfMode(this.mode);
  }
  /** Owner: `i_uid` with its high 16 bits. */
  get uid(): number {
    return (this.#u16(0x2) | (this.#u16(0x78) << 16)) >>> 0;
  }
  /** Group: `i_gid` with its high 16 bits. */
  get gid(): number {
    return (this.#u16(0x18) | (this.#u16(0x7a) << 16)) >>> 0;
  }
  /** 64-bit size (`i_size_lo` + `i_size_high`). */
  get size(): number {
    return this.#u32(0x4) + this.#u32(0x6c) * 2 ** 32;
  }
  /** Hard link count (`i_links_count`). */
  get linksCount(): number {
    return this.#u16(0x1a);
  }
  /** `i_flags` ({@link InodeFlags}). */
  get flags(): number {
    return this.#u32(0x20);
  }
  /** `i_generation` (NFS file handles, checksum seeds). */
  get generation(): number {
    return this.#u32(0x64);
  }
  /** Deletion time, or the next orphan's inode number on the orphan list. */
  get dtime(): number {
    return this.#u32(0x14);
  }
  /** Block of the external xattr block (`i_file_acl` lo + hi), 0 if none. */
  get fileAcl(): number {
    return this.#u32(0x68) + this.#u16(0x76) * 2 ** 32;
  }
  /** The 60 bytes of `i_block`: extent root, block map, fast symlink or inline data. */
  get iBlock(): Uint8Array {
    return this.bytes.subarray(0x28, 0x28 + 60);
  }
  /** Raw `i_blocks` in the unit the inode uses (512 bytes, or fs blocks with HUGE_FILE). */
  get rawBlocks(): number {
    const hugeFeature = (this.#sb.roCompat & RoCompat.HUGE_FILE) !== 0;
    return this.#u32(0x1c) + (hugeFeature ? this.#u16(0x74) * 2 ** 32 : 0);
  }
  /** `st_blocks`: allocated space in 512-byte units. */
  get blocks(): number {
    const hugeFeature = (this.#sb.roCompat & RoCompat.HUGE_FILE) !== 0;
    const raw = this.rawBlocks;
    if (hugeFeature && (this.flags & InodeFlags.HUGE_FILE)) {
      return raw * (this.#sb.blockSize / 512);
    }
    return raw;
  }
  /** `i_version`: the low half, plus `i_version_hi` when the record holds it. */
  get version(): number {
    return this.#u32(0x24) + (this.#fits(0x9c) ? this.#u32(0x98) * 2 ** 32 : 0);
  }
  /** Project id (0 when the record is too small to hold it). */
  get projid(): number {
    return this.#fits(0xa0) ? this.#u32(0x9c) : 0;
  }

  #time(base: number, extra: number): Timespec {
    return decodeTime(this.#u32(base), this.#fits(extra + 4) ? this.#u32(extra) : undefined);
  }
  /** Last access time. */
  get atime(): Timespec {
    return this.#time(0x8, 0x8c);
  }
  /** Last inode change time. */
  get ctime(): Timespec {
    return this.#time(0xc, 0x84);
  }
  /** Last data modification time. */
  get mtime(): Timespec {
    return this.#time(0x10, 0x88);
  }
  /** Creation time, or null when the record has no room for it. */
  get crtime(): Timespec | null {
    if (!this.#fits(0x94)) return null;
    return this.#time(0x90, 0x94);
  }

  /** Device number of a character or block device (old and new `i_block` encodings). */
  get rdev(): { major: number; minor: number } {
    const t = this.type;
    if (t !== "chardev" && t !== "blockdev") return { major: 0, minor: 0 };
    const old = this.#u32(0x28);
    if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
    const dev = this.#u32(0x2c);
    return { major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
  }

  /** Data is mapped by an extent tree (else a block map, or inline). */
  get usesExtents(): boolean {
    return (this.flags & InodeFlags.EXTENTS) !== 0;
  }
  /** Data lives in `i_block` and the system.data xattr. */
  get hasInlineData(): boolean {
    return (this.flags & InodeFlags.INLINE_DATA) !== 0;
  }
  /** Contents (and names, for directories) are fscrypt-encrypted. */
  get isEncrypted(): boolean {
    return (this.flags & InodeFlags.ENCRYPT) !== 0;
  }

  /** The checksum stored in the record (lo, plus hi when the record holds it). */
  get storedChecksum(): number {
    let sum = this.#u16(CSUM_LO);
    if (this.#fits(CSUM_HI + 2)) sum = (sum | (this.#u16(CSUM_HI) << 16)) >>> 0;
    return sum;
  }

  /** The checksum the record should carry under metadata_csum. */
  computeChecksum(): number {
    return inodeChecksum(this.#sb, this.ino, this.bytes);
  }

  /** True unless metadata_csum is on and the stored checksum is wrong. */
  checksumValid(): boolean {
    return !this.#sb.hasMetadataCsum || this.computeChecksum() === this.storedChecksum;
  }

  /**
   * True when `image` (a view of an inode table block) holds exactly this record's bytes at
   * `offset`. Four bytes a step through the record's own view, nothing allocated: a commit
   * compares every cached record of each inode table block it wrote.
   *
   * @example
   * ```ts ignore
   * const same = inode.sameBytesAt(new DataView(block.buffer, block.byteOffset), 3 * 256);
   * ```
   */
  sameBytesAt(image: DataView, offset: number): boolean {
    const n = this.bytes.length;
    if (offset < 0 || offset + n > image.byteLength) return false;
    const words = n & ~3;
    const own = this.#view;
    for (let i = 0; i < words; i += 4) {
      if (own.getUint32(i, true) !== image.getUint32(offset + i, true)) return false;
    }
    for (let i = words; i < n; i++) {
      if (own.getUint8(i) !== image.getUint8(offset + i)) return false;
    }
    return true;
  }
}

/** The two zero bytes a checksum field counts as (never written). */
const ZERO2 = new Uint8Array(2);

/**
 * The metadata_csum checksum of an inode record: crc32c seeded with the filesystem seed, the
 * inode number and generation, over the record with the checksum fields taken as zero. Only the
 * low 16 bits count when the record has no room for `i_checksum_hi`.
 *
 * @example
 * ```ts ignore
 * const sum = inodeChecksum(sb, 12, recordBytes);
 * ```
 */
export function inodeChecksum(sb: Superblock, ino: number, bytes: Uint8Array): number {
  // Byte reads and ranges, no view or subarrays: every inode write sets this and every decode
  // checks it.
  const gen = (bytes[0x64] | bytes[0x65] << 8 | bytes[0x66] << 16 | bytes[0x67] << 24) >>> 0;
  let c = crc32cU32(sb.csumSeed, ino);
  c = crc32cU32(c, gen);
  c = crc32cRange(c, bytes, 0, CSUM_LO);
  c = crc32c(c, ZERO2);
  c = crc32cRange(c, bytes, CSUM_LO + 2, GOOD_OLD_INODE_SIZE);
  if (bytes.length <= GOOD_OLD_INODE_SIZE) return c & 0xffff;
  const hasHi = fitsInRecord(bytes, CSUM_HI + 2);
  c = crc32cRange(c, bytes, EXTRA_ISIZE, CSUM_HI);
  if (hasHi) {
    c = crc32c(c, ZERO2);
    c = crc32cRange(c, bytes, CSUM_HI + 2, bytes.length);
  } else {
    c = crc32cRange(c, bytes, CSUM_HI, bytes.length);
  }
  return hasHi ? c >>> 0 : c & 0xffff;
}

/**
 * Stores the metadata_csum checksum in a raw record (no-op without metadata_csum).
 *
 * @example
 * ```ts ignore
 * setInodeChecksum(sb, 12, record);
 * ```
 */
export function setInodeChecksum(sb: Superblock, ino: number, raw: Uint8Array): void {
  if (!sb.hasMetadataCsum) return;
  const c = inodeChecksum(sb, ino, raw);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  view.setUint16(CSUM_LO, c & 0xffff, true);
  if (fitsInRecord(raw, CSUM_HI + 2)) view.setUint16(CSUM_HI, c >>> 16, true);
}

/**
 * True when the stored checksum matches (always true without metadata_csum).
 *
 * @example
 * ```ts ignore
 * if (!inodeChecksumValid(sb, 12, record)) console.log("inode 12 is damaged");
 * ```
 */
export function inodeChecksumValid(sb: Superblock, ino: number, raw: Uint8Array): boolean {
  return new Inode(sb, ino, raw).checksumValid();
}

/**
 * Where inode `ino` lives: its byte offset on the device.
 *
 * @example
 * ```ts ignore
 * const offset = inodeLocation(sb, groups, 2);
 * ```
 */
export function inodeLocation(sb: Superblock, groups: GroupDescriptorTable, ino: number): number {
  const slot = inodeTableSlot(sb, ino);
  return groups.get(slot.group).inodeTable * sb.blockSize + slot.byte;
}

/**
 * Where inode `ino` lives inside its group's inode table: the group, and the byte offset from
 * the table's start (for callers that find the table themselves).
 *
 * @example
 * ```ts ignore
 * const { group, byte } = inodeTableSlot(sb, 12);
 * ```
 */
export function inodeTableSlot(sb: Superblock, ino: number): { group: number; byte: number } {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) {
    throw new Ext4Error("INVALID", `inode number ${ino} is out of range (1..${sb.inodesCount})`);
  }
  const group = Math.floor((ino - 1) / sb.inodesPerGroup);
  return { group, byte: ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize };
}

/** Options for {@link parseInode}. */
export interface ParseInodeOptions {
  /** Accept a wrong checksum (tools that report rather than refuse). */
  ignoreChecksum?: boolean;
}

/**
 * Decodes and validates an inode record read from disk: checksum (metadata_csum) and
 * `i_extra_isize` bounds. Throws {@link CorruptError} naming the inode.
 *
 * @example
 * ```ts ignore
 * const inode = parseInode(sb, 12, recordBytes);
 * ```
 */
export function parseInode(
  sb: Superblock,
  ino: number,
  bytes: Uint8Array,
  options: ParseInodeOptions = {},
): Inode {
  const inode = new Inode(sb, ino, bytes);
  if (bytes.length > GOOD_OLD_INODE_SIZE) {
    const extra = inode.extraIsize;
    if (GOOD_OLD_INODE_SIZE + extra > bytes.length || (extra & 3) !== 0) {
      throw new CorruptError(`inode ${ino}`, `i_extra_isize ${extra} is invalid`);
    }
  }
  if (!options.ignoreChecksum && sb.hasMetadataCsum && !isZeroRecord(bytes)) {
    const want = inode.computeChecksum();
    const have = inode.storedChecksum;
    if (want !== have) {
      throw new CorruptError(
        `inode ${ino}`,
        `checksum mismatch (stored 0x${have.toString(16)}, computed 0x${want.toString(16)})`,
        { errno: Errno.EBADMSG }, // the kernel's iget: EFSBADCRC
      );
    }
  }
  // The kernel's iget refuses a negative (>= 2^63) i_size; no ext4 file can be larger than
  // 2^32 blocks of 64 KiB (2^48 bytes), so a size a JavaScript number cannot hold exactly is
  // corrupt too, and is reported here rather than as a RangeError wherever it is used.
  if (!Number.isSafeInteger(inode.size)) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const exact = (BigInt(view.getUint32(0x6c, true)) << 32n) | BigInt(view.getUint32(0x4, true));
    throw new CorruptError(`inode ${ino}`, `bad i_size ${exact}`);
  }
  return inode;
}

function isZeroRecord(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** The fields of an inode the write path sets. */
export interface InodeFields {
  /** Full st_mode: type bits and permissions. */
  mode: number;
  /** Owner id, 32 bits (`i_uid` low 16 bits, `l_i_uid_high` high 16 bits). */
  uid: number;
  /** Group id, 32 bits (`i_gid` low 16 bits, `l_i_gid_high` high 16 bits). */
  gid: number;
  /** File size in bytes (`i_size_lo` and `i_size_high`). */
  size: number;
  /** Hard link count (`i_links_count`). */
  linksCount: number;
  /** st_blocks: 512-byte units. */
  blocks512: number;
  /** Inode flags (`i_flags`), {@link InodeFlags} bits. */
  flags: number;
  /** NFS generation number (`i_generation`); also seeds the metadata_csum checksums. */
  generation: number;
  /** Last access time (`i_atime`, `i_atime_extra`). */
  atime: Timespec;
  /** Last inode change time (`i_ctime`, `i_ctime_extra`). */
  ctime: Timespec;
  /** Last data modification time (`i_mtime`, `i_mtime_extra`). */
  mtime: Timespec;
  /** Creation time (needs an inode larger than 128 bytes). */
  crtime: Timespec;
  /** Deletion time, seconds (0 for a live inode). */
  dtime: number;
  /** Extended attribute block, 0 for none. */
  fileAcl: number;
  /** `i_block`: 60 bytes (extent root, block map, symlink target, inline data). */
  block: Uint8Array;
  /** `i_version` (lo and hi halves). */
  version: number;
  /** Project id (`i_projid`); 0 when the inode has no room for it. */
  projid: number;
}

/** The `i_extra_isize` ext4ts gives new inodes: every field up to `i_projid`. */
export const EXTRA_ISIZE_DEFAULT = 32;

/**
 * Encodes an inode record of `sb.inodeSize` bytes, on top of `base` when given (its other
 * bytes — in-inode xattrs past `i_extra_isize`, reserved fields — are kept), with the checksum.
 *
 * @example
 * ```ts ignore
 * const raw = encodeInode(sb, ino, { ...fields, mode: 0o100644, size: 5 });
 * await writeInode(tx, sb, gdt, ino, raw);
 * ```
 */
export function encodeInode(
  sb: Superblock,
  ino: number,
  f: InodeFields,
  base?: Uint8Array,
): Uint8Array {
  const isz = sb.inodeSize;
  const raw = base ? base.slice() : new Uint8Array(isz);
  if (raw.length !== isz) {
    throw new Ext4Error("INVALID", `inode record of ${raw.length} bytes, expected ${isz}`);
  }
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const u16 = (o: number, x: number) => v.setUint16(o, x & 0xffff, true);
  const u32 = (o: number, x: number) => v.setUint32(o, x >>> 0, true);
  const check = (name: string, x: number, max: number) => {
    if (!Number.isSafeInteger(x) || x < 0 || x > max) {
      throw new Ext4Error("INVALID", `inode ${ino}: ${name} ${x} does not fit (max ${max})`);
    }
  };
  check("mode", f.mode, 0xffff);
  check("uid", f.uid, 0xffffffff);
  check("gid", f.gid, 0xffffffff);
  check("size", f.size, Number.MAX_SAFE_INTEGER);
  check("link count", f.linksCount, 0xffff);
  check("generation", f.generation, 0xffffffff);
  check("dtime", f.dtime, 0xffffffff);
  check("file ACL block", f.fileAcl, 2 ** 48 - 1);
  check("version", f.version, Number.MAX_SAFE_INTEGER);
  if (f.block.length !== 60) throw new Ext4Error("INVALID", "i_block must be 60 bytes");

  let flags = f.flags >>> 0;
  let blocks = f.blocks512;
  const hugeFile = (sb.roCompat & RoCompat.HUGE_FILE) !== 0;
  check("block count", blocks, hugeFile ? 2 ** 48 * (sb.blockSize / 512) - 1 : 0xffffffff);
  flags &= ~InodeFlags.HUGE_FILE;
  if (blocks >= 2 ** 48) {
    // Counted in filesystem blocks (huge_file).
    flags |= InodeFlags.HUGE_FILE;
    blocks = Math.ceil(blocks / (sb.blockSize / 512));
  }

  u16(0x0, f.mode);
  u16(0x2, f.uid);
  u32(0x4, f.size % 2 ** 32);
  u32(0x6c, Math.floor(f.size / 2 ** 32));
  const at = encodeTime(f.atime);
  const ct = encodeTime(f.ctime);
  const mt = encodeTime(f.mtime);
  const crt = encodeTime(f.crtime);
  u32(0x8, at.lo);
  u32(0xc, ct.lo);
  u32(0x10, mt.lo);
  u32(0x14, f.dtime);
  u16(0x18, f.gid);
  u16(0x1a, f.linksCount);
  u32(0x1c, blocks % 2 ** 32);
  u32(0x20, flags);
  u32(0x24, f.version % 2 ** 32);
  raw.set(f.block, 0x28);
  u32(0x64, f.generation);
  u32(0x68, f.fileAcl % 2 ** 32);
  u16(0x74, hugeFile ? Math.floor(blocks / 2 ** 32) : 0);
  u16(0x76, Math.floor(f.fileAcl / 2 ** 32));
  u16(0x78, f.uid >>> 16);
  u16(0x7a, f.gid >>> 16);
  u16(CSUM_LO, 0);
  if (isz > GOOD_OLD_INODE_SIZE) {
    if (!base) u16(EXTRA_ISIZE, Math.min(EXTRA_ISIZE_DEFAULT, isz - GOOD_OLD_INODE_SIZE));
    const extra = v.getUint16(EXTRA_ISIZE, true);
    if (extra > isz - GOOD_OLD_INODE_SIZE || extra % 4 !== 0) {
      throw new CorruptError(`inode ${ino}`, `i_extra_isize ${extra} is invalid`);
    }
    const put = (o: number, x: number) => {
      if (fitsInRecord(raw, o + 4)) u32(o, x);
    };
    if (fitsInRecord(raw, CSUM_HI + 2)) u16(CSUM_HI, 0);
    put(0x84, ct.extra);
    put(0x88, mt.extra);
    put(0x8c, at.extra);
    put(0x90, crt.lo);
    put(0x94, crt.extra);
    put(0x98, Math.floor(f.version / 2 ** 32));
    put(0x9c, f.projid);
  }
  setInodeChecksum(sb, ino, raw);
  return raw;
}

/**
 * The fields {@link encodeInode} writes, decoded by the same rules as the reader's
 * {@link Inode} view (read-modify-write: decode, change, encode on top of the old bytes).
 * `blocks512` is in 512-byte units whatever the record's unit, so `flags` leaves out
 * HUGE_FILE (the encoder sets it when the count needs it); a record without room for a
 * creation time gives `crtime` 0.
 *
 * @example
 * ```ts ignore
 * const f = decodeInode(sb, await readInodeRaw(tx, sb, gdt, 12));
 * console.log(f.mode.toString(8), f.size);
 * ```
 */
export function decodeInode(sb: Superblock, raw: Uint8Array): InodeFields {
  const inode = new Inode(sb, 0, raw);
  return {
    mode: inode.mode,
    uid: inode.uid,
    gid: inode.gid,
    size: inode.size,
    linksCount: inode.linksCount,
    blocks512: inode.blocks,
    flags: inode.flags & ~InodeFlags.HUGE_FILE,
    generation: inode.generation,
    atime: inode.atime,
    ctime: inode.ctime,
    mtime: inode.mtime,
    crtime: inode.crtime ?? { sec: 0, nsec: 0 },
    dtime: inode.dtime,
    fileAcl: inode.fileAcl,
    block: inode.iBlock.slice(),
    version: inode.version,
    projid: inode.projid,
  };
}
