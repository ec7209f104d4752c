/**
 * The filesystem side of a FUSE session: the operations {@link FuseSession} calls, one per
 * request kind, in plain JavaScript values. The session owns the wire format, the
 * one-reply-per-request rule, xattr size probing and readdir packing; an implementation only
 * answers questions about nodes.
 *
 * Failures: throw {@link FuseError} (or any error with a numeric `errno`, such as
 * `Ext4Error`) to answer with that errno. Anything else is answered EIO and logged.
 *
 * @module
 */

import type { DirentOut, EntryOut, FuseAttr, FuseTime, StatfsOut } from "./protocol_replies.ts";

export type { DirentOut, EntryOut, FuseAttr, FuseTime, StatfsOut } from "./protocol_replies.ts";

/** Who asked, and whether the kernel has since interrupted the request. */
export interface RequestContext {
  /** The caller's uid, gid and pid as the kernel reports them. */
  uid: number;
  /** The caller's gid. */
  gid: number;
  /** The caller's pid. */
  pid: number;
  /** Aborted when the kernel sends INTERRUPT for this request (the reply is already sent). */
  signal: AbortSignal;
}

/**
 * An error answered with its errno.
 *
 * @example
 * ```ts ignore
 * throw new FuseError(2); // answered ENOENT
 * ```
 */
export class FuseError extends Error {
  /** A positive errno value. */
  readonly errno: number;

  /**
   * Makes an error answered with `errno` (positive); the message defaults to `errno N`.
   *
   * @example
   * ```ts
   * import { FuseError } from "./ops.ts";
   * const e = new FuseError(2, "no such entry");
   * console.log(e.errno, e.message); // 2 no such entry
   * ```
   */
  constructor(errno: number, message?: string) {
    super(message ?? `errno ${errno}`);
    this.name = "FuseError";
    this.errno = errno;
  }
}

/** The attributes of a node and how long the kernel may cache them (seconds). */
export interface AttrReply {
  /** The node's attributes. */
  attr: FuseAttr;
  /** How long the kernel may cache `attr`, in seconds. */
  timeout: number;
}

/** What OPEN/OPENDIR answer: a file handle and caching hints. */
export interface OpenReply {
  /** The file handle the kernel passes back on later requests for this open (read, release…). */
  fh: number;
  /** Keep the page cache across opens (safe when the file cannot change). */
  keepCache?: boolean;
  /** Let the kernel cache directory listings (OPENDIR). */
  cacheDir?: boolean;
  /** Bypass the page cache. */
  directIo?: boolean;
}

/** One READDIRPLUS entry: the dirent and, except for "." and "..", its LOOKUP answer. */
export interface DirentPlus {
  /** The directory entry (name, inode, type, resume cookie). */
  dirent: DirentOut;
  /** The LOOKUP answer for the entry; absent for "." and "..". */
  entry?: EntryOut;
}

/** `lseek` whence values the session passes on. */
export type SeekWhence = "data" | "hole";

/** What SETATTR changes (absent: kept). Times are the caller's or "now". */
export interface SetattrRequest {
  /** New mode bits (permissions, set-id, sticky); the type bits are ignored. */
  mode?: number;
  /** New owner. */
  uid?: number;
  /** New group. */
  gid?: number;
  /** New size of a regular file. */
  size?: number;
  /** New access time, or "now". */
  atime?: FuseTime | "now";
  /** New modification time, or "now". */
  mtime?: FuseTime | "now";
  /** The open handle the change came through (ftruncate, futimens), if any. */
  fh?: number;
  /** Drop the set-id bits (FATTR_KILL_SUIDGID: a chown, or a truncate without CAP_FSETID). */
  dropSetId?: boolean;
}

/** Who creates a node and how (MKNOD, MKDIR, CREATE). */
export interface CreateRequest {
  /** Type and permission bits. */
  mode: number;
  /** The caller's umask (applied by the filesystem: the kernel was told not to). */
  umask: number;
  /** Device number of a device node (`encodeDev` layout). */
  rdev?: number;
}

