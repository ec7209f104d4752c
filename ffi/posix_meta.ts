/**
 * The metadata calls `ext4ts get` needs that Deno's API lacks: nanosecond timestamps on any
 * object including symlinks (utimensat), lchown, mknod for devices, fifos and sockets, and
 * lsetxattr. Synchronous libc calls so errno is meaningful.
 *
 * @module
 */

import { cstr, errno, SyscallError } from "./libc.ts";

const SYMBOLS = {
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  lchown: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
function sym(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (!lib) lib = Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;

function check(rc: number, call: string, path: string): void {
  if (rc !== 0) throw new SyscallError(call, errno(), path);
}

/**
 * Sets atime and mtime with nanoseconds, without following a final symlink.
 *
 * @example
 * ```ts ignore
 * setTimes("/tmp/x", { sec: 1, nsec: 5 }, { sec: 2, nsec: 7 });
 * ```
 */
export function setTimes(
  path: string,
  atime: { sec: number; nsec: number },
  mtime: { sec: number; nsec: number },
): void {
  const ts = new BigInt64Array([
    BigInt(atime.sec),
    BigInt(atime.nsec),
    BigInt(mtime.sec),
    BigInt(mtime.nsec),
  ]);
  check(
    sym().utimensat(AT_FDCWD, cstr(path), new Uint8Array(ts.buffer), AT_SYMLINK_NOFOLLOW),
    "utimensat",
    path,
  );
}

/**
 * Changes the owner of `path` without following a final symlink.
 *
 * @example
 * ```ts ignore
 * lchown("/tmp/x", 1000, 1000);
 * ```
 */
export function lchown(path: string, uid: number, gid: number): void {
  check(sym().lchown(cstr(path), uid >>> 0, gid >>> 0), "lchown", path);
}

/**
 * Creates a device node, fifo or socket. `mode` includes the type bits.
 *
 * @example
 * ```ts ignore
 * mknod("/tmp/null", 0o020666, 1, 3);
 * ```
 */
export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  const dev = (BigInt(major & 0xfffff000) << 32n) | (BigInt(major & 0xfff) << 8n) |
    (BigInt(minor & 0xffffff00) << 12n) | BigInt(minor & 0xff);
  check(sym().mknod(cstr(path), mode >>> 0, dev), "mknod", path);
}

/**
 * Sets an xattr on `path` itself (not a symlink's target).
 *
 * @example
 * ```ts ignore
 * lsetxattr("/tmp/x", "user.k", new Uint8Array([1]));
 * ```
 */
export function lsetxattr(path: string, name: string, value: Uint8Array): void {
  const v = value.length === 0 ? new Uint8Array(1) : new Uint8Array(value);
  check(
    sym().lsetxattr(cstr(path), cstr(name), v, BigInt(value.length), 0),
    "lsetxattr",
    path,
  );
}
