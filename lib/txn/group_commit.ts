/**
 * Group commit: many transactions join one running compound transaction that reaches the
 * device as one commit — on {@link GroupCommitSink.sync} (fsync, syncfs, close), on a timer
 * (the kernel's `commit=` interval, 5 s by default) and when it reaches the journal's
 * per-transaction limit — instead of two device flushes per operation. Each joining
 * transaction still commits or aborts as a unit in memory (its images replace the compound's);
 * what the compound holds is visible to every reader at once, and durable only after the
 * compound's commit.
 *
 * Ordered data: a joining transaction's file data is written in place at once (no committed
 * metadata points at newly allocated blocks yet; overwrites in place are what ext4's
 * `data=ordered` does too) and the compound's commit flushes before its commit block. Blocks
 * freed by a joining transaction stay unusable until the compound that frees them is durable
 * ({@link GroupCommitSink.whenDurable}, lib/ext4/alloc.ts), so a crash never leaves an old
 * owner pointing at a new owner's data.
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import type { CommitBatch, CommitSink } from "./transaction.ts";

/** Options for {@link GroupCommitSink}. */
export interface GroupCommitOptions {
  /** Longest a joined change waits before the compound commits, in ms (default 5000). */
  intervalMs?: number;
  /**
   * Metadata blocks (revokes counted as blocks) past which the compound commits before taking
   * more (default: unbounded).
   */
  maxBlocks?: number;
  /**
   * Called with the error when a timed commit fails (no caller is waiting for it): the owner
   * marks the filesystem failed. The error is also what every later commit rejects with.
   */
  onError?: (error: unknown) => void;
}

/** The metadata and revokes joined since the last compound commit. */
interface Compound {
  metadata: Map<number, Uint8Array>;
  revoked: Set<number>;
  /** Data was written in place for it: its commit must flush even without metadata. */
  data: boolean;
  /** Run once the compound is durable. */
  durable: (() => void)[];
}

function emptyCompound(): Compound {
  return { metadata: new Map(), revoked: new Set(), data: false, durable: [] };
}

/**
 * A {@link CommitSink} that gathers commits into one compound committed through `inner`
 * (the journal, or in place).
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../block/block_device.ts";
 * import { BlockCache, InPlaceCommitSink } from "./transaction.ts";
 * import { GroupCommitSink } from "./group_commit.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(8192));
 * const sink = new GroupCommitSink(dev, new InPlaceCommitSink(dev), { intervalMs: 60_000 });
 * const cache = new BlockCache(dev, 1024, { sink });
 * const tx = cache.begin();
 * (await tx.getWritable(3))[0] = 9;
 * await tx.commit();
 * console.log(dev.bytes[3 * 1024], (await cache.read(3))[0]); // 0 9: visible, not yet written
 * await sink.close();
 * console.log(dev.bytes[3 * 1024]); // 9
 * ```
 */
export class GroupCommitSink implements CommitSink {
  /** The device data is written to. */
  readonly device: BlockDevice;
  /** Where compounds are committed. */
  readonly inner: CommitSink;
  /** The timer interval in ms. */
  readonly intervalMs: number;
  /** Metadata blocks at which a compound commits before taking more. */
  readonly maxBlocks: number;
  #onError?: (error: unknown) => void;
  #running: Compound = emptyCompound();
  /** The compound being committed (its images still served until `inner` holds them). */
  #committing: Compound | null = null;
  /** The last compound commit (or close) under way: commits run one after another. */
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #failure: unknown = null;
  #closed = false;
  /** The block size of the batches seen (for a compound of revokes alone). */
  #blockSizeSeen = 1024;
  /** Patches are put into the compound's images as a batch joins (see {@link commit}). */
  readonly acceptsPatches = true;

  /** Gathers commits for `inner`, writing their data to `device` at once. */
  constructor(device: BlockDevice, inner: CommitSink, options: GroupCommitOptions = {}) {
    this.device = device;
    this.inner = inner;
    this.intervalMs = Math.max(1, options.intervalMs ?? 5000);
    this.maxBlocks = Math.max(1, options.maxBlocks ?? Number.POSITIVE_INFINITY);
    this.#onError = options.onError;
  }

  /** The token of the compound new commits join: see {@link whenDurable}. */
  get epoch(): object {
    return this.#running;
  }

