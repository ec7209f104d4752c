/**
 * Transactions and the block cache: every change to metadata goes through a
 * {@link Transaction}, which collects full-block images of the dirty metadata blocks and the
 * ordered data writes, and commits them as one unit through a {@link CommitSink}.
 *
 * The sink decides how a commit reaches the device. {@link InPlaceCommitSink} writes the
 * data, flushes, writes the metadata in place and flushes again (ordered semantics without a
 * journal); lib/txn/journal_sink.ts routes the same commits through jbd2, lib/txn/group_commit.ts
 * gathers them into one compound commit, without any change to the code that builds
 * transactions.
 *
 * The {@link BlockCache} serves block reads for everyone. It is bounded (least recently used
 * clean blocks are dropped) and never writes on its own: blocks reach the device only through
 * a commit. While a transaction is open, reading a block it changed returns the changed image.
 *
 * Over 700 lines because the cache's reads (one block, a read-ahead run) and the transactions
 * that replace its images share its private state — the clean images and the count of commits
 * a read must not span — which a split would have to make public.
 *
 * @module
 */

import { type BlockDevice, readAheadBlocks } from "../block/block_device.ts";
import { Errno, Ext4Error } from "../errors.ts";

/** One ordered data write: whole blocks starting at `block`. */
export interface DataWrite {
  /** First block written. */
  readonly block: number;
  /** The contents: one or more whole blocks, written from `block` on. */
  readonly bytes: Uint8Array;
}

/** One metadata block image. */
export interface MetadataWrite {
  /** The block this image belongs to. */
  readonly block: number;
  /** The block's full new contents (one block). */
  readonly bytes: Uint8Array;
  /**
   * Where the transaction changed the block, as [start, end) byte pairs, when every change
   * went through {@link Transaction.patch}; absent when the image was handed out whole
   * ({@link Transaction.getWritable}, {@link Transaction.newBlock}) and any byte may differ.
   * Caches decoded from the block (lib/ext4/fs_cache.ts) look only there.
   */
  readonly changed?: readonly number[];
}

/**
 * Bytes to put into a metadata block when the transaction joins a sink that takes patches
 * ({@link CommitSink.acceptsPatches}): see {@link Transaction.patchUnshared}.
 */
export interface MetadataPatch {
  /** The block patched. */
  readonly block: number;
  /** Where in the block the bytes go. */
  readonly offset: number;
  /** The bytes (a copy taken when the patch was made). */
  readonly bytes: Uint8Array;
  /** The block's current image when the patch was made (the base when the sink has none). */
  readonly base: Uint8Array;
  /** Set by the sink: the block's image with the patch applied (the cache keeps it). */
  image?: Uint8Array;
}

/** Everything one transaction changes, in the order a sink must respect. */
export interface CommitBatch {
  /** Block size of every image. */
  readonly blockSize: number;
  /** Data blocks (file contents), coalesced into runs, sorted by block; written first. */
  readonly data: DataWrite[];
  /** Metadata block images in the order they were first changed. */
  readonly metadata: MetadataWrite[];
  /**
   * Metadata blocks freed in this transaction whose old contents must not be replayed
   * (the journal writes revoke records for them; in place they need nothing).
   */
  readonly revoked: number[];
  /**
   * Patches of blocks not among `metadata`, those of one block together and in the order they
   * were made; only for a sink that {@link CommitSink.acceptsPatches}.
   */
  readonly patches?: MetadataPatch[];
}

/**
 * Where commits go: in place on the device, or (later) through the journal.
 * A sink must make the batch durable before its promise resolves.
 */
export interface CommitSink {
  /**
   * Writes `batch` durably: its promise resolves only once the data and metadata are on stable
   * storage.
   */
  commit(batch: CommitBatch): Promise<void>;
  /**
   * Refuses a batch this sink can never write (e.g. larger than the journal takes), before the
   * transaction starts committing: the transaction is then aborted, not failed, and the
   * filesystem object stays writable.
   */
  check?(batch: CommitBatch): void;
  /**
   * The newest committed image of `block` when it is not at home yet (a journal's logged,
   * not checkpointed blocks): the cache reads it instead of the device's stale copy.
   */
  loggedImage?(block: number): Uint8Array | undefined;
  /**
   * For a sink whose commits are not durable when they resolve (group commit): the token of
   * the compound commits join now. Absent: every commit is durable when it resolves.
   */
  readonly epoch?: object;
  /** Runs `fn` once the compound `epoch` named is durable (see {@link epoch}). */
  whenDurable?(epoch: object, fn: () => void): void;
  /**
   * The sink applies a batch's {@link CommitBatch.patches} itself, synchronously as the batch
   * joins what it holds, and sets each patch's `image`.
   */
  readonly acceptsPatches?: boolean;
}

