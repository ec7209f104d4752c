/**
 * Crash points of a recorded write log (lib/block/write_log_device.ts): the images a power cut
 * can leave on a device that honours flushes and nothing else. At a flush boundary the device
 * holds exactly the writes before it. Between two flushes it may have made any subset of the
 * writes issued since the last flush durable, each block on its own (a write spanning several
 * blocks can be torn), so a torn image is a flush-boundary prefix plus a random subset of the
 * blocks written after it and before the next flush.
 *
 * What a workload made durable is told by log positions (`WriteLogDevice.position` after an
 * fsync returned): see {@link mustHold}.
 *
 * @module
 */

import type { WriteLogEntry } from "./write_log_device.ts";

/** The part of a recorded write that lies in one block: bytes `[offset, offset + length)`. */
export interface WritePiece {
  /** Index of the write in the log. */
  readonly entry: number;
  /** Device byte offset of the piece. */
  readonly offset: number;
  readonly length: number;
}

/** One state a power cut can leave. */
export interface CrashPoint {
  /** `flush`: a flush-boundary prefix; `torn`: such a prefix plus some later writes' blocks. */
  readonly kind: "flush" | "torn";
  /** Entries `[0, durable)` are wholly on disk (0 or the index just after a flush). */
  readonly durable: number;
  /**
   * Every write in the image was issued before entry `end`: the next flush (or the end of the
   * log); equal to `durable` for a flush boundary.
   */
  readonly end: number;
  /** Torn points: the pieces of the writes in `[durable, end)` that landed, in log order. */
  readonly landed: readonly WritePiece[];
  /** Torn points: how many pieces the writes in `[durable, end)` had in all. */
  readonly pieces: number;
}

/** How {@link tornCrashPoints} draws its subsets. */
export interface TornOptions {
  /** Granularity of tearing in bytes: writes are cut at multiples of it (device offsets). */
  blockSize: number;
  /** Distinct subsets drawn per flush interval (fewer when the interval has fewer). */
  perInterval: number;
  /** Seed of the generator: the same log and options give the same points. */
  seed: number;
}

/**
 * A small deterministic pseudo-random generator (mulberry32): numbers in [0, 1).
 *
 * @example
 * ```ts
 * import { seededRandom } from "./crash_points.ts";
 * const a = seededRandom(7), b = seededRandom(7);
 * console.log(a() === b()); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A crash point for every flush boundary of the log: what a power cut right after each flush
 * leaves.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { WriteLogDevice } from "./write_log_device.ts";
 * import { flushCrashPoints } from "./crash_points.ts";
 * const log = new WriteLogDevice(new MemoryBlockDevice(new Uint8Array(4096)));
 * await log.write(0, new Uint8Array(512));
 * await log.flush();
 * console.log(flushCrashPoints(log.entries).map((p) => p.durable)); // [ 2 ]
 * ```
 */
export function flushCrashPoints(entries: readonly WriteLogEntry[]): CrashPoint[] {
  const out: CrashPoint[] = [];
  entries.forEach((e, i) => {
    if (e.kind === "flush") {
      out.push({ kind: "flush", durable: i + 1, end: i + 1, landed: [], pieces: 0 });
    }
  });
  return out;
}

