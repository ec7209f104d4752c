/**
 * The kernel's FUSE wire protocol (include/uapi/linux/fuse.h), version 7.x: opcodes, INIT
 * flags and little-endian encoders/decoders for every request and reply ext4ts handles.
 *
 * Sizes follow the negotiated minor version: ext4ts speaks at most {@link FUSE_MINOR} and
 * refuses kernels older than {@link FUSE_MIN_MINOR}, so only a few structures have an older
 * "compat" size to care about (init_out).
 *
 * Every decoder checks the request body is long enough and throws {@link ProtocolError}
 * otherwise, so a malformed request is answered with EINVAL instead of crashing the loop.
 *
 * @module
 */

/** Major protocol version. */
export const FUSE_MAJOR = 7;
/** The highest minor version ext4ts speaks (the structure layouts below are 7.38's). */
export const FUSE_MINOR = 38;
/** The oldest minor version ext4ts accepts (Linux 3.x era). */
export const FUSE_MIN_MINOR = 19;
/** The node id of the root directory. */
export const FUSE_ROOT_ID = 1;
/** Size of `struct fuse_in_header`. */
export const IN_HEADER_SIZE = 40;
/** Size of `struct fuse_out_header`. */
export const OUT_HEADER_SIZE = 16;
/** Size of `struct fuse_attr`. */
export const ATTR_SIZE = 88;
/** Size of `struct fuse_entry_out`. */
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
/** Size of `struct fuse_attr_out`. */
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
/** Size of `struct fuse_init_out` from minor 23 on. */
export const INIT_OUT_SIZE = 64;
/** Size of `struct fuse_statfs_out`. */
export const STATFS_OUT_SIZE = 80;
/** The kernel refuses reads of /dev/fuse into buffers smaller than this. */
export const MIN_READ_BUFFER = 8192;
/** Size of `struct fuse_write_in` (the read buffer must hold header + write_in + max_write). */
export const WRITE_IN_SIZE = 40;

/** Request opcodes (`enum fuse_opcode`). */
export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

/** Opcodes that modify the filesystem: answered EROFS on a read-only mount. */
export const WRITE_OPCODES: ReadonlySet<number> = new Set([
  Opcode.SETATTR,
  Opcode.SYMLINK,
  Opcode.MKNOD,
  Opcode.MKDIR,
  Opcode.UNLINK,
  Opcode.RMDIR,
  Opcode.RENAME,
  Opcode.LINK,
  Opcode.WRITE,
  Opcode.SETXATTR,
  Opcode.REMOVEXATTR,
  Opcode.CREATE,
  Opcode.FALLOCATE,
  Opcode.RENAME2,
  Opcode.COPY_FILE_RANGE,
  Opcode.TMPFILE,
]);

/**
 * The opcode's name, for logs.
 *
 * @example
 * ```ts ignore
 * opcodeName(26); // "INIT"
 * ```
 */
export function opcodeName(opcode: number): string {
  for (const [name, value] of Object.entries(Opcode)) if (value === opcode) return name;
  return `OPCODE_${opcode}`;
}

/** INIT flags (`fuse_init_in.flags` / `fuse_init_out.flags`, low 32 bits). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  FLOCK_LOCKS: 1 << 10,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  POSIX_ACL: 1 << 20,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  EXPLICIT_INVAL_DATA: 1 << 25,
  INIT_EXT: 1 << 30,
} as const;

/** `fuse_open_out.open_flags`. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
} as const;

/** Directory entry types of `fuse_dirent.type` (the DT_* values). */
export const DirentType = {
  UNKNOWN: 0,
  FIFO: 1,
  CHR: 2,
  DIR: 4,
  BLK: 6,
  REG: 8,
  LNK: 10,
  SOCK: 12,
} as const;

/**
 * A malformed request (too short, missing a NUL terminator). Answered EINVAL.
 *
 * @example
 * ```ts ignore
 * throw new ProtocolError("fuse_read_in: body too short");
 * ```
 */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** `struct fuse_in_header`. */
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function need(body: Uint8Array, size: number, what: string): DataView {
  if (body.length < size) {
    throw new ProtocolError(`${what}: body of ${body.length} bytes, need ${size}`);
  }
  return view(body);
}

/** u64 as a JavaScript number (node ids, offsets and sizes stay far below 2^53). */
function u64(v: DataView, o: number): number {
  return Number(v.getBigUint64(o, true));
}

/**
 * Decodes the request header at the start of `buf`.
 *
 * @example
 * ```ts
 * import { decodeInHeader, IN_HEADER_SIZE } from "./protocol.ts";
 * const b = new Uint8Array(IN_HEADER_SIZE);
 * new DataView(b.buffer).setUint32(4, 26, true);
 * console.log(decodeInHeader(b).opcode); // 26
 * ```
 */
