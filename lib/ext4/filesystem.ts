/**
 * The filesystem object: {@link Ext4} opens a filesystem on a {@link BlockDevice} and reads
 * everything in it — paths, inodes, directories, file data, symlinks, xattrs — with bounded
 * caches of inodes, block maps and metadata blocks. Opened with `readOnly: false` it also
 * writes (writeFile, mkdir, remove, rename, …, open files for writing), every change one
 * transaction, with one block cache shared by reads and writes (see {@link SharedBlockCache}).
 *
 * lib/ cannot open files by path; mod.ts adds `Ext4.open(path)` over ffi/file_device.ts.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import { Compat, Incompat, RoCompat } from "../ondisk/features.ts";
import { type GroupDescriptorTable, groupHasSuperblock } from "../ondisk/group_descriptor.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import {
  type FileType,
  fileTypeOfMode,
  type Inode,
  InodeFlags,
  inodeLocation,
  type InodeTime,
  parseInode,
  type Timespec,
} from "../ondisk/inode.ts";
import { type BlockRun, findRun, readMapped, seekRuns } from "./file_map.ts";
import { readExtentTree } from "./extents.ts";
import { readBlockMap } from "./indirect.ts";
import { Lru } from "../block/lru.ts";
import type { DirContext, DirRecord } from "../ondisk/dirent.ts";
import { type DirectorySource, iterateDirectory } from "./dir.ts";
import { hashIsSigned, parseDxRoot } from "../ondisk/dx.ts";
import { type DirHash, dirHash, DxHashVersion } from "../ondisk/dir_hash.ts";
import { noKeyName, noKeyNameLength } from "../ondisk/fscrypt_name.ts";
import { readXattrs } from "./xattr.ts";
import { readInlineData, readInlineFile } from "../ondisk/inline_data.ts";
import { readInodeBitmap, testBit } from "../ondisk/bitmap.ts";
import { type OpenedMetadata, openMetadata, type OpenPolicy } from "./super.ts";
import { SharedBlockCache } from "../txn/shared_block_cache.ts";
import type { CommitBatch } from "../txn/transaction.ts";
import { Ext4Writer } from "./writer.ts";
import { OpenFiles } from "./open_files.ts";
import { processOrphans, releaseIfUnlinked } from "./orphan.ts";
import { truncateFile, writeFileRange } from "./file_update.ts";
import { createFile } from "./namei.ts";
import {
  checkRegular,
  chmodAt,
  chownAt,
  fallocateAt,
  fallocateInode,
  type FallocateOptions,
  linkAt,
  mkdirAt,
  mknodAt,
  removeAt,
  removeXattrAt,
  renameAt,
  resolvePath,
  setXattrAt,
  symlinkAt,
  truncateAt,
  utimeAt,
  writeFileAt,
} from "./path_ops.ts";
import { Ext4WritableFile, type OpenWritableOptions } from "./writable_file.ts";
import { type PathSource, walkPath } from "./path.ts";
import type { Ext4Stat } from "./attr.ts";
import { directoryNameMap } from "./lookup.ts";
import { fileTypeOfDirentType } from "../ondisk/dirent.ts";
import { lookupInDirectory } from "./lookup.ts";
import { nameKey } from "./lookup.ts";

export type { FileType, Timespec };

export type { Ext4Stat };

/** A directory entry. */
export interface DirEntry {
  /** The name decoded as UTF-8 (invalid bytes become U+FFFD; `nameBytes` is exact). */
  name: string;
  /** The name exactly as stored. */
  nameBytes: Uint8Array;
  /** Inode the entry points to. */
  ino: number;
  /** Kind of object (from the entry's file type, or the inode without the filetype feature). */
  type: FileType;
}

/**
 * An open regular file: its stat at open time, positional reads and a stream of its content.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img, { readOnly: false });
 * await fs.writeFile("/vmlinuz", new TextEncoder().encode("MZ..HdrS"));
 * const f = await fs.open("/vmlinuz");
 * console.log(new TextDecoder().decode(await f.read(4, 4))); // HdrS
 * await f.close();
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export interface Ext4File {
  /** The file's stat when it was opened. */
  readonly stat: Ext4Stat;
  /** Reads up to `length` bytes at `offset`; short at end of file. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** The whole content as a stream of chunks. */
  readable(): ReadableStream<Uint8Array>;
  /**
   * Closes the file (harmless twice). On a writable filesystem an open file removed meanwhile
   * is freed at its last close; on a read-only one closing does nothing.
   */
  close(): Promise<void>;
}

/** Options for {@link Ext4.openDevice}: the open policy (lib/ext4/super.ts) and the reader's own. */
export interface Ext4OpenOptions extends OpenPolicy {
  /**
   * Called when a listing skips something damaged and goes on, as the kernel's readdir does:
   * a directory block that fails its checks, an entry whose name holds "/" or NUL. Without
   * it, the error's message goes to `onNotice` with "; skipped".
   */
  onCorrupt?: (error: CorruptError) => void;
  /** Inodes kept in memory (default 16384). */
  inodeCacheSize?: number;
  /** Metadata blocks (inode tables, directories, indirect and extent blocks) kept in memory (default 8192). */
  blockCacheSize?: number;
}

/** A time for the write methods: seconds and nanoseconds, a Date, or nanoseconds since the epoch. */
export type TimeInput = Timespec | Date | bigint;

/** Options of {@link Ext4.writeFile}. */
export interface WriteFileOptions {
  /** Permission bits of a created file (default 0o644); an existing file keeps its own. */
  mode?: number;
  /** Owner of a created file (default 0). */
  uid?: number;
  /** Group of a created file (default 0). */
  gid?: number;
  /** Set as the modification time (and access time, unless `atime` is given) after the write. */
  mtime?: TimeInput;
  /** Set as the access time after the write. */
  atime?: TimeInput;
  /** Create the file when absent (default true); false: NOT_FOUND instead. */
  create?: boolean;
  /** Fail with EXISTS when the file exists (O_EXCL). */
  createNew?: boolean;
  /** Add the data at the end instead of replacing the contents. */
  append?: boolean;
}

/** Options of {@link Ext4.mkdir}. */
export interface MkdirOptions {
  /** Make missing parents; an existing directory is fine (mkdir -p). */
  recursive?: boolean;
  /** Permission bits (default 0o755). */
  mode?: number;
  /** Owner (default 0). */
  uid?: number;
  /** Group (default 0). */
  gid?: number;
}

const NS_PER_SEC = 1_000_000_000n;

