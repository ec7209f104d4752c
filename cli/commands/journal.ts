/**
 * `ext4ts journal replay` and `ext4ts journal show`: recover a filesystem's journal as the
 * kernel would, or print the journal (superblock and every transaction) like debugfs
 * `logdump`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { type FileBlockDevice, openBlockDevice } from "../../ffi/file_device.ts";
import { readSuperblock } from "../../lib/ondisk/superblock.ts";
import { locateJournal } from "../../lib/ext4/journal.ts";
import { recoverJournal } from "../../lib/jbd2/recovery.ts";
import type { RecoveryPlan } from "../../lib/jbd2/recovery_plan.ts";
import { needsRecovery, replayJournal, type ReplayResult } from "../../lib/ext4/recovery.ts";
import { Progress, progressMode } from "../progress.ts";
import { journalFeatureNames, type JournalSuperblock } from "../../lib/jbd2/superblock.ts";
import { TagFlag } from "../../lib/jbd2/descriptor_block.ts";
import { decodeFastCommits, type FastCommitRecord } from "../../lib/jbd2/fast_commit.ts";
import { ExitCode } from "../exit_codes.ts";
import { CliError, runAction, warn, withSchemaVersion, writeStdout } from "../output.ts";
import { documentCommand } from "../help.ts";

async function withDevices<T>(
  path: string,
  journalDev: string | undefined,
  readWrite: boolean,
  fn: (dev: FileBlockDevice, jdev?: FileBlockDevice) => Promise<T>,
): Promise<T> {
  // Read-write opens claim the device (exclusive): a mounted or held block device, an image
  // behind a mounted or held loop device, or an image another ext4ts process writes or
  // mounts fails with BUSY (exit 8) instead of being replayed under its user's feet.
  const open = (p: string) =>
    openBlockDevice(
      p,
      readWrite ? { readOnly: false, fallbackToReadOnly: true, exclusive: true } : {},
    );
  const dev = open(path);
  let jdev: FileBlockDevice | undefined;
  try {
    if (journalDev) jdev = open(journalDev);
    return await fn(dev, jdev);
  } finally {
    await jdev?.close();
    await dev.close();
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

function jsbJson(jsb: JournalSuperblock) {
  return {
    version: jsb.isV2 ? 2 : 1,
    blockSize: jsb.blockSize,
    maxLen: jsb.maxLen,
    first: jsb.first,
    sequence: jsb.sequence,
    start: jsb.start,
    errno: jsb.errno,
    features: journalFeatureNames(jsb.featureCompat, jsb.featureIncompat, jsb.featureRoCompat),
    uuid: jsb.uuidString,
    nrUsers: jsb.nrUsers,
    checksumType: jsb.checksumType,
    checksum: jsb.hasCsumV2or3 ? hex(jsb.checksum) : undefined,
    fastCommitBlocks: jsb.fastCommitBlocks,
    tagBytes: jsb.tagBytes,
  };
}

function planJson(plan: RecoveryPlan) {
  return {
    needed: plan.needed,
    startSequence: plan.startSequence,
    endSequence: plan.endSequence,
    headBlock: plan.headBlock,
    endReason: plan.endReason,
    error: plan.error,
    fastCommit: plan.fastCommit,
    writes: plan.writes.length,
    distinctBlocks: new Set(plan.writes.map((w) => w.target)).size,
    revokeRecords: plan.revoked.size,
    badDataBlocks: plan.badDataBlocks,
    transactions: plan.transactions,
  };
}

function flagText(flags: number): string {
  const f: string[] = [];
  if (flags & TagFlag.ESCAPE) f.push("escaped");
  if (flags & TagFlag.DELETED) f.push("deleted");
  return f.length ? ` [${f.join(",")}]` : "";
}

function timeText(seconds: number): string {
  const ms = seconds * 1000;
  // A commit time from a corrupt block may be beyond what Date represents.
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${seconds} s`;
}

function csText(ok: boolean | undefined): string {
  return ok === undefined ? "" : ok ? " checksum ok" : " CHECKSUM BAD";
}

function showText(
  description: string,
  jsb: JournalSuperblock,
  plan: RecoveryPlan,
  fastCommits: FastCommitRecord[],
): string {
  const out: string[] = [];
  out.push(
    `Journal: ${description}, v${jsb.isV2 ? 2 : 1}, ${jsb.maxLen} blocks of ${jsb.blockSize} bytes`,
  );
  const feats = journalFeatureNames(jsb.featureCompat, jsb.featureIncompat, jsb.featureRoCompat);
  out.push(`  features: ${feats.length ? feats.join(" ") : "(none)"}`);
  out.push(`  uuid: ${jsb.uuidString}  users: ${jsb.nrUsers}`);
  out.push(
    `  first block: ${jsb.first}  sequence: ${jsb.sequence}  start: ${jsb.start}` +
      (jsb.start === 0 ? " (empty)" : " (needs recovery)") + `  errno: ${jsb.errno}`,
  );
  if (jsb.hasCsumV2or3) out.push(`  superblock checksum: ${hex(jsb.checksum)} ok`);
  if (jsb.hasFastCommit) {
    out.push(`  fast-commit area: blocks ${jsb.last + 1}..${jsb.maxLen - 1}`);
  }
  if (!plan.needed) {
    out.push("The log is empty: nothing to recover.");
    return out.join("\n") + "\n";
  }
  for (const t of plan.transactions) {
    const commit = t.commitBlock !== undefined
      ? `commit at block ${t.commitBlock}` +
        (t.commitTime ? ` (${timeText(t.commitTime)})` : "") +
        (t.commitChecksum && t.commitChecksum !== "none" ? `, checksum ${t.commitChecksum}` : "")
      : "no commit block";
    out.push(
      `Transaction ${t.sequence} at block ${t.startBlock}: ${commit}; ` +
        (t.replayed ? "replayed" : "NOT replayed"),
    );
    for (const d of t.descriptorBlocks) {
      out.push(`  descriptor block ${d.logBlock}${csText(d.checksumOk)}`);
    }
    for (const b of t.blocks) {
      out.push(
        `    log block ${b.logBlock} -> fs block ${b.target}${flagText(b.flags)}` +
          `${csText(b.checksumOk)}${b.revoked ? " (revoked)" : ""}`,
      );
    }
    for (const r of t.revokeBlocks) {
      out.push(
        `  revoke block ${r.logBlock}${csText(r.checksumOk)}: ${r.records.length} record(s)` +
          (r.records.length ? `: ${r.records.slice(0, 32).join(" ")}` : "") +
          (r.records.length > 32 ? " …" : ""),
      );
    }
    if (t.endReason) out.push(`  ${t.endReason}`);
  }
  out.push(`Log ends: ${plan.endReason}`);
  const distinct = new Set(plan.writes.map((w) => w.target)).size;
  if (plan.endSequence === plan.startSequence) {
    out.push("Recovery: no complete transaction to replay");
  } else {
    out.push(
      `Recovery: transactions ${plan.startSequence} to ${(plan.endSequence - 1) >>> 0} ` +
        `(${(plan.endSequence - plan.startSequence) >>> 0}), ${plan.writes.length} block writes ` +
        `(${distinct} distinct blocks), ${plan.revoked.size} revoke records`,
    );
  }
  if (jsb.hasFastCommit) {
    out.push(`Fast-commit area (${fastCommits.length} records):`);
    for (const r of fastCommits) out.push(`  block ${r.block}: ${r.name} ${r.text}`);
  }
  if (plan.fastCommit) {
    out.push(
      `Fast commit for transaction ${plan.fastCommit.tid} at block ${plan.fastCommit.firstBlock} (ext4ts cannot replay it)`,
    );
  }
  if (plan.error) out.push(`Error: ${plan.error.message}`);
  return out.join("\n") + "\n";
}

function replayText(path: string, r: ReplayResult, dryRun: boolean): string {
  if (!r.needed) return `${path}: ${r.reason}\n`;
  const p = r.prepared!;
  const plan = p.plan;
  const out: string[] = [];
  const n = (plan.endSequence - plan.startSequence) >>> 0;
  out.push(
    `${path}: ${dryRun ? "would replay" : "replayed"} ${n} transaction(s) ` +
      (n ? `${plan.startSequence} to ${(plan.endSequence - 1) >>> 0} ` : "") +
      `from the journal (${p.journal.store.description})`,
  );
  if (dryRun) {
    out.push(`blocks that would be written (${r.blocksWritten.length}):`);
    for (const b of r.blocksWritten) {
      const s = p.blocks.get(b)!;
      out.push(
        s.kind === "journal"
          ? `  ${b} <- journal block ${s.write.logBlock} (transaction ${s.write.sequence}${
            s.write.escaped ? ", escaped" : ""
          })`
          : `  ${b} <- ${s.what}`,
      );
    }
    if (p.journal.external) out.push("  external journal block 0 <- journal superblock");
  } else {
    const released = p.orphans?.released.length ?? 0;
    out.push(
      `${r.blocksWritten.length} blocks written; needs_recovery cleared` +
        (released ? `; ${released} orphan inode(s) released` : ""),
    );
  }
  return out.join("\n") + "\n";
}

/** Registers `ext4ts journal replay` and `ext4ts journal show`. */
export function registerJournal(program: Command): void {
  const journal = program.command("journal").description(
    "Replay or show a filesystem's journal (jbd2).",
  );
  documentCommand(journal, {
    about: "The journal (jbd2) of a filesystem that was not cleanly unmounted holds " +
      "transactions not yet written to their places. `journal replay` writes them as the " +
      "kernel does on mount; `journal show` prints the journal like debugfs logdump.",
    examples: [
      "ext4ts journal show disk.img",
      "ext4ts journal replay --dry-run disk.img",
      "ext4ts journal replay /dev/sdb1",
    ],
    exitCodes: [
      ExitCode.FAILURE,
      ExitCode.NOT_EXT4,
      ExitCode.FS_ERRORS,
      ExitCode.UNSUPPORTED,
      ExitCode.IO,
    ],
  });

  const replay = journal.command("replay")
    .description(
      "Replay the journal as the kernel does on mount, then mark the filesystem recovered.",
    )
    .argument("<device>", "image file or block device")
    .option("--dry-run", "say what would be written, write nothing")
    .option("--json", "print the result as JSON")
    .option("--journal-dev <path>", "the external journal device")
    .option("--progress", "show progress on stderr even when it is not a terminal")
    .option("--no-progress", "no progress line, even on a terminal")
    .action((device, opts) =>
      runAction(() =>
        withDevices(device, opts.journalDev, !opts.dryRun, async (dev, jdev) => {
          if (!opts.dryRun && dev.readOnly) {
            throw new CliError(
              `${device}: ${dev.readOnlyReason ?? "read-only"}: cannot replay the journal ` +
                `(use --dry-run to see what would be written)`,
              ExitCode.READ_ONLY,
            );
          }
          if (jdev && !opts.dryRun && jdev.readOnly) {
            throw new CliError(
              `${opts.journalDev}: ${jdev.readOnlyReason ?? "read-only"}: cannot reset the journal`,
              ExitCode.READ_ONLY,
            );
          }
          const progress = new Progress(
            "journal replay",
            progressMode(opts.progress),
            {},
            "blocks",
          );
          let r: ReplayResult;
          try {
            r = await replayJournal(dev, {
              dryRun: opts.dryRun,
              journalDevice: jdev,
              journalDeviceName: opts.journalDev,
              onProgress: (done, total, bs) => {
                progress.totals = { bytes: total * bs, entries: total };
                progress.update(done * bs, done);
              },
            });
          } finally {
            progress.done();
          }
          if (opts.json) {
            await writeStdout(
              JSON.stringify(
                withSchemaVersion({
                  device,
                  needed: r.needed,
                  reason: r.reason,
                  dryRun: !!opts.dryRun,
                  written: r.written,
                  journal: r.prepared?.journal.store.description,
                  startSequence: r.prepared?.plan.startSequence,
                  endSequence: r.prepared?.plan.endSequence,
                  blocks: r.blocksWritten,
                  orphansReleased: r.prepared?.orphans?.released,
                  warnings: r.prepared?.warnings,
                  error: r.error,
                }),
                null,
                2,
              ) + "\n",
            );
          } else {
            await writeStdout(replayText(device, r, !!opts.dryRun));
          }
          for (const w of r.prepared?.warnings ?? []) warn(`warning: ${w}`);
          if (r.error) {
            warn(`${r.error}; the filesystem is marked for a full check (run e2fsck -f)`);
            return ExitCode.FS_ERRORS;
          }
          return ExitCode.OK;
        })
      )
    );

  documentCommand(replay, {
    about: "Replays the journal onto the device as the kernel does on mount (revoke records, " +
      "checksums, escaped blocks, orphan cleanup), then clears needs_recovery. A read-only " +
      "device is refused before anything is written; --dry-run says what would be written.",
    examples: [
      "ext4ts journal replay disk.img",
      "ext4ts journal replay --dry-run --json /dev/sdb1",
      "ext4ts journal replay --journal-dev journal.img fs.img",
    ],
    exitCodes: [
      [ExitCode.FAILURE, "the operation failed (e.g. the journal device cannot be matched)"],
      ExitCode.NOT_EXT4,
      [ExitCode.FS_ERRORS, "the journal is corrupt: nothing, or what the kernel would, written"],
      [ExitCode.UNSUPPORTED, "a fast commit to replay, or features ext4ts cannot handle"],
      ExitCode.IO,
      ExitCode.BUSY,
      [ExitCode.READ_ONLY, "the device is read-only (use --dry-run)"],
    ],
  });

  const show = journal.command("show")
    .description("Print the journal superblock and every transaction in the log (a logdump).")
    .argument("<device>", "image file or block device")
    .option("--json", "print as JSON")
    .option("--journal-dev <path>", "the external journal device")
    .action((device, opts) =>
      runAction(() =>
        withDevices(device, opts.journalDev, false, async (dev, jdev) => {
          const sb = await readSuperblock(dev);
          const { store, jsb } = await locateJournal(dev, sb, {
            journalDevice: jdev,
            journalDeviceName: opts.journalDev,
          });
          const plan = await recoverJournal(store, jsb);
          const fastCommits: FastCommitRecord[] = [];
          if (jsb.hasFastCommit) {
            const area: { block: number; data: Uint8Array }[] = [];
            for (let b = jsb.last + 1; b < Math.min(jsb.maxLen, store.blockCount); b++) {
              area.push({ block: b, data: await store.readBlock(b) });
            }
            fastCommits.push(...decodeFastCommits(area));
          }
          if (opts.json) {
            await writeStdout(
              JSON.stringify(
                withSchemaVersion({
                  device,
                  needsRecovery: needsRecovery(sb),
                  journal: store.description,
                  superblock: jsbJson(jsb),
                  recovery: planJson(plan),
                  fastCommits: jsb.hasFastCommit ? fastCommits : undefined,
                }),
                null,
                2,
              ) + "\n",
            );
          } else {
            await writeStdout(
              `Filesystem needs_recovery: ${needsRecovery(sb) ? "yes" : "no"}\n` +
                showText(store.description, jsb, plan, fastCommits),
            );
          }
          return ExitCode.OK;
        })
      )
    );
  documentCommand(show, {
    about: "Prints the journal superblock and every transaction in the log, with their " +
      "blocks, revoke records and checksums, like debugfs logdump; nothing is written. " +
      "--json prints the same, with what a recovery would replay.",
    examples: [
      "ext4ts journal show disk.img",
      "ext4ts journal show --json /dev/sdb1 | jq .recovery",
      "ext4ts journal show --journal-dev journal.img fs.img",
    ],
    exitCodes: [
      ExitCode.FAILURE,
      ExitCode.NOT_EXT4,
      ExitCode.FS_ERRORS,
      ExitCode.UNSUPPORTED,
      ExitCode.IO,
    ],
  });
}
