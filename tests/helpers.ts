/**
 * Shared test machinery: environment requirements that fail loudly under CI=true instead of
 * skipping, images made with mkfs (and populated through a kernel loop mount), and running
 * the CLI as a user would.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { cstr, Ioctl, libc, O } from "../ffi/libc.ts";
import { loopIdentity } from "../ffi/device_status.ts";

/** True when running under CI, where a missing requirement is a failure, never a skip. */
export const IN_CI = Deno.env.get("CI") === "true";

/** The project's root directory. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** Something a test needs from the machine. */
export type Need = "root" | "loop" | "fuse" | "kernel-ext4" | string;

function which(tool: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      if (Deno.statSync(`${dir}/${tool}`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** Why each need is unmet, or an empty list when all are there. */
export function missing(needs: Need[]): string[] {
  const out: string[] = [];
  for (const n of needs) {
    if (n === "root") {
      if (!isRoot()) out.push("root");
    } else if (n === "loop") {
      if (!isRoot() || !exists("/dev/loop-control")) {
        out.push("loop devices (/dev/loop-control, root)");
      }
    } else if (n === "fuse") {
      if (!exists("/dev/fuse")) out.push("/dev/fuse");
    } else if (n === "kernel-ext4") {
      const fs = readText("/proc/filesystems");
      if (!/\text4\n/.test(fs) && !exists("/lib/modules")) out.push("kernel ext4");
    } else if (!which(n)) {
      out.push(n);
    }
  }
  return out;
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function readText(p: string): string {
  try {
    return Deno.readTextFileSync(p);
  } catch {
    return "";
  }
}

/**
 * Registers a test that needs things from the machine. Outside CI a missing need skips the
 * test (visibly, as "ignored"); under CI=true it fails with the list of what is missing.
 *
 * @example
 * ```ts ignore
 * testWith("probe matches dumpe2fs", ["dumpe2fs", "mkfs.ext4"], async () => { ... });
 * ```
 */
export function testWith(
  name: string,
  needs: Need[],
  fn: (t: Deno.TestContext) => Promise<void> | void,
  options: { sanitizeResources?: boolean; sanitizeOps?: boolean } = {},
): void {
  const lacking = missing(needs);
  Deno.test({
    name,
    ignore: lacking.length > 0 && !IN_CI,
    ...options,
    fn: lacking.length > 0
      ? () => {
        throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      }
      : fn,
  });
}

/** Result of running a command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/** Runs a program and collects its output; never throws for a non-zero exit. */
export async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array; cwd?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin);
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}

/** Runs a program and throws with its stderr when it fails. */
export async function runOk(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Runs the ext4ts CLI from source, exactly as `deno task ext4ts ARGS…` does. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array } = {},
): Promise<RunResult> {
  return run(Deno.execPath(), ["run", "--allow-all", `${ROOT}cli/main.ts`, ...args], {
    ...options,
    env: { TZ: "UTC", ...options.env },
  });
}

/** A temporary directory removed when the returned handle is disposed. */
export async function tempDir(
  prefix = "ext4ts-test-",
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Options for {@link makeImage}. */
export interface MakeImageOptions {
  /** Size with a unit mkfs understands, e.g. "64M". */
  size?: string;
  /** mkfs program: mkfs.ext4 (default), mkfs.ext3, mkfs.ext2. */
  mkfs?: string;
  /** Extra mkfs arguments, e.g. ["-b", "1024", "-O", "^metadata_csum"]. */
  args?: string[];
  /** Fills the filesystem through a kernel loop mount (needs root). */
  populate?: (mountPoint: string) => Promise<void>;
}

/**
 * Makes an image file `path` with mkfs, optionally populated through a kernel mount.
 *
 * @example
 * ```ts ignore
 * await makeImage(`${dir}/a.img`, { args: ["-b", "1024"], populate: async (m) => {
 *   await Deno.writeTextFile(`${m}/hello`, "hi\n");
 * } });
 * ```
 */
export async function makeImage(path: string, options: MakeImageOptions = {}): Promise<string> {
  const mkfs = options.mkfs ?? "mkfs.ext4";
  await runOk(mkfs, ["-q", "-F", ...(options.args ?? []), path, options.size ?? "64M"], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  if (options.populate) await withKernelMount(path, options.populate);
  return path;
}

/**
 * Attaches `image` to a free loop device (`losetup -f --show`, plus `args` such as `-r`) and
 * returns /dev/loopN. Detach it with {@link detachLoop}, never with `losetup -d` by name.
 *
 * @example
 * ```ts ignore
 * const dev = await losetup("disk.img", ["-r"]); // /dev/loopN
 * ```
 */
export async function losetup(image: string, args: string[] = []): Promise<string> {
  return (await runOk("losetup", ["-f", "--show", ...args, image])).trim();
}

/**
 * Detaches loop device `dev` only while it still backs `image` (the same inode), and says
 * whether it did. A device can be freed before its test's cleanup (a `losetup -d` deferred
 * while it was busy, an autoclear device's last close) and handed by `losetup -f` to a test
 * file running in parallel: `losetup -d /dev/loopN` by name would then pull that test's device
 * from under it ("can't read superblock" on its mount). The check and LOOP_CLR_FD go through
 * one open descriptor, which keeps the device from being released and reattached in between;
 * as with `losetup -d`, a device still in use is detached by the kernel at its last close.
 *
 * @example
 * ```ts ignore
 * detachLoop(dev, "disk.img"); // true, or false when dev is no longer disk.img's
 * ```
 */
export function detachLoop(dev: string, image: string): boolean {
  let file: Deno.FileInfo;
  try {
    file = Deno.statSync(image);
  } catch {
    return false; // the image is gone: nothing left to compare the device with
  }
  const c = libc();
  const fd = c.open(cstr(dev), O.RDONLY | O.CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const id = loopIdentity(fd); // null: not attached
    // Not ours: freed since, and perhaps another test's now.
    const ours = id !== null && id.dev === file.dev && id.ino === file.ino;
    return ours && c.ioctl_int(fd, Ioctl.LOOP_CLR_FD, 0n) === 0;
  } finally {
    c.close(fd);
  }
}

/**
 * The loop devices currently backed by `image`.
 *
 * @example
 * ```ts ignore
 * await loopsOf("disk.img"); // ["/dev/loop3"]
 * ```
 */
export async function loopsOf(image: string): Promise<string[]> {
  const r = await run("losetup", ["-j", image]);
  return r.stdout.split("\n").filter((l) => l).map((l) => l.split(":")[0]);
}

/**
 * Detaches every loop device still backing `image` (a mount's autoclear device that a failed
 * test left behind), each through {@link detachLoop}: one listed here may be released and
 * reused by another test before its turn.
 *
 * @example
 * ```ts ignore
 * await detachLoopsOf("disk.img");
 * ```
 */
export async function detachLoopsOf(image: string): Promise<void> {
  for (const dev of await loopsOf(image)) detachLoop(dev, image);
}

/**
 * Mounts an image with the kernel's ext4 (through a loop device of its own) for the duration
 * of `fn`, then unmounts and detaches, even when `fn` throws.
 *
 * The loop device is attached here (`losetup -f`), never by `mount -o loop`: libmount reuses a
 * loop device still attached to the same file (an earlier mount's, whose automatic detach waits
 * while udev probes it), and that device's page cache still holds the earlier image's blocks.
 * Seen in CI: a kernel journal replay of a crash image written to the same path as the previous
 * one read stale blocks and matched no expected state.
 */
export async function withKernelMount<T>(
  image: string,
  fn: (mountPoint: string) => Promise<T>,
  options: { readOnly?: boolean; mountOptions?: string; type?: string } = {},
): Promise<T> {
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-mnt-" });
  const opts = [
    ...(options.readOnly ? ["ro"] : []),
    ...(options.mountOptions ? [options.mountOptions] : []),
  ];
  let loop: string | undefined;
  try {
    const device = Deno.statSync(image).isBlockDevice
      ? image
      : (loop = await losetup(image, options.readOnly ? ["-r"] : []));
    await runOk("mount", [
      "-t",
      options.type ?? "ext4",
      ...(opts.length ? ["-o", opts.join(",")] : []),
      device,
      mnt,
    ]);
  } catch (e) {
    if (loop) detachLoop(loop, image);
    await Deno.remove(mnt).catch(() => {});
    throw e;
  }
  try {
    return await fn(mnt);
  } finally {
    // A process that just closed files there (or udev probing the loop device) can keep the
    // mount busy for a moment: retry, then detach lazily so nothing is left behind.
    let unmounted = false;
    for (let i = 0; i < 10 && !unmounted; i++) {
      unmounted = (await run("umount", [mnt])).code === 0;
      if (!unmounted) await new Promise((r) => setTimeout(r, 200));
    }
    if (!unmounted) await runOk("umount", ["-l", mnt]);
    // A busy loop device (udev) is detached by the kernel once the last user closes it.
    if (loop) detachLoop(loop, image);
    await Deno.remove(mnt).catch(() => {});
  }
}

function findCorpus(): string {
  // The repository carries its own copy (tests/corpus/PROVENANCE.md), so a fresh clone
  // tests against the same oracles; EXT4TS_CORPUS points at another copy to test against.
  const candidates = [Deno.env.get("EXT4TS_CORPUS"), `${ROOT}tests/corpus`];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(`${c}/CASES.tsv`).isFile) return c.replace(/\/$/, "");
    } catch { /* next */ }
  }
  // Tests that need it fail with this path in their error; nothing is skipped silently.
  return `${ROOT}tests/corpus`;
}