/**
 * Writes commits straight to their home locations: data, flush, metadata, flush. After the
 * first flush the data is durable before any metadata that points at it is written; after the
 * second the whole transaction is.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../block/block_device.ts";
 * import { InPlaceCommitSink } from "./transaction.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(4096));
 * await new InPlaceCommitSink(dev).commit({
 *   blockSize: 1024, data: [], revoked: [],
 *   metadata: [{ block: 2, bytes: new Uint8Array(1024).fill(7) }],
 * });
 * console.log(dev.bytes[2048]); // 7
 * ```
 */
export class InPlaceCommitSink implements CommitSink {
  /** The device commits are written to. */
  readonly device: BlockDevice;

  /** A sink that writes commits to `device` in place. */
  constructor(device: BlockDevice) {
    this.device = device;
  }

  /** Writes the data runs, flushes, writes the metadata in block order, flushes again. */
  async commit(batch: CommitBatch): Promise<void> {
    const bs = batch.blockSize;
    for (const d of batch.data) await this.device.write(d.block * bs, d.bytes);
    if (batch.data.length > 0 && batch.metadata.length > 0) await this.device.flush();
    // Metadata in block order: one sequential sweep.
    const sorted = [...batch.metadata].sort((a, b) => a.block - b.block);
    for (const m of sorted) await this.device.write(m.block * bs, m.bytes);
    await this.device.flush();
  }
}

/** A clean block's image and the {@link BlockCache} move that last put it at the recent end. */
interface CleanBlock {
  image: Uint8Array;
  moved: number;
}

/** Options for {@link BlockCache}. */
export interface BlockCacheOptions {
  /** Most clean blocks kept in memory (default 4096). */
  capacity?: number;
  /** Where commits go (default: in place on the device). */
  sink?: CommitSink;
}

/**
 * The block cache of one filesystem. Reads go through it; writes go through the one open
 * {@link Transaction} it hands out with {@link BlockCache.begin}.
 *
 * Blocks returned by {@link BlockCache.read} must be treated as read-only: to change a block,
 * take it from {@link Transaction.getWritable}.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../block/block_device.ts";
 * import { BlockCache } from "./transaction.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(8192));
 * const cache = new BlockCache(dev, 1024);
 * const tx = cache.begin();
 * (await tx.getWritable(3))[0] = 42;
 * console.log((await cache.read(3))[0]); // 42, the open transaction's image
 * await tx.commit();
 * console.log(dev.bytes[3 * 1024]); // 42
 * ```
 */
export class BlockCache {
  /** The device blocks are read from and (through the sink) written to. */
  readonly device: BlockDevice;
  /** Bytes per block; every image the cache holds has this size. */
  readonly blockSize: number;
  /** Most clean blocks kept in memory (`options.capacity`, default 4096, at least 16). */
  readonly capacity: number;
  /** Where commits go; replaceable, e.g. to write through a journal. */
  sink: CommitSink;
  /** Clean blocks, least recently used first (Map keeps insertion order; see {@link #touch}). */
  #clean = new Map<number, CleanBlock>();
  /** Moves to the recent end of {@link #clean} so far: the stamp of the latest. */
  #moves = 0;
  #active: Transaction | null = null;
  /** Set by the first failed commit or flush: what every later write is refused with. */
  #failure: Ext4Error | null = null;
  #hits = 0;
  #misses = 0;
  /** Commits so far, failed ones too (a read that spans one does not cache what it read). */
  #commits = 0;

  /** A cache over `device` in blocks of `blockSize` (a power of two >= 512). */
  constructor(device: BlockDevice, blockSize: number, options: BlockCacheOptions = {}) {
    if (!Number.isInteger(blockSize) || blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
      throw new Ext4Error("INVALID", `block size ${blockSize} is not a power of two >= 512`);
    }
    this.device = device;
    this.blockSize = blockSize;
    this.capacity = Math.max(16, options.capacity ?? 4096);
    this.sink = options.sink ?? new InPlaceCommitSink(device);
  }

  /**
   * Routes later commits to `sink` (e.g. a journal opened after the cache was made). Only
   * between transactions.
   */
  useSink(sink: CommitSink): void {
    if (this.#active) {
      throw new Ext4Error("BUSY", "cannot change the commit sink while a transaction is open");
    }
    this.sink = sink;
  }

