/**
 * ext2/ext3 block maps (kernel fs/ext4/indirect.c): the one checked walk of twelve direct
 * pointers in `i_block`, then single, double and triple indirect blocks, used by the read path
 * ({@link readBlockMap}) and by the writer's whole-mapping read ({@link walkBlockMap} in
 * lib/ext4/file_map_write.ts); and the building of a new file's map ({@link buildBlockMap}). Zero
 * pointers are holes. The walk produces the same sorted extent list as an extent tree, merging
 * physically contiguous blocks. The pointer codec is lib/ondisk/indirect.ts.
 *
 * @module
 */

import type { BlockRunAllocator, Extent } from "./block_runs.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import type { BlockRun } from "./file_map.ts";
import { type FileExtent, MAX_INIT_EXTENT } from "../ondisk/extent.ts";
import {
  blockMapLimit,
  blockMapPath,
  blockPointer,
  DIRECT_BLOCKS,
  encodePointers,
  pointersPerBlock,
} from "../ondisk/indirect.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/** What {@link readBlockMap} needs to know about the inode. */
export interface BlockMapOwner {
  /** The inode number, for error messages. */
  ino: number;
  /** The 60 bytes of `i_block`: 15 little-endian block pointers. */
  iBlock: Uint8Array;
  /** File size in bytes: blocks past it are not mapped. */
  size: number;
}

/**
 * Walks the block map of an inode up to logical block `limit` (all it addresses when
 * omitted): returns the data extents sorted by logical block and the indirect blocks, parents
 * first. Every pointer must lie inside the filesystem and every indirect block is read at
 * most once.
 *
 * @example
 * ```ts ignore
 * const { extents, mapBlocks } = await walkBlockMap(sb, { ino, iBlock }, (b) => tx.read(b));
 * ```
 */
export async function walkBlockMap(
  sb: Superblock,
  owner: { ino: number; iBlock: Uint8Array; limit?: number },
  readBlock: (block: number) => Promise<Uint8Array>,
): Promise<{ extents: FileExtent[]; mapBlocks: number[] }> {
  const per = pointersPerBlock(sb.blockSize);
  const what = `block map of inode ${owner.ino}`;
  const limit = owner.limit ?? blockMapLimit(sb.blockSize); // logical blocks to map
  const extents: FileExtent[] = [];
  const mapBlocks: number[] = [];
  const visited = new Set<number>();

  const checkPtr = (p: number, logical: number): void => {
    if (p < sb.firstDataBlock || p >= sb.blocksCount) {
      throw new CorruptError(what, `block ${p} (file block ${logical}) is outside the filesystem`);
    }
  };
  const add = (logical: number, physical: number): void => {
    checkPtr(physical, logical);
    const last = extents.at(-1);
    if (
      last && last.logical + last.length === logical &&
      last.physical + last.length === physical && last.length < MAX_INIT_EXTENT
    ) {
      last.length++;
    } else {
      extents.push({ logical, physical, length: 1 });
    }
  };
  // Maps the subtree of `level` levels of indirection under block `ptr`, covering logical
  // blocks from `base`.
  const walk = async (ptr: number, level: number, base: number): Promise<void> => {
    checkPtr(ptr, base);
    if (visited.has(ptr)) throw new CorruptError(what, `indirect block ${ptr} is used twice`);
    visited.add(ptr);
    mapBlocks.push(ptr);
    const block = await readBlock(ptr);
    const pointers = Array.from({ length: per }, (_, k) => blockPointer(block, k));
    const span = per ** (level - 1);
    for (let k = 0; k < per; k++) {
      const logical = base + k * span;
      if (logical >= limit) break;
      const p = pointers[k];
      if (p === 0) continue;
      if (level === 1) add(logical, p);
      else await walk(p, level - 1, logical);
    }
  };

  for (let k = 0; k < DIRECT_BLOCKS && k < limit; k++) {
    const p = blockPointer(owner.iBlock, k);
    if (p !== 0) add(k, p);
  }
  let base = DIRECT_BLOCKS;
  for (let level = 1; level <= 3; level++) {
    if (base >= limit) break;
    const p = blockPointer(owner.iBlock, DIRECT_BLOCKS + level - 1);
    if (p !== 0) await walk(p, level, base);
    base += per ** level;
  }
  return { extents, mapBlocks };
}

