/**
 * A small bounded least-recently-used map, for the inode, block-map and metadata-block caches.
 *
 * @module
 */

/**
 * A map that forgets its least recently used entry when it grows past `capacity`.
 *
 * @example
 * ```ts
 * import { Lru } from "./lru.ts";
 * const c = new Lru<number, string>(2);
 * c.set(1, "a"); c.set(2, "b"); c.get(1); c.set(3, "c");
 * console.log([...c.keys()]); // [ 1, 3 ]
 * ```
 */
export class Lru<K, V> {
  readonly capacity: number;
  #map = new Map<K, V>();

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity);
  }

  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.capacity) {
      this.#map.delete(this.#map.keys().next().value as K);
    }
  }

  delete(key: K): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  keys(): IterableIterator<K> {
    return this.#map.keys();
  }

  get size(): number {
    return this.#map.size;
  }
}
