/**
 * The entry point of the `ext4ts mount` daemon: the same `mountCommand` as `ext4ts mount -f`,
 * without commander and without the other commands, so the daemon starts faster (mount time is
 * mostly process start-up). From source `ext4ts mount` starts it with normalised arguments
 * (`daemonArgs` in cli/commands/mount.ts); installed, it is the bundle `ext4ts-mount.js`, which
 * the launcher (scripts/install.ts) starts itself in the background for
 * `ext4ts mount [-o OPTIONS] SOURCE MOUNTPOINT`, reading its report (`NOTIFY_ENV`) in `sh`: one
 * Deno start-up per mount. The compiled binary runs itself with `-f` instead.
 *
 * Usage: deno run -A cli/mount_daemon.ts mount [-o OPTIONS] [--log FILE] [--mount-helper] -f --
 *   SOURCE MOUNTPOINT
 *
 * @module
 */

import { ext4Backend } from "../ffi/fuse/ext4_ops.ts";
import { runMountDaemon } from "./commands/mount.ts";

if (import.meta.main) {
  // No top-level await: the module's evaluation ends at once, not when the daemon does, so Deno
  // stores the bundle's code cache on the first run (cli/bundle.ts exitAfterEvaluation).
  void runMountDaemon(Deno.args, ext4Backend).then((code) => Deno.exit(code));
}
