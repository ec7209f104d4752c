/**
 * How the installed `ext4ts` runs: one JavaScript file bundled from cli/main.ts with every npm
 * package inside (scripts/install.sh builds it), run by `deno run` with {@link BUNDLE_RUN_FLAGS}.
 * The launcher scripts/install.ts writes and the mount daemon the bundle starts use these flags,
 * so both run the same way.
 *
 * @module
 */

import { delay } from "./delay.ts";

/**
 * The `deno run` flags of the bundle. No config file, lock file, npm or remote resolution (the
 * bundle imports only `node:` built-ins, and the caller's directory may hold any deno.json);
 * `--cached-only`, so nothing is ever fetched; `--quiet`, so nothing but ext4ts' own words reach
 * stdout and stderr; every permission (libc through FFI, devices, /dev/fuse, mount helpers).
 *
 * @example
 * ```ts
 * import { BUNDLE_RUN_FLAGS } from "./bundle.ts";
 * console.log(["deno", "run", ...BUNDLE_RUN_FLAGS, "ext4ts.js"].join(" "));
 * ```
 */
export const BUNDLE_RUN_FLAGS: readonly string[] = [
  "--quiet",
  "--no-config",
  "--no-lock",
  "--no-npm",
  "--no-remote",
  "--cached-only",
  "--allow-all",
];

// In a bundle every module shares the bundle's URL, which is then the main module's; from
// source this module is never the main module, and in a `deno compile`d binary it keeps its
// own name.
// compile-safe: from source only (compared with Deno.mainModule; names cli/main.ts in wholeCli)
const THIS_MODULE = import.meta.url;

/**
 * Whether this program runs as a bundle (the installed `ext4ts`), not from source or compiled.
 *
 * @example
 * ```ts
 * import { runningAsBundle } from "./bundle.ts";
 * console.log(runningAsBundle()); // false when run from source
 * ```
 */
export function runningAsBundle(): boolean {
  return THIS_MODULE === Deno.mainModule;
}

/**
 * The command line of the whole CLI, for the installed command's small bundle of `ext4ts umount`
 * (cli/umount_main.ts): the bundle `ext4ts.js` beside the running one, or cli/main.ts from
 * source.
 *
 * @example
 * ```ts
 * import { wholeCli } from "./bundle.ts";
 * const { cmd, args } = wholeCli(); // deno + ["run", "--allow-all", "…/cli/main.ts"] from source
 * console.log(cmd === Deno.execPath(), args[0]);
 * ```
 */
export function wholeCli(): { cmd: string; args: string[] } {
  const path = (url: URL) => decodeURIComponent(url.pathname);
  if (runningAsBundle()) {
    return {
      cmd: Deno.execPath(),
      args: ["run", ...BUNDLE_RUN_FLAGS, path(new URL("ext4ts.js", Deno.mainModule))],
    };
  }
  // compile-safe: from source only (installed, the bundle above)
  return {
    cmd: Deno.execPath(),
    args: ["run", "--allow-all", path(new URL("./main.ts", THIS_MODULE))],
  };
}

/**
 * Runs the whole CLI ({@link wholeCli}) with `args`, on this process's stdin, stdout and stderr;
 * resolves to its exit code. The small bundles hand it what they do not handle themselves.
 *
 * @example
 * ```ts ignore
 * Deno.exitCode = await runWholeCli(["umount", "--help"]);
 * ```
 */
export async function runWholeCli(args: string[]): Promise<number> {
  const whole = wholeCli();
  const child = new Deno.Command(whole.cmd, {
    args: [...whole.args, ...args],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).code;
}

/**
 * Exits with `code` once the main module's evaluation has ended (call it at its top level):
 * Deno stores V8's code cache of a module when its evaluation completes, and a bundle is one
 * module — an exit inside it left every run compiling the whole program again (~10 ms of CPU a
 * start).
 *
 * @example
 * ```ts ignore
 * exitAfterEvaluation(await main(Deno.args));
 * ```
 */
export function exitAfterEvaluation(code: number): void {
  void delay(0).then(() => Deno.exit(code));
}
