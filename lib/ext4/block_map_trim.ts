/**
 * Changing an ext2/3 block map in place. Unmapping, as the kernel's `ext4_ind_remove_space`:
 * only the indirect blocks covering the range are read and changed, subtrees the range covers
 * whole are freed without being rewritten, and an indirect block left empty is freed with its
 * pointer. Mapping new blocks, as `ext4_ind_map_blocks` creating them: the pointers set in the
 * indirect blocks on their path, missing indirect blocks allocated. A bounded step of a long
 * truncate (lib/ext4/free_steps.ts) or a chunk of a long write so costs a few blocks, where
 * rebuilding the whole map costs every indirect block of the file.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import type { Extent } from "./block_runs.ts";
import {
  blockMapLimit,
  blockMapPath,
  blockPointer,
  DIRECT_BLOCKS,
  pointersPerBlock,
} from "../ondisk/indirect.ts";
import type { FileExtent } from "../ondisk/extent.ts";
import type { OpContext } from "./context.ts";

/** What in-place block map edits use of an operation's context. */
export type BlockMapContext = Pick<OpContext, "tx" | "alloc" | "sb">;

/** The inode whose map is changed: its number (messages) and its 60 bytes of `i_block`. */
export interface BlockMapRoot {
  ino: number;
  iBlock: Uint8Array;
}

/** The `i_block` slot of each indirection level (1..3) and the first logical block it maps. */
function levels(per: number): { slot: number; level: number; base: number }[] {
  return [
    { slot: DIRECT_BLOCKS, level: 1, base: DIRECT_BLOCKS },
    { slot: DIRECT_BLOCKS + 1, level: 2, base: DIRECT_BLOCKS + per },
    { slot: DIRECT_BLOCKS + 2, level: 3, base: DIRECT_BLOCKS + per + per * per },
  ];
}

function setPointer(block: Uint8Array, k: number, value: number): void {
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(4 * k, value, true);
}

function checkPointer(
  ctx: BlockMapContext,
  root: BlockMapRoot,
  p: number,
  logical: number,
): void {
  if (p < ctx.sb.firstDataBlock || p >= ctx.sb.blocksCount) {
    throw new CorruptError(
      `block map of inode ${root.ino}`,
      `block ${p} (file block ${logical}) is outside the filesystem`,
    );
  }
}

/**
 * The last mapped logical block below `before`, or undefined when none is: a descent from the
 * highest pointers down, reading only the indirect blocks on the way.
 *
 * @example
 * ```ts ignore
 * const last = await lastMappedBlock(ctx, { ino, iBlock: fields.block }, 2 ** 32);
 * ```
 */
