/**
 * The bodies of the facade's write methods (lib/ext4/filesystem.ts): their arguments checked
 * and converted (times, modes, ids), then the path-level operations of lib/ext4/path_ops.ts,
 * each in one transaction of the given {@link Ext4Writer}; opening files for writing with
 * their open counts; what open writable files call back into.
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";
import type { InodeTime } from "../ondisk/inode.ts";
import type { Ext4Stat } from "./attr.ts";
import { truncateFile, writeFileRange } from "./file_update.ts";
import type { TimeInput, WriteFileOptions } from "./fs_types.ts";
import { createFile } from "./namei.ts";
import { punchInSteps, tooBig, truncateInSteps, truncateSteps } from "./long_ops.ts";
import { bounded } from "./free_steps.ts";
import { getInode } from "./inode.ts";
import { setAttributes } from "./attr.ts";
import type { OpenFiles } from "./open_files.ts";
import {
  checkRegular,
  chmodAt,
  chownAt,
  fallocateInode,
  type FallocateOptions,
  type PathWriteOptions,
  renameAt,
  resolvePath,
  utimeAt,
  writeFileAt,
  writeFileIn,
} from "./path_ops.ts";
import {
  Ext4WritableFile,
  type OpenWritableOptions,
  type WritableFileHost,
  WRITE_CHUNK,
} from "./writable_file.ts";
import type { Ext4Writer } from "./writer.ts";

const NS_PER_SEC = 1_000_000_000n;

/**
 * A {@link TimeInput} as seconds and nanoseconds; INVALID outside what ext4 stores.
 *
 * @example
 * ```ts
 * import { toInodeTime } from "./fs_write.ts";
 * console.log(toInodeTime(1_500_000_000n)); // { sec: 1, nsec: 500000000 }
 * ```
 */
export function toInodeTime(t: TimeInput): InodeTime {
  let sec: number;
  let nsec: number;
  if (t instanceof Date) {
    const ms = t.getTime();
    if (!Number.isFinite(ms)) throw new Ext4Error("INVALID", "invalid Date");
    sec = Math.floor(ms / 1000);
    nsec = (ms - sec * 1000) * 1e6;
  } else if (typeof t === "bigint") {
    let s = t / NS_PER_SEC;
    let n = t % NS_PER_SEC;
    if (n < 0n) {
      n += NS_PER_SEC;
      s -= 1n;
    }
    sec = Number(s);
    nsec = Number(n);
  } else {
    sec = t.sec;
    nsec = t.nsec;
  }
  // ext4 stores 34 bits of seconds from 1901-12-13 (2^31 before the epoch) to 2446.
  if (!Number.isSafeInteger(sec) || sec < -(2 ** 31) || sec >= 2 ** 34 - 2 ** 31) {
    throw new Ext4Error("INVALID", `time ${sec} s is outside what ext4 stores (1901..2446)`);
  }
  if (!Number.isInteger(nsec) || nsec < 0 || nsec > 999_999_999) {
    throw new Ext4Error("INVALID", `bad nanoseconds ${nsec}`);
  }
  return { sec, nsec };
}

/**
 * `Ext4.writeFile`: `data` at `path` (created, replaced or appended to), a stream through a
 * file `openWritable` opens; then the times asked for.
 *
 * @example
 * ```ts ignore
 * await writeFileTo(w, "/etc/hostname", bytes, {}, (p, o) => fs.openWritable(p, o));
 * ```
 */
export async function writeFileTo(
  w: Ext4Writer,
  path: string,
  data: Uint8Array | ReadableStream<Uint8Array>,
  options: WriteFileOptions,
  openWritable: (path: string, options: OpenWritableOptions) => Promise<Ext4WritableFile>,
): Promise<void> {
  const mtime = options.mtime === undefined ? undefined : toInodeTime(options.mtime);
  const atime = options.atime === undefined ? undefined : toInodeTime(options.atime);
  if (data instanceof ReadableStream) {
    const f = await openWritable(path, { ...options, truncate: !options.append });
    await data.pipeTo(f.writable());
    if (mtime || atime) await utimeAt(w, path, atime ?? mtime, mtime);
    return;
  }
  await writeBytesAt(w, path, data, { ...options, mtime, atime });
}

