/**
 * Dispatch of FUSE requests to a {@link FuseOperations}: decodes each opcode's body, calls
 * the filesystem, encodes its answer. The request loop (`session.ts`) owns the connection,
 * INIT, DESTROY, interrupts and the one-reply-per-request rule; this is what it calls for
 * every other opcode. An unknown opcode answers ENOSYS (logged once per opcode), a write
 * opcode on a read-only mount EROFS.
 *
 * @module
 */

import {
  decodeAccessIn,
  decodeCopyFileRangeIn,
  decodeCreateIn,
  decodeFallocateIn,
  decodeFsyncIn,
  decodeGetxattrIn,
  decodeIoctlIn,
  decodeLinkIn,
  decodeListxattrIn,
  decodeLseekIn,
  decodeMkdirIn,
  decodeMknodIn,
  decodeName,
  decodeOpenIn,
  decodeReadIn,
  decodeReleaseIn,
  decodeRenameIn,
  decodeSetattrIn,
  decodeSetxattrIn,
  decodeTwoNames,
  decodeWriteIn,
  FallocateMode,
  RenameFlag,
  type SetattrIn,
  SetattrValid,
} from "./protocol_requests.ts";
import {
  AttrOutBody,
  DirentBuffer,
  encodeGetxattrOut,
  encodeIoctlOut,
  encodeLseekOut,
  encodeOpenOut,
  encodeStatfsOut,
  encodeWriteOut,
  type EntryOut,
  EntryOutBody,
  type ReplyBody,
} from "./protocol_replies.ts";
import { Opcode, opcodeName, OpenFlag, WRITE_OPCODES } from "./protocol.ts";
import { Errno } from "../../lib/errors.ts";
import {
  type DirentPlus,
  errnoOf,
  type FallocateRequest,
  FITRIM,
  type FuseOperations,
  type FuseWriteOperations,
  type OpenReply,
  type RequestContext,
  type SetattrRequest,
} from "./ops.ts";

const E = Errno;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** What an {@link OpcodeDispatcher} is told by its session. */
export interface DispatchOptions {
  /** A read-only mount: write opcodes answer EROFS. */
  readOnly: boolean;
  /** Cache negative lookups this many seconds (0 = do not). */
  negativeTimeout: number;
  /** Largest READ/READDIR payload until INIT negotiates one. */
  maxIo: number;
  /** Where log lines go. */
  log: (line: string) => void;
}

/**
 * Answers FUSE requests by calling a {@link FuseOperations}.
 *
 * @example
 * ```ts ignore
 * const dispatcher = new OpcodeDispatcher(ops, { readOnly: true, negativeTimeout: 0, maxIo: 1 << 20, log: console.error });
 * const reply = await dispatcher.handle(Opcode.GETATTR, 1, body, ctx); // fuse_attr_out
 * ```
 */
export class OpcodeDispatcher {
  /** Largest READ/READDIR payload (INIT sets the negotiated one). */
  maxIo: number;
  readonly #ops: FuseOperations;
  readonly #options: DispatchOptions;
  readonly #loggedOpcodes = new Set<number>();

  constructor(ops: FuseOperations, options: DispatchOptions) {
    this.#ops = ops;
    this.#options = options;
    this.maxIo = options.maxIo;
  }

