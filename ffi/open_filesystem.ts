/**
 * Opening a filesystem by path: {@link Ext4} here is the library's `Ext4` plus `Ext4.open`,
 * which opens an image file or block device through ffi/file_device.ts (optionally at a byte
 * offset inside a partitioned disk image). mod.ts exports this class as `Ext4`.
 *
 * @module
 */

import { type BlockDevice, OffsetBlockDevice } from "../lib/block_device.ts";
import { Ext4 as Ext4Base, type Ext4OpenOptions } from "../lib/filesystem.ts";
import { openBlockDevice } from "./file_device.ts";

/** Options for {@link Ext4.open}. */
export interface Ext4PathOpenOptions extends Ext4OpenOptions {
  /** Byte offset of the filesystem inside the image or device (a partition). */
  offset?: number;
}

function isBlockDevice(path: string): boolean {
  try {
    return Deno.statSync(path).isBlockDevice ?? false;
  } catch {
    return false; // openBlockDevice reports the error
  }
}

/**
 * An ext2/3/4 filesystem opened from a path or a {@link BlockDevice}.
 *
 * @example
 * ```ts ignore
 * import { Ext4 } from "./mod.ts";
 * const fs = await Ext4.open("disk.img", { readOnly: true });
 * for await (const { path, stat } of fs.walk("/etc")) console.log(path, stat.size);
 * await fs.close();
 * ```
 */
export class Ext4 extends Ext4Base {
  /**
   * Opens the filesystem in an image file or block device (read-only unless
   * `readOnly: false`, which opens a block device exclusively), or on an already open device.
   * Closing the filesystem closes the device.
   *
   * @example
   * ```ts ignore
   * const fs = await Ext4.open("/dev/sdb1");
   * const text = new TextDecoder().decode(await fs.readFile("/etc/hostname"));
   * await fs.close();
   *
   * const rw = await Ext4.open("disk.img", { readOnly: false });
   * await rw.mkdir("/etc/app", { recursive: true });
   * await rw.writeFile("/etc/app/config", new TextEncoder().encode("debug=1\n"));
   * await rw.close();
   * ```
   */
  static async open(
    target: string | BlockDevice,
    options: Ext4PathOpenOptions = {},
  ): Promise<Ext4> {
    const readOnly = options.readOnly ?? true;
    // A block device opened for writing is claimed exclusively, as a mount claims it.
    const raw = typeof target === "string"
      ? openBlockDevice(target, { readOnly, exclusive: !readOnly && isBlockDevice(target) })
      : target;
    try {
      const window = options.offset ? new OffsetBlockDevice(raw, options.offset) : raw;
      const { sb, groups, device } = await Ext4Base.loadMetadata(window, options);
      const fs = new Ext4(device, sb, groups, { readOnly: true, ...options });
      await fs.prepare();
      return fs;
    } catch (e) {
      if (typeof target === "string") await raw.close().catch(() => {});
      throw e;
    }
  }
}
