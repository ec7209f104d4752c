/**
 * Hash-indexed (htree) directories: the dx_root and dx_node index blocks and name lookup
 * through them, as the kernel's `dx_probe` and `ext4_dx_find_entry` do it.
 *
 * An htree directory is a linear directory whose block 0 and some other blocks are disguised
 * index blocks: to a linear reader they look like "." and a ".." that spans the block (the
 * root) or one unused entry spanning the block (a node). Behind the disguise sit sorted
 * `{hash, block}` pairs; lookup hashes the name, binary-searches down 1–3 levels
 * (3 with large_dir) to a leaf, scans it, and continues into the next leaf while the next
 * index entry carries the same hash with bit 0 set (a hash collision that spilled over).
 *
 * A structurally unusable index makes {@link htreeLookup} answer `undefined`, so the
 * caller falls back to a linear scan, exactly when the kernel does (ERR_BAD_DX_DIR); checksum
 * failures and blocks past the end of the directory are {@link CorruptError}s.
 *
 * @module
 */

import { dirHash, DxHashVersion } from "./dir_hash.ts";
import {
  type DirContext,
  type DirectorySource,
  DirInodeFlags,
  dirRecLen,
  type DirRecord,
  isIndexedDirectory,
  parseDirectoryBlock,
  verifyDxChecksum,
} from "./directory.ts";
import { CorruptError } from "./errors.ts";
import { Incompat } from "./features.ts";
import { type Superblock, SuperFlags } from "./superblock.ts";

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

