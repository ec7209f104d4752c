/**
 * Multiple-mount protection while writing (the mmp feature), as the kernel's fs/ext4/mmp.c
 * keeps it: before the first write a writer claims the MMP block — refused while e2fsck runs
 * (`MMP_SEQ_FSCK`); a sequence other than "clean" means another node may be active, so the
 * writer waits `min(2 × check interval + 1, check interval + 60)` seconds and is refused if the
 * sequence moved meanwhile; then it writes a random sequence, waits the same time (none after a
 * clean block) and is refused if that changed. While the filesystem stays open the block is
 * rewritten every `s_mmp_update_interval` seconds with the next sequence; an update that comes
 * later than the check interval first re-reads the block, and a block someone else changed
 * means the filesystem was mounted twice: the writer stops writing (`onLost`). A clean close
 * writes `MMP_SEQ_CLEAN`.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { Errno, Ext4Error } from "../errors.ts";
import {
  encodeMmpBlock,
  MMP_SEQ_CLEAN,
  MMP_SEQ_FSCK,
  MMP_SEQ_MAX,
  parseMmpBlock,
} from "../ondisk/mmp.ts";
import type { Superblock } from "../ondisk/superblock.ts";

/** The kernel's EXT4_MMP_MIN_CHECK_INTERVAL and EXT4_MMP_MAX_CHECK_INTERVAL, seconds. */
const MIN_CHECK_INTERVAL = 5;
const MAX_CHECK_INTERVAL = 300;

/** Options for {@link MmpGuard.claim}. */
export interface MmpClaimOptions {
  /** `mmp_nodename` written (default: the host name when the runtime tells it, else "ext4ts"). */
  nodeName?: string;
  /** `mmp_bdevname` written (default "ext4ts"). */
  deviceName?: string;
  /** How to wait (tests pass a fake; default a timer). */
  sleep?: (ms: number) => Promise<void>;
  /** Told once when the claim has to wait for another node's interval. */
  onNotice?: (message: string) => void;
  /** Called when the block was taken over while writing: the owner must stop writing. */
  onLost?: (error: Ext4Error) => void;
}

function defaultNodeName(): string {
  try {
    const deno = (globalThis as { Deno?: { hostname?: () => string } }).Deno;
    return deno?.hostname?.() ?? "ext4ts";
  } catch {
    return "ext4ts"; // no --allow-sys: the host name is not ours to read
  }
}

function busy(message: string, nodeName: string): Ext4Error {
  return new Ext4Error(
    "BUSY",
    `${message} (multi-mount protection; last updated by node ${JSON.stringify(nodeName)})`,
    { errno: Errno.EBUSY },
  );
}

/** A random sequence an active node may use (≤ MMP_SEQ_MAX). */
function newSequence(): number {
  const a = new Uint32Array(1);
  do crypto.getRandomValues(a); while (a[0] > MMP_SEQ_MAX || a[0] === 0);
  return a[0];
}

/**
 * The MMP block of one writable open: {@link MmpGuard.claim} it before writing, {@link stop} at
 * close.
 *
 * @example
 * ```ts ignore
 * const guard = await MmpGuard.claim(device, sb, { onLost: (e) => cache.deviceFailed(e) });
 * // … write …
 * await guard.stop(); // mmp_seq = MMP_SEQ_CLEAN
 * ```
 */
export class MmpGuard {
  readonly #device: BlockDevice;
  readonly #sb: Superblock;
  readonly #block: Uint8Array;
  readonly #offset: number;
  readonly #seed: number | undefined;
  readonly #updateMs: number;
  #checkInterval: number;
  #sequence: number;
  #lastUpdate = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> = Promise.resolve();
  #lost: Ext4Error | null = null;
  #stopped = false;
  readonly #onLost?: (error: Ext4Error) => void;

  private constructor(
    device: BlockDevice,
    sb: Superblock,
    block: Uint8Array,
    sequence: number,
    checkInterval: number,
    onLost?: (error: Ext4Error) => void,
  ) {
    this.#device = device;
    this.#sb = sb;
    this.#block = block;
    this.#offset = sb.mmpBlock * sb.blockSize;
    this.#seed = sb.hasMetadataCsum ? sb.csumSeed : undefined;
    this.#updateMs = Math.max(1, sb.mmpInterval || MIN_CHECK_INTERVAL) * 1000;
    this.#sequence = sequence;
    this.#checkInterval = checkInterval;
    this.#onLost = onLost;
  }