  /**
   * Runs `fn` once the compound `epoch` named is durable (at once when it already is). Never
   * runs it when that commit fails (the filesystem then accepts no more writes).
   */
  whenDurable(epoch: object, fn: () => void): void {
    if (epoch === this.#running) this.#running.durable.push(fn);
    else if (epoch === this.#committing) this.#committing.durable.push(fn);
    else fn();
  }

  /** Refuses what `inner` would refuse for this batch alone. */
  check(batch: CommitBatch): void {
    this.#throwIfFailed();
    this.inner.check?.(batch);
  }

  /** The compound's image of `block`, else what `inner` has not written home. */
  loggedImage(block: number): Uint8Array | undefined {
    return this.#running.metadata.get(block) ?? this.#committing?.metadata.get(block) ??
      this.inner.loggedImage?.(block);
  }

  /**
   * Joins `batch` to the running compound: its data written in place now, its metadata and
   * revokes merged (a later image of a block replaces an earlier one; a block logged again
   * after being revoked is no longer revoked, as jbd2 cancels the revoke). Commits the
   * compound first when `batch` would take it past {@link maxBlocks}.
   */
  async commit(batch: CommitBatch): Promise<void> {
    this.#throwIfFailed();
    if (this.#closed) throw new Ext4Error("INVALID", "the filesystem's commits were closed");
    // Revokes counted as blocks: conservative (a revoke record takes 4 or 8 bytes of a block).
    const c0 = this.#running;
    const size = c0.metadata.size + c0.revoked.size + batch.metadata.length +
      batch.revoked.length + (batch.patches?.length ?? 0);
    if (size > this.maxBlocks && c0.metadata.size + c0.revoked.size > 0) {
      await this.sync();
    }
    const bs = batch.blockSize;
    this.#blockSizeSeen = bs;
    for (const d of batch.data) await this.device.write(d.block * bs, d.bytes);
    const c = this.#running;
    if (batch.data.length > 0) c.data = true;
    for (const r of batch.revoked) {
      c.metadata.delete(r);
      c.revoked.add(r);
    }
    for (const m of batch.metadata) {
      c.revoked.delete(m.block);
      c.metadata.set(m.block, m.bytes);
    }
    // Patched in place when the running compound already holds its own image of the block
    // (nothing else holds that image but the cache: a committing compound's and the journal's
    // images are other objects, and readers of these blocks — descriptors, the superblock,
    // inode records — copy what they decode before any await); otherwise on a copy of the
    // current image.
    for (const p of batch.patches ?? []) {
      let image = c.metadata.get(p.block);
      if (!image) {
        image = p.base.slice();
        c.revoked.delete(p.block);
        c.metadata.set(p.block, image);
      }
      image.set(p.bytes, p.offset);
      p.image = image;
    }
    if (this.#timer === null && (c.metadata.size > 0 || c.revoked.size > 0 || c.data)) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.sync().catch(() => {/* reported through onError and every later commit */});
      }, this.intervalMs);
    }
  }

  /**
   * Commits the running compound through `inner` and resolves once it is durable (with
   * everything joined before the call): true when that commit ended in a device flush, false
   * when nothing was joined (no commit, no flush). Rejects with the first failure, then and
   * ever after.
   */
  sync(): Promise<boolean> {
    const run = this.#chain.then(async () => {
      this.#throwIfFailed();
      if (this.#timer !== null) {
        clearTimeout(this.#timer);
        this.#timer = null;
      }
      const c = this.#running;
      if (c.metadata.size === 0 && c.revoked.size === 0 && !c.data) {
        for (const fn of c.durable.splice(0)) fn();
        return false;
      }
      this.#running = emptyCompound();
      this.#committing = c;
      try {
        await this.inner.commit({
          blockSize: this.#blockSizeSeen,
          data: [],
          metadata: [...c.metadata].map(([block, bytes]) => ({ block, bytes })),
          revoked: [...c.revoked],
        });
        // A compound of data alone: `inner` had nothing to write, the data still needs a flush.
        if (c.metadata.size === 0 && c.revoked.size === 0) await this.device.flush();
      } catch (e) {
        this.#failure ??= e;
        this.#onError?.(e);
        throw e;
      } finally {
        this.#committing = null;
      }
      for (const fn of c.durable) fn();
      return true;
    });
    this.#chain = run.then(() => {}, () => {});
    return run;
  }

  /** Stops the timer and commits what is running; later commits are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.sync();
    this.#closed = true;
  }

  #throwIfFailed(): void {
    if (this.#failure !== null) {
      const what = this.#failure instanceof Error ? this.#failure.message : String(this.#failure);
      throw new Ext4Error("IO", `an earlier commit failed: ${what}`, { cause: this.#failure });
    }
  }
}
