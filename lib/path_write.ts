/**
 * Path-level writing on top of {@link Ext4Writer}: resolving '/'-separated paths inside a
 * transaction (coherent with its changes; symlinks followed in intermediate components, at
 * most 40 hops), and the library operations of the write path — writeFile, mkdir (recursive),
 * remove (recursive), rename, symlink, link, chmod, chown, utime, setXattr/removeXattr and
 * truncate — each one transaction.
 *
 * @module
 */

import { Ext4Error } from "./errors.ts";
import { readFileMap } from "./file_map_write.ts";
import { truncateFile, writeFileRange } from "./file_update.ts";
import { decodeInode, type InodeTime, readInodeRaw } from "./inode_write.ts";
import {
  createFile,
  createSymlink,
  linkInode,
  listEntries,
  lookupEntry,
  makeDirectory,
  type NamespaceContext,
  removeDirectory,
  renameEntry,
  type RenameOptions,
  setAttributes,
  unlinkEntry,
} from "./namespace_write.ts";
import { setXattr } from "./xattr_write.ts";
import type { Ext4Writer } from "./writer.ts";

const ROOT = 2;
const MAX_HOPS = 40;
const enc = new TextEncoder();
const dec = new TextDecoder();

function split(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

async function readLinkTarget(ctx: NamespaceContext, ino: number): Promise<string> {
  const raw = await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
  const f = decodeInode(ctx.sb, raw);
  if (f.size > ctx.sb.blockSize) throw new Ext4Error("CORRUPT", `symlink ${ino} is too long`);
  const fast = f.blocks512 === (f.fileAcl ? ctx.sb.blockSize / 512 : 0);
  if (fast) return dec.decode(f.block.subarray(0, f.size));
  const map = await readFileMap(ctx.tx, ctx.sb, ino, f);
  if (!map.extents.length) return "";
  const block = await ctx.tx.read(map.extents[0].physical);
  return dec.decode(block.subarray(0, f.size));
}

async function modeOf(ctx: NamespaceContext, ino: number): Promise<number> {
  return decodeInode(ctx.sb, await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino)).mode;
}

/** Where a path leads: its parent directory, last name, and inode (0 if absent). */
export interface Resolved {
  /**
   * The directory `name` was looked up in; with `followLast`, a final component that resolved to a
   * non-symlink gives its own inode here.
   */
  parent: number;
  /** The last path component ("." for the root). */
  name: string;
  /** The inode `name` leads to, or 0 when it does not exist. */
  ino: number;
}

/**
 * Resolves `path` inside the transaction. Intermediate symlinks are followed; the last
 * component is followed only with `followLast`. NOT_FOUND / NOT_DIRECTORY for a missing or
 * non-directory intermediate component, INVALID (ELOOP) after 40 symlinks.
 */
export async function resolvePath(
  ctx: NamespaceContext,
  path: string,
  options: { followLast?: boolean } = {},
): Promise<Resolved> {
  let hops = 0;
  let parts = split(path);
  let dir = ROOT;
  if (parts.length === 0) return { parent: ROOT, name: ".", ino: ROOT };
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i];
    const last = i === parts.length - 1;
    if ((await modeOf(ctx, dir) & 0o170000) !== 0o040000) {
      throw new Ext4Error("NOT_DIRECTORY", `${parts.slice(0, i).join("/")} is not a directory`);
    }
    const ino = name === ".."
      ? await lookupEntry(ctx, dir, "..")
      : await lookupEntry(ctx, dir, name);
    if (last && !(options.followLast && ino)) return { parent: dir, name, ino };
    if (!ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    if ((await modeOf(ctx, ino) & 0o170000) === 0o120000) {
      if (++hops > MAX_HOPS) {
        throw new Ext4Error("INVALID", `too many levels of symbolic links: ${path}`, { errno: 40 });
      }
      const target = await readLinkTarget(ctx, ino);
      const rest = parts.slice(i + 1);
      parts = [...split(target), ...rest];
      if (target.startsWith("/")) dir = ROOT;
      i = -1;
      if (parts.length === 0) return { parent: dir, name: ".", ino: dir };
      continue;
    }
    dir = ino;
    if (last) return { parent: dir, name, ino };
  }
  return { parent: ROOT, name: ".", ino: dir };
}

/** Owner, mode and times of files written by path. */
export interface PathWriteOptions {
  /** Permission bits of a newly created file (default 0o644); an existing file keeps its own. */
  mode?: number;
  /** Owner of a newly created file (default 0). */
  uid?: number;
  /** Group of a newly created file (default 0). */
  gid?: number;
  /** When given, set as mtime and atime after the write; else the write stamps its own time. */
  mtime?: InodeTime;
}

/**
 * Writes `data` as the whole contents of the file at `path`: created if absent (parents must
 * exist), truncated and rewritten if present.
 *
 * @example
 * ```ts ignore
 * await writeFileAt(writer, "/etc/hostname", new TextEncoder().encode("box\n"), { mode: 0o644 });
 * ```
 */
export async function writeFileAt(
  w: Ext4Writer,
  path: string,
  data: Uint8Array,
  options: PathWriteOptions = {},
): Promise<number> {
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { followLast: true });
    let ino = r.ino;
    if (!ino) {
      ino = await createFile(ctx, r.parent, r.name, data, {
        perm: options.mode ?? 0o644,
        uid: options.uid,
        gid: options.gid,
      });
    } else {
      if ((await modeOf(ctx, ino) & 0o170000) !== 0o100000) {
        throw new Ext4Error("IS_DIRECTORY", `${path} is not a regular file`);
      }
      await truncateFile(ctx, ino, 0);
      if (data.length) await writeFileRange(ctx, ino, 0, data);
    }
    if (options.mtime) {
      await setAttributes(ctx, ino, { mtime: options.mtime, atime: options.mtime });
    }
    return ino;
  });
}

