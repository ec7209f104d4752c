/**
 * Opening an image or device for the write commands (put, mkdir, rm, mv).
 *
 * @module
 */

import { OffsetBlockDevice } from "../lib/block_device.ts";
import { Ext4Writer } from "../lib/writer.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { parseByteCount } from "./device.ts";

/**
 * Opens `image` as a writable {@link Ext4} (block devices exclusively), runs `fn` and closes
 * the filesystem (flushing), even when `fn` fails.
 *
 * @example
 * ```ts ignore
 * await withFilesystem("disk.img", {}, (fs) => fs.mkdir("/etc", { recursive: true }));
 * ```
 */
export async function withFilesystem<T>(
  image: string,
  options: { offset?: number },
  fn: (fs: Ext4) => Promise<T>,
): Promise<T> {
  const fs = await Ext4.open(image, { readOnly: false, offset: options.offset || undefined });
  try {
    return await fn(fs);
  } finally {
    await fs.close();
  }
}

/** Opens `image` read-write (block devices exclusively), runs `fn`, flushes and closes. */
export async function withWriter<T>(
  image: string,
  options: { offset?: number },
  fn: (w: Ext4Writer) => Promise<T>,
): Promise<T> {
  let isBlock = false;
  try {
    isBlock = Deno.statSync(image).isBlockDevice ?? false;
  } catch { /* openBlockDevice reports it */ }
  const file = openBlockDevice(image, { readOnly: false, exclusive: isBlock });
  const dev = options.offset ? new OffsetBlockDevice(file, options.offset) : file;
  try {
    const w = await Ext4Writer.open(dev);
    const result = await fn(w);
    await w.flush();
    return result;
  } finally {
    await dev.close();
  }
}

/** Parses `--offset` like the readers do (bytes, `s` sectors, k/M/G/T); bad input is usage. */
export function parseOffset(value: string): number {
  return parseByteCount(value);
}
