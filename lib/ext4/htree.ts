/**
 * Hash-indexed (htree) directories, as the kernel's fs/ext4/namei.c handles them: ONE probe
 * from the root to the leaf a hash belongs to ({@link dxProbe}, the kernel's `dx_probe`),
 * the walk along a hash-collision chain into the next leaves (`ext4_htree_next_block`),
 * name lookup through them for the reader and the writer, and, for the writer, inserting
 * with leaf split and index growth and turning a full one-block directory into an indexed
 * one (the splits exactly as the kernel's, lib/ext4/htree_split.ts). The index blocks' format
 * is lib/ondisk/dx.ts, the leaves' lib/ondisk/dirent.ts.
 *
 * An htree directory is a linear directory whose block 0 and some other blocks are disguised
 * index blocks. Lookup hashes the name, binary-searches down 1–3 levels (3 with large_dir)
 * to a leaf, scans it, and continues into the next leaf while the next index entry carries
 * the same hash with bit 0 set (a hash collision that spilled over).
 *
 * Blocks come from a {@link DirBlocks} source: the reader's caches or a write transaction,
 * so both see the same index through the same code. A structurally unusable index is an
 * {@link UnusableIndexError} (the kernel's ERR_BAD_DX_DIR: readers fall back to a linear
 * scan); checksum failures and blocks past the end of the directory are CorruptErrors.
 *
 * The writer's index has the root and up to one level of nodes below it, or two with
 * large_dir — the kernel's `ext4_dir_htree_level()`. A full node splits in two and its
 * parent gets an entry for the upper half; when every index block on the way down is full
 * up to the root, the root's entries move into a new node and `indirect_levels` grows by
 * one. When that would exceed the limit the insert is refused with NO_SPACE before anything
 * changes, where the kernel returns ENOSPC ("index full, reach max htree level"). Removing
 * entries never shrinks the index, as in the kernel.
 *
 * Over 700 lines because lookup and insert walk the same frames of the same probe (the
 * kernel keeps them together in namei.c too).
 *
 * @module
 */

import { dirHash, DxHashVersion } from "../ondisk/dir_hash.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import type { FileExtent } from "../ondisk/extent.ts";
import { Incompat } from "../ondisk/features.ts";
import { findExtent } from "./file_map_write.ts";
import { type IndexLevel, makeIndexRoom, splitLeaf } from "./htree_split.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import { markVerified, wasVerified } from "../ondisk/verified.ts";
import type { Transaction } from "../txn/transaction.ts";
import type { DirBlocks, DirectorySource } from "./dir.ts";
import {
  dirBlockEnd,
  type DirContext,
  DirFileType,
  DirInodeFlags,
  type DirRecord,
  findInDirectoryBlock,
  insertDirEntry,
  isDotName,
  isIndexedDirectory,
  type NewDirEntry,
  packDirBlock,
  parseDirBlock,
  recLenToDisk,
  scanDirBlock,
  setDirBlockChecksum,
} from "../ondisk/dirent.ts";
import {
  DX_NODE_COUNT,
  DX_ROOT_COUNT,
  type DxEntry,
  type DxIndex,
  dxLimit,
  type DxRootInfo,
  DxRootInfoOffset,
  encodeDxNode,
  hashIsSigned,
  maxHtreeLevels,
  parseDxNode,
  parseDxRoot,
  setDxChecksum,
  UnusableIndexError,
  verifyDxChecksum,
  writeDxEntries,
} from "../ondisk/dx.ts";

/** One index block on the way from the root to a leaf. */
export interface DxFrame {
  /** Its logical block in the directory (0: the root). */
  logical: number;
  /** It is the dx_root. */
  root: boolean;
  /** Its image as read (not to be modified: take a writable copy to change it). */
  image: Uint8Array;
  /** Its decoded entries. */
  index: DxIndex;
  /** The entry followed down. */
  at: number;
}

