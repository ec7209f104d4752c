/**
 * Changing an existing regular file, at inode level: write at any offset (holes stay holes,
 * blocks in holes are allocated near their neighbours, unwritten blocks become written),
 * truncate down and up, punch hole, and fallocate (unwritten extents). Data goes out as
 * ordered writes; the mapping is rebuilt with {@link rewriteFileMap}; the inode's size,
 * block count and times are rewritten with its checksum.
 *
 * Invariant kept: the bytes of the last block past the end of the file are zeros, so growing a
 * file never exposes old data.
 *
 * @module
 */

import type { Allocator } from "./alloc.ts";
import { Ext4Error } from "./errors.ts";
import type { FileExtent } from "./extent_write.ts";
import {
  type FileMap,
  findExtent,
  insertExtents,
  markWritten,
  readFileMap,
  removeRange,
  rewriteFileMap,
} from "./file_map_write.ts";
import type { GroupDescriptorTable } from "./group_descriptor.ts";
import { uninline } from "./inline_write.ts";
import { InodeFlags } from "./inode.ts";
import {
  decodeInode,
  encodeInode,
  type InodeFields,
  type InodeTime,
  readInodeRaw,
  writeInode,
} from "./inode_write.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

/** What every file operation needs. */
export interface FileContext {
  /** The transaction every block write goes through. */
  tx: Transaction;
  /** Block and inode allocator for the transaction. */
  alloc: Allocator;
  /** The filesystem's superblock. */
  sb: Superblock;
  /** The group descriptor table (free counts, bitmaps, inode tables). */
  gdt: GroupDescriptorTable;
  /** The time to stamp as mtime/ctime (default: now). */
  now?: InodeTime;
}

interface OpenFile {
  ino: number;
  raw: Uint8Array;
  fields: InodeFields;
  map: FileMap;
  extents: FileExtent[];
  /** Data blocks mapped before the change. */
  oldData: number;
}

function nowTime(ctx: FileContext): InodeTime {
  if (ctx.now) return ctx.now;
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

async function open(ctx: FileContext, ino: number): Promise<OpenFile> {
  const raw = await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
  const fields = decodeInode(ctx.sb, raw);
  if ((fields.mode & 0o170000) !== 0o100000) {
    throw new Ext4Error("INVALID", `inode ${ino} is not a regular file`);
  }
  // Freed in the bitmap, not just unlinked: an orphan (unlinked while open) is still written.
  if (fields.linksCount === 0 && !(await ctx.alloc.isInodeInUse(ctx.tx, ino))) {
    throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  }
  if (fields.flags & InodeFlags.INLINE_DATA) {
    // Any change to an inline file first makes it an ordinary one, as the kernel does when
    // inline data grows.
    await uninline(ctx, ino);
    return await open(ctx, ino);
  }
  const map = await readFileMap(ctx.tx, ctx.sb, ino, fields);
  const oldData = map.extents.reduce((a, e) => a + e.length, 0);
  return { ino, raw, fields, map, extents: map.extents, oldData };
}

async function save(ctx: FileContext, f: OpenFile, size: number): Promise<void> {
  const { sb } = ctx;
  const per = sb.blockSize / 512;
  const rebuilt = await rewriteFileMap(ctx.tx, ctx.alloc, sb, {
    ino: f.ino,
    generation: f.fields.generation,
    old: f.map,
    extents: f.extents,
    goal: f.extents[0]?.physical,
  });
  const data = f.extents.reduce((a, e) => a + e.length, 0);
  // Keep what else i_blocks counts (an xattr block).
  const other = f.fields.blocks512 - (f.oldData + f.map.mapBlocks.length) * per;
  const t = nowTime(ctx);
  const fields: InodeFields = {
    ...f.fields,
    size,
    block: rebuilt.iBlock,
    blocks512: Math.max(0, other) + (data + rebuilt.mapBlocks) * per,
    mtime: t,
    ctime: t,
  };
  await writeInode(ctx.tx, sb, ctx.gdt, f.ino, encodeInode(sb, f.ino, fields, f.raw));
}

/** The physical block of logical `lb` when it holds written data, else undefined. */
function writtenBlock(extents: FileExtent[], lb: number): number | undefined {
  const e = findExtent(extents, lb);
  if (!e || e.unwritten) return undefined;
  return e.physical + (lb - e.logical);
}

/** Allocates blocks for the holes in `[from, to)`, near the mapped neighbours. */
async function fillHoles(
  ctx: FileContext,
  f: OpenFile,
  from: number,
  to: number,
  unwritten: boolean,
): Promise<void> {
  const { sb } = ctx;
  const added: FileExtent[] = [];
  let lb = from;
  while (lb < to) {
    if (findExtent(f.extents, lb)) {
      lb++;
      continue;
    }
    let end = lb + 1;
    while (end < to && !findExtent(f.extents, end)) end++;
    // Goal: right after the extent before the hole, else the inode's group.
    const before = f.extents.filter((e) => e.logical < lb).at(-1);
    const goal = before
      ? before.physical + (lb - before.logical)
      : sb.firstDataBlock + Math.floor((f.ino - 1) / sb.inodesPerGroup) * sb.blocksPerGroup;
    const got = await ctx.alloc.allocateBlocks(ctx.tx, goal, end - lb, {
      contiguousPreferred: true,
    });
    let logical = lb;
    for (const e of got) {
      const x: FileExtent = { logical, physical: e.start, length: e.length };
      if (unwritten) x.unwritten = true;
      added.push(x);
      logical += e.length;
    }
    lb = end;
  }
  f.extents = insertExtents(f.extents, unwritten ? added : added.map((e) => ({ ...e })));
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
  ctx: FileContext,
  ino: number,
  offset: number,
  data: Uint8Array,
): Promise<void> {
  const { sb, tx } = ctx;
  const bs = sb.blockSize;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new Ext4Error("INVALID", `bad offset ${offset}`);
  }
  if (offset + data.length > 2 ** 32 * bs) throw new Ext4Error("INVALID", "file too large");
  const f = await open(ctx, ino);
  if (data.length === 0) return await save(ctx, f, f.fields.size);
  const first = Math.floor(offset / bs);
  const last = Math.floor((offset + data.length - 1) / bs);
  // Old contents of the partial blocks at either end, read before anything is remapped.
  const old = new Map<number, Uint8Array>();
  for (const lb of new Set([first, last])) {
    const p = writtenBlock(f.extents, lb);
    if (p !== undefined) old.set(lb, Uint8Array.from(await tx.read(p)));
  }
  try {
    await fillHoles(ctx, f, first, last + 1, false);
    f.extents = markWritten(f.extents, first, last + 1);
    // One buffer per physically contiguous stretch.
    let lb = first;
    while (lb <= last) {
      const e = findExtent(f.extents, lb)!;
      const phys = e.physical + (lb - e.logical);
      const n = Math.min(last + 1, e.logical + e.length) - lb;
      const buf = new Uint8Array(n * bs);
      for (const [ob, bytes] of old) if (ob >= lb && ob < lb + n) buf.set(bytes, (ob - lb) * bs);
      const start = lb * bs;
      const from = Math.max(offset, start);
      const to = Math.min(offset + data.length, start + n * bs);
      buf.set(data.subarray(from - offset, to - offset), from - start);
      tx.writeData(phys, buf);
      lb += n;
    }
    await save(ctx, f, Math.max(f.fields.size, offset + data.length));
  } catch (e) {
    tx.abort();
    throw e;
  }
}

