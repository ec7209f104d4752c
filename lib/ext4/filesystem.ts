/**
 * The filesystem object: {@link Ext4} opens a filesystem on a {@link BlockDevice} and reads
 * everything in it — paths, inodes, directories, file data, symlinks, xattrs — with bounded
 * caches of inodes, block maps and metadata blocks. Opened with `readOnly: false` it also
 * writes (writeFile, mkdir, remove, rename, …, open files for writing), every change one
 * transaction, with one block cache shared by reads and writes (see {@link SharedBlockCache}).
 *
 * lib/ cannot open files by path; mod.ts adds `Ext4.open(path)` over ffi/file_device.ts.
 *
 * The class holds the state and thin methods; the work is in its own modules: the public
 * types (lib/ext4/fs_types.ts, re-exported here), the caches and their invalidation
 * (lib/ext4/fs_cache.ts), directories, readdir and the walk (lib/ext4/fs_dir.ts), the read
 * path (lib/ext4/fs_read.ts), the write methods' bodies (lib/ext4/fs_write.ts) and statfs
 * (lib/ext4/statfs.ts).
 *
 * Over 700 lines because the JSDoc of the facade's ~60 public methods, with the examples
 * `deno test --doc` runs, stays with the methods (about 900 of its lines are JSDoc).
 *
 * @module
 */

import { type BlockDevice, readAheadBlocks, readBytes } from "../block/block_device.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import { RoCompat } from "../ondisk/features.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import {
  type FileType,
  fileTypeOfMode,
  type Inode,
  inodeLocation,
  type Timespec,
} from "../ondisk/inode.ts";
import { type BlockRun, findRun } from "./file_map.ts";
import { readExtentTree } from "./extents.ts";
import { readBlockMap } from "./indirect.ts";
import type { DirContext } from "../ondisk/dirent.ts";
import type { DirectorySource } from "./dir.ts";
import { readInodeBitmap, testBit } from "../ondisk/bitmap.ts";
import { type OpenedMetadata, openMetadata } from "./super.ts";
import { CountingDevice } from "../block/counting_device.ts";
import {
  blocksWithin,
  type CacheBudget,
  DEFAULT_CACHE_BYTES,
  splitCacheBudget,
} from "../block/cache_budget.ts";
import { SharedBlockCache } from "../txn/shared_block_cache.ts";
import { Ext4Writer } from "./writer.ts";
import { OpenFiles } from "./open_files.ts";
import { processOrphansInSteps, releaseUnlinked } from "./long_ops.ts";
import {
  fallocateAt,
  type FallocateOptions,
  linkAt,
  mkdirAt,
  mknodAt,
  removeAt,
  removeXattrAt,
  setXattrAt,
  symlinkAt,
  truncateAt,
} from "./path_ops.ts";
import type { Ext4WritableFile, OpenWritableOptions } from "./writable_file.ts";
import { type PathSource, walkPath } from "./path.ts";
import { type Ext4Stat, inodeStat } from "./attr.ts";
import { directoryNameMap, lookupInDirectory, nameKey } from "./lookup.ts";
import { FsCaches } from "./fs_cache.ts";
import type { FsCacheCounts } from "./fs_cache.ts";
import { INODE_READAHEAD_BLOCKS, inodeTableWindow, shareInodeCache } from "./inode.ts";
import type {
  DirEntry,
  Ext4File,
  Ext4OpenOptions,
  Ext4Statfs,
  MkdirOptions,
  TimeInput,
  WriteFileOptions,
} from "./fs_types.ts";
import {
  directorySource,
  dirInode,
  isDotOrDotDot,
  linkedInode,
  readDirectory,
  walkTree,
} from "./fs_dir.ts";
import {
  fileHandle,
  readFileData,
  readLinkTarget,
  readWholeFile,
  readXattrMap,
  regularInode,
  seekInode,
} from "./fs_read.ts";
import {
  chmodPath,
  chownPath,
  openWritableFile,
  renamePath,
  utimePath,
  writableFileHost,
  writeFileTo,
} from "./fs_write.ts";
import { computeStatfs, journalBlockCount } from "./statfs.ts";
import { Ext4NodeWriter } from "./fs_node_write.ts";

export type { FileType, Timespec };

