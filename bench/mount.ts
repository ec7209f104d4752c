/**
 * Mount benchmark: ext4ts vs fuse2fs vs the kernel's ext4, read-only, on the same loop
 * device in one run. Rows: sequential read of a 512 MiB file, random 4 KiB reads, `stat`
 * of 10 000 files, `ls -l` of a 10 000-entry directory, `find` and `du` over a 20 000-file
 * tree, mount time, and the time from the start of the unmount until the device can be
 * opened O_EXCL — with `umount(8)` for every contender, and with each one's own unmount
 * command (`ext4ts umount` for ext4ts). Caches are dropped before every data measurement
 * (cold numbers); mount and unmount times are medians of several cycles with the device's
 * cache flushed and the programs warm.
 *
 * Usage (root): `deno run -A bench/mount.ts [--quick] [--json]`. `--quick` shrinks the data
 * (64 MiB file, 2 000 / 4 000 files) for a smoke run.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { deviceIsFree } from "../ffi/fuse/mount.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const dec = new TextDecoder();

interface Sizes {
  bigMiB: number;
  flat: number;
  tree: number;
}

async function sh(script: string, allowFail = false): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success && !allowFail) {
    throw new Error(`${script}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function dropCaches(): Promise<void> {
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches", true);
}

async function untilFree(dev: string, t0: number, limitS = 30): Promise<number> {
  while (!deviceIsFree(dev)) {
    if ((performance.now() - t0) / 1000 > limitS) return NaN;
    await new Promise((r) => setTimeout(r, 1));
  }
  return (performance.now() - t0) / 1000;
}

/** How each contender mounts and unmounts. */
interface Contender {
  name: string;
  mount(dev: string, mnt: string): Promise<void>;
  unmount(mnt: string): Promise<void>;
}

const deno = Deno.execPath();
const CONTENDERS: Contender[] = [
  {
    name: "kernel",
    mount: (dev, mnt) => sh(`mount -t ext4 -o ro,noload ${dev} ${mnt}`).then(() => {}),
    unmount: (mnt) => sh(`umount ${mnt}`).then(() => {}),
  },
  {
    name: "fuse2fs",
    mount: (dev, mnt) => sh(`fuse2fs -o ro ${dev} ${mnt}`).then(() => {}),
    unmount: (mnt) => sh(`umount ${mnt}`).then(() => {}),
  },
  {
    name: "ext4ts",
    mount: (dev, mnt) =>
      sh(`${deno} run --allow-all ${ROOT}cli/main.ts mount ${dev} ${mnt}`).then(() => {}),
    unmount: (mnt) => sh(`${deno} run --allow-all ${ROOT}cli/main.ts umount ${mnt}`).then(() => {}),
  },
];

async function buildImage(dir: string, s: Sizes): Promise<string> {
  const img = `${dir}/bench.img`;
  const sizeMiB = s.bigMiB + 256 + Math.ceil((s.flat + s.tree) / 100);
  await sh(`mkfs.ext4 -q -F ${img} ${sizeMiB}M`);
  const mnt = `${dir}/build`;
  await Deno.mkdir(mnt);
  await sh(`mount -o loop ${img} ${mnt}`);
  try {
    await sh(`dd if=/dev/urandom of=${mnt}/big bs=1M count=${s.bigMiB} 2>/dev/null`);
    await sh(
      `python3 -c "
import os
os.mkdir('${mnt}/flat')
for i in range(${s.flat}):
    open('${mnt}/flat/file-%05d' % i, 'w').write('x' * (i % 300))
for d in range(${Math.ceil(s.tree / 100)}):
    p = '${mnt}/tree/d%03d/e%02d' % (d // 10, d % 10)
    os.makedirs(p)
    for i in range(100):
        open('%s/f%03d' % (p, i), 'w').write('y' * (i * 7))
"`,
    );
  } finally {
    await sh(`umount ${mnt}`);
  }
  return img;
}

/** One contender's results (seconds, or rates). */
type Row = Record<string, number>;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Mount and unmount `cycles` times: the mount time with the device's cache flushed
 * (`blockdev --flushbufs`) but the program warm (one untimed cycle first, as on any machine
 * where the tool has run before), and the time from the start of `umount(8)` — the same tool
 * for every contender — until the device opens O_EXCL. Medians.
 */
async function mountCycles(
  c: Contender,
  dev: string,
  mnt: string,
  cycles: number,
): Promise<{ mount: number; free: number }> {
  await c.mount(dev, mnt);
  await sh(`umount ${mnt}`);
  await untilFree(dev, performance.now());
  const mounts: number[] = [];
  const frees: number[] = [];
  for (let i = 0; i < cycles; i++) {
    await sh(`blockdev --flushbufs ${dev}`, true);
    mounts.push(await timed(() => c.mount(dev, mnt)));
    const t0 = performance.now();
    await sh(`umount ${mnt}`);
    frees.push(await untilFree(dev, t0));
  }
  return { mount: median(mounts), free: median(frees) };
}

