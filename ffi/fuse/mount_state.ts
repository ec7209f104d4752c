/**
 * What a mount daemon leaves for `ext4ts umount` and the mount helper: its per-mount state
 * file under /run/ext4ts (or a per-user directory), its default log file beside it, how
 * another process tells it is still alive (pid + start time), and the daemon's process
 * tuning (PR_SET_IO_FLUSHER, oom_score_adj).
 *
 * @module
 */

import { errno, libc, SyscallError } from "../libc.ts";

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

/** A pidfd for `pid`, or -1 (gone, or no pidfd_open: glibc before 2.36, Linux before 5.3). */
function openPidfd(pid: number): number {
  try {
    return libc().pidfd_open(pid, 0);
  } catch {
    return -1;
  }
}

const POLLIN = 1;

/**
 * Waits until `pid` (started at `startTime`) has exited as {@link processAlive} counts it, or
 * until `deadline` (`Date.now()` milliseconds): true once it has exited, false at the deadline.
 * The wait is a `poll` of a pidfd on a worker thread, which the kernel wakes when the last
 * thread has gone: no sleeping between checks (polling /proc with a backoff cost `ext4ts
 * umount` up to 20 ms). `undefined` when this system has no pidfds (glibc before 2.36, Linux
 * before 5.3): the caller polls.
 *
 * @example
 * ```ts ignore
 * const gone = await waitForExit(state.pid, state.startTime, Date.now() + 60_000);
 * ```
 */
export async function waitForExit(
  pid: number,
  startTime: string | undefined,
  deadline: number,
): Promise<boolean | undefined> {
  const fd = openPidfd(pid);
  if (fd < 0) return processAlive(pid, startTime) ? undefined : true;
  const pollfd = new Uint8Array(8);
  const view = new DataView(pollfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  try {
    // Checked with the pidfd open: a pid reused since has another start time (gone).
    while (processAlive(pid, startTime)) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await libc().poll_nb(pollfd, 1n, Math.min(left, 1000));
    }
    return true;
  } finally {
    libc().close(fd);
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
