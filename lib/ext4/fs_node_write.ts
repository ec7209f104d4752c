/**
 * Writing by inode number and directory entry, as a kernel-facing server (the FUSE mount)
 * needs it: the caller holds node ids, not paths. Each method is one transaction of the
 * writable `Ext4`'s writer over the inode-level operations that already exist (lib/ext4/namei.ts,
 * unlink.ts, rename.ts, attr.ts, file_update.ts, xattr.ts); nothing here is a second
 * implementation of them. What it adds is what the kernel's VFS does around them for a
 * local filesystem: the owner of a new inode (`inode_init_owner`: a set-gid directory passes
 * on its group, and its set-gid bit to subdirectories), the umask applied only when the
 * parent has no default ACL (`posix_acl_create`), and open counts so that a file unlinked
 * while open stays on the orphan list until its last release.
 *
 * @module
 */

import { Errno, Ext4Error } from "../errors.ts";
import { InodeFlags, type Timespec } from "../ondisk/inode.ts";
import { readDefaultAcl } from "./acl.ts";
import { dropSetId, setAttributes, withoutSetId } from "./attr.ts";
import type { OpContext } from "./context.ts";
import { truncateFile, writeFileRange } from "./file_update.ts";
import { getInode } from "./inode.ts";
import {
  addEntry,
  changeLinks,
  checkFree,
  createFile,
  createSymlink,
  isDir,
  linkInode,
  load,
  lookupEntry,
  makeDirectory,
  makeNode,
  newInode,
  peek,
} from "./namei.ts";
import { direntTypeOfMode } from "../ondisk/dirent.ts";
import { orphanIfUnlinked, removeOrphan } from "./orphan.ts";
import type { OpenFiles } from "./open_files.ts";
import {
  allocateInSteps,
  punchInSteps,
  releaseInSteps,
  truncateInSteps,
  unlinkBounded,
} from "./long_ops.ts";
import {
  checkRegular,
  fallocateInode,
  type FallocateOptions,
  prepareXattrChange,
  unlinkOpenTarget,
} from "./path_ops.ts";
import { renameEntry } from "./rename.ts";
import { removeDirectory } from "./unlink.ts";
import { setXattr } from "./xattr.ts";
import { trimFreeSpace, type TrimRange } from "./trim.ts";
import { markRecorded, recordFsError, wasRecorded } from "./fs_error.ts";
import type { Ext4Writer } from "./writer.ts";

/** The inode flags lsattr shows (the kernel's EXT4_FL_USER_VISIBLE). */
const FL_USER_VISIBLE = 0x705bdfff;
/** The flags FS_IOC_SETFLAGS may change (EXT4_FL_USER_MODIFIABLE); the rest are kept. */
const FL_USER_MODIFIABLE = 0x604bc0ff;
/** Of those, the ones ext4ts changes (lib/ext4/attr.ts); others are EOPNOTSUPP. */
const FL_SETTABLE = InodeFlags.SYNC | InodeFlags.IMMUTABLE | InodeFlags.APPEND |
  InodeFlags.NODUMP | InodeFlags.NOATIME | InodeFlags.PROJINHERIT;
const IMMUTABLE = InodeFlags.IMMUTABLE;
const FIXED = InodeFlags.IMMUTABLE | InodeFlags.APPEND;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_ISGID = 0o2000;

/** Who creates a new inode, and with which mode. */
export interface NodeCreateOptions {
  /** The type bits and permissions asked for (as the kernel passes them to `create`/`mknod`). */
  mode: number;
  /** The creator's (fs)uid: the owner. */
  uid: number;
  /** The creator's (fs)gid: the group unless the parent directory is set-gid. */
  gid: number;
  /** Applied when the parent has no default ACL (`posix_acl_create`); 0 when already applied. */
  umask?: number;
  /** Major and minor numbers of a device node. */
  rdev?: { major: number; minor: number };
}

