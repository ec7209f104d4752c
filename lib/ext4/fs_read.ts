/**
 * The facade's read path (lib/ext4/filesystem.ts) over its caches: file contents (inline or
 * mapped, capped as read(2) caps them), open-file handles and their streams, symlink targets
 * (fast, inline, in blocks, encrypted as no-key names), xattr maps (EA inodes included) and
 * SEEK_DATA / SEEK_HOLE.
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { CorruptError, Errno, Ext4Error } from "../errors.ts";
import { type Inode, InodeFlags } from "../ondisk/inode.ts";
import { readInlineData, readInlineFile } from "../ondisk/inline_data.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import { noKeyName } from "../ondisk/fscrypt_name.ts";
import type { Ext4Stat } from "./attr.ts";
import { type BlockRun, readMapped, seekRuns } from "./file_map.ts";
import type { Ext4File } from "./fs_types.ts";
import { readXattrs } from "./xattr.ts";

/** What the read path reads through: the facade's cached inodes, maps and blocks. */
export interface InodeReader {
  /** The superblock. */
  readonly superblock: Superblock;
  /** The device file data is read from. */
  readonly device: BlockDevice;
  /** Inode `ino` (cached). */
  inode(ino: number): Promise<Inode>;
  /** The block map of `inode` (cached). */
  blockRuns(inode: Inode): Promise<BlockRun[]>;
  /** Metadata block `block` (cached). */
  readBlock(block: number): Promise<Uint8Array>;
  /** The stat of `inode`. */
  statOf(inode: Inode): Ext4Stat;
}

/** Chunks of {@link Ext4File.readable}. */
const STREAM_CHUNK = 1024 * 1024;
/** Largest single read, as Linux caps read(2) (MAX_RW_COUNT); longer reads come back short. */
const MAX_RW_COUNT = 0x7ffff000;
/** The kernel's limit on one xattr value (XATTR_SIZE_MAX). */
const XATTR_SIZE_MAX = 65536;
/** readFile returns one buffer: beyond this, stream with openFile. */
const MAX_READ_FILE = MAX_RW_COUNT;

/**
 * Inode `ino` when it is a regular file; IS_DIRECTORY or INVALID (naming `what`) otherwise.
 *
 * @example
 * ```ts ignore
 * const inode = await regularInode(fs, 12, "/etc/hostname");
 * ```
 */
export async function regularInode(fs: InodeReader, ino: number, what: string): Promise<Inode> {
  const inode = await fs.inode(ino);
  if (inode.type === "dir") throw new Ext4Error("IS_DIRECTORY", `${what}: is a directory`);
  if (inode.type !== "file") {
    throw new Ext4Error("INVALID", `${what}: not a regular file (${inode.type})`);
  }
  return inode;
}

/**
 * Up to `length` bytes of regular file `inode` at `offset` (short at its end, at most
 * MAX_RW_COUNT); an encrypted file's contents are UNSUPPORTED (errno ENOKEY).
 *
 * @example
 * ```ts ignore
 * const head = await readFileData(fs, await fs.inode(12), 0, 4096);
 * ```
 */
export async function readFileData(
  fs: InodeReader,
  inode: Inode,
  offset: number,
  length: number,
): Promise<Uint8Array> {
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
    const all = readInlineFile(fs.superblock, inode.ino, inode.bytes, size);
    return all.slice(offset, Math.min(size, offset + length));
  }
  return await readMappedRange(fs, inode, size, offset, length);
}

/**
 * The whole content of regular file `inode` (found at `path`); INVALID (EFBIG) beyond what one
 * read returns.
 *
 * @example
 * ```ts ignore
 * const bytes = await readWholeFile(fs, await fs.inode(12), "/etc/hostname");
 * ```
 */
export async function readWholeFile(
  fs: InodeReader,
  inode: Inode,
  path: string,
): Promise<Uint8Array> {
  if (inode.size > MAX_READ_FILE) {
    throw new Ext4Error(
      "INVALID",
      `${path}: ${inode.size} bytes is too large to read at once; use openFile to stream it`,
      { errno: Errno.EFBIG },
    );
  }
  return await readFileData(fs, inode, 0, inode.size);
}

/** `length` bytes at `offset` of `inode`'s mapped blocks (its size `size`). */
async function readMappedRange(
  fs: InodeReader,
  inode: Inode,
  size: number,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const runs = await fs.blockRuns(inode);
  return readMapped(
    fs.device,
    fs.superblock.blockSize,
    runs,
    size,
    offset,
    length,
    `inode ${inode.ino}`,
  );
}

/**
 * An open-file handle of regular file `inode`: its stat now, reads through `read`, a stream of
 * its content (to its current size when `live`: a writable filesystem's file may grow or
 * shrink), `close` when closed.
 *
 * @example
 * ```ts ignore
 * const f = fileHandle(fs, inode, (o, n) => readFileData(fs, inode, o, n), false);
 * ```
 */
