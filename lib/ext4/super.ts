/**
 * The one open policy (the kernel's fs/ext4/super.c at mount): the superblock read and checked,
 * feature support for reading and for writing, a journal that needs recovery (replayed in
 * memory, ignored, refused, or replayed onto the device), the refusals of a writable open, and
 * the group descriptors. `Ext4.openDevice` (reading or writing), `Ext4Writer.open` and the
 * mount backend (ffi/fuse/ext4_ops.ts) all open through {@link openMetadata}.
 *
 * The writable refusals include the checks the kernel makes before it mounts a filesystem
 * read-write ({@link checkBeforeWrite}): the superblock's state (errors recorded, or not
 * cleanly unmounted without a journal: refused unless forced), the superblock geometry
 * `ext4_fill_super` checks beyond what `parseSuperblock` already refuses, every group
 * descriptor as `ext4_check_descriptors` checks it (bitmaps and inode table inside the group's
 * range, off the superblock and descriptor blocks) plus overlaps between groups and with the
 * journal (the kernel's system zones, block_validity.c), the root directory and the journal
 * inode as `ext4_fill_super` and `ext4_get_journal_inode` check them, and the bad blocks
 * inode's list (a bad block inside metadata is for e2fsck to relocate; ext4ts refuses to
 * write). Every such refusal is a {@link CorruptError} (exit 5) naming the structure and the
 * reason.
 *
 * @module
 */

import { assertWritable } from "./alloc.ts";
import { baseMetaBlocks, descriptorBlockCount, testBit } from "../ondisk/bitmap.ts";
import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { readBlockMap } from "./indirect.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { Compat, featureSupport, Incompat, RoCompat } from "../ondisk/features.ts";
import {
  type GroupDescriptorTable,
  groupFirstBlock,
  GroupFlags,
  readGroupDescriptors,
} from "../ondisk/group_descriptor.ts";
import { readInode } from "./inode.ts";
import { JournalOverlayDevice } from "./journal_overlay.ts";
import { journalBlockMapper } from "./journal.ts";
import { needsRecovery, replayJournal } from "./recovery.ts";
import { readSuperblock, State, type Superblock } from "../ondisk/superblock.ts";
import { Mode } from "../ondisk/inode.ts";

/** How a filesystem is opened: what {@link openMetadata} allows, refuses and does. */
export interface OpenPolicy {
  /**
   * Open for reading only (default true). `false` opens the filesystem for writing: READ_ONLY
   * when the device is read-only, UNSUPPORTED with the reasons when ext4ts cannot write its
   * features, NEEDS_RECOVERY when its journal needs recovery (unless `recovery: "replay"`),
   * CORRUPT when the kernel's mount-time checks fail or (unless `force`) the superblock records
   * errors or an unclean journal-less filesystem.
   */
  readOnly?: boolean;
  /**
   * What to do with a filesystem whose journal needs recovery:
   * - `"memory"` (default when reading): replay the journal in memory (a
   *   `JournalOverlayDevice`) and read the recovered filesystem; nothing is written.
   * - `"none"`: read the raw, unreplayed state (`norecovery`; recent changes may be missing
   *   or inconsistent).
   * - `"refuse"` (what a writable open does unless told `"replay"`): fail with NEEDS_RECOVERY.
   * - `"replay"`: replay the journal onto the device first, as the kernel does at mount (then
   *   its orphans are processed like any orphans at a writable open); needs a writable device.
   */
  recovery?: "memory" | "none" | "refuse" | "replay";
  /** Same as `recovery: "none"`. */
  allowDirtyJournal?: boolean;
  /** The external journal device, for a filesystem whose journal lives elsewhere. */
  journalDevice?: BlockDevice;
  /** Called with a one-line notice when the journal is replayed in memory or ignored. */
  onNotice?: (message: string) => void;
  /** Accept wrong metadata checksums instead of failing with CORRUPT. */
  ignoreChecksums?: boolean;
  /**
   * Writable opens only: write a filesystem whose superblock records errors, or (without a
   * journal) that was not cleanly unmounted. Without it such a filesystem is refused (CORRUPT,
   * "… run e2fsck"); damaged structures are refused either way (see {@link checkBeforeWrite}).
   */
  force?: boolean;
}

