/**
 * The write path's entry point: opens a filesystem on a device for writing (superblock,
 * descriptors, block cache, allocator; refusing what cannot be written) and runs operations
 * in transactions that commit as one unit or leave nothing behind.
 *
 * @module
 */

import { Allocator } from "./alloc.ts";
import type { BlockDevice } from "../block/block_device.ts";
import { CountingDevice } from "../block/counting_device.ts";
import { Ext4Error } from "../errors.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import { markClean, markWriting } from "./mount_state.ts";
import { locateJournal } from "./journal.ts";
import { Compat, Incompat, RoCompat } from "../ondisk/features.ts";
import { JBD2_CRC32C_CHKSUM, JournalCompat, JournalIncompat } from "../jbd2/superblock.ts";
import { JournalWriter } from "../jbd2/journal_writer.ts";
import { JournalCommitSink } from "../txn/journal_sink.ts";
import { GroupCommitSink } from "../txn/group_commit.ts";
import { type MmpClaimOptions, MmpGuard } from "./mmp_guard.ts";
import { openMetadata } from "./super.ts";
import { type Superblock, SUPERBLOCK_OFFSET } from "../ondisk/superblock.ts";
import {
  BlockCache,
  type CommitSink,
  InPlaceCommitSink,
  type Transaction,
} from "../txn/transaction.ts";
import type { OpContext } from "./context.ts";

/** Options for {@link Ext4Writer.open}. */
export interface WriterOptions {
  /** Clean blocks kept in the cache (default 4096). */
  cacheCapacity?: number;
  /** Where commits go (default: in place). */
  sink?: CommitSink;
  /**
   * Write a filesystem whose superblock records errors, or (without a journal) that was not
   * cleanly unmounted; refused otherwise (see lib/ext4/super.ts). Damaged structures are refused
   * all the same.
   */
  force?: boolean;
}

/**
 * A filesystem opened for writing.
 *
 * @example
 * ```ts ignore
 * const w = await Ext4Writer.open(device);
 * await w.transaction((ctx) => makeDirectory(ctx, 2, "etc", { perm: 0o755 }));
 * ```
 */
export class Ext4Writer {
  /** The device the filesystem is written to. */
  readonly device: BlockDevice;
  /** The superblock, kept up to date in memory and written with each commit that changes it. */
  readonly sb: Superblock;
  /** The group descriptor table, kept up to date like the superblock. */
  readonly gdt: GroupDescriptorTable;
  /** The block cache every transaction goes through. */
  readonly cache: BlockCache;
  /** The block and inode allocator. */
  readonly alloc: Allocator;

  /** The last queued transaction's settlement: transactions run one after another. */
  #queue: Promise<unknown> = Promise.resolve();
  /** While {@link group} runs: the one transaction every step joins, and what follows a step. */
  #group: { ctx: OpContext; afterStep?: () => void } | null = null;
  /** {@link markWriting} under way or done (once per open). */
  #marking: Promise<void> | null = null;
  /** {@link markWriting} has succeeded: commits need not wait for it. */
  #marked = false;
  /** The superblock state {@link markWriting} found (null before): restored by {@link close}. */
  #foundState: number | null = null;
  /** The journal every commit goes through, once {@link openJournal} found one. */
  #journal: JournalCommitSink | null = null;
  /** The running compound transaction, once {@link startGroupCommit} was called. */
  #grouped: GroupCommitSink | null = null;
  /** The claimed MMP block (mmp filesystems), once {@link claimMmp} ran. */
  #mmp: MmpGuard | null = null;

  private constructor(
    device: BlockDevice,
    sb: Superblock,
    gdt: GroupDescriptorTable,
    cache: BlockCache,
  ) {
    this.device = device;
    this.sb = sb;
    this.gdt = gdt;
    this.cache = cache;
    this.alloc = new Allocator(sb, gdt);
  }

