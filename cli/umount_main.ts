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
import { runWholeCli } from "./bundle.ts";

/** Runs `args` and resolves to the exit code. */
async function main(args: string[]): Promise<number> {
  const parsed = parseUmountArgs(args);
  if (!parsed) return await runWholeCli(args);
  await runAction(() => umountCommand(parsed.mountPoint, parsed).then(() => {}));
  return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
}

if (import.meta.main) {
  // No top-level await: the module's evaluation ends at once, so Deno stores the bundle's code
  // cache while the command runs, and the exit waits for no turn of the event loop after it
  // (cli/bundle.ts exitAfterEvaluation: a timer, ~2–3 ms of every unmount).
  void main(Deno.args).then((code) => Deno.exit(code));
}
