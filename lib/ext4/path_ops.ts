/**
 * Path-level writing on top of {@link Ext4Writer}: resolving '/'-separated paths inside a
 * transaction (coherent with its changes; symlinks followed in intermediate components, at
 * most 40 hops), and the library operations of the write path — writeFile, mkdir (recursive),
 * remove (recursive), rename, symlink, link, chmod, chown, utime, setXattr/removeXattr and
 * truncate — each one transaction.
 *
 * @module
 */

import { Errno, Ext4Error } from "../errors.ts";
import { readFileMap } from "./file_map_write.ts";
import {
  fallocateRange,
  punchHole,
  truncateFile,
  writeFileRange,
  zeroRange,
} from "./file_update.ts";
import { InodeFlags, type InodeTime } from "../ondisk/inode.ts";
import { getInode, loadInode } from "./inode.ts";
import {
  createFile,
  createSymlink,
  linkInode,
  lookupEntry,
  makeDirectory,
  makeNode,
} from "./namei.ts";
import { removeDirectory, unlinkEntry } from "./unlink.ts";
import { renameEntry, type RenameOptions } from "./rename.ts";
import { setAttributes } from "./attr.ts";
import {
  allocateInSteps,
  punchInSteps,
  releaseInSteps,
  truncateInSteps,
  unlinkBounded,
} from "./long_ops.ts";
import { orphanIfUnlinked } from "./orphan.ts";
import { uninline } from "./inline.ts";
import { setXattr, type SetXattrOptions } from "./xattr.ts";
import type { Ext4Writer } from "./writer.ts";
import { removeTree } from "./remove_tree.ts";
import { type PathSource, type Resolved, type ResolveOptions, ROOT_INO, walkPath } from "./path.ts";
import type { OpContext } from "./context.ts";

export type { Resolved, ResolveOptions };

const ROOT = ROOT_INO;
const enc = new TextEncoder();
const dec = new TextDecoder();

