/**
 * The installed `ext4ts umount`: scripts/install.ts bundles this entry apart
 * (`ext4ts-umount.js`, ~20 KB) and the launcher runs it for `umount`. It holds the umount
 * command and nothing else — no commander, no other command, no filesystem library — so it
 * starts about as fast as an empty Deno program, where loading the whole CLI's bundle took
 * ~35 ms more (measured: `ext4ts umount` of a read-only mount 74 → 39 ms, median of 8). Any
 * other spelling than `umount MOUNTPOINT [--timeout S]` (help, usage errors) runs the whole CLI,
 * which answers as always.
 *
 * @module
 */

import { parseUmountArgs, umountCommand } from "./commands/umount.ts";
import { runAction } from "./output.ts";
import { exitAfterEvaluation, runWholeCli } from "./bundle.ts";

if (import.meta.main) {
  const parsed = parseUmountArgs(Deno.args);
  let code: number;
  if (parsed) {
    await runAction(() => umountCommand(parsed.mountPoint, parsed).then(() => {}));
    code = typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  } else {
    code = await runWholeCli(Deno.args);
  }
  exitAfterEvaluation(code);
}
