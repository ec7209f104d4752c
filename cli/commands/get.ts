import type { Command } from "@commander-js/extra-typings";
import type { Ext4 } from "../../ffi/open_filesystem.ts";
import { compareBytes, type DirEntry, type Ext4Stat } from "../../lib/ext4/filesystem.ts";
import { Errno, Ext4Error } from "../../lib/errors.ts";
import { modeTypeOfFileType } from "../../lib/ondisk/inode.ts";
import { lchown, lsetxattr, mknod, setTimes } from "../../ffi/posix_meta.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { ExitCode } from "../exit_codes.ts";
import { runAction, warn } from "../output.ts";
import { Progress, progressMode } from "../progress.ts";
import { bitmapProblem, JOURNAL_DEV_HELP, openImage, parseOffset } from "../reader_common.ts";
import { documentCommand, READER_EXIT_CODES } from "../help.ts";

const CHUNK = 4 * 1024 * 1024;

/** Copies a tree out of the filesystem like `cp -a`. */
class CopyOut {
  readonly fs: Ext4;
  readonly isRoot = Deno.uid() === 0;
  /** inode -> first destination path, to recreate hard links. */
  readonly linked = new Map<number, string>();
  /** Directories whose mode and times are set once filled (deepest last in the list). */
  readonly dirs: { dest: string; stat: Ext4Stat }[] = [];
  failures = 0;
  xattrWarned = false;
  /** Objects and file bytes copied so far. */
  entries = 0;
  bytes = 0;
  /** Told each copied object's destination (`-v`). */
  onEntry?: (dest: string) => void;
  /** Told the running counts after each object and each chunk of file data. */
  onProgress?: (bytes: number, entries: number) => void;

  constructor(fs: Ext4) {
    this.fs = fs;
  }

  fail(message: string): void {
    this.failures++;
    warn(message);
  }

  /**
   * Copies the tree at `src` (already resolved to `ino`) to `dest`, parents before children.
   * A damaged entry or directory is reported and skipped, like cp does; the rest is copied.
   */
  async copy(src: string, ino: number, dest: string): Promise<void> {
    const stack: { path: string; ino: number; dest: string }[] = [{ path: src, ino, dest }];
    const seenDirs = new Set<number>();
    while (stack.length > 0) {
      const item = stack.pop()!;
      let stat: Ext4Stat;
      try {
        stat = await this.fs.entryStat(item.ino);
        await this.copyOne(stat, item.dest);
        this.entries++;
        this.onEntry?.(item.dest);
        this.onProgress?.(this.bytes, this.entries);
      } catch (e) {
        this.fail(`${item.path}: ${(e as Error).message}`);
        continue;
      }
      // Copied, as the kernel would read it, but reported: e2fsck finds the bitmap wrong.
      const problem = await bitmapProblem(this.fs, item.path, item.ino);
      if (problem) this.fail(problem);
      if (stat.type !== "dir") continue;
      if (seenDirs.has(item.ino)) {
        this.fail(`${item.path}: directory already copied (a cycle), not copied again`);
        continue;
      }
      seenDirs.add(item.ino);
      const children: DirEntry[] = [];
      try {
        for await (const e of this.fs.readDirIno(item.ino)) {
          if (e.name !== "." && e.name !== "..") children.push(e);
        }
      } catch (e) {
        this.fail(`${item.path}: ${(e as Error).message}`);
      }
      children.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
      const prefix = item.path.endsWith("/") ? item.path : `${item.path}/`;
      for (let i = children.length - 1; i >= 0; i--) {
        const c = children[i];
        // A name with "/" or NUL (a damaged or hostile image) must not steer the copy outside
        // DEST. The reader already leaves such entries out (and reports them); this guard
        // keeps DEST safe whatever a directory yields.
        if (c.nameBytes.includes(0x2f) || c.nameBytes.includes(0)) {
          this.fail(`${prefix}${c.name}: name contains "/" or NUL, not copied`);
          continue;
        }
        // Deno's file API takes paths as strings and writes them as UTF-8: a stored name that
        // is not valid UTF-8 cannot be created with its own bytes, and its U+FFFD spelling
        // would be another name (two such names could even collide). Skip it, loudly.
        if (!isUtf8(c.nameBytes)) {
          this.fail(
            `${prefix}${c.name}: name is not valid UTF-8 (bytes ${hex(c.nameBytes)}), not copied`,
          );
          continue;
        }
        stack.push({ path: prefix + c.name, ino: c.ino, dest: `${item.dest}/${c.name}` });
      }
    }
    // Directories last, deepest first, so filling them does not change their times.
    for (let i = this.dirs.length - 1; i >= 0; i--) {
      const { dest: d, stat } = this.dirs[i];
      try {
        this.finish(d, stat);
      } catch (e) {
        this.fail(`${d}: ${(e as Error).message}`);
      }
    }
  }

