/**
 * Removing names at inode level, as the kernel's unlink and rmdir: an entry out of a linear,
 * htree or inline directory, unlink of a non-directory (the inode released with its last
 * link), rmdir of an empty directory, and releasing an inode's blocks and attributes.
 * Callers pass directory inode numbers (path resolution: lib/ext4/path_ops.ts).
 *
 * @module
 */

import { parseDirBlock, removeDirEntry, setDirBlockChecksum } from "../ondisk/dirent.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { emptyExtentRoot } from "../ondisk/extent.ts";
import { readFileMap } from "./file_map_write.ts";
import { inlineDirEntries, inlineDirRemove } from "./inline_dir.ts";
import { InodeFlags } from "../ondisk/inode.ts";
import { releaseXattrBlock } from "./xattr_release.ts";
import type { OpContext } from "./context.ts";
import {
  blockOfEntry,
  changeLinks,
  isDir,
  isDots,
  isInlineDir,
  leafBlocks,
  load,
  loadDir,
  lookupEntry,
  nameBytes,
  now,
  peek,
  store,
  touch,
} from "./namei.ts";

/** Removes entry `name` from directory `dirIno`; returns its inode (NOT_FOUND if absent). */
export async function removeEntry(
  ctx: OpContext,
  dirIno: number,
  name: string | Uint8Array,
): Promise<number> {
  const n = nameBytes(name);
  if (isDots(n)) throw new Ext4Error("INVALID", "cannot remove '.' or '..'");
  if (await isInlineDir(ctx, dirIno)) {
    const gone = await inlineDirRemove(ctx, dirIno, n);
    if (!gone) {
      throw new Ext4Error(
        "NOT_FOUND",
        `${new TextDecoder().decode(n)} not in directory ${dirIno}`,
      );
    }
    return gone;
  }
  const d = await loadDir(ctx, dirIno);
  const b = await blockOfEntry(ctx, d, n);
  if (!b) {
    throw new Ext4Error("NOT_FOUND", `${new TextDecoder().decode(n)} not in directory ${dirIno}`);
  }
  const block = await ctx.tx.getWritable(b);
  const ino = removeDirEntry(ctx.sb, block, n);
  setDirBlockChecksum(ctx.sb, dirIno, d.f.generation, block);
  await touch(ctx, dirIno, d.raw, d.f);
  return ino;
}

/** True when directory `ino` holds nothing but "." and "..". */
export async function isEmptyDir(ctx: OpContext, ino: number): Promise<boolean> {
  if (await isInlineDir(ctx, ino)) return (await inlineDirEntries(ctx, ino)).length === 0;
  const d = await loadDir(ctx, ino);
  for (const b of await leafBlocks(ctx, d)) {
    for (const x of parseDirBlock(ctx.sb, await ctx.tx.read(b), `directory ${d.dx.ino}`)) {
      if (x.ino !== 0 && !isDots(x.name)) return false;
    }
  }
  return true;
}

/**
 * Frees everything inode `ino` holds (data or directory blocks and mapping, its xattr block
 * unless shared) and the inode itself; marks it deleted (dtime, no links), its size and block
 * map emptied as the kernel's eviction leaves them. With `e2fsck` (e2fsck's orphan release,
 * lib/ext4/orphan.ts): the record keeps every other field, only the deletion time is set and
 * the xattr block let go, and the xattr block is released as e2fsck does.
 */
export async function releaseInode(
  ctx: OpContext,
  ino: number,
  options: { e2fsck?: boolean } = {},
): Promise<void> {
  const { sb, tx, alloc } = ctx;
  const { raw, f } = await load(ctx, ino);
  const fastLink = (f.mode & 0o170000) === 0o120000 &&
    f.blocks512 === (f.fileAcl ? sb.blockSize / 512 : 0);
  const special = [0o020000, 0o060000, 0o010000, 0o140000].includes(f.mode & 0o170000);
  if (!fastLink && !special && !(f.flags & InodeFlags.INLINE_DATA)) {
    const map = await readFileMap(tx, sb, ino, f);
    for (const e of map.extents) {
      await alloc.freeBlocks(tx, e.physical, e.length, { metadata: isDir(f) });
    }
    for (const b of map.mapBlocks) await alloc.freeBlocks(tx, b, 1, { metadata: true });
  }
  if (f.fileAcl) await releaseXattrBlock(tx, alloc, sb, f.fileAcl, options);
  await alloc.freeInode(tx, ino, { dir: isDir(f) });
  const t = now(ctx);
  if (options.e2fsck) {
    await store(ctx, ino, raw, { ...f, dtime: Math.max(1, t.sec % 2 ** 32), fileAcl: 0 });
    return;
  }
  await store(ctx, ino, raw, {
    ...f,
    linksCount: 0,
    dtime: Math.max(1, t.sec % 2 ** 32),
    ctime: t,
    size: 0,
    blocks512: 0,
    fileAcl: 0,
    block: (f.flags & InodeFlags.EXTENTS) ? emptyExtentRoot() : new Uint8Array(60),
  });
}

/**
 * Removes entry `name` (not a directory) from `parent`; the inode is released when its last
 * link goes (callers keeping it open put it on the orphan list instead). `options.ino` is the
 * entry's inode (0: none) when the caller looked it up in this transaction already.
 */
export async function unlinkEntry(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  options: { keepInode?: boolean; ino?: number } = {},
): Promise<number> {
  const ino = options.ino ?? await lookupEntry(ctx, parent, name);
  if (!ino) throw new Ext4Error("NOT_FOUND", "no such entry");
  if (isDir(await peek(ctx, ino))) throw new Ext4Error("IS_DIRECTORY", "unlink of a directory");
  return await ctx.tx.discardOnError(async () => {
    await removeEntry(ctx, parent, name);
    const after = await changeLinks(ctx, ino, -1);
    if (after.linksCount === 0 && !options.keepInode) await releaseInode(ctx, ino);
    return ino;
  });
}

/** Removes the empty directory `name` from `parent`. */
export async function removeDirectory(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
): Promise<void> {
  const ino = await lookupEntry(ctx, parent, name);
  if (!ino) throw new Ext4Error("NOT_FOUND", "no such entry");
  if (!(await isEmptyDir(ctx, ino))) throw new Ext4Error("NOT_EMPTY", "directory not empty");
  const dotdot = await lookupEntry(ctx, ino, "..");
  if (dotdot !== parent) {
    throw new CorruptError(`directory ${ino}`, `'..' points to ${dotdot}, not ${parent}`);
  }
  await ctx.tx.discardOnError(async () => {
    await removeEntry(ctx, parent, name);
    await changeLinks(ctx, parent, -1);
    await releaseInode(ctx, ino);
  });
}
