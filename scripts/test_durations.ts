/**
 * Prints how long each test file took, slowest first, from the JUnit report that
 * `deno test --junit-path` writes: the sum of the file's top-level tests (steps are inside
 * their test's time; module loading is not counted). Under `--parallel` files overlap, so the
 * sum over files exceeds the wall time.
 *
 * Usage: deno run --allow-read scripts/test_durations.ts REPORT.xml
 *
 * @module
 */

const report = Deno.args[0];
if (!report) {
  console.error("usage: test_durations.ts REPORT.xml");
  Deno.exit(2);
}
const xml = await Deno.readTextFile(report);
const seconds = new Map<string, number>();
for (const m of xml.matchAll(/<testcase name="([^"]*)" classname="([^"]*)" time="([0-9.]+)"/g)) {
  const [, name, file, time] = m;
  if (name.includes(" &gt; ")) continue; // a step: already inside its test's time
  seconds.set(file, (seconds.get(file) ?? 0) + Number(time));
}
const rows = [...seconds].sort((a, b) => b[1] - a[1]);
console.log("test durations per file (sum of its tests, seconds; files run in parallel):");
for (const [file, s] of rows) console.log(`${s.toFixed(1).padStart(8)}  ${file}`);
