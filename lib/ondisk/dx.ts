/**
 * The index blocks of hash-indexed (htree) directories, pure: dx_root (block 0: "." and a
 * ".." spanning the block, then `struct dx_root_info` and the entries) and dx_node (one
 * unused entry spanning the block, then the entries), their `limit`/`count` header, the
 * `{hash, block}` entries and the metadata_csum `dx_tail` — decode, encode and checksum.
 * Walking an index (the kernel's `dx_probe`) is lib/ext4/htree.ts.
 *
 * @module
 */

import { crc32c, crc32cU32 } from "./checksum.ts";
import { DxHashVersion } from "./dir_hash.ts";
import { CorruptError } from "../errors.ts";
import { Incompat } from "./features.ts";
import { type Superblock, SuperFlags } from "./superblock.ts";
import { dirRecLen, inodeChecksumSeed, recLenFromDisk, recLenToDisk } from "./dir_record.ts";
import { markVerified } from "./verified.ts";

/** Size of the tail of an index block (`struct dx_tail`). */
export const DX_TAIL_SIZE = 8;
/** Offset of `limit`/`count` in the root: after ".", ".." and the 8-byte dx_root_info. */
export const DX_ROOT_COUNT = 0x20;
/** Offset of `limit`/`count` in a node: after its fake directory entry. */
export const DX_NODE_COUNT = 0x08;
/** Offsets of the dx_root_info fields in block 0. */
export const DxRootInfoOffset = {
  HASH_VERSION: 0x1c,
  INFO_LENGTH: 0x1d,
  INDIRECT_LEVELS: 0x1e,
  UNUSED_FLAGS: 0x1f,
} as const;

/** `struct dx_root_info`, after "." and ".." in block 0. */
export interface DxRootInfo {
  /** `hash_version`: the name hash, a {@link DxHashVersion} (legacy, half-MD4, TEA, SipHash). */
  hashVersion: number;
  /** `info_length`: the size of this structure in bytes (8); the root entries start after it. */
  infoLength: number;
  /** `indirect_levels`: index levels below the root (0 = the root points at leaves). */
  indirectLevels: number;
  /** `unused_flags`: hash flags; bit 0 set is refused as unimplemented. */
  unusedFlags: number;
}

/** One index entry: names hashing to >= `hash` (and below the next entry's) live under `block`. */
export interface DxEntry {
  /** `hash`: the lowest hash of names under this entry (0 for the first entry). */
  hash: number;
  /** `block`: the logical block (in the directory) of the child index or leaf block. */
  block: number;
}

/** The entries of an index block; `entries[0].hash` is 0 (its slot holds limit and count). */
export interface DxIndex {
  /** `limit`: how many entries fit in this index block. */
  limit: number;
  /** `count`: how many entries are in use, including the first. */
  count: number;
  /** The `count` entries in order of hash. */
  entries: DxEntry[];
}

/**
 * An index the kernel would refuse and fall back from (its ERR_BAD_DX_DIR).
 *
 * @example
 * ```ts ignore
 * try { parseDxRoot(block0, sb, ino); } catch (e) { if (e instanceof UnusableIndexError) scanLinearly(); }
 * ```
 */
export class UnusableIndexError extends CorruptError {
  constructor(ino: number, detail: string) {
    super(`directory index of inode ${ino}`, detail);
    this.name = "UnusableIndexError";
  }
}

/**
 * True when the filesystem hashes names with signed chars: unless the superblock says
 * UNSIGNED_HASH, as the kernel on x86 assumes.
 *
 * @example
 * ```ts ignore
 * const signed = hashIsSigned(sb);
 * ```
 */
export function hashIsSigned(sb: Superblock): boolean {
  return (sb.flags & SuperFlags.UNSIGNED_HASH) === 0;
}

/**
 * Maximum index depth: 3 levels of index blocks with large_dir, else 2.
 *
 * @example
 * ```ts ignore
 * const ok = info.indirectLevels < maxHtreeLevels(sb);
 * ```
 */
