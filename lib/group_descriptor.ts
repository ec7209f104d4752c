/**
 * Block group descriptors (32- and 64-bit), where they live (including meta_bg), their
 * checksums (crc16 for gdt_csum, crc32c for metadata_csum), and which groups carry
 * superblock backups.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "./block_device.ts";
import { crc16, crc32c, crc32cU32 } from "./checksum.ts";
import { CorruptError } from "./errors.ts";
import { Compat, Incompat, RoCompat } from "./features.ts";
import type { Superblock } from "./superblock.ts";

/** `bg_flags` bits. */
export const GroupFlags = {
  INODE_UNINIT: 0x1,
  BLOCK_UNINIT: 0x2,
  ITABLE_ZEROED: 0x4,
} as const;

const CHECKSUM_OFFSET = 0x1e;

function isPowerOf(n: number, base: number): boolean {
  if (n < base) return n === 1;
  while (n % base === 0) n /= base;
  return n === 1;
}

/**
 * True when block group `group` holds a superblock backup (and so a descriptor backup).
 *
 * @example
 * ```ts
 * import { groupHasSuperblock } from "./group_descriptor.ts";
 * const sb = { compat: 0, roCompat: 1, backupBgs: [0, 0] as [number, number] };
 * console.log([0, 1, 2, 3, 9, 25, 49].map((g) => groupHasSuperblock(sb, g)));
 * // [ true, true, false, true, true, true, true ]
 * ```
 */
export function groupHasSuperblock(
  sb: Pick<Superblock, "compat" | "roCompat" | "backupBgs">,
  group: number,
): boolean {
  if (group === 0) return true;
  if (sb.compat & Compat.SPARSE_SUPER2) {
    const [a, b] = sb.backupBgs;
    return group === a || group === b;
  }
  if (group <= 1 || (sb.roCompat & RoCompat.SPARSE_SUPER) === 0) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/** First block of a block group. */
export function groupFirstBlock(sb: Superblock, group: number): number {
  return sb.firstDataBlock + group * sb.blocksPerGroup;
}

/**
 * The block that holds descriptor block number `index` of the primary table, following
 * meta_bg where it applies.
 *
 * @example
 * ```ts ignore
 * const block = descriptorBlockLocation(sb, 0); // 1 on 1 KiB blocks, else 1 too (block after sb)
 * ```
 */
export function descriptorBlockLocation(sb: Superblock, index: number): number {
  const metaBg = (sb.incompat & Incompat.META_BG) !== 0;
  // bigalloc on 1 KiB blocks has first_data_block 0, yet the superblock is still block 1.
  const superBlock = sb.firstDataBlock === 0 && sb.blockSize === 1024 ? 1 : sb.firstDataBlock;
  if (!metaBg || index < sb.firstMetaBg) return superBlock + 1 + index;
  const perBlock = sb.blockSize / sb.descSize;
  const group = perBlock * index;
  const hasSuper = groupHasSuperblock(sb, group) ? 1 : 0;
  // 1 KiB blocks with bigalloc put block 0 in group 0; e2fsprogs shifts by one there.
  const adjust = group === 0 && sb.blockSize === 1024 && sb.clusterSize > sb.blockSize ? 1 : 0;
  return groupFirstBlock(sb, group) + hasSuper + adjust;
}

/** One group's descriptor, a view on the bytes of the table. */
export class GroupDescriptor {
  readonly group: number;
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  readonly #wide: boolean;

  constructor(group: number, bytes: Uint8Array) {
    this.group = group;
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#wide = bytes.length >= 64;
  }

  #u16(o: number): number {
    return this.#view.getUint16(o, true);
  }
  #u32(o: number): number {
    return this.#view.getUint32(o, true);
  }
  #lohi32(lo: number, hi: number): number {
    return this.#u32(lo) + (this.#wide ? this.#u32(hi) * 2 ** 32 : 0);
  }
  #lohi16(lo: number, hi: number): number {
    return this.#u16(lo) + (this.#wide ? this.#u16(hi) * 65536 : 0);
  }
  #set16(lo: number, hi: number, v: number): void {
    this.#view.setUint16(lo, v & 0xffff, true);
    if (this.#wide) this.#view.setUint16(hi, Math.floor(v / 65536) & 0xffff, true);
  }

  get blockBitmap(): number {
    return this.#lohi32(0x0, 0x20);
  }
  get inodeBitmap(): number {
    return this.#lohi32(0x4, 0x24);
  }
  get inodeTable(): number {
    return this.#lohi32(0x8, 0x28);
  }
  get freeBlocksCount(): number {
    return this.#lohi16(0xc, 0x2c);
  }
  set freeBlocksCount(v: number) {
    this.#set16(0xc, 0x2c, v);
  }
  get freeInodesCount(): number {
    return this.#lohi16(0xe, 0x2e);
  }
  set freeInodesCount(v: number) {
    this.#set16(0xe, 0x2e, v);
  }
  get usedDirsCount(): number {
    return this.#lohi16(0x10, 0x30);
  }
  set usedDirsCount(v: number) {
    this.#set16(0x10, 0x30, v);
  }
  get flags(): number {
    return this.#u16(0x12);
  }
  set flags(v: number) {
    this.#view.setUint16(0x12, v, true);
  }
  get excludeBitmap(): number {
    return this.#lohi32(0x14, 0x34);
  }
  get blockBitmapCsum(): number {
    return this.#u16(0x18) + (this.#wide ? this.#u16(0x38) * 65536 : 0);
  }
  get inodeBitmapCsum(): number {
    return this.#u16(0x1a) + (this.#wide ? this.#u16(0x3a) * 65536 : 0);
  }
  get itableUnused(): number {
    return this.#lohi16(0x1c, 0x32);
  }
  set itableUnused(v: number) {
    this.#set16(0x1c, 0x32, v);
  }
  get checksum(): number {
    return this.#u16(CHECKSUM_OFFSET);
  }
  set checksum(v: number) {
    this.#view.setUint16(CHECKSUM_OFFSET, v, true);
  }
}

