/**
 * Opening an image or device for the write commands (put, mkdir, rm, mv).
 *
 * @module
 */

import { type BlockDevice, OffsetBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { Ext4 } from "../ffi/open_filesystem.ts";

/** How the write commands open their image: `--offset` and `--force-unchecked`. */
export interface WriteOpenOptions {
  /** The filesystem starts at this byte offset. */
  offset?: number;
  /** Write even though the superblock records errors or an unclean journal-less filesystem. */
  force?: boolean;
}

/**
 * The help line of `--force-unchecked`, shared by every write command. Not `--force`: put's
 * `-f/--force` replaces files, as cp's does; this one overrides a safety refusal, so it says
 * what it overrides (the kernel's words: "mounting unchecked fs").
 */
export const FORCE_UNCHECKED_HELP =
  "write even though the filesystem records errors, or was not cleanly unmounted (no journal)";

/**
 * The {@link WriteOpenOptions} of a write command's options as commander parsed them:
 * `--offset` (already a number: the option's parser is reader_common.ts `parseOffset`, so a
 * bad value is a usage error) and `--force-unchecked`.
 *
 * @example
 * ```ts
 * import { writeOpenOptions } from "./writer_open.ts";
 * console.log(writeOpenOptions({ offset: 1048576, forceUnchecked: true })); // { offset: 1048576, force: true }
 * ```
 */
export function writeOpenOptions(
  opts: { offset?: unknown; forceUnchecked?: unknown },
): WriteOpenOptions {
  return {
    offset: typeof opts.offset === "number" ? opts.offset : 0,
    force: opts.forceUnchecked === true,
  };
}

/**
 * Opens `image` as a writable {@link Ext4} (claimed: refused with BUSY while in use, locked
 * while open), runs `fn` and closes the filesystem (flushing), even when `fn` fails.
 *
 * @example
 * ```ts ignore
 * await withFilesystem("disk.img", {}, (fs) => fs.mkdir("/etc", { recursive: true }));
 * ```
 */
export async function withFilesystem<T>(
  image: string,
  options: WriteOpenOptions,
  fn: (fs: Ext4) => Promise<T>,
): Promise<T> {
  const fs = await Ext4.open(image, {
    readOnly: false,
    offset: options.offset || undefined,
    force: options.force,
  });
  let result: T;
  try {
    result = await fn(fs);
  } catch (e) {
    // close() still runs (it releases the image); when it rejects too, the I/O failure is what
    // the user hears of, the first one when fn's own error was it.
    await fs.close().catch((closing) => {
      throw e instanceof Ext4Error && e.code === "IO" ? e : closing;
    });
    throw e;
  }
  await fs.close(); // rejects after any failed write or flush: never a success then
  return result;
}

/**
 * Opens `image` read-write (claimed as by {@link withFilesystem}), runs `fn`, closes the
 * writer (a clean close in the superblock, flushed) and the image.
 */
export async function withWriter<T>(
  image: string,
  options: WriteOpenOptions,
  fn: (w: Ext4Writer) => Promise<T>,
): Promise<T> {
  const file = openBlockDevice(image, { readOnly: false, exclusive: true });
  try {
    const dev = options.offset ? new OffsetBlockDevice(file, options.offset) : file;
    return await writeDevice(dev, options, fn);
  } finally {
    await file.close(); // releases the image's lock
  }
}

/**
 * The body of {@link withWriter} on an open device: opens an {@link Ext4Writer}, runs `fn` and
 * flushes. The flush rejects when any write or flush of the writer failed, even one `fn`
 * caught: a failed write never ends in success.
 *
 * @example
 * ```ts ignore
 * await writeDevice(new MemoryBlockDevice(bytes), {}, (w) => putTree(w, "/srv", "/"));
 * ```
 */
export async function writeDevice<T>(
  device: BlockDevice,
  options: WriteOpenOptions,
  fn: (w: Ext4Writer) => Promise<T>,
): Promise<T> {
  const w = await Ext4Writer.open(device, { force: options.force });
  let result: T;
  try {
    result = await fn(w);
  } catch (e) {
    // A failed operation's transaction was discarded: the filesystem is as consistent as
    // before, so it is closed cleanly (unless a commit failed: then close writes nothing).
    await w.close().catch(() => {});
    throw e;
  }
  await w.flush(); // rejects after any I/O failure, even one `fn` swallowed
  await w.close(); // the superblock records a clean close
  return result;
}
