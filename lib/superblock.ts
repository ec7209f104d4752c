/**
 * The ext2/3/4 superblock: parsing with validation, checksum verification and update, and
 * the derived geometry (block size, group count, descriptor size) the rest of ext4ts uses.
 *
 * The {@link Superblock} object wraps the 1024 on-disk bytes; getters read fields from them
 * and setters write them back, so encoding a changed superblock is just taking its bytes.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "./block_device.ts";
import { crc32c } from "./checksum.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
import { type FeatureWords, Incompat, RoCompat } from "./features.ts";

/** Byte offset of the primary superblock on the device. */
export const SUPERBLOCK_OFFSET = 1024;
/** Size of the superblock structure. */
export const SUPERBLOCK_SIZE = 1024;
/** `s_magic`. */
export const EXT4_MAGIC = 0xef53;

/** `s_state` bits. */
export const State = { VALID: 0x1, ERROR: 0x2, ORPHAN: 0x4 } as const;

/** `s_flags` bits. */
export const SuperFlags = {
  SIGNED_HASH: 0x1,
  UNSIGNED_HASH: 0x2,
  TEST_FILESYS: 0x4,
} as const;

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder("utf-8", { fatal: false }).decode(
    end < 0 ? bytes : bytes.subarray(0, end),
  );
}

/**
 * Formats 16 bytes as a UUID string.
 *
 * @example
 * ```ts
 * import { formatUuid } from "./superblock.ts";
 * console.log(formatUuid(new Uint8Array(16))); // 00000000-0000-0000-0000-000000000000
 * ```
 */
