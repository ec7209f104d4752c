/**
 * Block group descriptors (32- and 64-bit), where they live (including meta_bg), their
 * checksums (crc16 for gdt_csum, crc32c for metadata_csum), and which groups carry
 * superblock backups.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { crc16, crc32c, crc32cRange, crc32cU32, crc32cWords } from "./checksum.ts";
import { CorruptError } from "../errors.ts";
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
  // With 1 KiB blocks the superblock is block 1 even when bigalloc makes s_first_data_block 0.
  const superBlock = sb.blockSize === 1024 && sb.firstDataBlock === 0 ? 1 : sb.firstDataBlock;
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
  /** The group number. */
  readonly group: number;
  /**
   * The descriptor's bytes (32, or `s_desc_size` with 64bit), a view on the table: setters change
   * them.
   */
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  readonly #wide: boolean;

  /** A view on `bytes` for `group`; 64 bytes or more read the `_hi` halves too. */
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

  /** `bg_block_bitmap_lo/hi`: block number of the group's block bitmap. */
  get blockBitmap(): number {
    return this.#lohi32(0x0, 0x20);
  }
  /** `bg_inode_bitmap_lo/hi`: block number of the group's inode bitmap. */
  get inodeBitmap(): number {
    return this.#lohi32(0x4, 0x24);
  }
  /** `bg_inode_table_lo/hi`: first block of the group's inode table. */
  get inodeTable(): number {
    return this.#lohi32(0x8, 0x28);
  }
  /** `bg_free_blocks_count_lo/hi`: free blocks (clusters with bigalloc) in the group. */
  get freeBlocksCount(): number {
    return this.#lohi16(0xc, 0x2c);
  }
  set freeBlocksCount(v: number) {
    this.#set16(0xc, 0x2c, v);
  }
  /** `bg_free_inodes_count_lo/hi`: free inodes in the group. */
  get freeInodesCount(): number {
    return this.#lohi16(0xe, 0x2e);
  }
  set freeInodesCount(v: number) {
    this.#set16(0xe, 0x2e, v);
  }
  /** `bg_used_dirs_count_lo/hi`: directories in the group. */
  get usedDirsCount(): number {
    return this.#lohi16(0x10, 0x30);
  }
  set usedDirsCount(v: number) {
    this.#set16(0x10, 0x30, v);
  }
  /** `bg_flags`: {@link GroupFlags} bits (INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED). */
  get flags(): number {
    return this.#u16(0x12);
  }
  set flags(v: number) {
    this.#view.setUint16(0x12, v, true);
  }
  /** `bg_exclude_bitmap_lo/hi`: block of the snapshot exclude bitmap (0 when unused). */
  get excludeBitmap(): number {
    return this.#lohi32(0x14, 0x34);
  }
  /**
   * `bg_block_bitmap_csum_lo/hi`: crc32c of the block bitmap (low 16 bits only in 32-byte
   * descriptors).
   */
  get blockBitmapCsum(): number {
    return this.#u16(0x18) + (this.#wide ? this.#u16(0x38) * 65536 : 0);
  }
  /**
   * `bg_inode_bitmap_csum_lo/hi`: crc32c of the inode bitmap (low 16 bits only in 32-byte
   * descriptors).
   */
  get inodeBitmapCsum(): number {
    return this.#u16(0x1a) + (this.#wide ? this.#u16(0x3a) * 65536 : 0);
  }
  /** `bg_itable_unused_lo/hi`: inodes at the end of the table never used (need no reading). */
  get itableUnused(): number {
    return this.#lohi16(0x1c, 0x32);
  }
  set itableUnused(v: number) {
    this.#set16(0x1c, 0x32, v);
  }
  /**
   * `bg_checksum`: the descriptor's crc16 or crc32c-derived checksum (see {@link
   * groupDescriptorChecksum}).
   */
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
 * ```ts
 * import { Ext4 } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img);
 * const sb = fs.superblock;
 * const gd = fs.groups.get(0);
 * console.log(groupDescriptorChecksum(sb, gd) === gd.checksum); // true
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function groupDescriptorChecksum(sb: Superblock, gd: GroupDescriptor): number | undefined {
  return descriptorChecksum(sb, gd.group, gd.bytes);
}

/** crc32c descriptor checksum of the descriptor at `buf[start..end)`, without copies. */
function metadataCsum16(
  seed: number,
  group: number,
  buf: Uint8Array,
  start: number,
  end: number,
): number {
  let c = crc32cU32(seed, group);
  c = crc32cRange(c, buf, start, start + CHECKSUM_OFFSET);
  c = crc32c(c, ZERO16);
  c = crc32cRange(c, buf, start + CHECKSUM_OFFSET + 2, end);
  return c & 0xffff;
}

const scratch = new Uint8Array(4);
const scratchView = new DataView(scratch.buffer);
const ZERO16 = new Uint8Array(2);

/** {@link groupDescriptorChecksum} on the raw bytes of group `group`'s descriptor. */
export function descriptorChecksum(
  sb: Superblock,
  group: number,
  bytes: Uint8Array,
): number | undefined {
  if (sb.hasMetadataCsum) {
    let c = crc32cU32(sb.csumSeed, group);
    c = crc32c(c, bytes.subarray(0, CHECKSUM_OFFSET));
    c = crc32c(c, ZERO16);
    if (bytes.length > CHECKSUM_OFFSET + 2) c = crc32c(c, bytes.subarray(CHECKSUM_OFFSET + 2));
    return c & 0xffff;
  }
  if (sb.hasGdtCsum) {
    let c = crc16(0xffff, sb.uuid);
    scratchView.setUint32(0, group, true);
    c = crc16(c, scratch);
    c = crc16(c, bytes.subarray(0, CHECKSUM_OFFSET));
    if (sb.is64bit && bytes.length > CHECKSUM_OFFSET + 2) {
      c = crc16(c, bytes.subarray(CHECKSUM_OFFSET + 2));
    }
    return c;
  }
  return undefined;
}

/**
 * All descriptors of a filesystem, with the result of checking them. Descriptor objects are
 * made on first use: a 16 TiB filesystem has 131 072 groups and most callers touch few.
 */
export class GroupDescriptorTable {
  /** Groups whose stored checksum does not match. */
  readonly badChecksums: number[];
  /** The number of groups. */
  readonly length: number;
  readonly #chunks: Uint8Array[];
  readonly #perBlock: number;
  readonly #descSize: number;
  readonly #cache: (GroupDescriptor | undefined)[];

  /**
   * A table over the descriptor blocks `chunks` (as read), descriptors `descSize` bytes each;
   * `badChecksums` as found by the reader.
   */
  constructor(chunks: Uint8Array[], descSize: number, length: number, badChecksums: number[]) {
    this.#chunks = chunks;
    this.#descSize = descSize;
    this.#perBlock = chunks.length ? chunks[0].length / descSize : 0;
    this.length = length;
    this.badChecksums = badChecksums;
    this.#cache = new Array(length);
  }

  /** The descriptor of `group`; throws CORRUPT for a group that does not exist. */
  get(group: number): GroupDescriptor {
    if (!Number.isInteger(group) || group < 0 || group >= this.length) {
      throw new CorruptError("group descriptor table", `no block group ${group}`);
    }
    let gd = this.#cache[group];
    if (!gd) {
      const chunk = this.#chunks[Math.floor(group / this.#perBlock)];
      const off = (group % this.#perBlock) * this.#descSize;
      gd = new GroupDescriptor(group, chunk.subarray(off, off + this.#descSize));
      this.#cache[group] = gd;
    }
    return gd;
  }

  #all: readonly GroupDescriptor[] | undefined;

  /**
   * Every descriptor (materialises them all, once: the allocator reads them for every
   * allocation). The same frozen array each time; descriptors are never replaced.
   */
  get descriptors(): readonly GroupDescriptor[] {
    if (!this.#all) {
      this.#all = Object.freeze(Array.from({ length: this.length }, (_, g) => this.get(g)));
    }
    return this.#all;
  }

  /** The descriptor blocks as read, in table order (for writing them back). */
  get blocks(): readonly Uint8Array[] {
    return this.#chunks;
  }
}

/**
 * Reads every group descriptor, checks that the bitmaps and inode table of each lie inside
 * the filesystem (as the kernel does at mount), and verifies checksums. A location out of
 * range is a {@link CorruptError}; checksum mismatches are listed in `badChecksums` so the
 * caller decides (the kernel still mounts read-only).
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "./superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const gdt = await readGroupDescriptors(device, await readSuperblock(device));
 * console.log(gdt.length, gdt.get(0).inodeTable > 0); // 1 true
 * await Deno.remove(img);
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
  const wide = ds >= 64;
  const first = sb.firstDataBlock;
  const last = sb.blocksCount;
  const seed = sb.csumSeed;
  const csum32 = sb.hasMetadataCsum;
  const inRange = (b: number, n: number) => b >= first && b + n <= last;
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c];
    const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // The descriptors as words (the checksum is the high half of word 7), when aligned.
    const words = csum32 && chunk.byteOffset % 4 === 0
      ? new Int32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >>> 2)
      : null;
    const count = Math.min(perBlock, groups - c * perBlock);
    for (let k = 0; k < count; k++) {
      const g = c * perBlock + k;
      const off = k * ds;
      const sum = words
        ? crc32cWords(
          crc32cU32(seed, g),
          words,
          off >>> 2,
          ds >>> 2,
          CHECKSUM_OFFSET >>> 2,
          0xffff,
        ) &
          0xffff
        : csum32
        ? metadataCsum16(seed, g, chunk, off, off + ds)
        : descriptorChecksum(sb, g, chunk.subarray(off, off + ds));
      if (sum !== undefined && sum !== v.getUint16(off + CHECKSUM_OFFSET, true)) bad.push(g);
      const blockBitmap = v.getUint32(off, true) +
        (wide ? v.getUint32(off + 0x20, true) * 2 ** 32 : 0);
      const inodeBitmap = v.getUint32(off + 0x4, true) +
        (wide ? v.getUint32(off + 0x24, true) * 2 ** 32 : 0);
      const inodeTable = v.getUint32(off + 0x8, true) +
        (wide ? v.getUint32(off + 0x28, true) * 2 ** 32 : 0);
      if (!inRange(blockBitmap, 1) || !inRange(inodeBitmap, 1) || !inRange(inodeTable, itBlocks)) {
        throw new CorruptError(
          `group descriptor ${g}`,
          `block bitmap ${blockBitmap}, inode bitmap ${inodeBitmap} or inode table ${inodeTable} is outside the filesystem`,
        );
      }
    }
  }
  return new GroupDescriptorTable(chunks, ds, groups, bad);
}
