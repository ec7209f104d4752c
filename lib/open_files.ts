/**
 * Files held open through an `Ext4` object, and what that means for their inodes: an inode
 * whose last name goes while it is open is not freed but put on the orphan list (as the
 * kernel does), so a crash before the last close leaves it for recovery to free; the last
 * close frees it and takes it off the list. At a read-write open, the orphan list a previous
 * user left behind is processed as the kernel's mount does.
 *
 * @module
 */

import { truncateFile } from "./file_update.ts";
import { decodeInode, readInodeRaw } from "./inode_write.ts";
import { lookupEntry, releaseInode, unlinkEntry } from "./namespace_write.ts";
import { addOrphan, listOrphans, removeOrphan } from "./orphan_write.ts";
import type { OpContext } from "./ext4/context.ts";

/** Most orphans processed at open (each removal walks the list; a longer one is left to e2fsck). */
const MAX_ORPHANS = 4096;

/**
 * Open counts per inode.
 *
 * @example
 * ```ts
 * import { OpenFiles } from "./open_files.ts";
 * const open = new OpenFiles();
 * open.open(12);
 * open.open(12);
 * console.log(open.close(12), open.close(12)); // false true
 * ```
 */
export class OpenFiles {
  #counts = new Map<number, number>();

  /** Counts one more open of `ino`. */
  open(ino: number): void {
    this.#counts.set(ino, (this.#counts.get(ino) ?? 0) + 1);
  }

  /** Counts one close of `ino`; true when it was the last. */
  close(ino: number): boolean {
    const n = this.#counts.get(ino) ?? 0;
    if (n <= 1) {
      this.#counts.delete(ino);
      return n === 1;
    }
    this.#counts.set(ino, n - 1);
    return false;
  }

  /** True while `ino` is open. */
  isOpen(ino: number): boolean {
    return this.#counts.has(ino);
  }

  /** The inodes open now. */
  get inodes(): number[] {
    return [...this.#counts.keys()];
  }
}

async function linksOf(ctx: OpContext, ino: number) {
  return decodeInode(ctx.sb, await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino));
}

/**
 * Removes entry `name` (not a directory) of `parent`, like {@link unlinkEntry}; but when it
 * was the last link of an inode `keepOpen` says is open, the inode stays allocated and goes on
 * the orphan list. Returns the inode.
 *
 * @example
 * ```ts ignore
 * await unlinkKeepingOpen(ctx, parent, "log", (ino) => openFiles.isOpen(ino));
 * ```
 */
export async function unlinkKeepingOpen(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  keepOpen?: (ino: number) => boolean,
): Promise<number> {
  const ino = await lookupEntry(ctx, parent, name);
  const keep = ino !== 0 && (keepOpen?.(ino) ?? false);
  await unlinkEntry(ctx, parent, name, { keepInode: keep });
  if (keep) await orphanIfUnlinked(ctx, ino);
  return ino;
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

/**
 * Processes the orphan list as the kernel does at a read-write mount: inodes without links
 * are freed, linked ones (an interrupted truncate) are cut to their size; the list ends empty.
 * Returns the inodes freed and truncated (none when the list is longer than 4096 inodes: it is
 * left for e2fsck).
 *
 * @example
 * ```ts ignore
 * const { freed } = await w.transaction((ctx) => processOrphans(ctx));
 * ```
 */
export async function processOrphans(
  ctx: OpContext,
): Promise<{ freed: number[]; truncated: number[] }> {
  const freed: number[] = [];
  const truncated: number[] = [];
  const list = await listOrphans(ctx.tx, ctx.sb, ctx.gdt);
  if (list.length > MAX_ORPHANS) return { freed, truncated };
  await ctx.tx.discardOnError(async () => {
    for (const ino of list) {
      const f = await linksOf(ctx, ino);
      await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
      if (f.linksCount === 0) {
        await releaseInode(ctx, ino);
        freed.push(ino);
      } else if ((f.mode & 0o170000) === 0o100000) {
        await truncateFile(ctx, ino, f.size);
        truncated.push(ino);
      }
    }
  });
  return { freed, truncated };
}
