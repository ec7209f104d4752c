/**
 * An inode's attributes as `stat(2)` reports them ({@link Ext4Stat}): what the `Ext4` facade
 * returns and what an open writable file asks its filesystem for.
 * And changing them at inode level ({@link setAttributes}: chmod, chown, utimes, flags).
 *
 * @module
 */

import {
  type FileType,
  type Inode,
  InodeFlags,
  type InodeTime,
  type Timespec,
} from "../ondisk/inode.ts";
import { noKeyNameLength } from "../ondisk/fscrypt_name.ts";
import { Ext4Error } from "../errors.ts";
import { chmodAccessAcl } from "./xattr.ts";
import type { OpContext } from "./context.ts";
import { load, now, store } from "./namei.ts";

/** What `stat` returns: the kernel's `struct stat` for an inode. */
export interface Ext4Stat {
  /** Inode number. */
  ino: number;
  /** Kind of object. */
  type: FileType;
  /** Full st_mode: type bits and permissions. */
  mode: number;
  /** Hard link count. */
  nlink: number;
  /** uid and gid including their high 16 bits. */
  uid: number;
  /** Group id (with its high half). */
  gid: number;
  /** Size in bytes (a symlink: its target's length). */
  size: number;
  /** st_blocks, in 512-byte units. */
  blocks: number;
  /** Devices only; 0/0 otherwise. */
  rdev: { major: number; minor: number };
  /** Last access. */
  atime: Timespec;
  /** Last data modification. */
  mtime: Timespec;
  /** Last inode change. */
  ctime: Timespec;
  /** Creation time, null when the inode has no room for it. */
  birthtime: Timespec | null;
  /** `i_flags`. */
  flags: number;
  /** `i_generation`. */
  generation: number;
}

/**
 * The stat of `inode`, as the kernel's getattr reports it: an encrypted symlink's size is its
 * no-key target's, an inline regular file's blocks the sectors its data would fill.
 *
 * @example
 * ```ts ignore
 * const st = inodeStat(await fs.inode(2)); // st.type === "dir"
 * ```
 */
export function inodeStat(inode: Inode): Ext4Stat {
  return {
    ino: inode.ino,
    type: inode.type,
    mode: inode.mode,
    nlink: inode.linksCount,
    uid: inode.uid,
    gid: inode.gid,
    // An encrypted symlink's size is its no-key target's, as the kernel's getattr says.
    size: inode.type === "symlink" && inode.isEncrypted && inode.size > 2
      ? noKeyNameLength(inode.size - 2)
      : inode.size,
    // The kernel (ext4_file_getattr, regular files only) reports inline data as the
    // sectors it would fill, so tools do not take the file for completely sparse.
    blocks: inode.blocks +
      (inode.hasInlineData && inode.type === "file" ? Math.ceil(inode.size / 512) : 0),
    rdev: inode.rdev,
    atime: inode.atime,
    mtime: inode.mtime,
    ctime: inode.ctime,
    birthtime: inode.crtime,
    flags: inode.flags,
    generation: inode.generation,
  };
}

/** Attributes {@link setAttributes} can change. */
export interface AttributeChange {
  /** Permission bits (the type bits are kept). */
  perm?: number;
  /** New owner id; absent keeps it. */
  uid?: number;
  /** New group id; absent keeps it. */
  gid?: number;
  /** New access time; absent keeps it. */
  atime?: InodeTime;
  /** New modification time; absent keeps it. */
  mtime?: InodeTime;
  /** Inode flags to set (e.g. IMMUTABLE, APPEND, NODUMP, NOATIME). */
  flags?: number;
}

/** chmod, chown, utimes and flag changes; ctime becomes now. */
export async function setAttributes(
  ctx: OpContext,
  ino: number,
  change: AttributeChange,
): Promise<void> {
  const { raw, f } = await load(ctx, ino);
  // Freed in the bitmap, not just unlinked: an orphan (unlinked while open) is still changed.
  if (f.linksCount === 0 && !(await ctx.alloc.isInodeInUse(ctx.tx, ino))) {
    throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  }
  const settable = InodeFlags.SYNC | InodeFlags.IMMUTABLE | InodeFlags.APPEND | InodeFlags.NODUMP |
    InodeFlags.NOATIME | InodeFlags.PROJINHERIT;
  if (change.flags !== undefined && (change.flags & ~settable) !== 0) {
    throw new Ext4Error("INVALID", `flags 0x${change.flags.toString(16)} cannot be set`);
  }
  const t = now(ctx);
  const mode = change.perm === undefined ? f.mode : (f.mode & 0o170000) | (change.perm & 0o7777);
  await store(ctx, ino, raw, {
    ...f,
    mode,
    uid: change.uid ?? f.uid,
    gid: change.gid ?? f.gid,
    atime: change.atime ?? f.atime,
    mtime: change.mtime ?? f.mtime,
    flags: change.flags === undefined ? f.flags : (f.flags & ~settable) | change.flags,
    ctime: t,
  });
  // chmod also rewrites the access ACL's owner/mask/other entries (posix_acl_chmod).
  if (change.perm !== undefined) {
    await ctx.tx.discardOnError(async () => {
      await chmodAccessAcl(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, mode, t);
    });
  }
}

/**
 * `mode` without the set-id bits the kernel's `setattr_should_drop_suidgid` drops on a write,
 * truncate or chown by a caller without CAP_FSETID: set-user-ID always, set-group-ID when group
 * execute is set (without it the bit means mandatory locking and stays). Directories keep both.
 *
 * @example
 * ```ts
 * import { withoutSetId } from "./attr.ts";
 * console.log(withoutSetId(0o106755).toString(8), withoutSetId(0o102644).toString(8)); // 100755 102644
 * ```
 */
export function withoutSetId(mode: number): number {
  if ((mode & 0o170000) === 0o040000) return mode;
  let kept = mode & ~S_ISUID;
  if ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) kept &= ~S_ISGID;
  return kept;
}

/**
 * Drops the set-id bits of inode `ino` as {@link withoutSetId} says (what a FUSE server told by
 * HANDLE_KILLPRIV_V2's flags does for the kernel); ctime set when a bit goes.
 *
 * @example
 * ```ts ignore
 * await dropSetId(ctx, ino); // 06755 -> 0755, 02644 stays
 * ```
 */
export async function dropSetId(ctx: OpContext, ino: number): Promise<void> {
  const { raw, f } = await load(ctx, ino);
  const mode = withoutSetId(f.mode);
  if (mode === f.mode) return;
  await store(ctx, ino, raw, { ...f, mode, ctime: now(ctx) });
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o0010;
