/**
 * Mount benchmark: ext4ts vs fuse2fs vs the kernel's ext4, read-only, on the same loop
 * device in one run.
 *
 * Honest by construction:
 * - the drivers are interleaved over several rounds (the order rotates each round), and every
 *   row prints the median with the min–max of its rounds;
 * - every data row is cold: page cache dropped and a fresh mount (the daemons' own caches
 *   survive drop_caches, so a mount is never reused between rows);
 * - timing is in-process around the work itself (reads, lstat loops); where a tool is the
 *   workload (`ls -l`, `find`, `du`, `tar`) the time includes only that C program's start-up;
 * - the FUSE daemons' CPU seconds (user + system, from /proc) and peak RSS are printed beside
 *   the wall times, and the machine's load before and after.
 *
 * Rows: sequential read of a big file, random 4 KiB reads (each in a region of its own, so
 * read-ahead never serves one), `lstat` by name of every file of a flat directory (lookups:
 * no listing first), `ls -l` of it, `find`, `du` and `tar` (all data read) of a tree, mount until
 * the root answers, and from the start of an unmount (umount(8), and each driver's own
 * unmount command) until the device opens O_EXCL.
 *
 * Usage (root): `deno run -A bench/mount.ts [--quick] [--rounds N] [--json]`. `--quick`
 * shrinks the data (64 MiB file, 2 000 / 4 000 files); rounds default to 3 (at least 3).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { deviceIsFree } from "../ffi/fuse/loop.ts";
import {
  cpuSeconds,
  fmt,
  loadAverage,
  peakRssMiB,
  showSpread,
  type Spread,
  spread,
} from "./lib.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const dec = new TextDecoder();

interface Sizes {
  bigMiB: number;
  flat: number;
  tree: number;
  randomReads: number;
}

async function sh(script: string, allowFail = false): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success && !allowFail) {
    throw new Error(`${script}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

/** Runs one program (no shell) with its output discarded; the workload of the tool rows. */
async function tool(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
}

async function dropCaches(): Promise<void> {
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches", true);
}

async function untilFree(dev: string, t0: number, limitS = 60): Promise<number> {
  while (!deviceIsFree(dev)) {
    if ((performance.now() - t0) / 1000 > limitS) return NaN;
    await new Promise((r) => setTimeout(r, 1));
  }
  return (performance.now() - t0) / 1000;
}

/** How each driver mounts and unmounts. */
interface Driver {
  name: string;
  /** Whether a userspace daemon serves the mount (its CPU and memory are measured). */
  daemon: boolean;
  mount(dev: string, mnt: string): Promise<void>;
  unmount(mnt: string): Promise<void>;
}

const deno = Deno.execPath();
const DRIVERS: Driver[] = [
  {
    name: "kernel",
    daemon: false,
    mount: (dev, mnt) => tool("mount", ["-t", "ext4", "-o", "ro,noload", dev, mnt]),
    unmount: (mnt) => tool("umount", [mnt]),
  },
  {
    name: "fuse2fs",
    daemon: true,
    mount: (dev, mnt) => tool("fuse2fs", ["-o", "ro", dev, mnt]),
    unmount: (mnt) => tool("umount", [mnt]),
  },
  {
    name: "ext4ts",
    daemon: true,
    mount: (dev, mnt) =>
      tool(deno, ["run", "--allow-all", `${ROOT}cli/main.ts`, "mount", dev, mnt]),
    unmount: (mnt) => tool(deno, ["run", "--allow-all", `${ROOT}cli/main.ts`, "umount", mnt]),
  },
];

/** The process serving `mnt`: the one whose command line names the mount point. */
function daemonOf(mnt: string): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (args.includes(mnt)) return pid;
    } catch { /* gone */ }
  }
  return undefined;
}

async function buildImage(dir: string, s: Sizes): Promise<string> {
  const img = `${dir}/bench.img`;
  const sizeMiB = s.bigMiB + 256 + Math.ceil((s.flat + s.tree) / 100);
  await sh(`mkfs.ext4 -q -F ${img} ${sizeMiB}M`);
  const mnt = `${dir}/build`;
  await Deno.mkdir(mnt);
  await sh(`mount -o loop ${img} ${mnt}`);
  try {
    await sh(`dd if=/dev/urandom of=${mnt}/big bs=1M count=${s.bigMiB} 2>/dev/null`);
    await Deno.mkdir(`${mnt}/flat`);
    for (let i = 0; i < s.flat; i++) {
      await Deno.writeTextFile(
        `${mnt}/flat/file-${String(i).padStart(5, "0")}`,
        "x".repeat(i % 300),
      );
    }
    for (let d = 0; d < Math.ceil(s.tree / 100); d++) {
      const p = `${mnt}/tree/d${String(Math.floor(d / 10)).padStart(3, "0")}/e${d % 10}`;
      await Deno.mkdir(p, { recursive: true });
      for (let i = 0; i < 100; i++) {
        await Deno.writeTextFile(`${p}/f${String(i).padStart(3, "0")}`, "y".repeat(i * 7));
      }
    }
  } finally {
    await sh(`umount ${mnt}`);
  }
  return img;
}