export async function lastMappedBlock(
  ctx: OpContext,
  root: BlockMapRoot,
  before: number,
): Promise<number | undefined> {
  const per = pointersPerBlock(ctx.sb.blockSize);
  const under = async (ptr: number, level: number, base: number): Promise<number | undefined> => {
    checkPointer(ctx, root, ptr, base);
    const block = await ctx.tx.read(ptr);
    const span = per ** (level - 1);
    for (let k = Math.min(per - 1, Math.floor((before - 1 - base) / span)); k >= 0; k--) {
      const p = blockPointer(block, k);
      if (p === 0) continue;
      if (level === 1) return base + k;
      const found = await under(p, level - 1, base + k * span);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  for (const { slot, level, base } of levels(per).reverse()) {
    const p = blockPointer(root.iBlock, slot);
    if (p === 0 || base >= before) continue;
    const found = await under(p, level, base);
    if (found !== undefined) return found;
  }
  for (let k = Math.min(DIRECT_BLOCKS, before) - 1; k >= 0; k--) {
    if (blockPointer(root.iBlock, k) !== 0) return k;
  }
  return undefined;
}

/**
 * Unmaps logical blocks `[from, to)` of a block map in place: pointers cleared in the indirect
 * blocks that keep others, indirect blocks left empty freed (revoked) with their pointer, and
 * the data blocks returned as runs for the caller to free. Returns the new `i_block` and the
 * number of indirect blocks freed.
 *
 * @example
 * ```ts ignore
 * const { iBlock, runs, mapFreed } = await unmapBlockRange(ctx, { ino, iBlock }, 4096, 8192);
 * for (const r of runs) await ctx.alloc.freeBlocks(ctx.tx, r.start, r.length);
 * ```
 */
export async function unmapBlockRange(
  ctx: BlockMapContext,
  root: BlockMapRoot,
  from: number,
  to: number,
): Promise<{ iBlock: Uint8Array; runs: Extent[]; mapFreed: number }> {
  const { tx, alloc, sb } = ctx;
  const per = pointersPerBlock(sb.blockSize);
  to = Math.min(to, blockMapLimit(sb.blockSize));
  const iBlock = Uint8Array.from(root.iBlock.subarray(0, 60));
  const runs: { start: number; length: number }[] = [];
  let mapFreed = 0;
  // Data blocks come highest first: a run grows downwards.
  const freeData = (p: number) => {
    const last = runs.at(-1);
    if (last && last.start === p + 1) {
      last.start = p;
      last.length++;
    } else {
      runs.push({ start: p, length: 1 });
    }
  };
  // Clears what `[from, to)` covers under indirect block `ptr`; true when nothing is left in
  // it (the caller frees it). A block covered whole is freed without being rewritten.
  const clear = async (ptr: number, level: number, base: number): Promise<boolean> => {
    checkPointer(ctx, root, ptr, base);
    const span = per ** (level - 1);
    const whole = from <= base && base + per * span <= to;
    let block = await tx.read(ptr);
    let writable = false;
    const lo = Math.max(0, Math.floor((from - base) / span));
    const hi = Math.min(per - 1, Math.floor((to - 1 - base) / span));
    for (let k = hi; k >= lo; k--) {
      const p = blockPointer(block, k);
      if (p === 0) continue;
      const start = base + k * span;
      if (level === 1) {
        checkPointer(ctx, root, p, start);
        freeData(p);
      } else if (await clear(p, level - 1, start)) {
        await alloc.freeBlocks(tx, p, 1, { metadata: true });
        mapFreed++;
      } else {
        continue;
      }
      if (whole) continue;
      if (!writable) {
        block = await tx.getWritable(ptr);
        writable = true;
      }
      setPointer(block, k, 0);
    }
    if (whole) return true;
    for (let k = 0; k < per; k++) if (blockPointer(block, k) !== 0) return false;
    return true;
  };
  for (const { slot, level, base } of levels(per).reverse()) {
    const p = blockPointer(iBlock, slot);
    if (p === 0 || base >= to || base + per ** level <= from) continue;
    if (await clear(p, level, base)) {
      await alloc.freeBlocks(tx, p, 1, { metadata: true });
      mapFreed++;
      setPointer(iBlock, slot, 0);
    }
  }
  for (let k = Math.min(DIRECT_BLOCKS, to) - 1; k >= from; k--) {
    const p = blockPointer(iBlock, k);
    if (p === 0) continue;
    checkPointer(ctx, root, p, k);
    freeData(p);
    setPointer(iBlock, k, 0);
  }
  return { iBlock, runs, mapFreed };
}

/**
 * Maps `extents` (written data in holes of the map, sorted) into a block map in place: each
 * pointer set in `i_block` or in the indirect block on its path; a missing indirect block is
 * allocated near the data it maps and starts zeroed. Returns the new `i_block` and the number
 * of indirect blocks allocated. INVALID for a block past what a block map addresses or one
 * already mapped.
 *
 * @example
 * ```ts ignore
 * const { iBlock, mapAdded } = await mapBlockRuns(ctx, { ino, iBlock }, [
 *   { logical: 300, physical: 9000, length: 16 },
 * ]);
 * ```
 */
export async function mapBlockRuns(
  ctx: BlockMapContext,
  root: BlockMapRoot,
  extents: FileExtent[],
): Promise<{ iBlock: Uint8Array; mapAdded: number }> {
  const { tx, alloc, sb } = ctx;
  const limit = blockMapLimit(sb.blockSize);
  const iBlock = Uint8Array.from(root.iBlock.subarray(0, 60));
  let mapAdded = 0;
  // Indirect block k of `parent` (i_block when null), allocated near `goal` when missing.
  const child = async (parent: number | null, k: number, goal: number, logical: number) => {
    const p = blockPointer(parent === null ? iBlock : await tx.read(parent), k);
    if (p !== 0) {
      checkPointer(ctx, root, p, logical);
      return p;
    }
    const [{ start }] = await alloc.allocateBlocks(tx, goal, 1);
    tx.newBlock(start);
    setPointer(parent === null ? iBlock : await tx.getWritable(parent), k, start);
    mapAdded++;
    return start;
  };
  for (const e of extents) {
    if (e.unwritten) throw new Ext4Error("INVALID", "block maps cannot hold unwritten extents");
    if (e.logical + e.length > limit) {
      throw new Ext4Error(
        "INVALID",
        `logical block ${e.logical + e.length - 1} is beyond the block map`,
      );
    }
    for (let i = 0; i < e.length; i++) {
      const lb = e.logical + i;
      const path = blockMapPath(sb.blockSize, lb);
      let holder: number | null = null;
      for (let d = 0; d < path.length - 1; d++) {
        holder = await child(holder, path[d], e.physical + i, lb);
      }
      const k = path[path.length - 1];
      const block = holder === null ? iBlock : await tx.getWritable(holder);
      if (blockPointer(block, k) !== 0) {
        throw new Ext4Error("INVALID", `inode ${root.ino}: file block ${lb} is mapped already`);
      }
      setPointer(block, k, e.physical + i);
    }
  }
  return { iBlock, mapAdded };
}