export function maxHtreeLevels(sb: Superblock): number {
  return (sb.incompat & Incompat.LARGEDIR) !== 0 ? 3 : 2;
}

function view(block: Uint8Array): DataView {
  return new DataView(block.buffer, block.byteOffset, block.byteLength);
}

function tailSpace(sb: Superblock): number {
  return sb.hasMetadataCsum ? DX_TAIL_SIZE : 0;
}

/**
 * Entries an index block holds: the root after "." / ".." / dx_root_info, a node after its
 * fake entry; 8 bytes less for the dx tail with metadata_csum.
 *
 * @example
 * ```ts ignore
 * dxLimit(sb, true); // 123 on a 1 KiB-block metadata_csum filesystem; a node holds 126
 * ```
 */
export function dxLimit(sb: Superblock, root: boolean): number {
  const off = root ? DX_ROOT_COUNT : DX_NODE_COUNT;
  return Math.floor((sb.blockSize - off - tailSpace(sb)) / 8);
}

function readIndex(
  block: Uint8Array,
  offset: number,
  expectedLimit: number,
  ino: number,
  what: string,
): DxIndex {
  const v = view(block);
  if (offset + 4 > block.length) throw new UnusableIndexError(ino, `${what} has no entries`);
  const limit = v.getUint16(offset, true);
  const count = v.getUint16(offset + 2, true);
  if (limit !== expectedLimit) {
    throw new UnusableIndexError(ino, `${what} limit ${limit} != expected ${expectedLimit}`);
  }
  if (count === 0 || count > limit) {
    throw new UnusableIndexError(ino, `${what} count ${count} beyond limit ${limit}`);
  }
  if (offset + count * 8 > block.length) {
    throw new UnusableIndexError(ino, `${what} entries overrun the block`);
  }
  const entries: DxEntry[] = [];
  for (let i = 0; i < count; i++) {
    const o = offset + i * 8;
    entries.push({
      hash: i === 0 ? 0 : v.getUint32(o, true),
      block: v.getUint32(o + 4, true) & 0x0fffffff,
    });
  }
  return { limit, count, entries };
}

/**
 * Parses a dx_root block (logical block 0 of an indexed directory): the root info and its
 * index entries, checked as the kernel's `dx_probe` does. Throws {@link UnusableIndexError}
 * when the kernel would fall back to a linear scan.
 *
 * @example
 * ```ts ignore
 * const { info, index } = parseDxRoot(block0, sb, 2);
 * console.log(info.hashVersion, info.indirectLevels, index.count);
 * ```
 */
export function parseDxRoot(
  block: Uint8Array,
  sb: Superblock,
  ino: number,
): { info: DxRootInfo; index: DxIndex } {
  const known = parsedRoots.get(block);
  if (known) return known;
  const root = decodeDxRoot(block, sb, ino);
  parsedRoots.set(block, root);
  return root;
}

/**
 * Index blocks already parsed, by image (as lib/ondisk/verified.ts keeps checksums): every
 * lookup and insert in a hashed directory walks its root, usually an image unchanged since the
 * last walk. An image only changes through {@link writeDxEntries}, which forgets it; a block
 * read again is a new object. The results are shared: callers copy entries they change.
 */
const parsedRoots = new WeakMap<Uint8Array, { info: DxRootInfo; index: DxIndex }>();
const parsedNodes = new WeakMap<Uint8Array, DxIndex>();