/** Zeroes bytes `[from, to)` of logical block `lb` if it holds written data. */
async function zeroPartial(
  ctx: FileContext,
  f: OpenFile,
  lb: number,
  from: number,
  to: number,
): Promise<void> {
  const p = writtenBlock(f.extents, lb);
  if (p === undefined || from >= to) return;
  const img = Uint8Array.from(await ctx.tx.read(p));
  img.fill(0, from, to);
  ctx.tx.writeData(p, img);
}

/** Sets the size of regular file `ino`: blocks past the end are freed, growing leaves a hole. */
export async function truncateFile(ctx: FileContext, ino: number, size: number): Promise<void> {
  const bs = ctx.sb.blockSize;
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 32 * bs) {
    throw new Ext4Error("INVALID", `bad size ${size}`);
  }
  const f = await open(ctx, ino);
  try {
    const keep = Math.ceil(size / bs);
    const { kept, removed } = removeRange(f.extents, keep, 2 ** 32);
    f.extents = kept;
    for (const r of removed) await ctx.alloc.freeBlocks(ctx.tx, r.start, r.length);
    if (size % bs !== 0) await zeroPartial(ctx, f, keep - 1, size % bs, bs);
    await save(ctx, f, size);
  } catch (e) {
    ctx.tx.abort();
    throw e;
  }
}

/** Deallocates bytes `[offset, offset+length)` of file `ino` (reads as zeros; size kept). */
export async function punchHole(
  ctx: FileContext,
  ino: number,
  offset: number,
  length: number,
): Promise<void> {
  const bs = ctx.sb.blockSize;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new Ext4Error("INVALID", `bad range ${offset}+${length}`);
  }
  const f = await open(ctx, ino);
  const end = Math.min(offset + length, f.fields.size);
  if (end <= offset) return;
  try {
    const firstWhole = Math.ceil(offset / bs);
    const lastWhole = Math.floor(end / bs); // exclusive
    if (firstWhole < lastWhole) {
      const { kept, removed } = removeRange(f.extents, firstWhole, lastWhole);
      f.extents = kept;
      for (const r of removed) await ctx.alloc.freeBlocks(ctx.tx, r.start, r.length);
    }
    const headBlock = Math.floor(offset / bs);
    const tailBlock = Math.floor(end / bs);
    if (headBlock === tailBlock) {
      await zeroPartial(ctx, f, headBlock, offset % bs, end % bs);
    } else {
      if (offset % bs !== 0) await zeroPartial(ctx, f, headBlock, offset % bs, bs);
      if (end % bs !== 0) await zeroPartial(ctx, f, tailBlock, 0, end % bs);
    }
    await save(ctx, f, f.fields.size);
  } catch (e) {
    ctx.tx.abort();
    throw e;
  }
}

/**
 * Allocates unwritten blocks for the holes in `[offset, offset+length)` of file `ino` (they
 * read as zeros); grows the size unless `keepSize`. Extent-mapped files only.
 */
export async function fallocateRange(
  ctx: FileContext,
  ino: number,
  offset: number,
  length: number,
  options: { keepSize?: boolean } = {},
): Promise<void> {
  const bs = ctx.sb.blockSize;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
    throw new Ext4Error("INVALID", `bad range ${offset}+${length}`);
  }
  if (offset + length > 2 ** 32 * bs) throw new Ext4Error("INVALID", "file too large");
  const f = await open(ctx, ino);
  if (f.map.kind !== "extents") {
    throw new Ext4Error("UNSUPPORTED", "fallocate needs an extent-mapped file");
  }
  try {
    await fillHoles(ctx, f, Math.floor(offset / bs), Math.ceil((offset + length) / bs), true);
    const size = options.keepSize ? f.fields.size : Math.max(f.fields.size, offset + length);
    await save(ctx, f, size);
  } catch (e) {
    ctx.tx.abort();
    throw e;
  }
}
