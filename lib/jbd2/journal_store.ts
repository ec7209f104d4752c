/**
 * The journal as recovery reads it: {@link JournalStore} (blocks numbered from 0, internal or
 * external journal alike) and {@link LogReader}, the window recovery reads the log through —
 * bounded by the journal's length, wrapping at the end of the log, with a bounded cache of the
 * metadata blocks (descriptor, commit, revoke) that every pass reads again.
 *
 * @module
 */

import type { JournalSuperblock } from "./superblock.ts";

/**
 * The journal as recovery sees it: fixed-size blocks numbered from 0 (block 0 holds the
 * journal superblock). An internal journal maps them through the journal inode; an external
 * one is a range of another device.
 */
export interface JournalStore {
  /** Bytes per block (the filesystem's block size). */
  readonly blockSize: number;
  /** Blocks available to the journal (`j_total_len` before `s_maxlen` caps it). */
  readonly blockCount: number;
  /** Reads journal block `n` (a new buffer the caller may keep). */
  readBlock(n: number): Promise<Uint8Array>;
  /**
   * Journal block `n` without a copy, when the store can give it: a view the caller must
   * neither modify nor rely on after a write to the journal. Recovery reads every logged
   * block once or twice; copying each would dominate the time of a large replay.
   */
  peekBlock?(n: number): Promise<Uint8Array>;
  /**
   * Like `peekBlock`, for a block read on its own (the fast-commit area's first block): the
   * store need not read the blocks around it.
   */
  peekOneBlock?(n: number): Promise<Uint8Array>;
  /** Writes journal block `n` (used to reset the journal superblock after replay). */
  writeBlock(n: number, data: Uint8Array): Promise<void>;
  /**
   * Writes journal blocks `n`, `n+1`, … (not wrapping), in as few device writes as their
   * places allow; without it the writer writes them one by one.
   */
  writeBlocks?(n: number, blocks: readonly Uint8Array[]): Promise<void>;
  /** Makes the journal's writes durable. */
  flush(): Promise<void>;
  /** The filesystem block holding journal block `n` for an internal journal, else undefined. */
  fsBlock(n: number): number | undefined;
  /** Human-readable origin, e.g. "inode 8" or "external journal /dev/sdb1". */
  readonly description: string;
}

/**
 * A failure the kernel's recovery returns from a pass: recovery refuses before writing.
 *
 * @example
 * ```ts ignore
 * throw new RecoveryFailure(`invalid checksum recovering descriptor block ${logBlock}`);
 * ```
 */
export class RecoveryFailure extends Error {
  constructor(message: string) {
    super(message);
  }
}

/** True when `b` starts with the journal magic (a metadata block), without allocating. */
function isJournalBlock(b: Uint8Array): boolean {
  return b[0] === 0xc0 && b[1] === 0x3b && b[2] === 0x39 && b[3] === 0x98;
}

/**
 * Reads the log of one journal for one recovery: blocks past the journal are a
 * {@link RecoveryFailure}, as is a block the store cannot read.
 *
 * @example
 * ```ts ignore
 * const reader = new LogReader(store, jsb);
 * const block = await reader.read(reader.wrap(jsb.start + 1));
 * ```
 */
export class LogReader {
  readonly store: JournalStore;
  /** One past the last block of the main log. */
  readonly last: number;
  readonly first: number;
  /** `j_total_len`: blocks readable (capped by `s_maxlen`). */
  readonly totalLen: number;
  #cache = new Map<number, Uint8Array>();

  constructor(store: JournalStore, jsb: JournalSuperblock) {
    this.store = store;
    this.first = jsb.first;
    this.last = jsb.last;
    this.totalLen = Math.min(store.blockCount, jsb.maxLen);
  }
  async read(n: number, alone = false): Promise<Uint8Array> {
    if (n >= this.totalLen || n < 0) {
      throw new RecoveryFailure(
        `corrupted journal superblock: log block ${n} is beyond the journal (${this.totalLen} blocks)`,
      );
    }
    const hit = this.#cache.get(n);
    if (hit) return hit;
    let b: Uint8Array;
    try {
      // Nothing here modifies a block it reads: a view is enough.
      const store = this.store;
      b = await (alone && store.peekOneBlock
        ? store.peekOneBlock(n)
        : store.peekBlock
        ? store.peekBlock(n)
        : store.readBlock(n));
    } catch (e) {
      throw new RecoveryFailure(
        `cannot read journal block ${n}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    // Metadata blocks are read by every pass: keep a bounded cache of them.
    if (this.#cache.size < 4096 && isJournalBlock(b)) {
      b = b.slice();
      this.#cache.set(n, b);
    }
    return b;
  }

  wrap(n: number): number {
    return n >= this.last ? n - (this.last - this.first) : n;
  }
}
