/**
 * The filesystem object: {@link Ext4} opens a filesystem on a {@link BlockDevice} and reads
 * everything in it — paths, inodes, directories, file data, symlinks, xattrs — with bounded
 * caches of inodes, block maps and metadata blocks.
 *
 * lib/ cannot open files by path; mod.ts adds `Ext4.open(path)` over ffi/file_device.ts.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "./block_device.ts";
import { CorruptError, Errno, Ext4Error } from "./errors.ts";
import { Compat, featureSupport, Incompat } from "./features.ts";
import {
  type GroupDescriptorTable,
  groupHasSuperblock,
  readGroupDescriptors,
} from "./group_descriptor.ts";
import { readSuperblock, type Superblock } from "./superblock.ts";
import {
  type FileType,
  fileTypeOfMode,
  type Inode,
  InodeFlags,
  inodeLocation,
  parseInode,
  type Timespec,
} from "./inode.ts";
import { type BlockRun, findRun, readMapped, seekRuns } from "./file_map.ts";
import { readExtentTree } from "./extent.ts";
import { readBlockMap } from "./block_map.ts";
import { Lru } from "./lru.ts";
import { JournalOverlayDevice } from "./journal_overlay.ts";
import { needsRecovery } from "./journal/replay.ts";
import {
  type DirContext,
  type DirectorySource,
  type DirRecord,
  iterateDirectory,
} from "./directory.ts";
import { hashIsSigned, htreeLookup, parseDxRoot } from "./dir_htree.ts";
import { type DirHash, dirHash, DxHashVersion } from "./dir_hash.ts";
import { matchesNoKeyDigest, noKeyName, noKeyNameLength, parseNoKeyName } from "./fscrypt_name.ts";
import { readXattrs } from "./xattr.ts";
import { readInlineData, readInlineFile } from "./inline_data.ts";

export type { FileType, Timespec };

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

/** An open regular file: its stat at open time and positional reads. */
export interface Ext4File {
  /** The file's stat when it was opened. */
  readonly stat: Ext4Stat;
  /** Reads up to `length` bytes at `offset`; short at end of file. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** The whole content as a stream of chunks. */
  readable(): ReadableStream<Uint8Array>;
}

/** Options for {@link Ext4.openDevice}. */
export interface Ext4OpenOptions {
  /** Open for reading only (the reader never writes; kept for the writer). Default true. */
  readOnly?: boolean;
  /**
   * What to do with a filesystem whose journal needs recovery:
   * - `"memory"` (default): replay the journal in memory (a {@link JournalOverlayDevice}) and
   *   read the recovered filesystem; nothing is written.
   * - `"none"`: read the raw, unreplayed state (`norecovery`; recent changes may be missing
   *   or inconsistent).
   * - `"refuse"`: fail with NEEDS_RECOVERY.
   */
  recovery?: "memory" | "none" | "refuse";
  /** Same as `recovery: "none"`. */
  allowDirtyJournal?: boolean;
  /** The external journal device, for a filesystem whose journal lives elsewhere. */
  journalDevice?: BlockDevice;
  /** Called with a one-line notice when the journal is replayed in memory or ignored. */
  onNotice?: (message: string) => void;
  /** Accept wrong metadata checksums instead of failing with CORRUPT. */
  ignoreChecksums?: boolean;
  /** Inodes kept in memory (default 16384). */
  inodeCacheSize?: number;
  /** Metadata blocks (inode tables, directories, indirect and extent blocks) kept in memory (default 8192). */
  blockCacheSize?: number;
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

const MAX_SYMLINK_HOPS = 40;
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

const DIR_FILE_TYPES: Record<number, FileType> = {
  1: "file",
  2: "dir",
  3: "chardev",
  4: "blockdev",
  5: "fifo",
  6: "socket",
  7: "symlink",
};

const utf8 = new TextDecoder("utf-8", { fatal: false });
const encoder = new TextEncoder();

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The case-insensitive form of a name for casefolded directories (NFD + full case fold). */
function casefold(name: Uint8Array): string {
  return utf8.decode(name).normalize("NFD").toUpperCase().toLowerCase().normalize("NFD");
}

/**
 * A read-only view of an ext2/3/4 filesystem.
 *
 * @example
 * ```ts ignore
 * import { Ext4, MemoryBlockDevice } from "./mod.ts";
 * const fs = await Ext4.openDevice(new MemoryBlockDevice(await Deno.readFile("disk.img")));
 * for await (const e of fs.readDir("/")) console.log(e.name, e.type);
 * console.log(new TextDecoder().decode(await fs.readFile("/etc/hostname")));
 * await fs.close();
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
  }

  /**
   * Opens the filesystem on `device`: reads and checks the superblock and group descriptors,
   * refuses features ext4ts cannot read (UNSUPPORTED) and a journal that needs recovery
   * (NEEDS_RECOVERY, unless `allowDirtyJournal`).
   *
   * @example
   * ```ts ignore
   * const fs = await Ext4.openDevice(openBlockDevice("disk.img"));
   * ```
   */
  static async openDevice(raw: BlockDevice, options: Ext4OpenOptions = {}): Promise<Ext4> {
    const { sb, groups, device } = await Ext4.loadMetadata(raw, options);
    const fs = new Ext4(device, sb, groups, { readOnly: true, ...options });
    await fs.prepare();
    return fs;
  }

