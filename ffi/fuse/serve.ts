/**
 * The life of a mount daemon, independent of which filesystem it serves: pick the device
 * (lock an image file shared, so ext4ts writers are refused while it is served, and attach a
 * loop device for it), open the filesystem, mount (fuseblk by mount(2), or
 * plain fuse), answer requests until the mount goes away, re-check the device after
 * mounting, record a state file for `ext4ts umount`, and react to SIGTERM by unmounting from
 * a worker thread (never from the thread that answers DESTROY).
 *
 * @module
 */

import { DeviceOpenError, Errno, Ext4Error } from "../../lib/errors.ts";
import { openLocked } from "../file_lock.ts";
import { BRIEF_HOLDER_RETRY, refuseIfInUse } from "../device_status.ts";
import { libc, SyscallError } from "../libc.ts";
import type { FuseOperations } from "./ops.ts";
import { FuseSession, type SessionEnd } from "./session.ts";
import {
  closeFd,
  DEFAULT_MOUNT_FLAGS,
  fusermountFlagOptions,
  mountFuse,
  mountWithFusermount,
  openFuseDevice,
  UmountFlag,
  unmountAsync,
  unmountWithFusermount,
} from "./mount.ts";
import { abortConnection, connectionOf, findMount, isFuseType, setReadahead } from "./mountinfo.ts";
import { attachLoop, deviceIsFree, loopBackingFile, type LoopDevice } from "./loop.ts";
import {
  type MountState,
  processStartTime,
  protectDaemon,
  removeState,
  writeState,
} from "./mount_state.ts";

/** A filesystem opened for serving. */
export interface OpenedFilesystem {
  /** The FUSE operations that answer the kernel's requests. */
  ops: FuseOperations;
  /** Answers system.posix_acl_* in the kernel's format: let the kernel cache ACLs. */
  posixAcl?: boolean;
  /** The filesystem's block size (fuseblk `blksize`, capped at 4096). */
  blockSize: number;
  /**
   * Re-checks, through a fresh non-exclusive open of `devicePath`, that the mounted device
   * still holds the filesystem that was opened (same UUID, features, state). Throws if not.
   */
  verify?(devicePath: string): Promise<void>;
  /**
   * The mount is undone before it went live (`error` says why): requests waiting for
   * {@link OpenedFilesystem.verify} must fail now, or the unmount would wait for them.
   */
  abandon?(error: unknown): void;
  /** Called once the mount is live: what the filesystem may do to it (abort: errors=panic). */
  attach?(controls: { abort(): void }): void;
}

/** Opens the filesystem a daemon serves. */
export interface MountBackend {
  /**
   * Opens `devicePath` (read-only in the ext4 backend) with `options`; warnings and progress go to
   * `log`.
   */
  open(
    devicePath: string,
    options: MountSettings,
    log: (line: string) => void,
  ): Promise<OpenedFilesystem>;
}

/** Mount options, parsed. */
export interface MountSettings {
  /** `ro` (the default) or `rw`: whether the mount was asked to be read-only. */
  readOnly: boolean;
  /**
   * `norecovery`/`noload`: serve the filesystem without replaying a journal that needs recovery.
   */
  noRecovery: boolean;
  /**
   * `allow_other`: users other than the mounter may access the mount (the CLI then also sets
   * `defaultPermissions`).
   */
  allowOther: boolean;
  /** `default_permissions`: the kernel enforces mode bits itself. */
  defaultPermissions: boolean;
  /** `noblkdev`: a plain `fuse` mount instead of `fuseblk`. */
  noBlkdev: boolean;
  /** Report files owned by uid 0 / gid 0 as owned by these ids. */
  uid?: number;
  /** The gid reported for files owned by gid 0 (see `uid`). */
  gid?: number;
  /**
   * `errors=`: what a corruption found while writing does (read-write mounts; read-only ones
   * never write); absent: the superblock's default.
   */
  errors?: "continue" | "remount-ro" | "panic";
  /**
   * `commit=`: read-write mounts gather their changes in one running transaction that is
   * committed through the journal on fsync/syncfs, at unmount, when it holds what the journal
   * takes, and at the latest this many seconds after its first change (default 5, as the
   * kernel's).
   */
  commit?: number;
  /**
   * `cache_size=` (fuse2fs's option): bytes of memory the filesystem's caches may hold; absent:
   * sized from the machine's available memory (ffi/fuse/ext4_rw_open.ts `mountCacheBytes`).
   */
  cacheSize?: number;
  /**
   * MS_* flags for the kernel besides MS_RDONLY (`nosuid`, `nodev`, `noexec`, the atime family,
   * …; see `MountFlag`); default nosuid,nodev.
   */
  mountFlags: number;
  /** `offset=`: the filesystem starts this many bytes into the device or image. */
  offset: number;
}

