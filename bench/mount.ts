/**
 * Mount benchmark: ext4ts vs fuse2fs vs the kernel's ext4 on loop devices in one run: read-only
 * rows on one prepared image, read-write rows on a filesystem made anew per driver and round.
 *
 * Honest by construction:
 * - the drivers are interleaved over several rounds (the order rotates each round), and every
 *   row prints the median with the min–max of its rounds;
 * - every data row is cold: page cache dropped and a fresh mount (the daemons' own caches
 *   survive drop_caches, so a mount is never reused between rows);
 * - timing is in-process around the work itself (reads, lstat loops), or inside a small C program
 *   compiled before the rounds (the write rows' loops); where a tool is the workload (`dd`,
 *   `ls -l`, `find`, `du`, `tar`, `rm -rf`) the time includes only that C program's start-up;
 * - the FUSE daemons' CPU seconds (user + system, from /proc) and peak RSS are printed beside
 *   the wall times, and the machine's load before and after;
 * - after every read-write row the filesystem is unmounted and `e2fsck -fn` must be clean (the
 *   table counts the clean checks per driver).
 *
 * Read-only rows: sequential read of a big file, random 4 KiB reads (each in a region of its
 * own, so read-ahead never serves one), `lstat` by name of every file of a flat directory
 * (lookups: no listing first), `ls -l` of it, `find`, `du` and `tar` (all data read) of a tree,
 * mount until the root answers (the device's buffers flushed, the driver's program in the page
 * cache: run once untimed before), and from the start of an unmount (umount(8), and each driver's
 * own unmount command: `ext4ts umount`, umount(8) for the others) until the device opens O_EXCL
 * and the daemon has exited.
 *
 * Read-write rows (`mount -o rw`; fuse2fs as root, which needs no `fakeroot`), in this order on
 * one filesystem: `dd bs=1M conv=fsync` of a big file, random 4 KiB overwrites in it with one
 * fsync at the end and with an fsync after each, create empty files in one directory, `lstat`
 * them by name, `ls -l`, unlink them, untar a tree from an archive on a tmpfs + sync (syncfs and
 * an fsync: fuse2fs does not serve FUSE_SYNCFS), `find`, `du`, `rm -rf` of it. Unmounts are timed
 * until the device opens O_EXCL and the daemon has exited: umount(8) after the creates and after
 * `rm -rf` (the primary rows: what a user or systemd runs), and the driver's own unmount command
 * (`ext4ts umount`; umount(8) for the others) after creating as many files in a second directory.
 *
 * ext4ts runs as users run it: the installed command (scripts/install.sh's bundle and launcher),
 * built and installed into a temporary prefix before the rounds, outside every timed region.
 *
 * Usage (root): `deno run -A bench/mount.ts [--quick] [--rounds N] [--rows read|write|all|mount]
 * [--drivers ext4ts,fuse2fs,kernel] [--only TEXT,…] [--json]`. `--quick` shrinks the data (64 MiB file, 2 000 / 4 000 files, 500 / 50 random
 * writes); rounds default to 3 (at least 3). `--only` keeps the read rows whose name holds one of
 * the texts (e.g. `--only lstat,ls -l,find,du`; `mount` and `umount` pick the mount rows); each
 * kept row is measured exactly as in a whole run (its own fresh mount, caches dropped).
 *
 * @module
 */

import { deviceIsFree } from "../ffi/fuse/loop.ts";
import { processAlive } from "../ffi/fuse/mount_state.ts";
import { fuseWakesDaemonHere } from "../ffi/fuse/serve.ts";
import {
  cpuSeconds,
  fmt,
  loadAverage,
  peakRssMiB,
  showSpread,
  type Spread,
  spread,
} from "./lib.ts";
import { build, install } from "../scripts/install.ts";

const dec = new TextDecoder();

interface Sizes {
  bigMiB: number;
  flat: number;
  tree: number;
  randomReads: number;
  /** Random 4 KiB overwrites with one fsync at the end, and those with an fsync each. */
  randomWrites: number;
  syncedWrites: number;
}

async function sh(script: string, allowFail = false): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success && !allowFail) {
    throw new Error(`${script}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

/** Runs one program (no shell) with its output discarded; the workload of the tool rows. */
async function tool(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd}: exit ${out.code}: ${dec.decode(out.stderr).trim()}`);
}

async function dropCaches(): Promise<void> {
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches", true);
}

