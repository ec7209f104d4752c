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
import { BUNDLE_RUN_FLAGS, runningAsBundle } from "./bundle.ts";
import { delay } from "./delay.ts";

/** How to run the whole CLI: the bundle beside this one, or cli/main.ts from source. */
function wholeCli(): string[] {
  if (runningAsBundle()) {
    const bundle = decodeURIComponent(new URL("ext4ts.js", Deno.mainModule).pathname);
    return ["run", ...BUNDLE_RUN_FLAGS, bundle];
  }
  // compile-safe: from source only (the installed form is the bundle above)
  const main = decodeURIComponent(new URL("./main.ts", import.meta.url).pathname);
  return ["run", "--allow-all", main];
}

if (import.meta.main) {
  const parsed = parseUmountArgs(Deno.args);
  let code: number;
  if (parsed) {
    await runAction(() => umountCommand(parsed.mountPoint, parsed).then(() => {}));
    code = typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  } else {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...wholeCli(), ...Deno.args],
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    code = (await child.status).code;
  }
  // After this module's evaluation has ended, so that Deno stores its code cache (cli/main.ts).
  void delay(0).then(() => Deno.exit(code));
}
