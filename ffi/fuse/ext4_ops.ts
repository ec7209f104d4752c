/**
 * The adapter from the ext4 reader (`Ext4`, lib/ext4/filesystem.ts) to {@link FuseOperations},
 * and the mount backend that opens an ext4 device for the daemon.
 *
 * - Node ids are inode numbers, except that the root (inode 2) is FUSE_ROOT_ID 1; inode 1
 *   (the bad-blocks inode, never in a directory) takes node id 2 so the mapping stays 1:1.
 * - `st_ino` and dirent inode numbers are the real inode numbers, as the kernel shows them.
 * - The mount is read-only and the device is not expected to change under it: attributes,
 *   entries, pages and directory listings are cached by the kernel.
 * - Errors carry their errno (Ext4Error.errno); writes answer EROFS.
 *
 * @module
 */

import type { BlockDevice } from "../../lib/block/block_device.ts";
import { type CorruptError, Errno, Ext4Error } from "../../lib/errors.ts";
import { readSuperblock, State } from "../../lib/ondisk/superblock.ts";
import { type DirEntry, Ext4, type Ext4Stat, type FileType } from "../../lib/ext4/filesystem.ts";
import { JournalOverlayDevice } from "../../lib/ext4/journal_overlay.ts";
import { withoutSetId } from "../../lib/ext4/attr.ts";
import { modeTypeOfFileType } from "../../lib/ondisk/inode.ts";
import {
  type AttrReply,
  type DirentOut,
  type DirentPlus,
  type EntryOut,
  type FuseAttr,
  FuseError,
  type FuseOperations,
  type OpenReply,
  type RequestContext,
  type SeekWhence,
  type StatfsOut,
} from "./ops.ts";
import { FUSE_ROOT_ID } from "./protocol.ts";
import { encodeDev } from "./protocol_replies.ts";
import type { MountBackend, MountSettings, OpenedFilesystem } from "./serve.ts";
import { type ErrorPolicy, Ext4WriteOperations, type NodeWriterLike } from "./ext4_write_ops.ts";
import {
  assertSameIdentity,
  identityOf,
  mountCacheBytes,
  openForReadWrite,
  openWindow,
} from "./ext4_rw_open.ts";

/** The reader's file types (lib/ext4/filesystem.ts `FileType`). */
export type Ext4FileType = FileType;

/** The fields of the reader's {@link Ext4Stat} the adapter uses. */
export type Ext4StatLike = Pick<
  Ext4Stat,
  | "ino"
  | "type"
  | "mode"
  | "nlink"
  | "uid"
  | "gid"
  | "size"
  | "blocks"
  | "rdev"
  | "atime"
  | "mtime"
  | "ctime"
  | "generation"
>;

/** The reader's {@link DirEntry} with its resume cookie (what `Ext4.readDirFrom` yields). */
export type Ext4DirEntryLike = DirEntry & { offset: number };

/**
 * The inode-level part of the reader's `Ext4` class (lib/ext4/filesystem.ts) this adapter needs,
 * in the reader's types. Structural, so tests can serve a fake reader.
 */
export interface Ext4Like {
  /** The stat of inode `ino`. */
  getattr(ino: number): Promise<Ext4StatLike>;
  /**
   * The stat of the inode a directory entry names; a deleted or never used inode (mode 0, no
   * links) is CORRUPT, as the kernel's lookup answers, and so is a root that is not a
   * directory.
   */
  entryStat(ino: number): Promise<Ext4StatLike>;
  /** The inode `name` names in directory `parentIno`, or null when there is no such entry. */
  lookupIno(parentIno: number, name: string | Uint8Array): Promise<number | null>;
  /** The entries of directory `ino`, including "." and "..", each with its resume cookie. */
  readDirIno(ino: number): AsyncIterable<Ext4DirEntryLike>;
  /** The entries of directory `ino` after resume cookie `cookie` (0 = from the start). */
  readDirFrom(ino: number, cookie: number): AsyncIterable<Ext4DirEntryLike>;
  /**
   * Up to `length` bytes at byte `offset` of regular file `ino`; short at end of file. A new
   * buffer the caller owns (the session frees it once replied: `readRepliesOwned`).
   */
  read(ino: number, offset: number, length: number): Promise<Uint8Array>;
  /** The raw target bytes of symlink `ino`. */
  readLinkIno(ino: number): Promise<Uint8Array>;
  /** The xattr names of inode `ino`. */
  listXattrIno(ino: number): Promise<string[]>;
  /** One xattr value of inode `ino`, or undefined when it has no such name. */
  findXattrIno(ino: number, name: string): Promise<Uint8Array | undefined>;
  /**
   * SEEK_DATA / SEEK_HOLE: the first data (or hole) byte offset at or after `offset`;
   * NOT_FOUND with errno ENXIO when there is none.
   */
  seekData(ino: number, offset: number, whence: "data" | "hole"): Promise<number>;
  /** Filesystem statistics (statfs); counts are in blocks of `blockSize` bytes and in inodes. */
  statfs(): {
    blockSize: number;
    blocks: number;
    freeBlocks: number;
    availBlocks: number;
    files: number;
    freeFiles: number;
    nameMax: number;
  };
  /** Releases the device. */
  close(): Promise<void>;
}

