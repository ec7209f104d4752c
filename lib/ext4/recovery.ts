/**
 * Journal replay: recovery applied to a device, or prepared for the in-memory overlay.
 *
 * {@link prepareReplay} does everything that only reads: it finds the journal, runs the
 * recovery passes and computes every block the replay writes — the journalled blocks, the
 * ext4 superblock with needs_recovery cleared (and error state set as e2fsck sets it), and
 * the journal superblock reset (`s_start` = 0, `s_sequence` = the first unused
 * transaction + 1, as the kernel and e2fsck leave it). {@link replayJournal} writes them in
 * a crash-safe order; `JournalOverlayDevice` serves them from memory.
 *
 * Orphans: the kernel processes the orphan list on its first read-write mount after
 * recovery, e2fsck right after replay. This replay releases them as e2fsck does (see
 * orphans_replay.ts), so the result matches `e2fsck -E journal_only`; `orphans: false` leaves the
 * list in place for the kernel, as `debugfs -R journal_run` does. The tree is the same
 * either way.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { Compat, Incompat } from "../ondisk/features.ts";
import { EXT4_MAGIC, readSuperblock, State, Superblock } from "../ondisk/superblock.ts";
import { JBD2_MAGIC, JournalSuperblock } from "../jbd2/superblock.ts";
import { type OrphanCleanup, releaseOrphans } from "./orphans_replay.ts";
import { type LocatedJournal, locateJournal, type LocateJournalOptions } from "./journal.ts";
import { recoverJournal } from "../jbd2/recovery.ts";
import {
  assertRecoverable,
  finalWrites,
  type RecoveryPlan,
  replayedBlock,
  type ReplayWrite,
} from "../jbd2/recovery_plan.ts";

/** The smallest journal the kernel uses (`JBD2_MIN_JOURNAL_BLOCKS`). */
const JBD2_MIN_JOURNAL_BLOCKS = 1024;

/** The superblock's error record, `s_error_count` up to `s_mount_opts`. */
const ERR_START = 0x194;
const ERR_END = 0x200;

/** Where the bytes of a block the replay writes come from. */
export type BlockSource =
  | { kind: "journal"; write: ReplayWrite }
  | { kind: "data"; data: Uint8Array; what: string };

/** A replay worked out but not applied. */
export interface PreparedReplay {
  /** The superblock before recovery. */
  superblock: Superblock;
  /** The journal that was scanned. */
  journal: LocatedJournal;
  /** What the scan of the journal found: the transactions to replay and their writes. */
  plan: RecoveryPlan;
  /** Every filesystem block the replay changes, with its final contents. */
  blocks: Map<number, BlockSource>;
  /** The journalled blocks (phase 1 of the writes), in log order of their last write. */
  replay: Map<number, ReplayWrite>;
  /** The orphan cleanup done after replay (its blocks are written last, with the superblock). */
  orphans?: OrphanCleanup;
  /** The filesystem block holding the primary superblock. */
  superblockBlock: number;
  /** The final bytes of that block (needs_recovery cleared, checksum updated). */
  superblockFinal: Uint8Array;
  /** The same block with the replayed contents but needs_recovery still set (phase 1). */
  superblockInterim: Uint8Array;
  /** True when the journal replays the superblock block. */
  superblockJournalled: boolean;
  /** Things the user should know that do not stop the replay. */
  warnings: string[];
  /** The journal superblock block after the reset. */
  journalSuperblock: Uint8Array;
  /** Where that block lives on the filesystem device (internal journal), else undefined. */
  journalSuperblockFsBlock?: number;
}

/** Options for {@link prepareReplay}. */
export interface PrepareOptions extends LocateJournalOptions {
  /** Release orphan inodes after the replay, as e2fsck does (default true). */
  orphans?: boolean;
  /** The time stamped as the orphans' deletion time (seconds; default now). */
  now?: number;
}

