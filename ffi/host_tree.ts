/**
 * Reading a host tree with everything `ext4ts put` copies and Deno's API does not give:
 * statx(2) without following symlinks (nanosecond times, device numbers as major/minor),
 * extended attributes of the object itself, symlinks included (llistxattr/lgetxattr), and
 * the data regions of sparse files (lseek SEEK_DATA/SEEK_HOLE), all as synchronous libc
 * calls: errno is read right after each call (see PLATFORM-FACTS.md), and for cached host
 * files a synchronous call costs about a microsecond where Deno's async ops cost tens.
 *
 * libc is opened lazily, on first use.
 *
 * @module
 */

import { Errno } from "../lib/errors.ts";
import { cstr, errno, O, SyscallError } from "./libc.ts";

const SYMBOLS = {
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  lseek64: { parameters: ["i32", "i64", "i32"], result: "i64" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
function sym(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (!lib) lib = Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;
const O_NOATIME = 0o1000000;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const O_DIRECTORY = 0o200000;
const dec = new TextDecoder();

/**
 * A host path: a string, or its bytes (Linux names need not be UTF-8), NUL-terminated or not.
 */
export type HostPath = string | Uint8Array;

/** The NUL-terminated bytes of a host path (as given when it already ends in NUL). */
function cpath(path: HostPath): Uint8Array<ArrayBuffer> {
  if (typeof path === "string") return cstr(path);
  if (path.length > 0 && path[path.length - 1] === 0) return path as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(path.length + 1);
  out.set(path);
  return out;
}

/**
 * A host path for messages (invalid UTF-8 shown as U+FFFD).
 *
 * @example
 * ```ts ignore
 * showPath(joinPath(new TextEncoder().encode("/tmp"), new Uint8Array([0xe9]))); // "/tmp/\ufffd"
 * ```
 */
export function showPath(path: HostPath): string {
  if (typeof path === "string") return path;
  const end = path.length > 0 && path[path.length - 1] === 0 ? path.length - 1 : path.length;
  return dec.decode(path.subarray(0, end));
}

/**
 * `dir + "/" + name` as NUL-terminated bytes, for the calls of this module.
 *
 * @example
 * ```ts ignore
 * lstatx(joinPath(cstr("/etc"), cstr("hostname")));
 * ```
 */
export function joinPath(dir: HostPath, name: Uint8Array): Uint8Array<ArrayBuffer> {
  const d = cpath(dir);
  const n = name.length > 0 && name[name.length - 1] === 0 ? name.length - 1 : name.length;
  const out = new Uint8Array(d.length + n + 1);
  out.set(d.subarray(0, d.length - 1));
  out[d.length - 1] = 0x2f;
  out.set(name.subarray(0, n), d.length);
  return out;
}

/** A timestamp with nanoseconds. */
export interface HostTime {
  sec: number;
  nsec: number;
}

/** What statx(2) says about a host object (the object itself, not a symlink's target). */
export interface HostStat {
  /** Type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  ino: number;
  /** Device of the filesystem holding it, as "major:minor" (with ino, the identity). */
  dev: string;
  /** For device nodes, the device they stand for. */
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  /** Allocated 512-byte units (fewer than size needs: the file may have holes). */
  blocks: number;
  atime: HostTime;
  mtime: HostTime;
  ctime: HostTime;
}

// One buffer for every statx call: the call is synchronous, so it is never shared.
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

function timeAt(off: number): HostTime {
  return {
    sec: Number(statxView.getBigInt64(off, true)),
    nsec: statxView.getUint32(off + 8, true),
  };
}

/**
 * statx(2) of `path` without following a final symlink.
 *
 * @example
 * ```ts ignore
 * const st = lstatx("/etc/hostname");
 * console.log(st.mtime.sec, st.mtime.nsec);
 * ```
 */
export function lstatx(path: HostPath): HostStat {
  const rc = sym().statx(AT_FDCWD, cpath(path), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf);
  if (rc !== 0) throw new SyscallError("statx", errno(), showPath(path));
  const v = statxView;
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    mode: v.getUint16(28, true),
    ino: Number(v.getBigUint64(32, true)),
    size: Number(v.getBigUint64(40, true)),
    blocks: Number(v.getBigUint64(48, true)),
    atime: timeAt(64),
    ctime: timeAt(96),
    mtime: timeAt(112),
    rdevMajor: v.getUint32(128, true),
    rdevMinor: v.getUint32(132, true),
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

let listBuf = new Uint8Array(4096);

/**
 * Names of the extended attributes of `path` itself (a symlink's own, not its target's).
 * Empty where the host filesystem has no xattr support.
 *
 * @example
 * ```ts ignore
 * for (const name of listXattrs("/tmp/x")) console.log(name, getXattr("/tmp/x", name));
 * ```
 */
export function listXattrs(path: HostPath): string[] {
  const p = cpath(path);
  // Bounded: a list that keeps growing between calls gives up after a few tries.
  for (let tries = 0; tries < 8; tries++) {
    const n = Number(sym().llistxattr(p, listBuf, BigInt(listBuf.length)));
    if (n < 0) {
      const code = errno();
      if (code === Errno.EOPNOTSUPP) return [];
      if (code !== Errno.ERANGE) throw new SyscallError("llistxattr", code, showPath(path));
      const need = Number(sym().llistxattr(p, null, 0n));
      if (need < 0) throw new SyscallError("llistxattr", errno(), showPath(path));
      listBuf = new Uint8Array(Math.max(need, listBuf.length * 2));
      continue;
    }
    if (n === 0) return [];
    return dec.decode(listBuf.subarray(0, n - 1)).split("\0");
  }
  throw new SyscallError("llistxattr", Errno.ERANGE, showPath(path));
}

let valueBuf = new Uint8Array(4096);

/**
 * The value of extended attribute `name` of `path` itself, or null when it vanished.
 *
 * @example
 * ```ts ignore
 * const acl = getXattr("/tmp/x", "system.posix_acl_access");
 * ```
 */
export function getXattr(path: HostPath, name: string): Uint8Array | null {
  const p = cpath(path);
  const nm = cstr(name);
  for (let tries = 0; tries < 8; tries++) {
    const n = Number(sym().lgetxattr(p, nm, valueBuf, BigInt(valueBuf.length)));
    if (n >= 0) return valueBuf.slice(0, n);
    const code = errno();
    if (code === Errno.ENODATA) return null;
    if (code !== Errno.ERANGE) {
      throw new SyscallError("lgetxattr", code, `${showPath(path)} ${name}`);
    }
    const need = Number(sym().lgetxattr(p, nm, null, 0n));
    if (need < 0) throw new SyscallError("lgetxattr", errno(), `${showPath(path)} ${name}`);
    valueBuf = new Uint8Array(Math.max(need, valueBuf.length * 2));
  }
  throw new SyscallError("lgetxattr", Errno.ERANGE, `${showPath(path)} ${name}`);
}

/**
 * The target of symlink `path`, as bytes (names need not be UTF-8).
 *
 * @example
 * ```ts ignore
 * readLinkBytes("/tmp/link");
 * ```
 */
export function readLinkBytes(path: HostPath): Uint8Array {
  const buf = new Uint8Array(4097);
  const n = Number(sym().readlink(cpath(path), buf, BigInt(buf.length)));
  if (n < 0) throw new SyscallError("readlink", errno(), showPath(path));
  if (n >= buf.length) throw new SyscallError("readlink", Errno.ENAMETOOLONG, showPath(path));
  return buf.slice(0, n);
}

/** A host file opened for reading with synchronous pread and SEEK_DATA/SEEK_HOLE. */
export class HostFile implements Disposable {
  #fd: number;
  readonly path: HostPath;

  /**
   * Opens `path` read-only, with O_NOATIME where allowed (owner or CAP_FOWNER) so that
   * copying a tree leaves the host's access times as they were.
   *
   * @example
   * ```ts ignore
   * using f = new HostFile("/tmp/x");
   * for (const r of f.dataRegions(size)) console.log(r);
   * ```
   */
  constructor(path: HostPath) {
    this.path = path;
    const p = cpath(path);
    const flags = O.RDONLY | O.CLOEXEC | O.NOCTTY;
    let fd = sym().open(p, flags | O_NOATIME, 0);
    if (fd < 0 && errno() === Errno.EPERM) fd = sym().open(p, flags, 0);
    if (fd < 0) throw new SyscallError("open", errno(), showPath(path));
    this.#fd = fd;
  }

  /** Reads into `buf` from `offset` until full or end of file; returns the bytes read. */
  read(buf: Uint8Array, offset: number): number {
    let done = 0;
    while (done < buf.length) {
      const part = done === 0 ? buf : buf.subarray(done);
      const n = Number(
        sym().pread64(this.#fd, part, BigInt(buf.length - done), BigInt(offset + done)),
      );
      if (n < 0) {
        const code = errno();
        if (code === Errno.EINTR) continue;
        throw new SyscallError("pread", code, showPath(this.path));
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /**
   * The stretches holding data in the first `size` bytes, as [start, end) pairs, from
   * SEEK_DATA/SEEK_HOLE. A filesystem without hole reporting gives one region (the whole
   * file), which is correct, just not sparse.
   */
  dataRegions(size: number): [number, number][] {
    const out: [number, number][] = [];
    let pos = 0;
    // Bounded by the file size: every step moves forward or stops.
    while (pos < size) {
      const start = Number(sym().lseek64(this.#fd, BigInt(pos), SEEK_DATA));
      if (start < 0) {
        const code = errno();
        if (code === Errno.ENXIO) break; // no data after pos: the rest is a hole
        if (code === Errno.EINVAL /* no SEEK_DATA here */ && pos === 0) return [[0, size]];
        throw new SyscallError("lseek", code, showPath(this.path));
      }
      if (start >= size) break;
      let end = Number(sym().lseek64(this.#fd, BigInt(start), SEEK_HOLE));
      if (end < 0) throw new SyscallError("lseek", errno(), showPath(this.path));
      if (end > size) end = size;
      if (end <= start) break;
      out.push([start, end]);
      pos = end;
    }
    return out;
  }

  /** Closes the file (idempotent). */
  close(): void {
    if (this.#fd >= 0) sym().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const direntBuf = new Uint8Array(64 << 10);
const direntView = new DataView(direntBuf.buffer);

/**
 * The names in host directory `path` (without "." and ".."), as bytes: Linux names need not
 * be UTF-8, and each is copied into the filesystem as it is. Read with getdents64(2).
 *
 * @example
 * ```ts ignore
 * for (const name of readDirNames("/etc")) console.log(new TextDecoder().decode(name));
 * ```
 */
export function readDirNames(path: HostPath): Uint8Array[] {
  const fd = sym().open(cpath(path), O.RDONLY | O.CLOEXEC | O_DIRECTORY, 0);
  if (fd < 0) throw new SyscallError("open", errno(), showPath(path));
  const out: Uint8Array[] = [];
  try {
    // Ends when getdents64 returns 0; every round consumes entries, so it is bounded by the
    // directory's size.
    for (;;) {
      const n = Number(sym().getdents64(fd, direntBuf, BigInt(direntBuf.length)));
      if (n < 0) {
        const code = errno();
        if (code === Errno.EINTR) continue;
        throw new SyscallError("getdents64", code, showPath(path));
      }
      if (n === 0) break;
      for (let o = 0; o < n;) {
        const reclen = direntView.getUint16(o + 16, true);
        if (reclen < 20 || o + reclen > n) {
          throw new SyscallError("getdents64", Errno.EIO, `${showPath(path)}: bad record`);
        }
        let end = o + 19;
        while (end < o + reclen && direntBuf[end] !== 0) end++;
        const name = direntBuf.slice(o + 19, end);
        const dots = (name.length === 1 && name[0] === 0x2e) ||
          (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
        if (!dots) out.push(name);
        o += reclen;
      }
    }
  } finally {
    sym().close(fd);
  }
  return out;
}
