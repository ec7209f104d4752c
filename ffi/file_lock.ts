/**
 * Advisory whole-file locks (flock(2)) on image files, so two ext4ts processes never write
 * the same image at once: a writer holds an exclusive lock for as long as the image is open
 * for writing (ffi/file_device.ts), an `ext4ts mount` holds a shared one while it serves the
 * image (ffi/fuse/serve.ts). A flock belongs to the open file description: closing the
 * descriptor releases it, and so does the death of the process. Programs that do not take
 * the lock (the kernel's loop driver, other tools) are not stopped by it; the loop devices
 * are checked separately (ffi/device_status.ts).
 *
 * @module
 */

import { Errno, Ext4Error } from "../lib/errors.ts";
import { majorMinor } from "./device_status.ts";
import { cstr, errno, libc, Lock, O, strerror } from "./libc.ts";

/** `shared` for readers that must not be written under, `exclusive` for writers. */
export type LockMode = "shared" | "exclusive";

/**
 * Who holds a flock on `path`, from /proc/locks: e.g. `locked for writing by process 1234
 * (deno)`.
 */
function holderText(path: string): string {
  let info: Deno.FileInfo;
  let locks: string;
  try {
    info = Deno.statSync(path);
    locks = Deno.readTextFileSync("/proc/locks");
  } catch {
    return "locked by another process";
  }
  const [major, minor] = majorMinor(info.dev);
  for (const line of locks.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (waiters have "->" after the number)
    const m = /^\d+:\s+FLOCK\s+\S+\s+(READ|WRITE)\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/
      .exec(line);
    if (!m || parseInt(m[3], 16) !== major || parseInt(m[4], 16) !== minor) continue;
    if (Number(m[5]) !== info.ino) continue;
    const pid = Number(m[2]);
    let name = "";
    try {
      name = ` (${Deno.readTextFileSync(`/proc/${pid}/comm`).trim()})`;
    } catch { /* gone, or not visible */ }
    const who = pid === Deno.pid ? "this process" : `process ${pid}${name}`;
    return `locked for ${m[1] === "WRITE" ? "writing" : "reading"} by ${who}`;
  }
  return "locked by another process";
}

/**
 * Locks the open file `fd` (of `path`) without waiting; throws `Ext4Error("BUSY")` naming the
 * holder when another open file holds a conflicting lock. A filesystem without flock support
 * leaves the file unlocked (the lock is advisory).
 *
 * @example
 * ```ts ignore
 * lockFile(fd, "disk.img", "exclusive"); // BUSY: disk.img is in use: locked for writing by process 1234 (deno)
 * ```
 */
export function lockFile(fd: number, path: string, mode: LockMode): void {
  const op = (mode === "shared" ? Lock.SH : Lock.EX) | Lock.NB;
  for (;;) {
    if (libc().flock(fd, op) === 0) return;
    const code = errno();
    if (code === Errno.EINTR) continue;
    if (code === Errno.EAGAIN) {
      throw new Ext4Error("BUSY", `${path} is in use: ${holderText(path)}`, { errno: Errno.EBUSY });
    }
    return; // ENOLCK, EOPNOTSUPP: no locks on this filesystem
  }
}

/**
 * Opens `path` read-only and locks it (see {@link lockFile}); returns the descriptor, whose
 * close releases the lock.
 *
 * @example
 * ```ts ignore
 * const fd = openLocked("disk.img", "shared"); // while an ext4ts mount serves it
 * libc().close(fd);
 * ```
 */
export function openLocked(path: string, mode: LockMode): number {
  const c = libc();
  const fd = c.open(cstr(path), O.RDONLY | O.CLOEXEC, 0);
  if (fd < 0) {
    const code = errno();
    throw new Ext4Error(
      code === Errno.ENOENT ? "NOT_FOUND" : "IO",
      `${path}: open: ${strerror(code)}`,
    );
  }
  try {
    lockFile(fd, path, mode);
  } catch (e) {
    c.close(fd);
    throw e;
  }
  return fd;
}