  /**
   * A writer over metadata already read and a cache already made (the `Ext4` object of a
   * writable filesystem shares its superblock, descriptors and block cache with it). The
   * caller has checked that the filesystem can be written (`assertWritable`, and
   * `checkBeforeWrite` of lib/ext4/super.ts).
   *
   * @example
   * ```ts ignore
   * const cache = new BlockCache(device, sb.blockSize);
   * const w = Ext4Writer.attach(device, sb, gdt, cache);
   * ```
   */
  static attach(
    device: BlockDevice,
    sb: Superblock,
    gdt: GroupDescriptorTable,
    cache: BlockCache,
  ): Ext4Writer {
    if (cache.device !== device || cache.blockSize !== sb.blockSize) {
      throw new Ext4Error("INVALID", "the cache does not belong to this device and block size");
    }
    return new Ext4Writer(device, sb, gdt, cache);
  }

  /**
   * Reads the filesystem's metadata under the one open policy (lib/ext4/super.ts
   * `openMetadata`, writable): a read-only device, features ext4ts cannot write, a journal
   * needing recovery and what the kernel's mount-time checks refuse are refused.
   */
  static async open(device: BlockDevice, options: WriterOptions = {}): Promise<Ext4Writer> {
    const { sb, groups: gdt } = await openMetadata(device, {
      readOnly: false,
      force: options.force,
    });
    // The cache writes through a counter: the lifetime writes recorded at close.
    const cache = new BlockCache(new CountingDevice(device), sb.blockSize, {
      capacity: options.cacheCapacity,
      sink: options.sink,
    });
    const w = new Ext4Writer(device, sb, gdt, cache);
    await w.claimMmp();
    if (!options.sink) await w.openJournal();
    return w;
  }

