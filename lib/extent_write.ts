/**
 * Building extent trees for newly written files: the root in `i_block` (a leaf of up to four
 * extents), and when more extents are needed, leaf and index blocks with their
 * metadata_csum tails, one level more each time a level has more than four nodes.
 *
 * @module
 */

import type { Allocator, Extent } from "./alloc.ts";
import { crc32c } from "./checksum.ts";
import { Ext4Error } from "./errors.ts";
import { inodeChecksumSeed } from "./ondisk/dirent.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** `eh_magic`. */
export const EXTENT_MAGIC = 0xf30a;
/** Deepest tree the kernel accepts. */
export const MAX_EXTENT_DEPTH = 5;
/** Longest initialised extent; unwritten extents hold one block less. */
export const MAX_INIT_EXTENT = 32768;
export const MAX_UNWRITTEN_EXTENT = 32767;

const HEADER = 12;
const ENTRY = 12;

/** One mapping of a file: `length` blocks from logical `logical` at physical `physical`. */
export interface FileExtent {
  /** First logical block of the file covered. */
  logical: number;
  /** First physical block. */
  physical: number;
  /** Number of blocks. */
  length: number;
  /** Allocated but reads as zeros (fallocate). */
  unwritten?: boolean;
}

/** Entries that fit in a tree block of `blockSize` bytes. */
export function extentsPerBlock(blockSize: number): number {
  return Math.floor((blockSize - HEADER) / ENTRY);
}

function header(v: DataView, entries: number, max: number, depth: number): void {
  v.setUint16(0, EXTENT_MAGIC, true);
  v.setUint16(2, entries, true);
  v.setUint16(4, max, true);
  v.setUint16(6, depth, true);
  v.setUint32(8, 0, true);
}

/** Encodes leaf entries into `buf` (header included). */
function encodeLeaf(buf: Uint8Array, extents: FileExtent[], max: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  header(v, extents.length, max, 0);
  extents.forEach((e, i) => {
    const o = HEADER + i * ENTRY;
    v.setUint32(o, e.logical, true);
    v.setUint16(o + 4, e.unwritten ? e.length + MAX_INIT_EXTENT : e.length, true);
    v.setUint16(o + 6, Math.floor(e.physical / 2 ** 32), true);
    v.setUint32(o + 8, e.physical % 2 ** 32, true);
  });
}

/** Encodes index entries `(first logical, child block)` into `buf`. */
function encodeIndex(
  buf: Uint8Array,
  entries: { logical: number; block: number }[],
  max: number,
  depth: number,
): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  header(v, entries.length, max, depth);
  entries.forEach((e, i) => {
    const o = HEADER + i * ENTRY;
    v.setUint32(o, e.logical, true);
    v.setUint32(o + 4, e.block % 2 ** 32, true);
    v.setUint16(o + 8, Math.floor(e.block / 2 ** 32), true);
    v.setUint16(o + 10, 0, true);
  });
}

/**
 * The checksum of an extent tree block: crc32c, seeded with the inode's seed, of the block
 * up to its tail (header plus `eh_max` entries).
 */
export function extentBlockChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): number {
  const max = block[4] | (block[5] << 8);
  return crc32c(inodeChecksumSeed(sb, ino, generation), block.subarray(0, HEADER + ENTRY * max));
}

function setTail(sb: Superblock, ino: number, generation: number, block: Uint8Array): void {
  if (!sb.hasMetadataCsum) return;
  const max = block[4] | (block[5] << 8);
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(HEADER + ENTRY * max, extentBlockChecksum(sb, ino, generation, block), true);
}

/** Checks that extents are sorted, disjoint, and each fits an extent entry. */
export function validateExtents(extents: FileExtent[], blocksCount: number): void {
  let next = 0;
  for (const e of extents) {
    const max = e.unwritten ? MAX_UNWRITTEN_EXTENT : MAX_INIT_EXTENT;
    if (!Number.isSafeInteger(e.length) || e.length < 1 || e.length > max) {
      throw new Ext4Error("INVALID", `extent length ${e.length} is out of range (1..${max})`);
    }
    if (!Number.isSafeInteger(e.logical) || e.logical < next || e.logical + e.length > 2 ** 32) {
      throw new Ext4Error("INVALID", `extent at logical ${e.logical} overlaps or is out of order`);
    }
    if (
      !Number.isSafeInteger(e.physical) || e.physical < 1 || e.physical + e.length > blocksCount
    ) {
      throw new Ext4Error(
        "INVALID",
        `extent at physical ${e.physical}+${e.length} is outside the filesystem`,
      );
    }
    next = e.logical + e.length;
  }
}

