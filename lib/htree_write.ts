/**
 * Htree (dx) directories for the write path: reading the index (root and at most one level
 * of nodes), finding the leaf a name hashes to, inserting with leaf split and index growth
 * (a root that fills moves its entries into a node; a full node splits into two), turning a
 * full one-block directory into an indexed one as the kernel does, and the dx tail checksum.
 *
 * Index entries hold logical block numbers of the directory; leaves are ordinary directory
 * blocks. Two index levels (large_dir's third) are not written: such a directory refuses the
 * insert with NO_SPACE.
 *
 * @module
 */

import {
  emptyDirBlock,
  insertDirEntry,
  type NewDirEntry,
  parseDirBlock,
  scanDirBlock,
  setDirBlockChecksum,
} from "./dir_write.ts";
import { dirHash, DxHashVersion } from "./dir_hash.ts";
import { hashIsSigned } from "./dir_htree.ts";
import { computeDxChecksum, DirFileType } from "./directory.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
import type { FileExtent } from "./extent_write.ts";
import { findExtent } from "./file_map_write.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

const ROOT_COUNT = 0x20;
const NODE_COUNT = 0x08;
const DX_TAIL = 8;

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

/** Entries an index block holds. */
export function dxLimit(sb: Superblock, root: boolean): number {
  const off = root ? ROOT_COUNT : NODE_COUNT;
  return Math.floor((sb.blockSize - off - (sb.hasMetadataCsum ? DX_TAIL : 0)) / 8);
}

function readEntries(block: Uint8Array, off: number, where: string): DxEntry[] {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const limit = v.getUint16(off, true);
  const count = v.getUint16(off + 2, true);
  if (count === 0 || count > limit || off + 8 * limit > block.length) {
    throw new CorruptError(where, `index count ${count}, limit ${limit}`);
  }
  const out: DxEntry[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      hash: i === 0 ? 0 : v.getUint32(off + 8 * i, true),
      block: v.getUint32(off + 8 * i + 4, true),
    });
  }
  return out;
}

function writeEntries(block: Uint8Array, off: number, limit: number, entries: DxEntry[]): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (entries.length > limit) throw new Error("dx entries over the limit");
  block.fill(0, off, off + 8 * limit);
  v.setUint16(off, limit, true);
  v.setUint16(off + 2, entries.length, true);
  entries.forEach((e, i) => {
    if (i > 0) v.setUint32(off + 8 * i, e.hash, true);
    v.setUint32(off + 8 * i + 4, e.block, true);
  });
}

/** Stores the dx tail checksum of an index block (no-op without metadata_csum). */
export function setDxChecksum(sb: Superblock, dir: DxDir, block: Uint8Array, root: boolean): void {
  if (!sb.hasMetadataCsum) return;
  const r = computeDxChecksum(sb, dir.ino, dir.generation, block);
  if ("reason" in r) {
    throw new CorruptError(`${root ? "dx_root" : "dx_node"} of directory ${dir.ino}`, r.reason);
  }
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(
    r.tail + 4,
    r.checksum,
    true,
  );
}

/** The hash version a directory's names are hashed with. */
function hashVersion(sb: Superblock, stored: number): number {
  if (stored <= DxHashVersion.TEA && !hashIsSigned(sb)) return stored + 3;
  return stored;
}

function hashOf(sb: Superblock, version: number, name: Uint8Array): number {
  // `version` already folds in UNSIGNED_HASH (3-5), so versions 0-2 here are the signed ones.
  return dirHash(name, version, sb.hashSeed, true).major;
}

interface Level {
  logical: number;
  root: boolean;
  entries: DxEntry[];
  index: number;
}

interface RootInfo {
  version: number;
  levels: number;
}

function rootInfo(sb: Superblock, root: Uint8Array, dir: DxDir): RootInfo {
  const stored = root[0x1c];
  const infoLen = root[0x1d];
  const levels = root[0x1e];
  if (infoLen !== 8 || levels > 1) {
    throw new Ext4Error(
      levels > 1 ? "UNSUPPORTED" : "CORRUPT",
      `directory ${dir.ino}: htree with ${levels + 1} index levels (info length ${infoLen})`,
    );
  }
  return { version: hashVersion(sb, stored), levels };
}