  /**
   * A token for "what the last commit joined" when commits are not durable as they resolve
   * (group commit), else null. Pass it to {@link whenDurable}.
   */
  get durabilityEpoch(): object | null {
    return this.sink.epoch ?? null;
  }

  /**
   * Runs `fn` once the commits that joined `epoch` are durable (at once when the sink makes
   * every commit durable).
   */
  whenDurable(epoch: object | null, fn: () => void): void {
    if (epoch && this.sink.whenDurable) this.sink.whenDurable(epoch, fn);
    else fn();
  }

  /** The open transaction, if any. */
  get active(): Transaction | null {
    return this.#active;
  }

  /** Number of clean blocks held. */
  get size(): number {
    return this.#clean.size;
  }

  /** Cache statistics (for tests and benchmarks). */
  get stats(): { hits: number; misses: number } {
    return { hits: this.#hits, misses: this.#misses };
  }

  /** The current image of `block` (the open transaction's, else cached or read): read-only. */
  async read(block: number): Promise<Uint8Array> {
    return this.held(block) ?? await this.readCommitted(block);
  }

  /** {@link read}'s image when it is in memory (no read, no promise), else undefined. */
  held(block: number): Uint8Array | undefined {
    return this.#active?.pendingImage(block) ?? this.#cleanHit(block);
  }

  /** The image of `block` as last committed (ignores the open transaction). */
  async readCommitted(block: number): Promise<Uint8Array> {
    const hit = this.#cleanHit(block);
    if (hit) return hit;
    this.#misses++;
    const logged = this.sink.loggedImage?.(block);
    if (logged) {
      this.#remember(block, logged);
      return logged;
    }
    this.#checkBlock(block);
    const buf = new Uint8Array(this.blockSize);
    const commits = this.#commits;
    await this.device.read(block * this.blockSize, buf);
    // Read before a commit that ended meanwhile: maybe the old image, not to be kept.
    if (commits === this.#commits) this.#remember(block, buf);
    return buf;
  }

  /** Whether the cache holds a committed image of `block` (no read, not counted, not touched). */
  has(block: number): boolean {
    return this.#clean.has(block);
  }

  /**
   * Reads blocks `first` … `first + count - 1` in one device read and keeps their committed
   * images, as {@link readCommitted} would one by one (read-ahead of metadata, e.g. inode
   * tables): a block the cache holds already, or whose newest image is in the journal but not
   * yet written home (`sink.loggedImage`), is not taken from the device; nothing is kept when a
   * commit ended while the read was in flight (its bytes may predate it). A failed read keeps
   * nothing and is not an error: the block that was wanted is read on its own.
   *
   * @example
   * ```ts
   * import { MemoryBlockDevice } from "../block/block_device.ts";
   * import { BlockCache } from "./transaction.ts";
   * const cache = new BlockCache(new MemoryBlockDevice(new Uint8Array(8192)), 1024);
   * await cache.readAhead(2, 4);
   * console.log(cache.has(2), cache.has(5), cache.has(6)); // true true false
   * ```
   */
  async readAhead(first: number, count: number): Promise<void> {
    const commits = this.#commits;
    await readAheadBlocks(
      this.device,
      this.blockSize,
      first,
      count,
      // Checked again after the read: a block logged meanwhile only by a commit (seen below),
      // one read by readCommitted meanwhile is the same image. A commit that ended during the
      // read keeps nothing (the bytes may predate it).
      (b) => commits === this.#commits && !this.#clean.has(b) && !this.sink.loggedImage?.(b),
      (b, image) => this.#remember(b, image),
    );
  }

  /**
   * After a device write or flush failed (in a commit or {@link flush}): the error every later
   * write is refused with — `IO` (EIO), its message naming that first failure. Null before.
   */
  get failure(): Ext4Error | null {
    return this.#failure;
  }

  /** Throws {@link failure} when there is one: this filesystem object accepts no more writes. */
  throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  /**
   * Opens a transaction. Only one may be open at a time; a cache whose commit or flush failed
   * refuses new ones with {@link failure} (the device state is unknown, as after the kernel's
   * ext4 abort).
   */
  begin(): Transaction {
    this.throwIfFailed();
    if (this.device.readOnly) throw new Ext4Error("READ_ONLY", "device is read-only");
    if (this.#active) {
      throw new Ext4Error("BUSY", "a transaction is already open on this filesystem");
    }
    const tx = new Transaction(this);
    this.#active = tx;
    return tx;
  }

  /**
   * Flushes the device. A failure is fatal as a failed commit is, and is never retried: after
   * one, this throws {@link failure} without asking the device (a second fsync would report
   * success for the writes the first one lost).
   *
   * @example
   * ```ts
   * import { MemoryBlockDevice } from "../block/block_device.ts";
   * import { BlockCache } from "./transaction.ts";
   * const cache = new BlockCache(new MemoryBlockDevice(new Uint8Array(8192)), 1024);
   * await cache.flush();
   * console.log(cache.failure); // null
   * ```
   */
  async flush(): Promise<void> {
    this.throwIfFailed();
    try {
      await this.device.flush();
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  /** The cached clean image of `block` (a hit, made most recently used), else undefined. */
  #cleanHit(block: number): Uint8Array | undefined {
    const hit = this.#clean.get(block);
    if (!hit) return undefined;
    this.#hits++;
    this.#touch(block, hit);
    return hit.image;
  }

  /**
   * Marks `entry` recently used: moved to the recent end of the map, unless it is among the
   * most recent quarter of the capacity already (fewer moves than that since its own). A
   * delete and re-insert per hit cost ~0.5 µs on a cache of a few thousand blocks, on ~15
   * hits per create or unlink; the order stays least recently used first to within a quarter.
   */
  #touch(block: number, entry: CleanBlock): void {
    if (this.#moves - entry.moved <= this.capacity >> 2) return;
    this.#clean.delete(block);
    this.#clean.set(block, entry);
    entry.moved = ++this.#moves;
  }

  /**
   * Records the failure of a device write or flush made outside a transaction (the
   * superblock's state, lib/ext4/mount_state.ts): as fatal as a failed commit.
   *
   * @example
   * ```ts ignore
   * try { await markWriting(device, sb); } catch (e) { cache.deviceFailed(e); throw e; }
   * ```
   */
  deviceFailed(cause: unknown): void {
    this.#fail(cause);
  }

  /** Records the first device failure: the cache refuses writes from now on. */
  #fail(cause: unknown): void {
    this.#clean.clear();
    if (this.#failure) return;
    const what = cause instanceof Error ? cause.message : String(cause);
    this.#failure = new Ext4Error(
      "IO",
      `the filesystem accepts no more writes after an I/O error: ${what}`,
      { errno: Errno.EIO, cause },
    );
  }

  /** Drops every clean block (e.g. after something else wrote the device). */
  invalidate(block?: number): void {
    if (block === undefined) this.#clean.clear();
    else this.#clean.delete(block);
  }

  #remember(block: number, image: Uint8Array): void {
    const held = this.#clean.get(block);
    if (held) {
      held.image = image;
      this.#touch(block, held);
      return;
    }
    this.#clean.set(block, { image, moved: ++this.#moves });
    while (this.#clean.size > this.capacity) {
      const oldest = this.#clean.keys().next().value as number;
      this.#clean.delete(oldest);
    }
  }

  #checkBlock(block: number): void {
    if (
      !Number.isSafeInteger(block) || block < 0 || (block + 1) * this.blockSize > this.device.size
    ) {
      throw new Ext4Error("IO", `block ${block} is outside the device`);
    }
  }

