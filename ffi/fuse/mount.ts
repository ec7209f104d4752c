/**
 * Mounting and unmounting FUSE filesystems without libfuse: /dev/fuse, mount(2) with the
 * fuse/fuseblk data string, loop devices for image files (LOOP_CTL_GET_FREE +
 * LOOP_CONFIGURE), /proc/self/mountinfo, the fuse control filesystem's `abort`, per-mount
 * state files under /run/ext4ts, and the daemon's process tuning (PR_SET_IO_FLUSHER,
 * oom_score_adj).
 *
 * Every call here that can block on the FUSE daemon (umount2) has a worker-thread variant:
 * a fuseblk unmount waits for the DESTROY reply, and the thread that must answer it must
 * never be the one waiting.
 *
 * @module
 */

import { Errno, Ext4Error } from "../../lib/errors.ts";
import { cstr, errno, Ioctl, libc, O, SyscallError } from "../libc.ts";

/** mount(2) flags (MS_*). */
export const MountFlag = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  DIRSYNC: 128,
  NOATIME: 1024,
  NODIRATIME: 2048,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
} as const;

/** The flags of a FUSE mount when none are asked for: libfuse's (and fusermount3's) nosuid,nodev. */
export const DEFAULT_MOUNT_FLAGS: number = MountFlag.NOSUID | MountFlag.NODEV;

/**
 * The options fusermount3 passes on for `flags` (MS_* besides MS_RDONLY). It knows only
 * nosuid/nodev/noexec/sync/noatime/dirsync (its own table) and forces nosuid,nodev on users, so
 * `suid`/`dev` are left out (they would only print "unsafe option ignored"); relatime is the
 * kernel's default; strictatime and nodiratime cannot be asked of it and are dropped.
 *
 * @example
 * ```ts
 * import { fusermountFlagOptions, MountFlag } from "./mount.ts";
 * console.log(fusermountFlagOptions(MountFlag.NOEXEC | MountFlag.NOATIME)); // ["noexec", "noatime"]
 * ```
 */
export function fusermountFlagOptions(flags: number): string[] {
  const known: [number, string][] = [
    [MountFlag.NOEXEC, "noexec"],
    [MountFlag.SYNCHRONOUS, "sync"],
    [MountFlag.NOATIME, "noatime"],
    [MountFlag.DIRSYNC, "dirsync"],
  ];
  return known.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name);
}

/** umount2(2) flags. */
export const UmountFlag = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

const LO_FLAGS_READ_ONLY = 1;
const LO_FLAGS_AUTOCLEAR = 4;
const LOOP_CONFIG_SIZE = 304;
const PR_SET_IO_FLUSHER = 57;

/**
 * Where per-mount state files live: /run/ext4ts for root, a per-user directory otherwise.
 *
 * @example
 * ```ts ignore
 * stateDir(); // "/run/ext4ts" as root
 * ```
 */
export function stateDir(): string {
  const uid = libc().geteuid();
  if (uid === 0) return "/run/ext4ts";
  const runtime = Deno.env.get("XDG_RUNTIME_DIR");
  return runtime ? `${runtime}/ext4ts` : `/tmp/ext4ts-${uid}`;
}

/**
 * Opens /dev/fuse for a new connection: non-blocking (the session polls on a worker
 * thread and reads synchronously) and close-on-exec.
 *
 * @example
 * ```ts ignore
 * const fd = openFuseDevice();
 * ```
 */
export function openFuseDevice(): number {
  const fd = libc().open(cstr("/dev/fuse"), O.RDWR | O.NONBLOCK | O.CLOEXEC, 0);
  if (fd < 0) {
    const e = errno();
    throw new Ext4Error(
      e === 2 ? "NOT_FOUND" : "PERMISSION",
      `/dev/fuse: ${new SyscallError("open", e).message}`,
      { errno: e },
    );
  }
  return fd;
}

/**
 * Closes a raw file descriptor (ignoring errors).
 *
 * @example
 * ```ts ignore
 * closeFd(fd);
 * ```
 */
