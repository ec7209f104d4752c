/**
 * The journal's write side: {@link JournalWriter} logs transactions the way jbd2's commit
 * does (fs/jbd2/commit.c), so the kernel, e2fsck and our recovery all replay them — revoke
 * blocks, descriptor blocks with the block copies (escaped), a commit block made durable
 * after everything before it — and keeps the journal superblock's tail (`s_start`,
 * `s_sequence`) as jbd2 does: written before the first commit into an empty journal, moved
 * by a checkpoint, zeroed by a clean close. It knows nothing of ext4: the caller decides
 * what to log, writes the logged blocks home (checkpoint) and says so.
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";
import { crc32Be, encodeCommitBlock } from "./commit_block.ts";
import {
  checkBlockNumber,
  dataBlockChecksum,
  encodeDescriptorBlock,
  escapeBlock,
  tagsPerDescriptor,
  type TagToEncode,
} from "./descriptor_block.ts";
import type { JournalStore } from "./journal_store.ts";
import { encodeRevokeBlock, revokeRecordsPerBlock } from "./revocation_block.ts";
import { JournalIncompat, type JournalSuperblock, parseJournalSuperblock } from "./superblock.ts";

/** One block to log: its home block number and the block image the transaction gives it. */
export interface LogBlock {
  /** The filesystem block the logged image replays to. */
  readonly block: number;
  /**
   * One block image (the block size). {@link JournalWriter.writeTransaction} copies it when
   * called (jbd2's frozen copy): the caller may change it at once.
   */
  readonly bytes: Uint8Array;
}

/** What one transaction logs (new block images) and revokes (freed metadata blocks). */
export interface LogTransaction {
  /** The blocks to log, each once. */
  readonly blocks: readonly LogBlock[];
  /** Filesystem blocks whose earlier logged copies must not be replayed (freed metadata). */
  readonly revoked: readonly number[];
}

/** Options of {@link JournalWriter.open}. */
export interface JournalWriterOptions {
  /** The clock for commit times, in ms since the epoch (default `Date.now`). */
  now?: () => number;
}

/** The smallest transaction: one descriptor, one block, the commit block. */
const MIN_TRANSACTION_BLOCKS = 3;

/**
 * Writes transactions into a journal that holds no work to recover, and moves its tail.
 * Calls are serialized; a failed device write or flush fails the writer for good (the
 * journal's state on disk is then unknown to it; recovery sorts it out).
 *
 * @example
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * import { JournalWriter } from "./journal_writer.ts";
 * import { recoverJournal } from "./recovery.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", "-b", "1024", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store } = await locateJournal(device, await readSuperblock(device));
 * const writer = await JournalWriter.open(store);
 * const tid = await writer.writeTransaction({
 *   blocks: [{ block: 2000, bytes: new Uint8Array(1024).fill(7) }],
 *   revoked: [],
 * });
 * const plan = await recoverJournal(store, writer.superblock);
 * console.log(tid, plan.writes.map((w) => w.target)); // 1 [ 2000 ]
 * await Deno.remove(img);
 * ```
 */
