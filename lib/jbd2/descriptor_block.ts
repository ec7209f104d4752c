/**
 * Journal block headers and descriptor blocks: the tags that say where each following log
 * block belongs in the filesystem, and the v2/v3 checksum tail shared by descriptor and
 * revoke blocks.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "../ondisk/checksum.ts";
import { Ext4Error } from "../errors.ts";
import { BlockType, JBD2_MAGIC, type JournalSuperblock } from "./superblock.ts";

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

/**
 * Starts a journal metadata block: a zeroed block of `blockSize` bytes with the header
 * (`h_magic`, `h_blocktype`, `h_sequence`) set, as `jbd2_journal_get_descriptor_buffer()`
 * makes one.
 *
 * @example
 * ```ts
 * import { newJournalBlock, readHeader } from "./descriptor_block.ts";
 * console.log(readHeader(newJournalBlock(1024, 2, 7))?.sequence); // 7
 * ```
 */
export function newJournalBlock(
  blockSize: number,
  blockType: number,
  sequence: number,
): Uint8Array {
  const block = new Uint8Array(blockSize);
  const v = new DataView(block.buffer);
  v.setUint32(0, JBD2_MAGIC, false);
  v.setUint32(4, blockType, false);
  v.setUint32(8, sequence >>> 0, false);
  return block;
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

/** A tag to encode: where a logged block belongs and how its log copy was stored. */
export interface TagToEncode {
  /** Filesystem block the log copy replays to. */
  target: number;
  /** True when the log copy had its leading journal magic zeroed (JBD2_FLAG_ESCAPE). */
  escaped: boolean;
  /** {@link dataBlockChecksum} of the log copy (ignored without checksum v2/v3). */
  checksum: number;
}

/**
 * How many tags one descriptor block takes, as the kernel's commit fills it
 * (`jbd2_journal_commit_transaction()`): it starts another descriptor once fewer than a tag,
 * a UUID and the checksum tail are left.
 *
 * @example
 * ```ts ignore
 * const descriptors = Math.ceil(blocks / tagsPerDescriptor(jsb));
 * ```
 */
export function tagsPerDescriptor(jsb: JournalSuperblock): number {
  const tail = jsb.hasCsumV2or3 ? TAIL_SIZE : 0;
  // After n tags and the first tag's UUID, space left is bs - 12 - 16 - n * tagBytes; the
  // kernel adds tag n + 1 while that is at least tagBytes + 16 + tail.
  return Math.floor((jsb.blockSize - HEADER_SIZE - 32 - tail) / jsb.tagBytes);
}

/**
 * The log copy of a block: the block itself, or, when it starts with the journal magic
 * (which recovery would take for a journal block), a copy with those four bytes zeroed and
 * `escaped` set (`jbd2_journal_write_metadata_buffer()`).
 *
 * @example
 * ```ts
 * import { escapeBlock } from "./descriptor_block.ts";
 * const b = new Uint8Array([0xc0, 0x3b, 0x39, 0x98, 5]);
 * console.log(escapeBlock(b)); // { copy: Uint8Array(5) [ 0, 0, 0, 0, 5 ], escaped: true }
 * ```
 */
export function escapeBlock(block: Uint8Array): { copy: Uint8Array; escaped: boolean } {
  const magic = block.length >= 4 &&
    new DataView(block.buffer, block.byteOffset, 4).getUint32(0, false) === JBD2_MAGIC;
  if (!magic) return { copy: block, escaped: false };
  const copy = block.slice();
  copy.fill(0, 0, 4);
  return { copy, escaped: true };
}

/**
 * Encodes a descriptor block of transaction `sequence` for `tags` (at most
 * {@link tagsPerDescriptor}) in the tag format the journal's features require: v3 tags
 * (`blocknr`, 32-bit flags, `blocknr_high`, 32-bit checksum) with CSUM_V3, else `blocknr`,
 * 16-bit checksum (v2) and flags, `blocknr_high` with 64BIT; the journal UUID after the first
 * tag and SAME_UUID on the others; LAST_TAG on the last; the v2/v3 block tail. Throws
 * `INVALID` for a target the tag cannot hold (at or past 2^32 without 64BIT).
 *
 * @example
 * ```ts ignore
 * const block = encodeDescriptorBlock([{ target: 1234, escaped: false, checksum: 0 }], 5, jsb);
 * console.log(parseDescriptorTags(block, jsb)[0].target); // 1234
 * ```
 */
export function encodeDescriptorBlock(
  tags: readonly TagToEncode[],
  sequence: number,
  jsb: JournalSuperblock,
): Uint8Array {
  if (tags.length === 0 || tags.length > tagsPerDescriptor(jsb)) {
    throw new Ext4Error(
      "INVALID",
      `a descriptor block holds 1 to ${tagsPerDescriptor(jsb)} tags, not ${tags.length}`,
    );
  }
  const block = newJournalBlock(jsb.blockSize, BlockType.DESCRIPTOR, sequence);
  const v = new DataView(block.buffer);
  const csum3 = jsb.hasCsumV3;
  const csum2 = jsb.hasCsumV2;
  const wide = jsb.is64bit;
  let p = HEADER_SIZE;
  tags.forEach((tag, i) => {
    checkBlockNumber(tag.target, jsb, "logged");
    let flags = 0;
    if (tag.escaped) flags |= TagFlag.ESCAPE;
    if (i > 0) flags |= TagFlag.SAME_UUID;
    if (i === tags.length - 1) flags |= TagFlag.LAST_TAG;
    v.setUint32(p, tag.target % 2 ** 32, false);
    if (wide) v.setUint32(p + 8, Math.floor(tag.target / 2 ** 32), false);
    if (csum3) {
      v.setUint32(p + 4, flags, false);
      v.setUint32(p + 12, tag.checksum >>> 0, false);
    } else {
      if (csum2) v.setUint16(p + 4, tag.checksum & 0xffff, false);
      v.setUint16(p + 6, flags, false);
    }
    p += jsb.tagBytes;
    if (i === 0) {
      block.set(jsb.uuid, p);
      p += 16;
    }
  });
  setBlockTail(block, jsb);
  return block;
}

/**
 * Throws `INVALID` unless `block` is a block number the journal's tags and revoke records can
 * hold (below 2^32 without journal_64bit); `verb` says what was asked ("logged", "revoked").
 *
 * @example
 * ```ts ignore
 * checkBlockNumber(2 ** 32, jsb, "logged"); // throws without journal_64bit
 * ```
 */
export function checkBlockNumber(block: number, jsb: JournalSuperblock, verb: string): void {
  const wide = jsb.is64bit;
  if (!Number.isSafeInteger(block) || block < 0 || (!wide && block >= 2 ** 32)) {
    throw new Ext4Error(
      "INVALID",
      `block ${block} cannot be ${verb}: ${
        Number.isSafeInteger(block) && block >= 0
          ? "the journal has no 64bit feature"
          : "not a block number"
      }`,
    );
  }
}

/**
 * Stores the v2/v3 checksum tail of a descriptor or revoke block (nothing without checksum
 * v2/v3): `jbd2_descriptor_block_csum_set()`.
 *
 * @example
 * ```ts ignore
 * setBlockTail(block, jsb);
 * console.log(blockTailValid(block, jsb)); // true
 * ```
 */
export function setBlockTail(block: Uint8Array, jsb: JournalSuperblock): void {
  if (!jsb.hasCsumV2or3) return;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(block.length - TAIL_SIZE, 0, false);
  v.setUint32(block.length - TAIL_SIZE, blockTailChecksum(block, jsb.csumSeed), false);
}