/** Where a hash leads: the root info, the hash, the index blocks from the root down. */
export interface DxPath {
  /** The dx_root_info of block 0. */
  info: DxRootInfo;
  /** The hash the index was descended with. */
  hash: number;
  /** Root first; the bottom frame's `at` entry is the leaf. */
  frames: DxFrame[];
}

/**
 * The hash version names of a directory are hashed with: 3–5 are the unsigned-char variants
 * of 0–2, used unless the superblock says the hash is signed.
 *
 * @example
 * ```ts ignore
 * const version = nameHashVersion(sb, info.hashVersion);
 * ```
 */
export function nameHashVersion(sb: Superblock, stored: number): number {
  if (stored <= DxHashVersion.TEA && !hashIsSigned(sb)) return stored + 3;
  return stored;
}

function nameHash(sb: Superblock, version: number, name: Uint8Array): number {
  // `version` already folds in UNSIGNED_HASH (3-5), so versions 0-2 here are the signed ones.
  return dirHash(name, version, sb.hashSeed, true).major;
}

/** Reads a block the index needs; a hole, a short block or one past the end is corrupt. */
async function readIndexed(
  src: DirBlocks,
  sb: Superblock,
  logical: number,
  what: string,
): Promise<Uint8Array> {
  const where = `directory inode ${src.ino}`;
  const blocks = Math.ceil(src.size / sb.blockSize);
  if (logical >= blocks) {
    throw new CorruptError(
      where,
      `${what} block ${logical} is past the end of the directory (${blocks} blocks)`,
    );
  }
  const b = await src.readBlock(logical);
  if (!b) throw new CorruptError(where, `hole at htree ${what} block ${logical}`);
  if (b.length !== sb.blockSize) {
    throw new CorruptError(where, `block ${logical} has ${b.length} bytes`);
  }
  return b;
}

/** Verifies an index block's dx_tail under metadata_csum. */
function checkIndexBlock(sb: Superblock, src: DirBlocks, block: Uint8Array, logical: number) {
  if (!sb.hasMetadataCsum || wasVerified(block, src.ino, src.generation)) return;
  const r = verifyDxChecksum(sb, src.ino, src.generation, block);
  if (!r.ok) {
    throw new CorruptError(
      `directory index of inode ${src.ino} (logical block ${logical})`,
      r.reason,
    );
  }
  markVerified(block, src.ino, src.generation);
}