  /**
   * Reads and checks the superblock and descriptors, replaying a dirty journal in memory
   * when asked to; shared with subclasses' openers. `device` is what to read through: the
   * given device, or the journal overlay over it.
   */
  protected static async loadMetadata(
    raw: BlockDevice,
    options: Ext4OpenOptions,
  ): Promise<{ sb: Superblock; groups: GroupDescriptorTable; device: BlockDevice }> {
    let device = raw;
    let sb = await readSuperblock(device, { ignoreChecksum: options.ignoreChecksums });
    const verdict = featureSupport(sb);
    if (verdict.level === "refuse") {
      throw new Ext4Error(
        "UNSUPPORTED",
        `cannot read this filesystem: ${verdict.reasons.join("; ")}`,
      );
    }
    if (needsRecovery(sb)) {
      const mode = options.allowDirtyJournal ? "none" : options.recovery ?? "memory";
      if (mode === "refuse") {
        throw new Ext4Error(
          "NEEDS_RECOVERY",
          "the filesystem needs journal recovery (it was not cleanly unmounted); replay the journal first (ext4ts journal replay), or read it in memory or as-is",
        );
      }
      if (mode === "memory") {
        device = await JournalOverlayDevice.open(raw, { journalDevice: options.journalDevice });
        sb = await readSuperblock(device, { ignoreChecksum: options.ignoreChecksums });
        options.onNotice?.(
          "the journal needs recovery: replayed in memory, nothing written to the device",
        );
      } else {
        options.onNotice?.(
          "the journal needs recovery: reading the unreplayed state (norecovery); recent changes may be missing or inconsistent",
        );
      }
    }
    const groups = await readGroupDescriptors(device, sb);
    return { sb, groups, device };
  }

  /**
   * Releases the device (and forgets every cache).
   *
   * @example
   * ```ts ignore
   * await fs.close();
   * ```
   */
  async close(): Promise<void> {
    this.#inodes.clear();
    this.#maps.clear();
    this.#blocks.clear();
    this.#xattrs.clear();
    this.#dirIndex.clear();
    this.#dentries.clear();
    await this.device.close();
  }