/** What {@link Ext4NodeWriter.setattr} changes; absent fields are kept. */
export interface NodeAttributeChange {
  /** Permission bits with set-id and sticky bits. */
  perm?: number;
  /** New owner. */
  uid?: number;
  /** New group. */
  gid?: number;
  /** New size of a regular file (blocks past it freed, growing adds a hole). */
  size?: number;
  /** New access time. */
  atime?: Timespec;
  /** New modification time. */
  mtime?: Timespec;
  /**
   * The times are "now" (utimensat with no times): allowed on an append-only inode, as by the
   * kernel, where explicit times, modes and owners are not.
   */
  timesNow?: boolean;
  /**
   * Drop the set-id bits as the kernel does on a truncate by a caller without CAP_FSETID and
   * on any chown of a non-directory (FUSE's FATTR_KILL_SUIDGID); ignored with `perm`.
   */
  dropSetId?: boolean;
}

/** What the facade lends an {@link Ext4NodeWriter}. */
export interface NodeWriterHost {
  /** The writer (throws READ_ONLY on a read-only filesystem, EBADF once closed). */
  writerFor(what: string): Ext4Writer;
  /** The open counts of the facade (the same table its own writable files use). */
  openFiles(): OpenFiles;
  /** A handle of `ino` closed: at the last close, an unlinked inode is freed. */
  release(ino: number): Promise<void>;
  /** Makes everything written durable. */
  sync(): Promise<void>;
}

/**
 * Inode-level writes of a writable `Ext4` (`fs.nodeWriter()`): every method one transaction;
 * errors are `Ext4Error`s carrying the errno the kernel's ext4 answers.
 *
 * @example
 * ```ts ignore
 * const nw = fs.nodeWriter();
 * const ino = await nw.create(2, "notes", { mode: 0o100644, uid: 1000, gid: 1000, umask: 0o022 });
 * await nw.write(ino, 0, new TextEncoder().encode("hello\n"));
 * await nw.release(ino);
 * ```
 */
export class Ext4NodeWriter {
  readonly #host: NodeWriterHost;

  private constructor(host: NodeWriterHost) {
    this.#host = host;
  }

  /** Made by the facade (`Ext4.nodeWriter()`) over what it lends. */
  static over(host: NodeWriterHost): Ext4NodeWriter {
    return new Ext4NodeWriter(host);
  }

