/**
 * The ext2/ext3 indirect block codec, pure: `i_block` holds twelve direct pointers, then the
 * single, double and triple indirect block pointers; an indirect block is an array of
 * little-endian 32-bit block numbers (zero for a hole). The walk and the builder are
 * lib/ext4/indirect.ts.
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";

/** Direct pointers in `i_block`. */
export const DIRECT_BLOCKS = 12;

/**
 * Block pointers in one indirect block of `blockSize` bytes.
 *
 * @example
 * ```ts
 * import { pointersPerBlock } from "./indirect.ts";
 * console.log(pointersPerBlock(4096)); // 1024
 * ```
 */
export function pointersPerBlock(blockSize: number): number {
  return blockSize / 4;
}

/**
 * The largest logical block a block map reaches with `blockSize` blocks, plus one.
 *
 * @example
 * ```ts
 * import { blockMapLimit } from "./indirect.ts";
 * console.log(blockMapLimit(1024)); // 16843020
 * ```
 */
export function blockMapLimit(blockSize: number): number {
  const p = pointersPerBlock(blockSize);
  return DIRECT_BLOCKS + p + p * p + p * p * p;
}

/**
 * The path to logical block `logical`: which `i_block` slot (0..14), then the index in each
 * indirect block on the way down.
 *
 * @example
 * ```ts
 * import { blockMapPath } from "./indirect.ts";
 * console.log(blockMapPath(1024, 5)); // [ 5 ]
 * console.log(blockMapPath(1024, 12 + 256 + 3)); // [ 13, 0, 3 ]
 * ```
 */
export function blockMapPath(blockSize: number, logical: number): number[] {
  const p = pointersPerBlock(blockSize);
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

/**
 * Pointer `k` of `i_block` or of an indirect block (0: a hole).
 *
 * @example
 * ```ts
 * import { blockPointer } from "./indirect.ts";
 * console.log(blockPointer(new Uint8Array([0, 0, 0, 0, 9, 0, 0, 0]), 1)); // 9
 * ```
 */
export function blockPointer(block: Uint8Array, k: number): number {
  return new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(4 * k, true);
}

/**
 * Encodes `pointers` into `block` (`i_block` or an indirect block).
 *
 * @example
 * ```ts
 * import { encodePointers } from "./indirect.ts";
 * const iBlock = new Uint8Array(60);
 * encodePointers(iBlock, new Uint32Array(15).fill(0));
 * ```
 */
export function encodePointers(block: Uint8Array, pointers: Uint32Array): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  pointers.forEach((b, i) => v.setUint32(4 * i, b, true));
}