/**
 * The checksum a group descriptor should carry, or `undefined` when the filesystem has
 * neither metadata_csum nor gdt_csum.
 *
 * @example
 * ```ts ignore
 * const ok = groupDescriptorChecksum(sb, gd) === gd.checksum;
 * ```
 */
export function groupDescriptorChecksum(sb: Superblock, gd: GroupDescriptor): number | undefined {
  const bytes = gd.bytes;
  if (sb.hasMetadataCsum) {
    let c = crc32cU32(sb.csumSeed, gd.group);
    c = crc32c(c, bytes.subarray(0, CHECKSUM_OFFSET));
    c = crc32c(c, new Uint8Array(2));
    if (bytes.length > CHECKSUM_OFFSET + 2) c = crc32c(c, bytes.subarray(CHECKSUM_OFFSET + 2));
    return c & 0xffff;
  }
  if (sb.hasGdtCsum) {
    let c = crc16(0xffff, sb.uuid);
    const le = new Uint8Array(4);
    new DataView(le.buffer).setUint32(0, gd.group, true);
    c = crc16(c, le);
    c = crc16(c, bytes.subarray(0, CHECKSUM_OFFSET));
    if (sb.is64bit && bytes.length > CHECKSUM_OFFSET + 2) {
      c = crc16(c, bytes.subarray(CHECKSUM_OFFSET + 2));
    }
    return c;
  }
  return undefined;
}

/** All descriptors of a filesystem, with the result of checking them. */
export class GroupDescriptorTable {
  readonly descriptors: GroupDescriptor[];
  /** Groups whose stored checksum does not match. */
  readonly badChecksums: number[];

  constructor(descriptors: GroupDescriptor[], badChecksums: number[]) {
    this.descriptors = descriptors;
    this.badChecksums = badChecksums;
  }

  /** The descriptor of `group`; throws CORRUPT for a group that does not exist. */
  get(group: number): GroupDescriptor {
    const gd = this.descriptors[group];
    if (!gd) throw new CorruptError("group descriptor table", `no block group ${group}`);
    return gd;
  }

  get length(): number {
    return this.descriptors.length;
  }
}

/**
 * Reads every group descriptor, checks that the bitmaps and inode table of each lie inside
 * the filesystem (as the kernel does at mount), and verifies checksums. A location out of
 * range is a {@link CorruptError}; checksum mismatches are listed in `badChecksums` so the
 * caller decides (the kernel still mounts read-only).
 *
 * @example
 * ```ts ignore
 * const gdt = await readGroupDescriptors(device, sb);
 * console.log(gdt.get(0).inodeTable);
 * ```
 */
export async function readGroupDescriptors(
  device: BlockDevice,
  sb: Superblock,
): Promise<GroupDescriptorTable> {
  const bs = sb.blockSize;
  const ds = sb.descSize;
  const groups = sb.groupCount;
  const perBlock = bs / ds;
  const blockCount = Math.ceil(groups / perBlock);
  const descriptors: GroupDescriptor[] = [];
  const bad: number[] = [];
  const metaBg = (sb.incompat & Incompat.META_BG) !== 0;
  // Without meta_bg the table is contiguous: read it in one go.
  const contiguous = !metaBg || sb.firstMetaBg >= blockCount ? blockCount : sb.firstMetaBg;
  const chunks: Uint8Array[] = [];
  if (contiguous > 0) {
    const loc = descriptorBlockLocation(sb, 0);
    if ((loc + contiguous) * bs > device.size) {
      throw new CorruptError("group descriptor table", "extends beyond the end of the device");
    }
    const all = await readBytes(device, loc * bs, contiguous * bs);
    for (let i = 0; i < contiguous; i++) chunks.push(all.subarray(i * bs, (i + 1) * bs));
  }
  for (let i = contiguous; i < blockCount; i++) {
    const loc = descriptorBlockLocation(sb, i);
    if (loc >= sb.blocksCount || (loc + 1) * bs > device.size) {
      throw new CorruptError(
        "group descriptor table",
        `meta_bg descriptor block ${i} at ${loc} is out of range`,
      );
    }
    chunks.push(await readBytes(device, loc * bs, bs));
  }
  const itBlocks = sb.inodeTableBlocksPerGroup;
  for (let g = 0; g < groups; g++) {
    const chunk = chunks[Math.floor(g / perBlock)];
    const off = (g % perBlock) * ds;
    const gd = new GroupDescriptor(g, chunk.subarray(off, off + ds));
    const sum = groupDescriptorChecksum(sb, gd);
    if (sum !== undefined && sum !== gd.checksum) bad.push(g);
    const inRange = (b: number, n = 1) => b >= sb.firstDataBlock && b + n <= sb.blocksCount;
    if (!inRange(gd.blockBitmap) || !inRange(gd.inodeBitmap) || !inRange(gd.inodeTable, itBlocks)) {
      throw new CorruptError(
        `group descriptor ${g}`,
        `block bitmap ${gd.blockBitmap}, inode bitmap ${gd.inodeBitmap} or inode table ${gd.inodeTable} is outside the filesystem`,
      );
    }
    descriptors.push(gd);
  }
  return new GroupDescriptorTable(descriptors, bad);
}
