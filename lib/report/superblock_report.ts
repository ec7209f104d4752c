/**
 * The superblock as `dumpe2fs -h` prints it, line for line, so that ext4ts's output can be
 * checked against e2fsprogs and read by people who know that format.
 *
 * @module
 */

import { Compat, featureNames, Incompat, RoCompat } from "../ondisk/features.ts";
import { formatUuid, isZero, State, type Superblock, SuperFlags } from "../ondisk/superblock.ts";
import type { MmpBlock } from "../ondisk/mmp.ts";
import { JBD2_DEFAULT_FAST_COMMIT_BLOCKS, type JournalSuperblock } from "../jbd2/superblock.ts";

const OS_NAMES = ["Linux", "Hurd", "Masix", "FreeBSD", "Lites"];
const HASH_NAMES = [
  "legacy",
  "half_md4",
  "tea",
  "legacy_unsigned",
  "half_md4_unsigned",
  "tea_unsigned",
  "siphash",
];
const MOUNT_OPTS: Record<number, string> = {
  0x1: "debug",
  0x2: "bsdgroups",
  0x4: "user_xattr",
  0x8: "acl",
  0x10: "uid16",
  0x100: "nobarrier",
  0x200: "block_validity",
  0x400: "discard",
  0x800: "nodelalloc",
};
const JOURNAL_MODES: Record<number, string> = {
  0x20: "journal_data",
  0x40: "journal_data_ordered",
  0x60: "journal_data_writeback",
};
const ERROR_CODES = [
  "",
  "UNKNOWN",
  "EIO",
  "ENOMEM",
  "EFSBADCRC",
  "EFSCORRUPTED",
  "ENOSPC",
  "ENOKEY",
  "EROFS",
  "EFBIG",
  "EEXIST",
  "ERANGE",
  "EOVERFLOW",
  "EBUSY",
  "ENOTDIR",
  "ENOTEMPTY",
  "ESHUTDOWN",
  "EFAULT",
];
const ENCODINGS: Record<number, string> = { 1: "utf8-12.1" };

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Formats seconds since the epoch like C's `ctime()` in local time, without the newline.
 *
 * @example
 * ```ts
 * import { ctime } from "./superblock_report.ts";
 * // with TZ=UTC:
 * console.log(ctime(0)); // Thu Jan  1 00:00:00 1970
 * ```
 */
export function ctime(seconds: number): string {
  const d = new Date(seconds * 1000);
  // glibc's ctime() fails beyond its years and printf shows the NULL so.
  if (Number.isNaN(d.getTime())) return "(null)";
  const p2 = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, " ")} ${
    p2(d.getHours())
  }:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
}

/** e2fsprogs' rendering of a check interval: "<none>", or "1 month, 2 weeks, 3:04:05". */
export function intervalString(secs: number): string {
  if (secs === 0) return "<none>";
  const parts: string[] = [];
  const units: [number, string][] = [[86400 * 30, "month"], [86400 * 7, "week"], [86400, "day"]];
  for (const [size, name] of units) {
    if (secs >= size) {
      const n = Math.floor(secs / size);
      secs -= n * size;
      parts.push(`${n} ${name}${n > 1 ? "s" : ""}`);
    }
  }
  if (secs > 0) {
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = secs % 60;
    parts.push(`${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`);
  }
  return parts.join(", ");
}

/** e2fsprogs' rendering of `s_kbytes_written`. */
export function lifetimeWrites(kb: number): string {
  const p = (x: number) => 2 ** x;
  if (kb < p(13)) return `${kb} kB`;
  if (kb < p(23)) return `${Math.floor((kb + p(9)) / p(10))} MB`;
  if (kb < p(33)) return `${Math.floor((kb + p(19)) / p(20))} GB`;
  if (kb < p(43)) return `${Math.floor((kb + p(29)) / p(30))} TB`;
  return `${Math.floor((kb + p(39)) / p(40))} PB`;
}

/** Name of a directory hash version, as e2fsprogs prints it. */
export function hashName(version: number): string {
  return HASH_NAMES[version] ?? `HASHALG_${version}`;
}

/** "clean", "not clean", with " with errors" appended when the error bit is set. */
export function stateString(state: number): string {
  return ((state & State.VALID) ? "clean" : "not clean") +
    ((state & State.ERROR) ? " with errors" : "");
}

/** Name lookups for the reserved-blocks uid/gid lines (e.g. from /etc/passwd). */
export interface NameResolver {
  /** The user name of `uid`, or undefined when unknown (printed as "user unknown"). */
  user(uid: number): string | undefined;
  /** The group name of `gid`, or undefined when unknown (printed as "group unknown"). */
  group(gid: number): string | undefined;
}

