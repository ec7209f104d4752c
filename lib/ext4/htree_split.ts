/**
 * Splitting a full htree leaf and making room in a full index, exactly as the kernel's
 * fs/ext4/namei.c does it, so that a directory ext4ts grows has the layout the kernel's would
 * have after the same creates (same names, same hash seed):
 *
 * - `do_split`: the leaf's live entries, as `dx_make_map` lists them (from the block's end,
 *   each with its record length, slack included), are sorted by hash with `dx_sort_map`'s
 *   comb sort (not stable: entries of equal hash end in its order); the entries from the top
 *   whose sizes reach half the block move to the new block in hash order (by count when that
 *   never happens); the others stay in block order, packed. The new block's index entry is the
 *   first moved hash, plus 1 when the entry before it has the same hash (a collision chain
 *   continues). The new name goes to the new block when its hash is at least that hash, after
 *   the last entry.
 * - `ext4_dx_add_entry`'s index split: a full index node is split in two halves of its entries
 *   before the new entry goes in (the new node takes the upper half, its parent an entry for
 *   it); a full root moves its entries into a new node below it. Index blocks are allocated
 *   before the leaf, top down, as the kernel appends them.
 *
 * @module
 */

import { CorruptError } from "../errors.ts";
import { type NewDirEntry, parseDirBlock } from "../ondisk/dirent.ts";
import type { DxEntry } from "../ondisk/dx.ts";
import type { Superblock } from "../ondisk/superblock.ts";

/** A leaf's entries as `do_split` divides them. */
export interface LeafSplit {
  /** The entries that stay, in their order in the block. */
  low: NewDirEntry[];
  /** The entries that move to the new block, in hash order. */
  high: NewDirEntry[];
  /** The first moved hash (the new name goes to `high` when its hash is at least this). */
  hash2: number;
  /** The entry before the first moved one has the same hash: the index entry gets bit 0. */
  continued: boolean;
}

interface MapEntry {
  entry: NewDirEntry;
  /** Index in the block's order of live entries. */
  order: number;
  hash: number;
  size: number;
}

/**
 * `dx_sort_map`: a comb sort down to gaps of 1, then bubble sort, ascending by hash. Equal
 * hashes keep whatever order it leaves them in, which decides the layout: copied as it is.
 */
function sortMap(map: MapEntry[]): void {
  const top = map.length - 1;
  const swap = (a: number, b: number) => {
    const t = map[a];
    map[a] = map[b];
    map[b] = t;
  };
  let gap = map.length;
  while (gap > 2) {
    gap = Math.floor(gap * 10 / 13);
    if (gap === 9 || gap === 10) gap = 11;
    for (let p = top, q = p - gap; q >= 0; p--, q--) {
      if (map[p].hash < map[q].hash) swap(p, q);
    }
  }
  let more: boolean;
  do {
    more = false;
    for (let q = top - 1; q >= 0; q--) {
      if (map[q + 1].hash >= map[q].hash) continue;
      swap(q, q + 1);
      more = true;
    }
  } while (more);
}

/**
 * Divides the live entries of a full leaf `block` as the kernel's `do_split` does (see the
 * module comment). `hashOf` is the directory's name hash (major, bit 0 clear).
 *
 * @example
 * ```ts ignore
 * const { low, high, hash2, continued } = splitLeaf(sb, leaf, (n) => hash(n), "directory 12");
 * (newHash >= hash2 ? high : low).push(newEntry);
 * ```
 */
export function splitLeaf(
  sb: Superblock,
  block: Uint8Array,
  hashOf: (name: Uint8Array) => number,
  where: string,
): LeafSplit {
  const live = parseDirBlock(sb, block, where).filter((e) => e.ino !== 0 && e.name.length > 0);
  if (live.length === 0) throw new CorruptError(where, "a full leaf holds no entry");
  // dx_make_map fills its map from the end: the block's last entry comes first.
  const map: MapEntry[] = live.map((e, order) => ({
    entry: { ino: e.ino, name: e.name, type: e.type },
    order,
    hash: hashOf(e.name),
    size: e.recLen,
  })).reverse();
  sortMap(map);
  const count = map.length;
  const half = sb.blockSize >>> 1;
  let size = 0;
  let i = count - 1;
  // From the top hash down while no entry would lie more than half in the lower half.
  for (; i >= 0; i--) {
    if (size + (map[i].size >>> 1) > half) break;
    size += map[i].size;
  }
  const split = i >= 0 ? i + 1 : count >>> 1;
  const hash2 = map[split].hash;
  const moved = new Set(map.slice(split).map((m) => m.order));
  return {
    low: live.filter((_, order) => !moved.has(order)).map((e) => ({
      ino: e.ino,
      name: e.name,
      type: e.type,
    })),
    high: map.slice(split).map((m) => m.entry),
    hash2,
    continued: split > 0 && map[split - 1].hash === hash2,
  };
}

/** One index block on the way down, as {@link makeIndexRoom} changes it. */
export interface IndexLevel {
  /** Its logical block in the directory. */
  logical: number;
  /** It is the root (block 0). */
  root: boolean;
  /** Its entries (the first one's hash unused). */
  entries: DxEntry[];
  /** The entry followed down. */
  at: number;
}

/**
 * Makes room for one more entry in the bottom index block of `levels` (root first), as
 * `ext4_dx_add_entry` does before it splits a leaf: while the bottom block is full, the
 * topmost full block under a parent with room is split in two halves (the upper half into a
 * new block from `take`, an entry for it in the parent, the path moving to the half that holds
 * `at`); when every block up to the root is full, the root's entries move into a new block
 * below it (one more level). Changes `levels` in place; returns every index block to write
 * (with `fresh` for the new ones). The caller has checked the depth limit.
 *
 * @example
 * ```ts ignore
 * const dirty = makeIndexRoom(levels, (root) => dxLimit(sb, root), () => fresh.shift()!);
 * ```
 */
export function makeIndexRoom(
  levels: IndexLevel[],
  limit: (root: boolean) => number,
  take: () => number,
): Map<number, { level: IndexLevel; fresh: boolean }> {
  const dirty = new Map<number, { level: IndexLevel; fresh: boolean }>();
  const mark = (level: IndexLevel, fresh = false) =>
    dirty.set(level.logical, { level, fresh: fresh || (dirty.get(level.logical)?.fresh ?? false) });
  const full = (l: IndexLevel) => l.entries.length >= limit(l.root);
  while (full(levels[levels.length - 1])) {
    let i = levels.length - 1;
    while (i > 0 && full(levels[i - 1])) i--;
    if (i === 0) {
      // Every block up to the root is full: the root's entries go one level down.
      const root = levels[0];
      const node: IndexLevel = { logical: take(), root: false, entries: root.entries, at: root.at };
      root.entries = [{ hash: 0, block: node.logical }];
      root.at = 0;
      levels.splice(1, 0, node);
      mark(root);
      mark(node, true);
      continue;
    }
    const l = levels[i];
    const parent = levels[i - 1];
    const half = l.entries.length >>> 1;
    const upper: IndexLevel = {
      logical: take(),
      root: false,
      entries: l.entries.slice(half),
      at: l.at - half,
    };
    l.entries = l.entries.slice(0, half);
    parent.entries.splice(parent.at + 1, 0, { hash: upper.entries[0].hash, block: upper.logical });
    mark(l);
    mark(upper, true);
    mark(parent);
    if (upper.at >= 0) {
      levels[i] = upper;
      parent.at++;
    }
  }
  return dirty;
}
