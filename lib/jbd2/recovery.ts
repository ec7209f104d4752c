/**
 * Journal recovery with the kernel's semantics (fs/jbd2/recovery.c): three passes over the
 * log — SCAN finds the end of the valid log, REVOKE collects revoke records, REPLAY decides
 * which journalled block lands where — stopping exactly where the kernel stops.
 *
 * Nothing here writes: {@link recoverJournal} returns a {@link RecoveryPlan} (the blocks to
 * write, in log order, as references into the journal) plus what the kernel would report.
 * `replay.ts` applies a plan to a device; `journal_overlay.ts` serves it from memory.
 *
 * Where the kernel and e2fsck part ways (see the corpus' EXPECTED.md) this module follows
 * the kernel: it refuses what the kernel refuses before writing anything, and reports what
 * the kernel reports after writing (a corrupt commit, a bad data-block checksum).
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import {
  commitBlockValid,
  commitBlockValidPartial,
  crc32Be,
  parseCommitBlock,
} from "../journal/commit_block.ts";
import {
  blockTailValid,
  dataBlockChecksum,
  dataBlockValid,
  parseDescriptorTags,
  readHeader,
  tagChecksumMatches,
  TagFlag,
} from "../journal/descriptor_block.ts";
import { parseRevokeBlock } from "../journal/revocation_block.ts";
import { BlockType, JBD2_MAGIC, type JournalSuperblock } from "../journal/superblock.ts";

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
  /** Makes the journal's writes durable. */
  flush(): Promise<void>;
  /** The filesystem block holding journal block `n` for an internal journal, else undefined. */
  fsBlock(n: number): number | undefined;
  /** Human-readable origin, e.g. "inode 8" or "external journal /dev/sdb1". */
  readonly description: string;
}

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
  /** The tag's `t_flags`: {@link TagFlag} bits (escape, same UUID, deleted, last tag). */
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

const PASS_SCAN = 0;
const PASS_REVOKE = 1;
const PASS_REPLAY = 2;
type Pass = typeof PASS_SCAN | typeof PASS_REVOKE | typeof PASS_REPLAY;

/**
 * tid_geq: transaction IDs compare modulo 2^32.
 *
 * @example
 * ```ts
 * import { tidGeq } from "./recovery.ts";
 * console.log(tidGeq(0, 0xffffffff)); // true: 0 follows 0xffffffff
 * ```
 */
export function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * tid_gt: transaction IDs compare modulo 2^32.
 *
 * @example
 * ```ts
 * import { tidGt } from "./recovery.ts";
 * console.log(tidGt(5, 5), tidGt(1, 0xfffffffe)); // false true
 * ```
 */
export function tidGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

class RecoveryFailure extends Error {
  constructor(message: string) {
    super(message);
  }
}

interface Info {
  startTransaction: number;
  endTransaction: number; // 0 = unknown yet, as in the kernel
  endKnown: boolean;
  headBlock: number;
  headKnown: boolean;
  failedCommit?: number;
  endReason: string;
}

/** True when `b` starts with the journal magic (a metadata block), without allocating. */
function isJournalBlock(b: Uint8Array): boolean {
  return b[0] === 0xc0 && b[1] === 0x3b && b[2] === 0x39 && b[3] === 0x98;
}

/** Journal context for one recovery. */
class Recovery {
  readonly store: JournalStore;
  readonly jsb: JournalSuperblock;
  /** One past the last block of the main log. */
  readonly last: number;
  readonly first: number;
  /** `j_total_len`: blocks readable (capped by `s_maxlen`). */
  readonly totalLen: number;
  readonly revoked = new Map<number, number>();
  readonly transactions = new Map<number, TransactionInfo>();
  readonly writes: ReplayWrite[] = [];
  readonly badData: { logBlock: number; target: number; sequence: number }[] = [];
  /** The blocks the scan saw, by log block, to annotate them during replay. */
  readonly logged = new Map<number, LoggedBlock>();
  #cache = new Map<number, Uint8Array>();
  /**
   * The logged blocks the scan read, by log block: their v2/v3 data checksum (0 without).
   * The scan reads them as it passes (sequential reads of the whole log), so the replay
   * pass decides each block from here without reading it again.
   */
  readonly #scanned = new Map<number, number>();
  /** Log blocks the scan met more than once (never in a valid log): the replay reads them. */
  readonly #rescanned = new Set<number>();
  readonly #csumV2or3: boolean;
  readonly #seed: number;

