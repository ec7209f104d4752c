/**
 * The mounts the kernel reports (/proc/self/mountinfo), a FUSE mount's connection in the fuse
 * control filesystem (/sys/fs/fuse/connections/N: `abort`), and a mount's readahead.
 *
 * @module
 */

import { cstr, libc } from "../libc.ts";

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
 * import { parseMountInfo } from "./mountinfo.ts";
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
 * import { connectionOf } from "./mountinfo.ts";
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
