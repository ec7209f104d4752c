/**
 * Rename at inode level, as rename(2) and renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE): the
 * checks before any change, replacing a target, moving a directory (its ".." and both
 * parents' link counts). Callers pass directory inode numbers.
 *
 * @module
 */

import {
  direntTypeOfMode,
  DirFileType,
  retargetDirEntry,
  setDirBlockChecksum,
} from "../ondisk/dirent.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { Incompat } from "../ondisk/features.ts";
import { setDxChecksum } from "../ondisk/dx.ts";
import { inlineDirRetarget } from "./inline_dir.ts";
import { ROOT_INO } from "./path.ts";
import type { OpContext } from "./context.ts";
import {
  addEntry,
  blockOfEntry,
  changeLinks,
  checkFree,
  isDir,
  isDots,
  isInlineDir,
  loadDir,
  type LoadedDir,
  lookupEntry,
  nameBytes,
  peek,
  touch,
} from "./namei.ts";
import { isEmptyDir, releaseInode, removeEntry } from "./unlink.ts";

/** Block 0 of a directory, where "." (offset 0) and ".." (offset 12) live. */
function firstBlock(d: LoadedDir): number {
  const e = d.map.extents[0];
  if (!e || e.logical !== 0) throw new CorruptError(`directory ${d.dx.ino}`, "no block 0");
  return e.physical;
}

/** Points entry `name` of directory `dirIno` at `ino` in place; returns the old inode. */
async function retargetEntry(
  ctx: OpContext,
  dirIno: number,
  name: Uint8Array,
  ino: number,
  type: number,
): Promise<number> {
  const { sb, tx } = ctx;
  const ft = (sb.incompat & Incompat.FILETYPE) ? type : 0;
  if (await isInlineDir(ctx, dirIno)) {
    const old = await inlineDirRetarget(ctx, dirIno, name, ino, ft);
    if (!old) {
      throw new Ext4Error("NOT_FOUND", `no entry ${new TextDecoder().decode(name)} in ${dirIno}`);
    }
    return old;
  }
  const d = await loadDir(ctx, dirIno);
  if (isDots(name) === 2) {
    const block = await tx.getWritable(firstBlock(d));
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    const old = v.getUint32(12, true);
    v.setUint32(12, ino, true);
    if (d.indexed) setDxChecksum(sb, d.dx, block, true);
    else setDirBlockChecksum(sb, dirIno, d.f.generation, block);
    await touch(ctx, dirIno, d.raw, d.f);
    return old;
  }
  const b = await blockOfEntry(ctx, d, name);
  if (!b) {
    throw new Ext4Error("NOT_FOUND", `no entry ${new TextDecoder().decode(name)} in ${dirIno}`);
  }
  const block = await tx.getWritable(b);
  const old = retargetDirEntry(sb, block, name, ino, ft);
  setDirBlockChecksum(sb, dirIno, d.f.generation, block);
  await touch(ctx, dirIno, d.raw, d.f);
  return old;
}

/** True when directory `ino` is `ancestor` or lies below it (walking ".." up to the root). */
async function isWithin(ctx: OpContext, ino: number, ancestor: number): Promise<boolean> {
  const seen = new Set<number>();
  let cur = ino;
  for (;;) {
    if (cur === ancestor) return true;
    if (cur === ROOT_INO) return false;
    if (seen.has(cur)) throw new CorruptError(`directory ${ino}`, "'..' chain loops");
    seen.add(cur);
    cur = await lookupEntry(ctx, cur, "..");
    if (!cur) throw new CorruptError(`directory ${ino}`, "no '..' entry");
  }
}

/** Options for {@link renameEntry}. */
export interface RenameOptions {
  /** RENAME_NOREPLACE: fail with EXISTS if the target exists. */
  noReplace?: boolean;
  /** RENAME_EXCHANGE: swap the two entries (both must exist). */
  exchange?: boolean;
}

/**
 * Renames `oldName` in `oldParent` to `newName` in `newParent`, as rename(2)/renameat2: an
 * existing target is replaced (a directory only by a directory, and only when empty), moving
 * a directory updates its ".." and both parents' link counts, moving a directory into its own
 * subtree is INVALID. Refusals come before any change. `known` holds the source's and the
 * target's inodes (0: no target) when the caller looked both names up in this transaction.
 */
