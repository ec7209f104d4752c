/**
 * Writing the contents of a new file: allocating its data blocks near a goal (one run per
 * stretch of data, holes where the data is all zeros when asked), queueing the data as
 * ordered writes, and building its mapping (extent tree, or block map on ext2/3).
 *
 * @module
 */

import type { Allocator, Extent } from "./alloc.ts";
import { buildBlockMap } from "./indirect.ts";
import { Ext4Error } from "../errors.ts";
import { buildExtentTree } from "./extents.ts";
import { type FileExtent, MAX_INIT_EXTENT } from "../ondisk/extent.ts";
import { Incompat } from "../ondisk/features.ts";
import { InodeFlags } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/** Options for {@link writeNewFileData}. */
export interface NewFileDataOptions {
  /** The inode the file will have (its checksum seed covers the extent blocks). */
  ino: number;
  /** The inode's `i_generation` (also in the extent block checksum seed). */
  generation: number;
  /** The contents. */
  data: Uint8Array;
  /** Where to start looking for blocks (default: the start of the inode's group). */
  goal?: number;
  /** Leave blocks that are all zeros unallocated (holes). */
  sparse?: boolean;
  /**
   * `data`'s buffer holds zeros from the end of `data` to the end of its last block: that
   * block is queued as a view of it rather than a zero-padded copy (a bulk copy reads many
   * small files into one block-aligned buffer).
   */
  zeroPadded?: boolean;
  /** Mapping: extents where the filesystem has them, else a block map. */
  mapping?: "extents" | "blockmap";
}

/** What the inode of a file written by {@link writeNewFileData} must carry. */
export interface NewFileData {
  /** `i_block`. */
  iBlock: Uint8Array;
  /** Flags to set (`EXTENTS` for an extent-mapped file). */
  flags: number;
  /** st_blocks: data and mapping blocks, in 512-byte units. */
  blocks512: number;
  /** The data mapping. */
  extents: FileExtent[];
  /** Blocks of the extent tree or the indirect blocks. */
  mapBlocks: Extent[];
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Allocates and queues the data of a new file and builds its mapping, all in `tx`. ENOSPC
 * (raised before anything is allocated when the data cannot fit) leaves the transaction as
 * it was; any later failure aborts it.
 *
 * @example
 * ```ts ignore
 * const file = await writeNewFileData(tx, alloc, sb, { ino, generation, data, sparse: true });
 * const raw = encodeInode(sb, ino, { ...fields, size: data.length, flags: file.flags,
 *   blocks512: file.blocks512, block: file.iBlock });
 * ```
 */
export async function writeNewFileData(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  options: NewFileDataOptions,
): Promise<NewFileData> {
  const bs = sb.blockSize;
  const { data, ino, generation } = options;
  const mapping = options.mapping ??
    ((sb.incompat & Incompat.EXTENTS) ? "extents" : "blockmap");
  if (mapping === "extents" && !(sb.incompat & Incompat.EXTENTS)) {
    throw new Ext4Error("UNSUPPORTED", "the filesystem has no extent feature");
  }
  const nblocks = Math.ceil(data.length / bs);
  // Stretches of logical blocks that hold data.
  const runs: { logical: number; blocks: number }[] = [];
  for (let lb = 0; lb < nblocks; lb++) {
    const slice = data.subarray(lb * bs, Math.min(data.length, (lb + 1) * bs));
    if (options.sparse && isZero(slice)) continue;
    const last = runs.at(-1);
    if (last && last.logical + last.blocks === lb) last.blocks++;
    else runs.push({ logical: lb, blocks: 1 });
  }
  const wanted = runs.reduce((a, r) => a + r.blocks, 0);
  // Mapping blocks are not known yet; a rough bound keeps ENOSPC before any change.
  if (wanted > alloc.freeBlockCount) {
    throw new Ext4Error(
      "NO_SPACE",
      `no space left: ${wanted} blocks wanted, ${alloc.freeBlockCount} free`,
    );
  }
  const goal = options.goal ?? sb.firstDataBlock +
      Math.floor((ino - 1) / sb.inodesPerGroup) * sb.blocksPerGroup;
  const extents: FileExtent[] = [];
  let lastPhysical = goal;
  return await tx.discardOnError(async () => {
    for (const run of runs) {
      const got = await alloc.allocateBlocks(tx, lastPhysical, run.blocks, {
        contiguousPreferred: true,
      });
      let logical = run.logical;
      for (const e of got) {
        const start = logical * bs;
        const end = (logical + e.length) * bs;
        let bytes = data.subarray(start, Math.min(end, data.length));
        if (
          bytes.length < end - start && options.zeroPadded &&
          data.byteOffset + end <= data.buffer.byteLength
        ) {
          bytes = new Uint8Array(data.buffer, data.byteOffset + start, end - start);
        } else if (bytes.length < end - start) {
          const padded = new Uint8Array(end - start);
          padded.set(bytes);
          bytes = padded;
        }
        tx.writeData(e.start, bytes);
        const prev = extents.at(-1);
        if (
          prev && prev.logical + prev.length === logical &&
          prev.physical + prev.length === e.start && prev.length + e.length <= MAX_INIT_EXTENT
        ) {
          prev.length += e.length;
        } else {
          extents.push({ logical, physical: e.start, length: e.length });
        }
        logical += e.length;
        lastPhysical = e.start + e.length;
      }
    }
    let iBlock: Uint8Array;
    let mapBlocks: Extent[];
    let flags = 0;
    if (mapping === "extents") {
      const tree = await buildExtentTree(tx, alloc, sb, { ino, generation, extents, goal });
      iBlock = tree.iBlock;
      mapBlocks = tree.treeBlocks;
      flags = InodeFlags.EXTENTS;
    } else {
      const map = await buildBlockMap(tx, alloc, sb, { extents, goal });
      iBlock = map.iBlock;
      mapBlocks = map.indirectBlocks;
    }
    const total = wanted + mapBlocks.reduce((a, e) => a + e.length, 0);
    return { iBlock, flags, blocks512: total * (bs / 512), extents, mapBlocks };
  });
}
