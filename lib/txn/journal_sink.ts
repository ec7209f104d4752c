/**
 * Commits through the jbd2 journal (ordered mode, as ext4's default `data=ordered`): a
 * transaction's file data is written in place, its metadata blocks are logged to the journal
 * with revoke records for the metadata it freed, and the commit block is durable before the
 * commit resolves. The logged blocks stay pinned in memory ("logged, not checkpointed") until a
 * checkpoint writes them home and moves the journal's tail: when the log runs short of room,
 * when too many blocks are pinned, and on a clean close. A block newer in the log than at home
 * is never read from home: the block cache asks {@link JournalCommitSink.loggedImage} before
 * the device.
 *
 * A crash at any instant leaves either the previous or the new state of every transaction: the
 * journal's recovery (the kernel's, e2fsck's, ext4ts's) replays what was committed and ignores
 * what was not; data blocks of an uncommitted transaction are in blocks no committed metadata
 * points at (freed blocks are reused only after their freeing transaction is durable,
 * lib/ext4/alloc.ts).
 *
 * @module
 */

import { type BlockDevice, writeBlockRuns } from "../block/block_device.ts";
import { blocksWithin, DEFAULT_CACHE_BYTES } from "../block/cache_budget.ts";
import { Errno, Ext4Error } from "../errors.ts";
import type { JournalWriter } from "../jbd2/journal_writer.ts";
import type { CommitBatch, CommitSink } from "./transaction.ts";

/** Options for {@link JournalCommitSink}. */
export interface JournalCommitSinkOptions {
  /**
   * Most logged blocks held in memory before a checkpoint writes them home: bounds the memory
   * a large journal would otherwise pin. Default: the pinned share of the default cache budget
   * (4 MiB of blocks and their bookkeeping, lib/block/cache_budget.ts); the `Ext4` object
   * passes its own budget's share.
   */
  maxPinnedBlocks?: number;
  /**
   * Run (and awaited) before the first commit writes anything: the owner records in the
   * filesystem's superblock that its journal may now hold transactions (needs_recovery), so no
   * commit — whoever makes it — reaches the log before that mark is durable.
   */
  beforeFirstCommit?: () => Promise<void>;
}

/**
 * A {@link CommitSink} that writes every commit through a jbd2 {@link JournalWriter}.
 *
 * @example
 * ```ts ignore
 * const { store } = await locateJournal(device, sb);
 * const sink = new JournalCommitSink(device, await JournalWriter.open(store));
 * const cache = new BlockCache(device, sb.blockSize, { sink });
 * // … transactions …
 * await sink.close(); // checkpoint, journal marked empty
 * ```
 */
export class JournalCommitSink implements CommitSink {
  /** The filesystem's device: data and checkpoints are written to it. */
  readonly device: BlockDevice;
  /** The journal the metadata is logged to. */
  readonly journal: JournalWriter;
  /** Most blocks pinned before a checkpoint. */
  readonly maxPinnedBlocks: number;
  /** Home block → its newest committed image not yet written home. */
  #logged = new Map<number, Uint8Array>();
  #closed = false;
  #beforeFirstCommit: (() => Promise<void>) | null;

  /** A sink logging to `journal` and writing data and checkpoints to `device`. */
  constructor(
    device: BlockDevice,
    journal: JournalWriter,
    options: JournalCommitSinkOptions = {},
  ) {
    this.device = device;
    this.journal = journal;
    this.maxPinnedBlocks = Math.max(
      16,
      options.maxPinnedBlocks ??
        blocksWithin(DEFAULT_CACHE_BYTES / 4, journal.superblock.blockSize),
    );
    this.#beforeFirstCommit = options.beforeFirstCommit ?? null;
  }

  /** The newest committed image of `block` while it is logged but not yet home. */
  loggedImage(block: number): Uint8Array | undefined {
    return this.#logged.get(block);
  }

  /** Number of logged blocks not yet written home. */
  get pinnedBlocks(): number {
    return this.#logged.size;
  }

  /**
   * Most metadata blocks one transaction may change (with room for its revoke records):
   * writers that build long transactions commit before reaching it.
   */
  get transactionBlockLimit(): number {
    // blocksNeeded grows by at least one per logged block; leave a quarter for descriptors,
    // revoke blocks and the commit block.
    return Math.max(1, Math.floor(this.journal.maxTransactionBlocks * 3 / 4));
  }

