/**
 * The base of the devices that wrap another one to watch or change what passes through
 * (counting, recording, failing on purpose): everything goes to `inner` unless overridden.
 *
 * @module
 */

import { type BlockDevice, discardOn } from "./block_device.ts";

/**
 * A device that passes every call through to `inner`.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { PassThroughDevice } from "./pass_through_device.ts";
 * class Reads extends PassThroughDevice {
 *   count = 0;
 *   override read(offset: number, buffer: Uint8Array): Promise<void> {
 *     this.count++;
 *     return super.read(offset, buffer);
 *   }
 * }
 * const dev = new Reads(new MemoryBlockDevice(new Uint8Array(1024)));
 * await dev.read(0, new Uint8Array(512));
 * console.log(dev.count); // 1
 * ```
 */
export class PassThroughDevice implements BlockDevice {
  /** The device every call passes through to. */
  readonly inner: BlockDevice;

  /** Passes every call to `inner`. */
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

  /** The inner device's discard granularity (0: it cannot discard). */
  get discardGranularity(): number {
    return this.inner.discardGranularity ?? 0;
  }

  /** Reads from the inner device. */
  read(offset: number, buffer: Uint8Array): Promise<void> {
    return this.inner.read(offset, buffer);
  }

  /** Writes to the inner device. */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data);
  }

  /** Discards on the inner device. */
  discard(offset: number, length: number): Promise<void> {
    return discardOn(this.inner, offset, length);
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
