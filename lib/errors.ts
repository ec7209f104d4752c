/**
 * Typed errors for ext4ts. Every failure the library reports is an {@link Ext4Error}
 * with a stable `code` and the errno a filesystem daemon should answer with, so callers
 * (the CLI, the FUSE layer) map errors without parsing messages.
 *
 * @module
 */

/** Stable error codes, one per kind of failure. */
export type Ext4ErrorCode =
  | "NOT_EXT4"
  | "CORRUPT"
  | "UNSUPPORTED"
  | "IO"
  | "PERMISSION"
  | "NOT_FOUND"
  | "NOT_DIRECTORY"
  | "IS_DIRECTORY"
  | "READ_ONLY"
  | "NEEDS_RECOVERY"
  | "NO_SPACE"
  | "EXISTS"
  | "NOT_EMPTY"
  | "INVALID"
  | "TOO_MANY_LINKS"
  | "NAME_TOO_LONG"
  | "BUSY";

/** Linux errno values used by {@link Ext4Error.errno}. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  /** Interrupted system call (FUSE: an interrupted request's answer; reads retry). */
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  /** Protocol error (FUSE: a kernel protocol version too old). */
  EPROTO: 71,
  /** Bad message: what the kernel's ext4 answers for a metadata checksum error (EFSBADCRC). */
  EBADMSG: 74,
  EOPNOTSUPP: 95,
  /** The FUSE connection was aborted. */
  ECONNABORTED: 103,
  EUCLEAN: 117,
  /** Required key not available: what the kernel answers for encrypted contents. */
  ENOKEY: 126,
} as const;

const ERRNO_BY_CODE: Record<Ext4ErrorCode, number> = {
  NOT_EXT4: Errno.EINVAL,
  CORRUPT: Errno.EUCLEAN,
  UNSUPPORTED: Errno.EOPNOTSUPP,
  IO: Errno.EIO,
  PERMISSION: Errno.EACCES,
  NOT_FOUND: Errno.ENOENT,
  NOT_DIRECTORY: Errno.ENOTDIR,
  IS_DIRECTORY: Errno.EISDIR,
  READ_ONLY: Errno.EROFS,
  NEEDS_RECOVERY: Errno.EIO,
  NO_SPACE: Errno.ENOSPC,
  EXISTS: Errno.EEXIST,
  NOT_EMPTY: Errno.ENOTEMPTY,
  INVALID: Errno.EINVAL,
  TOO_MANY_LINKS: Errno.EMLINK,
  NAME_TOO_LONG: Errno.ENAMETOOLONG,
  BUSY: Errno.EBUSY,
};

/**
 * Base class of every error ext4ts reports.
 *
 * @example
 * ```ts
 * import { Ext4Error } from "./errors.ts";
 * try {
 *   throw new Ext4Error("NOT_FOUND", "no such file: /etc/x");
 * } catch (e) {
 *   if (e instanceof Ext4Error) console.log(e.code, e.errno); // NOT_FOUND 2
 * }
 * ```
 */
export class Ext4Error extends Error {
  /** The kind of failure. */
  readonly code: Ext4ErrorCode;
  /** The errno a filesystem daemon answers with for this error. */
  readonly errno: number;

  /** Makes an error of kind `code`; `errno` defaults to the errno that code maps to. */
  constructor(code: Ext4ErrorCode, message: string, options?: { cause?: unknown; errno?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "Ext4Error";
    this.code = code;
    this.errno = options?.errno ?? ERRNO_BY_CODE[code];
  }
}

/**
 * A corrupt on-disk structure. The message names the structure and where it is, e.g.
 * `corrupt extent header in inode 12 (block 4711): bad magic 0x0000`.
 *
 * @example
 * ```ts
 * import { CorruptError } from "./errors.ts";
 * const e = new CorruptError("superblock", "bad checksum");
 * console.log(e.message); // corrupt superblock: bad checksum
 * ```
 */
export class CorruptError extends Ext4Error {
  /** The structure that is corrupt, e.g. `"superblock"`, `"extent header in inode 12"`. */
  readonly structure: string;

  /**
   * A `CORRUPT` error whose message reads `corrupt STRUCTURE: DETAIL`; errno EUCLEAN unless
   * `options.errno` says otherwise (EBADMSG for a checksum error, as the kernel answers).
   */
  constructor(structure: string, detail: string, options?: { errno?: number }) {
    super("CORRUPT", `corrupt ${structure}: ${detail}`, options);
    this.name = "CorruptError";
    this.structure = structure;
  }
}

/**
 * The device or image itself could not be opened (missing, no permission, not a regular file
 * or block device, busy, write-protected): the `code` says why. Kept apart from errors inside
 * the filesystem (a missing device is "cannot open", exit 7; a missing file inside it is
 * "not found", exit 1).
 *
 * @example
 * ```ts
 * import { DeviceOpenError } from "./errors.ts";
 * const e = new DeviceOpenError("NOT_FOUND", "disk.img: No such file or directory");
 * console.log(e.code, e.errno); // NOT_FOUND 2
 * ```
 */
export class DeviceOpenError extends Ext4Error {
  /** An error of kind `code` about opening a device; `errno` as for {@link Ext4Error}. */
  constructor(code: Ext4ErrorCode, message: string, options?: { cause?: unknown; errno?: number }) {
    super(code, message, options);
    this.name = "DeviceOpenError";
  }
}

/**
 * Turns any thrown value into an {@link Ext4Error}, keeping Ext4Errors as they are.
 * Unexpected exceptions (a RangeError from a truncated buffer, say) become `CORRUPT`
 * when they come from parsing, because they mean the data did not fit its structure.
 *
 * @example
 * ```ts
 * import { asExt4Error } from "./errors.ts";
 * console.log(asExt4Error(new RangeError("Offset is outside the bounds")).code); // CORRUPT
 * ```
 */
export function asExt4Error(e: unknown, context = "on-disk data"): Ext4Error {
  if (e instanceof Ext4Error) return e;
  if (e instanceof RangeError || e instanceof TypeError) {
    return new CorruptError(context, e.message);
  }
  return new Ext4Error("IO", e instanceof Error ? e.message : String(e), { cause: e });
}
