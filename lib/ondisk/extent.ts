/**
 * The extent node codec (kernel `ext4_extents.h`), pure: the 12-byte header (magic 0xF30A,
 * entries, max, depth), index and leaf entries (48-bit block numbers, the unwritten bit in
 * `ee_len`), the metadata_csum tail of tree blocks, and node encoding. No I/O: the tree walk
 * that checks a whole tree is lib/ext4/extents.ts.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError } from "../errors.ts";
import type { Superblock } from "./superblock.ts";

/** `eh_magic`. */
export const EXTENT_MAGIC = 0xf30a;
/** Deepest tree the kernel accepts. */
export const MAX_EXTENT_DEPTH = 5;
/** Longest initialised extent; `ee_len` above it marks an unwritten extent. */
export const MAX_INIT_EXTENT = 32768;
/** Longest unwritten extent. */
export const MAX_UNWRITTEN_EXTENT = 32767;
/** Bytes of the header and of each entry. */
export const EXTENT_HEADER_SIZE = 12;
const ENTRY = 12;
/** Entries the root in `i_block` (60 bytes) holds. */
export const EXTENT_ROOT_MAX = 4;

/** A parsed extent header. */
export interface ExtentHeader {
  /** `eh_entries`: how many entries follow the header. */
  entries: number;
  /** `eh_max`: how many entries fit in this node. */
  max: number;
  /** `eh_depth`: levels below this node (0 = a leaf holding extents). */
  depth: number;
}

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

/** An index entry: the child node at block `child` holds the keys from `logical` on. */
export interface ExtentIndex {
  /** `ei_block`: the first logical block the child covers. */
  logical: number;
  /** The child node's block (`ei_leaf_lo` and `ei_leaf_hi`). */
  child: number;
}

/**
 * Entries that fit in a tree block of `blockSize` bytes.
 *
 * @example
 * ```ts
 * import { extentsPerBlock } from "./extent.ts";
 * console.log(extentsPerBlock(4096)); // 340
 * ```
 */
export function extentsPerBlock(blockSize: number): number {
  return Math.floor((blockSize - EXTENT_HEADER_SIZE) / ENTRY);
}

/**
 * Parses and checks the 12-byte header at the start of `node` (`i_block` or a tree block):
 * magic, `eh_max` within the node, `eh_entries` ≤ `eh_max`, depth ≤ 5.
 *
 * @example
 * ```ts
 * import { parseExtentHeader } from "./extent.ts";
 * const b = new Uint8Array(60);
 * b.set([0x0a, 0xf3, 0, 0, 4, 0, 0, 0]);
 * console.log(parseExtentHeader(b, "inode 12")); // { entries: 0, max: 4, depth: 0 }
 * ```
 */
export function parseExtentHeader(node: Uint8Array, what: string): ExtentHeader {
  const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
  const magic = v.getUint16(0, true);
  if (magic !== EXTENT_MAGIC) {
    throw new CorruptError(`extent header in ${what}`, `bad magic 0x${magic.toString(16)}`);
  }
  const entries = v.getUint16(2, true);
  const max = v.getUint16(4, true);
  const depth = v.getUint16(6, true);
  const capacity = Math.floor((node.length - EXTENT_HEADER_SIZE) / ENTRY);
  if (max > capacity || max === 0) {
    throw new CorruptError(`extent header in ${what}`, `eh_max ${max} (room for ${capacity})`);
  }
  if (entries > max) {
    throw new CorruptError(`extent header in ${what}`, `eh_entries ${entries} > eh_max ${max}`);
  }
  if (depth > MAX_EXTENT_DEPTH) {
    throw new CorruptError(`extent header in ${what}`, `depth ${depth} > ${MAX_EXTENT_DEPTH}`);
  }
  return { entries, max, depth };
}

/**
 * Decodes leaf entry `k` of a node (no checks: see lib/ext4/extents.ts).
 *
 * @example
 * ```ts
 * import { decodeLeafEntry } from "./extent.ts";
 * const b = new Uint8Array(24);
 * b.set([5, 0, 0, 0, 3, 0x80, 0, 0, 100, 0, 0, 0], 12);
 * console.log(decodeLeafEntry(b, 0)); // { logical: 5, physical: 100, length: 3, unwritten: true }
 * ```
 */
export function decodeLeafEntry(node: Uint8Array, k: number): FileExtent {
  const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
  const o = EXTENT_HEADER_SIZE + ENTRY * k;
  const raw = v.getUint16(o + 4, true);
  const unwritten = raw > MAX_INIT_EXTENT;
  const e: FileExtent = {
    logical: v.getUint32(o, true),
    physical: v.getUint32(o + 8, true) + v.getUint16(o + 6, true) * 2 ** 32,
    length: unwritten ? raw - MAX_INIT_EXTENT : raw,
  };
  if (unwritten) e.unwritten = true;
  return e;
}

/**
 * Decodes index entry `k` of a node (no checks: see lib/ext4/extents.ts).
 *
 * @example
 * ```ts
 * import { decodeIndexEntry } from "./extent.ts";
 * const b = new Uint8Array(24);
 * b.set([7, 0, 0, 0, 200, 0, 0, 0], 12);
 * console.log(decodeIndexEntry(b, 0)); // { logical: 7, child: 200 }
 * ```
 */
