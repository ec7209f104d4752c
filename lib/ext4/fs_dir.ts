/**
 * The facade's directory reading (lib/ext4/filesystem.ts) over its caches: a directory inode
 * as the shared directory iterator and lookup read it, readdir (damaged entries reported and
 * skipped, encrypted names shown as no-key names), the checks on an inode an entry links to,
 * and the sorted tree walk.
 *
 * @module
 */

import { CorruptError, Ext4Error } from "../errors.ts";
import { Compat } from "../ondisk/features.ts";
import { type FileType, type Inode, InodeFlags } from "../ondisk/inode.ts";
import { readInlineData } from "../ondisk/inline_data.ts";
import { type DirContext, type DirRecord, fileTypeOfDirentType } from "../ondisk/dirent.ts";
import { hashIsSigned, parseDxRoot } from "../ondisk/dx.ts";
import { type DirHash, dirHash, DxHashVersion } from "../ondisk/dir_hash.ts";
import { noKeyName } from "../ondisk/fscrypt_name.ts";
import type { Ext4Stat } from "./attr.ts";
import { type DirectorySource, iterateDirectory } from "./dir.ts";
import { findRun } from "./file_map.ts";
import type { InodeReader } from "./fs_read.ts";
import type { DirEntry } from "./fs_types.ts";
import { ROOT_INO } from "./path.ts";

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** What reading directories needs besides the {@link InodeReader}: mapping logical blocks. */
export interface DirReader extends InodeReader {
  /** The physical block of `inode`'s logical block `logical`, or null in a hole. */
  mapBlock(inode: Inode, logical: number): Promise<number | null>;
  /** Whether the metadata block cache holds `block`. */
  holdsBlock(block: number): boolean;
  /** Most blocks one {@link readAhead} reads. */
  readonly readAheadLimit: number;
  /** Reads metadata blocks `first` … `first + count - 1` into the block cache at once. */
  readAhead(first: number, count: number): Promise<void>;
}

/**
 * Directory `inode` as lib/ext4/dir.ts and lib/ext4/lookup.ts read it, through `fs`'s caches.
 *
 * @example
 * ```ts ignore
 * for await (const rec of iterateDirectory(directorySource(fs, root), { sb }, 0)) {}
 * ```
 */
export function directorySource(fs: DirReader, inode: Inode): DirectorySource {
  const sb = fs.superblock;
  const bs = sb.blockSize;
  const inline = inode.hasInlineData ? readInlineData(sb, inode.ino, inode.bytes) : null;
  return {
    ino: inode.ino,
    generation: inode.generation,
    size: inode.size,
    blockSize: bs,
    inlineData: inline,
    isHtree: (inode.flags & InodeFlags.INDEX) !== 0 && !inode.hasInlineData,
    flags: inode.flags,
    nextMappedBlock: async (from: number) => {
      const runs = await fs.blockRuns(inode);
      const i = findRun(runs, from);
      if (i >= 0 && from < runs[i].logical + runs[i].length) return from;
      return i + 1 < runs.length ? runs[i + 1].logical : null;
    },
    readBlock: async (logical: number) => {
      if (logical * bs >= inode.size) return null;
      const p = await fs.mapBlock(inode, logical);
      if (p === null) return null;
      if (!fs.holdsBlock(p)) await readAheadInRun(fs, inode, logical);
      return fs.readBlock(p);
    },
  };
}

/**
 * A cold directory block: the blocks of its aligned window of `readAheadLimit` that lie with it
 * on the device (one run of the directory's map, below its size) are read at once. A listing
 * then costs one read per window, and so do the lookups of a walk or of a `stat` of every name
 * of a large directory, which visit its leaves in hash order (the kernel reads an inode table
 * this way; its readdir reads a directory ahead on the device's page cache).
 */
async function readAheadInRun(fs: DirReader, inode: Inode, logical: number): Promise<void> {
  const span = 2 ** Math.floor(Math.log2(Math.max(1, fs.readAheadLimit)));
  if (span < 2) return;
  const runs = await fs.blockRuns(inode);
  const i = findRun(runs, logical);
  if (i < 0 || runs[i].unwritten) return;
  const run = runs[i];
  const first = Math.max(run.logical, logical - (logical % span));
  const end = Math.min(
    run.logical + run.length,
    Math.ceil(inode.size / fs.superblock.blockSize),
    first + span,
  );
  if (end - first >= 2) await fs.readAhead(run.physical + (first - run.logical), end - first);
}

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

/**
 * Inode `ino` when it is a directory: NOT_DIRECTORY otherwise (a root that is not one is
 * CORRUPT).
 *
 * @example
 * ```ts ignore
 * const root = await dirInode(fs, 2);
 * ```
 */
export async function dirInode(fs: InodeReader, ino: number): Promise<Inode> {
  const inode = await fs.inode(ino);
  if (inode.type !== "dir") {
    if (ino === ROOT_INO) throw rootNotDirectory(inode.mode);
    throw new Ext4Error("NOT_DIRECTORY", `inode ${ino} is not a directory`);
  }
  return inode;
}

/**
 * The inode a directory entry (or path) names, refused as the kernel's lookup refuses it:
 * a deleted or never used inode (no links, or mode 0) or one whose mode has no file type
 * is CORRUPT (errno EUCLEAN), like an unreadable one.
 *
 * @example
 * ```ts ignore
 * const stat = fs.statOf(await linkedInode(fs, 12));
 * ```
 */
