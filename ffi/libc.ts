/**
 * libc through Deno FFI: the system calls ext4ts needs that Deno's own API does not give
 * (pread/pwrite on raw file descriptors, ioctl, mount/umount2, prctl, poll, flock).
 *
 * Facts this module is built on (see ../shared/PLATFORM-FACTS.md):
 * - errno is only meaningful right after a *synchronous* call, so every call that needs
 *   errno is synchronous; `*_nb` variants run on a worker thread and are used only where
 *   repeating a failed call synchronously to learn errno is harmless (reads). Writes and
 *   fsync that must not block use POSIX AIO (ffi/aio.ts), whose control block carries errno.
 * - 64-bit results come back as BigInt.
 *
 * Each symbol is bound lazily, on first use, so that importing this module costs nothing and
 * works without `--allow-ffi` until a device is actually opened.
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  access: { parameters: ["buffer", "i32"], result: "i32" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pread64_nb: {
    name: "pread64",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    nonblocking: true,
  },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // The FUSE loop's read and write: an i32 result is a plain number (isize is a BigInt).
  read_i32: { name: "read", parameters: ["i32", "buffer", "usize"], result: "i32" },
  write_i32: { name: "write", parameters: ["i32", "buffer", "usize"], result: "i32" },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  fsync: { parameters: ["i32"], result: "i32" },
  // POSIX AIO (glibc runs each request on its own thread and keeps its errno in the aiocb).
  aio_write: { parameters: ["buffer"], result: "i32" },
  aio_fsync: { parameters: ["i32", "buffer"], result: "i32" },
  aio_error: { parameters: ["buffer"], result: "i32" },
  aio_return: { parameters: ["buffer"], result: "isize" },
  aio_suspend_nb: {
    name: "aio_suspend",
    parameters: ["buffer", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  fdatasync: { parameters: ["i32"], result: "i32" },
  // Gives the C heap's free pages back to the system (an idle daemon: ffi/fuse/serve.ts).
  malloc_trim: { parameters: ["usize"], result: "i32" },
  // Discards (BLKDISCARD, fallocate PUNCH_HOLE) can take long on a real device: off the event
  // loop, repeated synchronously only to learn errno (discarding twice is discarding once).
  fallocate64: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  fallocate64_nb: {
    name: "fallocate64",
    parameters: ["i32", "i32", "i64", "i64"],
    result: "i32",
    nonblocking: true,
  },
  ioctl_nb: {
    name: "ioctl",
    parameters: ["i32", "u64", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "i64"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_nb: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  umount2_nb: { name: "umount2", parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  getuid: { parameters: [], result: "u32" },
  getgid: { parameters: [], result: "u32" },
  geteuid: { parameters: [], result: "u32" },
  getpid: { parameters: [], result: "i32" },
  setsid: { parameters: [], result: "i32" },
  // A timer without Deno's timers (the first setTimeout of a process costs ~4 ms of CPU).
  alarm: { parameters: ["u32"], result: "u32" },
  // glibc 2.36 and later (binding it fails on an older one: see libc()).
  pidfd_open: { parameters: ["i32", "u32"], result: "i32" },
  dup2: { parameters: ["i32", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i64"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened libc with the symbols above. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let table: Libc | undefined;

/**
 * The libc symbols, each bound on its first use: binding costs ~0.13 ms a symbol (Deno makes a
 * call stub for each), so the whole table up front was 5–9 ms of every command's start, where
 * `ext4ts umount` needs a handful of symbols. A symbol this libc lacks throws when first used.
 *
 * @example
 * ```ts ignore
 * import { libc } from "./libc.ts";
 * console.log(libc().getuid()); // 0 as root
 * ```
 */
export function libc(): Libc {
  if (table) return table;
  const t = {} as Libc;
  for (const name of Object.keys(SYMBOLS) as (keyof typeof SYMBOLS)[]) {
    let fn: unknown;
    Object.defineProperty(t, name, {
      enumerable: true,
      get: () => fn ??= Deno.dlopen("libc.so.6", { [name]: SYMBOLS[name] }).symbols[name],
    });
  }
  return table = t;
}

/** errno of the last synchronous libc call made from this thread. */
export function errno(): number {
  const p = libc().__errno_location();
  if (p === null) return 0;
  return new Deno.UnsafePointerView(p).getInt32(0);
}

/** The C library's text for an errno value. */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** Linux open(2) flags (x86_64 values). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DSYNC: 0o10000,
  DIRECT: 0o40000,
  LARGEFILE: 0o100000,
  CLOEXEC: 0o2000000,
} as const;

/** fallocate(2) modes. */
export const Falloc = {
  KEEP_SIZE: 1,
  PUNCH_HOLE: 2,
} as const;

/** flock(2) operations. */
export const Lock = {
  SH: 1,
  EX: 2,
  NB: 4,
  UN: 8,
} as const;

/** Block-device ioctl request numbers (x86_64). */
export const Ioctl = {
  BLKGETSIZE64: 0x80081272n,
  BLKSSZGET: 0x1268n,
  BLKPBSZGET: 0x127bn,
  BLKROGET: 0x125en,
  BLKFLSBUF: 0x1261n,
  /** _IO(0x12, 119): discard the byte range `u64[2] = { start, length }`. */
  BLKDISCARD: 0x1277n,
  LOOP_SET_FD: 0x4c00n,
  LOOP_CLR_FD: 0x4c01n,
  LOOP_SET_STATUS64: 0x4c04n,
  LOOP_GET_STATUS64: 0x4c05n,
  LOOP_CONFIGURE: 0x4c0an,
  LOOP_CTL_GET_FREE: 0x4c82n,
} as const;

/** A failed system call, with its errno and the C library's message. */
export class SyscallError extends Error {
  readonly errno: number;
  readonly syscall: string;

  constructor(syscall: string, code: number, what?: string) {
    super(`${what ? what + ": " : ""}${strerror(code)}`);
    this.name = "SyscallError";
    this.errno = code;
    this.syscall = syscall;
  }
}

/** A NUL-terminated copy of a string for passing to C. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
