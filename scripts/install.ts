/**
 * Builds and installs the `ext4ts` command (scripts/install.sh runs this with the pinned Deno).
 *
 * - `build`: bundles cli/main.ts with every npm package inside into `dist/ext4ts.js`, which
 *   imports nothing (checked; the `node:` modules commander needs are replaced by
 *   {@link NODE_SHIMS}), and generates the man page and the bash and zsh completions beside it
 *   (cli/man.ts and cli/completion.ts, as `ext4ts --man` and `ext4ts completion` print them).
 * - `install` (the default): builds, then installs into `$PREFIX` (default `/usr/local`):
 *   `bin/ext4ts` (a launcher: `deno run` with cli/bundle.ts's flags, nothing fetched at run
 *   time), `lib/ext4ts/ext4ts.js` and `lib/ext4ts/deno` (a copy of the Deno running this, so
 *   every user can run it; `DENO=/path/to/deno` uses that one instead), the man page and the
 *   completions under `share/`.
 * - `uninstall`: removes what `install` installed into `$PREFIX`.
 *
 * Usage: `[PREFIX=DIR] [DENO=PATH] deno run -A scripts/install.ts [build|install|uninstall]`
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BUNDLE_RUN_FLAGS } from "../cli/bundle.ts";
import { DAEMON_V8_FLAGS, NOTIFY_ENV } from "../cli/commands/mount.ts";
import { buildProgram } from "../cli/main.ts";
import { VERSION } from "../lib/version.ts";
import { bashCompletion, zshCompletion } from "../cli/completion.ts";
import { manPage } from "../cli/man.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Where `build` puts the bundle, the man page and the completions. */
export const DIST = `${ROOT}dist`;
/** The first line after the shebang of every launcher this script writes. */
const LAUNCHER_MARK = "# ext4ts launcher, written by ext4ts' scripts/install.sh";

/** What `install` puts under a prefix. */
export interface Layout {
  launcher: string;
  libDir: string;
  bundle: string;
  /** The bundle of `ext4ts umount` alone (cli/umount_main.ts), which the launcher runs for it. */
  umountBundle: string;
  /** The mount daemon's bundle (cli/mount_daemon.ts): the launcher starts it for `ext4ts mount`. */
  mountBundle: string;
  deno: string;
  man: string;
  bash: string;
  zsh: string;
}

/**
 * The installed files under `prefix`.
 *
 * @example
 * ```ts
 * import { layout } from "./install.ts";
 * console.log(layout("/usr/local").launcher); // /usr/local/bin/ext4ts
 * ```
 */
export function layout(prefix: string): Layout {
  const p = prefix.replace(/\/+$/, "");
  return {
    launcher: `${p}/bin/ext4ts`,
    libDir: `${p}/lib/ext4ts`,
    bundle: `${p}/lib/ext4ts/ext4ts.js`,
    umountBundle: `${p}/lib/ext4ts/ext4ts-umount.js`,
    mountBundle: `${p}/lib/ext4ts/ext4ts-mount.js`,
    deno: `${p}/lib/ext4ts/deno`,
    man: `${p}/share/man/man1/ext4ts.1`,
    bash: `${p}/share/bash-completion/completions/ext4ts`,
    zsh: `${p}/share/zsh/site-functions/_ext4ts`,
  };
}

class InstallError extends Error {}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd: ROOT, stdin: "null" }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    const err = dec.decode(out.stderr).trim() || dec.decode(out.stdout).trim();
    throw new InstallError(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${err}`);
  }
  return dec.decode(out.stdout);
}

/**
 * The module specifiers a bundle imports (static `import … from`, `export … from`, bare
 * `import "…"` and dynamic `import("…")`).
 *
 * @example
 * ```ts
 * import { bundleImports } from "./install.ts";
 * console.log(bundleImports('import fs from "node:fs";\nconst x = 1;')); // ["node:fs"]
 * ```
 */
export function bundleImports(code: string): string[] {
  const re =
    /^\s*(?:import|export)\b[^"'`;]*?(?:from\s*)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']/gm;
  return [...code.matchAll(re)].map((m) => m[1] ?? m[2]);
}

