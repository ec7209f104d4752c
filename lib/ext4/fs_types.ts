/**
 * The public types of the `Ext4` facade (lib/ext4/filesystem.ts, which re-exports them):
 * directory entries, open files, the open options, the write methods' options and statfs.
 *
 * @module
 */

import type { CorruptError } from "../errors.ts";
import type { FileType, Timespec } from "../ondisk/inode.ts";
import type { Ext4Stat } from "./attr.ts";
import type { OpenPolicy } from "./super.ts";

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
  /**
   * Bytes of memory the caches may hold (default 16 MiB, at most an eighth of the
   * filesystem's size): metadata blocks, decoded inodes, block maps, lookups, xattr maps, name
   * maps of large unindexed directories and, writing through a journal, the logged blocks not
   * yet written home (lib/block/cache_budget.ts shares it out). The mount daemon sizes it from
   * the machine's available memory, or `-o cache_size=`.
   */
  cacheBytes?: number;
  /** At most this many inodes kept in memory, within `cacheBytes` (default: what it holds). */
  inodeCacheSize?: number;
  /**
   * At most this many metadata blocks (inode tables, directories, indirect and extent blocks)
   * kept in memory, within `cacheBytes` (default: what it holds).
   */
  blockCacheSize?: number;
  /**
   * Writable opens: group commit, as the kernel's `commit=` mount option (seconds). Operations
   * then join one running transaction that reaches the device on {@link Ext4.sync}, on
   * {@link Ext4.close}, when it grows to what the journal takes, and at the latest this many
   * seconds after its first change: each operation still happens whole or not at all, but a
   * crash loses the operations since the last commit. Default 0: every operation commits (and
   * is durable) before it returns.
   */
  commitInterval?: number;
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