export async function renameEntry(
  ctx: OpContext,
  oldParent: number,
  oldName: string | Uint8Array,
  newParent: number,
  newName: string | Uint8Array,
  options: RenameOptions = {},
  known?: { src: number; dst: number },
): Promise<void> {
  const on = nameBytes(oldName);
  const nn = nameBytes(newName);
  const dotty = (n: Uint8Array) => n.length <= 2 && n.every((c) => c === 0x2e);
  if (dotty(on) || dotty(nn)) throw new Ext4Error("INVALID", "cannot rename '.' or '..'");
  if (nn.length === 0 || nn.length > 255) throw new Ext4Error("NAME_TOO_LONG", "bad name length");
  await isInlineDir(ctx, oldParent);
  await isInlineDir(ctx, newParent);
  const src = known?.src ?? await lookupEntry(ctx, oldParent, on);
  if (!src) throw new Ext4Error("NOT_FOUND", "no such source entry");
  const dst = known?.dst ?? await lookupEntry(ctx, newParent, nn);
  const sf = await peek(ctx, src);
  const srcDir = isDir(sf);
  const sameEntry = oldParent === newParent && on.length === nn.length &&
    on.every((b, i) => b === nn[i]);
  if (options.exchange) {
    if (!dst) throw new Ext4Error("NOT_FOUND", "no such target entry");
    const df = await peek(ctx, dst);
    const dstDir = isDir(df);
    if (sameEntry || src === dst) return;
    if (srcDir && await isWithin(ctx, newParent, src)) {
      throw new Ext4Error("INVALID", "into itself");
    }
    if (dstDir && await isWithin(ctx, oldParent, dst)) {
      throw new Ext4Error("INVALID", "into itself");
    }
    await ctx.tx.discardOnError(async () => {
      await retargetEntry(ctx, oldParent, on, dst, direntTypeOfMode(df.mode));
      await retargetEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode));
      if (oldParent !== newParent) {
        if (srcDir) await retargetEntry(ctx, src, nameBytes(".."), newParent, DirFileType.DIR);
        if (dstDir) await retargetEntry(ctx, dst, nameBytes(".."), oldParent, DirFileType.DIR);
        const delta = (dstDir ? 1 : 0) - (srcDir ? 1 : 0);
        if (delta) {
          await changeLinks(ctx, oldParent, delta);
          await changeLinks(ctx, newParent, -delta);
        }
      }
      await changeLinks(ctx, src, 0);
      await changeLinks(ctx, dst, 0);
    });
    return;
  }
  if (sameEntry) return;
  let dstDir = false;
  if (dst) {
    if (options.noReplace) throw new Ext4Error("EXISTS", "target exists");
    if (dst === src) return; // two links to one inode: nothing to do
    const df = await peek(ctx, dst);
    dstDir = isDir(df);
    if (dstDir && !srcDir) throw new Ext4Error("IS_DIRECTORY", "target is a directory");
    if (!dstDir && srcDir) throw new Ext4Error("NOT_DIRECTORY", "target is not a directory");
    if (dstDir) {
      if (!(await isEmptyDir(ctx, dst))) {
        throw new Ext4Error("NOT_EMPTY", "target not empty");
      }
    }
  }
  if (srcDir && await isWithin(ctx, newParent, src)) {
    throw new Ext4Error("INVALID", "cannot move a directory into itself");
  }
  // The probe is reused by the insert: nothing between them changes the directory's blocks.
  const checked = dst ? undefined : await checkFree(ctx, newParent, nn);
  await ctx.tx.discardOnError(async () => {
    if (dst) {
      await retargetEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode));
      if (dstDir) {
        await changeLinks(ctx, newParent, -1); // dst's ".." is gone
        await releaseInode(ctx, dst);
      } else {
        const after = await changeLinks(ctx, dst, -1);
        if (after.linksCount === 0) await releaseInode(ctx, dst);
      }
    } else {
      await addEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode), checked);
    }
    await removeEntry(ctx, oldParent, on);
    if (srcDir && oldParent !== newParent) {
      await retargetEntry(ctx, src, nameBytes(".."), newParent, DirFileType.DIR);
      await changeLinks(ctx, oldParent, -1);
      await changeLinks(ctx, newParent, 1);
    }
    await changeLinks(ctx, src, 0); // ctime
  });
}
