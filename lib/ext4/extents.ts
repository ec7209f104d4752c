/**
 * Extent trees (kernel fs/ext4/extents.c): the one checked reader of a tree, used by the
 * read path ({@link readExtentTree}), by the writer's whole-mapping read ({@link walkExtentTree}
 * in lib/ext4/file_map_write.ts) and by the in-place editor's node reads (lib/ext4/extents_edit.ts).
 * Every node is checked as the kernel's `__ext4_ext_check` and `ext4_valid_extent_entries` do:
 * header (magic, `eh_max`, entries, depth ≤ 5), the depth its parent promises, index nodes
 * not empty, entries sorted and inside the key range their parent gives them, extents not
 * empty and inside the filesystem, the metadata_csum tail; no block is read twice (a cycle).
 * Also the building of a new file's whole tree ({@link buildExtentTree}); the in-place editor is
 * lib/ext4/extents_edit.ts. The node codec itself is lib/ondisk/extent.ts.
 *
 * @module
 */

import type { BlockRunAllocator, Extent } from "./block_runs.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import type { BlockRun } from "./file_map.ts";
import {
  decodeIndexEntry,
  decodeLeafEntry,
  encodeExtentNode,
  EXTENT_ROOT_MAX,
  type ExtentIndex,
  extentsPerBlock,
  type FileExtent,
  MAX_EXTENT_DEPTH,
  MAX_INIT_EXTENT,
  MAX_UNWRITTEN_EXTENT,
  parseExtentHeader,
  setExtentTail,
  verifyExtentTail,
} from "../ondisk/extent.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/** Logical blocks a file can address (`ee_block` is 32 bits). */
export const LOGICAL_LIMIT = 2 ** 32;

/** What a tree read needs to know about the inode. */
export interface ExtentOwner {
  /** The inode number (for checksums and error messages). */
  ino: number;
  /** `i_generation`: with the inode number, seeds the extent block checksums. */
  generation: number;
  /** The 60 bytes of `i_block` holding the tree root. */
  iBlock: Uint8Array;
}

/** Options for {@link readExtentTree} and {@link walkExtentTree}. */
export interface ExtentTreeOptions {
  /** Skip checksum verification of tree blocks. */
  ignoreChecksum?: boolean;
}

/** A node's entries: extents in a leaf (depth 0), index entries above. */
export type ExtentEntry = FileExtent | ExtentIndex;

/** What a node must be, from its parent: its depth and the key range `[lo, hi)` it covers. */
export interface ExtentNodeBounds {
  /** The depth the parent promises; undefined for the root (its own header says). */
  depth?: number;
  /** First logical block the node may hold. */
  lo: number;
  /** End of the logical range the node may hold. */
  hi: number;
}

/**
 * How errors name a node: `extent root of inode 12` or `extent block 500 of inode 12`.
 *
 * @example
 * ```ts
 * import { extentNodeWhere } from "./extents.ts";
 * console.log(extentNodeWhere(12, 500)); // "extent block 500 of inode 12"
 * ```
 */
export function extentNodeWhere(ino: number, block: number | null): string {
  return block === null ? `extent root of inode ${ino}` : `extent block ${block} of inode ${ino}`;
}

/**
 * Decodes and checks one node (the root in `i_block` when `block` is null): its header, the
 * depth and key range its parent gives it, and every entry.
 *
 * @example
 * ```ts ignore
 * const { depth, entries } = decodeExtentNode(sb, ino, null, iBlock, { lo: 0, hi: 2 ** 32 });
 * ```
 */
export function decodeExtentNode(
  sb: Superblock,
  ino: number,
  block: number | null,
  img: Uint8Array,
  bounds: ExtentNodeBounds,
): { depth: number; entries: ExtentEntry[] } {
  const where = extentNodeWhere(ino, block);
  const h = parseExtentHeader(img, where);
  if (bounds.depth !== undefined && h.depth !== bounds.depth) {
    throw new CorruptError(where, `depth ${h.depth}, expected ${bounds.depth}`);
  }
  if (block !== null && h.depth > 0 && h.entries === 0) {
    throw new CorruptError(where, "index node without entries");
  }
  const entries: ExtentEntry[] = [];
  let next = bounds.lo;
  let prevStart = -1;
  for (let k = 0; k < h.entries; k++) {
    if (h.depth === 0) {
      const e = decodeLeafEntry(img, k);
      checkOrder(where, k, e.logical, next, prevStart, bounds.hi);
      if (
        e.length === 0 || e.logical + e.length > bounds.hi || e.physical < sb.firstDataBlock ||
        e.physical + e.length > sb.blocksCount
      ) {
        throw new CorruptError(
          where,
          `bad extent ${e.logical}+${e.length} at block ${e.physical}: ${
            e.length === 0 ? "empty" : "outside the filesystem or its key range"
          }`,
        );
      }
      entries.push(e);
      prevStart = e.logical;
      next = e.logical + e.length;
    } else {
      const e = decodeIndexEntry(img, k);
      checkOrder(where, k, e.logical, next, prevStart, bounds.hi);
      if (e.child < sb.firstDataBlock || e.child >= sb.blocksCount) {
        throw new CorruptError(where, `index points to block ${e.child} outside the filesystem`);
      }
      entries.push(e);
      prevStart = e.logical;
      next = e.logical + 1;
    }
  }
  return { depth: h.depth, entries };
}

function checkOrder(
  where: string,
  k: number,
  logical: number,
  next: number,
  prevStart: number,
  hi: number,
): void {
  if (logical < next || logical >= hi) {
    const overlap = k > 0 && logical > prevStart && logical < next ? " (overlapping extents)" : "";
    throw new CorruptError(where, `entry ${k} at logical ${logical} is out of order${overlap}`);
  }
}

