/**
 * The one orphan implementation (the kernel's fs/ext4/orphan.c): inodes unlinked while still
 * open (or being truncated) are recorded so that recovery frees them after a crash, taken off
 * again at their last close, and the orphans a previous user left are processed — at a
 * read-write open as the kernel does at mount (after a journal replayed by `recovery: "replay"`
 * too), and right after a journal replay as e2fsck does (`processOrphans` with `e2fsck`, run by
 * lib/ext4/orphans_replay.ts over the replayed view). Two places hold them, as in the kernel:
 *
 * - the orphan file (orphan_file feature, lib/ondisk/orphan_file.ts): a free slot of its blocks
 *   takes the inode number, the block's checksum follows, and the ro_compat flag
 *   orphan_present is set while any slot is in use (cleared when the last goes);
 * - the classic list, chained from the superblock's `s_last_orphan` through each inode's
 *   `i_dtime`: used without the orphan file, and when the orphan file is full.
 *
 * @module
 */

import { Compat, RoCompat } from "../ondisk/features.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { readFileMap } from "./file_map_write.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import { encodeInode, type Inode, InodeFlags, Mode } from "../ondisk/inode.ts";
import { EXTENT_MAGIC } from "../ondisk/extent.ts";
import { getInode, loadInode, writeInode } from "./inode.ts";
import {
  ORPHAN_BLOCK_MAGIC,
  ORPHAN_BLOCK_TAIL,
  orphanBlockChecksum,
  orphanSlotsPerBlock,
} from "../ondisk/orphan_file.ts";
import { State, type Superblock } from "../ondisk/superblock.ts";
import type { BlockCache, Transaction } from "../txn/transaction.ts";
import { truncateFile } from "./file_update.ts";
import { releaseInode } from "./unlink.ts";
import type { OpContext } from "./context.ts";

const LAST_ORPHAN = 0xe8;
const RO_COMPAT = 0x64;
/** Orphan files larger than this many blocks are taken as corrupt (mke2fs makes ≤ 512). */
const MAX_ORPHAN_FILE_BLOCKS = 1 << 16;

function sbView(sb: Superblock): DataView {
  return new DataView(sb.bytes.buffer, sb.bytes.byteOffset, 1024);
}

/** Writes the superblock (fresh checksum) when the transaction commits. */
function superblockChanged(tx: Transaction, sb: Superblock): void {
  tx.beforeCommit("superblock:orphan", async () => {
    sb.updateChecksum();
    const bs = sb.blockSize;
    await tx.patchUnshared(Math.floor(1024 / bs), 1024 % bs, sb.bytes);
  });
}

function setLastOrphan(tx: Transaction, sb: Superblock, ino: number): void {
  tx.guard(sb.bytes);
  sbView(sb).setUint32(LAST_ORPHAN, ino, true);
  superblockChanged(tx, sb);
  classicLists.delete(tx.cache);
}

/**
 * The classic list of each block cache as last walked, or as this module's own additions and
 * removals left it: a walk reads every orphan's inode, and each addition and removal needs the
 * list, so N files unlinked while open cost O(N²) inode reads (3 000 of them: an unlink took
 * 1.4 ms, 19 ms with 9 000) — the kernel keeps its list in memory. Used only while its head is
 * `s_last_orphan`; a transaction that changed it drops it when aborted; never changed in place.
 */
const classicLists = new WeakMap<BlockCache, readonly number[]>();

/** Walks of the classic list so far (for tests: additions and removals need none). */
export const orphanListWalks = { count: 0 };

/** Transactions whose abort drops their cache's kept list (registered once each). */
const dropOnAbort = new WeakSet<Transaction>();

/** Keeps `list` as the classic list of `tx`'s cache from now on, unless `tx` is aborted. */
function keepClassicList(tx: Transaction, list: readonly number[]): void {
  if (!dropOnAbort.has(tx)) {
    dropOnAbort.add(tx);
    tx.onAbort(() => classicLists.delete(tx.cache));
  }
  classicLists.set(tx.cache, list);
}

/**
 * The classic list, head first: the kept one, else walked from `s_last_orphan` through each
 * inode's `i_dtime` (bounded; a loop or a bad inode number is a CorruptError). `seen` holds
 * the orphan file's inodes: one of them on the list too is a CorruptError.
 */
