/**
 * Journal recovery with the kernel's semantics (fs/jbd2/recovery.c): three passes over the
 * log — SCAN finds the end of the valid log, REVOKE collects revoke records, REPLAY decides
 * which journalled block lands where — stopping exactly where the kernel stops.
 *
 * Nothing here writes: {@link recoverJournal} returns a {@link RecoveryPlan} (the blocks to
 * write, in log order, as references into the journal) plus what the kernel would report.
 * `lib/ext4/recovery.ts` applies a plan to a device; `lib/ext4/journal_overlay.ts` serves it from
 * memory. The pieces the passes share are beside this file: `journal_store.ts` (the store and
 * the window the log is read through), `scan.ts` (what the scan read), `revoke_table.ts`,
 * `recovery_plan.ts` (the result and the helpers applying it), `tid.ts`.
 *
 * Where the kernel and e2fsck part ways (see the corpus' EXPECTED.md) this module follows
 * the kernel: it refuses what the kernel refuses before writing anything, and reports what
 * the kernel reports after writing (a corrupt commit, a bad data-block checksum).
 *
 * @module
 */

import {
  commitBlockValid,
  commitBlockValidPartial,
  crc32Be,
  JBD2_CRC32_CHKSUM,
  JBD2_CRC32_CHKSUM_SIZE,
  parseCommitBlock,
} from "./commit_block.ts";
import {
  blockTailValid,
  dataBlockValid,
  parseDescriptorTags,
  readHeader,
  tagChecksumMatches,
  TagFlag,
} from "./descriptor_block.ts";
import { parseRevokeBlock } from "./revocation_block.ts";
import { BlockType, type JournalSuperblock } from "./superblock.ts";
import { type JournalStore, LogReader, RecoveryFailure } from "./journal_store.ts";
import type { LoggedBlock, RecoveryPlan, ReplayWrite, TransactionInfo } from "./recovery_plan.ts";
import { RevokeTable } from "./revoke_table.ts";
import { ScannedBlocks } from "./scan.ts";
import { tidGeq, tidGt } from "./tid.ts";

const PASS_SCAN = 0;
const PASS_REVOKE = 1;
const PASS_REPLAY = 2;
type Pass = typeof PASS_SCAN | typeof PASS_REVOKE | typeof PASS_REPLAY;

interface Info {
  startTransaction: number;
  endTransaction: number; // 0 = unknown yet, as in the kernel
  endKnown: boolean;
  headBlock: number;
  headKnown: boolean;
  failedCommit?: number;
  endReason: string;
}

/** Journal context for one recovery. */
class Recovery {
  readonly jsb: JournalSuperblock;
  readonly reader: LogReader;
  readonly revokes = new RevokeTable();
  readonly transactions = new Map<number, TransactionInfo>();
  readonly writes: ReplayWrite[] = [];
  readonly badData: { logBlock: number; target: number; sequence: number }[] = [];
  /** The blocks the scan saw, by log block, to annotate them during replay. */
  readonly logged = new Map<number, LoggedBlock>();
  readonly #scanned: ScannedBlocks;
  readonly #csumV2or3: boolean;

  constructor(store: JournalStore, jsb: JournalSuperblock) {
    this.jsb = jsb;
    this.reader = new LogReader(store, jsb);
    this.#scanned = new ScannedBlocks(this.reader, jsb);
    this.#csumV2or3 = jsb.hasCsumV2or3;
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
    const limit = 2 * this.reader.totalLen + 16;
    const see = (n: number) => {
      visited += n;
      if (visited > limit) {
        throw new RecoveryFailure(
          `the log is longer than the journal (${this.reader.totalLen} blocks)`,
        );
      }
    };

    scan: while (true) {
      if (pass !== PASS_SCAN && tidGeq(nextCommitId, info.endTransaction)) break;
      const logBlock = nextLogBlock;
      // Read through the journal's chunks even in the scan, which needs only this block:
      // sequential reads of the whole log (which warm the page cache for the replay) cost
      // far less than a cold random read per descriptor and commit block.
      const bh = await this.reader.read(logBlock);
      see(1);
      nextLogBlock = this.reader.wrap(nextLogBlock + 1);

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
                nextLogBlock = this.reader.wrap(nextLogBlock + 1);
                see(1);
                let data: Uint8Array;
                try {
                  data = await this.reader.read(io);
                } catch {
                  info.endReason = `cannot read log block ${io}`;
                  break scan;
                }
                crc32Sum = crc32Be(crc32Sum, data);
                await this.#scanned.note(io, nextCommitId, data);
                if (t) this.#log(t, { logBlock: io, target: tag.target, flags: tag.flags });
              }
              continue;
            }
            if (t) {
              let io = nextLogBlock;
              for (const tag of tags) {
                this.#log(t, { logBlock: io, target: tag.target, flags: tag.flags });
                await this.#scanned.note(io, nextCommitId);
                io = this.reader.wrap(io + 1);
              }
            }
            see(tags.length);
            nextLogBlock = this.reader.wrap(nextLogBlock + tags.length);
            continue;
          }
          // PASS_REPLAY: jbd2_do_replay().
          for (const tag of tags) {
            const io = nextLogBlock;
            nextLogBlock = this.reader.wrap(nextLogBlock + 1);
            see(1);
            // The scan read most blocks already (and kept their checksums): read the others.
            const scanned = this.#scanned.checksumOf(io);
            let data: Uint8Array | undefined;
            if (scanned === undefined) {
              try {
                data = await this.reader.read(io);
              } catch (e) {
                success = (e as Error).message;
                continue;
              }
            }
            const logged = this.logged.get(io);
            if (this.revokes.revokes(tag.target, nextCommitId)) {
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
            const ok = (crc32Sum === commit.checksum &&
              commit.checksumType === JBD2_CRC32_CHKSUM &&
              commit.checksumSize === JBD2_CRC32_CHKSUM_SIZE) ||
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
            for (const r of records) this.revokes.set(r, nextCommitId);
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
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store, jsb } = await locateJournal(device, await readSuperblock(device));
 * const plan = await recoverJournal(store, jsb);
 * console.log(plan.needed, plan.writes.length); // false 0
 * await Deno.remove(img);
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
    plan.revoked = r.revokes.records;
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
  const first = r.reader.last + 1;
  if (first >= r.reader.totalLen) return undefined;
  let b: Uint8Array;
  try {
    b = await r.reader.read(first, true);
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
