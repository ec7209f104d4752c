/**
 * Journal revoke blocks: lists of filesystem blocks whose earlier journalled copies must not
 * be replayed.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import { checkBlockNumber, newJournalBlock, setBlockTail, TAIL_SIZE } from "./descriptor_block.ts";
import { BlockType, type JournalSuperblock } from "./superblock.ts";

/** Size of `jbd2_journal_revoke_header_t` (header plus `r_count`). */
export const REVOKE_HEADER_SIZE = 16;

/**
 * Parses the records of a revoke block. `r_count` is the number of bytes used, header
 * included; like the kernel (`scan_revoke_records()`), a count larger than the block
 * (less the checksum tail) is an error. Records are 8 bytes with journal_64bit, else 4.
 *
 * @example
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { BlockType, JBD2_MAGIC } from "./superblock.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { jsb } = await locateJournal(device, await readSuperblock(device));
 * const block = new Uint8Array(jsb.blockSize);
 * const v = new DataView(block.buffer);
 * v.setUint32(0, JBD2_MAGIC);
 * v.setUint32(4, BlockType.REVOKE);
 * v.setUint32(12, 16 + 2 * 4); // r_count: the header and two 32-bit records
 * v.setUint32(16, 1234);
 * v.setUint32(20, 5678);
 * console.log(parseRevokeBlock(block, jsb, 1)); // [ 1234, 5678 ]
 * await Deno.remove(img);
 * ```
 */
export function parseRevokeBlock(
  block: Uint8Array,
  jsb: JournalSuperblock,
  logBlock: number,
): number[] {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const count = v.getUint32(12, false);
  const limit = block.length - (jsb.hasCsumV2or3 ? TAIL_SIZE : 0);
  if (count > limit) {
    throw new CorruptError(
      `journal revoke block ${logBlock}`,
      `r_count ${count} exceeds the block (${limit} usable bytes)`,
    );
  }
  const recordLen = jsb.is64bit ? 8 : 4;
  const out: number[] = [];
  for (let off = REVOKE_HEADER_SIZE; off + recordLen <= count; off += recordLen) {
    out.push(
      recordLen === 4
        ? v.getUint32(off, false)
        : v.getUint32(off, false) * 2 ** 32 + v.getUint32(off + 4, false),
    );
  }
  return out;
}

/**
 * How many records one revoke block holds: `(blocksize - 16 - tail) / record size`, records
 * of 8 bytes with journal_64bit, else 4 (`write_one_revoke_record()`).
 *
 * @example
 * ```ts ignore
 * const revokeBlocks = Math.ceil(revoked / revokeRecordsPerBlock(jsb));
 * ```
 */
export function revokeRecordsPerBlock(jsb: JournalSuperblock): number {
  const tail = jsb.hasCsumV2or3 ? TAIL_SIZE : 0;
  return Math.floor((jsb.blockSize - REVOKE_HEADER_SIZE - tail) / (jsb.is64bit ? 8 : 4));
}

/**
 * Encodes a revoke block of transaction `sequence` listing `records` (at most
 * {@link revokeRecordsPerBlock}): `r_count` in bytes, header included; big-endian records of
 * 8 bytes with journal_64bit, else 4; the v2/v3 block tail. Throws `INVALID` for a block
 * number a record cannot hold.
 *
 * @example
 * ```ts ignore
 * const block = encodeRevokeBlock([1234, 5678], 9, jsb);
 * console.log(parseRevokeBlock(block, jsb, 0)); // [ 1234, 5678 ]
 * ```
 */
export function encodeRevokeBlock(
  records: readonly number[],
  sequence: number,
  jsb: JournalSuperblock,
): Uint8Array {
  const max = revokeRecordsPerBlock(jsb);
  if (records.length === 0 || records.length > max) {
    throw new Ext4Error(
      "INVALID",
      `a revoke block holds 1 to ${max} records, not ${records.length}`,
    );
  }
  const block = newJournalBlock(jsb.blockSize, BlockType.REVOKE, sequence);
  const v = new DataView(block.buffer);
  const wide = jsb.is64bit;
  let off = REVOKE_HEADER_SIZE;
  for (const r of records) {
    checkBlockNumber(r, jsb, "revoked");
    if (wide) {
      v.setUint32(off, Math.floor(r / 2 ** 32), false);
      v.setUint32(off + 4, r % 2 ** 32, false);
      off += 8;
    } else {
      v.setUint32(off, r, false);
      off += 4;
    }
  }
  v.setUint32(12, off, false);
  setBlockTail(block, jsb);
  return block;
}
