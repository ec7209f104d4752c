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
 *   deno run -A bench/journal.ts [IMAGE]
 *
 * @module
 */

import { openBlockDevice } from "../ffi/file_device.ts";
import { replayJournal } from "../lib/journal/replay.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const src = Deno.args[0] ?? `${ROOT}.work/large/large_2g_j128m/crash.img.gz`;
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
  await sh(`cp --sparse=always "$1" "$2"; cp --sparse=always "$1" "$3"`, pre, a, b);

  await dropCaches();
  let t0 = performance.now();
  await sh(`e2fsck -y -E journal_only "$1" >/dev/null 2>&1`, a);
  const e2fsckMs = performance.now() - t0;

  await dropCaches();
  t0 = performance.now();
  const dev = openBlockDevice(b, { readOnly: false });
  const r = await replayJournal(dev, { now: 2000000000 });
  await dev.close();
  const oursMs = performance.now() - t0;

  const plan = r.prepared?.plan;
  console.log(
    `image: ${src}\njournal: ${plan?.transactions.length ?? 0} transactions, ` +
      `${plan?.writes.length ?? 0} block writes, ${r.blocksWritten.length} blocks changed`,
  );
  console.log(`e2fsck -E journal_only: ${(e2fsckMs / 1000).toFixed(2)} s`);
  console.log(`ext4ts journal replay:  ${(oursMs / 1000).toFixed(2)} s`);
  console.log(`ratio ext4ts / e2fsck:  ${(oursMs / e2fsckMs).toFixed(2)}`);
  const cmp = await new Deno.Command("cmp", { args: ["-l", a, b], stdout: "piped" }).output();
  const bytes = new TextDecoder().decode(cmp.stdout).trim().split("\n").filter((l) => l)
    .map((l) => Number(l.trim().split(/\s+/)[0]) - 1);
  const blocks = new Set(bytes.map((o) => Math.floor(o / 4096)));
  console.log(
    `blocks differing from e2fsck's result: ${[...blocks].join(", ") || "none"} ` +
      `(block 0 holds the superblock)`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
