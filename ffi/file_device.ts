/**
 * The BlockDevice for image files and block devices, through libc: pread/pwrite on a raw
 * file descriptor, the size and sector size from block-device ioctls, and read-only
 * detection that does not trust a successful O_RDWR open (a write-protected loop device
 * opens read-write without error; BLKROGET tells the truth).
 *
 * @module
 */

import { type BlockDevice, checkRange } from "../lib/block/block_device.ts";
import { DeviceOpenError, Errno, Ext4Error } from "../lib/errors.ts";
import {
  BRIEF_HOLDER_RETRY,
  HELD_EXCLUSIVELY,
  inUseReason,
  majorMinor,
  refuseIfInUse,
} from "./device_status.ts";
import { lockFile } from "./file_lock.ts";
import { aioFsync, aioPwrite } from "./aio.ts";
import { cstr, errno, Falloc, Ioctl, libc, O, strerror } from "./libc.ts";

/**
 * Transfers up to this size run synchronously (≈1 µs); larger ones go to another thread (reads
 * to Deno's pool, writes to glibc's AIO thread: ffi/aio.ts).
 */
const SYNC_LIMIT = 128 * 1024;

/**
 * A flush covering at most this many bytes written since the last one began calls fsync(2)
 * on the event loop's own thread: it then costs about what the device's cache flush costs
 * (measured on a loop device here: ~270 µs, against ~320–590 through Deno's blocking pool and
 * ~410 through glibc's AIO thread), and a commit makes two. Larger ones, and the first (it
 * covers what others wrote before), run off the loop so that a long writeback never stalls it.
 */
const SYNC_FLUSH_MAX = 256 * 1024;

const E = Errno;

/** Options for {@link openBlockDevice}. */
export interface OpenDeviceOptions {
  /** Open read-only (default true). */
  readOnly?: boolean;
  /**
   * When opening read-write finds a read-only device, open it read-only instead of failing;
   * `readOnlyReason` says why.
   */
  fallbackToReadOnly?: boolean;
  /**
   * Claim the device for writing, refusing it (BUSY, the message naming the use) while it is
   * in use: a block device is opened O_EXCL (fails while mounted or held); an image file is
   * refused while a loop device it backs is mounted or held or a mount names it, and is
   * locked (flock, exclusive) until closed, so a second ext4ts writer or an `ext4ts mount`
   * of it is refused too. Checked before anything is written. Default: true when opening
   * read-write (`exclusive: false` opts out), false read-only.
   */
  exclusive?: boolean;
}

