/**
 * statfs as the kernel's `ext4_statfs` computes it: free counts from the group descriptors,
 * the metadata overhead (from the superblock, or computed as the kernel does when it is 0)
 * and the blocks kept back on extent filesystems.
 *
 * @module
 */

import { Compat, Incompat } from "../ondisk/features.ts";
import { type GroupDescriptorTable, groupHasSuperblock } from "../ondisk/group_descriptor.ts";
import type { Inode } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Ext4Statfs } from "./fs_types.ts";

/**
 * The statistics of the filesystem of `sb` and `groups`; `journalBlocks` is the internal
 * journal's size (see {@link journalBlockCount}), counted as overhead when the superblock does
 * not give it.
 *
 * @example
 * ```ts
 * import { computeStatfs } from "./statfs.ts";
 * import { openMetadata } from "./super.ts";
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const { sb, groups } = await openMetadata(new MemoryBlockDevice(await Deno.readFile(img)));
 * console.log(computeStatfs(sb, groups, 0).nameMax); // 255
 * await Deno.remove(img);
 * ```
 */
export function computeStatfs(
  sb: Superblock,
  groups: GroupDescriptorTable,
  journalBlocks: number,
): Ext4Statfs {
  const ratio = sb.clusterSize / sb.blockSize;
  let freeClusters = 0;
  let freeInodes = 0;
  for (let g = 0; g < groups.length; g++) {
    const gd = groups.get(g);
    freeClusters += gd.freeBlocksCount;
    freeInodes += gd.freeInodesCount;
  }
  const free = freeClusters * ratio;
  // The kernel keeps 2% of clusters (at most 4096) back on extent filesystems, on top of
  // the superblock's reserved blocks.
  const resv = (sb.incompat & Incompat.EXTENTS)
    ? Math.min(Math.floor(Math.floor(sb.blocksCount / ratio) / 50), 4096) * ratio
    : 0;
  return {
    blockSize: sb.blockSize,
    blocks: sb.blocksCount - overheadClusters(sb, journalBlocks) * ratio,
    freeBlocks: free,
    availBlocks: Math.max(0, free - (sb.reservedBlocksCount + resv)),
    files: sb.inodesCount,
    freeFiles: freeInodes,
    nameMax: 255,
  };
}

/**
 * The blocks of the internal journal when statfs must compute the overhead (the superblock's
 * `s_overhead_clusters` is 0), else 0; an unreadable journal inode counts 0 (statfs is an
 * estimate then; reading files still works).
 *
 * @example
 * ```ts ignore
 * const journalBlocks = await journalBlockCount(sb, (ino) => fs.inode(ino));
 * ```
 */
export async function journalBlockCount(
  sb: Superblock,
  inode: (ino: number) => Promise<Inode>,
): Promise<number> {
  if (sb.overheadClusters !== 0 || !(sb.compat & Compat.HAS_JOURNAL) || sb.journalInum === 0) {
    return 0;
  }
  try {
    return Math.ceil((await inode(sb.journalInum)).size / sb.blockSize);
  } catch {
    return 0;
  }
}

/**
 * Clusters that hold metadata, as statfs subtracts them: the superblock's
 * `s_overhead_clusters`, or computed as the kernel's count does (superblock and descriptor
 * copies, reserved GDT blocks, bitmaps, inode tables, the internal journal; exact without
 * bigalloc).
 */
function overheadClusters(sb: Superblock, journalBlocks: number): number {
  if (sb.overheadClusters !== 0) return sb.overheadClusters;
  const ratio = sb.clusterSize / sb.blockSize;
  const groups = sb.groupCount;
  const gdtBlocks = Math.ceil(groups / (sb.blockSize / sb.descSize));
  const metaBg = (sb.incompat & Incompat.META_BG) !== 0;
  const perBlock = sb.blockSize / sb.descSize;
  let blocks = sb.firstDataBlock;
  for (let g = 0; g < groups; g++) {
    const hasSuper = groupHasSuperblock(sb, g);
    blocks += hasSuper ? 1 : 0;
    if (!metaBg || g < sb.firstMetaBg * perBlock) {
      if (hasSuper) blocks += gdtBlocks + sb.reservedGdtBlocks;
    } else {
      const inMeta = g % perBlock;
      if (inMeta === 0 || inMeta === 1 || inMeta === perBlock - 1) blocks += 1;
    }
    blocks += 2 + sb.inodeTableBlocksPerGroup;
  }
  return Math.ceil(blocks / ratio) + Math.ceil(journalBlocks / ratio);
}