  /**
   * Forgets every cached inode, block map, block, xattr map and lookup (after the device
   * changed under us, e.g. a writer or a journal replay).
   *
   * @example
   * ```ts ignore
   * await device.write(offset, bytes);
   * fs.invalidateCaches();
   * ```
   */
  invalidateCaches(): void {
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
   * ```ts ignore
   * fs.invalidateInode(12);
   * ```
   */
  invalidateInode(ino: number): void {
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
   * ```ts ignore
   * fs.invalidateBlock(4711);
   * ```
   */
  invalidateBlock(block: number): void {
    this.#blocks.delete(block);
  }

  // ---------------------------------------------------------------- blocks and inodes

  /**
   * Reads filesystem block `block` (cached; for metadata). The returned bytes must not be
   * modified.
   *
   * @example
   * ```ts ignore
   * const b = await fs.readBlock(fs.superblock.firstDataBlock);
   * ```
   */
  async readBlock(block: number): Promise<Uint8Array> {
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
   * ```ts ignore
   * const root = await fs.inode(2);
   * console.log(root.type); // dir
   * ```
   */
  async inode(ino: number): Promise<Inode> {
    const cached = this.#inodes.get(ino);
    if (cached) return cached;
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
    this.#inodes.set(ino, inode);
    return inode;
  }

  /**
   * The run list of an extent- or block-mapped inode (cached); empty for inodes without
   * block data (devices, fifos, fast symlinks without extents).
   *
   * @example
   * ```ts ignore
   * const runs = await fs.blockRuns(await fs.inode(12));
   * console.log(runs[0]); // { logical: 0, physical: 8193, length: 16, unwritten: false }
   * ```
   */
  async blockRuns(inode: Inode): Promise<BlockRun[]> {
    const cached = this.#maps.get(inode.ino);
    if (cached) return cached;
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
    this.#maps.set(inode.ino, runs);
    return runs;
  }

  /**
   * Physical block of file block `logical`, or null for a hole (unwritten counts as hole).
   *
   * @example
   * ```ts ignore
   * const physical = await fs.mapBlock(await fs.inode(12), 0);
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
   * ```ts ignore
   * const st = fs.statOf(await fs.inode(2));
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
      throw new Ext4Error("NOT_DIRECTORY", `inode ${ino} is not a directory`);
    }
    return inode;
  }

  async #entryType(rec: DirRecord): Promise<FileType> {
    const t = DIR_FILE_TYPES[rec.fileType];
    if (t) return t;
    return (await this.inode(rec.ino)).type;
  }

  /**
   * The entries of directory `ino`, including "." and "..", each with a resume cookie
   * (`offset`, always > 0) for {@link readDirFrom}.
   *
   * @example
   * ```ts ignore
   * for await (const e of fs.readDirIno(2)) console.log(e.offset, e.name);
   * ```
   */
  async *readDirIno(ino: number): AsyncIterable<DirEntry & { offset: number }> {
    yield* this.readDirFrom(ino, 0);
  }

  /**
   * The entries of directory `ino` after resume cookie `cookie` (0 = from the start).
   *
   * @example
   * ```ts ignore
   * for await (const e of fs.readDirFrom(2, lastCookie)) console.log(e.name);
   * ```
   */
  async *readDirFrom(ino: number, cookie: number): AsyncIterable<DirEntry & { offset: number }> {
    const inode = await this.#dirInode(ino);
    const src = this.#directorySource(inode);
    // Like the kernel's readdir, a corrupt block is reported and skipped, not fatal; lookups
    // through it still fail.
    const report = (e: Ext4Error) => this.options.onNotice?.(`${e.message}; skipped`);
    // Without the key, the kernel shows an encrypted directory's names as no-key names.
    const hasher = inode.isEncrypted ? await this.#noKeyHasher(inode) : null;
    for await (const rec of iterateDirectory(src, this.#ctx, cookie, report)) {
      let name = rec.name;
      if (hasher && !isDotOrDotDot(name)) {
        const h = hasher(name);
        name = noKeyName(name, h.major, h.minor);
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
   * ```ts ignore
   * const ino = await fs.lookupIno(2, "etc");
   * ```
   */
  async lookupIno(parentIno: number, name: string | Uint8Array): Promise<number | null> {
    const want = typeof name === "string" ? encoder.encode(name) : name;
    if (want.length === 0 || want.length > 255) {
      await this.#dirInode(parentIno);
      return null;
    }
    const key = `${parentIno}/${latin1(want)}`;
    const hit = this.#dentries.get(key);
    if (hit !== undefined) return hit;
    const ino = await this.#lookupUncached(parentIno, want);
    if (ino !== null) this.#dentries.set(key, ino);
    return ino;
  }

  async #lookupUncached(parentIno: number, name: Uint8Array): Promise<number | null> {
    const dir = await this.#dirInode(parentIno);
    const src = this.#directorySource(dir);
    let want = name;
    if (dir.isEncrypted && !isDotOrDotDot(name)) {
      // Encrypted directory, no key: the kernel accepts only no-key names. A short one
      // carries the whole ciphertext name; a long one its start and a digest of the rest.
      const p = parseNoKeyName(name);
      if (p === null) return null;
      if (!p.cipher) {
        // Like the kernel: a hash index is probed with the hash the name carries (a wrong one
        // can miss), other directories are scanned whole; names match by prefix and digest.
        const matches = (stored: Uint8Array) => matchesNoKeyDigest(p, stored);
        if (src.isHtree) {
          try {
            const rec = await htreeLookup(src, name, this.#ctx, { hash: p.hash, matches });
            if (rec !== undefined) return rec === null ? null : rec.ino;
          } catch (e) {
            if (!(e instanceof CorruptError)) throw e;
          }
        }
        for await (const rec of iterateDirectory(src, this.#ctx)) {
          if (matches(rec.name)) return rec.ino;
        }
        return null;
      }
      want = p.cipher;
    }
    const folded = (dir.flags & InodeFlags.CASEFOLD) !== 0 &&
      (this.superblock.incompat & Incompat.CASEFOLD) !== 0;
    if (!folded && src.isHtree) {
      try {
        const rec = await htreeLookup(src, want, this.#ctx);
        if (rec !== undefined) return rec === null ? null : rec.ino;
      } catch (e) {
        // A damaged index: the kernel falls back to a linear scan too.
        if (!(e instanceof CorruptError)) throw e;
      }
    }
    if (folded) {
      // Exact match first, then the case-insensitive one.
      const key = casefold(want);
      let loose: number | null = null;
      for await (const rec of iterateDirectory(src, this.#ctx)) {
        if (bytesEqual(rec.name, want)) return rec.ino;
        if (loose === null && casefold(rec.name) === key) loose = rec.ino;
      }
      return loose;
    }
    const bs = this.superblock.blockSize;
    if (dir.size > INDEX_DIR_MIN_BLOCKS * bs && dir.size <= INDEX_DIR_MAX_BYTES) {
      // A large directory without a usable hash index: scan it once into a name map
      // instead of once per lookup. The first entry of a name wins, as in a linear scan.
      let index = this.#dirIndex.get(dir.ino);
      if (!index) {
        index = new Map();
        for await (const rec of iterateDirectory(src, this.#ctx)) {
          const key = latin1(rec.name);
          if (!index.has(key)) index.set(key, rec.ino);
        }
        this.#dirIndex.set(dir.ino, index);
      }
      return index.get(latin1(want)) ?? null;
    }
    for await (const rec of iterateDirectory(src, this.#ctx)) {
      if (bytesEqual(rec.name, want)) return rec.ino;
    }
    return null;
  }

  /**
   * Looks `name` up in directory `parentIno` and returns the child's stat; NOT_FOUND if absent.
   *
   * @example
   * ```ts ignore
   * const st = await fs.lookup(2, "lost+found");
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
    return this.getattr(ino);
  }

  // ---------------------------------------------------------------- paths

  /**
   * Resolves a path to an inode number. Intermediate symlinks are followed like a shell
   * does; the final one only when `followFinal` (or when a "/" follows it).
   *
   * @example
   * ```ts ignore
   * const ino = await fs.resolve("/usr/bin/env", false);
   * ```
   */
  async resolve(path: string, followFinal = true): Promise<number> {
    let hops = 0;
    const walkFrom = async (
      start: number,
      parts: string[],
      follow: boolean,
    ): Promise<number> => {
      let cur = start;
      // ".." is the directory's own ".." entry, as on disk.
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i];
        if (part === "" || part === ".") continue;
        const dir = await this.inode(cur);
        if (dir.type !== "dir") {
          throw new Ext4Error("NOT_DIRECTORY", `${path}: not a directory`);
        }
        const next = await this.lookupIno(cur, part);
        if (next === null) {
          throw new Ext4Error("NOT_FOUND", `no such file or directory: ${path}`);
        }
        const last = i === parts.length - 1 ||
          parts.slice(i + 1).every((p) => p === "" || p === ".");
        const child = await this.inode(next);
        // A final symlink is followed when asked, or when a "/" follows it ("link/").
        if (child.type === "symlink" && (!last || follow || i < parts.length - 1)) {
          if (++hops > MAX_SYMLINK_HOPS) {
            throw new Ext4Error("INVALID", `${path}: too many levels of symbolic links`, {
              errno: Errno.ELOOP,
            });
          }
          const target = utf8.decode(await this.readLinkIno(next));
          if (target === "") throw new Ext4Error("NOT_FOUND", `${path}: empty symlink`);
          cur = await walkFrom(target.startsWith("/") ? ROOT_INO : cur, target.split("/"), true);
          // A trailing "/" after a symlink still requires a directory: checked by the loop.
        } else {
          cur = next;
        }
      }
      // "a/" on a non-directory
      if (parts.length > 0 && parts[parts.length - 1] === "" && parts.some((p) => p !== "")) {
        const inode = await this.inode(cur);
        if (inode.type !== "dir") throw new Ext4Error("NOT_DIRECTORY", `${path}: not a directory`);
      }
      return cur;
    };
    return await walkFrom(ROOT_INO, path.split("/"), followFinal);
  }

  /**
   * The stat of `path`, following a final symlink.
   *
   * @example
   * ```ts ignore
   * console.log((await fs.stat("/etc/passwd")).size);
   * ```
   */
  async stat(path: string): Promise<Ext4Stat> {
    return this.getattr(await this.resolve(path, true));
  }

  /**
   * The stat of `path` itself (a final symlink is not followed).
   *
   * @example
   * ```ts ignore
   * console.log((await fs.lstat("/bin")).type); // symlink
   * ```
   */
  async lstat(path: string): Promise<Ext4Stat> {
    return this.getattr(await this.resolve(path, false));
  }

  /**
   * The entries of the directory at `path`, without "." and "..".
   *
   * @example
   * ```ts ignore
   * for await (const e of fs.readDir("/")) console.log(e.name);
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
   * ```ts ignore
   * const text = new TextDecoder().decode(await fs.readFile("/etc/hostname"));
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
   * Opens the regular file at `path` for positional and streaming reads.
   *
   * @example
   * ```ts ignore
   * const f = await fs.openFile("/big.iso");
   * await f.readable().pipeTo(Deno.stdout.writable);
   * ```
   */
  async openFile(path: string): Promise<Ext4File> {
    const ino = await this.resolve(path, true);
    const inode = await this.#regularInode(ino, path);
    const stat = this.statOf(inode);
    const read = (offset: number, length: number) => this.#readInode(inode, offset, length);
    return {
      stat,
      read,
      readable: () => {
        let pos = 0;
        return new ReadableStream<Uint8Array>({
          pull: async (controller) => {
            if (pos >= stat.size) {
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
   * ```ts ignore
   * console.log(await fs.readLink("/bin")); // usr/bin
   * ```
   */
  async readLink(path: string): Promise<string> {
    return utf8.decode(await this.readLinkIno(await this.resolve(path, false)));
  }

  /**
   * The xattr names of `path` (not following a final symlink).
   *
   * @example
   * ```ts ignore
   * console.log(await fs.listXattr("/file")); // [ "user.comment" ]
   * ```
   */
  async listXattr(path: string): Promise<string[]> {
    return this.listXattrIno(await this.resolve(path, false));
  }

  /**
   * One xattr value of `path` (not following a final symlink), as getxattr returns it.
   *
   * @example
   * ```ts ignore
   * const v = await fs.getXattr("/file", "user.comment");
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
   * ```ts ignore
   * for await (const { path, stat } of fs.walk("/")) console.log(path, stat.size);
   * ```
   */
  async *walk(path = "/"): AsyncIterable<{ path: string; stat: Ext4Stat }> {
    const ino = await this.resolve(path, false);
    const start = path === "" ? "/" : path;
    const stack: { path: string; ino: number }[] = [{ path: start, ino }];
    const seenDirs = new Set<number>();
    while (stack.length > 0) {
      const item = stack.pop()!;
      const stat = await this.getattr(item.ino);
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

  // ---------------------------------------------------------------- inode level

  /**
   * The stat of inode `ino`.
   *
   * @example
   * ```ts ignore
   * const st = await fs.getattr(2);
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
   * ```ts ignore
   * const head = await fs.read(12, 0, 4096);
   * ```
   */
  async read(ino: number, offset: number, length: number): Promise<Uint8Array> {
    return this.#readInode(await this.#regularInode(ino, `inode ${ino}`), offset, length);
  }

  /**
   * The raw target bytes of symlink `ino` (fast, slow or inline).
   *
   * @example
   * ```ts ignore
   * const target = new TextDecoder().decode(await fs.readLinkIno(15));
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
    this.#xattrs.set(ino, map);
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
   * ```ts ignore
   * console.log(await fs.listXattrIno(12));
   * ```
   */
  async listXattrIno(ino: number): Promise<string[]> {
    return [...(await this.#xattrMap(ino)).keys()];
  }

  /**
   * One xattr value of inode `ino`; a missing name is NOT_FOUND with errno ENODATA.
   *
   * @example
   * ```ts ignore
   * const acl = await fs.getXattrIno(12, "system.posix_acl_access");
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
   * ```ts ignore
   * const firstData = await fs.seekData(12, 0, "data");
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
   * ```ts ignore
   * const { blocks, freeBlocks, blockSize } = fs.statfs();
   * ```
   */
  statfs(): Ext4Statfs {
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

/** Name bytes as a string key, one char per byte. */
function latin1(name: Uint8Array): string {
  return String.fromCharCode.apply(null, name as unknown as number[]);
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