/**
 * Default settings: a read-only fuseblk mount.
 *
 * @example
 * ```ts
 * const settings = { ...defaultSettings(), allowOther: true };
 * console.log(settings.readOnly, settings.noBlkdev); // true false
 * ```
 */
export function defaultSettings(): MountSettings {
  return {
    readOnly: true,
    noRecovery: false,
    allowOther: false,
    defaultPermissions: false,
    noBlkdev: false,
    mountFlags: DEFAULT_MOUNT_FLAGS,
    offset: 0,
  };
}

/** Options of {@link serve}. */
export interface ServeOptions {
  /** The device or image file as the user named it. */
  source: string;
  /** The mount point (absolute, resolved). */
  mountPoint: string;
  /** The parsed mount options. */
  settings: MountSettings;
  /** Opens the filesystem to serve (e.g. `ext4Backend`). */
  backend: MountBackend;
  /** Receives one line per warning or progress message. */
  log: (line: string) => void;
  /** Called once the mount is live and verified. */
  onReady?: (state: MountState) => void;
}

function isRoot(): boolean {
  return libc().geteuid() === 0;
}

function mountError(e: unknown, source: string, target: string): Ext4Error {
  if (!(e instanceof SyscallError)) throw e;
  const text = `mount ${source} on ${target}: ${e.message}`;
  switch (e.errno) {
    case 16:
      return new Ext4Error("BUSY", text + " (device in use or already mounted)", {
        errno: Errno.EBUSY,
      });
    case 1:
    case 13:
      return new Ext4Error("PERMISSION", text, { errno: e.errno });
    case 2:
    case 20:
      return new Ext4Error("NOT_FOUND", text, { errno: e.errno });
    default:
      return new Ext4Error("IO", text, { errno: e.errno });
  }
}

/**
 * Mounts and serves until the mount goes away. Resolves with how the session ended;
 * rejects (after undoing everything) when the mount could not be set up.
 *
 * @example
 * ```ts ignore
 * // Not run by `deno test --doc`: it mounts (root, /dev/fuse) and serves until unmounted.
 * await serve({ source: "disk.img", mountPoint: "/mnt/x", settings: defaultSettings(),
 *   backend: ext4Backend, log: console.error, onReady: () => console.log("ready") });
 * ```
 */
