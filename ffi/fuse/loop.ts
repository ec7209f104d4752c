/**
 * Loop devices for image files: attach (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, autoclear),
 * the backing file of an attached device, and whether a device is free (an O_EXCL open).
 *
 * @module
 */

import { Ext4Error } from "../../lib/errors.ts";
import { cstr, errno, Ioctl, libc, O, SyscallError } from "../libc.ts";

const LO_FLAGS_READ_ONLY = 1;
const LO_FLAGS_AUTOCLEAR = 4;
const LOOP_CONFIG_SIZE = 304;

/** An attached loop device. */
export interface LoopDevice {
  /** `/dev/loopN`. */
  path: string;
  /** N of `/dev/loopN`. */
  number: number;
  /** The descriptor that configured it; with autoclear, closing the last one detaches it. */
  fd: number;
}

/**
 * Attaches `image` to a free loop device with LOOP_CONFIGURE (autoclear, read-only unless
 * asked otherwise). The device detaches itself once its last opener (this fd, a mount)
 * closes it.
 *
 * @example
 * ```ts ignore
 * const loop = attachLoop("disk.img", { readOnly: true });
 * console.log(loop.path); // /dev/loop7
 * ```
 */
export function attachLoop(image: string, options: { readOnly?: boolean } = {}): LoopDevice {
  const c = libc();
  const readOnly = options.readOnly ?? true;
  const backing = c.open(cstr(image), (readOnly ? O.RDONLY : O.RDWR) | O.CLOEXEC, 0);
  if (backing < 0) throw new SyscallError("open", errno(), image);
  try {
    const ctl = c.open(cstr("/dev/loop-control"), O.RDWR | O.CLOEXEC, 0);
    if (ctl < 0) throw new SyscallError("open", errno(), "/dev/loop-control");
    try {
      // Another process may take the device between GET_FREE and CONFIGURE: retry.
      for (let attempt = 0; attempt < 20; attempt++) {
        const n = c.ioctl_int(ctl, Ioctl.LOOP_CTL_GET_FREE, 0n);
        if (n < 0) throw new SyscallError("ioctl", errno(), "LOOP_CTL_GET_FREE");
        const path = `/dev/loop${n}`;
        const fd = c.open(cstr(path), (readOnly ? O.RDONLY : O.RDWR) | O.CLOEXEC, 0);
        if (fd < 0) {
          if (errno() === 2) continue; // node not created yet by udev/devtmpfs
          throw new SyscallError("open", errno(), path);
        }
        const cfg = new Uint8Array(LOOP_CONFIG_SIZE);
        const v = new DataView(cfg.buffer);
        v.setUint32(0, backing, true);
        v.setUint32(4, 0, true); // block size: default
        v.setUint32(8 + 52, LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0), true);
        const name = new TextEncoder().encode(image).subarray(0, 63);
        cfg.set(name, 8 + 56);
        if (c.ioctl(fd, Ioctl.LOOP_CONFIGURE, cfg) === 0) return { path, number: n, fd };
        const e = errno();
        c.close(fd);
        if (e !== 16 /* EBUSY: taken meanwhile */) {
          throw new SyscallError("ioctl", e, `LOOP_CONFIGURE ${path}`);
        }
      }
      throw new Ext4Error("BUSY", "no free loop device after 20 attempts");
    } finally {
      c.close(ctl);
    }
  } finally {
    c.close(backing);
  }
}

/**
 * The loop device's backing file, or undefined when it is not attached.
 *
 * @example
 * ```ts ignore
 * loopBackingFile("/dev/loop0"); // "/tmp/disk.img" or undefined
 * ```
 */
export function loopBackingFile(loopPath: string): string | undefined {
  const name = loopPath.replace(/^\/dev\//, "");
  try {
    return Deno.readTextFileSync(`/sys/block/${name}/loop/backing_file`).trim();
  } catch {
    return undefined;
  }
}

/**
 * Tries an O_EXCL open of a block device: true when nothing (mount, other holder) has it.
 * ENOENT (a loop node gone) also counts as free.
 *
 * @example
 * ```ts ignore
 * if (deviceIsFree("/dev/loop0")) console.log("safe to remove");
 * ```
 */
export function deviceIsFree(path: string): boolean {
  const c = libc();
  const fd = c.open(cstr(path), O.RDONLY | O.EXCL | O.CLOEXEC, 0);
  if (fd >= 0) {
    c.close(fd);
    return true;
  }
  return errno() === 2;
}