/** A cold workload on a fresh mount: returns its result in `unit`. */
interface Workload {
  key: string;
  unit: string;
  higherIsBetter: boolean;
  run(mnt: string, s: Sizes): Promise<number>;
}

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

const WORKLOADS: Workload[] = [
  {
    key: "seq read",
    unit: "MiB/s",
    higherIsBetter: true,
    run(mnt) {
      const f = Deno.openSync(`${mnt}/big`);
      const buf = new Uint8Array(1 << 20);
      let total = 0;
      const t0 = performance.now();
      for (let n = f.readSync(buf); n !== null; n = f.readSync(buf)) total += n;
      const t = seconds(t0);
      f.close();
      return Promise.resolve(total / (1 << 20) / t);
    },
  },
  {
    key: "random 4 KiB reads",
    unit: "reads/s",
    higherIsBetter: true,
    run(mnt, s) {
      // One read in each of distinct 1 MiB regions, in a shuffled order: read-ahead (up to
      // 1 MiB on a FUSE mount) never serves a later read, so every read is a cold one.
      const f = Deno.openSync(`${mnt}/big`);
      const regions = Math.floor(f.statSync().size / (1 << 20));
      const n = Math.min(s.randomReads, regions);
      const order = [...Array(regions).keys()];
      let x = 1; // a fixed LCG: the same offsets for every driver
      const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
      for (let i = regions - 1; i > 0; i--) {
        const j = next() % (i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const offsets = order.slice(0, n).map((r) => r * (1 << 20) + (next() % 256) * 4096);
      const buf = new Uint8Array(4096);
      const t0 = performance.now();
      for (const off of offsets) {
        f.seekSync(off, Deno.SeekMode.Start);
        if (f.readSync(buf) === null) throw new Error("short read");
      }
      const t = seconds(t0);
      f.close();
      return Promise.resolve(n / t);
    },
  },
  {
    key: "lstat by name, flat dir",
    unit: "files/s",
    higherIsBetter: true,
    run(mnt, s) {
      // By name, without listing first: a listing (READDIRPLUS) would hand the kernel every
      // attribute in advance, and this row measures lookups.
      const paths = Array.from(
        { length: s.flat },
        (_, i) => `${mnt}/flat/file-${String(i).padStart(5, "0")}`,
      );
      const t0 = performance.now();
      for (const p of paths) Deno.lstatSync(p);
      return Promise.resolve(s.flat / seconds(t0));
    },
  },
  {
    key: "ls -l of the flat dir",
    unit: "entries/s",
    higherIsBetter: true,
    async run(mnt, s) {
      const t0 = performance.now();
      await tool("ls", ["-l", `${mnt}/flat`]);
      return s.flat / seconds(t0);
    },
  },
  {
    key: "find over the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      const t0 = performance.now();
      await tool("find", [`${mnt}/tree`]);
      return seconds(t0);
    },
  },
  {
    key: "du over the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      const t0 = performance.now();
      await tool("du", ["-s", `${mnt}/tree`]);
      return seconds(t0);
    },
  },
  {
    key: "tar (all data) of the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      // Into a pipe: GNU tar writing to /dev/null reads no file data.
      const t0 = performance.now();
      await sh(`tar -cf - -C ${mnt} tree | cat > /dev/null`);
      return seconds(t0);
    },
  },
];

/** Samples of one row for one driver: the result, and the daemon's CPU seconds. */
interface Samples {
  values: number[];
  cpu: number[];
}

/** Per row key, per driver. */
type Results = Map<string, Map<string, Samples>>;

function record(results: Results, key: string, driver: string, value: number, cpu = NaN) {
  let row = results.get(key);
  if (!row) results.set(key, row = new Map());
  let s = row.get(driver);
  if (!s) row.set(driver, s = { values: [], cpu: [] });
  s.values.push(value);
  s.cpu.push(cpu);
}

/**
 * Mount until the root answers, then from the start of umount(8) until the device is free;
 * then, on a second mount, the same with the driver's own unmount command.
 */
async function mountRows(d: Driver, dev: string, mnt: string, results: Results): Promise<void> {
  await sh(`blockdev --flushbufs ${dev}`, true);
  const t0 = performance.now();
  await d.mount(dev, mnt);
  Deno.readDirSync(mnt)[Symbol.iterator]().next();
  record(results, "mount until the root answers (s)", d.name, seconds(t0));
  const t1 = performance.now();
  await tool("umount", [mnt]);
  record(results, "umount(8) until the device is free (s)", d.name, await untilFree(dev, t1));
  await d.mount(dev, mnt);
  const t2 = performance.now();
  await d.unmount(mnt);
  record(
    results,
    "own unmount command until the device is free (s)",
    d.name,
    await untilFree(dev, t2),
  );
}