const ROOT_INO = 2;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const W_OK = 2;

/**
 * Node id of an inode number (root ↔ FUSE_ROOT_ID, swapping 1 and 2).
 *
 * @example
 * ```ts ignore
 * nodeOfIno(2); // 1 (FUSE_ROOT_ID)
 * ```
 */
export function nodeOfIno(ino: number): number {
  return ino === ROOT_INO ? FUSE_ROOT_ID : ino === FUSE_ROOT_ID ? ROOT_INO : ino;
}

/**
 * Inode number of a node id (the inverse of {@link nodeOfIno}).
 *
 * @example
 * ```ts ignore
 * inoOfNode(1); // 2 (the root inode)
 * ```
 */
export function inoOfNode(nodeid: number): number {
  return nodeOfIno(nodeid);
}

/** The `d_type` (DT_*) of a file type: the mode's type bits shifted down (the kernel's S_DT). */
function direntTypeOf(type: Ext4FileType): number {
  return modeTypeOfFileType(type) >>> 12;
}

/** Options of {@link Ext4Operations}. */
export interface Ext4OperationsOptions {
  /** Seconds the kernel may cache attributes and names (default 300: read-only mount). */
  timeout?: number;
  /** `st_blksize`: the filesystem's block size. */
  blockSize: number;
  /** Show files owned by uid/gid 0 as owned by these ids (fakeroot-style mapping). */
  uid?: number;
  /** Gid shown for files owned by gid 0 (absent: shown as stored). */
  gid?: number;
  /** Called once everything is closed (after the reader's close). */
  onClose?: () => Promise<void> | void;
  /** The daemon's log: one line per damaged entry found (its inode and directory). */
  log?: (line: string) => void;
  /**
   * A read-write mount: the writable filesystem's inode-level writer. Without it every
   * write answers EROFS and the kernel may cache everything.
   */
  nodeWriter?: NodeWriterLike;
  /** What a corruption found while writing does (read-write mounts; default continue). */
  errors?: ErrorPolicy;
  /** `errors=panic`: aborts the connection. */
  panic?: () => void;
}

const utf8 = new TextDecoder();
/**
 * The answer to a missing xattr, made once: `ls -l` asks every file for `security.selinux`,
 * and an error with a fresh stack per request cost more than the rest of the request.
 */
const NO_DATA = new FuseError(Errno.ENODATA, "no such attribute");

/** Damaged entries reported at most this many times (a fuzzed image can hold thousands). */
const MAX_REPORTED = 10_000;

/**
 * {@link FuseOperations} over the ext4 reader.
 *
 * @example
 * ```ts ignore
 * const ops = new Ext4Operations(await Ext4.openDevice(dev), { blockSize: 4096 });
 * const session = new FuseSession(fd, ops, { readOnly: true });
 * ```
 */
export class Ext4Operations implements FuseOperations {
  readonly #fs: Ext4Like;
  readonly #o:
    & Required<
      Omit<
        Ext4OperationsOptions,
        "uid" | "gid" | "onClose" | "log" | "nodeWriter" | "errors" | "panic"
      >
    >
    & Ext4OperationsOptions;
  /** The write operations of a read-write mount (absent: read-only). */
  readonly writer?: Ext4WriteOperations;
  /** `Ext4.read` returns a new buffer per call: the session frees large ones once replied. */
  readonly readRepliesOwned = true;
  #closed = false;
  /** "directory inode/entry name" pairs already logged as damaged. */
  readonly #reported = new Set<string>();