  constructor(store: JournalStore, jsb: JournalSuperblock) {
    this.store = store;
    this.jsb = jsb;
    this.first = jsb.first;
    this.last = jsb.last;
    this.totalLen = Math.min(store.blockCount, jsb.maxLen);
    this.#csumV2or3 = jsb.hasCsumV2or3;
    this.#seed = this.#csumV2or3 ? jsb.csumSeed : 0;
  }

  /**
   * Notes logged block `io` of transaction `sequence` as read by the scan (with `data`, or
   * reading it now). A block the scan cannot read is left to the replay pass, which reports
   * it as the kernel does (the kernel's scan does not read logged blocks).
   */
  async #scan(io: number, sequence: number, data?: Uint8Array): Promise<void> {
    if (this.#scanned.has(io) || this.#rescanned.has(io)) {
      this.#scanned.delete(io);
      this.#rescanned.add(io);
      return;
    }
    if (!data) {
      try {
        data = await this.read(io);
      } catch {
        return;
      }
    }
    this.#scanned.set(io, this.#csumV2or3 ? dataBlockChecksum(data, sequence, this.#seed) : 0);
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

  txn(seq: number, start: number): TransactionInfo {
    let t = this.transactions.get(seq);
    if (!t) {
      t = {
        sequence: seq,
        startBlock: start,
        descriptorBlocks: [],
        blocks: [],
        revokeBlocks: [],
        replayed: false,
      };
      this.transactions.set(seq, t);
    }
    return t;
  }

