/**
 * The block layer: the {@link BlockDevice} interface every part of ext4ts reads and writes
 * through, and the in-memory device used by tests and by overlays.
 *
 * Offsets and lengths are byte counts held in JavaScript numbers, exact up to 2^53 bytes
 * (8 PiB), far beyond any device this tool will meet.
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";

/**
 * A random-access store of bytes: an image file, a block device, memory, or a layer over
 * another device (the journal overlay, the write log used by crash tests).
 *
 * Reads and writes are asynchronous so that large transfers can leave the event loop free;
 * implementations may complete small ones synchronously.
 */
export interface BlockDevice {
  /** Size in bytes. */
  readonly size: number;
  /** Logical sector size in bytes (512 for image files). */
  readonly sectorSize: number;
  /** True when writes are refused (a read-only open or a write-protected device). */
  readonly readOnly: boolean;
  /** Fills `buffer` with the bytes at `offset`; throws `IO` on a short read or failure. */
  read(offset: number, buffer: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`; throws `READ_ONLY` on a read-only device. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable (fsync for files and block devices). */
  flush(): Promise<void>;
  /** Releases the device. Further calls fail. */
  close(): Promise<void>;
  /**
   * The smallest run worth discarding in bytes (the kernel's `discard_granularity`); 0 or absent
   * when the device cannot discard (see {@link canDiscard}).
   */
  readonly discardGranularity?: number;
  /**
   * Discards (TRIM) `[offset, offset+length)`: the device may forget those bytes, and reading
   * them afterwards returns zeroes or anything else. Throws `UNSUPPORTED` when the device
   * cannot discard, `READ_ONLY` on a read-only device.
   */
  discard?(offset: number, length: number): Promise<void>;
}

/**
 * True when `device` can discard (TRIM) ranges: it has {@link BlockDevice.discard} and a
 * discard granularity.
 *
 * @example
 * ```ts
 * import { canDiscard, MemoryBlockDevice } from "./block_device.ts";
 * console.log(canDiscard(new MemoryBlockDevice(new Uint8Array(4096)))); // false
 * console.log(canDiscard(new MemoryBlockDevice(new Uint8Array(4096), { discardGranularity: 512 }))); // true
 * ```
 */
export function canDiscard(
  device: BlockDevice,
): device is BlockDevice & {
  readonly discardGranularity: number;
  discard(offset: number, length: number): Promise<void>;
} {
  return (device.discardGranularity ?? 0) > 0 && typeof device.discard === "function";
}

/**
 * Writes blocks of `blockSize` bytes at their block numbers, one device write per run of
 * consecutive numbers (in the order given: a run continues while each number is the one
 * before plus one).
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice, writeBlockRuns } from "./block_device.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(8));
 * const b = (v: number) => new Uint8Array(2).fill(v);
 * await writeBlockRuns(dev, 2, [{ block: 1, bytes: b(7) }, { block: 2, bytes: b(8) }]);
 * console.log(dev.bytes); // Uint8Array(8) [ 0, 0, 7, 7, 8, 8, 0, 0 ]
 * ```
 */
export async function writeBlockRuns(
  device: BlockDevice,
  blockSize: number,
  blocks: readonly { block: number; bytes: Uint8Array }[],
): Promise<void> {
  for (let i = 0; i < blocks.length;) {
    let j = i + 1;
    while (j < blocks.length && blocks[j].block === blocks[j - 1].block + 1) j++;
    if (j - i === 1) {
      await device.write(blocks[i].block * blockSize, blocks[i].bytes);
    } else {
      const run = new Uint8Array((j - i) * blockSize);
      for (let k = i; k < j; k++) run.set(blocks[k].bytes, (k - i) * blockSize);
      await device.write(blocks[i].block * blockSize, run);
    }
    i = j;
  }
}

/**
 * Reads `length` bytes at `offset` into a new buffer.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice, readBytes } from "./block_device.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array([1, 2, 3, 4]));
 * console.log(await readBytes(dev, 1, 2)); // Uint8Array(2) [ 2, 3 ]
 * ```
 */
export async function readBytes(
  device: BlockDevice,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  await device.read(offset, buffer);
  return buffer;
}

/**
 * Read-ahead of blocks `first` … `first + count - 1` of `blockSize` bytes: the span between the
 * first and the last block `wanted` says to read goes to the device in one read, and `keep` is
 * called for each block of it that `wanted` still asks for afterwards, with a copy of its image
 * (a block cached meanwhile is left alone). Nothing is read for fewer than two blocks or past
 * the device; a failed read keeps nothing and is not an error (a read-ahead is a hint: the
 * block that was wanted is read on its own). Resolves to whether the read was made.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice, readAheadBlocks } from "./block_device.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(16).map((_, i) => i));
 * const kept = new Map<number, Uint8Array>([[0, new Uint8Array(2)]]);
 * await readAheadBlocks(dev, 2, 0, 3, (b) => !kept.has(b), (b, img) => kept.set(b, img));
 * console.log([...kept.keys()], kept.get(2)); // [ 0, 1, 2 ] Uint8Array(2) [ 4, 5 ]
 * ```
 */
export async function readAheadBlocks(
  device: BlockDevice,
  blockSize: number,
  first: number,
  count: number,
  wanted: (block: number) => boolean,
  keep: (block: number, image: Uint8Array) => void,
): Promise<boolean> {
  let from = first;
  let to = first + count;
  while (from < to && !wanted(from)) from++;
  while (to > from && !wanted(to - 1)) to--;
  if (to - from < 2 || !Number.isSafeInteger(from) || from < 0 || to * blockSize > device.size) {
    return false;
  }
  const buf = new Uint8Array((to - from) * blockSize);
  try {
    await device.read(from * blockSize, buf);
  } catch {
    return false;
  }
  for (let b = from; b < to; b++) {
    if (wanted(b)) keep(b, buf.slice((b - from) * blockSize, (b - from + 1) * blockSize));
  }
  return true;
}

/** Throws `IO` when `[offset, offset+length)` is not inside a device of `size` bytes. */
export function checkRange(size: number, offset: number, length: number, what = "device"): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > size) {
    throw new Ext4Error(
      "IO",
      `access beyond end of ${what}: offset ${offset} length ${length}, size ${size}`,
    );
  }
}