async function untilFree(dev: string, t0: number, limitS = 60): Promise<number> {
  while (!deviceIsFree(dev)) {
    if ((performance.now() - t0) / 1000 > limitS) return NaN;
    await new Promise((r) => setTimeout(r, 1));
  }
  return (performance.now() - t0) / 1000;
}

/** How each driver mounts and unmounts. */
interface Driver {
  name: string;
  /** Whether a userspace daemon serves the mount (its CPU and memory are measured). */
  daemon: boolean;
  mount(dev: string, mnt: string): Promise<void>;
  /** A read-write mount with the driver's defaults (the kernel: data=ordered, commit=5). */
  mountRw(dev: string, mnt: string): Promise<void>;
  /** The driver's own unmount command (`ext4ts umount`; umount(8) for the others). */
  unmount(mnt: string): Promise<void>;
  /**
   * Runs the driver's program once (untimed), so that the mount row starts with it in the page
   * cache, as on a system that uses it: the cold rows drop every cache, and faulting in a
   * 100 MiB Deno from a loaded disk took ext4ts's mount from ~0.15 to ~0.6 s.
   */
  warm?(): Promise<void>;
}

/** The installed `ext4ts` (a launcher running the bundle), set by {@link installExt4ts}. */
let ext4ts = "";

/** Builds the bundle and installs it under `dir` (untimed); returns the launcher. */
async function installExt4ts(dir: string): Promise<string> {
  await build();
  return (await install(`${dir}/prefix`, Deno.execPath())).launcher;
}

/** How each driver mounts and unmounts; ext4ts through its installed command. */
const DRIVERS: Driver[] = [
  {
    name: "kernel",
    daemon: false,
    mount: (dev, mnt) => tool("mount", ["-t", "ext4", "-o", "ro,noload", dev, mnt]),
    mountRw: (dev, mnt) => tool("mount", ["-t", "ext4", dev, mnt]),
    unmount: (mnt) => tool("umount", [mnt]),
  },
  {
    name: "fuse2fs",
    daemon: true,
    mount: (dev, mnt) => tool("fuse2fs", ["-o", "ro", dev, mnt]),
    // As root no fakeroot is needed. fuse2fs 1.47 writes without its journal.
    mountRw: (dev, mnt) => tool("fuse2fs", ["-o", "rw", dev, mnt]),
    unmount: (mnt) => tool("umount", [mnt]),
    warm: () => tool("fuse2fs", ["-V"]),
  },
  {
    name: "ext4ts",
    daemon: true,
    mount: (dev, mnt) => tool(ext4ts, ["mount", dev, mnt]),
    mountRw: (dev, mnt) => tool(ext4ts, ["mount", "-o", "rw", dev, mnt]),
    unmount: (mnt) => tool(ext4ts, ["umount", mnt]),
    warm: () => tool(ext4ts, ["--version"]),
  },
];

/** The process serving `mnt`: the one whose command line names the mount point. */
function daemonOf(mnt: string): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (args.includes(mnt)) return pid;
    } catch { /* gone */ }
  }
  return undefined;
}

/** Writes the tree of the tree rows: directories of 100 files (0–693 bytes), `n` files in all. */
async function writeTree(root: string, n: number): Promise<void> {
  for (let d = 0; d < Math.ceil(n / 100); d++) {
    const p = `${root}/tree/d${String(Math.floor(d / 10)).padStart(3, "0")}/e${d % 10}`;
    await Deno.mkdir(p, { recursive: true });
    for (let i = 0; i < 100; i++) {
      await Deno.writeTextFile(`${p}/f${String(i).padStart(3, "0")}`, "y".repeat(i * 7));
    }
  }
}

async function buildImage(dir: string, s: Sizes): Promise<string> {
  const img = `${dir}/bench.img`;
  const sizeMiB = s.bigMiB + 256 + Math.ceil((s.flat + s.tree) / 100);
  await sh(`mkfs.ext4 -q -F ${img} ${sizeMiB}M`);
  const mnt = `${dir}/build`;
  await Deno.mkdir(mnt);
  await sh(`mount -o loop ${img} ${mnt}`);
  try {
    await sh(`dd if=/dev/urandom of=${mnt}/big bs=1M count=${s.bigMiB} 2>/dev/null`);
    await Deno.mkdir(`${mnt}/flat`);
    for (let i = 0; i < s.flat; i++) {
      await Deno.writeTextFile(
        `${mnt}/flat/file-${String(i).padStart(5, "0")}`,
        "x".repeat(i % 300),
      );
    }
    await writeTree(mnt, s.tree);
  } finally {
    await sh(`umount ${mnt}`);
  }
  return img;
}