  /**
   * Refuses, before anything is written, a transaction too large for the journal
   * (ENOSPC, as jbd2 refuses a handle asking for more credits than a transaction may hold).
   */
  check(batch: CommitBatch): void {
    // Blocks only patched (group commit) are logged as whole blocks too; a transaction lists
    // the patches of one block together.
    let blocks = batch.metadata.length;
    const patches = batch.patches ?? [];
    for (let i = 0; i < patches.length; i++) {
      if (i === 0 || patches[i].block !== patches[i - 1].block) blocks++;
    }
    const need = this.journal.blocksNeeded(blocks, batch.revoked.length);
    if (need > this.journal.maxTransactionBlocks) {
      throw new Ext4Error(
        "NO_SPACE",
        `a transaction of ${blocks} metadata blocks and ${batch.revoked.length} ` +
          `revoked blocks needs ${need} journal blocks; the journal takes at most ` +
          `${this.journal.maxTransactionBlocks} per transaction`,
        { errno: Errno.ENOSPC },
      );
    }
  }

  /**
   * Ordered commit: the data in place, then the journal writer logs the metadata and revokes
   * (its flush before the commit block covers the data too) and resolves once the commit block
   * is durable. Makes room first (a checkpoint) when the log or the pinned set is full.
   */
  async commit(batch: CommitBatch): Promise<void> {
    if (this.#closed) throw new Ext4Error("INVALID", "the journal was closed");
    const empty = batch.metadata.length === 0 && batch.revoked.length === 0 &&
      batch.data.length === 0;
    if (this.#beforeFirstCommit && !empty) {
      await this.#beforeFirstCommit();
      this.#beforeFirstCommit = null;
    }
    const bs = batch.blockSize;
    if (batch.metadata.length === 0 && batch.revoked.length === 0) {
      if (batch.data.length === 0) return;
      for (const d of batch.data) await this.device.write(d.block * bs, d.bytes);
      await this.device.flush();
      return;
    }
    this.check(batch);
    const need = this.journal.blocksNeeded(batch.metadata.length, batch.revoked.length);
    if (
      need > this.journal.freeBlocks ||
      this.#logged.size + batch.metadata.length > this.maxPinnedBlocks
    ) {
      await this.checkpoint();
    }
    for (const d of batch.data) {
      await this.device.write(d.block * bs, d.bytes);
      // Written home now, newer than any logged image (cannot be one: freed metadata is
      // revoked and reused only after that commit, but stay safe).
      for (let i = 0; i < d.bytes.length / bs; i++) this.#logged.delete(d.block + i);
    }
    // Committed images never change again (the checkpoint below writes the same objects home):
    // logged without a copy.
    await this.journal.writeTransaction(
      { blocks: batch.metadata, revoked: batch.revoked },
      { unchanging: true },
    );
    for (const r of batch.revoked) this.#logged.delete(r);
    for (const m of batch.metadata) this.#logged.set(m.block, m.bytes);
  }

  /**
   * Writes every logged block home (in block order, contiguous blocks in one write), flushes,
   * and moves the journal's tail past them. Nothing to do when nothing is logged.
   */
  async checkpoint(): Promise<void> {
    if (!(await this.#writeHome())) return;
    await this.journal.checkpointed();
  }

  /** Writes the logged blocks home and flushes; false when nothing needed it. */
  async #writeHome(): Promise<boolean> {
    if (this.#logged.size === 0 && !this.journal.hasUncheckpointed) return false;
    const blocks = [...this.#logged].sort((a, b) => a[0] - b[0]);
    await writeBlockRuns(
      this.device,
      this.journal.superblock.blockSize,
      blocks.map(([block, bytes]) => ({ block, bytes })),
    );
    await this.device.flush();
    this.#logged.clear();
    return true;
  }

  /**
   * A clean close of the journal (jbd2's destroy): a full checkpoint, then the journal marked
   * empty — one superblock write for both. Later commits are refused.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#writeHome();
    await this.journal.markEmpty({ homeFlushed: true });
    this.#closed = true;
  }
}
