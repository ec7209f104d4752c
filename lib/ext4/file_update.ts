/**
 * Changing an existing regular file, at inode level: write at any offset (holes stay holes,
 * blocks in holes are allocated near their neighbours, unwritten blocks become written),
 * truncate down and up, punch hole, and fallocate (unwritten extents). Data goes out as
 * ordered writes; extent trees are changed in place (lib/ext4/extents_edit.ts: only the nodes
 * on the changed path are read and written), block maps are rewritten whole; the inode's size,
 * block count and times are rewritten with its checksum. Sizes past what the kernel allows
 * (`s_maxbytes`, {@link maxFileSize}) are EFBIG.
 *
 * Invariant kept: the bytes of the last block past the end of the file are zeros, so growing a
 * file never exposes old data.
 *
 * @module
 */

import { Errno, Ext4Error } from "../errors.ts";
import { ExtentTreeEditor } from "./extents_edit.ts";
import { type FileExtent, MAX_INIT_EXTENT, MAX_UNWRITTEN_EXTENT } from "../ondisk/extent.ts";
import {
  BlockMapEditor,
  type FileMapEditor,
  findExtent,
  maxFileSize,
  readFileMap,
} from "./file_map_write.ts";
import { Incompat } from "../ondisk/features.ts";
import { truncateInlineInPlace, uninline, writeInlineInPlace } from "./inline.ts";
import {
  changeTime,
  encodeInode,
  type InodeFields,
  InodeFlags,
  type InodeTime,
} from "../ondisk/inode.ts";
import { loadInode, writeInode } from "./inode.ts";
import type { OpContext } from "./context.ts";
import { Mode } from "../ondisk/inode.ts";

interface OpenFile {
  ino: number;
  raw: Uint8Array;
  fields: InodeFields;
  map: FileMapEditor;
}

function nowTime(ctx: OpContext): InodeTime {
  return changeTime(ctx.now);
}

/**
 * The kernel's coarse clock tick (jiffies at CONFIG_HZ=250): a data write does not restamp
 * times already set within the current tick, as `inode_needs_update_time` compares with the
 * coarse `current_time`.
 */
const TIME_TICK_NS = 4_000_000;

/** Whether `t` lies in the coarse tick that ends at `now` (not before its start, not after now). */
function inCurrentTick(t: InodeTime, now: InodeTime): boolean {
  // Ticks divide a second evenly, so the tick starts in now's second.
  const start = now.nsec - now.nsec % TIME_TICK_NS;
  return t.sec === now.sec && t.nsec >= start && t.nsec <= now.nsec;
}

/**
 * The time a data write stamps when the clock (milliseconds) has not moved past `prev`, the
 * times set earlier in this tick: a microsecond after them, so a restamp after the times were
 * shown always shows (the kernel's multigrain timestamps give a queried ctime a fine-grained
 * successor, never an earlier time); otherwise `now`.
 */
function stampAfter(now: InodeTime, prev: InodeTime): InodeTime {
  const sameTick = prev.sec === now.sec &&
    Math.floor(prev.nsec / TIME_TICK_NS) === Math.floor(now.nsec / TIME_TICK_NS);
  if (!sameTick || prev.nsec < now.nsec) return now;
  const nsec = prev.nsec + 1000;
  return nsec < 1e9 ? { sec: prev.sec, nsec } : { sec: prev.sec + 1, nsec: nsec - 1e9 };
}

/**
 * Reads and checks inode `ino` (no change yet); returns its fields, a copy of its raw record
 * and its largest size.
 */
async function inspect(
  ctx: OpContext,
  ino: number,
): Promise<{ raw: Uint8Array; fields: InodeFields; maxSize: number }> {
  const { raw, f: fields } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if ((fields.mode & Mode.IFMT) !== Mode.IFREG) {
    throw new Ext4Error("INVALID", `inode ${ino} is not a regular file`);
  }
  // Freed in the bitmap, not just unlinked: an orphan (unlinked while open) is still written.
  if (fields.linksCount === 0 && !(await ctx.alloc.isInodeInUse(ctx.tx, ino))) {
    throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  }
  // An inline file becomes an extent file where the filesystem has extents.
  const extents = (fields.flags & InodeFlags.EXTENTS) !== 0 ||
    ((fields.flags & InodeFlags.INLINE_DATA) !== 0 && (ctx.sb.incompat & Incompat.EXTENTS) !== 0);
  return { raw, fields, maxSize: maxFileSize(ctx.sb, extents ? "extents" : "blockmap") };
}