function mountOptions(mask: number): string {
  const names: string[] = [];
  if (mask & 0x60) names.push(JOURNAL_MODES[mask & 0x60]);
  for (let b = 0; b < 32; b++) {
    const m = 2 ** b;
    if (m & 0x60 || !(mask & m)) continue;
    names.push(MOUNT_OPTS[m] ?? `MNTOPT_${b}`);
  }
  return names.length ? names.join(" ") : "(none)";
}

/**
 * The lines `dumpe2fs -h` prints for the superblock (before the journal section), exactly.
 *
 * @example
 * ```ts ignore
 * for (const line of superblockReport(sb)) console.log(line);
 * // Filesystem volume name:   <none>
 * // ...
 * ```
 */
export function superblockReport(
  sb: Superblock,
  names: NameResolver = { user: () => undefined, group: () => undefined },
): string[] {
  const out: string[] = [];
  const line = (label: string, value: string | number) => out.push(`${label.padEnd(26)}${value}`);
  const isBigalloc = (sb.roCompat & RoCompat.BIGALLOC) !== 0;
  line("Filesystem volume name:", sb.volumeName || "<none>");
  line("Last mounted on:", sb.lastMounted || "<not available>");
  line("Filesystem UUID:", formatUuid(sb.uuid));
  line("Filesystem magic number:", `0x${sb.magic.toString(16).toUpperCase().padStart(4, "0")}`);
  line(
    "Filesystem revision #:",
    `${sb.revLevel} (${
      sb.revLevel === 0 ? "original" : sb.revLevel === 1 ? "dynamic" : "unknown"
    })`,
  );
  const features = featureNames(sb);
  line("Filesystem features:", features.length ? features.join(" ") : "(none)");
  if (sb.flags !== 0) {
    const f: string[] = [];
    if (sb.flags & SuperFlags.SIGNED_HASH) f.push("signed_directory_hash ");
    if (sb.flags & SuperFlags.UNSIGNED_HASH) f.push("unsigned_directory_hash ");
    if (sb.flags & SuperFlags.TEST_FILESYS) f.push("test_filesystem ");
    line("Filesystem flags:", f.length ? f.join("") : "(none)");
  }
  line("Default mount options:", mountOptions(sb.defaultMountOpts));
  if (sb.mountOpts) line("Mount options:", sb.mountOpts);
  line("Filesystem state:", stateString(sb.state));
  line(
    "Errors behavior:",
    ["Continue", "Remount read-only", "Panic"][sb.errors - 1] ?? "Unknown (continue)",
  );
  line("Filesystem OS type:", OS_NAMES[sb.creatorOs] ?? "(unknown os)");
  line("Inode count:", sb.inodesCount);
  line("Block count:", sb.blocksCount);
  line("Reserved block count:", sb.reservedBlocksCount);
  if (sb.overheadClusters) line("Overhead clusters:", sb.overheadClusters);
  line("Free blocks:", sb.freeBlocksCount);
  line("Free inodes:", sb.freeInodesCount);
  line("First block:", sb.firstDataBlock);
  line("Block size:", sb.blockSize);
  line(isBigalloc ? "Cluster size:" : "Fragment size:", sb.clusterSize);
  if (sb.incompat & Incompat.BIT64) line("Group descriptor size:", sb.rawDescSize);
  if (sb.reservedGdtBlocks) line("Reserved GDT blocks:", sb.reservedGdtBlocks);
  line("Blocks per group:", sb.blocksPerGroup);
  line(isBigalloc ? "Clusters per group:" : "Fragments per group:", sb.clustersPerGroup);
  line("Inodes per group:", sb.inodesPerGroup);
  line("Inode blocks per group:", sb.inodeTableBlocksPerGroup);
  if (sb.raidStride) line("RAID stride:", sb.raidStride);
  if (sb.raidStripeWidth) line("RAID stripe width:", sb.raidStripeWidth);
  if (sb.firstMetaBg) line("First meta block group:", sb.firstMetaBg);
  if (sb.logGroupsPerFlex) line("Flex block group size:", 2 ** sb.logGroupsPerFlex);
  if (sb.mkfsTime) line("Filesystem created:", ctime(sb.mkfsTime));
  line("Last mount time:", sb.mountTime ? ctime(sb.mountTime) : "n/a");
  line("Last write time:", ctime(sb.writeTime));
  line("Mount count:", sb.mountCount);
  line("Maximum mount count:", sb.maxMountCount);
  line("Last checked:", ctime(sb.lastCheck));
  line("Check interval:", `${sb.checkInterval} (${intervalString(sb.checkInterval)})`);
  if (sb.checkInterval) line("Next check after:", ctime(sb.lastCheck + sb.checkInterval));
  if (sb.kbytesWritten) line("Lifetime writes:", lifetimeWrites(sb.kbytesWritten));
  const user = names.user(sb.defResuid);
  line("Reserved blocks uid:", `${sb.defResuid} (${user ? `user ${user}` : "user unknown"})`);
  const group = names.group(sb.defResgid);
  line("Reserved blocks gid:", `${sb.defResgid} (${group ? `group ${group}` : "group unknown"})`);
  if (sb.revLevel >= 1) {
    line("First inode:", sb.firstIno);
    out.push(`Inode size:\t          ${sb.inodeSize}`);
    if (sb.minExtraIsize) line("Required extra isize:", sb.minExtraIsize);
    if (sb.wantExtraIsize) line("Desired extra isize:", sb.wantExtraIsize);
  }
  if (!isZero(sb.journalUuid)) line("Journal UUID:", formatUuid(sb.journalUuid));
  if (sb.journalInum) line("Journal inode:", sb.journalInum);
  if (sb.journalDev) {
    out.push(`Journal device:\t          0x${sb.journalDev.toString(16).padStart(4, "0")}`);
  }
  if (sb.lastOrphan) line("First orphan inode:", sb.lastOrphan);
  if ((sb.compat & Compat.DIR_INDEX) || sb.defHashVersion) {
    line("Default directory hash:", hashName(sb.defHashVersion));
  }
  if (!isZero(sb.hashSeedBytes)) line("Directory Hash Seed:", formatUuid(sb.hashSeedBytes));
  if (sb.jnlBackupType) {
    line("Journal backup:", sb.jnlBackupType === 1 ? "inode blocks" : `type ${sb.jnlBackupType}`);
  }
  const [bg0, bg1] = sb.backupBgs;
  if (bg0 || bg1) line("Backup block groups:", `${bg0 ? `${bg0} ` : ""}${bg1 ? `${bg1} ` : ""}`);
  if (sb.snapshotInum) {
    line("Snapshot inode:", sb.snapshotInum);
    line("Snapshot ID:", sb.snapshotId);
    line("Snapshot reserved blocks:", sb.snapshotReservedBlocksCount);
  }
  if (sb.snapshotList) line("Snapshot list head:", sb.snapshotList);
  if (sb.errorCount) line("FS Error count:", sb.errorCount);
  const errorLines = (
    which: "First" | "Last",
    time: number,
    func: string,
    lineNo: number,
    ino: number,
    block: number,
    code: number,
  ) => {
    if (!time) return;
    line(`${which} error time:`, ctime(time));
    line(`${which} error function:`, func);
    line(`${which} error line #:`, lineNo);
    if (ino) line(`${which} error inode #:`, ino);
    if (block) line(`${which} error block #:`, block);
    if (code) line(`${which} error err:`, ERROR_CODES[code] ?? `UNKNOWN_ERRCODE_${code}`);
  };
  errorLines(
    "First",
    sb.firstErrorTime,
    sb.firstErrorFunc,
    sb.firstErrorLine,
    sb.firstErrorIno,
    sb.firstErrorBlock,
    sb.firstErrorErrcode,
  );
  errorLines(
    "Last",
    sb.lastErrorTime,
    sb.lastErrorFunc,
    sb.lastErrorLine,
    sb.lastErrorIno,
    sb.lastErrorBlock,
    sb.lastErrorErrcode,
  );
  if (sb.incompat & Incompat.MMP) {
    line("MMP block number:", sb.mmpBlock);
    line("MMP update interval:", sb.mmpInterval);
  }
  if (sb.usrQuotaInum) line("User quota inode:", sb.usrQuotaInum);
  if (sb.grpQuotaInum) line("Group quota inode:", sb.grpQuotaInum);
  if (sb.prjQuotaInum) line("Project quota inode:", sb.prjQuotaInum);
  if (sb.hasMetadataCsum) {
    line("Checksum type:", sb.checksumType === 1 ? "crc32c" : "unknown");
    line("Checksum:", `0x${sb.checksum.toString(16).padStart(8, "0")}`);
  }
  if (!isZero(sb.encryptPwSalt)) line("Encryption PW Salt:", formatUuid(sb.encryptPwSalt));
  if (sb.incompat & Incompat.CSUM_SEED) {
    line("Checksum seed:", `0x${sb.checksumSeed.toString(16).padStart(8, "0")}`);
  }
  if (sb.incompat & Incompat.CASEFOLD) {
    line("Character encoding:", ENCODINGS[sb.encoding] ?? `UNKNOWN_ENCODING_${sb.encoding}`);
  }
  if (sb.compat & Compat.ORPHAN_FILE) line("Orphan file inode:", sb.orphanFileInum);
  return out;
}