/** What an open found: the metadata to work with and the device to read it through. */
export interface OpenedMetadata {
  /** The superblock (after recovery, when the journal was replayed). */
  sb: Superblock;
  /** The group descriptor table. */
  groups: GroupDescriptorTable;
  /** What to read through: the given device, or the journal overlay over it. */
  device: BlockDevice;
}

/**
 * Opens a filesystem's metadata under the one policy: reads and checks the superblock,
 * refuses features ext4ts cannot read (UNSUPPORTED), handles a journal needing recovery as
 * `policy.recovery` says, and for a writable open (`readOnly: false`) refuses a read-only
 * device (READ_ONLY), features ext4ts cannot write (UNSUPPORTED) and what the kernel's
 * mount-time checks refuse ({@link checkBeforeWrite}); then reads the group descriptors.
 *
 * @example
 * ```ts ignore
 * const { sb, groups, device } = await openMetadata(raw, { readOnly: false, force: false });
 * ```
 */
export async function openMetadata(
  raw: BlockDevice,
  policy: OpenPolicy = {},
): Promise<OpenedMetadata> {
  const writable = policy.readOnly === false;
  if (writable) {
    if (raw.readOnly) throw new Ext4Error("READ_ONLY", "the device is read-only");
    if (policy.ignoreChecksums) {
      throw new Ext4Error("INVALID", "ignoreChecksums cannot be used to write");
    }
  }
  let device = raw;
  const ignoreChecksum = policy.ignoreChecksums;
  let sb = await readSuperblock(device, { ignoreChecksum });
  const verdict = featureSupport(sb);
  if (verdict.level === "refuse") {
    throw new Ext4Error(
      "UNSUPPORTED",
      `cannot read this filesystem: ${verdict.reasons.join("; ")}`,
    );
  }
  if (needsRecovery(sb) && writable) {
    if (policy.recovery !== "replay") {
      throw new Ext4Error(
        "NEEDS_RECOVERY",
        'the filesystem needs journal recovery (it was not cleanly unmounted): open it with recovery: "replay" to replay the journal onto the device first, or replay it with ext4ts journal replay',
      );
    }
    // Orphans are left to the open's own processing (lib/ext4/orphan.ts): done once.
    const r = await replayJournal(raw, { journalDevice: policy.journalDevice, orphans: false });
    policy.onNotice?.(
      `the journal needed recovery: replayed onto the device (${r.blocksWritten.length} blocks written)`,
    );
    if (r.error) {
      throw new CorruptError(
        "journal",
        `${r.error}; what could be replayed was written and the filesystem is marked for a full check (e2fsck -f)`,
      );
    }
    sb = await readSuperblock(raw);
  } else if (needsRecovery(sb)) {
    const mode = policy.allowDirtyJournal ? "none" : policy.recovery ?? "memory";
    if (mode === "refuse") {
      throw new Ext4Error(
        "NEEDS_RECOVERY",
        "the filesystem needs journal recovery (it was not cleanly unmounted); replay the journal first (ext4ts journal replay), or read it in memory or as-is",
      );
    }
    if (mode === "memory") {
      device = await JournalOverlayDevice.open(raw, { journalDevice: policy.journalDevice });
      sb = await readSuperblock(device, { ignoreChecksum });
      policy.onNotice?.(
        "the journal needs recovery: replayed in memory, nothing written to the device",
      );
    } else {
      // "none" (and "replay", which a read-only open cannot do): the raw state.
      policy.onNotice?.(
        "the journal needs recovery: reading the unreplayed state (norecovery); recent changes may be missing or inconsistent",
      );
    }
  }
  if (writable) assertOpenableForWrite(sb);
  const groups = await readGroupDescriptors(device, sb);
  if (writable) await checkBeforeWrite(raw, sb, groups, { force: policy.force });
  return { sb, groups, device };
}

