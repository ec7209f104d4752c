/**
 * Htree (dx) directories for the write path: walking the index from the root down to the
 * leaf a name hashes to, lookups that follow hash-collision chains across leaves and index
 * nodes, inserting with leaf split and index growth, turning a full one-block directory into
 * an indexed one as the kernel does, and the dx tail checksum.
 *
 * The index has the root (block 0) and up to one level of nodes below it, or two with
 * large_dir — the kernel's `ext4_dir_htree_level()`. A full node splits in two and its
 * parent gets an entry for the upper half; when every index block on the way down is full
 * up to the root, the root's entries move into a new node and `indirect_levels` grows by
 * one. When that would exceed the limit the insert is refused with NO_SPACE before anything
 * changes, where the kernel returns ENOSPC ("index full, reach max htree level"). Removing
 * entries never shrinks the index, as in the kernel.
 *
 * Index entries hold logical block numbers of the directory; leaves are ordinary directory
 * blocks.
 *
 * @module
 */

import {
  dirBlockEnd,
  insertDirEntry,
  type NewDirEntry,
  packDirBlock,
  parseDirBlock,
  scanDirBlock,
  setDirBlockChecksum,
} from "./dir_write.ts";
import { dirHash, DxHashVersion } from "./dir_hash.ts";
import { hashIsSigned, maxHtreeLevels } from "./dir_htree.ts";
import {
  computeDxChecksum,
  DirFileType,
  dirRecLen,
  recLenFromDisk,
  recLenToDisk,
  verifyDxChecksum,
} from "./directory.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
import type { FileExtent } from "./ondisk/extent.ts";
import { Incompat } from "./features.ts";
import { findExtent } from "./file_map_write.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** Offset of `limit`/`count` in the root: after ".", ".." and the 8-byte dx_root_info. */
const ROOT_COUNT = 0x20;
/** Offset of `limit`/`count` in a node: after its fake directory entry. */
const NODE_COUNT = 0x08;
const DX_TAIL = 8;
const INFO_HASH_VERSION = 0x1c;
const INFO_LENGTH = 0x1d;
const INFO_LEVELS = 0x1e;
const INFO_FLAGS = 0x1f;

/** A directory as the htree code needs it. */
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

interface DxEntry {
  hash: number;
  block: number;
}

function physicalOf(dir: DxDir, logical: number): number {
  const e = findExtent(dir.extents, logical);
  if (!e || e.unwritten) {
    throw new CorruptError(`directory ${dir.ino}`, `logical block ${logical} is not mapped`);
  }
  return e.physical + (logical - e.logical);
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
  const off = root ? ROOT_COUNT : NODE_COUNT;
  return Math.floor((sb.blockSize - off - (sb.hasMetadataCsum ? DX_TAIL : 0)) / 8);
}

function view(block: Uint8Array): DataView {
  return new DataView(block.buffer, block.byteOffset, block.byteLength);
}

function writeEntries(block: Uint8Array, off: number, limit: number, entries: DxEntry[]): void {
  const v = view(block);
  if (entries.length > limit) throw new Error("dx entries over the limit");
  block.fill(0, off, off + 8 * limit);
  v.setUint16(off, limit, true);
  v.setUint16(off + 2, entries.length, true);
  entries.forEach((e, i) => {
    if (i > 0) v.setUint32(off + 8 * i, e.hash, true);
    v.setUint32(off + 8 * i + 4, e.block, true);
  });
}

/**
 * Stores the dx tail checksum of an index block (no-op without metadata_csum).
 *
 * @example
 * ```ts ignore
 * setDxChecksum(sb, dir, rootImage, true);
 * ```
 */
export function setDxChecksum(sb: Superblock, dir: DxDir, block: Uint8Array, root: boolean): void {
  if (!sb.hasMetadataCsum) return;
  const r = computeDxChecksum(sb, dir.ino, dir.generation, block);
  if ("reason" in r) {
    throw new CorruptError(`${root ? "dx_root" : "dx_node"} of directory ${dir.ino}`, r.reason);
  }
  view(block).setUint32(r.tail + 4, r.checksum, true);
}