  /**
   * One transaction. A corruption it finds (CORRUPT) is recorded in the superblock, as the
   * kernel's `ext4_error` records it, in a transaction of its own after the failed one was
   * discarded (unless the code that found it recorded it already); the error is rethrown.
   * `what` is "operation … inode", e.g. "write 12", "mkdir in 2": the function and inode
   * recorded.
   */
  #tx<T>(what: string, fn: (ctx: OpContext) => Promise<T>): Promise<T> {
    return this.#recording(what, (w) => w.transaction(fn));
  }

  /**
   * Runs `run` (one transaction, or a long operation's bounded steps) on the writer; a
   * corruption it finds is recorded as {@link #tx} says.
   */
  async #recording<T>(what: string, run: (w: Ext4Writer) => Promise<T>): Promise<T> {
    const w = this.#host.writerFor(what);
    try {
      return await run(w);
    } catch (e) {
      if (e instanceof Ext4Error && e.code === "CORRUPT" && !wasRecorded(e)) {
        const words = what.split(" ");
        const info = { func: words[0], ino: Number(words.at(-1)) || 0 };
        // The corruption is what the caller must hear about, not a failure to record it.
        await w.transaction((ctx) => recordFsError(ctx.tx, ctx.sb, info)).catch(() => {});
        markRecorded(e);
      }
      throw e;
    }
  }

  /**
   * A transaction that counts an inode open (`count`, inside it: an unlink queued behind sees
   * the file open); the count is taken back when the transaction fails.
   */
  async #txOpening<T>(
    what: string,
    fn: (ctx: OpContext, count: (ino: number) => void) => Promise<T>,
  ): Promise<T> {
    const files = this.#host.openFiles();
    let counted = 0;
    try {
      return await this.#tx(what, (ctx) =>
        fn(ctx, (ino) => {
          files.open(ino);
          counted = ino;
        }));
    } catch (e) {
      if (counted) files.close(counted);
      throw e;
    }
  }

  /**
   * Creates regular file `name` in `parent` and counts it open (CREATE is create + open);
   * EXISTS when the name is taken. Returns the new inode.
   */
  create(parent: number, name: Uint8Array, o: NodeCreateOptions): Promise<number> {
    return this.#txOpening(`create in ${parent}`, async (ctx, count) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      const owner = await initOwner(ctx, parent, 0o100000 | (o.mode & 0o7777), o);
      const ino = await createFile(ctx, parent, name, new Uint8Array(0), owner);
      count(ino);
      return ino;
    });
  }

  /**
   * O_TMPFILE: a regular file with no name, counted open and on the orphan list (so a crash
   * before its last release frees it), which `link` may give a name later. Returns the inode.
   */
  tmpfile(parent: number, o: NodeCreateOptions): Promise<number> {
    return this.#txOpening(`tmpfile in ${parent}`, async (ctx, count) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      const owner = await initOwner(ctx, parent, 0o100000 | (o.mode & 0o7777), o);
      const { ino } = await ctx.tx.discardOnError(() =>
        newInode(ctx, parent, 0o100000 | owner.perm, owner)
      );
      await changeLinks(ctx, ino, -1);
      await orphanIfUnlinked(ctx, ino);
      count(ino);
      this.#host.openFiles().openedUnlinked(ino);
      return ino;
    });
  }

  /**
   * Counts an open of inode `ino` (any access mode: an open file outlives its last name);
   * with `truncate`, a regular file is cut to 0 bytes in the same transaction.
   */
  async open(
    ino: number,
    options: { write?: boolean; append?: boolean; truncate?: boolean } = {},
  ): Promise<void> {
    if (!options.write && !options.truncate) return this.#host.openFiles().open(ino);
    await this.#txOpening(`open ${ino}`, async (ctx, count) => {
      // may_open: an immutable file is not opened for writing, an append-only one only to
      // append (and never truncated).
      await refuseFlagged(ctx, ino, IMMUTABLE);
      if (!options.append || options.truncate) await refuseFlagged(ctx, ino, FIXED);
      if (options.truncate) {
        await checkRegular(ctx, ino, `inode ${ino}`);
        await truncateFile(ctx, ino, 0);
      }
      count(ino);
    });
  }

  /** FS_IOC_GETFLAGS / FS_IOC_FSGETXATTR: the inode flags lsattr shows, and the project id. */
  async getFlags(ino: number): Promise<{ flags: number; projid: number }> {
    const f = await this.#tx(`getflags ${ino}`, async (ctx) => (await load(ctx, ino)).f);
    return { flags: (f.flags & FL_USER_VISIBLE) >>> 0, projid: f.projid };
  }

  /**
   * FS_IOC_SETFLAGS (chattr): the user-modifiable flags become `flags`, the others are kept;
   * a change ext4ts cannot make (e.g. data journalling, extent migration) is UNSUPPORTED. The
   * kernel has checked the caller may change append-only and immutable.
   */
  setFlags(ino: number, flags: number): Promise<void> {
    return this.#tx(`setflags ${ino}`, async (ctx) => {
      const old = (await load(ctx, ino)).f.flags;
      const wanted = (flags & FL_USER_MODIFIABLE) | (old & ~FL_USER_MODIFIABLE);
      // ext4_ioctl_check_immutable: an inode that stays immutable changes no other flag.
      if (old & wanted & IMMUTABLE && (old & ~IMMUTABLE) !== (wanted & ~IMMUTABLE)) {
        await refuseFlagged(ctx, ino, IMMUTABLE);
      }
      const changed = (wanted ^ old) & ~FL_SETTABLE;
      if (changed) {
        throw new Ext4Error(
          "UNSUPPORTED",
          `inode flags 0x${changed.toString(16)} cannot be changed`,
        );
      }
      await setAttributes(ctx, ino, { flags: wanted & FL_SETTABLE });
    });
  }

  /** Counts a close of inode `ino`; the last close frees an inode that lost its last name. */
  release(ino: number): Promise<void> {
    return this.#host.release(ino);
  }

  /** Makes a device node, FIFO or socket (`mode` carries the type); returns the inode. */
  mknod(parent: number, name: Uint8Array, o: NodeCreateOptions): Promise<number> {
    return this.#tx(`mknod in ${parent}`, async (ctx) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      const type = o.mode & S_IFMT;
      if (type === 0o100000) {
        // mknod(2) of a regular file: the kernel's vfs_create.
        return await createFile(
          ctx,
          parent,
          name,
          new Uint8Array(0),
          await initOwner(ctx, parent, o.mode, o),
        );
      }
      const owner = await initOwner(ctx, parent, o.mode, o);
      return await makeNode(ctx, parent, name, type | (owner.perm & 0o7777), {
        ...owner,
        major: o.rdev?.major,
        minor: o.rdev?.minor,
      });
    });
  }

  /** Makes directory `name` in `parent`; returns the inode. */
  mkdir(parent: number, name: Uint8Array, o: NodeCreateOptions): Promise<number> {
    return this.#tx(`mkdir in ${parent}`, async (ctx) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      const owner = await initOwner(ctx, parent, S_IFDIR | (o.mode & 0o7777), o);
      return await makeDirectory(ctx, parent, name, owner);
    });
  }

  /** Makes symlink `name` → `target` in `parent` (mode 0777, no umask); returns the inode. */
  symlink(
    parent: number,
    name: Uint8Array,
    target: Uint8Array,
    o: { uid: number; gid: number },
  ): Promise<number> {
    if (target.length === 0) return Promise.reject(new Ext4Error("NOT_FOUND", "empty target"));
    return this.#tx(`symlink in ${parent}`, async (ctx) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      const owner = await initOwner(ctx, parent, 0o120777, o);
      return await createSymlink(ctx, parent, name, target, owner);
    });
  }

  /**
   * Adds name `name` in `parent` for inode `ino` (not a directory: EPERM). An open inode
   * without names (O_TMPFILE; the kernel decides which may be linked) leaves the orphan list.
   */
  link(ino: number, parent: number, name: Uint8Array): Promise<void> {
    const files = this.#host.openFiles();
    return this.#tx(`link in ${parent}`, async (ctx) => {
      await refuseFlagged(ctx, parent, IMMUTABLE);
      await refuseFlagged(ctx, ino, FIXED);
      const { f } = await load(ctx, ino);
      if (isDir(f)) {
        throw new Ext4Error("PERMISSION", "hard links to directories are not allowed", {
          errno: Errno.EPERM,
        });
      }
      if (f.linksCount === 0 && files.isOpen(ino)) {
        await checkFree(ctx, parent, name);
        await ctx.tx.discardOnError(async () => {
          await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
          await changeLinks(ctx, ino, 1);
          await addEntry(ctx, parent, name, ino, direntTypeOfMode(f.mode));
        });
        return;
      }
      await linkInode(ctx, parent, name, ino);
    });
  }

  /**
   * Removes name `name` (not a directory) of `parent`; an inode losing its last name while
   * open stays, on the orphan list, until its last release.
   */
  unlink(parent: number, name: Uint8Array): Promise<void> {
    const files = this.#host.openFiles();
    // The last name of a file too big to free in one transaction: the name goes first (the
    // inode kept on the orphan list), then its blocks in bounded steps (lib/ext4/long_ops.ts).
    return this.#recording(`unlink in ${parent}`, async (w) => {
      const big = await w.transaction(async (ctx) => {
        await refuseFlagged(ctx, parent, FIXED);
        const ino = await lookupEntry(ctx, parent, name);
        if (ino) await refuseFlagged(ctx, ino, FIXED);
        return await unlinkBounded(w, ctx, parent, name, (i) => files.isOpen(i), ino);
      });
      if (big) await w.steps((step) => releaseInSteps(step, w, big));
    });
  }

  /** Removes the empty directory `name` of `parent`. */
  rmdir(parent: number, name: Uint8Array): Promise<void> {
    return this.#tx(`rmdir in ${parent}`, async (ctx) => {
      await refuseFlagged(ctx, parent, FIXED);
      const ino = await lookupEntry(ctx, parent, name);
      if (!ino) throw new Ext4Error("NOT_FOUND", "no such entry");
      await refuseFlagged(ctx, ino, FIXED);
      if (!isDir((await load(ctx, ino)).f)) {
        throw new Ext4Error("NOT_DIRECTORY", "not a directory");
      }
      await removeDirectory(ctx, parent, name);
    });
  }

  /**
   * rename(2) / renameat2(2) of `name` in `parent` to `newName` in `newParent`; a replaced
   * file that is open stays until its last release.
   */
  rename(
    parent: number,
    name: Uint8Array,
    newParent: number,
    newName: Uint8Array,
    options: { noReplace?: boolean; exchange?: boolean } = {},
  ): Promise<void> {
    const files = this.#host.openFiles();
    return this.#tx(`rename in ${parent}`, async (ctx) => {
      const src = await lookupEntry(ctx, parent, name);
      if (!src) throw new Ext4Error("NOT_FOUND", "no such entry");
      const dst = await lookupEntry(ctx, newParent, newName);
      await refuseFlagged(ctx, parent, FIXED);
      await refuseFlagged(ctx, newParent, dst ? FIXED : IMMUTABLE);
      await refuseFlagged(ctx, src, FIXED);
      if (dst) await refuseFlagged(ctx, dst, FIXED);
      // Looked up once: renameEntry is told, unless an open target's name went first.
      let known: { src: number; dst: number } | undefined = { src, dst };
      if (dst && dst !== src && !options.exchange && !options.noReplace && files.isOpen(dst)) {
        await unlinkOpenTarget(ctx, src, { parent: newParent, name: newName, ino: dst });
        known = undefined;
      }
      await renameEntry(ctx, parent, name, newParent, newName, options, known);
    });
  }

  /** chmod, chown, truncate and utimes of inode `ino` in one transaction; ctime becomes now. */
  setattr(ino: number, change: NodeAttributeChange): Promise<void> {
    const { size, timesNow, dropSetId: drop, ...rest } = change;
    const timesOnly = rest.perm === undefined && rest.uid === undefined &&
      rest.gid === undefined && size === undefined;
    const others = Object.values(rest).some((v) => v !== undefined);
    // After the other changes: a chown's own mode is the one whose set-id bits go.
    const dropAfter = async (ctx: OpContext) => {
      if (drop && rest.perm === undefined) await dropSetId(ctx, ino);
    };
    if (size === undefined) {
      return this.#tx(`setattr ${ino}`, async (ctx) => {
        await refuseFlagged(ctx, ino, timesOnly && timesNow ? IMMUTABLE : FIXED);
        if (others) await setAttributes(ctx, ino, rest);
        await dropAfter(ctx);
      });
    }
    // A truncate: one transaction, or bounded steps when it frees more than one may hold (the
    // inode on the orphan list meanwhile); the other attributes after it, as the VFS orders
    // them.
    return this.#recording(`setattr ${ino}`, async (w) => {
      await truncateInSteps(w, async (ctx) => {
        await refuseFlagged(ctx, ino, FIXED);
        await checkRegular(ctx, ino, `inode ${ino}`);
        return ino;
      }, size);
      if (others || drop) {
        await w.transaction(async (ctx) => {
          if (others) await setAttributes(ctx, ino, rest);
          await dropAfter(ctx);
        });
      }
    });
  }

  /**
   * Writes `data` at byte `offset` of regular file `ino`; returns the bytes written. With
   * `dropSetId` (a writer without CAP_FSETID) the set-id bits go as the kernel drops them;
   * with `restamp` (its times were shown since a write set them) the times change even
   * within the coarse clock's tick (lib/ext4/file_update.ts `WriteRangeOptions`).
   */
  async write(
    ino: number,
    offset: number,
    data: Uint8Array,
    options: { dropSetId?: boolean; restamp?: boolean } = {},
  ): Promise<number> {
    await this.#recording(`write ${ino}`, (w) =>
      w.transaction(async (ctx) => {
        // The cached record, not a decoded copy: only flags, size and mode are read.
        const f = await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
        refuseFlags(ino, f.flags, IMMUTABLE);
        // Append-only: only at the end (opens without O_APPEND were refused already).
        if ((f.flags & InodeFlags.APPEND) && offset !== f.size) refuseFlags(ino, f.flags, FIXED);
        if (options.dropSetId && withoutSetId(f.mode) !== f.mode) await dropSetId(ctx, ino);
        // Outside a group the data is written by the commit this call awaits: not copied.
        await writeFileRange(ctx, ino, offset, data, {
          borrow: !w.inGroup,
          restamp: options.restamp,
        });
      }));
    return data.length;
  }

  /** fallocate(2) of regular file `ino` (see {@link FallocateOptions}). */
  fallocate(
    ino: number,
    offset: number,
    length: number,
    options: FallocateOptions,
  ): Promise<void> {
    // vfs_fallocate: immutable never; append-only only to allocate (with or without KEEP_SIZE).
    const allocating = (options.mode ?? "allocate") === "allocate";
    const check = async (ctx: OpContext) => {
      await refuseFlagged(ctx, ino, allocating ? IMMUTABLE : FIXED);
      await checkRegular(ctx, ino, `inode ${ino}`);
      return ino;
    };
    if (options.mode === "punchHole") {
      // A huge hole is freed in bounded steps (lib/ext4/long_ops.ts).
      return this.#recording(`fallocate ${ino}`, (w) => punchInSteps(w, check, offset, length));
    }
    if (allocating) {
      // A huge range is allocated in bounded chunks, as the kernel's ext4_alloc_file_blocks.
      return this.#recording(
        `fallocate ${ino}`,
        (w) => allocateInSteps(w, check, offset, length, { keepSize: options.keepSize }),
      );
    }
    return this.#tx(`fallocate ${ino}`, async (ctx) => {
      await check(ctx);
      await fallocateInode(ctx, ino, offset, length, options);
    });
  }

  /** Sets (`value`) or removes (null) extended attribute `name` of inode `ino`. */
  setXattr(
    ino: number,
    name: string,
    value: Uint8Array | null,
    options: { create?: boolean; replace?: boolean } = {},
  ): Promise<void> {
    return this.#tx(`setxattr ${ino}`, async (ctx) => {
      await refuseFlagged(ctx, ino, FIXED);
      await prepareXattrChange(ctx, ino, name, `inode ${ino}`);
      await setXattr(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, name, value, options);
    });
  }

  /**
   * FITRIM: discards the free space in `range` on the device (lib/ext4/trim.ts); returns the
   * bytes discarded. UNSUPPORTED when the device cannot discard.
   */
  trim(range: TrimRange, signal?: AbortSignal): Promise<number> {
    return this.#recording("trim", (w) => trimFreeSpace(w, range, { signal }));
  }

  /** Makes everything written so far durable (fsync). */
  sync(): Promise<void> {
    return this.#host.sync();
  }
}

