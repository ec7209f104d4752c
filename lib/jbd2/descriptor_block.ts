/**
 * Journal block headers and descriptor blocks: the tags that say where each following log
 * block belongs in the filesystem, and the v2/v3 checksum tail shared by descriptor and
 * revoke blocks.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "../ondisk/checksum.ts";
import { JBD2_MAGIC, type JournalSuperblock } from "./superblock.ts";

/** Descriptor tag `t_flags` bits. */
export const TagFlag = {
  /** The block's first four bytes were the journal magic and were zeroed on write. */
  ESCAPE: 0x1,
  /** No 16-byte UUID follows this tag. */
  SAME_UUID: 0x2,
  /** Block deleted by this transaction (not used by jbd2). */
  DELETED: 0x4,
  /** Last tag of this descriptor. */
  LAST_TAG: 0x8,
} as const;

/** Size of `journal_header_t`. */
export const HEADER_SIZE = 12;
/** Size of the checksum tail of descriptor and revoke blocks (v2/v3). */
export const TAIL_SIZE = 4;

/** The common header of journal metadata blocks. */
export interface JournalHeader {
  /** `h_magic`: {@link JBD2_MAGIC} for a journal metadata block. */
  magic: number;
  /** `h_blocktype`: a {@link BlockType} (descriptor, commit, superblock v1/v2, revoke). */
  blockType: number;
  /** `h_sequence`: the transaction id (tid) the block belongs to. */
  sequence: number;
}

/**
 * Reads the header of a journal block; `undefined` when it lacks the journal magic.
 *
 * @example
 * ```ts
 * import { readHeader } from "./descriptor_block.ts";
 * console.log(readHeader(new Uint8Array(1024))); // undefined
 * ```
 */
export function readHeader(block: Uint8Array): JournalHeader | undefined {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const magic = v.getUint32(0, false);
  if (magic !== JBD2_MAGIC) return undefined;
  return { magic, blockType: v.getUint32(4, false), sequence: v.getUint32(8, false) };
}

/** One descriptor tag. */
export interface DescriptorTag {
  /** Filesystem block the log block belongs to. */
  target: number;
  /** `t_flags` (see {@link TagFlag}). */
  flags: number;
  /** The stored data-block checksum (16 bits for v2, 32 for v3; 0 otherwise). */
  checksum: number;
  /** Byte offset of the tag inside the descriptor block. */
  offset: number;
}

/**
 * Parses the tags of a descriptor block exactly as the kernel walks them
 * (`count_tags()`/`jbd2_do_replay()`): tags of `jsb.tagBytes`, a UUID after every tag without
 * SAME_UUID, until LAST_TAG or the end of the usable space (the tail excluded under v2/v3).
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
 * v.setUint32(4, BlockType.DESCRIPTOR);
 * v.setUint32(12, 1234); // one tag (8 bytes without 64bit and checksums): target block 1234
 * v.setUint16(18, TagFlag.SAME_UUID | TagFlag.LAST_TAG);
 * for (const tag of parseDescriptorTags(block, jsb)) console.log(tag.target); // 1234
 * await Deno.remove(img);
 * ```
 */
export function parseDescriptorTags(block: Uint8Array, jsb: JournalSuperblock): DescriptorTag[] {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const tagBytes = jsb.tagBytes;
  const size = block.length - (jsb.hasCsumV2or3 ? TAIL_SIZE : 0);
  const csum3 = jsb.hasCsumV3;
  const wide = jsb.is64bit;
  const tags: DescriptorTag[] = [];
  let p = HEADER_SIZE;
  while (p + tagBytes <= size) {
    let target = v.getUint32(p, false);
    let flags: number;
    let checksum: number;
    if (csum3) {
      // journal_block_tag3_t: blocknr, flags (32), blocknr_high, checksum (32).
      flags = v.getUint32(p + 4, false) & 0xffff;
      if (wide) target += v.getUint32(p + 8, false) * 2 ** 32;
      checksum = v.getUint32(p + 12, false);
    } else {
      // journal_block_tag_t: blocknr, checksum (16), flags (16), blocknr_high.
      checksum = v.getUint16(p + 4, false);
      flags = v.getUint16(p + 6, false);
      if (wide) target += v.getUint32(p + 8, false) * 2 ** 32;
    }
    tags.push({ target, flags, checksum, offset: p });
    p += tagBytes;
    if (!(flags & TagFlag.SAME_UUID)) p += 16;
    if (flags & TagFlag.LAST_TAG) break;
  }
  return tags;
}

/**
 * The v2/v3 checksum of a descriptor or revoke block: crc32c seeded with the journal's
 * seed over the whole block with the tail zeroed.
 *
 * @example
 * ```ts ignore
 * const ok = view.getUint32(bs - 4) === blockTailChecksum(block, jsb.csumSeed);
 * ```
 */
export function blockTailChecksum(block: Uint8Array, seed: number): number {
  const end = block.length - TAIL_SIZE;
  let c = crc32c(seed, block.subarray(0, end));
  c = crc32cU32(c, 0);
  return c >>> 0;
}

/**
 * True unless checksum v2/v3 is on and the tail of this descriptor or revoke block is wrong
 * (`jbd2_descriptor_block_csum_verify()`).
 *
 * @example
 * ```ts ignore
 * if (!blockTailValid(block, jsb)) console.log("bad descriptor checksum");
 * ```
 */
export function blockTailValid(block: Uint8Array, jsb: JournalSuperblock): boolean {
  if (!jsb.hasCsumV2or3) return true;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return v.getUint32(block.length - TAIL_SIZE, false) === blockTailChecksum(block, jsb.csumSeed);
}

/**
 * The checksum of a data block as v2/v3 tags store it: crc32c over the big-endian
 * transaction ID then the block as stored in the journal (v2 keeps the low 16 bits).
 *
 * @example
 * ```ts ignore
 * const sum = dataBlockChecksum(journalBlock, tid, jsb.csumSeed);
 * ```
 */
export function dataBlockChecksum(block: Uint8Array, sequence: number, seed: number): number {
  // crc32cU32 takes the value's bytes low first: swap them to feed the big-endian tid.
  const s = sequence >>> 0;
  const be = ((s & 0xff) << 24) | ((s & 0xff00) << 8) | ((s >>> 8) & 0xff00) | (s >>> 24);
  return crc32c(crc32cU32(seed, be), block);
}

/**
 * True unless checksum v2/v3 is on and the tag's checksum does not match the data block
 * (`jbd2_block_tag_csum_verify()`).
 *
 * @example
 * ```ts ignore
 * if (!dataBlockValid(tag, data, tid, jsb)) console.log(`bad data block for ${tag.target}`);
 * ```
 */
export function dataBlockValid(
  tag: DescriptorTag,
  data: Uint8Array,
  sequence: number,
  jsb: JournalSuperblock,
): boolean {
  if (!jsb.hasCsumV2or3) return true;
  return tagChecksumMatches(tag, dataBlockChecksum(data, sequence, jsb.csumSeed), jsb);
}

/**
 * True when a v2/v3 tag's checksum field matches `sum`, a {@link dataBlockChecksum} (v2
 * tags keep its low 16 bits).
 *
 * @example
 * ```ts ignore
 * const ok = tagChecksumMatches(tag, dataBlockChecksum(data, tid, jsb.csumSeed), jsb);
 * ```
 */
export function tagChecksumMatches(
  tag: DescriptorTag,
  sum: number,
  jsb: JournalSuperblock,
): boolean {
  return jsb.hasCsumV3 ? tag.checksum === sum : tag.checksum === (sum & 0xffff);
}
