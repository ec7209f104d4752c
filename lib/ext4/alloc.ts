/**
 * Block and inode allocation: goal-directed, contiguous-where-possible block runs for files;
 * Orlov-like spreading of new directories across groups and files near their parent; freeing
 * with the same checks. Every change goes through a {@link Transaction}: bitmaps (initialised
 * on the first use of an uninit group), group descriptor counters, flags and checksums, and
 * the superblock's free counts and checksum. ENOSPC is detected before anything changes.
 *
 * Every allocation is cross-checked as cheaply as the kernel does it: a block run must not
 * overlap the system zones (superblock and descriptor copies, bitmaps, inode tables, the
 * journal), an inode the bitmap calls free must have an unused record. A mismatch means a
 * damaged bitmap: the operation's transaction is discarded, the error is recorded in the
 * superblock (see fs_error.ts) and a {@link CorruptError} (errno EUCLEAN) is thrown; nothing
 * is overwritten.
 *
 * Over 700 lines because block and inode allocation share one per-filesystem object: the
 * group walk, the uninit-group initialisation, the bitmap views and the system-zone check that
 * both go through.
 *
 * @module
 */

import {
  baseMetaBlocks,
  blocksInGroup,
  clearBit,
  findOne,
  findZero,
  findZeroRun,
  hasGroupChecksums,
  initialBlockBitmap,
  initialInodeBitmap,
  setBit,
  setBlockBitmapChecksum,
  setInodeBitmapChecksum,
  testBit,
} from "../ondisk/bitmap.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { Compat, featureSupport, Incompat } from "../ondisk/features.ts";
import { type FsErrorInfo, markRecorded, persistFsError } from "./fs_error.ts";
import {
  descriptorBlockLocation,
  type GroupDescriptor,
  groupDescriptorChecksum,
  type GroupDescriptorTable,
  groupFirstBlock,
  GroupFlags,
} from "../ondisk/group_descriptor.ts";
import { parseInode } from "../ondisk/inode.ts";
import { readInodeRaw, touchInode } from "./inode.ts";
import { journalInodeRuns } from "./journal.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { AllocateBlocksOptions, BlockRunAllocator, Extent } from "./block_runs.ts";
import type { Transaction } from "../txn/transaction.ts";

export type { AllocateBlocksOptions, Extent } from "./block_runs.ts";

/** Options for {@link Allocator.allocateInode}. */
export interface AllocateInodeOptions {
  /** A directory: spread across groups (Orlov); a file: near its parent. */
  dir: boolean;
  /** Group of the parent directory's inode. */
  parentGroup?: number;
  /** The parent is the root directory: top-level directories are spread widest. */
  topLevel?: boolean;
}

/** Longest extent of initialised blocks ext4 can describe. */
export const MAX_EXTENT_LENGTH = 32768;

/**
 * Throws unless ext4ts can keep a filesystem with these features consistent when writing:
 * `READ_ONLY` naming the reasons (bigalloc, quota, encrypt, …), `NEEDS_RECOVERY` while the
 * journal holds unreplayed transactions.
 *
 * @example
 * ```ts ignore
 * assertWritable(sb); // throws Ext4Error("READ_ONLY", "cannot write: bigalloc allocation is not implemented")
 * ```
 */
export function assertWritable(sb: Superblock): void {
  const verdict = featureSupport(sb);
  if (verdict.level !== "rw") {
    throw new Ext4Error("READ_ONLY", `cannot write: ${verdict.reasons.join("; ")}`);
  }
  if (sb.incompat & Incompat.RECOVER) {
    throw new Ext4Error("NEEDS_RECOVERY", "cannot write: the journal needs recovery");
  }
}

interface GroupTouch {
  blockBitmap?: Uint8Array;
  inodeBitmap?: Uint8Array;
  /**
   * Blocks of the group freed in this transaction (the kernel's "freed but not committed"
   * bitmap, mballoc.c `ext4_mb_free_metadata`): free in the bitmap, yet not handed out again
   * before the transaction commits. Were they, a crash before the commit could leave the old
   * owner (still pointing at them on disk) reading the new owner's data. Every commit is
   * durable when it returns (the sinks flush), so "after the commit" is soon enough; a journal
   * that commits asynchronously would have to wait for the commit to be durable.
   */
  freed?: Uint8Array;
  /** Number of bits set in `freed`. */
  freedCount?: number;
  /** The bytes of `freed` that may have bits set: `[freedLo, freedHi)`. */
  freedLo?: number;
  freedHi?: number;
}

/**
 * Blocks of one group freed by committed transactions not durable yet, and the bytes of
 * `bits` that may have bits set (`[lo, hi)`): merged and read over that span only, not the
 * whole bitmap-sized array (an unlink frees a few blocks of a 32 768-block group).
 */
interface HeldBlocks {
  bits: Uint8Array;
  count: number;
  lo: number;
  hi: number;
}

/**
 * Allocates and frees blocks and inodes of one filesystem. Holds the live superblock and
 * descriptor table (shared with the reader): they change in memory as the transaction runs,
 * are restored if it aborts, and are written with fresh checksums when it commits.
 *
 * @example
 * ```ts ignore
 * const alloc = new Allocator(sb, gdt);
 * const tx = cache.begin();
 * const runs = await alloc.allocateBlocks(tx, goal, 16, { contiguousPreferred: true });
 * const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
 * await tx.commit();
 * ```
 */
