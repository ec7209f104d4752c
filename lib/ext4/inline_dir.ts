/**
 * Inline-data directories on the write path, as the kernel keeps them (fs/ext4/inline.c):
 * `i_block` holds the parent's inode number (4 bytes) and then 56 bytes of entries; the
 * value of the in-inode "system.data" attribute, when not empty, is a second run of
 * entries. Each run is tiled by its own records. A new directory starts with an empty
 * value (i_size 60); when `i_block` is full the value is grown once to all the room the
 * inode body has left (i_size 60 + value length); when both are full the directory becomes
 * an ordinary one-block directory ("." and ".." first, the inline entries copied after
 * them, the last record stretched to the end of the block), which later grows and becomes
 * an htree like any other. Directories never go back to inline.
 *
 * @module
 */

import {
  dirBlockEnd,
  dirRecLen,
  INLINE_DOTDOT_SIZE,
  insertDirEntry,
  newDirectoryBlock,
  type NewDirEntry,
  parseDirBlock,
  removeDirEntry,
  retargetDirEntry,
  scanDirBlock,
  setDirBlockChecksum,
} from "../ondisk/dirent.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { emptyExtentRoot } from "../ondisk/extent.ts";
import { Incompat } from "../ondisk/features.ts";
import { readFileMap, rewriteFileMap } from "./file_map_write.ts";
import { INLINE_IBLOCK_BYTES } from "../ondisk/inline_data.ts";
import {
  changeTime,
  encodeInode,
  type InodeFields,
  InodeFlags,
  type InodeTime,
} from "../ondisk/inode.ts";
import { loadInode, writeInode } from "./inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import { inlineValueRoom, readSystemData, writeSystemData } from "./inline.ts";
import type { OpContext } from "./context.ts";

/** An inline directory as loaded: its inode, `i_block` and the system.data value. */
interface InlineDir {
  ino: number;
  raw: Uint8Array;
  f: InodeFields;
  /** Copy of `i_block` (60 bytes): parent, then the first run of entries. */
  iblock: Uint8Array;
  /** Copy of the system.data value: the second run of entries (may be empty). */
  extra: Uint8Array;
}

/** One entry of an inline directory (no "." or ".."). */
export interface InlineDirEntry {
  /** The entry's name. */
  name: Uint8Array;
  /** The inode it points to. */
  ino: number;
  /** Its file type code (0 without the filetype feature). */
  type: number;
}

const FIRST_RUN = INLINE_IBLOCK_BYTES - INLINE_DOTDOT_SIZE;

function stamp(ctx: OpContext): InodeTime {
  return changeTime(ctx.now);
}

/**
 * True when new directories on this filesystem start inline, as the kernel makes them:
 * inline_data on, and an inode body large enough to hold the system.data attribute.
 *
 * @example
 * ```ts ignore
 * if (canInlineDirectory(sb)) await initInlineDirectory(ctx, ino, parent);
 * ```
 */
export function canInlineDirectory(sb: Superblock): boolean {
  return (sb.incompat & Incompat.INLINE_DATA) !== 0 && sb.inodeSize > 128;
}

async function loadInline(ctx: OpContext, ino: number): Promise<InlineDir> {
  const { raw, f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if (!(f.flags & InodeFlags.INLINE_DATA)) {
    throw new Ext4Error("INVALID", `directory ${ino} is not inline`);
  }
  const extra = await readSystemData(ctx, ino, raw);
  if (extra === null) {
    throw new CorruptError(`inline directory ${ino}`, "no system.data attribute");
  }
  const where = `inline directory ${ino}`;
  const parent = new DataView(f.block.buffer, f.block.byteOffset).getUint32(0, true);
  if (parent < 1 || parent > ctx.sb.inodesCount) {
    throw new CorruptError(where, `parent inode ${parent} out of range`);
  }
  // Both runs must tile exactly; a bad one stops here, before any change.
  parseDirBlock(ctx.sb, f.block.subarray(INLINE_DOTDOT_SIZE), where, FIRST_RUN);
  if (extra.length) parseDirBlock(ctx.sb, extra, where, extra.length);
  return { ino, raw, f, iblock: f.block.slice(), extra: extra.slice() };
}

/** The two runs of entries, as writable views of the loaded copies, with their lengths. */
function runs(d: InlineDir): { bytes: Uint8Array; end: number; inBody: boolean }[] {
  const out = [{ bytes: d.iblock.subarray(INLINE_DOTDOT_SIZE), end: FIRST_RUN, inBody: false }];
  if (d.extra.length) out.push({ bytes: d.extra, end: d.extra.length, inBody: true });
  return out;
}

/** Writes `i_block` (and the system.data value when `extraChanged`), with fresh times. */
async function saveInline(
  ctx: OpContext,
  d: InlineDir,
  extraChanged: boolean,
  touch = true,
): Promise<void> {
  if (extraChanged) await writeSystemData(ctx, d.ino, d.extra);
  const { raw, f: cur } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, d.ino);
  const t = stamp(ctx);
  const f: InodeFields = {
    ...cur,
    block: d.iblock,
    size: INLINE_IBLOCK_BYTES + d.extra.length,
    ...(touch ? { mtime: t, ctime: t } : {}),
  };
  await writeInode(ctx.tx, ctx.sb, ctx.gdt, d.ino, encodeInode(ctx.sb, d.ino, f, raw));
}