/** Blocks the thread for `ms` milliseconds (only on rare retry paths). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function errorFor(code: number, path: string, action: string): Ext4Error {
  const text = `${path}: ${action}: ${strerror(code)}`;
  switch (code) {
    case E.ENOENT:
      return new Ext4Error("NOT_FOUND", text, { errno: code });
    case E.EACCES:
    case E.EPERM:
      return new Ext4Error("PERMISSION", text, { errno: code });
    case E.EROFS:
      return new Ext4Error("READ_ONLY", text, { errno: code });
    case E.EBUSY:
      return new Ext4Error("BUSY", text, { errno: code });
    case E.EISDIR:
      return new Ext4Error("INVALID", text, { errno: code });
    case E.EOPNOTSUPP:
      return new Ext4Error("UNSUPPORTED", text, { errno: code });
    default:
      return new Ext4Error("IO", text, { errno: code });
  }
}

/** An open image file or block device. */
export class FileBlockDevice implements BlockDevice {
  /** The path the device was opened with. */
  readonly path: string;
  readonly size: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  /** True for a block device, false for a regular file. */
  readonly isBlockDevice: boolean;
  /** Why the device is read-only when read-write was asked for. */
  readonly readOnlyReason?: string;
  /**
   * Whether the medium itself refuses writes (a write-protected block device, a file without
   * write permission or on a read-only filesystem), whatever mode it was opened in.
   */
  readonly mediaReadOnly: boolean;
  /**
   * Smallest run worth discarding: a block device's `discard_granularity` (0 when its
   * `discard_max_bytes` is 0: it cannot discard); an image file's block size (`st_blksize`, what
   * a loop device over it announces); 0 when opened read-only.
   */
  readonly discardGranularity: number;
  #fd: number;
  /** The first failed fsync: every later flush reports it (see {@link flush}). */
  #flushFailure: Ext4Error | null = null;
  /**
   * Writes issued so far (successful or not), and how many of them a completed fsync covers:
   * none at open, so the first flush always runs (it covers what others wrote before).
   */
  #writes = 0;
  #flushedWrites = -1;
  /** Bytes written since the last flush began (unknown before the first: what others wrote). */
  #unflushedBytes = Number.POSITIVE_INFINITY;
  /** Flushes running now: a synchronous fsync would wait for their writeback on the loop. */
  #flushing = 0;
  /**
   * A second descriptor of the same open file (`/proc/self/fd/N`, opened before any write)
   * that flushes go through: Deno's own fsync op makes the call once on its blocking pool and
   * keeps errno, one thread hand-off where glibc's AIO takes two (≈ 60 µs less CPU per flush).
   * Linux keeps a writeback error per open file and reports it to each one's fsync, so this
   * descriptor sees every error of writes through the first. Null (AIO instead) without read
   * permission for it.
   */
  #syncFile: Deno.FsFile | null = null;

  private constructor(
    path: string,
    fd: number,
    info: {
      size: number;
      sectorSize: number;
      readOnly: boolean;
      isBlockDevice: boolean;
      readOnlyReason?: string;
      mediaReadOnly: boolean;
      discardGranularity: number;
    },
  ) {
    this.path = path;
    this.#fd = fd;
    this.size = info.size;
    this.sectorSize = info.sectorSize;
    this.readOnly = info.readOnly;
    this.isBlockDevice = info.isBlockDevice;
    this.readOnlyReason = info.readOnlyReason;
    this.mediaReadOnly = info.mediaReadOnly;
    this.discardGranularity = info.discardGranularity;
    if (!info.readOnly) this.#syncFile = reopenForSync(fd);
  }

  /** The raw file descriptor (for passing to mount or loop ioctls). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Opens an image file or a block device. Errors are {@link DeviceOpenError}s naming the path:
   * NOT_FOUND, PERMISSION, INVALID (a directory or another kind of file), BUSY (`exclusive`
   * asked of a device or image in use), READ_ONLY (read-write asked of a read-only device
   * without fallback).
   */
  static open(path: string, options: OpenDeviceOptions = {}): FileBlockDevice {
    try {
      return FileBlockDevice.#open(path, options);
    } catch (e) {
      // Typed apart from errors inside the filesystem: the CLI says "cannot open" (exit 7).
      if (e instanceof Ext4Error && !(e instanceof DeviceOpenError)) {
        throw new DeviceOpenError(e.code, e.message, { cause: e.cause, errno: e.errno });
      }
      throw e;
    }
  }

