/**
 * The jbd2 journal superblock (v1 and v2) and the constants of the journal format.
 *
 * Every journal structure is big-endian. The superblock lives in block 0 of the journal;
 * only its first 1024 bytes are meaningful. Validation follows what the kernel's
 * `journal_load_superblock()` and `jbd2_journal_load()` accept, so ext4ts refuses exactly
 * the journals the kernel refuses to recover.
 *
 * @module
 */

import { crc32c } from "../ondisk/checksum.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { formatUuid } from "../ondisk/uuid.ts";

/** `h_magic` of every journal metadata block. */
export const JBD2_MAGIC = 0xc03b3998;

/** `h_blocktype` values. */
export const BlockType = {
  DESCRIPTOR: 1,
  COMMIT: 2,
  SUPERBLOCK_V1: 3,
  SUPERBLOCK_V2: 4,
  REVOKE: 5,
} as const;

/** Journal `s_feature_compat` bits. */
export const JournalCompat = { CHECKSUM: 0x1 } as const;

/** Journal `s_feature_incompat` bits. */
export const JournalIncompat = {
  REVOKE: 0x1,
  BIT64: 0x2,
  ASYNC_COMMIT: 0x4,
  CSUM_V2: 0x8,
  CSUM_V3: 0x10,
  FAST_COMMIT: 0x20,
} as const;

const KNOWN_COMPAT = JournalCompat.CHECKSUM;
const KNOWN_INCOMPAT = 0x3f;
const KNOWN_RO_COMPAT = 0;

/** `s_checksum_type` of crc32c (checksum v2/v3). */
export const JBD2_CRC32C_CHKSUM = 4;
/** Default size of the fast-commit area when `s_num_fc_blks` is 0. */
export const JBD2_DEFAULT_FAST_COMMIT_BLOCKS = 256;

/**
 * Names of journal features, as dumpe2fs prints them.
 *
 * @example
 * ```ts
 * import { journalFeatureNames } from "./superblock.ts";
 * console.log(journalFeatureNames(0, 0x12, 0)); // [ "journal_64bit", "journal_checksum_v3" ]
 * ```
 */
export function journalFeatureNames(compat: number, incompat: number, roCompat: number): string[] {
  const out: string[] = [];
  if (compat & JournalCompat.CHECKSUM) out.push("journal_checksum");
  const names: [number, string][] = [
    [JournalIncompat.REVOKE, "journal_incompat_revoke"],
    [JournalIncompat.BIT64, "journal_64bit"],
    [JournalIncompat.ASYNC_COMMIT, "journal_async_commit"],
    [JournalIncompat.CSUM_V2, "journal_checksum_v2"],
    [JournalIncompat.CSUM_V3, "journal_checksum_v3"],
    [JournalIncompat.FAST_COMMIT, "fast_commit"],
  ];
  for (const [bit, name] of names) if (incompat & bit) out.push(name);
  for (let b = 0; b < 32; b++) {
    const bit = 2 ** b;
    if ((compat & ~KNOWN_COMPAT) & bit) out.push(`FEATURE_C${b}`);
    if ((incompat & ~KNOWN_INCOMPAT) & bit) out.push(`FEATURE_I${b}`);
    if ((roCompat & ~KNOWN_RO_COMPAT) & bit) out.push(`FEATURE_R${b}`);
  }
  return out;
}

/**
 * A journal superblock: getters over the on-disk bytes, setters for what recovery changes.
 * Field names follow `journal_superblock_t` without the `s_` prefix.
 *
 * @example
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store } = await locateJournal(device, await readSuperblock(device));
 * const j = new JournalSuperblock(await store.readBlock(0));
 * console.log(j.sequence, j.start, j.tagBytes); // 1 0 8
 * await Deno.remove(img);
 * ```
 */
export class JournalSuperblock {
  /** The first 1024 bytes of journal block 0 (shared: setters write here). */
  readonly bytes: Uint8Array;
  readonly #view: DataView;

  /** Wraps journal block 0; throws CorruptError when it has fewer than 1024 bytes. */
  constructor(bytes: Uint8Array) {
    if (bytes.length < 1024) {
      throw new CorruptError("journal superblock", `only ${bytes.length} bytes`);
    }
    this.bytes = bytes.subarray(0, 1024);
    this.#view = new DataView(this.bytes.buffer, this.bytes.byteOffset, 1024);
  }

