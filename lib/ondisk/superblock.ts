/**
 * The ext2/3/4 superblock: parsing with validation, checksum verification and update, and
 * the derived geometry (block size, group count, descriptor size) the rest of ext4ts uses.
 *
 * The {@link Superblock} object wraps the 1024 on-disk bytes; getters read fields from them
 * and setters write them back, so encoding a changed superblock is just taking its bytes.
 *
 * Over 700 lines because the structure has over a hundred fields and the codec keeps one
 * accessor per field in one class, as `struct ext4_super_block` is one structure.
 *
 * @module
 */

import { partitionTableHint } from "./partition_table.ts";
import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { crc32c } from "./checksum.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { type FeatureWords, Incompat, RoCompat } from "./features.ts";

export { formatUuid } from "./uuid.ts";

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
  #hashSeed: Uint32Array | undefined;
  /** The checksum seed {@link csumSeed} computed last, and the UUID words it came from. */
  #uuidSeed = { w0: 0, w1: 0, w2: 0, w3: 0, seed: -1 };
  readonly #view: DataView;

  /**
   * Wraps the 1024 bytes of a superblock (not a copy: setters change them); throws CorruptError for
   * any other length. Does not check magic or checksum ({@link parseSuperblock} does).
   */
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
  #setTime(lo: number, hiByte: number, v: number): void {
    this.#setU32(lo, v % 2 ** 32);
    if (this.revLevel >= 1) this.#view.setUint8(hiByte, Math.floor(v / 2 ** 32) & 0xff);
  }
  #setU64(o: number, v: number): void {
    this.#setU32(o, v % 2 ** 32);
    this.#setU32(o + 4, Math.floor(v / 2 ** 32));
  }
  #setString(o: number, size: number, v: string): void {
    // strncpy: truncated to the field, zero-padded, not necessarily terminated.
    const field = this.bytes.subarray(o, o + size);
    field.fill(0);
    field.set(new TextEncoder().encode(v).subarray(0, size));
  }

  /** `s_inodes_count`: total inodes. */
  get inodesCount(): number {
    return this.#u32(0x0);
  }
  /** `s_blocks_count`: total blocks (with the `_hi` half on 64bit). */
  get blocksCount(): number {
    return this.#lohi(0x4, 0x150);
  }
  /** `s_r_blocks_count`: blocks reserved for the superuser. */
  get reservedBlocksCount(): number {
    return this.#lohi(0x8, 0x154);
  }
  /** `s_free_blocks_count` (with the `_hi` half on 64bit). */
  get freeBlocksCount(): number {
    return this.#lohi(0xc, 0x158);
  }
  set freeBlocksCount(v: number) {
    this.#setLohi(0xc, 0x158, v);
  }
  /** `s_free_inodes_count`. */
  get freeInodesCount(): number {
    return this.#u32(0x10);
  }
  set freeInodesCount(v: number) {
    this.#setU32(0x10, v);
  }
  /** `s_first_data_block`: 1 on 1 KiB-block filesystems (without bigalloc), else 0. */
  get firstDataBlock(): number {
    return this.#u32(0x14);
  }
  /** `s_log_block_size`: block size is 1024 << this. */
  get logBlockSize(): number {
    return this.#u32(0x18);
  }
  /** `s_log_cluster_size`: cluster size is 1024 << this (bigalloc). */
  get logClusterSize(): number {
    return this.#u32(0x1c);
  }
  /** `s_blocks_per_group`. */
  get blocksPerGroup(): number {
    return this.#u32(0x20);
  }
  /** `s_clusters_per_group` (s_frags_per_group on ext2). */
  get clustersPerGroup(): number {
    return this.#u32(0x24);
  }
  /** `s_inodes_per_group`. */
  get inodesPerGroup(): number {
    return this.#u32(0x28);
  }
  /** Last mount time, seconds since the epoch. */
  get mountTime(): number {
    return this.#time(0x2c, 0x275);
  }
  set mountTime(v: number) {
    this.#setTime(0x2c, 0x275, v);
  }
  /** Last write time, seconds since the epoch. */
  get writeTime(): number {
    return this.#time(0x30, 0x274);
  }
  set writeTime(v: number) {
    this.#setTime(0x30, 0x274, v);
  }
  /** `s_mnt_count`: mounts since the last check. */
  get mountCount(): number {
    return this.#u16(0x34);
  }
  set mountCount(v: number) {
    this.#view.setUint16(0x34, v & 0xffff, true);
  }
  /** `s_max_mnt_count` (-1: no mount-count checks). */
  get maxMountCount(): number {
    return this.#view.getInt16(0x36, true);
  }
  /** `s_magic` (0xEF53). */
  get magic(): number {
    return this.#u16(0x38);
  }
  /** `s_state`: State.VALID (cleanly unmounted), State.ERROR, State.ORPHAN bits. */
  get state(): number {
    return this.#u16(0x3a);
  }
  set state(v: number) {
    this.#view.setUint16(0x3a, v, true);
  }
  /** `s_errors`: behaviour on errors (1 continue, 2 remount-ro, 3 panic). */
  get errors(): number {
    return this.#u16(0x3c);
  }
  /** `s_minor_rev_level`. */
  get minorRevLevel(): number {
    return this.#u16(0x3e);
  }
  /** `s_lastcheck`, seconds since the epoch. */
  get lastCheck(): number {
    return this.#time(0x40, 0x277);
  }
  /** `s_checkinterval`: seconds between forced checks (0: none). */
  get checkInterval(): number {
    return this.#u32(0x44);
  }
  /** `s_creator_os` (0: Linux). */
  get creatorOs(): number {
    return this.#u32(0x48);
  }
  /** `s_rev_level` (0: original, 1: dynamic). */
  get revLevel(): number {
    return this.#u32(0x4c);
  }
  /** `s_def_resuid`: user allowed to use reserved blocks. */
  get defResuid(): number {
    return this.#u16(0x50);
  }
  /** `s_def_resgid`: group allowed to use reserved blocks. */
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
  /** `s_block_group_nr`: the group this copy of the superblock lives in. */
  get blockGroupNr(): number {
    return this.#u16(0x5a);
  }
  /** `s_feature_compat` (0 on revision 0). */
  get compat(): number {
    return this.revLevel >= 1 ? this.#u32(0x5c) : 0;
  }
  /** `s_feature_incompat` (0 on revision 0). */
  get incompat(): number {
    return this.revLevel >= 1 ? this.#u32(0x60) : 0;
  }
  set incompat(v: number) {
    this.#setU32(0x60, v);
  }
  /** `s_feature_ro_compat` (0 on revision 0). */
  get roCompat(): number {
    return this.revLevel >= 1 ? this.#u32(0x64) : 0;
  }
  /** `s_uuid`: the filesystem UUID (16 bytes, a view on the superblock). */
  get uuid(): Uint8Array {
    return this.bytes.subarray(0x68, 0x78);
  }
  /** `s_volume_name`: the label. */
  get volumeName(): string {
    return cString(this.bytes.subarray(0x78, 0x88));
  }
  /** `s_last_mounted`: the directory it was last mounted on. */
  get lastMounted(): string {
    return cString(this.bytes.subarray(0x88, 0xc8));
  }
  /** `s_algorithm_usage_bitmap` (unused by Linux). */
  get algorithmUsageBitmap(): number {
    return this.#u32(0xc8);
  }
  /** `s_prealloc_blocks`. */
  get preallocBlocks(): number {
    return this.#u8(0xcc);
  }
  /** `s_prealloc_dir_blocks`. */
  get preallocDirBlocks(): number {
    return this.#u8(0xcd);
  }
  /** `s_reserved_gdt_blocks`: blocks reserved for growing the descriptor table. */
  get reservedGdtBlocks(): number {
    return this.#u16(0xce);
  }
  /** `s_journal_uuid`: UUID of an external journal. */
  get journalUuid(): Uint8Array {
    return this.bytes.subarray(0xd0, 0xe0);
  }
  /** `s_journal_inum`: inode of an internal journal (8), 0 if external. */
  get journalInum(): number {
    return this.#u32(0xe0);
  }
  /** `s_journal_dev`: device number of an external journal. */
  get journalDev(): number {
    return this.#u32(0xe4);
  }
  /** `s_last_orphan`: head of the orphan inode list. */
  get lastOrphan(): number {
    return this.#u32(0xe8);
  }
  /**
   * The four 32-bit words of the directory hash seed (read once: every directory hash uses it,
   * and nothing rewrites it while a filesystem is open). Must not be modified.
   */
  get hashSeed(): Uint32Array {
    this.#hashSeed ??= Uint32Array.from({ length: 4 }, (_, i) => this.#u32(0xec + 4 * i));
    return this.#hashSeed;
  }
  /** `s_hash_seed` as 16 bytes. */
  get hashSeedBytes(): Uint8Array {
    return this.bytes.subarray(0xec, 0xfc);
  }
  /** `s_def_hash_version`: default directory hash (0 legacy, 1 half_md4, 2 tea). */
  get defHashVersion(): number {
    return this.#u8(0xfc);
  }
  /** `s_jnl_backup_type` (1: s_jnl_blocks holds the journal inode's blocks). */
  get jnlBackupType(): number {
    return this.#u8(0xfd);
  }
  /** Raw `s_desc_size` (0 means 32 on non-64bit filesystems). */
  get rawDescSize(): number {
    return this.#u16(0xfe);
  }
  /** `s_default_mount_opts`. */
  get defaultMountOpts(): number {
    return this.#u32(0x100);
  }
  /** `s_first_meta_bg`: first descriptor block placed by meta_bg. */
  get firstMetaBg(): number {
    return this.#u32(0x104);
  }
  /** `s_mkfs_time`, seconds since the epoch. */
  get mkfsTime(): number {
    return this.#time(0x108, 0x276);
  }
  /** Backup of the journal inode's `i_block` (15 words), `i_size_high` and `i_size`. */
  get jnlBlocks(): Uint32Array {
    return Uint32Array.from({ length: 17 }, (_, i) => this.#u32(0x10c + 4 * i));
  }
  /** `s_min_extra_isize`: extra inode bytes every inode has. */
  get minExtraIsize(): number {
    return this.#u16(0x15c);
  }
  /** `s_want_extra_isize`: extra inode bytes new inodes should get. */
  get wantExtraIsize(): number {
    return this.#u16(0x15e);
  }
  /** `s_flags` (directory hash signedness, test filesystem). */
  get flags(): number {
    return this.#u32(0x160);
  }
  /** `s_raid_stride`. */
  get raidStride(): number {
    return this.#u16(0x164);
  }
  /** `s_mmp_update_interval`, seconds. */
  get mmpInterval(): number {
    return this.#u16(0x166);
  }
  /** `s_mmp_block`: the MMP block (mmp feature). */
  get mmpBlock(): number {
    return this.#u64(0x168);
  }
  /** `s_raid_stripe_width`. */
  get raidStripeWidth(): number {
    return this.#u32(0x170);
  }
  /** `s_log_groups_per_flex`: flex_bg groups 2^this groups together. */
  get logGroupsPerFlex(): number {
    return this.#u8(0x174);
  }
  /** `s_checksum_type` (1: crc32c). */
  get checksumType(): number {
    return this.#u8(0x175);
  }
  /** `s_encryption_level`. */
  get encryptionLevel(): number {
    return this.#u8(0x176);
  }
  /** `s_kbytes_written`: lifetime KiB written. */
  get kbytesWritten(): number {
    return this.#u64(0x178);
  }
  set kbytesWritten(v: number) {
    this.#setU64(0x178, v);
  }
  /** `s_snapshot_inum`. */
  get snapshotInum(): number {
    return this.#u32(0x180);
  }
  /** `s_snapshot_id`. */
  get snapshotId(): number {
    return this.#u32(0x184);
  }
  /** `s_snapshot_r_blocks_count`. */
  get snapshotReservedBlocksCount(): number {
    return this.#u64(0x188);
  }
  /** `s_snapshot_list`. */
  get snapshotList(): number {
    return this.#u32(0x190);
  }
  /** `s_error_count`: errors recorded since the last check. */
  get errorCount(): number {
    return this.#u32(0x194);
  }
  set errorCount(v: number) {
    this.#setU32(0x194, v);
  }
  /** `s_first_error_time`, seconds since the epoch. */
  get firstErrorTime(): number {
    return this.#time(0x198, 0x278);
  }
  set firstErrorTime(v: number) {
    this.#setTime(0x198, 0x278, v);
  }
  /** `s_first_error_ino`. */
  get firstErrorIno(): number {
    return this.#u32(0x19c);
  }
  set firstErrorIno(v: number) {
    this.#setU32(0x19c, v);
  }
  /** `s_first_error_block`. */
  get firstErrorBlock(): number {
    return this.#u64(0x1a0);
  }
  set firstErrorBlock(v: number) {
    this.#setU64(0x1a0, v);
  }
  /** `s_first_error_func`: kernel function of the first recorded error. */
  get firstErrorFunc(): string {
    return cString(this.bytes.subarray(0x1a8, 0x1c8));
  }
  set firstErrorFunc(v: string) {
    this.#setString(0x1a8, 32, v);
  }
  /** `s_first_error_line`. */
  get firstErrorLine(): number {
    return this.#u32(0x1c8);
  }
  set firstErrorLine(v: number) {
    this.#setU32(0x1c8, v);
  }
  /** `s_last_error_time`, seconds since the epoch. */
  get lastErrorTime(): number {
    return this.#time(0x1cc, 0x279);
  }
  set lastErrorTime(v: number) {
    this.#setTime(0x1cc, 0x279, v);
  }
  /** `s_last_error_ino`. */
  get lastErrorIno(): number {
    return this.#u32(0x1d0);
  }
  set lastErrorIno(v: number) {
    this.#setU32(0x1d0, v);
  }
  /** `s_last_error_line`. */
  get lastErrorLine(): number {
    return this.#u32(0x1d4);
  }
  set lastErrorLine(v: number) {
    this.#setU32(0x1d4, v);
  }
  /** `s_last_error_block`. */
  get lastErrorBlock(): number {
    return this.#u64(0x1d8);
  }
  set lastErrorBlock(v: number) {
    this.#setU64(0x1d8, v);
  }
  /** `s_last_error_func`. */
  get lastErrorFunc(): string {
    return cString(this.bytes.subarray(0x1e0, 0x200));
  }
  set lastErrorFunc(v: string) {
    this.#setString(0x1e0, 32, v);
  }
  /** `s_mount_opts`: default mount options as text. */
  get mountOpts(): string {
    return cString(this.bytes.subarray(0x200, 0x240));
  }
  /** `s_usr_quota_inum`. */
  get usrQuotaInum(): number {
    return this.#u32(0x240);
  }
  /** `s_grp_quota_inum`. */
  get grpQuotaInum(): number {
    return this.#u32(0x244);
  }
  /** `s_overhead_clusters`: clusters taken by metadata (0: not recorded). */
  get overheadClusters(): number {
    return this.#u32(0x248);
  }
  /** `s_backup_bgs`: the two groups holding superblock backups under sparse_super2. */
  get backupBgs(): [number, number] {
    return [this.#u32(0x24c), this.#u32(0x250)];
  }
  /** `s_encrypt_algos`. */
  get encryptAlgos(): Uint8Array {
    return this.bytes.subarray(0x254, 0x258);
  }
  /** `s_encrypt_pw_salt`. */
  get encryptPwSalt(): Uint8Array {
    return this.bytes.subarray(0x258, 0x268);
  }
  /** `s_lpf_ino`: lost+found inode. */
  get lpfIno(): number {
    return this.#u32(0x268);
  }
  /** `s_prj_quota_inum`. */
  get prjQuotaInum(): number {
    return this.#u32(0x26c);
  }
  /** `s_checksum_seed`: the stored seed used with metadata_csum_seed. */
  get checksumSeed(): number {
    return this.#u32(0x270);
  }
  /** `s_first_error_errcode`. */
  get firstErrorErrcode(): number {
    return this.#u8(0x27a);
  }
  set firstErrorErrcode(v: number) {
    this.#view.setUint8(0x27a, v);
  }
  /** `s_last_error_errcode`. */
  get lastErrorErrcode(): number {
    return this.#u8(0x27b);
  }
  set lastErrorErrcode(v: number) {
    this.#view.setUint8(0x27b, v);
  }
  /** `s_encoding`: filename encoding for casefold (1: utf8-12.1). */
  get encoding(): number {
    return this.#u16(0x27c);
  }
  /** `s_encoding_flags`. */
  get encodingFlags(): number {
    return this.#u16(0x27e);
  }
  /** `s_orphan_file_inum` (orphan_file feature). */
  get orphanFileInum(): number {
    return this.#u32(0x280);
  }
  /** `s_checksum`: crc32c of the superblock under metadata_csum. */
  get checksum(): number {
    return this.#u32(0x3fc);
  }

  // ---- derived geometry ----

  /** True with the 64bit feature (64-bit block numbers, wide descriptors). */
  get is64bit(): boolean {
    return (this.#u32(0x60) & Incompat.BIT64) !== 0 && this.revLevel >= 1;
  }
  /** True with metadata_csum: crc32c checksums on all metadata. */
  get hasMetadataCsum(): boolean {
    return (this.roCompat & RoCompat.METADATA_CSUM) !== 0;
  }
  /** True with uninit_bg (gdt_csum): crc16 descriptor checksums. */
  get hasGdtCsum(): boolean {
    return (this.roCompat & RoCompat.GDT_CSUM) !== 0;
  }
  /** Block size in bytes (1024 << s_log_block_size). */
  get blockSize(): number {
    return 1024 * 2 ** this.logBlockSize;
  }
  /** Cluster size in bytes (the block size unless bigalloc). */
  get clusterSize(): number {
    return (this.roCompat & RoCompat.BIGALLOC) ? 1024 * 2 ** this.logClusterSize : this.blockSize;
  }
  /** Group descriptor size in bytes. */
  get descSize(): number {
    return this.is64bit ? this.rawDescSize : 32;
  }
  /** Number of block groups. */
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
    if (this.incompat & Incompat.CSUM_SEED) return this.checksumSeed;
    // Every inode, directory and bitmap checksum starts here: kept while the UUID is the same
    // (compared word by word, nothing allocated: this runs for every checksum).
    const k = this.#uuidSeed;
    const w0 = this.#u32(0x68), w1 = this.#u32(0x6c), w2 = this.#u32(0x70), w3 = this.#u32(0x74);
    if (k.seed >= 0 && k.w0 === w0 && k.w1 === w1 && k.w2 === w2 && k.w3 === w3) return k.seed;
    const seed = crc32c(0xffffffff, this.uuid);
    this.#uuidSeed = { w0, w1, w2, w3, seed };
    return seed;
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
 * import { MemoryBlockDevice } from "../block/block_device.ts";
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
  try {
    return parseSuperblock(bytes, {
      ...options,
      deviceSize: options.checkSize === false ? undefined : device.size,
    });
  } catch (e) {
    // A whole-disk image: say where its partitions start (what --offset wants).
    const hint = e instanceof Ext4Error && e.code === "NOT_EXT4"
      ? await partitionTableHint(device).catch(() => null) // a hint only: never a new failure
      : null;
    if (hint) throw new Ext4Error("NOT_EXT4", `${(e as Ext4Error).message}; ${hint}`);
    throw e;
  }
}
