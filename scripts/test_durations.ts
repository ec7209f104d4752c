/**
 * Prints how long each test file took, slowest first, from the output of
 * `deno test --parallel` (lines `./tests/FILE => NAME ... ok (TIME)`): the sum of the file's
 * top-level tests (steps are inside their test's time; module loading is not counted). Files
 * run in parallel, so the sum over files exceeds the wall time. (Deno's JUnit report groups a
 * test by the file that called Deno.test — tests/helpers.ts for every `testWith` test — so the
 * console output, which names the test file, is read instead.)
 *
 * Usage: deno run --allow-read scripts/test_durations.ts TEST-OUTPUT.log
 *
 * @module
 */

const UNITS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, "µs": 1e-6, ns: 1e-9 };

/** Seconds of a duration as deno test prints it: `654µs`, `17ms`, `3s`, `11m7s`, `1h2m`. */
export function parseDuration(text: string): number {
  let total = 0;
  for (const m of text.matchAll(/([0-9.]+)\s*(h|ms|µs|ns|m|s)/g)) {
    total += Number(m[1]) * UNITS[m[2]];
  }
  return total;
}

if (import.meta.main) {
  const log = Deno.args[0];
  if (!log) {
    console.error("usage: test_durations.ts TEST-OUTPUT.log");
    Deno.exit(2);
  }
  const seconds = new Map<string, number>();
  for (const line of Deno.readTextFileSync(log).split("\n")) {
    // A top-level test has one " ... " before its result; a step has more.
    const m = line.match(/^(\S+) => (.*?) \.\.\. (?:ok|FAILED|ignored)\b.*\(([^()]+)\)$/);
    if (!m || m[2].includes(" ... ")) continue;
    seconds.set(m[1], (seconds.get(m[1]) ?? 0) + parseDuration(m[3]));
  }
  const rows = [...seconds].sort((a, b) => b[1] - a[1]);
  console.log("test durations per file (sum of its tests, seconds; files run in parallel):");
  for (const [file, s] of rows) console.log(`${s.toFixed(1).padStart(8)}  ${file}`);
}
