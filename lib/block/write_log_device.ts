/**
 * A device that records every write and flush passed to the device under it, in order, for
 * crash tests: replaying a prefix of the log up to a flush onto the original image gives
 * what a power cut right after that flush could leave on disk.
 *
 * @module
 */

import { type BlockDevice, checkRange } from "./block_device.ts";
import { PassThroughDevice } from "./pass_through_device.ts";

/** One recorded operation. */
export type WriteLogEntry =
  | { readonly kind: "write"; readonly offset: number; readonly data: Uint8Array }
  | { readonly kind: "flush" };

/**
 * Passes reads, writes and flushes through to `inner` and logs writes (copied) and flushes.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { WriteLogDevice } from "./write_log_device.ts";
 * const base = new Uint8Array(16);
 * const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(base)));
 * await log.write(0, new Uint8Array([1]));
 * await log.flush();
 * await log.write(1, new Uint8Array([2]));
 * console.log(log.flushBoundaries()); // [ 2 ]
 * console.log(log.replay(base, 2).subarray(0, 2)); // Uint8Array(2) [ 1, 0 ]
 * ```
 */
export class WriteLogDevice extends PassThroughDevice {
  /** Every write (with a copy of its bytes) and flush, in the order they happened. */
  readonly entries: WriteLogEntry[] = [];
  /** The positions a workload marked (see {@link mark}), in order. */
  readonly marks: { readonly label: string; readonly position: number }[] = [];

  /** Logs the writes and flushes made to `inner` while passing them on. */
  constructor(inner: BlockDevice) {
    super(inner);
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length);
    await this.inner.write(offset, data);
    this.entries.push({ kind: "write", offset, data: Uint8Array.from(data) });
  }

  override async flush(): Promise<void> {
    await this.inner.flush();
    this.entries.push({ kind: "flush" });
  }

  /** Forgets the recorded entries and marks. */
  clear(): void {
    this.entries.length = 0;
    this.marks.length = 0;
  }

  /** The log's position: how many entries were recorded so far. */
  get position(): number {
    return this.entries.length;
  }

  /**
   * Records that something completed at the current position — e.g. an fsync returned, so
   * what it synced is in every crash image whose durable prefix reaches the position — and
   * returns the position.
   *
   * @example
   * ```ts ignore
   * await file.sync();
   * const syncedAt = log.mark("fsync /etc/passwd");
   * ```
   */
  mark(label: string): number {
    this.marks.push({ label, position: this.entries.length });
    return this.entries.length;
  }

  /** Number of writes recorded. */
  get writeCount(): number {
    return this.entries.filter((e) => e.kind === "write").length;
  }

  /**
   * The prefix lengths that end just after a flush: the states a crash can leave when the
   * device honours flushes and nothing else.
   */
  flushBoundaries(): number[] {
    const out: number[] = [];
    this.entries.forEach((e, i) => {
      if (e.kind === "flush") out.push(i + 1);
    });
    return out;
  }

  /** A copy of `base` with the first `count` entries applied. */
  replay(base: Uint8Array, count: number = this.entries.length): Uint8Array {
    const img = Uint8Array.from(base);
    const n = Math.min(Math.max(0, count), this.entries.length);
    for (let i = 0; i < n; i++) {
      const e = this.entries[i];
      if (e.kind === "write") img.set(e.data, e.offset);
    }
    return img;
  }
}