  async copyOne(stat: Ext4Stat, dest: string): Promise<void> {
    await this.loadXattrs(stat.ino); // finish() is synchronous
    if (stat.type !== "dir" && stat.nlink > 1) {
      const first = this.linked.get(stat.ino);
      if (first !== undefined) {
        replacing(dest, () => Deno.linkSync(first, dest));
        return;
      }
      this.linked.set(stat.ino, dest);
    }
    switch (stat.type) {
      case "dir":
        try {
          Deno.mkdirSync(dest, { mode: 0o700 });
        } catch (e) {
          // Merge into an existing real directory (lstat: a symlink there is never followed,
          // it could lead outside DEST).
          if (!(e instanceof Deno.errors.AlreadyExists) || !Deno.lstatSync(dest).isDirectory) {
            throw e;
          }
        }
        this.dirs.push({ dest, stat });
        return; // finished later
      case "file":
        await this.copyFile(stat, dest);
        break;
      case "symlink": {
        const target = new TextDecoder().decode(await this.fs.readLinkIno(stat.ino));
        replacing(dest, () => Deno.symlinkSync(target, dest));
        break;
      }
      case "chardev":
      case "blockdev":
        if (!this.isRoot) {
          this.fail(`${dest}: not recreating a device node without root`);
          return;
        }
        replacing(
          dest,
          () =>
            mknod(dest, modeTypeOfFileType(stat.type) | 0o600, stat.rdev.major, stat.rdev.minor),
        );
        break;
      case "fifo":
      case "socket":
        replacing(dest, () => mknod(dest, modeTypeOfFileType(stat.type) | 0o600));
        break;
      default:
        this.fail(`${dest}: unknown file type, skipped`);
        return;
    }
    this.finish(dest, stat);
  }

  async copyFile(stat: Ext4Stat, dest: string): Promise<void> {
    // Synchronous file calls: for many small files they cost a fraction of async ones.
    // createNew (O_EXCL): never write through something already there (a symlink).
    const out = replacing(
      dest,
      () => Deno.openSync(dest, { write: true, createNew: true, mode: 0o600 }),
    );
    try {
      // Copy only the data regions: holes stay holes in the copy.
      let pos = 0;
      let written = 0;
      while (pos < stat.size) {
        let start: number;
        try {
          start = await this.fs.seekData(stat.ino, pos, "data");
        } catch (e) {
          if (e instanceof Ext4Error && e.code === "NOT_FOUND") break;
          throw e;
        }
        const end = await this.fs.seekData(stat.ino, start, "hole");
        for (let off = start; off < end; off += CHUNK) {
          const data = await this.fs.read(stat.ino, off, Math.min(CHUNK, end - off));
          out.seekSync(off, Deno.SeekMode.Start);
          let done = 0;
          while (done < data.length) done += out.writeSync(data.subarray(done));
          written = off + data.length;
          this.bytes += data.length;
          this.onProgress?.(this.bytes, this.entries);
        }
        pos = end;
      }
      // A trailing hole (or an empty file) needs the size set; otherwise the writes made it.
      if (written !== stat.size) out.truncateSync(stat.size);
    } finally {
      out.close();
    }
  }

  /** Owner, xattrs, mode and times, in the order that keeps each of them. */
  finish(dest: string, stat: Ext4Stat): void {
    let mode = stat.mode & 0o7777;
    try {
      lchown(dest, stat.uid, stat.gid);
    } catch (e) {
      if (this.isRoot) throw e;
      // Like cp -a: a copy whose owner cannot be kept loses its set-id and sticky bits, so a
      // user extracting an image never gets set-id programs of their own.
      mode &= 0o777;
    }
    this.pendingXattrs.get(stat.ino)?.forEach(([name, value]) => {
      try {
        lsetxattr(dest, name, value);
      } catch (e) {
        if (!this.xattrWarned) {
          this.xattrWarned = true;
          warn(`${dest}: cannot set xattr ${name} (${(e as Error).message}); continuing`);
        }
      }
    });
    if (stat.type !== "symlink") Deno.chmodSync(dest, mode);
    setTimes(dest, stat.atime, stat.mtime);
  }

  readonly pendingXattrs = new Map<number, [string, Uint8Array][]>();