/**
 * A device held in memory. Used by tests, and as the base of overlays.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "./block_device.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(4096));
 * await dev.write(0, new Uint8Array([0xef, 0x53]));
 * const b = new Uint8Array(2);
 * await dev.read(0, b);
 * console.log(b); // Uint8Array(2) [ 239, 83 ]
 * ```
 */
export class MemoryBlockDevice implements BlockDevice {
  readonly sectorSize: number;
  readonly readOnly: boolean;
  readonly discardGranularity: number;
  #data: Uint8Array;
  #closed = false;

  /**
   * Serves `data` itself (not a copy): writes change it. Read-write with 512-byte sectors by
   * default; with a `discardGranularity` it discards (zeroes) ranges, as a loop device over a
   * file punches holes.
   */
  constructor(
    data: Uint8Array,
    options: { readOnly?: boolean; sectorSize?: number; discardGranularity?: number } = {},
  ) {
    this.#data = data;
    this.readOnly = options.readOnly ?? false;
    this.sectorSize = options.sectorSize ?? 512;
    this.discardGranularity = options.discardGranularity ?? 0;
  }

  get size(): number {
    return this.#data.length;
  }

  /** The backing bytes (shared, not copied). */
  get bytes(): Uint8Array {
    return this.#data;
  }

  // deno-lint-ignore require-await
  async read(offset: number, buffer: Uint8Array): Promise<void> {
    this.#checkOpen();
    checkRange(this.#data.length, offset, buffer.length);
    buffer.set(this.#data.subarray(offset, offset + buffer.length));
  }

  // deno-lint-ignore require-await
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkOpen();
    if (this.readOnly) throw new Ext4Error("READ_ONLY", "device is read-only");
    checkRange(this.#data.length, offset, data.length);
    this.#data.set(data, offset);
  }

  // deno-lint-ignore require-await
  async flush(): Promise<void> {
    this.#checkOpen();
  }

  /** Zeroes the range (UNSUPPORTED without a discard granularity). */
  // deno-lint-ignore require-await
  async discard(offset: number, length: number): Promise<void> {
    this.#checkOpen();
    if (this.discardGranularity === 0) {
      throw new Ext4Error("UNSUPPORTED", "this device cannot discard");
    }
    if (this.readOnly) throw new Ext4Error("READ_ONLY", "device is read-only");
    checkRange(this.#data.length, offset, length);
    this.#data.fill(0, offset, offset + length);
  }

  // deno-lint-ignore require-await
  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Ext4Error("IO", "device is closed");
  }
}

/**
 * Discards a range of `device` (see {@link BlockDevice.discard}); UNSUPPORTED when it cannot.
 * What the devices layered on another one forward a discard through.
 *
 * @example
 * ```ts
 * import { discardOn, MemoryBlockDevice } from "./block_device.ts";
 * const dev = new MemoryBlockDevice(new Uint8Array(4096).fill(7), { discardGranularity: 512 });
 * await discardOn(dev, 0, 512);
 * console.log(dev.bytes[0], dev.bytes[512]); // 0 7
 * ```
 */
export async function discardOn(
  device: BlockDevice,
  offset: number,
  length: number,
): Promise<void> {
  if (!canDiscard(device)) throw new Ext4Error("UNSUPPORTED", "the device cannot discard");
  await device.discard(offset, length);
}

/**
 * A window onto part of another device, e.g. a partition at `--offset` inside a disk image.
 * Closing it closes the underlying device.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice, OffsetBlockDevice, readBytes } from "./block_device.ts";
 * const disk = new MemoryBlockDevice(new Uint8Array([0, 0, 7, 8]));
 * const part = new OffsetBlockDevice(disk, 2);
 * console.log(await readBytes(part, 0, 2)); // Uint8Array(2) [ 7, 8 ]
 * ```
 */
export class OffsetBlockDevice implements BlockDevice {
  readonly size: number;
  #inner: BlockDevice;
  #offset: number;

  /**
   * The `size` bytes (default: all the rest) of `inner` starting at byte `offset`; throws when they
   * do not fit.
   */
  constructor(inner: BlockDevice, offset: number, size?: number) {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > inner.size) {
      throw new Ext4Error(
        "INVALID",
        `offset ${offset} is outside the device (${inner.size} bytes)`,
      );
    }
    this.#inner = inner;
    this.#offset = offset;
    this.size = size ?? inner.size - offset;
    checkRange(inner.size, offset, this.size);
  }

  get sectorSize(): number {
    return this.#inner.sectorSize;
  }

  get readOnly(): boolean {
    return this.#inner.readOnly;
  }

  get discardGranularity(): number {
    return this.#inner.discardGranularity ?? 0;
  }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    checkRange(this.size, offset, buffer.length);
    await this.#inner.read(this.#offset + offset, buffer);
  }

  async discard(offset: number, length: number): Promise<void> {
    checkRange(this.size, offset, length);
    await discardOn(this.#inner, this.#offset + offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length);
    await this.#inner.write(this.#offset + offset, data);
  }

  flush(): Promise<void> {
    return this.#inner.flush();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