/**
 * {@link assertWritable} for an open that asks to write: a feature ext4ts cannot keep
 * consistent is `UNSUPPORTED` there (the filesystem is not read-only, ext4ts cannot write it),
 * the same for every writer (the writable `Ext4`, `Ext4Writer`, the CLI's exit 6).
 *
 * @example
 * ```ts ignore
 * assertOpenableForWrite(sb); // throws Ext4Error("UNSUPPORTED", "cannot write: bigalloc …")
 * ```
 */
export function assertOpenableForWrite(sb: Superblock): void {
  try {
    assertWritable(sb);
  } catch (e) {
    if (e instanceof Ext4Error && e.code === "READ_ONLY") {
      throw new Ext4Error("UNSUPPORTED", e.message, { cause: e });
    }
    throw e;
  }
}

/** Options of {@link checkBeforeWrite}. */
export interface WriteCheckOptions {
  /**
   * Write even though the superblock says the filesystem has errors, or (without a journal)
   * was not cleanly unmounted. Structural damage is refused all the same.
   */
  force?: boolean;
}

/** The root directory's inode. */
const ROOT_INO = 2;
/** The bad blocks inode: its "data blocks" are the blocks listed as bad. */
const BAD_BLOCKS_INO = 1;

/**
 * Runs every check below on a filesystem about to be written; throws the first
 * {@link CorruptError} found. Reads the root inode, group 0's inode bitmap, the journal
 * inode's map and the bad blocks inode's list (a few blocks).
 *
 * @example
 * ```ts ignore
 * const sb = await readSuperblock(device);
 * const gdt = await readGroupDescriptors(device, sb);
 * await checkBeforeWrite(device, sb, gdt, { force: false });
 * ```
 */
export async function checkBeforeWrite(
  device: BlockDevice,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  options: WriteCheckOptions = {},
): Promise<void> {
  checkState(sb, options);
  checkGeometry(sb);
  const zones = checkDescriptors(sb, gdt);
  await checkRoot(device, sb, gdt);
  const journal = await checkJournalInode(device, sb, gdt, zones);
  const all = [...zones, ...journal].sort((a, b) => a.start - b.start);
  await checkBadBlocks(device, sb, gdt, all);
}

/**
 * Refuses a superblock that records errors (`ERROR_FS`), or a journal-less one not marked
 * cleanly unmounted (`VALID_FS` clear), unless `force`: both want e2fsck first.
 *
 * @example
 * ```ts ignore
 * checkState(sb, {}); // throws: corrupt filesystem state: errors were recorded …; run e2fsck
 * ```
 */
export function checkState(sb: Superblock, options: WriteCheckOptions = {}): void {
  if (options.force) return;
  const advice = "write anyway with --force-unchecked (library: force), or run e2fsck";
  if (sb.state & State.ERROR) {
    throw new CorruptError(
      "filesystem state",
      `errors were recorded in the superblock (state "with errors"); ${advice}`,
    );
  }
  if (!(sb.compat & Compat.HAS_JOURNAL) && !(sb.state & State.VALID)) {
    throw new CorruptError(
      "filesystem state",
      `not cleanly unmounted and without a journal (state "not clean"); ${advice}`,
    );
  }
}

/**
 * The superblock geometry checks of the kernel's `ext4_fill_super` that reading does not need
 * (parseSuperblock makes the others): the inode count matches the groups, the reserved GDT
 * blocks and `s_first_meta_bg` are sane, a 1 KiB-block filesystem starts at block 1, a group
 * holds at least one block of inodes.
 *
 * @example
 * ```ts ignore
 * checkGeometry(sb); // throws: corrupt superblock: inode count 5000 does not match …
 * ```
 */