/**
 * Checks a tree block read from disk: header, then its metadata_csum tail (unless
 * `ignoreChecksum` or the filesystem has none), then its entries as {@link decodeExtentNode}.
 *
 * @example
 * ```ts ignore
 * const entries = checkExtentBlock(sb, owner, 500, img, { depth: 0, lo: 0, hi: 2 ** 32 });
 * ```
 */
export function checkExtentBlock(
  sb: Superblock,
  owner: Omit<ExtentOwner, "iBlock">,
  block: number,
  img: Uint8Array,
  bounds: ExtentNodeBounds,
  options: ExtentTreeOptions = {},
): ExtentEntry[] {
  const where = extentNodeWhere(owner.ino, block);
  parseExtentHeader(img, where);
  if (sb.hasMetadataCsum && !options.ignoreChecksum) {
    verifyExtentTail(sb, owner.ino, owner.generation, img, where);
  }
  return decodeExtentNode(sb, owner.ino, block, img, bounds).entries;
}

/**
 * Walks the whole extent tree of an inode, checking every node: returns the extents sorted by
 * logical block and the tree blocks (not counting the root in `i_block`), parents first.
 *
 * @example
 * ```ts ignore
 * const { extents, mapBlocks } = await walkExtentTree(sb, owner, (b) => tx.read(b));
 * ```
 */
export async function walkExtentTree(
  sb: Superblock,
  owner: ExtentOwner,
  readBlock: (block: number) => Promise<Uint8Array>,
  options: ExtentTreeOptions = {},
): Promise<{ extents: FileExtent[]; mapBlocks: number[] }> {
  const root = decodeExtentNode(sb, owner.ino, null, owner.iBlock, { lo: 0, hi: LOGICAL_LIMIT });
  // Most files are a root alone (up to four extents in i_block): no tree to walk, no visit
  // closure or set (every unlink and truncate reads the map).
  if (root.depth === 0) return { extents: root.entries as FileExtent[], mapBlocks: [] };
  const extents: FileExtent[] = [];
  const mapBlocks: number[] = [];
  const visited = new Set<number>();
  const visit = async (entries: ExtentEntry[], depth: number, hi: number): Promise<void> => {
    if (depth === 0) {
      extents.push(...entries as FileExtent[]);
      return;
    }
    const index = entries as ExtentIndex[];
    for (let i = 0; i < index.length; i++) {
      const { logical, child } = index[i];
      if (visited.has(child)) {
        throw new CorruptError(extentNodeWhere(owner.ino, child), "block is referenced twice");
      }
      visited.add(child);
      mapBlocks.push(child);
      const end = i + 1 < index.length ? index[i + 1].logical : hi;
      const bounds = { depth: depth - 1, lo: logical, hi: end };
      const img = await readBlock(child);
      await visit(checkExtentBlock(sb, owner, child, img, bounds, options), depth - 1, end);
    }
  };
  await visit(root.entries, root.depth, LOGICAL_LIMIT);
  return { extents, mapBlocks };
}

/**
 * Walks the whole extent tree of an inode and returns its leaves as runs sorted by logical
 * block (the read path's view of {@link walkExtentTree}).
 *
 * @example
 * ```ts ignore
 * const runs = await readExtentTree(sb, inode, (b) => readBlock(b));
 * ```
 */
export async function readExtentTree(
  sb: Superblock,
  owner: ExtentOwner,
  readBlock: (block: number) => Promise<Uint8Array>,
  options: ExtentTreeOptions = {},
): Promise<BlockRun[]> {
  const { extents } = await walkExtentTree(sb, owner, readBlock, options);
  return extents.map((e) => ({
    logical: e.logical,
    physical: e.physical,
    length: e.length,
    unwritten: e.unwritten === true,
  }));
}

/**
 * Checks that extents are sorted, disjoint, and each fits an extent entry.
 *
 * @example
 * ```ts ignore
 * validateExtents([{ logical: 0, physical: 900, length: 8 }], sb.blocksCount);
 * ```
 */
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
  alloc: BlockRunAllocator,
  sb: Superblock,
  options: { ino: number; generation: number; extents: FileExtent[]; goal?: number },
): Promise<BuiltExtentTree> {
  const { ino, generation, extents } = options;
  validateExtents(extents, sb.blocksCount);
  const iBlock = new Uint8Array(60);
  if (extents.length <= 4) {
    encodeExtentNode(iBlock, extents, 0, EXTENT_ROOT_MAX);
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
  let children: ExtentIndex[] = [];
  for (let i = 0; i < extents.length; i += per) {
    const chunk = extents.slice(i, i + per);
    const block = blocks[nextBlock++];
    const img = tx.newBlock(block);
    encodeExtentNode(img, chunk, 0, per);
    setExtentTail(sb, ino, generation, img);
    children.push({ logical: chunk[0].logical, child: block });
  }
  // Index levels until the root can hold the rest.
  for (let level = 1; children.length > 4; level++) {
    const parents: ExtentIndex[] = [];
    for (let i = 0; i < children.length; i += per) {
      const chunk = children.slice(i, i + per);
      const block = blocks[nextBlock++];
      const img = tx.newBlock(block);
      encodeExtentNode(img, chunk, level, per);
      setExtentTail(sb, ino, generation, img);
      parents.push({ logical: chunk[0].logical, child: block });
    }
    children = parents;
  }
  // The root indexes the top level. Each index starts where its child's first entry does,
  // which e2fsck checks.
  encodeExtentNode(iBlock, children, depth, EXTENT_ROOT_MAX);
  return { iBlock, depth, treeBlocks };
}