export class JournalWriter {
  /** The journal superblock as the writer keeps it (what it last wrote, or will write). */
  readonly superblock: JournalSuperblock;
  readonly #store: JournalStore;
  /** Journal block 0 as read: the superblock's 1024 bytes are a view into it. */
  readonly #block0: Uint8Array;
  readonly #now: () => number;
  readonly #first: number;
  readonly #logSize: number;
  readonly #maxTransaction: number;
  /** Next log block to write. */
  #head: number;
  /** Log blocks taken by committed transactions not yet declared checkpointed. */
  #used = 0;
  #nextSequence: number;
  /** True while `s_start` is 0 on disk: the next commit writes the superblock first. */
  #emptyOnDisk: boolean;
  /** The error that failed the writer: every later call rejects with it. */
  #failure?: Error;
  /** Calls run one at a time, in order. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    store: JournalStore,
    block0: Uint8Array,
    jsb: JournalSuperblock,
    now: () => number,
  ) {
    this.#store = store;
    this.#block0 = block0;
    this.superblock = jsb;
    this.#now = now;
    this.#first = jsb.first;
    this.#logSize = jsb.last - jsb.first;
    this.#maxTransaction = Math.floor(Math.min(store.blockCount, jsb.maxLen) / 4);
    this.#head = jsb.first;
    this.#nextSequence = jsb.sequence;
    this.#emptyOnDisk = true;
  }

  /**
   * Opens the log of `store` for writing. Refuses (`UNSUPPORTED`, nothing written) a journal
   * that needs recovery (`s_start` ≠ 0: replay it first), one with unknown incompat
   * features, a fast-commit journal, and one too small for a transaction; a journal
   * superblock the kernel would refuse is `CORRUPT`. The log starts at `s_first` with
   * transaction `s_sequence`, as jbd2 starts after loading an empty journal.
   *
   * @example
   * ```ts ignore
   * const writer = await JournalWriter.open(store, { now: () => 1e12 });
   * ```
   */
  static async open(
    store: JournalStore,
    options: JournalWriterOptions = {},
  ): Promise<JournalWriter> {
    const block0 = await store.readBlock(0);
    const jsb = parseJournalSuperblock(block0, {
      blockSize: store.blockSize,
      totalBlocks: store.blockCount,
    });
    const refuse = (why: string): never => {
      throw new Ext4Error("UNSUPPORTED", `cannot write the journal (${store.description}): ${why}`);
    };
    if (jsb.start !== 0) {
      refuse(`it needs recovery (s_start ${jsb.start}): replay it first`);
    }
    if (jsb.has(JournalIncompat.FAST_COMMIT)) {
      refuse("fast_commit journals are not written by ext4ts");
    }
    const writer = new JournalWriter(store, block0, jsb, options.now ?? Date.now);
    const smallest = writer.blocksNeeded(1, 0);
    if (writer.maxTransactionBlocks < smallest || writer.#logSize < MIN_TRANSACTION_BLOCKS) {
      refuse(
        `a journal of ${jsb.maxLen} blocks is too small for a transaction of ${smallest} blocks`,
      );
    }
    return writer;
  }

  /**
   * Journal blocks a transaction with `blocks` logged blocks and `revoked` revokes takes:
   * revoke blocks, descriptor blocks, the copies and the commit block (0 when empty).
   */
  blocksNeeded(blocks: number, revoked: number): number {
    if (blocks === 0 && revoked === 0) return 0;
    const jsb = this.superblock;
    return Math.ceil(revoked / revokeRecordsPerBlock(jsb)) +
      Math.ceil(blocks / tagsPerDescriptor(jsb)) + blocks + 1;
  }

  /**
   * The most journal blocks one transaction may take: a quarter of the journal, jbd2's
   * `j_max_transaction_buffers`.
   */
  get maxTransactionBlocks(): number {
    return this.#maxTransaction;
  }

  /** Log blocks that can be written before the tail must move (a checkpoint). */
  get freeBlocks(): number {
    return this.#logSize - this.#used;
  }

  /** The sequence number (tid) the next transaction gets; wraps at 2^32 (tid.ts). */
  get nextSequence(): number {
    return this.#nextSequence;
  }

  /** True while committed transactions are in the log that have not been declared checkpointed. */
  get hasUncheckpointed(): boolean {
    return this.#used > 0;
  }

  /**
   * Writes one transaction and makes it durable; resolves with its sequence once the commit
   * block is durable. Into an empty journal the superblock goes first, pointing at this
   * transaction (jbd2 after JBD2_FLUSHED); then revoke blocks, descriptor blocks and the
   * block copies; a flush; the commit block; a flush. Refuses before writing anything a
   * transaction larger than {@link maxTransactionBlocks} or {@link freeBlocks} (`NO_SPACE`),
   * a block logged twice or a bad block number (`INVALID`). A block both logged and revoked
   * is logged, not revoked (jbd2 cancels the revoke of a block a transaction logs again). An
   * empty transaction writes nothing and resolves with the last committed sequence. The
   * first revoke gives a v2 journal the revoke feature (written with the transaction). With
   * an external journal the caller flushes the filesystem device first (ordered data).
   *
   * @example
   * ```ts ignore
   * const tid = await writer.writeTransaction({ blocks: [{ block: 12, bytes }], revoked: [40] });
   * ```
   *
   * The blocks are copied first: the caller's buffers may change before the queue reaches this
   * transaction. A caller whose images never change again (committed block images) says so
   * with `unchanging`, and they are written as they are (a 4 KiB copy less per block).
   */
  writeTransaction(tx: LogTransaction, options: { unchanging?: boolean } = {}): Promise<number> {
    const frozen: LogTransaction = {
      blocks: options.unchanging
        ? [...tx.blocks]
        : tx.blocks.map((b) => ({ block: b.block, bytes: b.bytes.slice() })),
      revoked: [...tx.revoked],
    };
    return this.#serialized(() => this.#writeTransaction(frozen));
  }