/** fallocate(2) as FALLOCATE passes it. */
export interface FallocateRequest {
  /** Byte offset. */
  offset: number;
  /** Length in bytes. */
  length: number;
  /** `"allocate"` (default mode), `"punchHole"` or `"zeroRange"`. */
  mode: "allocate" | "punchHole" | "zeroRange";
  /** FALLOC_FL_KEEP_SIZE. */
  keepSize: boolean;
}

/**
 * The write operations of a read-write mount. A mutating operation either changes nothing
 * (it throws) or has completed its change when it resolves.
 */
export interface FuseWriteOperations {
  /** SETATTR: chmod, chown, truncate, utimens; the new attributes. */
  setattr(ctx: RequestContext, nodeid: number, change: SetattrRequest): Promise<AttrReply>;
  /** MKNOD: a device node, FIFO, socket or regular file. */
  mknod(ctx: RequestContext, parent: number, name: Uint8Array, r: CreateRequest): Promise<EntryOut>;
  /** MKDIR. */
  mkdir(ctx: RequestContext, parent: number, name: Uint8Array, r: CreateRequest): Promise<EntryOut>;
  /** SYMLINK: `name` in `parent` pointing at `target`. */
  symlink(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    target: Uint8Array,
  ): Promise<EntryOut>;
  /** LINK: a new name for `nodeid`. */
  link(ctx: RequestContext, nodeid: number, parent: number, name: Uint8Array): Promise<EntryOut>;
  /** UNLINK. */
  unlink(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void>;
  /** RMDIR. */
  rmdir(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void>;
  /** RENAME / RENAME2 (`flags`: RENAME_NOREPLACE 1, RENAME_EXCHANGE 2). */
  rename(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    newParent: number,
    newName: Uint8Array,
    flags: number,
  ): Promise<void>;
  /** CREATE: create and open a regular file (`flags`: the open(2) flags). */
  create(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    r: CreateRequest,
    flags: number,
  ): Promise<{ entry: EntryOut; open: OpenReply }>;
  /** TMPFILE (O_TMPFILE): an open regular file without a name in directory `parent`. */
  tmpfile(
    ctx: RequestContext,
    parent: number,
    r: CreateRequest,
  ): Promise<{ entry: EntryOut; open: OpenReply }>;
  /**
   * COPY_FILE_RANGE: up to `length` bytes of `nodeid` at `offset` into `nodeidOut` at
   * `offsetOut`; the bytes copied (short at the end of the source).
   */
  copyFileRange(
    ctx: RequestContext,
    nodeid: number,
    offset: number,
    nodeidOut: number,
    offsetOut: number,
    length: number,
  ): Promise<number>;
  /**
   * WRITE: `data` at `offset`; the bytes written. `dropSetId`: the writer lacks CAP_FSETID,
   * the set-id bits go (HANDLE_KILLPRIV_V2).
   */
  write(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
    data: Uint8Array,
    options?: { dropSetId?: boolean },
  ): Promise<number>;
  /** SETXATTR (`flags`: XATTR_CREATE 1, XATTR_REPLACE 2). */
  setxattr(
    ctx: RequestContext,
    nodeid: number,
    name: Uint8Array,
    value: Uint8Array,
    flags: number,
  ): Promise<void>;
  /** REMOVEXATTR. */
  removexattr(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<void>;
  /** FSYNC / FSYNCDIR: everything written durable (`datasync`: data and size only). */
  fsync(ctx: RequestContext, nodeid: number, datasync: boolean): Promise<void>;
  /** FALLOCATE. */
  fallocate(ctx: RequestContext, nodeid: number, fh: number, r: FallocateRequest): Promise<void>;
  /**
   * IOCTL of a restricted (kernel-sized) command: `input` is what the kernel passes in, the
   * result what it copies out (at most the size it asked for).
   */
  ioctl(ctx: RequestContext, nodeid: number, cmd: number, input: Uint8Array): Promise<Uint8Array>;
}

/**
 * FITRIM, `_IOWR('X', 121, struct fstrim_range)`: fstrim's request to discard the free space
 * (`struct fstrim_range { u64 start, len, minlen }`, `len` coming back as the bytes discarded).
 */
export const FITRIM = 0xc0185879;

/**
 * The operations a FUSE filesystem implements. Node ids are the kernel's: 1 is the root.
 * Directory listings are async iterables that start *after* the cookie `offset` (0 = from
 * the beginning); each entry's `offset` is the cookie to resume after it. The session stops
 * iterating (calling `return()`) once the kernel's buffer is full.
 */
export interface FuseOperations {
  /** Called once INIT is negotiated, before any other request. */
  init?(info: { major: number; minor: number }): void | Promise<void>;
  /** LOOKUP: the entry `name` in directory `parent`; throw ENOENT when it does not exist. */
  lookup(ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryOut>;
  /**
   * LOOKUP as {@link lookup}, with null for an absent name instead of an ENOENT throw (cheaper:
   * no error object per miss). Used when present.
   */
  lookupEntry?(ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryOut | null>;
  /** The kernel dropped `nlookup` references to a node. No reply is sent. */
  forget?(nodeid: number, nlookup: number): void;
  /** GETATTR: the attributes of `nodeid`. */
  getattr(ctx: RequestContext, nodeid: number): Promise<AttrReply>;
  /** READLINK: the target of symlink `nodeid`, as raw bytes. */
  readlink(ctx: RequestContext, nodeid: number): Promise<Uint8Array>;
  /** `flags` are the open(2) flags (O_ACCMODE etc.). */
  open(ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply>;
  /**
   * True when every {@link read} returns a buffer nobody else holds: the session then frees a
   * large one as soon as its reply is written, instead of leaving it to the garbage collector
   * (V8 collects large external buffers late: tens of MiB of them pile up under sequential
   * reads).
   */
  readonly readRepliesOwned?: boolean;
  /** Returns at most `size` bytes; fewer only at end of file. */
  read(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
    size: number,
  ): Promise<Uint8Array>;
  /** RELEASE: the last close of file handle `fh`. Optional. */
  release?(ctx: RequestContext, nodeid: number, fh: number): Promise<void>;
  /** OPENDIR: opens directory `nodeid`; `flags` are the open(2) flags. */
  opendir(ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply>;
  /** READDIR: the entries of directory `nodeid` after the cookie `offset`. */
  readdir(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
  ): AsyncIterable<DirentOut>;
  /** Optional: without it the session answers READDIRPLUS through readdir + lookup. */
  readdirplus?(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
  ): AsyncIterable<DirentPlus>;
  /** RELEASEDIR: the last close of directory handle `fh`. Optional. */
  releasedir?(ctx: RequestContext, nodeid: number, fh: number): Promise<void>;
  /** STATFS: filesystem-wide counters (the node is the one statfs(2) was called on). */
  statfs(ctx: RequestContext, nodeid: number): Promise<StatfsOut>;
  /** The whole value; the session handles size probes (size 0) and ERANGE. */
  getxattr(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array>;
  /** Full attribute names; the session encodes them and handles size probes. */
  listxattr(ctx: RequestContext, nodeid: number): Promise<Uint8Array[]>;
  /** Checks `mask` (R_OK 4, W_OK 2, X_OK 1); throws EACCES/EROFS to refuse. */
  access?(ctx: RequestContext, nodeid: number, mask: number): Promise<void>;
  /** SEEK_DATA / SEEK_HOLE; throw ENXIO past the end. */
  lseek?(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
    whence: SeekWhence,
  ): Promise<number>;
  /** Flush and close everything: the DESTROY reply (and the unmount) waits for it. */
  destroy?(): Promise<void>;
  /** The write operations; absent (or on a read-only mount) write opcodes answer EROFS. */
  writer?: FuseWriteOperations;
}

/**
 * The errno to answer for a thrown value, or undefined when it carries none (→ EIO + log).
 *
 * @example
 * ```ts
 * import { errnoOf, FuseError } from "./ops.ts";
 * console.log(errnoOf(new FuseError(61))); // 61
 * console.log(errnoOf(new Error("boom"))); // undefined
 * ```
 */
export function errnoOf(e: unknown): number | undefined {
  if (typeof e === "object" && e !== null && "errno" in e) {
    const n = (e as { errno: unknown }).errno;
    if (typeof n === "number" && Number.isInteger(n) && n > 0 && n < 4096) return n;
  }
  return undefined;
}