  /** Wraps `fs`; `options.timeout` defaults to 300 seconds. */
  constructor(fs: Ext4Like, options: Ext4OperationsOptions) {
    this.#fs = fs;
    this.#o = { timeout: 300, ...options };
    if (options.nodeWriter) {
      this.writer = new Ext4WriteOperations(options.nodeWriter, {
        errors: options.errors,
        log: options.log,
        panic: options.panic,
        inoOf: inoOfNode,
        entryOf: async (ino) => this.#entry(await this.#fs.getattr(ino)),
        read: (ino, offset, length) => this.#fs.read(ino, offset, length),
        attrOf: async (ino) => {
          const attr = this.attrOf(await this.#fs.getattr(ino));
          return { attr, timeout: this.#attrTimeout(attr) };
        },
      });
    }
  }

  /** The FUSE attributes of a reader stat (shown to the kernel: see `timesShown`). */
  attrOf(st: Ext4StatLike): FuseAttr {
    this.writer?.timesShown(st.ino);
    const uid = st.uid === 0 && this.#o.uid !== undefined ? this.#o.uid : st.uid;
    const gid = st.gid === 0 && this.#o.gid !== undefined ? this.#o.gid : st.gid;
    const isDev = st.type === "chardev" || st.type === "blockdev";
    return {
      ino: st.ino,
      size: st.size,
      blocks: st.blocks,
      atime: st.atime,
      mtime: st.mtime,
      ctime: st.ctime,
      mode: st.mode,
      nlink: st.nlink,
      uid,
      gid,
      rdev: isDev ? encodeDev(st.rdev.major, st.rdev.minor) : 0,
      blksize: this.#o.blockSize,
    };
  }

  #entry(st: Ext4StatLike): EntryOut {
    const attr = this.attrOf(st);
    return {
      nodeid: nodeOfIno(st.ino),
      generation: st.generation,
      entryTimeout: this.#o.timeout,
      attrTimeout: this.#attrTimeout(attr),
      attr,
    };
  }

  /**
   * How long the kernel may cache `attr`. On a read-write mount never for a file whose set-id
   * bits a WRITE may drop (HANDLE_KILLPRIV_V2: the server drops them, and a WRITE reply
   * carries no attributes), so the next stat shows the drop as on kernel ext4.
   */
  #attrTimeout(attr: FuseAttr): number {
    return this.writer && withoutSetId(attr.mode) !== attr.mode ? 0 : this.#o.timeout;
  }

