/**
 * A file's block mapping as a plain sorted list of extents, for the write path: reading it
 * from an extent tree or an ext2/3 block map (bounded and checked), editing it (look up,
 * remove a range, insert runs, coalescing neighbours) and writing it back as a fresh tree or
 * map. Also the {@link FileMapEditor} interface file changes go through: extent trees are
 * edited in place by lib/ext4/extents_edit.ts (which edits the few leaves a change touches
 * with these list helpers); block maps by {@link BlockMapEditor}, in place too
 * (lib/ext4/block_map_trim.ts).
 * {@link maxFileSize} is the kernel's `s_maxbytes` per mapping kind.
 *
 * @module
 */

import type { Allocator, Extent } from "./alloc.ts";
import type { BlockReader } from "../ondisk/bitmap.ts";
import { Ext4Error } from "../errors.ts";
import { buildExtentTree, walkExtentTree } from "./extents.ts";
import { buildBlockMap, walkBlockMap } from "./indirect.ts";
import { blockMapLimit, DIRECT_BLOCKS } from "../ondisk/indirect.ts";
import { type FileExtent, MAX_INIT_EXTENT, MAX_UNWRITTEN_EXTENT } from "../ondisk/extent.ts";
import { RoCompat } from "../ondisk/features.ts";
import { type InodeFields, InodeFlags } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";
import { type BlockMapContext, mapBlockRuns, unmapBlockRange } from "./block_map_trim.ts";

/** A file's mapping: its data extents and the blocks the mapping itself occupies. */
export interface FileMap {
  /** How `i_block` maps the data: an extent tree (EXT4_EXTENTS_FL) or a block map. */
  kind: "extents" | "blockmap";
  /** The data extents, in logical order (holes are absent). */
  extents: FileExtent[];
  /** Extent tree nodes or indirect blocks (not counting the root in `i_block`). */
  mapBlocks: number[];
}

/**
 * Reads the mapping of inode `ino` from its fields: an extent tree (checked node by node by
 * lib/ext4/extents.ts, checksums included) or a block map.
 */
export async function readFileMap(
  reader: BlockReader,
  sb: Superblock,
  ino: number,
  fields: InodeFields,
): Promise<FileMap> {
  if (fields.flags & InodeFlags.EXTENTS) {
    const owner = { ino, generation: fields.generation, iBlock: fields.block };
    const tree = await walkExtentTree(sb, owner, (b) => reader.read(b));
    return { kind: "extents", ...tree };
  }
  if (fields.flags & InodeFlags.INLINE_DATA) {
    throw new Ext4Error("UNSUPPORTED", `inode ${ino} holds inline data`);
  }
  const map = await walkBlockMap(sb, { ino, iBlock: fields.block }, (b) => reader.read(b));
  return { kind: "blockmap", ...map };
}

/** The extent holding logical block `lb`, or undefined (a hole). */
export function findExtent(extents: FileExtent[], lb: number): FileExtent | undefined {
  let lo = 0;
  let hi = extents.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = extents[mid];
    if (lb < e.logical) hi = mid - 1;
    else if (lb >= e.logical + e.length) lo = mid + 1;
    else return e;
  }
  return undefined;
}

/**
 * Removes logical blocks `[from, to)` from the list; returns the remaining extents and the
 * physical runs that were mapped there (to free).
 */
export function removeRange(
  extents: FileExtent[],
  from: number,
  to: number,
): { kept: FileExtent[]; removed: Extent[] } {
  const kept: FileExtent[] = [];
  const removed: Extent[] = [];
  for (const e of extents) {
    const s = e.logical;
    const end = e.logical + e.length;
    if (end <= from || s >= to) {
      kept.push(e);
      continue;
    }
    if (s < from) kept.push({ ...e, length: from - s });
    const cutStart = Math.max(s, from);
    const cutEnd = Math.min(end, to);
    removed.push({ start: e.physical + (cutStart - s), length: cutEnd - cutStart });
    if (end > to) {
      kept.push({ ...e, logical: to, physical: e.physical + (to - s), length: end - to });
    }
  }
  return { kept, removed };
}

/**
 * Merges new extents (which must not overlap existing ones) into the sorted list and joins
 * neighbours that continue each other logically and physically with the same state.
 */