export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/** Options for {@link mountFuse}. */
export interface FuseMountOptions {
  /** The open /dev/fuse descriptor the daemon serves. */
  fd: number;
  /** The block device (fuseblk) or a descriptive source name (plain fuse). */
  source: string;
  /** The mount point. */
  target: string;
  /** fuseblk (kernel holds the block device exclusively) or plain fuse. */
  blockDevice: boolean;
  /** Block size for fuseblk (power of two, 512..4096). */
  blockSize?: number;
  /** `user_id`/`group_id`: the mount's owner (default: this process's). */
  uid?: number;
  /** `group_id`: the mount's owning group (default: this process's gid). */
  gid?: number;
  /** Adds `allow_other`: let users other than the owner access the mount. */
  allowOther?: boolean;
  /** Adds `default_permissions`: the kernel checks mode bits itself. */
  defaultPermissions?: boolean;
  /** Mounts read-only (MS_RDONLY) unless this is `false`; the default is read-only. */
  readOnly?: boolean;
  /** The other MS_* flags (nosuid, noexec, noatime, …); default {@link DEFAULT_MOUNT_FLAGS}. */
  flags?: number;
  /** Shown in mountinfo as `fuseblk.SUBTYPE` / `fuse.SUBTYPE`. */
  subtype?: string;
}

/**
 * The data string mount(2) gets for a FUSE mount.
 *
 * @example
 * ```ts ignore
 * fuseMountData({ fd: 5, source: "/dev/loop0", target: "/mnt", blockDevice: true });
 * // "fd=5,rootmode=40000,user_id=0,group_id=0,blksize=4096"
 * ```
 */
export function fuseMountData(o: FuseMountOptions): string {
  const parts = [
    `fd=${o.fd}`,
    "rootmode=40000",
    `user_id=${o.uid ?? libc().geteuid()}`,
    `group_id=${o.gid ?? libc().getgid()}`,
  ];
  if (o.blockDevice) {
    const bs = Math.min(4096, Math.max(512, o.blockSize ?? 4096));
    parts.push(`blksize=${bs}`);
  }
  if (o.allowOther) parts.push("allow_other");
  if (o.defaultPermissions) parts.push("default_permissions");
  return parts.join(",");
}

/**
 * mount(2) of a FUSE filesystem served on `o.fd`. The kernel sends INIT right after; the
 * mount is usable once the session has answered it. Errors are {@link SyscallError}s.
 *
 * @example
 * ```ts ignore
 * mountFuse({ fd, source: "/dev/loop3", target: "/mnt/x", blockDevice: true, readOnly: true });
 * ```
 */
export function mountFuse(o: FuseMountOptions): void {
  const base = o.blockDevice ? "fuseblk" : "fuse";
  const flags = BigInt(
    (o.readOnly === false ? 0 : MountFlag.RDONLY) | (o.flags ?? DEFAULT_MOUNT_FLAGS),
  );
  const data = cstr(fuseMountData(o));
  const c = libc();
  const types = o.subtype ? [`${base}.${o.subtype}`, base] : [base];
  let last = 0;
  for (const type of types) {
    if (c.mount(cstr(o.source), cstr(o.target), cstr(type), flags, data) === 0) return;
    last = errno();
    if (last !== 19 /* ENODEV: type (with subtype) unknown */) break;
  }
  throw new SyscallError("mount", last, `mount ${o.source} on ${o.target}`);
}

/**
 * umount2(2) on a worker thread: the calling thread stays free to answer DESTROY.
 * Resolves to 0 or the errno (learnt by repeating the call synchronously when it failed,
 * which is safe: a failed umount did not start waiting for anything).
 *
 * @example
 * ```ts ignore
 * const err = await unmountAsync("/mnt/x"); // 0 or an errno (16 = busy)
 * ```
 */
export async function unmountAsync(target: string, flags = 0): Promise<number> {
  const c = libc();
  const path = cstr(target);
  const r = await c.umount2_nb(path, flags);
  if (r === 0) return 0;
  // Learn errno from a synchronous retry; if that one succeeds (a race), report success.
  return c.umount2(path, flags) === 0 ? 0 : errno();
}