async function readNode(
  src: DirBlocks,
  sb: Superblock,
  logical: number,
): Promise<DxFrame> {
  const image = await readIndexed(src, sb, logical, "index");
  checkIndexBlock(sb, src, image, logical);
  return { logical, root: false, image, index: parseDxNode(image, sb, src.ino), at: 0 };
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

/**
 * Walks the index from the root to the leaf `key` belongs to, as the kernel's `dx_probe`:
 * `key` is a name (hashed with the directory's hash) or a given hash (fscrypt's digest-form
 * no-key names carry one). Every index block's dx_tail is verified under metadata_csum.
 * Throws {@link UnusableIndexError} where the kernel falls back to a linear scan (a SipHash
 * index too: its key is the encryption key), CorruptError for checksum failures, holes and
 * blocks past the end.
 *
 * @example
 * ```ts ignore
 * const path = await dxProbe(src, sb, new TextEncoder().encode("a.txt"));
 * const leaf = dxLeaf(path.frames);
 * ```
 */
export async function dxProbe(
  src: DirBlocks,
  sb: Superblock,
  key: Uint8Array | { hash: number },
): Promise<DxPath> {
  const rootImage = await readIndexed(src, sb, 0, "root");
  checkIndexBlock(sb, src, rootImage, 0);
  const { info, index } = parseDxRoot(rootImage, sb, src.ino);
  if (info.hashVersion === DxHashVersion.SIPHASH) {
    throw new UnusableIndexError(src.ino, "SipHash index (keyed on the encryption key)");
  }
  const hash = key instanceof Uint8Array
    ? nameHash(sb, nameHashVersion(sb, info.hashVersion), key)
    : key.hash;
  const frames: DxFrame[] = [];
  let f: DxFrame = { logical: 0, root: true, image: rootImage, index, at: 0 };
  for (let level = 0;; level++) {
    f.at = searchIndex(f.index.entries, hash);
    frames.push(f);
    const child = f.index.entries[f.at].block;
    if (child === 0 || frames.some((g) => g.logical === child)) {
      throw new UnusableIndexError(src.ino, `tree cycle: block ${child} points back`);
    }
    if (level >= info.indirectLevels) break;
    f = await readNode(src, sb, child);
  }
  return { info, hash, frames };
}

/**
 * The logical block of the leaf the bottom frame points to.
 *
 * @example
 * ```ts ignore
 * const leaf = dxLeaf((await dxProbe(src, sb, name)).frames);
 * ```
 */
export function dxLeaf(frames: DxFrame[]): number {
  const f = frames[frames.length - 1];
  return f.index.entries[f.at].block;
}

/**
 * The frames of the next leaf when it continues the collision chain of `hash` — its index
 * entry carries the same hash with bit 0 set — as the kernel's `ext4_htree_next_block`;
 * null at the end of the chain. `frames` is not changed.
 *
 * @example
 * ```ts ignore
 * const next = await dxNextLeaf(src, sb, path.frames, path.hash);
 * ```
 */
export async function dxNextLeaf(
  src: DirBlocks,
  sb: Superblock,
  frames: DxFrame[],
  hash: number,
): Promise<DxFrame[] | null> {
  let p = frames.length - 1;
  while (frames[p].at + 1 >= frames[p].index.count) {
    if (p === 0) return null;
    p--;
  }
  const out = frames.slice(0, p);
  out.push({ ...frames[p], at: frames[p].at + 1 });
  const e = out[p].index.entries[out[p].at];
  if (((e.hash & ~1) >>> 0) !== hash) return null;
  for (let q = p + 1; q < frames.length; q++) {
    const up = out[q - 1];
    out.push(await readNode(src, sb, up.index.entries[up.at].block));
  }
  return out;
}

/**
 * Finds the first live entry `matches` accepts in the leaf `path` reached and the leaves its
 * collision chain continues to: the entry and its leaf's logical block, or null. Leaves are
 * checked in full (records and checksum tail).
 *
 * @example
 * ```ts ignore
 * const hit = await dxFind(src, { sb }, path, name); // or a predicate on the stored name
 * ```
 */
export async function dxFind(
  src: DirBlocks,
  ctx: DirContext,
  path: DxPath,
  matches: ((stored: Uint8Array) => boolean) | Uint8Array,
): Promise<{ rec: DirRecord; logical: number } | null> {
  let frames: DxFrame[] | null = path.frames;
  const blocks = Math.ceil(src.size / ctx.sb.blockSize);
  for (let leaves = 0; leaves <= blocks && frames; leaves++) {
    const logical = dxLeaf(frames);
    const leaf = await readIndexed(src, ctx.sb, logical, "leaf");
    const loc = { ino: src.ino, generation: src.generation, logical };
    const rec = findInDirectoryBlock(leaf, ctx, loc, matches);
    if (rec) return { rec, logical };
    frames = await dxNextLeaf(src, ctx.sb, frames, path.hash);
  }
  if (!frames) return null;
  throw new UnusableIndexError(
    src.ino,
    "collision chain visits more leaves than the directory has",
  );
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
  if (Math.ceil(dir.size / sb.blockSize) === 0) return undefined;
  if (isDotName(name)) {
    const root = await readIndexed(dir, sb, 0, "root");
    const loc = { ino: dir.ino, generation: dir.generation, logical: 0, isHtree: true };
    return findInDirectoryBlock(root, ctx, loc, name);
  }
  try {
    const path = await dxProbe(dir, sb, probe ? { hash: probe.hash } : name);
    const hit = await dxFind(dir, ctx, path, probe?.matches ?? name);
    return hit ? hit.rec : null;
  } catch (e) {
    if (e instanceof UnusableIndexError) return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------- the write path

/** A directory as the htree write code needs it. */
export interface DxDir {
  /** The directory's inode number (seeds metadata_csum block checksums). */
  ino: number;
  /** The directory's `i_generation` (seeds metadata_csum block checksums). */
  generation: number;
  /** The directory's mapping (logical → physical). */
  extents: FileExtent[];
  /** Number of blocks (size / block size). */
  blocks: number;
}

/** Allocates one block for the directory at the next logical block; returns both numbers. */
export type DirBlockAllocator = () => Promise<{ logical: number; physical: number }>;

/**
 * The physical block of logical block `logical` of a write-path directory; CORRUPT when it
 * is not mapped.
 *
 * @example
 * ```ts ignore
 * const block = await tx.getWritable(dxPhysical(dir, leaf));
 * ```
 */
export function dxPhysical(dir: DxDir, logical: number): number {
  const e = findExtent(dir.extents, logical);
  if (!e || e.unwritten) {
    throw new CorruptError(`directory ${dir.ino}`, `logical block ${logical} is not mapped`);
  }
  return e.physical + (logical - e.logical);
}

/**
 * The blocks of a write-path directory as the transaction sees them.
 *
 * @example
 * ```ts ignore
 * const path = await dxProbe(txDirBlocks(tx, sb, dir), sb, name);
 * ```
 */
export function txDirBlocks(tx: Transaction, sb: Superblock, dir: DxDir): DirBlocks {
  return {
    ino: dir.ino,
    generation: dir.generation,
    get size() {
      return dir.blocks * sb.blockSize;
    },
    readBlock: (logical) => tx.read(dxPhysical(dir, logical)),
  };
}

/** Maps a block `grow` returned at the end of the directory's mapping. */
function mapBlock(dir: DxDir, fresh: { logical: number; physical: number }): void {
  const last = dir.extents.at(-1);
  if (
    last && !last.unwritten && last.logical + last.length === fresh.logical &&
    last.physical + last.length === fresh.physical && last.length < 32768
  ) {
    dir.extents = [...dir.extents.slice(0, -1), { ...last, length: last.length + 1 }];
  } else if (!last || fresh.logical >= last.logical + last.length) {
    dir.extents = [...dir.extents, { logical: fresh.logical, physical: fresh.physical, length: 1 }];
  } else {
    dir.extents = [...dir.extents, { logical: fresh.logical, physical: fresh.physical, length: 1 }]
      .sort((a, b) => a.logical - b.logical);
  }
  dir.blocks = Math.max(dir.blocks, fresh.logical + 1);
}

function largeDir(sb: Superblock): boolean {
  return (sb.incompat & Incompat.LARGEDIR) !== 0;
}

/** Refuses an index the write path cannot change: other info lengths, SipHash. */
function checkWritableRoot(dir: DxDir, root: Uint8Array): void {
  const where = `dx_root of directory ${dir.ino}`;
  const stored = root[DxRootInfoOffset.HASH_VERSION];
  const infoLen = root[DxRootInfoOffset.INFO_LENGTH];
  if (infoLen !== 8) throw new CorruptError(where, `info length ${infoLen}`);
  if (stored > DxHashVersion.TEA) {
    throw new Ext4Error(
      stored === DxHashVersion.SIPHASH ? "UNSUPPORTED" : "CORRUPT",
      `${where}: hash version ${stored} cannot be written`,
    );
  }
}

/** The probe of the write path: the root checked for writing first. */
async function probeForWrite(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<DxPath> {
  checkWritableRoot(dir, await tx.read(dxPhysical(dir, 0)));
  return await dxProbe(txDirBlocks(tx, sb, dir), sb, name);
}

/** The leaf holding `name` on the probe's collision chain: its inode (0 if none) and block. */
async function findForWrite(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  path: DxPath,
  name: Uint8Array,
): Promise<{ ino: number; leaf: number }> {
  const hit = await dxFind(txDirBlocks(tx, sb, dir), { sb }, path, name);
  return hit ? { ino: hit.rec.ino, leaf: dxPhysical(dir, hit.logical) } : { ino: 0, leaf: 0 };
}

/**
 * The inode `name` maps to in an htree directory (0 if absent) and the physical block of
 * its entry, as the transaction sees the directory.
 *
 * @example
 * ```ts ignore
 * const { ino, leaf } = await dxLookup(tx, sb, dir, new TextEncoder().encode("a.txt"));
 * ```
 */
export async function dxLookup(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<{ ino: number; leaf: number }> {
  return await findForWrite(tx, sb, dir, await probeForWrite(tx, sb, dir, name), name);
}

function leafImage(sb: Superblock, dir: DxDir, entries: NewDirEntry[]): Uint8Array {
  const block = packDirBlock(sb, entries);
  if (!block) throw new Error("leaf overflow while splitting");
  setDirBlockChecksum(sb, dir.ino, dir.generation, block);
  return block;
}

function newNodeBlock(sb: Superblock, dir: DxDir, entries: DxEntry[]): Uint8Array {
  const img = encodeDxNode(sb, entries);
  setDxChecksum(sb, dir, img, false);
  return img;
}

/** A writable copy of index block `f`, its checksum verified first (never re-sign damage). */
async function writableIndex(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  f: DxFrame,
): Promise<Uint8Array> {
  const block = dxPhysical(dir, f.logical);
  const current = await tx.read(block);
  if (sb.hasMetadataCsum && !wasVerified(current, dir.ino, dir.generation)) {
    const r = verifyDxChecksum(sb, dir.ino, dir.generation, current);
    if (!r.ok) {
      throw new CorruptError(
        `${f.root ? "dx_root" : "dx_node"} (block ${f.logical}) of directory ${dir.ino}`,
        r.reason,
      );
    }
    markVerified(current, dir.ino, dir.generation);
  }
  return await tx.getWritable(block);
}

/** How an insert that finds its leaf full changes the index. */
interface SplitPlan {
  /** Index of the highest frame that takes an entry without splitting; -1: a level is added. */
  top: number;
  /** Blocks to allocate: the new leaf, split nodes, and a new node when a level is added. */
  blocks: number;
}

function planSplit(sb: Superblock, dir: DxDir, frames: DxFrame[]): SplitPlan {
  let top = frames.length - 1;
  while (top >= 0 && frames[top].index.count >= dxLimit(sb, frames[top].root)) top--;
  if (top < 0 && frames.length >= maxHtreeLevels(sb)) {
    throw new Ext4Error(
      "NO_SPACE",
      `directory ${dir.ino}: index full, reach max htree level ${frames.length}${
        largeDir(sb) ? "" : " (the large_dir feature is not enabled)"
      }`,
    );
  }
  return { top, blocks: top < 0 ? frames.length + 1 : frames.length - top };
}

/**
 * Whether `name` can be inserted into an htree directory without exceeding the index depth
 * limit, and the inode it already maps to (0 if none): lets callers refuse before changing
 * anything. Free blocks are not checked.
 *
 * @example
 * ```ts ignore
 * const { ino, full } = await dxCheckInsert(tx, sb, dir, name);
 * if (ino) throw new Ext4Error("EXISTS", "taken");
 * if (full) throw new Ext4Error("NO_SPACE", "directory index full");
 * ```
 */
export async function dxCheckInsert(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<{ ino: number; full: boolean; path: DxPath }> {
  const path = await probeForWrite(tx, sb, dir, name);
  const { ino } = await findForWrite(tx, sb, dir, path, name);
  if (ino) return { ino, full: false, path };
  const leaf = dxPhysical(dir, dxLeaf(path.frames));
  if (scanDirBlock(sb, await tx.read(leaf), name, `directory ${dir.ino}`).room) {
    return { ino: 0, full: false, path };
  }
  try {
    planSplit(sb, dir, path.frames);
    return { ino: 0, full: false, path };
  } catch (e) {
    if (e instanceof Ext4Error && e.code === "NO_SPACE") return { ino: 0, full: true, path };
    throw e;
  }
}

/**
 * Inserts `entry` into an htree directory: into the leaf its hash belongs to, or, when that
 * is full, by splitting the leaf and growing the index (splitting full index nodes on the
 * way up, adding a level when the root is full). EXISTS when the name is taken; NO_SPACE,
 * before any change, when the index is at its depth limit. `grow` allocates directory
 * blocks; `dir` gets them mapped, and the caller writes the new mapping and size.
 *
 * @example
 * ```ts ignore
 * await dxInsert(tx, sb, dir, { ino, name, type: DirFileType.REG_FILE }, grow);
 * if (dir.blocks !== before) await saveMapping(dir);
 * ```
 */
export async function dxInsert(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  entry: NewDirEntry,
  grow: DirBlockAllocator,
  checked?: DxPath,
): Promise<void> {
  // `checked`: the probe of a dxCheckInsert that found the name free, the directory's blocks
  // unchanged since (create checks before it allocates): not probed and searched twice.
  const path = checked ?? await probeForWrite(tx, sb, dir, entry.name);
  if (!checked && (await findForWrite(tx, sb, dir, path, entry.name)).ino) {
    throw new Ext4Error(
      "EXISTS",
      `${new TextDecoder().decode(entry.name)} exists in directory ${dir.ino}`,
    );
  }
  const { frames, hash } = path;
  const leaf = dxLeaf(frames);
  const leafPhys = dxPhysical(dir, leaf);
  const where = `directory ${dir.ino} block ${leaf}`;
  if (scanDirBlock(sb, await tx.read(leafPhys), entry.name, where).room) {
    const block = await tx.getWritable(leafPhys);
    if (!insertDirEntry(sb, block, entry)) throw new CorruptError(where, "lost room");
    setDirBlockChecksum(sb, dir.ino, dir.generation, block);
    return;
  }
  const plan = planSplit(sb, dir, frames);
  // Allocate everything first: running out of blocks then changes no directory block. In the
  // kernel's order: index blocks first, the new leaf last.
  const fresh: number[] = [];
  for (let i = 0; i < plan.blocks; i++) {
    const b = await grow();
    mapBlock(dir, b);
    fresh.push(b.logical);
  }
  const levels: IndexLevel[] = frames.map((f) => ({
    logical: f.logical,
    root: f.root,
    entries: [...f.index.entries],
    at: f.at,
  }));
  const dirty = makeIndexRoom(levels, (root) => dxLimit(sb, root), () => fresh.shift()!);
  const newLeaf = fresh.shift()!;
  // The leaf split as the kernel's do_split; the new name after the last entry of its half.
  const version = nameHashVersion(sb, path.info.hashVersion);
  const split = splitLeaf(
    sb,
    await tx.read(leafPhys),
    (name) => nameHash(sb, version, name),
    where,
  );
  (hash >= split.hash2 ? split.high : split.low).push(entry);
  (await tx.getWritable(leafPhys)).set(leafImage(sb, dir, split.low));
  tx.newBlock(dxPhysical(dir, newLeaf)).set(leafImage(sb, dir, split.high));
  const bottom = levels[levels.length - 1];
  bottom.entries.splice(bottom.at + 1, 0, {
    hash: (split.hash2 | (split.continued ? 1 : 0)) >>> 0,
    block: newLeaf,
  });
  dirty.set(bottom.logical, { level: bottom, fresh: dirty.get(bottom.logical)?.fresh ?? false });
  for (const { level, fresh: isNew } of dirty.values()) {
    if (isNew) {
      tx.newBlock(dxPhysical(dir, level.logical)).set(newNodeBlock(sb, dir, level.entries));
      continue;
    }
    const img = await writableIndex(tx, sb, dir, frames.find((f) => f.logical === level.logical)!);
    const countAt = level.root ? DX_ROOT_COUNT : DX_NODE_COUNT;
    writeDxEntries(img, countAt, dxLimit(sb, level.root), level.entries);
    if (level.root) img[DxRootInfoOffset.INDIRECT_LEVELS] = levels.length - 1;
    setDxChecksum(sb, dir, img, level.root);
  }
}

/**
 * Turns a one-block linear directory into an htree: block 0 becomes the root ("." and ".."
 * kept), its entries are split by hash over two new leaves. The caller sets the INDEX flag
 * and maps the two blocks `grow` returns.
 *
 * @example
 * ```ts ignore
 * await makeIndexed(tx, sb, dir, grow);
 * await dxInsert(tx, sb, dir, entry, grow);
 * ```
 */
export async function makeIndexed(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  grow: DirBlockAllocator,
): Promise<void> {
  const phys0 = dxPhysical(dir, 0);
  const old = await tx.read(phys0);
  const all = parseDirBlock(sb, old, `directory ${dir.ino}`);
  if (all.length < 2 || all[0].name.length !== 1 || all[1].name.length !== 2) {
    throw new CorruptError(`directory ${dir.ino}`, "first block does not start with '.' and '..'");
  }
  const self = all[0].ino;
  const parent = all[1].ino;
  const version = sb.defHashVersion <= DxHashVersion.TEA
    ? sb.defHashVersion
    : DxHashVersion.HALF_MD4;
  // As make_indexed_dir: the entries after ".." move to block 1 as they are (the last one
  // reaching the block's end), then block 1 splits into a new block 2 as any full leaf does.
  const end = dirBlockEnd(sb);
  const from = all[1].offset + all[1].recLen;
  const last = all[all.length - 1];
  if (from >= end || last.offset < from) {
    throw new CorruptError(`directory ${dir.ino}`, "a full first block without entries");
  }
  const moved = new Uint8Array(sb.blockSize);
  moved.set(old.subarray(from, end));
  new DataView(moved.buffer).setUint16(
    last.offset - from + 4,
    recLenToDisk(end - (last.offset - from), sb.blockSize),
    true,
  );
  const hashVersion = nameHashVersion(sb, version);
  const split = splitLeaf(
    sb,
    moved,
    (name) => nameHash(sb, hashVersion, name),
    `directory ${dir.ino} block 1`,
  );
  const a = await grow();
  mapBlock(dir, a);
  const b = await grow();
  mapBlock(dir, b);
  tx.newBlock(a.physical).set(leafImage(sb, dir, split.low));
  tx.newBlock(b.physical).set(leafImage(sb, dir, split.high));
  const splitHash = (split.hash2 | (split.continued ? 1 : 0)) >>> 0;
  const root = await tx.getWritable(phys0);
  root.fill(0);
  const v = new DataView(root.buffer, root.byteOffset, root.byteLength);
  v.setUint32(0, self, true);
  v.setUint16(4, 12, true);
  root[6] = 1;
  root[7] = DirFileType.DIR;
  root[8] = 0x2e;
  v.setUint32(12, parent, true);
  v.setUint16(16, recLenToDisk(sb.blockSize - 12, sb.blockSize), true);
  root[18] = 2;
  root[19] = DirFileType.DIR;
  root[20] = 0x2e;
  root[21] = 0x2e;
  root[DxRootInfoOffset.HASH_VERSION] = version;
  root[DxRootInfoOffset.INFO_LENGTH] = 8;
  root[DxRootInfoOffset.INDIRECT_LEVELS] = 0;
  writeDxEntries(root, DX_ROOT_COUNT, dxLimit(sb, true), [
    { hash: 0, block: a.logical },
    { hash: splitHash, block: b.logical },
  ]);
  setDxChecksum(sb, dir, root, true);
}