  /**
   * Declares every committed transaction checkpointed: the caller wrote the logged blocks
   * home and flushed. The tail moves to the head: `s_start` = head, `s_sequence` =
   * {@link nextSequence}, written and flushed. Nothing is written when nothing is logged.
   *
   * @example
   * ```ts ignore
   * for (const b of logged) await device.write(b.block * bs, b.bytes);
   * await device.flush();
   * await writer.checkpointed();
   * ```
   */
  checkpointed(): Promise<void> {
    return this.#serialized(async () => {
      if (this.#used === 0) return;
      await this.#writeSuperblock(this.#head, this.#nextSequence, true);
      this.#used = 0;
    });
  }

  /**
   * Marks the journal empty for a clean close, after {@link checkpointed}: `s_start` = 0,
   * `s_sequence` = {@link nextSequence} (jbd2_mark_journal_empty()), written and flushed.
   * Idempotent; refuses (`INVALID`) while transactions are not checkpointed — unless
   * `homeFlushed` says the caller has written every logged block home and flushed: then the
   * tail goes straight to empty in one superblock write instead of two (a crash before it
   * replays blocks that are already home, which changes nothing).
   *
   * @example
   * ```ts ignore
   * await writer.checkpointed();
   * await writer.markEmpty();
   * ```
   */
  markEmpty(options: { homeFlushed?: boolean } = {}): Promise<void> {
    return this.#serialized(async () => {
      if (this.#used > 0 && !options.homeFlushed) {
        throw new Ext4Error(
          "INVALID",
          "the journal holds transactions not checkpointed: it cannot be marked empty",
        );
      }
      this.#used = 0;
      if (this.#emptyOnDisk && this.superblock.sequence === this.#nextSequence) return;
      // s_head: where the log went on (kernels since 6.3 may continue there, JBD2_CYCLE_RECORD).
      if (this.superblock.isV2) this.superblock.head = this.#head;
      await this.#writeSuperblock(0, this.#nextSequence, true);
      this.#emptyOnDisk = true;
    });
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#failure) {
        throw new Ext4Error(
          "IO",
          `the journal writer failed earlier and writes nothing more: ${this.#failure.message}`,
          { cause: this.#failure },
        );
      }
      return fn();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Runs device I/O; a failure fails the writer for good. */
  async #io(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.#failure = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
  }

  async #writeSuperblock(start: number, sequence: number, flush: boolean): Promise<void> {
    const jsb = this.superblock;
    jsb.start = start;
    jsb.sequence = sequence;
    await this.#io(async () => {
      await this.#store.writeBlock(0, jsb.encode(this.#block0));
      if (flush) await this.#store.flush();
    });
  }

  /**
   * Writes `blocks` at the head onwards: in one call per stretch that does not wrap when the
   * store can write several blocks at once (the descriptor and its copies in one device write).
   */
  async #writeLog(blocks: Uint8Array[]): Promise<void> {
    const store = this.#store;
    if (!store.writeBlocks) {
      for (let i = 0; i < blocks.length; i++) await store.writeBlock(this.#logBlock(i), blocks[i]);
      return;
    }
    for (let i = 0; i < blocks.length;) {
      const at = this.#logBlock(i);
      // Up to the end of the log: past it the log wraps to s_first.
      const n = Math.min(blocks.length - i, this.#first + this.#logSize - at);
      await store.writeBlocks(at, blocks.slice(i, i + n));
      i += n;
    }
  }

  /** The log block `n` blocks after the head, wrapping from the end of the log to s_first. */
  #logBlock(n: number): number {
    return this.#first + (this.#head - this.#first + n) % this.#logSize;
  }

  async #writeTransaction(tx: LogTransaction): Promise<number> {
    const jsb = this.superblock;
    const logged = new Set<number>();
    for (const b of tx.blocks) {
      checkBlockNumber(b.block, jsb, "logged");
      if (logged.has(b.block)) {
        throw new Ext4Error("INVALID", `block ${b.block} is logged twice in one transaction`);
      }
      if (b.bytes.length !== jsb.blockSize) {
        throw new Ext4Error(
          "INVALID",
          `block ${b.block}: ${b.bytes.length} bytes logged, the block size is ${jsb.blockSize}`,
        );
      }
      logged.add(b.block);
    }
    const revoked = [...new Set(tx.revoked)].filter((r) => !logged.has(r));
    for (const r of revoked) checkBlockNumber(r, jsb, "revoked");
    const need = this.blocksNeeded(tx.blocks.length, revoked.length);
    if (need === 0) return (this.#nextSequence - 1) >>> 0;
    if (need > this.#maxTransaction) {
      throw new Ext4Error(
        "NO_SPACE",
        `a transaction of ${need} journal blocks exceeds the largest the journal takes (${this.#maxTransaction})`,
      );
    }
    if (need > this.freeBlocks) {
      throw new Ext4Error(
        "NO_SPACE",
        `the journal has ${this.freeBlocks} free blocks, the transaction needs ${need}: checkpoint first`,
      );
    }

    const sequence = this.#nextSequence;
    const out: Uint8Array[] = [];
    const perRevoke = revokeRecordsPerBlock(jsb);
    for (let i = 0; i < revoked.length; i += perRevoke) {
      out.push(encodeRevokeBlock(revoked.slice(i, i + perRevoke), sequence, jsb));
    }
    const perDescriptor = tagsPerDescriptor(jsb);
    const seed = jsb.hasCsumV2or3 ? jsb.csumSeed : 0;
    let crc32Sum = 0xffffffff;
    for (let i = 0; i < tx.blocks.length; i += perDescriptor) {
      const copies: Uint8Array[] = [];
      const tags: TagToEncode[] = [];
      for (const b of tx.blocks.slice(i, i + perDescriptor)) {
        const { copy, escaped } = escapeBlock(b.bytes);
        copies.push(copy);
        tags.push({
          target: b.block,
          escaped,
          checksum: seed ? dataBlockChecksum(copy, sequence, seed) : 0,
        });
      }
      const descriptor = encodeDescriptorBlock(tags, sequence, jsb);
      out.push(descriptor, ...copies);
      // Checksum v1 covers each descriptor block and its copies, not the revoke blocks.
      if (jsb.hasCsumV1) {
        crc32Sum = crc32Be(crc32Sum, descriptor);
        for (const c of copies) crc32Sum = crc32Be(crc32Sum, c);
      }
    }
    const ms = this.#now();
    const commit = encodeCommitBlock(sequence, {
      commitSec: Math.floor(ms / 1000),
      commitNsec: Math.floor(ms % 1000) * 1e6,
      crc32Sum,
    }, jsb);

    // jbd2_journal_revoke() gives the journal the revoke feature before its first revoke.
    const addRevoke = revoked.length > 0 && jsb.isV2 && !jsb.hasRevoke;
    if (addRevoke) jsb.featureIncompat |= JournalIncompat.REVOKE;
    if (this.#emptyOnDisk) {
      // jbd2 after JBD2_FLUSHED: the tail points at this transaction before its blocks go
      // out; the flush below makes both durable together.
      await this.#writeSuperblock(this.#logBlock(0), sequence, false);
      this.#emptyOnDisk = false;
    } else if (addRevoke) {
      await this.#writeSuperblock(jsb.start, jsb.sequence, false); // the tail unchanged
    }
    await this.#io(async () => {
      await this.#writeLog(out);
      await this.#store.flush();
      await this.#store.writeBlock(this.#logBlock(out.length), commit);
      await this.#store.flush();
    });
    this.#head = this.#logBlock(need);
    this.#used += need;
    this.#nextSequence = (sequence + 1) >>> 0;
    return sequence;
  }
}
