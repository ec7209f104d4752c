/**
 * The write side of the ext4 FUSE backend: {@link FuseWriteOperations} over the writable
 * `Ext4`'s inode-level writer (lib/ext4/fs_node_write.ts). Each request is one transaction,
 * committed before the reply, so a reply is a completed change and FLUSH has nothing to do.
 * Every entry and SETATTR reply carries the attributes as they are after the change.
 *
 * - New inodes belong to the caller's uid/gid (the request header), as the kernel's
 *   `inode_init_owner` makes them; the umask travels in the request (FUSE_DONT_MASK) and is
 *   applied only where the parent has no default ACL, as ext4 does.
 * - Permission checks are the kernel's (`default_permissions`); the daemon runs as root.
 * - A freed and reused inode number gets a new random generation: the kernel then treats an
 *   old node id it still holds as stale (its I/O fails) and makes a fresh node for the new file.
 *
 * @module
 */

import type { Ext4NodeWriter } from "../../lib/ext4/fs_node_write.ts";
import { Errno, Ext4Error } from "../../lib/errors.ts";
import { withoutSetId } from "../../lib/ext4/attr.ts";
import type {
  AttrReply,
  CreateRequest,
  EntryOut,
  FallocateRequest,
  FuseTime,
  FuseWriteOperations,
  OpenReply,
  RequestContext,
  SetattrRequest,
} from "./ops.ts";
import { FITRIM, FuseError } from "./ops.ts";
import { decodeDev } from "./protocol_replies.ts";
import { RenameFlag } from "./protocol_requests.ts";

/** The inode-level writer the operations call (the writable `Ext4`'s `nodeWriter()`). */
export type NodeWriterLike = Pick<
  Ext4NodeWriter,
  | "create"
  | "tmpfile"
  | "open"
  | "release"
  | "mknod"
  | "mkdir"
  | "symlink"
  | "link"
  | "unlink"
  | "rmdir"
  | "rename"
  | "setattr"
  | "write"
  | "fallocate"
  | "setXattr"
  | "getFlags"
  | "setFlags"
  | "trim"
  | "sync"
>;

/** What a detected corruption does to the mount (`errors=`, else the superblock's `s_errors`). */
export type ErrorPolicy = "continue" | "remount-ro" | "panic";

/** What the write operations borrow from the read side (attributes and node ids). */
export interface WriteOpsHost {
  /** `errors=`: after a corruption, go on (continue), refuse changes (remount-ro), or stop. */
  errors?: ErrorPolicy;
  /** The daemon's log. */
  log?: (line: string) => void;
  /** `errors=panic`: aborts the FUSE connection (nothing is written after). */
  panic?: () => void;
  /** The inode number of a node id. */
  inoOf(nodeid: number): number;
  /** The LOOKUP answer for inode `ino` as it is now. */
  entryOf(ino: number): Promise<EntryOut>;
  /** The GETATTR answer for inode `ino` as it is now. */
  attrOf(ino: number): Promise<AttrReply>;
  /** Up to `length` bytes of regular file `ino` at `offset` (short at its end). */
  read(ino: number, offset: number, length: number): Promise<Uint8Array>;
}

/** The node writer's methods that change the filesystem (the errors= policy applies). */
const CHANGES: ReadonlySet<string | symbol> = new Set([
  "create",
  "tmpfile",
  "mknod",
  "mkdir",
  "symlink",
  "link",
  "unlink",
  "rmdir",
  "rename",
  "setattr",
  "write",
  "fallocate",
  "setXattr",
  "setFlags",
  "trim",
]);
/** Files remembered as stamped by a WRITE and not shown since (see `timesShown`). */
const STAMPS_UNSEEN_MAX = 4096;
/** Largest copy_file_range step: what one WRITE transaction may carry at most, too. */
const COPY_CHUNK = 8 << 20;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
/** FS_IOC_GETFLAGS and FS_IOC_SETFLAGS as the kernel's fileattr calls pass them. */
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
/** FS_IOC_FSGETXATTR: the kernel asks for it before a FS_IOC_SETFLAGS (vfs_fileattr_set). */
const FS_IOC_FSGETXATTR = 0x801c581f;
const FSXATTR_SIZE = 28;
/** `struct fstrim_range`: start, len, minlen (u64 each). */
const FSTRIM_RANGE_SIZE = 24;
/** Inode flags → FS_XFLAG_* (immutable, append, sync, noatime, nodump, projinherit). */
const XFLAGS: [number, number][] = [
  [0x10, 0x8],
  [0x20, 0x10],
  [0x8, 0x20],
  [0x80, 0x40],
  [0x40, 0x80],
  [0x20000000, 0x200],
];
const ENOTTY = 25;
const utf8 = new TextDecoder();