export async function serve(o: ServeOptions): Promise<SessionEnd> {
  const { settings, log } = o;
  // First thing: PR_SET_IO_FLUSHER marks the calling thread, and threads started later (Deno's
  // worker threads for non-blocking calls) inherit it from their creator.
  const failed = protectDaemon();
  const readOnly = settings.readOnly;
  // A read-write mount lets the kernel check permissions (modes and ACLs): the daemon, root,
  // would otherwise allow every change.
  const defaultPermissions = settings.defaultPermissions || !readOnly;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(o.source);
  } catch {
    // The device itself: "cannot open" (exit 7), as for every command.
    throw new DeviceOpenError("NOT_FOUND", `${o.source}: No such file or directory`);
  }
  if (!info.isFile && !info.isBlockDevice) {
    throw new DeviceOpenError("INVALID", `${o.source}: not a block device or image file`);
  }
  let mpInfo: Deno.FileInfo;
  try {
    mpInfo = Deno.statSync(o.mountPoint);
  } catch (e) {
    if (/os error 107|not connected/i.test(String(e))) {
      throw new Ext4Error(
        "BUSY",
        `${o.mountPoint}: a dead FUSE mount is there (its daemon is gone): ` +
          `run 'ext4ts umount ${o.mountPoint}' first`,
      );
    }
    throw new Ext4Error("NOT_FOUND", `${o.mountPoint}: mount point does not exist`);
  }
  if (!mpInfo.isDirectory) {
    throw new Ext4Error("NOT_DIRECTORY", `${o.mountPoint}: mount point is not a directory`);
  }
  const existing = findMount(o.mountPoint);
  if (existing && isFuseType(existing.fsType) && existing.source === o.source) {
    throw new Ext4Error("BUSY", `${o.source} is already mounted on ${o.mountPoint}`);
  }
  // Without root, the setuid helper fusermount3 mounts (plain fuse only).
  // EXT4TS_FUSERMOUNT=1 takes that path as root too (tests).
  const viaHelper = !isRoot() || Deno.env.get("EXT4TS_FUSERMOUNT") === "1";
  let blockDevice = !settings.noBlkdev && !viaHelper;
  // An image is locked (shared) for as long as it is served: ext4ts writers lock it
  // exclusively, so they are refused now, and a mount of an image being written is refused.
  // Taken before the loop device is attached: a writer that holds the lock has checked the
  // loop devices already. A read-write mount is a writer: exclusive, and refused while a loop
  // device of the image is mounted or held (exit 8, before anything is written).
  let imageLock = info.isFile ? openLocked(o.source, readOnly ? "shared" : "exclusive") : -1;
  if (!readOnly && info.isFile) {
    try {
      refuseIfInUse(o.source);
    } catch (e) {
      closeFd(imageLock);
      throw e;
    }
  }
  const releaseImage = () => {
    if (imageLock >= 0) closeFd(imageLock);
    imageLock = -1;
  };
  let loop: LoopDevice | undefined;
  let devicePath = o.source;
  if (info.isFile && blockDevice) {
    try {
      loop = attachLoop(o.source, { readOnly });
    } catch (e) {
      releaseImage();
      throw new Ext4Error(
        "IO",
        `${o.source}: cannot attach a loop device: ${(e as Error).message}`,
      );
    }
    devicePath = loop.path;
  }
  let fs: OpenedFilesystem | undefined;
  let fd = -1;
  let mounted = false;
  const imagePath = info.isFile ? Deno.realPathSync(o.source) : undefined;
  const attached = loop;
  const releaseLoop = () => {
    if (loop) closeFd(loop.fd);
    loop = undefined;
    releaseImage();
  };
  /** After a failure: release the loop device and wait (briefly) for its autoclear. */
  const releaseLoopAndWait = async () => {
    releaseLoop();
    if (!attached) return;
    for (let i = 0; i < 200 && loopBackingFile(attached.path) === imagePath; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    fs = await o.backend.open(devicePath, settings, log);
    if (viaHelper) {
      fd = await mountWithFusermount(devicePath, o.mountPoint, [
        readOnly ? "ro" : "rw",
        "nosuid",
        "nodev",
        ...fusermountFlagOptions(settings.mountFlags),
        "subtype=ext4ts",
        ...(settings.allowOther ? ["allow_other"] : []),
        ...(defaultPermissions ? ["default_permissions"] : []),
      ]);
      mounted = true;
    } else {
      fd = openFuseDevice();
    }
    if (!viaHelper) {
      const mount = () =>
        mountFuse({
          fd,
          source: devicePath,
          target: o.mountPoint,
          blockDevice,
          blockSize: fs!.blockSize,
          allowOther: settings.allowOther,
          defaultPermissions,
          readOnly,
          flags: settings.mountFlags,
          subtype: "ext4ts",
        });
      try {
        await mountPastBriefHolders(mount, blockDevice, devicePath);
      } catch (e) {
        if (!writersRefused(e, readOnly, blockDevice, devicePath)) {
          throw mountError(e, devicePath, o.mountPoint);
        }
        // A kernel without CONFIG_BLK_DEV_WRITE_MOUNTED refuses a block device mount while
        // the daemon has it open for writing: plain fuse instead, never half a write.
        log(
          `warning: ${devicePath}: this kernel refuses writers to a mounted block device ` +
            "(no CONFIG_BLK_DEV_WRITE_MOUNTED): mounted as plain fuse; unmount with " +
            "'ext4ts umount', which waits until everything is written",
        );
        blockDevice = false;
        try {
          mount();
        } catch (e2) {
          throw mountError(e2, devicePath, o.mountPoint);
        }
      }
    }
    mounted = true;
  } catch (e) {
    if (fd >= 0) closeFd(fd);
    await fs?.ops.destroy?.().catch(() => {});
    await releaseLoopAndWait();
    throw e;
  }

  const session = new FuseSession(fd, fs.ops, {
    readOnly,
    // Read-only: a name that is absent now stays absent.
    negativeTimeout: readOnly ? 300 : 0,
    // Read-write: DESTROY waits for every request, however long (no data may be cut off).
    drainTimeoutMs: readOnly ? undefined : Infinity,
    posixAcl: fs.posixAcl,
    log,
    // The device must be free when umount(2) returns: close the loop fd before answering.
    beforeDestroyReply: releaseLoop,
    // A kernel that wakes the daemon on the requester's CPU makes the busy poll pure cost.
    busyPollUs: fuseWakesDaemonHere() ? 0 : undefined,
    onIdle: idleMemoryReleaser(),
  });
  const ended = session.run();
  const state: MountState = {
    pid: Deno.pid,
    mountPoint: o.mountPoint,
    device: devicePath,
    image: loop ? imagePath : undefined,
    blockDevice,
    startTime: processStartTime(Deno.pid),
    state: "starting",
  };
  const onSignal = () => {
    log(`signal received: unmounting ${o.mountPoint}`);
    if (viaHelper) {
      void unmountWithFusermount(o.mountPoint, true).then((e) => e && log(`unmount: ${e}`));
    } else {
      void unmountOnSignal(o.mountPoint, log);
    }
  };
  try {
    const first = await Promise.race([session.initialized, ended]);
    if (typeof first === "string") {
      throw new Ext4Error("IO", `the kernel closed the FUSE connection before INIT (${first})`);
    }
    const m = findMount(o.mountPoint);
    state.connection = m ? connectionOf(m) : undefined;
    // Sequential reads in 1 MiB requests instead of 128 KiB (silently skipped without root).
    if (m) setReadahead(m, 1024);
    writeState(state);
    await fs.verify?.(devicePath);
  } catch (e) {
    log(`mount failed: ${(e as Error).message}`);
    // Requests that wait for the mount to go live fail now: the unmount below waits for them.
    fs.abandon?.(e);
    if (mounted && viaHelper) {
      await unmountWithFusermount(o.mountPoint, true);
    } else if (mounted) {
      // Unmount from a worker thread: this thread must stay free to answer DESTROY.
      const err = await unmountAsync(o.mountPoint);
      if (err !== 0) await unmountAsync(o.mountPoint, UmountFlag.DETACH);
    }
    session.stop();
    await ended.catch(() => {});
    closeFd(fd);
    await releaseLoopAndWait();
    removeState(o.mountPoint, Deno.pid);
    throw e;
  }
  state.state = "mounted";
  writeState(state);
  fs.attach?.({
    abort: () => {
      if (state.connection !== undefined) abortConnection(state.connection);
      else if (viaHelper) void unmountWithFusermount(o.mountPoint, true);
      else void unmountAsync(o.mountPoint, UmountFlag.DETACH);
    },
  });
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  // Before `onReady`, so the mount command can show it too (its logger defers the log line).
  if (failed.length) log(`warning: could not set ${failed.join(", ")}`);
  o.onReady?.(state);
  let end: SessionEnd;
  try {
    end = await ended;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    closeFd(fd);
    releaseLoop();
    removeState(o.mountPoint, Deno.pid);
  }
  log(`session ended: ${end}`);
  return end;
}

