/**
 * FITRIM in the library (lib/ext4/trim.ts through `nodeWriter().trim`), against the free
 * space e2fsprogs sees: on an image whose free space debugfs fragmented, the runs discarded
 * are exactly the free extents `dumpe2fs` lists (the kernel's rules for the range, the minimum
 * length and the device's granularity applied to them), the bytes reported are their sum, the
 * discarded blocks read back as zeroes, live files keep their contents and `e2fsck -fn` stays
 * clean. Blocks freed by a commit that is not durable yet are left alone until it is; bad
 * ranges are EINVAL and a device that cannot discard EOPNOTSUPP, as the kernel answers. On an
 * image file (`FileBlockDevice`) the discards punch holes: the file's allocated size shrinks.
 * Trimmed groups are remembered as the kernel's WAS_TRIMMED and `s_last_trim_minblks` rule
 * them: skipped until blocks freed there become allocatable (after their commit, or once it is
 * durable) or a smaller minimum than the last FITRIM's is asked; a range from a group's start
 * marks it when its last free run reaches the group's end; reopening forgets.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { PassThroughDevice } from "../lib/block/pass_through_device.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { assertFsckClean, runOk, tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS } from "./write_fixtures.ts";

const NEEDS = [...IMAGE_TOOLS, "debugfs"];
const BS = 1024;
const ALL = { start: 0, length: Number.MAX_SAFE_INTEGER, minLength: 0 };

/** A device that records every discard passed through it. */
class DiscardLog extends PassThroughDevice {
  readonly discards: [number, number][] = [];

  override discard(offset: number, length: number): Promise<void> {
    this.discards.push([offset / BS, length / BS]);
    return super.discard(offset, length);
  }
}

/**
 * A 1 KiB-block ext4 (two groups, first data block 1) whose free space is cut into runs of
 * many lengths: debugfs writes files of 1..40 KiB and removes every other one. Returns the
 * image path; `f<i>` for odd `i` remain.
 */
async function fragmentedImage(dir: string): Promise<string> {
  const img = `${dir}/t.img`;
  await runOk("mkfs.ext4", ["-qF", "-b", String(BS), "-E", "lazy_itable_init=1", img, "16M"], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  const cmds: string[] = [];
  for (let i = 0; i < 40; i++) {
    const host = `${dir}/src${i}`;
    const data = new Uint8Array((i + 1) * 1000);
    for (let j = 0; j < data.length; j++) data[j] = (i * 31 + j * 7) & 0xff;
    await Deno.writeFile(host, data);
    cmds.push(`write ${host} f${i}`);
  }
  for (let i = 0; i < 40; i += 2) cmds.push(`rm f${i}`);
  await Deno.writeTextFile(`${dir}/cmds`, cmds.join("\n") + "\n");
  await runOk("debugfs", ["-w", "-f", `${dir}/cmds`, img]);
  return img;
}

/** The free extents `dumpe2fs` lists, per group, as [first, last] block numbers. */
async function freeExtents(img: string): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for (const line of (await runOk("dumpe2fs", [img])).split("\n")) {
    const m = /^\s+Free blocks: (.*)$/.exec(line);
    if (!m || !m[1].trim()) continue;
    for (const part of m[1].split(",")) {
      const [a, b] = part.trim().split("-").map(Number);
      out.push([a, b ?? a]);
    }
  }
  return out;
}

const PER_GROUP = 8192; // blocks per group of a 1 KiB-block mkfs.ext4

/** The group of block `b` (1 KiB blocks: the first data block is 1). */
function groupOf(b: number): number {
  return Math.floor((b - 1) / PER_GROUP);
}

function sumBlocks(runs: [number, number][]): number {
  return runs.reduce((s, [, n]) => s + n, 0);
}

/** The block runs of `path` as [first, count] (with `close`, the filesystem is closed after). */
async function blocksOf(fs: Ext4, path: string, close = false): Promise<[number, number][]> {
  const runs = await fs.blockRuns(await fs.inode((await fs.stat(path)).ino));
  if (close) await fs.close();
  return runs.map((r) => [r.physical, r.length]);
}