export function checkGeometry(sb: Superblock): void {
  const bad = (detail: string): never => {
    throw new CorruptError("superblock", detail);
  };
  const groups = sb.groupCount;
  if (sb.inodesCount !== groups * sb.inodesPerGroup) {
    bad(
      `inode count ${sb.inodesCount} does not match ${groups} groups of ${sb.inodesPerGroup} inodes`,
    );
  }
  if (sb.firstIno > sb.inodesCount) {
    bad(`first inode ${sb.firstIno} is beyond the ${sb.inodesCount} inodes`);
  }
  const bigalloc = (sb.roCompat & RoCompat.BIGALLOC) !== 0;
  if (sb.blockSize === 1024 && sb.firstDataBlock === 0 && !bigalloc) {
    bad("first data block is 0 with 1 KiB blocks and clusters");
  }
  if (sb.inodesPerGroup < sb.blockSize / sb.inodeSize) {
    bad(`inodes per group ${sb.inodesPerGroup} is less than one block of inodes`);
  }
  if (sb.reservedGdtBlocks > sb.blockSize / 4) {
    bad(`${sb.reservedGdtBlocks} reserved GDT blocks is insanely large`);
  }
  if ((sb.incompat & Incompat.META_BG) && sb.firstMetaBg > descriptorBlockCount(sb)) {
    bad(
      `first meta block group ${sb.firstMetaBg} is beyond the ${
        descriptorBlockCount(sb)
      } descriptor blocks`,
    );
  }
}

/** A run of blocks with fixed contents: base metadata, a bitmap, an inode table, the journal. */
export interface SystemZone {
  /** First block. */
  start: number;
  /** Number of blocks. */
  length: number;
  /** What it is, e.g. "the inode table of group 3". */
  what: string;
}

/**
 * `ext4_check_descriptors`: every group's block bitmap, inode bitmap and inode table lie in
 * the group's range (the whole filesystem with flex_bg, or for the last group) and off the
 * superblock and descriptor blocks; and, as the kernel's system zones, no two of them (nor
 * any group's superblock, descriptor or reserved GDT blocks) overlap. Returns the zones,
 * sorted by start.
 *
 * @example
 * ```ts ignore
 * checkDescriptors(sb, gdt); // throws: corrupt group descriptor 1: block bitmap at 18 overlaps the block bitmap of group 0
 * ```
 */
export function checkDescriptors(sb: Superblock, gdt: GroupDescriptorTable): SystemZone[] {
  const groups = sb.groupCount;
  const flex = (sb.incompat & Incompat.FLEX_BG) !== 0;
  const itb = sb.inodeTableBlocksPerGroup;
  const zones: SystemZone[] = [];
  const base: { start: number; end: number }[] = [];
  for (let g = 0; g < groups; g++) {
    const n = baseMetaBlocks(sb, g);
    const start = groupFirstBlock(sb, g);
    if (n > 0) {
      zones.push({ start, length: n, what: `the superblock and descriptors of group ${g}` });
      base.push({ start, end: start + n });
    }
  }
  for (let g = 0; g < groups; g++) {
    const gd = gdt.get(g);
    const first = flex ? sb.firstDataBlock : groupFirstBlock(sb, g);
    const last = flex || g === groups - 1
      ? sb.blocksCount - 1
      : groupFirstBlock(sb, g) + sb.blocksPerGroup - 1;
    const parts: [string, number, number][] = [
      ["block bitmap", gd.blockBitmap, 1],
      ["inode bitmap", gd.inodeBitmap, 1],
      ["inode table", gd.inodeTable, itb],
    ];
    for (const [what, start, length] of parts) {
      if (start < first || start + length - 1 > last) {
        throw new CorruptError(
          `group descriptor ${g}`,
          `${what} at ${start} is not in the group (blocks ${first}-${last})`,
        );
      }
      zones.push({ start, length, what: `the ${what} of group ${g}` });
    }
  }
  zones.sort((a, b) => a.start - b.start);
  for (let i = 1; i < zones.length; i++) {
    const a = zones[i - 1];
    const b = zones[i];
    if (b.start < a.start + a.length) {
      // Which of the two is wrong cannot be told: name the zone that starts later (on a tie,
      // the later group's), unless that is a group's base range, which is never moved.
      const [fault, other] = b.what.startsWith("the superblock") ? [a, b] : [b, a];
      const m = fault.what.match(/^the (.*) of group (\d+)$/);
      throw new CorruptError(
        m ? `group descriptor ${m[2]}` : "group descriptors",
        `${m ? m[1] : fault.what} at ${fault.start}${
          fault.length > 1 ? `+${fault.length}` : ""
        } overlaps ${other.what}`,
      );
    }
  }
  return zones;
}

