/**
 * FITRIM (fstrim): discarding the free space of a filesystem being written, as the kernel's
 * `ext4_trim_fs` does it. Group by group, the free runs that allocation could hand out (not
 * the blocks freed by commits that are not durable yet: a crash could still need their old
 * contents) are discarded on the device. Each group is one transaction of the writer, so no
 * allocation runs while its runs are discarded: they stay free throughout, as the kernel's
 * trim marks them busy in the buddy bitmap. Other operations wait at most one group.
 *
 * The rules are the kernel's: the range and the minimum length are in bytes, rounded down to
 * blocks; a minimum below the device's discard granularity becomes the granularity; a run
 * counts when it starts inside the range and is discarded whole (up to the next block in use);
 * the answer is the number of bytes discarded.
 *
 * Like the kernel, a mounted filesystem remembers which groups it trimmed (mballoc.c: the group
 * info bit `EXT4_GROUP_INFO_WAS_TRIMMED` and `s_last_trim_minblks`), in memory only: a remount
 * forgets it, as the kernel's group info is rebuilt at mount. The rules:
 * - A group is skipped (0 bytes, nothing discarded) when it is marked trimmed and the minimum
 *   length (in blocks, after the granularity raised it) is not smaller than the minimum of the
 *   last FITRIM (`ext4_trim_all_free`). That last minimum starts at 0 and is set when a FITRIM
 *   finishes without an error (an interrupted one too; not when it returned before looking at
 *   a group: a range before the first data block, a granularity over a group) (`ext4_trim_fs`).
 * - A group is marked once it was looked at from its first block (`ext4_try_to_trim_range`):
 *   when the range covers the whole group, or when the last free run seen goes on to the
 *   group's last block (its end, the next block in use, is at least the last block) — a run the
 *   kernel does see unless, after the run before it, fewer free blocks than the minimum remain
 *   in the group (its early stop), i.e. unless it is not the only run and is shorter than the
 *   minimum. A group with fewer free blocks than the minimum is not looked at, so not marked.
 * - Freed blocks clear their group's mark when they become allocatable again: after the commit
 *   that freed them, or once that commit is durable (the kernel clears it in its free path,
 *   `ext4_free_data_in_buddy` after the commit, `mb_free_blocks`): `Allocator.onFreedReusable`.
 *   Blocks that become allocatable while a group is being trimmed leave it unmarked.
 *
 * @module
 */

import { canDiscard } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import { blocksInGroup } from "../ondisk/bitmap.ts";
import type { Extent } from "./block_runs.ts";
import type { Ext4Writer } from "./writer.ts";

/** What to trim: the fields of the kernel's `struct fstrim_range`, in bytes. */
export interface TrimRange {
  /** First byte of the filesystem to look at. */
  start: number;
  /** Bytes to look at from `start` (the end of the filesystem at most). */
  length: number;
  /** Free runs shorter than this are left alone. */
  minLength: number;
}

/**
 * Discards the free space of `w`'s filesystem in `range` (see the module comment); returns the
 * bytes discarded. UNSUPPORTED (EOPNOTSUPP) when the device cannot discard, INVALID (EINVAL)
 * for a range that starts past the end, is shorter than a block, or a minimum length over a
 * group. An aborted `signal` stops it between groups (what was discarded so far is returned),
 * as a fatal signal stops the kernel's. Groups this writer trimmed before and has freed no
 * blocks in since are skipped unless the minimum is smaller than the last call's, as the
 * kernel skips them (see the module comment).
 *
 * @example
 * ```ts ignore
 * const bytes = await trimFreeSpace(writer, { start: 0, length: Number.MAX_SAFE_INTEGER, minLength: 0 });
 * ```
 */