  /** @internal Called by a transaction when it ends. */
  _finish(tx: Transaction, committed: CommitBatch | null, failure: Error | null): void {
    if (this.#active !== tx) return;
    this.#active = null;
    if (failure) {
      this.#commits++;
      this.#fail(failure);
      return;
    }
    if (!committed) return;
    this.#commits++;
    for (const m of committed.metadata) this.#remember(m.block, m.bytes);
    for (const p of committed.patches ?? []) {
      if (p.image) this.#remember(p.block, p.image);
      else this.#clean.delete(p.block); // not told: read it again (through the sink)
    }
    for (const d of committed.data) {
      const n = d.bytes.length / this.blockSize;
      for (let i = 0; i < n; i++) this.#clean.delete(d.block + i);
    }
    for (const r of committed.revoked) this.#clean.delete(r);
  }

  /** @internal */
  _checkBlock(block: number): void {
    this.#checkBlock(block);
  }
}

/** How far a transaction has got. */
export type TransactionState = "open" | "committing" | "committed" | "aborted" | "failed";

/**
 * A set of changes that reach the device together. Metadata blocks are changed through
 * {@link Transaction.getWritable} (copy on first touch); file contents through
 * {@link Transaction.writeData}. In-memory structures derived from blocks (descriptors, the
 * superblock) register a snapshot with {@link Transaction.guard} before changing, so
 * {@link Transaction.abort} puts them back, and a finishing step with
 * {@link Transaction.beforeCommit} to serialise them (with checksums) into their blocks.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../block/block_device.ts";
 * import { BlockCache } from "./transaction.ts";
 * const cache = new BlockCache(new MemoryBlockDevice(new Uint8Array(8192)), 1024);
 * const tx = cache.begin();
 * const counter = new Uint8Array([1]);
 * tx.guard(counter);
 * counter[0] = 2;
 * tx.abort();
 * console.log(counter[0]); // 1
 * ```
 */
export class Transaction {
  /** The cache the transaction reads through and commits to. */
  readonly cache: BlockCache;
  #state: TransactionState = "open";
  /** Metadata images, in first-dirtied order (Map keeps insertion order). */
  #metadata = new Map<number, Uint8Array>();
  /** Data block images (views into the caller's runs). */
  #data = new Map<number, Uint8Array>();
  #revoked = new Set<number>();
  /**
   * Patches left to the sink ({@link patchUnshared}, {@link patchRecord}), per block in the
   * order made.
   */
  readonly #patches = new Map<number, MetadataPatch[]>();
  /** Blocks whose patches this transaction's reads must see ({@link patchRecord}). */
  readonly #recordPatched = new Set<number>();
  /** The batch this transaction committed, while its onCommit steps run. */
  #committedBatch: CommitBatch | null = null;
  /**
   * Per metadata block, the byte ranges changed ([start, end) pairs) while every change was a
   * {@link patch}; null once the image was handed out whole (see MetadataWrite.changed).
   */
  readonly #changed = new Map<number, number[] | null>();
  #guards: { target: Uint8Array; copy: Uint8Array }[] = [];
  #guarded = new Set<Uint8Array>();
  #hooks = new Map<string, () => void | Promise<void>>();
  #onAbort: (() => void)[] = [];
  #onCommit: (() => void)[] = [];

