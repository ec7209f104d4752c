/**
 * Probing a device: what filesystem is there, in what state, and what ext4ts can do with it.
 * Reads only the superblock, the group descriptors and (with mmp) the MMP block, so probing
 * a 16 TiB device costs the same as probing a small one.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import {
  Compat,
  featureSupport,
  Incompat,
  RoCompat,
  type SupportLevel,
} from "../ondisk/features.ts";
import { type GroupDescriptorTable, readGroupDescriptors } from "../ondisk/group_descriptor.ts";
import { type MmpBlock, readMmpBlock } from "../ondisk/mmp.ts";
import {
  EXT4_MAGIC,
  formatUuid,
  isZero,
  readSuperblock,
  State,
  Superblock,
} from "../ondisk/superblock.ts";
import { stateString } from "./superblock_report.ts";
import { journalBlockMapper, locateJournal } from "../ext4/journal.ts";
import { prepareReplay } from "../ext4/recovery.ts";
import {
  BlockType,
  JBD2_MAGIC,
  journalFeatureNames,
  JournalSuperblock,
} from "../jbd2/superblock.ts";

/** Whether ext4ts can do one thing with a filesystem, and if not, why. */
export interface Capability {
  /** Whether it can. */
  ok: boolean;
  /** Why not (empty when it can). */
  reasons: string[];
}

/**
 * What ext4ts can do with a filesystem, told apart: read it (ls, cat, get, a read-only mount),
 * write it offline (put, mkdir, rm, mv), mount it read-write.
 */
export interface Capabilities {
  /** Reading: ls, cat, stat, get, a read-only mount. */
  read: Capability;
  /** Writing without mounting: put, mkdir, rm, mv. */
  writeOffline: Capability;
  /** A read-write mount. */
  mountReadWrite: Capability;
}

/** What replaying the journal would do, from a dry run in memory. */
export interface RecoverySummary {
  /** Complete transactions that would be replayed. */
  transactions: number;
  /** Filesystem blocks the replay (and orphan cleanup) would change. */
  blocks: number;
  /** Why ext4ts (like the kernel) would refuse to replay, if it would. */
  error: string | null;
  /** Things a replay would warn about. */
  warnings: string[];
}

/** The filesystem generation, decided from the features as blkid does. */
export type FsType = "ext2" | "ext3" | "ext4";

/** Everything probe learns from a device. */
export interface ProbeResult {
  /** The primary superblock. */
  superblock: Superblock;
  /** The group descriptor table; null when it could not be read (see `groupsError`). */
  groups: GroupDescriptorTable | null;
  /** Why the group descriptors could not be read, if they could not. */
  groupsError: string | null;
  /** ext2, ext3 or ext4, by blkid's rule ({@link fsTypeOf}). */
  fsType: FsType;
  /** The superblock checksum is wrong (only reachable with `ignoreChecksum`). */
  superblockChecksumBad: boolean;
  /** INCOMPAT_RECOVER is set: the journal holds transactions not yet replayed. */
  needsRecovery: boolean;
  /**
   * The superblock records errors (`s_state` ERROR_FS), group descriptors are unreadable or fail
   * their checksums, the MMP block is unreadable or fails its checksum, or the journal is
   * corrupt (the kernel refuses to mount in each case).
   */
  hasErrors: boolean;
  /** The MMP block when the mmp feature is on and the block could be read; else null. */
  mmp: MmpBlock | null;
  /**
   * Why the MMP block could not be read or its checksum is wrong; null when fine or without mmp.
   */
  mmpError: string | null;
  /**
   * The internal journal's superblock (null without a journal, or an external one). When it
   * fails validation (`journalError`) but has the journal magic, it is still given, as
   * dumpe2fs shows it.
   */
  journal: JournalSuperblock | null;
  /** Why the journal could not be read or used, if it could not. */
  journalError: string | null;
  /**
   * For a filesystem that needs recovery: what a replay would do (worked out in memory,
   * nothing written), or why it cannot be replayed.
   */
  recovery: RecoverySummary | null;
  /** Whether ext4ts can use the filesystem on this device (`rw`, `ro` or `refuse`) and why. */
  support: { level: SupportLevel; reasons: string[] };
  /** The same, per thing ext4ts can do: read, write offline, mount read-write. */
  capabilities: Capabilities;
}

