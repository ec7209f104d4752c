/**
 * Encoding inode records (`struct ext4_inode`) with their metadata_csum checksum, and
 * writing them into the inode table through a {@link Transaction}.
 *
 * The encoder works on top of an existing raw record when given one, so bytes it does not
 * own (in-inode extended attributes past `i_extra_isize`, reserved fields) are kept.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "./errors.ts";
import { RoCompat } from "./features.ts";
import { inodeChecksum, InodeFlags } from "./inode.ts";
import type { GroupDescriptorTable } from "./group_descriptor.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** A time with nanoseconds; `sec` may be negative or beyond 2038 (up to 2446). */
export interface InodeTime {
  /** Whole seconds since the Unix epoch (`i_*time` plus the epoch bits of `i_*time_extra`). */
  sec: number;
  /** Nanoseconds, 0..999999999 (upper 30 bits of `i_*time_extra`; 0 without that field). */
  nsec: number;
}

/**
 * The time to stamp on a change: `fixed` when the caller pinned one (tests, reproducible
 * images), else the clock (millisecond resolution, as Date gives).
 *
 * @example
 * ```ts
 * import { changeTime } from "./inode_write.ts";
 * console.log(changeTime({ sec: 1, nsec: 5 })); // { sec: 1, nsec: 5 }
 * console.log(changeTime().sec > 1_700_000_000); // true
 * ```
 */