function readIndex(
  block: Uint8Array,
  offset: number,
  expectedLimit: number,
  ino: number,
  what: string,
): DxIndex {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
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

function tailSpace(sb: Superblock): number {
  return sb.hasMetadataCsum ? 8 : 0;
}

/**
 * Parses a dx_root block (logical block 0 of an indexed directory): the root info and its
 * index entries, checked as the kernel's `dx_probe` does. Throws {@link UnusableIndexError}
 * when the kernel would fall back to a linear scan.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img, { readOnly: false });
 * await fs.mkdir("/d");
 * for (let i = 0; i < 60; i++) await fs.writeFile(`/d/a-rather-long-file-name-${i}`, new Uint8Array(0));
 * const ino = await fs.resolve("/d"); // more names than one block holds: an indexed directory
 * const [root] = await fs.blockRuns(await fs.inode(ino));
 * const { info, index } = parseDxRoot(await fs.readBlock(root.physical), fs.superblock, ino);
 * console.log(info.indirectLevels, index.count); // 0 3: one level, three leaf blocks
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export function parseDxRoot(
  block: Uint8Array,
  sb: Superblock,
  ino: number,
): { info: DxRootInfo; index: DxIndex } {
  const bs = block.length;
  if (bs < 40) throw new UnusableIndexError(ino, "dx_root block too small");
  const info: DxRootInfo = {
    hashVersion: block[28],
    infoLength: block[29],
    indirectLevels: block[30],
    unusedFlags: block[31],
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
 * // Not run by `deno test --doc`: a dx_node exists only in a two-level index (a directory
 * // of tens of thousands of names), too slow to build in an example.
 * const index = parseDxNode(block, sb, 2);
 * ```
 */
export function parseDxNode(block: Uint8Array, sb: Superblock, ino: number): DxIndex {
  const bs = block.length;
  const nodeLimit = Math.floor((bs - dirRecLen(0) - tailSpace(sb)) / 8);
  return readIndex(block, dirRecLen(0), nodeLimit, ino, "dx_node");
}

/** Index of the last entry whose hash is <= `hash` (entry 0 counts as -infinity). */
function searchIndex(entries: DxEntry[], hash: number): number {
  let lo = 1;
  let hi = entries.length - 1;
  while (lo <= hi) {
    const mid = lo + ((hi - lo) >> 1);
    if (entries[mid].hash > hash) hi = mid - 1;
    else lo = mid + 1;
  }
  return lo - 1;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface Frame {
  entries: DxEntry[];
  at: number;
}

/**
 * A lookup by a given hash instead of the name's own: fscrypt's digest-form no-key names
 * carry the hash of a ciphertext name they do not hold in full.
 */
export interface HtreeProbe {
  /** The hash to descend the index with. */
  hash: number;
  /** Whether a stored name is the one looked for. */
  matches: (stored: Uint8Array) => boolean;
}

/**
 * Looks a name up through the hash index of a directory (or, with `probe`, by a given hash
 * and predicate).
 *
 * Returns the entry, `null` when the name is not in the directory, or `undefined` when the
 * directory is not indexed (inline, no INDEX flag, no dir_index feature), is casefolded
 * (its hash is over the case-folded name), or its index is unusable — then the caller scans
 * linearly, as the kernel falls back. "." and ".." are found in block 0 as the kernel does.
 *
 * @example
 * ```ts ignore
 * const hit = await htreeLookup(dir, new TextEncoder().encode("file.txt"), { sb });
 * if (hit === undefined) {  scan linearly  } else if (hit) console.log(hit.ino);
 * ```
 */
export async function htreeLookup(
  dir: DirectorySource,
  name: Uint8Array,
  ctx: DirContext,
  probe?: HtreeProbe,
): Promise<DirRecord | null | undefined> {
  const sb = ctx.sb;
  if (dir.inlineData || !isIndexedDirectory(sb, dir.isHtree)) return undefined;
  if (((dir.flags ?? 0) & DirInodeFlags.CASEFOLD) !== 0) return undefined;
  if (name.length === 0 || name.length > 255) return null;
  const bs = sb.blockSize;
  const blocks = Math.ceil(dir.size / bs);
  const ino = dir.ino;
  const read = async (logical: number, what: string): Promise<Uint8Array> => {
    if (logical >= blocks) {
      throw new CorruptError(
        `directory inode ${ino}`,
        `${what} block ${logical} is past the end of the directory (${blocks} blocks)`,
      );
    }
    const b = await dir.readBlock(logical);
    if (!b) {
      throw new CorruptError(`directory inode ${ino}`, `hole at htree ${what} block ${logical}`);
    }
    if (b.length !== bs) {
      throw new CorruptError(`directory inode ${ino}`, `block ${logical} has ${b.length} bytes`);
    }
    return b;
  };
  const checkIndexBlock = (block: Uint8Array, logical: number) => {
    if (!sb.hasMetadataCsum) return;
    const r = verifyDxChecksum(sb, ino, dir.generation, block);
    if (!r.ok) {
      throw new CorruptError(
        `directory index of inode ${ino} (logical block ${logical})`,
        r.reason,
      );
    }
  };
  if (blocks === 0) return undefined;
  const root = await read(0, "root");

  const isDot = name.length <= 2 && name[0] === 0x2e && (name.length === 1 || name[1] === 0x2e);
  if (isDot) {
    const recs = parseDirectoryBlock(root, ctx, {
      ino,
      generation: dir.generation,
      logical: 0,
      isHtree: true,
    });
    return recs.find((r) => sameBytes(r.name, name)) ?? null;
  }

  checkIndexBlock(root, 0);
  try {
    const { info, index } = parseDxRoot(root, sb, ino);
    if (info.hashVersion === DxHashVersion.SIPHASH) return undefined;
    let version = info.hashVersion;
    const signed = hashIsSigned(sb);
    if (!signed) version += 3;
    const hash = probe ? probe.hash : dirHash(name, version, sb.hashSeed, signed).major;

    // Descend from the root to a leaf, remembering the path for collision continuation.
    const frames: Frame[] = [];
    const path: number[] = [0];
    let entries = index.entries;
    for (let level = 0;; level++) {
      const at = searchIndex(entries, hash);
      frames.push({ entries, at });
      const block = entries[at].block;
      if (path.includes(block)) {
        throw new UnusableIndexError(ino, `tree cycle: block ${block} points back`);
      }
      if (level >= info.indirectLevels) break;
      path.push(block);
      const node = await read(block, "index");
      checkIndexBlock(node, block);
      entries = parseDxNode(node, sb, ino).entries;
    }

    // Scan the leaf, then continue while the next leaf starts with the same hash.
    for (let leaves = 0; leaves <= blocks; leaves++) {
      const f = frames[frames.length - 1];
      const logical = f.entries[f.at].block;
      const leaf = await read(logical, "leaf");
      const recs = parseDirectoryBlock(leaf, ctx, { ino, generation: dir.generation, logical });
      const hit = recs.find((r) => probe ? probe.matches(r.name) : sameBytes(r.name, name));
      if (hit) return hit;
      if (!(await nextLeaf(frames, hash, read, checkIndexBlock, sb, ino))) return null;
    }
    throw new UnusableIndexError(ino, "collision chain visits more leaves than the directory has");
  } catch (e) {
    if (e instanceof UnusableIndexError) return undefined;
    throw e;
  }
}

/**
 * Steps `frames` to the next leaf when the next index entry continues a hash collision
 * (its hash, bit 0 aside, equals `hash`); loads interior nodes on the way.
 */
async function nextLeaf(
  frames: Frame[],
  hash: number,
  read: (logical: number, what: string) => Promise<Uint8Array>,
  checkIndexBlock: (block: Uint8Array, logical: number) => void,
  sb: Superblock,
  ino: number,
): Promise<boolean> {
  let p = frames.length - 1;
  let climbed = 0;
  for (;;) {
    frames[p].at++;
    if (frames[p].at < frames[p].entries.length) break;
    if (p === 0) return false;
    climbed++;
    p--;
  }
  const bhash = frames[p].entries[frames[p].at].hash;
  if (((bhash & ~1) >>> 0) !== hash) return false;
  while (climbed-- > 0) {
    const block = frames[p].entries[frames[p].at].block;
    const node = await read(block, "index");
    checkIndexBlock(node, block);
    p++;
    frames[p] = { entries: parseDxNode(node, sb, ino).entries, at: 0 };
  }
  return true;
}