/** The hash version a directory's names are hashed with (3-5: the unsigned-char variants). */
function hashVersion(sb: Superblock, stored: number): number {
  if (stored <= DxHashVersion.TEA && !hashIsSigned(sb)) return stored + 3;
  return stored;
}

function hashOf(sb: Superblock, version: number, name: Uint8Array): number {
  // `version` already folds in UNSIGNED_HASH (3-5), so versions 0-2 here are the signed ones.
  return dirHash(name, version, sb.hashSeed, true).major;
}

interface RootInfo {
  /** Hash version with the signedness folded in. */
  version: number;
  /** `indirect_levels`: node levels below the root. */
  levels: number;
}

function rootInfo(sb: Superblock, root: Uint8Array, dir: DxDir): RootInfo {
  const stored = root[INFO_HASH_VERSION];
  const infoLen = root[INFO_LENGTH];
  const levels = root[INFO_LEVELS];
  const where = `dx_root of directory ${dir.ino}`;
  if (infoLen !== 8) throw new CorruptError(where, `info length ${infoLen}`);
  if (stored > DxHashVersion.TEA) {
    throw new Ext4Error(
      stored === DxHashVersion.SIPHASH ? "UNSUPPORTED" : "CORRUPT",
      `${where}: hash version ${stored} cannot be written`,
    );
  }
  if (root[INFO_FLAGS] & 1) throw new CorruptError(where, "unimplemented hash flags");
  if (levels >= maxHtreeLevels(sb)) {
    throw new CorruptError(
      where,
      `${levels + 1} index levels, at most ${maxHtreeLevels(sb)} ${
        largeDir(sb) ? "with" : "without"
      } large_dir`,
    );
  }
  return { version: hashVersion(sb, stored), levels };
}

function largeDir(sb: Superblock): boolean {
  return (sb.incompat & Incompat.LARGEDIR) !== 0;
}

/** One index block on the way from the root to a leaf. */
interface Frame {
  /** Its logical block in the directory. */
  logical: number;
  root: boolean;
  /** The image as read (not to be modified: take a writable copy to change it). */
  image: Uint8Array;
  view: DataView;
  count: number;
  /** The entry followed down. */
  at: number;
}

function openFrame(
  sb: Superblock,
  dir: DxDir,
  image: Uint8Array,
  logical: number,
  root: boolean,
): Frame {
  const v = view(image);
  const off = root ? ROOT_COUNT : NODE_COUNT;
  const limit = v.getUint16(off, true);
  const count = v.getUint16(off + 2, true);
  if (limit !== dxLimit(sb, root) || count === 0 || count > limit) {
    throw new CorruptError(
      `${root ? "dx_root" : "dx_node"} (block ${logical}) of directory ${dir.ino}`,
      `count ${count}, limit ${limit} (expected ${dxLimit(sb, root)})`,
    );
  }
  return { logical, root, image, view: v, count, at: 0 };
}

function entryHash(f: Frame, i: number): number {
  return i === 0 ? 0 : f.view.getUint32((f.root ? ROOT_COUNT : NODE_COUNT) + 8 * i, true);
}

function entryBlock(dir: DxDir, f: Frame, i: number): number {
  const b = f.view.getUint32((f.root ? ROOT_COUNT : NODE_COUNT) + 8 * i + 4, true) & 0x0fffffff;
  if (b === 0 || b >= dir.blocks) {
    throw new CorruptError(
      `htree of directory ${dir.ino}`,
      `index block ${f.logical} points to block ${b} (directory has ${dir.blocks})`,
    );
  }
  return b;
}

function frameEntries(f: Frame): DxEntry[] {
  const v = f.view;
  const off = f.root ? ROOT_COUNT : NODE_COUNT;
  const out: DxEntry[] = [];
  for (let i = 0; i < f.count; i++) {
    out.push({
      hash: i === 0 ? 0 : v.getUint32(off + 8 * i, true),
      block: v.getUint32(off + 8 * i + 4, true) & 0x0fffffff,
    });
  }
  return out;
}

/** The last entry whose hash is <= `hash` (entry 0 counts as -infinity). */
function search(f: Frame, hash: number): number {
  let lo = 1;
  let hi = f.count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (entryHash(f, mid) > hash) hi = mid - 1;
    else lo = mid + 1;
  }
  return lo - 1;
}

