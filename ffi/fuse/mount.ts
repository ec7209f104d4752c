/**
 * Mounting and unmounting FUSE filesystems without libfuse: /dev/fuse, mount(2) with the
 * fuse/fuseblk data string, umount2, and the setuid helper fusermount3 for unprivileged
 * plain-FUSE mounts. The neighbours: `mountinfo.ts` (finding mounts, their FUSE connection,
 * abort), `loop.ts` (loop devices for image files), `mount_state.ts` (the daemon's state
 * file, liveness and process tuning).
 *
 * Every call here that can block on the FUSE daemon (umount2) has a worker-thread variant:
 * a fuseblk unmount waits for the DESTROY reply, and the thread that must answer it must
 * never be the one waiting.
 *
 * @module
 */

import { Ext4Error } from "../../lib/errors.ts";
import { cstr, errno, libc, O, SyscallError } from "../libc.ts";

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
