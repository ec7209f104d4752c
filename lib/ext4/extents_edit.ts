/**
 * Changing an existing extent tree in place, the way the kernel's fs/ext4/extents.c does, so a
 * change costs the blocks on its path and not the whole tree: insert extents (merged with
 * neighbours that continue them logically and physically in the same state), remove or trim a
 * range (punch, truncate), mark a range written (unwritten extents split). A full node splits
 * (a full root in `i_block` pushes its entries down into a new block: the tree grows one level),
 * index keys follow the first key of their child up the path, emptied nodes are freed, small
 * neighbours merge, and a root with one child that fits back in `i_block` takes its entries (the
 * tree shrinks).
 *
 * Each change gathers the nodes whose key range meets the changed range (plus one block on
 * each side, so neighbours can merge), edits their entries as one list, and writes back only
 * the nodes whose entries changed, level by level up to the root. Tree blocks go through the
 * transaction with their metadata_csum tails; new ones are allocated near the file's data.
 * Every node read is checked (magic, `eh_max`, entries, depth ≤ 5, order, bounds, checksum; no
 * block twice): bad trees are {@link CorruptError}s naming the inode and the block.
 *
 * @module
 */

import type { Allocator, Extent } from "./alloc.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import {
  encodeExtentNode,
  EXTENT_ROOT_MAX as ROOT_MAX,
  type ExtentIndex as IndexEntry,
  extentsPerBlock,
  type FileExtent,
  MAX_EXTENT_DEPTH,
  parseExtentHeader,
  setExtentTail,
} from "../ondisk/extent.ts";
import type { FileMapEditor } from "./file_map_write.ts";
import { insertExtents, markWritten, removeRange } from "./file_map_write.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";
import { touchInode } from "./inode.ts";
import {
  checkExtentBlock,
  decodeExtentNode,
  type ExtentEntry as Entry,
  extentNodeWhere,
  LOGICAL_LIMIT,
  validateExtents,
} from "./extents.ts";

/** A node read for one change. */
interface Node {
  /** The tree block, or null for the root in `i_block`. */
  block: number | null;
  /** Levels below (0: a leaf of extents). */
  depth: number;
  entries: Entry[];
  /** The logical range the parent gives this node: `[lo, hi)`. */
  lo: number;
  hi: number;
  /** On the right edge of the tree (appends go here: leaves are filled, not halved). */
  rightmost: boolean;
}

/** A node's entries after a change, and the old node whose block it keeps, if any. */
interface Group {
  entries: Entry[];
  reuse?: Node;
}

function sameEntries(a: Entry[], b: Entry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as FileExtent & IndexEntry;
    const y = b[i] as FileExtent & IndexEntry;
    if (
      x.logical !== y.logical || x.physical !== y.physical || x.length !== y.length ||
      !!x.unwritten !== !!y.unwritten || x.child !== y.child
    ) return false;
  }
  return true;
}

/**
 * The new nodes of one level after a change: entries go to the old node whose key range holds
 * them (so untouched nodes stay untouched), empty nodes go, neighbours that fit together in
 * three quarters of a node merge, and overflowing nodes split — in halves, or, at the right
 * edge of the tree, into full nodes and the rest (appends keep leaves full).
 */
function distribute(nodes: Node[], entries: Entry[], cap: number, rightmost: boolean): Group[] {
  const groups: Group[] = nodes.map((reuse) => ({ entries: [], reuse }));
  let gi = 0;
  for (const e of entries) {
    while (gi + 1 < nodes.length && e.logical >= nodes[gi + 1].lo) gi++;
    groups[gi].entries.push(e);
  }
  const merged: Group[] = [];
  const mergeLimit = Math.floor((cap * 3) / 4);
  for (const g of groups) {
    if (g.entries.length === 0) continue;
    const last = merged.at(-1);
    if (last && last.entries.length + g.entries.length <= mergeLimit) {
      last.entries = last.entries.concat(g.entries);
    } else merged.push({ entries: g.entries, reuse: g.reuse });
  }
  const out: Group[] = [];
  merged.forEach((g, i) => {
    const n = g.entries.length;
    if (n <= cap) {
      out.push(g);
      return;
    }
    const size = rightmost && i === merged.length - 1 ? cap : Math.ceil(n / Math.ceil(n / cap));
    for (let at = 0; at < n; at += size) {
      out.push({ entries: g.entries.slice(at, at + size), reuse: at === 0 ? g.reuse : undefined });
    }
  });
  return out;
}