/**
 * mount(2) of a block device fails with EBUSY while another program holds the device O_EXCL,
 * even for a moment: when nothing holds it a moment later, it is tried again as
 * {@link BRIEF_HOLDER_RETRY} says before the failure counts.
 */
export async function mountPastBriefHolders(
  mount: () => void,
  blockDevice: boolean,
  devicePath: string,
): Promise<void> {
  for (let attempt = 0;; attempt++) {
    try {
      return mount();
    } catch (e) {
      const busy = e instanceof SyscallError && e.errno === Errno.EBUSY;
      const more = attempt < BRIEF_HOLDER_RETRY.tries;
      if (!busy || !blockDevice || !more || !deviceIsFree(devicePath)) throw e;
    }
    await new Promise((r) => setTimeout(r, BRIEF_HOLDER_RETRY.ms));
  }
}

/**
 * True when a read-write `fuseblk` mount failed only because this kernel refuses writers to a
 * mounted block device: EBUSY although nobody else holds the device (an O_EXCL open works).
 */
function writersRefused(
  e: unknown,
  readOnly: boolean,
  blockDevice: boolean,
  devicePath: string,
): boolean {
  if (readOnly || !blockDevice || !(e instanceof SyscallError) || e.errno !== Errno.EBUSY) {
    return false;
  }
  return deviceIsFree(devicePath);
}

