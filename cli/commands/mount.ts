/**
 * `ext4ts mount DEVICE|IMAGE MOUNTPOINT [-o OPTIONS] [-f] [--log FILE]`.
 *
 * Without `-f` the command starts itself again as a detached daemon (same executable, same
 * arguments plus `-f`, new session) and returns only once the daemon reports the mount live
 * — or fails with the daemon's error line and exit code. The handshake: the daemon writes
 * `ready` on its stdout (a pipe to this process), then points stdout/stderr at its log.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { cstr, libc, O } from "../../ffi/libc.ts";
import { openBlockDevice } from "../../ffi/file_device.ts";
import { defaultLogFile } from "../../ffi/fuse/mount_state.ts";
import { type MountBackend, type MountSettings, serve } from "../../ffi/fuse/serve.ts";
import { BUNDLE_RUN_FLAGS, runningAsBundle } from "../bundle.ts";
import { ExitCode } from "../exit_codes.ts";
import { parseMountOptions } from "../mount_options.ts";
import { CliError, runAction, warn } from "../output.ts";
import { documentCommand } from "../help.ts";

/**
 * Environment variable telling a daemon to report on stdout, one line each: `warning TEXT`
 * until the mount is live, then `ready`; or, when it fails first, `exit N` (its exit code) as its
 * last line. Whoever started it (the mount command, or the installed launcher, which reads the
 * lines in `sh`) returns on `ready` or with the code.
 */
export const NOTIFY_ENV = "EXT4TS_DAEMON_NOTIFY";
/** How long `ext4ts mount` waits for its daemon, and a daemon for its mount to go live (ms). */
const READY_TIMEOUT_MS = 120_000;

export { parseMountOptions } from "../mount_options.ts";

/** The lean daemon entry (cli/mount_daemon.ts), used when running from source. */
// compile-safe: from source only (daemonCommand; the binary runs itself again)
const DAEMON_ENTRY = new URL("../mount_daemon.ts", import.meta.url);
/** The CLI entry whose daemon is {@link DAEMON_ENTRY}. */
// compile-safe: from source only (compared with Deno.mainModule, never read)
const CLI_MAIN = new URL("../main.ts", import.meta.url);

function pathOf(url: string | URL): string {
  return decodeURIComponent(new URL(url).pathname);
}

/**
 * The command line that runs this program again (deno + script or bundle, or the compiled
 * binary).
 *
 * @example
 * ```ts ignore
 * const { cmd, args } = selfCommand(); // deno + ["run", "--allow-all", "…/cli/main.ts"]
 * ```
 */
export function selfCommand(): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  if (/(^|\/)deno$/.test(exe) && Deno.mainModule.startsWith("file:")) {
    // The installed bundle runs again as its launcher runs it (no config, nothing fetched).
    const flags = runningAsBundle() ? BUNDLE_RUN_FLAGS : ["--allow-all"];
    return { cmd: exe, args: ["run", ...flags, pathOf(Deno.mainModule)] };
  }
  return { cmd: exe, args: [] };
}

/**
 * The command line of the mount daemon for `args` (see {@link daemonArgs}). From source, the
 * ext4ts CLI starts cli/mount_daemon.ts, which loads only what serving needs (no commander,
 * no other commands: measured ~60 ms less start-up); the compiled binary, the installed bundle
 * (cli/bundle.ts) and other programs built on {@link registerMount} run themselves again.
 *
 * @example
 * ```ts ignore
 * const { cmd, args } = daemonCommand(daemonArgs("disk.img", "/mnt/x", {}));
 * ```
 */
export function daemonCommand(args: string[]): { cmd: string; args: string[] } {
  const self = selfCommand();
  if (self.args.length > 0 && Deno.mainModule === CLI_MAIN.href) {
    return { cmd: self.cmd, args: ["run", "--allow-all", pathOf(DAEMON_ENTRY), ...args] };
  }
  return { cmd: self.cmd, args: [...self.args, ...args] };
}

/**
 * The daemon's arguments, normalised:
 * `mount [-o OPTIONS] [--log FILE] [--mount-helper] -f -- SOURCE MOUNTPOINT`
 * (a command line both commander and {@link parseDaemonArgs} read; `--` keeps a source that
 * starts with `-` a name).
 *
 * @example
 * ```ts
 * import { daemonArgs } from "./mount.ts";
 * console.log(daemonArgs("d.img", "/mnt", { options: "ro" }).join(" ")); // mount -o ro -f -- d.img /mnt
 * ```
 */
