/**
 * Inline-data files (the inline_data feature) on the write path, as the kernel keeps them:
 * the first 60 bytes in `i_block`, the rest in the value of the in-inode "system.data"
 * attribute (its value holds exactly `i_size - 60` bytes, empty for files of 60 bytes or
 * less), INLINE_DATA set and EXTENTS clear. Writes and truncates change such a file in place
 * while it fits in the inode body; a file that would outgrow it first becomes an ordinary
 * extent or block-mapped file ({@link uninline}), as the kernel converts it.
 *
 * Also the helpers the inline directories of lib/ext4/inline_dir.ts share: reading and
 * writing the system.data value, and how large that value may grow.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import { emptyExtentRoot } from "../ondisk/extent.ts";
import { Incompat } from "../ondisk/features.ts";
import { writeNewFileData } from "./file_write.ts";
import { INLINE_IBLOCK_BYTES, parseInlineDataXattr } from "../ondisk/inline_data.ts";
import {
  changeTime,
  encodeInode,
  EXTRA_ISIZE_DEFAULT,
  type InodeFields,
  InodeFlags,
  type InodeTime,
  Mode,
} from "../ondisk/inode.ts";
import { loadInode, readInodeRaw, writeInode } from "./inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import { parseInodeXattrs, XattrIndex } from "../ondisk/xattr.ts";
import { setXattr } from "./xattr.ts";
import type { OpContext } from "./context.ts";

/** Bytes of inline data that `i_block` holds. */
export const INLINE_MAX = INLINE_IBLOCK_BYTES;

const XATTR_ENTRY_HEADER = 16;
const DATA_NAME = new TextEncoder().encode("data");

function round4(n: number): number {
  return (n + 3) & ~3;
}

function isSystemData(index: number, suffix: Uint8Array): boolean {
  return index === XattrIndex.SYSTEM && suffix.length === 4 &&
    suffix.every((b, i) => b === DATA_NAME[i]);
}

/**
 * The largest system.data value that fits in the inode body of `raw` besides its other
 * in-inode attributes (the kernel's get_max_inline_xattr_value_size): the body after
 * `i_extra_isize`, less the header magic, every other entry and value, the system.data
 * entry itself and the 4-byte end marker; rounded down to 4. 0 without room.
 *
 * @example
 * ```ts ignore
 * const maxInline = 60 + inlineValueRoom(sb, raw); // 128 with 256-byte inodes
 * ```
 */
export function inlineValueRoom(sb: Superblock, raw: Uint8Array): number {
  if (sb.inodeSize <= 128) return 0;
  const extra = raw[0x80] | (raw[0x81] << 8);
  const area = sb.inodeSize - 128 - extra - 4;
  let used = XATTR_ENTRY_HEADER + round4(DATA_NAME.length) + 4;
  for (const e of parseInodeXattrs(sb, 0, raw.subarray(0, sb.inodeSize))) {
    if (isSystemData(e.index, e.suffix)) continue;
    used += XATTR_ENTRY_HEADER + round4(e.suffix.length) + round4(e.value.length);
  }
  return Math.max(0, (area - used) & ~3);
}

/** The largest inline file a new inode of this filesystem can hold (0 without inline_data). */
function newInodeInlineMax(sb: Superblock): number {
  if (!(sb.incompat & Incompat.INLINE_DATA) || sb.inodeSize <= 128) return 0;
  const area = sb.inodeSize - 128 - EXTRA_ISIZE_DEFAULT - 4;
  const room = (area - XATTR_ENTRY_HEADER - round4(DATA_NAME.length) - 4) & ~3;
  return INLINE_IBLOCK_BYTES + Math.max(0, room);
}

/**
 * True when a new file of `size` bytes can be inline on this filesystem: inline_data on and
 * the bytes fit `i_block` plus the room a fresh inode body leaves for system.data.
 *
 * @example
 * ```ts ignore
 * if (canInline(ctx, data.length)) await writeInline(ctx, ino, data);
 * ```
 */
