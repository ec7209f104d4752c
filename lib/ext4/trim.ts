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
 * the answer is the number of bytes discarded. The kernel also remembers which groups it
 * trimmed (until blocks are freed there) and skips them next time; ext4ts does not, so a second
 * trim discards (and reports) the same free space again.
 *
 * @module
 */

import { canDiscard } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
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
 * as a fatal signal stops the kernel's.
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
  let trimmed = 0;
  for (let g = firstGroup; g <= lastGroup && !options.signal?.aborted; g++) {
    if (w.gdt.get(g).freeBlocksCount < minBlocks) continue;
    const from = g === firstGroup ? (start - sb.firstDataBlock) % perGroup : 0;
    const to = g === lastGroup ? (end - sb.firstDataBlock) % perGroup : perGroup - 1;
    trimmed += await w.transaction(async (ctx) => {
      let blocks = 0;
      for (const run of await ctx.alloc.freeRuns(ctx.tx, g, from, to)) {
        if (run.length < minBlocks) continue;
        await device.discard(run.start * bs, run.length * bs);
        blocks += run.length;
      }
      return blocks;
    });
  }
  return trimmed * bs;
}