/** Walks the index from the root to the leaf `hash` belongs in. */
async function descend(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  hash: number,
): Promise<{ info: RootInfo; path: Level[]; leaf: number }> {
  const root = await tx.read(physicalOf(dir, 0));
  const info = rootInfo(sb, root, dir);
  const path: Level[] = [];
  let block = root;
  let logical = 0;
  for (let level = 0; level <= info.levels; level++) {
    const isRoot = level === 0;
    const entries = readEntries(
      block,
      isRoot ? ROOT_COUNT : NODE_COUNT,
      `htree of directory ${dir.ino}`,
    );
    let index = 0;
    while (index + 1 < entries.length && entries[index + 1].hash <= hash) index++;
    path.push({ logical, root: isRoot, entries, index });
    const child = entries[index].block;
    if (child === 0 || child >= dir.blocks) {
      throw new CorruptError(`htree of directory ${dir.ino}`, `index points to block ${child}`);
    }
    if (level < info.levels) {
      logical = child;
      block = await tx.read(physicalOf(dir, child));
    } else {
      return { info, path, leaf: child };
    }
  }
  throw new CorruptError(`htree of directory ${dir.ino}`, "no leaf");
}

/**
 * The leaf blocks (logical) where `name` may be: the one it hashes to, and following ones
 * while their index entry carries the same hash with the continuation bit.
 */
async function candidateLeaves(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<number[]> {
  const probe = await descend(tx, sb, dir, 0);
  const hash = hashOf(sb, probe.info.version, name);
  const { path, leaf } = await descend(tx, sb, dir, hash);
  const out = [leaf];
  const bottom = path[path.length - 1];
  for (let i = bottom.index + 1; i < bottom.entries.length; i++) {
    const e = bottom.entries[i];
    if ((e.hash & 1) && (e.hash & ~1) >>> 0 === hash) out.push(e.block);
    else break;
  }
  return out;
}

/** The inode `name` maps to in an htree directory, or 0. */
export async function dxLookup(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  name: Uint8Array,
): Promise<{ ino: number; leaf: number }> {
  for (const leaf of await candidateLeaves(tx, sb, dir, name)) {
    const block = await tx.read(physicalOf(dir, leaf));
    const { ino } = scanDirBlock(sb, block, name, `directory ${dir.ino} block ${leaf}`);
    if (ino) return { ino, leaf: physicalOf(dir, leaf) };
  }
  return { ino: 0, leaf: 0 };
}

/** True for an index block: the root (logical 0) or a node (a fake entry spanning the block). */
export function isDxNode(sb: Superblock, block: Uint8Array): boolean {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const recLen = v.getUint16(4, true);
  return v.getUint32(0, true) === 0 &&
    (recLen === sb.blockSize || (sb.blockSize >= 65536 && recLen === 0));
}

/** New blocks the caller must map into the directory (logical → physical). */
export interface DxGrowth {
  added: FileExtent[];
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
    }))
    .sort((a, b) => a.hash - b.hash);
}

/** Splits sorted entries in two near the middle, on a hash boundary when there is one. */
function splitPoint(list: Hashed[]): { at: number; continued: boolean } {
  const mid = Math.floor(list.length / 2);
  for (let d = 0; d <= list.length; d++) {
    for (const at of [mid + d, mid - d]) {
      if (at > 0 && at < list.length && list[at].hash !== list[at - 1].hash) {
        return { at, continued: false };
      }
    }
  }
  return { at: Math.max(1, mid), continued: true };
}

function fillLeaf(sb: Superblock, list: Hashed[]): Uint8Array {
  const block = emptyDirBlock(sb);
  for (const h of list) {
    if (!insertDirEntry(sb, block, h.entry)) throw new Error("leaf overflow while splitting");
  }
  return block;
}

