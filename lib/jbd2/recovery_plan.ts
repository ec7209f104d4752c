/**
 * What journal recovery decides ({@link RecoveryPlan}: the writes in log order, the
 * transactions seen, why the log ends, what the kernel would report) and the helpers that
 * apply a plan: the replayed bytes of a logged block, the final write per block, the refusal.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import { JBD2_MAGIC } from "./superblock.ts";
import type { JournalStore } from "./journal_store.ts";

/** A block the replay writes: filesystem block `target` gets journal block `logBlock`. */
export interface ReplayWrite {
  /** The filesystem block that gets the logged copy. */
  target: number;
  /** The journal block holding the copy. */
  logBlock: number;
  /** JBD2_FLAG_ESCAPE: restore the journal magic in the first four bytes. */
  escaped: boolean;
  /** Transaction that wrote it. */
  sequence: number;
}

/** One block described by a descriptor tag, for `journal show`. */
export interface LoggedBlock {
  /** The journal block holding the copy. */
  logBlock: number;
  /**
   * The filesystem block it would be written to (the tag's `t_blocknr`, with `t_blocknr_high` on
   * 64bit).
   */
  target: number;
  /** The tag's `t_flags`: `TagFlag` bits (escape, same UUID, deleted, last tag). */
  flags: number;
  /** Data-block checksum (v2/v3): true/false, or undefined when the journal has none. */
  checksumOk?: boolean;
  /** Revoked by a later revoke record (so not replayed). */
  revoked?: boolean;
}

/** What the scan found about one transaction, for `journal show`. */
export interface TransactionInfo {
  /** The transaction id (`h_sequence`). */
  sequence: number;
  /** Log block where the transaction starts. */
  startBlock: number;
  /**
   * The transaction's descriptor blocks; `checksumOk` is undefined when the journal has no
   * checksums.
   */
  descriptorBlocks: { logBlock: number; checksumOk?: boolean }[];
  /** Every block the descriptors log, in order. */
  blocks: LoggedBlock[];
  /**
   * The transaction's revoke blocks and the filesystem blocks each revokes; `checksumOk` as above.
   */
  revokeBlocks: { logBlock: number; checksumOk?: boolean; records: number[] }[];
  /** The log block of the commit block; undefined when none was found. */
  commitBlock?: number;
  /** Commit time in seconds, when a commit block was found. */
  commitTime?: number;
  /** `ok`, `bad`, `partial` (kernel accepts an incompletely written commit), or `none`. */
  commitChecksum?: "ok" | "bad" | "partial" | "none";
  /** True when the transaction is part of the recovered log (it will be replayed). */
  replayed: boolean;
  /** Why the log ends here, for the transaction that ends it. */
  endReason?: string;
}

/** Result of {@link recoverJournal}. */
export interface RecoveryPlan {
  /** False when the journal is empty (`s_start` = 0): nothing to recover. */
  needed: boolean;
  /** First transaction of the log (`s_sequence`). */
  startSequence: number;
  /** The first transaction not recovered (the kernel's `end_transaction`). */
  endSequence: number;
  /** Log block after the last recovered commit (the kernel's `head_block`). */
  headBlock: number;
  /** Transactions scanned, complete or not. */
  transactions: TransactionInfo[];
  /** Writes in log order (revoked blocks and bad data blocks left out). */
  writes: ReplayWrite[];
  /** Revoke records: block → latest revoking transaction. */
  revoked: Map<number, number>;
  /** Why the scan ended. */
  endReason: string;
  /**
   * Set when the kernel would refuse: recovery fails before writing anything (`refused`),
   * or writes and then reports corruption (`corrupt`: a failed commit checksum under
   * synchronous commit, a data block with a bad checksum).
   */
  error?: { kind: "refused" | "corrupt"; message: string; failedCommit?: number };
  /** Transaction whose commit failed its checksum (the kernel's `j_failed_commit`). */
  failedCommit?: number;
  /** Blocks whose data checksum failed: skipped, as the kernel does. */
  badDataBlocks: { logBlock: number; target: number; sequence: number }[];
  /** Fast commits the kernel would replay after the full transactions (not supported). */
  fastCommit?: { firstBlock: number; tid: number };
}

/**
 * Reads journal block `logBlock` as the filesystem block it replays to: the journalled
 * bytes, with the journal magic restored when the tag was escaped.
 *
 * @example
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store, jsb } = await locateJournal(device, await readSuperblock(device));
 * // A write as recovery plans it (here of journal block 1 onto filesystem block 100).
 * const write = { target: 100, logBlock: 1, escaped: false, sequence: jsb.sequence };
 * console.log((await replayedBlock(store, write)).length); // 1024: the bytes block 100 gets
 * await Deno.remove(img);
 * ```
 */
export async function replayedBlock(store: JournalStore, w: ReplayWrite): Promise<Uint8Array> {
  const data = await store.readBlock(w.logBlock);
  if (w.escaped) new DataView(data.buffer, data.byteOffset, 4).setUint32(0, JBD2_MAGIC, false);
  return data;
}

/**
 * The final write for each target block (later transactions win), in log order of their
 * last write.
 *
 * @example
 * ```ts ignore
 * for (const [target, w] of finalWrites(plan)) console.log(target, w.logBlock);
 * ```
 */
export function finalWrites(plan: RecoveryPlan): Map<number, ReplayWrite> {
  const out = new Map<number, ReplayWrite>();
  for (const w of plan.writes) {
    out.delete(w.target);
    out.set(w.target, w);
  }
  return out;
}

/**
 * Throws the error of a plan the kernel would refuse (`CORRUPT`), or `UNSUPPORTED` when a
 * fast commit would have to be replayed.
 *
 * @example
 * ```ts ignore
 * assertRecoverable(await recoverJournal(store, jsb));
 * ```
 */
export function assertRecoverable(plan: RecoveryPlan): void {
  if (plan.error?.kind === "refused") throw new CorruptError("journal", plan.error.message);
  if (plan.fastCommit) {
    throw new Ext4Error(
      "UNSUPPORTED",
      `the journal holds a fast commit for transaction ${plan.fastCommit.tid}, which ext4ts ` +
        `cannot replay; mount the filesystem with the kernel to recover it (nothing was written)`,
    );
  }
}
