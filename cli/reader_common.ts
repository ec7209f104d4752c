/**
 * What the offline reader commands (ls, cat, stat, get) share: the `--offset` option,
 * opening the image, and formatting modes and times.
 *
 * @module
 */

import { InvalidArgumentError } from "@commander-js/extra-typings";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { parseByteCount } from "./device.ts";
import { CliError, warn } from "./output.ts";
import type { Ext4Stat, Timespec } from "../lib/ext4/filesystem.ts";

/**
 * Parses `--offset BYTES` for commander (see {@link parseByteCount}: bytes, `s` sectors,
 * k/M/G/T in powers of 1024).
 *
 * @example
 * ```ts
 * import { parseOffset } from "./reader_common.ts";
 * console.log(parseOffset("1M")); // 1048576
 * ```
 */
export function parseOffset(value: string): number {
  try {
    return parseByteCount(value);
  } catch (e) {
    // commander reports InvalidArgumentError as a usage error (exit 2).
    if (e instanceof CliError) throw new InvalidArgumentError(e.message);
    throw e;
  }
}

/**
 * Opens an image or device read-only for a reader command. Damage a listing skips (a
 * directory block, an entry with "/" or NUL in its name) is reported one line each on
 * stderr and counted through `onDamage`, so the command can end with exit code 1.
 *
 * @example
 * ```ts ignore
 * const fs = await openImage("disk.img", { offset: 1048576 });
 * let damaged = 0;
 * const ext = await openImage("fs.img", { journalDev: "journal.img" }, () => damaged++);
 * ```
 */
export async function openImage(
  image: string,
  options: { offset?: number; journalDev?: string },
  onDamage?: () => void,
): Promise<Ext4> {
  // A dirty journal is replayed in memory; say so, since what is shown differs from the disk.
  return await Ext4.open(image, {
    readOnly: true,
    offset: options.offset,
    journalPath: options.journalDev,
    onNotice: (message) => warn(`${image}: ${message}`),
    onCorrupt: (error) => {
      warn(`${image}: ${error.message}; skipped`);
      onDamage?.();
    },
  });
}

/**
 * The problem line for inode `ino` (reached as `path`) when the inode bitmap marks it free,
 * or null. The file is still read, as the kernel reads it; e2fsck would report the bitmap.
 *
 * @example
 * ```ts ignore
 * const problem = await bitmapProblem(fs, "/d/f", 17);
 * if (problem) warn(problem);
 * ```
 */
export async function bitmapProblem(fs: Ext4, path: string, ino: number): Promise<string | null> {
  try {
    if (await fs.inodeAllocated(ino)) return null;
    return `${path}: inode ${ino} is in use but free in the inode bitmap (run e2fsck)`;
  } catch (e) {
    return `${path}: ${(e as Error).message}`;
  }
}

/** Help text of the readers' `--journal-dev` option. */
export const JOURNAL_DEV_HELP =
  "the external journal device, to replay a dirty journal in memory (nothing is written)";

const TYPE_LETTER: Record<string, string> = {
  file: "-",
  dir: "d",
  symlink: "l",
  chardev: "c",
  blockdev: "b",
  fifo: "p",
  socket: "s",
  unknown: "?",
};

/**
 * `ls -l` style mode string, e.g. `drwxr-xr-x` or `-rwsr-x--T`.
 *
 * @example
 * ```ts
 * import { modeString } from "./reader_common.ts";
 * console.log(modeString("file", 0o104755)); // -rwsr-xr-x
 * ```
 */
export function modeString(type: string, mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") +
    (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? "x" : "-");
  return (TYPE_LETTER[type] ?? "?") +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t");
}

/**
 * A time as `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +0000` (UTC), like `stat`.
 *
 * @example
 * ```ts
 * import { formatTime } from "./reader_common.ts";
 * console.log(formatTime({ sec: 0, nsec: 5 })); // 1970-01-01 00:00:00.000000005 +0000
 * ```
 */
export function formatTime(t: Timespec): string {
  const d = new Date(t.sec * 1000);
  const iso = isNaN(d.getTime()) ? `@${t.sec}` : d.toISOString().slice(0, 19).replace("T", " ");
  return `${iso}.${String(t.nsec).padStart(9, "0")} +0000`;
}

/**
 * The stat as plain JSON (type names, numeric mode bits, times as `{sec, nsec}`).
 *
 * @example
 * ```ts ignore
 * console.log(JSON.stringify(statJson("/etc", await fs.lstat("/etc"))));
 * ```
 */
export function statJson(path: string, st: Ext4Stat, target?: string): Record<string, unknown> {
  return {
    path,
    ino: st.ino,
    type: st.type,
    mode: st.mode & 0o7777,
    modeString: modeString(st.type, st.mode),
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    blocks: st.blocks,
    ...(st.type === "chardev" || st.type === "blockdev" ? { rdev: st.rdev } : {}),
    ...(target !== undefined ? { target } : {}),
    atime: st.atime,
    mtime: st.mtime,
    ctime: st.ctime,
    birthtime: st.birthtime,
    flags: st.flags,
    generation: st.generation,
  };
}