export function decodeInHeader(buf: Uint8Array): InHeader {
  const v = need(buf, IN_HEADER_SIZE, "fuse_in_header");
  return {
    len: v.getUint32(0, true),
    opcode: v.getUint32(4, true),
    unique: v.getBigUint64(8, true),
    nodeid: u64(v, 16),
    uid: v.getUint32(24, true),
    gid: v.getUint32(28, true),
    pid: v.getUint32(32, true),
    totalExtlen: v.getUint16(36, true),
  };
}

/** `struct fuse_init_in` (flags2 only when the kernel sets INIT_EXT). */
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

/**
 * Decodes `fuse_init_in`.
 *
 * @example
 * ```ts ignore
 * const init = decodeInitIn(body); // { major: 7, minor: 45, ... }
 * ```
 */
export function decodeInitIn(body: Uint8Array): InitIn {
  const v = need(body, 8, "fuse_init_in");
  const major = v.getUint32(0, true);
  const minor = v.getUint32(4, true);
  if (body.length < 16) return { major, minor, maxReadahead: 0, flags: 0, flags2: 0 };
  const flags = v.getUint32(12, true);
  const flags2 = body.length >= 20 && (flags & InitFlag.INIT_EXT) ? v.getUint32(16, true) : 0;
  return { major, minor, maxReadahead: v.getUint32(8, true), flags, flags2 };
}

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
 * import { encodeInitOut } from "./protocol.ts";
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

/**
 * A NUL-terminated name at the start of a request body (LOOKUP, GETXATTR's name).
 * Returns the bytes without the terminator.
 *
 * @example
 * ```ts ignore
 * new TextDecoder().decode(decodeName(body)); // the LOOKUP name
 * ```
 */
export function decodeName(body: Uint8Array, offset = 0): Uint8Array {
  const end = body.indexOf(0, offset);
  if (end < 0) throw new ProtocolError("name without NUL terminator");
  return body.subarray(offset, end);
}

/**
 * `fuse_forget_in.nlookup`.
 *
 * @example
 * ```ts ignore
 * const nlookup = decodeForgetIn(body);
 * ```
 */
export function decodeForgetIn(body: Uint8Array): number {
  return u64(need(body, 8, "fuse_forget_in"), 0);
}

/**
 * `fuse_batch_forget_in` followed by `count` × `fuse_forget_one`.
 *
 * @example
 * ```ts ignore
 * for (const f of decodeBatchForgetIn(body)) ops.forget?.(f.nodeid, f.nlookup);
 * ```
 */
export function decodeBatchForgetIn(body: Uint8Array): { nodeid: number; nlookup: number }[] {
  const v = need(body, 8, "fuse_batch_forget_in");
  const count = v.getUint32(0, true);
  // The kernel never sends more than fit the request; a bigger count is bounded by the body.
  const n = Math.min(count, Math.floor((body.length - 8) / 16));
  const out: { nodeid: number; nlookup: number }[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ nodeid: u64(v, 8 + i * 16), nlookup: u64(v, 16 + i * 16) });
  }
  return out;
}

/**
 * `fuse_getattr_in`: the file handle when `FUSE_GETATTR_FH` is set.
 *
 * @example
 * ```ts ignore
 * const { fh } = decodeGetattrIn(body);
 * ```
 */
export function decodeGetattrIn(body: Uint8Array): { flags: number; fh: number } {
  if (body.length < 16) return { flags: 0, fh: 0 }; // minor < 9 sends no body
  const v = view(body);
  return { flags: v.getUint32(0, true), fh: u64(v, 8) };
}

/**
 * `fuse_open_in` (OPEN, OPENDIR).
 *
 * @example
 * ```ts ignore
 * const { flags } = decodeOpenIn(body);
 * ```
 */
export function decodeOpenIn(body: Uint8Array): { flags: number; openFlags: number } {
  const v = need(body, 8, "fuse_open_in");
  return { flags: v.getUint32(0, true), openFlags: v.getUint32(4, true) };
}

/** `fuse_read_in` (READ, READDIR, READDIRPLUS). */
export interface ReadIn {
  fh: number;
  offset: number;
  size: number;
  readFlags: number;
  flags: number;
}

/**
 * Decodes `fuse_read_in`.
 *
 * @example
 * ```ts ignore
 * const { offset, size } = decodeReadIn(body);
 * ```
 */
export function decodeReadIn(body: Uint8Array): ReadIn {
  const v = need(body, 24, "fuse_read_in");
  return {
    fh: u64(v, 0),
    offset: u64(v, 8),
    size: v.getUint32(16, true),
    readFlags: v.getUint32(20, true),
    flags: body.length >= 40 ? v.getUint32(32, true) : 0,
  };
}

/**
 * `fuse_release_in` (RELEASE, RELEASEDIR).
 *
 * @example
 * ```ts ignore
 * const { fh } = decodeReleaseIn(body);
 * ```
 */
export function decodeReleaseIn(body: Uint8Array): { fh: number; flags: number } {
  const v = need(body, 16, "fuse_release_in");
  return { fh: u64(v, 0), flags: v.getUint32(8, true) };
}

/**
 * `fuse_getxattr_in` followed by the attribute name (GETXATTR).
 *
 * @example
 * ```ts ignore
 * const { size, name } = decodeGetxattrIn(body);
 * ```
 */