/** A {@link TimeInput} as seconds and nanoseconds. */
function toInodeTime(t: TimeInput): InodeTime {
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

/** Statistics of the whole filesystem, as statfs reports them. */
export interface Ext4Statfs {
  /** f_bsize: the filesystem block size. */
  blockSize: number;
  /** f_blocks: blocks minus metadata overhead, as the kernel reports. */
  blocks: number;
  /** f_bfree: free blocks (sum of the group descriptors). */
  freeBlocks: number;
  /** f_bavail: free blocks minus the reserved ones. */
  availBlocks: number;
  /** f_files: inodes. */
  files: number;
  /** f_ffree: free inodes. */
  freeFiles: number;
  /** f_namelen. */
  nameMax: 255;
}

/** Unindexed directories of more blocks than this get a cached name map for lookups... */
const INDEX_DIR_MIN_BLOCKS = 8;
/** ...unless they are larger than this (the map would be too big to keep). */
const INDEX_DIR_MAX_BYTES = 64 * 1024 * 1024;
const ROOT_INO = 2;
const STREAM_CHUNK = 1024 * 1024;
/** Largest single read, as Linux caps read(2) (MAX_RW_COUNT); longer reads come back short. */
const MAX_RW_COUNT = 0x7ffff000;
/** The kernel's limit on one xattr value (XATTR_SIZE_MAX). */
const XATTR_SIZE_MAX = 65536;
/** readFile returns one buffer: beyond this, stream with openFile. */
const MAX_READ_FILE = MAX_RW_COUNT;

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * The error for a root inode (of mode `mode`) that is not a directory: nothing can be listed,
 * the filesystem is corrupt (the kernel refuses to mount it).
 */
function rootNotDirectory(mode: number): CorruptError {
  return new CorruptError(
    `root inode ${ROOT_INO}`,
    `not a directory (mode 0o${mode.toString(8)}); run e2fsck`,
  );
}

/** An entry of directory `dir` whose name holds "/" or NUL. */
function badNameError(dir: number, name: Uint8Array): CorruptError {
  // JSON quoting shows a NUL (\u0000) and any control character visibly.
  return new CorruptError(
    `directory inode ${dir}`,
    `entry name ${JSON.stringify(utf8.decode(name))} contains "/" or NUL`,
  );
}

const encoder = new TextEncoder();

/**
 * A read-only view of an ext2/3/4 filesystem.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.openDevice(new MemoryBlockDevice(await Deno.readFile(img)));
 * for await (const e of fs.readDir("/")) console.log(e.name, e.type); // lost+found dir
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export class Ext4 {
  /** The device the filesystem is read from. */
  readonly device: BlockDevice;
  /** The superblock, read at open. */
  readonly superblock: Superblock;
  /** The group descriptor table, read at open. */
  readonly groups: GroupDescriptorTable;
  /** The options the filesystem was opened with. */
  readonly options: Readonly<Ext4OpenOptions>;
  #inodes: Lru<number, Inode>;
  #maps = new Lru<number, BlockRun[]>(512);
  #blocks: Lru<number, Uint8Array>;
  #xattrs = new Lru<number, Map<string, Uint8Array>>(512);
  /** Recent successful lookups: parent inode and name bytes -> child inode. */
  #dentries = new Lru<string, number>(16384);
  /** Name maps of large unindexed directories (lookups without an htree). */
  #dirIndex = new Lru<number, Map<string, number>>(8);
  #ctx: DirContext;
  /**
   * Bumped by every commit: a decoded structure computed from blocks read before a commit is
   * not cached after it (it may be stale).
   */
  #generation = 0;
  #closed = false;
  /** Writable filesystems only: the cache shared with the transactions, and the writer. */
  #cache: SharedBlockCache | null = null;
  #writer: Ext4Writer | null = null;
  #openFiles = new OpenFiles();
  /** True while {@link batch} runs: reads see its uncommitted steps. */
  #batching = false;
  /** Inode table start blocks in ascending order, with their groups (for invalidation). */
  #tables: { starts: number[]; groups: number[] } | null = null;

  /** Use {@link Ext4.openDevice} (or `Ext4.open` from mod.ts). */
  protected constructor(
    device: BlockDevice,
    sb: Superblock,
    groups: GroupDescriptorTable,
    options: Ext4OpenOptions,
  ) {
    this.device = device;
    this.superblock = sb;
    this.groups = groups;
    this.options = options;
    this.#inodes = new Lru(options.inodeCacheSize ?? 16384);
    this.#blocks = new Lru(options.blockCacheSize ?? 8192);
    this.#ctx = { sb };
    if (options.readOnly === false) {
      this.#cache = new SharedBlockCache(
        device,
        sb.blockSize,
        { capacity: options.blockCacheSize ?? 8192 },
        (batch) => this.#committed(batch),
      );
      this.#writer = Ext4Writer.attach(device, sb, groups, this.#cache);
    }
  }

  /**
   * Opens the filesystem on `device`: reads and checks the superblock and group descriptors,
   * refuses features ext4ts cannot read (UNSUPPORTED) and a journal that needs recovery
   * (NEEDS_RECOVERY, unless `allowDirtyJournal`).
   *
   * @example
   * ```ts
   * import { openBlockDevice } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.openDevice(openBlockDevice(img));
   * await fs.close(); // closes the device too
   * await Deno.remove(img);
   * ```
   */
  static async openDevice(raw: BlockDevice, options: Ext4OpenOptions = {}): Promise<Ext4> {
    const { sb, groups, device } = await Ext4.loadMetadata(raw, options);
    const fs = new Ext4(device, sb, groups, { readOnly: true, ...options });
    await fs.prepare();
    return fs;
  }

  /**
   * Reads and checks the superblock and descriptors under the one open policy
   * (lib/ext4/super.ts `openMetadata`); shared with subclasses' openers. `device` is what to
   * read through: the given device, or the journal overlay over it.
   */
  protected static loadMetadata(
    raw: BlockDevice,
    options: Ext4OpenOptions,
  ): Promise<OpenedMetadata> {
    return openMetadata(raw, options);
  }

  /**
   * Releases the device (and forgets every cache). On a writable filesystem, first waits for
   * the writes under way, closes the files still open (freeing those removed while open) and
   * flushes. Closing twice is harmless; any other use after close fails (errno EBADF).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      const w = this.#writer;
      if (w) {
        const open = this.#openFiles.inodes;
        this.#openFiles = new OpenFiles();
        for (const ino of open) {
          await w.transaction((ctx) => releaseIfUnlinked(ctx, ino)).catch(() => {});
        }
        // Queued behind every transaction under way.
        await w.transaction(() => Promise.resolve()).catch(() => {});
        await this.device.flush();
      }
    } finally {
      this.#inodes.clear();
      this.#maps.clear();
      this.#blocks.clear();
      this.#xattrs.clear();
      this.#dirIndex.clear();
      this.#dentries.clear();
      this.#cache?.invalidate();
      await this.device.close();
    }
  }

  /** True when the filesystem was opened for writing. */
  get writable(): boolean {
    return this.#writer !== null;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new Ext4Error("INVALID", "the filesystem is closed", { errno: Errno.EBADF });
    }
  }

  /**
   * Forgets every cached inode, block map, block, xattr map and lookup (after the device
   * changed under us, e.g. a writer or a journal replay).
   *
   * @example
   * ```ts
   * import { MemoryBlockDevice } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const device = new MemoryBlockDevice(await Deno.readFile(img));
   * const fs = await Ext4.openDevice(device);
   * await device.write(0, new Uint8Array(1024)); // changed behind the filesystem's back
   * fs.invalidateCaches();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  invalidateCaches(): void {
    this.#generation++;
    this.#cache?.invalidate();
    this.#dirIndex.clear();
    this.#dentries.clear();
    this.#inodes.clear();
    this.#maps.clear();
    this.#blocks.clear();
    this.#xattrs.clear();
  }

  /**
   * Forgets what is cached about inode `ino` (its record, block map, xattrs, directory name
   * map) and every cached lookup, after a writer changed it.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * fs.invalidateInode(11);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  invalidateInode(ino: number): void {
    this.#generation++;
    this.#inodes.delete(ino);
    this.#maps.delete(ino);
    this.#xattrs.delete(ino);
    this.#dirIndex.delete(ino);
    this.#dentries.clear();
  }

  /**
   * Forgets cached block `block` (a metadata block a writer changed; inode table blocks
   * included: call {@link invalidateInode} for the inodes in it too).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * fs.invalidateBlock(100);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  invalidateBlock(block: number): void {
    this.#generation++;
    this.#blocks.delete(block);
    this.#cache?.invalidate(block);
  }

  /**
   * A transaction ended (the shared cache already holds its images): forget what was decoded
   * from the blocks it changed. Inode records live only in inode tables, so only the inodes of
   * changed table blocks go; maps, xattrs, lookups and name maps are derived from blocks the
   * batch does not name by owner, so they all go (cheap to rebuild from the cached blocks).
   */
  #committed(batch: CommitBatch | null): void {
    if (batch && batch.metadata.length === 0 && batch.data.length === 0) return;
    this.#generation++;
    this.#maps.clear();
    this.#xattrs.clear();
    this.#dentries.clear();
    this.#dirIndex.clear();
    if (batch === null) {
      this.#inodes.clear();
      return;
    }
    for (const m of batch.metadata) this.#forgetInodesIn(m.block);
  }

  /** Drops the cached inodes whose records live in `block`, if it is an inode table block. */
  #forgetInodesIn(block: number): void {
    const sb = this.superblock;
    if (!this.#tables) {
      const order: [number, number][] = [];
      for (let g = 0; g < this.groups.length; g++) order.push([this.groups.get(g).inodeTable, g]);
      order.sort((a, b) => a[0] - b[0]);
      this.#tables = { starts: order.map((o) => o[0]), groups: order.map((o) => o[1]) };
    }
    const { starts, groups } = this.#tables;
    let lo = 0;
    let hi = starts.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= block) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (at < 0 || block >= starts[at] + sb.inodeTableBlocksPerGroup) return;
    const perBlock = sb.blockSize / sb.inodeSize;
    const first = groups[at] * sb.inodesPerGroup + (block - starts[at]) * perBlock + 1;
    for (let i = 0; i < perBlock; i++) this.#inodes.delete(first + i);
  }

  // ---------------------------------------------------------------- blocks and inodes

  /**
   * Reads filesystem block `block` (cached; for metadata). The returned bytes must not be
   * modified.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const b = await fs.readBlock(fs.superblock.firstDataBlock);
   * console.log(b.length); // 1024
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async readBlock(block: number): Promise<Uint8Array> {
    if (this.#cache) {
      this.#checkOpen();
      if (!Number.isSafeInteger(block) || block < 0 || block >= this.superblock.blocksCount) {
        throw new CorruptError("block reference", `block ${block} is outside the filesystem`);
      }
      // Committed images only: an open transaction's changes show once it commits (in a
      // batch, the batch's changes show after each of its steps).
      return this.#batching
        ? await this.#cache.read(block)
        : await this.#cache.readCommitted(block);
    }
    const cached = this.#blocks.get(block);
    if (cached) return cached;
    const bs = this.superblock.blockSize;
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.superblock.blocksCount) {
      throw new CorruptError("block reference", `block ${block} is outside the filesystem`);
    }
    if ((block + 1) * bs > this.device.size) {
      throw new CorruptError("block reference", `block ${block} is beyond the end of the device`);
    }
    const data = await readBytes(this.device, block * bs, bs);
    this.#blocks.set(block, data);
    return data;
  }

  /**
   * The decoded inode `ino` (cached).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const root = await fs.inode(2);
   * console.log(root.type); // dir
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async inode(ino: number): Promise<Inode> {
    const cached = this.#inodes.get(ino);
    if (cached) return cached;
    this.#checkOpen();
    const generation = this.#generation;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.superblock.inodesCount) {
      throw new CorruptError("inode reference", `inode ${ino} is out of range`);
    }
    // Read through the block cache: neighbouring inodes of a walk share table blocks.
    const sb = this.superblock;
    const offset = inodeLocation(sb, this.groups, ino);
    const bs = sb.blockSize;
    const table = await this.readBlock(Math.floor(offset / bs));
    const at = offset % bs;
    const inode = parseInode(sb, ino, table.slice(at, at + sb.inodeSize), {
      ignoreChecksum: this.options.ignoreChecksums,
    });
    if (generation === this.#generation) this.#inodes.set(ino, inode);
    return inode;
  }

  /**
   * The run list of an extent- or block-mapped inode (cached); empty for inodes without
   * block data (devices, fifos, fast symlinks without extents).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(8192));
   * const runs = await fs.blockRuns(await fs.inode(await fs.resolve("/f")));
   * console.log(runs[0].logical, runs[0].length); // 0 8
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async blockRuns(inode: Inode): Promise<BlockRun[]> {
    const cached = this.#maps.get(inode.ino);
    if (cached) return cached;
    const generation = this.#generation;
    const sb = this.superblock;
    let runs: BlockRun[];
    if (inode.usesExtents) {
      runs = await readExtentTree(sb, inode, (b) => this.readBlock(b), {
        ignoreChecksum: this.options.ignoreChecksums,
      });
    } else {
      const t = inode.type;
      if (t !== "file" && t !== "dir" && t !== "symlink") return [];
      runs = await readBlockMap(sb, inode, (b) => this.readBlock(b));
    }
    if (generation === this.#generation) this.#maps.set(inode.ino, runs);
    return runs;
  }

  /**
   * Physical block of file block `logical`, or null for a hole (unwritten counts as hole).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(8192));
   * const physical = await fs.mapBlock(await fs.inode(await fs.resolve("/f")), 0);
   * console.log(physical !== null); // true
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async mapBlock(inode: Inode, logical: number): Promise<number | null> {
    const runs = await this.blockRuns(inode);
    const i = findRun(runs, logical);
    if (i < 0) return null;
    const r = runs[i];
    if (logical >= r.logical + r.length || r.unwritten) return null;
    return r.physical + (logical - r.logical);
  }

  /**
   * The Ext4Stat of a decoded inode, as the kernel's stat reports it.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const st = fs.statOf(await fs.inode(2));
   * console.log(st.type, st.ino); // dir 2
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  statOf(inode: Inode): Ext4Stat {
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

  // ---------------------------------------------------------------- directories

  #directorySource(inode: Inode): DirectorySource {
    const bs = this.superblock.blockSize;
    const inline = inode.hasInlineData
      ? readInlineData(this.superblock, inode.ino, inode.bytes)
      : null;
    return {
      ino: inode.ino,
      generation: inode.generation,
      size: inode.size,
      blockSize: bs,
      inlineData: inline,
      isHtree: (inode.flags & InodeFlags.INDEX) !== 0 && !inode.hasInlineData,
      flags: inode.flags,
      nextMappedBlock: async (from: number) => {
        const runs = await this.blockRuns(inode);
        const i = findRun(runs, from);
        if (i >= 0 && from < runs[i].logical + runs[i].length) return from;
        return i + 1 < runs.length ? runs[i + 1].logical : null;
      },
      readBlock: async (logical: number) => {
        if (logical * bs >= inode.size) return null;
        const p = await this.mapBlock(inode, logical);
        return p === null ? null : this.readBlock(p);
      },
    };
  }

  async #dirInode(ino: number): Promise<Inode> {
    const inode = await this.inode(ino);
    if (inode.type !== "dir") {
      if (ino === ROOT_INO) throw rootNotDirectory(inode.mode);
      throw new Ext4Error("NOT_DIRECTORY", `inode ${ino} is not a directory`);
    }
    return inode;
  }

  async #entryType(rec: DirRecord): Promise<FileType> {
    const t = fileTypeOfDirentType(rec.fileType);
    if (t) return t;
    try {
      return (await this.inode(rec.ino)).type;
    } catch (e) {
      // An unreadable inode is that entry's error (on stat, lookup), not the listing's.
      if (e instanceof Ext4Error) return "unknown";
      throw e;
    }
  }

  /**
   * The inode a directory entry (or path) names, refused as the kernel's lookup refuses it:
   * a deleted or never used inode (no links, or mode 0) or one whose mode has no file type
   * is CORRUPT (errno EUCLEAN), like an unreadable one.
   */
  async #linkedInode(ino: number): Promise<Inode> {
    const inode = await this.inode(ino);
    // A root that is not a directory is the filesystem's error, whatever its mode says.
    if (ino === ROOT_INO && inode.type !== "dir") throw rootNotDirectory(inode.mode);
    if (inode.mode === 0 || inode.type === "unknown") {
      throw new CorruptError(
        `inode ${ino}`,
        inode.mode === 0
          ? "deleted or unused inode referenced (mode 0)"
          : `bogus mode 0o${inode.mode.toString(8)}`,
      );
    }
    if (inode.linksCount === 0) {
      throw new CorruptError(`inode ${ino}`, "deleted inode referenced (links count 0)");
    }
    return inode;
  }

  /**
   * Whether the inode bitmap marks inode `ino` in use. The kernel reads an inode a directory
   * entry names whatever its bit says; e2fsck calls a live inode whose bit is clear a bitmap
   * difference. Readers that report damage use this to say so.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * if (!(await fs.inodeAllocated(17))) console.log("inode 17 is free in the bitmap");
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async inodeAllocated(ino: number): Promise<boolean> {
    const sb = this.superblock;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) {
      throw new CorruptError("inode reference", `inode ${ino} is out of range`);
    }
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const reader = { read: (block: number) => this.readBlock(block) };
    const bitmap = await readInodeBitmap(reader, sb, this.groups, group);
    return testBit(bitmap, (ino - 1) % sb.inodesPerGroup);
  }

  /**
   * The stat of the inode a directory entry names (`DirEntry.ino`): like {@link getattr},
   * but a deleted or never used inode (no links, mode 0, no file type) is CORRUPT, as the
   * kernel's lookup answers (EUCLEAN) — listings use it per entry and report such entries.
   * For the root inode, anything but a directory is CORRUPT (the kernel refuses to mount).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * for await (const e of fs.readDirIno(2)) console.log((await fs.entryStat(e.ino)).size);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async entryStat(ino: number): Promise<Ext4Stat> {
    return this.statOf(await this.#linkedInode(ino));
  }

  /**
   * The entries of directory `ino`, including "." and "..", each with a resume cookie
   * (`offset`, always > 0) for {@link readDirFrom}.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * for await (const e of fs.readDirIno(2)) console.log(e.offset, e.name);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async *readDirIno(ino: number): AsyncIterable<DirEntry & { offset: number }> {
    yield* this.readDirFrom(ino, 0);
  }

  /**
   * The entries of directory `ino` after resume cookie `cookie` (0 = from the start).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * let lastCookie = 0;
   * for await (const e of fs.readDirIno(2)) lastCookie = e.offset; // a reader that stopped here
   * for await (const e of fs.readDirFrom(2, lastCookie)) console.log(e.name); // (nothing left)
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async *readDirFrom(ino: number, cookie: number): AsyncIterable<DirEntry & { offset: number }> {
    const inode = await this.#dirInode(ino);
    const src = this.#directorySource(inode);
    // Like the kernel's readdir, a corrupt block is reported and skipped, not fatal; lookups
    // through it still fail.
    const report = (e: CorruptError) =>
      this.options.onCorrupt
        ? this.options.onCorrupt(e)
        : this.options.onNotice?.(`${e.message}; skipped`);
    // Without the key, the kernel shows an encrypted directory's names as no-key names.
    const hasher = inode.isEncrypted ? await this.#noKeyHasher(inode) : null;
    for await (const rec of iterateDirectory(src, this.#ctx, cookie, report)) {
      let name = rec.name;
      if (hasher && !isDotOrDotDot(name)) {
        const h = hasher(name);
        name = noKeyName(name, h.major, h.minor);
      }
      // A "/" or NUL cannot be part of a name (no path could reach it, and FUSE rejects the
      // whole listing for one): the entry is damaged, reported and left out. Ciphertext may
      // hold any byte; its no-key name (base64url) never does.
      if (name.includes(0x2f) || name.includes(0)) {
        report(badNameError(ino, name));
        continue;
      }
      yield {
        name: utf8.decode(name),
        nameBytes: name,
        ino: rec.ino,
        type: await this.#entryType(rec),
        offset: rec.offset,
      };
    }
  }

  /**
   * The directory hash the kernel's readdir puts into the no-key names of encrypted directory
   * `dir`: directories it reads through the hash index (dir_index and an htree, a single block
   * or inline data) get the hash of the ciphertext name, the others 0 and 0.
   */
  async #noKeyHasher(dir: Inode): Promise<(name: Uint8Array) => DirHash> {
    const zero = () => ({ major: 0, minor: 0 });
    const sb = this.superblock;
    const indexed = (dir.flags & InodeFlags.INDEX) !== 0 && !dir.hasInlineData;
    if (
      (sb.compat & Compat.DIR_INDEX) === 0 ||
      !(indexed || dir.size === sb.blockSize || dir.hasInlineData)
    ) {
      return zero;
    }
    let version = sb.defHashVersion;
    if (indexed) {
      try {
        const p = await this.mapBlock(dir, 0);
        if (p === null) return zero;
        version = parseDxRoot(await this.readBlock(p), sb, dir.ino).info.hashVersion;
      } catch (e) {
        // A damaged index: the kernel's readdir falls back to a linear one, without hashes.
        if (e instanceof Ext4Error) return zero;
        throw e;
      }
    }
    // SipHash (encrypted + casefolded) keys on the encryption key: the kernel takes the
    // hash stored in the entry instead, which ext4ts does not read yet.
    if (version === DxHashVersion.SIPHASH) return zero;
    const signed = hashIsSigned(sb);
    if (!signed && version <= DxHashVersion.TEA) version += 3;
    return (name) => {
      try {
        return dirHash(name, version, sb.hashSeed, signed);
      } catch {
        return zero(); // an unknown hash version: no index to read through
      }
    };
  }

  /**
   * Finds `name` in directory `parentIno`: its inode number, or null. Uses the hash index
   * when there is one, else a cached name map (large directories) or a linear scan.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * console.log(await fs.lookupIno(2, "lost+found"), await fs.lookupIno(2, "etc")); // 11 null
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async lookupIno(parentIno: number, name: string | Uint8Array): Promise<number | null> {
    const want = typeof name === "string" ? encoder.encode(name) : name;
    if (want.length === 0 || want.length > 255) {
      await this.#dirInode(parentIno);
      return null;
    }
    const key = `${parentIno}/${nameKey(want)}`;
    const hit = this.#dentries.get(key);
    if (hit !== undefined) return hit;
    const generation = this.#generation;
    const ino = await this.#lookupUncached(parentIno, want);
    if (ino !== null && generation === this.#generation) this.#dentries.set(key, ino);
    return ino;
  }

  async #lookupUncached(parentIno: number, name: Uint8Array): Promise<number | null> {
    const dir = await this.#dirInode(parentIno);
    return await lookupInDirectory(this.#directorySource(dir), name, this.#ctx, {
      nameMap: (src) => this.#nameMap(src),
    });
  }

  /**
   * A large directory without a usable hash index is scanned once into a name map instead
   * of once per lookup (kept until the filesystem changes); null for other directories.
   */
  async #nameMap(src: DirectorySource): Promise<Map<string, number> | null> {
    const bs = this.superblock.blockSize;
    if (src.size <= INDEX_DIR_MIN_BLOCKS * bs || src.size > INDEX_DIR_MAX_BYTES) return null;
    let index = this.#dirIndex.get(src.ino);
    if (!index) {
      const generation = this.#generation;
      index = await directoryNameMap(src, this.#ctx);
      if (generation === this.#generation) this.#dirIndex.set(src.ino, index);
    }
    return index;
  }

  /**
   * Looks `name` up in directory `parentIno` and returns the child's stat; NOT_FOUND if absent.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const st = await fs.lookup(2, "lost+found");
   * console.log(st.ino, st.type); // 11 dir
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async lookup(parentIno: number, name: string | Uint8Array): Promise<Ext4Stat> {
    const ino = await this.lookupIno(parentIno, name);
    if (ino === null) {
      const shown = typeof name === "string" ? name : utf8.decode(name);
      throw new Ext4Error(
        "NOT_FOUND",
        `no such file or directory: ${shown} (in inode ${parentIno})`,
      );
    }
    return this.entryStat(ino);
  }

  // ---------------------------------------------------------------- paths

  /**
   * Resolves a path to an inode number. Intermediate symlinks are followed like a shell
   * does; the final one only when `followFinal` (or when a "/" follows it).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.symlink("lost+found", "/l");
   * console.log(await fs.resolve("/l", false), await fs.resolve("/l")); // 12 11
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async resolve(path: string, followFinal = true): Promise<number> {
    const r = await walkPath(this.#pathSource, path, { followLast: followFinal });
    if (!r.ino) throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
    return r.ino;
  }

  /** The path walk's inode source: this object's caches (lib/ext4/path.ts). */
  readonly #pathSource: PathSource = {
    modeOf: async (ino) => (await this.#linkedInode(ino)).mode,
    // The single-name lookup (seam: lib/ext4/lookup.ts once it exists).
    lookup: async (dir, name) => await this.lookupIno(dir, name) ?? 0,
    readLink: async (ino) => utf8.decode(await this.readLinkIno(ino)),
  };

  /**
   * The stat of `path`, following a final symlink.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/passwd", new TextEncoder().encode("root:x:0:0::/root:/bin/sh\n"));
   * console.log((await fs.stat("/passwd")).size); // 26
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async stat(path: string): Promise<Ext4Stat> {
    return this.entryStat(await this.resolve(path, true));
  }

  /**
   * The stat of `path` itself (a final symlink is not followed).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.symlink("usr/bin", "/bin");
   * console.log((await fs.lstat("/bin")).type); // symlink
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async lstat(path: string): Promise<Ext4Stat> {
    return this.entryStat(await this.resolve(path, false));
  }

  /**
   * The entries of the directory at `path`, without "." and "..".
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * for await (const e of fs.readDir("/")) console.log(e.name); // lost+found
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async *readDir(path: string): AsyncIterable<DirEntry> {
    const ino = await this.resolve(path, true);
    for await (const e of this.readDirIno(ino)) {
      if (isDotOrDotDot(e.nameBytes)) continue;
      yield { name: e.name, nameBytes: e.nameBytes, ino: e.ino, type: e.type };
    }
  }

  /**
   * The whole content of the regular file at `path` (a final symlink is followed).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/hostname", new TextEncoder().encode("box\n"));
   * const text = new TextDecoder().decode(await fs.readFile("/hostname"));
   * console.log(text); // box
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async readFile(path: string): Promise<Uint8Array> {
    const ino = await this.resolve(path, true);
    const inode = await this.#regularInode(ino, path);
    if (inode.size > MAX_READ_FILE) {
      throw new Ext4Error(
        "INVALID",
        `${path}: ${inode.size} bytes is too large to read at once; use openFile to stream it`,
        { errno: Errno.EFBIG },
      );
    }
    return this.#readInode(inode, 0, inode.size);
  }

  /**
   * Opens the regular file at `path` for streaming and positional reads: the same as
   * {@link Ext4.openFile} (`Ext4.open` the static method opens a filesystem, `fs.open` a file).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/syslog", new TextEncoder().encode("booted\n"));
   * const f = await fs.open("/syslog");
   * for await (const chunk of f.readable()) console.log(new TextDecoder().decode(chunk)); // booted
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  open(path: string): Promise<Ext4File> {
    return this.openFile(path);
  }

  /**
   * Opens the regular file at `path` for positional and streaming reads.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/big.iso", new Uint8Array(300_000));
   * const f = await fs.openFile("/big.iso");
   * let size = 0;
   * for await (const chunk of f.readable()) size += chunk.length;
   * console.log(size); // 300000
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async openFile(path: string): Promise<Ext4File> {
    const w = this.#writer;
    if (w) return await w.transaction(() => this.#openFileCounted(path));
    const ino = await this.resolve(path, true);
    const inode = await this.#regularInode(ino, path);
    return this.#fileHandle(inode, (offset, length) => this.#readInode(inode, offset, length));
  }

  /** openFile on a writable filesystem: counted open, reads of the current inode. */
  async #openFileCounted(path: string): Promise<Ext4File> {
    const ino = await this.resolve(path, true);
    const inode = await this.#regularInode(ino, path);
    this.#openFiles.open(ino);
    let closed = false;
    const handle = this.#fileHandle(
      inode,
      async (offset, length) => {
        if (closed) throw new Ext4Error("INVALID", `${path} is closed`, { errno: Errno.EBADF });
        return this.#readInode(await this.inode(ino), offset, length);
      },
      async () => {
        if (closed) return;
        closed = true;
        await this.#release(ino);
      },
    );
    return handle;
  }

  #fileHandle(
    inode: Inode,
    read: (offset: number, length: number) => Promise<Uint8Array>,
    close: () => Promise<void> = () => Promise.resolve(),
  ): Ext4File {
    const stat = this.statOf(inode);
    return {
      stat,
      read,
      close,
      readable: () => {
        let pos = 0;
        return new ReadableStream<Uint8Array>({
          pull: async (controller) => {
            // A writable filesystem's file may have grown or shrunk since it was opened.
            const size = this.#writer ? (await this.inode(inode.ino)).size : stat.size;
            if (pos >= size) {
              controller.close();
              return;
            }
            const chunk = await read(pos, STREAM_CHUNK);
            if (chunk.length === 0) {
              controller.close();
              return;
            }
            pos += chunk.length;
            controller.enqueue(chunk);
          },
        });
      },
    };
  }

  /**
   * The target of the symlink at `path`.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.symlink("usr/bin", "/bin");
   * console.log(await fs.readLink("/bin")); // usr/bin
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async readLink(path: string): Promise<string> {
    return utf8.decode(await this.readLinkIno(await this.resolve(path, false)));
  }

  /**
   * The xattr names of `path` (not following a final symlink).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/file", new Uint8Array(0));
   * await fs.setXattr("/file", "user.comment", new TextEncoder().encode("hi"));
   * console.log(await fs.listXattr("/file")); // [ "user.comment" ]
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async listXattr(path: string): Promise<string[]> {
    return this.listXattrIno(await this.resolve(path, false));
  }

  /**
   * One xattr value of `path` (not following a final symlink), as getxattr returns it.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/file", new Uint8Array(0));
   * await fs.setXattr("/file", "user.comment", new TextEncoder().encode("hi"));
   * console.log(new TextDecoder().decode(await fs.getXattr("/file", "user.comment"))); // hi
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async getXattr(path: string, name: string): Promise<Uint8Array> {
    return this.getXattrIno(await this.resolve(path, false), name);
  }

  /**
   * Every object under `path` (default "/"), depth-first with parents before children and
   * siblings in byte order of their names; the starting path comes first. Symlinks are not
   * followed. Paths join names as stored: a damaged image can hold names with "/", so check
   * `DirEntry.nameBytes` (readDirIno) before using a path to create files elsewhere. Names
   * that are not valid UTF-8 appear with U+FFFD, a spelling that does not resolve: walk on
   * `readDirIno` and `nameBytes` (as `treeListingBytes` does) to reach them.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * for await (const { path, stat } of fs.walk("/")) console.log(path, stat.type); // / dir, …
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async *walk(path = "/"): AsyncIterable<{ path: string; stat: Ext4Stat }> {
    const ino = await this.resolve(path, false);
    const start = path === "" ? "/" : path;
    const stack: { path: string; ino: number }[] = [{ path: start, ino }];
    const seenDirs = new Set<number>();
    while (stack.length > 0) {
      const item = stack.pop()!;
      const stat = await this.entryStat(item.ino);
      yield { path: item.path, stat };
      if (stat.type !== "dir") continue;
      // A directory reached twice is a cycle in a corrupt filesystem.
      if (seenDirs.has(item.ino)) {
        throw new CorruptError(`directory inode ${item.ino}`, "directory reached twice (cycle)");
      }
      seenDirs.add(item.ino);
      const children: DirEntry[] = [];
      for await (const e of this.readDirIno(item.ino)) {
        if (!isDotOrDotDot(e.nameBytes)) children.push(e);
      }
      children.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
      const prefix = item.path.endsWith("/") ? item.path : item.path + "/";
      for (let i = children.length - 1; i >= 0; i--) {
        stack.push({ path: prefix + children[i].name, ino: children[i].ino });
      }
    }
  }

  // ---------------------------------------------------------------- writing

  #writerFor(what: string): Ext4Writer {
    this.#checkOpen();
    if (!this.#writer) {
      throw new Ext4Error("READ_ONLY", `${what}: the filesystem is open read-only`);
    }
    return this.#writer;
  }

  /** True while inode `ino` is open through this object (its last unlink orphans it). */
  #isOpen = (ino: number): boolean => this.#openFiles.isOpen(ino);

  /** A handle of `ino` was closed: at the last close, an unlinked inode is freed. */
  async #release(ino: number): Promise<void> {
    if (!this.#openFiles.close(ino) || this.#closed || !this.#writer) return;
    await this.#writer.transaction((ctx) => releaseIfUnlinked(ctx, ino));
  }

  /**
   * Writes `data` as the whole contents of the file at `path` (a final symlink is followed):
   * created when absent (the parent must exist), replaced when present, or appended to with
   * `append`. One transaction — unless `data` is a stream, which is written in chunks as
   * {@link openWritable} does. IS_DIRECTORY for a directory, NOT_FOUND for a missing parent,
   * READ_ONLY (EROFS) on a read-only filesystem.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/hostname", new TextEncoder().encode("box\n"), { mode: 0o644 });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async writeFile(
    path: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    options: WriteFileOptions = {},
  ): Promise<void> {
    const w = this.#writerFor(path);
    const mtime = options.mtime === undefined ? undefined : toInodeTime(options.mtime);
    const atime = options.atime === undefined ? undefined : toInodeTime(options.atime);
    if (data instanceof ReadableStream) {
      const f = await this.openWritable(path, { ...options, truncate: !options.append });
      await data.pipeTo(f.writable());
      if (mtime || atime) await utimeAt(w, path, atime ?? mtime, mtime);
      return;
    }
    await writeFileAt(w, path, data, { ...options, mtime, atime });
  }

  /**
   * Opens the regular file at `path` for writing (and reading), creating it unless
   * `create: false`; see {@link Ext4WritableFile} for writes, truncate, sync and the
   * `writable()` stream. Each write is one transaction per 8 MiB. A file removed while open
   * stays on the orphan list until its last close.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/backup.tar", { truncate: true });
   * await ReadableStream.from([new Uint8Array(512), new Uint8Array(512)]).pipeTo(f.writable());
   * console.log((await fs.stat("/backup.tar")).size); // 1024
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async openWritable(path: string, options: OpenWritableOptions = {}): Promise<Ext4WritableFile> {
    const w = this.#writerFor(path);
    let counted = 0;
    try {
      const ino = await w.transaction(async (ctx) => {
        const r = await resolvePath(ctx, path, { followLast: true });
        let ino = r.ino;
        if (ino) {
          if (options.createNew) throw new Ext4Error("EXISTS", `${path} exists`);
          await checkRegular(ctx, ino, path);
          if (options.truncate) await truncateFile(ctx, ino, 0);
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
        this.#openFiles.open(ino);
        counted = ino;
        return ino;
      });
      return new Ext4WritableFile(this.#fileHost, ino, options.append ?? false);
    } catch (e) {
      if (counted) this.#openFiles.close(counted);
      throw e;
    }
  }

  /** What {@link Ext4WritableFile} handles call back into. */
  #fileHost = {
    write: (ino: number, offset: number, data: Uint8Array) =>
      this.#writerFor(`inode ${ino}`).transaction((ctx) => writeFileRange(ctx, ino, offset, data)),
    truncate: (ino: number, size: number) =>
      this.#writerFor(`inode ${ino}`).transaction((ctx) => truncateFile(ctx, ino, size)),
    fallocate: (ino: number, offset: number, length: number, options: FallocateOptions) =>
      this.#writerFor(`inode ${ino}`).transaction((ctx) =>
        fallocateInode(ctx, ino, offset, length, options)
      ),
    stat: (ino: number) => this.getattr(ino),
    read: (ino: number, offset: number, length: number) => this.read(ino, offset, length),
    sync: () => this.sync(),
    release: (ino: number) => this.#release(ino),
  };

  /**
   * Makes every write durable (each transaction is flushed when it commits; this waits for the
   * writes under way and flushes the device once more). Does nothing on a read-only filesystem.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(10));
   * await fs.sync();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async sync(): Promise<void> {
    this.#checkOpen();
    const w = this.#writer;
    if (!w) return; // nothing was written
    await w.transaction(() => Promise.resolve());
    await this.device.flush();
  }

  /**
   * Runs `fn` as one transaction: every write made through this object while `fn` runs is
   * committed once, when `fn` resolves — or, when `fn` or any write in it fails, nothing is
   * written at all (the filesystem as before the batch). Reads in `fn` see the batch's
   * earlier changes to names and inodes (modes, owners, times, xattrs); file contents written
   * in it read back once it has committed. The writes must be awaited one after another, and everything they change
   * (file data included) is held in memory until the commit, so a batch suits many small
   * edits, not bulk copies.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.batch(async () => {
   *   await fs.mkdir("/etc/app", { recursive: true });
   *   await fs.writeFile("/etc/app/app.conf", new TextEncoder().encode("debug = no\n"));
   *   await fs.chmod("/etc/app/app.conf", 0o600);
   * });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async batch<T>(fn: () => Promise<T>): Promise<T> {
    const w = this.#writerFor("batch");
    if (this.#batching) throw new Ext4Error("BUSY", "a batch is already running");
    this.#batching = true;
    try {
      return await w.group(fn, () => this.#committed(null));
    } finally {
      this.#batching = false;
      // What was decoded from the batch's images: committed now, or discarded.
      this.#committed(null);
    }
  }

  /**
   * Makes a directory. With `recursive`, missing parents are made too and an existing
   * directory is fine; without, EXISTS when `path` exists and NOT_FOUND when its parent does
   * not.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.mkdir("/srv/www", { recursive: true, mode: 0o750, uid: 33, gid: 33 });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    await mkdirAt(this.#writerFor(path), path, options);
  }

  /**
   * Removes a file, symlink, device node or empty directory; with `recursive`, a whole tree.
   * NOT_FOUND when absent, NOT_EMPTY for a non-empty directory, BUSY for the root. A file open
   * through this object is kept (on the orphan list) until its last close.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.mkdir("/tmp/cache", { recursive: true });
   * await fs.remove("/tmp/cache", { recursive: true });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await removeAt(this.#writerFor(path), path, { ...options, keepOpen: this.#isOpen });
  }

  /**
   * Renames `from` to `to` as rename(2): a file replaces a file, a directory an empty
   * directory (IS_DIRECTORY / NOT_DIRECTORY / NOT_EMPTY otherwise), moving a directory into
   * its own subtree is INVALID. `noReplace` fails with EXISTS instead of replacing,
   * `exchange` swaps the two (both must exist). A replaced file that is open stays until its
   * last close.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/app.conf.new", new TextEncoder().encode("debug = yes\n"));
   * await fs.rename("/app.conf.new", "/app.conf");
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async rename(
    from: string,
    to: string,
    options: { noReplace?: boolean; exchange?: boolean } = {},
  ): Promise<void> {
    if (options.noReplace && options.exchange) {
      throw new Ext4Error("INVALID", "noReplace and exchange exclude each other");
    }
    await renameAt(this.#writerFor(from), from, to, { ...options, keepOpen: this.#isOpen });
  }

  /**
   * Creates the symlink `path` pointing at `target` (EXISTS when `path` exists).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.mkdir("/etc");
   * await fs.symlink("../share/zoneinfo/UTC", "/etc/localtime");
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async symlink(
    target: string | Uint8Array,
    path: string,
    options: { uid?: number; gid?: number } = {},
  ): Promise<void> {
    await symlinkAt(this.#writerFor(path), target, path, options);
  }

  /**
   * Makes `newPath` a hard link to `existing` (not following a final symlink). Directories
   * cannot be linked (PERMISSION, errno EPERM).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/vim", new Uint8Array(0), { mode: 0o755 });
   * await fs.link("/vim", "/vi");
   * console.log((await fs.stat("/vi")).nlink); // 2
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async link(existing: string, newPath: string): Promise<void> {
    await linkAt(this.#writerFor(newPath), existing, newPath);
  }

  /**
   * Makes a device node, FIFO or socket; `mode` carries the type bits (`0o020000` character
   * device, `0o060000` block device, `0o010000` FIFO, `0o140000` socket) and permissions.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.mkdir("/dev");
   * await fs.mknod("/dev/null", 0o020666, { major: 1, minor: 3 });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async mknod(
    path: string,
    mode: number,
    options: { major?: number; minor?: number; uid?: number; gid?: number } = {},
  ): Promise<void> {
    await mknodAt(this.#writerFor(path), path, mode, options);
  }

  /**
   * Sets the permission bits (with set-id and sticky bits) of `path`, following a final
   * symlink as chmod(2).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/tool", new Uint8Array(0));
   * await fs.chmod("/tool", 0o755);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async chmod(path: string, mode: number): Promise<void> {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw new Ext4Error("INVALID", `bad mode ${mode}`);
    }
    await chmodAt(this.#writerFor(path), path, mode);
  }

  /**
   * Sets the owner and group of `path` (null keeps one), following a final symlink unless
   * `noFollow` (lchown).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.mkdir("/home/ann", { recursive: true });
   * await fs.chown("/home/ann", 1000, 1000);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async chown(
    path: string,
    uid: number | null,
    gid: number | null,
    options: { noFollow?: boolean } = {},
  ): Promise<void> {
    for (const id of [uid, gid]) {
      if (id !== null && (!Number.isInteger(id) || id < 0 || id > 0xffffffff)) {
        throw new Ext4Error("INVALID", `bad id ${id}`);
      }
    }
    await chownAt(this.#writerFor(path), path, uid ?? undefined, gid ?? undefined, {
      followLast: !options.noFollow,
    });
  }

  /**
   * Sets the access and modification times of `path` with nanoseconds (null keeps one);
   * times from 1901 to 2446 are stored (post-2038 included). A final symlink is followed
   * unless `noFollow`.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(0));
   * await fs.utime("/f", new Date(), { sec: 4102444800, nsec: 123456789 }); // 2100
   * await fs.utime("/f", null, 1700000000123456789n); // nanoseconds since the epoch
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async utime(
    path: string,
    atime: TimeInput | null,
    mtime: TimeInput | null,
    options: { noFollow?: boolean } = {},
  ): Promise<void> {
    const a = atime === null ? undefined : toInodeTime(atime);
    const m = mtime === null ? undefined : toInodeTime(mtime);
    await utimeAt(this.#writerFor(path), path, a, m, { followLast: !options.noFollow });
  }

  /**
   * Sets extended attribute `name` of `path` (not following a final symlink); `create` fails
   * with EXISTS when it is there, `replace` with NOT_FOUND (ENODATA) when it is not. POSIX
   * ACLs (`system.posix_acl_access`/`_default`) take the kernel's xattr format.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(0));
   * await fs.setXattr("/f", "user.mime_type", new TextEncoder().encode("text/plain"));
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async setXattr(
    path: string,
    name: string,
    value: Uint8Array,
    options: { create?: boolean; replace?: boolean } = {},
  ): Promise<void> {
    await setXattrAt(this.#writerFor(path), path, name, value, options);
  }

  /**
   * Removes extended attribute `name` of `path` (not following a final symlink); NOT_FOUND
   * with errno ENODATA when it is not there.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(0));
   * await fs.setXattr("/f", "user.mime_type", new TextEncoder().encode("text/plain"));
   * await fs.removeXattr("/f", "user.mime_type");
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async removeXattr(path: string, name: string): Promise<void> {
    await removeXattrAt(this.#writerFor(path), path, name);
  }

  /**
   * Sets the size of the regular file at `path`: blocks past it are freed, growing adds a
   * hole (reads as zeros).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/big.log", new Uint8Array(5000));
   * await fs.truncate("/big.log", 0);
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async truncate(path: string, size = 0): Promise<void> {
    await truncateAt(this.#writerFor(path), path, size);
  }

  /**
   * fallocate(2) on the regular file at `path`: preallocates unwritten blocks (default),
   * punches a hole (`mode: "punchHole"`) or zeroes a range (`mode: "zeroRange"`) of `length`
   * bytes at `offset`; `keepSize` keeps the size when the range ends past it.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/table", new Uint8Array(0));
   * await fs.fallocate("/table", 0, 64 << 10, { keepSize: true });
   * await fs.fallocate("/table", 8192, 4096, { mode: "punchHole" });
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async fallocate(
    path: string,
    offset: number,
    length: number,
    options: FallocateOptions = {},
  ): Promise<void> {
    await fallocateAt(this.#writerFor(path), path, offset, length, options);
  }

  // ---------------------------------------------------------------- inode level

  /**
   * The stat of inode `ino`.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const st = await fs.getattr(2);
   * console.log(st.type); // dir
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async getattr(ino: number): Promise<Ext4Stat> {
    return this.statOf(await this.inode(ino));
  }

  async #regularInode(ino: number, what: string): Promise<Inode> {
    const inode = await this.inode(ino);
    if (inode.type === "dir") throw new Ext4Error("IS_DIRECTORY", `${what}: is a directory`);
    if (inode.type !== "file") {
      throw new Ext4Error("INVALID", `${what}: not a regular file (${inode.type})`);
    }
    return inode;
  }

  async #readInode(inode: Inode, offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !(length >= 0)) {
      throw new Ext4Error("INVALID", `invalid read of ${length} bytes at ${offset}`);
    }
    if (inode.isEncrypted) {
      throw new Ext4Error(
        "UNSUPPORTED",
        `inode ${inode.ino} is encrypted (fscrypt): reading encrypted contents is not supported`,
        { errno: Errno.ENOKEY },
      );
    }
    const size = inode.size;
    if (offset >= size || length === 0) return new Uint8Array(0);
    length = Math.min(length, MAX_RW_COUNT);
    if (inode.hasInlineData) {
      const all = readInlineFile(this.superblock, inode.ino, inode.bytes, size);
      return all.slice(offset, Math.min(size, offset + length));
    }
    const runs = await this.blockRuns(inode);
    return readMapped(
      this.device,
      this.superblock.blockSize,
      runs,
      size,
      offset,
      length,
      `inode ${inode.ino}`,
    );
  }

  /**
   * Reads up to `length` bytes at `offset` of regular file `ino`; short at end of file (and,
   * like read(2), for lengths beyond 0x7ffff000).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new TextEncoder().encode("hello"));
   * const head = await fs.read(await fs.resolve("/f"), 0, 4096);
   * console.log(head.length); // 5
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async read(ino: number, offset: number, length: number): Promise<Uint8Array> {
    return this.#readInode(await this.#regularInode(ino, `inode ${ino}`), offset, length);
  }

  /**
   * The raw target bytes of symlink `ino` (fast, slow or inline).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.symlink("usr/bin", "/bin");
   * const target = new TextDecoder().decode(await fs.readLinkIno(await fs.resolve("/bin", false)));
   * console.log(target); // usr/bin
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async readLinkIno(ino: number): Promise<Uint8Array> {
    const inode = await this.inode(ino);
    if (inode.type !== "symlink") {
      throw new Ext4Error("INVALID", `inode ${ino} is not a symbolic link`);
    }
    if (inode.isEncrypted) {
      // Without the key the kernel shows the target as a no-key name of its ciphertext,
      // which follows a little-endian u16 length.
      const raw = await this.#readLinkRaw(inode);
      const len = raw.length >= 2 ? raw[0] | (raw[1] << 8) : 0;
      if (len === 0 || len + 2 > raw.length) {
        throw new CorruptError(
          `encrypted symlink inode ${ino}`,
          `ciphertext length ${len} in a target of ${raw.length} bytes`,
        );
      }
      return noKeyName(raw.subarray(2, 2 + len), 0, 0);
    }
    return this.#readLinkRaw(inode);
  }

  async #readLinkRaw(inode: Inode): Promise<Uint8Array> {
    const ino = inode.ino;
    const size = inode.size;
    if (size > this.superblock.blockSize) {
      throw new CorruptError(`symlink inode ${ino}`, `target length ${size} exceeds a block`);
    }
    if (inode.hasInlineData) {
      return readInlineData(this.superblock, inode.ino, inode.bytes).slice(0, size);
    }
    if (this.#isFastSymlink(inode)) {
      if (size >= 60) {
        throw new CorruptError(`symlink inode ${ino}`, `fast symlink of ${size} bytes`);
      }
      return inode.iBlock.slice(0, size);
    }
    const runs = await this.blockRuns(inode);
    return readMapped(this.device, this.superblock.blockSize, runs, size, 0, size, `inode ${ino}`);
  }

  /** The kernel's rule: no blocks besides an xattr block (EA inodes: by size). */
  #isFastSymlink(inode: Inode): boolean {
    if (inode.flags & InodeFlags.EA_INODE) return inode.size > 0 && inode.size < 60;
    const eaBlocks = inode.fileAcl !== 0 ? this.superblock.clusterSize / 512 : 0;
    return inode.blocks - eaBlocks === 0;
  }

  async #xattrMap(ino: number): Promise<Map<string, Uint8Array>> {
    const cached = this.#xattrs.get(ino);
    if (cached) return cached;
    const generation = this.#generation;
    const inode = await this.inode(ino);
    const map = await readXattrs({
      sb: this.superblock,
      ino,
      inodeBytes: inode.bytes,
      readBlock: (b: number) => this.readBlock(b),
      readEaInode: async (eaIno: number, size: number) => {
        const ea = await this.inode(eaIno);
        if ((ea.flags & InodeFlags.EA_INODE) === 0) {
          throw new CorruptError(`inode ${ino}`, `xattr value inode ${eaIno} is not an EA inode`);
        }
        if (size > XATTR_SIZE_MAX) {
          throw new CorruptError(`inode ${ino}`, `xattr value of ${size} bytes (max 65536)`);
        }
        if (ea.size < size) {
          throw new CorruptError(`EA inode ${eaIno}`, `size ${ea.size} < value size ${size}`);
        }
        const data = await this.#readInodeRaw(ea, 0, size);
        return data;
      },
    });
    map.delete("system.data");
    if (generation === this.#generation) this.#xattrs.set(ino, map);
    return map;
  }

  async #readInodeRaw(inode: Inode, offset: number, length: number): Promise<Uint8Array> {
    if (inode.hasInlineData) {
      return readInlineData(this.superblock, inode.ino, inode.bytes).slice(offset, offset + length);
    }
    const runs = await this.blockRuns(inode);
    return readMapped(
      this.device,
      this.superblock.blockSize,
      runs,
      inode.size,
      offset,
      length,
      `inode ${inode.ino}`,
    );
  }

  /**
   * The xattr names of inode `ino`.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * console.log(await fs.listXattrIno(2)); // []
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async listXattrIno(ino: number): Promise<string[]> {
    return [...(await this.#xattrMap(ino)).keys()];
  }

  /**
   * One xattr value of inode `ino`; a missing name is NOT_FOUND with errno ENODATA.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.setXattr("/", "user.comment", new TextEncoder().encode("root"));
   * console.log((await fs.getXattrIno(2, "user.comment")).length); // 4
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async getXattrIno(ino: number, name: string): Promise<Uint8Array> {
    const v = (await this.#xattrMap(ino)).get(name);
    if (v === undefined) {
      throw new Ext4Error("NOT_FOUND", `no xattr ${name} on inode ${ino}`, {
        errno: Errno.ENODATA,
      });
    }
    return v;
  }

  /**
   * SEEK_DATA / SEEK_HOLE: the first data (or hole) offset at or after `offset` in file `ino`;
   * NOT_FOUND with errno ENXIO when there is none (at or past end of file).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.writeFile("/f", new Uint8Array(4096));
   * await fs.truncate("/f", 1 << 20); // a hole after the first 4 KiB
   * console.log(await fs.seekData(await fs.resolve("/f"), 0, "hole")); // 4096
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async seekData(ino: number, offset: number, whence: "data" | "hole"): Promise<number> {
    const inode = await this.inode(ino);
    const size = inode.size;
    let at: number;
    if (inode.hasInlineData || (inode.type !== "file" && inode.type !== "dir")) {
      at = offset >= size ? -1 : whence === "data" ? offset : size;
    } else {
      at = seekRuns(await this.blockRuns(inode), this.superblock.blockSize, size, offset, whence);
    }
    if (at < 0) {
      throw new Ext4Error("NOT_FOUND", `no ${whence} at or after ${offset} in inode ${ino}`, {
        errno: Errno.ENXIO,
      });
    }
    return at;
  }

  /**
   * Filesystem statistics (statfs).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const { blocks, freeBlocks, blockSize } = fs.statfs();
   * console.log(blockSize, freeBlocks < blocks); // 1024 true
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  statfs(): Ext4Statfs {
    this.#checkOpen();
    const sb = this.superblock;
    const ratio = sb.clusterSize / sb.blockSize;
    let freeClusters = 0;
    let freeInodes = 0;
    for (let g = 0; g < this.groups.length; g++) {
      const gd = this.groups.get(g);
      freeClusters += gd.freeBlocksCount;
      freeInodes += gd.freeInodesCount;
    }
    const free = freeClusters * ratio;
    // The kernel keeps 2% of clusters (at most 4096) back on extent filesystems, on top of
    // the superblock's reserved blocks.
    const resv = (sb.incompat & Incompat.EXTENTS)
      ? Math.min(Math.floor(Math.floor(sb.blocksCount / ratio) / 50), 4096) * ratio
      : 0;
    return {
      blockSize: sb.blockSize,
      blocks: sb.blocksCount - this.#overheadClusters() * ratio,
      freeBlocks: free,
      availBlocks: Math.max(0, free - (sb.reservedBlocksCount + resv)),
      files: sb.inodesCount,
      freeFiles: freeInodes,
      nameMax: 255,
    };
  }

  /** Set when the filesystem was opened: blocks of the internal journal (for statfs). */
  protected journalBlocks = 0;

  /** Work done once at open that needs reads: the journal size when statfs must compute it. */
  protected async prepare(): Promise<void> {
    const sb = this.superblock;
    if (sb.overheadClusters === 0 && (sb.compat & Compat.HAS_JOURNAL) && sb.journalInum !== 0) {
      try {
        const j = await this.inode(sb.journalInum);
        this.journalBlocks = Math.ceil(j.size / sb.blockSize);
      } catch {
        this.journalBlocks = 0; // statfs is an estimate then; reading files still works
      }
    }
    // Orphans left by a previous user (files removed while open, then a crash): freed as the
    // kernel frees them at a read-write mount.
    if (this.#writer && (sb.lastOrphan !== 0 || (sb.roCompat & RoCompat.ORPHAN_PRESENT))) {
      const r = await this.#writer.transaction((ctx) => processOrphans(ctx));
      if (r.freed.length + r.truncated.length > 0) {
        this.options.onNotice?.(
          `orphan list processed: ${r.freed.length} inode(s) freed, ${r.truncated.length} truncated`,
        );
      }
    }
  }

  /**
   * Clusters that hold metadata, as statfs subtracts them: the superblock's
   * `s_overhead_clusters`, or computed as the kernel's count does (superblock and descriptor
   * copies, reserved GDT blocks, bitmaps, inode tables, the internal journal; exact without
   * bigalloc).
   */
  #overheadClusters(): number {
    const sb = this.superblock;
    if (sb.overheadClusters !== 0) return sb.overheadClusters;
    const ratio = sb.clusterSize / sb.blockSize;
    const groups = sb.groupCount;
    const gdtBlocks = Math.ceil(groups / (sb.blockSize / sb.descSize));
    const metaBg = (sb.incompat & Incompat.META_BG) !== 0;
    const perBlock = sb.blockSize / sb.descSize;
    let blocks = sb.firstDataBlock;
    for (let g = 0; g < groups; g++) {
      const hasSuper = groupHasSuperblock(sb, g);
      blocks += hasSuper ? 1 : 0;
      if (!metaBg || g < sb.firstMetaBg * perBlock) {
        if (hasSuper) blocks += gdtBlocks + sb.reservedGdtBlocks;
      } else {
        const inMeta = g % perBlock;
        if (inMeta === 0 || inMeta === 1 || inMeta === perBlock - 1) blocks += 1;
      }
      blocks += 2 + sb.inodeTableBlocksPerGroup;
    }
    return Math.ceil(blocks / ratio) + Math.ceil(this.journalBlocks / ratio);
  }
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/**
 * Byte-wise comparison of two names (the order `ls` uses in the C locale).
 *
 * @example
 * ```ts
 * import { compareBytes } from "./filesystem.ts";
 * console.log(compareBytes(new Uint8Array([1]), new Uint8Array([1, 0]))); // -1
 * ```
 */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The file type of a full st_mode (re-exported for callers of the stat API). */
export { fileTypeOfMode };