/** A cold workload on a fresh mount: returns its result in `unit`. */
interface Workload {
  key: string;
  unit: string;
  higherIsBetter: boolean;
  run(mnt: string, s: Sizes): Promise<number>;
}

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

const WORKLOADS: Workload[] = [
  {
    key: "seq read",
    unit: "MiB/s",
    higherIsBetter: true,
    run(mnt) {
      const f = Deno.openSync(`${mnt}/big`);
      const buf = new Uint8Array(1 << 20);
      let total = 0;
      const t0 = performance.now();
      for (let n = f.readSync(buf); n !== null; n = f.readSync(buf)) total += n;
      const t = seconds(t0);
      f.close();
      return Promise.resolve(total / (1 << 20) / t);
    },
  },
  {
    key: "random 4 KiB reads",
    unit: "reads/s",
    higherIsBetter: true,
    run(mnt, s) {
      // One read in each of distinct 1 MiB regions, in a shuffled order: read-ahead (up to
      // 1 MiB on a FUSE mount) never serves a later read, so every read is a cold one.
      const f = Deno.openSync(`${mnt}/big`);
      const regions = Math.floor(f.statSync().size / (1 << 20));
      const n = Math.min(s.randomReads, regions);
      const order = [...Array(regions).keys()];
      let x = 1; // a fixed LCG: the same offsets for every driver
      const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
      for (let i = regions - 1; i > 0; i--) {
        const j = next() % (i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      const offsets = order.slice(0, n).map((r) => r * (1 << 20) + (next() % 256) * 4096);
      const buf = new Uint8Array(4096);
      const t0 = performance.now();
      for (const off of offsets) {
        f.seekSync(off, Deno.SeekMode.Start);
        if (f.readSync(buf) === null) throw new Error("short read");
      }
      const t = seconds(t0);
      f.close();
      return Promise.resolve(n / t);
    },
  },
  {
    key: "lstat by name, flat dir",
    unit: "files/s",
    higherIsBetter: true,
    run(mnt, s) {
      // By name, without listing first: a listing (READDIRPLUS) would hand the kernel every
      // attribute in advance, and this row measures lookups.
      const paths = Array.from(
        { length: s.flat },
        (_, i) => `${mnt}/flat/file-${String(i).padStart(5, "0")}`,
      );
      const t0 = performance.now();
      for (const p of paths) Deno.lstatSync(p);
      return Promise.resolve(s.flat / seconds(t0));
    },
  },
  {
    key: "ls -l of the flat dir",
    unit: "entries/s",
    higherIsBetter: true,
    async run(mnt, s) {
      const t0 = performance.now();
      await tool("ls", ["-l", `${mnt}/flat`]);
      return s.flat / seconds(t0);
    },
  },
  {
    key: "find over the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      const t0 = performance.now();
      await tool("find", [`${mnt}/tree`]);
      return seconds(t0);
    },
  },
  {
    key: "du over the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      const t0 = performance.now();
      await tool("du", ["-s", `${mnt}/tree`]);
      return seconds(t0);
    },
  },
  {
    key: "tar (all data) of the tree",
    unit: "s",
    higherIsBetter: false,
    async run(mnt) {
      // Into a pipe: GNU tar writing to /dev/null reads no file data.
      const t0 = performance.now();
      await sh(`tar -cf - -C ${mnt} tree | cat > /dev/null`);
      return seconds(t0);
    },
  },
];

/** Samples of one row for one driver: the result, the daemon's CPU seconds and peak RSS. */
interface Samples {
  values: number[];
  cpu: number[];
  /** The daemon's VmHWM (MiB) after the row: each row runs on a fresh mount, a fresh daemon. */
  rss: number[];
}

/** Per row key, per driver. */
type Results = Map<string, Map<string, Samples>>;

function record(
  results: Results,
  key: string,
  driver: string,
  value: number,
  cpu = NaN,
  rss = NaN,
) {
  let row = results.get(key);
  if (!row) results.set(key, row = new Map());
  let s = row.get(driver);
  if (!s) row.set(driver, s = { values: [], cpu: [], rss: [] });
  s.values.push(value);
  s.cpu.push(cpu);
  s.rss.push(rss);
}

/**
 * Seconds from the start of `unmount` until the device opens O_EXCL and the daemon `pid` has
 * exited (nothing can write the device then).
 */
