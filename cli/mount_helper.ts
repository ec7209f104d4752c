/**
 * ext4ts as mount(8)'s helper: `mount -t fuse.ext4ts SOURCE DIR -o OPTIONS`, an /etc/fstab line
 * of type `fuse.ext4ts` (or `fuseblk.ext4ts`) and systemd mount units made from it.
 *
 * The chain, as measured with util-linux 2.38 and fuse3 3.14 (and read in libfuse's
 * util/mount.fuse.c): mount(8) finds no `/sbin/mount.fuse.ext4ts` and runs `/sbin/mount.fuse`
 * (mount.fuse3) with `SOURCE DIR -o OPTIONS -t fuse.ext4ts`, having attached a loop device
 * itself for `loop`/`offset=`/`sizelimit=`, turned `user`/`users`/`owner`/`group` into
 * noexec,nosuid,nodev, dropped `defaults`, `x-*` and its other own options, and added `rw` unless
 * `ro` was given. mount.fuse3 drops `user`, `nouser`, `users`, `auto`, `noauto`, `nofail`,
 * `_netdev` (and handles `setuid=`, `drop_privileges`), adds `dev` and `suid` unless `nodev`/
 * `nosuid` were given, and runs `/bin/sh -c "'ext4ts' 'SOURCE' 'DIR' -o 'OPTIONS'"`. mount(8) has
 * removed PATH from the environment, so the shell looks `ext4ts` up on its default path
 * ({@link HELPER_SEARCH_PATH}). For `fuseblk.ext4ts` mount(8) runs `/sbin/mount.fuseblk.ext4ts`
 * — no such helper ships with fuse3, so `scripts/install_mount_helper.sh` links it to
 * mount.fuse3, which takes the type from its own name and calls `ext4ts` the same way.
 *
 * So `ext4ts SOURCE DIR -o OPTIONS` (the first argument not a command name) is the helper call:
 * the same as `ext4ts mount SOURCE DIR -o OPTIONS` — with mount(8)'s own `rw` (added unless `ro`
 * was given) a read-write mount, as fstab's `defaults` asks.
 *
 * @module
 */

import { ext4Backend } from "../ffi/fuse/ext4_ops.ts";
import { mountCommand } from "./commands/mount.ts";
import { ExitCode } from "./exit_codes.ts";
import { CliError, runAction } from "./output.ts";

/**
 * The directories where `ext4ts` must be for mount.fuse3 to find it: /bin/sh's default PATH
 * (dash, bash), used because mount(8) runs helpers without PATH.
 */
export const HELPER_SEARCH_PATH: readonly string[] = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

/** A mount helper call's arguments. */
export interface MountHelperCall {
  source: string;
  mountPoint: string;
  /** The `-o` lists, joined with commas. */
  options: string;
}

const USAGE = "usage (mount.fuse3's convention): ext4ts SOURCE MOUNTPOINT -o OPTIONS";

/**
 * Recognises mount.fuse3's call `ext4ts SOURCE MOUNTPOINT -o OPTIONS [-o OPTIONS]…`: the first
 * argument neither an option nor one of `commands`, the third `-o`. Returns undefined for any other
 * command line (commander handles it); throws a usage error (exit 2) for a helper call with
 * arguments it does not take. A source named like a command must be written as a path
 * (`./probe`); mount(8) passes absolute paths.
 *
 * @example
 * ```ts
 * import { parseMountHelperCall } from "./mount_helper.ts";
 * const call = parseMountHelperCall(["/dev/sdc", "/data", "-o", "rw,dev,suid"], ["mount"]);
 * console.log(call?.options); // rw,dev,suid
 * console.log(parseMountHelperCall(["mount", "a.img", "/mnt"], ["mount"])); // undefined
 * ```
 */
export function parseMountHelperCall(
  args: readonly string[],
  commands: readonly string[],
): MountHelperCall | undefined {
  const [source, mountPoint, option] = args;
  // mount.fuse3 always passes -o (it adds dev and suid, or nodev and nosuid were given), so a
  // mistyped command name with two arguments stays commander's "unknown command".
  if (args.length < 3 || !option.startsWith("-o")) return undefined;
  if (source.startsWith("-") || commands.includes(source) || source === "help") return undefined;
  if (mountPoint.startsWith("-")) throw new CliError(USAGE, ExitCode.USAGE);
  const lists: string[] = [];
  for (let i = 2; i < args.length; i++) {
    const a = args[i];
    if (a === "-o" && i + 1 < args.length) lists.push(args[++i]);
    else if (a.startsWith("-o") && a.length > 2) lists.push(a.slice(2));
    else throw new CliError(`${USAGE}; unexpected argument '${a}'`, ExitCode.USAGE);
  }
  if (/^\/dev\/fd\/\d+$/.test(mountPoint)) {
    // mount.fuse3's drop_privileges mounts itself and passes the /dev/fuse descriptor.
    throw new CliError(
      "drop_privileges (a /dev/fd/N mount point) is not supported",
      ExitCode.USAGE,
    );
  }
  return { source, mountPoint, options: lists.join(",") };
}

/**
 * Runs a mount helper call (see {@link parseMountHelperCall}) and sets `Deno.exitCode`; resolves
 * to false, doing nothing, when `args` are not one.
 *
 * @example
 * ```ts ignore
 * if (!(await runMountHelper(Deno.args, ["mount", "umount"]))) await program.parseAsync();
 * ```
 */
export async function runMountHelper(
  args: readonly string[],
  commands: readonly string[],
): Promise<boolean> {
  let call: MountHelperCall | undefined;
  try {
    call = parseMountHelperCall(args, commands);
  } catch (e) {
    await runAction(() => Promise.reject(e));
    return true;
  }
  if (!call) return false;
  const { source, mountPoint, options } = call;
  await runAction(() =>
    mountCommand(source, mountPoint, { options, mountHelper: true }, ext4Backend)
  );
  return true;
}