/** One line of /proc/self/mountinfo. */
export interface MountInfo {
  mountId: number;
  /** `major:minor` of the filesystem (for FUSE, minor = the connection number). */
  device: string;
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  superOptions: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Parses mountinfo text (default: this process's).
 *
 * @example
 * ```ts
 * import { parseMountInfo } from "./mount.ts";
 * const line = "36 35 0:45 / /mnt/x rw,nosuid - fuseblk /dev/loop0 rw,user_id=0";
 * console.log(parseMountInfo(line)[0].fsType); // fuseblk
 * ```
 */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const f = line.split(" ");
    const dash = f.indexOf("-");
    if (dash < 6 || f.length < dash + 4) continue;
    out.push({
      mountId: Number(f[0]),
      device: f[2],
      mountPoint: unescapeMount(f[4]),
      options: f[5],
      fsType: f[dash + 1],
      source: unescapeMount(f[dash + 2]),
      superOptions: f[dash + 3],
    });
  }
  return out;
}

/**
 * The mounts of this process's namespace.
 *
 * @example
 * ```ts ignore
 * for (const m of readMounts()) console.log(m.mountPoint, m.fsType);
 * ```
 */
export function readMounts(): MountInfo[] {
  return parseMountInfo(Deno.readTextFileSync("/proc/self/mountinfo"));
}

/**
 * The topmost mount at `mountPoint` (already resolved to an absolute path), if any.
 *
 * @example
 * ```ts ignore
 * findMount("/mnt/x")?.fsType; // "fuseblk.ext4ts"
 * ```
 */
export function findMount(mountPoint: string): MountInfo | undefined {
  const all = readMounts().filter((m) => m.mountPoint === mountPoint);
  return all.at(-1);
}

/**
 * True for fuse and fuseblk mounts (with or without a subtype).
 *
 * @example
 * ```ts ignore
 * isFuseType("fuseblk.ext4ts"); // true
 * ```
 */
export function isFuseType(fsType: string): boolean {
  return /^fuse(blk)?(\.|$)/.test(fsType);
}

/**
 * The FUSE connection number of a mount (`/sys/fs/fuse/connections/N`): the kernel names
 * it by the superblock's device number, `major << 20 | minor` — the anonymous `0:NN` of a
 * plain fuse mount, the block device's own number for fuseblk.
 *
 * @example
 * ```ts
 * import { connectionOf } from "./mount.ts";
 * console.log(connectionOf({ device: "7:2" } as never)); // 7340034
 * ```
 */
export function connectionOf(m: Pick<MountInfo, "device">): number | undefined {
  const [major, minor] = m.device.split(":").map(Number);
  if (!Number.isInteger(major) || !Number.isInteger(minor)) return undefined;
  return major * 2 ** 20 + minor;
}

/**
 * Aborts a FUSE connection through the fuse control filesystem: every waiting request
 * fails with ENOTCONN and nothing waits for the daemon any more. The last resort for a
 * daemon that is gone or stuck.
 *
 * @example
 * ```ts ignore
 * abortConnection(connectionOf(findMount("/mnt/x")!)!);
 * ```
 */
export function abortConnection(conn: number): boolean {
  const dir = "/sys/fs/fuse/connections";
  try {
    Deno.statSync(dir + "/" + conn);
  } catch {
    // The control filesystem may not be mounted yet.
    try {
      if (libc().mount(cstr("fusectl"), cstr(dir), cstr("fusectl"), 0n, cstr("")) !== 0) {
        return false;
      }
    } catch {
      return false;
    }
  }
  try {
    Deno.writeTextFileSync(`${dir}/${conn}/abort`, "1");
    return true;
  } catch {
    return false;
  }
}

/**
 * Raises the kernel's readahead for a FUSE mount (its backing-device-info
 * `/sys/class/bdi/MAJ:MIN[-fuseblk]/read_ahead_kb`). INIT can only lower the kernel's 128 KiB
 * default; with 1 MiB, sequential reads arrive as 1 MiB requests (measured: 512 MiB cold read
 * 2.45 s → 0.79 s). Best effort (root only); returns false when it could not be set.
 *
 * @example
 * ```ts ignore
 * setReadahead(findMount("/mnt/x")!, 1024);
 * ```
 */
export function setReadahead(m: Pick<MountInfo, "device" | "fsType">, kb: number): boolean {
  const suffix = m.fsType.startsWith("fuseblk") ? "-fuseblk" : "";
  try {
    Deno.writeTextFileSync(`/sys/class/bdi/${m.device}${suffix}/read_ahead_kb`, String(kb));
    return true;
  } catch {
    return false;
  }
}