/** The zone holding `block`, or undefined (`zones` sorted and disjoint). */
function zoneOf(zones: readonly SystemZone[], block: number): SystemZone | undefined {
  let lo = 0;
  let hi = zones.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const z = zones[mid];
    if (block < z.start) hi = mid - 1;
    else if (block >= z.start + z.length) lo = mid + 1;
    else return z;
  }
  return undefined;
}

/**
 * The root directory as `ext4_fill_super` wants it: allocated in the inode bitmap, a
 * directory with links, a size and blocks ("corrupt root inode, run e2fsck").
 */
async function checkRoot(
  device: BlockDevice,
  sb: Superblock,
  gdt: GroupDescriptorTable,
): Promise<void> {
  const where = `root inode ${ROOT_INO}`;
  const gd = gdt.get(0);
  const uninit = (sb.hasGdtCsum || sb.hasMetadataCsum) && (gd.flags & GroupFlags.INODE_UNINIT);
  const bitmap = uninit ? null : await readBytes(device, gd.inodeBitmap * sb.blockSize, 4);
  if (!bitmap || !testBit(bitmap, ROOT_INO - 1)) {
    throw new CorruptError(where, "not allocated in the inode bitmap: run e2fsck");
  }
  const root = await readInode(device, sb, gdt, ROOT_INO);
  if (root.linksCount === 0) throw new CorruptError(where, "deleted (no links): run e2fsck");
  if ((root.mode & Mode.IFMT) !== Mode.IFDIR) {
    throw new CorruptError(where, `not a directory (mode 0o${root.mode.toString(8)}): run e2fsck`);
  }
  if (root.size === 0 || root.rawBlocks === 0) {
    throw new CorruptError(where, "has no size or no blocks: run e2fsck");
  }
}

/**
 * The internal journal as `ext4_get_journal_inode` wants it (a live regular file) with blocks,
 * none of them in another system zone; returns its blocks as zones. An external journal is
 * not looked at.
 */
async function checkJournalInode(
  device: BlockDevice,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  zones: readonly SystemZone[],
): Promise<SystemZone[]> {
  if (!(sb.compat & Compat.HAS_JOURNAL) || sb.journalInum === 0) return [];
  const { map, blocks } = await journalBlockMapper(device, sb, sb.journalInum, gdt);
  const where = `journal inode ${sb.journalInum}`;
  if (blocks === 0) throw new CorruptError(where, "has no blocks: run e2fsck");
  const journal: SystemZone[] = [];
  for (let i = 0; i < blocks; i++) {
    const b = map(i);
    const z = zoneOf(zones, b);
    if (z) throw new CorruptError(where, `block ${b} overlaps ${z.what}: run e2fsck`);
    const last = journal[journal.length - 1];
    if (last && last.start + last.length === b) last.length++;
    else journal.push({ start: b, length: 1, what: "the journal" });
  }
  return journal;
}

/**
 * The bad blocks inode's list. The kernel ignores it (the bitmap marks bad blocks in use);
 * e2fsck relocates metadata found on a bad block (and clones journal blocks). ext4ts refuses
 * to write while a listed block is part of the metadata or the journal: new inodes would
 * land on a bad block. Bad blocks elsewhere are fine (the bitmap keeps them in use).
 */
async function checkBadBlocks(
  device: BlockDevice,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  zones: readonly SystemZone[],
): Promise<void> {
  const inode = await readInode(device, sb, gdt, BAD_BLOCKS_INO);
  if (inode.iBlock.every((b) => b === 0)) return;
  const bs = sb.blockSize;
  // Its size is often 0 (e2fsprogs reads the list by its pointers): i_blocks bounds it too.
  const size = Math.max(inode.size, inode.rawBlocks * 512);
  const runs = await readBlockMap(
    sb,
    { ino: BAD_BLOCKS_INO, iBlock: inode.iBlock, size },
    (b) => readBytes(device, b * bs, bs),
  );
  for (const r of runs) {
    for (let b = r.physical; b < r.physical + r.length; b++) {
      const z = zoneOf(zones, b);
      if (z) {
        throw new CorruptError(
          `bad blocks inode ${BAD_BLOCKS_INO}`,
          `block ${b}, listed as bad, holds ${z.what}: run e2fsck`,
        );
      }
    }
  }
}
