/**
 * `ext4ts probe DEVICE|IMAGE [--json] [--full] [--offset BYTES]`: what is on the device, its
 * state, and what ext4ts can do with it. The JSON schema is documented in README.md.
 *
 * @module
 */

import { type Command, Option } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { formatUuid, isZero } from "../../lib/ondisk/superblock.ts";
import {
  type Capabilities,
  type Capability,
  journalDeviceError,
  journalSummary,
  probeDevice,
  type ProbeResult,
  readJournalDevice,
  stateSummary,
} from "../../lib/report/probe.ts";
import {
  Compat,
  featureNames,
  featureSupport,
  Incompat,
  type SupportLevel,
} from "../../lib/ondisk/features.ts";
import { journalReport, mmpReport, superblockReport } from "../../lib/report/superblock_report.ts";
import { type DeviceUse, deviceUse } from "../../ffi/device_status.ts";
import { openCliDevice } from "../device.ts";
import { parseOffset } from "../reader_common.ts";
import { ExitCode, type ExitCodeValue } from "../exit_codes.ts";
import { runAction, warn, writeStdout } from "../output.ts";
import { systemNames } from "../names.ts";
import { documentCommand } from "../help.ts";

/** Version of the `--json` schema; bumped only for incompatible changes. */
export const PROBE_SCHEMA_VERSION = 1;

/**
 * The exit code a probe result earns: unsupported features > errors > needs recovery > ok.
 * Corrupt descriptors make the verdict `refuse` too, but they are errors (5), not features.
 */
export function probeExitCode(r: ProbeResult): ExitCodeValue {
  if (featureSupport(r.superblock).level === "refuse") return ExitCode.UNSUPPORTED;
  if (r.hasErrors) return ExitCode.FS_ERRORS;
  if (r.needsRecovery) return ExitCode.NEEDS_RECOVERY;
  return ExitCode.OK;
}

/**
 * The verdict with the device's current use folded in: a filesystem mounted or held open
 * exclusively right now is at most read-only for ext4ts (a second writer would corrupt it).
 */
export function verdictWithUse(
  r: ProbeResult,
  use: DeviceUse | null,
): { level: SupportLevel; reasons: string[] } & Capabilities {
  const v = { ...r.support, ...r.capabilities };
  if (!use || v.level === "refuse") return v;
  const busy = use.mounts.length
    ? `it is mounted right now on ${use.mounts.map((m) => m.mountPoint).join(", ")}${
      use.exclusivelyHeld ? " and held open exclusively" : ""
    }`
    : use.exclusivelyHeld
    ? "another program holds it open exclusively right now"
    : null;
  if (!busy) return v;
  // Nothing may write a filesystem in use: neither offline writers nor a read-write mount.
  const no = (c: Capability) => ({ ok: false, reasons: [...c.reasons, busy] });
  return {
    level: "ro",
    reasons: [...v.reasons, busy],
    read: v.read,
    writeOffline: no(v.writeOffline),
    mountReadWrite: no(v.mountReadWrite),
  };
}

/** An ISO time; null when unset (0) or beyond what a Date holds (a corrupt 64-bit time). */
function isoTime(seconds: number): string | null {
  const d = new Date(seconds * 1000);
  return seconds && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
}

/** A time for the summary: ISO, or the raw seconds when a Date cannot hold them. */
function timeText(seconds: number): string {
  return isoTime(seconds) ?? `${seconds} seconds after the epoch (out of range)`;
}

