/**
 * Encoders of the FUSE reply bodies ext4ts sends: init_out, attributes and entries, open,
 * statfs, xattr sizes, lseek, and READDIR/READDIRPLUS records ({@link DirentBuffer}).
 *
 * @module
 */

import {
  ATTR_OUT_SIZE,
  ENTRY_OUT_SIZE,
  INIT_OUT_SIZE,
  OPEN_OUT_SIZE,
  STATFS_OUT_SIZE,
  view,
} from "./protocol.ts";

/** What ext4ts answers to INIT. */
export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
}

/**
 * Encodes `fuse_init_out` in the size the negotiated minor version expects.
 *
 * @example
 * ```ts
 * import { encodeInitOut } from "./protocol_replies.ts";
 * const b = encodeInitOut({ major: 7, minor: 38, maxReadahead: 131072, flags: 1, flags2: 0,
 *   maxBackground: 16, congestionThreshold: 12, maxWrite: 1 << 20, timeGran: 1, maxPages: 256 });
 * console.log(b.length); // 64
 * ```
 */
export function encodeInitOut(o: InitOut): Uint8Array {
  const size = o.minor < 5 ? 8 : o.minor < 23 ? 24 : INIT_OUT_SIZE;
  const b = new Uint8Array(size);
  const v = view(b);
  v.setUint32(0, o.major, true);
  v.setUint32(4, o.minor, true);
  if (size === 8) return b;
  v.setUint32(8, o.maxReadahead, true);
  v.setUint32(12, o.flags >>> 0, true);
  v.setUint16(16, o.maxBackground, true);
  v.setUint16(18, o.congestionThreshold, true);
  v.setUint32(20, o.maxWrite, true);
  if (size === 24) return b;
  v.setUint32(24, o.timeGran, true);
  v.setUint16(28, o.maxPages, true);
  v.setUint32(32, o.flags2 >>> 0, true);
  return b;
}

/** A time as seconds (may be negative) and nanoseconds. */
export interface FuseTime {
  /** Whole seconds since the epoch (negative before 1970). */
  sec: number;
  /** Nanoseconds, 0..999999999. */
  nsec: number;
}

/** `struct fuse_attr`, in JavaScript numbers. `rdev` is already in the kernel's encoding. */
export interface FuseAttr {
  /** Inode number. */
  ino: number;
  /** Size in bytes. */
  size: number;
  /** Allocated space in 512-byte units (`st_blocks`). */
  blocks: number;
  /** Last access time. */
  atime: FuseTime;
  /** Last modification time. */
  mtime: FuseTime;
  /** Last status change time. */
  ctime: FuseTime;
  /** File type and permission bits (`st_mode`). */
  mode: number;
  /** Hard link count. */
  nlink: number;
  /** Owner user id. */
  uid: number;
  /** Owner group id. */
  gid: number;
  /**
   * Device number for character/block devices, in the kernel's `new_encode_dev` form; 0 otherwise.
   */
  rdev: number;
  /** Preferred I/O size in bytes (`st_blksize`). */
  blksize: number;
}

/**
 * The kernel's `new_encode_dev`: how a device number travels in `fuse_attr.rdev`.
 *
 * @example
 * ```ts
 * import { encodeDev } from "./protocol_replies.ts";
 * console.log(encodeDev(8, 1).toString(16)); // 801
 * ```
 */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/**
 * The major and minor of a device number in the kernel's `new_encode_dev` layout (the
 * inverse of {@link encodeDev}; MKNOD's `rdev`).
 *
 * @example
 * ```ts
 * import { decodeDev } from "./protocol_replies.ts";
 * console.log(decodeDev(0x801)); // { major: 8, minor: 1 }
 * ```
 */