  /**
   * Claims the MMP block of `sb` on `device` for writing, as `ext4_multi_mount_protect`; BUSY
   * (EBUSY, exit 8) when e2fsck or another node uses the filesystem, CORRUPT for a bad block.
   * Starts the periodic update.
   */
  static async claim(
    device: BlockDevice,
    sb: Superblock,
    options: MmpClaimOptions = {},
  ): Promise<MmpGuard> {
    const sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    const at = sb.mmpBlock;
    if (at < sb.firstDataBlock || at >= sb.blocksCount) {
      throw new Ext4Error("CORRUPT", `the MMP block ${at} is outside the filesystem`, {
        errno: Errno.EUCLEAN,
      });
    }
    const seed = sb.hasMetadataCsum ? sb.csumSeed : undefined;
    const read = async () => {
      const bytes = await readBytes(device, at * sb.blockSize, sb.blockSize);
      const mmp = parseMmpBlock(bytes, seed);
      if (!mmp.checksumValid) {
        throw new Ext4Error("CORRUPT", `the MMP block ${at} fails its checksum`, {
          errno: Errno.EBADMSG,
        });
      }
      return { bytes, mmp };
    };
    let { bytes, mmp } = await read();
    let checkInterval = Math.max(sb.mmpInterval, MIN_CHECK_INTERVAL, mmp.checkInterval);
    let waitMs = 0;
    if (mmp.sequence === MMP_SEQ_FSCK) {
      throw busy("e2fsck is running on the filesystem", mmp.nodeName);
    }
    if (mmp.sequence !== MMP_SEQ_CLEAN) {
      waitMs = Math.min(checkInterval * 2 + 1, checkInterval + 60) * 1000;
      options.onNotice?.(
        `the MMP block says node ${
          JSON.stringify(mmp.nodeName)
        } may be using the filesystem: waiting ${waitMs / 1000} s to see whether it is active`,
      );
      const seen = mmp.sequence;
      await sleep(waitMs);
      ({ bytes, mmp } = await read());
      if (mmp.sequence !== seen) throw busy("the device is active on another node", mmp.nodeName);
    }
    const sequence = newSequence();
    const nodeName = options.nodeName ?? defaultNodeName();
    const deviceName = options.deviceName ?? "ext4ts";
    const now = Math.floor(Date.now() / 1000);
    encodeMmpBlock(bytes, { sequence, time: now, nodeName, deviceName, checkInterval }, seed);
    await device.write(at * sb.blockSize, bytes);
    await device.flush();
    if (waitMs > 0) await sleep(waitMs);
    const check = await read();
    if (check.mmp.sequence !== sequence) {
      throw busy("the device is active on another node", check.mmp.nodeName);
    }
    checkInterval = Math.min(checkInterval, MAX_CHECK_INTERVAL);
    const guard = new MmpGuard(device, sb, bytes, sequence, checkInterval, options.onLost);
    guard.#lastUpdate = Date.now();
    guard.#schedule();
    return guard;
  }

  /** Set once the block was found taken over: the owner stopped writing. */
  get lost(): Ext4Error | null {
    return this.#lost;
  }

  /**
   * Stops the updates and, unless the block was lost, marks it clean (`MMP_SEQ_CLEAN`),
   * written and flushed.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
    if (this.#lost) return;
    this.#write(MMP_SEQ_CLEAN);
    await this.#device.write(this.#offset, this.#block);
    await this.#device.flush();
  }

  #schedule(): void {
    if (this.#stopped || this.#lost) return;
    const due = Math.max(0, this.#lastUpdate + this.#updateMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#update().catch((e) => {
        this.#fail(e instanceof Ext4Error ? e : new Ext4Error("IO", `MMP update failed: ${e}`));
      }).finally(() => this.#schedule());
    }, due);
    // A writer that never closes must not be kept alive by this timer (its block then stays
    // "in use", as after a crash).
    const deno = (globalThis as { Deno?: { unrefTimer?: (id: number) => void } }).Deno;
    if (typeof this.#timer === "number") deno?.unrefTimer?.(this.#timer);
  }

  async #update(): Promise<void> {
    if (this.#stopped) return;
    const late = Date.now() - this.#lastUpdate;
    if (late > this.#checkInterval * 1000) {
      // Starved past the interval: someone may have claimed the block meanwhile.
      const bytes = await readBytes(this.#device, this.#offset, this.#sb.blockSize);
      const seen = parseMmpBlock(bytes);
      const mine = parseMmpBlock(this.#block);
      if (seen.sequence !== mine.sequence || seen.nodeName !== mine.nodeName) {
        throw busy(
          "the filesystem seems to have been mounted on another node while written here",
          seen.nodeName,
        );
      }
    }
    this.#sequence = this.#sequence >= MMP_SEQ_MAX ? 1 : this.#sequence + 1;
    this.#checkInterval = Math.max(
      Math.min(Math.ceil((2 * late) / 1000), MAX_CHECK_INTERVAL),
      MIN_CHECK_INTERVAL,
    );
    this.#write(this.#sequence);
    this.#lastUpdate = Date.now();
    await this.#device.write(this.#offset, this.#block);
    await this.#device.flush();
  }

  #write(sequence: number): void {
    const mine = parseMmpBlock(this.#block);
    encodeMmpBlock(this.#block, {
      sequence,
      time: Math.floor(Date.now() / 1000),
      nodeName: mine.nodeName,
      deviceName: mine.deviceName,
      checkInterval: this.#checkInterval,
    }, this.#seed);
  }

  #fail(error: Ext4Error): void {
    if (this.#lost) return;
    this.#lost = error;
    this.#onLost?.(error);
  }
}