export class Allocator implements BlockRunAllocator {
  /** The superblock whose free counts the allocator keeps up to date. */
  readonly sb: Superblock;
  /** The group descriptor table whose bitmaps and counters it allocates from. */
  readonly gdt: GroupDescriptorTable;
  #touched = new WeakMap<Transaction, Map<number, GroupTouch>>();
  /**
   * Blocks freed by committed transactions whose commit is not durable yet (group commit,
   * lib/txn/group_commit.ts), by the compound they joined: held like a transaction's own
   * frees until that compound is on disk.
   */
  #held = new Map<object, Map<number, HeldBlocks>>();
  #holding = new WeakSet<Transaction>();
  #metaRanges: [number, number][][] | null = null;
  /**
   * The descriptors' free blocks and inodes, summed (null: to sum again). Kept by
   * {@link #countFree}; forgotten when a transaction aborts (its guards restore the
   * descriptors' bytes behind the sums' back).
   */
  #freeBlocks: number | null = null;
  #freeInodes: number | null = null;
  /** The internal journal's block runs (a system zone, as in the kernel's block_validity). */
  #journalZone: Extent[] | null = null;
  /** Only frees (see the constructor): allocation is refused. */
  readonly #releaseOnly: boolean;
  /**
   * Called with each group whose freed blocks have just become allocatable (after their commit,
   * or once it is durable), as the kernel's free path clears a group's "trimmed" mark: FITRIM's
   * memory of trimmed groups (lib/ext4/trim.ts).
   */
  onFreedReusable: ((group: number) => void) | null = null;

  /**
   * Refuses (Ext4Error) a filesystem it cannot safely write and (CorruptError) a table with bad
   * group descriptor checksums. With `releaseOnly` it only frees blocks and inodes (the orphan
   * release after a journal replay, lib/ext4/orphans_replay.ts): features that ext4ts cannot
   * allocate on (bigalloc, quota, …) are accepted, and freeing counts clusters with bigalloc.
   */
  constructor(
    sb: Superblock,
    gdt: GroupDescriptorTable,
    options: { releaseOnly?: boolean } = {},
  ) {
    this.#releaseOnly = options.releaseOnly ?? false;
    if (!this.#releaseOnly) assertWritable(sb);
    else if (sb.incompat & Incompat.RECOVER) {
      throw new Ext4Error("NEEDS_RECOVERY", "cannot write: the journal needs recovery");
    }
    if (gdt.badChecksums.length > 0) {
      throw new CorruptError(
        "group descriptor table",
        `checksum mismatch in group(s) ${gdt.badChecksums.slice(0, 8).join(", ")}: run e2fsck`,
      );
    }
    if (gdt.length !== sb.groupCount) {
      throw new CorruptError(
        "group descriptor table",
        `${gdt.length} descriptors for ${sb.groupCount} groups`,
      );
    }
    this.sb = sb;
    this.gdt = gdt;
  }

  /** Refuses allocation by an allocator made to release only. */
  #checkAllocating(): void {
    if (this.#releaseOnly) {
      throw new Ext4Error("READ_ONLY", "this allocator only releases blocks and inodes");
    }
  }

  /** Free blocks (clusters with bigalloc), summed over the group descriptors. */
  get freeBlockCount(): number {
    return this.#freeBlocks ??= this.#sumDescriptors((gd) => gd.freeBlocksCount);
  }

  /** Free inodes, summed over the group descriptors. */
  get freeInodeCount(): number {
    return this.#freeInodes ??= this.#sumDescriptors((gd) => gd.freeInodesCount);
  }