async function timedUnmount(
  unmount: () => Promise<void>,
  dev: string,
  pid: number | undefined,
): Promise<number> {
  const t0 = performance.now();
  await unmount();
  const free = await untilFree(dev, t0);
  await exited(pid);
  return Math.max(free, seconds(t0));
}

/** The row of an unmount: umount(8) or the driver's own command. */
function unmountRow(own: boolean, when = ""): string {
  const how = own ? "own unmount command (ext4ts umount)" : "umount(8)";
  return `${how}${when}, until the device is free (s)`;
}

/**
 * Mount until the root answers, then from the start of umount(8) until the device is free;
 * then, on a second mount, the same with the driver's own unmount command.
 */
async function mountRows(d: Driver, dev: string, mnt: string, results: Results): Promise<void> {
  await d.warm?.();
  await sh(`blockdev --flushbufs ${dev}`, true);
  const t0 = performance.now();
  await d.mount(dev, mnt);
  Deno.readDirSync(mnt)[Symbol.iterator]().next();
  record(results, "mount until the root answers (s)", d.name, seconds(t0));
  for (const own of [false, true]) {
    if (own) await d.mount(dev, mnt);
    const pid = d.daemon ? daemonOf(mnt) : undefined;
    const unmount = own ? () => d.unmount(mnt) : () => tool("umount", [mnt]);
    record(results, unmountRow(own), d.name, await timedUnmount(unmount, dev, pid));
  }
}

/** One cold workload: drop caches, fresh mount, run, read the daemon's CPU and peak RSS. */
async function coldRow(
  d: Driver,
  w: Workload,
  dev: string,
  mnt: string,
  s: Sizes,
  results: Results,
  peaks: Map<string, number[]>,
): Promise<void> {
  await dropCaches();
  await d.mount(dev, mnt);
  try {
    const pid = d.daemon ? daemonOf(mnt) : undefined;
    await dropCaches();
    const cpu0 = cpuSeconds(pid);
    const value = await w.run(mnt, s);
    const rss = peakRssMiB(pid);
    record(results, `${w.key} (${w.unit})`, d.name, value, cpuSeconds(pid) - cpu0, rss);
    if (d.daemon) peaks.set(d.name, [...peaks.get(d.name) ?? [], rss]);
  } finally {
    await tool("umount", [mnt]);
    await untilFree(dev, performance.now());
  }
}

/**
 * The timing program of the write rows, compiled once before the rounds: the loops run in C
 * and print the seconds of the loop alone (no interpreter or process start-up in a timed region).
 * `create|stat|unlink DIR N` (names file-00000…), `randwrite FILE N EVERY` (N aligned 4 KiB
 * writes, each in a region of its own, in a fixed shuffled order; fsync after each if EVERY is
 * 1, always one at the end), `sync DIR FILE` (syncfs of DIR's filesystem, then fsync of FILE
 * opened for writing: fuse2fs flushes on fsync only through such a descriptor).
 */
const FSOPS_C = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}
static void die(const char *op, const char *path) {
  fprintf(stderr, "fsops %s ", op);
  perror(path);
  exit(1);
}
static unsigned long lcg(unsigned long *x) { return *x = (*x * 1103515245UL + 12345UL) % 2147483648UL; }

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: fsops OP PATH N|FILE [EVERY]\n"); return 2; }
  const char *op = argv[1], *path = argv[2];
  char name[4096];
  double t0;
  if (!strcmp(op, "create") || !strcmp(op, "stat") || !strcmp(op, "unlink")) {
    long n = atol(argv[3]);
    struct stat st;
    t0 = now();
    for (long i = 0; i < n; i++) {
      snprintf(name, sizeof name, "%s/file-%05ld", path, i);
      if (op[0] == 'c') {
        int fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0 || close(fd)) die(op, name);
      } else if (op[0] == 's' ? lstat(name, &st) : unlink(name)) {
        die(op, name);
      }
    }
  } else if (!strcmp(op, "randwrite")) {
    long n = atol(argv[3]);
    int every = argc > 4 && atoi(argv[4]);
    int fd = open(path, O_WRONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) die(op, path);
    long span = st.st_size / 4096 / n;
    if (span < 1) die("randwrite (file too small)", path);
    long *off = malloc(n * sizeof *off);
    unsigned long x = 1;
    for (long i = 0; i < n; i++) off[i] = (i * span + (long)(lcg(&x) % span)) * 4096;
    for (long i = n - 1; i > 0; i--) {
      long j = lcg(&x) % (i + 1), t = off[i];
      off[i] = off[j];
      off[j] = t;
    }
    static char buf[4096];
    for (int i = 0; i < 4096; i++) buf[i] = (char)lcg(&x);
    t0 = now();
    for (long i = 0; i < n; i++) {
      if (pwrite(fd, buf, 4096, off[i]) != 4096) die(op, path);
      if (every && fsync(fd)) die("fsync", path);
    }
    if (fsync(fd) || close(fd)) die("fsync", path);
  } else if (!strcmp(op, "sync")) {
    t0 = now();
    int dir = open(path, O_RDONLY | O_DIRECTORY), fd = open(argv[3], O_WRONLY);
    if (dir < 0 || syncfs(dir)) die(op, path);
    if (fd < 0 || fsync(fd)) die("fsync", argv[3]);
    close(fd);
    close(dir);
  } else {
    fprintf(stderr, "fsops: unknown op %s\n", op);
    return 2;
  }
  printf("%.6f\n", now() - t0);
  return 0;
}
`;

/** Compiles {@link FSOPS_C} into `dir`; returns the program's path. */
async function buildFsops(dir: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/fsops.c`, FSOPS_C);
  await sh(`cc -O2 -o ${dir}/fsops ${dir}/fsops.c`);
  return `${dir}/fsops`;
}