/** The documented `--json` object. */
export function probeJson(path: string, size: number, r: ProbeResult, use: DeviceUse | null) {
  const sb = r.superblock;
  return {
    schemaVersion: PROBE_SCHEMA_VERSION,
    schema: PROBE_SCHEMA_VERSION,
    device: path,
    deviceSize: size,
    type: r.fsType,
    label: sb.volumeName,
    uuid: formatUuid(sb.uuid),
    blockSize: sb.blockSize,
    clusterSize: sb.clusterSize,
    blocks: sb.blocksCount,
    freeBlocks: sb.freeBlocksCount,
    reservedBlocks: sb.reservedBlocksCount,
    inodes: sb.inodesCount,
    freeInodes: sb.freeInodesCount,
    inodeSize: sb.inodeSize,
    groups: sb.groupCount,
    features: featureNames(sb),
    state: {
      summary: stateSummary(r),
      clean: (sb.state & 1) !== 0,
      errors: r.hasErrors,
      needsRecovery: r.needsRecovery,
      descriptorChecksumErrors: r.groups?.badChecksums ?? [],
      descriptorError: r.groupsError,
    },
    lastMount: { time: isoTime(sb.mountTime), path: sb.lastMounted || null },
    lastWrite: isoTime(sb.writeTime),
    created: isoTime(sb.mkfsTime),
    mountCount: sb.mountCount,
    maxMountCount: sb.maxMountCount,
    journal: journalSummary(r),
    recovery: r.recovery,
    mmp: r.mmp
      ? {
        state: r.mmp.state,
        block: sb.mmpBlock,
        interval: sb.mmpInterval,
        nodeName: r.mmp.nodeName,
        deviceName: r.mmp.deviceName,
        updated: isoTime(r.mmp.time),
        error: r.mmpError,
      }
      : (r.mmpError
        ? {
          state: "unreadable",
          block: sb.mmpBlock,
          interval: sb.mmpInterval,
          nodeName: null,
          deviceName: null,
          updated: null,
          error: r.mmpError,
        }
        : null),
    inUse: use
      ? {
        mounted: use.mounts.length > 0,
        mountPoints: use.mounts.map((m) => m.mountPoint),
        exclusivelyHeld: use.exclusivelyHeld,
        loopDevices: use.loopDevices,
      }
      : null,
    verdict: verdictWithUse(r, use),
    exitCode: probeExitCode(r),
  };
}

/**
 * A value as `blkid -o export` prints it (util-linux safe_print): a byte above 127 as `M-`
 * and the byte less 128, a control character as `^` and its letter, and the shell's
 * metacharacters `` \"'$`<>`` and space escaped with a backslash.
 *
 * @example
 * ```ts ignore
 * blkidExportValue(new TextEncoder().encode("my disk")); // my\ disk
 * ```
 */
export function blkidExportValue(bytes: Uint8Array): string {
  let out = "";
  for (let ch of bytes) {
    if (ch >= 128) {
      out += "M-";
      ch -= 128;
    }
    if (ch < 32 || ch === 0x7f) {
      out += "^";
      ch ^= 0x40;
    }
    const c = String.fromCharCode(ch);
    if (" \\\"'$`<>".includes(c)) out += "\\";
    out += c;
  }
  return out;
}

/**
 * `-o export`: `KEY=VALUE` lines as `blkid -o export -p` prints them for the same device
 * (DEVNAME, LABEL, UUID, EXT_JOURNAL, SEC_TYPE, VERSION, BLOCK_SIZE, TYPE, USAGE, in its
 * order and with its rules), then ext4ts's own keys, prefixed `EXT4TS_`.
 */
export function exportLines(path: string, r: ProbeResult, use: DeviceUse | null): string {
  const sb = r.superblock;
  const lines = [`DEVNAME=${path}`];
  const add = (key: string, value: string | Uint8Array) =>
    lines.push(
      `${key}=${
        blkidExportValue(typeof value === "string" ? new TextEncoder().encode(value) : value)
      }`,
    );
  // libblkid: the label up to its NUL, trailing whitespace trimmed; all-zero UUIDs unset.
  const raw = sb.bytes.subarray(0x78, 0x88);
  const nul = raw.indexOf(0);
  let label = raw.subarray(0, nul < 0 ? raw.length : nul);
  while (label.length && /\s/.test(String.fromCharCode(label[label.length - 1]))) {
    label = label.subarray(0, label.length - 1);
  }
  if (label.length) add("LABEL", label);
  if (!isZero(sb.uuid)) add("UUID", formatUuid(sb.uuid));
  if ((sb.compat & Compat.HAS_JOURNAL) && !isZero(sb.journalUuid)) {
    add("EXT_JOURNAL", formatUuid(sb.journalUuid));
  }
  // ext3 and ext4 whose incompatible features ext2 also has are "ext2" too (SEC_TYPE).
  const ext2Incompat = Incompat.FILETYPE | Incompat.META_BG;
  if (r.fsType !== "ext2" && (sb.incompat & ~ext2Incompat) === 0) add("SEC_TYPE", "ext2");
  add("VERSION", `${sb.revLevel}.${sb.minorRevLevel}`);
  add("BLOCK_SIZE", String(sb.blockSize));
  add("TYPE", r.fsType);
  add("USAGE", "filesystem");
  const v = verdictWithUse(r, use);
  const flag = (b: boolean) => (b ? "1" : "0");
  add("EXT4TS_VERDICT", v.level);
  add("EXT4TS_CAN_READ", flag(v.read.ok));
  add("EXT4TS_CAN_WRITE_OFFLINE", flag(v.writeOffline.ok));
  add("EXT4TS_CAN_MOUNT_RW", flag(v.mountReadWrite.ok));
  add("EXT4TS_STATE", stateSummary(r));
  add("EXT4TS_NEEDS_RECOVERY", flag(r.needsRecovery));
  add("EXT4TS_ERRORS", flag(r.hasErrors));
  if (use) add("EXT4TS_IN_USE", flag(use.mounts.length > 0 || use.exclusivelyHeld === true));
  add("EXT4TS_EXIT_CODE", String(probeExitCode(r)));
  return lines.join("\n") + "\n";
}