/** Options for {@link ExtentTreeEditor}. */
export interface ExtentTreeEditorOptions {
  /** The inode whose tree this is (checksum seed, error messages). */
  ino: number;
  /** Its `i_generation` (checksum seed). */
  generation: number;
  /** The 60 bytes of `i_block` holding the root; the editor works on a copy. */
  iBlock: Uint8Array;
  /** Where to allocate tree blocks when the change gives no better place (near the data). */
  goal?: number;
  /** Skip checksum verification of the tree blocks read. */
  ignoreChecksum?: boolean;
}

/**
 * Edits one inode's extent tree in place through a transaction. Changes accumulate in the
 * editor's copy of `i_block` and in the transaction's block images; {@link finish} returns the
 * new `i_block` and the change in the inode's block count.
 *
 * @example
 * ```ts ignore
 * const tree = new ExtentTreeEditor(tx, alloc, sb, { ino, generation, iBlock: fields.block });
 * await tree.insert([{ logical: 100, physical: 5000, length: 8 }]);
 * const freed = await tree.remove(0, 50); // data runs for the caller to free
 * for (const r of freed) await alloc.freeBlocks(tx, r.start, r.length);
 * const { iBlock, blocksDelta } = await tree.finish();
 * ```
 */
export class ExtentTreeEditor implements FileMapEditor {
  /** The mapping kind, for callers holding a {@link FileMapEditor}. */
  readonly kind = "extents" as const;
  readonly #tx: Transaction;
  readonly #alloc: Allocator;
  readonly #sb: Superblock;
  readonly #ino: number;
  readonly #generation: number;
  readonly #iBlock: Uint8Array;
  readonly #per: number;
  readonly #checkCsum: boolean;
  #goal: number | undefined;
  /**
   * Nodes already read and checked (or written) by this editor, by block: a change reads the
   * same path several times (look up, insert, mark written), and only this editor changes
   * the tree while it lives.
   */
  #nodes = new Map<number, { depth: number; entries: Entry[] }>();
  #dataDelta = 0;
  #treeDelta = 0;

  /** An editor of the tree whose root is `options.iBlock`. */
  constructor(
    tx: Transaction,
    alloc: Allocator,
    sb: Superblock,
    options: ExtentTreeEditorOptions,
  ) {
    this.#tx = tx;
    this.#alloc = alloc;
    this.#sb = sb;
    this.#ino = options.ino;
    this.#generation = options.generation;
    this.#iBlock = Uint8Array.from(options.iBlock.subarray(0, 60));
    this.#per = extentsPerBlock(sb.blockSize);
    this.#checkCsum = sb.hasMetadataCsum && !options.ignoreChecksum;
    this.#goal = options.goal;
  }

  /** The tree's depth now (0: every extent is in `i_block`). */
  get depth(): number {
    return this.#readRoot().depth;
  }

  /** Blocks the tree's nodes gained (negative: lost) so far. */
  get treeBlocksDelta(): number {
    return this.#treeDelta;
  }

  /** The extent holding logical block `lb`, or undefined (a hole). */
  async lookup(lb: number): Promise<FileExtent | undefined> {
    const list = await this.extentsIn(lb, lb + 1);
    return list[0];
  }

  /** The extents that meet logical blocks `[from, to)`, in order (whole, not clipped). */
  async extentsIn(from: number, to: number): Promise<FileExtent[]> {
    if (to <= from) return [];
    const levels = await this.#gather(from, Math.min(to, LOGICAL_LIMIT));
    const out: FileExtent[] = [];
    for (const leaf of levels.at(-1)!) {
      for (const e of leaf.entries as FileExtent[]) {
        if (e.logical < to && e.logical + e.length > from) out.push({ ...e });
      }
    }
    return out;
  }

  /** The last extent starting before logical block `lb` (a goal for allocating at `lb`). */
  async before(lb: number): Promise<FileExtent | undefined> {
    if (lb <= 0) return undefined;
    const levels = await this.#gather(lb - 1, lb);
    let best: FileExtent | undefined;
    for (const leaf of levels.at(-1)!) {
      for (const e of leaf.entries as FileExtent[]) if (e.logical < lb) best = e;
    }
    return best && { ...best };
  }

