/**
 * A device that counts the bytes written through it: what one open wrote, for the
 * superblock's lifetime writes (`s_kbytes_written`); and the reads made through it (tests of
 * read-ahead count them).
 *
 * @module
 */

import type { BlockDevice } from "./block_device.ts";
import { PassThroughDevice } from "./pass_through_device.ts";

/**
 * Passes everything through to `inner` and counts the bytes of the writes that succeeded, and
 * the reads.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { CountingDevice } from "./counting_device.ts";
 * const dev = new CountingDevice(new MemoryBlockDevice(new Uint8Array(4096)));
 * await dev.write(0, new Uint8Array(1024));
 * console.log(dev.bytesWritten); // 1024
 * await dev.read(0, new Uint8Array(2048));
 * console.log(dev.reads, dev.bytesRead); // 1 2048
 * ```
 */
export class CountingDevice extends PassThroughDevice {
  /** Bytes written through this object so far. */
  bytesWritten = 0;
  /** Reads made through this object so far (each one device request). */
  reads = 0;
  /** Bytes those reads asked for. */
  bytesRead = 0;

  /** Counts the writes made to `inner` through this object. */
  constructor(inner: BlockDevice) {
    super(inner);
  }

  /** Reads from the inner device, counting the request. */
  override read(offset: number, buffer: Uint8Array): Promise<void> {
    this.reads++;
    this.bytesRead += buffer.length;
    return this.inner.read(offset, buffer);
  }

  /** Writes to the inner device and counts the bytes once written. */
  override async write(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.write(offset, data);
    this.bytesWritten += data.length;
  }
}