/** mkdir; with `recursive`, missing parents are made and an existing directory is fine. */
export async function mkdirAt(
  w: Ext4Writer,
  path: string,
  options: { recursive?: boolean; mode?: number; uid?: number; gid?: number } = {},
): Promise<number> {
  return await w.transaction(async (ctx) => {
    const parts = split(path);
    if (!options.recursive) {
      const r = await resolvePath(ctx, path);
      if (r.ino) throw new Ext4Error("EXISTS", `${path} exists`);
      return await makeDirectory(ctx, r.parent, r.name, {
        perm: options.mode ?? 0o755,
        ...options,
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

async function removeTree(
  ctx: NamespaceContext,
  parent: number,
  name: string | Uint8Array,
  ino: number,
): Promise<void> {
  if ((await modeOf(ctx, ino) & 0o170000) !== 0o040000) {
    await unlinkEntry(ctx, parent, name);
    return;
  }
  // Children first.
  for (const child of await listEntries(ctx, ino)) {
    await removeTree(ctx, ino, child.name, child.ino);
  }
  await removeDirectory(ctx, parent, name);
}

/** Removes a file, symlink or empty directory; with `recursive`, a whole tree. */
export async function removeAt(
  w: Ext4Writer,
  path: string,
  options: { recursive?: boolean } = {},
): Promise<void> {
  await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path);
    if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    if (r.ino === ROOT) throw new Ext4Error("BUSY", "cannot remove the root directory");
    const isDir = (await modeOf(ctx, r.ino) & 0o170000) === 0o040000;
    if (isDir && options.recursive) await removeTree(ctx, r.parent, r.name, r.ino);
    else if (isDir) await removeDirectory(ctx, r.parent, r.name);
    else await unlinkEntry(ctx, r.parent, r.name);
  });
}

/** rename(2) by path, with renameat2's NOREPLACE and EXCHANGE. */
export async function renameAt(
  w: Ext4Writer,
  from: string,
  to: string,
  options: RenameOptions = {},
): Promise<void> {
  await w.transaction(async (ctx) => {
    const a = await resolvePath(ctx, from);
    if (!a.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${from}`);
    const b = await resolvePath(ctx, to);
    await renameEntry(ctx, a.parent, a.name, b.parent, b.name, options);
  });
}

/** Creates symlink `path` → `target`. */
export async function symlinkAt(w: Ext4Writer, target: string, path: string): Promise<number> {
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path);
    if (r.ino) throw new Ext4Error("EXISTS", `${path} exists`);
    return await createSymlink(ctx, r.parent, r.name, enc.encode(target));
  });
}

/** Hard link `newPath` to the file at `existing`. */
export async function linkAt(w: Ext4Writer, existing: string, newPath: string): Promise<void> {
  await w.transaction(async (ctx) => {
    const a = await resolvePath(ctx, existing);
    if (!a.ino) throw new Ext4Error("NOT_FOUND", `no such file: ${existing}`);
    const b = await resolvePath(ctx, newPath);
    await linkInode(ctx, b.parent, b.name, a.ino);
  });
}

async function withInode<T>(
  w: Ext4Writer,
  path: string,
  fn: (ctx: NamespaceContext, ino: number) => Promise<T>,
  followLast = true,
): Promise<T> {
  return await w.transaction(async (ctx) => {
    const r = await resolvePath(ctx, path, { followLast });
    if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    return await fn(ctx, r.ino);
  });
}

/** chmod. */
export function chmodAt(w: Ext4Writer, path: string, mode: number): Promise<void> {
  return withInode(w, path, (ctx, ino) => setAttributes(ctx, ino, { perm: mode }));
}

/** chown (lchown with `followLast: false`). */
export function chownAt(
  w: Ext4Writer,
  path: string,
  uid: number,
  gid: number,
  options: { followLast?: boolean } = {},
): Promise<void> {
  return withInode(
    w,
    path,
    (ctx, ino) => setAttributes(ctx, ino, { uid, gid }),
    options.followLast ?? true,
  );
}

/** utimes with nanoseconds (and post-2038 seconds). */
export function utimeAt(
  w: Ext4Writer,
  path: string,
  atime: InodeTime,
  mtime: InodeTime,
): Promise<void> {
  return withInode(w, path, (ctx, ino) => setAttributes(ctx, ino, { atime, mtime }));
}

/** Sets an extended attribute (value as setxattr takes it; ACLs in the kernel's format). */
export function setXattrAt(
  w: Ext4Writer,
  path: string,
  name: string,
  value: Uint8Array,
): Promise<void> {
  return withInode(
    w,
    path,
    (ctx, ino) => setXattr(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, name, value),
  );
}

/** Removes an extended attribute (NOT_FOUND with errno ENODATA if absent). */
export function removeXattrAt(w: Ext4Writer, path: string, name: string): Promise<void> {
  return withInode(
    w,
    path,
    (ctx, ino) => setXattr(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, name, null),
  );
}

/** truncate by path. */
export function truncateAt(w: Ext4Writer, path: string, size: number): Promise<void> {
  return withInode(w, path, (ctx, ino) => truncateFile(ctx, ino, size));
}
