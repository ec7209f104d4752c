/**
 * `ext4ts umount MOUNTPOINT [--timeout S]`: unmount, then wait until the daemon has
 * finished (DESTROY answered, device closed, process gone) and the device is free (an
 * O_EXCL open succeeds; for an image, its auto-attached loop device has detached). Exit 0
 * only then: the device is safe to remove.
 *
 * umount2 runs on a worker thread of *this* process, never in the daemon: a fuseblk
 * unmount waits for the daemon's DESTROY reply. A daemon that was killed leaves an ENOTCONN
 * mount: it is unmounted (lazily if busy). A daemon that does not answer within the timeout
 * has its FUSE connection aborted (/sys/fs/fuse/connections/N/abort) so nothing stays stuck.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { UmountFlag, unmountAsync, unmountWithFusermount } from "../../ffi/fuse/mount.ts";
import {
  abortConnection,
  connectionOf,
  findMount,
  isFuseType,
  type MountInfo,
} from "../../ffi/fuse/mountinfo.ts";
import { deviceIsFree, loopBackingFile } from "../../ffi/fuse/loop.ts";
import { processAlive, readState, removeState, waitForExit } from "../../ffi/fuse/mount_state.ts";
import { Errno } from "../../lib/errors.ts";
import { ExitCode } from "../exit_codes.ts";
import { CliError, runAction } from "../output.ts";
import { delay } from "../delay.ts";
import { documentCommand } from "../help.ts";

/** `path` made absolute and normalised (`.`, `..`, repeated slashes), without touching it. */
function absolutePath(path: string): string {
  const parts: string[] = [];
  for (const p of (path.startsWith("/") ? path : `${Deno.cwd()}/${path}`).split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  return "/" + parts.join("/");
}

function resolveMountPoint(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    // A dead FUSE mount answers ENOTCONN to stat: use the path as written.
    return absolutePath(path);
  }
}

/** Polls `cond` every millisecond or so until it holds or `deadline` passes. */
async function waitFor(cond: () => boolean, deadline: number): Promise<boolean> {
  let wait = 1;
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await delay(wait);
    wait = Math.min(wait * 2, 20);
  }
  return true;
}

/**
 * `umount MOUNTPOINT [--timeout S]` read without commander (what the installed
 * `ext4ts umount` and cli/main.ts run at once); `undefined` for any other spelling (help, usage
 * errors), which goes through commander.
 *
 * @example
 * ```ts
 * import { parseUmountArgs } from "./umount.ts";
 * console.log(parseUmountArgs(["umount", "--timeout", "5", "/mnt"])); // { mountPoint: "/mnt", timeout: "5" }
 * ```
 */
export function parseUmountArgs(
  args: string[],
): { mountPoint: string; timeout?: string } | undefined {
  const [command, ...rest] = args;
  if (command !== "umount") return undefined;
  const operand = (a: string | undefined): a is string => a !== undefined && !a.startsWith("-");
  const at = rest.indexOf("--timeout");
  const timeout = at >= 0 ? rest[at + 1] : undefined;
  const others = at >= 0 ? [...rest.slice(0, at), ...rest.slice(at + 2)] : rest;
  if ((at >= 0 && !operand(timeout)) || others.length !== 1 || !operand(others[0])) {
    return undefined;
  }
  return timeout === undefined ? { mountPoint: others[0] } : { mountPoint: others[0], timeout };
}

/** What {@link umountCommand} did, for tests and messages. */
export interface UmountResult {
  mountPoint: string;
  device?: string;
  pid?: number;
}

/**
 * Unmounts and waits. Throws {@link CliError} with the documented exit code on failure.
 *
 * @example
 * ```ts ignore
 * await umountCommand("/mnt/x", { timeout: "30" });
 * ```
 */