/** The free extents dumpe2fs lists in `groups` of the image `bytes`, as [first, count]. */
async function freeExtentsOf(
  dir: string,
  bytes: Uint8Array,
  groups: Set<number>,
): Promise<[number, number][]> {
  const path = `${dir}/extents.img`;
  await Deno.writeFile(path, bytes);
  return (await freeExtents(path)).filter(([a]) => groups.has(groupOf(a))).map((
    [a, b],
  ) => [a, b - a + 1]);
}

/** `runs` with `blocks` added (merged into the runs they touch), in order. */
function withBlocks(runs: [number, number][], blocks: [number, number][]): [number, number][] {
  const bits = new Set<number>();
  for (const [a, n] of [...runs, ...blocks]) for (let b = a; b < a + n; b++) bits.add(b);
  const out: [number, number][] = [];
  for (const b of [...bits].sort((x, y) => x - y)) {
    const last = out.at(-1);
    if (last && last[0] + last[1] === b) last[1]++;
    else out.push([b, 1]);
  }
  return out;
}

/** Opens `bytes` read-write on a recording device that discards with `granularity`. */
async function open(bytes: Uint8Array, granularity = 512, commitInterval?: number) {
  const mem = new MemoryBlockDevice(bytes, { discardGranularity: granularity });
  const log = new DiscardLog(mem);
  const fs = await Ext4.openDevice(log, { readOnly: false, commitInterval });
  return { mem, log, fs };
}

async function fsckClean(dir: string, bytes: Uint8Array): Promise<void> {
  const path = `${dir}/check.img`;
  await Deno.writeFile(path, bytes);
  await assertFsckClean(path);
}

testWith(
  "trim: discards exactly the free extents dumpe2fs lists; files intact",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await fragmentedImage(dir.path);
    const free = await freeExtents(img);
    assert.ok(free.length > 20, "the free space is fragmented");
    const before = await Deno.readFile(img);
    const { mem, log, fs } = await open(Uint8Array.from(before));
    const bytes = await fs.nodeWriter().trim(ALL);
    const expected = free.map(([a, b]) => [a, b - a + 1]);
    assert.deepEqual(log.discards, expected);
    const freeBlocks = free.reduce((n, [a, b]) => n + b - a + 1, 0);
    assert.equal(bytes, freeBlocks * BS);
    assert.equal(bytes, fs.statfs().freeBlocks * BS, "every free block was discarded");
    for (const [a, n] of expected) {
      assert.ok(mem.bytes.subarray(a * BS, (a + n) * BS).every((x) => x === 0));
    }
    for (let i = 1; i < 40; i += 2) {
      const data = await fs.readFile(`/f${i}`);
      assert.deepEqual(data, await Deno.readFile(`${dir.path}/src${i}`), `f${i} intact`);
    }
    await fs.close();
    await fsckClean(dir.path, mem.bytes);
  },
);

testWith(
  "trim: the range, the minimum length and the granularity as the kernel applies them",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await fragmentedImage(dir.path);
    const free = await freeExtents(img);
    const bytes = await Deno.readFile(img);
    const cases: { range: typeof ALL; granularity?: number; want: [number, number][] }[] = [];
    // Runs of at least 8 blocks only.
    cases.push({
      range: { ...ALL, minLength: 8 * BS },
      want: free.filter(([a, b]) => b - a + 1 >= 8).map(([a, b]) => [a, b - a + 1]),
    });
    // A minimum below the device's granularity (4 KiB: 4 blocks) becomes the granularity.
    cases.push({
      range: { ...ALL, minLength: 2 * BS },
      granularity: 4096,
      want: free.filter(([a, b]) => b - a + 1 >= 4).map(([a, b]) => [a, b - a + 1]),
    });
    // A window from the middle of one free extent to the middle of another: the first is cut
    // at the window's start, the last (starting inside) is discarded whole, past the window.
    const long = free.filter(([a, b]) => b - a >= 4);
    const [s0, s1] = long[2];
    const [e0] = long[long.length - 3];
    const start = s0 + 2;
    const end = e0 + 1;
    assert.ok(start <= s1 && end > e0);
    const window: [number, number][] = [];
    for (const [a, b] of free) {
      if (a <= end && b >= start) window.push([Math.max(a, start), b - Math.max(a, start) + 1]);
    }
    cases.push({
      range: { start: start * BS, length: (end - start + 1) * BS, minLength: 0 },
      want: window,
    });
    for (const c of cases) {
      const { log, fs } = await open(Uint8Array.from(bytes), c.granularity);
      const n = await fs.nodeWriter().trim(c.range);
      assert.deepEqual(log.discards, c.want, JSON.stringify(c.range));
      assert.equal(n, c.want.reduce((s, [, len]) => s + len, 0) * BS);
      await fs.close();
    }
  },
);

