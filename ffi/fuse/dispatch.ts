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
  decodeGetxattrIn,
  decodeListxattrIn,
  decodeLseekIn,
  decodeName,
  decodeOpenIn,
  decodeReadIn,
  decodeReleaseIn,
} from "./protocol_requests.ts";
import {
  DirentBuffer,
  encodeAttrOut,
  encodeEntryOut,
  encodeGetxattrOut,
  encodeLseekOut,
  encodeOpenOut,
  encodeStatfsOut,
  type EntryOut,
} from "./protocol_replies.ts";
import { Opcode, opcodeName, OpenFlag, WRITE_OPCODES } from "./protocol.ts";
import { Errno } from "../../lib/errors.ts";
import {
  type DirentPlus,
  errnoOf,
  type FuseOperations,
  type OpenReply,
  type RequestContext,
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
 * const parts = await dispatcher.handle(Opcode.GETATTR, 1, body, ctx); // fuse_attr_out
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
   * the reply's body parts, or a throw carrying the errno to answer.
   */
  async handle(
    opcode: number,
    nodeid: number,
    body: Uint8Array,
    ctx: RequestContext,
  ): Promise<Uint8Array[]> {
    const ops = this.#ops;
    switch (opcode) {
      case Opcode.LOOKUP: {
        const name = decodeName(body);
        try {
          return [encodeEntryOut(await ops.lookup(ctx, nodeid, name))];
        } catch (e) {
          if (errnoOf(e) === E.ENOENT && this.#options.negativeTimeout > 0) {
            // A successful reply with node id 0 is a cacheable "no such entry".
            return [encodeEntryOut(negativeEntry(this.#options.negativeTimeout))];
          }
          throw e;
        }
      }
      case Opcode.GETATTR: {
        const r = await ops.getattr(ctx, nodeid);
        return [encodeAttrOut(r.attr, r.timeout)];
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
      case Opcode.FLUSH:
      case Opcode.FSYNC:
      case Opcode.FSYNCDIR:
        return []; // nothing buffered on a read-only mount
      default:
        if (WRITE_OPCODES.has(opcode) && this.#options.readOnly) throw new ProtocolErrno(E.EROFS);
        if (!this.#loggedOpcodes.has(opcode)) {
          this.#loggedOpcodes.add(opcode);
          this.#options.log(`fuse: ${opcodeName(opcode)} not implemented (ENOSYS)`);
        }
        throw new ProtocolErrno(E.ENOSYS);
    }
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

function openOut(r: OpenReply): Uint8Array {
  let flags = 0;
  if (r.keepCache) flags |= OpenFlag.KEEP_CACHE;
  if (r.cacheDir) flags |= OpenFlag.CACHE_DIR;
  if (r.directIo) flags |= OpenFlag.DIRECT_IO;
  return encodeOpenOut(r.fh, flags);
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