export async function umountCommand(
  mountPoint: string,
  opts: { timeout?: string },
): Promise<UmountResult> {
  const seconds = opts.timeout === undefined ? 60 : Number(opts.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new CliError(`--timeout must be a positive number of seconds`, ExitCode.USAGE);
  }
  const deadline = Date.now() + seconds * 1000;
  const target = resolveMountPoint(mountPoint);
  const state = readState(target);
  const mount: MountInfo | undefined = findMount(target);
  const daemonAlive = () => state !== undefined && processAlive(state.pid, state.startTime);

  if (mount) {
    if (!isFuseType(mount.fsType) || (!state && !mount.fsType.endsWith(".ext4ts"))) {
      throw new CliError(`${target} is not an ext4ts mount (${mount.fsType})`, ExitCode.USAGE);
    }
    const conn = connectionOf(mount);
    // A dead daemon cannot answer; a busy mount of a dead daemon is only detached.
    let err = await unmountWithin(target, 0, deadline, conn);
    if (err === "timeout") {
      throw new CliError(
        `${target}: the daemon did not answer the unmount within ${seconds} s; ` +
          `its FUSE connection was aborted`,
        ExitCode.TIMEOUT,
      );
    }
    if (err === Errno.EPERM && mount.fsType.startsWith("fuse.")) {
      // Not root: the setuid helper unmounts the user's own plain FUSE mounts.
      const msg = await unmountWithFusermount(target, !daemonAlive());
      err = msg === undefined ? 0 : /busy/i.test(msg) ? Errno.EBUSY : Errno.EPERM;
      if (err === Errno.EPERM) {
        throw new CliError(`${target}: fusermount3 -u failed: ${msg}`, ExitCode.IO);
      }
    }
    if (err === Errno.EBUSY && !daemonAlive()) {
      err = await unmountWithin(target, UmountFlag.DETACH, deadline, conn);
    }
    if (err === Errno.EBUSY) {
      throw new CliError(`${target}: target is busy (files are open on it)`, ExitCode.BUSY);
    }
    if (err !== 0 && err !== Errno.EINVAL && err !== "timeout") {
      throw new CliError(`${target}: umount failed: errno ${err}`, ExitCode.FAILURE);
    }
  } else if (!state) {
    throw new CliError(`${target}: not mounted`, ExitCode.FAILURE);
  }

  const device = state?.device ?? mount?.source;
  const gone = !state ||
    ((await waitForExit(state.pid, state.startTime, deadline)) ??
      (await waitFor(() => !daemonAlive(), deadline)));
  if (state && !gone) {
    throw new CliError(
      `${target}: unmounted, but the daemon (pid ${state.pid}) is still running after ${seconds} s`,
      ExitCode.TIMEOUT,
    );
  }
  if (state) removeState(target, state.pid);
  if (device?.startsWith("/dev/")) {
    const free = state?.image
      // An auto-attached loop device detaches itself once released.
      ? () => loopBackingFile(device) !== state.image
      : () => deviceIsFree(device);
    if (!(await waitFor(free, deadline))) {
      throw new CliError(
        `${target}: unmounted, but ${device} is still in use after ${seconds} s`,
        ExitCode.TIMEOUT,
      );
    }
  }
  return { mountPoint: target, device, pid: state?.pid };
}

/** umount2 on a worker thread; past the deadline, aborts the FUSE connection. */
async function unmountWithin(
  target: string,
  flags: number,
  deadline: number,
  conn: number | undefined,
): Promise<number | "timeout"> {
  const op = unmountAsync(target, flags);
  const late = delay(deadline - Date.now()).then(() => "timeout" as const);
  const r = await Promise.race([op, late]);
  if (r !== "timeout") return r;
  // The daemon does not answer DESTROY: abort so the waiting umount (and callers) return.
  if (conn !== undefined) abortConnection(conn);
  await Promise.race([op, delay(5000)]);
  return "timeout";
}

/**
 * Registers `ext4ts umount`.
 *
 * @example
 * ```ts ignore
 * registerUmount(program);
 * ```
 */
export function registerUmount(program: Command): void {
  const cmd = program
    .command("umount")
    .description(
      "unmount an ext4ts mount and wait until the daemon has exited and the device is free",
    )
    .argument("<mountpoint>", "the mount point")
    .option("--timeout <seconds>", "give up after this long (exit 10)", "60")
    .action((mountpoint, opts) =>
      runAction(async () => {
        await umountCommand(mountpoint, opts);
      })
    );
  documentCommand(cmd, {
    about:
      "Unmounts an ext4ts mount, then waits until the daemon has exited and the device is released (an image's loop device detached), so that exit 0 means the device is safe to remove. A mount whose daemon died is removed too. After --timeout seconds the FUSE connection is aborted.",
    examples: [
      "ext4ts umount /mnt/disk",
      "ext4ts umount --timeout 10 /mnt/usb",
    ],
    exitCodes: [
      [ExitCode.FAILURE, "not mounted, or umount failed"],
      [ExitCode.USAGE, "bad usage, or not an ext4ts mount"],
      ExitCode.IO,
      [ExitCode.BUSY, "busy: files are open on the mount"],
      [ExitCode.TIMEOUT, "the daemon did not finish within --timeout"],
    ],
  });
}
