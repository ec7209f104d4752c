/**
 * What the jbd2 journal costs the write path (issue 12's benchmark), part of
 * `deno task bench write`:
 *
 * - create then unlink N small files through the library, (a) one commit per operation
 *   (each durable before the next), (b) with group commit (`commitInterval`);
 * - the put command's code in process (an untar-like copy of a host tree);
 * each on a journaled image and on the same image made with `-O ^has_journal` (written in
 * place), and the put also with the code of the last commit before the journal;
 * - `ext4ts put` (the CLI from source, Deno start-up included) now against that commit,
 *   checked out into a temporary git worktree and run the same way.
 *
 * Honest by construction: the variants of a row are interleaved over the rounds (their order
 * rotates each round) and every cell is a median with its min–max; every run starts from a
 * fresh mkfs of the same size and features (only `has_journal` differs) and dropped caches
 * (host tree and Deno's files read back once before the clock starts); library rows are timed
 * inside the worker process (bench/write_worker.ts), from the open to the durable close, with
 * its CPU seconds and peak RSS; every result is checked with `e2fsck -fn`; the machine's load
 * is printed before and after.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { fmt, fsckClean, loadAverage, sh, showSpread, spread } from "./lib.ts";
import type { WorkerResult } from "./write_worker.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = fileURLToPath(new URL("write_worker.ts", import.meta.url));
const deno = Deno.execPath();

/** The last commit whose writer committed in place (before every commit went through jbd2). */
export const BEFORE_JOURNAL = "b2b6382";

/** One measurement: wall ms, CPU seconds and peak RSS (MiB) of the process doing the work. */
interface Sample {
  ms: number;
  cpuS: number;
  peakMiB: number;
}

interface Variant {
  name: string;
  /** mkfs without a journal (`-O ^has_journal`). */
  noJournal?: boolean;
  run(img: string): Promise<Sample>;
  /** Before the clock: what the run reads besides the image (host tree, Deno's files). */
  warm?(): Promise<void>;
}

interface Workload {
  name: string;
  imageMiB: number;
  variants: Variant[];
  /** Ratios printed under the row: [label, numerator variant, denominator variant]. */
  ratios: [string, string, string][];
}

/** Options of {@link runJournalCost}. */
export interface JournalCostOptions {
  /** A host tree (made by bench/write.ts) to put, its entry count and the image size for it. */
  tree: string;
  treeEntries: number;
  treeImageMiB: number;
  /** Files created then unlinked in the churn rows. */
  churnFiles: number;
  /** `commitInterval` of the group-commit row, seconds. */
  commitInterval: number;
  rounds: number;
  /** The commit compared with now (default {@link BEFORE_JOURNAL}). */
  before?: string;
  work: string;
}

async function worker(args: string[]): Promise<Sample> {
  const out = await sh(deno, ["run", "--allow-all", WORKER, ...args]);
  const r = JSON.parse(out.trim().split("\n").pop()!) as WorkerResult;
  return { ms: r.ms, cpuS: r.cpuS, peakMiB: r.peakMiB };
}

/** `ext4ts put IMG SRC /` from the sources in `root`, timed from outside with /usr/bin/time. */
async function cliPut(root: string, img: string, src: string, work: string): Promise<Sample> {
  const times = `${work}/time.txt`;
  const t0 = performance.now();
  await sh("/usr/bin/time", [
    "-f",
    "%U %S %M",
    "-o",
    times,
    deno,
    "run",
    "--allow-all",
    `${root}/cli/main.ts`,
    "put",
    img,
    src,
    "/",
  ]);
  const ms = performance.now() - t0;
  const [u, s, kib] = (await Deno.readTextFile(times)).trim().split("\n").pop()!.split(" ").map(
    Number,
  );
  return { ms, cpuS: u + s, peakMiB: kib / 1024 };
}

