/**
 * The facade's decoded caches (lib/ext4/filesystem.ts): inodes, block maps, metadata blocks,
 * xattr maps, lookups and the name maps of large unindexed directories, bounded LRUs with one
 * generation counter, and their precise invalidation when a transaction commits.
 *
 * @module
 */

import { Lru } from "../block/lru.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import type { Inode } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { CommitBatch } from "../txn/transaction.ts";
import type { BlockRun } from "./file_map.ts";

/**
 * What an `Ext4` keeps decoded. A value computed from blocks read before a commit is not cached
 * after it: {@link FsCaches.remember} checks the {@link FsCaches.generation} every change bumps.
 *
 * @example
 * ```ts
 * import { FsCaches } from "./fs_cache.ts";
 * import { openMetadata } from "./super.ts";
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const { sb, groups } = await openMetadata(new MemoryBlockDevice(await Deno.readFile(img)));
 * const caches = new FsCaches(sb, groups, { inodes: 16, blocks: 16 });
 * console.log(await caches.remember(caches.dentries, "2/x", () => Promise.resolve(12))); // 12
 * caches.forgetInode(12);
 * console.log(caches.dentries.get("2/x")); // undefined
 * await Deno.remove(img);
 * ```
 */
export class FsCaches {
  /** Decoded inodes by number. */
  readonly inodes: Lru<number, Inode>;
  /** Block maps (extent trees or indirect maps) by inode. */
  readonly maps = new Lru<number, BlockRun[]>(512);
  /** Metadata blocks of a read-only filesystem (a writable one reads its shared cache). */
  readonly blocks: Lru<number, Uint8Array>;
  /** Xattr maps by inode. */
  readonly xattrs = new Lru<number, Map<string, Uint8Array>>(512);
  /** Recent successful lookups: parent inode and name bytes -> child inode. */
  readonly dentries = new Lru<string, number>(16384);
  /** Name maps of large unindexed directories (lookups without an htree). */
  readonly dirIndex = new Lru<number, Map<string, number>>(8);
  readonly #sb: Superblock;
  readonly #groups: GroupDescriptorTable;
  /**
   * Bumped by every commit: a decoded structure computed from blocks read before a commit is
   * not cached after it (it may be stale).
   */
  #generation = 0;
  /** Inode table start blocks in ascending order, with their groups (for invalidation). */
  #tables: { starts: number[]; groups: number[] } | null = null;

  /** Caches for the filesystem of `sb` and `groups`, of `sizes` inodes and blocks. */
  constructor(
    sb: Superblock,
    groups: GroupDescriptorTable,
    sizes: { inodes: number; blocks: number },
  ) {
    this.#sb = sb;
    this.#groups = groups;
    this.inodes = new Lru(sizes.inodes);
    this.blocks = new Lru(sizes.blocks);
  }

  /** The count of changes so far. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * The cached value of `key` in `lru`, else `compute`'s, kept unless something changed while
   * it was computed (or `keep` says no).
   */
  async remember<K, V>(
    lru: Lru<K, V>,
    key: K,
    compute: () => Promise<V>,
    keep: (value: V) => boolean = () => true,
  ): Promise<V> {
    const hit = lru.get(key);
    if (hit !== undefined) return hit;
    const generation = this.#generation;
    const value = await compute();
    if (keep(value) && generation === this.#generation) lru.set(key, value);
    return value;
  }

  /** Forgets everything (the device changed under us, or the filesystem closes). */
  clear(): void {
    this.#generation++;
    this.dirIndex.clear();
    this.dentries.clear();
    this.inodes.clear();
    this.maps.clear();
    this.blocks.clear();
    this.xattrs.clear();
  }

  /** Forgets inode `ino`'s record, block map, xattrs and name map, and every lookup. */
  forgetInode(ino: number): void {
    this.#generation++;
    this.inodes.delete(ino);
    this.maps.delete(ino);
    this.xattrs.delete(ino);
    this.dirIndex.delete(ino);
    this.dentries.clear();
  }

  /** Forgets block `block`. */
  forgetBlock(block: number): void {
    this.#generation++;
    this.blocks.delete(block);
  }

  /**
   * A transaction ended (the shared cache already holds its images): forget what was decoded
   * from the blocks it changed. Inode records live only in inode tables, so only the inodes of
   * changed table blocks go; maps, xattrs, lookups and name maps are derived from blocks the
   * batch does not name by owner, so they all go (cheap to rebuild from the cached blocks).
   * `null`: an unknown set of blocks changed (a batch), every inode goes too.
   */
  committed(batch: CommitBatch | null): void {
    if (batch && batch.metadata.length === 0 && batch.data.length === 0) return;
    this.#generation++;
    this.maps.clear();
    this.xattrs.clear();
    this.dentries.clear();
    this.dirIndex.clear();
    if (batch === null) {
      this.inodes.clear();
      return;
    }
    for (const m of batch.metadata) this.#forgetInodesIn(m.block);
  }

  /** Drops the cached inodes whose records live in `block`, if it is an inode table block. */
  #forgetInodesIn(block: number): void {
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
    const perBlock = sb.blockSize / sb.inodeSize;
    const first = groups[at] * sb.inodesPerGroup + (block - starts[at]) * perBlock + 1;
    for (let i = 0; i < perBlock; i++) this.inodes.delete(first + i);
  }
}