/**
 * Inserts `entry` into an htree directory, splitting the leaf (and growing the index) when it
 * is full. `grow` allocates directory blocks; the caller maps them and fixes the size.
 */
export async function dxInsert(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  entry: NewDirEntry,
  grow: DirBlockAllocator,
): Promise<void> {
  const probe = await descend(tx, sb, dir, 0);
  const version = probe.info.version;
  const hash = hashOf(sb, version, entry.name);
  const { path, leaf, info } = await descend(tx, sb, dir, hash);
  const leafPhys = physicalOf(dir, leaf);
  const scan = scanDirBlock(sb, await tx.read(leafPhys), entry.name);
  if (scan.ino) throw new Ext4Error("EXISTS", "name exists");
  if (scan.room) {
    const block = await tx.getWritable(leafPhys);
    insertDirEntry(sb, block, entry);
    setDirBlockChecksum(sb, dir.ino, dir.generation, block);
    return;
  }
  // Split the leaf: lower half stays, upper half moves to a new block.
  const list = hashedEntries(sb, version, await tx.read(leafPhys));
  const { at, continued } = splitPoint(list);
  const splitHash = (list[at].hash | (continued ? 1 : 0)) >>> 0;
  const fresh = await grow();
  dir.extents = [...dir.extents, { logical: fresh.logical, physical: fresh.physical, length: 1 }]
    .sort((a, b) => a.logical - b.logical);
  dir.blocks = Math.max(dir.blocks, fresh.logical + 1);
  const low = list.slice(0, at);
  const high = list.slice(at);
  if (hash >= (splitHash & ~1) >>> 0) {
    high.push({ entry, hash });
    high.sort((a, b) => a.hash - b.hash);
  } else {
    low.push({ entry, hash });
  }
  const lowImg = fillLeaf(sb, low);
  const highImg = fillLeaf(sb, high);
  setDirBlockChecksum(sb, dir.ino, dir.generation, lowImg);
  setDirBlockChecksum(sb, dir.ino, dir.generation, highImg);
  (await tx.getWritable(leafPhys)).set(lowImg);
  tx.newBlock(fresh.physical).set(highImg);
  await insertIndex(tx, sb, dir, info, path, path.length - 1, {
    hash: splitHash,
    block: fresh.logical,
  }, grow);
}

/** Inserts an index entry after `path[level].index`, splitting or growing as needed. */
async function insertIndex(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  info: RootInfo,
  path: Level[],
  level: number,
  add: DxEntry,
  grow: DirBlockAllocator,
): Promise<void> {
  const node = path[level];
  const limit = dxLimit(sb, node.root);
  const entries = [...node.entries];
  entries.splice(node.index + 1, 0, add);
  if (entries.length <= limit) {
    return await writeIndexBlock(tx, sb, dir, node.logical, node.root, entries);
  }
  if (node.root && info.levels === 0) {
    // The root is full: its entries move into a new node; the root points at that node.
    const fresh = await grow();
    dir.extents = [...dir.extents, { logical: fresh.logical, physical: fresh.physical, length: 1 }]
      .sort((a, b) => a.logical - b.logical);
    dir.blocks = Math.max(dir.blocks, fresh.logical + 1);
    const nodeLimit = dxLimit(sb, false);
    if (entries.length > nodeLimit) throw new Error("node cannot hold the root's entries");
    const img = newNodeBlock(sb);
    writeEntries(img, NODE_COUNT, nodeLimit, entries);
    setDxChecksum(sb, dir, img, false);
    tx.newBlock(fresh.physical).set(img);
    const root = await tx.getWritable(physicalOf(dir, 0));
    root[0x1e] = 1;
    writeEntries(root, ROOT_COUNT, dxLimit(sb, true), [{ hash: 0, block: fresh.logical }]);
    setDxChecksum(sb, dir, root, true);
    return;
  }
  if (!node.root) {
    // A full node splits in two; the root gets an entry for the upper half.
    const parent = path[level - 1];
    if (parent.entries.length >= dxLimit(sb, true)) {
      throw new Ext4Error("NO_SPACE", `directory ${dir.ino}: the htree index is full`);
    }
    const mid = Math.floor(entries.length / 2);
    const fresh = await grow();
    dir.extents = [...dir.extents, { logical: fresh.logical, physical: fresh.physical, length: 1 }]
      .sort((a, b) => a.logical - b.logical);
    dir.blocks = Math.max(dir.blocks, fresh.logical + 1);
    await writeIndexBlock(tx, sb, dir, node.logical, false, entries.slice(0, mid));
    const upper = entries.slice(mid);
    const img = newNodeBlock(sb);
    writeEntries(
      img,
      NODE_COUNT,
      dxLimit(sb, false),
      upper.map((e, i) => i === 0 ? { ...e, hash: 0 } : e),
    );
    setDxChecksum(sb, dir, img, false);
    tx.newBlock(fresh.physical).set(img);
    return await insertIndex(tx, sb, dir, info, path, level - 1, {
      hash: upper[0].hash,
      block: fresh.logical,
    }, grow);
  }
  throw new Ext4Error("NO_SPACE", `directory ${dir.ino}: the htree index is full`);
}