  #log(t: TransactionInfo, b: LoggedBlock): void {
    t.blocks.push(b);
    this.logged.set(b.logBlock, b);
  }

  /**
   * One pass over the log (`do_one_pass()`). Throws {@link RecoveryFailure} where the kernel
   * returns an error from the pass; returns an error message where the pass completes but
   * reports failure (bad data blocks in REPLAY).
   */
  async pass(info: Info, pass: Pass): Promise<string | undefined> {
    const jsb = this.jsb;
    let nextCommitId = jsb.sequence;
    let nextLogBlock = jsb.start;
    let headBlock = nextLogBlock;
    let crc32Sum = 0xffffffff;
    let needCheckCommitTime = false;
    let lastTransCommitTime = 0;
    let success: string | undefined;
    let txStart = nextLogBlock;
    if (pass === PASS_SCAN) info.startTransaction = nextCommitId;
    // A valid log never holds more blocks than the journal: bound the walk.
    let visited = 0;
    const limit = 2 * this.totalLen + 16;
    const see = (n: number) => {
      visited += n;
      if (visited > limit) {
        throw new RecoveryFailure(`the log is longer than the journal (${this.totalLen} blocks)`);
      }
    };

    scan: while (true) {
      if (pass !== PASS_SCAN && tidGeq(nextCommitId, info.endTransaction)) break;
      const logBlock = nextLogBlock;
      // Read through the journal's chunks even in the scan, which needs only this block:
      // sequential reads of the whole log (which warm the page cache for the replay) cost
      // far less than a cold random read per descriptor and commit block.
      const bh = await this.read(logBlock);
      see(1);
      nextLogBlock = this.wrap(nextLogBlock + 1);

      const hdr = readHeader(bh);
      if (!hdr) {
        if (pass === PASS_SCAN) info.endReason = `block ${logBlock} is not a journal block`;
        break;
      }
      if (hdr.sequence !== nextCommitId) {
        if (pass === PASS_SCAN) {
          info.endReason =
            `block ${logBlock} has sequence ${hdr.sequence}, expected ${nextCommitId}`;
        }
        break;
      }
      const t = pass === PASS_SCAN ? this.txn(nextCommitId, txStart) : undefined;

      switch (hdr.blockType) {
        case BlockType.DESCRIPTOR: {
          const tailOk = blockTailValid(bh, jsb);
          if (!tailOk) {
            // PASS_SCAN may see stale blocks after a lazy journal init: judge at the commit.
            if (pass !== PASS_SCAN) {
              throw new RecoveryFailure(`invalid checksum recovering descriptor block ${logBlock}`);
            }
            needCheckCommitTime = true;
          }
          const tags = parseDescriptorTags(bh, jsb);
          if (t) {
            t.descriptorBlocks.push({
              logBlock,
              checksumOk: jsb.hasCsumV2or3 ? tailOk : undefined,
            });
          }
          if (pass !== PASS_REPLAY) {
            if (pass === PASS_SCAN && jsb.hasCsumV1 && !info.endKnown) {
              // calc_chksums(): crc32_be over the descriptor and each data block.
              crc32Sum = crc32Be(crc32Sum, bh);
              for (const tag of tags) {
                const io = nextLogBlock;
                nextLogBlock = this.wrap(nextLogBlock + 1);
                see(1);
                let data: Uint8Array;
                try {
                  data = await this.read(io);
                } catch {
                  info.endReason = `cannot read log block ${io}`;
                  break scan;
                }
                crc32Sum = crc32Be(crc32Sum, data);
                await this.#scan(io, nextCommitId, data);
                if (t) this.#log(t, { logBlock: io, target: tag.target, flags: tag.flags });
              }
              continue;
            }
            if (t) {
              let io = nextLogBlock;
              for (const tag of tags) {
                this.#log(t, { logBlock: io, target: tag.target, flags: tag.flags });
                await this.#scan(io, nextCommitId);
                io = this.wrap(io + 1);
              }
            }
            see(tags.length);
            nextLogBlock = this.wrap(nextLogBlock + tags.length);
            continue;
          }
          // PASS_REPLAY: jbd2_do_replay().
          for (const tag of tags) {
            const io = nextLogBlock;
            nextLogBlock = this.wrap(nextLogBlock + 1);
            see(1);
            // The scan read most blocks already (and kept their checksums): read the others.
            const scanned = this.#scanned.get(io);
            let data: Uint8Array | undefined;
            if (scanned === undefined) {
              try {
                data = await this.read(io);
              } catch (e) {
                success = (e as Error).message;
                continue;
              }
            }
            const rev = this.revoked.get(tag.target);
            const logged = this.logged.get(io);
            // jbd2_journal_test_revoke(): revoked by this or a later transaction.
            if (rev !== undefined && tidGeq(rev, nextCommitId)) {
              if (logged) logged.revoked = true;
              continue;
            }
            const valid = data
              ? dataBlockValid(tag, data, nextCommitId, jsb)
              : !this.#csumV2or3 || tagChecksumMatches(tag, scanned!, jsb);
            if (!valid) {
              if (logged) logged.checksumOk = false;
              this.badData.push({ logBlock: io, target: tag.target, sequence: nextCommitId });
              success =
                `invalid checksum recovering data block ${tag.target} in journal block ${io}`;
              continue;
            }
            if (logged && jsb.hasCsumV2or3) logged.checksumOk = true;
            this.writes.push({
              target: tag.target,
              logBlock: io,
              escaped: (tag.flags & TagFlag.ESCAPE) !== 0,
              sequence: nextCommitId,
            });
          }
          continue;
        }

        case BlockType.COMMIT: {
          if (pass !== PASS_SCAN) {
            nextCommitId = (nextCommitId + 1) >>> 0;
            txStart = nextLogBlock;
            continue;
          }
          const commit = parseCommitBlock(bh);
          const commitTime = commit.commitSec;
          t!.commitBlock = logBlock;
          t!.commitTime = commitTime;
          let verdict: "ok" | "bad" | "partial" | "none" = "none";
          let chksumError = false;
          if (needCheckCommitTime) {
            if (commitTime >= lastTransCommitTime) {
              throw new RecoveryFailure(
                `invalid checksum found in transaction ${nextCommitId}`,
              );
            }
            // Stale blocks of an older journal: end recovery here, successfully.
            info.endReason =
              `transaction ${nextCommitId} has a bad checksum and an older commit time: stale log`;
            t!.endReason = info.endReason;
            break scan;
          }
          if (jsb.hasCsumV1) {
            if (info.endKnown) {
              info.failedCommit = info.endTransaction;
              break scan;
            }
            const ok = (crc32Sum === commit.checksum && commit.checksumType === 1 &&
              commit.checksumSize === 4) ||
              (commit.checksumType === 0 && commit.checksumSize === 0 && commit.checksum === 0);
            crc32Sum = 0xffffffff;
            if (ok) verdict = commit.checksumType === 0 ? "none" : "ok";
            else chksumError = true;
          } else if (jsb.hasCsumV2or3) {
            if (commitBlockValid(bh, jsb)) verdict = "ok";
            else if (commitBlockValidPartial(bh, jsb)) verdict = "partial";
            else chksumError = true;
          }
          if (chksumError) {
            verdict = "bad";
            t!.commitChecksum = verdict;
            if (commitTime < lastTransCommitTime) {
              info.endReason =
                `transaction ${nextCommitId} has a bad commit checksum and an older commit time: stale log`;
              t!.endReason = info.endReason;
              break scan;
            }
            info.endTransaction = nextCommitId;
            info.endKnown = true;
            info.headBlock = headBlock;
            info.headKnown = true;
            info.endReason = `transaction ${nextCommitId} has a bad commit checksum`;
            t!.endReason = info.endReason;
            if (!jsb.hasAsyncCommit) {
              info.failedCommit = nextCommitId;
              break scan;
            }
          }
          t!.commitChecksum = verdict;
          lastTransCommitTime = commitTime;
          headBlock = nextLogBlock;
          nextCommitId = (nextCommitId + 1) >>> 0;
          txStart = nextLogBlock;
          continue;
        }

        case BlockType.REVOKE: {
          if (pass !== PASS_REVOKE && pass !== PASS_SCAN) continue;
          let tailOk: boolean | undefined;
          if (pass === PASS_SCAN) {
            tailOk = blockTailValid(bh, jsb);
            if (!tailOk) needCheckCommitTime = true;
          }
          let records: number[];
          try {
            records = parseRevokeBlock(bh, jsb, logBlock);
          } catch (e) {
            throw new RecoveryFailure((e as Error).message);
          }
          if (t) {
            t.revokeBlocks.push({
              logBlock,
              checksumOk: jsb.hasCsumV2or3 ? tailOk : undefined,
              records,
            });
          }
          if (pass === PASS_REVOKE) {
            for (const r of records) {
              // jbd2_journal_set_revoke(): keep the latest revoking transaction.
              const prev = this.revoked.get(r);
              if (prev === undefined || tidGt(nextCommitId, prev)) {
                this.revoked.set(r, nextCommitId);
              }
            }
          }
          continue;
        }

        default:
          if (pass === PASS_SCAN) {
            info.endReason = `block ${logBlock} has unknown type ${hdr.blockType}`;
          }
          break scan;
      }
    }

    if (pass === PASS_SCAN) {
      if (!info.endKnown) {
        info.endTransaction = nextCommitId;
        info.endKnown = true;
      }
      if (!info.headKnown) {
        info.headBlock = headBlock;
        info.headKnown = true;
      }
    } else if (info.endTransaction !== nextCommitId) {
      success ??=
        `recovery pass ${pass} ended at transaction ${nextCommitId}, expected ${info.endTransaction}`;
    }
    return success;
  }
}