export function canInline(ctx: { sb: Superblock }, size: number): boolean {
  return size > 0 && size <= newInodeInlineMax(ctx.sb);
}

/**
 * The system.data value of inode `ino` from its inode body, or null when it has none.
 *
 * @example
 * ```ts ignore
 * const extra = await readSystemData(ctx, ino);
 * ```
 */
export async function readSystemData(
  ctx: OpContext,
  ino: number,
  raw?: Uint8Array,
): Promise<Uint8Array | null> {
  const bytes = raw ?? await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
  return parseInlineDataXattr(ctx.sb, ino, bytes.subarray(0, ctx.sb.inodeSize));
}

/**
 * Sets (or with null removes) the system.data value of inode `ino`, which must stay in the
 * inode body: a value that would not is NO_SPACE and discards the transaction.
 *
 * @example
 * ```ts ignore
 * await writeSystemData(ctx, ino, new Uint8Array(0)); // mark a new inline inode
 * ```
 */
export async function writeSystemData(
  ctx: OpContext,
  ino: number,
  value: Uint8Array | null,
): Promise<void> {
  const { sb, gdt, tx } = ctx;
  if (value === null && (await readSystemData(ctx, ino)) === null) return;
  await setXattr(tx, ctx.alloc, sb, gdt, ino, "system.data", value, {
    inlineData: true,
    now: ctx.now,
  });
  if (value === null) return;
  const now = await readSystemData(ctx, ino);
  if (now === null || now.length !== value.length) {
    tx.abort();
    throw new Ext4Error("NO_SPACE", `system.data of inode ${ino} does not fit its inode body`);
  }
}

function stamp(ctx: OpContext): InodeTime {
  return changeTime(ctx.now);
}

/**
 * Stores `data` as the whole inline contents of inode `ino`: i_block (zero padded), the
 * system.data value (the bytes past 60), i_size; INLINE_DATA set, EXTENTS clear. The caller
 * checked that it fits.
 */