/** The writes between two flushes: entries `[start, end)`. */
function flushIntervals(entries: readonly WriteLogEntry[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  entries.forEach((e, i) => {
    if (e.kind !== "flush") return;
    if (i > start) out.push([start, i]);
    start = i + 1;
  });
  if (start < entries.length) out.push([start, entries.length]);
  return out;
}

/** The writes of entries `[start, end)` cut at multiples of `blockSize`. */
function piecesOf(
  entries: readonly WriteLogEntry[],
  start: number,
  end: number,
  blockSize: number,
): WritePiece[] {
  const out: WritePiece[] = [];
  for (let i = start; i < end; i++) {
    const e = entries[i];
    if (e.kind !== "write") continue;
    const last = e.offset + e.data.length;
    for (let at = e.offset; at < last;) {
      const next = Math.min(last, (Math.floor(at / blockSize) + 1) * blockSize);
      out.push({ entry: i, offset: at, length: next - at });
      at = next;
    }
  }
  return out;
}

/**
 * Torn crash points: for each flush interval with at least two block pieces, up to
 * `perInterval` distinct random proper subsets (neither empty nor whole: those are flush
 * boundaries) of the pieces written in it, on top of the prefix up to the interval's start;
 * every proper subset when there are no more than `perInterval`.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { WriteLogDevice } from "./write_log_device.ts";
 * import { tornCrashPoints } from "./crash_points.ts";
 * const log = new WriteLogDevice(new MemoryBlockDevice(new Uint8Array(8192)));
 * await log.write(0, new Uint8Array(8192)); // two 4 KiB blocks
 * await log.flush();
 * const torn = tornCrashPoints(log.entries, { blockSize: 4096, perInterval: 5, seed: 1 });
 * console.log(torn.length, torn[0].landed.length); // 2 1
 * ```
 */
export function tornCrashPoints(
  entries: readonly WriteLogEntry[],
  options: TornOptions,
): CrashPoint[] {
  const random = seededRandom(options.seed);
  const out: CrashPoint[] = [];
  for (const [start, end] of flushIntervals(entries)) {
    const pieces = piecesOf(entries, start, end, options.blockSize);
    const n = pieces.length;
    if (n < 2) continue;
    const possible = n >= 30 ? Infinity : 2 ** n - 2;
    const wanted = Math.min(options.perInterval, possible);
    if (possible <= options.perInterval) {
      // Few enough to take them all.
      for (let mask = 1; mask <= possible; mask++) {
        const landed = pieces.filter((_, i) => (mask >> i) & 1);
        out.push({ kind: "torn", durable: start, end, landed, pieces: n });
      }
      continue;
    }
    const seen = new Set<string>();
    for (let tries = 0; seen.size < wanted && tries < wanted * 8; tries++) {
      // A density per subset, so that both nearly empty and nearly whole subsets come up.
      const density = 0.05 + 0.9 * random();
      const pick = pieces.map(() => random() < density);
      const count = pick.filter(Boolean).length;
      // Neither nothing nor everything landed: flip one piece.
      if (count === 0 || count === n) {
        const i = Math.floor(random() * n);
        pick[i] = !pick[i];
      }
      const key = pick.map((p) => (p ? "1" : "0")).join("");
      if (seen.has(key)) continue;
      seen.add(key);
      const landed = pieces.filter((_, i) => pick[i]);
      out.push({ kind: "torn", durable: start, end, landed, pieces: n });
    }
  }
  return out;
}

/**
 * The image of each crash point over `base` (the device before the log), in the order of
 * their `durable` prefixes: built incrementally, each image a fresh copy.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * import { WriteLogDevice } from "./write_log_device.ts";
 * import { crashImages, flushCrashPoints } from "./crash_points.ts";
 * const base = new Uint8Array(1024);
 * const log = new WriteLogDevice(new MemoryBlockDevice(base.slice()));
 * await log.write(0, new Uint8Array([7]));
 * await log.flush();
 * for (const { image } of crashImages(base, log.entries, flushCrashPoints(log.entries))) {
 *   console.log(image[0]); // 7
 * }
 * ```
 */
export function* crashImages(
  base: Uint8Array,
  entries: readonly WriteLogEntry[],
  points: readonly CrashPoint[],
): Generator<{ point: CrashPoint; image: Uint8Array }> {
  const ordered = [...points].sort((a, b) => a.durable - b.durable);
  const running = Uint8Array.from(base);
  let applied = 0;
  for (const point of ordered) {
    for (; applied < point.durable; applied++) {
      const e = entries[applied];
      if (e.kind === "write") running.set(e.data, e.offset);
    }
    const image = Uint8Array.from(running);
    for (const p of point.landed) {
      const e = entries[p.entry];
      if (e.kind !== "write") continue;
      const from = p.offset - e.offset;
      image.set(e.data.subarray(from, from + p.length), p.offset);
    }
    yield { point, image };
  }
}

/**
 * Whether a crash image must show a state that became durable at log position `syncedAt`
 * (the log's position when the fsync or commit making it durable returned) and that nothing
 * changed before position `changedAt` (the log's position when the next operation touching it
 * began; `Infinity` when none did): the flush that made it durable is in the image's prefix,
 * and no write of the image was issued after the change began.
 *
 * @example
 * ```ts
 * import { mustHold } from "./crash_points.ts";
 * const point = { kind: "flush", durable: 10, end: 10, landed: [], pieces: 0 } as const;
 * console.log(mustHold(point, 8, Infinity), mustHold(point, 12, Infinity)); // true false
 * console.log(mustHold(point, 8, 9)); // false: a later change may have reached the disk
 * ```
 */
export function mustHold(point: CrashPoint, syncedAt: number, changedAt: number): boolean {
  return syncedAt <= point.durable && point.end <= changedAt;
}