function decodeDxRoot(
  block: Uint8Array,
  sb: Superblock,
  ino: number,
): { info: DxRootInfo; index: DxIndex } {
  const bs = block.length;
  if (bs < 40) throw new UnusableIndexError(ino, "dx_root block too small");
  const info: DxRootInfo = {
    hashVersion: block[DxRootInfoOffset.HASH_VERSION],
    infoLength: block[DxRootInfoOffset.INFO_LENGTH],
    indirectLevels: block[DxRootInfoOffset.INDIRECT_LEVELS],
    unusedFlags: block[DxRootInfoOffset.UNUSED_FLAGS],
  };
  const v = info.hashVersion;
  if (
    v !== DxHashVersion.LEGACY && v !== DxHashVersion.HALF_MD4 && v !== DxHashVersion.TEA &&
    v !== DxHashVersion.SIPHASH
  ) {
    throw new UnusableIndexError(ino, `unrecognised hash version ${v}`);
  }
  if (info.unusedFlags & 1) {
    throw new UnusableIndexError(
      ino,
      `unimplemented hash flags 0x${info.unusedFlags.toString(16)}`,
    );
  }
  if (info.indirectLevels >= maxHtreeLevels(sb)) {
    throw new UnusableIndexError(ino, `htree depth ${info.indirectLevels} exceeds the supported`);
  }
  const start = dirRecLen(1) + dirRecLen(2) + info.infoLength;
  const rootLimit = Math.floor((bs - start - tailSpace(sb)) / 8);
  return { info, index: readIndex(block, start, rootLimit, ino, "dx_root") };
}

/**
 * Parses a dx_node block (an interior index block: one fake entry spanning the block, then
 * the index entries).
 *
 * @example
 * ```ts ignore
 * const index = parseDxNode(block, sb, 2);
 * ```
 */
export function parseDxNode(block: Uint8Array, sb: Superblock, ino: number): DxIndex {
  const known = parsedNodes.get(block);
  if (known) return known;
  const bs = block.length;
  const nodeLimit = Math.floor((bs - dirRecLen(0) - tailSpace(sb)) / 8);
  const index = readIndex(block, dirRecLen(0), nodeLimit, ino, "dx_node");
  parsedNodes.set(block, index);
  return index;
}

/**
 * Writes `entries` as the `limit`/`count` header and entries of an index block at `off`
 * ({@link DX_ROOT_COUNT} or {@link DX_NODE_COUNT}), zeroing the unused slots; what was parsed
 * from `block` before is forgotten.
 *
 * @example
 * ```ts ignore
 * writeDxEntries(root, DX_ROOT_COUNT, dxLimit(sb, true), [{ hash: 0, block: 1 }]);
 * ```
 */
export function writeDxEntries(
  block: Uint8Array,
  off: number,
  limit: number,
  entries: DxEntry[],
): void {
  const v = view(block);
  if (entries.length > limit) throw new Error("dx entries over the limit");
  parsedRoots.delete(block);
  parsedNodes.delete(block);
  block.fill(0, off, off + 8 * limit);
  v.setUint16(off, limit, true);
  v.setUint16(off + 2, entries.length, true);
  entries.forEach((e, i) => {
    if (i > 0) v.setUint32(off + 8 * i, e.hash, true);
    v.setUint32(off + 8 * i + 4, e.block, true);
  });
}

/**
 * A new dx_node block holding `entries` (checksum not yet set: {@link setDxChecksum}).
 *
 * @example
 * ```ts ignore
 * const node = encodeDxNode(sb, entries);
 * setDxChecksum(sb, dir, node, false);
 * ```
 */
export function encodeDxNode(sb: Superblock, entries: DxEntry[]): Uint8Array {
  const img = new Uint8Array(sb.blockSize);
  view(img).setUint16(4, recLenToDisk(sb.blockSize, sb.blockSize), true);
  writeDxEntries(img, DX_NODE_COUNT, dxLimit(sb, false), entries);
  return img;
}

/**
 * True for a dx_node: a first record that is unused and spans the whole block. An empty
 * leaf without metadata_csum has the same shape; it holds no entries either way.
 *
 * @example
 * ```ts ignore
 * if (!isDxNode(sb, await tx.read(physical))) scanLeaf();
 * ```
 */
export function isDxNode(sb: Superblock, block: Uint8Array): boolean {
  if (block.length < 8) return false;
  const v = view(block);
  return v.getUint32(0, true) === 0 &&
    recLenFromDisk(v.getUint16(4, true), sb.blockSize) === sb.blockSize;
}