/**
 * blkid's rule: ext4 when a feature ext3 lacks is on, ext3 with a journal, else ext2.
 *
 * @example
 * ```ts
 * import { fsTypeOf } from "./probe.ts";
 * console.log(fsTypeOf({ compat: 0x4, incompat: 0x2, roCompat: 0x1 })); // ext3
 * ```
 */
export function fsTypeOf(words: { compat: number; incompat: number; roCompat: number }): FsType {
  const ext3Incompat = Incompat.FILETYPE | Incompat.RECOVER | Incompat.META_BG;
  const ext3RoCompat = RoCompat.SPARSE_SUPER | RoCompat.LARGE_FILE | 0x4;
  if ((words.incompat & ~ext3Incompat) || (words.roCompat & ~ext3RoCompat)) return "ext4";
  if (words.compat & Compat.HAS_JOURNAL) return "ext3";
  return "ext2";
}

/**
 * Probes a device. `mediaReadOnly` says whether the medium refuses writes (a device opened
 * read-only for probing may still be writable); it defaults to the device's read-only flag.
 * Throws NOT_EXT4 for anything that is not ext2/3/4 and CORRUPT for a
 * superblock that cannot be trusted; every other finding is reported in the result.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const r = await probeDevice(new MemoryBlockDevice(await Deno.readFile(img)));
 * console.log(r.fsType, r.needsRecovery, r.hasErrors); // ext4 false false
 * await Deno.remove(img);
 * ```
 */
export async function probeDevice(
  device: BlockDevice,
  options: { mediaReadOnly?: boolean } = {},
): Promise<ProbeResult> {
  await refuseJournalDevice(device);
  const sb = await readSuperblock(device);
  let groups: GroupDescriptorTable | null = null;
  let groupsError: string | null = null;
  try {
    groups = await readGroupDescriptors(device, sb);
  } catch (e) {
    if (!(e instanceof Ext4Error)) throw e;
    groupsError = e.message;
  }
  let mmp: MmpBlock | null = null;
  let mmpError: string | null = null;
  if (sb.incompat & Incompat.MMP) {
    try {
      mmp = await readMmpBlock(device, sb);
      if (!mmp.checksumValid) mmpError = "MMP block checksum mismatch";
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      mmpError = e.message;
    }
  }
  let journal: JournalSuperblock | null = null;
  let journalError: string | null = null;
  let journalCorrupt = false;
  if ((sb.compat & Compat.HAS_JOURNAL) && sb.journalInum && groups) {
    try {
      journal = (await locateJournal(device, sb, { groups })).jsb;
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      journalError = e.message;
      // The kernel refuses to mount over a corrupt journal: an error, like a bad descriptor.
      journalCorrupt = e.code === "CORRUPT";
      journal = await unvalidatedJournalSuperblock(device, sb, groups);
    }
  }
  const needsRecovery = (sb.incompat & Incompat.RECOVER) !== 0;
  let recovery: RecoverySummary | null = null;
  if (needsRecovery && journalError) {
    recovery = { transactions: 0, blocks: 0, error: journalError, warnings: [] };
  } else if (needsRecovery && (sb.compat & Compat.HAS_JOURNAL) && groups) {
    // The same dry run the in-memory overlay makes: it tells whether a replay would work.
    try {
      const prepared = await prepareReplay(device, { groups });
      recovery = prepared
        ? {
          transactions: prepared.plan.transactions.filter((t) => t.replayed).length,
          blocks: prepared.blocks.size,
          error: prepared.plan.error?.message ?? null,
          warnings: prepared.warnings,
        }
        : { transactions: 0, blocks: 0, error: null, warnings: [] };
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      recovery = { transactions: 0, blocks: 0, error: e.message, warnings: [] };
    }
  }
  const hasErrors = (sb.state & State.ERROR) !== 0 || groupsError !== null ||
    (groups?.badChecksums.length ?? 0) > 0 || mmpError !== null || journalCorrupt;
  const support = verdictFor(sb, options.mediaReadOnly ?? device.readOnly, { groupsError, mmp });
  return {
    superblock: sb,
    groups,
    groupsError,
    fsType: fsTypeOf(sb),
    superblockChecksumBad: !sb.checksumValid(),
    needsRecovery,
    hasErrors,
    mmp,
    mmpError,
    journal,
    journalError,
    recovery,
    support,
    capabilities: capabilitiesFor(support, { needsRecovery, hasErrors }),
  };
}