async function dropCaches(): Promise<void> {
  await sh("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
}

/** The host tree's data into the page cache (through a pipe: tar to /dev/null reads nothing). */
const warmTree = (tree: string) => () =>
  sh("sh", ["-c", `tar -cf - ${tree} | cat > /dev/null`]).then(() => {});

/** Deno's files for a checkout (sources, code cache) into the page cache. */
const warmCli = (root: string) => () =>
  sh(deno, ["run", "--allow-all", `${root}/cli/main.ts`, "--version"]).then(() => {});

function workloads(o: JournalCostOptions, beforeRoot: string, before: string): Workload[] {
  const churn = (interval: number): Variant[] => [
    { name: "journal", run: (img) => worker(["churn", img, `${o.churnFiles}`, `${interval}`]) },
    {
      name: "no journal",
      noJournal: true,
      run: (img) => worker(["churn", img, `${o.churnFiles}`, `${interval}`]),
    },
  ];
  const journalRatio: [string, string, string] = ["journal/no journal", "journal", "no journal"];
  const tree = `${o.treeEntries}-entry tree`;
  return [
    {
      name: `create + unlink ${o.churnFiles} small files, one commit per operation (library)`,
      imageMiB: 256,
      variants: churn(0),
      ratios: [journalRatio],
    },
    {
      name: `create + unlink ${o.churnFiles} small files, commitInterval ${o.commitInterval} s`,
      imageMiB: 256,
      variants: churn(o.commitInterval),
      ratios: [journalRatio],
    },
    {
      name: `put of a ${tree}, in process (untar-like)`,
      imageMiB: o.treeImageMiB,
      variants: [
        { name: "journal", run: (img) => worker(["put", img, o.tree]), warm: warmTree(o.tree) },
        {
          name: "no journal",
          noJournal: true,
          run: (img) => worker(["put", img, o.tree]),
          warm: warmTree(o.tree),
        },
        {
          name: `journal, ${before}`,
          run: (img) => worker(["put", img, o.tree, beforeRoot]),
          warm: warmTree(o.tree),
        },
      ],
      ratios: [journalRatio, ["now/before", "journal", `journal, ${before}`]],
    },
    {
      name: `ext4ts put of a ${tree} (CLI from source, Deno start-up included)`,
      imageMiB: o.treeImageMiB,
      variants: [
        {
          name: "now",
          run: (img) => cliPut(ROOT, img, o.tree, o.work),
          warm: () => warmTree(o.tree)().then(warmCli(ROOT)),
        },
        {
          name: before,
          run: (img) => cliPut(beforeRoot, img, o.tree, o.work),
          warm: () => warmTree(o.tree)().then(warmCli(beforeRoot)),
        },
      ],
      ratios: [["now/before", "now", before]],
    },
  ];
}

/** Samples per workload, per variant; and the runs e2fsck did not pass. */
type Results = Map<string, Map<string, Sample[]>>;

function format(list: Workload[], results: Results, unclean: string[]): string {
  const head = ["workload / variant", "wall s", "CPU s", "peak RSS MiB", "e2fsck -fn"];
  const body: string[][] = [];
  for (const w of list) {
    body.push([w.name, "", "", "", ""]);
    const row = results.get(w.name) ?? new Map<string, Sample[]>();
    for (const v of w.variants) {
      const s = row.get(v.name) ?? [];
      const bad = unclean.filter((u) => u === `${w.name}: ${v.name}`).length;
      body.push([
        `  ${v.name}`,
        showSpread(spread(s.map((x) => x.ms / 1000))),
        showSpread(spread(s.map((x) => x.cpuS))),
        fmt(Math.max(...s.map((x) => x.peakMiB))),
        s.length ? (bad ? `NOT clean ×${bad}` : `clean ×${s.length}`) : "n/a",
      ]);
    }
    for (const [label, num, den] of w.ratios) {
      const med = (name: string, f: (x: Sample) => number) =>
        spread((row.get(name) ?? []).map(f)).median;
      const ratio = (f: (x: Sample) => number) => `${(med(num, f) / med(den, f)).toFixed(2)}×`;
      body.push([
        `  ${label}`,
        ratio((x) => x.ms),
        ratio((x) => x.cpuS),
        ratio((x) => x.peakMiB),
        "",
      ]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

/**
 * Runs the journal-cost rows and returns their table (medians with min–max over the rounds,
 * CPU seconds, peak RSS, ratios, e2fsck verdicts), headed by the date, load and sizes.
 *
 * @example
 * ```ts ignore
 * console.log(await runJournalCost({ tree, treeEntries: 2000, treeImageMiB: 128,
 *   churnFiles: 2000, commitInterval: 5, rounds: 3, work }));
 * ```
 */
export async function runJournalCost(o: JournalCostOptions): Promise<string> {
  const before = o.before ?? BEFORE_JOURNAL;
  const beforeRoot = await Deno.makeTempDir({ prefix: `ext4ts-${before}-` });
  const loadBefore = loadAverage();
  const started = new Date().toISOString().slice(0, 16).replace("T", " ");
  const results: Results = new Map();
  const unclean: string[] = [];
  const list = workloads(o, beforeRoot, before);
  const img = `${o.work}/journal-cost.img`;
  await sh("git", ["-C", ROOT, "worktree", "add", "--detach", beforeRoot, before]);
  try {
    for (let r = 0; r < o.rounds; r++) {
      for (const w of list) {
        // Rotate the order so no variant always runs first (or right after another's load).
        const order = w.variants.map((_, i) => w.variants[(i + r) % w.variants.length]);
        for (const v of order) {
          await Deno.remove(img).catch(() => {});
          await sh("mkfs.ext4", [
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=1",
            ...(v.noJournal ? ["-O", "^has_journal"] : []),
            img,
            `${w.imageMiB}M`,
          ]);
          await dropCaches();
          await v.warm?.();
          try {
            const s = await v.run(img);
            if (!(await fsckClean(img))) unclean.push(`${w.name}: ${v.name}`);
            let row = results.get(w.name);
            if (!row) results.set(w.name, row = new Map());
            row.set(v.name, [...row.get(v.name) ?? [], s]);
          } catch (e) {
            console.error(`${w.name}: ${v.name}, round ${r + 1}: ${(e as Error).message}`);
          }
          console.error(`round ${r + 1}/${o.rounds}: ${w.name}: ${v.name} done`);
        }
      }
    }
  } finally {
    await Deno.remove(img).catch(() => {});
    await sh("git", ["-C", ROOT, "worktree", "remove", "--force", beforeRoot]).catch(() => {});
    await Deno.remove(beforeRoot, { recursive: true }).catch(() => {});
  }
  return `${started} UTC, ${o.rounds} rounds, ${navigator.hardwareConcurrency} CPUs; ` +
    `load average before ${loadBefore}, after ${loadAverage()}\n` +
    `(medians with min–max; CPU: user + system seconds of the process doing the work; ` +
    `peak RSS: that process's; ratios of medians)\n` + format(list, results, unclean);
}