  /**
   * Answers one request (any opcode but INIT and DESTROY, which the session runs itself):
   * the reply's body (parts, or one the session encodes in place), or a throw carrying the
   * errno to answer.
   */
  async handle(
    opcode: number,
    nodeid: number,
    body: Uint8Array,
    ctx: RequestContext,
  ): Promise<ReplyBody> {
    const ops = this.#ops;
    switch (opcode) {
      case Opcode.LOOKUP: {
        const name = decodeName(body);
        if (ops.lookupEntry) {
          const found = await ops.lookupEntry(ctx, nodeid, name);
          if (found) return new EntryOutBody(found);
          if (this.#options.negativeTimeout > 0) {
            return new EntryOutBody(negativeEntry(this.#options.negativeTimeout));
          }
          throw NO_ENTRY;
        }
        try {
          return new EntryOutBody(await ops.lookup(ctx, nodeid, name));
        } catch (e) {
          if (errnoOf(e) === E.ENOENT && this.#options.negativeTimeout > 0) {
            // A successful reply with node id 0 is a cacheable "no such entry".
            return new EntryOutBody(negativeEntry(this.#options.negativeTimeout));
          }
          throw e;
        }
      }
      case Opcode.GETATTR: {
        const r = await ops.getattr(ctx, nodeid);
        return new AttrOutBody(r.attr, r.timeout);
      }
      case Opcode.READLINK:
        return [await ops.readlink(ctx, nodeid)];
      case Opcode.OPEN: {
        const { flags } = decodeOpenIn(body);
        return [openOut(await ops.open(ctx, nodeid, flags))];
      }
      case Opcode.OPENDIR: {
        const { flags } = decodeOpenIn(body);
        return [openOut(await ops.opendir(ctx, nodeid, flags))];
      }
      case Opcode.READ: {
        const r = decodeReadIn(body);
        const size = Math.min(r.size, this.maxIo);
        const data = await ops.read(ctx, nodeid, r.fh, r.offset, size);
        return [data.length > size ? data.subarray(0, size) : data];
      }
      case Opcode.RELEASE: {
        const r = decodeReleaseIn(body);
        await ops.release?.(ctx, nodeid, r.fh);
        return [];
      }
      case Opcode.RELEASEDIR: {
        const r = decodeReleaseIn(body);
        await ops.releasedir?.(ctx, nodeid, r.fh);
        return [];
      }
      case Opcode.READDIR: {
        const r = decodeReadIn(body);
        const out = new DirentBuffer(Math.min(r.size, this.maxIo), false);
        for await (const d of ops.readdir(ctx, nodeid, r.fh, r.offset)) {
          if (!out.add(d)) break;
        }
        return [out.bytes()];
      }
      case Opcode.READDIRPLUS: {
        const r = decodeReadIn(body);
        const out = new DirentBuffer(Math.min(r.size, this.maxIo), true);
        const entries = ops.readdirplus
          ? ops.readdirplus(ctx, nodeid, r.fh, r.offset)
          : this.#readdirplusByLookup(ctx, nodeid, r.fh, r.offset);
        for await (const d of entries) {
          const entry = isDotOrDotDot(d.dirent.name) ? undefined : d.entry;
          if (!out.add(d.dirent, entry)) break;
        }
        return [out.bytes()];
      }
      case Opcode.STATFS:
        return [encodeStatfsOut(await ops.statfs(ctx, nodeid))];
      case Opcode.GETXATTR: {
        const { size, name } = decodeGetxattrIn(body);
        return sizeProbe(await ops.getxattr(ctx, nodeid, name), size);
      }
      case Opcode.LISTXATTR: {
        const { size } = decodeListxattrIn(body);
        const names = await ops.listxattr(ctx, nodeid);
        let total = 0;
        for (const n of names) total += n.length + 1;
        const list = new Uint8Array(total);
        let o = 0;
        for (const n of names) {
          list.set(n, o);
          o += n.length + 1; // NUL separator already zero
        }
        return sizeProbe(list, size);
      }
      case Opcode.ACCESS: {
        const mask = decodeAccessIn(body);
        if (!ops.access) throw new ProtocolErrno(E.ENOSYS);
        await ops.access(ctx, nodeid, mask);
        return [];
      }
      case Opcode.LSEEK: {
        const r = decodeLseekIn(body);
        if (!ops.lseek) throw new ProtocolErrno(E.ENOSYS);
        if (r.whence !== SEEK_DATA && r.whence !== SEEK_HOLE) throw new ProtocolErrno(E.EINVAL);
        if (r.offset < 0) throw new ProtocolErrno(E.ENXIO);
        const where = await ops.lseek(
          ctx,
          nodeid,
          r.fh,
          r.offset,
          r.whence === SEEK_DATA ? "data" : "hole",
        );
        return [encodeLseekOut(where)];
      }
      case Opcode.STATX:
        // Answered ENOSYS without a log line: the kernel falls back to GETATTR for good.
        throw new ProtocolErrno(E.ENOSYS);
      case Opcode.IOCTL: {
        // chattr/lsattr, fstrim on a read-write mount; a read-only one serves no ioctl (ENOSYS)
        // but fstrim, answered EROFS: its device is open read-only, and what it serves may be a
        // journal replayed in memory only (the kernel's EROFS for a trim under `noload`).
        const w = this.#writer();
        if (w) return (await this.#handleWrite(w, opcode, nodeid, body, ctx))!;
        if (decodeIoctlIn(body).cmd === FITRIM) throw new ProtocolErrno(E.EROFS);
        break;
      }
      case Opcode.FLUSH:
        // Every WRITE joined the running transaction before it was answered; close makes
        // nothing durable (fsync does), as on ext4.
        return [];
      case Opcode.FSYNC:
      case Opcode.FSYNCDIR: {
        const w = this.#writer();
        if (!w) return []; // nothing to make durable on a read-only mount
        await w.fsync(ctx, nodeid, decodeFsyncIn(body).datasync);
        return [];
      }
      case Opcode.SYNCFS: {
        // sync(1) / syncfs(2): the running transaction committed, as for an fsync.
        const w = this.#writer();
        if (!w) return [];
        await w.fsync(ctx, nodeid, false);
        return [];
      }
      default:
        if (WRITE_OPCODES.has(opcode)) {
          const w = this.#writer();
          if (!w) throw new ProtocolErrno(E.EROFS);
          const reply = await this.#handleWrite(w, opcode, nodeid, body, ctx);
          if (reply) return reply;
        }
    }
    if (!this.#loggedOpcodes.has(opcode)) {
      this.#loggedOpcodes.add(opcode);
      this.#options.log(`fuse: ${opcodeName(opcode)} not implemented (ENOSYS)`);
    }
    throw new ProtocolErrno(E.ENOSYS);
  }

  /** The write operations, or undefined on a read-only mount. */
  #writer(): FuseWriteOperations | undefined {
    return this.#options.readOnly ? undefined : this.#ops.writer;
  }

  /** A write opcode on a read-write mount; undefined for one not implemented (ENOSYS). */
  async #handleWrite(
    w: FuseWriteOperations,
    opcode: number,
    nodeid: number,
    body: Uint8Array,
    ctx: RequestContext,
  ): Promise<ReplyBody | undefined> {
    switch (opcode) {
      case Opcode.WRITE: {
        const r = decodeWriteIn(body);
        const dropSetId = (r.writeFlags & WRITE_KILL_SUIDGID) !== 0;
        return [encodeWriteOut(await w.write(ctx, nodeid, r.fh, r.offset, r.data, { dropSetId }))];
      }
      case Opcode.SETATTR: {
        const r = await w.setattr(ctx, nodeid, setattrRequest(decodeSetattrIn(body)));
        return new AttrOutBody(r.attr, r.timeout);
      }
      case Opcode.CREATE: {
        const r = decodeCreateIn(body);
        const { entry, open } = await w.create(ctx, nodeid, r.name, r, r.flags);
        return new EntryOutBody(entry, { fh: open.fh, flags: openFlags(open) });
      }
      case Opcode.TMPFILE: {
        const r = decodeCreateIn(body); // its name ("/") means nothing
        const { entry, open } = await w.tmpfile(ctx, nodeid, r);
        return new EntryOutBody(entry, { fh: open.fh, flags: openFlags(open) });
      }
      case Opcode.MKNOD: {
        const r = decodeMknodIn(body);
        return new EntryOutBody(await w.mknod(ctx, nodeid, r.name, r));
      }
      case Opcode.MKDIR: {
        const r = decodeMkdirIn(body);
        return new EntryOutBody(await w.mkdir(ctx, nodeid, r.name, r));
      }
      case Opcode.SYMLINK: {
        const [name, target] = decodeTwoNames(body);
        return new EntryOutBody(await w.symlink(ctx, nodeid, name, target));
      }
      case Opcode.LINK: {
        const r = decodeLinkIn(body);
        return new EntryOutBody(await w.link(ctx, r.oldNodeid, nodeid, r.name));
      }
      case Opcode.UNLINK:
        await w.unlink(ctx, nodeid, decodeName(body));
        return [];
      case Opcode.RMDIR:
        await w.rmdir(ctx, nodeid, decodeName(body));
        return [];
      case Opcode.RENAME:
      case Opcode.RENAME2: {
        const r = decodeRenameIn(body, opcode === Opcode.RENAME2);
        const known = RenameFlag.NOREPLACE | RenameFlag.EXCHANGE;
        // RENAME_WHITEOUT (overlayfs) is not supported: a clear EINVAL, as for unknown flags.
        if ((r.flags & ~known) !== 0 || r.flags === known) throw new ProtocolErrno(E.EINVAL);
        await w.rename(ctx, nodeid, r.oldName, r.newDir, r.newName, r.flags);
        return [];
      }
      case Opcode.SETXATTR: {
        const r = decodeSetxattrIn(body, false);
        await w.setxattr(ctx, nodeid, r.name, r.value, r.flags);
        return [];
      }
      case Opcode.REMOVEXATTR:
        await w.removexattr(ctx, nodeid, decodeName(body));
        return [];
      case Opcode.COPY_FILE_RANGE: {
        const r = decodeCopyFileRangeIn(body);
        if (r.flags !== 0) throw new ProtocolErrno(E.EINVAL);
        const n = await w.copyFileRange(ctx, nodeid, r.offIn, r.nodeidOut, r.offOut, r.len);
        return [encodeWriteOut(n)];
      }
      case Opcode.IOCTL: {
        const r = decodeIoctlIn(body);
        const out = await w.ioctl(ctx, nodeid, r.cmd, r.input);
        return [encodeIoctlOut(), out.subarray(0, r.outSize)];
      }
      case Opcode.FALLOCATE: {
        const r = decodeFallocateIn(body);
        await w.fallocate(ctx, nodeid, r.fh, fallocateRequest(r));
        return [];
      }
    }
    return undefined;
  }

  async *#readdirplusByLookup(
    ctx: RequestContext,
    nodeid: number,
    fh: number,
    offset: number,
  ): AsyncIterable<DirentPlus> {
    for await (const d of this.#ops.readdir(ctx, nodeid, fh, offset)) {
      if (isDotOrDotDot(d.name)) {
        yield { dirent: d };
        continue;
      }
      yield { dirent: d, entry: await this.#ops.lookup(ctx, nodeid, d.name) };
    }
  }
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/**
 * An errno answered without logging (protocol-level refusals).
 *
 * @example
 * ```ts ignore
 * throw new ProtocolErrno(Errno.ENOSYS);
 * ```
 */
export class ProtocolErrno extends Error {
  readonly errno: number;
  constructor(code: number, message?: string) {
    super(message ?? `errno ${code}`);
    this.errno = code;
  }
}

/** The answer to a LOOKUP miss: made once (an error object per miss costs a stack trace). */
const NO_ENTRY = new ProtocolErrno(E.ENOENT, "no such file or directory");

/** SETATTR's fields as the operations take them (the kernel's FATTR_* bits decoded). */
function setattrRequest(r: SetattrIn): SetattrRequest {
  return {
    mode: r.mode === undefined ? undefined : r.mode & 0o7777,
    uid: r.uid,
    gid: r.gid,
    size: r.size,
    atime: r.atime,
    mtime: r.mtime,
    fh: r.fh,
    dropSetId: (r.valid & SetattrValid.KILL_SUIDGID) !== 0,
  };
}

/** `fuse_write_in.write_flags`: drop the set-id bits (HANDLE_KILLPRIV_V2, no CAP_FSETID). */
const WRITE_KILL_SUIDGID = 1 << 2;

/** FALLOCATE's mode bits as a request; EOPNOTSUPP for the modes ext4ts does not do. */
function fallocateRequest(
  r: { offset: number; length: number; mode: number },
): FallocateRequest {
  const M = FallocateMode;
  const keepSize = (r.mode & M.KEEP_SIZE) !== 0;
  const rest = r.mode & ~M.KEEP_SIZE;
  if (r.length === 0) throw new ProtocolErrno(E.EINVAL);
  if (rest === 0) return { offset: r.offset, length: r.length, mode: "allocate", keepSize };
  // PUNCH_HOLE must come with KEEP_SIZE (the kernel's vfs_fallocate refuses it alone).
  if (rest === M.PUNCH_HOLE && keepSize) {
    return { offset: r.offset, length: r.length, mode: "punchHole", keepSize };
  }
  if (rest === M.ZERO_RANGE) {
    return { offset: r.offset, length: r.length, mode: "zeroRange", keepSize };
  }
  throw new ProtocolErrno(E.EOPNOTSUPP);
}

function openFlags(r: OpenReply): number {
  // FLUSH does nothing here (close makes nothing durable, as on ext4; no POSIX locks are
  // served): asking the kernel not to send it saves a round trip per close.
  let flags = OpenFlag.NOFLUSH;
  if (r.keepCache) flags |= OpenFlag.KEEP_CACHE;
  if (r.cacheDir) flags |= OpenFlag.CACHE_DIR;
  if (r.directIo) flags |= OpenFlag.DIRECT_IO;
  return flags;
}

function openOut(r: OpenReply): Uint8Array {
  return encodeOpenOut(r.fh, openFlags(r));
}

/** GETXATTR/LISTXATTR: size 0 asks for the size; a too-small buffer is ERANGE. */
function sizeProbe(value: Uint8Array, size: number): Uint8Array[] {
  if (size === 0) return [encodeGetxattrOut(value.length)];
  if (value.length > size) throw new ProtocolErrno(E.ERANGE);
  return [value];
}

function negativeEntry(timeout: number): EntryOut {
  const t = { sec: 0, nsec: 0 };
  return {
    nodeid: 0,
    generation: 0,
    entryTimeout: timeout,
    attrTimeout: 0,
    attr: {
      ino: 0,
      size: 0,
      blocks: 0,
      atime: t,
      mtime: t,
      ctime: t,
      mode: 0,
      nlink: 0,
      uid: 0,
      gid: 0,
      rdev: 0,
      blksize: 0,
    },
  };
}