async function classicList(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  seen: ReadonlySet<number> = new Set(),
): Promise<readonly number[]> {
  const kept = classicLists.get(tx.cache);
  if (kept && (kept[0] ?? 0) === sb.lastOrphan) {
    if (seen.size > 0) {
      for (const ino of kept) {
        if (seen.has(ino)) throw new CorruptError("orphan list", `bad or repeated inode ${ino}`);
      }
    }
    return kept;
  }
  orphanListWalks.count++;
  const list: number[] = [];
  const walked = new Set<number>();
  for (let ino = sb.lastOrphan; ino !== 0;) {
    if (ino < sb.firstIno || ino > sb.inodesCount || walked.has(ino) || seen.has(ino)) {
      throw new CorruptError("orphan list", `bad or repeated inode ${ino}`);
    }
    walked.add(ino);
    list.push(ino);
    ino = (await getInode(tx, sb, gdt, ino)).dtime;
  }
  // Walked through `tx`: what it changed and may still abort is in it.
  keepClassicList(tx, list);
  return list;
}

function setOrphanPresent(tx: Transaction, sb: Superblock, on: boolean): void {
  const now = (sb.roCompat & RoCompat.ORPHAN_PRESENT) !== 0;
  if (now === on) return;
  tx.guard(sb.bytes);
  const v = sbView(sb);
  const word = v.getUint32(RO_COMPAT, true);
  v.setUint32(
    RO_COMPAT,
    (on ? word | RoCompat.ORPHAN_PRESENT : word & ~RoCompat.ORPHAN_PRESENT) >>> 0,
    true,
  );
  superblockChanged(tx, sb);
}

/** The orphan file's identity and its blocks (physical, in logical order), checked. */
interface OrphanFile {
  ino: number;
  gen: number;
  blocks: number[];
}

async function loadOrphanFile(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
): Promise<OrphanFile | null> {
  if (!(sb.compat & Compat.ORPHAN_FILE)) return null;
  const ino = sb.orphanFileInum;
  const where = `orphan file (inode ${ino})`;
  if (ino < 1 || ino > sb.inodesCount) throw new CorruptError(where, "bad s_orphan_file_inum");
  const { f } = await loadInode(tx, sb, gdt, ino);
  const bs = sb.blockSize;
  if (f.size % bs !== 0 || f.size / bs > MAX_ORPHAN_FILE_BLOCKS) {
    throw new CorruptError(where, `size ${f.size} is not a whole number of blocks`);
  }
  if (f.flags & InodeFlags.INLINE_DATA) throw new CorruptError(where, "has inline data");
  const map = await readFileMap(tx, sb, ino, f);
  const blocks: number[] = new Array(f.size / bs).fill(0);
  for (const e of map.extents) {
    for (let i = 0; i < e.length; i++) {
      const lb = e.logical + i;
      if (lb >= blocks.length) throw new CorruptError(where, `maps block ${lb} past its size`);
      if (e.unwritten) throw new CorruptError(where, `block ${lb} is unwritten`);
      blocks[lb] = e.physical + i;
    }
  }
  const file = { ino, gen: f.generation, blocks };
  for (let lb = 0; lb < blocks.length; lb++) {
    if (!blocks[lb]) throw new CorruptError(where, `hole at block ${lb}`);
    const b = await tx.read(blocks[lb]);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (v.getUint32(bs - ORPHAN_BLOCK_TAIL, true) !== ORPHAN_BLOCK_MAGIC) {
      throw new CorruptError(`${where} block ${blocks[lb]}`, "bad magic");
    }
    if (
      sb.hasMetadataCsum &&
      v.getUint32(bs - 4, true) !== orphanBlockChecksum(sb, file, blocks[lb], b)
    ) {
      throw new CorruptError(`${where} block ${blocks[lb]}`, "bad checksum");
    }
  }
  return file;
}

