/**
 * The one path resolver (the kernel's fs/namei.c path walk, for ext4): the reader
 * (`Ext4.resolve`, through its caches) and the writer (`resolvePath`, inside a transaction)
 * both walk paths here, each giving its own inode source ({@link PathSource}).
 *
 * What it does, as the kernel: empty components and "." are skipped; ".." is the directory's
 * own ".." entry, and stays at the root on the root; symlinks are followed in the middle of
 * a path, and at its end when asked; at most 40 symlinks per walk (ELOOP); an empty symlink
 * target is ENOENT; a non-directory in the middle is ENOTDIR; a trailing "/" (or "/.")
 * requires a directory and follows a final symlink — except for operations on the entry
 * itself (unlink, rmdir, rename, link, mkdir…), where a final symlink is not followed and the
 * operation says what a trailing "/" on a non-directory means (as the kernel's do_unlinkat,
 * do_renameat2 and filename_create each do).
 *
 * @module
 */

import { Errno, Ext4Error } from "../errors.ts";

/** The root directory's inode. */
export const ROOT_INO = 2;
/** Most symlinks one walk follows (the kernel's MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/**
 * Where the walk reads inodes and names from: the reader's caches or a transaction.
 * `lookup` is the single-name lookup (the seam with the name lookup module).
 */
export interface PathSource {
  /** The full `st_mode` of inode `ino` (type and permission bits). */
  modeOf(ino: number): Promise<number>;
  /** The inode `name` leads to in directory `dir`, or 0 when absent. */
  lookup(dir: number, name: string): Promise<number>;
  /** The target of symlink `ino`. */
  readLink(ino: number): Promise<string>;
}

/** Where a path leads: the directory its last entry is in, the entry's name, and its inode. */
export interface Resolved {
  /** The directory `name` was looked up in. */
  parent: number;
  /** The last path component ("." for the root or a symlink to a directory such as "/"). */
  name: string;
  /** The inode `name` leads to, or 0 when the last component does not exist. */
  ino: number;
  /**
   * The path ended in "/" (or "/."): a directory is wanted. Set with `entry`, where the walk
   * leaves the verdict to the operation (unlink and rename: ENOTDIR for a non-directory;
   * creating: EEXIST when it exists, ENOENT when absent unless it makes a directory).
   */
  dirWanted: boolean;
}

/** How the last component is treated. */
export interface ResolveOptions {
  /** Follow a final symlink (stat, open); a trailing "/" follows it anyway. */
  followLast?: boolean;
  /**
   * The caller works on the directory entry itself (unlink, rmdir, rename, link, mkdir,
   * symlink, mknod): a final symlink is not followed even with a trailing "/", and what a
   * trailing "/" on a non-directory means is the operation's to say (`dirWanted`).
   */
  entry?: boolean;
}

/** A path's names (no "", no "."), and whether it ends in "/" or "/." (a directory wanted). */
function components(path: string): { names: string[]; dirAtEnd: boolean } {
  const all = path.split("/");
  const names = all.filter((c) => c !== "" && c !== ".");
  const tail = all[all.length - 1];
  return { names, dirAtEnd: names.length > 0 && (tail === "" || tail === ".") };
}

/**
 * Resolves `path` (relative paths from the root too) through `src`. A missing last component
 * gives `ino: 0` (its parent exists); a missing or non-directory component before it throws
 * NOT_FOUND / NOT_DIRECTORY, too many symlinks INVALID with errno ELOOP.
 *
 * @example
 * ```ts ignore
 * const r = await walkPath(source, "/usr/bin/env", { followLast: true });
 * if (!r.ino) console.log(`${r.name} is absent from directory ${r.parent}`);
 * ```
 */
export async function walkPath(
  src: PathSource,
  path: string,
  options: ResolveOptions = {},
): Promise<Resolved> {
  let { names, dirAtEnd } = components(path);
  let dir = ROOT_INO;
  let hops = 0;
  if (names.length === 0) {
    await src.modeOf(ROOT_INO); // a root that cannot be used fails here, as any walk would
    return { parent: ROOT_INO, name: ".", ino: ROOT_INO, dirWanted: false };
  }
  for (let i = 0; i < names.length;) {
    const name = names[i];
    const last = i === names.length - 1;
    if ((await src.modeOf(dir) & S_IFMT) !== S_IFDIR) {
      throw new Ext4Error("NOT_DIRECTORY", `${path}: not a directory`);
    }
    const ino = name === ".." && dir === ROOT_INO ? ROOT_INO : await src.lookup(dir, name);
    if (!ino) {
      if (last) return { parent: dir, name, ino: 0, dirWanted: dirAtEnd };
      throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    }
    const type = await src.modeOf(ino) & S_IFMT;
    const follow = !last || (dirAtEnd ? !options.entry : options.followLast === true);
    if (type === S_IFLNK && follow) {
      if (++hops > MAX_SYMLINK_HOPS) {
        throw new Ext4Error("INVALID", `${path}: too many levels of symbolic links`, {
          errno: Errno.ELOOP,
        });
      }
      const target = await src.readLink(ino);
      if (target === "") throw new Ext4Error("NOT_FOUND", `${path}: empty symlink`);
      const t = components(target);
      const rest = names.slice(i + 1);
      if (rest.length === 0) dirAtEnd ||= t.dirAtEnd;
      names = [...t.names, ...rest];
      if (target.startsWith("/")) dir = ROOT_INO;
      i = 0;
      if (names.length === 0) return { parent: dir, name: ".", ino: dir, dirWanted: dirAtEnd };
      continue;
    }
    if (last) {
      if (dirAtEnd && type !== S_IFDIR && !options.entry) {
        throw new Ext4Error("NOT_DIRECTORY", `${path}: not a directory`);
      }
      return { parent: dir, name, ino, dirWanted: dirAtEnd };
    }
    dir = ino;
    i++;
  }
  throw new Error("unreachable: the walk returns at its last component");
}