  /**
   * Maps new extents (sorted, each inside a hole of the file). Neighbours continuing each other
   * are merged; an overlap is `INVALID`.
   */
  async insert(extents: FileExtent[]): Promise<void> {
    if (extents.length === 0) return;
    validateExtents(extents, this.#sb.blocksCount);
    const from = extents[0].logical;
    const last = extents[extents.length - 1];
    this.#goal = extents[0].physical;
    await this.#edit(from, last.logical + last.length, (old) => insertExtents(old, extents));
    for (const e of extents) this.#dataDelta += e.length;
  }

  /**
   * Unmaps logical blocks `[from, to)`; returns the physical runs that were mapped there (the
   * caller frees them).
   */
  async remove(from: number, to: number): Promise<Extent[]> {
    to = Math.min(to, LOGICAL_LIMIT);
    if (to <= from) return [];
    let removed: Extent[] = [];
    await this.#edit(from, to, (old) => {
      const r = removeRange(old, from, to);
      removed = r.removed;
      return r.kept;
    });
    for (const r of removed) this.#dataDelta -= r.length;
    return removed;
  }

  /** Marks logical blocks `[from, to)` written: unwritten extents there are split and converted. */
  async markWritten(from: number, to: number): Promise<void> {
    to = Math.min(to, LOGICAL_LIMIT);
    if (to <= from) return;
    await this.#edit(from, to, (old) => markWritten(old, from, to));
  }

  /** The new `i_block`, and the blocks (data and tree) the inode gained, negative if it lost. */
  finish(): Promise<{ iBlock: Uint8Array; blocksDelta: number }> {
    return Promise.resolve({
      iBlock: Uint8Array.from(this.#iBlock),
      blocksDelta: this.#dataDelta + this.#treeDelta,
    });
  }

  #readRoot(): Node {
    const h = parseExtentHeader(this.#iBlock, extentNodeWhere(this.#ino, null));
    const node: Node = {
      block: null,
      depth: h.depth,
      entries: [],
      lo: 0,
      hi: LOGICAL_LIMIT,
      rightmost: true,
    };
    if (h.depth > 0 && h.entries === 0) {
      // Nothing below an empty index root: treat it as an empty leaf.
      node.depth = 0;
      return node;
    }
    node.entries = decodeExtentNode(this.#sb, this.#ino, null, this.#iBlock, {
      lo: 0,
      hi: LOGICAL_LIMIT,
    }).entries;
    return node;
  }

  async #readNode(
    block: number,
    depth: number,
    lo: number,
    hi: number,
    rightmost: boolean,
    visited: Set<number>,
  ): Promise<Node> {
    const where = extentNodeWhere(this.#ino, block);
    if (visited.has(block)) throw new CorruptError(where, "block is referenced twice");
    visited.add(block);
    const known = this.#nodes.get(block);
    if (known) {
      if (known.depth !== depth) {
        throw new CorruptError(where, `depth ${known.depth}, expected ${depth}`);
      }
      return { block, depth, entries: known.entries, lo, hi, rightmost };
    }
    const entries = checkExtentBlock(
      this.#sb,
      { ino: this.#ino, generation: this.#generation },
      block,
      await this.#tx.read(block),
      { depth, lo, hi },
      { ignoreChecksum: !this.#checkCsum },
    );
    this.#nodes.set(block, { depth, entries });
    return { block, depth, entries, lo, hi, rightmost };
  }

  /**
   * The nodes, level by level from the root, whose key ranges meet `[lo, hi)`. At each level
   * they are consecutive and their parents are the previous level's nodes.
   */
  async #gather(lo: number, hi: number): Promise<Node[][]> {
    const visited = new Set<number>();
    const root = this.#readRoot();
    const levels: Node[][] = [[root]];
    for (let d = root.depth; d > 0; d--) {
      const next: Node[] = [];
      for (const n of levels[levels.length - 1]) {
        const es = n.entries as IndexEntry[];
        for (let i = 0; i < es.length; i++) {
          const cl = i === 0 ? n.lo : es[i].logical;
          const ch = i + 1 < es.length ? es[i + 1].logical : n.hi;
          if (cl < hi && ch > lo) {
            const last = n.rightmost && i === es.length - 1;
            next.push(await this.#readNode(es[i].child, d - 1, cl, ch, last, visited));
          }
        }
      }
      levels.push(next);
    }
    return levels;
  }

  /**
   * Applies `fn` to the extents of the leaves meeting `[from - 1, to + 1)` and writes the
   * result back: changed leaves, then their parents' keys, up to the root.
   */
  async #edit(from: number, to: number, fn: (old: FileExtent[]) => FileExtent[]): Promise<void> {
    const levels = await this.#gather(Math.max(0, from - 1), Math.min(LOGICAL_LIMIT, to + 1));
    const leaves = levels[levels.length - 1];
    const old = leaves.flatMap((n) => n.entries as FileExtent[]);
    const changed = fn(old.map((e) => ({ ...e })));
    if (sameEntries(old, changed)) return;
    if (this.#goal === undefined) this.#goal = changed[0]?.physical ?? old[0]?.physical;
    let replacement: Entry[] = changed;
    for (let L = levels.length - 1; L >= 1; L--) {
      const nodes = levels[L];
      const children = await this.#rewriteLevel(nodes, replacement);
      const siblings = levels[L - 1].flatMap((p) => p.entries as IndexEntry[]);
      const a = siblings.findIndex((e) => e.child === nodes[0].block);
      replacement = [...siblings.slice(0, a), ...children, ...siblings.slice(a + nodes.length)];
    }
    await this.#setRoot(levels[0][0], replacement);
  }

  /** Writes one level's new nodes; returns the index entries their parents need. */
  async #rewriteLevel(nodes: Node[], entries: Entry[]): Promise<IndexEntry[]> {
    const depth = nodes[0].depth;
    const groups = distribute(nodes, entries, this.#per, nodes[nodes.length - 1].rightmost);
    const kept = new Set(groups.map((g) => g.reuse));
    for (const n of nodes) if (!kept.has(n)) await this.#freeNode(n.block!);
    const out: IndexEntry[] = [];
    for (const g of groups) {
      let block: number;
      if (g.reuse) {
        block = g.reuse.block!;
        if (!sameEntries(g.reuse.entries, g.entries)) {
          this.#encode(block, await this.#tx.getWritable(block), g.entries, depth);
        }
      } else {
        block = await this.#newNode();
        this.#encode(block, this.#tx.newBlock(block), g.entries, depth);
      }
      out.push({ logical: g.entries[0].logical, child: block });
    }
    return out;
  }

  /** Puts `entries` in the root: pushed down a level while they overflow it, pulled up a level
   * while a single child fits in it. */
  async #setRoot(root: Node, entries: Entry[]): Promise<void> {
    let depth = entries.length === 0 ? 0 : root.depth;
    let list = entries;
    while (list.length > ROOT_MAX) {
      if (depth + 1 > MAX_EXTENT_DEPTH) {
        throw new Ext4Error(
          "NO_SPACE",
          `inode ${this.#ino}: the extent tree would be deeper than ${MAX_EXTENT_DEPTH}`,
        );
      }
      const up: IndexEntry[] = [];
      for (let at = 0; at < list.length; at += this.#per) {
        const chunk = list.slice(at, at + this.#per);
        const block = await this.#newNode();
        this.#encode(block, this.#tx.newBlock(block), chunk, depth);
        up.push({ logical: chunk[0].logical, child: block });
      }
      list = up;
      depth++;
    }
    while (depth > 0 && list.length === 1) {
      const child = (list[0] as IndexEntry).child;
      const node = await this.#readNode(child, depth - 1, 0, LOGICAL_LIMIT, true, new Set());
      if (node.entries.length > ROOT_MAX) break;
      await this.#freeNode(child);
      list = node.entries;
      depth--;
    }
    encodeExtentNode(this.#iBlock, list, depth, ROOT_MAX);
  }

  #encode(block: number, img: Uint8Array, entries: Entry[], depth: number): void {
    this.#nodes.set(block, { depth, entries });
    encodeExtentNode(img, entries, depth, this.#per);
    setExtentTail(this.#sb, this.#ino, this.#generation, img);
    // A node may change without the inode's record (its block map is derived from both).
    touchInode(this.#tx, this.#ino);
  }

  async #newNode(): Promise<number> {
    const goal = this.#goal ??
      this.#sb.firstDataBlock +
        Math.floor((this.#ino - 1) / this.#sb.inodesPerGroup) * this.#sb.blocksPerGroup;
    const [got] = await this.#alloc.allocateBlocks(this.#tx, goal, 1);
    this.#goal = got.start + 1;
    this.#treeDelta++;
    return got.start;
  }

  async #freeNode(block: number): Promise<void> {
    await this.#alloc.freeBlocks(this.#tx, block, 1, { metadata: true });
    this.#nodes.delete(block);
    this.#treeDelta--;
  }
}