  #u32(o: number): number {
    return this.#view.getUint32(o, false);
  }

  /** `h_magic`: {@link JBD2_MAGIC} (0xc03b3998) in a valid journal superblock. */
  get magic(): number {
    return this.#u32(0x0);
  }
  /** 3 for a v1 superblock, 4 for v2. */
  get blockType(): number {
    return this.#u32(0x4);
  }
  /** `s_blocksize`: the journal's block size in bytes. */
  get blockSize(): number {
    return this.#u32(0xc);
  }
  /** Total blocks in the journal (`s_maxlen`). */
  get maxLen(): number {
    return this.#u32(0x10);
  }
  /** First block of the log (`s_first`). */
  get first(): number {
    return this.#u32(0x14);
  }
  /** The first transaction ID expected in the log. */
  get sequence(): number {
    return this.#u32(0x18);
  }
  set sequence(v: number) {
    this.#view.setUint32(0x18, v >>> 0, false);
  }
  /** Block of the start of the log; 0 means the journal is empty (clean). */
  get start(): number {
    return this.#u32(0x1c);
  }
  set start(v: number) {
    this.#view.setUint32(0x1c, v >>> 0, false);
  }
  /** Error value recorded by `jbd2_journal_abort()` (a negative errno), or 0. */
  get errno(): number {
    return this.#view.getInt32(0x20, false);
  }
  set errno(v: number) {
    this.#view.setInt32(0x20, v, false);
  }
  /** True for a v2 superblock, which carries feature words. */
  get isV2(): boolean {
    return this.blockType === BlockType.SUPERBLOCK_V2;
  }
  /** `s_feature_compat`: {@link JournalCompat} bits (0 for a v1 superblock). */
  get featureCompat(): number {
    return this.isV2 ? this.#u32(0x24) : 0;
  }
  set featureCompat(v: number) {
    this.#setV2Field(0x24, v);
  }
  /** `s_feature_incompat`: {@link JournalIncompat} bits (0 for a v1 superblock). */
  get featureIncompat(): number {
    return this.isV2 ? this.#u32(0x28) : 0;
  }
  set featureIncompat(v: number) {
    this.#setV2Field(0x28, v);
  }
  /** Feature words exist only in a v2 superblock: a v1 one cannot take a feature. */
  #setV2Field(offset: number, v: number): void {
    if (!this.isV2) {
      throw new Ext4Error("UNSUPPORTED", "a v1 journal superblock has no feature words");
    }
    this.#view.setUint32(offset, v >>> 0, false);
  }
  /** `s_feature_ro_compat`: read-only compatible feature bits (0 for a v1 superblock). */
  get featureRoCompat(): number {
    return this.isV2 ? this.#u32(0x2c) : 0;
  }
  /** `s_uuid`: the journal's 16-byte UUID (a view on `bytes`). */
  get uuid(): Uint8Array {
    return this.bytes.subarray(0x30, 0x40);
  }
  /**
   * `s_nr_users`: how many filesystems share the journal (an external journal can list several).
   */
  get nrUsers(): number {
    return this.#u32(0x40);
  }
  /** `s_dynsuper`: location of a dynamic superblock copy (unused by jbd2). */
  get dynSuper(): number {
    return this.#u32(0x44);
  }
  /** `s_max_transaction`: limit on blocks per transaction (unused by jbd2; 0). */
  get maxTransaction(): number {
    return this.#u32(0x48);
  }
  /** `s_max_trans_data`: limit on data blocks per transaction (unused by jbd2; 0). */
  get maxTransData(): number {
    return this.#u32(0x4c);
  }
  /** `s_checksum_type`: 4 (crc32c) with checksum v2/v3. */
  get checksumType(): number {
    return this.#view.getUint8(0x50);
  }
  set checksumType(v: number) {
    this.#view.setUint8(0x50, v);
  }
  /** Raw `s_num_fc_blks` (0 means the default of 256 when fast_commit is on). */
  get numFcBlocks(): number {
    return this.#u32(0x54);
  }
  /** `s_head`: block of the log head; only up to date when a clean unmount emptied the journal. */
  get head(): number {
    return this.#u32(0x58);
  }
  set head(v: number) {
    this.#view.setUint32(0x58, v >>> 0, false);
  }
  /** `s_checksum`: crc32c of the superblock (v2/v3), see `computeChecksum`. */
  get checksum(): number {
    return this.#u32(0xfc);
  }
  /** UUIDs of the filesystems sharing this journal (external journals), `nrUsers` of 48. */
  get users(): Uint8Array[] {
    const n = Math.min(this.nrUsers, 48);
    return Array.from({ length: n }, (_, i) => this.bytes.subarray(0x100 + 16 * i, 0x110 + 16 * i));
  }

  /** True when `featureIncompat` has `flag`, a {@link JournalIncompat} bit. */
  has(flag: number): boolean {
    return (this.featureIncompat & flag) !== 0;
  }
  /** INCOMPAT_64BIT: block numbers in tags have 64 bits. */
  get is64bit(): boolean {
    return this.has(JournalIncompat.BIT64);
  }
  /** INCOMPAT_CSUM_V2: crc32c checksums, tags with 16-bit checksum fields. */
  get hasCsumV2(): boolean {
    return this.has(JournalIncompat.CSUM_V2);
  }
  /** INCOMPAT_CSUM_V3: crc32c checksums, 16-byte tags with 32-bit checksums. */
  get hasCsumV3(): boolean {
    return this.has(JournalIncompat.CSUM_V3);
  }
  /** Checksum v2 or v3: metadata blocks carry crc32c tails. */
  get hasCsumV2or3(): boolean {
    return this.hasCsumV2 || this.hasCsumV3;
  }
  /** Checksum v1 (compat): commit blocks carry a crc32_be over the transaction. */
  get hasCsumV1(): boolean {
    return (this.featureCompat & JournalCompat.CHECKSUM) !== 0;
  }
  /** INCOMPAT_REVOKE: revoke blocks are honoured. */
  get hasRevoke(): boolean {
    return this.has(JournalIncompat.REVOKE);
  }
  /** INCOMPAT_ASYNC_COMMIT: commit blocks may be written before the transaction's blocks. */
  get hasAsyncCommit(): boolean {
    return this.has(JournalIncompat.ASYNC_COMMIT);
  }
  /** INCOMPAT_FAST_COMMIT: the journal ends with a fast-commit area. */
  get hasFastCommit(): boolean {
    return this.has(JournalIncompat.FAST_COMMIT);
  }
  /** Blocks reserved for fast commits at the end of the journal (0 without fast_commit). */
  get fastCommitBlocks(): number {
    if (!this.hasFastCommit) return 0;
    return this.numFcBlocks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS;
  }
  /**
   * One past the last block of the main log (`j_last`): the log wraps from here back to
   * `first`. With fast_commit the fast-commit area follows it.
   */
  get last(): number {
    return this.maxLen - this.fastCommitBlocks;
  }
  /** Bytes of one descriptor tag (`journal_tag_bytes()`). */
  get tagBytes(): number {
    if (this.hasCsumV3) return 16;
    let size = 12;
    if (this.hasCsumV2) size += 2;
    return this.is64bit ? size : size - 4;
  }
  /** The seed of every v2/v3 checksum: crc32c of the journal UUID. */
  get csumSeed(): number {
    return crc32c(0xffffffff, this.uuid);
  }
  /** The UUID as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
  get uuidString(): string {
    return formatUuid(this.uuid);
  }

  /** The checksum the superblock should carry (v2/v3). */
  computeChecksum(): number {
    const copy = this.bytes.slice(0, 1024);
    copy.fill(0, 0xfc, 0x100);
    return crc32c(0xffffffff, copy);
  }

  /** True unless checksum v2/v3 is on and the stored checksum is wrong. */
  checksumValid(): boolean {
    return !this.hasCsumV2or3 || this.computeChecksum() === this.checksum;
  }

  /** Recomputes the stored checksum (checksum v2/v3 only). */
  updateChecksum(): void {
    if (this.hasCsumV2or3) this.#view.setUint32(0xfc, this.computeChecksum(), false);
  }

  /**
   * Journal block 0 as it must be written: `block` (the block as read, whose first 1024 bytes
   * these are, or another copy of it) with these fields and an updated v2/v3 checksum.
   *
   * @example
   * ```ts ignore
   * jsb.start = 0;
   * await store.writeBlock(0, jsb.encode(block0));
   * ```
   */
  encode(block: Uint8Array): Uint8Array {
    this.updateChecksum();
    if (block.buffer !== this.bytes.buffer || block.byteOffset !== this.bytes.byteOffset) {
      block.set(this.bytes);
    }
    return block;
  }
}

