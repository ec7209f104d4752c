/**
 * The in-process side of bench/write_journal.ts: runs one workload on an image in this Deno
 * process and prints one JSON line on stdout: wall milliseconds from the open to the durable
 * close, the CPU seconds (user + system, all threads) spent in that span, this process's peak
 * RSS, and the time of each phase. Deno's start-up and module loading are outside the timed
 * span.
 *
 * Workloads:
 * - `churn IMG FILES INTERVAL`: `Ext4.open` the image writable (`commitInterval: INTERVAL`
 *   seconds; 0: every operation commits and is durable before it returns), make `/churn`,
 *   write FILES small files into it (1–4 000 bytes each, one data block), unlink them all,
 *   close.
 * - `put IMG SRC [ROOT]`: the put command's own code in process (`withWriter` + `putTree` of
 *   cli/), copying host tree SRC into `/`; with ROOT, that code is loaded from another
 *   checkout of ext4ts (an older commit), so the same timing wraps the old code.
 *
 * Usage: `deno run -A bench/write_worker.ts churn IMG FILES INTERVAL | put IMG SRC [ROOT]`
 *
 * @module
 */

import { cpuSeconds, peakRssMiB } from "./lib.ts";

/** What the worker prints (one JSON line). */
export interface WorkerResult {
  ms: number;
  cpuS: number;
  peakMiB: number;
  /** Milliseconds per phase, in order (e.g. create, unlink, close). */
  phases: Record<string, number>;
}

/**
 * Create then unlink `files` small files in one directory, one transaction each (or grouped).
 * `Ext4` is imported for this workload only, so a put of another checkout's code does not carry
 * this checkout's modules in its peak RSS.
 */
async function churn(
  Ext4: typeof import("../ffi/open_filesystem.ts").Ext4,
  img: string,
  files: number,
  interval: number,
): Promise<Record<string, number>> {
  const phases: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    phases[name] = now - t;
    t = now;
  };
  const fs = await Ext4.open(img, { readOnly: false, commitInterval: interval });
  try {
    await fs.mkdir("/churn");
    const data = new Uint8Array(4000).fill(0x5a);
    for (let i = 0; i < files; i++) {
      await fs.writeFile(`/churn/f${i}`, data.subarray(0, 1 + (i * 7919) % 4000));
    }
    lap("create");
    for (let i = 0; i < files; i++) await fs.remove(`/churn/f${i}`);
    lap("unlink");
  } finally {
    await fs.close();
  }
  lap("close");
  return phases;
}

/**
 * The put command's code (cli/commands/put.ts) from this checkout or from `root`, loaded (and
 * compiled) now; the returned function is the timed part.
 */
async function loadPut(
  img: string,
  src: string,
  root?: string,
): Promise<() => Promise<Record<string, number>>> {
  type PutModule = typeof import("../cli/commands/put.ts");
  type OpenModule = typeof import("../cli/writer_open.ts");
  const base = root
    ? new URL(`file://${root.replace(/\/?$/, "/")}`)
    : new URL("..", import.meta.url);
  const { putTree }: PutModule = await import(new URL("cli/commands/put.ts", base).href);
  const { withWriter }: OpenModule = await import(new URL("cli/writer_open.ts", base).href);
  return async () => {
    await withWriter(img, {}, (w) => putTree(w, src, "/"));
    return {};
  };
}

if (import.meta.main) {
  const [workload, img, ...rest] = Deno.args;
  // Modules are loaded (and compiled) before the clock starts.
  let run: (() => Promise<Record<string, number>>) | null = null;
  if (workload === "churn") {
    const { Ext4 } = await import("../ffi/open_filesystem.ts");
    run = () => churn(Ext4, img, Number(rest[0]), Number(rest[1]));
  } else if (workload === "put") {
    run = await loadPut(img, rest[0], rest[1]);
  }
  if (!run || !img) {
    console.error("usage: write_worker.ts churn IMG FILES INTERVAL | put IMG SRC [ROOT]");
    Deno.exit(2);
  }
  const cpu0 = cpuSeconds(Deno.pid);
  const t0 = performance.now();
  const phases = await run();
  const result: WorkerResult = {
    ms: performance.now() - t0,
    cpuS: cpuSeconds(Deno.pid) - cpu0,
    peakMiB: peakRssMiB(Deno.pid),
    phases,
  };
  console.log(JSON.stringify(result));
}