export function formatUuid(bytes: Uint8Array): string {
  const h = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** True when every byte is zero. */
export function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

/**
 * A parsed superblock. Field names follow the kernel's `struct ext4_super_block` without the
 * `s_` prefix, in camelCase; 64-bit counts combine their `_lo`/`_hi` halves.
 */
export class Superblock implements FeatureWords {
  /** The 1024 on-disk bytes; changes through setters land here. */
  readonly bytes: Uint8Array;
  readonly #view: DataView;

  constructor(bytes: Uint8Array) {
    if (bytes.length !== SUPERBLOCK_SIZE) {
      throw new CorruptError(
        "superblock",
        `expected ${SUPERBLOCK_SIZE} bytes, got ${bytes.length}`,
      );
    }
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #u8(o: number): number {
    return this.#view.getUint8(o);
  }
  #u16(o: number): number {
    return this.#view.getUint16(o, true);
  }
  #u32(o: number): number {
    return this.#view.getUint32(o, true);
  }
  #u64(o: number): number {
    return this.#u32(o) + this.#u32(o + 4) * 2 ** 32;
  }
  #setU32(o: number, v: number): void {
    this.#view.setUint32(o, v >>> 0, true);
  }
  #lohi(lo: number, hi: number): number {
    return this.#u32(lo) + (this.is64bit ? this.#u32(hi) * 2 ** 32 : 0);
  }
  #setLohi(lo: number, hi: number, v: number): void {
    this.#setU32(lo, v % 2 ** 32);
    if (this.is64bit) this.#setU32(hi, Math.floor(v / 2 ** 32));
  }
  #time(lo: number, hiByte: number): number {
    return this.#u32(lo) + (this.revLevel >= 1 ? this.#u8(hiByte) * 2 ** 32 : 0);
  }

  get inodesCount(): number {
    return this.#u32(0x0);
  }
  get blocksCount(): number {
    return this.#lohi(0x4, 0x150);
  }
  get reservedBlocksCount(): number {
    return this.#lohi(0x8, 0x154);
  }
  get freeBlocksCount(): number {
    return this.#lohi(0xc, 0x158);
  }
  set freeBlocksCount(v: number) {
    this.#setLohi(0xc, 0x158, v);
  }
  get freeInodesCount(): number {
    return this.#u32(0x10);
  }
  set freeInodesCount(v: number) {
    this.#setU32(0x10, v);
  }
  get firstDataBlock(): number {
    return this.#u32(0x14);
  }
  get logBlockSize(): number {
    return this.#u32(0x18);
  }
  get logClusterSize(): number {
    return this.#u32(0x1c);
  }
  get blocksPerGroup(): number {
    return this.#u32(0x20);
  }
  get clustersPerGroup(): number {
    return this.#u32(0x24);
  }
  get inodesPerGroup(): number {
    return this.#u32(0x28);
  }
  /** Last mount time, seconds since the epoch. */
  get mountTime(): number {
    return this.#time(0x2c, 0x275);
  }
  /** Last write time, seconds since the epoch. */
  get writeTime(): number {
    return this.#time(0x30, 0x274);
  }
  get mountCount(): number {
    return this.#u16(0x34);
  }
  get maxMountCount(): number {
    return this.#view.getInt16(0x36, true);
  }
  get magic(): number {
    return this.#u16(0x38);
  }
  get state(): number {
    return this.#u16(0x3a);
  }
  set state(v: number) {
    this.#view.setUint16(0x3a, v, true);
  }
  get errors(): number {
    return this.#u16(0x3c);
  }
  get minorRevLevel(): number {
    return this.#u16(0x3e);
  }
  get lastCheck(): number {
    return this.#time(0x40, 0x277);
  }
  get checkInterval(): number {
    return this.#u32(0x44);
  }
  get creatorOs(): number {
    return this.#u32(0x48);
  }
  get revLevel(): number {
    return this.#u32(0x4c);
  }
  get defResuid(): number {
    return this.#u16(0x50);
  }
  get defResgid(): number {
    return this.#u16(0x52);
  }
  /** First non-reserved inode (11 on revision 0). */
  get firstIno(): number {
    return this.revLevel >= 1 ? this.#u32(0x54) : 11;
  }
  /** Inode record size (128 on revision 0). */
  get inodeSize(): number {
    return this.revLevel >= 1 ? this.#u16(0x58) : 128;
  }
  get blockGroupNr(): number {
    return this.#u16(0x5a);
  }
  get compat(): number {
    return this.revLevel >= 1 ? this.#u32(0x5c) : 0;
  }
  get incompat(): number {
    return this.revLevel >= 1 ? this.#u32(0x60) : 0;
  }
  set incompat(v: number) {
    this.#setU32(0x60, v);
  }
  get roCompat(): number {
    return this.revLevel >= 1 ? this.#u32(0x64) : 0;
  }
  get uuid(): Uint8Array {
    return this.bytes.subarray(0x68, 0x78);
  }
  get volumeName(): string {
    return cString(this.bytes.subarray(0x78, 0x88));
  }
  get lastMounted(): string {
    return cString(this.bytes.subarray(0x88, 0xc8));
  }
  get algorithmUsageBitmap(): number {
    return this.#u32(0xc8);
  }
  get preallocBlocks(): number {
    return this.#u8(0xcc);
  }
  get preallocDirBlocks(): number {
    return this.#u8(0xcd);
  }
  get reservedGdtBlocks(): number {
    return this.#u16(0xce);
  }
  get journalUuid(): Uint8Array {
    return this.bytes.subarray(0xd0, 0xe0);
  }
  get journalInum(): number {
    return this.#u32(0xe0);
  }
  get journalDev(): number {
    return this.#u32(0xe4);
  }
  get lastOrphan(): number {
    return this.#u32(0xe8);
  }
  /** The four 32-bit words of the directory hash seed. */
  get hashSeed(): Uint32Array {
    return Uint32Array.from({ length: 4 }, (_, i) => this.#u32(0xec + 4 * i));
  }
  get hashSeedBytes(): Uint8Array {
    return this.bytes.subarray(0xec, 0xfc);
  }
  get defHashVersion(): number {
    return this.#u8(0xfc);
  }
  get jnlBackupType(): number {
    return this.#u8(0xfd);
  }
  /** Raw `s_desc_size` (0 means 32 on non-64bit filesystems). */
  get rawDescSize(): number {
    return this.#u16(0xfe);
  }
  get defaultMountOpts(): number {
    return this.#u32(0x100);
  }
  get firstMetaBg(): number {
    return this.#u32(0x104);
  }
  get mkfsTime(): number {
    return this.#time(0x108, 0x276);
  }
  /** Backup of the journal inode's `i_block` (15 words), `i_size_high` and `i_size`. */
  get jnlBlocks(): Uint32Array {
    return Uint32Array.from({ length: 17 }, (_, i) => this.#u32(0x10c + 4 * i));
  }
  get minExtraIsize(): number {
    return this.#u16(0x15c);
  }
  get wantExtraIsize(): number {
    return this.#u16(0x15e);
  }
  get flags(): number {
    return this.#u32(0x160);
  }
  get raidStride(): number {
    return this.#u16(0x164);
  }
  get mmpInterval(): number {
    return this.#u16(0x166);
  }
  get mmpBlock(): number {
    return this.#u64(0x168);
  }
  get raidStripeWidth(): number {
    return this.#u32(0x170);
  }
  get logGroupsPerFlex(): number {
    return this.#u8(0x174);
  }
  get checksumType(): number {
    return this.#u8(0x175);
  }
  get encryptionLevel(): number {
    return this.#u8(0x176);
  }
  get kbytesWritten(): number {
    return this.#u64(0x178);
  }
  get snapshotInum(): number {
    return this.#u32(0x180);
  }
  get snapshotId(): number {
    return this.#u32(0x184);
  }
  get snapshotReservedBlocksCount(): number {
    return this.#u64(0x188);
  }
  get snapshotList(): number {
    return this.#u32(0x190);
  }
  get errorCount(): number {
    return this.#u32(0x194);
  }
  get firstErrorTime(): number {
    return this.#time(0x198, 0x278);
  }
  get firstErrorIno(): number {
    return this.#u32(0x19c);
  }
  get firstErrorBlock(): number {
    return this.#u64(0x1a0);
  }
  get firstErrorFunc(): string {
    return cString(this.bytes.subarray(0x1a8, 0x1c8));
  }
  get firstErrorLine(): number {
    return this.#u32(0x1c8);
  }
  get lastErrorTime(): number {
    return this.#time(0x1cc, 0x279);
  }
  get lastErrorIno(): number {
    return this.#u32(0x1d0);
  }
  get lastErrorLine(): number {
    return this.#u32(0x1d4);
  }
  get lastErrorBlock(): number {
    return this.#u64(0x1d8);
  }
  get lastErrorFunc(): string {
    return cString(this.bytes.subarray(0x1e0, 0x200));
  }
  get mountOpts(): string {
    return cString(this.bytes.subarray(0x200, 0x240));
  }
  get usrQuotaInum(): number {
    return this.#u32(0x240);
  }
  get grpQuotaInum(): number {
    return this.#u32(0x244);
  }
  get overheadClusters(): number {
    return this.#u32(0x248);
  }
  get backupBgs(): [number, number] {
    return [this.#u32(0x24c), this.#u32(0x250)];
  }
  get encryptAlgos(): Uint8Array {
    return this.bytes.subarray(0x254, 0x258);
  }
  get encryptPwSalt(): Uint8Array {
    return this.bytes.subarray(0x258, 0x268);
  }
  get lpfIno(): number {
    return this.#u32(0x268);
  }
  get prjQuotaInum(): number {
    return this.#u32(0x26c);
  }
  get checksumSeed(): number {
    return this.#u32(0x270);
  }
  get firstErrorErrcode(): number {
    return this.#u8(0x27a);
  }
  get lastErrorErrcode(): number {
    return this.#u8(0x27b);
  }
  get encoding(): number {
    return this.#u16(0x27c);
  }
  get encodingFlags(): number {
    return this.#u16(0x27e);
  }
  get orphanFileInum(): number {
    return this.#u32(0x280);
  }
  get checksum(): number {
    return this.#u32(0x3fc);
  }

  // ---- derived geometry ----

  get is64bit(): boolean {
    return (this.#u32(0x60) & Incompat.BIT64) !== 0 && this.revLevel >= 1;
  }
  get hasMetadataCsum(): boolean {
    return (this.roCompat & RoCompat.METADATA_CSUM) !== 0;
  }
  get hasGdtCsum(): boolean {
    return (this.roCompat & RoCompat.GDT_CSUM) !== 0;
  }
  get blockSize(): number {
    return 1024 * 2 ** this.logBlockSize;
  }
  get clusterSize(): number {
    return (this.roCompat & RoCompat.BIGALLOC) ? 1024 * 2 ** this.logClusterSize : this.blockSize;
  }
  /** Group descriptor size in bytes. */
  get descSize(): number {
    return this.is64bit ? this.rawDescSize : 32;
  }
  get groupCount(): number {
    return Math.ceil((this.blocksCount - this.firstDataBlock) / this.blocksPerGroup);
  }
  /** Blocks of inode table per group. */
  get inodeTableBlocksPerGroup(): number {
    return Math.ceil((this.inodesPerGroup * this.inodeSize) / this.blockSize);
  }
  /**
   * The seed of every metadata checksum: `s_checksum_seed` with metadata_csum_seed, else
   * crc32c of the UUID.
   */
  get csumSeed(): number {
    return (this.incompat & Incompat.CSUM_SEED) ? this.checksumSeed : crc32c(0xffffffff, this.uuid);
  }

  /** The checksum the superblock should carry. */
  computeChecksum(): number {
    return crc32c(0xffffffff, this.bytes.subarray(0, 0x3fc));
  }

  /** True unless metadata_csum is on and the stored checksum is wrong. */
  checksumValid(): boolean {
    return !this.hasMetadataCsum || this.computeChecksum() === this.checksum;
  }

  /** Recomputes and stores the checksum (after changing fields). */
  updateChecksum(): void {
    if (this.hasMetadataCsum) this.#setU32(0x3fc, this.computeChecksum());
  }
}

/** Options for {@link parseSuperblock}. */
export interface ParseSuperblockOptions {
  /** Accept a wrong metadata_csum checksum (for tools that report it rather than refuse). */
  ignoreChecksum?: boolean;
  /** Size of the device in bytes, to check the block count against. */
  deviceSize?: number;
}

/**
 * Parses and validates superblock bytes. Throws `NOT_EXT4` when the magic is wrong and
 * {@link CorruptError} when a field is impossible or the checksum does not match.
 *
 * @example
 * ```ts
 * import { parseSuperblock } from "./superblock.ts";
 * try {
 *   parseSuperblock(new Uint8Array(1024));
 * } catch (e) {
 *   console.log((e as Error).message); // not an ext2/3/4 filesystem (bad magic 0x0000)
 * }
 * ```
 */
export function parseSuperblock(
  bytes: Uint8Array,
  options: ParseSuperblockOptions = {},
): Superblock {
  const sb = new Superblock(bytes);
  if (sb.magic !== EXT4_MAGIC) {
    throw new Ext4Error(
      "NOT_EXT4",
      `not an ext2/3/4 filesystem (bad magic 0x${sb.magic.toString(16).padStart(4, "0")})`,
    );
  }
  const bad = (detail: string): never => {
    throw new CorruptError("superblock", detail);
  };
  if (sb.revLevel > 1) bad(`unknown revision level ${sb.revLevel}`);
  if (sb.logBlockSize > 6) bad(`block size 2^${10 + sb.logBlockSize} is out of range`);
  const bs = sb.blockSize;
  if (sb.hasMetadataCsum) {
    if (sb.checksumType !== 1) bad(`unknown checksum type ${sb.checksumType}`);
    if (!options.ignoreChecksum && !sb.checksumValid()) {
      bad(
        `checksum mismatch (stored 0x${sb.checksum.toString(16).padStart(8, "0")}, computed 0x${
          sb.computeChecksum().toString(16).padStart(8, "0")
        })`,
      );
    }
  }
  if ((sb.roCompat & RoCompat.BIGALLOC) !== 0) {
    if (sb.logClusterSize < sb.logBlockSize || sb.logClusterSize > sb.logBlockSize + 16) {
      bad(`cluster size 2^${10 + sb.logClusterSize} is invalid`);
    }
    if (sb.clustersPerGroup === 0 || sb.clustersPerGroup > 8 * bs) {
      bad(`clusters per group ${sb.clustersPerGroup} is out of range`);
    }
    if (sb.blocksPerGroup !== sb.clustersPerGroup * (sb.clusterSize / bs)) {
      bad(`blocks per group ${sb.blocksPerGroup} does not match clusters per group`);
    }
  } else if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > 8 * bs) {
    bad(`blocks per group ${sb.blocksPerGroup} is out of range`);
  }
  if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > 8 * bs) {
    bad(`inodes per group ${sb.inodesPerGroup} is out of range`);
  }
  const isz = sb.inodeSize;
  if (isz < 128 || isz > bs || (isz & (isz - 1)) !== 0) bad(`inode size ${isz} is invalid`);
  if (sb.firstDataBlock !== (bs === 1024 ? 1 : 0) && sb.firstDataBlock >= sb.blocksCount) {
    bad(`first data block ${sb.firstDataBlock} is invalid`);
  }
  if (sb.blocksCount <= sb.firstDataBlock) bad(`block count ${sb.blocksCount} is too small`);
  if (sb.is64bit) {
    const ds = sb.rawDescSize;
    if (ds < 64 || ds > 1024 || (ds & (ds - 1)) !== 0) {
      bad(`group descriptor size ${ds} is invalid`);
    }
  }
  const groups = sb.groupCount;
  if (
    sb.inodesCount !== groups * sb.inodesPerGroup && sb.inodesCount > groups * sb.inodesPerGroup
  ) {
    bad(`inode count ${sb.inodesCount} exceeds ${groups} groups of ${sb.inodesPerGroup}`);
  }
  if (sb.firstIno < 11 && sb.revLevel >= 1) bad(`first inode ${sb.firstIno} is invalid`);
  if (options.deviceSize !== undefined && sb.blocksCount * bs > options.deviceSize) {
    throw new CorruptError(
      "superblock",
      `filesystem is ${
        sb.blocksCount * bs
      } bytes (${sb.blocksCount} blocks) but the device has only ${options.deviceSize} bytes: truncated image?`,
    );
  }
  return sb;
}

/**
 * Reads the primary superblock from a device and validates it, including that the device is
 * large enough to hold the filesystem it describes.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { readSuperblock } from "./superblock.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(2048));
 * await readSuperblock(dev).catch((e) => console.log(e.code)); // NOT_EXT4
 * ```
 */
export async function readSuperblock(
  device: BlockDevice,
  options: Omit<ParseSuperblockOptions, "deviceSize"> & { checkSize?: boolean } = {},
): Promise<Superblock> {
  if (device.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
    throw new Ext4Error(
      "NOT_EXT4",
      `not an ext2/3/4 filesystem (only ${device.size} bytes, too small to hold a superblock)`,
    );
  }
  const bytes = await readBytes(device, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
  return parseSuperblock(bytes, {
    ...options,
    deviceSize: options.checkSize === false ? undefined : device.size,
  });
}