export function decodeGetxattrIn(body: Uint8Array): { size: number; name: Uint8Array } {
  const v = need(body, 8, "fuse_getxattr_in");
  return { size: v.getUint32(0, true), name: decodeName(body, 8) };
}

/**
 * `fuse_getxattr_in` alone (LISTXATTR).
 *
 * @example
 * ```ts ignore
 * const { size } = decodeListxattrIn(body);
 * ```
 */
export function decodeListxattrIn(body: Uint8Array): { size: number } {
  return { size: need(body, 8, "fuse_getxattr_in").getUint32(0, true) };
}

/**
 * `fuse_access_in.mask` (R_OK 4, W_OK 2, X_OK 1).
 *
 * @example
 * ```ts ignore
 * const mask = decodeAccessIn(body); // R_OK 4, W_OK 2, X_OK 1
 * ```
 */
export function decodeAccessIn(body: Uint8Array): number {
  return need(body, 8, "fuse_access_in").getUint32(0, true);
}

/**
 * `fuse_lseek_in`.
 *
 * @example
 * ```ts ignore
 * const { offset, whence } = decodeLseekIn(body); // whence 3 = SEEK_DATA
 * ```
 */
export function decodeLseekIn(body: Uint8Array): { fh: number; offset: number; whence: number } {
  const v = need(body, 24, "fuse_lseek_in");
  return { fh: u64(v, 0), offset: Number(v.getBigInt64(8, true)), whence: v.getUint32(16, true) };
}

/**
 * `fuse_interrupt_in.unique`: the request the kernel wants interrupted.
 *
 * @example
 * ```ts ignore
 * const target = decodeInterruptIn(body); // unique of the interrupted request
 * ```
 */
export function decodeInterruptIn(body: Uint8Array): bigint {
  return need(body, 8, "fuse_interrupt_in").getBigUint64(0, true);
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
 * import { encodeDev } from "./protocol.ts";
 * console.log(encodeDev(8, 1).toString(16)); // 801
 * ```
 */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

function writeAttr(v: DataView, o: number, a: FuseAttr): void {
  v.setBigUint64(o, BigInt(a.ino), true);
  v.setBigUint64(o + 8, BigInt(a.size), true);
  v.setBigUint64(o + 16, BigInt(a.blocks), true);
  // Times are signed: a pre-1970 time travels as its two's complement, as the kernel expects.
  v.setBigInt64(o + 24, BigInt(Math.trunc(a.atime.sec)), true);
  v.setBigInt64(o + 32, BigInt(Math.trunc(a.mtime.sec)), true);
  v.setBigInt64(o + 40, BigInt(Math.trunc(a.ctime.sec)), true);
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

/** Splits a timeout in seconds into the (seconds, nanoseconds) pair the kernel wants. */
function splitTimeout(seconds: number): [bigint, number] {
  const s = Math.max(0, seconds);
  const whole = Math.floor(s);
  return [BigInt(whole), Math.min(999_999_999, Math.round((s - whole) * 1e9))];
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
  const [es, ens] = splitTimeout(e.entryTimeout);
  const [as, ans] = splitTimeout(e.attrTimeout);
  v.setBigUint64(o, BigInt(e.nodeid), true);
  v.setBigUint64(o + 8, BigInt(e.generation), true);
  v.setBigUint64(o + 16, es, true);
  v.setBigUint64(o + 24, as, true);
  v.setUint32(o + 32, ens, true);
  v.setUint32(o + 36, ans, true);
  writeAttr(v, o + 40, e.attr);
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
  const v = view(b);
  const [s, ns] = splitTimeout(timeout);
  v.setBigUint64(0, s, true);
  v.setUint32(8, ns, true);
  writeAttr(v, 16, attr);
  return b;
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
  const b = new Uint8Array(16);
  const v = view(b);
  v.setBigUint64(0, BigInt(fh), true);
  v.setUint32(8, openFlags >>> 0, true);
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

/**
 * Encodes `fuse_out_header`. `error` is a negative errno or 0.
 *
 * @example
 * ```ts
 * import { encodeOutHeader } from "./protocol.ts";
 * console.log(encodeOutHeader(16, -2, 7n).length); // 16
 * ```
 */
export function encodeOutHeader(len: number, error: number, unique: bigint): Uint8Array {
  const b = new Uint8Array(OUT_HEADER_SIZE);
  const v = view(b);
  v.setUint32(0, len, true);
  v.setInt32(4, error, true);
  v.setBigUint64(8, unique, true);
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
 * import { DirentBuffer } from "./protocol.ts";
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
    this.#view.setBigUint64(p, BigInt(d.ino), true);
    this.#view.setBigUint64(p + 8, BigInt(d.offset), true);
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
 * import { direntTypeOfMode } from "./protocol.ts";
 * console.log(direntTypeOfMode(0o40755)); // 4
 * ```
 */
export function direntTypeOfMode(mode: number): number {
  return (mode >>> 12) & 0xf;
}