/**
 * Where the `dx_countlimit` of an index block is: 8 in a dx_node (one fake entry spanning
 * the block), 32 in a dx_root ("." of 12 bytes, ".." spanning the rest, then the 8-byte
 * root info), or -1 when the block has neither shape.
 *
 * @example
 * ```ts
 * import { dxCountOffset } from "./dx.ts";
 * const node = new Uint8Array(1024);
 * node[5] = 4; // rec_len 1024
 * console.log(dxCountOffset(node)); // 8
 * ```
 */
export function dxCountOffset(block: Uint8Array): number {
  const bs = block.length;
  if (bs < 40) return -1;
  const v = view(block);
  const first = recLenFromDisk(v.getUint16(4, true), bs);
  if (first === bs) return 8;
  if (first !== 12) return -1;
  if (recLenFromDisk(v.getUint16(16, true), bs) !== bs - 12) return -1;
  // dx_root_info: reserved_zero u32, hash_version u8, info_length u8 (8), ...
  if (v.getUint32(24, true) !== 0 || block[29] !== 8) return -1;
  return 32;
}

/** Result of checking an index block's dx_tail. */
export type DxChecksumResult =
  | { ok: true }
  | { ok: false; reason: string };

/**
 * Computes the dx_tail checksum of an index block (dx_root or dx_node): crc32c over the
 * header and the `count` entries in use, then the tail's reserved word and a zero checksum
 * field. Returns where the tail is and the checksum, or why the block has no usable tail.
 *
 * @example
 * ```ts ignore
 * const r = computeDxChecksum(sb, ino, gen, block);
 * if ("checksum" in r) new DataView(block.buffer).setUint32(r.tail + 4, r.checksum, true);
 * ```
 */
export function computeDxChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): { tail: number; checksum: number } | { reason: string } {
  const off = dxCountOffset(block);
  if (off < 0) return { reason: "not an index block" };
  const v = view(block);
  const limit = v.getUint16(off, true);
  const count = v.getUint16(off + 2, true);
  const tail = off + limit * 8;
  if (tail + DX_TAIL_SIZE > block.length) {
    return { reason: `no space for the dx_tail checksum (limit ${limit})` };
  }
  if (count > limit) return { reason: `count ${count} exceeds limit ${limit}` };
  let c = crc32c(inodeChecksumSeed(sb, ino, generation), block.subarray(0, off + count * 8));
  c = crc32c(c, block.subarray(tail, tail + 4));
  c = crc32cU32(c, 0);
  return { tail, checksum: c };
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

/**
 * Verifies the dx_tail checksum of an index block under metadata_csum.
 *
 * @example
 * ```ts ignore
 * const r = verifyDxChecksum(sb, ino, gen, block);
 * if (!r.ok) throw new Error(r.reason);
 * ```
 */
export function verifyDxChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): DxChecksumResult {
  const r = computeDxChecksum(sb, ino, generation, block);
  if ("reason" in r) return { ok: false, reason: r.reason };
  const stored = view(block).getUint32(r.tail + 4, true);
  if (stored !== r.checksum) {
    return {
      ok: false,
      reason: `dx_tail checksum mismatch (stored 0x${hex(stored)}, computed 0x${hex(r.checksum)})`,
    };
  }
  return { ok: true };
}

/**
 * Stores the dx tail checksum of an index block (no-op without metadata_csum).
 *
 * @example
 * ```ts ignore
 * setDxChecksum(sb, { ino: 12, generation: 0 }, rootImage, true);
 * ```
 */
export function setDxChecksum(
  sb: Superblock,
  dir: { ino: number; generation: number },
  block: Uint8Array,
  root: boolean,
): void {
  if (!sb.hasMetadataCsum) return;
  const r = computeDxChecksum(sb, dir.ino, dir.generation, block);
  if ("reason" in r) {
    throw new CorruptError(`${root ? "dx_root" : "dx_node"} of directory ${dir.ino}`, r.reason);
  }
  view(block).setUint32(r.tail + 4, r.checksum, true);
  // Right by construction: the next walk through this image need not compute it again.
  markVerified(block, dir.ino, dir.generation);
}