/** The time "now" stands for in SETATTR (ATIME_NOW / MTIME_NOW), as the kernel stamps it. */
function nowTime(): FuseTime {
  const ms = Date.now();
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: (ms - sec * 1000) * 1_000_000 };
}

function timeOf(t: FuseTime | "now" | undefined): FuseTime | undefined {
  return t === "now" ? nowTime() : t;
}

/**
 * {@link FuseWriteOperations} over an inode-level writer.
 *
 * @example
 * ```ts ignore
 * const writer = new Ext4WriteOperations(fs.nodeWriter(), host);
 * ```
 */
export class Ext4WriteOperations implements FuseWriteOperations {
  readonly #nw: NodeWriterLike;
  readonly #host: WriteOpsHost;
  /** Set once a corruption made `errors=remount-ro` or `panic` stop every change. */
  #stopped: "remount-ro" | "panic" | undefined;
  /**
   * Files a WRITE stamped whose times no reply has shown since ({@link timesShown}): their
   * next WRITE may keep the times within the coarse clock's tick. Any other file's WRITE
   * restamps them, as the kernel's multigrain timestamps do after a stat.
   */
  readonly #stampsUnseen = new Set<number>();

  /** Writes through `nw`; attributes and node ids come from `host`. */
  constructor(nw: NodeWriterLike, host: WriteOpsHost) {
    // Every change goes through the errors= policy (#change); release, sync and reads do not.
    this.#nw = new Proxy(nw, {
      get: (target, key, receiver) => {
        const v = Reflect.get(target, key, receiver);
        if (typeof v !== "function" || !CHANGES.has(key)) return v;
        return (...args: unknown[]) => this.#change(() => v.apply(target, args));
      },
    });
    this.#host = host;
  }

  /**
   * Runs one change under the `errors=` policy: refused once stopped (EROFS, as the kernel's
   * remount-ro answers; EIO after panic); a corruption it detects stops the next ones.
   */
  async #change<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#stopped) {
      throw new FuseError(
        this.#stopped === "panic" ? Errno.EIO : Errno.EROFS,
        `changes stopped after a filesystem error (errors=${this.#stopped})`,
      );
    }
    try {
      return await fn();
    } catch (e) {
      if (e instanceof Ext4Error && e.code === "CORRUPT") this.#corrupt(e);
      throw e;
    }
  }

  #corrupt(e: Ext4Error): void {
    const policy = this.#host.errors ?? "continue";
    this.#host.log?.(`filesystem error: ${e.message} (errors=${policy})`);
    if (policy === "continue" || this.#stopped) return;
    this.#stopped = policy;
    if (policy === "remount-ro") {
      this.#host.log?.("errors=remount-ro: every further change is refused (EROFS)");
    } else {
      this.#host.log?.("errors=panic: aborting the FUSE connection");
      this.#host.panic?.();
    }
  }

  /**
   * OPEN of a file on a read-write mount: counted (an open file outlives its last name);
   * O_TRUNC on a write open truncates (the kernel also sends SETATTR without ATOMIC_O_TRUNC).
   */
  async open(nodeid: number, flags: number): Promise<OpenReply> {
    const write = (flags & O_ACCMODE) !== 0;
    const open = () =>
      this.#nw.open(this.#host.inoOf(nodeid), {
        write,
        append: (flags & O_APPEND) !== 0,
        truncate: write && (flags & O_TRUNC) !== 0,
      });
    // Opening for writing is refused once changes are (remount-ro answers EROFS there too).
    await (write ? this.#change(open) : open());
    // Every change goes through this kernel, but a new open re-reads: simple and always right.
    return { fh: 0 };
  }

  /** RELEASE: the last release of a file without names frees it. */
  release(nodeid: number): Promise<void> {
    return this.#nw.release(this.#host.inoOf(nodeid));
  }

  async setattr(_ctx: RequestContext, nodeid: number, c: SetattrRequest): Promise<AttrReply> {
    const ino = this.#host.inoOf(nodeid);
    await this.#nw.setattr(ino, {
      perm: c.mode,
      uid: c.uid,
      gid: c.gid,
      size: c.size,
      atime: timeOf(c.atime),
      mtime: timeOf(c.mtime),
      timesNow: c.atime !== undefined && c.atime === "now" && c.mtime === "now",
      dropSetId: c.dropSetId,
    });
    return await this.#host.attrOf(ino);
  }

  async mknod(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    r: CreateRequest,
  ): Promise<EntryOut> {
    const ino = await this.#nw.mknod(this.#host.inoOf(parent), name, {
      mode: r.mode,
      uid: ctx.uid,
      gid: ctx.gid,
      umask: r.umask,
      rdev: decodeDev(r.rdev ?? 0),
    });
    return await this.#host.entryOf(ino);
  }

  async mkdir(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    r: CreateRequest,
  ): Promise<EntryOut> {
    const ino = await this.#nw.mkdir(this.#host.inoOf(parent), name, {
      mode: r.mode,
      uid: ctx.uid,
      gid: ctx.gid,
      umask: r.umask,
    });
    return await this.#host.entryOf(ino);
  }

  async symlink(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    target: Uint8Array,
  ): Promise<EntryOut> {
    const ino = await this.#nw.symlink(this.#host.inoOf(parent), name, target, {
      uid: ctx.uid,
      gid: ctx.gid,
    });
    return await this.#host.entryOf(ino);
  }

  async link(
    _ctx: RequestContext,
    nodeid: number,
    parent: number,
    name: Uint8Array,
  ): Promise<EntryOut> {
    const ino = this.#host.inoOf(nodeid);
    await this.#nw.link(ino, this.#host.inoOf(parent), name);
    return await this.#host.entryOf(ino);
  }

  unlink(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    return this.#nw.unlink(this.#host.inoOf(parent), name);
  }

  rmdir(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    return this.#nw.rmdir(this.#host.inoOf(parent), name);
  }

  rename(
    _ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    newParent: number,
    newName: Uint8Array,
    flags: number,
  ): Promise<void> {
    return this.#nw.rename(
      this.#host.inoOf(parent),
      name,
      this.#host.inoOf(newParent),
      newName,
      {
        noReplace: (flags & RenameFlag.NOREPLACE) !== 0,
        exchange: (flags & RenameFlag.EXCHANGE) !== 0,
      },
    );
  }

  async create(
    ctx: RequestContext,
    parent: number,
    name: Uint8Array,
    r: CreateRequest,
    _flags: number,
  ): Promise<{ entry: EntryOut; open: OpenReply }> {
    const ino = await this.#nw.create(this.#host.inoOf(parent), name, {
      mode: r.mode,
      uid: ctx.uid,
      gid: ctx.gid,
      umask: r.umask,
    });
    return await this.#opened(ino);
  }

  /** The reply of CREATE and TMPFILE; a failure to answer must not leave the open counted. */
  async #opened(ino: number): Promise<{ entry: EntryOut; open: OpenReply }> {
    try {
      return { entry: await this.#host.entryOf(ino), open: { fh: 0 } };
    } catch (e) {
      await this.#nw.release(ino);
      throw e;
    }
  }

  async tmpfile(
    ctx: RequestContext,
    parent: number,
    r: CreateRequest,
  ): Promise<{ entry: EntryOut; open: OpenReply }> {
    const ino = await this.#nw.tmpfile(this.#host.inoOf(parent), {
      mode: r.mode,
      uid: ctx.uid,
      gid: ctx.gid,
      umask: r.umask,
    });
    return await this.#opened(ino);
  }

  /**
   * COPY_FILE_RANGE: read from the source, written to the target in one WRITE's transaction
   * (at most {@link COPY_CHUNK} per request; the kernel asks again for the rest).
   */
  async copyFileRange(
    ctx: RequestContext,
    nodeid: number,
    offset: number,
    nodeidOut: number,
    offsetOut: number,
    length: number,
  ): Promise<number> {
    const data = await this.#host.read(
      this.#host.inoOf(nodeid),
      offset,
      Math.min(length, COPY_CHUNK),
    );
    if (data.length === 0) return 0;
    // No flag tells: the kernel's VFS drops set-id bits for a caller without CAP_FSETID.
    return await this.#nw.write(this.#host.inoOf(nodeidOut), offsetOut, data, {
      dropSetId: ctx.uid !== 0,
    });
  }

  write(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
    data: Uint8Array,
    options: { dropSetId?: boolean } = {},
  ): Promise<number> {
    const ino = this.#host.inoOf(nodeid);
    const restamp = !this.#stampsUnseen.has(ino);
    // Bounded: forgetting a file only costs its next WRITE an inode update.
    if (this.#stampsUnseen.size >= STAMPS_UNSEEN_MAX) this.#stampsUnseen.clear();
    this.#stampsUnseen.add(ino);
    return this.#nw.write(ino, offset, data, { ...options, restamp });
  }

  /**
   * Attributes of inode `ino` went to the kernel (GETATTR, an entry, a listing): a stat may
   * have shown its times, so its next WRITE sets new ones, as kernel ext4 (6.13+, multigrain
   * timestamps) gives a file whose ctime was queried a fine-grained new time even within the
   * coarse clock's tick (measured on this kernel: stat, write, stat 1 ms apart shows a new
   * mtime; write, write, stat does not).
   */
  timesShown(ino: number): void {
    this.#stampsUnseen.delete(ino);
  }

  async setxattr(
    _ctx: RequestContext,
    nodeid: number,
    name: Uint8Array,
    value: Uint8Array,
    flags: number,
  ): Promise<void> {
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw new FuseError(Errno.EINVAL);
    await this.#nw.setXattr(this.#host.inoOf(nodeid), utf8.decode(name), value, {
      create: (flags & XATTR_CREATE) !== 0,
      replace: (flags & XATTR_REPLACE) !== 0,
    });
  }

  async removexattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<void> {
    await this.#nw.setXattr(this.#host.inoOf(nodeid), utf8.decode(name), null);
  }

  /**
   * IOCTL: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS / FS_IOC_FSGETXATTR (lsattr, chattr: the kernel's
   * fileattr calls); FITRIM (fstrim, see {@link #fitrim});
   * anything else is ENOTTY, as ext4 answers an ioctl it does not know.
   */
  async ioctl(
    ctx: RequestContext,
    nodeid: number,
    cmd: number,
    input: Uint8Array,
  ): Promise<Uint8Array> {
    if (cmd === FITRIM) return await this.#fitrim(ctx, input);
    const ino = this.#host.inoOf(nodeid);
    if (cmd === FS_IOC_GETFLAGS || cmd === FS_IOC_FSGETXATTR) {
      const { flags, projid } = await this.#nw.getFlags(ino);
      const out = new Uint8Array(cmd === FS_IOC_GETFLAGS ? 4 : FSXATTR_SIZE);
      const v = new DataView(out.buffer);
      if (cmd === FS_IOC_GETFLAGS) {
        v.setUint32(0, flags, true);
      } else {
        // struct fsxattr: the flags as FS_XFLAG_* (what the kernel's fileattr_fill_flags makes).
        let x = 0;
        for (const [fl, xfl] of XFLAGS) if (flags & fl) x |= xfl;
        v.setUint32(0, x, true);
        v.setUint32(12, projid, true);
      }
      return out;
    }
    if (cmd === FS_IOC_SETFLAGS && input.length >= 4) {
      const flags = new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true);
      await this.#nw.setFlags(ino, flags);
      return new Uint8Array(0);
    }
    throw new FuseError(ENOTTY);
  }

  /**
   * FITRIM as ext4's ioctl answers it: EPERM unless the caller is root (the kernel asks for
   * CAP_SYS_ADMIN, which a FUSE request does not carry), EOPNOTSUPP when the device cannot
   * discard, EINVAL for a bad range; the range comes back with `len` the bytes discarded.
   */
  async #fitrim(ctx: RequestContext, input: Uint8Array): Promise<Uint8Array> {
    if (ctx.uid !== 0) throw new FuseError(Errno.EPERM, "FITRIM needs root");
    if (input.length < FSTRIM_RANGE_SIZE) throw new FuseError(Errno.EINVAL);
    const v = new DataView(input.buffer, input.byteOffset, FSTRIM_RANGE_SIZE);
    // u64 fields as numbers: beyond 2^53 only "past the end" matters, which stays true.
    const [start, length, minLength] = [0, 8, 16].map((o) => Number(v.getBigUint64(o, true)));
    const trimmed = await this.#nw.trim({ start, length, minLength }, ctx.signal);
    const out = input.slice(0, FSTRIM_RANGE_SIZE);
    new DataView(out.buffer).setBigUint64(8, BigInt(trimmed), true);
    return out;
  }

  /** Every change is committed before its reply; fsync flushes the device once more. */
  fsync(_ctx: RequestContext, _nodeid: number, _datasync: boolean): Promise<void> {
    return this.#nw.sync();
  }

  async fallocate(
    ctx: RequestContext,
    nodeid: number,
    _fh: number,
    r: FallocateRequest,
  ): Promise<void> {
    const ino = this.#host.inoOf(nodeid);
    await this.#nw.fallocate(ino, r.offset, r.length, { mode: r.mode, keepSize: r.keepSize });
    // No flag tells (HANDLE_KILLPRIV_V2): the kernel's VFS drops set-id bits on fallocate by
    // a caller without CAP_FSETID (file_modified).
    const mode = ctx.uid !== 0 ? (await this.#host.attrOf(ino)).attr.mode : 0;
    if (withoutSetId(mode) !== mode) {
      await this.#nw.setattr(ino, { dropSetId: true });
    }
  }
}
