/**
 * Block and inode bitmaps: bit operations, reading (an uninitialised bitmap is computed the
 * way the kernel initialises it), the group metadata each group holds, and the bitmap
 * checksums of metadata_csum.
 *
 * Bit `i` of group `g`'s block bitmap is block `firstDataBlock + g * blocksPerGroup + i`;
 * bit `i` of its inode bitmap is inode `g * inodesPerGroup + i + 1`. Bits past the end of the
 * group (the rest of the bitmap block, and blocks past the end of the filesystem in the last
 * group) are set, as mke2fs, the kernel and e2fsck expect.
 *
 * @module
 */

import { crc32c } from "./checksum.ts";
import { CorruptError } from "../errors.ts";
import { Incompat, RoCompat } from "./features.ts";
import {
  type GroupDescriptor,
  type GroupDescriptorTable,
  groupFirstBlock,
  GroupFlags,
  groupHasSuperblock,
} from "./group_descriptor.ts";
import type { Superblock } from "./superblock.ts";

/** Anything that reads block images: a {@link BlockCache} or a {@link Transaction}. */
export interface BlockReader {
  /** The current image of filesystem block `block` (a block-size byte array). */
  read(block: number): Promise<Uint8Array>;
}

// ---- bit operations (ext4 bitmaps are little-endian bit strings) ----

/** True when bit `i` is set. */
export function testBit(bitmap: Uint8Array, i: number): boolean {
  return (bitmap[i >>> 3] & (1 << (i & 7))) !== 0;
}

/** Sets bit `i`. */
export function setBit(bitmap: Uint8Array, i: number): void {
  bitmap[i >>> 3] |= 1 << (i & 7);
}

/** Clears bit `i`. */
export function clearBit(bitmap: Uint8Array, i: number): void {
  bitmap[i >>> 3] &= ~(1 << (i & 7));
}

/** Sets bits `[from, to)`. */
export function setBits(bitmap: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) setBit(bitmap, i);
}

/** Number of clear bits in `[0, n)`. */
export function countZeros(bitmap: Uint8Array, n: number): number {
  let zeros = 0;
  const whole = n >>> 3;
  for (let i = 0; i < whole; i++) zeros += 8 - POPCOUNT[bitmap[i]];
  for (let i = whole * 8; i < n; i++) if (!testBit(bitmap, i)) zeros++;
  return zeros;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let c = 0;
  for (let v = b; v; v >>= 1) c += v & 1;
  return c;
});

/**
 * The first clear bit in `[from, to)`, or -1.
 *
 * @example
 * ```ts
 * import { findZero } from "./bitmap.ts";
 * console.log(findZero(new Uint8Array([0xff, 0x0b]), 0, 16)); // 10
 * ```
 */
export function findZero(bitmap: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to) {
    if ((i & 7) === 0 && i + 8 <= to && bitmap[i >>> 3] === 0xff) {
      i += 8;
      continue;
    }
    if (!testBit(bitmap, i)) return i;
    i++;
  }
  return -1;
}

/** The first set bit in `[from, to)`, or `to` when there is none. */
export function findOne(bitmap: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to) {
    if ((i & 7) === 0 && i + 8 <= to && bitmap[i >>> 3] === 0) {
      i += 8;
      continue;
    }
    if (testBit(bitmap, i)) return i;
    i++;
  }
  return to;
}

/**
 * The first run of at least `length` clear bits inside `[from, to)`: its start, or -1.
 *
 * @example
 * ```ts
 * import { findZeroRun } from "./bitmap.ts";
 * console.log(findZeroRun(new Uint8Array([0b00010001, 0]), 0, 16, 4)); // 5
 * ```
 */
export function findZeroRun(bitmap: Uint8Array, from: number, to: number, length: number): number {
  let i = from;
  while (i < to) {
    const start = findZero(bitmap, i, to);
    if (start < 0) return -1;
    const end = findOne(bitmap, start, Math.min(to, start + length));
    if (end - start >= length) return start;
    i = end + 1;
  }
  return -1;
}

// ---- geometry ----