async function readIndexBlock(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  logical: number,
): Promise<Frame> {
  return openFrame(sb, dir, await tx.read(physicalOf(dir, logical)), logical, false);
}

/** Where a name goes: its hash and the index blocks from the root down to its leaf. */
interface Probe {
  info: RootInfo;
  hash: number;
  /** Root first; the bottom frame's `at` entry is the leaf. */
  frames: Frame[];
}

/** Walks the index from the root to the leaf `name` hashes to (the kernel's `dx_probe`). */
async function probeName(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<Probe> {
  const rootImage = await tx.read(physicalOf(dir, 0));
  const info = rootInfo(sb, rootImage, dir);
  const hash = hashOf(sb, info.version, name);
  const frames: Frame[] = [];
  let f = openFrame(sb, dir, rootImage, 0, true);
  for (let level = 0;; level++) {
    f.at = search(f, hash);
    frames.push(f);
    if (level === info.levels) break;
    const child = entryBlock(dir, f, f.at);
    if (frames.some((g) => g.logical === child)) {
      throw new CorruptError(`htree of directory ${dir.ino}`, `index loops to block ${child}`);
    }
    f = await readIndexBlock(tx, sb, dir, child);
  }
  return { info, hash, frames };
}

function leafOf(dir: DxDir, frames: Frame[]): number {
  const f = frames[frames.length - 1];
  return entryBlock(dir, f, f.at);
}

/**
 * Moves `frames` (frames are replaced, not changed) to the next leaf when it continues the
 * collision chain of `hash` — its index entry carries the same hash with bit 0 set — as the
 * kernel's `ext4_htree_next_block`; false at the end of the chain.
 */
async function nextLeaf(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  frames: Frame[],
  hash: number,
): Promise<boolean> {
  let p = frames.length - 1;
  while (frames[p].at + 1 >= frames[p].count) {
    if (p === 0) return false;
    p--;
  }
  frames[p] = { ...frames[p], at: frames[p].at + 1 };
  if (((entryHash(frames[p], frames[p].at) & ~1) >>> 0) !== hash) return false;
  for (let q = p + 1; q < frames.length; q++) {
    frames[q] = await readIndexBlock(tx, sb, dir, entryBlock(dir, frames[q - 1], frames[q - 1].at));
  }
  return true;
}

/** Finds `name` in the leaf the probe reached and the leaves its collision chain continues to. */
async function findInChain(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  probe: Probe,
  name: Uint8Array,
): Promise<{ ino: number; leaf: number }> {
  const frames = [...probe.frames];
  for (let i = 0; i <= dir.blocks; i++) {
    const leaf = leafOf(dir, frames);
    const phys = physicalOf(dir, leaf);
    const { ino } = scanDirBlock(
      sb,
      await tx.read(phys),
      name,
      `directory ${dir.ino} block ${leaf}`,
    );
    if (ino) return { ino, leaf: phys };
    if (!(await nextLeaf(tx, sb, dir, frames, probe.hash))) return { ino: 0, leaf: 0 };
  }
  throw new CorruptError(
    `htree of directory ${dir.ino}`,
    "collision chain longer than the directory",
  );
}

/**
 * The inode `name` maps to in an htree directory (0 if absent) and the physical block of
 * its entry.
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
  return await findInChain(tx, sb, dir, await probeName(tx, sb, dir, name), name);
}

/**
 * True for an index block: the root (logical 0) or a node (a fake entry spanning the block).
 *
 * @example
 * ```ts ignore
 * if (!isDxNode(sb, await tx.read(physical))) scanLeaf();
 * ```
 */
export function isDxNode(sb: Superblock, block: Uint8Array): boolean {
  const v = view(block);
  return v.getUint32(0, true) === 0 &&
    recLenFromDisk(v.getUint16(4, true), sb.blockSize) === sb.blockSize;
}

/** Allocates one block for the directory at the next logical block; returns both numbers. */
export type DirBlockAllocator = () => Promise<{ logical: number; physical: number }>;

interface Hashed {
  entry: NewDirEntry;
  hash: number;
}

function hashedEntries(sb: Superblock, version: number, block: Uint8Array): Hashed[] {
  return parseDirBlock(sb, block)
    .filter((e) => e.ino !== 0)
    .map((e) => ({
      entry: { ino: e.ino, name: e.name, type: e.type },
      hash: hashOf(sb, version, e.name),
    }));
}

function byHash(a: Hashed, b: Hashed): number {
  return a.hash - b.hash;
}

/**
 * Where to split entries sorted by hash so that both halves fit in a block: on a hash
 * boundary when one works (the most even in bytes), else inside a run of equal hashes (the
 * upper half's index entry then carries the continuation bit).
 */
function splitPoint(sb: Superblock, list: Hashed[]): { at: number; continued: boolean } {
  const cap = dirBlockEnd(sb);
  const total = list.reduce((a, h) => a + dirRecLen(h.entry.name.length), 0);
  let best = { at: -1, continued: true, skew: Infinity };
  let left = 0;
  for (let at = 1; at < list.length; at++) {
    left += dirRecLen(list[at - 1].entry.name.length);
    const right = total - left;
    if (left > cap || right > cap) continue;
    const continued = list[at].hash === list[at - 1].hash;
    const skew = Math.abs(left - right);
    if ((best.continued && !continued) || (best.continued === continued && skew < best.skew)) {
      best = { at, continued, skew };
    }
  }
  if (best.at < 0) throw new Error("directory entries cannot be split over two blocks");
  return best;
}

function leafImage(sb: Superblock, dir: DxDir, list: Hashed[]): Uint8Array {
  const block = packDirBlock(sb, list.map((h) => h.entry));
  if (!block) throw new Error("leaf overflow while splitting");
  setDirBlockChecksum(sb, dir.ino, dir.generation, block);
  return block;
}

function newNodeBlock(sb: Superblock, dir: DxDir, entries: DxEntry[]): Uint8Array {
  const img = new Uint8Array(sb.blockSize);
  view(img).setUint16(4, recLenToDisk(sb.blockSize, sb.blockSize), true);
  writeEntries(img, NODE_COUNT, dxLimit(sb, false), entries);
  setDxChecksum(sb, dir, img, false);
  return img;
}

/** A writable copy of index block `f`, its checksum verified first (never re-sign damage). */
async function writableIndex(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  f: Frame,
): Promise<Uint8Array> {
  const img = await tx.getWritable(physicalOf(dir, f.logical));
  if (sb.hasMetadataCsum) {
    const r = verifyDxChecksum(sb, dir.ino, dir.generation, img);
    if (!r.ok) {
      throw new CorruptError(
        `${f.root ? "dx_root" : "dx_node"} (block ${f.logical}) of directory ${dir.ino}`,
        r.reason,
      );
    }
  }
  return img;
}

/** How an insert that finds its leaf full changes the index. */
interface SplitPlan {
  /** Index of the highest frame that takes an entry without splitting; -1: a level is added. */
  top: number;
  /** Blocks to allocate: the new leaf, split nodes, and a new node when a level is added. */
  blocks: number;
}

function planSplit(sb: Superblock, dir: DxDir, frames: Frame[]): SplitPlan {
  let top = frames.length - 1;
  while (top >= 0 && frames[top].count >= dxLimit(sb, frames[top].root)) top--;
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
): Promise<{ ino: number; full: boolean }> {
  const probe = await probeName(tx, sb, dir, name);
  const { ino } = await findInChain(tx, sb, dir, probe, name);
  if (ino) return { ino, full: false };
  const leaf = physicalOf(dir, leafOf(dir, probe.frames));
  if (scanDirBlock(sb, await tx.read(leaf), name, `directory ${dir.ino}`).room) {
    return { ino: 0, full: false };
  }
  try {
    planSplit(sb, dir, probe.frames);
    return { ino: 0, full: false };
  } catch (e) {
    if (e instanceof Ext4Error && e.code === "NO_SPACE") return { ino: 0, full: true };
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
): Promise<void> {
  const probe = await probeName(tx, sb, dir, entry.name);
  if ((await findInChain(tx, sb, dir, probe, entry.name)).ino) {
    throw new Ext4Error(
      "EXISTS",
      `${new TextDecoder().decode(entry.name)} exists in directory ${dir.ino}`,
    );
  }
  const { frames, hash } = probe;
  const leaf = leafOf(dir, frames);
  const leafPhys = physicalOf(dir, leaf);
  const where = `directory ${dir.ino} block ${leaf}`;
  if (scanDirBlock(sb, await tx.read(leafPhys), entry.name, where).room) {
    const block = await tx.getWritable(leafPhys);
    if (!insertDirEntry(sb, block, entry)) throw new CorruptError(where, "lost room");
    setDirBlockChecksum(sb, dir.ino, dir.generation, block);
    return;
  }
  const plan = planSplit(sb, dir, frames);
  // Allocate everything first: running out of blocks then changes no directory block.
  const fresh: number[] = [];
  for (let i = 0; i < plan.blocks; i++) {
    const b = await grow();
    mapBlock(dir, b);
    fresh.push(b.logical);
  }
  // The leaf's entries and the new one, split by hash over the old leaf and a new block.
  const list = hashedEntries(sb, probe.info.version, await tx.read(leafPhys));
  list.push({ entry, hash });
  list.sort(byHash);
  const { at, continued } = splitPoint(sb, list);
  const newLeaf = fresh.shift()!;
  (await tx.getWritable(leafPhys)).set(leafImage(sb, dir, list.slice(0, at)));
  tx.newBlock(physicalOf(dir, newLeaf)).set(leafImage(sb, dir, list.slice(at)));
  let add: DxEntry = { hash: (list[at].hash | (continued ? 1 : 0)) >>> 0, block: newLeaf };
  for (let level = frames.length - 1; level >= 0; level--) {
    const f = frames[level];
    const entries = frameEntries(f);
    entries.splice(f.at + 1, 0, add);
    if (entries.length <= dxLimit(sb, f.root)) {
      const img = await writableIndex(tx, sb, dir, f);
      writeEntries(img, f.root ? ROOT_COUNT : NODE_COUNT, dxLimit(sb, f.root), entries);
      setDxChecksum(sb, dir, img, f.root);
      return;
    }
    const node = fresh.shift()!;
    if (f.root) {
      // A full root: its entries move into a new node below it, one more index level.
      tx.newBlock(physicalOf(dir, node)).set(newNodeBlock(sb, dir, entries));
      const root = await writableIndex(tx, sb, dir, f);
      writeEntries(root, ROOT_COUNT, dxLimit(sb, true), [{ hash: 0, block: node }]);
      root[INFO_LEVELS] = frames.length;
      setDxChecksum(sb, dir, root, true);
      return;
    }
    // A full node: the upper half moves to a new node, which its parent then takes.
    const mid = entries.length >> 1;
    const img = await writableIndex(tx, sb, dir, f);
    writeEntries(img, NODE_COUNT, dxLimit(sb, false), entries.slice(0, mid));
    setDxChecksum(sb, dir, img, false);
    tx.newBlock(physicalOf(dir, node)).set(newNodeBlock(sb, dir, entries.slice(mid)));
    add = { hash: entries[mid].hash, block: node };
  }
  throw new Error("htree split left an index entry over");
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
  const phys0 = physicalOf(dir, 0);
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
  const list = hashedEntries(sb, hashVersion(sb, version), old).filter((h) =>
    !(h.entry.name.length <= 2 && h.entry.name.every((c) => c === 0x2e))
  ).sort(byHash);
  const a = await grow();
  mapBlock(dir, a);
  const b = await grow();
  mapBlock(dir, b);
  const split = list.length >= 2 ? splitPoint(sb, list) : { at: list.length, continued: false };
  tx.newBlock(a.physical).set(leafImage(sb, dir, list.slice(0, split.at)));
  tx.newBlock(b.physical).set(leafImage(sb, dir, list.slice(split.at)));
  const splitHash = split.at < list.length
    ? (list[split.at].hash | (split.continued ? 1 : 0)) >>> 0
    : 0xfffffffe;
  const root = await tx.getWritable(phys0);
  root.fill(0);
  const v = view(root);
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
  root[INFO_HASH_VERSION] = version;
  root[INFO_LENGTH] = 8;
  root[INFO_LEVELS] = 0;
  writeEntries(root, ROOT_COUNT, dxLimit(sb, true), [
    { hash: 0, block: a.logical },
    { hash: splitHash, block: b.logical },
  ]);
  setDxChecksum(sb, dir, root, true);
}
