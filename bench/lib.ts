/**
 * Benchmark helpers: median timings and a table that prints ext4ts against its peers
 * (fuse2fs, kernel ext4, e2fsprogs) as ratios.
 *
 * @module
 */

/** One benchmark row: times in milliseconds (lower is better) for ext4ts and each peer. */
export interface BenchRow {
  name: string;
  ext4ts: number;
  peers: Record<string, number>;
  /** Optional throughput note, e.g. "1.2 GB/s". */
  note?: string;
}

/** Median wall time in ms of `runs` calls of `fn` (after one warm-up call unless `warm` is false). */
export async function medianMs(
  fn: () => Promise<unknown> | unknown,
  runs = 5,
  warm = true,
): Promise<number> {
  if (warm) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Median, minimum and maximum of some samples. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  samples: number;
}

/**
 * The median (the mean of the middle two for an even count) with the range, so a table
 * shows how far one run can be from another on a loaded machine.
 *
 * @example
 * ```ts
 * import { spread } from "./lib.ts";
 * console.log(spread([3, 1, 2])); // { median: 2, min: 1, max: 3, samples: 3 }
 * ```
 */
export function spread(xs: number[]): Spread {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return { median: NaN, min: NaN, max: NaN, samples: 0 };
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], samples: s.length };
}

/** The machine's load averages (1, 5, 15 minutes) as /proc/loadavg says, for the report. */
export function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

/** User + system CPU seconds of a process so far (clock ticks are 100 Hz on Linux/x86-64). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime: fields 14 and 15
  } catch {
    return NaN;
  }
}

/** Peak resident set (VmHWM) of a process in MiB. */
export function peakRssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** A number for a table: fewer decimals as it grows, "n/a" when not finite. */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** "median (min–max)" of a {@link Spread}. */
export function showSpread(s: Spread): string {
  return s.samples ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : "n/a";
}

/** True when `e2fsck -fn` finds nothing to fix in `img`. */
export async function fsckClean(img: string): Promise<boolean> {
  const out = await new Deno.Command("e2fsck", {
    args: ["-fn", img],
    stdout: "null",
    stderr: "null",
  })
    .output();
  return out.code === 0;
}

/** Runs a command to completion and throws if it fails. */
export async function sh(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Prints rows as a table with `peer / ext4ts` ratios (above 1: ext4ts is faster). */
export function printTable(title: string, rows: BenchRow[]): void {
  const peers = [...new Set(rows.flatMap((r) => Object.keys(r.peers)))];
  const head = [
    "benchmark",
    "ext4ts ms",
    ...peers.flatMap((p) => [`${p} ms`, `${p}/ext4ts`]),
    "note",
  ];
  const body = rows.map((r) => [
    r.name,
    r.ext4ts.toFixed(2),
    ...peers.flatMap((p) =>
      r.peers[p] === undefined
        ? ["-", "-"]
        : [r.peers[p].toFixed(2), (r.peers[p] / r.ext4ts).toFixed(2) + "x"]
    ),
    r.note ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  console.log(`\n## ${title}\n`);
  console.log(fmt(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(fmt(b));
}
