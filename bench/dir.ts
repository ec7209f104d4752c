/**
 * Directory benchmark: creating N empty files in one directory, ext4ts against the kernel.
 *
 * - `put`: `ext4ts put` of a host directory holding N empty files (the whole command: start-up,
 *   host reads, one transaction per 512 entries), against the kernel creating the same N
 *   files in a fresh loop mount of the same kind of image (mount, create, umount).
 * - `lib`: the library alone (`createFile` into one directory, committed every 512 entries,
 *   image in memory): the directory code without the CLI and the host file system.
 *
 * Cases: 4 KiB blocks with dir_index (htree, one or two index levels) at growing N, so the
 * cost per entry shows whether inserts stay O(log n); 1 KiB blocks with large_dir and
 * 250-byte names (three index levels past ~23 000 names); and without dir_index, where every
 * insert scans the directory — the kernel does too, so both grow as O(n²).
 *
 * Usage: deno run -A bench/dir.ts [--quick] [--json]   (needs root, loop devices, mkfs.ext4)
 *
 * @module
 */

import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { createFile, makeDirectory } from "../lib/ext4/namei.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { type BenchRow, printTable, sh } from "./lib.ts";
import type { OpContext } from "../lib/ext4/context.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const quick = Deno.args.includes("--quick");
const json = Deno.args.includes("--json");

interface Case {
  name: string;
  mkfs: string[];
  size: string;
  n: number;
  entry: (i: number) => string;
  /** Also time the CLI (`put` of a host directory). */
  put: boolean;
}

const short = (i: number) => `file-entry-name-${i}`;
const long = (i: number) => `${String(i).padStart(6, "0")}-${"n".repeat(240)}`;

const CASES: Case[] = quick
  ? [
    { name: "4k dir_index", mkfs: ["-b", "4096"], size: "256M", n: 5000, entry: short, put: true },
    {
      name: "4k ^dir_index",
      mkfs: ["-b", "4096", "-O", "^dir_index"],
      size: "256M",
      n: 2000,
      entry: short,
      put: false,
    },
  ]
  : [
    { name: "4k dir_index", mkfs: ["-b", "4096"], size: "256M", n: 5000, entry: short, put: true },
    { name: "4k dir_index", mkfs: ["-b", "4096"], size: "256M", n: 20000, entry: short, put: true },
    { name: "4k dir_index", mkfs: ["-b", "4096"], size: "512M", n: 50000, entry: short, put: true },
    {
      name: "1k large_dir, 250-byte names",
      mkfs: ["-b", "1024", "-O", "large_dir"],
      size: "128M",
      n: 30000,
      entry: long,
      put: false,
    },
    {
      name: "4k ^dir_index",
      mkfs: ["-b", "4096", "-O", "^dir_index"],
      size: "256M",
      n: 5000,
      entry: short,
      put: true,
    },
  ];

async function mkfs(path: string, c: Case): Promise<void> {
  await sh("mkfs.ext4", ["-q", "-F", "-N", String(c.n + 4096), ...c.mkfs, path, c.size]);
}

/** The kernel: mount, create N files in one new directory, unmount (everything timed). */
async function kernel(img: string, mnt: string, c: Case): Promise<number> {
  await mkfs(img, c);
  const t0 = performance.now();
  await sh("mount", ["-o", "loop", img, mnt]);
  try {
    await Deno.mkdir(`${mnt}/d`);
    for (let i = 0; i < c.n; i++) {
      (await Deno.open(`${mnt}/d/${c.entry(i)}`, { write: true, createNew: true })).close();
    }
  } finally {
    await sh("umount", [mnt]);
  }
  return performance.now() - t0;
}

/** `ext4ts put` of a host directory of N empty files. */
async function put(img: string, src: string, c: Case): Promise<number> {
  await mkfs(img, c);
  const t0 = performance.now();
  await sh(Deno.execPath(), ["run", "-A", `${ROOT}cli/main.ts`, "put", img, src, "/d"]);
  return performance.now() - t0;
}

/** The library alone, on the image in memory. */
async function lib(img: string, c: Case): Promise<number> {
  await mkfs(img, c);
  const w = await Ext4Writer.open(new MemoryBlockDevice(await Deno.readFile(img)));
  const t0 = performance.now();
  let tx = w.cache.begin();
  const ctx = (): OpContext => ({ tx, alloc: w.alloc, sb: w.sb, gdt: w.gdt });
  const d = await makeDirectory(ctx(), 2, "d", { perm: 0o755 });
  for (let i = 0; i < c.n; i++) {
    await createFile(ctx(), d, c.entry(i), new Uint8Array(0), { perm: 0o644 });
    if (i % 512 === 511) {
      await tx.commit();
      tx = w.cache.begin();
    }
  }
  await tx.commit();
  return performance.now() - t0;
}

const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-dir-" });
const img = `${dir}/dir.img`;
const mnt = `${dir}/mnt`;
await Deno.mkdir(mnt);
const rows: BenchRow[] = [];
try {
  for (const c of CASES) {
    const label = `${c.name}: ${c.n} entries`;
    const k = await kernel(img, mnt, c);
    const l = await lib(img, c);
    rows.push({
      name: `${label} (library)`,
      ext4ts: l,
      peers: { kernel: k },
      note: `${(l / c.n * 1000).toFixed(0)} µs/entry`,
    });
    if (c.put) {
      const src = `${dir}/src`;
      await Deno.remove(src, { recursive: true }).catch(() => {});
      await Deno.mkdir(src);
      for (let i = 0; i < c.n; i++) await Deno.writeFile(`${src}/${c.entry(i)}`, new Uint8Array(0));
      const p = await put(img, src, c);
      rows.push({
        name: `${label} (ext4ts put)`,
        ext4ts: p,
        peers: { kernel: k },
        note: `${(p / c.n * 1000).toFixed(0)} µs/entry`,
      });
    }
    if (!json) console.error(`done: ${label}`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (json) console.log(JSON.stringify(rows, null, 2));
else printTable("Creating N entries in one directory (kernel: mount, create, umount)", rows);