/** An attached loop device. */
export interface LoopDevice {
  /** `/dev/loopN`. */
  path: string;
  /** N of `/dev/loopN`. */
  number: number;
  /** The descriptor that configured it; with autoclear, closing the last one detaches it. */
  fd: number;
}

/**
 * Attaches `image` to a free loop device with LOOP_CONFIGURE (autoclear, read-only unless
 * asked otherwise). The device detaches itself once its last opener (this fd, a mount)
 * closes it.
 *
 * @example
 * ```ts ignore
 * const loop = attachLoop("disk.img", { readOnly: true });
 * console.log(loop.path); // /dev/loop7
 * ```
 */
export function attachLoop(image: string, options: { readOnly?: boolean } = {}): LoopDevice {
  const c = libc();
  const readOnly = options.readOnly ?? true;
  const backing = c.open(cstr(image), (readOnly ? O.RDONLY : O.RDWR) | O.CLOEXEC, 0);
  if (backing < 0) throw new SyscallError("open", errno(), image);
  try {
    const ctl = c.open(cstr("/dev/loop-control"), O.RDWR | O.CLOEXEC, 0);
    if (ctl < 0) throw new SyscallError("open", errno(), "/dev/loop-control");
    try {
      // Another process may take the device between GET_FREE and CONFIGURE: retry.
      for (let attempt = 0; attempt < 20; attempt++) {
        const n = c.ioctl_int(ctl, Ioctl.LOOP_CTL_GET_FREE, 0n);
        if (n < 0) throw new SyscallError("ioctl", errno(), "LOOP_CTL_GET_FREE");
        const path = `/dev/loop${n}`;
        const fd = c.open(cstr(path), (readOnly ? O.RDONLY : O.RDWR) | O.CLOEXEC, 0);
        if (fd < 0) {
          if (errno() === Errno.ENOENT) continue; // node not created yet by udev/devtmpfs
          throw new SyscallError("open", errno(), path);
        }
        const cfg = new Uint8Array(LOOP_CONFIG_SIZE);
        const v = new DataView(cfg.buffer);
        v.setUint32(0, backing, true);
        v.setUint32(4, 0, true); // block size: default
        v.setUint32(8 + 52, LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0), true);
        const name = new TextEncoder().encode(image).subarray(0, 63);
        cfg.set(name, 8 + 56);
        if (c.ioctl(fd, Ioctl.LOOP_CONFIGURE, cfg) === 0) return { path, number: n, fd };
        const e = errno();
        c.close(fd);
        if (e !== Errno.EBUSY /* taken meanwhile */) {
          throw new SyscallError("ioctl", e, `LOOP_CONFIGURE ${path}`);
        }
      }
      throw new Ext4Error("BUSY", "no free loop device after 20 attempts");
    } finally {
      c.close(ctl);
    }
  } finally {
    c.close(backing);
  }
}

/**
 * The loop device's backing file, or undefined when it is not attached.
 *
 * @example
 * ```ts ignore
 * loopBackingFile("/dev/loop0"); // "/tmp/disk.img" or undefined
 * ```
 */