export function daemonArgs(
  source: string,
  mountPoint: string,
  opts: MountCommandOptions,
): string[] {
  return [
    "mount",
    ...(opts.options ? ["-o", opts.options] : []),
    ...(opts.log ? ["--log", opts.log] : []),
    ...(opts.mountHelper ? ["--mount-helper"] : []),
    "-f",
    "--",
    source,
    mountPoint,
  ];
}

/**
 * Reads back what {@link daemonArgs} wrote (the daemon entry has no commander).
 *
 * @example
 * ```ts
 * import { parseDaemonArgs } from "./mount.ts";
 * console.log(parseDaemonArgs(["mount", "-f", "--", "d.img", "/mnt"]).source); // d.img
 * ```
 */
export function parseDaemonArgs(
  argv: string[],
): { source: string; mountPoint: string; opts: MountCommandOptions } {
  const usage =
    "usage: mount_daemon.ts mount [-o OPTIONS] [--log FILE] [--mount-helper] -f -- SOURCE MOUNTPOINT";
  if (argv[0] !== "mount") throw new CliError(usage, ExitCode.USAGE);
  const opts: MountCommandOptions = { foreground: true };
  let i = 1;
  for (; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i];
    if (a === "-f") continue;
    if (a === "--mount-helper") {
      opts.mountHelper = true;
      continue;
    }
    if ((a === "-o" || a === "--log") && i + 1 < argv.length) {
      if (a === "-o") opts.options = argv[++i];
      else opts.log = argv[++i];
      continue;
    }
    throw new CliError(`mount daemon: unexpected argument '${a}'`, ExitCode.USAGE);
  }
  const [source, mountPoint, ...extra] = argv.slice(i + 1);
  if (source === undefined || mountPoint === undefined || extra.length > 0) {
    throw new CliError(usage, ExitCode.USAGE);
  }
  return { source, mountPoint, opts };
}

/** True when `source` opens but refuses writes (BLKROGET, a read-only file or filesystem). */
function sourceIsWriteProtected(source: string): boolean {
  try {
    const device = openBlockDevice(source, { readOnly: true });
    const readOnly = device.mediaReadOnly;
    void device.close();
    return readOnly;
  } catch {
    return false; // the daemon reports why it cannot be opened
  }
}

/** Options of the mount command. */
export interface MountCommandOptions {
  options?: string;
  foreground?: boolean;
  log?: string;
  /** Called as mount(8)'s helper (`ext4ts SOURCE MOUNTPOINT -o …`). */
  mountHelper?: boolean;
  /** The program that serves, before its arguments (default {@link daemonCommand}). */
  daemon?: { cmd: string; args: string[] };
  /** Called once the mount is live (in the foreground: after `ready` with {@link NOTIFY_ENV}). */
  onLive?: () => void;
}

/**
 * `mount [-o OPTIONS] SOURCE MOUNTPOINT` read without commander (what the installed
 * `ext4ts mount` and cli/main.ts run at once); `undefined` for any other spelling (`-f`,
 * `--log`, help, usage errors), which goes through commander.
 *
 * @example
 * ```ts
 * import { parseMountArgs } from "./mount.ts";
 * console.log(parseMountArgs(["mount", "-o", "rw", "d.img", "/mnt"])?.options); // rw
 * ```
 */
export function parseMountArgs(
  args: string[],
): { source: string; mountPoint: string; options?: string } | undefined {
  const [command, ...rest] = args;
  const operand = (a: string | undefined): a is string => a !== undefined && !a.startsWith("-");
  if (command !== "mount") return undefined;
  const [options, source, mountPoint] = rest[0] === "-o" && operand(rest[1])
    ? [rest[1], rest[2], rest[3]]
    : [undefined, rest[0], rest[1]];
  if (!operand(source) || !operand(mountPoint) || rest.length !== (options ? 4 : 2)) {
    return undefined;
  }
  return options === undefined ? { source, mountPoint } : { source, mountPoint, options };
}

function makeLogger(file: string | undefined, toStderr: boolean): (line: string) => void {
  const enc = new TextEncoder();
  return (line: string) => {
    const text = `${new Date().toISOString()} ext4ts[${Deno.pid}]: ${line}\n`;
    if (file) {
      try {
        Deno.writeFileSync(file, enc.encode(text), { append: true, create: true });
        return;
      } catch { /* fall through to stderr */ }
    }
    if (toStderr) {
      try {
        Deno.stderr.writeSync(enc.encode(text));
      } catch { /* nowhere to log */ }
    } else {
      syslog(line);
    }
  };
}

let syslogAvailable: boolean | undefined;