export function fileHandle(
  fs: InodeReader,
  inode: Inode,
  read: (offset: number, length: number) => Promise<Uint8Array>,
  live: boolean,
  close: () => Promise<void> = () => Promise.resolve(),
): Ext4File {
  const stat = fs.statOf(inode);
  return {
    stat,
    read,
    close,
    readable: () => {
      let pos = 0;
      return new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          // A writable filesystem's file may have grown or shrunk since it was opened.
          const size = live ? (await fs.inode(inode.ino)).size : stat.size;
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
 * The target of symlink `inode` as stored; an encrypted one as the kernel shows it without the
 * key (the no-key name of its ciphertext).
 *
 * @example
 * ```ts ignore
 * const target = new TextDecoder().decode(await readLinkTarget(fs, await fs.inode(13)));
 * ```
 */
export async function readLinkTarget(fs: InodeReader, inode: Inode): Promise<Uint8Array> {
  const ino = inode.ino;
  if (inode.type !== "symlink") {
    throw new Ext4Error("INVALID", `inode ${ino} is not a symbolic link`);
  }
  if (inode.isEncrypted) {
    // Without the key the kernel shows the target as a no-key name of its ciphertext,
    // which follows a little-endian u16 length.
    const raw = await readLinkRaw(fs, inode);
    const len = raw.length >= 2 ? raw[0] | (raw[1] << 8) : 0;
    if (len === 0 || len + 2 > raw.length) {
      throw new CorruptError(
        `encrypted symlink inode ${ino}`,
        `ciphertext length ${len} in a target of ${raw.length} bytes`,
      );
    }
    return noKeyName(raw.subarray(2, 2 + len), 0, 0);
  }
  return await readLinkRaw(fs, inode);
}

async function readLinkRaw(fs: InodeReader, inode: Inode): Promise<Uint8Array> {
  const ino = inode.ino;
  const size = inode.size;
  const sb = fs.superblock;
  if (size > sb.blockSize) {
    throw new CorruptError(`symlink inode ${ino}`, `target length ${size} exceeds a block`);
  }
  if (inode.hasInlineData) {
    return readInlineData(sb, inode.ino, inode.bytes).slice(0, size);
  }
  if (isFastSymlink(sb, inode)) {
    if (size >= 60) {
      throw new CorruptError(`symlink inode ${ino}`, `fast symlink of ${size} bytes`);
    }
    return inode.iBlock.slice(0, size);
  }
  return await readMappedRange(fs, inode, size, 0, size);
}

/** The kernel's rule: no blocks besides an xattr block (EA inodes: by size). */
function isFastSymlink(sb: Superblock, inode: Inode): boolean {
  if (inode.flags & InodeFlags.EA_INODE) return inode.size > 0 && inode.size < 60;
  const eaBlocks = inode.fileAcl !== 0 ? sb.clusterSize / 512 : 0;
  return inode.blocks - eaBlocks === 0;
}

/**
 * Inode `ino`'s extended attributes by full name (values in EA inodes read and checked),
 * without the inline-data area's "system.data".
 *
 * @example
 * ```ts ignore
 * const names = [...(await readXattrMap(fs, 12)).keys()];
 * ```
 */
export async function readXattrMap(
  fs: InodeReader,
  ino: number,
): Promise<Map<string, Uint8Array>> {
  const inode = await fs.inode(ino);
  const map = await readXattrs({
    sb: fs.superblock,
    ino,
    inodeBytes: inode.bytes,
    readBlock: (b: number) => fs.readBlock(b),
    readEaInode: async (eaIno: number, size: number) => {
      const ea = await fs.inode(eaIno);
      if ((ea.flags & InodeFlags.EA_INODE) === 0) {
        throw new CorruptError(`inode ${ino}`, `xattr value inode ${eaIno} is not an EA inode`);
      }
      if (size > XATTR_SIZE_MAX) {
        throw new CorruptError(`inode ${ino}`, `xattr value of ${size} bytes (max 65536)`);
      }
      if (ea.size < size) {
        throw new CorruptError(`EA inode ${eaIno}`, `size ${ea.size} < value size ${size}`);
      }
      if (ea.hasInlineData) {
        return readInlineData(fs.superblock, ea.ino, ea.bytes).slice(0, size);
      }
      return await readMappedRange(fs, ea, ea.size, 0, size);
    },
  });
  map.delete("system.data");
  return map;
}

/**
 * SEEK_DATA / SEEK_HOLE in `inode` from `offset`; NOT_FOUND (ENXIO) when there is none.
 *
 * @example
 * ```ts ignore
 * const firstData = await seekInode(fs, await fs.inode(12), 0, "data");
 * ```
 */
export async function seekInode(
  fs: InodeReader,
  inode: Inode,
  offset: number,
  whence: "data" | "hole",
): Promise<number> {
  const size = inode.size;
  let at: number;
  if (inode.hasInlineData || (inode.type !== "file" && inode.type !== "dir")) {
    at = offset >= size ? -1 : whence === "data" ? offset : size;
  } else {
    at = seekRuns(await fs.blockRuns(inode), fs.superblock.blockSize, size, offset, whence);
  }
  if (at < 0) {
    throw new Ext4Error("NOT_FOUND", `no ${whence} at or after ${offset} in inode ${inode.ino}`, {
      errno: Errno.ENXIO,
    });
  }
  return at;
}
