/**
 * Files held open through an `Ext4` object, and what that means for their inodes: an inode
 * whose last name goes while it is open is not freed but put on the orphan list (as the
 * kernel does), so a crash before the last close leaves it for recovery to free; the last
 * close frees it and takes it off the list (lib/ext4/orphan.ts records, removes and processes
 * orphans).
 *
 * @module
 */

import { lookupEntry } from "./namei.ts";
import { unlinkEntry } from "./unlink.ts";
import { orphanIfUnlinked } from "./orphan.ts";
import type { OpContext } from "./context.ts";

/**
 * Open counts per inode, and which open inodes may have lost their last name meanwhile: only
 * those need a transaction at their last close (most closes then cost nothing).
 *
 * @example
 * ```ts
 * import { OpenFiles } from "./open_files.ts";
 * const open = new OpenFiles();
 * open.open(12);
 * open.open(12);
 * console.log(open.close(12), open.close(12)); // false false: never asked about, still named
 * open.open(13);
 * console.log(open.isOpen(13), open.close(13)); // true true: an unlink asked; free it now
 * ```
 */
export class OpenFiles {
  #counts = new Map<number, number>();
  /** Open inodes something asked about while open (an unlink, a rename over, a tmpfile). */
  #asked = new Set<number>();

  /** Counts one more open of `ino`. */
  open(ino: number): void {
    this.#counts.set(ino, (this.#counts.get(ino) ?? 0) + 1);
  }

  /**
   * Counts one close of `ino`; true when it was the last and the inode may have lost its last
   * name while open (see {@link isOpen}): then the caller frees it if it has no name left.
   */
  close(ino: number): boolean {
    const n = this.#counts.get(ino) ?? 0;
    if (n <= 1) {
      this.#counts.delete(ino);
      return n === 1 && this.#asked.delete(ino);
    }
    this.#counts.set(ino, n - 1);
    return false;
  }

  /**
   * True while `ino` is open. Every code path that removes a last name asks this before it
   * decides to keep the inode, so an open inode asked about is remembered: its last close must
   * check its links (asking when it is not removed only costs that check).
   */
  isOpen(ino: number): boolean {
    if (!this.#counts.has(ino)) return false;
    this.#asked.add(ino);
    return true;
  }

  /** Marks open `ino` as having no name (O_TMPFILE): its last close frees it. */
  openedUnlinked(ino: number): void {
    if (this.#counts.has(ino)) this.#asked.add(ino);
  }

  /** The inodes open now. */
  get inodes(): number[] {
    return [...this.#counts.keys()];
  }
}

/**
 * Removes entry `name` (not a directory) of `parent`, like {@link unlinkEntry}; but when it
 * was the last link of an inode `keepOpen` says is open, the inode stays allocated and goes on
 * the orphan list. Returns the inode. `known` is the entry's inode (0: none) when the caller
 * looked it up in this transaction already.
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
  known?: number,
): Promise<number> {
  const ino = known ?? await lookupEntry(ctx, parent, name);
  const keep = ino !== 0 && (keepOpen?.(ino) ?? false);
  await unlinkEntry(ctx, parent, name, { keepInode: keep, ino });
  if (keep) await orphanIfUnlinked(ctx, ino);
  return ino;
}