testWith(
  "trim: EINVAL for a bad range, EOPNOTSUPP without discard, as the kernel",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const bytes = await Deno.readFile(await fragmentedImage(dir.path));
    const { log, fs } = await open(Uint8Array.from(bytes));
    const nw = fs.nodeWriter();
    const size = fs.superblock.blocksCount * BS;
    for (
      const range of [
        { ...ALL, start: size }, // starts past the end
        { ...ALL, length: BS - 1 }, // shorter than a block
        { ...ALL, minLength: (fs.superblock.blocksPerGroup + 1) * BS }, // more than a group
      ]
    ) {
      await assert.rejects(
        nw.trim(range),
        (e) => e instanceof Ext4Error && e.errno === Errno.EINVAL,
      );
    }
    // A range inside the first data block's predecessor (block 0 of a 1 KiB filesystem): nothing.
    assert.equal(await nw.trim({ start: 0, length: BS, minLength: 0 }), 0);
    assert.deepEqual(log.discards, []);
    await fs.close();
    const plain = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(bytes)), {
      readOnly: false,
    });
    await assert.rejects(
      plain.nodeWriter().trim(ALL),
      (e) => e instanceof Ext4Error && e.errno === Errno.EOPNOTSUPP,
    );
    await plain.close();
  },
);

testWith("trim: blocks freed by a commit not durable yet are left until it is", NEEDS, async () => {
  await using dir = await tempDir();
  const bytes = await Deno.readFile(await fragmentedImage(dir.path));
  const { mem, log, fs } = await open(Uint8Array.from(bytes), 512, 3600);
  const held = await blocksOf(fs, "/f39");
  const heldGroups = new Set(held.map(([a]) => groupOf(a)));
  await fs.remove("/f39");
  const isHeld = ([a, n]: [number, number]) => held.some(([h, m]) => a < h + m && h < a + n);
  await fs.nodeWriter().trim(ALL);
  assert.ok(!log.discards.some(isHeld), "the running transaction's frees were not discarded");
  log.discards.length = 0;
  // Every group was trimmed; once the frees are durable they clear their group's mark, so
  // the next trim discards that group's free space (theirs included) and no other group's.
  await fs.sync();
  const second = await fs.nodeWriter().trim(ALL);
  assert.ok(log.discards.some(isHeld), "once durable, they are");
  await fs.close();
  const want = await freeExtentsOf(dir.path, mem.bytes, heldGroups);
  assert.deepEqual(log.discards, want);
  assert.equal(second, sumBlocks(want) * BS);
});

