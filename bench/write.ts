/**
 * Write benchmark: building an image from a host tree, and writing one big file, with
 * `ext4ts put` against `mke2fs -d`, the kernel's ext4 (loop mount, `cp -a`, umount) and
 * fuse2fs (`cp -a` into its mount, unmount), all on images of the same size and features,
 * in one run. Every contender starts from nothing (mkfs is inside the time) and ends with
 * the image durable (fsync of the image file), and every result must pass `e2fsck -fn`.
 * Host files are read once before timing, so every contender reads them from the page cache.
 *
 * Usage (root): `deno run -A bench/write.ts [--quick]`. Sizes: `EXT4TS_BENCH_WRITE_FILES`
 * (files in the tree, default 20000; `--quick` 2000) and `EXT4TS_BENCH_WRITE_MIB` (the big
 * file, default 1024; `--quick` 128). `EXT4TS_BENCH_WRITE_SKIP=fuse2fs,...` leaves
 * contenders out.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type BenchRow, fsckClean, printTable } from "./lib.ts";
import { runJournalCost } from "./write_journal.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const dec = new TextDecoder();
const deno = Deno.execPath();

async function sh(script: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`${script}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function envInt(name: string, fallback: number): number {
  const v = Deno.env.get(name);
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}=${v} is not a positive integer`);
  return n;
}

/**
 * A deterministic tree of `files` entries: one directory per ~100 entries (nested up to
 * three deep), mostly small files (exponential sizes, mean 4 KiB), 5 % symlinks, 1 % hard
 * links.
 */
async function makeTree(root: string, files: number): Promise<number> {
  const out = await sh(`python3 -c "
import os, random
random.seed(6)
root = '${root}'
os.mkdir(root)
dirs = [root]
for d in range(max(1, ${files} // 100)):
    p = os.path.join(random.choice(dirs[-30:] if len(dirs) > 1 else dirs), 'd%04d' % d)
    if p.count('/') - root.count('/') > 3: p = os.path.join(root, 'd%04d' % d)
    os.mkdir(p)
    dirs.append(p)
blob = os.urandom(1 << 20)
made = []
total = 0
for i in range(${files}):
    d = random.choice(dirs)
    p = os.path.join(d, 'f%05d' % i)
    r = random.random()
    if r < 0.05:
        os.symlink('../target/%d' % i, p)
    elif r < 0.06 and made:
        os.link(random.choice(made), p)
    else:
        n = min(int(random.expovariate(1 / 4096)), len(blob))
        o = random.randrange(0, len(blob) - n + 1)
        with open(p, 'wb') as f: f.write(blob[o:o + n])
        made.append(p)
        total += n
print(total)
"`);
  return Number(out.trim());
}

interface Contender {
  name: string;
  /**
   * From nothing to a durable image at `img` holding `src` (a directory's contents or a
   * file). Returns the CPU seconds (user + system) of the copying process where it has one.
   */
  build(src: string, img: string, sizeMiB: number, work: string): Promise<number | void>;
}

const TIME = "/usr/bin/time";
const HAVE_TIME = (() => {
  try {
    return Deno.statSync(TIME).isFile;
  } catch {
    return false;
  }
})();

/**
 * Runs `cmd` and returns its CPU seconds (user + system) when /usr/bin/time is there: on a
 * loaded machine wall times swing, CPU times much less.
 */
async function cpuOf(cmd: string, work: string): Promise<number | void> {
  if (!HAVE_TIME) return void await sh(cmd);
  const out = `${work}/cpu.txt`;
  await sh(`${TIME} -f "%U %S" -o ${out} ${cmd}`);
  const [u, s] = (await Deno.readTextFile(out)).trim().split(/\s+/).slice(-2).map(Number);
  return u + s;
}

const MKFS = "mkfs.ext4 -q -F -E lazy_itable_init=1";