/** EFBIG, as the kernel answers for a size or write end past `s_maxbytes`. */
function tooLarge(ino: number, end: number, max: number): Ext4Error {
  return new Ext4Error(
    "INVALID",
    `inode ${ino}: ${end} bytes is past the largest file size ${max}`,
    { errno: Errno.EFBIG },
  );
}

/**
 * Opens file `ino` for a change; `loaded` is its record as just loaded (`loadInode`), when
 * nothing changed it since.
 */
async function open(
  ctx: OpContext,
  ino: number,
  loaded?: { raw: Uint8Array; f: InodeFields },
): Promise<OpenFile> {
  const { raw, f: fields } = loaded ?? await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if (fields.flags & InodeFlags.INLINE_DATA) {
    // Any change to an inline file first makes it an ordinary one, as the kernel does when
    // inline data grows.
    await uninline(ctx, ino);
    return await open(ctx, ino);
  }
  const generation = fields.generation;
  const map: FileMapEditor = fields.flags & InodeFlags.EXTENTS
    ? new ExtentTreeEditor(ctx.tx, ctx.alloc, ctx.sb, { ino, generation, iBlock: fields.block })
    : new BlockMapEditor(ctx.tx, ctx.alloc, ctx.sb, {
      ino,
      generation,
      map: await readFileMap(ctx.tx, ctx.sb, ino, fields),
      iBlock: fields.block,
    });
  return { ino, raw, fields, map };
}

async function save(
  ctx: OpContext,
  f: OpenFile,
  size: number,
  keepTimes = false,
  time?: InodeTime,
): Promise<void> {
  const { sb } = ctx;
  const { iBlock, blocksDelta } = await f.map.finish();
  const t = time ?? nowTime(ctx);
  const fields: InodeFields = {
    ...f.fields,
    size,
    block: iBlock,
    blocks512: Math.max(0, f.fields.blocks512 + blocksDelta * (sb.blockSize / 512)),
    ...(keepTimes ? {} : { mtime: t, ctime: t }),
  };
  await writeInode(ctx.tx, sb, ctx.gdt, f.ino, encodeInode(sb, f.ino, fields, f.raw));
}

/** The physical block of logical `lb` when it holds written data, else undefined. */
function writtenBlock(extents: FileExtent[], lb: number): number | undefined {
  const e = findExtent(extents, lb);
  if (!e || e.unwritten) return undefined;
  return e.physical + (lb - e.logical);
}

/**
 * Allocates blocks for the holes in `[from, to)`, each near the block mapped before it; true
 * when there were any. `known`: the extents meeting the range, when the caller has just
 * looked them up.
 */
async function fillHoles(
  ctx: OpContext,
  f: OpenFile,
  from: number,
  to: number,
  unwritten: boolean,
  known?: FileExtent[],
): Promise<boolean> {
  const { sb } = ctx;
  const existing = known ?? await f.map.extentsIn(from, to);
  const added: FileExtent[] = [];
  let before: FileExtent | undefined = existing[0]?.logical <= from
    ? undefined
    : await f.map.before(from);
  let lb = from;
  let i = 0;
  while (lb < to) {
    const e = existing[i];
    if (e && e.logical <= lb) {
      lb = Math.max(lb, e.logical + e.length);
      before = e;
      i++;
      continue;
    }
    const end = Math.min(to, e ? e.logical : to);
    // Goal: where the block before the hole is, continued; else the inode's group.
    const goal = before
      ? before.physical + (lb - before.logical)
      : sb.firstDataBlock + Math.floor((f.ino - 1) / sb.inodesPerGroup) * sb.blocksPerGroup;
    const got = await ctx.alloc.allocateBlocks(ctx.tx, goal, end - lb, {
      contiguousPreferred: true,
    });
    let logical = lb;
    // Unwritten extents hold one block less than written ones.
    const most = unwritten ? MAX_UNWRITTEN_EXTENT : MAX_INIT_EXTENT;
    for (const r of got) {
      for (let at = 0; at < r.length; at += most) {
        const length = Math.min(most, r.length - at);
        const x: FileExtent = { logical, physical: r.start + at, length };
        if (unwritten) x.unwritten = true;
        added.push(x);
        logical += length;
      }
    }
    before = added[added.length - 1];
    lb = end;
  }
  if (added.length === 0) return false;
  await f.map.insert(added);
  return true;
}