/**
 * The MMP lines `dumpe2fs -h` prints for a filesystem with the mmp feature.
 *
 * @example
 * ```ts ignore
 * console.log(mmpReport(await readMmpBlock(device, sb)).join("\n"));
 * ```
 */
export function mmpReport(mmp: MmpBlock): string[] {
  return [
    "MMP_block:",
    `    mmp_magic: 0x${mmp.magic.toString(16)}`,
    `    mmp_check_interval: ${mmp.checkInterval}`,
    `    mmp_sequence: 0x${mmp.sequence.toString(16).padStart(8, "0")}`,
    `    mmp_update_date: ${ctime(mmp.time)}`,
    `    mmp_update_time: ${mmp.time}`,
    `    mmp_node_name: ${mmp.nodeName}`,
    `    mmp_device_name: ${mmp.deviceName}`,
  ];
}

/** Journal feature names as libe2p (e2fsprogs 1.47) spells them: the fast-commit bit has none. */
function e2pJournalFeatureNames(jsb: JournalSuperblock): string[] {
  const named: Record<string, string[]> = {
    C: ["journal_checksum"],
    I: [
      "journal_incompat_revoke",
      "journal_64bit",
      "journal_async_commit",
      "journal_checksum_v2",
      "journal_checksum_v3",
    ],
    R: [],
  };
  const out: string[] = [];
  const words: [string, number][] = [
    ["C", jsb.featureCompat],
    ["I", jsb.featureIncompat],
    ["R", jsb.featureRoCompat],
  ];
  for (const [kind, word] of words) {
    for (let b = 0; b < 32; b++) {
      if ((word >>> b) & 1) out.push(named[kind][b] ?? `FEATURE_${kind}${b}`);
    }
  }
  return out;
}