/** One cold workload: drop caches, fresh mount, run, read the daemon's CPU and peak RSS. */
async function coldRow(
  d: Driver,
  w: Workload,
  dev: string,
  mnt: string,
  s: Sizes,
  results: Results,
  peaks: Map<string, number[]>,
): Promise<void> {
  await dropCaches();
  await d.mount(dev, mnt);
  try {
    const pid = d.daemon ? daemonOf(mnt) : undefined;
    await dropCaches();
    const cpu0 = cpuSeconds(pid);
    const value = await w.run(mnt, s);
    record(results, `${w.key} (${w.unit})`, d.name, value, cpuSeconds(pid) - cpu0);
    if (d.daemon) peaks.set(d.name, [...peaks.get(d.name) ?? [], peakRssMiB(pid)]);
  } finally {
    await tool("umount", [mnt]);
    await untilFree(dev, performance.now());
  }
}

/** The table: medians (min–max) per driver, ext4ts's ratios, the daemons' CPU seconds. */
function format(results: Results, peaks: Map<string, number[]>, names: string[]): string {
  const head = [
    "row",
    ...names,
    "ext4ts/fuse2fs",
    "ext4ts/kernel",
    ...names.filter((n) => n !== "kernel").map((n) => `${n} CPU s`),
  ];
  const body: string[][] = [];
  for (const [key, row] of results) {
    const med = (n: string) => spread(row.get(n)?.values ?? []).median;
    const higher = !key.endsWith("(s)");
    const ratio = (other: string) => {
      const r = higher ? med("ext4ts") / med(other) : med(other) / med("ext4ts");
      return Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a";
    };
    body.push([
      key,
      ...names.map((n) => showSpread(spread(row.get(n)?.values ?? []))),
      ratio("fuse2fs"),
      ratio("kernel"),
      ...names.filter((n) => n !== "kernel").map((n) => fmt(spread(row.get(n)?.cpu ?? []).median)),
    ]);
  }
  body.push([
    "daemon peak RSS (MiB, max)",
    ...names.map((n) => fmt(Math.max(...(peaks.get(n) ?? [NaN])))),
    "",
    "",
    ...names.filter((n) => n !== "kernel").map(() => ""),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  return [
    line(head),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...body.map(line),
    "(medians with min–max over the rounds; ratios > 1: ext4ts is better; CPU: the daemon's user + system seconds for that row)",
  ].join("\n") + "\n";
}

/**
 * Runs the benchmark and returns the table (and the raw samples).
 *
 * @example
 * ```ts ignore
 * console.log((await runMountBench({ quick: true, rounds: 3 })).text);
 * ```
 */
export async function runMountBench(
  options: { quick?: boolean; rounds?: number } = {},
): Promise<{ text: string; results: Results }> {
  const s: Sizes = options.quick
    ? { bigMiB: 64, flat: 2000, tree: 4000, randomReads: 500 }
    : { bigMiB: 512, flat: 10_000, tree: 20_000, randomReads: 2000 };
  const rounds = Math.max(3, options.rounds ?? 3);
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
  let dev = "";
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const results: Results = new Map();
  const peaks = new Map<string, number[]>();
  const loadBefore = loadAverage();
  try {
    const img = await buildImage(dir, s);
    dev = (await sh(`losetup -f --show --direct-io=on ${img}`)).trim();
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so no driver always runs first (or right after another's load).
      const order = DRIVERS.map((_, i) => DRIVERS[(i + r) % DRIVERS.length]);
      for (const d of order) {
        try {
          await mountRows(d, dev, mnt, results);
          for (const w of WORKLOADS) await coldRow(d, w, dev, mnt, s, results, peaks);
        } catch (e) {
          console.error(`${d.name}, round ${r + 1}: ${(e as Error).message}`);
          await sh(`umount -l ${mnt}`, true);
          await untilFree(dev, performance.now());
        }
      }
    }
  } finally {
    await sh(`umount -l ${mnt}`, true);
    if (dev) await sh(`losetup -d ${dev}`, true);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const header = `${rounds} rounds; load average before ${loadBefore}, after ${loadAverage()}; ` +
    `${s.bigMiB} MiB file, ${s.flat} files flat, ${s.tree} in the tree\n`;
  return { text: header + format(results, peaks, DRIVERS.map((d) => d.name)), results };
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--rounds");
  const rounds = at >= 0 ? Number(Deno.args[at + 1]) : undefined;
  const { text, results } = await runMountBench({
    quick: Deno.args.includes("--quick"),
    rounds,
  });
  if (Deno.args.includes("--json")) {
    const json: Record<string, Record<string, Spread & { cpu: Spread }>> = {};
    for (const [key, row] of results) {
      json[key] = {};
      for (const [n, smp] of row) json[key][n] = { ...spread(smp.values), cpu: spread(smp.cpu) };
    }
    console.log(JSON.stringify(json, null, 2));
  } else {
    console.log(text);
  }
}