/** Options for {@link replayJournal}. */
export interface ReplayOptions extends PrepareOptions {
  /** Work out and report the writes without writing anything. */
  dryRun?: boolean;
  /**
   * Told how many of the journalled blocks are written (`done` of `total`, each
   * `blockSize` bytes) after each run of writes, for a progress display.
   */
  onProgress?: (done: number, total: number, blockSize: number) => void;
}

/** Result of {@link replayJournal}. */
export interface ReplayResult {
  /** False when the filesystem did not need recovery (nothing was written). */
  needed: boolean;
  /** Why nothing was needed, when `needed` is false. */
  reason?: string;
  /** True when blocks were written (false for a dry run). */
  written: boolean;
  /** The replay that was worked out; absent when none was needed. */
  prepared?: PreparedReplay;
  /** Filesystem blocks written (or to be written, for a dry run), ascending. */
  blocksWritten: number[];
  /**
   * Set when the kernel would report the journal corrupt after replaying what it could
   * (a corrupt commit, a bad data-block checksum): the replay was done, the filesystem is
   * marked as needing a full check.
   */
  error?: string;
}

/**
 * True when the filesystem's journal needs recovery (`needs_recovery` is set).
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const sb = await readSuperblock(new MemoryBlockDevice(await Deno.readFile(img)));
 * console.log(needsRecovery(sb)); // false: freshly made
 * await Deno.remove(img);
 * ```
 */
export function needsRecovery(sb: Superblock): boolean {
  return (sb.compat & Compat.HAS_JOURNAL) !== 0 && (sb.incompat & Incompat.RECOVER) !== 0;
}

/**
 * Works out a replay without writing: refuses (throws) where the kernel refuses, and returns
 * every block to write otherwise. Returns undefined when no recovery is needed.
 *
 * @example
 * ```ts ignore
 * const p = await prepareReplay(device);
 * if (p) console.log(`${p.blocks.size} blocks to write`);
 * ```
 */
