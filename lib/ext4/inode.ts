/**
 * Inode records in and out of the inode table, and the one in-memory inode cache: reading a
 * record through a device (the reader without a block cache) or a {@link Transaction} (the
 * write path), writing one through a transaction, and the {@link InodeCache} of records as
 * last committed that the reader (`Ext4.inode`) and the write path share, as the kernel's
 * inode cache. A transaction records the inodes it changes ({@link touchInode}, called by
 * {@link writeInode}); its commit puts their new records in the cache as new objects, so that
 * what was derived from the old ones (block maps, xattrs, lookups: lib/ext4/fs_cache.ts) is
 * recomputed. The record itself — fields, encoding, checksum, location — is the codec in
 * lib/ondisk/inode.ts.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { Lru } from "../block/lru.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import {
  decodeInode,
  Inode,
  type InodeFields,
  inodeLocation,
  inodeTableSlot,
  parseInode,
  type ParseInodeOptions,
} from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { BlockCache, Transaction } from "../txn/transaction.ts";

/**
 * Reads and decodes inode `ino`.
 *
 * @example
 * ```ts ignore
 * const root = await readInode(device, sb, groups, 2);
 * console.log(root.type); // dir
 * ```
 */
export async function readInode(
  device: BlockDevice,
  sb: Superblock,
  groups: GroupDescriptorTable,
  ino: number,
  options: ParseInodeOptions = {},
): Promise<Inode> {
  const offset = inodeLocation(sb, groups, ino);
  if (offset + sb.inodeSize > device.size) {
    throw new CorruptError(`inode ${ino}`, `inode table at byte ${offset} is beyond the device`);
  }
  return parseInode(sb, ino, await readBytes(device, offset, sb.inodeSize), options);
}

/** The kernel's default `inode_readahead_blks`: inode table blocks read at once on a miss. */
export const INODE_READAHEAD_BLOCKS = 32;

/** A run of inode table blocks to read at once, and the block of the inode that asked. */
export interface InodeTableWindow {
  /** The first block of the run. */
  first: number;
  /** Blocks in the run (at least 1: the inode's own block). */
  count: number;
  /** The table block holding the inode's record (inside the run). */
  block: number;
}

/**
 * The inode table blocks to read when the block holding `ino`'s record is not cached, by the
 * kernel's rule for inode read-ahead (`inode_readahead_blks`): the `limit`-block window
 * aligned on `limit` (a power of two) that holds the inode's block, cut to its group's table
 * and, when the descriptors are checksummed (metadata_csum, gdt_csum) and this one's checksum
 * is right, to the table's in-use part (`bg_itable_unused` inodes at its end were never used).
 * A descriptor whose counts make no sense shrinks the window to the inode's own block, never
 * past the table.
 *
 * @example
 * ```ts ignore
 * const { first, count } = inodeTableWindow(sb, groups, 12, INODE_READAHEAD_BLOCKS);
 * ```
 */
export function inodeTableWindow(
  sb: Superblock,
  groups: GroupDescriptorTable,
  ino: number,
  limit: number,
): InodeTableWindow {
  const bs = sb.blockSize;
  const slot = inodeTableSlot(sb, ino);
  const gd = groups.get(slot.group);
  const table = gd.inodeTable;
  const block = table + Math.floor(slot.byte / bs);
  let inUse = sb.inodesPerGroup;
  if (
    (sb.hasMetadataCsum || sb.hasGdtCsum) && !groups.badChecksums.includes(slot.group)
  ) {
    inUse = Math.max(0, sb.inodesPerGroup - gd.itableUnused);
  }
  const perBlock = Math.max(1, Math.floor(bs / sb.inodeSize));
  const tableEnd = Math.min(
    table + sb.inodeTableBlocksPerGroup,
    table + Math.ceil(inUse / perBlock),
    sb.blocksCount,
  );
  const span = 2 ** Math.floor(Math.log2(Math.max(1, limit)));
  const first = Math.max(table, block - (block % span));
  const end = Math.max(block + 1, Math.min(first + span, tableEnd));
  return { first, count: end - first, block };
}