async function measure(
  c: Contender,
  dev: string,
  mnt: string,
  s: Sizes,
  cycles: number,
): Promise<Row> {
  const row: Row = {};
  const cyc = await mountCycles(c, dev, mnt, cycles);
  row["mount (s)"] = cyc.mount;
  await dropCaches();
  await c.mount(dev, mnt);
  try {
    await dropCaches();
    const seq = await timed(() => sh(`cat ${mnt}/big > /dev/null`));
    row["seq read (MiB/s)"] = s.bigMiB / seq;
    await dropCaches();
    const n = 2000;
    const rnd = await timed(() =>
      sh(`python3 -c "
import os, random
random.seed(1)
fd = os.open('${mnt}/big', os.O_RDONLY)
size = os.fstat(fd).st_size
for _ in range(${n}):
    os.pread(fd, 4096, random.randrange(0, size // 4096) * 4096)
"`)
    );
    row["random 4K (reads/s)"] = n / rnd;
    await dropCaches();
    const st = await timed(() =>
      sh(`python3 -c "
import os
d = '${mnt}/flat'
for n in os.listdir(d):
    os.lstat(d + '/' + n)
"`)
    );
    row[`stat ${s.flat} (files/s)`] = s.flat / st;
    await dropCaches();
    const ls = await timed(() => sh(`ls -l ${mnt}/flat > /dev/null`));
    row[`ls -l ${s.flat} (entries/s)`] = s.flat / ls;
    await dropCaches();
    row[`find ${s.tree} (s)`] = await timed(() => sh(`find ${mnt}/tree > /dev/null`));
    await dropCaches();
    row[`du ${s.tree} (s)`] = await timed(() => sh(`du -s ${mnt}/tree > /dev/null`));
  } finally {
    const t0 = performance.now();
    await c.unmount(mnt);
    row["own unmount command→device free (s)"] = await untilFree(dev, t0);
  }
  row["umount(8)→device free (s)"] = cyc.free;
  return row;
}

/** Higher is better for rates, lower for times. */
function higherIsBetter(key: string): boolean {
  return key.includes("/s)");
}

function format(rows: Map<string, Row>): string {
  const names = [...rows.keys()];
  const keys = Object.keys(rows.values().next().value ?? {});
  const fmt = (v: number) =>
    Number.isNaN(v) ? "n/a" : v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
  const lines = [
    ["", ...names, "ext4ts/fuse2fs", "ext4ts/kernel"].join("\t"),
  ];
  for (const k of keys) {
    const v = names.map((n) => rows.get(n)![k]);
    const e = rows.get("ext4ts")?.[k] ?? NaN;
    const ratio = (other: number) => {
      const r = higherIsBetter(k) ? e / other : other / e;
      return Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a";
    };
    lines.push(
      [
        k,
        ...v.map(fmt),
        ratio(rows.get("fuse2fs")?.[k] ?? NaN),
        ratio(rows.get("kernel")?.[k] ?? NaN),
      ]
        .join("\t"),
    );
  }
  return lines.join("\n") + "\n(ratios > 1: ext4ts is better)\n";
}

/**
 * Runs the benchmark and returns the table.
 *
 * @example
 * ```ts ignore
 * console.log(await runMountBench({ quick: true }));
 * ```
 */
export async function runMountBench(options: { quick?: boolean } = {}): Promise<{
  text: string;
  rows: Map<string, Row>;
}> {
  const s: Sizes = options.quick
    ? { bigMiB: 64, flat: 2000, tree: 4000 }
    : { bigMiB: 512, flat: 10_000, tree: 20_000 };
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
  let dev = "";
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const rows = new Map<string, Row>();
  try {
    const img = await buildImage(dir, s);
    dev = (await sh(`losetup -f --show --direct-io=on ${img}`)).trim();
    for (const c of CONTENDERS) {
      try {
        rows.set(c.name, await measure(c, dev, mnt, s, options.quick ? 5 : 9));
      } catch (e) {
        console.error(`${c.name}: ${(e as Error).message}`);
        await sh(`umount -l ${mnt}`, true);
      }
    }
  } finally {
    await sh(`umount -l ${mnt}`, true);
    if (dev) await sh(`losetup -d ${dev}`, true);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return { text: format(rows), rows };
}

if (import.meta.main) {
  const { text, rows } = await runMountBench({ quick: Deno.args.includes("--quick") });
  if (Deno.args.includes("--json")) {
    console.log(JSON.stringify(Object.fromEntries(rows), null, 2));
  } else {
    console.log(text);
  }
}
