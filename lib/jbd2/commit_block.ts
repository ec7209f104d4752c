/**
 * Journal commit blocks: the record that makes a transaction count, with the checksums of
 * the three schemes (v1: crc32_be over the whole transaction; v2/v3: crc32c of the block).
 *
 * @module
 */

import { crc32c, crc32cU32 } from "../ondisk/checksum.ts";
import { newJournalBlock } from "./descriptor_block.ts";
import { BlockType, type JournalSuperblock } from "./superblock.ts";

/** `h_chksum_type` of checksum v1 (crc32_be). */
export const JBD2_CRC32_CHKSUM = 1;
/** `h_chksum_size` of checksum v1. */
export const JBD2_CRC32_CHKSUM_SIZE = 4;
/** `sizeof(struct commit_header)`. */
export const COMMIT_HEADER_SIZE = 60;

/** The fields of a commit block after its header. */
export interface CommitBlock {
  /** `h_chksum_type`: 1 (crc32), 2 (md5), 3 (sha1), 4 (crc32c); 0 when unset. */
  checksumType: number;
  /** `h_chksum_size`: bytes of checksum stored (4 for crc32). */
  checksumSize: number;
  /** `h_chksum[0]`. */
  checksum: number;
  /** Commit time, seconds. */
  commitSec: number;
  /** `h_commit_nsec`: the nanoseconds part of the commit time. */
  commitNsec: number;
}

/**
 * Parses the commit header of a commit block.
 *
 * @example
 * ```ts
 * import { parseCommitBlock } from "./commit_block.ts";
 * console.log(parseCommitBlock(new Uint8Array(1024)).commitSec); // 0
 * ```
 */
export function parseCommitBlock(block: Uint8Array): CommitBlock {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return {
    checksumType: v.getUint8(12),
    checksumSize: v.getUint8(13),
    checksum: v.getUint32(16, false),
    commitSec: v.getUint32(48, false) * 2 ** 32 + v.getUint32(52, false),
    commitNsec: v.getUint32(56, false),
  };
}

/** What a commit block records besides its transaction. */
export interface CommitToEncode {
  /** Commit time: seconds since the epoch (`h_commit_sec`). */
  commitSec: number;
  /** Commit time: the nanoseconds part (`h_commit_nsec`). */
  commitNsec: number;
  /**
   * Checksum v1 (COMPAT_CHECKSUM): the {@link crc32Be} over the transaction's descriptor blocks
   * and log copies, started at 0xffffffff; ignored when the journal lacks the feature.
   */
  crc32Sum?: number;
}

/**
 * Encodes the commit block of transaction `sequence` as `journal_submit_commit_record()`
 * does: the commit time; with COMPAT_CHECKSUM `h_chksum_type` crc32, `h_chksum_size` 4 and
 * the transaction's crc32_be in `h_chksum[0]`; with checksum v2/v3 type and size 0 and the
 * crc32c of the block in `h_chksum[0]` (see {@link commitBlockChecksum}).
 *
 * @example
 * ```ts ignore
 * const block = encodeCommitBlock(7, { commitSec: 1e9, commitNsec: 0 }, jsb);
 * console.log(commitBlockValid(block, jsb), parseCommitBlock(block).commitSec); // true 1000000000
 * ```
 */
export function encodeCommitBlock(
  sequence: number,
  commit: CommitToEncode,
  jsb: JournalSuperblock,
): Uint8Array {
  const block = newJournalBlock(jsb.blockSize, BlockType.COMMIT, sequence);
  const v = new DataView(block.buffer);
  v.setUint32(48, Math.floor(commit.commitSec / 2 ** 32), false);
  v.setUint32(52, commit.commitSec % 2 ** 32, false);
  v.setUint32(56, commit.commitNsec, false);
  if (jsb.hasCsumV1) {
    v.setUint8(12, JBD2_CRC32_CHKSUM);
    v.setUint8(13, JBD2_CRC32_CHKSUM_SIZE);
    v.setUint32(16, (commit.crc32Sum ?? 0xffffffff) >>> 0, false);
  }
  if (jsb.hasCsumV2or3) {
    v.setUint8(12, 0);
    v.setUint8(13, 0);
    v.setUint32(16, commitBlockChecksum(block, jsb.csumSeed), false);
  }
  return block;
}

/**
 * crc32c of a commit block with `h_chksum[0]` zeroed, as checksum v2/v3 stores it.
 *
 * @example
 * ```ts ignore
 * const ok = parseCommitBlock(block).checksum === commitBlockChecksum(block, jsb.csumSeed);
 * ```
 */
export function commitBlockChecksum(block: Uint8Array, seed: number): number {
  let c = crc32c(seed, block.subarray(0, 16));
  c = crc32cU32(c, 0);
  return crc32c(c, block.subarray(20));
}

/**
 * True unless checksum v2/v3 is on and the commit block's checksum is wrong
 * (`jbd2_commit_block_csum_verify()`).
 *
 * @example
 * ```ts ignore
 * if (!commitBlockValid(block, jsb)) console.log("bad commit checksum");
 * ```
 */
export function commitBlockValid(block: Uint8Array, jsb: JournalSuperblock): boolean {
  if (!jsb.hasCsumV2or3) return true;
  return parseCommitBlock(block).checksum === commitBlockChecksum(block, jsb.csumSeed);
}

/**
 * True when the checksum matches a commit block whose bytes past the header were never
 * written (zero): the kernel accepts such an incomplete commit block
 * (`jbd2_commit_block_csum_verify_partial()`).
 *
 * @example
 * ```ts ignore
 * if (!commitBlockValid(b, jsb) && commitBlockValidPartial(b, jsb)) console.log("partial");
 * ```
 */
export function commitBlockValidPartial(block: Uint8Array, jsb: JournalSuperblock): boolean {
  if (!jsb.hasCsumV2or3) return false;
  const tmp = new Uint8Array(block.length);
  tmp.set(block.subarray(0, COMMIT_HEADER_SIZE));
  return parseCommitBlock(block).checksum === commitBlockChecksum(tmp, jsb.csumSeed);
}

const CRC32_BE_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * Continues a raw big-endian CRC-32 (polynomial 0x04c11db7, no inversion; the kernel's
 * `crc32_be()`), the checksum v1 of journal commit blocks.
 *
 * @example
 * ```ts
 * import { crc32Be } from "./commit_block.ts";
 * const c = crc32Be(0xffffffff, new TextEncoder().encode("123456789"));
 * console.log((~c >>> 0).toString(16)); // fc891918, the CRC-32/BZIP2 check value
 * ```
 */
export function crc32Be(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) {
    c = ((c << 8) ^ CRC32_BE_TABLE[((c >>> 24) ^ data[i]) & 0xff]) >>> 0;
  }
  return c;
}