async function storeInline(
  ctx: OpContext,
  ino: number,
  data: Uint8Array,
  touch: boolean,
): Promise<void> {
  await writeSystemData(ctx, ino, data.slice(INLINE_IBLOCK_BYTES));
  const { raw, f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  const block = new Uint8Array(INLINE_IBLOCK_BYTES);
  block.set(data.subarray(0, INLINE_IBLOCK_BYTES));
  const t = stamp(ctx);
  const fields: InodeFields = {
    ...f,
    flags: (f.flags & ~InodeFlags.EXTENTS) | InodeFlags.INLINE_DATA,
    block,
    size: data.length,
    ...(touch ? { mtime: t, ctime: t } : {}),
  };
  await writeInode(ctx.tx, ctx.sb, ctx.gdt, ino, encodeInode(ctx.sb, ino, fields, raw));
}

/**
 * Makes regular file `ino` (empty, just created) an inline-data file holding `data`
 * (see {@link canInline}).
 *
 * @example
 * ```ts ignore
 * await writeInline(ctx, ino, new TextEncoder().encode("hello"));
 * ```
 */
export async function writeInline(ctx: OpContext, ino: number, data: Uint8Array): Promise<void> {
  if (!canInline(ctx, data.length)) {
    throw new Ext4Error("INVALID", `${data.length} bytes cannot be stored inline here`);
  }
  await storeInline(ctx, ino, data, false);
}

/**
 * The contents of an inline-data file (`i_block`, then the "system.data" value).
 *
 * @example
 * ```ts ignore
 * const bytes = await readInline(ctx, ino);
 * ```
 */
export async function readInline(ctx: OpContext, ino: number): Promise<Uint8Array> {
  const { sb, gdt, tx } = ctx;
  const { raw, f } = await loadInode(tx, sb, gdt, ino);
  const extra = await readSystemData(ctx, ino, raw);
  const all = new Uint8Array(INLINE_IBLOCK_BYTES + (extra?.length ?? 0));
  all.set(f.block);
  if (extra) all.set(extra, INLINE_IBLOCK_BYTES);
  if (f.size > all.length) {
    throw new CorruptError(
      `inline data of inode ${ino}`,
      `i_size ${f.size} exceeds its ${all.length} bytes`,
    );
  }
  return all.slice(0, f.size);
}

/** The inline file `ino` as loaded, or null when it is not an inline regular file. */
async function inlineFile(
  ctx: OpContext,
  ino: number,
): Promise<{ raw: Uint8Array; f: InodeFields } | null> {
  const { raw, f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if (!(f.flags & InodeFlags.INLINE_DATA) || (f.mode & Mode.IFMT) !== Mode.IFREG) return null;
  // Freed in the bitmap, not just unlinked. Not i_dtime: on the orphan list it holds the next
  // orphan's number, and an orphan (unlinked while open) is still written.
  if (f.linksCount === 0 && !(await ctx.alloc.isInodeInUse(ctx.tx, ino))) {
    throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  }
  return { raw, f };
}

/** Largest size inline file `raw` can reach in place. */
function inlineCapacity(ctx: OpContext, raw: Uint8Array): number {
  return INLINE_IBLOCK_BYTES + inlineValueRoom(ctx.sb, raw);
}

/**
 * Writes `data` at `offset` of inline file `ino` in place when the result still fits in
 * the inode; returns false (nothing changed) when `ino` is not an inline regular file or
 * the result would not fit, and the caller converts it ({@link uninline}) instead.
 *
 * @example
 * ```ts ignore
 * if (!(await writeInlineInPlace(ctx, ino, 10, bytes))) { ... uninline, then write ... }
 * ```
 */
export async function writeInlineInPlace(
  ctx: OpContext,
  ino: number,
  offset: number,
  data: Uint8Array,
): Promise<boolean> {
  const file = await inlineFile(ctx, ino);
  if (!file) return false;
  const end = Math.max(file.f.size, offset + data.length);
  if (end > inlineCapacity(ctx, file.raw)) return false;
  const all = new Uint8Array(end);
  all.set(await readInline(ctx, ino));
  all.set(data, offset);
  await storeInline(ctx, ino, all, true);
  return true;
}

/**
 * Sets the size of inline file `ino` in place (cut, or zero-extended while it fits);
 * returns false as {@link writeInlineInPlace} does.
 *
 * @example
 * ```ts ignore
 * if (!(await truncateInlineInPlace(ctx, ino, 0))) { ... }
 * ```
 */
export async function truncateInlineInPlace(
  ctx: OpContext,
  ino: number,
  size: number,
): Promise<boolean> {
  const file = await inlineFile(ctx, ino);
  if (!file) return false;
  if (size > inlineCapacity(ctx, file.raw)) return false;
  const all = new Uint8Array(size);
  const old = await readInline(ctx, ino);
  all.set(old.subarray(0, Math.min(size, old.length)));
  await storeInline(ctx, ino, all, true);
  return true;
}

/**
 * Turns inline-data file `ino` into an ordinary file with the same contents: "system.data"
 * removed, INLINE_DATA cleared, the data written to blocks (extents where available).
 *
 * @example
 * ```ts ignore
 * await uninline(ctx, ino); // before a write that would not fit the inode
 * ```
 */
export async function uninline(ctx: OpContext, ino: number): Promise<void> {
  const { sb, gdt, tx } = ctx;
  const data = await readInline(ctx, ino);
  await writeSystemData(ctx, ino, null);
  const { raw, f } = await loadInode(tx, sb, gdt, ino);
  const extents = (sb.incompat & Incompat.EXTENTS) !== 0;
  let block = extents ? emptyExtentRoot() : new Uint8Array(60);
  let flags = (f.flags & ~InodeFlags.INLINE_DATA) | (extents ? InodeFlags.EXTENTS : 0);
  let blocks512 = f.blocks512;
  if (data.length) {
    const file = await writeNewFileData(tx, ctx.alloc, sb, { ino, generation: f.generation, data });
    block = file.iBlock;
    flags = (flags & ~InodeFlags.EXTENTS) | file.flags;
    blocks512 += file.blocks512;
  }
  await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, flags, block, blocks512 }, raw));
}
