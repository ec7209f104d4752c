/**
 * A device that fails chosen writes and flushes with EIO, for tests of error propagation:
 * the Nth write or flush, every write touching given blocks, or a flush that would make such
 * a write durable. The failures are reported once, as Linux reports a writeback error once:
 * the device works again afterwards, so a caller that retried would be told "success" — which
 * is what the tests must show never happens.
 *
 * @module
 */

import { type BlockDevice, checkRange } from "./block_device.ts";
import { PassThroughDevice } from "./pass_through_device.ts";
import { Errno, Ext4Error } from "../errors.ts";

/** Which operations a {@link FaultDevice} fails. */
export interface FaultPlan {
  /** Fail the write with this number (1: the first write through the device). */
  write?: number;
  /** Fail the flush with this number (1: the first flush through the device). */
  flush?: number;
  /** Fail every write touching one of these blocks (of {@link blockSize} bytes). */
  writesTo?: number[];
  /** Fail a flush when a write since the previous flush touched one of these blocks. */
  flushesOf?: number[];
  /** Block size of the block lists (default 4096). */
  blockSize?: number;
}

/** One failure the device injected. */
export interface InjectedFault {
  readonly kind: "write" | "flush";
  /** The operation's number (writes and flushes are counted apart, from 1). */
  readonly n: number;
  /** Byte offset and length of a failed write. */
  readonly offset?: number;
  readonly length?: number;
}

/**
 * Passes everything through to `inner` except the writes and flushes its plan fails: a failed
 * write writes nothing; a failed flush leaves the writes before it where they are (in memory
 * they are already "on disk") and forgets them, as the kernel forgets a reported error.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { FaultDevice } from "./fault_device.ts";
 * const dev = new FaultDevice(new MemoryBlockDevice(new Uint8Array(8192)), { flush: 1 });
 * await dev.write(0, new Uint8Array([1]));
 * await dev.flush().catch((e) => console.log(e.code, e.errno)); // IO 5
 * await dev.flush(); // the second flush passes
 * console.log(dev.faults.length, dev.flushes); // 1 2
 * ```
 */
export class FaultDevice extends PassThroughDevice {
  /** What fails; replaced at any time with {@link plan}. */
  #plan: FaultPlan;
  /** Writes asked of the device so far, failed ones included. */
  writes = 0;
  /** Flushes asked of the device so far, failed ones included. */
  flushes = 0;
  /** The failures injected, in order. */
  readonly faults: InjectedFault[] = [];
  /** True once {@link close} was called. */
  closed = false;
  /** Blocks written since the last flush (for `flushesOf`). */
  #unflushed = new Set<number>();

  /** Fails what `plan` says of the operations passed to `inner`. */
  constructor(inner: BlockDevice, plan: FaultPlan = {}) {
    super(inner);
    this.#plan = plan;
  }

  /** Sets what fails from now on (the counts keep running). */
  plan(plan: FaultPlan): void {
    this.#plan = plan;
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length);
    const n = ++this.writes;
    const bs = this.#plan.blockSize ?? 4096;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + Math.max(1, data.length) - 1) / bs);
    const touches = (list?: number[]) => list?.some((b) => b >= first && b <= last) ?? false;
    if (this.#plan.write === n || touches(this.#plan.writesTo)) {
      this.faults.push({ kind: "write", n, offset, length: data.length });
      throw new Ext4Error("IO", `injected fault: write ${n} at ${offset}: Input/output error`, {
        errno: Errno.EIO,
      });
    }
    await this.inner.write(offset, data);
    for (let b = first; b <= last; b++) this.#unflushed.add(b);
  }

  override async flush(): Promise<void> {
    const n = ++this.flushes;
    const pending = this.#unflushed;
    this.#unflushed = new Set();
    if (this.#plan.flush === n || (this.#plan.flushesOf?.some((b) => pending.has(b)) ?? false)) {
      this.faults.push({ kind: "flush", n });
      throw new Ext4Error("IO", `injected fault: flush ${n}: Input/output error`, {
        errno: Errno.EIO,
      });
    }
    await this.inner.flush();
  }

  override close(): Promise<void> {
    this.closed = true;
    return this.inner.close();
  }
}
