/**
 * `node:events` for the bundle (see scripts/install.ts `NODE_SHIMS`): the part of
 * EventEmitter commander uses (on, once, off, emit, listenerCount), so the installed command
 * does not load Deno's Node compatibility layer at start-up.
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
type Listener = (...args: any[]) => void;

/** A minimal synchronous event emitter with Node's semantics for on/emit. */
export class EventEmitter {
  #listeners = new Map<string | symbol, Listener[]>();

  /** Adds `fn` for `event`. */
  on(event: string | symbol, fn: Listener): this {
    this.#listeners.set(event, [...(this.#listeners.get(event) ?? []), fn]);
    return this;
  }

  /** Same as {@link EventEmitter.on}. */
  addListener(event: string | symbol, fn: Listener): this {
    return this.on(event, fn);
  }

  /** Adds `fn` for the next `event` only. */
  once(event: string | symbol, fn: Listener): this {
    const once: Listener = (...args) => {
      this.off(event, once);
      fn.apply(this, args);
    };
    return this.on(event, once);
  }

  /** Removes `fn` from `event`. */
  off(event: string | symbol, fn: Listener): this {
    const list = this.#listeners.get(event) ?? [];
    const at = list.lastIndexOf(fn);
    if (at >= 0) this.#listeners.set(event, list.toSpliced(at, 1));
    return this;
  }

  /** Same as {@link EventEmitter.off}. */
  removeListener(event: string | symbol, fn: Listener): this {
    return this.off(event, fn);
  }

  /** Removes every listener of `event`, or of every event. */
  removeAllListeners(event?: string | symbol): this {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
    return this;
  }

  /** Calls the listeners of `event` in order; false when there were none. */
  emit(event: string | symbol, ...args: unknown[]): boolean {
    const list = this.#listeners.get(event);
    if (!list?.length) {
      if (event === "error") throw args[0] instanceof Error ? args[0] : new Error(String(args[0]));
      return false;
    }
    for (const fn of list) fn.apply(this, args);
    return true;
  }

  /** The listeners of `event`. */
  listeners(event: string | symbol): Listener[] {
    return [...(this.#listeners.get(event) ?? [])];
  }

  /** How many listeners `event` has. */
  listenerCount(event: string | symbol): number {
    return this.#listeners.get(event)?.length ?? 0;
  }
}

export default { EventEmitter };