/** Runs the timing program; returns the seconds it measured around its loop. */
async function fsops(bin: string, args: string[]): Promise<number> {
  const out = await new Deno.Command(bin, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(dec.decode(out.stderr).trim());
  return Number(dec.decode(out.stdout));
}

/** What the write rows need: the sizes, the timing program and the prepared archive. */
interface WriteContext {
  sizes: Sizes;
  bin: string;
  /** A tar archive of the tree, on a tmpfs (drop_caches does not evict it). */
  archive: string;
}

/** One write row, on a fresh rw mount of the filesystem the rows before it left. */
interface WriteStep {
  key: string;
  unit: string;
  run(mnt: string, c: WriteContext): Promise<number>;
  /**
   * When set, the unmount after this row is timed (until the device is free): umount(8), or
   * with `own` the driver's own command.
   */
  unmount?: { own: boolean; when: string };
}

const readRow = (key: string) => WORKLOADS.find((w) => w.key === key)!;

const WRITE_STEPS: WriteStep[] = [
  {
    key: "seq write + fsync (dd bs=1M conv=fsync)",
    unit: "MiB/s",
    async run(mnt, c) {
      const t0 = performance.now();
      const mib = c.sizes.bigMiB;
      await tool("dd", ["if=/dev/zero", `of=${mnt}/seq`, "bs=1M", `count=${mib}`, "conv=fsync"]);
      return mib / seconds(t0);
    },
  },
  {
    key: "random 4 KiB overwrites + one fsync",
    unit: "writes/s",
    async run(mnt, c) {
      const n = c.sizes.randomWrites;
      return n / await fsops(c.bin, ["randwrite", `${mnt}/seq`, String(n), "0"]);
    },
  },
  {
    key: "random 4 KiB overwrites, fsync after each",
    unit: "writes/s",
    async run(mnt, c) {
      const n = c.sizes.syncedWrites;
      return n / await fsops(c.bin, ["randwrite", `${mnt}/seq`, String(n), "1"]);
    },
  },
  {
    key: "create empty files in one dir",
    unit: "files/s",
    unmount: { own: false, when: " after the creates" },
    async run(mnt, c) {
      await Deno.mkdir(`${mnt}/flat`);
      return c.sizes.flat / await fsops(c.bin, ["create", `${mnt}/flat`, String(c.sizes.flat)]);
    },
  },
  {
    // The same work again, for the row of the driver's own unmount command.
    key: "create as many in a second dir",
    unit: "files/s",
    unmount: { own: true, when: " after the creates" },
    async run(mnt, c) {
      await Deno.mkdir(`${mnt}/flat2`);
      return c.sizes.flat / await fsops(c.bin, ["create", `${mnt}/flat2`, String(c.sizes.flat)]);
    },
  },
  {
    key: "lstat of them by name",
    unit: "files/s",
    async run(mnt, c) {
      return c.sizes.flat / await fsops(c.bin, ["stat", `${mnt}/flat`, String(c.sizes.flat)]);
    },
  },
  {
    key: "ls -l of that dir",
    unit: "entries/s",
    run: (mnt, c) => readRow("ls -l of the flat dir").run(mnt, c.sizes),
  },
  {
    key: "unlink them",
    unit: "files/s",
    async run(mnt, c) {
      return c.sizes.flat / await fsops(c.bin, ["unlink", `${mnt}/flat`, String(c.sizes.flat)]);
    },
  },
  {
    key: "untar the tree + sync",
    unit: "s",
    async run(mnt, c) {
      // syncfs commits ext4ts's running transaction; fuse2fs answers FUSE_SYNCFS with ENOSYS
      // (the kernel takes it as done) and flushes the whole filesystem only on an fsync through
      // a descriptor open for writing: the fsync of one file makes sure both have committed.
      const t0 = performance.now();
      await tool("tar", ["-xf", c.archive, "-C", mnt]);
      await fsops(c.bin, ["sync", mnt, `${mnt}/tree/d000/e0/f001`]);
      return seconds(t0);
    },
  },
  {
    key: "find over the tree",
    unit: "s",
    run: (mnt, c) => readRow("find over the tree").run(mnt, c.sizes),
  },
  {
    key: "du over the tree",
    unit: "s",
    run: (mnt, c) => readRow("du over the tree").run(mnt, c.sizes),
  },
  {
    key: "rm -rf of the tree",
    unit: "s",
    unmount: { own: false, when: " after rm -rf" },
    async run(mnt) {
      const t0 = performance.now();
      await tool("rm", ["-rf", `${mnt}/tree`]);
      return seconds(t0);
    },
  },
];

/**
 * Waits until a process has exited (a daemon may free the device a moment before). A zombie whose
 * threads are gone has exited (`processAlive`): a daemonized server's new parent (init here) may
 * take seconds to reap it.
 */
async function exited(pid: number | undefined, limitS = 60): Promise<void> {
  const t0 = performance.now();
  while (pid !== undefined && processAlive(pid) && seconds(t0) < limitS) {
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** `e2fsck -fn` verdicts per driver: checks run, and what failed. */
type FsckLog = Map<string, { runs: number; failures: string[] }>;

async function fsckAfter(dev: string, driver: string, what: string, log: FsckLog): Promise<void> {
  const out = await new Deno.Command("e2fsck", {
    args: ["-fn", dev],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  let entry = log.get(driver);
  if (!entry) log.set(driver, entry = { runs: 0, failures: [] });
  entry.runs++;
  if (out.code !== 0) {
    entry.failures.push(what);
    console.error(
      `e2fsck -fn after ${driver}, ${what}: exit ${out.code}\n` +
        dec.decode(out.stdout).split("\n").slice(0, 20).join("\n"),
    );
  }
}

/**
 * The write rows of one driver in one round: a freshly made filesystem, then each row on a fresh
 * rw mount after dropping caches, unmounted and checked with `e2fsck -fn` after every row.
 */
async function writeRows(
  d: Driver,
  dev: string,
  mnt: string,
  c: WriteContext,
  results: Results,
  peaks: Map<string, number[]>,
  fsck: FsckLog,
): Promise<void> {
  // Inode tables and journal zeroed by mkfs: the kernel's lazy-init thread must not run during
  // the rows (of the kernel only).
  await sh(`mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 ${dev}`);
  for (const w of WRITE_STEPS) {
    await dropCaches();
    await d.mountRw(dev, mnt);
    const pid = d.daemon ? daemonOf(mnt) : undefined;
    let mounted = true;
    try {
      await dropCaches();
      const cpu0 = cpuSeconds(pid);
      const value = await w.run(mnt, c);
      const rss = peakRssMiB(pid);
      record(results, `rw: ${w.key} (${w.unit})`, d.name, value, cpuSeconds(pid) - cpu0, rss);
      if (d.daemon) peaks.set(d.name, [...peaks.get(d.name) ?? [], rss]);
      if (w.unmount) {
        const { own, when } = w.unmount;
        mounted = false;
        const unmount = own ? () => d.unmount(mnt) : () => tool("umount", [mnt]);
        record(
          results,
          `rw: ${unmountRow(own, when)}`,
          d.name,
          await timedUnmount(unmount, dev, pid),
        );
      }
    } finally {
      if (mounted) await tool("umount", [mnt]);
      await untilFree(dev, performance.now());
      await exited(pid);
    }
    await fsckAfter(dev, d.name, w.key, fsck);
  }
}

/** The tree of the untar row as a tar archive on a tmpfs; returns its path and entry count. */
async function buildArchive(s: Sizes): Promise<{ archive: string; shm: string; entries: number }> {
  const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "ext4ts-bench-" });
  await writeTree(`${shm}/src`, s.tree);
  await sh(`tar -cf ${shm}/tree.tar -C ${shm}/src tree`);
  await Deno.remove(`${shm}/src`, { recursive: true });
  const entries = (await sh(`tar -tf ${shm}/tree.tar | wc -l`)).trim();
  return { archive: `${shm}/tree.tar`, shm, entries: Number(entries) };
}

/** The table: medians (min–max) per driver, ext4ts's ratios, the daemons' CPU seconds. */
function format(
  results: Results,
  peaks: Map<string, number[]>,
  fsck: FsckLog,
  names: string[],
): string {
  const head = [
    "row",
    ...names,
    "ext4ts/fuse2fs",
    "ext4ts/kernel",
    ...names.filter((n) => n !== "kernel").map((n) => `${n} CPU s`),
    ...names.filter((n) => n !== "kernel").map((n) => `${n} RSS MiB`),
  ];
  const blank = () => names.filter((n) => n !== "kernel").flatMap(() => ["", ""]);
  /** The largest of the samples (a peak stays a peak: the max over the rounds, not a median). */
  const most = (xs: number[]) => fmt(Math.max(...xs.filter(Number.isFinite)));
  const body: string[][] = [];
  for (const [key, row] of results) {
    const med = (n: string) => spread(row.get(n)?.values ?? []).median;
    const higher = !key.endsWith("(s)");
    const ratio = (other: string) => {
      const r = higher ? med("ext4ts") / med(other) : med(other) / med("ext4ts");
      return Number.isFinite(r) ? `${r.toFixed(2)}×` : "n/a";
    };
    body.push([
      key,
      ...names.map((n) => showSpread(spread(row.get(n)?.values ?? []))),
      ratio("fuse2fs"),
      ratio("kernel"),
      ...names.filter((n) => n !== "kernel").map((n) => fmt(spread(row.get(n)?.cpu ?? []).median)),
      ...names.filter((n) => n !== "kernel").map((n) => most(row.get(n)?.rss ?? [])),
    ]);
  }
  body.push([
    "daemon peak RSS (MiB, max)",
    ...names.map((n) => fmt(Math.max(...(peaks.get(n) ?? [NaN])))),
    "",
    "",
    ...blank(),
  ]);
  if (fsck.size) {
    body.push([
      "e2fsck -fn clean after the rw rows",
      ...names.map((n) => {
        const f = fsck.get(n);
        return f ? `${f.runs - f.failures.length}/${f.runs}` : "n/a";
      }),
      "",
      "",
      ...blank(),
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  return [
    line(head),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...body.map(line),
    "(medians with min–max over the rounds; ratios > 1: ext4ts is better; CPU: the daemon's user + system seconds for that row; RSS: its peak resident set in that row, the largest over the rounds)",
  ].join("\n") + "\n";
}

/**
 * Which rows a run measures: the read-only ones, the read-write ones, or both; `mount`: only the
 * read-only mount and unmount rows (the first three), on the same prepared image.
 */
export type RowSet = "read" | "write" | "all" | "mount";

/**
 * Runs the benchmark and returns the table (and the raw samples).
 *
 * @example
 * ```ts ignore
 * console.log((await runMountBench({ quick: true, rounds: 3, rows: "write" })).text);
 * ```
 */
export async function runMountBench(
  options: {
    quick?: boolean;
    rounds?: number;
    rows?: RowSet;
    drivers?: string[];
    only?: string[];
  } = {},
): Promise<{ text: string; results: Results }> {
  const drivers = DRIVERS.filter((d) => !options.drivers || options.drivers.includes(d.name));
  const picked = (key: string) => !options.only || options.only.some((t) => key.includes(t));
  const workloads = WORKLOADS.filter((w) => picked(w.key));
  const mountRowsPicked = picked("mount until") || picked("umount") || picked("unmount");
  const s: Sizes = options.quick
    ? { bigMiB: 64, flat: 2000, tree: 4000, randomReads: 500, randomWrites: 500, syncedWrites: 50 }
    : {
      bigMiB: 512,
      flat: 10_000,
      tree: 20_000,
      randomReads: 2000,
      randomWrites: 2000,
      syncedWrites: 200,
    };
  const rounds = Math.max(3, options.rounds ?? 3);
  const rows = options.rows ?? "all";
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-" });
  let dev = "";
  let wdev = "";
  let shm = "";
  let entries = 0;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const results: Results = new Map();
  const peaks = new Map<string, number[]>();
  const fsck: FsckLog = new Map();
  const loadBefore = loadAverage();
  const failed = async (what: string, e: unknown, device: string) => {
    console.error(`${what}: ${(e as Error).message}`);
    await sh(`umount -l ${mnt}`, true);
    await untilFree(device, performance.now());
  };
  try {
    ext4ts = await installExt4ts(dir);
    if (rows !== "write") {
      dev = (await sh(`losetup -f --show --direct-io=on ${await buildImage(dir, s)}`)).trim();
    }
    let c: WriteContext | undefined;
    if (rows !== "read" && rows !== "mount") {
      const built = await buildArchive(s);
      shm = built.shm;
      entries = built.entries;
      c = { sizes: s, bin: await buildFsops(dir), archive: built.archive };
      // Room for the big file, the tree, the journal and slack; made anew per driver and round.
      const img = `${dir}/write.img`;
      await sh(`truncate -s ${s.bigMiB + 384 + Math.ceil(s.tree / 50)}M ${img}`);
      wdev = (await sh(`losetup -f --show --direct-io=on ${img}`)).trim();
    }
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so no driver always runs first (or right after another's load).
      const order = drivers.map((_, i) => drivers[(i + r) % drivers.length]);
      for (const d of order) {
        if (dev) {
          try {
            if (mountRowsPicked) await mountRows(d, dev, mnt, results);
            for (const w of rows === "mount" ? [] : workloads) {
              await coldRow(d, w, dev, mnt, s, results, peaks);
            }
          } catch (e) {
            await failed(`${d.name}, round ${r + 1}`, e, dev);
          }
        }
        if (c) {
          try {
            await writeRows(d, wdev, mnt, c, results, peaks, fsck);
          } catch (e) {
            await failed(`${d.name}, round ${r + 1}, write rows`, e, wdev);
          }
        }
      }
    }
  } finally {
    await sh(`umount -l ${mnt}`, true);
    for (const d of [dev, wdev]) if (d) await sh(`losetup -d ${d}`, true);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (shm) await Deno.remove(shm, { recursive: true }).catch(() => {});
  }
  const header = `${rounds} rounds; load average before ${loadBefore}, after ${loadAverage()}; ` +
    "ext4ts: the installed command (bundle + launcher); " +
    // Where the kernel wakes a FUSE daemon decides ~15 µs per request on a VM (ffi/fuse/serve.ts).
    `fuse.wake_here ${fuseWakesDaemonHere() ? "Y (ext4ts does not poll)" : "off or absent"}; ` +
    `${s.bigMiB} MiB file, ${s.flat} files flat, ${s.tree} files in the tree` +
    (entries ? ` (${entries} entries in the archive)` : "") + "\n" +
    (wdev
      ? "rw rows: a fresh mkfs.ext4 per driver and round, each row on a fresh mount after " +
        "dropping caches; fuse2fs 1.47 writes without its journal, the kernel and ext4ts " +
        "through it\n"
      : "");
  return { text: header + format(results, peaks, fsck, drivers.map((d) => d.name)), results };
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--rounds");
  const rounds = at >= 0 ? Number(Deno.args[at + 1]) : undefined;
  const rowSet = Deno.args.indexOf("--rows");
  const some = Deno.args.indexOf("--drivers");
  const only = Deno.args.indexOf("--only");
  const { text, results } = await runMountBench({
    quick: Deno.args.includes("--quick"),
    rounds,
    rows: rowSet >= 0 ? Deno.args[rowSet + 1] as RowSet : "all",
    drivers: some >= 0 ? Deno.args[some + 1].split(",") : undefined,
    only: only >= 0 ? Deno.args[only + 1].split(",") : undefined,
  });
  if (Deno.args.includes("--json")) {
    const json: Record<string, Record<string, Spread & { cpu: Spread; rss: Spread }>> = {};
    for (const [key, row] of results) {
      json[key] = {};
      for (const [n, smp] of row) {
        json[key][n] = { ...spread(smp.values), cpu: spread(smp.cpu), rss: spread(smp.rss) };
      }
    }
    console.log(JSON.stringify(json, null, 2));
  } else {
    console.log(text);
  }
}