testWith(
  "trim: a trimmed group is skipped until blocks are freed there, as the kernel's WAS_TRIMMED",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await fragmentedImage(dir.path);
    const free = await freeExtents(img);
    const { mem, log, fs } = await open(Uint8Array.from(await Deno.readFile(img)));
    const nw = fs.nodeWriter();
    assert.equal(await nw.trim(ALL), sumBlocks(free.map(([a, b]) => [a, b - a + 1])) * BS);
    log.discards.length = 0;
    assert.equal(await nw.trim(ALL), 0, "a second trim finds every group trimmed");
    assert.deepEqual(log.discards, []);
    // Freeing a file's blocks (each write commits as it returns) clears its group's mark only.
    const gone = await blocksOf(fs, "/f39");
    const groups = new Set(gone.map(([a]) => groupOf(a)));
    assert.equal(groups.size, 1, "f39 lies in one group");
    assert.ok(fs.superblock.groupCount > 1);
    await fs.remove("/f39");
    const third = await nw.trim(ALL);
    const thirdRuns = log.discards.splice(0);
    assert.equal(await nw.trim(ALL), 0);
    assert.deepEqual(log.discards, []);
    // An allocation alone does not clear a mark (the kernel clears it where blocks are freed).
    await fs.writeFile("/new", new Uint8Array(5 * BS).fill(7));
    assert.equal(await nw.trim(ALL), 0);
    await fs.close();
    await fsckClean(dir.path, mem.bytes);
    // The third trim discarded exactly the free extents of f39's group, as dumpe2fs lists them
    // now (/new went elsewhere or into a run the trim had already discarded: checked below).
    const after = await freeExtentsOf(dir.path, mem.bytes, groups);
    const newBlocks = await blocksOf(
      await Ext4.openDevice(new MemoryBlockDevice(mem.bytes)),
      "/new",
      true,
    );
    const want = withBlocks(after, newBlocks.filter(([a]) => groups.has(groupOf(a))));
    assert.deepEqual(thirdRuns, want);
    assert.equal(third, sumBlocks(want) * BS);
    assert.ok(gone.every(([a, n]) => want.some(([w, m]) => w <= a && a + n <= w + m)));
  },
);

testWith(
  "trim: a smaller minimum trims the marked groups again; a remount forgets the marks",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await fragmentedImage(dir.path);
    const free = (await freeExtents(img)).map(([a, b]) => [a, b - a + 1] as [number, number]);
    const { mem, log, fs } = await open(Uint8Array.from(await Deno.readFile(img)));
    const nw = fs.nodeWriter();
    const min = (blocks: number) => ({ ...ALL, minLength: blocks * BS });
    const atLeast = (n: number) => free.filter(([, len]) => len >= n);
    const steps: [number, [number, number][]][] = [
      [8, atLeast(8)], // every group marked, the last minimum 8 blocks
      [8, []], // not smaller: skipped
      [16, []], // skipped; the last minimum is 16 now
      [4, atLeast(4)], // smaller: every marked group again, runs of 4 blocks and more
      [4, []],
      [8, []], // not smaller than 4, skipped; but the last minimum is 8 now
      [4, atLeast(4)], // so 4 is smaller again (the kernel's s_last_trim_minblks, exactly)
      [1, atLeast(1)],
    ];
    for (const [blocks, want] of steps) {
      const n = await nw.trim(min(blocks));
      assert.deepEqual(log.discards.splice(0), want, `minimum ${blocks}`);
      assert.equal(n, sumBlocks(want) * BS);
    }
    await fs.close();
    // The memory is the mounted filesystem's: opened again, every group is trimmed again.
    const again = await open(mem.bytes);
    assert.equal(await again.fs.nodeWriter().trim(ALL), sumBlocks(free) * BS);
    assert.deepEqual(again.log.discards, free);
    await again.fs.close();
    await fsckClean(dir.path, again.mem.bytes);
  },
);

