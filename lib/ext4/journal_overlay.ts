/**
 * The journal overlay: a read-only {@link BlockDevice} that shows a filesystem as it will be
 * after journal recovery, without writing anything. Replayed blocks come from the journal
 * (read on demand), the superblock is presented with needs_recovery cleared and the journal
 * superblock as reset, so every reader accepts the view. Used for read-only devices with a
 * dirty journal, and by read-only mounts.
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { checkRange } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import {
  blockContents,
  type PreparedReplay,
  type PrepareOptions,
  prepareReplay,
} from "./recovery.ts";

/**
 * A read-only view of `base` with the journal replayed in memory.
 *
 * @example
 * ```ts ignore
 * const view = await JournalOverlayDevice.open(openBlockDevice("disk.img"));
 * if (view.recovered) console.error("ext4ts: journal replayed in memory");
 * const sb = await readSuperblock(view); // needs_recovery is clear
 * ```
 */
export class JournalOverlayDevice implements BlockDevice {
  readonly readOnly = true;
  /** The device the overlay reads through to for every block the replay does not change. */
  readonly base: BlockDevice;
  /** The replay served, or undefined when the filesystem needed no recovery. */
  readonly prepared?: PreparedReplay;
  readonly #blockSize: number;

  /**
   * Serves `base` with the blocks of `prepared` replaced (none when it is undefined); see {@link
   * JournalOverlayDevice.open}.
   */
  constructor(base: BlockDevice, prepared?: PreparedReplay) {
    this.base = base;
    this.prepared = prepared;
    this.#blockSize = prepared?.superblock.blockSize ?? 4096;
  }

  /**
   * Opens the overlay: works out the replay (throwing where the kernel would refuse to
   * recover) and serves it. With no recovery needed the view is the base device unchanged.
   */
  static async open(
    base: BlockDevice,
    options: PrepareOptions = {},
  ): Promise<JournalOverlayDevice> {
    return new JournalOverlayDevice(base, await prepareReplay(base, options));
  }

  /** True when blocks are replayed in memory. */
  get recovered(): boolean {
    return this.prepared !== undefined;
  }

  get size(): number {
    return this.base.size;
  }

  get sectorSize(): number {
    return this.base.sectorSize;
  }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    checkRange(this.size, offset, buffer.length);
    await this.base.read(offset, buffer);
    const p = this.prepared;
    if (!p || buffer.length === 0) return;
    const bs = this.#blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + buffer.length - 1) / bs);
    if (last - first + 1 > p.blocks.size) {
      for (const b of p.blocks.keys()) {
        if (b >= first && b <= last) await this.#patch(b, offset, buffer);
      }
    } else {
      for (let b = first; b <= last; b++) if (p.blocks.has(b)) await this.#patch(b, offset, buffer);
    }
  }

  async #patch(block: number, offset: number, buffer: Uint8Array): Promise<void> {
    const data = await blockContents(this.prepared!, block);
    if (!data) return;
    const bs = this.#blockSize;
    const start = Math.max(block * bs, offset);
    const end = Math.min((block + 1) * bs, offset + buffer.length);
    buffer.set(data.subarray(start - block * bs, end - block * bs), start - offset);
  }

  write(_offset: number, _data: Uint8Array): Promise<void> {
    return Promise.reject(
      new Ext4Error("READ_ONLY", "the journal overlay is read-only (recovery is in memory)"),
    );
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.base.close();
  }
}
