/**
 * Shared machinery of the FUSE tests: loop devices, the in-memory daemon, `ext4ts umount`,
 * and a cleanup that never leaves a mount or loop device behind (aborting the FUSE
 * connection when nothing else works).
 *
 * @module
 */

import { abortConnection, connectionOf, findMount } from "../ffi/fuse/mountinfo.ts";
import { deviceIsFree } from "../ffi/fuse/loop.ts";
import { defaultLogFile, readState, removeState } from "../ffi/fuse/mount_state.ts";
import { ROOT, run, runCli, type RunResult } from "./helpers.ts";
export {
  detachLoop,
  detachLoopsOf,
  loopsOf,
  losetup,
  type Unprivileged,
  unprivileged,
} from "./helpers.ts";

/**
 * A mount command's stderr without the daemon's one warning that it could not protect itself
 * (PR_SET_IO_FLUSHER, oom_score_adj): this sandbox, and every non-root user, lacks
 * CAP_SYS_RESOURCE, and the warning is meant to reach the terminal (README, `ext4ts mount`).
 *
 * @example
 * ```ts ignore
 * assert.equal(withoutProtectionWarning(m.stderr), "");
 * ```
 */
export function withoutProtectionWarning(stderr: string): string {
  return stderr.replace(/^ext4ts: warning: could not set .*\n/m, "");
}

/** What the FUSE tests need from the machine. */
export const FUSE_NEEDS = ["root", "loop", "fuse", "losetup"];

/**
 * True when something is mounted on `mnt`.
 *
 * @example
 * ```ts ignore
 * isMounted("/mnt/x");
 * ```
 */
export function isMounted(mnt: string): boolean {
  return findMount(mnt) !== undefined;
}

/**
 * Runs the in-memory daemon's `mount` command (same code as `ext4ts mount`).
 *
 * @example
 * ```ts ignore
 * const r = await memMount("/dev/loop3", "/mnt/x", ["-o", "noblkdev"]);
 * ```
 */
export function memMount(
  device: string,
  mnt: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<RunResult> {
  return run(
    Deno.execPath(),
    ["run", "--allow-all", `${ROOT}tests/fuse_memfs_daemon.ts`, "mount", device, mnt, ...extra],
    { env },
  );
}

/**
 * Runs `ext4ts umount MNT`.
 *
 * @example
 * ```ts ignore
 * const r = await umount("/mnt/x"); // r.code 0
 * ```
 */
export function umount(mnt: string, timeout = 30): Promise<RunResult> {
  return runCli(["umount", mnt, "--timeout", String(timeout)]);
}

/**
 * True when an O_EXCL open of the device succeeds.
 *
 * @example
 * ```ts ignore
 * exclusiveOpenWorks("/dev/loop3");
 * ```
 */
export function exclusiveOpenWorks(dev: string): boolean {
  return deviceIsFree(dev);
}

/**
 * Last-resort cleanup for a test's mount point: abort the FUSE connection, lazy-unmount,
 * remove the state file, the daemon's fallback log and the directory. Safe to call when
 * nothing is mounted.
 *
 * @example
 * ```ts ignore
 * await forceCleanup("/mnt/x");
 * ```
 */
export async function forceCleanup(mnt: string): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const m = findMount(mnt);
    if (!m) break;
    const conn = connectionOf(m);
    if (conn !== undefined && m.fsType.startsWith("fuse")) abortConnection(conn);
    await run("umount", ["-l", mnt]);
  }
  removeState(mnt);
  // The log a daemon writes there when there is neither --log nor a system log.
  await Deno.remove(defaultLogFile(mnt)).catch(() => {});
  await Deno.remove(mnt).catch(() => {});
}

/**
 * The daemon pid recorded for a mount point (from its state file).
 *
 * @example
 * ```ts ignore
 * const pid = daemonPid("/mnt/x");
 * ```
 */
export function daemonPid(mnt: string): number | undefined {
  return readState(mnt)?.pid;
}

/**
 * Waits until `cond` holds (polling), failing after `ms`.
 *
 * @example
 * ```ts ignore
 * await eventually(() => !isMounted(mnt), 5000, "unmount");
 * ```
 */
export async function eventually(cond: () => boolean, ms = 10_000, what = "condition") {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Makes /dev/fuse usable by every user (mode 0666, as udev sets it on ordinary systems; some
 * sandboxes leave it 0600, and fusermount3 opens it with the caller's fsuid) for the time
 * of `fn`, then puts the old mode back.
 *
 * @example
 * ```ts ignore
 * await withOpenFuseDevice(async () => { ... });
 * ```
 */
export async function withOpenFuseDevice<T>(fn: () => Promise<T>): Promise<T> {
  const mode = Deno.statSync("/dev/fuse").mode! & 0o7777;
  if ((mode & 0o666) === 0o666) return await fn();
  Deno.chmodSync("/dev/fuse", 0o666);
  try {
    return await fn();
  } finally {
    Deno.chmodSync("/dev/fuse", mode);
  }
}