/**
 * `data` as the contents of `path` (or appended): ONE transaction (`writeFileAt`) when that
 * fits a bounded step — always inside a group and without a journal. Bigger work runs in
 * bounded steps, as a writable handle writes: the file found or created, its old contents
 * freed in steps (`truncateSteps`), the data {@link WRITE_CHUNK} bytes per transaction, the
 * times last. A crash in between leaves the file with part of the new contents, consistent.
 */
function writeBytesAt(
  w: Ext4Writer,
  path: string,
  data: Uint8Array,
  options: PathWriteOptions,
): Promise<unknown> {
  if (!bounded(w)) return writeFileAt(w, path, data, options);
  return w.steps(async (step) => {
    const plan = await step(async (ctx) => {
      const found = (await resolvePath(ctx, path, { followLast: true })).ino;
      const replacing = found !== 0 && !options.append && await tooBig(w, ctx, found, 0);
      if (data.length <= WRITE_CHUNK && !replacing) {
        await writeFileIn(ctx, path, data, options);
        return null;
      }
      // Found or created (with writeFileIn's checks), nothing written yet.
      const empty = new Uint8Array(0);
      const ino = await writeFileIn(ctx, path, empty, { ...options, append: true });
      const at = options.append ? (await getInode(ctx.tx, ctx.sb, ctx.gdt, ino)).size : 0;
      return { ino, at };
    });
    if (!plan) return;
    const { ino, at } = plan;
    if (!options.append) await truncateSteps(step, w, () => Promise.resolve(ino), 0);
    for (let done = 0; done < data.length; done += WRITE_CHUNK) {
      const chunk = data.subarray(done, done + WRITE_CHUNK);
      await step((ctx) => writeFileRange(ctx, ino, at + done, chunk));
    }
    const { mtime, atime } = options;
    if (mtime || atime) {
      await step((ctx) => setAttributes(ctx, ino, { mtime, atime: atime ?? mtime }));
    }
  });
}

/**
 * `Ext4.openWritable`: resolves (or creates) regular file `path` and counts it open in
 * `openFiles`, in one transaction; the handle calls back into `host`.
 *
 * @example
 * ```ts ignore
 * const f = await openWritableFile(w, "/log", { append: true }, openFiles, host);
 * ```
 */
export async function openWritableFile(
  w: Ext4Writer,
  path: string,
  options: OpenWritableOptions,
  openFiles: OpenFiles,
  host: WritableFileHost,
): Promise<Ext4WritableFile> {
  let counted = 0;
  try {
    // A huge file cut at open is freed in bounded steps (lib/ext4/long_ops.ts).
    let cut = false;
    const ino = await w.steps(async (step) => {
      const ino = await step(async (ctx) => {
        const r = await resolvePath(ctx, path, { followLast: true });
        let ino = r.ino;
        if (ino) {
          if (options.createNew) throw new Ext4Error("EXISTS", `${path} exists`);
          await checkRegular(ctx, ino, path);
          if (options.truncate) {
            if (await tooBig(w, ctx, ino, 0)) cut = true;
            else await truncateFile(ctx, ino, 0);
          }
        } else {
          if (options.create === false) {
            throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
          }
          ino = await createFile(ctx, r.parent, r.name, new Uint8Array(0), {
            perm: options.mode ?? 0o644,
            uid: options.uid,
            gid: options.gid,
          });
        }
        openFiles.open(ino);
        counted = ino;
        return ino;
      });
      if (cut) await truncateSteps(step, w, () => Promise.resolve(ino), 0);
      return ino;
    });
    return new Ext4WritableFile(host, ino, options.append ?? false);
  } catch (e) {
    if (counted) openFiles.close(counted);
    throw e;
  }
}

/** What {@link writableFileHost} needs of the facade besides its writer. */
export interface FileHostParts {
  /** The writer, or an error when the filesystem is closed or read-only (naming `what`). */
  writerFor(what: string): Ext4Writer;
  /** The current stat of inode `ino`. */
  getattr(ino: number): Promise<Ext4Stat>;
  /** Reads of regular file `ino`. */
  read(ino: number, offset: number, length: number): Promise<Uint8Array>;
  /** Makes everything written durable. */
  sync(): Promise<void>;
  /** A handle of `ino` closed. */
  release(ino: number): Promise<void>;
}