export function decodeIndexEntry(node: Uint8Array, k: number): ExtentIndex {
  const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
  const o = EXTENT_HEADER_SIZE + ENTRY * k;
  return {
    logical: v.getUint32(o, true),
    child: v.getUint32(o + 4, true) + v.getUint16(o + 8, true) * 2 ** 32,
  };
}

/**
 * Encodes a node into `buf` (zeroed first): header, then leaf entries (`depth` 0) or index
 * entries. `eh_generation` is 0, as the kernel leaves it. No checksum: see
 * {@link setExtentTail}.
 *
 * @example
 * ```ts
 * import { encodeExtentNode } from "./extent.ts";
 * const root = new Uint8Array(60);
 * encodeExtentNode(root, [{ logical: 0, physical: 900, length: 2 }], 0, 4);
 * ```
 */
export function encodeExtentNode(
  buf: Uint8Array,
  entries: readonly (FileExtent | ExtentIndex)[],
  depth: number,
  max: number,
): void {
  buf.fill(0);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  v.setUint16(0, EXTENT_MAGIC, true);
  v.setUint16(2, entries.length, true);
  v.setUint16(4, max, true);
  v.setUint16(6, depth, true);
  entries.forEach((entry, i) => {
    const o = EXTENT_HEADER_SIZE + ENTRY * i;
    v.setUint32(o, entry.logical, true);
    if (depth === 0) {
      const e = entry as FileExtent;
      v.setUint16(o + 4, e.unwritten ? e.length + MAX_INIT_EXTENT : e.length, true);
      v.setUint16(o + 6, Math.floor(e.physical / 2 ** 32), true);
      v.setUint32(o + 8, e.physical % 2 ** 32, true);
    } else {
      const e = entry as ExtentIndex;
      v.setUint32(o + 4, e.child % 2 ** 32, true);
      v.setUint16(o + 8, Math.floor(e.child / 2 ** 32), true);
    }
  });
}

/**
 * An empty extent root (a new file with no blocks).
 *
 * @example
 * ```ts
 * import { emptyExtentRoot } from "./extent.ts";
 * console.log(emptyExtentRoot().length); // 60
 * ```
 */
export function emptyExtentRoot(): Uint8Array {
  // Encoded once (every new file and directory takes one): each caller gets its own copy.
  if (!emptyRoot) {
    emptyRoot = new Uint8Array(60);
    encodeExtentNode(emptyRoot, [], 0, EXTENT_ROOT_MAX);
  }
  return emptyRoot.slice();
}

let emptyRoot: Uint8Array | undefined;

/**
 * The metadata_csum checksum of an extent tree block: crc32c seeded with the inode's seed
 * (filesystem seed, inode number, generation) over the header and `eh_max` entries.
 *
 * @example
 * ```ts ignore
 * const ok = extentBlockChecksum(sb, 12, gen, block) === storedTail;
 * ```
 */
export function extentBlockChecksum(
  sb: Pick<Superblock, "csumSeed">,
  ino: number,
  generation: number,
  block: Uint8Array,
): number {
  const max = block[4] | (block[5] << 8);
  const seed = crc32cU32(crc32cU32(sb.csumSeed, ino >>> 0), generation >>> 0);
  return crc32c(seed, block.subarray(0, EXTENT_HEADER_SIZE + ENTRY * max));
}

/**
 * Checks the tail of a tree block as the kernel's `ext4_extent_block_csum_verify` does;
 * throws a {@link CorruptError} naming `where` on a mismatch.
 *
 * @example
 * ```ts ignore
 * verifyExtentTail(sb, ino, generation, img, `extent block ${b} of inode ${ino}`);
 * ```
 */
export function verifyExtentTail(
  sb: Pick<Superblock, "csumSeed">,
  ino: number,
  generation: number,
  block: Uint8Array,
  where: string,
): void {
  const tailAt = EXTENT_HEADER_SIZE + ENTRY * (block[4] | (block[5] << 8));
  if (tailAt + 4 > block.length) throw new CorruptError(where, "no room for the checksum");
  const stored = new DataView(block.buffer, block.byteOffset).getUint32(tailAt, true);
  const want = extentBlockChecksum(sb, ino, generation, block);
  if (stored !== want) {
    throw new CorruptError(
      where,
      `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${want.toString(16)})`,
    );
  }
}

/**
 * Sets the tail of a tree block when the filesystem has metadata_csum.
 *
 * @example
 * ```ts ignore
 * encodeExtentNode(img, entries, depth, extentsPerBlock(sb.blockSize));
 * setExtentTail(sb, ino, generation, img);
 * ```
 */
export function setExtentTail(
  sb: Pick<Superblock, "csumSeed" | "hasMetadataCsum">,
  ino: number,
  generation: number,
  block: Uint8Array,
): void {
  if (!sb.hasMetadataCsum) return;
  const tailAt = EXTENT_HEADER_SIZE + ENTRY * (block[4] | (block[5] << 8));
  new DataView(block.buffer, block.byteOffset, block.byteLength)
    .setUint32(tailAt, extentBlockChecksum(sb, ino, generation, block), true);
}
