/**
 * The facade's decoded caches (lib/ext4/filesystem.ts): the inode cache it shares with its
 * write path (lib/ext4/inode.ts), and what is derived from inode records — block maps, xattr
 * maps, lookups and the name maps of large unindexed directories — plus the metadata blocks of
 * a read-only filesystem; LRUs with hit and miss counts, each bounded in bytes by its share of
 * the filesystem object's cache budget (lib/block/cache_budget.ts). What an entry costs is
 * estimated from measurements of the objects it holds (Deno 2.9, V8 15).
 *
 * Invalidation is precise. A derived value is kept with the record object it was derived from
 * (its basis) and, on a writable filesystem, served only while that object is the cached record
 * of its inode. A commit
 * replaces the records of the inodes it touched (lib/ext4/inode.ts `touchInode`: a record
 * written, an extent node or directory block changed) and of any other inode whose record
 * bytes it changed, so exactly their derived values go; the rest — other files' maps, other
 * directories' lookups — stay.
 *
 * @module
 */

import { blocksWithin, type CacheBudget } from "../block/cache_budget.ts";
import { Lru } from "../block/lru.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import type { Inode } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { CommitBatch } from "../txn/transaction.ts";
import type { BlockRun } from "./file_map.ts";
import { type CacheCounts, InodeCache, inodeRecordWeight } from "./inode.ts";

/** Hits and misses of each of the facade's caches. */
export interface FsCacheCounts {
  /** Inode records (shared with the write path). */
  inodes: CacheCounts;
  /** Block maps. */
  maps: CacheCounts;
  /** Xattr maps. */
  xattrs: CacheCounts;
  /** Name lookups (parent directory and name). */
  lookups: CacheCounts;
  /** Name maps of large unindexed directories. */
  nameMaps: CacheCounts;
}

/** A value derived from an inode record, the record object it was derived from, its cost. */
interface Derived<V> {
  basis: Inode;
  value: V;
  /** Estimated bytes the entry holds (fixed when kept). */
  weight: number;
}

/** An LRU of derived values bounded in bytes, with its hit and miss counts. */
class DerivedCache<K, V> {
  readonly lru: Lru<K, Derived<V>>;
  /** The estimated bytes of an entry: its value under its key. */
  readonly weigh: (value: V, key: K) => number;
  hits = 0;
  misses = 0;

  constructor(bytes: number, weigh: (value: V, key: K) => number) {
    this.lru = new Lru(bytes, (d) => d.weight);
    this.weigh = weigh;
  }

  get counts(): CacheCounts {
    return { hits: this.hits, misses: this.misses };
  }
}

/** Estimated bytes of a block map: the array and its run objects (~64 bytes each). */
const mapWeight = (runs: BlockRun[]) => 136 + 64 * runs.length;
/** Estimated bytes of an xattr map: per entry the Map slot, the name and the value's buffer. */
function xattrWeight(map: Map<string, Uint8Array>): number {
  let bytes = 64;
  for (const [name, value] of map) bytes += 200 + name.length + value.length;
  return bytes;
}
/** Estimated bytes of a cached lookup: the Map entry, its key string and the derived record. */
const lookupWeight = (_ino: number, key: string) => 116 + key.length;
/** Estimated bytes of a name map; null (a directory too large to map) costs next to nothing. */
function nameMapWeight(map: Map<string, number> | null): number {
  let bytes = 64;
  for (const key of map?.keys() ?? []) bytes += 68 + key.length;
  return bytes;
}

/** The sizes of {@link FsCaches}. */
export interface FsCacheSizes {
  /** Bytes per cache (lib/block/cache_budget.ts `splitCacheBudget`). */
  budget: CacheBudget;
  /** At most this many inode records besides the budget's bound. */
  inodes?: number;
  /** At most this many metadata blocks (read-only filesystems) besides the budget's bound. */
  blocks?: number;
  /** Inode records are not checked against their checksums. */
  ignoreChecksums?: boolean;
  /** Commits change records (see {@link FsCaches}). */
  writable?: boolean;
}

/**
 * What an `Ext4` keeps decoded.
 *
 * @example
 * ```ts
 * import { FsCaches } from "./fs_cache.ts";
 * import { openMetadata } from "./super.ts";
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { sb, groups } = await openMetadata(device);
 * import { splitCacheBudget } from "../block/cache_budget.ts";
 * const caches = new FsCaches(sb, groups, { budget: splitCacheBudget(1 << 20, sb) });
 * const root = caches.inodeCache.keep(2, new Uint8Array(sb.inodeSize), caches.generation);
 * await caches.lookup(root, "x", () => Promise.resolve(12));
 * console.log(caches.cachedLookup(root, "x")); // 12
 * caches.forgetInode(2);
 * console.log(caches.cachedLookup(root, "x")); // undefined
 * await Deno.remove(img);
 * ```
 */
