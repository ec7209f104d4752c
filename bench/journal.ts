/**
 * Benchmark: journal replay of a 2 GiB filesystem with a full 128 MiB journal, ext4ts
 * against `e2fsck -y -E journal_only` on copies of the same image, printing both times and
 * the ratio, and checking that both results are the same outside the superblock.
 *
 * The image is the corpus generator's timing case:
 *   sudo tests/corpus/make_journal_cases.sh -o .work/large large
 * which leaves .work/large/large_2g_j128m/crash.img.gz (or pass another pre-replay image,
 * gzipped or not, as the first argument).
 *
 *   deno run -A bench/journal.ts [--runs N] [IMAGE]
 *
 * Three contenders, each on a fresh copy from a cold page cache: e2fsck, `replayJournal`
 * called in this process, and `ext4ts journal replay` as a one-shot process (Deno start-up,
 * module loading and a cold JIT included, as a user runs it; `ext4ts journal --help` from a
 * cold cache is timed too, to tell that start-up from the replay). With `--runs N` they take
 * turns N times (the machine may be shared and noisy) and the medians are printed.
 *
 * @module
 */

import { openBlockDevice } from "../ffi/file_device.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const args = [...Deno.args];
let runs = 1;
const at = args.indexOf("--runs");
if (at >= 0) {
  runs = Number(args[at + 1]);
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs takes a positive integer");
  args.splice(at, 2);
}
const src = args[0] ?? `${ROOT}.work/large/large_2g_j128m/crash.img.gz`;
const E2ENV = {
  E2FSCK_CONFIG: "/dev/null",
  E2FSPROGS_SKIP_PROGRESS: "yes",
  TZ: "GMT0",
  E2FSCK_TIME: "2000000000",
  PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`,
};

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const r = await new Deno.Command("sh", { args: ["-c", cmd, "sh", ...args], env: E2ENV })
    .output();
  if (r.code !== 0 && !cmd.startsWith("e2fsck")) {
    throw new Error(`${cmd}: ${new TextDecoder().decode(r.stderr)}`);
  }
}

async function dropCaches(): Promise<void> {
  // Both contenders start from a cold page cache when we may drop it (root).
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true");
}

try {
  Deno.statSync(src);
} catch {
  console.error(
    `no benchmark image at ${src}\nmake it with: sudo tests/corpus/make_journal_cases.sh ` +
      `-o .work/large large   (about 2 minutes)`,
  );
  Deno.exit(1);
}

const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
try {
  const pre = `${dir}/pre.img`;
  if (src.endsWith(".gz")) await sh(`gzip -dc "$1" | cp --sparse=always /dev/stdin "$2"`, src, pre);
  else await sh(`cp --sparse=always "$1" "$2"`, src, pre);
  const a = `${dir}/e2fsck.img`;
  const b = `${dir}/ext4ts.img`;
  const c = `${dir}/cli.img`;
  const times: Record<"e2fsck" | "ext4ts" | "cli" | "start", number[]> = {
    e2fsck: [],
    ext4ts: [],
    cli: [],
    start: [],
  };
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const secs = (ms: number) => (ms / 1000).toFixed(2);
  let r: Awaited<ReturnType<typeof replayJournal>> | undefined;
  for (let run = 0; run < runs; run++) {
    await sh(`cp --sparse=always "$1" "$2"; cp --sparse=always "$1" "$3"`, pre, a, b);
    await sh(`cp --sparse=always "$1" "$2"`, pre, c);

    await dropCaches();
    let t0 = performance.now();
    await sh(`e2fsck -y -E journal_only "$1" >/dev/null 2>&1`, a);
    times.e2fsck.push(performance.now() - t0);

    await dropCaches();
    t0 = performance.now();
    const dev = openBlockDevice(b, { readOnly: false });
    r = await replayJournal(dev, { now: 2000000000 });
    await dev.close();
    times.ext4ts.push(performance.now() - t0);

    await dropCaches();
    t0 = performance.now();
    const cli = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}cli/main.ts`, "journal", "replay", c],
      stdout: "null",
      stderr: "piped",
    }).output();
    times.cli.push(performance.now() - t0);
    if (cli.code !== 0) {
      throw new Error(`ext4ts journal replay: ${new TextDecoder().decode(cli.stderr)}`);
    }
    await dropCaches();
    t0 = performance.now();
    await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}cli/main.ts`, "journal", "--help"],
      stdout: "null",
    }).output();
    times.start.push(performance.now() - t0);
    if (runs > 1) {
      console.log(
        `run ${run + 1}: e2fsck ${secs(times.e2fsck[run])} s, ext4ts ${secs(times.ext4ts[run])} ` +
          `s, ext4ts CLI ${secs(times.cli[run])} s, start-up ${secs(times.start[run])} s`,
      );
    }
  }
  const e2fsckMs = median(times.e2fsck);
  const oursMs = median(times.ext4ts);
  const cliMs = median(times.cli);
  const startMs = median(times.start);
  const med = runs > 1 ? ` (median of ${runs})` : "";

  const plan = r?.prepared?.plan;
  console.log(
    `image: ${src}\njournal: ${plan?.transactions.length ?? 0} transactions, ` +
      `${plan?.writes.length ?? 0} block writes, ${r?.blocksWritten.length} blocks changed`,
  );
  console.log(`e2fsck -E journal_only:      ${secs(e2fsckMs)} s${med}`);
  console.log(`ext4ts journal replay:       ${secs(oursMs)} s${med}`);
  console.log(`ext4ts journal replay (CLI): ${secs(cliMs)} s${med}`);
  console.log(`ext4ts start-up alone:       ${secs(startMs)} s${med} (journal --help)`);
  console.log(`ratio ext4ts / e2fsck:       ${(oursMs / e2fsckMs).toFixed(2)}`);
  console.log(`ratio ext4ts CLI / e2fsck:   ${(cliMs / e2fsckMs).toFixed(2)}`);
  for (const [name, img] of [["ext4ts", b], ["ext4ts CLI", c]]) {
    const cmp = await new Deno.Command("cmp", { args: ["-l", a, img], stdout: "piped" }).output();
    const bytes = new TextDecoder().decode(cmp.stdout).trim().split("\n").filter((l) => l)
      .map((l) => Number(l.trim().split(/\s+/)[0]) - 1);
    const blocks = new Set(bytes.map((o) => Math.floor(o / 4096)));
    console.log(
      `blocks where ${name} differs from e2fsck's result: ${[...blocks].join(", ") || "none"} ` +
        `(block 0 holds the superblock${
          name === "ext4ts CLI" ? "; the CLI stamps released orphans with the time of day" : ""
        })`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