/** True when a system logger listens on /dev/log (journald or a syslog daemon). */
function systemLogReachable(): boolean {
  if (syslogAvailable === undefined) {
    try {
      syslogAvailable = Deno.statSync("/dev/log") !== null;
    } catch {
      syslogAvailable = false;
    }
  }
  return syslogAvailable;
}

function syslog(line: string): void {
  // No /dev/log, no system logger listening: `logger` would fail, after a process start.
  if (!systemLogReachable()) return;
  try {
    new Deno.Command("logger", {
      args: ["-t", `ext4ts[${Deno.pid}]`, "--", line],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch { /* no logger: nowhere to log */ }
}

/** Points stdout and stderr at the log file (or /dev/null) once the parent has gone. */
function detachStdio(logFile: string | undefined): void {
  const c = libc();
  const fd = logFile
    ? c.open(cstr(logFile), O.WRONLY | O.APPEND | O.CREAT | O.CLOEXEC, 0o640)
    : c.open(cstr("/dev/null"), O.WRONLY | O.CLOEXEC, 0);
  if (fd < 0) return;
  c.dup2(fd, 1);
  c.dup2(fd, 2);
  c.close(fd);
}

/** Writes one line of the {@link NOTIFY_ENV} report; false when nobody reads it any more. */
function report(line: string): boolean {
  try {
    Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
    return true;
  } catch {
    return false; // the command has gone
  }
}

/**
 * Lets go of the pipes this process holds besides its stdin, stdout and stderr (after
 * {@link detachStdio}). Started from a shell (the installed launcher), the daemon inherits every
 * descriptor its caller let leak (a Deno 2.9 caller's `Deno.Command` was seen handing its
 * children write ends of their own output pipes), and Deno itself keeps copies of the stdio it
 * started with (for children that inherit it): either would keep the caller's reader waiting for
 * an end of file for as long as the daemon serves. Each is pointed at /dev/null rather than
 * closed, so its number is never handed out again while Deno still believes it its own (a
 * device opened later on a reused number would receive whatever Deno wrote there).
 */
function releaseInheritedPipes(): void {
  const fds: number[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    try {
      if (fd > 2 && Deno.readLinkSync(`/proc/self/fd/${fd}`).startsWith("pipe:")) fds.push(fd);
    } catch { /* the directory's own descriptor, closed by now */ }
  }
  if (fds.length === 0) return;
  const c = libc();
  const devNull = c.open(cstr("/dev/null"), O.RDWR | O.CLOEXEC, 0);
  if (devNull < 0) return;
  for (const fd of fds) c.dup2(devNull, fd);
  c.close(devNull);
}

/** `path` made absolute from where this process stands (not resolved: it may not exist). */
function absolutePath(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** A log line the mount command shows on its own stderr too (until the mount is live). */
const WARNING = /\bwarning:/i;

/**
 * The read-only rule: `rw` on a write-protected source mounts read-only with mount(8)'s
 * warning. Sets `settings.readOnly`; returns the warning, if any.
 */
function readOnlyFallback(
  settings: MountSettings,
  source: string,
  mountPoint: string,
): string | undefined {
  if (settings.readOnly) return undefined;
  if (sourceIsWriteProtected(source)) {
    settings.readOnly = true;
    return `${mountPoint}: WARNING: source write-protected, mounted read-only.`;
  }
  return undefined;
}

/**
 * Runs `ext4ts mount` with a given filesystem backend (ext4 for the CLI; tests pass an
 * in-memory one). Resolves to the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exitCode = await mountCommand("disk.img", "/mnt/x", { foreground: true }, ext4Backend);
 * ```
 */
export async function mountCommand(
  source: string,
  mountPoint: string,
  opts: MountCommandOptions,
  backend: MountBackend,
): Promise<number> {
  // Bad options fail here, before any daemon starts.
  const settings = parseMountOptions(opts.options);
  let target: string;
  try {
    target = Deno.realPathSync(mountPoint);
  } catch (e) {
    if (/os error 107|not connected/i.test(String(e))) {
      throw new CliError(
        `${mountPoint}: a dead FUSE mount is there (its daemon is gone): run 'ext4ts umount ${mountPoint}' first`,
        ExitCode.BUSY,
      );
    }
    throw new CliError(`${mountPoint}: mount point does not exist`, ExitCode.FAILURE);
  }
  // A daemon runs in / (it must not pin the caller's directory, which may also be out of its
  // reach), so paths the caller gave relative to where it stands are made absolute.
  const notify = opts.foreground && Deno.env.get(NOTIFY_ENV) === "1";
  if (!opts.foreground || notify) {
    source = absolutePath(source);
    if (opts.log !== undefined) opts = { ...opts, log: absolutePath(opts.log) };
  }
  if (!opts.foreground) {
    const args = daemonArgs(source, target, opts);
    const daemon = opts.daemon
      ? { cmd: opts.daemon.cmd, args: [...opts.daemon.args, ...args] }
      : daemonCommand(args);
    return await startDaemon(daemon);
  }

  // The daemon names the mount point as its command resolved it.
  const fallback = readOnlyFallback(settings, source, notify ? target : mountPoint);
  if (notify) {
    // Started in the background by the installed launcher, the daemon leaves the caller's
    // directory itself (the mount command starts it in / already).
    Deno.chdir("/");
    libc().setsid(); // no controlling terminal, no SIGHUP from it
  }
  // A background daemon cannot keep the caller's stderr (it would hold `$(…)`, pipes and ssh
  // sessions open): without --log and without a system log, its log (and its stderr) is a file
  // beside its state file.
  const logFile = opts.log ??
    (notify && !systemLogReachable() ? defaultLogFile(target) : undefined);
  const sink = makeLogger(logFile, !notify);
  let live = false;
  // The launcher that started this daemon cannot time it out itself (see NOTIFY_ENV). alarm(2)
  // and a SIGALRM listener, not setTimeout: a process's first timer costs ~4 ms of CPU (Deno
  // loads its timers then), and this daemon uses none before it answers.
  const onTimeout = () => {
    warn("the mount daemon did not become ready in time");
    report(`exit ${ExitCode.TIMEOUT}`);
    Deno.exit(ExitCode.TIMEOUT);
  };
  const stopTimeout = () => {
    if (!notify) return;
    libc().alarm(0);
    Deno.removeSignalListener("SIGALRM", onTimeout);
  };
  if (notify) {
    Deno.addSignalListener("SIGALRM", onTimeout);
    libc().alarm(READY_TIMEOUT_MS / 1000);
  }
  const deferred: string[] = [];
  const log = (line: string) => {
    // Until the mount is live, the log waits (a system-log line costs a `logger` process) and
    // warnings go to the waiting command (`warning TEXT` lines before `ready`), or to this
    // process's stderr in the foreground when the log is a file.
    if (!live && WARNING.test(line)) {
      // The command may have gone: the log still has it.
      if (notify) report(`warning ${line.replace(/\n/g, " ")}`);
      else if (logFile) warn(line);
    }
    if (live || !notify) sink(line);
    else deferred.push(line);
  };
  if (fallback) log(fallback);
  try {
    await serve({
      source,
      mountPoint: target,
      settings,
      backend,
      log,
      onReady: () => {
        stopTimeout();
        if (notify) {
          report("ready");
          detachStdio(logFile);
          releaseInheritedPipes(); // ~1.5 ms: after `ready`, before which they harm no reader
        }
        live = true;
        opts.onLive?.();
        for (const line of deferred.splice(0)) sink(line);
        log(`mounted ${source} on ${target} (${settings.readOnly ? "read-only" : "read-write"})`);
      },
    });
  } finally {
    stopTimeout();
    // A failure before `ready` goes to the command (stderr); the log keeps what led to it.
    for (const line of deferred.splice(0)) sink(line);
  }
  return ExitCode.OK;
}

/**
 * Runs the mount daemon for its arguments ({@link daemonArgs}'s form) and resolves to its exit
 * code; with {@link NOTIFY_ENV}, a failure before the mount went live ends the report with
 * `exit N`. The daemon entries (cli/mount_daemon.ts) run this.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runMountDaemon(["mount", "-f", "--", "disk.img", "/mnt/x"], ext4Backend));
 * ```
 */
export async function runMountDaemon(argv: string[], backend: MountBackend): Promise<number> {
  let live = false;
  await runAction(() => {
    const { source, mountPoint, opts } = parseDaemonArgs(argv);
    return mountCommand(source, mountPoint, { ...opts, onLive: () => live = true }, backend);
  });
  const code = typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  if (!live && Deno.env.get(NOTIFY_ENV) === "1") report(`exit ${code}`);
  return code;
}

/**
 * V8 flags of the daemon (before any of the caller's DENO_V8_FLAGS, which win): a young
 * generation of at most 1 MiB per semi-space instead of V8's up to 8 MiB. A server that
 * allocates per request then stays ~15–50 MiB smaller (measured on the mount benchmark's rows),
 * and the large buffers of finished requests are collected sooner. `--expose-gc` lets the
 * daemon collect its garbage when it falls idle (ffi/fuse/serve.ts idleMemoryReleaser).
 */
export const DAEMON_V8_FLAGS = "--max-semi-space-size=1,--expose-gc";

/** Starts the daemon (`-f`) and waits for its `ready` line or its exit. */
async function startDaemon(daemon: { cmd: string; args: string[] }): Promise<number> {
  const child = new Deno.Command(daemon.cmd, {
    args: daemon.args,
    cwd: "/",
    env: {
      [NOTIFY_ENV]: "1",
      DENO_V8_FLAGS: [DAEMON_V8_FLAGS, Deno.env.get("DENO_V8_FLAGS")].filter(Boolean).join(","),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true,
  }).spawn();
  const errText = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let out = "";
  let ready = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((res) => {
    timer = setTimeout(() => res("timeout"), READY_TIMEOUT_MS);
  });
  try {
    while (!ready) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r === "timeout") {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        throw new CliError("the mount daemon did not become ready in time", ExitCode.TIMEOUT);
      }
      if (r.done) break;
      out += dec.decode(r.value, { stream: true });
      // Whole lines: `warning TEXT` (shown at once) until `ready`.
      let nl: number;
      while (!ready && (nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line === "ready") ready = true;
        else if (line.startsWith("warning ")) warn(line.slice("warning ".length));
      }
    }
  } finally {
    clearTimeout(timer);
  }
  if (ready) {
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
    child.unref();
    return ExitCode.OK;
  }
  const status = await child.status;
  const text = (await errText.catch(() => "")).trim();
  if (text) console.error(text);
  else warn(`the mount daemon exited with code ${status.code}`);
  return status.code === 0 ? ExitCode.FAILURE : status.code;
}

/**
 * Registers `ext4ts mount`.
 *
 * @example
 * ```ts ignore
 * registerMount(program, ext4Backend);
 * ```
 */
export function registerMount(program: Command, backend: MountBackend): void {
  const cmd = program
    .command("mount")
    .description(
      "mount an ext2/3/4 device or image through FUSE (fuseblk when root; read-only " +
        "unless -o rw); " +
        "returns once the mount is live",
    )
    .argument("<device>", "block device or image file")
    .argument("<mountpoint>", "directory to mount on")
    .option(
      "-o, --options <list>",
      "ro, rw, norecovery|noload, allow_other, default_permissions, " +
        "noblkdev, uid=N, gid=N, fakeroot, errors=continue|remount-ro|panic, commit=SECONDS, offset=BYTES, " +
        "mount(8)'s nosuid, nodev, noexec, noatime, relatime, … (see README)",
    )
    .option("-f, --foreground", "stay in the foreground (serve until unmounted)")
    .option("--log <file>", "daemon log file (default: the system log)")
    // Set by the mount(8) helper entry for its daemon (see MountCommandOptions.mountHelper).
    // createOption, not `new Option`: a value import of commander would load it (and Node's
    // compatibility layer) into the daemon, which imports this module (cli/mount_daemon.ts).
    .addOption(program.createOption("--mount-helper").hideHelp())
    .action((device, mountpoint, opts) =>
      runAction(() => mountCommand(device, mountpoint, opts, backend))
    );
  documentCommand(cmd, {
    about:
      "Mounts an ext2/3/4 device or image through FUSE (fuseblk as root; an image gets a loop device) and returns once the mount is live; the daemon serves in the background, logging to the system log or --log. Read-only by default: a journal that needs recovery is replayed in memory. With -o rw every change is committed before it is answered, a journal that needs recovery is replayed onto the device first, and the unmount (umount or ext4ts umount) returns only once everything is on the device and the superblock says clean.",
    examples: [
      "ext4ts mount disk.img /mnt/disk",
      "ext4ts mount -o ro,allow_other /dev/sdb1 /mnt/usb",
      "ext4ts mount -o rw disk.img /mnt/disk",
      "ext4ts mount -f --log mount.log disk.img /mnt/disk",
    ],
    exitCodes: [
      [ExitCode.FAILURE, "failed (e.g. no such mount point)"],
      ExitCode.NOT_EXT4,
      ExitCode.NEEDS_RECOVERY,
      ExitCode.FS_ERRORS,
      [ExitCode.UNSUPPORTED, "unsupported: features ext4ts cannot read (or, with -o rw, write)"],
      ExitCode.IO,
      [ExitCode.BUSY, "busy: already mounted, or the device is in use"],
      [ExitCode.TIMEOUT, "the mount daemon did not become ready in time"],
    ],
  });
}