export class FsCaches {
  /** Decoded inode records, shared with the write path of a writable filesystem. */
  readonly inodeCache: InodeCache;
  /** Metadata blocks of a read-only filesystem (a writable one reads its shared cache). */
  readonly blocks: Lru<number, Uint8Array>;
  readonly #maps: DerivedCache<number, BlockRun[]>;
  readonly #xattrs: DerivedCache<number, Map<string, Uint8Array>>;
  /** Recent successful lookups: parent inode and name key -> child inode. */
  readonly #dentries: DerivedCache<string, number>;
  /** Name maps of large unindexed directories (null: too large to map, scanned instead). */
  readonly #dirIndex: DerivedCache<number, Map<string, number> | null>;
  readonly #sb: Superblock;
  readonly #groups: GroupDescriptorTable;
  /**
   * Records change (a writable filesystem): a derived value is served only with the record
   * object it was derived from. Without writes, every record of an inode is the same and a
   * derived value serves any (an open file's handle keeps its record after the cache let it go).
   */
  readonly #writable: boolean;
  /** Inode table start blocks in ascending order, with their groups (for invalidation). */
  #tables: { starts: number[]; groups: number[] } | null = null;

  /**
   * Caches for the filesystem of `sb` and `groups`, each bounded by its share of
   * `sizes.budget`; inode records are checked on decoding unless `ignoreChecksums`; `writable`
   * when commits change records.
   */
  constructor(sb: Superblock, groups: GroupDescriptorTable, sizes: FsCacheSizes) {
    this.#sb = sb;
    this.#groups = groups;
    this.#writable = sizes.writable ?? false;
    const budget = sizes.budget;
    const records = Math.floor(budget.inodes / inodeRecordWeight(sb.inodeSize));
    this.inodeCache = new InodeCache(sb, groups, Math.min(records, sizes.inodes ?? records), {
      ignoreChecksum: sizes.ignoreChecksums,
    });
    const blocks = blocksWithin(budget.blocks, sb.blockSize);
    this.blocks = new Lru(Math.min(blocks, sizes.blocks ?? blocks));
    this.#maps = new DerivedCache(budget.maps, mapWeight);
    this.#xattrs = new DerivedCache(budget.xattrs, xattrWeight);
    this.#dentries = new DerivedCache(budget.lookups, lookupWeight);
    this.#dirIndex = new DerivedCache(budget.nameMaps, nameMapWeight);
  }

  /** The count of changes so far (a record read before a change is not kept after it). */
  get generation(): number {
    return this.inodeCache.generation;
  }

  /** Hits and misses of every cache so far (for tests and benchmarks). */
  get counts(): FsCacheCounts {
    return {
      inodes: this.inodeCache.counts,
      maps: this.#maps.counts,
      xattrs: this.#xattrs.counts,
      lookups: this.#dentries.counts,
      nameMaps: this.#dirIndex.counts,
    };
  }

  /** The block map of `inode`, derived from that record object. */
  blockMap(inode: Inode, compute: () => Promise<BlockRun[]>): Promise<BlockRun[]> {
    return this.#derive(this.#maps, inode.ino, inode, compute);
  }

  /** The xattr map of `inode`, derived from that record object. */
  xattrMap(
    inode: Inode,
    compute: () => Promise<Map<string, Uint8Array>>,
  ): Promise<Map<string, Uint8Array>> {
    return this.#derive(this.#xattrs, inode.ino, inode, compute);
  }

  /**
   * The name map of directory `dir`, derived from that record object; `compute` builds it
   * within the bytes given, else returns null (remembered too: the directory is scanned).
   */
  nameMap(
    dir: Inode,
    compute: (maxBytes: number) => Promise<Map<string, number> | null>,
  ): Promise<Map<string, number> | null> {
    // An entry over half an LRU's capacity is not kept (lib/block/lru.ts).
    const maxBytes = Math.floor(this.#dirIndex.lru.capacity / 2) - 64;
    return this.#derive(this.#dirIndex, dir.ino, dir, () => compute(maxBytes));
  }

  /**
   * The cached lookup of `key` (a name key, lib/ext4/lookup.ts `nameKey`) in directory `dir`
   * (its current record object), counted as a hit; undefined when not cached (not counted:
   * {@link FsCaches.lookup} counts the miss).
   */
  cachedLookup(dir: Inode, key: string): number | undefined {
    const hit = this.#dentries.lru.get(`${dir.ino}/${key}`);
    if (!hit || !this.#current(hit.basis, dir)) return undefined;
    this.#dentries.hits++;
    return hit.value;
  }

  /** The lookup of `key` in directory `dir`: cached, else `compute`'s (kept when found). */
  async lookup(
    dir: Inode,
    key: string,
    compute: () => Promise<number | null>,
  ): Promise<number | null> {
    const hit = this.cachedLookup(dir, key);
    if (hit !== undefined) return hit;
    this.#dentries.misses++;
    const ino = await compute();
    if (ino !== null) this.#keep(this.#dentries, `${dir.ino}/${key}`, dir, ino);
    return ino;
  }

  async #derive<K, V>(
    cache: DerivedCache<K, V>,
    key: K,
    basis: Inode,
    compute: () => Promise<V>,
  ): Promise<V> {
    const hit = cache.lru.get(key);
    if (hit && this.#current(hit.basis, basis)) {
      cache.hits++;
      return hit.value;
    }
    cache.misses++;
    const value = await compute();
    this.#keep(cache, key, basis, value);
    return value;
  }

  /** True when a value derived from record `kept` serves a caller holding record `given`. */
  #current(kept: Inode, given: Inode): boolean {
    return kept === given || !this.#writable;
  }