export function changeTime(fixed?: InodeTime): InodeTime {
  if (fixed) return fixed;
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
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
  atime: InodeTime;
  /** Last inode change time (`i_ctime`, `i_ctime_extra`). */
  ctime: InodeTime;
  /** Last data modification time (`i_mtime`, `i_mtime_extra`). */
  mtime: InodeTime;
  /** Creation time (needs an inode larger than 128 bytes). */
  crtime: InodeTime;
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

const GOOD_OLD_SIZE = 128;
const CSUM_LO = 0x7c;
const CSUM_HI = 0x82;
const EXTRA_ISIZE = 0x80;

/** The `i_extra_isize` ext4ts gives new inodes: every field up to `i_projid`. */
export const EXTRA_ISIZE_DEFAULT = 32;

/** True when the field at `offset` of `size` bytes lies inside the record (kernel's FITS_IN_INODE). */
function fits(raw: Uint8Array, offset: number, size: number): boolean {
  if (raw.length <= GOOD_OLD_SIZE) return offset + size <= GOOD_OLD_SIZE;
  const extra = raw[EXTRA_ISIZE] | (raw[EXTRA_ISIZE + 1] << 8);
  return offset + size <= GOOD_OLD_SIZE + extra;
}

/** Splits a time into the 32-bit seconds field and the `_extra` word (epoch bits, nsec). */
export function encodeTime(t: InodeTime): { lo: number; extra: number } {
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

/** Inverse of {@link encodeTime}. */
export function decodeTime(lo: number, extra: number | undefined): InodeTime {
  const sec = (lo | 0) + (extra === undefined ? 0 : (extra & 3) * 2 ** 32);
  return { sec, nsec: extra === undefined ? 0 : extra >>> 2 };
}

/** Stores the checksum in a raw record (no-op without metadata_csum). */
export function setInodeChecksum(sb: Superblock, ino: number, raw: Uint8Array): void {
  if (!sb.hasMetadataCsum) return;
  const c = inodeChecksum(sb, ino, raw);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  view.setUint16(CSUM_LO, c & 0xffff, true);
  if (raw.length > GOOD_OLD_SIZE && fits(raw, CSUM_HI, 2)) view.setUint16(CSUM_HI, c >>> 16, true);
}

/** True when the stored checksum matches (always true without metadata_csum). */
export function inodeChecksumValid(sb: Superblock, ino: number, raw: Uint8Array): boolean {
  if (!sb.hasMetadataCsum) return true;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const c = inodeChecksum(sb, ino, raw);
  const hasHi = raw.length > GOOD_OLD_SIZE && fits(raw, CSUM_HI, 2);
  const stored = view.getUint16(CSUM_LO, true) +
    (hasHi ? view.getUint16(CSUM_HI, true) * 65536 : 0);
  return stored === (hasHi ? c : c & 0xffff);
}

/**
 * Encodes an inode record of `sb.inodeSize` bytes, on top of `base` when given (its other
 * bytes are kept), with the checksum.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const fields = decodeInode(sb, (await fs.inode(11)).bytes);
 * const raw = encodeInode(sb, 11, { ...fields, mode: 0o40700 });
 * console.log(decodeInode(sb, raw).mode.toString(8)); // 40700
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function encodeInode(
  sb: Superblock,
  ino: number,
  f: InodeFields,
  base?: Uint8Array,
): Uint8Array {
  const isz = sb.inodeSize;
  const raw = base ? Uint8Array.from(base) : new Uint8Array(isz);
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
  if (isz > GOOD_OLD_SIZE) {
    if (!base) u16(EXTRA_ISIZE, Math.min(EXTRA_ISIZE_DEFAULT, isz - GOOD_OLD_SIZE));
    const extra = v.getUint16(EXTRA_ISIZE, true);
    if (extra > isz - GOOD_OLD_SIZE || extra % 4 !== 0) {
      throw new CorruptError(`inode ${ino}`, `i_extra_isize ${extra} is invalid`);
    }
    const put = (o: number, x: number) => {
      if (fits(raw, o, 4)) u32(o, x);
    };
    if (fits(raw, CSUM_HI, 2)) u16(CSUM_HI, 0);
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
 * Decodes the fields {@link encodeInode} writes (the write path's own view, for
 * read-modify-write and tests; the reader has the full parser).
 */
export function decodeInode(sb: Superblock, raw: Uint8Array): InodeFields {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const u16 = (o: number) => v.getUint16(o, true);
  const u32 = (o: number) => v.getUint32(o, true);
  const opt = (o: number) => (raw.length > GOOD_OLD_SIZE && fits(raw, o, 4) ? u32(o) : undefined);
  const flags = u32(0x20);
  const hugeFile = (sb.roCompat & RoCompat.HUGE_FILE) !== 0;
  let blocks = u32(0x1c) + (hugeFile ? u16(0x74) * 2 ** 32 : 0);
  if (hugeFile && (flags & InodeFlags.HUGE_FILE)) blocks *= sb.blockSize / 512;
  const crtLo = opt(0x90);
  return {
    mode: u16(0x0),
    uid: (u16(0x2) | (u16(0x78) << 16)) >>> 0,
    gid: (u16(0x18) | (u16(0x7a) << 16)) >>> 0,
    size: u32(0x4) + u32(0x6c) * 2 ** 32,
    linksCount: u16(0x1a),
    blocks512: blocks,
    flags: flags & ~InodeFlags.HUGE_FILE,
    generation: u32(0x64),
    atime: decodeTime(u32(0x8), opt(0x8c)),
    ctime: decodeTime(u32(0xc), opt(0x84)),
    mtime: decodeTime(u32(0x10), opt(0x88)),
    crtime: crtLo === undefined ? { sec: 0, nsec: 0 } : decodeTime(crtLo, opt(0x94)),
    dtime: u32(0x14),
    fileAcl: u32(0x68) + u16(0x76) * 2 ** 32,
    block: raw.slice(0x28, 0x28 + 60),
    version: u32(0x24) + (opt(0x98) ?? 0) * 2 ** 32,
    projid: opt(0x9c) ?? 0,
  };
}

/** Where inode `ino`'s record lives: block and byte offset in it. */
export function inodeLocation(
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): { block: number; offset: number } {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) {
    throw new Ext4Error("INVALID", `inode ${ino} does not exist`);
  }
  const g = Math.floor((ino - 1) / sb.inodesPerGroup);
  const index = (ino - 1) % sb.inodesPerGroup;
  const byte = index * sb.inodeSize;
  return {
    block: gdt.get(g).inodeTable + Math.floor(byte / sb.blockSize),
    offset: byte % sb.blockSize,
  };
}

/** Reads the raw record of inode `ino` (a copy) through the transaction. */
export async function readInodeRaw(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<Uint8Array> {
  const { block, offset } = inodeLocation(sb, gdt, ino);
  return (await tx.read(block)).slice(offset, offset + sb.inodeSize);
}

/** Writes a raw inode record (already checksummed) into the inode table. */
export async function writeInode(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  raw: Uint8Array,
): Promise<void> {
  if (raw.length !== sb.inodeSize) {
    throw new Ext4Error("INVALID", `inode record of ${raw.length} bytes, expected ${sb.inodeSize}`);
  }
  const { block, offset } = inodeLocation(sb, gdt, ino);
  await tx.patch(block, offset, raw);
}