/** Finds inode `ino` in the orphan file: its block and slot, or null. */
async function findSlot(
  tx: Transaction,
  sb: Superblock,
  file: OrphanFile,
  ino: number,
): Promise<{ block: number; slot: number } | null> {
  const slots = orphanSlotsPerBlock(sb);
  for (const block of file.blocks) {
    const b = await tx.read(block);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let s = 0; s < slots; s++) if (v.getUint32(4 * s, true) === ino) return { block, slot: s };
  }
  return null;
}

async function setSlot(
  tx: Transaction,
  sb: Superblock,
  file: OrphanFile,
  at: { block: number; slot: number },
  ino: number,
): Promise<void> {
  const b = await tx.getWritable(at.block);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setUint32(4 * at.slot, ino, true);
  if (sb.hasMetadataCsum) {
    v.setUint32(sb.blockSize - 4, orphanBlockChecksum(sb, file, at.block, b), true);
  }
}

/**
 * The orphan inodes: those of the orphan file (block by block), then the classic list from
 * its head. Bounded; a loop, a bad inode number or a damaged orphan file is a CorruptError.
 *
 * @example
 * ```ts ignore
 * const pending = await listOrphans(tx, sb, gdt);
 * ```
 */
export async function listOrphans(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
): Promise<number[]> {
  const out: number[] = [];
  const seen = new Set<number>();
  const file = await loadOrphanFile(tx, sb, gdt);
  if (file) {
    const slots = orphanSlotsPerBlock(sb);
    for (const block of file.blocks) {
      const b = await tx.read(block);
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let s = 0; s < slots; s++) {
        const ino = v.getUint32(4 * s, true);
        if (ino === 0) continue;
        if (ino < sb.firstIno || ino > sb.inodesCount || seen.has(ino)) {
          throw new CorruptError("orphan file", `bad or repeated inode ${ino}`);
        }
        seen.add(ino);
        out.push(ino);
      }
    }
  }
  for (const ino of await classicList(tx, sb, gdt, seen)) out.push(ino);
  return out;
}

/**
 * Records inode `ino` as an orphan: in a free slot of the orphan file (setting
 * orphan_present), or, without one, at the head of the classic list (its `i_dtime` points
 * at the old head). Already recorded: nothing changes.
 *
 * @example
 * ```ts ignore
 * await addOrphan(tx, sb, gdt, ino); // unlinked while open
 * ```
 */
export async function addOrphan(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<void> {
  if (ino < 1 || ino > sb.inodesCount) throw new Ext4Error("INVALID", `bad inode ${ino}`);
  if ((await listOrphans(tx, sb, gdt)).includes(ino)) return;
  const file = await loadOrphanFile(tx, sb, gdt);
  if (file) {
    const free = await findSlot(tx, sb, file, 0);
    if (free) {
      await setSlot(tx, sb, file, free, ino);
      setOrphanPresent(tx, sb, true);
      return;
    }
  }
  const list = await classicList(tx, sb, gdt);
  const { raw, f } = await loadInode(tx, sb, gdt, ino);
  await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, dtime: sb.lastOrphan }, raw));
  setLastOrphan(tx, sb, ino);
  keepClassicList(tx, [ino, ...list]);
}

/**
 * Takes inode `ino` off the orphans (when it is released or linked again): its orphan file
 * slot is emptied (orphan_present cleared with the last), or it is unchained from the
 * classic list. NOT_FOUND when it is not an orphan.
 *
 * @example
 * ```ts ignore
 * await removeOrphan(tx, sb, gdt, ino); // the last handle closed
 * ```
 */
export async function removeOrphan(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<void> {
  const file = await loadOrphanFile(tx, sb, gdt);
  if (file && ino !== 0) {
    const at = await findSlot(tx, sb, file, ino);
    if (at) {
      await setSlot(tx, sb, file, at, 0);
      if (!(await findAnyEntry(tx, sb, file))) setOrphanPresent(tx, sb, false);
      return;
    }
  }
  const list = await classicList(tx, sb, gdt);
  const at = list.indexOf(ino);
  if (at < 0) throw new Ext4Error("NOT_FOUND", `inode ${ino} is not an orphan`);
  const { raw, f } = await loadInode(tx, sb, gdt, ino);
  const next = f.dtime;
  await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, dtime: 0 }, raw));
  if (at === 0) {
    setLastOrphan(tx, sb, next);
  } else {
    const prev = list[at - 1];
    const { raw: praw, f: pf } = await loadInode(tx, sb, gdt, prev);
    await writeInode(tx, sb, gdt, prev, encodeInode(sb, prev, { ...pf, dtime: next }, praw));
  }
  keepClassicList(tx, [...list.slice(0, at), ...list.slice(at + 1)]);
}