/** Options of {@link writeFileRange}. */
export interface WriteRangeOptions {
  /**
   * The caller leaves `data` unchanged until the transaction has committed (as when it commits
   * before the caller goes on): whole blocks are written from it as they are, not copied.
   */
  borrow?: boolean;
  /**
   * The file's times were shown (to the kernel: a stat) since a write last set them: this write
   * sets new ones even within the coarse tick, as the kernel does for a queried ctime.
   */
  restamp?: boolean;
}

/**
 * Writes `data` at byte `offset` of regular file `ino`, growing it if needed.
 *
 * @example
 * ```ts ignore
 * await writeFileRange({ tx, alloc, sb, gdt }, ino, 4096 * 10, bytes);
 * ```
 */
export async function writeFileRange(
  ctx: OpContext,
  ino: number,
  offset: number,
  data: Uint8Array,
  options: WriteRangeOptions = {},
): Promise<void> {
  const { sb, tx } = ctx;
  const bs = sb.blockSize;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new Ext4Error("INVALID", `bad offset ${offset}`);
  }
  const { raw, fields, maxSize } = await inspect(ctx, ino);
  if (offset + data.length > maxSize) throw tooLarge(ino, offset + data.length, maxSize);
  // An inline file stays inline while the result fits in its inode (open() converts it).
  const inline = (fields.flags & InodeFlags.INLINE_DATA) !== 0;
  if (inline && await writeInlineInPlace(ctx, ino, offset, data)) return;
  await tx.discardOnError(async () => {
    // Not inline: the record inspect() loaded is still the inode's (nothing changed it).
    const f = await open(ctx, ino, inline ? undefined : { raw, f: fields });
    if (data.length === 0) return await save(ctx, f, f.fields.size);
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + data.length - 1) / bs);
    const before = await f.map.extentsIn(first, last + 1);
    // Old contents of the partial blocks at either end, read before anything is remapped. A
    // block the write covers whole is not read: an overwrite of whole blocks reads nothing.
    const end = offset + data.length;
    const partial: number[] = [];
    if (offset % bs !== 0) partial.push(first);
    if (end % bs !== 0 && (last !== first || partial.length === 0)) partial.push(last);
    let old: Map<number, Uint8Array> | undefined; // none for whole blocks (the usual WRITE)
    for (const lb of partial) {
      const p = writtenBlock(before, lb);
      if (p !== undefined) (old ??= new Map()).set(lb, Uint8Array.from(await tx.read(p)));
    }
    let remapped = await fillHoles(ctx, f, first, last + 1, false, before);
    if (before.some((e) => e.unwritten)) {
      await f.map.markWritten(first, last + 1);
      remapped = true;
    }
    // Nothing remapped (an overwrite of written blocks): the extents found before still hold.
    const mapped = remapped ? await f.map.extentsIn(first, last + 1) : before;
    // One buffer per physically contiguous stretch.
    let lb = first;
    while (lb <= last) {
      const e = findExtent(mapped, lb)!;
      const phys = e.physical + (lb - e.logical);
      const n = Math.min(last + 1, e.logical + e.length) - lb;
      const start = lb * bs;
      const from = Math.max(offset, start);
      const to = Math.min(end, start + n * bs);
      const part = data.subarray(from - offset, to - offset);
      if (from === start && to === start + n * bs) {
        // Whole blocks: the caller's bytes (copied unless lent until the commit).
        tx.writeData(phys, options.borrow ? part : part.slice());
      } else {
        const buf = new Uint8Array(n * bs);
        for (const [ob, bytes] of old ?? []) {
          if (ob >= lb && ob < lb + n) buf.set(bytes, (ob - lb) * bs);
        }
        buf.set(part, from - start);
        tx.writeData(phys, buf);
      }
      lb += n;
    }
    // An overwrite in place within the size, times already stamped in this tick and not shown
    // since: the inode stays as it is, so the transaction holds data alone (an fsync then
    // needs no commit).
    const size = Math.max(f.fields.size, end);
    const now = nowTime(ctx);
    const stamped = !options.restamp && inCurrentTick(f.fields.mtime, now) &&
      inCurrentTick(f.fields.ctime, now);
    if (remapped || size !== f.fields.size || !stamped) {
      // The clock's own time when the caller fixed none: never before this tick's stamps.
      await save(ctx, f, size, false, ctx.now ? now : stampAfter(now, f.fields.ctime));
    }
  });
}

