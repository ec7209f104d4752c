/**
 * Removing a directory tree (`rm -r`) in bounded transactions: children first, each step
 * removing whole entries until its transaction changed about a quarter of the block cache's
 * capacity, so a huge tree is never one transaction held in memory, and an interruption
 * leaves a consistent filesystem with the tree partly removed.
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";
import { getInode } from "./inode.ts";
import { listEntries, lookupEntry } from "./namei.ts";
import { removeDirectory } from "./unlink.ts";
import { releaseInSteps, unlinkBounded } from "./long_ops.ts";
import { stepBlockBudget } from "./free_steps.ts";
import type { Ext4Writer } from "./writer.ts";
import type { OpContext } from "./context.ts";

/** Says whether an inode is held open (path_ops.ts `UnlinkOptions`): kept, on the orphan list. */
type KeepOpen = { keepOpen?: (ino: number) => boolean };

/** Unlinks a non-directory entry in the step's transaction. */
type UnlinkFile = (ctx: OpContext, parent: number, name: string | Uint8Array) => Promise<void>;

/**
 * Removes what it can of the tree at `name` in `parent` (inode `ino`), children first, in the
 * transaction of `ctx` until `full()` says the transaction is big enough (after at least one
 * removal, so every step progresses). True when the whole tree, `name` included, is gone.
 * Every entry is removed whole in one step: between steps the filesystem is consistent, the
 * tree partly removed (as after an interrupted `rm -r`).
 */
async function removeTreeStep(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  ino: number,
  unlinkFile: UnlinkFile,
  full: () => boolean,
  depth = 0,
): Promise<boolean> {
  const mode = (await getInode(ctx.tx, ctx.sb, ctx.gdt, ino)).mode;
  if ((mode & 0o170000) !== 0o040000) {
    await unlinkFile(ctx, parent, name);
    return true;
  }
  // A corrupt tree could loop through a directory's own ancestor: bound the depth.
  if (depth > 4096) throw new Ext4Error("CORRUPT", `directory tree deeper than 4096 at ${ino}`);
  // Children first.
  for (const child of await listEntries(ctx, ino)) {
    if (full()) return false;
    if (!await removeTreeStep(ctx, ino, child.name, child.ino, unlinkFile, full, depth + 1)) {
      return false;
    }
  }
  if (full()) return false;
  await removeDirectory(ctx, parent, name);
  return true;
}

/**
 * Removes the tree at `name` in `parent` in bounded transactions: each commits once it changed
 * about a quarter of the cache's capacity in blocks (at least 16), so a huge tree is never held
 * in memory as one transaction. Inside a {@link Ext4Writer.group} the steps join its one
 * transaction, as every step of a group does.
 *
 * @example
 * ```ts ignore
 * await removeTree(writer, parentIno, "build", buildIno, {});
 * ```
 */
export async function removeTree(
  w: Ext4Writer,
  parent: number,
  name: string | Uint8Array,
  ino: number,
  options: KeepOpen,
): Promise<void> {
  // Bounded by the cache and by what the journal takes per transaction (half: one more
  // removal may add a few blocks past the check).
  const limit = stepBlockBudget(w);
  // The last link of a huge file: kept on the orphan list by its step, then freed in steps.
  const big: number[] = [];
  const unlinkFile: UnlinkFile = async (ctx, dir, entry) => {
    const ino = await unlinkBounded(w, ctx, dir, entry, options.keepOpen);
    if (ino) big.push(ino);
  };
  for (let done = false; !done;) {
    done = await w.transaction(async (ctx) => {
      const tx = ctx.tx;
      const start = tx.metadataBlocks + tx.dataBlocks;
      let removals = 0;
      const full = () =>
        big.length > 0 ||
        (removals++ > 0 && tx.metadataBlocks + tx.dataBlocks - start >= limit);
      // The tree may have changed between steps (another caller's transaction): gone is done.
      const entry = await lookupEntry(ctx, parent, name);
      if (entry !== ino) return true;
      return await removeTreeStep(ctx, parent, name, ino, unlinkFile, full);
    });
    for (const ino of big.splice(0)) await w.steps((step) => releaseInSteps(step, w, ino));
  }
}