async function findAnyEntry(tx: Transaction, sb: Superblock, file: OrphanFile): Promise<boolean> {
  const slots = orphanSlotsPerBlock(sb);
  for (const block of file.blocks) {
    const b = await tx.read(block);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let s = 0; s < slots; s++) if (v.getUint32(4 * s, true) !== 0) return true;
  }
  return false;
}

/** Most orphans processed at open (one transaction holds it all; a longer list is left to e2fsck). */
const MAX_ORPHANS = 4096;

async function linksOf(ctx: OpContext, ino: number) {
  return await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
}

/**
 * Puts `ino` on the orphan list when it has no links left (it was kept for an open handle).
 *
 * @example
 * ```ts ignore
 * await orphanIfUnlinked(ctx, ino);
 * ```
 */
export async function orphanIfUnlinked(ctx: OpContext, ino: number): Promise<void> {
  if ((await linksOf(ctx, ino)).linksCount !== 0) return;
  await ctx.tx.discardOnError(async () => {
    await addOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
  });
}

/**
 * At the last close of `ino`: when it has no links left, takes it off the orphan list and
 * frees it. Returns true when it was freed.
 *
 * @example
 * ```ts ignore
 * await w.transaction((ctx) => releaseIfUnlinked(ctx, ino));
 * ```
 */
export async function releaseIfUnlinked(ctx: OpContext, ino: number): Promise<boolean> {
  const f = await linksOf(ctx, ino);
  if (f.linksCount !== 0 || f.mode === 0) return false;
  await ctx.tx.discardOnError(async () => {
    const list = await listOrphans(ctx.tx, ctx.sb, ctx.gdt);
    if (list.includes(ino)) await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
    await releaseInode(ctx, ino);
  });
  return true;
}

/** Options for {@link processOrphans}. */
export interface ProcessOrphansOptions {
  /**
   * Release the orphans as e2fsck does right after its journal replay (`release_orphan_inodes()`
   * in e2fsck/super.c: what `e2fsck -E journal_only` writes), not as the kernel does at a
   * read-write mount (`ext4_orphan_cleanup()`). They differ in what is written, not in what is
   * freed: a released inode's record keeps its size, block map and block count (the kernel's
   * eviction empties them), a last xattr reference writes the count 0 into the block it frees,
   * a pending truncate leaves the tail of the last block and the times alone (the kernel zeroes
   * the tail); and in what is refused: any inconsistency — or quota accounting, or a pending
   * truncate other than of an in-inode extent tree (e2fsprogs' punch may then allocate a leaf
   * block) — leaves the whole list untouched for the kernel, the reason returned as `skipped`,
   * where the kernel's way throws a CorruptError.
   */
  e2fsck?: boolean;
}

/** What {@link processOrphans} did. */
export interface OrphansProcessed {
  /** Inodes freed (no links left). */
  freed: number[];
  /** Inodes cut to their size (pending truncates). */
  truncated: number[];
  /** Every orphan taken off the list, in list order. */
  released: number[];
  /** Why the list was left (or, on a filesystem with errors, dropped) unprocessed. */
  skipped?: string;
}

/**
 * Processes the orphan list — both places, the classic list and the orphan file — as the
 * kernel does at a read-write mount, or as e2fsck does after its replay (`options.e2fsck`):
 * inodes without links are freed, linked regular files (an interrupted truncate) are cut to
 * their size, and the list ends empty. On a filesystem with errors both drop the classic list
 * unprocessed. The kernel's way leaves a list longer than 4096 inodes for e2fsck.
 *
 * @example
 * ```ts ignore
 * const { freed } = await w.transaction((ctx) => processOrphans(ctx));
 * ```
 */