export async function prepareReplay(
  device: BlockDevice,
  options: PrepareOptions = {},
): Promise<PreparedReplay | undefined> {
  if (device.size >= 2048) {
    // A journal device has an ext4 superblock that the full validation would reject.
    const raw = new Superblock(await readBytes(device, 1024, 1024));
    if (raw.magic === EXT4_MAGIC && (raw.incompat & Incompat.JOURNAL_DEV)) {
      throw new Ext4Error(
        "INVALID",
        "this is an external journal device, not a filesystem: give the filesystem, " +
          "with this device as --journal-dev",
      );
    }
  }
  const sb = await readSuperblock(device);
  if (!needsRecovery(sb)) return undefined;
  const journal = await locateJournal(device, sb, options);
  const { store, jsb } = journal;
  const plan = await recoverJournal(store, jsb);
  assertRecoverable(plan);

  const bs = sb.blockSize;
  const blocks = new Map<number, BlockSource>();
  for (const [target, w] of finalWrites(plan)) {
    if (target >= sb.blocksCount || (target + 1) * bs > device.size) {
      throw new CorruptError(
        "journal",
        `transaction ${w.sequence} writes block ${target}, beyond the filesystem ` +
          `(${sb.blocksCount} blocks): nothing was replayed`,
      );
    }
    blocks.set(target, { kind: "journal", write: w });
  }

  // The ext4 superblock: replayed contents (if journalled), then recovery marked done.
  const sbBlock = Math.floor(1024 / bs);
  const sbOffset = 1024 % bs;
  const src = blocks.get(sbBlock);
  const interim = src?.kind === "journal"
    ? await replayedBlock(store, src.write)
    : await readBytes(device, sbBlock * bs, bs);
  const finalBlock = interim.slice();
  const newSb = new Superblock(finalBlock.subarray(sbOffset, sbOffset + 1024));
  newSb.incompat = newSb.incompat & ~Incompat.RECOVER;
  // Like the kernel (ext4_load_journal()), keep the error record and the ERROR_FS state of
  // the superblock as it was before the replay: a journalled copy may predate an error.
  newSb.bytes.set(sb.bytes.subarray(ERR_START, ERR_END), ERR_START);
  newSb.state = newSb.state | (sb.state & State.ERROR);
  if (plan.error) newSb.state = newSb.state & ~State.VALID;
  if (jsb.errno !== 0 || plan.failedCommit !== undefined) newSb.state = newSb.state | State.ERROR;
  // Orphans, as e2fsck releases them after its replay (lib/ext4/orphans_replay.ts).
  let orphans: OrphanCleanup | undefined;
  if (options.orphans !== false) {
    const readReplayed = async (n: number): Promise<Uint8Array> => {
      const s = blocks.get(n);
      if (n === sbBlock) return finalBlock;
      if (s?.kind === "journal") return await replayedBlock(store, s.write);
      return await readBytes(device, n * bs, bs);
    };
    orphans = await releaseOrphans(
      newSb,
      readReplayed,
      options.now ?? Math.floor(Date.now() / 1000),
    );
  }
  newSb.updateChecksum();
  {
    // Keep the interim copy's checksum right too: it is written with needs_recovery set.
    const s = new Superblock(interim.subarray(sbOffset, sbOffset + 1024));
    s.updateChecksum();
  }

  // The journal superblock: empty log, next sequence, errno consumed.
  const jblock = await store.readBlock(0);
  const njsb = new JournalSuperblock(jblock);
  njsb.sequence = (plan.endSequence + 1) >>> 0;
  njsb.start = 0;
  njsb.errno = 0;
  njsb.updateChecksum();

  const warnings: string[] = [];
  if (orphans?.skipped) warnings.push(`orphan inodes left for the kernel: ${orphans.skipped}`);
  if (jsb.first + JBD2_MIN_JOURNAL_BLOCKS > jsb.maxLen + 1) {
    // journal_reset(): the kernel replays such a journal, then refuses to use it.
    warnings.push(
      `the journal is too short for the kernel to use after recovery (blocks ${jsb.first}-` +
        `${jsb.maxLen}, at least ${JBD2_MIN_JOURNAL_BLOCKS} needed): recreate it with tune2fs`,
    );
  }
  const replay = new Map<number, ReplayWrite>();
  for (const [b, src] of blocks) if (src.kind === "journal") replay.set(b, src.write);
  for (const [b, data] of orphans?.blocks ?? []) {
    blocks.set(b, { kind: "data", data, what: "orphan cleanup" });
  }
  const jsbFs = store.fsBlock(0);
  if (jsbFs !== undefined) {
    blocks.set(jsbFs, { kind: "data", data: jblock, what: "journal superblock" });
  }
  blocks.set(sbBlock, { kind: "data", data: finalBlock, what: "superblock" });
  return {
    superblock: sb,
    journal,
    plan,
    blocks,
    replay,
    orphans,
    superblockBlock: sbBlock,
    superblockFinal: finalBlock,
    superblockInterim: interim,
    superblockJournalled: src !== undefined,
    warnings,
    journalSuperblock: jblock,
    journalSuperblockFsBlock: jsbFs,
  };
}

/**
 * Reads the final contents of one block the replay writes.
 *
 * @example
 * ```ts ignore
 * const bytes = await blockContents(prepared, prepared.superblockBlock);
 * ```
 */
export async function blockContents(
  p: PreparedReplay,
  block: number,
): Promise<Uint8Array | undefined> {
  const s = p.blocks.get(block);
  if (!s) return undefined;
  if (s.kind === "data") return s.data;
  return await replayedBlock(p.journal.store, s.write);
}

/**
 * Replays the journal of the filesystem on `device` and marks it recovered, as the kernel
 * does on mount and e2fsck does before checking. Write order keeps a crash at any point
 * recoverable: the journalled blocks (the superblock block still flagged needs_recovery),
 * a flush, the journal superblock reset, a flush, the final superblock, a flush.
 *
 * Throws `READ_ONLY` on a read-only device (unless `dryRun`), `CORRUPT`/`UNSUPPORTED` where
 * the kernel would refuse (then nothing is written).
 *
 * @example
 * ```ts
 * import { openBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const dev = openBlockDevice(img, { readOnly: false });
 * const r = await replayJournal(dev);
 * console.log(r.needed ? `${r.blocksWritten.length} blocks written` : r.reason);
 * await dev.close();
 * await Deno.remove(img);
 * ```
 */