/**
 * EPERM when inode `ino` has one of `flags` (immutable, append-only): the checks the VFS makes
 * from the kernel inode's own flags, which a FUSE inode does not carry, so the daemon makes them.
 */
async function refuseFlagged(ctx: OpContext, ino: number, flags: number): Promise<void> {
  refuseFlags(ino, (await peek(ctx, ino)).flags, flags);
}

/** EPERM when inode `ino`'s flags `have` include any of `flags` (immutable, append-only). */
function refuseFlags(ino: number, have: number, flags: number): void {
  const f = have & flags;
  if (!f) return;
  const what = f & IMMUTABLE ? "immutable" : "append-only";
  throw new Ext4Error("PERMISSION", `inode ${ino} is ${what}`, { errno: Errno.EPERM });
}

/**
 * The owner, group and permissions of a new inode of `mode` in `parent`, as the kernel's
 * `inode_init_owner` and `posix_acl_create` make them: a set-gid parent gives its group (and
 * its set-gid bit to a directory); the umask applies only without a default ACL (with one,
 * the ACL masks the mode when the inode is made).
 */
async function initOwner(
  ctx: OpContext,
  parent: number,
  mode: number,
  o: { uid: number; gid: number; umask?: number },
): Promise<{ perm: number; uid: number; gid: number }> {
  const p = await peek(ctx, parent);
  if (!isDir(p)) throw new Ext4Error("NOT_DIRECTORY", `inode ${parent} is not a directory`);
  let perm = mode & 0o7777;
  let gid = o.gid;
  if (p.mode & S_ISGID) {
    gid = p.gid;
    if ((mode & S_IFMT) === S_IFDIR) perm |= S_ISGID;
  }
  if (o.umask && (mode & S_IFMT) !== 0o120000) {
    if (!(await readDefaultAcl(ctx.tx, ctx.sb, ctx.gdt, parent))) perm &= ~(o.umask & 0o777);
  }
  return { perm, uid: o.uid, gid };
}