export async function linkedInode(fs: InodeReader, ino: number): Promise<Inode> {
  const inode = await fs.inode(ino);
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

async function entryType(fs: InodeReader, rec: DirRecord): Promise<FileType> {
  const t = fileTypeOfDirentType(rec.fileType);
  if (t) return t;
  try {
    return (await fs.inode(rec.ino)).type;
  } catch (e) {
    // An unreadable inode is that entry's error (on stat, lookup), not the listing's.
    if (e instanceof Ext4Error) return "unknown";
    throw e;
  }
}

/**
 * The entries of directory `inode` from `cookie` on, "." and ".." included, as readdir gives
 * them: a damaged block or an entry whose name holds "/" or NUL goes to `report` and is
 * skipped; an encrypted directory's names are no-key names.
 *
 * @example
 * ```ts ignore
 * for await (const e of readDirectory(fs, { sb }, await dirInode(fs, 2), 0, console.log)) {}
 * ```
 */
export async function* readDirectory(
  fs: DirReader,
  ctx: DirContext,
  inode: Inode,
  cookie: number,
  report: (e: CorruptError) => void,
): AsyncIterable<DirEntry & { offset: number }> {
  const src = directorySource(fs, inode);
  // Without the key, the kernel shows an encrypted directory's names as no-key names.
  const hasher = inode.isEncrypted ? await noKeyHasher(fs, inode) : null;
  for await (const rec of iterateDirectory(src, ctx, cookie, report)) {
    let name = rec.name;
    if (hasher && !isDotOrDotDot(name)) {
      const h = hasher(name);
      name = noKeyName(name, h.major, h.minor);
    }
    // A "/" or NUL cannot be part of a name (no path could reach it, and FUSE rejects the
    // whole listing for one): the entry is damaged, reported and left out. Ciphertext may
    // hold any byte; its no-key name (base64url) never does.
    if (name.includes(0x2f) || name.includes(0)) {
      report(badNameError(inode.ino, name));
      continue;
    }
    yield {
      name: utf8.decode(name),
      nameBytes: name,
      ino: rec.ino,
      type: await entryType(fs, rec),
      offset: rec.offset,
    };
  }
}

/**
 * The directory hash the kernel's readdir puts into the no-key names of encrypted directory
 * `dir`: directories it reads through the hash index (dir_index and an htree, a single block
 * or inline data) get the hash of the ciphertext name, the others 0 and 0.
 */
async function noKeyHasher(fs: DirReader, dir: Inode): Promise<(name: Uint8Array) => DirHash> {
  const zero = () => ({ major: 0, minor: 0 });
  const sb = fs.superblock;
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
      const p = await fs.mapBlock(dir, 0);
      if (p === null) return zero;
      version = parseDxRoot(await fs.readBlock(p), sb, dir.ino).info.hashVersion;
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

/** What {@link walkTree} walks through: the facade's path, stat and readdir. */
export interface TreeSource {
  /** The inode of `path` (a final symlink not followed when `followFinal` is false). */
  resolve(path: string, followFinal: boolean): Promise<number>;
  /** The stat of inode `ino` as an entry reaches it. */
  entryStat(ino: number): Promise<Ext4Stat>;
  /** The entries of directory `ino`, "." and ".." included. */
  readDirIno(ino: number): AsyncIterable<DirEntry>;
}

/**
 * Every object under `path` (itself first, a symlink not followed), depth first, each
 * directory's entries in byte order; a directory reached twice is CORRUPT (a cycle).
 *
 * @example
 * ```ts ignore
 * for await (const { path, stat } of walkTree(fs, "/")) console.log(path, stat.type);
 * ```
 */
export async function* walkTree(
  fs: TreeSource,
  path: string,
): AsyncIterable<{ path: string; stat: Ext4Stat }> {
  const ino = await fs.resolve(path, false);
  const start = path === "" ? "/" : path;
  const stack: { path: string; ino: number }[] = [{ path: start, ino }];
  const seenDirs = new Set<number>();
  while (stack.length > 0) {
    const item = stack.pop()!;
    const stat = await fs.entryStat(item.ino);
    yield { path: item.path, stat };
    if (stat.type !== "dir") continue;
    // A directory reached twice is a cycle in a corrupt filesystem.
    if (seenDirs.has(item.ino)) {
      throw new CorruptError(`directory inode ${item.ino}`, "directory reached twice (cycle)");
    }
    seenDirs.add(item.ino);
    const children: DirEntry[] = [];
    for await (const e of fs.readDirIno(item.ino)) {
      if (!isDotOrDotDot(e.nameBytes)) children.push(e);
    }
    children.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
    const prefix = item.path.endsWith("/") ? item.path : item.path + "/";
    for (let i = children.length - 1; i >= 0; i--) {
      stack.push({ path: prefix + children[i].name, ino: children[i].ino });
    }
  }
}

/**
 * True for the names "." and "..".
 *
 * @example
 * ```ts
 * import { isDotOrDotDot } from "./fs_dir.ts";
 * console.log(isDotOrDotDot(new TextEncoder().encode(".."))); // true
 * ```
 */
export function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/**
 * Byte-wise comparison of two names (the order `ls` uses in the C locale).
 *
 * @example
 * ```ts
 * import { compareBytes } from "./fs_dir.ts";
 * console.log(compareBytes(new Uint8Array([1]), new Uint8Array([1, 0]))); // -1
 * ```
 */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