export type { Ext4Stat };

export type { FsCacheCounts };

export type * from "./fs_types.ts";

export type { Ext4NodeWriter, NodeAttributeChange, NodeCreateOptions } from "./fs_node_write.ts";

export { compareBytes } from "./fs_dir.ts";

/**
 * Unindexed directories of more blocks than this get a cached name map for lookups (unless the
 * map would take more than the name-map cache keeps: then they are scanned).
 */
const INDEX_DIR_MIN_BLOCKS = 8;

const utf8 = new TextDecoder("utf-8", { fatal: false });
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
  /** Decoded inodes, maps, blocks, xattrs and lookups (lib/ext4/fs_cache.ts). */
  #caches: FsCaches;
  /** The bytes each cache may hold (lib/block/cache_budget.ts). */
  readonly #budget: CacheBudget;
  #ctx: DirContext;
  #closed = false;
  /** Writable filesystems only: the cache shared with the transactions, and the writer. */
  #cache: SharedBlockCache | null = null;
  #writer: Ext4Writer | null = null;
  #openFiles = new OpenFiles();
  /** True while {@link batch} runs: reads see its uncommitted steps. */
  #batching = false;

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
    this.#budget = splitCacheBudget(options.cacheBytes ?? DEFAULT_CACHE_BYTES, sb);
    this.#caches = new FsCaches(sb, groups, {
      budget: this.#budget,
      inodes: options.inodeCacheSize,
      blocks: options.blockCacheSize,
      ignoreChecksums: options.ignoreChecksums,
      writable: options.readOnly === false,
    });
    this.#ctx = { sb };
    if (options.readOnly === false) {
      // Written through a counter: the lifetime writes recorded at close.
      const counted = new CountingDevice(device);
      const blocks = blocksWithin(this.#budget.blocks, sb.blockSize);
      this.#cache = new SharedBlockCache(
        counted,
        sb.blockSize,
        { capacity: Math.min(blocks, options.blockCacheSize ?? blocks) },
        (batch) => this.#caches.committed(batch),
      );
      // One inode cache for reads and writes: the write path reads records through it, and
      // its commits put the records they wrote in it (lib/ext4/inode.ts).
      shareInodeCache(this.#cache, this.#caches.inodeCache);
      this.#writer = Ext4Writer.attach(counted, sb, groups, this.#cache);
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
   * flushes; rejects (IO) when a device write or flush of this object ever failed, after
   * releasing the device all the same. Closing twice is harmless; any other use after close
   * fails (errno EBADF).
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
        // A release or queued transaction that fails here was reported to no one: when a device
        // write or flush failed, the flush below rejects with that failure (close never
        // resolves after an I/O error); other errors of theirs are the orphans' (freed later).
        for (const ino of open) {
          await releaseUnlinked(w, ino).catch(() => {});
        }
        // Queued behind every transaction under way.
        await w.transaction(() => Promise.resolve()).catch(() => {});
        await w.flush(); // rejects after any I/O failure (lib/txn/transaction.ts)
        await w.close(); // the superblock: cleanly closed (lib/ext4/mount_state.ts)
      }
    } finally {
      // Also after a failure: no MMP update may outlive the open (close marks it clean).
      await this.#writer?.releaseMmp().catch(() => {});
      this.#caches.clear();
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
    this.#caches.clear();
    this.#cache?.invalidate();
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
    this.#caches.forgetInode(ino);
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
    this.#caches.forgetBlock(block);
    this.#cache?.invalidate(block);
  }

  /**
   * Hits and misses of the decoded caches so far — inode records (shared with the write
   * path), block maps, xattr maps, name lookups, directory name maps — for tests and
   * benchmarks. A commit drops only what was derived from the inodes it changed.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * await fs.stat("/lost+found");
   * await fs.stat("/lost+found");
   * console.log(fs.cacheCounts.lookups); // { hits: 1, misses: 1 }
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  get cacheCounts(): FsCacheCounts {
    return this.#caches.counts;
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
    const cached = this.#caches.blocks.get(block);
    if (cached) return cached;
    const bs = this.superblock.blockSize;
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.superblock.blocksCount) {
      throw new CorruptError("block reference", `block ${block} is outside the filesystem`);
    }
    if ((block + 1) * bs > this.device.size) {
      throw new CorruptError("block reference", `block ${block} is beyond the end of the device`);
    }
    const data = await readBytes(this.device, block * bs, bs);
    this.#caches.blocks.set(block, data);
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
    const inodes = this.#caches.inodeCache;
    const cached = inodes.get(ino);
    if (cached) return cached;
    this.#checkOpen();
    const generation = inodes.generation;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.superblock.inodesCount) {
      throw new CorruptError("inode reference", `inode ${ino} is out of range`);
    }
    // Read through the block cache: neighbouring inodes of a walk share table blocks.
    const sb = this.superblock;
    const offset = inodeLocation(sb, this.groups, ino);
    const bs = sb.blockSize;
    const block = Math.floor(offset / bs);
    if (!this.holdsBlock(block)) await this.#readInodeTableAhead(ino);
    const table = await this.readBlock(block);
    const at = offset % bs;
    return inodes.keep(ino, table.slice(at, at + sb.inodeSize), generation);
  }

  /**
   * Whether the metadata block cache holds `block`: a {@link readBlock} of it costs no I/O.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img);
   * await fs.readBlock(1);
   * console.log(fs.holdsBlock(1)); // true
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  holdsBlock(block: number): boolean {
    return this.#cache ? this.#cache.has(block) : this.#caches.blocks.get(block) !== undefined;
  }

  /**
   * Inode read-ahead (the kernel's `inode_readahead_blks`): the run of table blocks around
   * `ino`'s, inside its group's in-use table (lib/ext4/inode.ts `inodeTableWindow`) — a listing
   * or a walk then costs one device read per run of table blocks instead of one per block.
   */
  async #readInodeTableAhead(ino: number): Promise<void> {
    const limit = this.readAheadLimit;
    if (limit < 2) return;
    const { first, count } = inodeTableWindow(this.superblock, this.groups, ino, limit);
    await this.readAhead(first, count);
  }

  /**
   * Most blocks one {@link readAhead} reads: the kernel's 32 inode table blocks, at most a
   * sixteenth of the metadata block cache, so a run never pushes out the working set.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img);
   * console.log(fs.readAheadLimit <= 32); // true
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  get readAheadLimit(): number {
    const capacity = this.#cache ? this.#cache.capacity : this.#caches.blocks.capacity;
    return Math.min(INODE_READAHEAD_BLOCKS, Math.floor(capacity / 16));
  }

  /**
   * Reads metadata blocks `first` … `first + count - 1` into the block cache in one device
   * read (read-ahead: inode tables, a directory being listed), skipping those at either end
   * the cache holds already; later {@link readBlock}s of them cost no I/O. On a writable
   * filesystem a block is kept only as {@link readBlock} would keep it (lib/txn/transaction.ts
   * `BlockCache.readAhead`). Best effort: a failed read keeps nothing and is not an error.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img);
   * const table = fs.groups.get(0).inodeTable;
   * await fs.readAhead(table, 8); // one read; the 8 table blocks are cached
   * console.log((await fs.readBlock(table + 7)).length); // 1024
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async readAhead(first: number, count: number): Promise<void> {
    this.#checkOpen();
    const bs = this.superblock.blockSize;
    const end = Math.min(
      first + count,
      this.superblock.blocksCount,
      Math.floor(this.device.size / bs),
    );
    if (!Number.isSafeInteger(first) || first < 0 || end - first < 2) return;
    if (this.#cache) return await this.#cache.readAhead(first, end - first);
    const blocks = this.#caches.blocks;
    await readAheadBlocks(
      this.device,
      bs,
      first,
      end - first,
      (b) => blocks.get(b) === undefined,
      (b, image) => blocks.set(b, image),
    );
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
  blockRuns(inode: Inode): Promise<BlockRun[]> {
    const sb = this.superblock;
    return this.#caches.blockMap(inode, async () => {
      if (inode.usesExtents) {
        return await readExtentTree(sb, inode, (b) => this.readBlock(b), {
          ignoreChecksum: this.options.ignoreChecksums,
        });
      }
      const t = inode.type;
      if (t !== "file" && t !== "dir" && t !== "symlink") return [];
      return await readBlockMap(sb, inode, (b) => this.readBlock(b));
    });
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
    return inodeStat(inode);
  }

  // ---------------------------------------------------------------- directories

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
    return this.statOf(await linkedInode(this, ino));
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
    const inode = await dirInode(this, ino);
    // Like the kernel's readdir, a corrupt block is reported and skipped, not fatal; lookups
    // through it still fail.
    const report = (e: CorruptError) =>
      this.options.onCorrupt
        ? this.options.onCorrupt(e)
        : this.options.onNotice?.(`${e.message}; skipped`);
    yield* readDirectory(this, this.#ctx, inode, cookie, report);
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
      await dirInode(this, parentIno);
      return null;
    }
    const key = nameKey(want);
    // A hit without I/O while the parent's record is cached (lookups are derived from it).
    const parent = this.#caches.inodeCache.records.get(parentIno);
    const hit = parent && this.#caches.cachedLookup(parent, key);
    if (hit !== undefined) return hit;
    const dir = await dirInode(this, parentIno);
    return await this.#caches.lookup(
      dir,
      key,
      () =>
        lookupInDirectory(directorySource(this, dir), want, this.#ctx, {
          nameMap: (src) => this.#nameMap(src, dir),
        }),
    );
  }

  /**
   * A large directory without a usable hash index is scanned once into a name map instead
   * of once per lookup (kept until the filesystem changes); null for other directories and
   * for one whose map would not fit in the name-map cache.
   */
  async #nameMap(src: DirectorySource, dir: Inode): Promise<Map<string, number> | null> {
    if (src.size <= INDEX_DIR_MIN_BLOCKS * this.superblock.blockSize) return null;
    return await this.#caches.nameMap(dir, (max) => directoryNameMap(src, this.#ctx, max));
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
    modeOf: async (ino) => (await linkedInode(this, ino)).mode,
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
    return await readWholeFile(this, await regularInode(this, ino, path), path);
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
    const inode = await regularInode(this, await this.resolve(path, true), path);
    return fileHandle(
      this,
      inode,
      (offset, length) => readFileData(this, inode, offset, length),
      false,
    );
  }

  /** openFile on a writable filesystem: counted open, reads of the current inode. */
  async #openFileCounted(path: string): Promise<Ext4File> {
    const ino = await this.resolve(path, true);
    const inode = await regularInode(this, ino, path);
    this.#openFiles.open(ino);
    let closed = false;
    return fileHandle(
      this,
      inode,
      async (offset, length) => {
        if (closed) throw new Ext4Error("INVALID", `${path} is closed`, { errno: Errno.EBADF });
        return readFileData(this, await this.inode(ino), offset, length);
      },
      true,
      async () => {
        if (closed) return;
        closed = true;
        await this.#release(ino);
      },
    );
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
    yield* walkTree(this, path);
  }

  // ---------------------------------------------------------------- writing

  #writerFor(what: string): Ext4Writer {
    this.#checkOpen();
    if (!this.#writer) {
      throw new Ext4Error("READ_ONLY", `${what}: the filesystem is open read-only`);
    }
    // After a failed device write or flush, every write fails at once (IO, EIO).
    this.#writer.cache.throwIfFailed();
    return this.#writer;
  }

  /** True while inode `ino` is open through this object (its last unlink orphans it). */
  #isOpen = (ino: number): boolean => this.#openFiles.isOpen(ino);

  /** A handle of `ino` was closed: at the last close, an unlinked inode is freed. */
  async #release(ino: number): Promise<void> {
    if (!this.#openFiles.close(ino) || this.#closed || !this.#writer) return;
    await releaseUnlinked(this.#writer, ino);
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
    await writeFileTo(w, path, data, options, (p, o) => this.openWritable(p, o));
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
    return await openWritableFile(w, path, options, this.#openFiles, this.#fileHost);
  }

  /**
   * Writes by inode number and directory entry (what a FUSE server holds), each one
   * transaction, sharing this object's open-file counts (see {@link Ext4NodeWriter}).
   * READ_ONLY (EROFS) on a read-only filesystem.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const nw = fs.nodeWriter();
   * const name = new TextEncoder().encode("notes");
   * const ino = await nw.create(2, name, { mode: 0o100644, uid: 0, gid: 0 });
   * await nw.write(ino, 0, new TextEncoder().encode("hi\n"));
   * await nw.release(ino);
   * console.log((await fs.stat("/notes")).size); // 3
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  nodeWriter(): Ext4NodeWriter {
    this.#writerFor("nodeWriter");
    return Ext4NodeWriter.over({
      writerFor: (what) => this.#writerFor(what),
      openFiles: () => this.#openFiles,
      release: (ino) => this.#release(ino),
      sync: () => this.sync(),
    });
  }

  /** What {@link Ext4WritableFile} handles call back into. */
  #fileHost = writableFileHost({
    writerFor: (what) => this.#writerFor(what),
    getattr: (ino) => this.getattr(ino),
    read: (ino, offset, length) => this.read(ino, offset, length),
    sync: () => this.sync(),
    release: (ino) => this.#release(ino),
  });

  /**
   * Makes every write durable: waits for the writes under way, commits the running transaction
   * (with `commitInterval`; otherwise each write committed as it returned) and flushes the
   * device once more. Does nothing on a read-only filesystem.
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
    await w.flush();
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
      return await w.group(fn, () => this.#caches.committed(null));
    } finally {
      this.#batching = false;
      // What was decoded from the batch's images: committed now, or discarded.
      this.#caches.committed(null);
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
    await renamePath(() => this.#writerFor(from), from, to, options, this.#isOpen);
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
    await chmodPath(() => this.#writerFor(path), path, mode);
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
    await chownPath(() => this.#writerFor(path), path, uid, gid, options);
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
    await utimePath(() => this.#writerFor(path), path, atime, mtime, options);
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
    return await readFileData(this, await regularInode(this, ino, `inode ${ino}`), offset, length);
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
    return await readLinkTarget(this, await this.inode(ino));
  }

  async #xattrMap(ino: number): Promise<Map<string, Uint8Array>> {
    const inode = await this.inode(ino);
    return await this.#caches.xattrMap(inode, () => readXattrMap(this, ino));
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
   * One xattr value of inode `ino`, or undefined when it has no such name: what a server
   * asked for many missing names (`security.selinux` by every `ls -l`) answers without
   * building an error each time.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * console.log(await fs.findXattrIno(2, "security.selinux")); // undefined
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async findXattrIno(ino: number, name: string): Promise<Uint8Array | undefined> {
    return (await this.#xattrMap(ino)).get(name);
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
    const v = await this.findXattrIno(ino, name);
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
    return await seekInode(this, await this.inode(ino), offset, whence);
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
    return computeStatfs(this.superblock, this.groups, this.journalBlocks);
  }

  /** Set when the filesystem was opened: blocks of the internal journal (for statfs). */
  protected journalBlocks = 0;

  /** Work done once at open that needs reads: the journal size when statfs must compute it. */
  protected async prepare(): Promise<void> {
    const sb = this.superblock;
    this.journalBlocks = await journalBlockCount(sb, (ino) => this.inode(ino));
    // The MMP block claimed before anything is written (mmp filesystems), then every commit
    // of a journaled filesystem goes through its journal (lib/txn/journal_sink.ts).
    await this.#writer?.claimMmp({ onNotice: this.options.onNotice });
    await this.#writer?.openJournal({
      maxPinnedBlocks: blocksWithin(this.#budget.pinned, sb.blockSize),
    });
    const interval = this.options.commitInterval ?? 0;
    if (this.#writer && interval > 0) this.#writer.startGroupCommit(interval * 1000);
    // Orphans left by a previous user (files removed while open, then a crash): freed as the
    // kernel frees them at a read-write mount.
    if (this.#writer && (sb.lastOrphan !== 0 || (sb.roCompat & RoCompat.ORPHAN_PRESENT))) {
      const r = await processOrphansInSteps(this.#writer);
      if (r.skipped) this.options.onNotice?.(`orphan list not processed: ${r.skipped}`);
      else if (r.freed.length + r.truncated.length > 0) {
        this.options.onNotice?.(
          `orphan list processed: ${r.freed.length} inode(s) freed, ${r.truncated.length} truncated`,
        );
      }
    }
  }
}

/** The file type of a full st_mode (re-exported for callers of the stat API). */
export { fileTypeOfMode };
