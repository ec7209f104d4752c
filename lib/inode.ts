/**
 * Inodes: where an inode lives on disk, its checksum (metadata_csum), and every field of the
 * record decoded the way the kernel decodes it (uid/gid high halves, 64-bit sizes, timestamps
 * with nanoseconds and epoch bits, huge_file block counts, device numbers).
 *
 * @module
 */

import { type BlockDevice, readBytes } from "./block_device.ts";
import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError, Errno, Ext4Error } from "./errors.ts";
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

/** A point in time: seconds since the epoch (may be negative or beyond 2^32) and nanoseconds. */
export interface Timespec {
  /** Seconds since 1970-01-01 UTC (negative before). */
  sec: number;
  /** Nanoseconds, 0..999 999 999. */
  nsec: number;
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
  switch (mode & Mode.IFMT) {
    case Mode.IFREG:
      return "file";
    case Mode.IFDIR:
      return "dir";
    case Mode.IFLNK:
      return "symlink";
    case Mode.IFCHR:
      return "chardev";
    case Mode.IFBLK:
      return "blockdev";
    case Mode.IFIFO:
      return "fifo";
    case Mode.IFSOCK:
      return "socket";
    default:
      return "unknown";
  }
}

/**
 * A decoded inode record. Holds the raw bytes (`bytes`, the full on-disk record) so that the
 * in-inode xattr area and `i_block` can be parsed by other modules.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const inode = await fs.inode(2);
 * console.log(inode.type, inode.ino, inode.linksCount); // dir 2 3
 * await fs.close();
 * await Deno.remove(img);
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
  /** True when the extra field ending at byte `end` of the record lies inside extra_isize. */
  #fits(end: number): boolean {
    return this.bytes.length > GOOD_OLD_INODE_SIZE &&
      GOOD_OLD_INODE_SIZE + this.extraIsize >= end && end <= this.bytes.length;
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
  /** Project id (0 when the record is too small to hold it). */
  get projid(): number {
    return this.#fits(0xa0) ? this.#u32(0x9c) : 0;
  }

  #time(base: number, extra: number): Timespec {
    const sec = this.#view.getInt32(base, true);
    if (!this.#fits(extra + 4)) return { sec, nsec: 0 };
    const x = this.#u32(extra);
    return { sec: sec + (x & 3) * 2 ** 32, nsec: x >>> 2 };
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
    let sum = this.#u16(0x7c);
    if (this.#fits(0x84)) sum = (sum | (this.#u16(0x82) << 16)) >>> 0;
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
}

/**
 * The metadata_csum checksum of an inode record: crc32c seeded with the filesystem seed, the
 * inode number and generation, over the record with the checksum fields taken as zero. Only the
 * low 16 bits count when the record has no room for `i_checksum_hi`.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const record = (await fs.inode(2)).bytes;
 * const stored = new DataView(record.buffer, record.byteOffset).getUint16(0x7c, true);
 * console.log((inodeChecksum(sb, 2, record) & 0xffff) === stored); // true
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function inodeChecksum(sb: Superblock, ino: number, bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const gen = view.getUint32(0x64, true);
  let c = crc32cU32(sb.csumSeed, ino);
  c = crc32cU32(c, gen);
  const zero2 = new Uint8Array(2);
  c = crc32c(c, bytes.subarray(0, 0x7c));
  c = crc32c(c, zero2);
  c = crc32c(c, bytes.subarray(0x7e, GOOD_OLD_INODE_SIZE));
  if (bytes.length <= GOOD_OLD_INODE_SIZE) return c & 0xffff;
  const extra = view.getUint16(0x80, true);
  const hasHi = GOOD_OLD_INODE_SIZE + extra >= 0x84;
  c = crc32c(c, bytes.subarray(0x80, 0x82));
  if (hasHi) {
    c = crc32c(c, zero2);
    c = crc32c(c, bytes.subarray(0x84));
  } else {
    c = crc32c(c, bytes.subarray(0x82));
  }
  return hasHi ? c >>> 0 : c & 0xffff;
}

/**
 * Where inode `ino` lives: its byte offset on the device.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * console.log(inodeLocation(sb, fs.groups, 2) % sb.blockSize); // 256: the second record
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function inodeLocation(sb: Superblock, groups: GroupDescriptorTable, ino: number): number {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) {
    throw new Ext4Error("INVALID", `inode number ${ino} is out of range (1..${sb.inodesCount})`);
  }
  const group = Math.floor((ino - 1) / sb.inodesPerGroup);
  const index = (ino - 1) % sb.inodesPerGroup;
  const gd = groups.get(group);
  return gd.inodeTable * sb.blockSize + index * sb.inodeSize;
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
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const inode = parseInode(sb, 11, (await fs.inode(11)).bytes);
 * console.log(inode.type); // dir (lost+found)
 * await fs.close();
 * await Deno.remove(img);
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

/**
 * Reads and decodes inode `ino`.
 *
 * @example
 * ```ts ignore
 * const root = await readInode(device, sb, groups, 2);
 * console.log(root.type); // dir
 * ```
 */
export async function readInode(
  device: BlockDevice,
  sb: Superblock,
  groups: GroupDescriptorTable,
  ino: number,
  options: ParseInodeOptions = {},
): Promise<Inode> {
  const offset = inodeLocation(sb, groups, ino);
  if (offset + sb.inodeSize > device.size) {
    throw new CorruptError(`inode ${ino}`, `inode table at byte ${offset} is beyond the device`);
  }
  return parseInode(sb, ino, await readBytes(device, offset, sb.inodeSize), options);
}