function newNodeBlock(sb: Superblock): Uint8Array {
  const img = new Uint8Array(sb.blockSize);
  const v = new DataView(img.buffer);
  v.setUint32(0, 0, true);
  v.setUint16(4, sb.blockSize >= 65536 ? 0 : sb.blockSize, true);
  return img;
}

async function writeIndexBlock(
  tx: Transaction,
  sb: Superblock,
  dir: DxDir,
  logical: number,
  root: boolean,
  entries: DxEntry[],
): Promise<void> {
  const img = await tx.getWritable(physicalOf(dir, logical));
  writeEntries(img, root ? ROOT_COUNT : NODE_COUNT, dxLimit(sb, root), entries);
  setDxChecksum(sb, dir, img, root);
}

/**
 * Turns a one-block linear directory into an htree: block 0 becomes the root ("." and ".."
 * kept), its entries are split by hash over two new leaves. The caller sets the INDEX flag
 * and maps the two blocks `grow` returns.
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
  );
  const a = await grow();
  const b = await grow();
  dir.extents = [
    ...dir.extents,
    { logical: a.logical, physical: a.physical, length: 1 },
    { logical: b.logical, physical: b.physical, length: 1 },
  ].sort((x, y) => x.logical - y.logical);
  dir.blocks = Math.max(dir.blocks, b.logical + 1);
  let split = { at: list.length, continued: false };
  if (list.length >= 2) split = splitPoint(list);
  const low = fillLeaf(sb, list.slice(0, split.at));
  const high = fillLeaf(sb, list.slice(split.at));
  setDirBlockChecksum(sb, dir.ino, dir.generation, low);
  setDirBlockChecksum(sb, dir.ino, dir.generation, high);
  tx.newBlock(a.physical).set(low);
  tx.newBlock(b.physical).set(high);
  const splitHash = split.at < list.length
    ? (list[split.at].hash | (split.continued ? 1 : 0)) >>> 0
    : 0xfffffffe;
  const root = await tx.getWritable(phys0);
  root.fill(0);
  const v = new DataView(root.buffer, root.byteOffset, root.byteLength);
  v.setUint32(0, self, true);
  v.setUint16(4, 12, true);
  root[6] = 1;
  root[7] = DirFileType.DIR;
  root[8] = 0x2e;
  v.setUint32(12, parent, true);
  v.setUint16(16, sb.blockSize >= 65536 ? 0xffff : sb.blockSize - 12, true);
  root[18] = 2;
  root[19] = DirFileType.DIR;
  root[20] = 0x2e;
  root[21] = 0x2e;
  root[0x1c] = version;
  root[0x1d] = 8;
  root[0x1e] = 0;
  writeEntries(root, ROOT_COUNT, dxLimit(sb, true), [
    { hash: 0, block: a.logical },
    { hash: splitHash, block: b.logical },
  ]);
  setDxChecksum(sb, dir, root, true);
}
