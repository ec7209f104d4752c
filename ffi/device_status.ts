/**
 * Whether a device (or an image file, through the loop devices backed by it) is mounted or
 * held open exclusively right now: /proc/self/mountinfo, /sys/block/loop*, and an O_EXCL
 * open probe on block devices. {@link refuseIfInUse} is the check every opener for writing
 * makes (ffi/file_device.ts).
 *
 * @module
 */

import { Errno, Ext4Error } from "../lib/errors.ts";
import { cstr, errno, Ioctl, libc, O } from "./libc.ts";

/** A mount of the device. */
export interface MountEntry {
  /** Where it is mounted (octal escapes from mountinfo decoded). */
  mountPoint: string;
  /** The filesystem type, e.g. `ext4` or `fuseblk.ext4ts`. */
  fsType: string;
  /** The mount source as mountinfo shows it, e.g. `/dev/loop0`. */
  source: string;
  /** The per-mount options, comma-separated, e.g. `rw,relatime`. */
  options: string;
}

/** What probe reports about current use. */
export interface DeviceUse {
  /** Every current mount of the device or of a loop device backing the image; empty when none. */
  mounts: MountEntry[];
  /** Block devices that back the image (loop devices), when the path is an image file. */
  loopDevices: string[];
  /** True when an O_EXCL open failed with EBUSY; null when not a block device. */
  exclusivelyHeld: boolean | null;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo into entries keyed by "major:minor". */
export function readMountinfo(text?: string): { devId: string; entry: MountEntry }[] {
  let data = text;
  if (data === undefined) {
    try {
      data = Deno.readTextFileSync("/proc/self/mountinfo");
    } catch {
      return [];
    }
  }
  const out: { devId: string; entry: MountEntry }[] = [];
  for (const line of data.split("\n")) {
    if (!line) continue;
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const f = left.split(" ");
    const r = right.split(" ");
    out.push({
      devId: f[2],
      entry: {
        mountPoint: unescapeMountinfo(f[4]),
        fsType: r[0],
        source: unescapeMountinfo(r[1] ?? ""),
        options: f[5],
      },
    });
  }
  return out;
}

/**
 * Major and minor number of a Linux dev_t (major in bits 8-19 and 32-43, minor in bits 0-7
 * and 20-31).
 *
 * @example
 * ```ts
 * import { majorMinor } from "./device_status.ts";
 * console.log(majorMinor(0x0703)); // [7, 3]
 * ```
 */
export function majorMinor(dev: number): [number, number] {
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  return [major, minor];
}

function devId(rdev: number): string {
  return majorMinor(rdev).join(":");
}

/**
 * `lo_device` and `lo_inode` (the backing file's device and inode) of the loop device open as
 * `fd` (LOOP_GET_STATUS64), or null when it is not attached.
 *
 * @example
 * ```ts ignore
 * const id = loopIdentity(fd); // { dev: 65024, ino: 2146324 }
 * ```
 */
export function loopIdentity(fd: number): { dev: number; ino: number } | null {
  const info = new Uint8Array(232); // struct loop_info64
  if (libc().ioctl(fd, Ioctl.LOOP_GET_STATUS64, info) < 0) return null;
  const v = new DataView(info.buffer);
  return { dev: Number(v.getBigUint64(0, true)), ino: Number(v.getBigUint64(8, true)) };
}

/** {@link loopIdentity} of the loop device at `loopPath`, or null. */
function loopBackingIdentity(loopPath: string): { dev: number; ino: number } | null {
  const c = libc();
  const fd = c.open(cstr(loopPath), O.RDONLY | O.CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    return loopIdentity(fd);
  } finally {
    c.close(fd);
  }
}

/**
 * Loop devices whose backing file is `realPath`: the same inode (LOOP_GET_STATUS64), so a
 * path through a bind mount or another hard link is found too; by the sysfs backing path
 * when the device cannot be asked.
 */
export function loopDevicesBacking(realPath: string): string[] {
  const out: string[] = [];
  let entries: Deno.DirEntry[];
  let file: Deno.FileInfo | undefined;
  try {
    entries = [...Deno.readDirSync("/sys/block")];
    file = Deno.statSync(realPath);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.name.startsWith("loop")) continue;
    let backing: string;
    try {
      backing = Deno.readTextFileSync(`/sys/block/${e.name}/loop/backing_file`).trim();
    } catch {
      continue; // not attached
    }
    const id = loopBackingIdentity(`/dev/${e.name}`);
    const same = id ? id.dev === file.dev && id.ino === file.ino : backing === realPath;
    if (same) out.push(`/dev/${e.name}`);
  }
  return out;
}

/** {@link inUseReason}'s whole answer when only an exclusive opener explains the use. */
export const HELD_EXCLUSIVELY = "held open exclusively";

/**
 * How long an exclusive open or a fuseblk mount waits out an EBUSY that no mount or holder
 * explains — another program's brief O_EXCL probe (e2fsck's mount check, our own in-use
 * checks, a racing loop set-up): this many tries, this many ms apart (200 ms in all).
 */
export const BRIEF_HOLDER_RETRY = { tries: 10, ms: 20 } as const;

