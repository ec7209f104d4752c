/**
 * The kernel's FUSE wire protocol (include/uapi/linux/fuse.h), version 7.x: versions, sizes,
 * opcodes, INIT/OPEN flags, the request and reply headers and the byte-view helpers the
 * message codecs share. The bodies are in `protocol_requests.ts` (what the kernel sends) and
 * `protocol_replies.ts` (what ext4ts answers).
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
/** Size of `struct fuse_open_out`. */
export const OPEN_OUT_SIZE = 16;
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
  HANDLE_KILLPRIV_V2: 1 << 28,
  INIT_EXT: 1 << 30,
} as const;

/** `fuse_open_out.open_flags`. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  /** No FLUSH at close (honoured by the kernel since FUSE 7.35 unless writeback caching). */
  NOFLUSH: 1 << 5,
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

/**
 * A DataView over exactly the bytes of `b`.
 *
 * @example
 * ```ts ignore
 * view(body).getUint32(0, true);
 * ```
 */
export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A view of a request body that must be at least `size` bytes long (else a
 * {@link ProtocolError} naming the structure `what`).
 *
 * @example
 * ```ts ignore
 * const v = need(body, 8, "fuse_forget_in");
 * ```
 */
export function need(body: Uint8Array, size: number, what: string): DataView {
  if (body.length < size) {
    throw new ProtocolError(`${what}: body of ${body.length} bytes, need ${size}`);
  }
  return view(body);
}

/**
 * u64 as a JavaScript number (node ids, offsets and sizes stay far below 2^53).
 *
 * @example
 * ```ts ignore
 * const nodeid = u64(v, 16);
 * ```
 */
export function u64(v: DataView, o: number): number {
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
  return readInHeader(view(buf), buf.length);
}

/**
 * Decodes the request header at the start of `v`, of which `n` bytes were read: the session's
 * form, over its reused read buffer (no view or copy per request; the node id without a BigInt).
 *
 * @example
 * ```ts ignore
 * const h = readInHeader(readView, bytesRead);
 * ```
 */
export function readInHeader(v: DataView, n: number): InHeader {
  if (n < IN_HEADER_SIZE) {
    throw new ProtocolError(`fuse_in_header: body of ${n} bytes, need ${IN_HEADER_SIZE}`);
  }
  return {
    len: v.getUint32(0, true),
    opcode: v.getUint32(4, true),
    unique: v.getBigUint64(8, true),
    nodeid: v.getUint32(16, true) + v.getUint32(20, true) * 0x1_0000_0000,
    uid: v.getUint32(24, true),
    gid: v.getUint32(28, true),
    pid: v.getUint32(32, true),
    totalExtlen: v.getUint16(36, true),
  };
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
  writeOutHeader(view(b), len, error, unique);
  return b;
}

/**
 * Writes `fuse_out_header` at the start of `v` (the session's reused reply buffer).
 *
 * @example
 * ```ts ignore
 * writeOutHeader(replyView, 16, -2, unique);
 * ```
 */
export function writeOutHeader(v: DataView, len: number, error: number, unique: bigint): void {
  v.setUint32(0, len, true);
  v.setInt32(4, error, true);
  v.setBigUint64(8, unique, true);
}