export async function processOrphans(
  ctx: OpContext,
  options: ProcessOrphansOptions = {},
): Promise<OrphansProcessed> {
  const { sb } = ctx;
  const freed: number[] = [];
  const truncated: number[] = [];
  const released: number[] = [];
  if (sb.lastOrphan === 0 && !(sb.roCompat & RoCompat.ORPHAN_PRESENT)) {
    return { freed, truncated, released };
  }
  if (sb.state & State.ERROR) {
    // e2fsck and the kernel alike: the list of a damaged filesystem cannot be trusted.
    if (sb.lastOrphan !== 0) setLastOrphan(ctx.tx, sb, 0);
    return {
      freed,
      truncated,
      released,
      skipped: "the filesystem has errors: the orphan list was dropped unprocessed",
    };
  }
  const e2fsck = options.e2fsck ?? false;
  try {
    if (e2fsck && (sb.roCompat & RoCompat.QUOTA)) {
      throw new Ext4Error("UNSUPPORTED", "quota accounting is not implemented");
    }
    if (e2fsck && sb.roCompat & RoCompat.ORPHAN_PRESENT && !(sb.compat & Compat.ORPHAN_FILE)) {
      throw new CorruptError("superblock", "orphan_present without orphan_file");
    }
    const list = await listOrphans(ctx.tx, sb, ctx.gdt);
    if (!e2fsck && list.length > MAX_ORPHANS) return { freed, truncated, released };
    const linked: number[] = [];
    await ctx.tx.discardOnError(async () => {
      for (const ino of list) {
        const f = await linksOf(ctx, ino);
        released.push(ino);
        if (f.linksCount === 0) {
          await releaseInode(ctx, ino, { e2fsck });
          freed.push(ino);
          continue;
        }
        linked.push(ino);
        if (e2fsck) checkTruncatable(f);
        if ((f.mode & Mode.IFMT) === Mode.IFREG) {
          await truncateFile(ctx, ino, f.size, { e2fsck });
          truncated.push(ino);
        }
      }
      await emptyOrphanList(ctx, linked);
    });
  } catch (e) {
    if (e2fsck && e instanceof Ext4Error) {
      return { freed: [], truncated: [], released: [], skipped: e.message };
    }
    throw e;
  }
  return { freed, truncated, released };
}

/**
 * Pending truncates e2fsck's way: regular files whose extent tree lives in the inode (depth 0),
 * the common case; anything else is left to the kernel (UNSUPPORTED, naming it).
 */
function checkTruncatable(f: Inode): void {
  const root = new DataView(f.iBlock.buffer, f.iBlock.byteOffset, f.iBlock.byteLength);
  if (
    (f.mode & Mode.IFMT) !== Mode.IFREG || !(f.flags & InodeFlags.EXTENTS) ||
    (f.flags & InodeFlags.INLINE_DATA) || root.getUint16(0, true) !== EXTENT_MAGIC ||
    root.getUint16(6, true) !== 0
  ) {
    throw new Ext4Error(
      "UNSUPPORTED",
      `orphan inode ${f.ino} is a pending truncate of a kind left to the kernel`,
    );
  }
}

/**
 * Empties both orphan lists once every orphan is dealt with: the linked ones lose their
 * `i_dtime` (the next orphan's number), `s_last_orphan` goes, the orphan file's used slots are
 * zeroed and orphan_present cleared — the state the kernel's removals one by one end in.
 */
async function emptyOrphanList(ctx: OpContext, linked: number[]): Promise<void> {
  const { tx, sb, gdt } = ctx;
  for (const ino of linked) {
    const { raw, f } = await loadInode(tx, sb, gdt, ino);
    if (f.dtime !== 0) {
      await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, dtime: 0 }, raw));
    }
  }
  if (sb.lastOrphan !== 0) setLastOrphan(tx, sb, 0);
  const file = await loadOrphanFile(tx, sb, gdt);
  if (file) {
    const slots = orphanSlotsPerBlock(sb);
    for (const block of file.blocks) {
      const b = await tx.read(block);
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let s = 0; s < slots; s++) {
        if (v.getUint32(4 * s, true) !== 0) await setSlot(tx, sb, file, { block, slot: s }, 0);
      }
    }
  }
  setOrphanPresent(tx, sb, false);
}
