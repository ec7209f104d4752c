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
