/**
 * Path rules the edit commands share: "into DEST when DEST is a directory" (mv, ln, put) and
 * following symlinks by path (setfattr, getfattr, which act on a symlink's target).
 *
 * @module
 */

import type { Ext4 } from "../ffi/open_filesystem.ts";
import type { Ext4Stat } from "../lib/ext4/filesystem.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";

/**
 * The stat of `path` (following a final symlink unless `noFollow`), or null when it does not
 * exist.
 *
 * @example
 * ```ts ignore
 * if (!(await statOrNull(fs, "/etc/motd"))) console.log("absent");
 * ```
 */
export async function statOrNull(
  fs: Ext4,
  path: string,
  noFollow = false,
): Promise<Ext4Stat | null> {
  try {
    return noFollow ? await fs.lstat(path) : await fs.stat(path);
  } catch (e) {
    if (e instanceof Ext4Error && e.code === "NOT_FOUND") return null;
    throw e;
  }
}

/** The last name of `path` (trailing slashes ignored). */
export function baseName(path: string): string {
  return path.replace(/\/+$/, "").split("/").pop() || path;
}

/**
 * `dest/BASENAME(src)` when `dest` is an existing directory (a symlink to one counts, unless
 * `noFollow`), else `dest`: where mv, ln and cp put `src`.
 *
 * @example
 * ```ts ignore
 * await intoDirectory(fs, "/a/f", "/tmp"); // "/tmp/f"
 * ```
 */
export async function intoDirectory(
  fs: Ext4,
  src: string,
  dest: string,
  noFollow = false,
): Promise<string> {
  const st = await statOrNull(fs, dest, noFollow);
  if (st?.type !== "dir") return dest;
  return `${dest.replace(/\/+$/, "")}/${baseName(src)}`;
}

/**
 * `path` with its final symlinks replaced by what they point at (relative targets taken from
 * the link's directory), so that an operation that does not follow links acts on the target.
 * ELOOP after 40 links, as the kernel.
 *
 * @example
 * ```ts ignore
 * await followLinks(fs, "/etc/localtime"); // "/usr/share/zoneinfo/UTC"
 * ```
 */
export async function followLinks(fs: Ext4, path: string): Promise<string> {
  for (let hops = 0; hops < 40; hops++) {
    const st = await fs.lstat(path);
    if (st.type !== "symlink") return path;
    const target = await fs.readLink(path);
    const dir = path.replace(/\/+$/, "").replace(/\/[^/]*$/, "") || "/";
    path = target.startsWith("/") ? target : `${dir}/${target}`;
  }
  throw new Ext4Error("INVALID", `${path}: too many levels of symbolic links`, {
    errno: Errno.ELOOP,
  });
}
