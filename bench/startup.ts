/**
 * Start-up benchmark: the installed command (scripts/install.sh: the bundle through its
 * launcher, which runs `mount` and `umount` from their own small bundles) against
 * `deno run --allow-all cli/main.ts` (what `deno task ext4ts` runs) and against the whole bundle
 * without V8's code cache. Rows: `--version`, `probe` of a small image and
 * (as root) `mount` of it until the command returns and `umount` until it returns (the daemon
 * gone, the device free; mounted by the installed command before each run, untimed), each warm
 * (Deno's caches filled) and the first two cold too (an empty DENO_DIR per run; from source it holds the npm packages only,
 * as after set-up, so the TypeScript is transpiled and nothing is in the code cache). Runs are
 * interleaved (the machine may be shared) and medians printed, with the CPU time (user +
 * system, from /usr/bin/time) of the bundle and of the source run in the note; for `mount`
 * plus the mount daemon's CPU when the command returned (it is nobody's child to time(1)).
 *
 * Usage: `deno run -A bench/startup.ts [--runs N]` (default 7 runs).
 *
 * @module
 */

import { BUNDLE_RUN_FLAGS } from "../cli/bundle.ts";
import { build, install } from "../scripts/install.ts";
import { readState } from "../ffi/fuse/mount_state.ts";
import { type BenchRow, cpuSeconds, printTable, sh } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();
const at = Deno.args.indexOf("--runs");
const runs = at >= 0 ? Number(Deno.args[at + 1]) : 7;
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs takes a positive integer");

/** A way to start ext4ts: the command line before the ext4ts arguments. */
interface Variant {
  name: string;
  argv: string[];
  /** A fresh Deno cache for a cold run. */
  coldDir(dir: string): Promise<void>;
}

const dir = await Deno.makeTempDir({ prefix: "ext4ts-startup-" });
const npmCache = JSON.parse(await sh(deno, ["info", "--json"])).npmCache as string;
await build();
const to = await install(`${dir}/prefix`, deno);
const variants: Variant[] = [
  { name: "bundle", argv: [to.launcher], coldDir: (d) => Deno.mkdir(d) },
  {
    name: "source",
    argv: [deno, "run", "--allow-all", `${ROOT}cli/main.ts`],
    coldDir: async (d) => {
      await Deno.mkdir(d);
      await sh("cp", ["-al", npmCache, `${d}/npm`]);
    },
  },
  {
    name: "no code cache",
    argv: [deno, "run", "--no-code-cache", ...BUNDLE_RUN_FLAGS, to.bundle],
    coldDir: (d) => Deno.mkdir(d),
  },
];

/** Wall and CPU milliseconds of one run. */
async function timed(argv: string[], env: Record<string, string>): Promise<[number, number]> {
  const times = `${dir}/time`;
  const t0 = performance.now();
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%U %S", "-o", times, ...argv],
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  const wall = performance.now() - t0;
  if (!out.success) {
    throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const [user, sys] = (await Deno.readTextFile(times)).trim().split("\n").at(-1)!.split(" ");
  return [wall, (Number(user) + Number(sys)) * 1000];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const img = `${dir}/small.img`;
await sh("mkfs.ext4", ["-q", "-F", img, "16M"]);
const mnt = `${dir}/mnt`;
await Deno.mkdir(mnt);
const isRoot = Deno.uid() === 0;

/** Medians over interleaved runs of `args` by every variant: [wall, cpu] per variant. */
async function measure(
  args: string[],
  cold: boolean,
  after?: () => Promise<void>,
  before?: () => Promise<void>,
  otherCpu?: () => number,
): Promise<Map<string, [number, number]>> {
  const samples = new Map(variants.map((v) => [v.name, [] as [number, number][]]));
  let n = 0;
  for (let run = 0; run < runs + (cold ? 0 : 1); run++) {
    for (const v of variants) {
      // Warm runs use the usual Deno cache, cold ones a fresh one each.
      const denoDir = `${dir}/deno-${n++}`;
      if (cold) await v.coldDir(denoDir);
      if (before) await before();
      const r = await timed([...v.argv, ...args], {
        ...(cold ? { DENO_DIR: denoDir } : {}),
        DENO_NO_UPDATE_CHECK: "1",
      });
      if (otherCpu) r[1] += otherCpu();
      if (after) await after();
      if (cold) await Deno.remove(denoDir, { recursive: true });
      if (cold || run > 0) samples.get(v.name)!.push(r); // warm: the first run fills the caches
    }
  }
  return new Map(
    [...samples].map(([k, xs]) => [k, [median(xs.map((x) => x[0])), median(xs.map((x) => x[1]))]]),
  );
}

const cases: {
  name: string;
  args: string[];
  cold: boolean;
  after?: () => Promise<void>;
  before?: () => Promise<void>;
  /** CPU ms of a process the command leaves running (the mount daemon's, until it answered). */
  otherCpu?: () => number;
}[] = [
  { name: "--version, warm", args: ["--version"], cold: false },
  { name: "--version, cold", args: ["--version"], cold: true },
  { name: "probe, warm", args: ["probe", img], cold: false },
  { name: "probe, cold", args: ["probe", img], cold: true },
];
if (isRoot) {
  cases.push({
    name: "mount (returns when live), warm",
    args: ["mount", img, mnt],
    cold: false,
    after: () => sh(to.launcher, ["umount", mnt]).then(() => {}),
    // The daemon is not the command's child (time(1) misses it): its CPU until it answered.
    otherCpu: () => cpuSeconds(readState(mnt)?.pid) * 1000,
  });
  cases.push({
    name: "umount (returns when the device is free), warm",
    args: ["umount", mnt],
    cold: false,
    before: () => sh(to.launcher, ["mount", img, mnt]).then(() => {}),
  });
}

const rows: BenchRow[] = [];
try {
  for (const c of cases) {
    const m = await measure(c.args, c.cold, c.after, c.before, c.otherCpu);
    const [bundle, bundleCpu] = m.get("bundle")!;
    const [source, sourceCpu] = m.get("source")!;
    rows.push({
      name: c.name,
      ext4ts: bundle,
      peers: { source, "no code cache": m.get("no code cache")![0] },
      note: `CPU ${bundleCpu.toFixed(0)} vs ${sourceCpu.toFixed(0)} ms`,
    });
  }
} finally {
  await sh("umount", [mnt]).catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
printTable(
  `Start-up: the installed bundle (ext4ts) vs deno run cli/main.ts, medians of ${runs} runs`,
  rows,
);
