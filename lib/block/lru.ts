/**
 * A small bounded cache with least-recently-used behaviour, for the inode, block-map,
 * metadata-block and lookup caches.
 *
 * Two generations instead of a strict LRU list: entries are added to the young map; a hit in
 * the old map moves the entry to the young one; when the young map holds half the capacity it
 * becomes the old map and the previous old map is dropped. Every operation is O(1) without
 * deleting from a Map on each hit (V8 Maps slow down under constant delete/re-insert churn).
 *
 * @module
 */

/**
 * A map of at most `capacity` entries that forgets the least recently used ones first.
 *
 * @example
 * ```ts
 * import { Lru } from "./lru.ts";
 * const c = new Lru<number, string>(4);
 * c.set(1, "a"); c.set(2, "b"); c.get(1); c.set(3, "c"); c.set(4, "d");
 * console.log(c.get(1), c.get(2)); // a undefined
 * ```
 */
export class Lru<K, V> {
  /** Most entries held at once. */
  readonly capacity: number;
  #young = new Map<K, V>();
  #old = new Map<K, V>();
  readonly #half: number;

  /** A cache of at most `capacity` entries (at least 2). */
  constructor(capacity: number) {
    this.capacity = Math.max(2, capacity);
    this.#half = Math.floor(this.capacity / 2);
  }

  /** The value for `key`, marking it recently used; undefined if absent. */
  get(key: K): V | undefined {
    const v = this.#young.get(key);
    if (v !== undefined) return v;
    const o = this.#old.get(key);
    if (o !== undefined) {
      this.#old.delete(key);
      this.#insert(key, o);
    }
    return o;
  }

  /** Stores `value` for `key`, possibly forgetting older entries. */
  set(key: K, value: V): void {
    if (this.#young.has(key)) {
      this.#young.set(key, value);
      return;
    }
    this.#old.delete(key);
    this.#insert(key, value);
  }

  #insert(key: K, value: V): void {
    if (this.#young.size >= this.#half) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, value);
  }

  /** Forgets `key`. */
  delete(key: K): void {
    this.#young.delete(key);
    this.#old.delete(key);
  }

  /** Forgets everything. */
  clear(): void {
    this.#young = new Map();
    this.#old = new Map();
  }

  /** The keys held, most recent generation first. */
  *keys(): IterableIterator<K> {
    yield* this.#young.keys();
    yield* this.#old.keys();
  }

  /** Entries held. */
  get size(): number {
    return this.#young.size + this.#old.size;
  }
}