/** The inode table block holding inode `ino`'s record, and the record's offset in it. */
function tableBlock(
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): { block: number; offset: number } {
  const at = inodeLocation(sb, gdt, ino);
  return { block: Math.floor(at / sb.blockSize), offset: at % sb.blockSize };
}

/** Hits and misses of a cache (tests and benchmarks). */
export interface CacheCounts {
  /** Lookups served from the cache. */
  hits: number;
  /** Lookups that had to read or compute. */
  misses: number;
}

/**
 * Estimated bytes one cached inode record costs: the record's own copy and the objects around
 * it (the `Inode`, its Uint8Array, ArrayBuffer and DataView, the map entry: measured ~360 bytes
 * besides a 256-byte record on Deno 2.9). {@link InodeCache} capacities follow from it.
 *
 * @example
 * ```ts
 * import { inodeRecordWeight } from "./inode.ts";
 * console.log(Math.floor((4 << 20) / inodeRecordWeight(256))); // 6808 records in 4 MiB
 * ```
 */
export function inodeRecordWeight(inodeSize: number): number {
  return inodeSize + 360;
}

/**
 * Decoded inode records as last committed, shared by the reader and the write path of one
 * filesystem object. It holds only records that passed {@link parseInode} under its policy (the
 * write path decodes a record that fails leniently, as it always did, and does not keep it). A
 * record read before a change is not kept after it: {@link InodeCache.keep} checks the
 * {@link InodeCache.generation} every change bumps.
 *
 * @example
 * ```ts
 * import { InodeCache } from "./inode.ts";
 * import { openMetadata } from "./super.ts";
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const { sb, groups } = await openMetadata(new MemoryBlockDevice(await Deno.readFile(img)));
 * const cache = new InodeCache(sb, groups, 64);
 * console.log(cache.get(2), cache.counts); // undefined { hits: 0, misses: 1 }
 * await Deno.remove(img);
 * ```
 */
export class InodeCache {
  /** The records by inode number. */
  readonly records: Lru<number, Inode>;
  /** The superblock of the filesystem. */
  readonly sb: Superblock;
  /** Its group descriptors (where each record lives). */
  readonly groups: GroupDescriptorTable;
  readonly #parse: ParseInodeOptions;
  /**
   * The records {@link InodeCache.changed} decoded at each commit, by inode: keyed by the
   * commit's token (its batch), not by the image — group commit patches a compound's image in
   * place, so one image holds several commits' records.
   */
  readonly #decodedAt = new WeakMap<object, Map<number, Inode>>();
  #generation = 0;
  #hits = 0;
  #misses = 0;

  /** A cache of at most `capacity` records of the filesystem of `sb`, checked by `parse`. */
  constructor(
    sb: Superblock,
    groups: GroupDescriptorTable,
    capacity: number,
    parse: ParseInodeOptions = {},
  ) {
    this.sb = sb;
    this.groups = groups;
    this.records = new Lru(capacity);
    this.#parse = parse;
  }

  /** Bumped by every change: a record read before it is not kept. */
  get generation(): number {
    return this.#generation;
  }