/**
 * The journal superblock lines `dumpe2fs -h` prints after the superblock, exactly. Like
 * dumpe2fs, the fast-commit area is counted when the filesystem has the fast_commit feature
 * (`fsFastCommit`), whatever the journal's own flags say.
 *
 * @example
 * ```ts ignore
 * const { jsb } = await locateJournal(device, sb);
 * console.log(journalReport(jsb, sb.blockSize, (sb.compat & Compat.FAST_COMMIT) !== 0).join("\n"));
 * ```
 */
export function journalReport(
  jsb: JournalSuperblock,
  fsBlockSize: number,
  fsFastCommit = false,
): string[] {
  const out: string[] = [];
  const line = (label: string, value: string | number) => out.push(`${label.padEnd(26)}${value}`);
  const features = e2pJournalFeatureNames(jsb);
  line("Journal features:", features.length ? features.join(" ") : "(none)");
  const fcBlocks = fsFastCommit ? jsb.numFcBlocks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS : 0;
  const journalBlocks = jsb.maxLen - fcBlocks;
  const kib = Math.floor((jsb.blockSize / 1024) * jsb.maxLen);
  line("Total journal size:", kib < 8192 ? `${kib}k` : `${Math.floor(kib / 1024)}M`);
  if (jsb.blockSize !== fsBlockSize) line("Journal block size:", jsb.blockSize);
  line("Total journal blocks:", journalBlocks + fcBlocks);
  line("Max transaction length:", journalBlocks);
  line("Fast commit length:", fcBlocks);
  if (jsb.first !== 1) line("Journal first block:", jsb.first);
  line("Journal sequence:", `0x${jsb.sequence.toString(16).padStart(8, "0")}`);
  line("Journal start:", jsb.start);
  const users = jsb.isV2 ? jsb.nrUsers : 1;
  if (users !== 1) line("Journal number of users:", users);
  if (jsb.featureCompat & 0x1) line("Journal checksum type:", "crc32");
  if (jsb.hasCsumV2or3) {
    line(
      "Journal checksum type:",
      jsb.checksumType === 4 ? "crc32c" : "unknown",
    );
    line("Journal checksum:", `0x${jsb.checksum.toString(16).padStart(8, "0")}`);
  }
  const userIds = jsb.isV2 ? jsb.users : [];
  if (users > 1 || (userIds[0] && !isZero(userIds[0]))) {
    for (let i = 0; i < users && i < userIds.length; i++) {
      // libe2p prints a null UUID as <none>.
      const user = isZero(userIds[i]) ? "<none>" : formatUuid(userIds[i]);
      out.push(`${i ? "".padEnd(26) : "Journal users:".padEnd(26)}${user}`);
    }
  }
  if (jsb.errno !== 0) line("Journal errno:", jsb.errno | 0);
  return out;
}
