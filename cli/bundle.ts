/**
 * How the installed `ext4ts` runs: one JavaScript file bundled from cli/main.ts with every npm
 * package inside (scripts/install.sh builds it), run by `deno run` with {@link BUNDLE_RUN_FLAGS}.
 * The launcher scripts/install.ts writes and the mount daemon the bundle starts use these flags,
 * so both run the same way.
 *
 * @module
 */

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
// compile-safe: compared with Deno.mainModule, never read
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