  /** Hits and misses of {@link InodeCache.get} so far. */
  get counts(): CacheCounts {
    return { hits: this.#hits, misses: this.#misses };
  }

  /** The cached record of `ino` (counted as a hit or a miss). */
  get(ino: number): Inode | undefined {
    const hit = this.records.get(ino);
    if (hit) this.#hits++;
    else this.#misses++;
    return hit;
  }

  /**
   * Decodes and checks `bytes` (a private copy of `ino`'s record) under the cache's policy, and
   * keeps the record unless something changed since `generation` was read. Throws
   * {@link CorruptError} for a record that fails the checks.
   */
  keep(ino: number, bytes: Uint8Array, generation: number): Inode {
    const inode = parseInode(this.sb, ino, bytes, this.#parse);
    if (generation === this.#generation) this.records.set(ino, inode);
    return inode;
  }

  /**
   * Something changed: bumps the generation. With `ino`, its cached record (if any) is replaced
   * by a new object decoded from `bytes`, its new record (dropped without them, or when they
   * fail the checks), so that whatever was derived from the old object is recomputed.
   * `commit` names the commit (its batch): a record decoded at that commit already is kept.
   */
  changed(ino?: number, bytes?: Uint8Array, commit?: object): void {
    this.#generation++;
    if (ino === undefined) return;
    const cached = this.records.get(ino);
    if (!cached) return;
    // Already decoded at this commit (the facade's refresh and the transaction's own both run
    // at a commit): the record is the new one, and nothing derived it from an older object.
    if (commit && this.#decodedAt.get(commit)?.get(ino) === cached) return;
    this.records.delete(ino);
    if (!bytes) return;
    try {
      const inode = parseInode(this.sb, ino, bytes.slice(), this.#parse);
      if (commit) {
        let decoded = this.#decodedAt.get(commit);
        if (!decoded) this.#decodedAt.set(commit, decoded = new Map());
        decoded.set(ino, inode);
      }
      this.records.set(ino, inode);
    } catch (e) {
      if (!(e instanceof CorruptError)) throw e;
    }
  }

  /** Forgets every record. */
  clear(): void {
    this.#generation++;
    this.records.clear();
  }
}

/** The inode cache of each block cache: one per filesystem object, found from a transaction. */
const inodeCaches = new WeakMap<BlockCache, InodeCache>();

/**
 * Makes `inodes` the inode cache of `cache` (the `Ext4` object shares its own with its write
 * path). A block cache without one gets a private cache of 4096 records on first use.
 *
 * @example
 * ```ts ignore
 * shareInodeCache(blockCache, caches.inodeCache);
 * ```
 */
export function shareInodeCache(cache: BlockCache, inodes: InodeCache): void {
  inodeCaches.set(cache, inodes);
}

function inodeCacheOf(cache: BlockCache, sb: Superblock, gdt: GroupDescriptorTable): InodeCache {
  let c = inodeCaches.get(cache);
  if (!c) {
    c = new InodeCache(sb, gdt, 4096);
    inodeCaches.set(cache, c);
  }
  return c;
}

/** The inodes each transaction has changed. */
const touchedInodes = new WeakMap<Transaction, Set<number>>();

/**
 * Records that `tx` changes inode `ino`: its record, or a block that only it owns (a
 * directory block, an extent tree node). Once `tx` has committed, the inode cache holds the
 * committed record as a new object, so that what was derived from the old one is recomputed.
 *
 * @example
 * ```ts ignore
 * touchInode(tx, dirIno); // a block of directory dirIno changed
 * ```
 */
export function touchInode(tx: Transaction, ino: number): void {
  const known = touchedInodes.get(tx);
  if (known) {
    known.add(ino);
    return;
  }
  const set = new Set([ino]);
  touchedInodes.set(tx, set);
  tx.onCommit(() => {
    const cache = inodeCaches.get(tx.cache);
    if (!cache) return;
    for (const n of set) {
      const { block, offset } = tableBlock(cache.sb, cache.groups, n);
      const image = tx.committedImage(block);
      cache.changed(
        n,
        image?.subarray(offset, offset + cache.sb.inodeSize),
        tx.committedBatch ?? undefined,
      );
    }
  });
}

/**
 * The inodes `tx` has changed so far ({@link touchInode}).
 *
 * @example
 * ```ts ignore
 * console.log([...inodesTouchedBy(tx)]); // [ 2, 12 ]
 * ```
 */
export function inodesTouchedBy(tx: Transaction): ReadonlySet<number> {
  return touchedInodes.get(tx) ?? new Set();
}

/**
 * Inode `ino` as transaction `tx` sees it: from the shared inode cache (what the reader sees)
 * unless `tx` changed its inode table block, else decoded from that block. Do not modify its
 * `bytes`.
 *
 * @example
 * ```ts ignore
 * const dir = await getInode(tx, sb, gdt, 2);
 * console.log(dir.linksCount);
 * ```
 */
export async function getInode(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<Inode> {
  const { block, offset } = tableBlock(sb, gdt, ino);
  const end = offset + sb.inodeSize;
  if (tx.state !== "open" || tx.changesRange(block, offset, end)) {
    // Changed in this transaction (or closed: it refuses): not what the reader sees.
    return new Inode(sb, ino, await tx.readRange(block, offset, end));
  }
  const cache = inodeCacheOf(tx.cache, sb, gdt);
  const hit = cache.get(ino);
  if (hit) return hit;
  const generation = cache.generation;
  // Another record of the block may be patched: this one's bytes, no copy of the block.
  const bytes = await tx.readRange(block, offset, end);
  try {
    return cache.keep(ino, bytes, generation);
  } catch (e) {
    // A record the reader would refuse: the write path decodes it as it is, uncached.
    if (e instanceof CorruptError) return new Inode(sb, ino, bytes);
    throw e;
  }
}

/**
 * Reads the raw record of inode `ino` (a copy, free to change) through the transaction and the
 * shared inode cache.
 *
 * @example
 * ```ts ignore
 * const raw = await readInodeRaw(tx, sb, gdt, 12);
 * ```
 */
export async function readInodeRaw(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<Uint8Array> {
  return (await getInode(tx, sb, gdt, ino)).bytes.slice();
}

/**
 * Inode `ino`'s fields for a read-modify-write, and a copy of its raw record to encode them
 * over (through the transaction and the shared inode cache).
 *
 * @example
 * ```ts ignore
 * const { raw, f } = await loadInode(tx, sb, gdt, 12);
 * await writeInode(tx, sb, gdt, 12, encodeInode(sb, 12, { ...f, mode: 0o100600 }, raw));
 * ```
 */
export async function loadInode(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<{ raw: Uint8Array; f: InodeFields }> {
  const inode = await getInode(tx, sb, gdt, ino);
  const f = fieldsOf(sb, inode);
  // The raw copy is made when first asked for: most loads only read the fields.
  const source = inode.bytes;
  let raw: Uint8Array | undefined;
  return {
    get raw(): Uint8Array {
      return raw ??= source.slice();
    },
    set raw(bytes: Uint8Array) {
      raw = bytes;
    },
    f: copyInodeFields(f),
  };
}

/**
 * Inode `ino`'s fields to look at only, as {@link loadInode} decodes them but not copied:
 * shared with every later load of the same record, so never to be changed.
 *
 * @example
 * ```ts ignore
 * const { flags } = await peekInodeFields(tx, sb, gdt, 12);
 * ```
 */
export async function peekInodeFields(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<Readonly<InodeFields>> {
  return fieldsOf(sb, await getInode(tx, sb, gdt, ino));
}

/** The fields of record `inode`, decoded once ({@link decodedFields}). */
function fieldsOf(sb: Superblock, inode: Inode): InodeFields {
  let f = decodedFields.get(inode);
  if (!f) {
    f = decodeInode(sb, inode.bytes);
    decodedFields.set(inode, f);
  }
  return f;
}

/**
 * The fields decoded from the record objects {@link loadInode} served last: an operation loads
 * the same inodes several times (checks, lookup, the change itself), and a cached record does
 * not change (a changed one is a new object). Callers get copies, free to change. A few hundred,
 * not one per cached record: decoded fields weigh several times the record they come from, and
 * the inode cache's budget counts only records.
 */
const decodedFields = new Lru<Inode, InodeFields>(256);

/**
 * Writes a raw inode record (already checksummed) into the inode table; the transaction
 * records the inode as changed ({@link touchInode}).
 *
 * @example
 * ```ts ignore
 * await writeInode(tx, sb, gdt, 12, encodeInode(sb, 12, fields, old));
 * ```
 */
export async function writeInode(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  raw: Uint8Array,
): Promise<void> {
  if (raw.length !== sb.inodeSize) {
    throw new Ext4Error("INVALID", `inode record of ${raw.length} bytes, expected ${sb.inodeSize}`);
  }
  const { block, offset } = tableBlock(sb, gdt, ino);
  await tx.patchRecord(block, offset, raw);
  touchInode(tx, ino);
}

/** A copy of decoded fields that shares nothing with them: the times and `i_block` copied too. */
function copyInodeFields(f: InodeFields): InodeFields {
  return {
    ...f,
    atime: { sec: f.atime.sec, nsec: f.atime.nsec },
    ctime: { sec: f.ctime.sec, nsec: f.ctime.nsec },
    mtime: { sec: f.mtime.sec, nsec: f.mtime.nsec },
    crtime: { sec: f.crtime.sec, nsec: f.crtime.nsec },
    block: f.block.slice(),
  };
}