  /**
   * On an mmp filesystem: claims its MMP block before anything is written, as the kernel's
   * mount does (lib/ext4/mmp_guard.ts): BUSY (exit 8) while e2fsck or another node uses it,
   * after waiting out another node's interval when the block says it may be active. Keeps it
   * updated until {@link close}; a block taken over meanwhile fails the writer (no more writes).
   * Does nothing without the feature or when already claimed.
   *
   * @example
   * ```ts ignore
   * await w.claimMmp({ onNotice: console.error });
   * ```
   */
  async claimMmp(options: MmpClaimOptions = {}): Promise<void> {
    if (this.#mmp || !(this.sb.incompat & Incompat.MMP)) return;
    this.#mmp = await MmpGuard.claim(this.cache.device, this.sb, {
      ...options,
      onLost: (e) => {
        this.cache.deviceFailed(e);
        options.onLost?.(e);
      },
    });
  }

  /**
   * Stops updating the MMP block and marks it clean (at close; also after a failure, so a
   * writer that stops never keeps a timer running). Harmless without one, or twice.
   */
  async releaseMmp(): Promise<void> {
    const guard = this.#mmp;
    this.#mmp = null;
    await guard?.stop();
  }

  /**
   * Routes every later commit through the filesystem's jbd2 journal (lib/txn/journal_sink.ts),
   * when it has one: metadata logged, data ordered before the commit block, checkpoints home.
   * Refused (UNSUPPORTED) for a journal ext4ts cannot write — on an external device, with fast
   * commits, with features it does not know — rather than writing such a filesystem unjournaled.
   * Does nothing without `has_journal` (ext2, `^has_journal`: commits stay in place) or when
   * the journal is already open. `maxPinnedBlocks`: most logged blocks kept in memory until a
   * checkpoint writes them home (lib/txn/journal_sink.ts).
   *
   * @example
   * ```ts ignore
   * const w = Ext4Writer.attach(device, sb, gdt, cache);
   * await w.openJournal(); // commits now go through the journal
   * ```
   */
  async openJournal(options: { maxPinnedBlocks?: number } = {}): Promise<void> {
    if (this.#journal || !(this.sb.compat & Compat.HAS_JOURNAL)) return;
    if (this.sb.journalInum === 0) {
      throw new Ext4Error(
        "UNSUPPORTED",
        "the journal is on an external device: writing such a filesystem is not supported " +
          "(ext4ts reads and replays external journals, but does not write them)",
      );
    }
    const { store } = await locateJournal(this.cache.device, this.sb, { groups: this.gdt });
    const journal = await JournalWriter.open(store);
    useKernelJournalFeatures(this.sb, journal);
    // Whatever commits first (an operation, or an error record of lib/ext4/fs_error.ts), the
    // superblock says needs_recovery before the log holds anything.
    const sink = new JournalCommitSink(this.cache.device, journal, {
      maxPinnedBlocks: options.maxPinnedBlocks,
      beforeFirstCommit: () => this.markWriting(),
    });
    this.cache.useSink(sink);
    this.#journal = sink;
  }

  /**
   * Group commit from now on (lib/txn/group_commit.ts): commits join one running compound
   * that reaches the journal (or the device) on {@link flush}, on {@link close}, when it holds
   * what one journal transaction takes, and `intervalMs` after its first change. Call after
   * {@link openJournal}. A timed commit that fails makes the writer fail as a failed commit
   * does.
   *
   * @example
   * ```ts ignore
   * w.startGroupCommit(5000); // as mount -o commit=5
   * ```
   */
  startGroupCommit(intervalMs: number): void {
    if (this.#grouped) return;
    // Compounds go where single commits went: the journal, or in place without one.
    const inner = this.#journal ?? new InPlaceCommitSink(this.cache.device);
    // A compound's images are pinned once logged: at most half the journal's pinned limit.
    const limit = Math.min(
      this.transactionBlockLimit,
      Math.floor((this.#journal?.maxPinnedBlocks ?? Number.POSITIVE_INFINITY) / 2),
    );
    const grouped = new GroupCommitSink(this.cache.device, inner, {
      intervalMs,
      maxBlocks: Number.isFinite(limit) ? limit : this.cache.capacity / 2,
      onError: (e) => this.cache.deviceFailed(e),
    });
    this.cache.useSink(grouped);
    this.#grouped = grouped;
  }

  /** True when commits go through the journal ({@link openJournal}). */
  get journaled(): boolean {
    return this.#journal !== null;
  }

  /**
   * Most metadata blocks one transaction may change before it must commit: what the journal
   * takes per transaction (unbounded without a journal). Writers that build long transactions
   * (`put`, `rm -r`) commit before reaching it.
   */
  get transactionBlockLimit(): number {
    return this.#journal?.transactionBlockLimit ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Commits `tx` (a transaction of this writer's cache), first recording in the superblock
   * that the filesystem is being written when `tx` is this open's first commit that changes
   * anything ({@link markWriting}). Every commit of a writer goes through here.
   *
   * @example
   * ```ts ignore
   * const tx = w.cache.begin();
   * await makeDirectory({ tx, alloc: w.alloc, sb: w.sb, gdt: w.gdt }, 2, "etc", { perm: 0o755 });
   * await w.commit(tx);
   * ```
   */
  commit(tx: Transaction): Promise<void> {
    // Once marked, straight to the commit: no extra promise and turn per transaction.
    if ((tx.metadataBlocks > 0 || tx.dataBlocks > 0) && !this.#marked) {
      return this.markWriting().then(() => tx.commit());
    }
    return tx.commit();
  }

  /**
   * Records in the superblock, once per open, that the filesystem is being written
   * (lib/ext4/mount_state.ts `markWriting`: mount count + 1, mount time, `VALID_FS` cleared
   * without a journal), written straight to the device and flushed. {@link commit} calls it
   * before the first commit that changes anything, so an open that writes nothing leaves the
   * image as it was; a failure to write it fails that commit (and every later one).
   *
   * @example
   * ```ts ignore
   * await w.markWriting(); // dumpe2fs: "Filesystem state: not clean" (no journal)
   * ```
   */
  markWriting(): Promise<void> {
    this.#marking ??= (async () => {
      try {
        this.#foundState = await markWriting(this.cache.device, this.sb);
        this.#marked = true;
      } catch (e) {
        this.cache.deviceFailed(e); // no later write may claim success
        throw e;
      }
      this.cache.invalidate(Math.floor(SUPERBLOCK_OFFSET / this.sb.blockSize));
    })();
    return this.#marking;
  }

  /**
   * Finishes writing (the kernel's clean unmount): waits for the transactions under way, then
   * records a clean close in the superblock (`VALID_FS` as it was at open without a journal,
   * write time, lifetime writes; lib/ext4/mount_state.ts `markClean`), written and flushed.
   * Writes nothing when this open wrote nothing, a second time, or when a commit failed or a
   * transaction is still open (the filesystem then stays "not clean" for e2fsck). The device
   * stays open (its owner closes it).
   *
   * @example
   * ```ts ignore
   * const w = await Ext4Writer.open(device);
   * await w.transaction((ctx) => makeDirectory(ctx, 2, "etc", { perm: 0o755 }));
   * await w.close();
   * ```
   */
  close(): Promise<void> {
    const run = this.#queue.then(() => this.#closeClean()).finally(() => this.releaseMmp());
    this.#queue = run.catch(() => {});
    return run;
  }

  async #closeClean(): Promise<void> {
    const found = this.#foundState;
    if (found === null) return;
    try {
      // Refused after a failed commit (the device state is unknown) or while one is open.
      this.cache.begin().abort();
    } catch {
      return;
    }
    this.#foundState = null;
    const d = this.cache.device;
    try {
      // Everything committed, home and the journal marked empty before the superblock says
      // clean.
      await this.#grouped?.close();
      await this.#journal?.close();
      await markClean(d, this.sb, found, d instanceof CountingDevice ? d.bytesWritten : 0);
    } catch (e) {
      this.cache.deviceFailed(e);
      throw e;
    }
  }

  /**
   * Runs `fn` in a new transaction and commits it; if `fn` throws, the transaction is
   * discarded (memory and device as before) and the error rethrown. Calls made while another
   * transaction of this writer runs wait for it (one transaction at a time per cache).
   */
  transaction<T>(fn: (ctx: OpContext) => Promise<T>): Promise<T> {
    if (this.#group) return this.#step(this.#group, fn);
    const run = this.#queue.then(() => this.#run(fn));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** True while a {@link group} runs: every transaction joins its one transaction. */
  get inGroup(): boolean {
    return this.#group !== null;
  }

  /**
   * Runs a long operation as several transactions (`step`s), each committed in turn, with no
   * other transaction of this writer between them — as the kernel holds the inode's lock
   * across a truncate's journal restarts. `fn` must call `step` one at a time and never
   * {@link transaction} (it would wait for `fn`). Inside a {@link group} the steps join the
   * group's one transaction.
   *
   * @example
   * ```ts ignore
   * await w.steps(async (step) => {
   *   await step((ctx) => addOrphan(ctx.tx, ctx.sb, ctx.gdt, ino));
   *   await step((ctx) => releaseInode(ctx, ino));
   * });
   * ```
   */
  steps<T>(
    fn: (step: <R>(f: (ctx: OpContext) => Promise<R>) => Promise<R>) => Promise<T>,
  ): Promise<T> {
    const group = this.#group;
    if (group) return fn((f) => this.#step(group, f));
    const run = this.#queue.then(() => fn((f) => this.#run(f)));
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Runs `fn` with every {@link transaction} started while it runs joined into ONE
   * transaction, committed when `fn` resolves: all of it reaches the device or, when `fn` or
   * any step throws, none of it (memory and device as before). The steps must run one after
   * another (awaited in turn); everything they change is held in memory until the commit.
   * `afterStep` runs after each successful step (e.g. to drop caches decoded from blocks the
   * step changed).
   *
   * @example
   * ```ts ignore
   * await w.group(async () => {
   *   await mkdirAt(w, "/etc", {});
   *   await writeFileAt(w, "/etc/hostname", new TextEncoder().encode("box\n"), {});
   * });
   * ```
   */
  group<T>(fn: () => Promise<T>, afterStep?: () => void): Promise<T> {
    if (this.#group) {
      return Promise.reject(new Ext4Error("BUSY", "a group of transactions is already running"));
    }
    const run = this.#queue.then(() => {
      const tx = this.cache.begin();
      const group = { ctx: { tx, alloc: this.alloc, sb: this.sb, gdt: this.gdt }, afterStep };
      this.#group = group;
      return tx.discardOnError(async () => {
        try {
          const result = await fn();
          if (tx.state === "aborted") {
            throw new Ext4Error("INVALID", "the group was discarded by a failed operation");
          }
          this.#group = null;
          await this.commit(tx);
          return result;
        } finally {
          this.#group = null;
        }
      });
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** One step of a {@link group}: runs in the group's transaction; a failure discards it. */
  async #step<T>(
    group: { ctx: OpContext; afterStep?: () => void },
    fn: (ctx: OpContext) => Promise<T>,
  ): Promise<T> {
    const tx = group.ctx.tx;
    if (tx.state !== "open") {
      throw new Ext4Error("INVALID", "the group was discarded by a failed operation");
    }
    const result = await tx.discardOnError(() => fn(group.ctx));
    group.afterStep?.();
    return result;
  }

  async #run<T>(fn: (ctx: OpContext) => Promise<T>): Promise<T> {
    // Out of space while blocks freed by earlier, not yet durable, commits are held (group
    // commit): commit them and try once more, as ext4 forces a journal commit and retries.
    try {
      return await this.#runOnce(fn);
    } catch (e) {
      if (!(e instanceof Ext4Error && e.code === "NO_SPACE")) throw e;
      if (!this.#grouped || this.alloc.heldBlocks === 0) throw e;
      await this.#grouped.sync();
      return await this.#runOnce(fn);
    }
  }

  /** One transaction around `fn` (not async itself: one promise and turn less per operation). */
  #runOnce<T>(fn: (ctx: OpContext) => Promise<T>): Promise<T> {
    const tx = this.cache.begin();
    return tx.discardOnError(async () => {
      const result = await fn({ tx, alloc: this.alloc, sb: this.sb, gdt: this.gdt });
      if (tx.state === "aborted") {
        throw new Ext4Error("INVALID", "the transaction was discarded by a failed operation");
      }
      await this.commit(tx);
      return result;
    });
  }

  /**
   * Makes everything committed so far durable: commits the running compound of group commit
   * ({@link startGroupCommit}; without it every commit was durable when it returned), then
   * flushes the device. Rejects when any device write or flush of this writer has failed
   * (`cache.failure`), then and ever after: nothing written through a failed writer is reported
   * durable.
   */
  async flush(): Promise<void> {
    this.cache.throwIfFailed();
    // A compound commit ends in a flush that covers everything written before it.
    if (await this.#grouped?.sync()) return;
    await this.cache.flush();
  }
}

/**
 * The journal features the kernel's ext4 sets on a journal it writes (`ext4_fill_super`,
 * `set_journal_csum_feature_set`): 64-bit block numbers on a 64bit filesystem, and with
 * metadata_csum the v3 checksums (crc32c) in place of older ones. mke2fs leaves a journal
 * featureless; the journal writer writes its superblock with them at the first commit.
 */
function useKernelJournalFeatures(sb: Superblock, journal: JournalWriter): void {
  const jsb = journal.superblock;
  if (!jsb.isV2) return; // a v1 journal superblock has no feature fields
  let incompat = jsb.featureIncompat;
  if (sb.incompat & Incompat.BIT64) incompat |= JournalIncompat.BIT64;
  if (sb.roCompat & RoCompat.METADATA_CSUM) {
    incompat = (incompat | JournalIncompat.CSUM_V3) & ~JournalIncompat.CSUM_V2;
    jsb.featureCompat = jsb.featureCompat & ~JournalCompat.CHECKSUM;
    jsb.checksumType = JBD2_CRC32C_CHKSUM;
  }
  jsb.featureIncompat = incompat;
}