/**
 * Reads the block map of an inode into runs sorted by logical block (the read path's view of
 * {@link walkBlockMap}): only blocks below the file size are visited.
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
  const limit = Math.ceil(owner.size / sb.blockSize);
  // owner may be an Inode, whose fields are getters: name them, do not spread.
  const { extents } = await walkBlockMap(
    sb,
    { ino: owner.ino, iBlock: owner.iBlock, limit },
    readBlock,
  );
  return extents.map((e) => ({ ...e, unwritten: false }));
}

/** The result of {@link buildBlockMap}. */
export interface BuiltBlockMap {
  /** The 60 bytes for `i_block`. */
  iBlock: Uint8Array;
  /** Indirect blocks allocated (count them in `i_blocks`). */
  indirectBlocks: Extent[];
}

interface Node {
  pointers: Uint32Array;
  children: Map<number, Node>;
  block: number;
}

/**
 * Builds the block map of a new file whose data lies in `extents` (sorted by logical
 * block): allocates indirect blocks near `goal`, writes them through the transaction and
 * returns `i_block`.
 *
 * @example
 * ```ts ignore
 * const map = await buildBlockMap(tx, alloc, sb, { extents, goal });
 * fields.block = map.iBlock;
 * ```
 */
export async function buildBlockMap(
  tx: Transaction,
  alloc: BlockRunAllocator,
  sb: Superblock,
  options: { extents: FileExtent[]; goal?: number },
): Promise<BuiltBlockMap> {
  const bs = sb.blockSize;
  const p = pointersPerBlock(bs);
  const limit = blockMapLimit(bs);
  const root: Node = { pointers: new Uint32Array(15), children: new Map(), block: 0 };
  const created: Node[] = [];
  let next = 0;
  for (const e of options.extents) {
    if (e.unwritten) throw new Ext4Error("INVALID", "block maps cannot hold unwritten extents");
    if (!Number.isSafeInteger(e.logical) || e.logical < next || e.length < 1) {
      throw new Ext4Error("INVALID", `extent at logical ${e.logical} overlaps or is out of order`);
    }
    if (e.logical + e.length > limit) {
      throw new Ext4Error(
        "INVALID",
        `logical block ${e.logical + e.length - 1} is beyond the block map`,
      );
    }
    if (e.physical < 1 || e.physical + e.length > Math.min(sb.blocksCount, 2 ** 32)) {
      throw new Ext4Error("INVALID", `physical block ${e.physical}+${e.length} cannot be mapped`);
    }
    next = e.logical + e.length;
    for (let i = 0; i < e.length; i++) {
      const path = blockMapPath(bs, e.logical + i);
      let node = root;
      for (let d = 0; d < path.length - 1; d++) {
        let child = node.children.get(path[d]);
        if (!child) {
          child = { pointers: new Uint32Array(p), children: new Map(), block: 0 };
          node.children.set(path[d], child);
          created.push(child);
        }
        node = child;
      }
      node.pointers[path[path.length - 1]] = e.physical + i;
    }
  }
  let indirectBlocks: Extent[] = [];
  if (created.length > 0) {
    indirectBlocks = await alloc.allocateBlocks(
      tx,
      options.goal ?? options.extents[0].physical,
      created.length,
      { contiguousPreferred: true },
    );
    const blocks: number[] = [];
    for (const e of indirectBlocks) for (let i = 0; i < e.length; i++) blocks.push(e.start + i);
    created.forEach((n, i) => n.block = blocks[i]);
    const link = (n: Node) => {
      for (const [slot, child] of n.children) n.pointers[slot] = child.block;
    };
    link(root);
    for (const n of created) {
      link(n);
      encodePointers(tx.newBlock(n.block), n.pointers);
    }
  }
  const iBlock = new Uint8Array(60);
  encodePointers(iBlock, root.pointers);
  return { iBlock, indirectBlocks };
}
