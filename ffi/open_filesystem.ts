/**
 * Opening a filesystem by path: {@link Ext4} here is the library's `Ext4` plus `Ext4.open`,
 * which opens an image file or block device through ffi/file_device.ts (optionally at a byte
 * offset inside a partitioned disk image). mod.ts exports this class as `Ext4`.
 *
 * @module
 */

import { type BlockDevice, OffsetBlockDevice } from "../lib/block/block_device.ts";
import { Ext4 as Ext4Base, type Ext4OpenOptions } from "../lib/ext4/filesystem.ts";
import { openBlockDevice, type OpenDeviceOptions } from "./file_device.ts";
import { openFsFileDevice } from "./fsfile_device.ts";

/** Options for {@link Ext4.open}. */
export interface Ext4PathOpenOptions extends Ext4OpenOptions {
  /** Byte offset of the filesystem inside the image or device (a partition). */
  offset?: number;
  /**
   * Path of the external journal device (`mke2fs -O journal_dev`), opened like the
   * filesystem's device and closed with the filesystem; instead of `journalDevice`.
   */
  journalPath?: string;
}

/**
 * Opens a path through libc (ffi/file_device.ts), or — read-only without `--allow-ffi` — through
 * Deno.FsFile (ffi/fsfile_device.ts), so reading needs only `--allow-read`.
 */
function openDevice(path: string, options: OpenDeviceOptions): Promise<BlockDevice> | BlockDevice {
  if (options.readOnly && Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return openFsFileDevice(path);
  }
  return openBlockDevice(path, options);
}

/**
 * Devices a filesystem opened besides its own (the external journal), closed with it. Kept
 * outside the class: a private field would make this Ext4 a type of its own, which the
 * library's Ext4 (what `Ext4.openDevice` returns) could not be passed as.
 */
const ownedDevices = new WeakMap<Ext4Base, BlockDevice[]>();

/**
 * An ext2/3/4 filesystem opened from a path or a {@link BlockDevice}.
 *
 * @example
 * ```ts
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img, { readOnly: true });
 * for await (const { path, stat } of fs.walk("/")) console.log(path, stat.type); // /lost+found dir
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export class Ext4 extends Ext4Base {
  /**
   * Opens the filesystem in an image file or block device (read-only unless
   * `readOnly: false`), or on an already open device. Closing the filesystem closes the
   * device. Opened for writing, a path is claimed first: `Ext4Error("BUSY")` when the device
   * is mounted or held, or the image backs a loop device that is, or another ext4ts process
   * writes or mounts it; the image stays locked (flock) until the filesystem is closed.
   *
   * @example
   * ```ts
   * const img = await Deno.makeTempFile(); // an image file or a block device such as /dev/sdb1
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   *
   * const rw = await Ext4.open(img, { readOnly: false });
   * await rw.mkdir("/etc/app", { recursive: true });
   * await rw.writeFile("/etc/app/config", new TextEncoder().encode("debug=1\n"));
   * await rw.close();
   *
   * const fs = await Ext4.open(img);
   * console.log(new TextDecoder().decode(await fs.readFile("/etc/app/config"))); // debug=1
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  static async open(
    target: string | BlockDevice,
    options: Ext4PathOpenOptions = {},
  ): Promise<Ext4> {
    const readOnly = options.readOnly ?? true;
    // Opened for writing, the device or image is claimed before anything is read or written:
    // refused (BUSY) while mounted or held, and locked against other ext4ts writers.
    const raw = typeof target === "string"
      ? await openDevice(target, { readOnly, exclusive: !readOnly })
      : target;
    let journal: BlockDevice | undefined;
    try {
      // The in-memory overlay reads journalled blocks from it on demand: it stays open.
      if (options.journalPath) {
        journal = await openDevice(options.journalPath, { readOnly, exclusive: !readOnly });
      }
      const opts = journal ? { ...options, journalDevice: journal } : options;
      const window = options.offset ? new OffsetBlockDevice(raw, options.offset) : raw;
      const { sb, groups, device } = await Ext4Base.loadMetadata(window, opts);
      const fs = new Ext4(device, sb, groups, { readOnly: true, ...opts });
      if (journal) ownedDevices.set(fs, [journal]);
      await fs.prepare();
      return fs;
    } catch (e) {
      if (typeof target === "string") await raw.close().catch(() => {});
      await journal?.close().catch(() => {});
      throw e;
    }
  }

  /**
   * Closes the filesystem (see the base class), then the devices it opened for itself.
   *
   * @example
   * ```ts ignore
   * // Not run by `deno test --doc`: mke2fs attaches an external journal only from a block
   * // device (a loop device, root), so the example cannot make its own images.
   * const fs = await Ext4.open("fs.img", { journalPath: "journal.img" });
   * await fs.close(); // closes fs.img and journal.img
   * ```
   */
  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      const owned = ownedDevices.get(this) ?? [];
      ownedDevices.delete(this);
      for (const d of owned) await d.close();
    }
  }
}