/** Number of blocks (clusters) in `group`: the last group may be short. */
export function blocksInGroup(sb: Superblock, group: number): number {
  const last = sb.groupCount - 1;
  if (group < last) return sb.blocksPerGroup;
  return sb.blocksCount - sb.firstDataBlock - last * sb.blocksPerGroup;
}

/** Number of blocks of the primary group descriptor table (`s_gdb_count`). */
export function descriptorBlockCount(sb: Superblock): number {
  return Math.ceil(sb.groupCount / (sb.blockSize / sb.descSize));
}

/**
 * Number of blocks at the start of `group` taken by the superblock backup, group descriptor
 * blocks and reserved GDT blocks (the kernel's `ext4_num_base_meta_blocks`).
 *
 * @example
 * ```ts ignore
 * baseMetaBlocks(sb, 0); // 1 + descriptor blocks + reserved GDT blocks
 * ```
 */
export function baseMetaBlocks(sb: Superblock, group: number): number {
  const hasSuper = groupHasSuperblock(sb, group) ? 1 : 0;
  const perBlock = sb.blockSize / sb.descSize;
  const metaBg = (sb.incompat & Incompat.META_BG) !== 0;
  if (!metaBg || group < sb.firstMetaBg * perBlock) {
    if (!hasSuper) return 0;
    const gdb = metaBg ? sb.firstMetaBg : descriptorBlockCount(sb);
    return 1 + gdb + sb.reservedGdtBlocks;
  }
  const first = Math.floor(group / perBlock) * perBlock;
  const inMeta = group === first || group === first + 1 || group === first + perBlock - 1;
  return hasSuper + (inMeta ? 1 : 0);
}

/** True when the group descriptors carry checksums and uninit flags mean something. */
export function hasGroupChecksums(sb: Superblock): boolean {
  return (sb.roCompat & (RoCompat.GDT_CSUM | RoCompat.METADATA_CSUM)) !== 0;
}

/**
 * The block bitmap the kernel writes when it first uses a BLOCK_UNINIT group
 * (`ext4_init_block_bitmap`): the group's base metadata, and its own bitmaps and inode table
 * when they lie inside it, marked used; bits past the end of the group set.
 */
export function initialBlockBitmap(
  sb: Superblock,
  gdt: GroupDescriptorTable,
  group: number,
): Uint8Array {
  const bs = sb.blockSize;
  const bitmap = new Uint8Array(bs);
  const n = baseMetaBlocks(sb, group);
  setBits(bitmap, 0, n);
  const gd = gdt.get(group);
  const first = groupFirstBlock(sb, group);
  const size = blocksInGroup(sb, group);
  const mark = (b: number) => {
    if (b >= first && b < first + size) setBit(bitmap, b - first);
  };
  mark(gd.blockBitmap);
  mark(gd.inodeBitmap);
  for (let i = 0; i < sb.inodeTableBlocksPerGroup; i++) mark(gd.inodeTable + i);
  setBits(bitmap, size, bs * 8);
  return bitmap;
}

/** The inode bitmap of an INODE_UNINIT group: all free, padding bits set. */
export function initialInodeBitmap(sb: Superblock): Uint8Array {
  const bitmap = new Uint8Array(sb.blockSize);
  setBits(bitmap, sb.inodesPerGroup, sb.blockSize * 8);
  return bitmap;
}

/**
 * The block bitmap of a group as it is in effect: computed for a BLOCK_UNINIT group, else
 * read. The result is a fresh copy the caller may change.
 *
 * @example
 * ```ts ignore
 * const bm = await readBlockBitmap(cache, sb, gdt, 3);
 * console.log(countZeros(bm, blocksInGroup(sb, 3)));
 * ```
 */
export async function readBlockBitmap(
  reader: BlockReader,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  group: number,
): Promise<Uint8Array> {
  const gd = gdt.get(group);
  if (hasGroupChecksums(sb) && (gd.flags & GroupFlags.BLOCK_UNINIT)) {
    return initialBlockBitmap(sb, gdt, group);
  }
  checkLocation(sb, gd, gd.blockBitmap, "block bitmap");
  return Uint8Array.from(await reader.read(gd.blockBitmap));
}

