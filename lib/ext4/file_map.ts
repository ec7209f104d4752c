/**
 * The logical-to-physical map of a file's blocks, as a sorted list of runs built from an
 * extent tree (lib/ext4/extents.ts) or a block map (lib/ext4/indirect.ts), and reading file bytes
 * through it with adjacent blocks fetched in one device read.
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { CorruptError } from "../errors.ts";

/** `length` blocks starting at file block `logical` live at device block `physical`. */
export interface BlockRun {
  /** First file block of the run. */
  logical: number;
  /** Device block holding file block `logical`. */
  physical: number;
  /** Number of blocks. */
  length: number;
  /** Allocated but never written (extent flag): reads as zeros. */
  unwritten: boolean;
}

/**
 * Index of the last run starting at or before `logical`, or -1.
 *
 * @example
 * ```ts
 * import { findRun } from "./file_map.ts";
 * const runs = [{ logical: 0, physical: 9, length: 2, unwritten: false }];
 * console.log(findRun(runs, 1)); // 0
 * ```
 */
export function findRun(runs: readonly BlockRun[], logical: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid].logical <= logical) {
      best = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best;
}

/** Largest single device read, so a huge file read does not allocate without bound. */
const MAX_READ = 8 * 1024 * 1024;

/**
 * Reads `length` bytes at byte `offset` of a file of `size` bytes mapped by `runs`. Holes and
 * unwritten runs read as zeros; physically adjacent pieces are read in one device call. The
 * result is short at end of file.
 *
 * @example
 * ```ts ignore
 * const bytes = await readMapped(device, 4096, runs, inode.size, 0, 65536, "inode 12");
 * ```
 */
export async function readMapped(
  device: BlockDevice,
  blockSize: number,
  runs: readonly BlockRun[],
  size: number,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (offset >= size || length <= 0) return new Uint8Array(0);
  const end = Math.min(size, offset + length);
  const out = new Uint8Array(end - offset);
  let pos = offset;
  let i = findRun(runs, Math.floor(pos / blockSize));
  while (pos < end) {
    const lblk = Math.floor(pos / blockSize);
    while (i + 1 < runs.length && runs[i + 1].logical <= lblk) i++;
    const run = i >= 0 ? runs[i] : undefined;
    if (run && lblk < run.logical + run.length) {
      // Inside a run: read as much of it as the request needs (bounded per call).
      const runEndByte = (run.logical + run.length) * blockSize;
      const pieceEnd = Math.min(end, runEndByte, pos + MAX_READ);
      if (!run.unwritten) {
        const devOffset = (run.physical + (lblk - run.logical)) * blockSize + (pos % blockSize);
        if (devOffset + (pieceEnd - pos) > device.size) {
          throw new CorruptError(
            what,
            `data block ${run.physical + (lblk - run.logical)} is beyond the device`,
          );
        }
        await device.read(devOffset, out.subarray(pos - offset, pieceEnd - offset));
      }
      pos = pieceEnd;
    } else {
      // A hole: zeros up to the next run.
      const next = i + 1 < runs.length ? runs[i + 1].logical * blockSize : Infinity;
      pos = Math.min(end, next);
    }
  }
  return out;
}

/**
 * SEEK_DATA / SEEK_HOLE over a run list: the first offset at or after `offset` that is data
 * or a hole. Unwritten runs count as holes, as the kernel's ext4 reports them. End of file counts as
 * a hole; -1 means no data at or after `offset`.
 *
 * @example
 * ```ts
 * import { seekRuns } from "./file_map.ts";
 * const runs = [{ logical: 2, physical: 9, length: 1, unwritten: false }];
 * console.log(seekRuns(runs, 1024, 4096, 0, "data")); // 2048
 * ```
 */
export function seekRuns(
  runs: readonly BlockRun[],
  blockSize: number,
  size: number,
  offset: number,
  whence: "data" | "hole",
): number {
  if (offset >= size) return -1;
  if (runs.some((r) => r.unwritten)) runs = runs.filter((r) => !r.unwritten);
  const lblk = Math.floor(offset / blockSize);
  const i = findRun(runs, lblk);
  const inRun = i >= 0 && lblk < runs[i].logical + runs[i].length;
  if (whence === "data") {
    if (inRun) return offset;
    const next = runs[i + 1];
    if (!next) return -1;
    const at = next.logical * blockSize;
    return at < size ? at : -1;
  }
  if (!inRun) return offset;
  // Walk over contiguous runs.
  let endBlock = runs[i].logical + runs[i].length;
  for (let j = i + 1; j < runs.length && runs[j].logical === endBlock; j++) {
    endBlock += runs[j].length;
  }
  return Math.min(size, endBlock * blockSize);
}