  async lookup(ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryOut> {
    const entry = await this.lookupEntry(ctx, parent, name);
    if (entry) return entry;
    throw new FuseError(Errno.ENOENT, "no such file or directory");
  }

  /** LOOKUP without an exception for an absent name (the common case of every create). */
  async lookupEntry(
    _ctx: RequestContext,
    parent: number,
    name: Uint8Array,
  ): Promise<EntryOut | null> {
    try {
      const ino = await this.#fs.lookupIno(inoOfNode(parent), name);
      return ino === null ? null : this.#entry(await this.#fs.entryStat(ino));
    } catch (e) {
      // The kernel's answer for such an inode (EUCLEAN, EBADMSG): the error of this name only.
      if (e instanceof Ext4Error && e.code === "CORRUPT") this.#damaged(parent, name, null, e);
      throw e;
    }
  }

  /**
   * Logs, once per directory and entry, an entry whose inode cannot be served: the kernel's
   * ext4 logs such an inode each time it is looked up; once is enough to find it.
   */
  #damaged(parent: number, name: Uint8Array, ino: number | null, e: unknown): void {
    const dir = inoOfNode(parent);
    const shown = JSON.stringify(utf8.decode(name));
    const key = `${dir}/${shown}`;
    if (this.#reported.has(key) || this.#reported.size >= MAX_REPORTED) return;
    this.#reported.add(key);
    const what = ino === null ? `entry ${shown}` : `inode ${ino} (entry ${shown})`;
    this.#o.log?.(
      `damaged ${what} in directory inode ${dir}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }

  forget(): void {
    // Node ids are inode numbers: nothing to free.
  }

  async getattr(_ctx: RequestContext, nodeid: number): Promise<AttrReply> {
    const attr = this.attrOf(await this.#fs.getattr(inoOfNode(nodeid)));
    return { attr, timeout: this.#attrTimeout(attr) };
  }

  readlink(_ctx: RequestContext, nodeid: number): Promise<Uint8Array> {
    return this.#fs.readLinkIno(inoOfNode(nodeid));
  }

  // deno-lint-ignore require-await
  async open(_ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply> {
    if (this.writer) return this.writer.open(nodeid, flags);
    if ((flags & O_ACCMODE) !== 0 || (flags & O_TRUNC) !== 0) {
      throw new FuseError(Errno.EROFS, "read-only filesystem");
    }
    // Read-only mount: the file cannot change, so the page cache stays valid across opens.
    return { fh: 0, keepCache: true };
  }

  read(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
    size: number,
  ): Promise<Uint8Array> {
    return this.#fs.read(inoOfNode(nodeid), offset, size);
  }

  /** RELEASE: on a read-write mount, the close that may free a file without names. */
  async release(_ctx: RequestContext, nodeid: number): Promise<void> {
    await this.writer?.release(nodeid);
  }

  // deno-lint-ignore require-await
  async opendir(_ctx: RequestContext, _nodeid: number, flags: number): Promise<OpenReply> {
    if ((flags & O_ACCMODE) !== 0) throw new FuseError(Errno.EISDIR);
    // A listing cached by the kernel stays right only while nothing can change it.
    return this.writer ? { fh: 0 } : { fh: 0, keepCache: true, cacheDir: true };
  }

  async *#entries(nodeid: number, offset: number): AsyncIterable<Ext4DirEntryLike> {
    const ino = inoOfNode(nodeid);
    yield* offset === 0 ? this.#fs.readDirIno(ino) : this.#fs.readDirFrom(ino, offset);
  }

  async *readdir(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
  ): AsyncIterable<DirentOut> {
    for await (const d of this.#entries(nodeid, offset)) {
      yield { ino: d.ino, offset: d.offset, type: direntTypeOf(d.type), name: d.nameBytes };
    }
  }

  async *readdirplus(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
  ): AsyncIterable<DirentPlus> {
    for await (const d of this.#entries(nodeid, offset)) {
      const dirent = {
        ino: d.ino,
        offset: d.offset,
        type: direntTypeOf(d.type),
        name: d.nameBytes,
      };
      if (d.name === "." || d.name === "..") {
        yield { dirent };
        continue;
      }
      // The entry names the inode: its attributes come from the inode, no name lookup. An
      // inode that cannot be served leaves the entry without attributes (nodeid 0: the
      // kernel makes no dentry and looks the name up on use, which then fails alone).
      let entry: EntryOut;
      try {
        entry = this.#entry(await this.#fs.entryStat(d.ino));
      } catch (e) {
        this.#damaged(nodeid, d.nameBytes, d.ino, e);
        yield { dirent };
        continue;
      }
      yield { dirent, entry };
    }
  }

  statfs(): Promise<StatfsOut> {
    const s = this.#fs.statfs();
    return Promise.resolve({
      blocks: s.blocks,
      bfree: s.freeBlocks,
      bavail: s.availBlocks,
      files: s.files,
      ffree: s.freeFiles,
      bsize: s.blockSize,
      namelen: s.nameMax,
      frsize: s.blockSize,
    });
  }

  async getxattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array> {
    const value = await this.#fs.findXattrIno(inoOfNode(nodeid), utf8.decode(name));
    if (value === undefined) throw NO_DATA;
    return value;
  }

  async listxattr(_ctx: RequestContext, nodeid: number): Promise<Uint8Array[]> {
    const enc = new TextEncoder();
    return (await this.#fs.listXattrIno(inoOfNode(nodeid))).map((n) => enc.encode(n));
  }

  async access(_ctx: RequestContext, nodeid: number, mask: number): Promise<void> {
    if ((mask & W_OK) && !this.writer) throw new FuseError(Errno.EROFS, "read-only filesystem");
    await this.#fs.getattr(inoOfNode(nodeid)); // exists and readable
  }

  lseek(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
    whence: SeekWhence,
  ): Promise<number> {
    return this.#fs.seekData(inoOfNode(nodeid), offset, whence);
  }

  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#fs.close();
    } finally {
      await this.#o.onClose?.();
    }
  }
}

/**
 * Opens the reader on a device (the raw device, or the journal overlay over it).
 * `allowDirtyJournal` is true for `-o norecovery` mounts of a filesystem needing recovery.
 *
 * @example
 * ```ts ignore
 * const fs = await openExt4Reader(device, { allowDirtyJournal: false });
 * ```
 */
export function openExt4Reader(
  device: BlockDevice,
  options: { allowDirtyJournal: boolean; onCorrupt?: (error: CorruptError) => void },
): Promise<Ext4Like> {
  return Ext4.openDevice(device, { readOnly: true, ...options });
}

/**
 * A filesystem whose journal needs recovery is served, read-only, through the in-memory
 * journal overlay (lib/ext4/journal_overlay.ts): the replayed blocks come from memory and nothing
 * is written. Throws where the kernel would refuse to recover.
 *
 * @example
 * ```ts ignore
 * const overlay = await journalOverlay(device);
 * ```
 */
export function journalOverlay(device: BlockDevice): Promise<BlockDevice | undefined> {
  return JournalOverlayDevice.open(device);
}

/**
 * The mount backend for ext4: checks the superblock (features, journal state), opens the
 * reader, and re-checks the device after mounting.
 *
 * @example
 * ```ts ignore
 * // Not run by `deno test --doc`: serve mounts (root, /dev/fuse) and serves until unmounted.
 * await serve({ source, mountPoint, settings, backend: ext4Backend, log });
 * ```
 */
export const ext4Backend: MountBackend = {
  async open(
    devicePath: string,
    settings: MountSettings,
    log: (line: string) => void,
  ): Promise<OpenedFilesystem> {
    if (!settings.readOnly) return await openReadWriteBackend(devicePath, settings, log);
    const device = openWindow(devicePath, settings.offset, { readOnly: true });
    try {
      // The superblock as on the device: what the post-mount re-check compares with.
      const sb = await readSuperblock(device);
      if (sb.state & State.ERROR) {
        log(`warning: ${devicePath} has errors recorded; running e2fsck is recommended`);
      }
      const identity = identityOf(sb);
      // Features, journal recovery and descriptors: the one open policy (lib/ext4/super.ts),
      // through the reader's opener. A read-only open's only notices are about the journal.
      const fs = await Ext4.openDevice(device, {
        readOnly: true,
        cacheBytes: mountCacheBytes(settings.cacheSize),
        recovery: settings.noRecovery ? "none" : "memory",
        onNotice: (message) =>
          log(
            settings.noRecovery
              ? `warning: ${devicePath}: mounting without journal recovery; ` +
                "recently written data may be missing or inconsistent"
              : `${devicePath}: ${message}`,
          ),
        onCorrupt: (e) => log(`${devicePath}: ${e.message}; skipped`),
      });
      // The kernel refuses to mount a filesystem whose root is not a usable directory.
      await fs.entryStat(ROOT_INO).catch(async (e) => {
        await fs.close();
        throw e;
      });
      const blockSize = sb.blockSize;
      const ops = new Ext4Operations(fs, {
        blockSize,
        uid: settings.uid,
        gid: settings.gid,
        onClose: () => device.close(),
        log,
      });
      return {
        ops,
        blockSize,
        posixAcl: true,
        async verify(path: string): Promise<void> {
          const again = openWindow(path, settings.offset, { readOnly: true });
          try {
            assertSameIdentity(path, identity, identityOf(await readSuperblock(again)));
          } finally {
            await again.close();
          }
        },
      };
    } catch (e) {
      await device.close();
      throw e;
    }
  },
};

/** Seconds the kernel may cache attributes and names of a read-write mount. */
const RW_TIMEOUT = 1;

/**
 * The read-write side of {@link ext4Backend}: the device opened, checked, recovered and
 * verified as lib/ext4 and ffi/fuse/ext4_rw_open.ts say; DESTROY closes the filesystem
 * (commit, flush, superblock marked clean) and then the device.
 */
async function openReadWriteBackend(
  devicePath: string,
  settings: MountSettings,
  log: (line: string) => void,
): Promise<OpenedFilesystem> {
  if (settings.noRecovery) {
    throw new Ext4Error("INVALID", "norecovery (noload) is only for read-only mounts", {
      errno: Errno.EINVAL,
    });
  }
  // An image the daemon serves directly is locked by it already; a block device is claimed.
  const claim = Deno.statSync(devicePath).isBlockDevice === true;
  const { fs, nodeWriter, verify, abandon } = await openForReadWrite(
    devicePath,
    settings.offset,
    claim,
    log,
    settings.commit ?? 5,
    mountCacheBytes(settings.cacheSize),
  );
  try {
    await fs.entryStat(ROOT_INO);
  } catch (e) {
    await fs.close();
    throw e;
  }
  const blockSize = fs.superblock.blockSize;
  let abort: (() => void) | undefined;
  const ops = new Ext4Operations(fs, {
    blockSize,
    timeout: RW_TIMEOUT,
    uid: settings.uid,
    gid: settings.gid,
    log,
    nodeWriter,
    // errors= given, else the superblock's s_errors (1 continue, 2 remount-ro, 3 panic).
    errors: settings.errors ??
      (["continue", "continue", "remount-ro", "panic"] as const)[fs.superblock.errors] ??
      "continue",
    panic: () => abort?.(),
  });
  return {
    ops,
    blockSize,
    posixAcl: true,
    verify,
    abandon,
    attach: (controls) => abort = controls.abort,
  };
}