/** The inode bitmap of a group as it is in effect (computed for INODE_UNINIT); a copy. */
export async function readInodeBitmap(
  reader: BlockReader,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  group: number,
): Promise<Uint8Array> {
  const gd = gdt.get(group);
  if (hasGroupChecksums(sb) && (gd.flags & GroupFlags.INODE_UNINIT)) {
    return initialInodeBitmap(sb);
  }
  checkLocation(sb, gd, gd.inodeBitmap, "inode bitmap");
  return Uint8Array.from(await reader.read(gd.inodeBitmap));
}

function checkLocation(sb: Superblock, gd: GroupDescriptor, block: number, what: string): void {
  if (block < sb.firstDataBlock || block >= sb.blocksCount) {
    throw new CorruptError(
      `${what} of group ${gd.group}`,
      `block ${block} is outside the filesystem`,
    );
  }
}

// ---- checksums (metadata_csum) ----

const BLOCK_CSUM_HI = 0x38;
const INODE_CSUM_HI = 0x3a;

/** crc32c of the first `clustersPerGroup / 8` bytes of a block bitmap, with the fs seed. */
export function blockBitmapChecksum(sb: Superblock, bitmap: Uint8Array): number {
  return crc32c(sb.csumSeed, bitmap.subarray(0, sb.clustersPerGroup >>> 3));
}

/** crc32c of the first `inodesPerGroup / 8` bytes of an inode bitmap, with the fs seed. */
export function inodeBitmapChecksum(sb: Superblock, bitmap: Uint8Array): number {
  return crc32c(sb.csumSeed, bitmap.subarray(0, sb.inodesPerGroup >>> 3));
}

function storeCsum(gd: GroupDescriptor, lo: number, hi: number, csum: number): void {
  const view = new DataView(gd.bytes.buffer, gd.bytes.byteOffset, gd.bytes.byteLength);
  view.setUint16(lo, csum & 0xffff, true);
  if (gd.bytes.length >= hi + 2) view.setUint16(hi, csum >>> 16, true);
}

/**
 * Stores the block bitmap checksum in the descriptor (lo half, and hi half on 64-byte
 * descriptors) when metadata_csum is on. The descriptor's own checksum is not updated.
 *
 * @example
 * ```ts ignore
 * setBlockBitmapChecksum(sb, gdt.get(g), bitmap);
 * gd.checksum = groupDescriptorChecksum(sb, gd)!;
 * ```
 */
export function setBlockBitmapChecksum(
  sb: Superblock,
  gd: GroupDescriptor,
  bitmap: Uint8Array,
): void {
  if (!sb.hasMetadataCsum) return;
  storeCsum(gd, 0x18, BLOCK_CSUM_HI, blockBitmapChecksum(sb, bitmap));
}

/** Stores the inode bitmap checksum in the descriptor when metadata_csum is on. */
export function setInodeBitmapChecksum(
  sb: Superblock,
  gd: GroupDescriptor,
  bitmap: Uint8Array,
): void {
  if (!sb.hasMetadataCsum) return;
  storeCsum(gd, 0x1a, INODE_CSUM_HI, inodeBitmapChecksum(sb, bitmap));
}

/** True when the stored block bitmap checksum matches (always true without metadata_csum). */
export function blockBitmapChecksumValid(
  sb: Superblock,
  gd: GroupDescriptor,
  bitmap: Uint8Array,
): boolean {
  if (!sb.hasMetadataCsum) return true;
  const c = blockBitmapChecksum(sb, bitmap);
  const wide = gd.bytes.length >= BLOCK_CSUM_HI + 2;
  return wide ? c === gd.blockBitmapCsum : (c & 0xffff) === gd.blockBitmapCsum;
}

/** True when the stored inode bitmap checksum matches (always true without metadata_csum). */
export function inodeBitmapChecksumValid(
  sb: Superblock,
  gd: GroupDescriptor,
  bitmap: Uint8Array,
): boolean {
  if (!sb.hasMetadataCsum) return true;
  const c = inodeBitmapChecksum(sb, bitmap);
  const wide = gd.bytes.length >= INODE_CSUM_HI + 2;
  return wide ? c === gd.inodeBitmapCsum : (c & 0xffff) === gd.inodeBitmapCsum;
}