/** Options for {@link parseJournalSuperblock}. */
export interface ParseJournalSuperblockOptions {
  /** The filesystem's block size: the journal must use the same. */
  blockSize: number;
  /** Blocks available to the journal (inode size or external device length). */
  totalBlocks: number;
}

/**
 * Parses and validates a journal superblock the way the kernel does before recovery: magic,
 * block size, format, length, first block, feature words, checksum type and checksum.
 * Throws {@link CorruptError} (or `UNSUPPORTED` for unknown features) with the kernel's
 * reason.
 *
 * @example
 * ```ts
 * import { parseJournalSuperblock } from "./superblock.ts";
 * try {
 *   parseJournalSuperblock(new Uint8Array(1024), { blockSize: 1024, totalBlocks: 1024 });
 * } catch (e) {
 *   console.log((e as Error).message); // corrupt journal superblock: bad magic 0x00000000 ...
 * }
 * ```
 */
export function parseJournalSuperblock(
  bytes: Uint8Array,
  options: ParseJournalSuperblockOptions,
): JournalSuperblock {
  const jsb = new JournalSuperblock(bytes);
  const bad = (detail: string): never => {
    throw new CorruptError("journal superblock", detail);
  };
  if (jsb.magic !== JBD2_MAGIC) {
    bad(`bad magic 0x${jsb.magic.toString(16).padStart(8, "0")} (no valid journal superblock)`);
  }
  if (jsb.blockSize !== options.blockSize) {
    bad(`block size ${jsb.blockSize} differs from the filesystem's ${options.blockSize}`);
  }
  if (jsb.blockType !== BlockType.SUPERBLOCK_V1 && jsb.blockType !== BlockType.SUPERBLOCK_V2) {
    bad(`unrecognised superblock format ${jsb.blockType}`);
  }
  if (jsb.maxLen > options.totalBlocks) {
    bad(
      `journal is ${jsb.maxLen} blocks but only ${options.totalBlocks} are available (too short)`,
    );
  }
  if (jsb.first === 0 || jsb.first >= options.totalBlocks) {
    bad(`invalid start block of journal: ${jsb.first}`);
  }
  if (jsb.isV2) {
    if (jsb.hasCsumV2 && jsb.hasCsumV3) bad("checksum v2 and v3 are both set");
    if (jsb.hasCsumV2or3 && jsb.hasCsumV1) bad("checksum v1 and v2/v3 are both set");
    if (jsb.hasCsumV2or3) {
      if (jsb.checksumType !== JBD2_CRC32C_CHKSUM) bad(`unknown checksum type ${jsb.checksumType}`);
      if (!jsb.checksumValid()) {
        bad(
          `checksum error (stored 0x${jsb.checksum.toString(16).padStart(8, "0")}, computed 0x${
            jsb.computeChecksum().toString(16).padStart(8, "0")
          })`,
        );
      }
    }
    // Unknown compat features are safe to ignore; the kernel (jbd2_journal_load()) and
    // e2fsck refuse only unknown incompat and ro_compat ones.
    if ((jsb.featureIncompat & ~KNOWN_INCOMPAT) || (jsb.featureRoCompat & ~KNOWN_RO_COMPAT)) {
      throw new Ext4Error(
        "UNSUPPORTED",
        `journal has unrecognised features: ${
          journalFeatureNames(
            0,
            jsb.featureIncompat & ~KNOWN_INCOMPAT,
            jsb.featureRoCompat & ~KNOWN_RO_COMPAT,
          ).join(" ")
        }`,
      );
    }
    if (jsb.hasFastCommit && jsb.maxLen < 1024 + jsb.fastCommitBlocks) {
      bad(
        `journal of ${jsb.maxLen} blocks is too short for ${jsb.fastCommitBlocks} fast-commit blocks`,
      );
    }
  }
  // Not a kernel check, but the log must have room or the wrap arithmetic cannot work.
  if (jsb.last <= jsb.first) bad(`no room for the log (first ${jsb.first}, end ${jsb.last})`);
  return jsb;
}
