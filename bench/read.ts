/**
 * Reader benchmark: reading a big file (1 GiB) and walking / copying out a tree of small files
 * (20 000) from an image, ext4ts against `debugfs -R dump/rdump` and against the kernel (loop
 * mount) reading the same image. Needs root (loop mount), mkfs.ext4 and debugfs. The image file
 * stays in the host's page cache for everyone (best of three runs), and the kernel's filesystem
 * is mounted afresh for each run (outside the time) so it reads through its own code path
 * instead of its page cache: the numbers compare code paths, not the disk. The `ext4ts` command
 * rows include the start of a Deno process (about 0.2 s); the library rows do not.
 *
 * Usage: deno run -A bench/read.ts [--quick] [--keep]. Sizes: `EXT4TS_BENCH_READ_MIB` (the big
 * file, default 1024; `--quick` 64) and `EXT4TS_BENCH_READ_FILES` (files in the tree, default
 * 20000; `--quick` 2000). `--keep` leaves the work directory (its path is printed).
 *
 * @module
 */

import { Ext4 } from "../mod.ts";
import { type BenchRow, printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function sh(cmd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "null", stderr: "piped" })
    .output();
  if (out.code !== 0) {
    throw new Error(`${cmd}: exit ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function envInt(name: string, fallback: number): number {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}=${v}: not a positive integer`);
  return n;
}

const nothing = () => Promise.resolve();

/** Best wall time in ms of `runs` runs, each between `setup` and `teardown` (not timed). */
async function best(
  label: string,
  fn: () => Promise<void>,
  setup: () => Promise<void> = nothing,
  teardown: () => Promise<void> = nothing,
  runs = 3,
): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    await setup();
    try {
      const t0 = performance.now();
      await fn();
      min = Math.min(min, performance.now() - t0);
    } finally {
      await teardown();
    }
  }
  console.log(`  ${label.padEnd(48)} ${(min / 1000).toFixed(3)} s`);
  return min;
}

const quick = Deno.args.includes("--quick");
const bigMiB = envInt("EXT4TS_BENCH_READ_MIB", quick ? 64 : 1024);
const files = envInt("EXT4TS_BENCH_READ_FILES", quick ? 2000 : 20_000);
const perDir = 200;
const dirs = Math.ceil(files / perDir);

const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
const img = `${dir}/bench.img`;
const mnt = `${dir}/mnt`;
const tmpfs = `${dir}/tmpfs`;
const out = `${tmpfs}/out`;
let tmpfsMounted = false;

/**
 * Times `cmd` against a fresh read-only kernel mount (mount, umount and `before` outside the
 * time, so the kernel starts with a cold cache of its own).
 */
function kernel(label: string, cmd: string, before: () => Promise<void> = nothing) {
  return best(
    label,
    () => sh(cmd),
    () => before().then(() => sh(`mount -o loop,ro ${img} ${mnt}`)),
    () => sh(`umount ${mnt}`),
  );
}

