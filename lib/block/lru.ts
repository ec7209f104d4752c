/**
 * A small bounded cache with least-recently-used behaviour, for the inode, block-map,
 * metadata-block and lookup caches.
 *
 * Two generations instead of a strict LRU list: entries are added to the young map; a hit in
 * the old map moves the entry to the young one; when the young map holds half the capacity it
 * becomes the old map and the previous old map is dropped. Every operation is O(1) without
 * deleting from a Map on each hit (V8 Maps slow down under constant delete/re-insert churn).
 *
 * The capacity is a total weight: by default every entry weighs 1 (a count), with a `weigh`
 * function it is what each entry costs — its estimated bytes, so a cache of values of varying
 * size (block maps, lookups, name maps) is bounded in memory, not in entries.
 *
 * @module
 */

/**
 * A map of at most `capacity` weight (entries, or bytes with a `weigh` function) that forgets
 * the least recently used entries first.
 *
 * @example
 * ```ts
 * import { Lru } from "./lru.ts";
 * const c = new Lru<number, string>(4);
 * c.set(1, "a"); c.set(2, "b"); c.get(1); c.set(3, "c"); c.set(4, "d");
 * console.log(c.get(1), c.get(2)); // a undefined
 * const bytes = new Lru<string, Uint8Array>(8192, (v) => v.length);
 * bytes.set("big", new Uint8Array(5000)); // over half the capacity: not kept
 * bytes.set("small", new Uint8Array(100));
 * console.log(bytes.get("big"), bytes.weight); // undefined 100
 * ```
 */
export class Lru<K, V> {
  /** Most weight held at once (entries without a `weigh` function). */
  readonly capacity: number;
  #young = new Map<K, V>();
  #old = new Map<K, V>();
  #youngWeight = 0;
  #oldWeight = 0;
  readonly #half: number;
  readonly #weigh: ((value: V) => number) | null;

  /**
   * A cache of at most `capacity` weight (at least 2). Without `weigh` each entry weighs 1;
   * with it, an entry weighs `weigh(value)` (at least 1), and one heavier than half the
   * capacity is not kept at all. A value's weight must not change while it is held.
   */
  constructor(capacity: number, weigh?: (value: V) => number) {
    this.capacity = Math.max(2, Math.floor(capacity));
    this.#half = Math.floor(this.capacity / 2);
    this.#weigh = weigh ?? null;
  }

  /** The value for `key`, marking it recently used; undefined if absent. */
  get(key: K): V | undefined {
    const v = this.#young.get(key);
    if (v !== undefined) return v;
    const o = this.#old.get(key);
    if (o !== undefined) {
      this.#old.delete(key);
      const w = this.#weightOf(o);
      this.#oldWeight -= w;
      this.#insert(key, o, w);
    }
    return o;
  }

  /** Stores `value` for `key`, possibly forgetting older entries. */
  set(key: K, value: V): void {
    const w = this.#weightOf(value);
    this.delete(key);
    if (w > this.#half) return; // would push out everything else: not kept
    this.#insert(key, value, w);
  }

  #weightOf(value: V): number {
    return this.#weigh ? Math.max(1, this.#weigh(value)) : 1;
  }

  #insert(key: K, value: V, weight: number): void {
    if (this.#youngWeight + weight > this.#half) {
      this.#old = this.#young;
      this.#oldWeight = this.#youngWeight;
      this.#young = new Map();
      this.#youngWeight = 0;
    }
    this.#young.set(key, value);
    this.#youngWeight += weight;
  }

  /** Forgets `key`. */
  delete(key: K): void {
    const y = this.#young.get(key);
    if (y !== undefined) {
      this.#young.delete(key);
      this.#youngWeight -= this.#weightOf(y);
    }
    const o = this.#old.get(key);
    if (o !== undefined) {
      this.#old.delete(key);
      this.#oldWeight -= this.#weightOf(o);
    }
  }

  /** Forgets everything. */
  clear(): void {
    this.#young = new Map();
    this.#old = new Map();
    this.#youngWeight = 0;
    this.#oldWeight = 0;
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

  /** Total weight held (the entry count without a `weigh` function); at most {@link capacity}. */
  get weight(): number {
    return this.#youngWeight + this.#oldWeight;
  }
}
