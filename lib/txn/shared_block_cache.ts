/**
 * The block cache of a writable `Ext4`: one {@link BlockCache} serves the reader's metadata
 * reads and the transactions, and tells its owner the moment a transaction has ended, so that
 * caches derived from blocks (decoded inodes, block maps, lookups, xattrs) are dropped in the
 * same synchronous step that makes the committed images visible — no reader can see new
 * blocks through old decoded structures, or old blocks after the commit.
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import {
  BlockCache,
  type BlockCacheOptions,
  type CommitBatch,
  type CommitSink,
  InPlaceCommitSink,
  type Transaction,
} from "./transaction.ts";

/**
 * Called when a transaction ends: with its batch once committed (the cache already holds
 * the new images), with `null` after a failed commit (the cache was emptied).
 */
export type CommitListener = (batch: CommitBatch | null) => void;

/** True when a commit changes nothing (a transaction that only read). */
function isEmpty(batch: CommitBatch): boolean {
  return batch.data.length === 0 && batch.metadata.length === 0 && batch.revoked.length === 0 &&
    !batch.patches?.length;
}

/**
 * A {@link BlockCache} that reports every commit to a listener. Transactions that changed
 * nothing (an open of an existing file, a close that frees nothing) are not sent to the sink:
 * they cost no device flush.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../block/block_device.ts";
 * import { SharedBlockCache } from "./shared_block_cache.ts";
 * const seen: number[] = [];
 * const cache = new SharedBlockCache(new MemoryBlockDevice(new Uint8Array(8192)), 1024, {}, (b) => {
 *   for (const m of b?.metadata ?? []) seen.push(m.block);
 * });
 * const tx = cache.begin();
 * (await tx.getWritable(3))[0] = 1;
 * await tx.commit();
 * console.log(seen); // [ 3 ]
 * ```
 */
export class SharedBlockCache extends BlockCache {
  #listener: CommitListener;
  /** Where non-empty commits go. */
  #inner: CommitSink;

  /** A cache over `device` whose commits (and failed commits) are reported to `listener`. */
  constructor(
    device: BlockDevice,
    blockSize: number,
    options: BlockCacheOptions,
    listener: CommitListener,
  ) {
    const inner = () => this.#inner;
    super(device, blockSize, {
      ...options,
      sink: {
        commit: (batch) => isEmpty(batch) ? Promise.resolve() : this.#inner.commit(batch),
        check: (batch) => this.#inner.check?.(batch),
        loggedImage: (block) => this.#inner.loggedImage?.(block),
        get epoch() {
          return inner().epoch;
        },
        get acceptsPatches() {
          return inner().acceptsPatches;
        },
        whenDurable: (epoch, fn) => {
          const s = this.#inner;
          if (s.whenDurable) s.whenDurable(epoch, fn);
          else fn();
        },
      },
    });
    this.#inner = options.sink ?? new InPlaceCommitSink(device);
    this.#listener = listener;
  }

  /** Routes later non-empty commits to `sink` (empty ones still cost nothing). */
  override useSink(sink: CommitSink): void {
    if (this.active) {
      throw new Ext4Error("BUSY", "cannot change the commit sink while a transaction is open");
    }
    this.#inner = sink;
  }

  /** @internal Ends `tx` as the base cache does, then tells the listener. */
  override _finish(tx: Transaction, committed: CommitBatch | null, failure: Error | null): void {
    const mine = this.active === tx;
    super._finish(tx, committed, failure);
    if (!mine) return;
    if (failure) this.#listener(null);
    else if (committed) this.#listener(committed);
  }
}