/**
 * The journal superblock as stored, without the kernel's validation (for showing what is
 * there when validation fails): null unless it has the journal magic and a superblock type.
 */
async function unvalidatedJournalSuperblock(
  device: BlockDevice,
  sb: Superblock,
  groups: GroupDescriptorTable,
): Promise<JournalSuperblock | null> {
  try {
    const { map } = await journalBlockMapper(device, sb, sb.journalInum, groups);
    const jsb = new JournalSuperblock(await readBytes(device, map(0) * sb.blockSize, sb.blockSize));
    const superblockType = jsb.blockType === BlockType.SUPERBLOCK_V1 ||
      jsb.blockType === BlockType.SUPERBLOCK_V2;
    return jsb.magic === JBD2_MAGIC && superblockType ? jsb : null;
  } catch (e) {
    if (e instanceof Ext4Error) return null;
    throw e;
  }
}

/**
 * The superblocks of an external journal device (ext4 superblock with journal_dev, the jbd2
 * superblock in the block after it), unvalidated; null when the device is not one.
 *
 * @example
 * ```ts ignore
 * const jd = await readJournalDevice(device);
 * if (jd) console.log(jd.journal.maxLen);
 * ```
 */
export async function readJournalDevice(
  device: BlockDevice,
): Promise<{ superblock: Superblock; journal: JournalSuperblock | null } | null> {
  if (device.size < 2048) return null;
  const sb = new Superblock(await readBytes(device, 1024, 1024));
  if (sb.magic !== EXT4_MAGIC || !(sb.incompat & Incompat.JOURNAL_DEV)) return null;
  const bs = sb.blockSize;
  const at = (bs === 1024 ? 2 : 1) * bs;
  let journal: JournalSuperblock | null = null;
  if (sb.logBlockSize <= 6 && at + bs <= device.size) {
    const jsb = new JournalSuperblock(await readBytes(device, at, bs));
    if (jsb.magic === JBD2_MAGIC) journal = jsb;
  }
  return { superblock: sb, journal };
}

/** The error probe gives for an external journal device. */
export function journalDeviceError(sb: Superblock): Ext4Error {
  return new Ext4Error(
    "UNSUPPORTED",
    `an external journal device (UUID ${
      formatUuid(sb.uuid)
    }), not a filesystem: probe the filesystem that uses it`,
  );
}

/**
 * An external journal device carries an ext4 superblock (journal_dev) whose geometry the full
 * validation rejects: say what it is instead of calling it corrupt.
 */
async function refuseJournalDevice(device: BlockDevice): Promise<void> {
  const jd = await readJournalDevice(device);
  if (jd) throw journalDeviceError(jd.superblock);
}

function verdictFor(
  sb: Superblock,
  deviceReadOnly: boolean,
  found: { groupsError: string | null; mmp: MmpBlock | null },
): { level: SupportLevel; reasons: string[] } {
  const features = featureSupport(sb);
  if (features.level === "refuse") return features;
  if (found.groupsError) return { level: "refuse", reasons: [found.groupsError] };
  const reasons = [...features.reasons];
  if (deviceReadOnly) reasons.push("the device is read-only");
  if (found.mmp?.state === "in-use") {
    reasons.push("MMP says the filesystem is in use on another node");
  }
  if (found.mmp?.state === "fsck") reasons.push("MMP says e2fsck is running on it");
  return reasons.length ? { level: "ro", reasons } : { level: "rw", reasons: [] };
}

