/**
 * The write path's counterpart of the kernel's mbcache for xattr blocks: a bounded in-memory
 * index from block hash (`h_hash`) to the xattr blocks the writer has read or written in this
 * session, so an inode whose out-of-inode attributes equal another's can share its block.
 *
 * Like mbcache it is only a cache: sharing is best effort, and every candidate is checked
 * again on the block itself before it is used (header, checksum, refcount below the limit,
 * allocated in the bitmap, identical entries). One index belongs to each {@link BlockCache}
 * (one writer session). A transaction that is discarded puts it back as it was when the
 * transaction first used it, since blocks it named since may then be free or hold something
 * else.
 *
 * @module
 */

import type { BlockCache, Transaction } from "../txn/transaction.ts";

/** Most distinct hashes remembered. */
const HASHES = 4096;
/** Most blocks remembered per hash (several when a full block was followed by another). */
const BLOCKS_PER_HASH = 8;

/**
 * Block hash → xattr blocks carrying it, bounded (least recently used hashes forgotten).
 *
 * @example
 * ```ts
 * import { XattrBlockIndex } from "./xattr_share.ts";
 * const index = new XattrBlockIndex();
 * index.add(0x1234, 700);
 * console.log(index.candidates(0x1234)); // [ 700 ]
 * ```
 */
export class XattrBlockIndex {
  /** Most distinct hashes held. */
  readonly capacity: number;
  #byHash = new Map<number, number[]>();

  /** An index of at most `capacity` hashes. */
  constructor(capacity = HASHES) {
    this.capacity = Math.max(1, capacity);
  }

  /** Remembers that `block` carries `hash` (hash 0 means "never share" and is ignored). */
  add(hash: number, block: number): void {
    if (hash === 0) return;
    const list = this.#byHash.get(hash) ?? [];
    this.#byHash.delete(hash); // re-inserted as the most recent
    const rest = list.filter((b) => b !== block);
    this.#byHash.set(hash, [block, ...rest].slice(0, BLOCKS_PER_HASH));
    while (this.#byHash.size > this.capacity) {
      this.#byHash.delete(this.#byHash.keys().next().value as number);
    }
  }

  /** Forgets `block` under `hash`. */
  remove(hash: number, block: number): void {
    const list = this.#byHash.get(hash);
    if (!list) return;
    const rest = list.filter((b) => b !== block);
    if (rest.length) this.#byHash.set(hash, rest);
    else this.#byHash.delete(hash);
  }

  /** The blocks remembered for `hash`, most recent first (a copy). */
  candidates(hash: number): number[] {
    return hash === 0 ? [] : [...(this.#byHash.get(hash) ?? [])];
  }

  /** Number of hashes held. */
  get size(): number {
    return this.#byHash.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#byHash.clear();
  }

  /** @internal A copy to go back to (lists are replaced, never changed, so a shallow copy). */
  snapshot(): Map<number, number[]> {
    return new Map(this.#byHash);
  }

  /** @internal Goes back to a {@link XattrBlockIndex.snapshot}. */
  restore(snapshot: Map<number, number[]>): void {
    this.#byHash = new Map(snapshot);
  }
}

const indexes = new WeakMap<BlockCache, XattrBlockIndex>();
const watched = new WeakSet<Transaction>();

/**
 * The xattr block index of the session `tx` belongs to (one per block cache), put back as it
 * was if `tx` is discarded.
 *
 * @example
 * ```ts ignore
 * const index = xattrBlockIndex(tx);
 * for (const b of index.candidates(hash)) ...
 * ```
 */
export function xattrBlockIndex(tx: Transaction): XattrBlockIndex {
  let index = indexes.get(tx.cache);
  if (!index) {
    index = new XattrBlockIndex();
    indexes.set(tx.cache, index);
  }
  if (!watched.has(tx)) {
    watched.add(tx);
    const i = index;
    const before = i.snapshot();
    tx.onAbort(() => i.restore(before));
  }
  return index;
}