/** Zeroes bytes `[from, to)` of logical block `lb` if it holds written data. */
async function zeroPartial(
  ctx: OpContext,
  f: OpenFile,
  lb: number,
  from: number,
  to: number,
): Promise<void> {
  if (from >= to) return;
  const e = await f.map.lookup(lb);
  if (!e || e.unwritten) return;
  const p = e.physical + (lb - e.logical);
  const img = Uint8Array.from(await ctx.tx.read(p));
  img.fill(0, from, to);
  ctx.tx.writeData(p, img);
}

/** Frees the data runs a mapping change gave back. */
async function freeRuns(ctx: OpContext, runs: { start: number; length: number }[]) {
  for (const r of runs) await ctx.alloc.freeBlocks(ctx.tx, r.start, r.length);
}

/**
 * Sets the size of regular file `ino`: blocks past the end are freed, growing leaves a hole.
 * A size past the largest the kernel allows is EFBIG. With `e2fsck` (e2fsck's truncate of an
 * orphan, lib/ext4/orphan.ts) the tail of the last block is not zeroed and the times stay.
 */
export async function truncateFile(
  ctx: OpContext,
  ino: number,
  size: number,
  options: { e2fsck?: boolean } = {},
): Promise<void> {
  const bs = ctx.sb.blockSize;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new Ext4Error("INVALID", `bad size ${size}`);
  }
  const { maxSize } = await inspect(ctx, ino);
  if (size > maxSize) throw tooLarge(ino, size, maxSize);
  if (await truncateInlineInPlace(ctx, ino, size)) return;
  await ctx.tx.discardOnError(async () => {
    const f = await open(ctx, ino);
    const keep = Math.ceil(size / bs);
    await freeRuns(ctx, await f.map.remove(keep, 2 ** 32));
    if (size % bs !== 0 && !options.e2fsck) await zeroPartial(ctx, f, keep - 1, size % bs, bs);
    await save(ctx, f, size, options.e2fsck);
  });
}

/** Deallocates bytes `[offset, offset+length)` of file `ino` (reads as zeros; size kept). */
export async function punchHole(
  ctx: OpContext,
  ino: number,
  offset: number,
  length: number,
): Promise<void> {
  checkRange(offset, length, true);
  const { fields } = await inspect(ctx, ino);
  const end = Math.min(offset + length, fields.size);
  if (end <= offset) return;
  await ctx.tx.discardOnError(async () => {
    const f = await open(ctx, ino);
    await clearRange(ctx, f, offset, end);
    await save(ctx, f, f.fields.size);
  });
}

/** INVALID unless `offset` and `length` are a byte range (`length` 0 only if `allowEmpty`). */
function checkRange(offset: number, length: number, allowEmpty: boolean): void {
  if (
    !Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) ||
    length < (allowEmpty ? 0 : 1)
  ) {
    throw new Ext4Error("INVALID", `bad range ${offset}+${length}`);
  }
}

