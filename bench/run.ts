/**
 * `deno task bench`: every benchmark, printed as tables of ext4ts against its peers.
 * Pass names to run only some: `deno task bench probe`.
 *
 * @module
 */

import { type BenchRow, printTable } from "./lib.ts";
import { benchProbe } from "./probe.ts";

const SUITES: Record<string, { title: string; run: () => Promise<BenchRow[]> }> = {
  probe: { title: "Foundation: checksums and probe", run: benchProbe },
};

const wanted = Deno.args.length ? Deno.args : Object.keys(SUITES);
for (const name of wanted) {
  const suite = SUITES[name];
  if (!suite) {
    console.error(`bench: unknown suite '${name}' (have: ${Object.keys(SUITES).join(", ")})`);
    Deno.exit(2);
  }
  printTable(suite.title, await suite.run());
}