/**
 * Makes the just-created directory inode `ino` an empty inline directory whose ".." is
 * `parent`: an empty system.data attribute, INLINE_DATA (not EXTENTS), i_size 60, no blocks,
 * two links.
 *
 * @example
 * ```ts ignore
 * await initInlineDirectory(ctx, ino, parentIno);
 * ```
 */
export async function initInlineDirectory(
  ctx: OpContext,
  ino: number,
  parent: number,
): Promise<void> {
  await writeSystemData(ctx, ino, new Uint8Array(0));
  const { raw, f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  const block = new Uint8Array(INLINE_IBLOCK_BYTES);
  const v = new DataView(block.buffer);
  v.setUint32(0, parent, true);
  v.setUint16(INLINE_DOTDOT_SIZE + 4, FIRST_RUN, true); // one unused record over the run
  const fields: InodeFields = {
    ...f,
    flags: (f.flags & ~InodeFlags.EXTENTS) | InodeFlags.INLINE_DATA,
    block,
    size: INLINE_IBLOCK_BYTES,
    blocks512: f.fileAcl ? f.blocks512 : 0,
    linksCount: 2,
  };
  await writeInode(ctx.tx, ctx.sb, ctx.gdt, ino, encodeInode(ctx.sb, ino, fields, raw));
}

/**
 * The live entries of inline directory `ino` (without "." and ".."), in on-disk order.
 *
 * @example
 * ```ts ignore
 * for (const e of await inlineDirEntries(ctx, ino)) console.log(e.name, e.ino);
 * ```
 */
export async function inlineDirEntries(
  ctx: OpContext,
  ino: number,
): Promise<InlineDirEntry[]> {
  const d = await loadInline(ctx, ino);
  const out: InlineDirEntry[] = [];
  for (const r of runs(d)) {
    for (const e of parseDirBlock(ctx.sb, r.bytes, `inline directory ${ino}`, r.end)) {
      if (e.ino !== 0) out.push({ name: e.name, ino: e.ino, type: e.type });
    }
  }
  return out;
}

/**
 * Adds `entry` to inline directory `ino` if it fits: in `i_block`, else in the system.data
 * value (grown once to all the room left in the inode body, as the kernel does). Returns
 * false, changing nothing, when the directory must first become a block directory
 * ({@link convertInlineDirectory}). EXISTS if the name is taken.
 *
 * @example
 * ```ts ignore
 * if (!(await inlineDirInsert(ctx, dirIno, entry))) {
 *   await convertInlineDirectory(ctx, dirIno);
 *   // ... insert into the block directory
 * }
 * ```
 */
export async function inlineDirInsert(
  ctx: OpContext,
  ino: number,
  entry: NewDirEntry,
): Promise<boolean> {
  const d = await loadInline(ctx, ino);
  const where = `inline directory ${ino}`;
  let room: { bytes: Uint8Array; end: number; inBody: boolean } | undefined;
  for (const r of runs(d)) {
    const scan = scanDirBlock(ctx.sb, r.bytes, entry.name, where, r.end);
    if (scan.ino) {
      throw new Ext4Error(
        "EXISTS",
        `${new TextDecoder().decode(entry.name)} exists in directory ${ino}`,
      );
    }
    if (scan.room && !room) room = r;
  }
  if (!room && d.extra.length === 0) {
    // Grow the value once to the room left in the inode body (kernel: only if more than
    // the smallest entry would fit).
    const max = inlineValueRoom(ctx.sb, d.raw);
    if (max > dirRecLen(1) && dirRecLen(entry.name.length) <= max) {
      d.extra = new Uint8Array(max);
      new DataView(d.extra.buffer).setUint16(4, max, true);
      room = { bytes: d.extra, end: max, inBody: true };
    }
  }
  if (!room) return false;
  if (!insertDirEntry(ctx.sb, room.bytes, entry, room.end)) {
    throw new CorruptError(where, "lost room");
  }
  await saveInline(ctx, d, room.inBody);
  return true;
}

/**
 * Removes entry `name` from inline directory `ino`; returns its inode, or 0 if absent
 * (nothing changes then).
 *
 * @example
 * ```ts ignore
 * const gone = await inlineDirRemove(ctx, dirIno, new TextEncoder().encode("a"));
 * ```
 */
export async function inlineDirRemove(
  ctx: OpContext,
  ino: number,
  name: Uint8Array,
): Promise<number> {
  const d = await loadInline(ctx, ino);
  for (const r of runs(d)) {
    const gone = removeDirEntry(ctx.sb, r.bytes, name, r.end);
    if (gone) {
      await saveInline(ctx, d, r.inBody);
      return gone;
    }
  }
  return 0;
}

/**
 * Points entry `name` of inline directory `ino` at `target` (and `type`); ".." changes the
 * parent stored in `i_block`. Returns the inode it pointed to, or 0 if there is no entry.
 *
 * @example
 * ```ts ignore
 * await inlineDirRetarget(ctx, movedDir, new TextEncoder().encode(".."), newParent, DirFileType.DIR);
 * ```
 */
export async function inlineDirRetarget(
  ctx: OpContext,
  ino: number,
  name: Uint8Array,
  target: number,
  type: number,
): Promise<number> {
  const d = await loadInline(ctx, ino);
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) {
    const v = new DataView(d.iblock.buffer);
    const old = v.getUint32(0, true);
    v.setUint32(0, target, true);
    await saveInline(ctx, d, false);
    return old;
  }
  for (const r of runs(d)) {
    const old = retargetDirEntry(ctx.sb, r.bytes, name, target, type, r.end);
    if (old) {
      await saveInline(ctx, d, r.inBody);
      return old;
    }
  }
  return 0;
}