function split(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

async function readLinkTarget(ctx: OpContext, ino: number): Promise<string> {
  const { f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if (f.size > ctx.sb.blockSize) throw new Ext4Error("CORRUPT", `symlink ${ino} is too long`);
  const fast = f.blocks512 === (f.fileAcl ? ctx.sb.blockSize / 512 : 0);
  if (fast) return dec.decode(f.block.subarray(0, f.size));
  const map = await readFileMap(ctx.tx, ctx.sb, ino, f);
  if (!map.extents.length) return "";
  const block = await ctx.tx.read(map.extents[0].physical);
  return dec.decode(block.subarray(0, f.size));
}

async function modeOf(ctx: OpContext, ino: number): Promise<number> {
  return (await getInode(ctx.tx, ctx.sb, ctx.gdt, ino)).mode;
}

/** The inode source of the path walk inside a transaction (coherent with its changes). */
function transactionSource(ctx: OpContext): PathSource {
  return {
    modeOf: (ino) => modeOf(ctx, ino),
    // The single-name lookup (seam: lib/ext4/lookup.ts once it exists).
    lookup: (dir, name) => lookupEntry(ctx, dir, name),
    readLink: (ino) => readLinkTarget(ctx, ino),
  };
}

/**
 * Resolves `path` inside the transaction with the one path walk (lib/ext4/path.ts):
 * intermediate symlinks are followed, the last component only with `followLast` (or a
 * trailing "/"); with `entry`, for operations on the directory entry itself, a trailing "/"
 * requires the entry to be a directory. A missing last component gives `ino: 0`;
 * NOT_FOUND / NOT_DIRECTORY for a missing or non-directory intermediate component, INVALID
 * (ELOOP) after 40 symlinks, NOT_FOUND for an empty symlink target.
 *
 * @example
 * ```ts ignore
 * const r = await writer.transaction((ctx) => resolvePath(ctx, "/etc/hosts"));
 * ```
 */
export function resolvePath(
  ctx: OpContext,
  path: string,
  options: ResolveOptions = {},
): Promise<Resolved> {
  return walkPath(transactionSource(ctx), path, options);
}

/**
 * Creating anything but a directory at a path ending in "/" is ENOENT, as the kernel's
 * filename_create answers (an existing entry was EEXIST before).
 */
function refuseSlashOnCreate(r: Resolved, path: string): void {
  if (r.dirWanted) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
}

/** Owner, mode and times of files written by path. */
export interface PathWriteOptions {
  /** Permission bits of a newly created file (default 0o644); an existing file keeps its own. */
  mode?: number;
  /** Owner of a newly created file (default 0). */
  uid?: number;
  /** Group of a newly created file (default 0). */
  gid?: number;
  /** When given, set as mtime (and atime, unless `atime` is given) after the write. */
  mtime?: InodeTime;
  /** When given, set as atime after the write. */
  atime?: InodeTime;
  /** Create the file when it is absent (default true); false: NOT_FOUND instead. */
  create?: boolean;
  /** Fail with EXISTS when the file exists (O_EXCL). */
  createNew?: boolean;
  /** Add `data` at the end instead of replacing the contents. */
  append?: boolean;
}

/** Options of the path operations that can drop an inode's last link. */
export interface UnlinkOptions {
  /**
   * Says whether an inode is held open: when its last link goes, it is kept and put on the
   * orphan list instead of being freed (its last close frees it).
   */
  keepOpen?: (ino: number) => boolean;
}

/**
 * Writes `data` as the whole contents of the file at `path`: created if absent (parents must
 * exist), truncated and rewritten if present (or appended to, with `append`). A final symlink
 * is followed; a directory is IS_DIRECTORY, another non-regular file INVALID.
 *
 * @example
 * ```ts ignore
 * await writeFileAt(writer, "/etc/hostname", new TextEncoder().encode("box\n"), { mode: 0o644 });
 * ```
 */
export function writeFileAt(
  w: Ext4Writer,
  path: string,
  data: Uint8Array,
  options: PathWriteOptions = {},
): Promise<number> {
  return w.transaction((ctx) => writeFileIn(ctx, path, data, options));
}

/**
 * {@link writeFileAt} inside a transaction (or a step of one) the caller runs; returns the
 * file's inode.
 *
 * @example
 * ```ts ignore
 * const ino = await w.transaction((ctx) => writeFileIn(ctx, "/motd", bytes, {}));
 * ```
 */
export async function writeFileIn(
  ctx: OpContext,
  path: string,
  data: Uint8Array,
  options: PathWriteOptions = {},
): Promise<number> {
  const r = await resolvePath(ctx, path, { followLast: true });
  let ino = r.ino;
  if (!ino) {
    if (options.create === false) {
      throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    }
    ino = await createFile(ctx, r.parent, r.name, data, {
      perm: options.mode ?? 0o644,
      uid: options.uid,
      gid: options.gid,
    });
  } else {
    if (options.createNew) throw new Ext4Error("EXISTS", `${path} exists`);
    await checkRegular(ctx, ino, path);
    if (options.append) {
      const size = (await getInode(ctx.tx, ctx.sb, ctx.gdt, ino)).size;
      if (data.length) await writeFileRange(ctx, ino, size, data);
    } else {
      await truncateFile(ctx, ino, 0);
      if (data.length) await writeFileRange(ctx, ino, 0, data);
    }
  }
  if (options.mtime || options.atime) {
    await setAttributes(ctx, ino, {
      mtime: options.mtime,
      atime: options.atime ?? options.mtime,
    });
  }
  return ino;
}

/** Throws IS_DIRECTORY for a directory, INVALID for anything else that is not a regular file. */
export async function checkRegular(ctx: OpContext, ino: number, path: string): Promise<void> {
  const type = await modeOf(ctx, ino) & 0o170000;
  if (type === 0o040000) throw new Ext4Error("IS_DIRECTORY", `${path} is a directory`);
  if (type !== 0o100000) throw new Ext4Error("INVALID", `${path} is not a regular file`);
}

/**
 * mkdir; with `recursive`, missing parents are made and an existing directory is fine.
 *
 * @example
 * ```ts ignore
 * await mkdirAt(writer, "/srv/www/static", { recursive: true, mode: 0o755 });
 * ```
 */
export async function mkdirAt(
  w: Ext4Writer,
  path: string,
  options: { recursive?: boolean; mode?: number; uid?: number; gid?: number } = {},
): Promise<number> {
  return await w.transaction(async (ctx) => {
    const parts = split(path);
    if (!options.recursive) {
      const r = await resolvePath(ctx, path, { entry: true });
      if (r.ino) throw new Ext4Error("EXISTS", `${path} exists`);
      return await makeDirectory(ctx, r.parent, r.name, {
        perm: options.mode ?? 0o755,
        uid: options.uid,
        gid: options.gid,
      });
    }
    let cur = "";
    let ino = ROOT;
    for (const p of parts) {
      cur += "/" + p;
      const r = await resolvePath(ctx, cur, { followLast: true });
      if (r.ino) {
        if ((await modeOf(ctx, r.ino) & 0o170000) !== 0o040000) {
          throw new Ext4Error("NOT_DIRECTORY", `${cur} is not a directory`);
        }
        ino = r.ino;
      } else {
        ino = await makeDirectory(ctx, r.parent, r.name, {
          perm: options.mode ?? 0o755,
          uid: options.uid,
          gid: options.gid,
        });
      }
    }
    return ino;
  });
}

/**
 * Removes a file, symlink or empty directory; with `recursive`, a whole tree. The root is
 * INVALID (errno EBUSY, as the kernel answers); a non-empty directory without `recursive` NOT_EMPTY.
 *
 * @example
 * ```ts ignore
 * await removeAt(writer, "/tmp/build", { recursive: true });
 * ```
 */
export async function removeAt(
  w: Ext4Writer,
  path: string,
  options: { recursive?: boolean } & UnlinkOptions = {},
): Promise<void> {
  let big = 0; // the last link of a huge file: its inode freed in bounded steps, below
  const tree = await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { entry: true });
    if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    // The kernel answers EBUSY; for the CLI it is a failed operation (exit 1), not a busy device.
    if (r.ino === ROOT) {
      throw new Ext4Error("INVALID", "cannot remove the root directory", { errno: Errno.EBUSY });
    }
    if (r.name === "..") throw new Ext4Error("NOT_EMPTY", `${path}: directory not empty`);
    const isDir = (await modeOf(ctx, r.ino) & 0o170000) === 0o040000;
    if (r.dirWanted && !isDir) throw new Ext4Error("NOT_DIRECTORY", `${path}: not a directory`);
    if (isDir && options.recursive) return r; // removed in bounded steps, below
    if (isDir) await removeDirectory(ctx, r.parent, r.name);
    else big = await unlinkBounded(w, ctx, r.parent, r.name, options.keepOpen);
    return null;
  });
  if (big) await w.steps((step) => releaseInSteps(step, w, big));
  if (tree) await removeTree(w, tree.parent, tree.name, tree.ino, options);
}