export function insertExtents(extents: FileExtent[], added: FileExtent[]): FileExtent[] {
  const all = [...extents, ...added].sort((a, b) => a.logical - b.logical);
  const out: FileExtent[] = [];
  for (const e of all) {
    const last = out.at(-1);
    if (last && e.logical < last.logical + last.length) {
      throw new Ext4Error("INVALID", `extent at logical ${e.logical} overlaps another`);
    }
    const max = e.unwritten ? MAX_UNWRITTEN_EXTENT : MAX_INIT_EXTENT;
    if (
      last && !!last.unwritten === !!e.unwritten && last.logical + last.length === e.logical &&
      last.physical + last.length === e.physical && last.length + e.length <= max
    ) {
      last.length += e.length;
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

/** Marks logical blocks `[from, to)` written (splitting unwritten extents). */
export function markWritten(extents: FileExtent[], from: number, to: number): FileExtent[] {
  const out: FileExtent[] = [];
  for (const e of extents) {
    const s = e.logical;
    const end = s + e.length;
    if (!e.unwritten || end <= from || s >= to) {
      out.push(e);
      continue;
    }
    const a = Math.max(s, from);
    const b = Math.min(end, to);
    if (s < a) out.push({ ...e, length: a - s });
    out.push({ logical: a, physical: e.physical + (a - s), length: b - a });
    if (b < end) out.push({ ...e, logical: b, physical: e.physical + (b - s), length: end - b });
  }
  return insertExtents([], out);
}

/**
 * Replaces a file's mapping: frees the old tree or indirect blocks (revoked) and builds a new
 * one for `extents`. Returns the new `i_block` and the number of mapping blocks.
 */
export async function rewriteFileMap(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  options: { ino: number; generation: number; old: FileMap; extents: FileExtent[]; goal?: number },
): Promise<{ iBlock: Uint8Array; mapBlocks: number }> {
  const { old, extents } = options;
  for (const b of old.mapBlocks) await alloc.freeBlocks(tx, b, 1, { metadata: true });
  if (old.kind === "extents") {
    const tree = await buildExtentTree(tx, alloc, sb, {
      ino: options.ino,
      generation: options.generation,
      extents,
      goal: options.goal,
    });
    return { iBlock: tree.iBlock, mapBlocks: tree.treeBlocks.reduce((a, e) => a + e.length, 0) };
  }
  const last = extents.at(-1);
  if (last && last.logical + last.length > blockMapLimit(sb.blockSize)) {
    throw new Ext4Error("INVALID", "the file is too large for a block map");
  }
  const map = await buildBlockMap(tx, alloc, sb, { extents, goal: options.goal });
  return { iBlock: map.iBlock, mapBlocks: map.indirectBlocks.reduce((a, e) => a + e.length, 0) };
}

/**
 * Changes to a file's mapping, one at a time, written through the transaction as they are
 * made: {@link ExtentTreeEditor} (lib/ext4/extents_edit.ts) edits extent trees in place;
 * {@link BlockMapEditor} keeps a block map as a list and rewrites it at {@link finish}.
 */
export interface FileMapEditor {
  /** The kind of mapping edited. */
  readonly kind: "extents" | "blockmap";
  /** The extents meeting logical blocks `[from, to)`, in order (whole, not clipped). */
  extentsIn(from: number, to: number): Promise<FileExtent[]>;
  /** The extent holding logical block `lb`, or undefined (a hole). */
  lookup(lb: number): Promise<FileExtent | undefined>;
  /** The last extent starting before logical block `lb`. */
  before(lb: number): Promise<FileExtent | undefined>;
  /** Maps new extents (sorted, in holes), merging neighbours. */
  insert(extents: FileExtent[]): Promise<void>;
  /** Unmaps `[from, to)`; returns the physical runs that were mapped (for the caller to free). */
  remove(from: number, to: number): Promise<Extent[]>;
  /** Marks `[from, to)` written (unwritten extents split and converted). */
  markWritten(from: number, to: number): Promise<void>;
  /** The new `i_block` and the blocks (data and mapping) gained, negative when lost. */
  finish(): Promise<{ iBlock: Uint8Array; blocksDelta: number }>;
}

/**
 * A {@link FileMapEditor} of an ext2/3 block map: lookups in the mapping read as a list,
 * changes made in place as they come (lib/ext4/block_map_trim.ts: only the indirect blocks
 * on the changed paths are written, emptied ones freed, missing ones allocated), so a change
 * costs the blocks it touches, not every indirect block of the file.
 *
 * @example
 * ```ts ignore
 * const map = await readFileMap(tx, sb, ino, fields);
 * const editor = new BlockMapEditor(tx, alloc, sb, { ino, generation, map, iBlock });
 * await editor.insert([{ logical: 0, physical: 900, length: 1 }]);
 * const { iBlock, blocksDelta } = await editor.finish();
 * ```
 */
export class BlockMapEditor implements FileMapEditor {
  /** The kind of mapping edited. */
  readonly kind: "extents" | "blockmap";
  #extents: FileExtent[];
  #iBlock: Uint8Array;
  #blocksDelta = 0;
  readonly #ctx: BlockMapContext;
  readonly #ino: number;

  /** An editor of `options.map` (read with {@link readFileMap}). */
  constructor(
    tx: Transaction,
    alloc: Allocator,
    sb: Superblock,
    options: { ino: number; generation: number; map: FileMap; iBlock: Uint8Array },
  ) {
    this.#ctx = { tx, alloc, sb };
    this.#ino = options.ino;
    this.#iBlock = options.iBlock;
    this.kind = options.map.kind;
    this.#extents = options.map.extents;
  }

  /** The extents meeting `[from, to)`. */
  extentsIn(from: number, to: number): Promise<FileExtent[]> {
    return Promise.resolve(
      this.#extents.filter((e) => e.logical < to && e.logical + e.length > from),
    );
  }

  /** The extent holding `lb`. */
  lookup(lb: number): Promise<FileExtent | undefined> {
    return Promise.resolve(findExtent(this.#extents, lb));
  }

  /** The last extent starting before `lb`. */
  before(lb: number): Promise<FileExtent | undefined> {
    return Promise.resolve(this.#extents.filter((e) => e.logical < lb).at(-1));
  }

  /** Maps new extents, in place. */
  async insert(extents: FileExtent[]): Promise<void> {
    if (!extents.length) return;
    const root = { ino: this.#ino, iBlock: this.#iBlock };
    const { iBlock, mapAdded } = await mapBlockRuns(this.#ctx, root, extents);
    this.#extents = insertExtents(this.#extents, extents);
    this.#iBlock = iBlock;
    this.#blocksDelta += mapAdded + extents.reduce((a, e) => a + e.length, 0);
  }

  /** Unmaps `[from, to)` in place (indirect blocks left empty are freed). */
  async remove(from: number, to: number): Promise<Extent[]> {
    const { kept, removed } = removeRange(this.#extents, from, to);
    if (!removed.length) return removed;
    const root = { ino: this.#ino, iBlock: this.#iBlock };
    const { iBlock, mapFreed } = await unmapBlockRange(this.#ctx, root, from, to);
    this.#extents = kept;
    this.#iBlock = iBlock;
    this.#blocksDelta -= mapFreed + removed.reduce((a, e) => a + e.length, 0);
    return removed;
  }

  /** Nothing to do: a block map holds no unwritten blocks. */
  markWritten(_from: number, _to: number): Promise<void> {
    return Promise.resolve();
  }

  /** The `i_block` as changed, and the blocks gained. */
  finish(): Promise<{ iBlock: Uint8Array; blocksDelta: number }> {
    return Promise.resolve({ iBlock: this.#iBlock, blocksDelta: this.#blocksDelta });
  }
}

/**
 * The largest size in bytes a file of this mapping kind may have, as the kernel computes
 * `s_maxbytes` (extents: 2^32 − 1 blocks, as `ee_block` is 32 bits and the last block must
 * be addressable by an extent's end) and `s_bitmap_maxbytes` (block maps: what the indirect
 * levels address), both capped by what `i_blocks` counts without huge_file.
 *
 * @example
 * ```ts ignore
 * maxFileSize(sb, "extents"); // 17592186040320 (16 TiB − 4 KiB) with 4 KiB blocks
 * ```
 */
export function maxFileSize(sb: Superblock, kind: "extents" | "blockmap"): number {
  const bits = Math.log2(sb.blockSize);
  const hugeFile = (sb.roCompat & RoCompat.HUGE_FILE) !== 0;
  if (kind === "extents") {
    let res = (2 ** 32 - 1) * sb.blockSize;
    if (!hugeFile) {
      const upper = Math.floor((2 ** 32 - 1) / 2 ** (bits - 9)) * sb.blockSize;
      res = Math.min(res, upper);
    }
    return res;
  }
  // ext4_max_bitmap_size: data and indirect blocks together within what i_blocks counts.
  const ppb = sb.blockSize / 4;
  let upper = hugeFile ? 2 ** 48 - 1 : Math.floor((2 ** 32 - 1) / 2 ** (bits - 9));
  let res = DIRECT_BLOCKS + ppb + ppb * ppb + ppb * ppb * ppb;
  let meta = 1 + (1 + ppb) + (1 + ppb + ppb * ppb);
  if (res + meta > upper) {
    res = upper;
    upper -= DIRECT_BLOCKS;
    meta = 1;
    upper -= ppb;
    if (upper < ppb * ppb) {
      meta += 1 + Math.ceil(upper / ppb);
    } else {
      meta += 1 + ppb;
      upper -= ppb * ppb;
      meta += 1 + Math.ceil(upper / ppb) + Math.ceil(upper / (ppb * ppb));
    }
    res -= meta;
  }
  return res * sb.blockSize;
}