/** UNSUPPORTED (EOPNOTSUPP, as the kernel) for `what` on a file that cannot have extents. */
function requireExtents(ctx: OpContext, fields: InodeFields, what: string): void {
  if (
    !(fields.flags & (InodeFlags.EXTENTS | InodeFlags.INLINE_DATA)) ||
    !(ctx.sb.incompat & Incompat.EXTENTS)
  ) {
    throw new Ext4Error("UNSUPPORTED", `${what} needs an extent-mapped file`);
  }
}

/**
 * Frees the whole blocks inside bytes `[offset, end)` and zeroes the written part the range
 * covers of the blocks at its edges.
 */
async function clearRange(ctx: OpContext, f: OpenFile, offset: number, end: number) {
  const bs = ctx.sb.blockSize;
  const firstWhole = Math.ceil(offset / bs);
  const lastWhole = Math.floor(end / bs); // exclusive
  if (firstWhole < lastWhole) await freeRuns(ctx, await f.map.remove(firstWhole, lastWhole));
  const head = Math.floor(offset / bs);
  const tail = Math.floor((end - 1) / bs);
  if (head === tail) {
    await zeroPartial(ctx, f, head, offset % bs, end - head * bs);
  } else {
    if (offset % bs !== 0) await zeroPartial(ctx, f, head, offset % bs, bs);
    if (end % bs !== 0) await zeroPartial(ctx, f, tail, 0, end % bs);
  }
}

/**
 * The checks fallocate and zero-range share before anything changes: a valid range, an
 * extent-mapped regular file (`what` names the operation in the refusal) and an end within
 * the largest file size.
 */
async function checkAllocatingRange(
  ctx: OpContext,
  ino: number,
  offset: number,
  length: number,
  what: string,
): Promise<void> {
  checkRange(offset, length, false);
  const { fields, maxSize } = await inspect(ctx, ino);
  requireExtents(ctx, fields, what);
  if (offset + length > maxSize) throw tooLarge(ino, offset + length, maxSize);
}

/**
 * Allocates unwritten blocks for the holes in `[offset, offset+length)` of file `ino` (they
 * read as zeros); grows the size unless `keepSize`. Extent-mapped files only.
 */
export async function fallocateRange(
  ctx: OpContext,
  ino: number,
  offset: number,
  length: number,
  options: { keepSize?: boolean } = {},
): Promise<void> {
  const bs = ctx.sb.blockSize;
  await checkAllocatingRange(ctx, ino, offset, length, "fallocate");
  await ctx.tx.discardOnError(async () => {
    const f = await open(ctx, ino);
    await fillHoles(ctx, f, Math.floor(offset / bs), Math.ceil((offset + length) / bs), true);
    const size = options.keepSize ? f.fields.size : Math.max(f.fields.size, offset + length);
    await save(ctx, f, size);
  });
}

/**
 * FALLOC_FL_ZERO_RANGE: bytes `[offset, offset+length)` of file `ino` read as zeros
 * afterwards. As the kernel does, the whole blocks inside the range become unwritten extents
 * (their old blocks are freed and unwritten ones allocated, so nothing is written to the
 * device for them), the blocks the range only partly covers are allocated too and zeroed in
 * the covered part, and the size grows to the range's end unless `keepSize`. Extent-mapped
 * files only (UNSUPPORTED, the kernel's EOPNOTSUPP, otherwise).
 *
 * @example
 * ```ts ignore
 * await zeroRange({ tx, alloc, sb, gdt }, ino, 4096, 1 << 20, { keepSize: true });
 * ```
 */
export async function zeroRange(
  ctx: OpContext,
  ino: number,
  offset: number,
  length: number,
  options: { keepSize?: boolean } = {},
): Promise<void> {
  const bs = ctx.sb.blockSize;
  await checkAllocatingRange(ctx, ino, offset, length, "zero range");
  const end = offset + length;
  await ctx.tx.discardOnError(async () => {
    const f = await open(ctx, ino);
    await clearRange(ctx, f, offset, end);
    await fillHoles(ctx, f, Math.floor(offset / bs), Math.ceil(end / bs), true);
    const size = options.keepSize ? f.fields.size : Math.max(f.fields.size, end);
    await save(ctx, f, size);
  });
}