testWith(
  "trim: a range from a group's start marks it when its last free run reaches the group's end",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    // Group 0's free space in two runs: a long one (A's, removed), B, a short one to its end.
    const img = `${dir.path}/t.img`;
    await runOk("mkfs.ext4", ["-qF", "-b", String(BS), "-E", "lazy_itable_init=1", img, "16M"], {
      env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
    });
    const [[head, headEnd]] = await freeExtents(img);
    const tailLength = 81;
    await Deno.writeFile(
      `${dir.path}/A`,
      new Uint8Array((headEnd - head + 1 - 40 - tailLength) * BS).fill(1), // zeroes: a hole
    );
    await Deno.writeFile(`${dir.path}/B`, new Uint8Array(40 * BS).fill(2));
    await runOk("debugfs", ["-w", "-R", `write ${dir.path}/A A`, img]);
    await runOk("debugfs", ["-w", "-R", `write ${dir.path}/B B`, img]);
    await runOk("debugfs", ["-w", "-R", "rm A", img]);
    const free = (await freeExtents(img)).map(([a, b]) => [a, b - a + 1] as [number, number]);
    const inGroup0 = free.filter(([a]) => groupOf(a) === 0);
    assert.deepEqual(inGroup0.map(([, n]) => n), [
      headEnd - head + 1 - 40 - tailLength,
      tailLength,
    ]);
    const tail = inGroup0[1][0];
    assert.equal(tail + tailLength - 1, PER_GROUP, "the short run ends group 0");
    const bytes = await Deno.readFile(img);
    const cases: { to: number; minBlocks: number; marked: boolean }[] = [
      // The range ends inside the last free run: the run is trimmed whole, the group marked.
      { to: tail + 1, minBlocks: 0, marked: true },
      // The range ends before it: the group is not marked.
      { to: tail - 1, minBlocks: 0, marked: false },
      // Fewer free blocks than the minimum after the long run: the kernel stops there, before
      // it sees the run reaching the end; the group is not marked.
      { to: tail + 1, minBlocks: tailLength + 1, marked: false },
      // Exactly the minimum left: it goes on, sees (and trims) that run, marks the group.
      { to: tail + 1, minBlocks: tailLength, marked: true },
    ];
    for (const c of cases) {
      const { mem, log, fs } = await open(Uint8Array.from(bytes));
      const nw = fs.nodeWriter();
      const minLength = c.minBlocks * BS;
      await nw.trim({ start: 0, length: (c.to + 1) * BS, minLength });
      assert.deepEqual(
        log.discards.splice(0),
        inGroup0.filter(([a, n]) => a <= c.to && n >= c.minBlocks),
      );
      // The same minimum again over everything: group 0 is skipped only if it was marked.
      await nw.trim({ ...ALL, minLength });
      const want = free.filter(([a, n]) => n >= c.minBlocks && (!c.marked || groupOf(a) !== 0));
      assert.deepEqual(log.discards, want, JSON.stringify(c));
      await fs.close();
      await fsckClean(dir.path, mem.bytes);
    }
  },
);

testWith(
  "trim: an image file opened for writing gets its free space punched out",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await fragmentedImage(dir.path);
    // Fill the free space of the image file with bytes so that it is allocated on the host.
    const fd = await Deno.open(img, { write: true });
    const junk = new Uint8Array(BS).fill(0xa5);
    let free = 0;
    for (const [a, b] of await freeExtents(img)) {
      for (let blk = a; blk <= b; blk++, free += BS) {
        await fd.seek(blk * BS, Deno.SeekMode.Start);
        await fd.write(junk);
      }
    }
    fd.close();
    const before = Deno.statSync(img).blocks! * 512;
    const dev = openBlockDevice(img, { readOnly: false });
    assert.equal(dev.discardGranularity, Deno.statSync(img).blksize);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const trimmed = await fs.nodeWriter().trim(ALL);
    await fs.close();
    await dev.close();
    const after = Deno.statSync(img).blocks! * 512;
    // Runs shorter than the host's block (st_blksize) are left: a little less than all.
    assert.ok(trimmed <= free && trimmed > free / 2, `${trimmed} of ${free} free bytes`);
    // Punched holes free whole host blocks only: a run's partial blocks at its ends stay.
    assert.ok(before - after >= trimmed / 2, `the image shrank by ${before - after} bytes`);
    await assertFsckClean(img);
    const check = await Ext4.openDevice(openBlockDevice(img));
    for (let i = 1; i < 40; i += 2) {
      const data = await check.readFile(`/f${i}`);
      assert.deepEqual(data, await Deno.readFile(`${dir.path}/src${i}`), `f${i} intact`);
    }
    await check.close();
  },
);
