/**
 * `deno task bench`: every benchmark. The foundation suite runs in this process and prints a
 * table; the reader, journal, mount and write suites are scripts of their own (they need root, loop
 * devices and the kernel, and print their tables with ratios against debugfs, e2fsck,
 * fuse2fs, kernel ext4 and mke2fs -d; extent: in-place extent tree edits against whole-tree
 * rebuilds; startup: the installed bundle against `deno run` from source). Pass names to run only
 * some: `deno task bench probe mount`.
 *
 * @module
 */

import { printTable } from "./lib.ts";
import { benchProbe } from "./probe.ts";

const SCRIPTS: Record<string, string> = {
  read: "read.ts",
  journal: "journal.ts",
  mount: "mount.ts",
  extent: "extent.ts",
  dir: "dir.ts",
  write: "write.ts",
  startup: "startup.ts",
};
const ALL = ["probe", ...Object.keys(SCRIPTS)];

const wanted = Deno.args.length ? Deno.args : ALL;
let failed = false;
for (const name of wanted) {
  if (name === "probe") {
    printTable("Foundation: checksums and probe", await benchProbe());
    continue;
  }
  const script = SCRIPTS[name];
  if (!script) {
    console.error(`bench: unknown suite '${name}' (have: ${ALL.join(", ")})`);
    Deno.exit(2);
  }
  console.log(`\n## ${name} (bench/${script})\n`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(script, import.meta.url).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) {
    console.error(`bench: ${name} failed (exit ${out.code})`);
    failed = true;
  }
}
if (failed) Deno.exit(1);