function exclusivelyHeld(path: string): boolean | null {
  const fd = libc().open(cstr(path), O.RDONLY | O.EXCL | O.CLOEXEC, 0);
  if (fd >= 0) {
    libc().close(fd);
    return false;
  }
  return errno() === Errno.EBUSY ? true : null;
}

/**
 * Reports mounts and exclusive holders of a device or image file.
 *
 * @example
 * ```ts ignore
 * const use = deviceUse("/dev/sdc");
 * if (use.mounts.length) console.log(`mounted on ${use.mounts[0].mountPoint}`);
 * ```
 */
export function deviceUse(path: string): DeviceUse {
  const mountinfo = readMountinfo();
  let real = path;
  try {
    real = Deno.realPathSync(path);
  } catch { /* keep the given path */ }
  const info = Deno.statSync(real);
  const blockPaths: string[] = [];
  const ids = new Set<string>();
  let loopDevices: string[] = [];
  if (info.isBlockDevice && info.rdev !== null) {
    ids.add(devId(info.rdev));
    blockPaths.push(real);
  } else {
    loopDevices = loopDevicesBacking(real);
    for (const loop of loopDevices) {
      const st = Deno.statSync(loop);
      if (st.rdev !== null) ids.add(devId(st.rdev));
      blockPaths.push(loop);
    }
  }
  const mounts = mountinfo
    .filter((m) => ids.has(m.devId) || m.entry.source === real)
    .map((m) => m.entry);
  let held: boolean | null = null;
  for (const p of blockPaths) {
    const h = exclusivelyHeld(p);
    if (h !== null) held = (held ?? false) || h;
  }
  return { mounts, loopDevices, exclusivelyHeld: held };
}

function sysBlock(name: string, file: string): string | undefined {
  try {
    return Deno.readTextFileSync(`/sys/class/block/${name}/${file}`).trim();
  } catch {
    return undefined;
  }
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/**
 * What uses the block device `name` (e.g. `loop3`) or a partition on it: its mounts, its
 * holders (device-mapper, md, …), and, when neither explains it, an exclusive opener.
 */
function blockDeviceUses(name: string, mountinfo: { devId: string; entry: MountEntry }[]) {
  const out: string[] = [];
  const partitions = listDir(`/sys/class/block/${name}`)
    .filter((p) => p.startsWith(name) && sysBlock(`${name}/${p}`, "partition") !== undefined);
  for (const n of [name, ...partitions]) {
    const id = sysBlock(n === name ? n : `${name}/${n}`, "dev");
    const node = `/dev/${n}`;
    const where = n === name ? "" : `${node} `;
    for (const m of mountinfo) {
      if (m.devId === id || m.entry.source === node) {
        out.push(`${where}mounted on ${m.entry.mountPoint}`);
      }
    }
    const holders = listDir(`/sys/class/block/${n === name ? n : `${name}/${n}`}/holders`);
    if (holders.length) out.push(`${where}held by ${holders.join(", ")}`);
  }
  if (out.length === 0 && exclusivelyHeld(`/dev/${name}`) === true) {
    out.push(HELD_EXCLUSIVELY);
  }
  return out;
}

/**
 * Why `path` must not be written now, or undefined when nothing uses it: for a block device,
 * its mounts, holders or an exclusive opener; for an image file, the same for every loop
 * device it backs (`backing /dev/loop3, mounted on /mnt/x`) and any mount naming the file
 * itself (a FUSE mount of the image). A loop device that is attached but neither mounted nor
 * held does not count, as for e2fsprogs: nothing is using the filesystem, and the loop
 * device's own page cache is dropped when its last opener closes it.
 *
 * @example
 * ```ts ignore
 * inUseReason("disk.img"); // "backing /dev/loop3, mounted on /mnt/x"
 * ```
 */
export function inUseReason(path: string): string | undefined {
  let real = path;
  try {
    real = Deno.realPathSync(path);
  } catch { /* the open reports it */ }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(real);
  } catch {
    return undefined;
  }
  const mountinfo = readMountinfo();
  const reasons: string[] = [];
  if (info.isBlockDevice) {
    const name = real.split("/").pop()!;
    reasons.push(...blockDeviceUses(name, mountinfo));
  } else if (info.isFile) {
    for (const loop of loopDevicesBacking(real)) {
      const uses = blockDeviceUses(loop.slice("/dev/".length), mountinfo);
      if (uses.length) reasons.push(`backing ${loop}, ${uses.join(", ")}`);
    }
    for (const m of mountinfo) {
      if (m.entry.source === real) reasons.push(`mounted on ${m.entry.mountPoint}`);
    }
  }
  return reasons.length ? reasons.join("; ") : undefined;
}

/**
 * Throws `Ext4Error("BUSY")` naming the use when `path` is in use (see {@link inUseReason}):
 * the check every open for writing makes before anything is written.
 *
 * @example
 * ```ts ignore
 * refuseIfInUse("disk.img"); // Ext4Error BUSY: disk.img is in use: backing /dev/loop3, mounted on /mnt/x
 * ```
 */
export function refuseIfInUse(path: string): void {
  const reason = inUseReason(path);
  if (reason) throw new Ext4Error("BUSY", `${path} is in use: ${reason}`);
}
