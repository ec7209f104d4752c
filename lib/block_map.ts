/**
 * ext2/ext3 block maps: twelve direct pointers in `i_block`, then single, double and triple
 * indirect blocks. Zero pointers are holes. The walk produces the same sorted run list as an
 * extent tree, merging physically contiguous blocks.
 *
 * @module
 */

import { CorruptError } from "./errors.ts";
import type { BlockRun } from "./file_map.ts";
import type { Superblock } from "./superblock.ts";

/** What {@link readBlockMap} needs to know about the inode. */
export interface BlockMapOwner {
  /** The inode number, for error messages. */
  ino: number;
  /** The 60 bytes of `i_block`: 15 little-endian block pointers. */
  iBlock: Uint8Array;
  /** File size in bytes: blocks past it are not mapped. */
  size: number;
}

const DIRECT = 12;

/**
 * Reads the block map of an inode into runs sorted by logical block. Only blocks below the
 * file size are visited; every pointer must lie inside the filesystem and every indirect
 * block is read at most once.
 *
 * @example
 * ```ts ignore
 * const runs = await readBlockMap(sb, { ino: 12, iBlock: inode.iBlock, size: inode.size }, readBlock);
 * ```
 */
export async function readBlockMap(
  sb: Superblock,
  owner: BlockMapOwner,
  readBlock: (block: number) => Promise<Uint8Array>,
): Promise<BlockRun[]> {
  const bs = sb.blockSize;
  const per = bs / 4;
  const what = `block map of inode ${owner.ino}`;
  const limit = Math.ceil(owner.size / bs); // number of logical blocks to map
  const runs: BlockRun[] = [];
  const visited = new Set<number>();
  const iv = new DataView(owner.iBlock.buffer, owner.iBlock.byteOffset, 60);

  const checkPtr = (p: number, logical: number): void => {
    if (p < sb.firstDataBlock || p >= sb.blocksCount) {
      throw new CorruptError(what, `block ${p} (file block ${logical}) is outside the filesystem`);
    }
  };
  const add = (logical: number, physical: number): void => {
    checkPtr(physical, logical);
    const last = runs[runs.length - 1];
    if (
      last && last.logical + last.length === logical && last.physical + last.length === physical
    ) {
      last.length++;
    } else {
      runs.push({ logical, physical, length: 1, unwritten: false });
    }
  };
  // Maps the subtree of `level` levels of indirection under block `ptr`, covering logical
  // blocks from `base`.
  const walk = async (ptr: number, level: number, base: number): Promise<void> => {
    checkPtr(ptr, base);
    if (visited.has(ptr)) throw new CorruptError(what, `indirect block ${ptr} is used twice`);
    visited.add(ptr);
    const block = await readBlock(ptr);
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    const span = per ** (level - 1);
    for (let k = 0; k < per; k++) {
      const logical = base + k * span;
      if (logical >= limit) break;
      const p = v.getUint32(4 * k, true);
      if (p === 0) continue;
      if (level === 1) add(logical, p);
      else await walk(p, level - 1, logical);
    }
  };

  for (let k = 0; k < DIRECT && k < limit; k++) {
    const p = iv.getUint32(4 * k, true);
    if (p !== 0) add(k, p);
  }
  let base = DIRECT;
  for (let level = 1; level <= 3; level++) {
    if (base >= limit) break;
    const p = iv.getUint32(4 * (DIRECT + level - 1), true);
    if (p !== 0) await walk(p, level, base);
    base += per ** level;
  }
  return runs;
}