/**
 * The journal corpus and oracle tools (`tests/corpus`, or `$EXT4TS_CORPUS`).
 */
export const CORPUS: string = findCorpus();

/** Whether {@link CORPUS} exists (a test that needs it fails under CI when it does not). */
export const CORPUS_FOUND: boolean = (() => {
  try {
    return Deno.statSync(`${CORPUS}/CASES.tsv`).isFile;
  } catch {
    return false;
  }
})();

/** The oracle tree lister: `python3 TREE_LISTING DIR` prints the kernel's view of DIR. */
export const TREE_LISTING: string = `${CORPUS}/tools/tree_listing.py`;

/** An unprivileged user (nobody) that can run ext4ts from source. */
export interface Unprivileged {
  uid: number;
  gid: number;
  /** A copy of the project the user can read (ROOT itself when it can). */
  root: string;
  /** Runs `cmd args` as the user (setpriv), with a clean environment. */
  run(cmd: string, args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** Runs `deno run -A FILE args` as the user (FILE: a path under {@link Unprivileged.root}). */
  deno(file: string, args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** Runs the ext4ts CLI (`cli/main.ts` under {@link Unprivileged.root}) as the user. */
  cli(args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** Where the user's mounts record their state files (`stateDir()` for that user). */
  stateDir: string;
}

/**
 * Prepares `dir` (made 0755, owned by the user) for running deno as an ordinary user through
 * `setpriv --reuid --regid --clear-groups`: a DENO_DIR holding a copy of root's npm cache (no
 * network), and — where the checkout or the deno binary is out of the user's reach, as in a
 * clone under /root — readable copies of both, so such tests run wherever the suite runs.
 *
 * @example
 * ```ts ignore
 * const nobody = await unprivileged(dir);
 * await nobody.cli(["probe", img]);
 * ```
 */
export async function unprivileged(dir: string, uid = 65534, gid = 65534): Promise<Unprivileged> {
  const info = JSON.parse(await runOk(Deno.execPath(), ["info", "--json"]));
  await Deno.mkdir(`${dir}/deno-dir`, { recursive: true });
  await runOk("cp", ["-r", info.npmCache, `${dir}/deno-dir/npm`]);
  // Commands run in `dir`, the user's home: a user's own directory, not the caller's.
  const as = (cmd: string, args: string[], env: Record<string, string>) => {
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return run("setpriv", [
      `--reuid=${uid}`,
      `--regid=${gid}`,
      "--clear-groups",
      "env",
      "-i",
      ...vars,
      cmd,
      ...args,
    ], { cwd: dir });
  };
  const reachable = async (flag: string, path: string) =>
    (await as("test", [flag, path], { PATH: "/usr/bin:/bin" })).code === 0;
  let deno = Deno.execPath();
  if (!(await reachable("-x", deno))) {
    await Deno.mkdir(`${dir}/bin`, { recursive: true });
    await Deno.copyFile(deno, `${dir}/bin/deno`);
    await Deno.chmod(`${dir}/bin/deno`, 0o755);
    deno = `${dir}/bin/deno`;
  }
  let root = ROOT;
  if (!(await reachable("-r", `${ROOT}tests/helpers.ts`))) {
    root = `${dir}/project/`;
    await Deno.mkdir(`${root}tests`, { recursive: true });
    for (const part of ["cli", "lib", "ffi", "mod.ts", "deno.json", "deno.lock"]) {
      await runOk("cp", ["-r", `${ROOT}${part}`, root]);
    }
    for await (const e of Deno.readDir(`${ROOT}tests`)) {
      if (e.isFile && e.name.endsWith(".ts")) {
        await Deno.copyFile(`${ROOT}tests/${e.name}`, `${root}tests/${e.name}`);
      }
    }
  }
  await runOk("chown", ["-R", `${uid}:${gid}`, dir]);
  await Deno.chmod(dir, 0o755);
  const base = {
    PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    HOME: dir,
    DENO_DIR: `${dir}/deno-dir`,
    DENO_NO_UPDATE_CHECK: "1",
    TZ: "UTC",
  };
  const asUser = (cmd: string, args: string[], env: Record<string, string> = {}) =>
    as(cmd, args, { ...base, ...env });
  const denoRun = (file: string, args: string[], env?: Record<string, string>) =>
    asUser(deno, ["run", "--allow-all", "--cached-only", file, ...args], env);
  return {
    uid,
    gid,
    root,
    run: asUser,
    deno: denoRun,
    cli: (args, env) => denoRun(`${root}cli/main.ts`, args, env),
    stateDir: `/tmp/ext4ts-${uid}`,
  };
}

/** The numbers of the `bs`-byte blocks whose contents differ between image files `a` and `b`. */
export async function changedBlocks(a: string, b: string, bs: number): Promise<number[]> {
  const x = await Deno.readFile(a);
  const y = await Deno.readFile(b);
  if (x.length !== y.length) throw new Error(`${a} and ${b} differ in size`);
  const out: number[] = [];
  for (let off = 0; off < x.length; off += bs) {
    for (let i = off; i < off + bs; i++) {
      if (x[i] !== y[i]) {
        out.push(off / bs);
        break;
      }
    }
  }
  return out;
}

/**
 * Fails unless `e2fsck -fn` finds `image` (a file or device) clean; its output is the message.
 *
 * @example
 * ```ts ignore
 * await assertFsckClean(img);
 * ```
 */
export async function assertFsckClean(image: string): Promise<void> {
  const r = await run("e2fsck", ["-fn", image]);
  if (r.code !== 0) throw new Error(`e2fsck -fn ${image} exited ${r.code}: ${r.stdout}${r.stderr}`);
}