/**
 * SIGTERM/SIGINT/SIGHUP: unmount on a worker thread (the main thread keeps answering,
 * DESTROY included). A busy mount is detached lazily: it goes away, and DESTROY comes, once
 * the last open file is closed.
 */
async function unmountOnSignal(mountPoint: string, log: (l: string) => void): Promise<void> {
  const err = await unmountAsync(mountPoint);
  if (err === 0) return;
  if (err === 16) {
    log(`${mountPoint} is busy: detaching it (lazy unmount)`);
    const e2 = await unmountAsync(mountPoint, UmountFlag.DETACH);
    if (e2 !== 0) log(`lazy unmount failed: errno ${e2}`);
    return;
  }
  log(`unmount failed: errno ${err}`);
}

/**
 * Whether this kernel's FUSE wakes the daemon on the CPU of the process that asked (the
 * `fuse.wake_here` parameter some kernels carry, off by default; absent upstream). With it a
 * sleeping daemon is woken where the request came from, and polling without sleeping only
 * costs CPU (measured on 6.18 with it on: GETATTR round trip 12.3 µs and 7 µs of daemon CPU
 * sleeping, 15.9 µs and 15 µs polling; with it off 45 µs sleeping, 18 µs polling).
 *
 * @example
 * ```ts
 * import { fuseWakesDaemonHere } from "./serve.ts";
 * console.log(typeof fuseWakesDaemonHere()); // "boolean"
 * ```
 */
export function fuseWakesDaemonHere(
  parameter = "/sys/module/fuse/parameters/wake_here",
): boolean {
  try {
    return Deno.readTextFileSync(parameter).trim() === "Y";
  } catch {
    return false;
  }
}

/** Growth since the last idle collection (JS heap and external, or resident) worth one. */
const IDLE_COLLECT_MIN_BYTES = 4 << 20;

/**
 * What the daemon does once it falls idle (a second without requests after some): the returned
 * function, when the JS heap (with external memory) or the resident set has grown by at least 4
 * MiB since its last collection, runs a full collection of V8's heap — the block copies of
 * finished transactions otherwise wait in the old generation until V8's external-memory limit,
 * 64 MiB above the last collection, forces one — and `malloc_trim(0)`, which gives the C heap's
 * free pages back. ~5–20 ms of CPU once per idle spell (a request arriving meanwhile waits); a
 * client that sends a request now and then costs none. It returns whether it collected. The
 * collection needs V8's `gc`, exposed by the daemon's `--expose-gc` (cli/commands/mount.ts
 * DAEMON_V8_FLAGS); without it only the C heap is trimmed. `memoryUsage` is for tests.
 *
 * @example
 * ```ts
 * import { idleMemoryReleaser } from "./serve.ts";
 * const release = idleMemoryReleaser();
 * release(); // any time: nothing is lost, only freed memory given back
 * ```
 */
export function idleMemoryReleaser(
  memoryUsage: () => Deno.MemoryUsage = Deno.memoryUsage,
): () => boolean {
  // What was in use after the last collection (none yet: the first call collects).
  let inUse = 0;
  let resident = 0;
  return () => {
    const before = memoryUsage();
    // The JS heap can stay level while the resident set grows (V8 keeps the pages a scavenge
    // emptied; the C heap keeps what it freed): either growth makes a collection worth it.
    const grown = Math.max(before.heapUsed + before.external - inUse, before.rss - resident);
    if (grown < IDLE_COLLECT_MIN_BYTES) return false;
    (globalThis as { gc?: () => void }).gc?.();
    libc().malloc_trim(0n);
    const after = memoryUsage();
    inUse = after.heapUsed + after.external;
    resident = after.rss;
    return true;
  };
}