function humanSize(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[u]}`;
}

/** The human summary and verdict line. */
export function humanReport(path: string, r: ProbeResult, use: DeviceUse | null): string {
  const sb = r.superblock;
  const lines: string[] = [`${path}: ${r.fsType} filesystem`];
  const row = (k: string, v: string) => lines.push(`  ${(k + ":").padEnd(14)} ${v}`);
  row("label", sb.volumeName || "(none)");
  row("UUID", formatUuid(sb.uuid));
  row(
    "size",
    `${
      humanSize(sb.blocksCount * sb.blockSize)
    } (${sb.blocksCount} blocks of ${sb.blockSize} bytes)`,
  );
  const pct = sb.blocksCount ? ((100 * sb.freeBlocksCount) / sb.blocksCount).toFixed(1) : "0";
  row("free blocks", `${sb.freeBlocksCount} (${pct}%), ${sb.reservedBlocksCount} reserved`);
  row("inodes", `${sb.inodesCount} (${sb.freeInodesCount} free), ${sb.inodeSize} bytes each`);
  row("features", featureNames(sb).join(" ") || "(none)");
  row("state", stateSummary(r));
  row(
    "last mounted",
    sb.mountTime
      ? `${timeText(sb.mountTime)}${sb.lastMounted ? ` on ${sb.lastMounted}` : ""}`
      : "never",
  );
  row("mount count", `${sb.mountCount} (maximum ${sb.maxMountCount})`);
  const j = journalSummary(r);
  let journalText = "none";
  if (j) {
    journalText = j.external
      ? `external, device UUID ${j.uuid ?? "unknown"}`
      : `internal, inode ${j.inode}`;
    if (r.journal) {
      const jsb = r.journal;
      journalText += `, ${jsb.maxLen} blocks of ${jsb.blockSize} bytes, sequence ${jsb.sequence}${
        jsb.start ? `, log starts at block ${jsb.start}` : ", empty"
      }`;
      if (r.journalError) journalText += ` (unusable: ${r.journalError})`;
    } else if (r.journalError) journalText += ` (unreadable: ${r.journalError})`;
  }
  row("journal", journalText);
  if (r.mmp) {
    row(
      "MMP",
      `${r.mmp.state}, block ${sb.mmpBlock}, interval ${sb.mmpInterval}s, last update by ${
        r.mmp.nodeName || "?"
      } (${r.mmp.deviceName || "?"}) at ${timeText(r.mmp.time)}${
        r.mmpError ? ` (${r.mmpError})` : ""
      }`,
    );
  } else if (r.mmpError) row("MMP", `unreadable: ${r.mmpError}`);
  if (use) {
    const where = use.mounts.length
      ? `mounted on ${use.mounts.map((m) => `${m.mountPoint} (${m.fsType})`).join(", ")}`
      : "not mounted";
    const held = use.exclusivelyHeld ? ", held open exclusively" : "";
    row("in use", where + held);
  }
  const v = verdictWithUse(r, use);
  const can = (c: Capability, yes: string) => c.ok ? yes : `no (${c.reasons.join("; ")})`;
  if (v.read.ok) {
    row("read", "yes");
    row("write offline", can(v.writeOffline, "yes (put, mkdir, rm, mv)"));
    row(
      "mount",
      v.mountReadWrite.ok ? "read-write" : `read-only (${v.mountReadWrite.reasons.join("; ")})`,
    );
  }
  const verdict = v.level === "refuse"
    ? `refuse: ext4ts cannot use it (${v.reasons.join("; ")})`
    : v.mountReadWrite.ok
    ? `rw: ext4ts can mount it read-write${
      v.writeOffline.ok
        ? ""
        : ` (the mount replays the journal first; until then offline writers refuse: ${
          v.writeOffline.reasons.join("; ")
        })`
    }`
    : v.writeOffline.ok
    ? `ro: ext4ts can read it and write it offline, but not mount it read-write (${
      v.reasons.join("; ")
    })`
    : `ro: ext4ts can read it but not write it (${
      [...new Set([...v.reasons, ...v.writeOffline.reasons])].join("; ")
    })`;
  // The line says whether the device is in use right now either way: a busy device is among
  // the reasons (not known with --offset, which looks inside a larger device).
  const idle = use && !use.mounts.length && !use.exclusivelyHeld;
  lines.push(`verdict: ${verdict}${idle ? "; not mounted or held open right now" : ""}`);
  return lines.join("\n") + "\n";
}

/** Registers `ext4ts probe`. */
export function registerProbe(program: Command): void {
  const cmd = program
    .command("probe")
    .description("show what filesystem a device or image holds and what ext4ts can do with it")
    .argument("<device>", "block device or image file")
    .option("--json", "print a JSON object (schema in README.md)")
    .addOption(
      new Option(
        "-o, --output <format>",
        "output format: --json and --full as words, or " +
          "export: KEY=VALUE lines like blkid -o export",
      ).choices(["summary", "full", "json", "export"] as const),
    )
    .option("--full", "print every superblock field as dumpe2fs -h does")
    .option(
      "--offset <bytes>",
      "the filesystem starts this many bytes into the device",
      parseOffset,
    )
    .action((path, opts) =>
      runAction(async () => {
        const offset = opts.offset;
        const output = opts.output ?? (opts.json ? "json" : opts.full ? "full" : "summary");
        const { device, file } = openCliDevice(path, { readOnly: true, offset });
        try {
          // dumpe2fs -h shows an external journal device too: --full does (and still exits 6).
          const journalDevice = output === "full" ? await readJournalDevice(device) : null;
          if (journalDevice) {
            const { superblock, journal } = journalDevice;
            const lines = superblockReport(superblock, systemNames());
            if (journal) lines.push(...journalReport(journal, superblock.blockSize));
            await writeStdout(lines.join("\n") + "\n");
            throw new Ext4Error(
              "UNSUPPORTED",
              `${path}: ${journalDeviceError(superblock).message}`,
            );
          }
          let r: ProbeResult;
          try {
            r = await probeDevice(device, { mediaReadOnly: file.mediaReadOnly });
          } catch (e) {
            if (e instanceof Ext4Error && e.code === "IO") {
              throw new Ext4Error("IO", `${path}: ${e.message}`);
            }
            if (e instanceof Ext4Error) throw new Ext4Error(e.code, `${path}: ${e.message}`);
            throw e;
          }
          const use = offset ? null : deviceUse(file.path);
          if (output === "json") {
            await writeStdout(JSON.stringify(probeJson(path, device.size, r, use), null, 2) + "\n");
          } else if (output === "export") {
            await writeStdout(exportLines(path, r, use));
          } else if (output === "full") {
            const lines = superblockReport(r.superblock, systemNames());
            if (r.journal) {
              const fastCommit = (r.superblock.compat & Compat.FAST_COMMIT) !== 0;
              lines.push(...journalReport(r.journal, r.superblock.blockSize, fastCommit));
            }
            // Like dumpe2fs: a bad MMP block is an error line on stderr, not a section.
            if (r.mmp && !r.mmpError) lines.push(...mmpReport(r.mmp));
            if (r.mmpError) warn(`${path}: MMP block ${r.superblock.mmpBlock}: ${r.mmpError}`);
            await writeStdout(lines.join("\n") + "\n");
          } else {
            await writeStdout(humanReport(path, r, use));
          }
          return probeExitCode(r);
        } finally {
          await device.close();
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Reads the superblock, the group descriptors and (with mmp) the MMP block of a device or image, never the whole disk, and reports what filesystem it holds, its state and what ext4ts can do with it: read it, write it offline (put, mkdir, rm, mv) and mount it read-write, with the reasons. A partition table at the start (MBR or GPT) is recognised and its partitions' offsets are offered for --offset.",
    examples: [
      "ext4ts probe /dev/sdb1",
      "ext4ts probe --json disk.img | jq .verdict",
      "ext4ts probe -o export disk.img",
      "ext4ts probe --offset 1MiB --full disk.img",
    ],
    // 4, 5 and 6 are the verdict on a filesystem probe could read: the report is printed.
    exitCodes: [
      [ExitCode.OK, "a usable filesystem without recorded errors (it may be not clean)"],
      ExitCode.NOT_EXT4,
      [ExitCode.NEEDS_RECOVERY, "the journal needs recovery (the report says what it holds)"],
      [ExitCode.FS_ERRORS, "errors recorded, corrupt descriptors, MMP block or journal"],
      [ExitCode.UNSUPPORTED, "ext4ts refuses it (features), or an external journal device"],
      ExitCode.IO,
    ],
  });
}
