/**
 * Inline-data files (the inline_data feature): contents up to 60 bytes kept in `i_block`,
 * with the "system.data" attribute in the inode body marking them (its value would hold
 * more bytes; ext4ts writes only the 60-byte form), and conversion to an ordinary extent or
 * block-mapped file before any other change, as the kernel does when an inline file grows.
 *
 * @module
 */

import { Ext4Error } from "./errors.ts";
import { emptyExtentRoot } from "./extent_write.ts";
import { Incompat } from "./features.ts";
import type { FileContext } from "./file_update.ts";
import { writeNewFileData } from "./file_write.ts";
import { InodeFlags } from "./inode.ts";
import { decodeInode, encodeInode, readInodeRaw, writeInode } from "./inode_write.ts";
import { readXattrs, setXattr } from "./xattr_write.ts";

/** Largest file kept inline by ext4ts. */
export const INLINE_MAX = 60;

/** True when new files of `size` bytes can be inline on this filesystem. */
export function canInline(ctx: FileContext, size: number): boolean {
  return (ctx.sb.incompat & Incompat.INLINE_DATA) !== 0 && ctx.sb.inodeSize > 128 &&
    size > 0 && size <= INLINE_MAX;
}

/**
 * Makes regular file `ino` (empty, just created) an inline-data file holding `data`
 * (at most 60 bytes).
 */
export async function writeInline(ctx: FileContext, ino: number, data: Uint8Array): Promise<void> {
  if (!canInline(ctx, data.length)) {
    throw new Ext4Error("INVALID", `${data.length} bytes cannot be stored inline here`);
  }
  const { sb, gdt, tx } = ctx;
  await setXattr(tx, ctx.alloc, sb, gdt, ino, "system.data", new Uint8Array(0), {
    inlineData: true,
    now: ctx.now,
  });
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const f = decodeInode(sb, raw);
  const block = new Uint8Array(60);
  block.set(data);
  const flags = (f.flags & ~InodeFlags.EXTENTS) | InodeFlags.INLINE_DATA;
  await writeInode(
    tx,
    sb,
    gdt,
    ino,
    encodeInode(sb, ino, { ...f, flags, block, size: data.length }, raw),
  );
}

/** The contents of an inline-data file (`i_block`, then the "system.data" value). */
export async function readInline(ctx: FileContext, ino: number): Promise<Uint8Array> {
  const { sb, gdt, tx } = ctx;
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const f = decodeInode(sb, raw);
  const extra = (await readXattrs(tx, sb, ino, raw, f)).find((x) => x.name === "system.data");
  const all = new Uint8Array(60 + (extra?.value.length ?? 0));
  all.set(f.block);
  if (extra) all.set(extra.value, 60);
  if (f.size > all.length) {
    throw new Ext4Error(
      "CORRUPT",
      `inline inode ${ino}: size ${f.size} exceeds its ${all.length} bytes`,
    );
  }
  return all.slice(0, f.size);
}

/**
 * Turns inline-data file `ino` into an ordinary file with the same contents: "system.data"
 * removed, INLINE_DATA cleared, the data written to blocks (extents where available).
 */
export async function uninline(ctx: FileContext, ino: number): Promise<void> {
  const { sb, gdt, tx } = ctx;
  const data = await readInline(ctx, ino);
  await setXattr(tx, ctx.alloc, sb, gdt, ino, "system.data", null, {
    inlineData: true,
    now: ctx.now,
  });
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const f = decodeInode(sb, raw);
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
