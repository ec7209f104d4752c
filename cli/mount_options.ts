/**
 * The mount options of `ext4ts mount -o …` and of the mount(8) helper (`ext4ts SOURCE MOUNTPOINT
 * -o …`), in one place: ext4's and fuse2fs's own options, mount(8)'s generic flags (passed to the
 * kernel as MS_* flags) and the options mount(8) only reads itself (accepted and ignored).
 *
 * @module
 */

import { MountFlag } from "../ffi/fuse/mount.ts";
import { defaultSettings, type MountSettings } from "../ffi/fuse/serve.ts";
import { parseByteCount } from "./device.ts";
import { ExitCode } from "./exit_codes.ts";
import { CliError } from "./output.ts";
import { libc } from "../ffi/libc.ts";

const ATIME = MountFlag.NOATIME | MountFlag.RELATIME | MountFlag.STRICTATIME;

/**
 * mount(8)'s generic options that become mount(2) flags: `[flags set, flags cleared]`. Later
 * options win over earlier ones, as in mount(8); one atime mode at a time.
 */
const KERNEL_FLAGS: Record<string, [number, number]> = {
  nosuid: [MountFlag.NOSUID, 0],
  suid: [0, MountFlag.NOSUID],
  nodev: [MountFlag.NODEV, 0],
  dev: [0, MountFlag.NODEV],
  noexec: [MountFlag.NOEXEC, 0],
  exec: [0, MountFlag.NOEXEC],
  sync: [MountFlag.SYNCHRONOUS, 0],
  async: [0, MountFlag.SYNCHRONOUS],
  dirsync: [MountFlag.DIRSYNC, 0],
  noatime: [MountFlag.NOATIME, ATIME],
  relatime: [MountFlag.RELATIME, ATIME],
  strictatime: [MountFlag.STRICTATIME, ATIME],
  atime: [0, MountFlag.NOATIME],
  norelatime: [0, MountFlag.RELATIME],
  nostrictatime: [0, MountFlag.STRICTATIME],
  nodiratime: [MountFlag.NODIRATIME, 0],
  diratime: [0, MountFlag.NODIRATIME],
};

/**
 * Options mount(8) reads for itself and that mean nothing to the filesystem. mount(8) strips them
 * before running a helper (and mount.fuse3 strips user, nouser, users, auto, noauto, nofail,
 * _netdev), but they reach ext4ts when it is called directly (`ext4ts mount -o`, mount.fuse3 with
 * an older mount(8), an fstab line copied to a script):
 * - `defaults`: "use the default options"; it sets nothing by itself.
 * - `auto`/`noauto`: whether `mount -a` mounts the line.
 * - `nofail`: `mount -a` and systemd carry on when the source is missing.
 * - `_netdev`: systemd/init order the mount after the network.
 * - `user`, `nouser`, `users`, `owner`, `group`: who may mount and unmount an fstab line; mount(8)
 *   itself adds noexec,nosuid,nodev for them before calling the helper.
 * - `loop`: mount(8) attaches the loop device itself (with `offset=`/`sizelimit=`) before calling
 *   the helper; ext4ts attaches one for an image on its own anyway.
 * - `x-*` (`x-systemd.*`, `x-gvfs-*`, …) and `comment=`: for systemd, desktops and other readers
 *   of fstab.
 */
const IGNORED = new Set([
  "defaults",
  "auto",
  "noauto",
  "nofail",
  "_netdev",
  "user",
  "nouser",
  "users",
  "owner",
  "group",
  "loop",
]);

function ignored(key: string): boolean {
  return IGNORED.has(key) || key.startsWith("x-") || key === "comment";
}

/**
 * Parses `-o` options (comma-separated; later ones win). ext4/fuse2fs names (`ro`, `rw`,
 * `norecovery`/`noload`, `errors=`, `uid=`, …), mount(8)'s generic flags as MS_* flags in
 * `mountFlags`, `offset=BYTES` (the `--offset` syntax); mount(8)'s own options are accepted and
 * ignored. Anything else is a usage error (exit 2) naming the option.
 *
 * @example
 * ```ts
 * import { parseMountOptions } from "./mount_options.ts";
 * const s = parseMountOptions("ro,noload,uid=1000,noexec,offset=1M,nofail,x-systemd.automount");
 * console.log(s.noRecovery, s.offset, (s.mountFlags & 8) !== 0); // true 1048576 true
 * ```
 */
export function parseMountOptions(list: string | undefined): MountSettings {
  const s = defaultSettings();
  for (const raw of (list ?? "").split(",")) {
    const opt = raw.trim();
    if (!opt) continue;
    const [key, value] = opt.includes("=")
      ? [opt.slice(0, opt.indexOf("=")), opt.slice(opt.indexOf("=") + 1)]
      : [opt, undefined];
    const int = () => {
      if (value === undefined || !/^\d+$/.test(value) || Number(value) > 0xffffffff) {
        throw new CliError(
          `option ${key} needs a numeric id, got '${value ?? ""}'`,
          ExitCode.USAGE,
        );
      }
      return Number(value);
    };
    const flags = value === undefined ? KERNEL_FLAGS[key] : undefined;
    if (flags) {
      s.mountFlags = (s.mountFlags & ~flags[1]) | flags[0];
      continue;
    }
    if (ignored(key)) continue;
    switch (key) {
      case "ro":
        s.readOnly = true;
        break;
      case "rw":
        s.readOnly = false;
        break;
      case "norecovery":
      case "noload":
        s.noRecovery = true;
        break;
      case "allow_other":
        s.allowOther = true;
        break;
      case "default_permissions":
        s.defaultPermissions = true;
        break;
      case "noblkdev":
        s.noBlkdev = true;
        break;
      case "fakeroot":
        s.uid = libc().getuid();
        s.gid = libc().getgid();
        break;
      case "uid":
        s.uid = int();
        break;
      case "gid":
        s.gid = int();
        break;
      case "offset":
        s.offset = parseByteCount(value ?? "", "offset");
        break;
      case "cache_size": {
        // fuse2fs's option and bounds: bytes (K, M, G suffixes), up to 2 GiB.
        const bytes = parseByteCount(value ?? "", "cache_size");
        if (bytes < 1 || bytes > 0x7fffffff) {
          throw new CliError(
            `cache_size must be between 1 byte and 2 GiB, got '${value}'`,
            ExitCode.USAGE,
          );
        }
        s.cacheSize = bytes;
        break;
      }
      case "commit": {
        // The kernel's commit=: seconds between commits of the running transaction; 0 (or none)
        // is its default, 5.
        if (value === undefined || !/^\d+$/.test(value) || Number(value) > 86400) {
          throw new CliError(
            `commit= needs seconds (0 to 86400), got '${value ?? ""}'`,
            ExitCode.USAGE,
          );
        }
        s.commit = Number(value) || 5;
        break;
      }
      case "errors":
        if (value !== "continue" && value !== "remount-ro" && value !== "panic") {
          throw new CliError(
            `errors= must be continue, remount-ro or panic, got '${value ?? ""}'`,
            ExitCode.USAGE,
          );
        }
        s.errors = value;
        break;
      default:
        throw new CliError(`unknown mount option '${opt}'`, ExitCode.USAGE);
    }
  }
  // Other users may only see what the file permissions allow them to.
  if (s.allowOther) s.defaultPermissions = true;
  return s;
}