export function loopBackingFile(loopPath: string): string | undefined {
  const name = loopPath.replace(/^\/dev\//, "");
  try {
    return Deno.readTextFileSync(`/sys/block/${name}/loop/backing_file`).trim();
  } catch {
    return undefined;
  }
}

/**
 * Tries an O_EXCL open of a block device: true when nothing (mount, other holder) has it.
 * ENOENT (a loop node gone) also counts as free.
 *
 * @example
 * ```ts ignore
 * if (deviceIsFree("/dev/loop0")) console.log("safe to remove");
 * ```
 */
export function deviceIsFree(path: string): boolean {
  const c = libc();
  const fd = c.open(cstr(path), O.RDONLY | O.EXCL | O.CLOEXEC, 0);
  if (fd >= 0) {
    c.close(fd);
    return true;
  }
  return errno() === Errno.ENOENT;
}

/**
 * Best-effort protection of a FUSE daemon: PR_SET_IO_FLUSHER (so memory reclaim does not
 * wait on the daemon it needs) and a low oom_score_adj. Returns what failed (empty when
 * all worked), for one warning line.
 *
 * @example
 * ```ts ignore
 * const failed = protectDaemon();
 * if (failed.length) console.error(`warning: could not set ${failed.join(", ")}`);
 * ```
 */
export function protectDaemon(oomScoreAdj = -900): string[] {
  const failed: string[] = [];
  const c = libc();
  if (c.prctl(PR_SET_IO_FLUSHER, 1n, 0n, 0n, 0n) !== 0) {
    failed.push(`PR_SET_IO_FLUSHER (${new SyscallError("prctl", errno()).message})`);
  }
  try {
    Deno.writeTextFileSync("/proc/self/oom_score_adj", String(oomScoreAdj));
  } catch (e) {
    failed.push(`oom_score_adj (${(e as Error).message})`);
  }
  return failed;
}

/** What a mount daemon records about itself for `ext4ts umount`. */
export interface MountState {
  /** The daemon's process id. */
  pid: number;
  /** The mount point, absolute. */
  mountPoint: string;
  /** The device the mount holds (a loop device for image files). */
  device: string;
  /** The image file behind an auto-attached loop device. */
  image?: string;
  /** fuseblk or plain fuse. */
  blockDevice: boolean;
  /** FUSE connection number. */
  connection?: number;
  /** /proc/PID/stat start time, to tell a reused pid apart. */
  startTime?: string;
  /**
   * Lifecycle: `starting` until the mount is up, then `mounted`; `stopping` is reserved for
   * shutdown.
   */
  state: "starting" | "mounted" | "stopping";
}

/**
 * The state file path for a mount point (absolute, resolved).
 *
 * @example
 * ```ts ignore
 * stateFile("/mnt/x"); // "/run/ext4ts/%2Fmnt%2Fx.json"
 * ```
 */
export function stateFile(mountPoint: string): string {
  let key = encodeURIComponent(mountPoint);
  if (key.length > 200) key = key.slice(0, 100) + "…" + key.slice(-90);
  return `${stateDir()}/${key}.json`;
}

/**
 * The log of a background daemon that has neither `--log` nor a system log (/dev/log): beside
 * its state file, `…/<mountpoint, URI-encoded>.log`. The directory is created.
 *
 * @example
 * ```ts ignore
 * defaultLogFile("/mnt/x"); // "/run/ext4ts/%2Fmnt%2Fx.log"
 * ```
 */
export function defaultLogFile(mountPoint: string): string {
  Deno.mkdirSync(stateDir(), { recursive: true, mode: 0o755 });
  return stateFile(mountPoint).replace(/\.json$/, ".log");
}

/**
 * Writes the state file atomically.
 *
 * @example
 * ```ts ignore
 * writeState({ pid: Deno.pid, mountPoint: "/mnt/x", device: "/dev/loop0", blockDevice: true, state: "mounted" });
 * ```
 */
export function writeState(s: MountState): void {
  Deno.mkdirSync(stateDir(), { recursive: true, mode: 0o755 });
  const path = stateFile(s.mountPoint);
  const tmp = `${path}.${s.pid}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(s) + "\n");
  Deno.renameSync(tmp, path);
}

/**
 * Reads a mount point's state file, if there is one.
 *
 * @example
 * ```ts ignore
 * readState("/mnt/x")?.pid;
 * ```
 */
export function readState(mountPoint: string): MountState | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(stateFile(mountPoint))) as MountState;
  } catch {
    return undefined;
  }
}

/**
 * Removes a mount point's state file if it belongs to `pid` (or any, when pid is omitted).
 *
 * @example
 * ```ts ignore
 * removeState("/mnt/x", Deno.pid);
 * ```
 */
export function removeState(mountPoint: string, pid?: number): void {
  const s = readState(mountPoint);
  if (s && pid !== undefined && s.pid !== pid) return;
  try {
    Deno.removeSync(stateFile(mountPoint));
  } catch { /* gone already */ }
}

/**
 * The start time field of /proc/PID/stat (changes when a pid is reused).
 *
 * @example
 * ```ts ignore
 * const start = processStartTime(Deno.pid);
 * ```
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19];
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` runs and (when given) started at `startTime`. A zombie counts as gone once
 * its last thread has exited (its descriptors are closed by then).
 *
 * @example
 * ```ts ignore
 * processAlive(state.pid, state.startTime);
 * ```
 */
export function processAlive(pid: number, startTime?: string): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (startTime !== undefined && rest[19] !== startTime) return false;
    if (rest[0] === "Z" || rest[0] === "X") {
      // A zombie leader whose other threads are still exiting still holds its files.
      let threads = 0;
      for (const _ of Deno.readDirSync(`/proc/${pid}/task`)) threads++;
      return threads > 1;
    }
    return true;
  } catch {
    return false;
  }
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const F_GETFL = 3;
const F_SETFL = 4;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/**
 * An unprivileged plain-FUSE mount through the setuid helper `fusermount3`: it opens
 * /dev/fuse, mounts, and hands the descriptor back over a unix socket (SCM_RIGHTS) whose
 * number it finds in `_FUSE_COMMFD`. The socket end is created without close-on-exec so the
 * helper inherits it. Returns the /dev/fuse descriptor, made non-blocking and close-on-exec.
 *
 * @example
 * ```ts ignore
 * const fd = await mountWithFusermount("disk.img", "/home/me/mnt", ["ro", "subtype=ext4ts"]);
 * ```
 */
export async function mountWithFusermount(
  source: string,
  target: string,
  options: string[],
): Promise<number> {
  const c = libc();
  const sv = new Int32Array(2);
  if (c.socketpair(AF_UNIX, SOCK_STREAM, 0, new Uint8Array(sv.buffer)) !== 0) {
    throw new SyscallError("socketpair", errno());
  }
  const [ours, theirs] = [sv[0], sv[1]];
  let theirsOpen = true;
  try {
    c.fcntl(ours, F_SETFD, BigInt(FD_CLOEXEC));
    const fsname = source.replace(/[,\\]/g, "_");
    const out = await new Deno.Command("fusermount3", {
      args: ["-o", [...options, `fsname=${fsname}`].join(","), "--", target],
      env: { _FUSE_COMMFD: String(theirs) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    c.close(theirs);
    theirsOpen = false;
    if (!out.success) {
      const text = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
      throw new Ext4Error("PERMISSION", `fusermount3 failed: ${text || `exit ${out.code}`}`);
    }
    // msghdr: name(8) namelen(4+4) iov(8) iovlen(8) control(8) controllen(8) flags(4+4).
    const data = new Uint8Array(1);
    const iov = new BigUint64Array([
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data))),
      1n,
    ]);
    const control = new Uint8Array(24); // CMSG_SPACE(sizeof(int))
    const msg = new BigUint64Array(7);
    msg[2] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov)));
    msg[3] = 1n;
    msg[4] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(control)));
    msg[5] = BigInt(control.length);
    const n = Number(c.recvmsg(ours, new Uint8Array(msg.buffer), MSG_DONTWAIT));
    if (n < 0) throw new SyscallError("recvmsg", errno(), "receiving the /dev/fuse descriptor");
    const cv = new DataView(control.buffer);
    if (cv.getInt32(8, true) !== SOL_SOCKET || cv.getInt32(12, true) !== SCM_RIGHTS) {
      throw new Ext4Error("IO", "fusermount3 did not pass a /dev/fuse descriptor");
    }
    const fd = cv.getInt32(16, true);
    const fl = c.fcntl(fd, F_GETFL, 0n);
    c.fcntl(fd, F_SETFL, BigInt(fl | O.NONBLOCK));
    c.fcntl(fd, F_SETFD, BigInt(FD_CLOEXEC));
    void [data, iov, control, msg];
    return fd;
  } finally {
    c.close(ours);
    if (theirsOpen) c.close(theirs);
  }
}

/**
 * Unmounts a plain FUSE mount as its (unprivileged) owner with `fusermount3 -u`.
 *
 * @example
 * ```ts ignore
 * const error = await unmountWithFusermount("/home/me/mnt");
 * ```
 */
export async function unmountWithFusermount(
  target: string,
  lazy = false,
): Promise<string | undefined> {
  const out = await new Deno.Command("fusermount3", {
    args: ["-u", ...(lazy ? ["-z"] : []), "--", target],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return out.success ? undefined : new TextDecoder().decode(out.stderr).trim();
}