  /** Keeps `value` while `basis` is (still) the cached record of its inode. */
  #keep<K, V>(cache: DerivedCache<K, V>, key: K, basis: Inode, value: V): void {
    if (!this.#writable || this.inodeCache.records.get(basis.ino) === basis) {
      cache.lru.set(key, { basis, value, weight: cache.weigh(value, key) });
    }
  }

  /** Forgets everything (the device changed under us, or the filesystem closes). */
  clear(): void {
    this.inodeCache.clear();
    this.#dirIndex.lru.clear();
    this.#dentries.lru.clear();
    this.#maps.lru.clear();
    this.blocks.clear();
    this.#xattrs.lru.clear();
  }

  /** Forgets inode `ino`'s record, all derived from it, and every lookup. */
  forgetInode(ino: number): void {
    this.inodeCache.changed(ino);
    this.#maps.lru.delete(ino);
    this.#xattrs.lru.delete(ino);
    this.#dirIndex.lru.delete(ino);
    this.#dentries.lru.clear();
  }

  /** Forgets block `block`. */
  forgetBlock(block: number): void {
    this.inodeCache.changed();
    this.blocks.delete(block);
  }

  /**
   * A transaction committed (the shared cache already holds its images; `null`: a commit
   * failed and the shared cache was emptied). The inodes it touched get their new records
   * from lib/ext4/inode.ts right after; here, every cached record in an inode table block the
   * batch wrote whose bytes changed is replaced too, whoever wrote it.
   */
  committed(batch: CommitBatch | null): void {
    if (batch === null) {
      this.clear();
      return;
    }
    if (batch.metadata.length === 0 && batch.data.length === 0 && !batch.patches?.length) return;
    this.inodeCache.changed();
    for (const m of batch.metadata) this.#refreshRecordsIn(m.block, m.bytes, m.changed, batch);
    // Record patches went into the sink's image of their blocks (lib/txn/transaction.ts).
    for (const p of batch.patches ?? []) {
      if (p.image) {
        this.#refreshRecordsIn(p.block, p.image, [p.offset, p.offset + p.bytes.length], batch);
      }
    }
  }

  /**
   * Replaces the cached records in `block` (if an inode table block) that `image` changes:
   * those within the byte ranges `changed` when the transaction knows them (a record it wrote
   * whole), else every cached record of the block.
   */
  #refreshRecordsIn(
    block: number,
    image: Uint8Array,
    changed: readonly number[] | undefined,
    commit: object,
  ): void {
    const sb = this.#sb;
    if (!this.#tables) {
      const order: [number, number][] = [];
      for (let g = 0; g < this.#groups.length; g++) {
        order.push([this.#groups.get(g).inodeTable, g]);
      }
      order.sort((a, b) => a[0] - b[0]);
      this.#tables = { starts: order.map((o) => o[0]), groups: order.map((o) => o[1]) };
    }
    const { starts, groups } = this.#tables;
    let lo = 0;
    let hi = starts.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= block) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (at < 0 || block >= starts[at] + sb.inodeTableBlocksPerGroup) return;
    const isz = sb.inodeSize;
    const perBlock = sb.blockSize / isz;
    const first = groups[at] * sb.inodesPerGroup + (block - starts[at]) * perBlock + 1;
    if (!changed) {
      this.#refreshRecords(first, image, 0, perBlock, commit);
      return;
    }
    for (let k = 0; k + 1 < changed.length; k += 2) {
      const from = Math.max(0, Math.floor(changed[k] / isz));
      const to = Math.min(perBlock, Math.ceil(changed[k + 1] / isz));
      this.#refreshRecords(first, image, from, to, commit);
    }
  }

  /**
   * Replaces the cached records `from..to` of an inode table block whose bytes `image` changes
   * (at the commit `commit` names).
   */
  #refreshRecords(
    first: number,
    image: Uint8Array,
    from: number,
    to: number,
    commit: object,
  ): void {
    const isz = this.#sb.inodeSize;
    // One view for the block; each record compares through its own (no view per record).
    let view: DataView | undefined;
    for (let i = from; i < to; i++) {
      const cached = this.inodeCache.records.get(first + i);
      if (!cached) continue;
      view ??= new DataView(image.buffer, image.byteOffset, image.byteLength);
      if (cached.sameBytesAt(view, i * isz)) continue;
      this.inodeCache.changed(first + i, image.subarray(i * isz, (i + 1) * isz), commit);
    }
  }
}
