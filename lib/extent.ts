/**
 * Extent trees: the header (magic 0xF30A), index and leaf entries, checksummed tree blocks,
 * unwritten extents, and the walk that turns a tree of any depth into a sorted run list,
 * refusing cycles, bad depths and overlapping entries.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError } from "./errors.ts";
import type { BlockRun } from "./file_map.ts";
import type { Superblock } from "./superblock.ts";

/** `eh_magic`. */
export const EXTENT_MAGIC = 0xf30a;
/** The kernel's limit on tree depth. */
export const MAX_EXTENT_DEPTH = 5;
/** `ee_len` above this marks an unwritten extent. */
const INIT_MAX_LEN = 32768;

/** A parsed extent header. */
export interface ExtentHeader {
  /** `eh_entries`: how many entries follow the header. */
  entries: number;
  /** `eh_max`: how many entries fit in this node. */
  max: number;
  /** `eh_depth`: levels below this node (0 = a leaf holding extents). */
  depth: number;
}

/**
 * Parses and checks the 12-byte header at the start of `node` (`i_block` or a tree block).
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
  const capacity = Math.floor((node.length - 12) / 12);
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
 * The metadata_csum checksum of an extent tree block: crc32c seeded with the inode's seed
 * (filesystem seed, inode number, generation) over the header and `eh_max` entries.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * // An extent tree block below the inode's root: its tail follows the `eh_max` entries.
 * const node = new Uint8Array(sb.blockSize);
 * const max = Math.floor((sb.blockSize - 12 - 4) / 12); // entries before the 4-byte tail
 * new DataView(node.buffer).setUint32(12 + 12 * max, extentBlockChecksum(sb, 12, 0, node, max), true);
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function extentBlockChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
  max: number,
): number {
  const seed = crc32cU32(crc32cU32(sb.csumSeed, ino), generation);
  return crc32c(seed, block.subarray(0, 12 + 12 * max));
}

/** What {@link readExtentTree} needs to know about the inode. */
export interface ExtentOwner {
  /** The inode number (for checksums and error messages). */
  ino: number;
  /** `i_generation`: with the inode number, seeds the extent block checksums. */
  generation: number;
  /** The 60 bytes of `i_block` holding the tree root. */
  iBlock: Uint8Array;
}

/** Options for {@link readExtentTree}. */
export interface ExtentTreeOptions {
  /** Skip checksum verification of tree blocks. */
  ignoreChecksum?: boolean;
}

/**
 * Walks the whole extent tree of an inode and returns its leaves as runs sorted by logical
 * block. Every tree block is read once (a repeated block is a cycle), child depths must
 * decrease by one, entries must be sorted and leaves must not overlap or point outside the
 * filesystem.
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
  const what = `inode ${owner.ino}`;
  const runs: BlockRun[] = [];
  const visited = new Set<number>();
  const total = sb.blocksCount;
  const checkCsum = sb.hasMetadataCsum && !options.ignoreChecksum;

  const visit = async (
    node: Uint8Array,
    where: string,
    expectDepth: number | undefined,
    lowest: number,
  ): Promise<void> => {
    const h = parseExtentHeader(node, where);
    if (expectDepth !== undefined && h.depth !== expectDepth) {
      throw new CorruptError(
        `extent tree of ${what}`,
        `${where} has depth ${h.depth}, expected ${expectDepth}`,
      );
    }
    const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
    let prev = -1;
    for (let k = 0; k < h.entries; k++) {
      const e = 12 + 12 * k;
      const first = v.getUint32(e, true);
      if (first <= prev || first < lowest) {
        throw new CorruptError(`extent tree of ${what}`, `${where}: entries out of order`);
      }
      prev = first;
      if (h.depth === 0) {
        const rawLen = v.getUint16(e + 4, true);
        const unwritten = rawLen > INIT_MAX_LEN;
        const length = unwritten ? rawLen - INIT_MAX_LEN : rawLen;
        const physical = v.getUint32(e + 8, true) + v.getUint16(e + 6, true) * 2 ** 32;
        if (length === 0) continue;
        if (physical < sb.firstDataBlock || physical + length > total) {
          throw new CorruptError(
            `extent tree of ${what}`,
            `${where}: extent ${first}+${length} -> block ${physical} is outside the filesystem`,
          );
        }
        const last = runs[runs.length - 1];
        if (last && last.logical + last.length > first) {
          throw new CorruptError(`extent tree of ${what}`, `${where}: overlapping extents`);
        }
        if (first + length > 2 ** 32) {
          throw new CorruptError(`extent tree of ${what}`, `${where}: extent beyond 2^32 blocks`);
        }
        runs.push({ logical: first, physical, length, unwritten });
      } else {
        const child = v.getUint32(e + 4, true) + v.getUint16(e + 8, true) * 2 ** 32;
        if (child < sb.firstDataBlock || child >= total) {
          throw new CorruptError(
            `extent tree of ${what}`,
            `${where}: index points to block ${child} outside the filesystem`,
          );
        }
        if (visited.has(child)) {
          throw new CorruptError(`extent tree of ${what}`, `block ${child} is referenced twice`);
        }
        visited.add(child);
        const block = await readBlock(child);
        const childWhere = `${what} block ${child}`;
        const ch = parseExtentHeader(block, childWhere);
        if (checkCsum) {
          const tailAt = 12 + 12 * ch.max;
          if (tailAt + 4 > block.length) {
            throw new CorruptError(`extent block ${child} of ${what}`, "no room for checksum");
          }
          const stored = new DataView(block.buffer, block.byteOffset).getUint32(
            tailAt,
            true,
          );
          const want = extentBlockChecksum(sb, owner.ino, owner.generation, block, ch.max);
          if (stored !== want) {
            throw new CorruptError(
              `extent block ${child} of ${what}`,
              `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${
                want.toString(16)
              })`,
            );
          }
        }
        await visit(block, childWhere, h.depth - 1, first);
      }
    }
  };
  await visit(owner.iBlock, what, undefined, 0);
  return runs;
}