/** Writes `data` to `path` through a temporary file and a rename (a running file is replaced). */
async function writeAtomic(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data, { mode });
    else await Deno.writeFile(tmp, data, { mode });
    await Deno.chmod(tmp, mode); // the umask does not narrow what other users may run
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * The `node:` modules commander imports, replaced in the bundle by the small modules of
 * scripts/node_shims/ (what commander uses of them, over Deno's APIs): importing any `node:`
 * module makes Deno load its Node compatibility layer, measured at ~40 ms of a ~100 ms start.
 * From source the real modules are used.
 */
export const NODE_SHIMS = ["child_process", "events", "fs", "path", "process", "util"];

/**
 * The bundles of one command each (the launcher runs them for their simple forms): loading the
 * whole CLI's bundle is most of a short command's start-up. The mount daemon's holds the
 * filesystem library but no commander and no other command.
 */
const SMALL_BUNDLES = [
  ["ext4ts-umount.js", "cli/umount_main.ts"],
  ["ext4ts-mount.js", "cli/mount_daemon.ts"],
] as const;

/** Bundles the CLI into dist/ext4ts.js and generates the man page and the completions. */
export async function build(): Promise<void> {
  await Deno.mkdir(DIST, { recursive: true });
  const bundle = `${DIST}/ext4ts.js`;
  const stage = `${DIST}/ext4ts.node.js`;
  const importMap = `${DIST}/node_shims.json`;
  const bundleArgs = ["bundle", "--quiet", "--platform=deno"];
  try {
    // The program with every npm package inside; it still imports node: built-ins.
    await run(Deno.execPath(), [
      ...bundleArgs,
      `--config=${ROOT}deno.json`,
      "--frozen", // deno.lock's versions, or fail
      `--output=${stage}`,
      `${ROOT}cli/main.ts`,
    ]);
    // Bundled again with node: mapped to the shims (an import map does not apply to imports
    // inside npm packages, so only once commander is a local file).
    const imports = Object.fromEntries(
      NODE_SHIMS.map((n) => [`node:${n}`, new URL(`node_shims/${n}.ts`, import.meta.url).href]),
    );
    await Deno.writeTextFile(importMap, JSON.stringify({ imports }));
    await run(Deno.execPath(), [
      ...bundleArgs,
      "--no-config",
      "--no-lock",
      `--import-map=${importMap}`,
      `--output=${bundle}`,
      stage,
    ]);
  } finally {
    for (const f of [stage, importMap]) await Deno.remove(f).catch(() => {});
  }
  // `ext4ts umount` and `ext4ts mount` alone: no commander, so no node: module to replace.
  for (const [name, entry] of SMALL_BUNDLES) {
    await run(Deno.execPath(), [
      ...bundleArgs,
      `--config=${ROOT}deno.json`,
      "--frozen",
      `--output=${DIST}/${name}`,
      `${ROOT}${entry}`,
    ]);
  }
  for (const file of [bundle, ...SMALL_BUNDLES.map(([name]) => `${DIST}/${name}`)]) {
    const imported = bundleImports(await Deno.readTextFile(file));
    if (imported.length > 0) {
      throw new InstallError(`${file} still imports ${imported.join(", ")}`);
    }
  }
  // The CLI's own generators (what `ext4ts --man` and `ext4ts completion` print).
  await writeAtomic(`${DIST}/ext4ts.1`, manPage(buildProgram()), 0o644);
  await writeAtomic(`${DIST}/ext4ts.bash`, bashCompletion(buildProgram()), 0o644);
  await writeAtomic(`${DIST}/_ext4ts`, zshCompletion(buildProgram()), 0o644);
}

/**
 * `s` quoted for sh, as one word.
 *
 * @example
 * ```ts
 * import { shQuote } from "./install.ts";
 * console.log(shQuote("it's")); // 'it'\''s'
 * ```
 */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The launcher script: runs `to.bundle` with `deno` and the bundle's flags, passing every
 * argument through; the caller's directory, environment and exit code are kept. `umount` runs
 * `to.umountBundle` (the command alone, about half the start-up; it runs the whole CLI itself
 * for help and usage errors). `mount [-o OPTIONS] SOURCE MOUNTPOINT` (exactly that form: `-f`
 * must serve in the launcher's own process, and any other spelling, help and usage errors go to
 * the whole CLI) starts the daemon, `to.mountBundle`, itself: in the background, its stdout a
 * pipe to the launcher, which prints its `warning` lines and returns on `ready` (exit 0) or on
 * `exit N` (N; see `NOTIFY_ENV` in cli/commands/mount.ts) — one Deno start-up per mount where a
 * mount command of its own took two. The daemon writes its error line to the caller's stderr
 * itself and then leaves it, and the caller's directory, once it is live. So does mount.fuse3's
 * call `SOURCE MOUNTPOINT -o OPTIONS` (cli/mount_helper.ts) when SOURCE is none of `commands`
 * (the CLI's command names and `help`; a path otherwise, as from source).
 *
 * @example
 * ```ts
 * import { launcher, layout } from "./install.ts";
 * console.log(launcher("/usr/local/lib/ext4ts/deno", layout("/usr/local")));
 * ```
 */
export function launcher(
  deno: string,
  to: Layout,
  commands: readonly string[] = [...buildProgram().commands.map((c) => c.name()), "help"],
): string {
  const denoRun = `${shQuote(deno)} run ${BUNDLE_RUN_FLAGS.join(" ")}`;
  const run = `exec ${denoRun}`;
  return [
    "#!/bin/sh",
    LAUNCHER_MARK,
    `# (ext4ts ${VERSION}); a bundle run by Deno, which fetches nothing and checks for no update.`,
    "export DENO_NO_UPDATE_CHECK=1",
    `if [ "$1" = umount ]; then ${run} ${shQuote(to.umountBundle)} "$@"; fi`,
    "# The mount daemon, started in the background with the arguments it takes; this returns on",
    "# its report (cli/commands/mount.ts NOTIFY_ENV): ready, or exit N after its error line.",
    "mount_daemon() {",
    `  { ${NOTIFY_ENV}=1 DENO_V8_FLAGS=${DAEMON_V8_FLAGS}\${DENO_V8_FLAGS:+,\$DENO_V8_FLAGS} \\`,
    `    ${denoRun} ${shQuote(to.mountBundle)} mount "$@" </dev/null & } | {`,
    "    while IFS= read -r line; do",
    "      case $line in",
    "      ready) exit 0 ;;",
    '      "exit "*) exit "${line#exit }" ;;',
    `      "warning "*) printf 'ext4ts: %s\\n' "\${line#warning }" >&2 ;;`,
    "      esac",
    "    done",
    "    echo 'ext4ts: the mount daemon exited before it was ready' >&2",
    "    exit 1",
    "  }",
    "  exit",
    "}",
    "# mount SOURCE MOUNTPOINT, mount -o OPTIONS SOURCE MOUNTPOINT: no other word starts with -",
    'case "$#:$1:$2" in',
    '3:mount:*) case "$2:$3" in -* | *:-*) ;; *) mount_daemon -f -- "$2" "$3" ;; esac ;;',
    '5:mount:-o) case "$3:$4:$5" in -* | *:-*) ;; *) mount_daemon -o "$3" -f -- "$4" "$5" ;; esac ;;',
    "# mount.fuse3's call (mount -t fuse.ext4ts, fstab; cli/mount_helper.ts): SOURCE MOUNTPOINT -o",
    "# OPTIONS, SOURCE no command name; other forms of it go to the whole CLI, which parses them all",
    `4:*:*) if [ "$3" = -o ]; then case "$1" in -* | ${commands.join(" | ")}) ;; *) case "$2" in`,
    '  -* | /dev/fd/*) ;; *) mount_daemon -o "$4" --mount-helper -f -- "$1" "$2" ;; esac ;; esac; fi ;;',
    "esac",
    `${run} ${shQuote(to.bundle)} "$@"`,
    "",
  ].join("\n");
}

/** Installs the built files of dist/ under `prefix`; `deno` overrides the copied Deno. */
export async function install(prefix: string, deno?: string): Promise<Layout> {
  const to = layout(prefix);
  await assertOurs(to.launcher);
  let denoPath = to.deno;
  if (deno) {
    denoPath = deno;
    await run(deno, ["--version"]).catch(() => {
      throw new InstallError(`DENO=${deno} does not run`);
    });
  } else {
    await writeAtomic(to.deno, await Deno.readFile(Deno.execPath()), 0o755);
  }
  await writeAtomic(to.bundle, await Deno.readFile(`${DIST}/ext4ts.js`), 0o644);
  await writeAtomic(to.umountBundle, await Deno.readFile(`${DIST}/ext4ts-umount.js`), 0o644);
  await writeAtomic(to.mountBundle, await Deno.readFile(`${DIST}/ext4ts-mount.js`), 0o644);
  await writeAtomic(to.man, await Deno.readFile(`${DIST}/ext4ts.1`), 0o644);
  await writeAtomic(to.bash, await Deno.readFile(`${DIST}/ext4ts.bash`), 0o644);
  await writeAtomic(to.zsh, await Deno.readFile(`${DIST}/_ext4ts`), 0o644);
  await writeAtomic(to.launcher, launcher(denoPath, to), 0o755);
  if (deno) await Deno.remove(to.deno).catch(() => {}); // a copy from an earlier install
  const version = (await run(to.launcher, ["--version"])).trim();
  if (version !== VERSION) {
    throw new InstallError(`${to.launcher} --version printed '${version}', not ${VERSION}`);
  }
  return to;
}

/** Refuses to replace or remove a `bin/ext4ts` that this script did not write. */
async function assertOurs(path: string): Promise<boolean> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (!text.includes(LAUNCHER_MARK)) {
    throw new InstallError(`${path} exists and was not installed by ext4ts' scripts/install.sh`);
  }
  return true;
}

/** Removes what {@link install} put under `prefix` (its lib/ext4ts directory whole). */
export async function uninstall(prefix: string): Promise<Layout> {
  const to = layout(prefix);
  await assertOurs(to.launcher);
  for (const path of [to.launcher, to.man, to.bash, to.zsh, to.libDir]) {
    await Deno.remove(path, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  return to;
}

if (import.meta.main) {
  const prefix = Deno.env.get("PREFIX") || "/usr/local";
  const action = Deno.args[0] ?? "install";
  try {
    if (action === "build") {
      await build();
      console.log(
        `built ${DIST}/ext4ts.js, ext4ts-umount.js, ext4ts-mount.js, ext4ts.1, ext4ts.bash and _ext4ts`,
      );
    } else if (action === "install") {
      await build();
      const to = await install(prefix, Deno.env.get("DENO") || undefined);
      console.log(`installed ${to.launcher} (runs ${to.bundle}), ${to.man}, ${to.bash}, ${to.zsh}`);
    } else if (action === "uninstall") {
      await uninstall(prefix);
      console.log(`removed ext4ts from ${prefix}`);
    } else {
      console.error(`install: unknown action '${action}' (build, install or uninstall)`);
      Deno.exit(2);
    }
  } catch (e) {
    console.error(`install: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