  /** @internal Use {@link BlockCache.begin}. */
  constructor(cache: BlockCache) {
    this.cache = cache;
  }

  /**
   * `open` until it ends: `committing` while the sink writes, then `committed` once the sink
   * made it durable, `aborted`, or `failed` when a write or flush of the sink failed.
   */
  get state(): TransactionState {
    return this.#state;
  }

  /** The cache's block size in bytes. */
  get blockSize(): number {
    return this.cache.blockSize;
  }

  /** Number of metadata blocks changed so far. */
  get metadataBlocks(): number {
    return this.#metadata.size + this.#patches.size;
  }

  /** Number of data blocks written so far. */
  get dataBlocks(): number {
    return this.#data.size;
  }

  /** Number of metadata blocks freed so far (revoked: each takes a journal revoke record). */
  get revokedBlocks(): number {
    return this.#revoked.size;
  }

  /**
   * @internal The image this transaction holds for `block`, if any. A block with record
   * patches ({@link patchRecord}) is copied now, its patches applied: reads see them.
   */
  pendingImage(block: number): Uint8Array | undefined {
    const own = this.#metadata.get(block) ?? this.#data.get(block);
    if (own || !this.#recordPatched.has(block)) return own;
    return this.#materialize(block);
  }

  /**
   * Whether this transaction changed any byte of `[start, end)` of `block` (an image of it
   * held, or a record patch overlapping the range): when not, the committed bytes there are
   * this transaction's view too.
   */
  changesRange(block: number, start: number, end: number): boolean {
    if (this.#metadata.has(block) || this.#data.has(block)) return true;
    if (!this.#recordPatched.has(block)) return false;
    for (const p of this.#patches.get(block)!) {
      if (p.offset < end && p.offset + p.bytes.length > start) return true;
    }
    return false;
  }

  /**
   * A copy of bytes `[start, end)` of `block` as this transaction sees them: one record read
   * (back) while the block has record patches does not copy the whole block.
   */
  async readRange(block: number, start: number, end: number): Promise<Uint8Array> {
    this.#checkOpen();
    if (!this.#recordPatched.has(block)) return (await this.cache.read(block)).slice(start, end);
    const list = this.#patches.get(block)!;
    const out = list[0].base.slice(start, end);
    for (const p of list) {
      const from = Math.max(start, p.offset);
      const to = Math.min(end, p.offset + p.bytes.length);
      if (from < to) out.set(p.bytes.subarray(from - p.offset, to - p.offset), from - start);
    }
    return out;
  }

  /**
   * In an {@link onCommit} step: `block`'s image as committed (the transaction's own, or the
   * sink's image with its patches), else undefined.
   */
  committedImage(block: number): Uint8Array | undefined {
    const own = this.#metadata.get(block);
    if (own || !this.#committedBatch?.patches) return own;
    for (const p of this.#committedBatch.patches) if (p.block === block && p.image) return p.image;
    return undefined;
  }

  /**
   * In an {@link onCommit} step, the batch this transaction committed: one token per commit
   * (null before and after the steps: the batch holds the data written).
   */
  get committedBatch(): CommitBatch | null {
    return this.#committedBatch;
  }

  /** The current image of `block` (this transaction's changes included). Do not modify it. */
  read(block: number): Promise<Uint8Array> {
    this.#checkOpen();
    return this.cache.read(block);
  }

  /**
   * A writable image of metadata block `block`, owned by this transaction: changes to it are
   * part of the commit. Copies the current image on first use.
   */
  async getWritable(block: number): Promise<Uint8Array> {
    const image = await this.#writable(block);
    this.#changed.set(block, null); // handed out whole: any byte may change
    return image;
  }

  /** The transaction's image of `block` (copied on first use), for a change it records. */
  async #writable(block: number): Promise<Uint8Array> {
    this.#checkOpen();
    const mine = this.#metadata.get(block);
    if (mine) return mine;
    if (this.#recordPatched.has(block)) return this.#materialize(block);
    const data = this.#data.get(block) ?? this.cache.held(block); // no promise when in memory
    const copy = (data ?? await this.cache.read(block)).slice();
    this.#checkOpen();
    // A block first written as data and then treated as metadata becomes metadata: whole.
    if (this.#data.delete(block)) this.#changed.set(block, null);
    this.#revoked.delete(block);
    this.#metadata.set(block, copy);
    this.#absorbPatches(block, copy);
    return copy;
  }

  /** Records that bytes [start, end) of metadata block `block` changed. */
  #changedRange(block: number, start: number, end: number): void {
    const ranges = this.#changed.get(block);
    if (ranges === null) return;
    if (ranges) ranges.push(start, end);
    else this.#changed.set(block, [start, end]);
  }

  /**
   * Like {@link patch}, for a block that only the writer reads and nothing decodes from its
   * image — group descriptor blocks, the superblock's block. With a sink that takes patches
   * (group commit) the bytes are put into the sink's image of the block when this transaction
   * joins it: no 4 KiB copy of the block per transaction (two of the six of a create or an
   * unlink). The block's image in the cache changes only at the commit; until then reads see
   * it without the patch.
   */
  async patchUnshared(block: number, offset: number, bytes: Uint8Array): Promise<void> {
    this.#checkOpen();
    this.#checkPatch(offset, bytes);
    const base = this.cache.sink.acceptsPatches && !this.#metadata.has(block) &&
      !this.#data.has(block) && !this.#recordPatched.has(block) && this.cache.held(block);
    if (!base) return await this.patch(block, offset, bytes);
    this.cache._checkBlock(block);
    this.#revoked.delete(block);
    const patch = { block, offset, bytes: bytes.slice(), base };
    const list = this.#patches.get(block);
    if (list) list.push(patch);
    else this.#patches.set(block, [patch]);
  }

  /**
   * Like {@link patch}, for a block whose readers copy what they decode before any await (an
   * inode table block: records are sliced out at once). With a sink that takes patches (group
   * commit) the bytes go into the sink's image of the block when this transaction joins it,
   * in place when the running compound holds its own: no 4 KiB copy of the block per
   * transaction (a setattr changes one 256-byte record). Reads in this transaction see the
   * patch: the first one that needs the block's bytes copies it then ({@link pendingImage});
   * {@link changesRange} tells a reader of one record whether it needs to.
   */
  async patchRecord(block: number, offset: number, bytes: Uint8Array): Promise<void> {
    this.#checkOpen();
    this.#checkPatch(offset, bytes);
    const list = this.#patches.get(block);
    // The image patches go on: the committed one, unchanged while this transaction is open.
    const base = list?.[0].base ??
      (this.cache.sink.acceptsPatches && !this.#metadata.has(block) && !this.#data.has(block) &&
        this.cache.held(block));
    if (!base || (list && !this.#recordPatched.has(block))) {
      return await this.patch(block, offset, bytes);
    }
    this.cache._checkBlock(block);
    this.#revoked.delete(block);
    const patch = { block, offset, bytes: bytes.slice(), base };
    if (list) list.push(patch);
    else this.#patches.set(block, [patch]);
    this.#recordPatched.add(block);
  }

  /** This transaction's own copy of `block` with its record patches applied. */
  #materialize(block: number): Uint8Array {
    const copy = this.#patches.get(block)![0].base.slice();
    this.#metadata.set(block, copy);
    this.#absorbPatches(block, copy);
    return copy;
  }

  /** Puts the patches of `block` left to the sink into `image` instead (none: drops them). */
  #absorbPatches(block: number, image: Uint8Array | null): void {
    this.#recordPatched.delete(block);
    const list = this.#patches.get(block);
    if (!list) return;
    if (image) {
      for (const p of list) {
        image.set(p.bytes, p.offset);
        this.#changedRange(block, p.offset, p.offset + p.bytes.length);
      }
    }
    this.#patches.delete(block);
  }

  #checkPatch(offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > this.blockSize) {
      throw new Ext4Error(
        "INVALID",
        `patch of ${bytes.length} bytes at ${offset} overflows a block`,
      );
    }
  }

  /**
   * A writable metadata image for a block whose old contents do not matter (a block just
   * allocated): zero-filled, no read.
   */
  newBlock(block: number): Uint8Array {
    this.#checkOpen();
    this.cache._checkBlock(block);
    const img = new Uint8Array(this.blockSize);
    this.#data.delete(block);
    this.#revoked.delete(block);
    this.#metadata.set(block, img);
    this.#changed.set(block, null);
    this.#absorbPatches(block, null);
    return img;
  }

  /** Copies `bytes` into metadata block `block` at `offset`. */
  async patch(block: number, offset: number, bytes: Uint8Array): Promise<void> {
    this.#checkPatch(offset, bytes);
    (await this.#writable(block)).set(bytes, offset);
    this.#changedRange(block, offset, offset + bytes.length);
  }

  /**
   * Ordered data: whole blocks of file contents starting at `block`, written before any
   * metadata of this transaction. `bytes` must be a multiple of the block size; it is not
   * copied, so the caller must not change it before the commit.
   */
  writeData(block: number, bytes: Uint8Array): void {
    this.#checkOpen();
    const bs = this.blockSize;
    if (bytes.length === 0 || bytes.length % bs !== 0) {
      throw new Ext4Error("INVALID", `data write of ${bytes.length} bytes is not whole blocks`);
    }
    const n = bytes.length / bs;
    this.cache._checkBlock(block);
    this.cache._checkBlock(block + n - 1);
    for (let i = 0; i < n; i++) {
      const b = block + i;
      if (this.#metadata.has(b)) {
        throw new Ext4Error("INVALID", `block ${b} is metadata in this transaction`);
      }
      this.#data.set(b, bytes.subarray(i * bs, (i + 1) * bs));
    }
  }

  /**
   * Forgets a metadata block freed in this transaction: its pending image is dropped and a
   * journal will revoke it, so an old logged copy is never replayed over new data.
   */
  forget(block: number): void {
    this.#checkOpen();
    this.#metadata.delete(block);
    this.#changed.delete(block);
    this.#absorbPatches(block, null);
    this.#revoked.add(block);
  }

  /**
   * Snapshots an in-memory buffer before it is changed, so {@link abort} restores it.
   * Guarding the same buffer twice keeps the first snapshot.
   */
  guard(target: Uint8Array): void {
    this.#checkOpen();
    if (this.#guarded.has(target)) return;
    this.#guarded.add(target);
    this.#guards.push({ target, copy: target.slice() });
  }

  /**
   * Registers a step run once when the commit starts (deduplicated by `key`), e.g.
   * "write group 3's descriptor with its checksums". Steps run in registration order.
   */
  beforeCommit(key: string, fn: () => void | Promise<void>): void {
    this.#checkOpen();
    if (!this.#hooks.has(key)) this.#hooks.set(key, fn);
  }

  /** Runs `fn` if this transaction is aborted (after guards are restored). */
  onAbort(fn: () => void): void {
    this.#onAbort.push(fn);
  }

  /** Runs `fn` once this transaction has committed. */
  onCommit(fn: () => void): void {
    this.#onCommit.push(fn);
  }

  /**
   * Runs `fn`; if it throws, discards this transaction (as {@link abort}) and rethrows. A
   * failed step must not leave half its changes in a transaction that a caller may commit.
   *
   * @example
   * ```ts
   * import { MemoryBlockDevice } from "../block/block_device.ts";
   * import { BlockCache } from "./transaction.ts";
   * const tx = new BlockCache(new MemoryBlockDevice(new Uint8Array(8192)), 1024).begin();
   * await tx.discardOnError(async () => {
   *   throw new Error("no space");
   * }).catch(() => {});
   * console.log(tx.state); // "aborted"
   * ```
   */
  async discardOnError<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Discards every change: nothing reaches the device, guarded buffers are restored. */
  abort(): void {
    if (this.#state !== "open") return;
    this.#state = "aborted";
    for (let i = this.#guards.length - 1; i >= 0; i--) {
      this.#guards[i].target.set(this.#guards[i].copy);
    }
    this.#release();
    this.cache._finish(this, null, null);
    for (const fn of this.#onAbort) fn();
  }

  /**
   * Runs the finishing steps and hands the batch to the cache's sink. When a finishing step
   * throws, the transaction is aborted; when the sink fails, the device state is unknown and
   * the cache refuses further transactions.
   */
  async commit(): Promise<void> {
    this.#checkOpen();
    try {
      // Hooks may register hooks: iterating a Map reaches those too, in order (at most 1000).
      let round = 0;
      for (const hook of this.#hooks.values()) {
        if (round++ >= 1000) break;
        await hook();
      }
    } catch (e) {
      this.abort();
      throw e;
    }
    const batch = this.#batch();
    try {
      this.cache.sink.check?.(batch);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.#state = "committing";
    try {
      await this.cache.sink.commit(batch);
    } catch (e) {
      this.#state = "failed";
      const err = e instanceof Error ? e : new Error(String(e));
      this.#release();
      this.cache._finish(this, null, err);
      throw e instanceof Ext4Error ? e : new Ext4Error("IO", `commit failed: ${err.message}`, {
        cause: e,
      });
    }
    // Committed only now: the sink resolved, so its writes and flushes succeeded.
    this.#state = "committed";
    this.#committedBatch = batch;
    this.#release();
    this.cache._finish(this, batch, null);
    try {
      for (const fn of this.#onCommit) fn();
    } finally {
      this.#committedBatch = null;
    }
  }

  #batch(): CommitBatch {
    const bs = this.blockSize;
    const blocks = [...this.#data.keys()].sort((a, b) => a - b);
    const data: DataWrite[] = [];
    for (let i = 0; i < blocks.length;) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
      // Blocks that are also adjacent in one caller buffer go out as a view of it, uncopied.
      const first = this.#data.get(blocks[i])!;
      let k = i + 1;
      while (k < j) {
        const img = this.#data.get(blocks[k])!;
        if (img.buffer !== first.buffer || img.byteOffset !== first.byteOffset + (k - i) * bs) {
          break;
        }
        k++;
      }
      if (k - i > 1) {
        data.push({
          block: blocks[i],
          bytes: new Uint8Array(first.buffer, first.byteOffset, (k - i) * bs),
        });
        i = k;
        continue;
      }
      // A block alone goes out as its image too (a 4 KiB WRITE's data: no copy, no allocation).
      if (j === i + 1) {
        data.push({ block: blocks[i], bytes: first });
        i = j;
        continue;
      }
      const run = new Uint8Array((j - i) * bs);
      for (let m = i; m < j; m++) run.set(this.#data.get(blocks[m])!, (m - i) * bs);
      data.push({ block: blocks[i], bytes: run });
      i = j;
    }
    const metadata: MetadataWrite[] = [];
    for (const [block, bytes] of this.#metadata) {
      const changed = this.#changed.get(block);
      metadata.push(changed ? { block, bytes, changed } : { block, bytes });
    }
    const batch: CommitBatch = { blockSize: bs, data, metadata, revoked: [...this.#revoked] };
    return this.#patches.size ? { ...batch, patches: [...this.#patches.values()].flat() } : batch;
  }

  #release(): void {
    this.#patches.clear();
    this.#recordPatched.clear();
    this.#changed.clear();
    this.#guards = [];
    this.#guarded.clear();
    this.#hooks.clear();
  }

  #checkOpen(): void {
    if (this.#state !== "open") {
      throw new Ext4Error("INVALID", `transaction is ${this.#state}`);
    }
  }
}
