/**
 * Freeing a regular file's blocks in bounded transactions, as the kernel's truncate restarts
 * its journal handle (`ext4_ext_remove_space` with `ext4_datasem_ensure_credits`,
 * `ext4_ind_truncate`): from the end backwards, a piece at a time (within one block group and
 * one extent, or 64 blocks of a block map changed in place by lib/ext4/block_map_trim.ts), each
 * step's transaction committing once it changed about {@link stepBlockBudget} blocks. Every
 * step leaves a consistent file whose blocks past the freed point are holes; callers protect
 * what is not (a size or a link count the blocks still count on) with the orphan list
 * (lib/ext4/long_ops.ts).
 *
 * @module
 */

import { ExtentTreeEditor } from "./extents_edit.ts";
import { readFileMap } from "./file_map_write.ts";
import { lastMappedBlock, unmapBlockRange } from "./block_map_trim.ts";
import { loadInode, peekInodeFields, writeInode } from "./inode.ts";
import { encodeInode, type InodeFields, InodeFlags, Mode } from "../ondisk/inode.ts";
import type { Extent } from "./block_runs.ts";
import type { OpContext } from "./context.ts";
import type { Ext4Writer } from "./writer.ts";

/** Past every logical block a file can map (extent trees address 2^32 blocks). */
export const MAP_END = 2 ** 32;

/** Most blocks of a block map unmapped at once: at worst one bitmap each. */
const BLOCK_MAP_PIECE = 64;

/** A step of {@link Ext4Writer.steps}: runs `fn` in a transaction and commits it. */
export type Step = <R>(fn: (ctx: OpContext) => Promise<R>) => Promise<R>;

/**
 * The blocks (changed metadata and revoked blocks) a bounded step gathers before it commits:
 * half of what the journal takes per transaction (a piece freed past the check adds a few), and
 * at most a quarter of the block cache.
 *
 * @example
 * ```ts ignore
 * stepBlockBudget(w); // 96 on a 1 KiB-block filesystem with a 1 MiB journal
 * ```
 */
export function stepBlockBudget(w: Ext4Writer): number {
  return Math.max(16, Math.floor(Math.min(w.cache.capacity / 4, w.transactionBlockLimit / 2)));
}

/**
 * True when long operations of `w` split into bounded steps: commits go through a journal
 * (without one nothing bounds a transaction) and no {@link Ext4Writer.group} is running (a
 * group must stay one transaction).
 *
 * @example
 * ```ts ignore
 * if (bounded(w)) await freeInSteps(step, w, ino, 0, MAP_END);
 * ```
 */
export function bounded(w: Ext4Writer): boolean {
  return !w.inGroup && Number.isFinite(w.transactionBlockLimit);
}

/** True for inodes whose blocks are a file map of data (not a fast symlink, device, inline). */
function hasBlockMap(f: InodeFields, blockSize: number): boolean {
  const type = f.mode & Mode.IFMT;
  if (([Mode.IFCHR, Mode.IFBLK, Mode.IFIFO, Mode.IFSOCK] as number[]).includes(type)) {
    return false;
  }
  if (f.flags & InodeFlags.INLINE_DATA) return false;
  return !(type === Mode.IFLNK && f.blocks512 === (f.fileAcl ? blockSize / 512 : 0));
}

/**
 * About how many metadata blocks freeing logical blocks `[from, to)` of inode `ino` in ONE
 * transaction changes (as truncateFile, punchHole and releaseInode do it): a bitmap per block
 * group the blocks lie in and their descriptor blocks, the mapping blocks (twice for a block
 * map: a conservative bound), and a few for the inode and the superblock.
 *
 * @example
 * ```ts ignore
 * if (await freeCost(ctx, ino, 0, MAP_END) > stepBlockBudget(w)) {
 *   // free in steps
 * }
 * ```
 */
export async function freeCost(
  ctx: OpContext,
  ino: number,
  from: number,
  to: number,
): Promise<number> {
  const { sb } = ctx;
  const f = await peekInodeFields(ctx.tx, sb, ctx.gdt, ino); // only looked at
  if (!hasBlockMap(f, sb.blockSize)) return 4;
  const map = await readFileMap(ctx.tx, sb, ino, f);
  const groups = new Set<number>();
  const groupOf = (b: number) => Math.floor((b - sb.firstDataBlock) / sb.blocksPerGroup);
  for (const e of map.extents) {
    const lo = Math.max(from, e.logical);
    const hi = Math.min(to, e.logical + e.length);
    if (lo >= hi) continue;
    const last = groupOf(e.physical + (hi - 1 - e.logical));
    for (let g = groupOf(e.physical + (lo - e.logical)); g <= last; g++) groups.add(g);
  }
  const mapCost = map.kind === "blockmap" ? 2 * map.mapBlocks.length : map.mapBlocks.length;
  return groups.size + Math.ceil(groups.size / (sb.blockSize / sb.descSize)) + mapCost + 4;
}

