/**
 * A read-only {@link BlockDevice} over Deno's own file API (`Deno.FsFile`): no FFI, so reading
 * an image or block device needs only `--allow-read`. Deno has no positional read, so reads
 * are a seek and reads, one at a time (queued); {@link FileBlockDevice} (libc pread, which
 * needs `--allow-ffi`) is faster and can write.
 *
 * @module
 */

import { type BlockDevice, checkRange } from "../lib/block/block_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";

function errorFor(e: unknown, path: string): Ext4Error {
  const text = `${path}: ${e instanceof Error ? e.message : String(e)}`;
  if (e instanceof Deno.errors.NotFound) {
    return new Ext4Error("NOT_FOUND", text, { errno: Errno.ENOENT });
  }
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return new Ext4Error("PERMISSION", text, { errno: Errno.EACCES });
  }
  return new Ext4Error("IO", text, { errno: Errno.EIO });
}

/**
 * An image file or block device opened read-only through `Deno.FsFile`.
 *
 * @example
 * ```ts
 * import { Ext4, openFsFileDevice } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.openDevice(await openFsFileDevice(img)); // --allow-read only
 * console.log((await fs.stat("/lost+found")).type); // dir
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export class FsFileBlockDevice implements BlockDevice {
  /** The path the device was opened with. */
  readonly path: string;
  readonly size: number;
  /** 512: Deno cannot ask a block device for its sector size without FFI. */
  readonly sectorSize = 512;
  readonly readOnly = true;
  #file: Deno.FsFile | undefined;
  /** The read in progress: reads share the file position, so they take turns. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, file: Deno.FsFile, size: number) {
    this.path = path;
    this.#file = file;
    this.size = size;
  }

  /** Opens `path` read-only; its size is where a seek to the end lands (block devices too). */
  static async open(path: string): Promise<FsFileBlockDevice> {
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(path, { read: true });
      if ((await file.stat()).isDirectory) {
        throw new Ext4Error("INVALID", `${path}: is a directory`, { errno: Errno.EISDIR });
      }
      const size = await file.seek(0, Deno.SeekMode.End);
      return new FsFileBlockDevice(path, file, size);
    } catch (e) {
      file?.close();
      throw e instanceof Ext4Error ? e : errorFor(e, path);
    }
  }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    const file = this.#open();
    checkRange(this.size, offset, buffer.length, this.path);
    const done = this.#queue.then(async () => {
      try {
        await file.seek(offset, Deno.SeekMode.Start);
        for (let at = 0; at < buffer.length;) {
          const n = await file.read(buffer.subarray(at));
          if (n === null) {
            throw new Ext4Error("IO", `${this.path}: short read at ${offset + at}`, {
              errno: Errno.EIO,
            });
          }
          at += n;
        }
      } catch (e) {
        throw e instanceof Ext4Error ? e : errorFor(e, this.path);
      }
    });
    this.#queue = done.catch(() => {});
    await done;
  }

  write(): Promise<void> {
    return Promise.reject(
      new Ext4Error("READ_ONLY", `${this.path}: opened read-only (Deno.FsFile)`, {
        errno: Errno.EROFS,
      }),
    );
  }

  flush(): Promise<void> {
    this.#open();
    return Promise.resolve();
  }

  async close(): Promise<void> {
    const file = this.#open();
    this.#file = undefined;
    await this.#queue;
    file.close();
  }

  #open(): Deno.FsFile {
    if (!this.#file) throw new Ext4Error("IO", `${this.path}: device is closed`);
    return this.#file;
  }
}

/**
 * Opens an image file or block device read-only without FFI (needs only `--allow-read`).
 *
 * @example
 * ```ts
 * import { openFsFileDevice } from "./fsfile_device.ts";
 * const img = await Deno.makeTempFile();
 * await Deno.truncate(img, 1 << 20);
 * const dev = await openFsFileDevice(img);
 * console.log(dev.size); // 1048576
 * await dev.close();
 * await Deno.remove(img);
 * ```
 */
export function openFsFileDevice(path: string): Promise<FsFileBlockDevice> {
  return FsFileBlockDevice.open(path);
}