/** The fast-commit head tag (`EXT4_FC_TAG_HEAD`). */
const EXT4_FC_TAG_HEAD = 0x9;

/**
 * Runs the kernel's three recovery passes over a journal and returns what replay must do.
 * Nothing is written. `plan.error` says when the kernel would fail: `refused` means it
 * fails before writing (and so must we); `corrupt` means it writes `plan.writes` and then
 * reports the corruption.
 *
 * @example
 * ```ts ignore
 * const plan = await recoverJournal(store, jsb);
 * console.log(plan.startSequence, plan.endSequence, plan.writes.length);
 * ```
 */
export async function recoverJournal(
  store: JournalStore,
  jsb: JournalSuperblock,
): Promise<RecoveryPlan> {
  const plan: RecoveryPlan = {
    needed: jsb.start !== 0,
    startSequence: jsb.sequence,
    endSequence: jsb.sequence,
    headBlock: jsb.start,
    transactions: [],
    writes: [],
    revoked: new Map(),
    endReason: "the journal is empty (s_start = 0)",
    badDataBlocks: [],
  };
  if (!plan.needed) return plan;
  const r = new Recovery(store, jsb);
  const info: Info = {
    startTransaction: jsb.sequence,
    endTransaction: 0,
    endKnown: false,
    headBlock: 0,
    headKnown: false,
    endReason: "end of log",
  };
  const finish = () => {
    plan.transactions = [...r.transactions.values()];
    plan.endSequence = info.endTransaction;
    plan.headBlock = info.headBlock;
    plan.endReason = info.endReason;
    plan.failedCommit = info.failedCommit;
    for (const t of plan.transactions) t.replayed = tidGt(info.endTransaction, t.sequence);
  };
  try {
    await r.pass(info, PASS_SCAN);
    finish();
    if (jsb.hasFastCommit) plan.fastCommit = await findFastCommit(r, info.endTransaction);
    await r.pass(info, PASS_REVOKE);
    const replayError = await r.pass(info, PASS_REPLAY);
    plan.writes = r.writes;
    plan.revoked = r.revoked;
    plan.badDataBlocks = r.badData;
    finish();
    if (replayError) plan.error = { kind: "corrupt", message: `JBD2: ${replayError}` };
    if (info.failedCommit !== undefined) {
      plan.error = {
        kind: "corrupt",
        message: `journal transaction ${info.failedCommit} is corrupt (bad commit checksum); ` +
          `transactions ${plan.startSequence} to ${(info.failedCommit - 1) >>> 0} were replayed`,
        failedCommit: info.failedCommit,
      };
    }
  } catch (e) {
    if (!(e instanceof RecoveryFailure)) throw e;
    finish();
    plan.writes = [];
    plan.error = { kind: "refused", message: `journal recovery failed: ${e.message}` };
  }
  return plan;
}

/**
 * Looks for a fast commit the kernel would replay after the full transactions: the first
 * block of the fast-commit area must start with a head tag naming the expected transaction
 * (as `ext4_fc_replay_scan()` checks). A stale area (another tid) replays nothing.
 */
async function findFastCommit(
  r: Recovery,
  expectedTid: number,
): Promise<{ firstBlock: number; tid: number } | undefined> {
  const first = r.last + 1;
  if (first >= r.totalLen) return undefined;
  let b: Uint8Array;
  try {
    b = await r.read(first, true);
  } catch {
    return undefined;
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = v.getUint16(0, true);
  const len = v.getUint16(2, true);
  if (tag !== EXT4_FC_TAG_HEAD || len < 8) return undefined;
  const tid = v.getUint32(8, true);
  return tid === expectedTid ? { firstBlock: first, tid } : undefined;
}

/**
 * Reads journal block `logBlock` as the filesystem block it replays to: the journalled
 * bytes, with the journal magic restored when the tag was escaped.
 *
 * @example
 * ```ts ignore
 * const data = await replayedBlock(store, plan.writes[0]);
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