export async function replayJournal(
  device: BlockDevice,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const prepared = await prepareReplay(device, options);
  if (!prepared) {
    return {
      needed: false,
      reason: "the filesystem does not need recovery (needs_recovery is not set)",
      written: false,
      blocksWritten: [],
    };
  }
  const blocksWritten = [...prepared.blocks.keys()].sort((a, b) => a - b);
  const error = prepared.plan.error?.message;
  if (options.dryRun) return { needed: true, written: false, prepared, blocksWritten, error };
  if (device.readOnly) {
    throw new Ext4Error("READ_ONLY", "the device is read-only: cannot replay the journal");
  }
  const ext = prepared.journal.external ? prepared.journal.store : undefined;
  const bs = prepared.superblock.blockSize;
  const { store } = prepared.journal;
  // Phase 1: the journalled blocks (the superblock block still flagged needs_recovery).
  // The journal is read in log order (sequential), a window at a time, each block copied
  // once into the window's buffer (the journal reader's views do not outlive a window);
  // each window is written in ascending block order, runs of consecutive blocks in one
  // write (copied once more to make them contiguous). The buffers serve every window.
  const byLog = [...prepared.replay.entries()].sort((x, y) => x[1].logBlock - y[1].logBlock);
  const maxRun = Math.max(1, Math.floor(131072 / bs));
  const window = Math.min(byLog.length, Math.max(1, Math.floor((16 << 20) / bs)));
  const slots = new Uint8Array(window * bs);
  const runBuffer = new Uint8Array(maxRun * bs);
  const peek = store.peekBlock?.bind(store) ?? store.readBlock.bind(store);
  const order = new Int32Array(window);
  for (let w = 0; w < byLog.length; w += window) {
    const count = Math.min(window, byLog.length - w);
    for (let j = 0; j < count; j++) {
      const [block, write] = byLog[w + j];
      const slot = slots.subarray(j * bs, (j + 1) * bs);
      if (block === prepared.superblockBlock) slot.set(prepared.superblockInterim);
      else {
        slot.set(await peek(write.logBlock));
        if (write.escaped) new DataView(slot.buffer, j * bs, 4).setUint32(0, JBD2_MAGIC, false);
      }
      order[j] = j;
    }
    const slotOrder = order.subarray(0, count).sort((x, y) => byLog[w + x][0] - byLog[w + y][0]);
    for (let i = 0; i < count;) {
      const first = byLog[w + slotOrder[i]][0];
      let k = 1;
      while (i + k < count && k < maxRun && byLog[w + slotOrder[i + k]][0] === first + k) k++;
      if (k === 1) {
        await device.write(first * bs, slots.subarray(slotOrder[i] * bs, (slotOrder[i] + 1) * bs));
      } else {
        for (let j = 0; j < k; j++) {
          const s = slotOrder[i + j] * bs;
          runBuffer.set(slots.subarray(s, s + bs), j * bs);
        }
        await device.write(first * bs, runBuffer.subarray(0, k * bs));
      }
      i += k;
      options.onProgress?.(w + i, byLog.length, bs);
    }
  }
  await device.flush();
  // Phase 2: the journal is empty from now on.
  if (ext) {
    await ext.writeBlock(0, prepared.journalSuperblock);
    await ext.flush();
  } else {
    await store.writeBlock(0, prepared.journalSuperblock);
  }
  await device.flush();
  // Phase 3: orphan cleanup, then the superblock that says recovery is done.
  for (const [block, data] of prepared.orphans?.blocks ?? []) {
    await device.write(block * bs, data);
  }
  await device.write(prepared.superblockBlock * bs, prepared.superblockFinal);
  await device.flush();
  return { needed: true, written: true, prepared, blocksWritten, error };
}