const CONTENDERS: Contender[] = [
  {
    name: "ext4ts",
    async build(src, img, sizeMiB, work) {
      await sh(`${MKFS} ${img} ${sizeMiB}M`);
      return await cpuOf(`${deno} run --allow-all ${ROOT}cli/main.ts put ${img} ${src} /`, work);
    },
  },
  {
    name: "mke2fs -d",
    async build(src, img, sizeMiB, work) {
      // mke2fs -d takes a directory: a single file goes in through one of its own.
      let dir = src;
      if (!(await Deno.stat(src)).isDirectory) {
        dir = `${work}/single`;
        await Deno.mkdir(dir, { recursive: true });
        await sh(`ln -f ${src} ${dir}/`);
      }
      return await cpuOf(
        `${MKFS.replace("mkfs.ext4", "mke2fs -t ext4")} -d ${dir} ${img} ${sizeMiB}M`,
        work,
      );
    },
  },
  {
    name: "kernel",
    async build(src, img, sizeMiB, work) {
      await sh(`${MKFS} ${img} ${sizeMiB}M`);
      const mnt = `${work}/kmnt`;
      await Deno.mkdir(mnt, { recursive: true });
      await sh(`mount -t ext4 -o loop ${img} ${mnt}`);
      try {
        await sh(`cp -a ${src} ${mnt}/`);
      } finally {
        await sh(`umount ${mnt}`);
      }
      await sh(`sync ${img}`);
    },
  },
  {
    name: "fuse2fs",
    async build(src, img, sizeMiB, work) {
      await sh(`${MKFS} ${img} ${sizeMiB}M`);
      const mnt = `${work}/fmnt`;
      await Deno.mkdir(mnt, { recursive: true });
      // In the foreground, so its exit (the image closed and flushed) is what we wait for.
      const child = new Deno.Command("fuse2fs", {
        args: ["-f", img, mnt],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const done = child.output();
      try {
        for (let i = 0; !(await sh(`cat /proc/self/mountinfo`)).includes(` ${mnt} `); i++) {
          if (i > 500) throw new Error("fuse2fs did not mount");
          await new Promise((r) => setTimeout(r, 10));
        }
        await sh(`cp -a ${src} ${mnt}/`);
      } finally {
        await sh(`fusermount -u ${mnt} || umount ${mnt}`).catch(() => {});
      }
      const out = await done;
      if (!out.success) throw new Error(`fuse2fs: ${dec.decode(out.stderr).trim()}`);
      await sh(`sync ${img}`);
    },
  },
];

async function race(
  label: string,
  src: string,
  sizeMiB: number,
  work: string,
  skip: Set<string>,
): Promise<{ times: Map<string, number>; cpu: Map<string, number>; unclean: string[] }> {
  const times = new Map<string, number>();
  const cpu = new Map<string, number>();
  const unclean: string[] = [];
  for (const c of CONTENDERS) {
    if (skip.has(c.name)) continue;
    const img = `${work}/${label}.img`;
    await Deno.remove(img).catch(() => {});
    // Through a pipe: GNU tar writing straight to /dev/null reads no file data.
    await sh(`tar -cf - ${src} | cat > /dev/null`); // host files in the page cache for everyone
    await sh("sync");
    try {
      let used: number | void = undefined;
      times.set(c.name, await timedMs(async () => used = await c.build(src, img, sizeMiB, work)));
      if (typeof used === "number") cpu.set(c.name, used);
      if (!(await fsckClean(img))) unclean.push(c.name);
    } catch (e) {
      console.error(`${label}: ${c.name}: ${(e as Error).message}`);
    }
    await Deno.remove(img).catch(() => {});
  }
  return { times, cpu, unclean };
}

function row(
  name: string,
  r: { times: Map<string, number>; cpu: Map<string, number>; unclean: string[] },
  note: (ms: number) => string,
): BenchRow {
  const ext4ts = r.times.get("ext4ts") ?? NaN;
  const peers: Record<string, number> = {};
  for (const [k, v] of r.times) if (k !== "ext4ts") peers[k] = v;
  const bad = r.unclean.length ? `; e2fsck NOT clean: ${r.unclean.join(", ")}` : "";
  const cpu = [...r.cpu].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
  return { name, ext4ts, peers, note: note(ext4ts) + (cpu ? `; CPU s: ${cpu}` : "") + bad };
}

/** Options of {@link runWriteBench}. */
export interface WriteBenchOptions {
  /** Smaller data: 2000 files, a 128 MiB file, 2000 files churned. */
  quick?: boolean;
  /** Only the journal-cost rows (bench/write_journal.ts), not the copy race. */
  journalOnly?: boolean;
  /** Rounds of the journal-cost rows (at least 3). */
  rounds?: number;
}

/**
 * Runs the write benchmarks: the copy race (both rows) and the journal-cost table.
 *
 * @example
 * ```ts ignore
 * const { rows, journalCost } = await runWriteBench({ quick: true });
 * printTable("Write", rows);
 * console.log(journalCost);
 * ```
 */
export async function runWriteBench(
  options: WriteBenchOptions = {},
): Promise<{ rows: BenchRow[]; journalCost: string }> {
  const files = envInt("EXT4TS_BENCH_WRITE_FILES", options.quick ? 2000 : 20_000);
  const bigMiB = envInt("EXT4TS_BENCH_WRITE_MIB", options.quick ? 128 : 1024);
  const churnFiles = envInt("EXT4TS_BENCH_WRITE_CHURN", options.quick ? 2000 : 10_000);
  const skip = new Set((Deno.env.get("EXT4TS_BENCH_WRITE_SKIP") ?? "").split(",").filter(Boolean));
  const work = await Deno.makeTempDir({ prefix: "ext4ts-wbench-" });
  try {
    const tree = `${work}/tree`;
    const bytes = await makeTree(tree, files);
    const treeMiB = 64 + Math.ceil((bytes * 1.5 + files * 8192) / 2 ** 20);
    const rows: BenchRow[] = [];
    if (!options.journalOnly) {
      const t = await race("tree", tree, treeMiB, work, skip);
      const big = `${work}/big`;
      await sh(`head -c ${bigMiB}M /dev/urandom > ${big}`);
      const b = await race("big", big, bigMiB + 256, work, skip);
      rows.push(
        row(
          `tree of ${files} entries (${
            (bytes / 2 ** 20).toFixed(0)
          } MiB) into a ${treeMiB} MiB image`,
          t,
          (ms) => `${(files / (ms / 1000)).toFixed(0)} entries/s`,
        ),
        row(
          `one ${bigMiB} MiB file into a ${bigMiB + 256} MiB image`,
          b,
          (ms) => `${(bigMiB / (ms / 1000)).toFixed(0)} MiB/s`,
        ),
      );
    }
    const journalCost = await runJournalCost({
      tree,
      treeEntries: files,
      treeImageMiB: treeMiB,
      churnFiles,
      commitInterval: 5,
      rounds: Math.max(3, options.rounds ?? 3),
      before: Deno.env.get("EXT4TS_BENCH_WRITE_BEFORE") || undefined,
      work,
    });
    return { rows, journalCost };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--rounds");
  const { rows, journalCost } = await runWriteBench({
    quick: Deno.args.includes("--quick"),
    journalOnly: Deno.args.includes("--journal-only"),
    rounds: at >= 0 ? Number(Deno.args[at + 1]) : undefined,
  });
  if (rows.length) {
    printTable(
      "Write: mkfs + copy until durable (ext4ts put vs mke2fs -d, kernel cp -a, fuse2fs cp -a)",
      rows,
    );
  }
  console.log(
    "\n## Write: the journal's cost (journaled vs ^has_journal, now vs before the journal)\n",
  );
  console.log(journalCost);
}
