/**
 * The entry point of the `ext4ts mount` daemon when ext4ts runs from source: the same
 * `mountCommand` as `ext4ts mount -f`, without commander and without the other commands, so
 * the daemon starts faster (mount time is mostly process start-up). `ext4ts mount` starts it
 * with normalised arguments (`daemonArgs` in cli/commands/mount.ts); the compiled binary runs
 * itself with `-f` instead.
 *
 * Usage: deno run -A cli/mount_daemon.ts mount [-o OPTIONS] [--log FILE] [--mount-helper] -f --
 *   SOURCE MOUNTPOINT
 *
 * @module
 */

import { ext4Backend } from "../ffi/fuse/ext4_ops.ts";
import { mountCommand, parseDaemonArgs } from "./commands/mount.ts";
import { runAction } from "./output.ts";

if (import.meta.main) {
  await runAction(() => {
    const { source, mountPoint, opts } = parseDaemonArgs(Deno.args);
    return mountCommand(source, mountPoint, opts, ext4Backend);
  });
  Deno.exit(typeof Deno.exitCode === "number" ? Deno.exitCode : 0);
}
