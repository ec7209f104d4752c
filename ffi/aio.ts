/**
 * fsync and pwrite off the event loop without losing errno, through glibc's POSIX AIO
 * (aio(7)): glibc runs the request on a thread of its own, calls fsync(2) or pwrite(2) there
 * ONCE and stores the result and errno in the request's control block (`struct aiocb`). The
 * caller waits with `aio_suspend` on Deno's blocking pool (a `nonblocking` FFI call) and reads
 * the outcome with `aio_error`/`aio_return`, which return it directly.
 *
 * Why not the obvious ways: errno is lost on a `nonblocking: true` FFI call (it is
 * thread-local to the pool thread), and repeating a failed fsync synchronously to learn it
 * returns 0 — Linux reports a writeback error once per file, so the repeat turns lost data
 * into success; a repeated pwrite can succeed where the first failed. A synchronous fsync
 * blocks the event loop for its whole duration (measured here: 20–100 ms for 64 MiB dirty,
 * seconds on slow media); a Worker would need a module of its own for `deno compile` and
 * keeps the process alive until terminated. glibc's AIO threads need neither.
 *
 * @module
 */

import { errno, libc } from "./libc.ts";

/**
 * `struct aiocb` on x86_64 glibc (checked with offsetof against <aio.h> of glibc 2.36): 168
 * bytes; the list `aio_suspend` takes (one pointer to it) follows it in the same buffer.
 */
const AIOCB = {
  size: 168,
  fildes: 0,
  buf: 16,
  nbytes: 24,
  /** `aio_sigevent.sigev_notify`: SIGEV_NONE, no signal at completion. */
  sigevNotify: 44,
  offset: 128,
} as const;
const SIGEV_NONE = 1;
const EINPROGRESS = 115;
/** aio_fsync's operation: O_SYNC asks for fsync(2) (O_DSYNC would be fdatasync). */
const O_SYNC = 0o4010000;

/** What the system call returned, and its errno when it failed. */
export interface AioResult {
  /** fsync's 0 or pwrite's byte count; -1 on failure. */
  result: number;
  /** errno of the failed call (0 when it succeeded). */
  errno: number;
}

function controlBlock(fd: number): { cb: Uint8Array<ArrayBuffer>; view: DataView } {
  // One buffer for the aiocb and the one-entry list aio_suspend reads: both stay referenced by
  // the caller's frame until the request has completed.
  const cb = new Uint8Array(AIOCB.size + 8);
  const view = new DataView(cb.buffer);
  view.setInt32(AIOCB.fildes, fd, true);
  view.setInt32(AIOCB.sigevNotify, SIGEV_NONE, true);
  return { cb, view };
}

async function complete(
  cb: Uint8Array<ArrayBuffer>,
  view: DataView,
  queued: number,
): Promise<AioResult> {
  // The request was refused before it ran (EBADF, EAGAIN…): errno of that synchronous call.
  if (queued < 0) return { result: -1, errno: errno() };
  const c = libc();
  const list = cb.subarray(AIOCB.size);
  view.setBigUint64(AIOCB.size, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(cb))), true);
  // aio_suspend may return early (EINTR); the request's own status says when it is done.
  while (c.aio_error(cb) === EINPROGRESS) await c.aio_suspend_nb(list, 1, null);
  const err = c.aio_error(cb);
  const result = Number(c.aio_return(cb));
  return { result, errno: result < 0 ? err : 0 };
}

/**
 * fsync(2) of `fd` on glibc's AIO thread; the event loop stays free. Never repeats the call.
 *
 * @example
 * ```ts ignore
 * const { result, errno } = await aioFsync(fd);
 * if (result < 0) throw new Error(strerror(errno));
 * ```
 */
export async function aioFsync(fd: number): Promise<AioResult> {
  const { cb, view } = controlBlock(fd);
  return await complete(cb, view, libc().aio_fsync(O_SYNC, cb));
}

/**
 * One pwrite(2) of `data` at `offset` of `fd` on glibc's AIO thread: the result as it happened
 * (a short count, or -1 and errno), never repeated. `data` must not change until it resolves.
 *
 * @example
 * ```ts ignore
 * const { result, errno } = await aioPwrite(fd, bytes, 4096);
 * ```
 */
export async function aioPwrite(
  fd: number,
  data: Uint8Array,
  offset: number,
): Promise<AioResult> {
  const { cb, view } = controlBlock(fd);
  view.setBigUint64(AIOCB.buf, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data))), true);
  view.setBigUint64(AIOCB.nbytes, BigInt(data.length), true);
  view.setBigInt64(AIOCB.offset, BigInt(offset), true);
  const r = await complete(cb, view, libc().aio_write(cb));
  // `data` is read by the AIO thread through a raw pointer: keep it alive until here.
  if (data.length < 0) throw new Error("unreachable");
  return r;
}