/** A file's mapping as a step frees it from the end: the last piece, unmapping, the result. */
interface TailMap {
  /** The last piece of mapped blocks in `[lo, hi)` freed at once, or null when none is. */
  lastPiece(lo: number, hi: number): Promise<{ from: number; to: number } | null>;
  /** Unmaps `[from, to)`; the data runs to free. */
  remove(from: number, to: number): Promise<Extent[]>;
  /** The new `i_block` and the blocks the inode lost (negative). */
  finish(): Promise<{ iBlock: Uint8Array; blocksDelta: number }>;
}

/** An extent tree, edited in place: pieces within one extent and one block group. */
function extentTail(ctx: OpContext, ino: number, f: InodeFields): TailMap {
  const { sb } = ctx;
  const tree = new ExtentTreeEditor(ctx.tx, ctx.alloc, sb, {
    ino,
    generation: f.generation,
    iBlock: f.block,
  });
  return {
    async lastPiece(lo, hi) {
      const e = await tree.before(hi);
      if (!e) return null;
      const to = Math.min(hi, e.logical + e.length);
      if (to <= lo) return null;
      const lastPhys = e.physical + (to - 1 - e.logical);
      const group = Math.floor((lastPhys - sb.firstDataBlock) / sb.blocksPerGroup);
      const groupStart = sb.firstDataBlock + group * sb.blocksPerGroup;
      const from = Math.max(lo, e.logical, e.logical + (groupStart - e.physical));
      return { from, to };
    },
    remove: (from, to) => tree.remove(from, to),
    finish: () => tree.finish(),
  };
}

/** A block map, changed in place: pieces of at most 64 logical blocks. */
function blockMapTail(ctx: OpContext, ino: number, f: InodeFields): TailMap {
  let iBlock = f.block;
  let lost = 0;
  return {
    async lastPiece(lo, hi) {
      const last = await lastMappedBlock(ctx, { ino, iBlock }, hi);
      if (last === undefined || last < lo) return null;
      return { from: Math.max(lo, last + 1 - BLOCK_MAP_PIECE), to: last + 1 };
    },
    async remove(from, to) {
      const r = await unmapBlockRange(ctx, { ino, iBlock }, from, to);
      iBlock = r.iBlock;
      lost += r.mapFreed + r.runs.reduce((n, x) => n + x.length, 0);
      return r.runs;
    },
    finish: () => Promise.resolve({ iBlock, blocksDelta: -lost }),
  };
}

/**
 * One step: frees the mapped blocks of regular file `ino` in `[lo, hi)`, the last first,
 * until the transaction changed `budget` blocks; the inode keeps its size and times. Returns
 * where it stopped: the new `hi` (`lo` when nothing is left in the range).
 */
async function freeStep(
  ctx: OpContext,
  ino: number,
  lo: number,
  hi: number,
  budget: number,
): Promise<number> {
  const { tx, sb } = ctx;
  const { raw, f } = await loadInode(tx, sb, ctx.gdt, ino);
  const map = f.flags & InodeFlags.EXTENTS ? extentTail(ctx, ino, f) : blockMapTail(ctx, ino, f);
  while (hi > lo && tx.metadataBlocks + tx.revokedBlocks < budget) {
    const piece = await map.lastPiece(lo, hi);
    if (!piece) {
      hi = lo;
      break;
    }
    for (const r of await map.remove(piece.from, piece.to)) {
      await ctx.alloc.freeBlocks(tx, r.start, r.length);
    }
    hi = piece.from;
  }
  const { iBlock, blocksDelta } = await map.finish();
  const blocks512 = Math.max(0, f.blocks512 + blocksDelta * (sb.blockSize / 512));
  await writeInode(
    tx,
    sb,
    ctx.gdt,
    ino,
    encodeInode(sb, ino, { ...f, block: iBlock, blocks512 }, raw),
  );
  return hi;
}

/**
 * Frees the mapped blocks of regular file `ino` in logical blocks `[lo, hi)`, from the end
 * backwards, one bounded transaction per `step` (each within {@link stepBlockBudget}). The
 * file's size, links and times are left as they are: the caller sets them, and keeps the inode
 * on the orphan list while the blocks it still maps do not match them.
 *
 * @example
 * ```ts ignore
 * await w.steps((step) => freeInSteps(step, w, ino, keep, MAP_END));
 * ```
 */
export async function freeInSteps(
  step: Step,
  w: Ext4Writer,
  ino: number,
  lo: number,
  hi: number,
): Promise<void> {
  const budget = stepBlockBudget(w);
  while (hi > lo) {
    const at = hi;
    hi = await step((ctx) => freeStep(ctx, ino, lo, at, budget));
  }
}