/**
 * rename(2) by path, with renameat2's NOREPLACE and EXCHANGE. A replaced file that
 * `keepOpen` says is open is kept on the orphan list.
 *
 * @example
 * ```ts ignore
 * await renameAt(writer, "/etc/passwd.new", "/etc/passwd");
 * ```
 */
export async function renameAt(
  w: Ext4Writer,
  from: string,
  to: string,
  options: RenameOptions & UnlinkOptions = {},
): Promise<void> {
  await w.transaction(async (ctx) => {
    const a = await resolvePath(ctx, from, { entry: true });
    if (!a.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${from}`);
    if (a.ino === ROOT || a.name === "..") {
      throw new Ext4Error("INVALID", `cannot rename ${from}`, { errno: Errno.EBUSY });
    }
    const b = await resolvePath(ctx, to, { entry: true });
    if (b.ino === ROOT || b.name === "..") {
      throw new Ext4Error("INVALID", `cannot replace ${to}`, { errno: Errno.EBUSY });
    }
    // The kernel's order of refusals (do_renameat2): flags first, then the subtree checks,
    // then the types of source and target (renameEntry).
    if (options.exchange && !b.ino) {
      throw new Ext4Error("NOT_FOUND", `no such file or directory: ${to}`);
    }
    if (options.noReplace && b.ino) throw new Ext4Error("EXISTS", `${to} exists`);
    const isDir = async (ino: number) => (await modeOf(ctx, ino) & 0o170000) === 0o040000;
    if ((a.dirWanted || b.dirWanted) && !await isDir(a.ino)) {
      throw new Ext4Error("NOT_DIRECTORY", `${a.dirWanted ? from : to}: not a directory`);
    }
    if (await isDir(a.ino) && await isWithinDir(ctx, b.parent, a.ino)) {
      throw new Ext4Error("INVALID", `cannot move ${from} into its own subtree`);
    }
    if (b.ino && b.ino !== a.ino && await isDir(b.ino) && await isWithinDir(ctx, a.parent, b.ino)) {
      throw options.exchange
        ? new Ext4Error("INVALID", `cannot exchange ${to} with its own subtree`)
        : new Ext4Error("NOT_EMPTY", `${to} is an ancestor of ${from}`);
    }
    if (
      b.ino && b.ino !== a.ino && !options.exchange && !options.noReplace &&
      options.keepOpen?.(b.ino)
    ) {
      await unlinkOpenTarget(ctx, a.ino, b);
    }
    await renameEntry(ctx, a.parent, a.name, b.parent, b.name, options);
  });
}

/**
 * Before a rename replaces an open file: the target `dst` is unlinked first (kept, on the
 * orphan list when that was its last link), so the move does not free it. Only file over
 * file: every other case keeps renameEntry's refusals.
 *
 * @example
 * ```ts ignore
 * await unlinkOpenTarget(ctx, srcIno, { parent: dir, name: "log", ino: dstIno });
 * ```
 */
export async function unlinkOpenTarget(
  ctx: OpContext,
  srcIno: number,
  dst: { parent: number; name: string | Uint8Array; ino: number },
): Promise<void> {
  const srcDir = (await modeOf(ctx, srcIno) & 0o170000) === 0o040000;
  const dstDir = (await modeOf(ctx, dst.ino) & 0o170000) === 0o040000;
  if (srcDir || dstDir) return;
  await unlinkEntry(ctx, dst.parent, dst.name, { keepInode: true });
  await orphanIfUnlinked(ctx, dst.ino);
}

/** True when directory `dir` is `ancestor` or lies below it (following ".." up to the root). */
async function isWithinDir(ctx: OpContext, dir: number, ancestor: number): Promise<boolean> {
  const seen = new Set<number>();
  for (let cur = dir; cur !== ROOT;) {
    if (cur === ancestor) return true;
    if (seen.has(cur)) throw new Ext4Error("CORRUPT", `directory ${dir}: '..' chain loops`);
    seen.add(cur);
    cur = await lookupEntry(ctx, cur, "..");
    if (!cur) throw new Ext4Error("CORRUPT", `directory ${dir}: no '..' entry`);
  }
  return ancestor === ROOT;
}

/**
 * Creates symlink `path` → `target`.
 *
 * @example
 * ```ts ignore
 * await symlinkAt(writer, "../lib/libc.so.6", "/usr/lib64/libc.so.6");
 * ```
 */
export async function symlinkAt(
  w: Ext4Writer,
  target: string | Uint8Array,
  path: string,
  options: { uid?: number; gid?: number } = {},
): Promise<number> {
  const bytes = typeof target === "string" ? enc.encode(target) : target;
  if (bytes.length === 0) throw new Ext4Error("NOT_FOUND", "empty symlink target");
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { entry: true });
    if (r.ino) throw new Ext4Error("EXISTS", `${path} exists`);
    refuseSlashOnCreate(r, path);
    return await createSymlink(ctx, r.parent, r.name, bytes, options);
  });
}

/**
 * Hard link `newPath` to the file at `existing` (a final symlink is not followed, as link(2)
 * does not). A directory is PERMISSION with errno EPERM, as the kernel answers.
 *
 * @example
 * ```ts ignore
 * await linkAt(writer, "/bin/busybox", "/bin/sh");
 * ```
 */
export async function linkAt(w: Ext4Writer, existing: string, newPath: string): Promise<void> {
  await w.transaction(async (ctx) => {
    const a = await resolvePath(ctx, existing);
    if (!a.ino) throw new Ext4Error("NOT_FOUND", `no such file: ${existing}`);
    const b = await resolvePath(ctx, newPath, { entry: true });
    if (b.ino) throw new Ext4Error("EXISTS", `${newPath} exists`);
    refuseSlashOnCreate(b, newPath);
    if ((await modeOf(ctx, a.ino) & 0o170000) === 0o040000) {
      throw new Ext4Error("PERMISSION", `${existing}: hard links to directories are not allowed`, {
        errno: Errno.EPERM,
      });
    }
    await linkInode(ctx, b.parent, b.name, a.ino);
  });
}

/**
 * mknod: a character or block device, FIFO or socket (`mode` carries the type bits, e.g.
 * `0o020644` for a character device).
 *
 * @example
 * ```ts ignore
 * await mknodAt(writer, "/dev/null", 0o020666, { major: 1, minor: 3 });
 * ```
 */
export async function mknodAt(
  w: Ext4Writer,
  path: string,
  mode: number,
  options: { major?: number; minor?: number; uid?: number; gid?: number } = {},
): Promise<number> {
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { entry: true });
    if (r.ino) throw new Ext4Error("EXISTS", `${path} exists`);
    refuseSlashOnCreate(r, path);
    return await makeNode(ctx, r.parent, r.name, mode, { perm: mode & 0o7777, ...options });
  });
}

async function withInode<T>(
  w: Ext4Writer,
  path: string,
  fn: (ctx: OpContext, ino: number) => Promise<T>,
  followLast = true,
): Promise<T> {
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { followLast });
    if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    return await fn(ctx, r.ino);
  });
}

/**
 * chmod (a final symlink is followed).
 *
 * @example
 * ```ts ignore
 * await chmodAt(writer, "/usr/bin/tool", 0o755);
 * ```
 */
export function chmodAt(w: Ext4Writer, path: string, mode: number): Promise<void> {
  return withInode(w, path, (ctx, ino) => setAttributes(ctx, ino, { perm: mode }));
}

/**
 * chown (lchown with `followLast: false`); an undefined id is kept.
 *
 * @example
 * ```ts ignore
 * await chownAt(writer, "/home/ann", 1000, 1000);
 * ```
 */
export function chownAt(
  w: Ext4Writer,
  path: string,
  uid: number | undefined,
  gid: number | undefined,
  options: { followLast?: boolean } = {},
): Promise<void> {
  return withInode(
    w,
    path,
    (ctx, ino) => setAttributes(ctx, ino, { uid, gid }),
    options.followLast ?? true,
  );
}

/**
 * utimes with nanoseconds (and post-2038 seconds); an undefined time is kept. A final symlink
 * is followed unless `followLast: false`.
 *
 * @example
 * ```ts ignore
 * await utimeAt(writer, "/f", { sec: 4102444800, nsec: 5 }, { sec: 4102444800, nsec: 5 });
 * ```
 */
export function utimeAt(
  w: Ext4Writer,
  path: string,
  atime: InodeTime | undefined,
  mtime: InodeTime | undefined,
  options: { followLast?: boolean } = {},
): Promise<void> {
  return withInode(
    w,
    path,
    (ctx, ino) => setAttributes(ctx, ino, { atime, mtime }),
    options.followLast ?? true,
  );
}

/**
 * Before an xattr change: the kernel allows "user." attributes on regular files and
 * directories only (EPERM). An inline-data regular file is first converted to an ordinary one
 * (its "system.data" must stay in the inode, which the xattr writer does not arrange yet).
 *
 * @example
 * ```ts ignore
 * await prepareXattrChange(ctx, ino, "user.origin", "/f");
 * ```
 */
export async function prepareXattrChange(
  ctx: OpContext,
  ino: number,
  name: string,
  path: string,
): Promise<void> {
  const f = await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  const type = f.mode & 0o170000;
  if (name.startsWith("user.") && type !== 0o100000 && type !== 0o040000) {
    throw new Ext4Error("PERMISSION", `${path}: user.* attributes only on files and directories`, {
      errno: Errno.EPERM,
    });
  }
  if ((f.flags & InodeFlags.INLINE_DATA) && type === 0o100000) {
    await ctx.tx.discardOnError(async () => {
      await uninline(ctx, ino);
    });
  }
}

/**
 * Sets an extended attribute (value as setxattr takes it; ACLs in the kernel's format) of
 * `path`, a final symlink not followed (lsetxattr).
 *
 * @example
 * ```ts ignore
 * await setXattrAt(writer, "/f", "user.origin", new TextEncoder().encode("web"));
 * ```
 */
export function setXattrAt(
  w: Ext4Writer,
  path: string,
  name: string,
  value: Uint8Array,
  options: Pick<SetXattrOptions, "create" | "replace"> = {},
): Promise<void> {
  return withInode(
    w,
    path,
    async (ctx, ino) => {
      await prepareXattrChange(ctx, ino, name, path);
      await setXattr(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, name, value, options);
    },
    false,
  );
}

/**
 * Removes an extended attribute (NOT_FOUND with errno ENODATA if absent); a final symlink is
 * not followed (lremovexattr).
 *
 * @example
 * ```ts ignore
 * await removeXattrAt(writer, "/f", "user.origin");
 * ```
 */
export function removeXattrAt(w: Ext4Writer, path: string, name: string): Promise<void> {
  return withInode(
    w,
    path,
    async (ctx, ino) => {
      await prepareXattrChange(ctx, ino, name, path);
      await setXattr(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, name, null);
    },
    false,
  );
}

/**
 * truncate by path: the file's size becomes `size` (blocks past it freed, or a hole added).
 *
 * @example
 * ```ts ignore
 * await truncateAt(writer, "/var/log/big.log", 0);
 * ```
 */
export function truncateAt(w: Ext4Writer, path: string, size: number): Promise<void> {
  // A huge shrink runs in bounded steps (lib/ext4/long_ops.ts).
  return truncateInSteps(w, (ctx) => regularAt(ctx, path), size);
}

/** The regular file at `path` (a final symlink followed), checked as {@link checkRegular}. */
async function regularAt(ctx: OpContext, path: string): Promise<number> {
  const r = await resolvePath(ctx, path, { followLast: true });
  if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
  await checkRegular(ctx, r.ino, path);
  return r.ino;
}

/** What {@link fallocateAt} does, as fallocate(2)'s modes. */
export interface FallocateOptions {
  /**
   * `"allocate"` (default): unwritten blocks for the holes in the range (reads as zeros);
   * `"punchHole"`: deallocate the range (FALLOC_FL_PUNCH_HOLE; the size is always kept);
   * `"zeroRange"`: the range reads as zeros, its blocks unwritten (FALLOC_FL_ZERO_RANGE).
   */
  mode?: "allocate" | "punchHole" | "zeroRange";
  /** Keep the size even when the range ends past it (FALLOC_FL_KEEP_SIZE). */
  keepSize?: boolean;
}

/**
 * fallocate(2) on the regular file at `path`, one transaction: preallocate, punch a hole or
 * zero a range of `length` bytes at `offset` (see {@link FallocateOptions}).
 *
 * @example
 * ```ts ignore
 * await fallocateAt(writer, "/var/db/table", 0, 64 << 20, { keepSize: true });
 * await fallocateAt(writer, "/var/db/table", 4096, 8192, { mode: "punchHole" });
 * ```
 */
export function fallocateAt(
  w: Ext4Writer,
  path: string,
  offset: number,
  length: number,
  options: FallocateOptions = {},
): Promise<void> {
  if (options.mode === "punchHole") {
    // A huge hole is punched in bounded steps (lib/ext4/long_ops.ts).
    return punchInSteps(w, (ctx) => regularAt(ctx, path), offset, length);
  }
  if ((options.mode ?? "allocate") === "allocate") {
    // A huge range is allocated in bounded chunks (lib/ext4/long_ops.ts).
    return allocateInSteps(w, (ctx) => regularAt(ctx, path), offset, length, {
      keepSize: options.keepSize,
    });
  }
  return withInode(w, path, async (ctx, ino) => {
    await checkRegular(ctx, ino, path);
    await fallocateInode(ctx, ino, offset, length, options);
  });
}

/**
 * fallocate(2) on regular file `ino` inside a transaction (what {@link fallocateAt} and open
 * handles run).
 *
 * @example
 * ```ts ignore
 * await writer.transaction((ctx) => fallocateInode(ctx, ino, 0, 4096, { mode: "zeroRange" }));
 * ```
 */
export function fallocateInode(
  ctx: OpContext,
  ino: number,
  offset: number,
  length: number,
  options: FallocateOptions = {},
): Promise<void> {
  switch (options.mode ?? "allocate") {
    case "allocate":
      return fallocateRange(ctx, ino, offset, length, { keepSize: options.keepSize });
    case "punchHole":
      return punchHole(ctx, ino, offset, length);
    case "zeroRange":
      return zeroRange(ctx, ino, offset, length, { keepSize: options.keepSize });
    default:
      throw new Ext4Error("INVALID", `unknown fallocate mode ${options.mode}`);
  }
}
