/**
 * FUSE_INIT negotiation: which protocol version and features a session takes from what the
 * kernel offers, and the reply that says so. Pure: the session (session.ts) applies the result.
 *
 * @module
 */

import { ProtocolErrno } from "./dispatch.ts";
import { Errno } from "../../lib/errors.ts";
import { FUSE_MAJOR, FUSE_MIN_MINOR, FUSE_MINOR, InitFlag } from "./protocol.ts";
import type { InitIn } from "./protocol_requests.ts";
import { encodeInitOut } from "./protocol_replies.ts";

/** What INIT negotiated. */
export interface InitInfo {
  /** Protocol major version (7). */
  major: number;
  /** Protocol minor version: the lower of the kernel's and ours. */
  minor: number;
  /** The `FUSE_*` init flags both sides agreed on. */
  flags: number;
  /** Largest WRITE payload, in bytes. */
  maxWrite: number;
  /** Largest request in 4 KiB pages (32 when the kernel lacks FUSE_MAX_PAGES). */
  maxPages: number;
  /** The kernel's readahead limit, in bytes. */
  maxReadahead: number;
}

/** What the session asks for. */
export interface InitWants {
  /** Read-only: no big writes, no umask or set-id handling of our own. */
  readOnly: boolean;
  /** Ask for FUSE_POSIX_ACL. */
  posixAcl: boolean;
  /** READDIRPLUS always, or the kernel's adaptive "auto". */
  readdirplus: "always" | "auto";
  /** Largest READ/WRITE payload wanted, in bytes. */
  maxIo: number;
}

/**
 * The INIT reply, and what was agreed — no `info` when the kernel's major version is newer
 * (the reply names ours and the kernel sends INIT again).
 */
export interface InitNegotiation {
  reply: Uint8Array;
  info?: InitInfo;
}

/**
 * Negotiates INIT against the kernel's offer `k`. Throws {@link ProtocolErrno} (EPROTO) for a
 * kernel older than 7.{@link FUSE_MIN_MINOR}.
 *
 * @example
 * ```ts
 * import { negotiateInit } from "./init.ts";
 * const n = negotiateInit({ major: 7, minor: 45, maxReadahead: 131072, flags: 0xffffffff }, {
 *   readOnly: false, posixAcl: false, readdirplus: "always", maxIo: 1 << 20,
 * });
 * console.log(n.info?.minor, n.info?.maxPages); // 38 256
 * ```
 */
export function negotiateInit(
  k: Pick<InitIn, "major" | "minor" | "maxReadahead" | "flags">,
  want: InitWants,
): InitNegotiation {
  if (k.major < FUSE_MAJOR) {
    throw new ProtocolErrno(Errno.EPROTO, `kernel FUSE ${k.major}.${k.minor} is too old`);
  }
  if (k.major > FUSE_MAJOR) {
    return { reply: encodeInitOut({ ...blankInit(), major: FUSE_MAJOR }).subarray(0, 8) };
  }
  const minor = Math.min(k.minor, FUSE_MINOR);
  if (minor < FUSE_MIN_MINOR) {
    throw new ProtocolErrno(Errno.EPROTO, `kernel FUSE 7.${k.minor} is too old`);
  }
  // READDIRPLUS always, not "auto": the kernel's adaptive mode uses it for the first batch
  // only, and every later stat() costs a LOOKUP (measured: listdir + lstat of 10 000 files
  // 1.7-2.4 s with auto, 0.4 s always; a bare `find` pays ~25 µs more per entry).
  let flags = InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS |
    (want.readdirplus === "auto" ? InitFlag.READDIRPLUS_AUTO : 0) |
    InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS |
    InitFlag.ASYNC_DIO | InitFlag.INIT_EXT;
  // The kernel caches POSIX ACLs (and their absence) per inode only with POSIX_ACL: without
  // it every `ls -l` asks GETXATTR system.posix_acl_access for every file.
  if (want.posixAcl) flags |= InitFlag.POSIX_ACL;
  // Read-write: 1 MiB writes; the umask is the filesystem's to apply (DONT_MASK), as ext4
  // applies it only where the parent directory has no default ACL.
  if (!want.readOnly) flags |= InitFlag.BIG_WRITES | InitFlag.DONT_MASK;
  // Read-write: set-id bits are dropped here, told by flags on WRITE and SETATTR (as the
  // kernel's VFS drops them); the kernel then marks the superblock NOSEC and stops asking
  // GETXATTR security.capability before every WRITE.
  if (!want.readOnly) flags |= InitFlag.HANDLE_KILLPRIV_V2;
  flags = (flags & k.flags) >>> 0;
  const maxPages = flags & InitFlag.MAX_PAGES ? Math.ceil(want.maxIo / 4096) : 32;
  const maxWrite = Math.min(want.maxIo, maxPages * 4096);
  const reply = encodeInitOut({
    major: FUSE_MAJOR,
    minor,
    maxReadahead: k.maxReadahead,
    flags,
    flags2: 0,
    maxBackground: 64,
    congestionThreshold: 48,
    maxWrite,
    timeGran: 1,
    maxPages,
  });
  return {
    reply,
    info: { major: FUSE_MAJOR, minor, flags, maxWrite, maxPages, maxReadahead: k.maxReadahead },
  };
}

function blankInit() {
  return {
    major: FUSE_MAJOR,
    minor: FUSE_MINOR,
    maxReadahead: 0,
    flags: 0,
    flags2: 0,
    maxBackground: 0,
    congestionThreshold: 0,
    maxWrite: 0,
    timeGran: 0,
    maxPages: 0,
  };
}
