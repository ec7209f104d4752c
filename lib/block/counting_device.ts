/**
 * A device that counts the bytes written through it: what one open wrote, for the
 * superblock's lifetime writes (`s_kbytes_written`).
 *
 * @module
 */

import type { BlockDevice } from "./block_device.ts";

/**
 * Passes everything through to `inner` and counts the bytes of the writes that succeeded.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { CountingDevice } from "./counting_device.ts";
 * const dev = new CountingDevice(new MemoryBlockDevice(new Uint8Array(4096)));
 * await dev.write(0, new Uint8Array(1024));
 * console.log(dev.bytesWritten); // 1024
 * ```
 */
export class CountingDevice implements BlockDevice {
  /** The device every call passes through to. */
  readonly inner: BlockDevice;
  /** Bytes written through this object so far. */
  bytesWritten = 0;

  /** Counts the writes made to `inner` through this object. */
  constructor(inner: BlockDevice) {
    this.inner = inner;
  }

  /** The inner device's size. */
  get size(): number {
    return this.inner.size;
  }
  /** The inner device's sector size. */
  get sectorSize(): number {
    return this.inner.sectorSize;
  }
  /** Whether the inner device refuses writes. */
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  /** Reads from the inner device. */
  read(offset: number, buffer: Uint8Array): Promise<void> {
    return this.inner.read(offset, buffer);
  }
  /** Writes to the inner device and counts the bytes once written. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.write(offset, data);
    this.bytesWritten += data.length;
  }
  /** Flushes the inner device. */
  flush(): Promise<void> {
    return this.inner.flush();
  }
  /** Closes the inner device. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
