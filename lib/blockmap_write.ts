/**
 * Building ext2/3 block maps for newly written files: twelve direct pointers in `i_block`,
 * then single, double and triple indirect blocks of little-endian 32-bit block numbers
 * (zero for a hole).
 *
 * @module
 */

import type { Allocator, Extent } from "./alloc.ts";
import { Ext4Error } from "./errors.ts";
import type { FileExtent } from "./ondisk/extent.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** Direct pointers in `i_block`. */
export const DIRECT_BLOCKS = 12;

/** The largest logical block a block map reaches with `blockSize` blocks, plus one. */
export function blockMapLimit(blockSize: number): number {
  const p = blockSize / 4;
  return DIRECT_BLOCKS + p + p * p + p * p * p;
}

/**
 * The path to logical block `logical`: which `i_block` slot (0..14), then the index in each
 * indirect block on the way down.
 *
 * @example
 * ```ts
 * import { blockMapPath } from "./blockmap_write.ts";
 * console.log(blockMapPath(1024, 5)); // [ 5 ]
 * console.log(blockMapPath(1024, 12 + 256 + 3)); // [ 13, 0, 3 ]
 * ```
 */
export function blockMapPath(blockSize: number, logical: number): number[] {
  const p = blockSize / 4;
  let l = logical;
  if (l < DIRECT_BLOCKS) return [l];
  l -= DIRECT_BLOCKS;
  if (l < p) return [12, l];
  l -= p;
  if (l < p * p) return [13, Math.floor(l / p), l % p];
  l -= p * p;
  if (l < p * p * p) return [14, Math.floor(l / (p * p)), Math.floor(l / p) % p, l % p];
  throw new Ext4Error("INVALID", `logical block ${logical} is beyond what a block map addresses`);
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
  alloc: Allocator,
  sb: Superblock,
  options: { extents: FileExtent[]; goal?: number },
): Promise<BuiltBlockMap> {
  const bs = sb.blockSize;
  const p = bs / 4;
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
      const img = tx.newBlock(n.block);
      const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
      n.pointers.forEach((b, i) => v.setUint32(4 * i, b, true));
    }
  }
  const iBlock = new Uint8Array(60);
  const v = new DataView(iBlock.buffer);
  root.pointers.forEach((b, i) => v.setUint32(4 * i, b, true));
  return { iBlock, indirectBlocks };
}