  static #open(path: string, options: OpenDeviceOptions): FileBlockDevice {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Ext4Error("NOT_FOUND", `${path}: No such file or directory`);
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new Ext4Error("PERMISSION", `${path}: Permission denied`);
      }
      throw new Ext4Error("IO", `${path}: ${(e as Error).message}`);
    }
    if (info.isDirectory) throw new Ext4Error("INVALID", `${path}: is a directory`);
    const isBlock = info.isBlockDevice === true;
    if (!info.isFile && !isBlock) {
      throw new Ext4Error("INVALID", `${path}: not a regular file or block device`);
    }
    const wantRw = options.readOnly === false;
    const exclusive = options.exclusive ?? wantRw;
    const flags = (wantRw ? O.RDWR : O.RDONLY) | O.CLOEXEC | O.LARGEFILE |
      (exclusive && isBlock ? O.EXCL : 0);
    const c = libc();
    let fd = c.open(cstr(path), flags, 0);
    let code = fd < 0 ? errno() : 0;
    // EBUSY with no mount or holder behind it: maybe another program's brief O_EXCL probe.
    const retry = BRIEF_HOLDER_RETRY;
    for (let n = 0; code === E.EBUSY && exclusive && isBlock && n < retry.tries; n++) {
      const reason = inUseReason(path);
      if (reason !== undefined && reason !== HELD_EXCLUSIVELY) break;
      sleepSync(retry.ms);
      fd = c.open(cstr(path), flags, 0);
      code = fd < 0 ? errno() : 0;
    }
    let readOnly = !wantRw;
    let readOnlyReason: string | undefined;
    if (fd < 0) {
      if (
        wantRw && options.fallbackToReadOnly &&
        (code === E.EROFS || code === E.EACCES || code === E.EPERM)
      ) {
        fd = c.open(cstr(path), (flags & ~O.RDWR) | O.RDONLY, 0);
        if (fd < 0) throw errorFor(errno(), path, "open");
        readOnly = true;
        readOnlyReason = code === E.EROFS ? "the device is read-only" : "no permission to write";
      } else if (code === E.EBUSY && exclusive) {
        const reason = inUseReason(path);
        throw reason
          ? new Ext4Error("BUSY", `${path} is in use: ${reason}`, { errno: code })
          : errorFor(code, path, "open");
      } else {
        throw errorFor(code, path, "open");
      }
    }
    try {
      if (exclusive && !isBlock) {
        // The lock first: an ext4ts mount takes its (shared) lock before it attaches a loop
        // device, so once the lock is ours no new ext4ts use of the image can start. When
        // the lock is taken, a mount of the image says more than the lock's holder does.
        try {
          lockFile(fd, path, "exclusive");
        } catch (e) {
          refuseIfInUse(path);
          throw e;
        }
        refuseIfInUse(path);
      }
      let size = info.size;
      let sectorSize = 512;
      // W_OK: EROFS for a read-only filesystem, EACCES without permission.
      let mediaReadOnly = c.access(cstr(path), 2) !== 0;
      if (isBlock) {
        const buf = new Uint8Array(8);
        if (c.ioctl(fd, Ioctl.BLKGETSIZE64, buf) < 0) throw errorFor(errno(), path, "BLKGETSIZE64");
        size = Number(new DataView(buf.buffer).getBigUint64(0, true));
        if (c.ioctl(fd, Ioctl.BLKSSZGET, buf) === 0) {
          sectorSize = new DataView(buf.buffer).getInt32(0, true);
        }
        buf.fill(0);
        if (c.ioctl(fd, Ioctl.BLKROGET, buf) === 0 && new DataView(buf.buffer).getInt32(0, true)) {
          mediaReadOnly = true;
          // A write-protected device opens O_RDWR without error: writes would fail later.
          if (wantRw && !readOnly) {
            if (!options.fallbackToReadOnly) {
              throw new Ext4Error("READ_ONLY", `${path}: the device is write-protected`);
            }
            readOnly = true;
            readOnlyReason = "the device is write-protected";
          }
        }
      }
      return new FileBlockDevice(path, fd, {
        size,
        sectorSize,
        readOnly,
        isBlockDevice: isBlock,
        readOnlyReason,
        mediaReadOnly: mediaReadOnly || readOnlyReason !== undefined,
        discardGranularity: readOnly ? 0 : discardGranularityOf(info, sectorSize),
      });
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    this.#checkOpen();
    checkRange(this.size, offset, buffer.length, this.path);
    const c = libc();
    let done = 0;
    while (done < buffer.length) {
      const part = done === 0 ? buffer : buffer.subarray(done);
      const len = part.length;
      let n: number;
      if (len <= SYNC_LIMIT) {
        n = Number(c.pread64(this.#fd, part, BigInt(len), BigInt(offset + done)));
      } else {
        n = Number(await c.pread64_nb(this.#fd, part, BigInt(len), BigInt(offset + done)));
        // errno is lost on the worker thread: repeat the call here to learn it. Harmless for a
        // read (unlike a write or fsync): it changes nothing, and if the repeat succeeds its
        // bytes are what the device returned to a successful read.
        if (n < 0) n = Number(c.pread64(this.#fd, part, BigInt(len), BigInt(offset + done)));
      }
      if (n < 0) throw errorFor(errno(), this.path, `read at ${offset + done}`);
      if (n === 0) {
        throw new Ext4Error("IO", `${this.path}: unexpected end of device at ${offset + done}`);
      }
      done += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkOpen();
    if (this.readOnly) throw new Ext4Error("READ_ONLY", `${this.path}: device is read-only`);
    checkRange(this.size, offset, data.length, this.path);
    this.#writes++;
    this.#unflushedBytes += data.length;
    const c = libc();
    let done = 0;
    while (done < data.length) {
      const part = done === 0 ? data : data.subarray(done);
      const len = part.length;
      // One call, its outcome as it happened: a failed write is never repeated (a repeat can
      // succeed where the first failed). After a short write the rest is written by the next
      // call, which reports the error that cut the first one short.
      let n: number;
      let code = 0;
      if (len <= SYNC_LIMIT) {
        n = Number(c.pwrite64(this.#fd, part, BigInt(len), BigInt(offset + done)));
        if (n < 0) code = errno();
      } else {
        ({ result: n, errno: code } = await aioPwrite(this.#fd, part, offset + done));
      }
      if (n < 0) throw errorFor(code, this.path, `write at ${offset + done}`);
      if (n === 0) throw new Ext4Error("IO", `${this.path}: write made no progress`);
      done += n;
    }
  }

  /**
   * fsync(2), called once, off the event loop, its errno kept (ffi/aio.ts). Linux reports a
   * writeback error to one fsync only, so after a failure every later flush throws the first
   * failure again instead of asking the kernel (which would answer success for lost data).
   * Nothing written through this device since the last successful fsync began: nothing to make
   * durable, no fsync (a commit that just flushed is not flushed again by the sync after it).
   */
  async flush(): Promise<void> {
    this.#checkOpen();
    if (this.readOnly) return;
    if (this.#flushFailure) throw this.#flushFailure;
    const covered = this.#writes;
    if (covered === this.#flushedWrites) return;
    const small = this.#unflushedBytes <= SYNC_FLUSH_MAX && this.#flushing === 0;
    this.#unflushedBytes = 0;
    this.#flushing++;
    let outcome;
    try {
      outcome = small ? this.#fsyncHere() : await this.#fsync();
    } finally {
      this.#flushing--;
    }
    if (outcome.result < 0) {
      this.#flushFailure = errorFor(outcome.errno, this.path, "fsync");
      throw this.#flushFailure;
    }
    this.#flushedWrites = Math.max(this.#flushedWrites, covered);
  }

  /** One fsync(2) on this thread, never repeated: errno read right after it. */
  #fsyncHere(): { result: number; errno: number } {
    const result = libc().fsync(this.#fd);
    return { result, errno: result < 0 ? errno() : 0 };
  }

  /** One fsync(2) off the event loop, never repeated: through {@link #syncFile}, else AIO. */
  async #fsync(): Promise<{ result: number; errno: number }> {
    if (!this.#syncFile) return await aioFsync(this.#fd);
    try {
      await this.#syncFile.sync();
      return { result: 0, errno: 0 };
    } catch (e) {
      // Deno's error names the OS error: "… (os error 5)".
      const code = Number(/\(os error (\d+)\)/.exec(String(e))?.[1] ?? E.EIO);
      return { result: -1, errno: code };
    }
  }

  /**
   * Discards `[offset, offset+length)`: BLKDISCARD on a block device (the kernel drops its cached
   * pages of the range first), fallocate(PUNCH_HOLE | KEEP_SIZE) on an image file. Runs off the
   * event loop; a failed call is repeated synchronously to learn errno, harmless as for a read
   * (discarding twice is discarding once). UNSUPPORTED (EOPNOTSUPP) when the device or the
   * image's filesystem cannot.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.#checkOpen();
    if (this.discardGranularity === 0) {
      throw new Ext4Error(
        this.readOnly ? "READ_ONLY" : "UNSUPPORTED",
        `${this.path}: ${this.readOnly ? "device is read-only" : "the device cannot discard"}`,
      );
    }
    checkRange(this.size, offset, length, this.path);
    if (length === 0) return;
    const c = libc();
    const fd = this.#fd;
    let done: boolean;
    if (this.isBlockDevice) {
      const arg = new Uint8Array(new BigUint64Array([BigInt(offset), BigInt(length)]).buffer);
      done = (await c.ioctl_nb(fd, Ioctl.BLKDISCARD, arg)) === 0 ||
        c.ioctl(fd, Ioctl.BLKDISCARD, arg) === 0;
    } else {
      const mode = Falloc.PUNCH_HOLE | Falloc.KEEP_SIZE;
      const [off, len] = [BigInt(offset), BigInt(length)];
      done = (await c.fallocate64_nb(fd, mode, off, len)) === 0 ||
        c.fallocate64(fd, mode, off, len) === 0;
    }
    if (done) return;
    throw errorFor(errno(), this.path, `discard ${length} bytes at ${offset}`);
  }

  close(): Promise<void> {
    this.#syncFile?.close();
    this.#syncFile = null;
    if (this.#fd >= 0) {
      libc().close(this.#fd);
      this.#fd = -1;
    }
    return Promise.resolve();
  }

  #checkOpen(): void {
    if (this.#fd < 0) throw new Ext4Error("IO", `${this.path}: device is closed`);
  }
}

/**
 * A read-only descriptor of the file `fd` has open (the same inode, whatever its path names
 * now), for fsync; null when Deno may not open it (no read permission for /proc).
 */
function reopenForSync(fd: number): Deno.FsFile | null {
  try {
    return Deno.openSync(`/proc/self/fd/${fd}`, { read: true });
  } catch {
    return null;
  }
}

/**
 * What the device announces as its discard granularity (see
 * {@link FileBlockDevice.discardGranularity}): for a block device, from sysfs (a partition's
 * queue is its disk's).
 */
function discardGranularityOf(info: Deno.FileInfo, sectorSize: number): number {
  if (!info.isBlockDevice) return info.blksize ?? 4096;
  if (info.rdev === null) return 0;
  const base = `/sys/dev/block/${majorMinor(info.rdev).join(":")}`;
  for (const queue of [`${base}/queue`, `${base}/../queue`]) {
    try {
      const max = Number(Deno.readTextFileSync(`${queue}/discard_max_bytes`).trim());
      if (!(max > 0)) return 0;
      const g = Number(Deno.readTextFileSync(`${queue}/discard_granularity`).trim());
      return g > 0 ? g : sectorSize;
    } catch { /* not there: a partition, whose disk has the queue */ }
  }
  return 0;
}

/**
 * Opens an image file or block device as a {@link BlockDevice}.
 *
 * @example
 * ```ts
 * import { openBlockDevice } from "./file_device.ts";
 * const img = await Deno.makeTempFile();
 * await Deno.truncate(img, 1 << 20);
 * const dev = openBlockDevice(img);
 * console.log(dev.size, dev.readOnly); // 1048576 true
 * await dev.close();
 * await Deno.remove(img);
 * ```
 */
export function openBlockDevice(path: string, options: OpenDeviceOptions = {}): FileBlockDevice {
  return FileBlockDevice.open(path, options);
}
