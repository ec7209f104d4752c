/**
 * Whether a device (or an image file, through the loop devices backed by it) is mounted or
 * held open exclusively right now: /proc/self/mountinfo, /sys/block/loop*, and an O_EXCL
 * open probe on block devices.
 *
 * @module
 */

import { cstr, errno, libc, O } from "./libc.ts";

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

function devId(rdev: number): string {
  // Linux dev_t: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return `${major}:${minor}`;
}

/** Loop devices whose backing file is `realPath`. */
export function loopDevicesBacking(realPath: string): string[] {
  const out: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/sys/block")];
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.name.startsWith("loop")) continue;
    try {
      const backing = Deno.readTextFileSync(`/sys/block/${e.name}/loop/backing_file`).trim();
      if (backing === realPath) out.push(`/dev/${e.name}`);
    } catch { /* not attached */ }
  }
  return out;
}

function exclusivelyHeld(path: string): boolean | null {
  const fd = libc().open(cstr(path), O.RDONLY | O.EXCL | O.CLOEXEC, 0);
  if (fd >= 0) {
    libc().close(fd);
    return false;
  }
  return errno() === 16 ? true : null; // EBUSY
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