/** The result of {@link buildExtentTree}. */
export interface BuiltExtentTree {
  /** The 60 bytes for `i_block`. */
  iBlock: Uint8Array;
  /** Tree depth (0: all extents in the inode). */
  depth: number;
  /** Blocks allocated for leaf and index nodes (count them in `i_blocks`). */
  treeBlocks: Extent[];
}

/**
 * Builds the extent tree of a new file whose data extents are `extents` (sorted by logical
 * block): allocates the tree blocks near `goal`, writes them through the transaction with
 * checksums, and returns the root for `i_block`.
 *
 * @example
 * ```ts ignore
 * const tree = await buildExtentTree(tx, alloc, sb, { ino, generation, extents, goal });
 * fields.block = tree.iBlock;
 * fields.flags |= InodeFlags.EXTENTS;
 * ```
 */
export async function buildExtentTree(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  options: { ino: number; generation: number; extents: FileExtent[]; goal?: number },
): Promise<BuiltExtentTree> {
  const { ino, generation, extents } = options;
  validateExtents(extents, sb.blocksCount);
  const iBlock = new Uint8Array(60);
  if (extents.length <= 4) {
    encodeLeaf(iBlock, extents, 4);
    return { iBlock, depth: 0, treeBlocks: [] };
  }
  const per = extentsPerBlock(sb.blockSize);
  // Plan the levels bottom-up: how many nodes each level has.
  const levelSizes: number[] = [];
  let n = Math.ceil(extents.length / per);
  levelSizes.push(n);
  while (n > 4) {
    n = Math.ceil(n / per);
    levelSizes.push(n);
  }
  const depth = levelSizes.length;
  if (depth > MAX_EXTENT_DEPTH) {
    throw new Ext4Error(
      "INVALID",
      `${extents.length} extents need a tree deeper than ${MAX_EXTENT_DEPTH}`,
    );
  }
  const total = levelSizes.reduce((a, b) => a + b, 0);
  const treeBlocks = await alloc.allocateBlocks(tx, options.goal ?? extents[0].physical, total, {
    contiguousPreferred: true,
  });
  const blocks: number[] = [];
  for (const e of treeBlocks) for (let i = 0; i < e.length; i++) blocks.push(e.start + i);
  let nextBlock = 0;

  // Leaves.
  let children: { logical: number; block: number }[] = [];
  for (let i = 0; i < extents.length; i += per) {
    const chunk = extents.slice(i, i + per);
    const block = blocks[nextBlock++];
    const img = tx.newBlock(block);
    encodeLeaf(img, chunk, per);
    setTail(sb, ino, generation, img);
    children.push({ logical: chunk[0].logical, block });
  }
  // Index levels until the root can hold the rest.
  for (let level = 1; children.length > 4; level++) {
    const parents: { logical: number; block: number }[] = [];
    for (let i = 0; i < children.length; i += per) {
      const chunk = children.slice(i, i + per);
      const block = blocks[nextBlock++];
      const img = tx.newBlock(block);
      encodeIndex(img, chunk, per, level);
      setTail(sb, ino, generation, img);
      parents.push({ logical: chunk[0].logical, block });
    }
    children = parents;
  }
  // The root indexes the top level. Each index starts where its child's first entry does,
  // which e2fsck checks.
  encodeIndex(iBlock, children, 4, depth);
  return { iBlock, depth, treeBlocks };
}

/** An empty extent root (a new file with no blocks). */
export function emptyExtentRoot(): Uint8Array {
  const iBlock = new Uint8Array(60);
  encodeLeaf(iBlock, [], 4);
  return iBlock;
}