/**
 * The capabilities behind a verdict (see {@link probeDevice}): reading needs only a verdict
 * other than `refuse`; writing offline needs what the writers check (features, a writable
 * device, no journal to recover) and no recorded errors; a read-write mount needs the same
 * but replays a journal needing recovery itself (as the kernel's mount does).
 *
 * @example
 * ```ts
 * import { capabilitiesFor } from "./probe.ts";
 * const c = capabilitiesFor({ level: "rw", reasons: [] }, {
 *   needsRecovery: true,
 *   hasErrors: false,
 * });
 * console.log(c.writeOffline.ok, c.mountReadWrite.ok); // false true
 * ```
 */
export function capabilitiesFor(
  support: { level: SupportLevel; reasons: string[] },
  state: { needsRecovery: boolean; hasErrors: boolean },
): Capabilities {
  const cap = (reasons: string[]): Capability => ({ ok: reasons.length === 0, reasons });
  if (support.level === "refuse") {
    const no = () => cap([...support.reasons]);
    return { read: no(), writeOffline: no(), mountReadWrite: no() };
  }
  // The verdict's reasons are what offline writers and a read-write mount refuse too.
  const mount = [...support.reasons];
  if (state.hasErrors) mount.push("the filesystem has errors (check it with e2fsck first)");
  // A read-write mount replays the journal onto the device first; offline writers do not.
  const write = state.needsRecovery
    ? [...support.reasons, "the journal needs recovery (replay it first: ext4ts journal replay)"]
    : [...support.reasons];
  if (state.hasErrors) write.push("the filesystem has errors (check it with e2fsck first)");
  return { read: cap([]), writeOffline: cap(write), mountReadWrite: cap(mount) };
}

/** One-word-ish summary of the state, for the human output and JSON. */
export function stateSummary(r: ProbeResult): string {
  const parts = [stateString(r.superblock.state)];
  if (r.needsRecovery) {
    const rec = r.recovery;
    parts.push(
      rec === null
        ? "needs journal recovery"
        : rec.error
        ? `needs journal recovery, which would fail: ${rec.error}`
        : `needs journal recovery (${rec.transactions} transaction(s), ${rec.blocks} block(s))`,
    );
  }
  if (r.groups && r.groups.badChecksums.length) {
    parts.push(`${r.groups.badChecksums.length} group descriptor checksum error(s)`);
  }
  if (r.groupsError) parts.push("corrupt group descriptors");
  if (r.mmpError) parts.push(r.mmp ? "MMP block checksum error" : "unreadable MMP block");
  // With recovery pending the error is already said ("which would fail: …").
  if (r.journalError && !r.needsRecovery) parts.push(`unusable journal: ${r.journalError}`);
  if (r.superblock.state & State.ORPHAN) parts.push("orphans being recovered");
  return parts.join(", ");
}

/** The journal as `--json` reports it: where it is and what its superblock says. */
export function journalSummary(r: ProbeResult): Record<string, unknown> | null {
  const sb = r.superblock;
  if (!(sb.compat & Compat.HAS_JOURNAL)) return null;
  const j = r.journal;
  return {
    inode: sb.journalInum || null,
    device: sb.journalDev || null,
    uuid: isZero(sb.journalUuid) ? null : formatUuid(sb.journalUuid),
    external: sb.journalInum === 0,
    blocks: j?.maxLen ?? null,
    blockSize: j?.blockSize ?? null,
    features: j ? journalFeatureNames(j.featureCompat, j.featureIncompat, j.featureRoCompat) : null,
    sequence: j?.sequence ?? null,
    start: j?.start ?? null,
    error: r.journalError,
  };
}