export function decodeDev(dev: number): { major: number; minor: number } {
  return { major: (dev >>> 8) & 0xfff, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}

/**
 * Writes a u64 that is a safe integer as two u32 halves: no BigInt made per field (the
 * attribute encoders run for every GETATTR, LOOKUP and READDIRPLUS entry).
 */
function setU64(v: DataView, o: number, n: number): void {
  v.setUint32(o, n >>> 0, true);
  v.setUint32(o + 4, Math.floor(n / 0x1_0000_0000) >>> 0, true);
}

/** A signed 64-bit time in seconds; a pre-1970 one travels as its two's complement. */
function setI64(v: DataView, o: number, n: number): void {
  const whole = Math.trunc(n);
  if (whole >= 0) setU64(v, o, whole);
  else v.setBigInt64(o, BigInt(whole), true);
}

function writeAttr(v: DataView, o: number, a: FuseAttr): void {
  setU64(v, o, a.ino);
  setU64(v, o + 8, a.size);
  setU64(v, o + 16, a.blocks);
  setI64(v, o + 24, a.atime.sec);
  setI64(v, o + 32, a.mtime.sec);
  setI64(v, o + 40, a.ctime.sec);
  v.setUint32(o + 48, a.atime.nsec, true);
  v.setUint32(o + 52, a.mtime.nsec, true);
  v.setUint32(o + 56, a.ctime.nsec, true);
  v.setUint32(o + 60, a.mode >>> 0, true);
  v.setUint32(o + 64, a.nlink >>> 0, true);
  v.setUint32(o + 68, a.uid >>> 0, true);
  v.setUint32(o + 72, a.gid >>> 0, true);
  v.setUint32(o + 76, a.rdev >>> 0, true);
  v.setUint32(o + 80, a.blksize >>> 0, true);
  v.setUint32(o + 84, 0, true); // flags: no submount, no DAX
}

/** Writes a timeout in seconds as the (seconds u64, nanoseconds u32 at `nsecAt`) pair. */
function writeTimeout(v: DataView, o: number, nsecAt: number, seconds: number): void {
  const s = Math.max(0, seconds);
  const whole = Math.floor(s);
  setU64(v, o, whole);
  v.setUint32(nsecAt, Math.min(999_999_999, Math.round((s - whole) * 1e9)), true);
}

/** A LOOKUP answer: the node, its generation, the attributes and how long to cache them. */
export interface EntryOut {
  /** The node id the kernel uses for the entry from now on (1 is the root). */
  nodeid: number;
  /** Inode generation; (nodeid, generation) must be unique over the filesystem's life. */
  generation: number;
  /** How long the kernel may cache the name → node binding, in seconds. */
  entryTimeout: number;
  /** How long the kernel may cache `attr`, in seconds. */
  attrTimeout: number;
  /** The entry's attributes. */
  attr: FuseAttr;
}

function writeEntry(v: DataView, o: number, e: EntryOut): void {
  setU64(v, o, e.nodeid);
  setU64(v, o + 8, e.generation);
  writeTimeout(v, o + 16, o + 32, e.entryTimeout);
  writeTimeout(v, o + 24, o + 36, e.attrTimeout);
  writeAttr(v, o + 40, e.attr);
}

function writeAttrOut(v: DataView, o: number, attr: FuseAttr, timeout: number): void {
  writeTimeout(v, o, o + 8, timeout);
  v.setUint32(o + 12, 0, true); // padding
  writeAttr(v, o + 16, attr);
}

function writeOpenOut(v: DataView, o: number, fh: number, openFlags: number): void {
  setU64(v, o, fh);
  v.setUint32(o + 8, openFlags >>> 0, true);
  v.setUint32(o + 12, 0, true); // padding (backing id)
}

/**
 * Encodes `fuse_entry_out` (LOOKUP).
 *
 * @example
 * ```ts ignore
 * const body = encodeEntryOut({ nodeid: 12, generation: 0, entryTimeout: 1, attrTimeout: 1, attr });
 * ```
 */
export function encodeEntryOut(e: EntryOut): Uint8Array {
  const b = new Uint8Array(ENTRY_OUT_SIZE);
  writeEntry(view(b), 0, e);
  return b;
}

/**
 * Encodes `fuse_attr_out` (GETATTR).
 *
 * @example
 * ```ts ignore
 * const reply = encodeAttrOut(attr, 300); // 104 bytes
 * ```
 */
export function encodeAttrOut(attr: FuseAttr, timeout: number): Uint8Array {
  const b = new Uint8Array(ATTR_OUT_SIZE);
  writeAttrOut(view(b), 0, attr, timeout);
  return b;
}

/**
 * A reply body the session encodes straight into its reply buffer, with no buffer of its
 * own per reply: the answers of GETATTR, SETATTR, LOOKUP and the entry-making requests.
 */
export interface InPlaceBody {
  /** Bytes {@link InPlaceBody.writeTo} writes. */
  readonly size: number;
  /** Writes the body at byte `offset` of `v` (every byte of it, padding included). */
  writeTo(v: DataView, offset: number): void;
}

/** What a handler answers: body parts written one after the other, or an in-place body. */
export type ReplyBody = Uint8Array[] | InPlaceBody;

/**
 * `fuse_attr_out` (GETATTR, SETATTR) as an {@link InPlaceBody}.
 *
 * @example
 * ```ts ignore
 * const body = new AttrOutBody(attr, 1);
 * body.writeTo(replyView, 16); // 104 bytes after the reply header
 * ```
 */
export class AttrOutBody implements InPlaceBody {
  readonly size = ATTR_OUT_SIZE;
  constructor(readonly attr: FuseAttr, readonly timeout: number) {}

  writeTo(v: DataView, offset: number): void {
    writeAttrOut(v, offset, this.attr, this.timeout);
  }
}

/**
 * `fuse_entry_out` (LOOKUP, MKDIR, …), followed by `fuse_open_out` when `open` is given
 * (CREATE, TMPFILE), as an {@link InPlaceBody}.
 *
 * @example
 * ```ts ignore
 * const body = new EntryOutBody(entry, { fh: 0, flags: OpenFlag.NOFLUSH }); // CREATE
 * console.log(body.size); // 144
 * ```
 */
export class EntryOutBody implements InPlaceBody {
  readonly size: number;
  constructor(readonly entry: EntryOut, readonly open?: { fh: number; flags: number }) {
    this.size = ENTRY_OUT_SIZE + (open ? OPEN_OUT_SIZE : 0);
  }

  writeTo(v: DataView, offset: number): void {
    writeEntry(v, offset, this.entry);
    if (this.open) writeOpenOut(v, offset + ENTRY_OUT_SIZE, this.open.fh, this.open.flags);
  }
}

/**
 * Encodes `fuse_open_out` (OPEN, OPENDIR).
 *
 * @example
 * ```ts ignore
 * const reply = encodeOpenOut(0, OpenFlag.KEEP_CACHE);
 * ```
 */
export function encodeOpenOut(fh: number, openFlags: number): Uint8Array {
  const b = new Uint8Array(OPEN_OUT_SIZE);
  writeOpenOut(view(b), 0, fh, openFlags);
  return b;
}

/** Filesystem statistics for STATFS. */
export interface StatfsOut {
  /** Total data blocks, in units of `frsize`. */
  blocks: number;
  /** Free blocks. */
  bfree: number;
  /** Free blocks available to unprivileged users. */
  bavail: number;
  /** Total inodes. */
  files: number;
  /** Free inodes. */
  ffree: number;
  /** Block size in bytes. */
  bsize: number;
  /** Longest file name, in bytes. */
  namelen: number;
  /** Fragment size in bytes (the unit of `blocks`). */
  frsize: number;
}

/**
 * Encodes `fuse_statfs_out`.
 *
 * @example
 * ```ts ignore
 * const reply = encodeStatfsOut({ blocks: 1000, bfree: 10, bavail: 5, files: 64, ffree: 3, bsize: 4096, namelen: 255, frsize: 4096 });
 * ```
 */
export function encodeStatfsOut(s: StatfsOut): Uint8Array {
  const b = new Uint8Array(STATFS_OUT_SIZE);
  const v = view(b);
  v.setBigUint64(0, BigInt(s.blocks), true);
  v.setBigUint64(8, BigInt(s.bfree), true);
  v.setBigUint64(16, BigInt(s.bavail), true);
  v.setBigUint64(24, BigInt(s.files), true);
  v.setBigUint64(32, BigInt(s.ffree), true);
  v.setUint32(40, s.bsize, true);
  v.setUint32(44, s.namelen, true);
  v.setUint32(48, s.frsize, true);
  return b;
}

/**
 * Encodes `fuse_getxattr_out` (the size answer of a GETXATTR/LISTXATTR probe).
 *
 * @example
 * ```ts ignore
 * const reply = encodeGetxattrOut(300); // the size answer of a probe
 * ```
 */
export function encodeGetxattrOut(size: number): Uint8Array {
  const b = new Uint8Array(8);
  view(b).setUint32(0, size, true);
  return b;
}

/**
 * Encodes `fuse_write_out`: the bytes written.
 *
 * @example
 * ```ts ignore
 * const reply = encodeWriteOut(4096);
 * ```
 */
export function encodeWriteOut(size: number): Uint8Array {
  return encodeGetxattrOut(size); // the same layout: u32 size, u32 padding
}

/**
 * Encodes `fuse_ioctl_out` for a finished ioctl (result 0, no retry): the data follows it.
 *
 * @example
 * ```ts ignore
 * const parts = [encodeIoctlOut(), flagsBytes];
 * ```
 */
export function encodeIoctlOut(): Uint8Array {
  return new Uint8Array(16);
}

/**
 * Encodes `fuse_lseek_out`.
 *
 * @example
 * ```ts ignore
 * const reply = encodeLseekOut(1 << 20);
 * ```
 */
export function encodeLseekOut(offset: number): Uint8Array {
  const b = new Uint8Array(8);
  view(b).setBigUint64(0, BigInt(offset), true);
  return b;
}

const align8 = (n: number) => (n + 7) & ~7;

/** One directory entry as READDIR sends it. `offset` is the cookie of the *next* entry. */
export interface DirentOut {
  /** Inode number. */
  ino: number;
  /** The cookie of the next entry: READDIR resumes after it. */
  offset: number;
  /** The `d_type` value (DT_REG 8, DT_DIR 4, …; 0 when unknown). */
  type: number;
  /** The name, raw bytes. */
  name: Uint8Array;
}

/**
 * Packs `fuse_dirent` (READDIR) or `fuse_direntplus` (READDIRPLUS) records into a reply of
 * at most `size` bytes. `add` returns false when the entry no longer fits; the caller stops
 * there and the kernel asks again from the last packed entry's offset.
 *
 * @example
 * ```ts
 * import { DirentBuffer } from "./protocol_replies.ts";
 * const buf = new DirentBuffer(4096, false);
 * buf.add({ ino: 2, offset: 1, type: 4, name: new TextEncoder().encode(".") });
 * console.log(buf.bytes().length); // 32
 * ```
 */
export class DirentBuffer {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #plus: boolean;
  #used = 0;
  #count = 0;

  constructor(size: number, plus: boolean) {
    this.#buf = new Uint8Array(size);
    this.#view = view(this.#buf);
    this.#plus = plus;
  }

  /** Number of entries packed so far. */
  get count(): number {
    return this.#count;
  }

  /** Adds an entry (with its LOOKUP answer for READDIRPLUS); false when it does not fit. */
  add(d: DirentOut, entry?: EntryOut): boolean {
    const head = this.#plus ? ENTRY_OUT_SIZE : 0;
    const recLen = align8(head + 24 + d.name.length);
    if (this.#used + recLen > this.#buf.length) return false;
    const o = this.#used;
    if (this.#plus) {
      if (entry) writeEntry(this.#view, o, entry);
      // Without an entry the record stays zero: nodeid 0 tells the kernel "no lookup made".
    }
    const p = o + head;
    setU64(this.#view, p, d.ino);
    setU64(this.#view, p + 8, d.offset);
    this.#view.setUint32(p + 16, d.name.length, true);
    this.#view.setUint32(p + 20, d.type, true);
    this.#buf.set(d.name, p + 24);
    this.#used += recLen;
    this.#count++;
    return true;
  }

  /** The packed records. */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#used);
  }
}

/**
 * The `fuse_dirent.type` for an `st_mode`.
 *
 * @example
 * ```ts
 * import { direntTypeOfMode } from "./protocol_replies.ts";
 * console.log(direntTypeOfMode(0o40755)); // 4
 * ```
 */
export function direntTypeOfMode(mode: number): number {
  return (mode >>> 12) & 0xf;
}
