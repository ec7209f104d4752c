/**
 * The installed `ext4ts mount SOURCE MOUNTPOINT [-o OPTIONS]`: scripts/install.ts bundles this
 * entry apart (`ext4ts-mount.js`, ~90 KB) and the launcher runs it for that form only. It
 * checks, starts the daemon from the whole CLI's bundle and waits for `ready`; it holds no
 * commander, no other command and no filesystem library, so the daemon starts ~30 ms sooner
 * (measured: this bundle loads in ~24 ms, the whole CLI's in ~53). Any other spelling runs the
 * whole CLI, which answers as always (`-f` never comes here: it serves in this very process).
 *
 * @module
 */

import { mountCommand, parseMountArgs } from "./commands/mount.ts";
import type { MountBackend } from "../ffi/fuse/serve.ts";
import { runAction } from "./output.ts";
import { exitAfterEvaluation, runWholeCli, wholeCli } from "./bundle.ts";

/** The mount command in the background serves nothing itself: the daemon opens the filesystem. */
const servesNothing: MountBackend = {
  open: () => Promise.reject(new Error("the mount command serves nothing itself")),
};

if (import.meta.main) {
  const parsed = parseMountArgs(Deno.args);
  const whole = wholeCli();
  let code: number;
  if (parsed) {
    const { source, mountPoint, options } = parsed;
    await runAction(() =>
      mountCommand(source, mountPoint, { options, daemon: whole }, servesNothing)
    );
    code = typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  } else {
    code = await runWholeCli(Deno.args);
  }
  exitAfterEvaluation(code);
}