  async loadXattrs(ino: number): Promise<void> {
    if (this.pendingXattrs.has(ino)) return;
    const list: [string, Uint8Array][] = [];
    for (const name of await this.fs.listXattrIno(ino)) {
      list.push([name, await this.fs.getXattrIno(ino, name)]);
    }
    this.pendingXattrs.set(ino, list);
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Makes room for a non-directory at `dest` like `cp --remove-destination`: an existing file,
 * symlink or node is unlinked (never followed); an existing directory is an error.
 */
/**
 * Creates a non-directory at `dest` with `create`, which must fail with EEXIST when something
 * is there (O_EXCL, link, symlink, mknod: none follows a symlink). Something already there is
 * removed and the creation retried (cp --remove-destination); a directory is not replaced.
 * Trying first spares every new object an lstat (and a NotFound exception).
 */
function replacing<T>(dest: string, create: () => T): T {
  try {
    return create();
  } catch (e) {
    const exists = e instanceof Deno.errors.AlreadyExists ||
      (e instanceof SyscallError && e.errno === Errno.EEXIST);
    if (!exists) throw e;
  }
  if (Deno.lstatSync(dest).isDirectory) {
    throw new Error("cannot overwrite a directory with a non-directory");
  }
  Deno.removeSync(dest);
  return create();
}

async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The objects under `path` and the bytes of its regular files (a hard-linked file counted
 * once), for the progress line's totals. Damage is left for the copy to report.
 */
async function imageTotals(fs: Ext4, path: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const seen = new Set<number>();
  try {
    for await (const { stat } of fs.walk(path)) {
      entries++;
      if (stat.type === "file" && !seen.has(stat.ino)) bytes += stat.size;
      if (stat.nlink > 1) seen.add(stat.ino);
    }
  } catch {
    // The copy reports what cannot be read; the totals stay a lower bound.
  }
  return { bytes, entries };
}

/**
 * Registers `ext4ts get IMG PATH DEST`.
 *
 * @example
 * ```ts ignore
 * registerGet(program); // in cli/main.ts
 * ```
 */
export function registerGet(program: Command): void {
  const cmd = program
    .command("get")
    .description(
      "copy a file or directory tree out of the filesystem like cp -a (modes, times, links, xattrs; owners and devices as root)",
    )
    .argument("<image>", "image file or block device")
    .argument(
      "<path>",
      "file or directory inside the filesystem (a final symlink is copied as a symlink)",
    )
    .argument("<dest>", "destination; an existing directory receives a copy named like PATH")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--journal-dev <path>", JOURNAL_DEV_HELP)
    .option("-v, --verbose", "list each object copied (its destination)")
    .option("--progress", "show progress on stderr even when it is not a terminal")
    .option("--no-progress", "no progress line, even on a terminal")
    .action((image, path, dest, opts) =>
      runAction(async () => {
        let damaged = 0; // directory blocks and entries the listings skipped (reported)
        const fs = await openImage(image, opts, () => damaged++);
        const progress = new Progress("get", progressMode(opts.progress));
        try {
          const ino = await fs.resolve(path, false); // fails before anything is created
          const info = await exists(dest);
          let target = dest;
          if (info?.isDirectory) {
            const base = path.split("/").filter((p) => p !== "").pop();
            // Copying "/" into an existing directory fills it.
            if (base !== undefined) target = `${dest.replace(/\/+$/, "")}/${base}`;
          }
          const job = new CopyOut(fs);
          if (progress.mode !== "off") progress.totals = await imageTotals(fs, path);
          if (opts.verbose) job.onEntry = (d) => progress.note(d);
          job.onProgress = (bytes, entries) => progress.update(bytes, entries);
          await job.copy(path, ino, target);
          if (job.failures + damaged > 0) return ExitCode.FAILURE;
        } finally {
          progress.done();
          await fs.close();
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Copies a file or a directory tree out of the filesystem like cp -a: contents (holes stay holes), modes, times with nanoseconds, symlinks, hard links and xattrs; owners and device nodes when run as root. An existing directory DEST receives a copy named like PATH. Objects that cannot be copied are reported one line each and the rest is copied.",
    examples: [
      "ext4ts get disk.img /etc ./etc-copy",
      "ext4ts get disk.img /var/log/syslog .",
      "ext4ts get --offset 1MiB disk.img / /mnt/restore",
    ],
    exitCodes: [[
      ExitCode.FAILURE,
      "no such path, or some objects could not be copied (each named on stderr)",
    ], ...READER_EXIT_CODES],
  });
}