await Deno.mkdir(mnt);
try {
  console.log(`building the image (${bigMiB} MiB file + ${files} files)...`);
  // Room for the big file, the tree (< 4 KiB per file) and metadata.
  const imgMiB = bigMiB + Math.ceil(files * 8 / 1024) + 128;
  await sh(`mkfs.ext4 -q -F -b 4096 ${img} ${imgMiB}M`);
  await sh(`mount -o loop ${img} ${mnt}`);
  try {
    await sh(`head -c ${bigMiB}M /dev/urandom > ${mnt}/big`);
    await sh(
      `python3 -c "
import os
n = 0
for d in range(${dirs}):
    os.makedirs('${mnt}/tree/d%03d' % d)
    for f in range(${perDir}):
        if n == ${files}: break
        with open('${mnt}/tree/d%03d/f%03d' % (d, f), 'wb') as fh:
            fh.write(os.urandom(100 + (f * 37) % 4000))
        n += 1
"`,
    );
  } finally {
    await sh(`umount ${mnt}`);
  }
  await Deno.mkdir(tmpfs);
  await sh(`mount -t tmpfs -o size=${Math.ceil(files * 8 / 1024) + 64}M tmpfs ${tmpfs}`);
  tmpfsMounted = true;
  const rows: BenchRow[] = [];
  const rate = (ms: number) => `${(bigMiB / (ms / 1000)).toFixed(0)} MiB/s`;

  console.log(`\n${bigMiB} MiB file, read sequentially:`);
  const lib = await best("ext4ts library (open + openFile stream)", async () => {
    const fs = await Ext4.open(img);
    const f = await fs.openFile("/big");
    let n = 0;
    for await (const c of f.readable()) n += c.length;
    if (n !== bigMiB * 2 ** 20) throw new Error(`read ${n} bytes`);
    await fs.close();
  });
  const cat = await best(
    "ext4ts cat > /dev/null (process start included)",
    () => sh(`deno run -A ${ROOT}cli/main.ts cat ${img} /big > /dev/null`),
  );
  const dump = await best(
    "debugfs -R 'dump /big /dev/null'",
    () => sh(`debugfs -R 'dump /big /dev/null' ${img}`),
  );
  const kcat = await kernel(
    "kernel: cat /big > /dev/null (fresh mount)",
    `cat ${mnt}/big > /dev/null`,
  );
  rows.push({
    name: `read a ${bigMiB} MiB file (library)`,
    ext4ts: lib,
    peers: { debugfs: dump, kernel: kcat },
    note: rate(lib),
  });
  rows.push({
    name: `read a ${bigMiB} MiB file (ext4ts cat)`,
    ext4ts: cat,
    peers: { debugfs: dump, kernel: kcat },
    note: rate(cat),
  });

  console.log(`\n${files}-file tree:`);
  const clean = () => Deno.remove(out, { recursive: true }).catch(() => {});
  const walk = await best("ext4ts library walk + read every file", async () => {
    const fs = await Ext4.open(img);
    let n = 0;
    for await (const { stat } of fs.walk("/tree")) {
      if (stat.type === "file") {
        await fs.read(stat.ino, 0, stat.size);
        n++;
      }
    }
    if (n !== files) throw new Error(`walked ${n} files`);
    await fs.close();
  });
  const kwalk = await kernel(
    "kernel: find -type f | xargs cat (fresh mount)",
    `find ${mnt}/tree -type f -print0 | xargs -0 cat > /dev/null`,
  );
  const get = await best(
    "ext4ts get /tree OUT (tmpfs)",
    () => sh(`deno run -A ${ROOT}cli/main.ts get ${img} /tree ${out}`),
    clean,
  );
  const rdump = await best(
    "debugfs -R 'rdump /tree OUT' (tmpfs)",
    () => sh(`debugfs -R 'rdump /tree ${out}' ${img}`),
    () => clean().then(() => Deno.mkdir(out)),
  );
  const kcp = await kernel(
    "kernel: cp -a /tree OUT (fresh mount, tmpfs)",
    `cp -a ${mnt}/tree ${out}`,
    clean,
  );
  rows.push({
    name: `walk + read ${files} files (library)`,
    ext4ts: walk,
    peers: { kernel: kwalk },
    note: `${(files / (walk / 1000)).toFixed(0)} files/s`,
  });
  rows.push({
    name: `copy out ${files} files (ext4ts get)`,
    ext4ts: get,
    peers: { debugfs: rdump, kernel: kcp },
    note: `${(files / (get / 1000)).toFixed(0)} files/s`,
  });
  printTable("Read: ext4ts vs debugfs dump/rdump and the kernel (loop mount)", rows);
} finally {
  await sh(`umount ${mnt} 2>/dev/null || true`);
  if (tmpfsMounted) await sh(`umount ${tmpfs} 2>/dev/null || true`);
  if (Deno.args.includes("--keep")) console.log(`kept ${dir}`);
  else await Deno.remove(dir, { recursive: true });
}