  /** `count` of every group descriptor, summed (indexed: for-of allocated iterator results). */
  #sumDescriptors(count: (gd: GroupDescriptor) => number): number {
    const gds = this.gdt.descriptors;
    let n = 0;
    for (let g = 0; g < gds.length; g++) n += count(gds[g]);
    return n;
  }

  /**
   * Changes group `g`'s free block and inode counts by `blocks` and `inodes`, and the sums
   * above with them: every commit writes the sums into the superblock, and summing 8 192
   * descriptors (a 1 TiB filesystem) per create cost more than the create.
   */
  #countFree(g: number, blocks: number, inodes: number): void {
    const gd = this.gdt.get(g);
    if (blocks !== 0) {
      gd.freeBlocksCount = gd.freeBlocksCount + blocks;
      if (this.#freeBlocks !== null) this.#freeBlocks += blocks;
    }
    if (inodes !== 0) {
      gd.freeInodesCount = gd.freeInodesCount + inodes;
      if (this.#freeInodes !== null) this.#freeInodes += inodes;
    }
  }

  /** The group a block belongs to. */
  groupOfBlock(block: number): number {
    return Math.floor((block - this.sb.firstDataBlock) / this.sb.blocksPerGroup);
  }

  /** The group an inode belongs to. */
  groupOfInode(ino: number): number {
    return Math.floor((ino - 1) / this.sb.inodesPerGroup);
  }

  /**
   * Allocates `count` blocks near `goal`, as extents of at most {@link MAX_EXTENT_LENGTH}
   * blocks in allocation order. With `contiguousPreferred`, one run of the whole count is
   * looked for first (from the goal on, then in later groups). Throws `NO_SPACE` without
   * changing anything when fewer than `count` blocks are free.
   */
  async allocateBlocks(
    tx: Transaction,
    goal: number,
    count: number,
    options: AllocateBlocksOptions = {},
  ): Promise<Extent[]> {
    this.#checkAllocating();
    if (!Number.isSafeInteger(count) || count <= 0) {
      throw new Ext4Error("INVALID", `cannot allocate ${count} blocks`);
    }
    const free = this.freeBlockCount;
    const pending = this.#freedTotal(tx);
    const usable = (options.keepReserved ? free - this.sb.reservedBlocksCount : free) - pending;
    if (count > usable) {
      throw new Ext4Error(
        "NO_SPACE",
        `no space left: ${count} blocks wanted, ${Math.max(0, usable)} free${
          options.keepReserved ? " outside the reserved blocks" : ""
        }${pending > 0 ? ` (${pending} freed by this transaction, reusable once it commits)` : ""}`,
      );
    }
    const sb = this.sb;
    const groups = sb.groupCount;
    if (!Number.isSafeInteger(goal) || goal < sb.firstDataBlock || goal >= sb.blocksCount) {
      goal = sb.firstDataBlock;
    }
    const goalGroup = this.groupOfBlock(goal);
    const goalOffset = goal - groupFirstBlock(sb, goalGroup);
    const out: Extent[] = [];
    return await tx.discardOnError(async () => {
      await this.#loadSystemZones(tx);
      if (options.contiguousPreferred && count > 1) {
        for (let i = 0; i < groups; i++) {
          const g = (goalGroup + i) % groups;
          if (this.#available(tx, g) < count) continue;
          const bm = await this.#allocationView(tx, g);
          const size = blocksInGroup(sb, g);
          let start = findZeroRun(bm, i === 0 ? goalOffset : 0, size, count);
          if (start < 0 && i === 0 && goalOffset > 0) start = findZeroRun(bm, 0, size, count);
          if (start >= 0) {
            await this.#takeBlocks(tx, g, start, count, out);
            return out;
          }
        }
      }
      let remaining = count;
      // Groups from the goal's on, then the goal's group again from its start.
      for (let i = 0; i <= groups && remaining > 0; i++) {
        const g = (goalGroup + i) % groups;
        if (this.#available(tx, g) === 0) continue;
        const size = blocksInGroup(sb, g);
        const from = i === 0 ? goalOffset : 0;
        const to = i === groups ? goalOffset : size;
        let pos = from;
        // Taking a run changes bits before `pos` only: one view of the group serves the walk.
        const bm = await this.#allocationView(tx, g);
        while (remaining > 0 && pos < to) {
          const start = findZero(bm, pos, to);
          if (start < 0) break;
          let end = start + 1;
          while (end < to && end - start < remaining && !testBit(bm, end)) end++;
          await this.#takeBlocks(tx, g, start, end - start, out);
          remaining -= end - start;
          pos = end;
        }
      }
      if (remaining > 0) {
        throw new CorruptError(
          "block bitmaps",
          `descriptors count ${free} free blocks but the bitmaps hold fewer`,
        );
      }
      return out;
    });
  }

  /**
   * Frees `count` blocks from `start`. Every block must be allocated and must not be
   * filesystem metadata (CorruptError otherwise, and the transaction is aborted). With
   * `metadata`, the blocks' pending images are dropped and revoked (freed extent or
   * directory blocks).
   */
  async freeBlocks(
    tx: Transaction,
    start: number,
    count: number,
    options: { metadata?: boolean } = {},
  ): Promise<void> {
    const sb = this.sb;
    if (
      !Number.isSafeInteger(start) || !Number.isSafeInteger(count) || count <= 0 ||
      start < sb.firstDataBlock || start + count > sb.blocksCount
    ) {
      throw new Ext4Error(
        "INVALID",
        `cannot free blocks ${start}+${count}: outside the filesystem`,
      );
    }
    await tx.discardOnError(async () => {
      await this.#loadSystemZones(tx);
      let block = start;
      const end = start + count;
      while (block < end) {
        const g = this.groupOfBlock(block);
        const first = groupFirstBlock(sb, g);
        const upto = Math.min(end, first + blocksInGroup(sb, g));
        const meta = this.#metadataOverlap(g, block - first, upto - block);
        if (meta) {
          await this.#fail(
            tx,
            { func: "freeBlocks", block },
            new CorruptError(
              `block bitmap of group ${g}`,
              `freeing blocks ${block}+${upto - block}, which overlap ${meta}`,
            ),
          );
        }
        // Bits are clusters (blocks without bigalloc); with bigalloc a cluster this
        // transaction already freed (for another block of it) is not freed twice.
        const ratio = sb.clusterSize / sb.blockSize;
        const lo = Math.floor((block - first) / ratio);
        const hi = Math.floor((upto - 1 - first) / ratio) + 1;
        const held = ratio > 1 ? this.#touched.get(tx)?.get(g)?.freed : undefined;
        const view = await this.#blockBitmapView(tx, g);
        if (ratio > 1 && (this.gdt.get(g).flags & GroupFlags.BLOCK_UNINIT)) {
          throw new CorruptError(
            `group descriptor ${g}`,
            `freeing block ${block} of an uninit group`,
          );
        }
        let clusters = 0;
        for (let c = lo; c < hi; c++) {
          if (held && testBit(held, c) && !testBit(view, c)) continue;
          if (!testBit(view, c)) {
            throw new CorruptError(
              `block bitmap of group ${g}`,
              `freeing block ${first + c * ratio}, which is already free`,
            );
          }
          clusters++;
        }
        const bm = await this.#writableBlockBitmap(tx, g);
        for (let c = lo; c < hi; c++) clearBit(bm, c);
        this.#holdFreed(tx, g, lo, hi - lo);
        this.#countFree(g, clusters, 0);
        if (options.metadata) { for (let b = block; b < upto; b++) tx.forget(b); }
        block = upto;
      }
      this.#touchSuper(tx);
    });
  }

  /**
   * Allocates an inode: directories spread across groups with many free inodes and blocks
   * and few directories (Orlov); files in their parent's group or near it. Updates the
   * bitmap, counters, used-directory count and `itable_unused`, zeroing inode records that
   * come into use in a table not yet zeroed. Throws `NO_SPACE` (nothing changed) when no
   * inode is free.
   */
  async allocateInode(tx: Transaction, options: AllocateInodeOptions): Promise<number> {
    this.#checkAllocating();
    const sb = this.sb;
    const groups = sb.groupCount;
    if (this.freeInodeCount === 0) {
      throw new Ext4Error("NO_SPACE", "no space left: no free inodes");
    }
    const parent = Math.min(Math.max(0, options.parentGroup ?? 0), groups - 1);
    return await tx.discardOnError(async () => {
      const order = options.dir
        ? this.#dirGroups(parent, options.topLevel ?? parent === 0)
        : this.#fileGroups(parent);
      for (const g of order) {
        const gd = this.gdt.get(g);
        if (gd.freeInodesCount === 0) continue;
        const view = await this.#inodeBitmapView(tx, g);
        const from = g === 0 ? sb.firstIno - 1 : 0;
        const bit = findZero(view, from, sb.inodesPerGroup);
        if (bit < 0) {
          throw new CorruptError(
            `inode bitmap of group ${g}`,
            `descriptor counts ${gd.freeInodesCount} free inodes, bitmap none`,
          );
        }
        const ino = g * sb.inodesPerGroup + bit + 1;
        await this.#checkInodeUnused(tx, g, ino);
        const bm = await this.#writableInodeBitmap(tx, g);
        setBit(bm, bit);
        this.#countFree(g, 0, -1);
        if (options.dir) gd.usedDirsCount = gd.usedDirsCount + 1;
        if (hasGroupChecksums(sb)) {
          const used = sb.inodesPerGroup - gd.itableUnused;
          if (bit >= used) {
            if (!(gd.flags & GroupFlags.ITABLE_ZEROED)) {
              await this.#zeroInodes(tx, g, used, bit + 1);
            }
            gd.itableUnused = sb.inodesPerGroup - bit - 1;
          }
          // The kernel initialises the block bitmap of a group whose inodes come into use.
          if (gd.flags & GroupFlags.BLOCK_UNINIT) await this.#writableBlockBitmap(tx, g);
        }
        this.#touchSuper(tx);
        return ino;
      }
      throw new CorruptError(
        "group descriptors",
        "the superblock counts free inodes but no group has one",
      );
    });
  }

  /** Frees inode `ino` (its bit must be set); `dir` lowers the group's directory count. */
  async freeInode(tx: Transaction, ino: number, options: { dir: boolean }): Promise<void> {
    const sb = this.sb;
    if (!Number.isSafeInteger(ino) || ino < sb.firstIno || ino > sb.inodesCount) {
      throw new Ext4Error("INVALID", `cannot free inode ${ino}`);
    }
    await tx.discardOnError(async () => {
      const g = this.groupOfInode(ino);
      const bit = (ino - 1) % sb.inodesPerGroup;
      const view = await this.#inodeBitmapView(tx, g);
      if (!testBit(view, bit)) {
        throw new CorruptError(
          `inode bitmap of group ${g}`,
          `freeing inode ${ino}, which is already free`,
        );
      }
      const gd = this.gdt.get(g);
      if (options.dir && gd.usedDirsCount === 0) {
        throw new CorruptError(
          `group descriptor ${g}`,
          `freeing directory ${ino} but no directory is counted`,
        );
      }
      const bm = await this.#writableInodeBitmap(tx, g);
      clearBit(bm, bit);
      this.#countFree(g, 0, 1);
      if (options.dir) gd.usedDirsCount = gd.usedDirsCount - 1;
      this.#touchSuper(tx);
    });
  }

  /** True when `block` is marked in use in its group's (effective) block bitmap. */
  async isBlockInUse(tx: Transaction, block: number): Promise<boolean> {
    const g = this.groupOfBlock(block);
    const bm = await this.#blockBitmapView(tx, g);
    return testBit(bm, block - groupFirstBlock(this.sb, g));
  }

  /** True when inode `ino` is marked in use. */
  async isInodeInUse(tx: Transaction, ino: number): Promise<boolean> {
    const g = this.groupOfInode(ino);
    const bm = await this.#inodeBitmapView(tx, g);
    return testBit(bm, (ino - 1) % this.sb.inodesPerGroup);
  }

  /**
   * The free runs of group `g` that allocation could hand out in `tx` (blocks freed by
   * commits not durable yet count as in use), as the kernel's trim walks its buddy bitmap:
   * each run starts at a bit in `[from, to]` and goes on to the next bit in use, past `to`
   * if it must. A run over the system zones is a damaged bitmap: CorruptError (recorded).
   */
  async freeRuns(tx: Transaction, g: number, from: number, to: number): Promise<Extent[]> {
    await this.#loadSystemZones(tx);
    const bm = await this.#allocationView(tx, g);
    const size = blocksInGroup(this.sb, g);
    const first = groupFirstBlock(this.sb, g);
    const runs: Extent[] = [];
    for (let pos = from; pos <= to;) {
      const start = findZero(bm, pos, Math.min(to + 1, size));
      if (start < 0) break;
      const end = findOne(bm, start, size);
      const meta = this.#metadataOverlap(g, start, end - start);
      if (meta) {
        await this.#fail(
          tx,
          { func: "freeRuns", block: first + start },
          new CorruptError(
            `block bitmap of group ${g}`,
            `marks blocks ${first + start}+${end - start} free, but they overlap ${meta}`,
          ),
        );
      }
      runs.push({ start: first + start, length: end - start });
      pos = end + 1;
    }
    return runs;
  }

  // ---- group choice ----

  /** Orlov-like: top-level directories go to roomy groups with few directories. */
  *#dirGroups(parent: number, topLevel: boolean): Generator<number> {
    const groups = this.sb.groupCount;
    const gds = this.gdt.descriptors;
    const avgInodes = this.freeInodeCount / groups;
    const avgBlocks = this.freeBlockCount / groups;
    const dirs = this.#sumDescriptors((gd) => gd.usedDirsCount);
    const avgDirs = dirs / groups;
    if (topLevel) {
      // Deterministic spread: start where the directory count points, take the roomy group
      // with the fewest directories.
      const start = (dirs * 2654435761 >>> 0) % groups;
      let best = -1;
      for (let i = 0; i < groups; i++) {
        const g = (start + i) % groups;
        const gd = gds[g];
        if (gd.freeInodesCount < avgInodes || gd.freeBlocksCount < avgBlocks) continue;
        if (best < 0 || gd.usedDirsCount < gds[best].usedDirsCount) best = g;
      }
      if (best >= 0) yield best;
    } else {
      const maxDirs = avgDirs + Math.max(1, Math.floor(this.sb.inodesPerGroup / 16));
      for (let i = 0; i < groups; i++) {
        const g = (parent + i) % groups;
        const gd = gds[g];
        if (
          gd.usedDirsCount < maxDirs && gd.freeInodesCount >= avgInodes / 4 &&
          gd.freeBlocksCount >= avgBlocks / 4 && gd.freeInodesCount > 0
        ) {
          yield g;
          break;
        }
      }
    }
    for (let i = 0; i < groups; i++) yield (parent + i) % groups;
  }

  /**
   * Files: the parent's group, then a quadratic probe, then every group in turn — generated as
   * the caller goes (it usually stops at the first), not listed: a list of every group per
   * create was most of a create's cost on a filesystem of thousands of groups.
   */
  *#fileGroups(parent: number): Generator<number> {
    const groups = this.sb.groupCount;
    const gds = this.gdt.descriptors;
    if (gds[parent].freeInodesCount > 0 && gds[parent].freeBlocksCount > 0) yield parent;
    for (let step = 1, g = parent; step < groups; step *= 2) {
      g = (g + step) % groups;
      if (gds[g].freeInodesCount > 0 && gds[g].freeBlocksCount > 0) yield g;
    }
    for (let i = 0; i < groups; i++) yield (parent + i) % groups;
  }

  // ---- bitmaps in the transaction ----

  #touch(tx: Transaction, g: number): GroupTouch {
    let groups = this.#touched.get(tx);
    if (!groups) {
      groups = new Map();
      this.#touched.set(tx, groups);
      // The guards put the descriptors back: the sums are counted again when next asked.
      tx.onAbort(() => {
        this.#freeBlocks = null;
        this.#freeInodes = null;
      });
    }
    let t = groups.get(g);
    if (!t) {
      t = {};
      groups.set(g, t);
      const gd = this.gdt.get(g);
      tx.guard(gd.bytes);
      const touch = t;
      tx.beforeCommit(`group:${g}`, async () => {
        if (touch.blockBitmap) setBlockBitmapChecksum(this.sb, gd, touch.blockBitmap);
        if (touch.inodeBitmap) setInodeBitmapChecksum(this.sb, gd, touch.inodeBitmap);
        const sum = groupDescriptorChecksum(this.sb, gd);
        if (sum !== undefined) gd.checksum = sum;
        const perBlock = this.sb.blockSize / this.sb.descSize;
        const block = descriptorBlockLocation(this.sb, Math.floor(g / perBlock));
        await tx.patchUnshared(block, (g % perBlock) * this.sb.descSize, gd.bytes);
      });
    }
    return t;
  }

  #touchSuper(tx: Transaction): void {
    const sb = this.sb;
    tx.guard(sb.bytes);
    tx.beforeCommit("superblock", async () => {
      // The superblock counts blocks, the descriptors clusters (the same without bigalloc).
      sb.freeBlocksCount = this.freeBlockCount * (sb.clusterSize / sb.blockSize);
      sb.freeInodesCount = this.freeInodeCount;
      sb.updateChecksum();
      const bs = sb.blockSize;
      await tx.patchUnshared(Math.floor(1024 / bs), 1024 % bs, sb.bytes);
    });
  }

  /**
   * Free blocks of group `g` that `tx` may allocate: not those it freed itself, nor those
   * committed transactions freed whose commit is not durable yet.
   */
  #available(tx: Transaction, g: number): number {
    let held = 0;
    for (const groups of this.#held.values()) held += groups.get(g)?.count ?? 0;
    return this.gdt.get(g).freeBlocksCount - (this.#touched.get(tx)?.get(g)?.freedCount ?? 0) -
      held;
  }

  /** Blocks freed and not yet reusable (by `tx`, or committed but not durable), over every group. */
  #freedTotal(tx: Transaction): number {
    let n = 0;
    for (const t of this.#touched.get(tx)?.values() ?? []) n += t.freedCount ?? 0;
    return n + this.heldBlocks;
  }

  /**
   * Blocks freed by committed transactions whose commit is not durable yet (group commit):
   * free on disk soon, but not allocatable until then. A writer that runs out of space while
   * some are held commits and tries again, as ext4's `ext4_should_retry_alloc` forces a
   * journal commit.
   */
  get heldBlocks(): number {
    let n = 0;
    for (const groups of this.#held.values()) for (const h of groups.values()) n += h.count;
    return n;
  }

  /**
   * Once `tx` committed: its frees are allocatable at once when the commit is durable, else
   * held until the compound it joined is (see {@link #held}).
   */
  #holdUntilDurable(tx: Transaction): void {
    const epoch = tx.cache.durabilityEpoch;
    const touched = this.#touched.get(tx);
    if (!touched) return;
    if (!epoch) {
      for (const [g, t] of touched) if (t.freed) this.onFreedReusable?.(g);
      return;
    }
    let groups = this.#held.get(epoch);
    if (!groups) {
      const fresh = new Map<number, HeldBlocks>();
      groups = fresh;
      this.#held.set(epoch, fresh);
      tx.cache.whenDurable(epoch, () => {
        this.#held.delete(epoch);
        for (const g of fresh.keys()) this.onFreedReusable?.(g);
      });
    }
    for (const [g, t] of touched) {
      if (!t.freed) continue;
      let h = groups.get(g);
      if (!h) {
        h = { bits: new Uint8Array(this.sb.blockSize), count: 0, lo: t.freed.length, hi: 0 };
        groups.set(g, h);
      }
      const lo = t.freedLo ?? 0, hi = t.freedHi ?? t.freed.length;
      for (let i = lo; i < hi; i++) {
        const add = t.freed[i] & ~h.bits[i];
        if (add === 0) continue;
        h.bits[i] |= add;
        h.count += popcount8(add);
      }
      if (lo < h.lo) h.lo = lo;
      if (hi > h.hi) h.hi = hi;
    }
  }

  /** Marks bits `[start, start+length)` of group `g` as freed by `tx` (see GroupTouch). */
  #holdFreed(tx: Transaction, g: number, start: number, length: number): void {
    const t = this.#touch(tx, g);
    t.freed ??= new Uint8Array(this.sb.blockSize);
    if (!this.#holding.has(tx)) {
      this.#holding.add(tx);
      tx.onCommit(() => this.#holdUntilDurable(tx));
    }
    let added = 0;
    for (let i = start; i < start + length; i++) {
      if (!testBit(t.freed, i)) {
        setBit(t.freed, i);
        added++;
      }
    }
    t.freedCount = (t.freedCount ?? 0) + added;
    if (length > 0) {
      t.freedLo = Math.min(t.freedLo ?? t.freed.length, start >> 3);
      t.freedHi = Math.max(t.freedHi ?? 0, ((start + length - 1) >> 3) + 1);
    }
  }

  /**
   * The group's block bitmap as allocation sees it in `tx`: the blocks `tx` freed count as in
   * use (a copy when there are any; read-only).
   */
  async #allocationView(tx: Transaction, g: number): Promise<Uint8Array> {
    const bm = await this.#blockBitmapView(tx, g);
    const mine = this.#touched.get(tx)?.get(g);
    const spans: { bits: Uint8Array; lo: number; hi: number }[] = [];
    if (mine?.freed) {
      spans.push({ bits: mine.freed, lo: mine.freedLo ?? 0, hi: mine.freedHi ?? bm.length });
    }
    for (const groups of this.#held.values()) {
      const h = groups.get(g);
      if (h) spans.push(h);
    }
    let view: Uint8Array | null = null;
    for (const { bits, lo, hi } of spans) {
      if (lo >= hi) continue;
      view ??= Uint8Array.from(bm);
      const end = Math.min(hi, view.length);
      for (let i = lo; i < end; i++) view[i] |= bits[i];
    }
    return view ?? bm;
  }

  /** The group's block bitmap as in effect in `tx`; read-only. */
  async #blockBitmapView(tx: Transaction, g: number): Promise<Uint8Array> {
    const t = this.#touched.get(tx)?.get(g);
    if (t?.blockBitmap) return t.blockBitmap;
    const gd = this.gdt.get(g);
    if (hasGroupChecksums(this.sb) && (gd.flags & GroupFlags.BLOCK_UNINIT)) {
      return initialBlockBitmap(this.sb, this.gdt, g);
    }
    return await tx.read(gd.blockBitmap);
  }

  async #inodeBitmapView(tx: Transaction, g: number): Promise<Uint8Array> {
    const t = this.#touched.get(tx)?.get(g);
    if (t?.inodeBitmap) return t.inodeBitmap;
    const gd = this.gdt.get(g);
    if (hasGroupChecksums(this.sb) && (gd.flags & GroupFlags.INODE_UNINIT)) {
      return initialInodeBitmap(this.sb);
    }
    return await tx.read(gd.inodeBitmap);
  }

  async #writableBlockBitmap(tx: Transaction, g: number): Promise<Uint8Array> {
    const t = this.#touch(tx, g);
    if (t.blockBitmap) return t.blockBitmap;
    const gd = this.gdt.get(g);
    if (hasGroupChecksums(this.sb) && (gd.flags & GroupFlags.BLOCK_UNINIT)) {
      const init = initialBlockBitmap(this.sb, this.gdt, g);
      const size = blocksInGroup(this.sb, g);
      let free = 0;
      for (let i = 0; i < size; i++) if (!testBit(init, i)) free++;
      if (free !== gd.freeBlocksCount) {
        throw new CorruptError(
          `group descriptor ${g}`,
          `BLOCK_UNINIT group counts ${gd.freeBlocksCount} free blocks, its metadata leaves ${free}`,
        );
      }
      const img = tx.newBlock(gd.blockBitmap);
      img.set(init);
      gd.flags = gd.flags & ~GroupFlags.BLOCK_UNINIT;
      t.blockBitmap = img;
    } else {
      t.blockBitmap = await tx.getWritable(gd.blockBitmap);
    }
    return t.blockBitmap;
  }

  async #writableInodeBitmap(tx: Transaction, g: number): Promise<Uint8Array> {
    const t = this.#touch(tx, g);
    if (t.inodeBitmap) return t.inodeBitmap;
    const gd = this.gdt.get(g);
    if (hasGroupChecksums(this.sb) && (gd.flags & GroupFlags.INODE_UNINIT)) {
      const img = tx.newBlock(gd.inodeBitmap);
      img.set(initialInodeBitmap(this.sb));
      gd.flags = gd.flags & ~GroupFlags.INODE_UNINIT;
      t.inodeBitmap = img;
    } else {
      t.inodeBitmap = await tx.getWritable(gd.inodeBitmap);
    }
    return t.inodeBitmap;
  }

  async #takeBlocks(
    tx: Transaction,
    g: number,
    start: number,
    length: number,
    out: Extent[],
  ): Promise<void> {
    const meta = this.#metadataOverlap(g, start, length);
    if (meta) {
      const first = groupFirstBlock(this.sb, g) + start;
      await this.#fail(
        tx,
        { func: "allocateBlocks", block: first },
        new CorruptError(
          `block bitmap of group ${g}`,
          `marks blocks ${first}+${length} free, but they overlap ${meta}`,
        ),
      );
    }
    const bm = await this.#writableBlockBitmap(tx, g);
    for (let i = start; i < start + length; i++) {
      if (testBit(bm, i)) {
        throw new CorruptError(
          `block bitmap of group ${g}`,
          `bit ${i} changed under the allocator`,
        );
      }
      setBit(bm, i);
    }
    const gd = this.gdt.get(g);
    if (gd.freeBlocksCount < length) {
      throw new CorruptError(
        `group descriptor ${g}`,
        `free block count ${gd.freeBlocksCount} is below what the bitmap holds`,
      );
    }
    this.#countFree(g, -length, 0);
    this.#touchSuper(tx);
    let first = groupFirstBlock(this.sb, g) + start;
    let left = length;
    const last = out[out.length - 1];
    // Join a run that continues the previous extent (across a group boundary, say).
    if (last && last.start + last.length === first && last.length < MAX_EXTENT_LENGTH) {
      const add = Math.min(left, MAX_EXTENT_LENGTH - last.length);
      out[out.length - 1] = { start: last.start, length: last.length + add };
      first += add;
      left -= add;
    }
    while (left > 0) {
      const n = Math.min(left, MAX_EXTENT_LENGTH);
      out.push({ start: first, length: n });
      first += n;
      left -= n;
    }
  }

  /** Zeroes inode records `[from, to)` of group `g`'s table. */
  async #zeroInodes(tx: Transaction, g: number, from: number, to: number): Promise<void> {
    const sb = this.sb;
    const isz = sb.inodeSize;
    const perBlock = sb.blockSize / isz;
    const table = this.gdt.get(g).inodeTable;
    for (let r = from; r < to;) {
      const blk = Math.floor(r / perBlock);
      const end = Math.min(to, (blk + 1) * perBlock);
      const img = await tx.getWritable(table + blk);
      img.fill(0, (r % perBlock) * isz, (end - blk * perBlock) * isz);
      // Records changed outside writeInode: the inode cache must learn of them too.
      for (; r < end; r++) touchInode(tx, g * sb.inodesPerGroup + r + 1);
    }
  }

  /**
   * Inode `ino`, free in the bitmap, is about to be used: its record must not be in use (a
   * link count, as the kernel's iget tells a live inode from a deleted one). Records the
   * kernel would not have initialised yet (beyond `itable_unused`) are not looked at.
   */
  async #checkInodeUnused(tx: Transaction, g: number, ino: number): Promise<void> {
    const sb = this.sb;
    const bit = (ino - 1) % sb.inodesPerGroup;
    const gd = this.gdt.get(g);
    if (hasGroupChecksums(sb)) {
      if (gd.flags & GroupFlags.INODE_UNINIT) return;
      if (bit >= sb.inodesPerGroup - gd.itableUnused) return;
    }
    const record = await readInodeRaw(tx, sb, this.gdt, ino);
    const links = record[0x1a] | (record[0x1b] << 8);
    if (links === 0) return;
    const mode = record[0] | (record[1] << 8);
    await this.#fail(
      tx,
      { func: "allocateInode", ino },
      new CorruptError(
        `inode bitmap of group ${g}`,
        `marks inode ${ino} free, but its record is in use (mode 0o${
          mode.toString(8)
        }, ${links} links)`,
      ),
    );
  }

  /**
   * A damaged bitmap was caught before anything was overwritten: discards `tx` (the whole
   * operation), records the error in the superblock in a transaction of its own, and throws
   * `error`.
   */
  async #fail(tx: Transaction, info: FsErrorInfo, error: CorruptError): Promise<never> {
    tx.abort();
    await persistFsError(tx.cache, this.sb, info);
    throw markRecorded(error);
  }

  /**
   * What `[start, start+length)` of group `g` overlaps among the system zones (as a phrase for
   * a message), or null. {@link Allocator.#loadSystemZones} must have run.
   */
  #metadataOverlap(g: number, start: number, length: number): string | null {
    const ranges = this.#metaRanges![g];
    for (const [s, n] of ranges) {
      if (start < s + n && s < start + length) {
        const first = groupFirstBlock(this.sb, g);
        return `filesystem metadata at ${first + s}+${n}`;
      }
    }
    for (const r of this.#journalZone!) {
      const first = groupFirstBlock(this.sb, g);
      if (first + start < r.start + r.length && r.start < first + start + length) {
        return `the journal at ${r.start}+${r.length}`;
      }
    }
    return null;
  }

  /**
   * The system zones, once per allocator: per group, the ranges of base metadata, bitmaps and
   * inode tables; and the internal journal's blocks (read through `tx`).
   */
  async #loadSystemZones(tx: Transaction): Promise<void> {
    if (this.#journalZone === null) {
      const sb = this.sb;
      const zone: Extent[] = [];
      if ((sb.compat & Compat.HAS_JOURNAL) && sb.journalInum !== 0) {
        const ino = sb.journalInum;
        if (ino > sb.inodesCount) {
          throw new CorruptError("superblock", `journal inode ${ino} is out of range`);
        }
        const record = await readInodeRaw(tx, sb, this.gdt, ino);
        const { runs } = await journalInodeRuns(
          sb,
          parseInode(sb, ino, record),
          (b) => tx.read(b),
        );
        for (const r of runs) zone.push({ start: r.physical, length: r.length });
      }
      this.#journalZone = zone;
    }
    if (this.#metaRanges) return;
    const sb = this.sb;
    const groups = sb.groupCount;
    const ranges: [number, number][][] = Array.from({ length: groups }, () => []);
    for (let g = 0; g < groups; g++) {
      const n = baseMetaBlocks(sb, g);
      if (n > 0) ranges[g].push([0, n]);
    }
    const add = (block: number, n: number) => {
      // A run may cross a group boundary (flex_bg inode tables): split it.
      while (n > 0) {
        const g = this.groupOfBlock(block);
        if (g < 0 || g >= groups) return;
        const first = groupFirstBlock(sb, g);
        const take = Math.min(n, first + blocksInGroup(sb, g) - block);
        ranges[g].push([block - first, take]);
        block += take;
        n -= take;
      }
    };
    const itb = sb.inodeTableBlocksPerGroup;
    for (const gd of this.gdt.descriptors) {
      add(gd.blockBitmap, 1);
      add(gd.inodeBitmap, 1);
      add(gd.inodeTable, itb);
    }
    this.#metaRanges = ranges;
  }
}

/** Number of bits set in a byte. */
function popcount8(b: number): number {
  let n = 0;
  for (let x = b & 0xff; x !== 0; x &= x - 1) n++;
  return n;
}