/**
 * Turns inline directory `ino` into an ordinary directory of one block, as the kernel's
 * conversion does: "." and "..", then the inline entries in order (the last record
 * stretched to the block's end), system.data removed, INLINE_DATA cleared, EXTENTS set where
 * the filesystem has extents, i_size one block.
 *
 * @example
 * ```ts ignore
 * await convertInlineDirectory(ctx, dirIno);
 * ```
 */
export async function convertInlineDirectory(ctx: OpContext, ino: number): Promise<void> {
  const { sb, tx } = ctx;
  const d = await loadInline(ctx, ino);
  const parent = new DataView(d.iblock.buffer).getUint32(0, true);
  const img = newDirectoryBlock(sb, ino, parent);
  const v = new DataView(img.buffer);
  // ".." gets its minimal record; the inline runs follow, then the last record is stretched.
  v.setUint16(12 + 4, 12, true);
  let o = 24;
  const end = dirBlockEnd(sb);
  let last = 12;
  for (const r of runs(d)) {
    img.set(r.bytes.subarray(0, r.end), o);
    for (const e of parseDirBlock(sb, r.bytes, `inline directory ${ino}`, r.end)) {
      last = o + e.offset;
    }
    o += r.end;
  }
  if (o > end) throw new CorruptError(`inline directory ${ino}`, "entries exceed a block");
  img.fill(0, o, end);
  v.setUint16(last + 4, end - last, true);
  await writeSystemData(ctx, ino, null);
  const { raw, f: cur } = await loadInode(tx, sb, ctx.gdt, ino);
  const extents = (sb.incompat & Incompat.EXTENTS) !== 0;
  const plain: InodeFields = {
    ...cur,
    flags: (cur.flags & ~InodeFlags.INLINE_DATA) | (extents ? InodeFlags.EXTENTS : 0),
    block: extents ? emptyExtentRoot() : new Uint8Array(60),
  };
  const group = Math.floor((ino - 1) / sb.inodesPerGroup);
  const [blk] = await ctx.alloc.allocateBlocks(tx, ctx.gdt.get(group).inodeTable, 1);
  const out = tx.newBlock(blk.start);
  out.set(img);
  setDirBlockChecksum(sb, ino, cur.generation, out);
  const map = await readFileMap(tx, sb, ino, plain);
  const rebuilt = await rewriteFileMap(tx, ctx.alloc, sb, {
    ino,
    generation: cur.generation,
    old: map,
    extents: [{ logical: 0, physical: blk.start, length: 1 }],
  });
  const t = stamp(ctx);
  const fields: InodeFields = {
    ...plain,
    block: rebuilt.iBlock,
    size: sb.blockSize,
    blocks512: cur.blocks512 + (1 + rebuilt.mapBlocks) * (sb.blockSize / 512),
    mtime: t,
    ctime: t,
  };
  await writeInode(tx, sb, ctx.gdt, ino, encodeInode(sb, ino, fields, raw));
}