export async function trimFreeSpace(
  w: Ext4Writer,
  range: TrimRange,
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  const device = w.device;
  if (!canDiscard(device)) {
    throw new Ext4Error("UNSUPPORTED", "the device cannot discard (TRIM)");
  }
  const sb = w.sb;
  const bs = sb.blockSize;
  const perGroup = sb.blocksPerGroup;
  let start = Math.floor(range.start / bs);
  let end = start + Math.floor(range.length / bs) - 1;
  let minBlocks = Math.floor(range.minLength / bs);
  if (minBlocks > perGroup || start >= sb.blocksCount || range.length < bs) {
    throw new Ext4Error(
      "INVALID",
      minBlocks > perGroup
        ? `minimum length ${range.minLength} is more than a block group`
        : start >= sb.blocksCount
        ? `start ${range.start} is past the end of the filesystem`
        : `length ${range.length} is less than a block`,
    );
  }
  // No point discarding less than the device's granularity.
  if (range.minLength < device.discardGranularity) {
    minBlocks = Math.floor(device.discardGranularity / bs);
    if (minBlocks > perGroup) return 0;
  }
  end = Math.min(end, sb.blocksCount - 1);
  if (end <= sb.firstDataBlock) return 0;
  start = Math.max(start, sb.firstDataBlock);
  const firstGroup = Math.floor((start - sb.firstDataBlock) / perGroup);
  const lastGroup = Math.floor((end - sb.firstDataBlock) / perGroup);
  const memory = trimMemory(w);
  let trimmed = 0;
  for (let g = firstGroup; g <= lastGroup && !options.signal?.aborted; g++) {
    if (w.gdt.get(g).freeBlocksCount < minBlocks) continue;
    if (memory.trimmed.has(g) && minBlocks >= memory.lastMinBlocks) continue;
    const from = g === firstGroup ? (start - sb.firstDataBlock) % perGroup : 0;
    const to = g === lastGroup ? (end - sb.firstDataBlock) % perGroup : perGroup - 1;
    let seen = 0;
    const { blocks, whole } = await w.transaction(async (ctx) => {
      let blocks = 0;
      seen = memory.freesIn(g);
      const runs = await ctx.alloc.freeRuns(ctx.tx, g, from, to);
      for (const run of runs) {
        if (run.length < minBlocks) continue;
        await device.discard(run.start * bs, run.length * bs);
        blocks += run.length;
      }
      return { blocks, whole: from === 0 && coversGroup(w, g, to, runs, minBlocks) };
    });
    // Not if blocks freed there became allocatable since its free runs were listed.
    if (whole && memory.freesIn(g) === seen) memory.trimmed.add(g);
    trimmed += blocks;
  }
  memory.lastMinBlocks = minBlocks;
  return trimmed * bs;
}

/**
 * Whether a trim of group `g` from its first block to `to` that found `runs` counts as the
 * whole group (the kernel's `set_trimmed`, see the module comment).
 */
function coversGroup(
  w: Ext4Writer,
  g: number,
  to: number,
  runs: Extent[],
  minBlocks: number,
): boolean {
  const last = blocksInGroup(w.sb, g) - 1;
  if (to >= last) return true;
  const run = runs.at(-1);
  if (!run) return false;
  const end = run.start + run.length - (w.sb.firstDataBlock + g * w.sb.blocksPerGroup);
  return end >= last && (runs.length === 1 || run.length >= minBlocks);
}

/** What a mounted filesystem remembers between FITRIMs (see the module comment). */
class TrimMemory {
  /** Groups trimmed since blocks were last freed there (`EXT4_GROUP_INFO_WAS_TRIMMED`). */
  readonly trimmed = new Set<number>();
  /** The minimum (blocks) of the last FITRIM that finished (`s_last_trim_minblks`). */
  lastMinBlocks = 0;
  /** Per group, how often freed blocks became allocatable there: a trim meanwhile is partial. */
  readonly #frees = new Map<number, number>();

  /** Freed blocks of group `g` became allocatable: it is no longer trimmed. */
  freed(g: number): void {
    this.trimmed.delete(g);
    this.#frees.set(g, this.freesIn(g) + 1);
  }

  /** How often freed blocks of group `g` became allocatable (0 before the first time). */
  freesIn(g: number): number {
    return this.#frees.get(g) ?? 0;
  }
}

/** One memory per writer, i.e. per mounted filesystem (a remount starts afresh). */
const memories = new WeakMap<Ext4Writer, TrimMemory>();

function trimMemory(w: Ext4Writer): TrimMemory {
  let memory = memories.get(w);
  if (!memory) {
    const m = new TrimMemory();
    w.alloc.onFreedReusable = (g) => m.freed(g);
    memories.set(w, m);
    memory = m;
  }
  return memory;
}