/**
 * What the facade's {@link Ext4WritableFile} handles call back into: each write, truncate and
 * fallocate one transaction.
 *
 * @example
 * ```ts ignore
 * const host = writableFileHost({ writerFor, getattr, read, sync, release });
 * ```
 */
export function writableFileHost(fs: FileHostParts): WritableFileHost {
  return {
    write: (ino: number, offset: number, data: Uint8Array) => {
      const w = fs.writerFor(`inode ${ino}`);
      // Outside a group the data is written by the commit the caller awaits: not copied.
      return w.transaction((ctx) => writeFileRange(ctx, ino, offset, data, { borrow: !w.inGroup }));
    },
    // A huge shrink or hole runs in bounded steps (lib/ext4/long_ops.ts).
    truncate: (ino: number, size: number) =>
      truncateInSteps(fs.writerFor(`inode ${ino}`), () => Promise.resolve(ino), size),
    fallocate: (ino: number, offset: number, length: number, options: FallocateOptions) =>
      options.mode === "punchHole"
        ? punchInSteps(fs.writerFor(`inode ${ino}`), () => Promise.resolve(ino), offset, length)
        : fs.writerFor(`inode ${ino}`).transaction((ctx) =>
          fallocateInode(ctx, ino, offset, length, options)
        ),
    stat: (ino: number) => fs.getattr(ino),
    read: (ino: number, offset: number, length: number) => fs.read(ino, offset, length),
    sync: () => fs.sync(),
    release: (ino: number) => fs.release(ino),
  };
}

/**
 * `Ext4.rename`: INVALID for noReplace with exchange, else rename(2) / renameat2 through the
 * writer `writer` gives (asked for after the arguments are checked); an inode losing its last
 * link while `keepOpen` says it is open goes on the orphan list.
 *
 * @example
 * ```ts ignore
 * await renamePath(() => w, "/a", "/b", { noReplace: true }, (ino) => false);
 * ```
 */
export async function renamePath(
  writer: () => Ext4Writer,
  from: string,
  to: string,
  options: { noReplace?: boolean; exchange?: boolean },
  keepOpen: (ino: number) => boolean,
): Promise<void> {
  if (options.noReplace && options.exchange) {
    throw new Ext4Error("INVALID", "noReplace and exchange exclude each other");
  }
  await renameAt(writer(), from, to, { ...options, keepOpen });
}

/**
 * `Ext4.chmod`: INVALID for a mode beyond 0o7777.
 *
 * @example
 * ```ts ignore
 * await chmodPath(() => w, "/run.sh", 0o755);
 * ```
 */
export async function chmodPath(
  writer: () => Ext4Writer,
  path: string,
  mode: number,
): Promise<void> {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new Ext4Error("INVALID", `bad mode ${mode}`);
  }
  await chmodAt(writer(), path, mode);
}

/**
 * `Ext4.chown`: INVALID for an id outside 32 bits; null keeps the id.
 *
 * @example
 * ```ts ignore
 * await chownPath(() => w, "/home/u", 1000, null, { noFollow: true });
 * ```
 */
export async function chownPath(
  writer: () => Ext4Writer,
  path: string,
  uid: number | null,
  gid: number | null,
  options: { noFollow?: boolean },
): Promise<void> {
  for (const id of [uid, gid]) {
    if (id !== null && (!Number.isInteger(id) || id < 0 || id > 0xffffffff)) {
      throw new Ext4Error("INVALID", `bad id ${id}`);
    }
  }
  await chownAt(writer(), path, uid ?? undefined, gid ?? undefined, {
    followLast: !options.noFollow,
  });
}

/**
 * `Ext4.utime`: the times converted ({@link toInodeTime}); null keeps a time.
 *
 * @example
 * ```ts ignore
 * await utimePath(() => w, "/f", null, new Date(0), {});
 * ```
 */
export async function utimePath(
  writer: () => Ext4Writer,
  path: string,
  atime: TimeInput | null,
  mtime: TimeInput | null,
  options: { noFollow?: boolean },
): Promise<void> {
  const a = atime === null ? undefined : toInodeTime(atime);
  const m = mtime === null ? undefined : toInodeTime(mtime);
  await utimeAt(writer(), path, a, m, { followLast: !options.noFollow });
}
