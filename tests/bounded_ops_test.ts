/**
 * Long operations in bounded journal transactions (issue 12): on 1 KiB-block filesystems with
 * a 1 MiB journal (256 journal blocks per transaction) and 1024-block groups, truncating a
 * 300 MiB file and removing a 150 MiB one each free a bitmap per group — more than one
 * transaction takes — so they run in steps, the inode on the orphan list in between, with extent
 * trees (ext4) and block maps (ext3) alike. Checked: several commits, each within the limit;
 * e2fsck -fn clean; the kernel sees the sizes; crash images between and inside the steps
 * (flush boundaries and torn subsets) recover — by e2fsck, by ext4ts (replay, then its orphan
 * processing at a writable open) and, sampled, by the kernel — to a consistent filesystem where
 * the file has its old or its new size, or is there or gone. Orphans crafted with debugfs (a
 * huge unlinked one, a huge pending truncate, 400 small ones) are processed at open in steps; a
 * huge hole punched through a handle, the last close of a huge unlinked file and `rm -r` of a
 * tree holding one run in bounded commits too; and the in-place unmapping of a block map's
 * middle (lib/ext4/block_map_trim.ts) leaves exactly the map, block count and data expected.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { crashImages, flushCrashPoints, tornCrashPoints } from "../lib/block/crash_points.ts";
import { run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { loadInode } from "../lib/ext4/inode.ts";
import { readFileMap, removeRange } from "../lib/ext4/file_map_write.ts";
import { freeInSteps } from "../lib/ext4/free_steps.ts";
import {
  blocksPerFlush,
  fsck,
  fsckAfterRecovery,
  IMAGE_TOOLS,
  journalBlocks,
  type Layout,
  LAYOUTS,
  mkfsImage,
} from "./write_fixtures.ts";

const MiB = 1 << 20;
const BIG = 300 * MiB; // truncated to SMALL
const GONE = 150 * MiB; // removed
const SMALL = 1000;
/** Journal blocks one transaction may take: a quarter of the 1024-block journal. */
const MAX_TRANSACTION = 256;

const SMALL_JOURNAL = ["-b", "1024", "-J", "size=1", "-g", "1024"];
const EXT4: Layout = { name: "ext4", mkfs: "mkfs.ext4", args: SMALL_JOURNAL, size: "500M" };
const EXT3: Layout = { name: "ext3", mkfs: "mkfs.ext3", args: SMALL_JOURNAL, size: "500M" };

/** A host file of `size` bytes of 0x01 (mkfs -d keeps zero blocks sparse). */
async function hostFile(path: string, size: number): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(MiB).fill(1);
  for (let at = 0; at < size; at += MiB) await f.write(chunk);
}

/**
 * The image with /big (BIG bytes) and /gone (GONE bytes), every block allocated: ext4's
 * fallocated by ext4ts (30 MiB per call, within a transaction), ext3's written by mkfs -d.
 */
async function bigFilesImage(dir: string, layout: Layout): Promise<Uint8Array> {
  if (layout === EXT3) {
    const src = `${dir}/src`;
    await Deno.mkdir(src);
    await hostFile(`${src}/big`, BIG);
    await hostFile(`${src}/gone`, GONE);
    try {
      return await mkfsImage(dir, layout, ["-d", src]);
    } finally {
      await Deno.remove(src, { recursive: true });
    }
  }
  const base = new MemoryBlockDevice(await mkfsImage(dir, layout));
  const fs = await Ext4.openDevice(base, { readOnly: false });
  for (const [name, size] of [["/big", BIG], ["/gone", GONE]] as const) {
    await fs.writeFile(name, new Uint8Array(0));
    for (let at = 0; at < size; at += 30 * MiB) await fs.fallocate(name, at, 30 * MiB);
  }
  await fs.close();
  return base.bytes;
}

/** Sizes of /big and /gone (null: absent) as ext4ts reads them. */
async function sizes(image: Uint8Array): Promise<[number | null, number | null]> {
  const fs = await Ext4.openDevice(new MemoryBlockDevice(image, { readOnly: true }), {
    recovery: "memory",
  });
  try {
    const size = async (name: string) =>
      (await fs.lookupIno(2, name)) === null ? null : (await fs.stat(`/${name}`)).size;
    return [await size("big"), await size("gone")];
  } finally {
    await fs.close();
  }
}

/** What a recovered image may hold: /big old or new, /gone there (whole) or not. */
function checkSizes(where: string, [big, gone]: [number | null, number | null]): void {
  assert.ok(big === BIG || big === SMALL, `${where}: /big has ${big} bytes`);
  assert.ok(gone === GONE || gone === null, `${where}: /gone has ${gone} bytes`);
}

/** Sizes the kernel sees after mounting (read-write: it replays and processes orphans). */
async function kernelSizes(
  dir: string,
  image: Uint8Array,
): Promise<{ sizes: [number | null, number | null]; fsck: { code: number; output: string } }> {
  const path = `${dir}/kernel.img`;
  await Deno.writeFile(path, image);
  try {
    const got = await withKernelMount(path, async (m) => {
      const size = async (p: string) =>
        (await Deno.stat(`${m}${p}`).catch(() => null))?.size ?? null;
      return [await size("/big"), await size("/gone")] as [number | null, number | null];
    });
    const r = await run("e2fsck", ["-fn", path]);
    return { sizes: got, fsck: { code: r.code, output: r.stdout + r.stderr } };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/**
 * Asserts that each operation (a name and its range of log entries) made several commits,
 * none over what one transaction may take; returns the image after all of the log.
 */
function boundedCommits(
  before: Uint8Array,
  log: WriteLogDevice,
  journal: Set<number> | null,
  operations: [string, number, number][],
): Uint8Array {
  for (const [what, from, to] of operations) {
    const commits = blocksPerFlush(log.entries, journal, 1024, from, to).filter((n) => n > 0);
    assert.ok(commits.length >= 3, `${what}: ${commits.length} commits`);
    assert.ok(
      Math.max(...commits) <= MAX_TRANSACTION,
      `${what}: journal blocks per commit ${commits.join(" ")}`,
    );
  }
  return log.replay(before, log.entries.length);
}

/**
 * Recovers crash image `image` two ways and asserts both e2fsck-clean: e2fsck's replay (and
 * its orphan release), then -fn; and, at the same time, ext4ts's: replay, orphans processed at
 * the writable open, then e2fsck -fn. Returns the image as ext4ts recovered it.
 */
async function recoveredClean(dir: string, image: Uint8Array, where: string): Promise<Uint8Array> {
  const ours = new MemoryBlockDevice(image.slice());
  const [theirs, checked] = await Promise.all([
    fsckAfterRecovery(dir, image),
    Ext4.openDevice(ours, { readOnly: false, recovery: "replay" })
      .then((fs) => fs.close())
      .then(() => fsck(dir, ours.bytes)),
  ]);
  assert.equal(theirs.code, 0, `${where}, e2fsck: ${theirs.output}`);
  assert.equal(checked.code, 0, `${where}, ext4ts: ${checked.output}`);
  return ours.bytes;
}

for (const layout of [EXT4, EXT3]) {
  testWith(
    `${layout.name} (1 KiB blocks, 1 MiB journal): truncate and remove of huge files run in bounded commits; every crash point recovers`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const before = await bigFilesImage(dir.path, layout);
      const journal = await journalBlocks(before);
      const log = new WriteLogDevice(new MemoryBlockDevice(before.slice()));
      const fs = await Ext4.openDevice(log, { readOnly: false });
      const start = log.entries.length;
      await fs.truncate("/big", SMALL);
      const truncated = log.entries.length;
      await fs.remove("/gone");
      const removed = log.entries.length;
      assert.equal((await fs.stat("/big")).size, SMALL);
      await fs.close();

      const after = boundedCommits(before, log, journal, [
        ["truncate", start, truncated],
        ["remove", truncated, removed],
      ]);
      const final = await fsck(dir.path, after);
      assert.equal(final.code, 0, final.output);
      const seen = await kernelSizes(dir.path, after);
      assert.deepEqual(seen.sizes, [SMALL, null]);

      // Crash points inside each operation: flush boundaries and torn subsets.
      const flush = flushCrashPoints(log.entries);
      const torn = tornCrashPoints(log.entries, { blockSize: 1024, perInterval: 1, seed: 12 });
      const pick = <T extends { durable: number }>(all: T[], n: number) =>
        [[start, truncated], [truncated, removed]].flatMap(([from, to]) => {
          const inside = all.filter((p) => p.durable >= from && p.durable < to);
          return Array.from(
            { length: n },
            (_, k) => inside[Math.floor((k + 0.5) * inside.length / n)],
          );
        });
      const points = [...pick(flush, 2), ...pick(torn, 1)];
      let flushSeen = 0;
      let kernel = 0;
      for (const { point, image } of crashImages(before, log.entries, points)) {
        const where = `${point.kind} crash point at ${point.durable}`;
        const ours = await recoveredClean(dir.path, image, where);
        checkSizes(`${where}, ext4ts`, await sizes(ours));
        // The kernel, sampled: its replay and orphan cleanup at mount.
        if (point.kind === "flush" && flushSeen++ % 2 === 0) {
          kernel++;
          const k = await kernelSizes(dir.path, image);
          checkSizes(`${where}, kernel`, k.sizes);
          assert.equal(k.fsck.code, 0, `${where}, after the kernel: ${k.fsck.output}`);
        }
      }
      assert.ok(kernel >= 2, `${kernel} crash points mounted by the kernel`);
    },
  );
}

testWith(
  "orphans at a writable open on a 1 MiB journal: a huge unlinked one, a huge pending truncate and 400 small ones, in steps",
  [...IMAGE_TOOLS, "debugfs"],
  async () => {
    await using dir = await tempDir();
    const base = new MemoryBlockDevice(await bigFilesImage(dir.path, EXT4));
    let fs = await Ext4.openDevice(base, { readOnly: false });
    const small: number[] = [];
    for (let i = 0; i < 400; i++) {
      await fs.writeFile(`/s${i}`, new Uint8Array(1500).fill(2));
      small.push((await fs.stat(`/s${i}`)).ino);
    }
    const big = (await fs.stat("/big")).ino;
    const gone = (await fs.stat("/gone")).ino;
    await fs.close();
    // The orphan list as a crash leaves it: /gone and the small files unlinked (names gone,
    // no links, still allocated), /big cut to SMALL bytes with its blocks still mapped.
    const list = [gone, big, ...small];
    const cmds = [
      "unlink /gone",
      `sif <${gone}> links_count 0`,
      `sif <${big}> size ${SMALL}`,
      ...small.flatMap((ino, i) => [`unlink /s${i}`, `sif <${ino}> links_count 0`]),
      ...list.map((ino, i) => `sif <${ino}> dtime ${list[i + 1] ?? 0}`),
      `ssv last_orphan ${list[0]}`,
    ];
    const path = `${dir.path}/orphans.img`;
    await Deno.writeFile(path, base.bytes);
    await Deno.writeTextFile(`${dir.path}/cmds`, cmds.join("\n") + "\n");
    await runOk("debugfs", ["-w", "-f", `${dir.path}/cmds`, path]);
    const before = await Deno.readFile(path);

    const log = new WriteLogDevice(new MemoryBlockDevice(before.slice()));
    const notices: string[] = [];
    fs = await Ext4.openDevice(log, { readOnly: false, onNotice: (m) => notices.push(m) });
    const opened = log.entries.length;
    assert.equal((await fs.stat("/big")).size, SMALL);
    assert.ok((await fs.stat("/big")).blocks <= 4, `${(await fs.stat("/big")).blocks} blocks`);
    await fs.close();
    assert.deepEqual(notices, ["orphan list processed: 401 inode(s) freed, 1 truncated"]);
    const commits = blocksPerFlush(log.entries, await journalBlocks(before), 1024, 0, opened)
      .filter((n) => n > 0);
    assert.ok(commits.length >= 10, `${commits.length} commits`);
    assert.ok(Math.max(...commits) <= MAX_TRANSACTION, `per commit: ${commits.join(" ")}`);
    const r = await fsck(dir.path, log.replay(before, log.entries.length));
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "ext4 (1 KiB blocks, 1 MiB journal): a huge hole punched through a handle, the last close of a huge unlinked file and rm -r of a tree holding one, in bounded commits",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const before = await bigFilesImage(dir.path, EXT4);
    const journal = await journalBlocks(before);
    const log = new WriteLogDevice(new MemoryBlockDevice(before.slice()));
    const fs = await Ext4.openDevice(log, { readOnly: false });
    const within = (what: string, from: number) => {
      const commits = blocksPerFlush(log.entries, journal, 1024, from).filter((n) => n > 0);
      assert.ok(commits.length >= 3, `${what}: ${commits.length} commits`);
      assert.ok(Math.max(...commits) <= MAX_TRANSACTION, `${what}: ${commits.join(" ")}`);
    };
    // Punch all but the first and last MiB (and a partial block at each edge).
    let from = log.entries.length;
    const big = await fs.openWritable("/big");
    await big.allocate(MiB - 100, BIG - 2 * MiB + 200, { mode: "punchHole" });
    await big.close();
    within("punch", from);
    const punched = await fs.stat("/big");
    assert.equal(punched.size, BIG);
    assert.equal(punched.blocks, 2 * MiB / 512); // the first and the last MiB are left
    // Unlinked while open: freed at the last close, in steps.
    const gone = await fs.openWritable("/gone");
    await fs.remove("/gone");
    from = log.entries.length;
    await gone.close();
    within("last close", from);
    // rm -r of a tree holding a huge file: the file kept on the orphan list by its step, then
    // freed in steps.
    await fs.mkdir("/d/e", { recursive: true });
    await fs.writeFile("/d/e/huge", new Uint8Array(0));
    for (let at = 0; at < GONE; at += 30 * MiB) await fs.fallocate("/d/e/huge", at, 30 * MiB);
    await fs.writeFile("/d/small", new Uint8Array(5000).fill(3));
    from = log.entries.length;
    await fs.remove("/d", { recursive: true });
    within("rm -r", from);
    assert.equal(await fs.lookupIno(2, "d"), null);
    await fs.close();
    const r = await fsck(dir.path, log.replay(before, log.entries.length));
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "ext3: freeInSteps unmaps the middle of a block map in place (direct, indirect and double indirect)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const base = new MemoryBlockDevice(await mkfsImage(dir.path, LAYOUTS[1]));
    // 1536 blocks of 4 KiB: direct, single and double indirect.
    const data = new Uint8Array(1536 * 4096).map((_, i) => (i >> 12) % 251);
    let fs = await Ext4.openDevice(base, { readOnly: false });
    await fs.writeFile("/f", data);
    const ino = (await fs.stat("/f")).ino;
    await fs.close();
    const dev = new MemoryBlockDevice(base.bytes);
    const w = await Ext4Writer.open(dev, { cacheCapacity: 64 });
    const mapOf = () =>
      w.transaction(async (ctx) => {
        const { f } = await loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
        return { map: await readFileMap(ctx.tx, ctx.sb, ino, f), blocks512: f.blocks512 };
      });
    const old = await mapOf();
    await w.steps((step) => freeInSteps(step, w, ino, 5, 1300));
    const now = await mapOf();
    assert.deepEqual(now.map.extents, removeRange(old.map.extents, 5, 1300).kept);
    // The single indirect block is covered whole: freed; the double indirect's first child
    // keeps blocks past 1300.
    assert.equal(now.map.mapBlocks.length, old.map.mapBlocks.length - 1);
    assert.equal(now.blocks512, old.blocks512 - (1295 + 1) * 8);
    await w.close();
    const r = await fsck(dir.path, dev.bytes);
    assert.equal(r.code, 0, r.output);
    fs = await Ext4.openDevice(new MemoryBlockDevice(dev.bytes, { readOnly: true }));
    const back = await fs.readFile("/f");
    await fs.close();
    assert.deepEqual(back.subarray(0, 5 * 4096), data.subarray(0, 5 * 4096));
    assert.ok(back.subarray(5 * 4096, 1300 * 4096).every((b) => b === 0));
    assert.deepEqual(back.subarray(1300 * 4096), data.subarray(1300 * 4096));
  },
);

testWith(
  "one fallocate of 300 MiB on a 1 MiB journal allocates in bounded chunks",
  IMAGE_TOOLS,
  async () => {
    // As the kernel's ext4_alloc_file_blocks restarts its handle: one call, several commits,
    // each within the journal's transaction limit; the file whole and e2fsck-clean at the end.
    await using dir = await tempDir();
    const base = await mkfsImage(dir.path, EXT4);
    const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(base)));
    const fs = await Ext4.openDevice(log, { readOnly: false });
    await fs.writeFile("/big", new Uint8Array(0));
    const start = log.entries.length;
    await fs.fallocate("/big", 0, BIG);
    const journal = await journalBlocks(base);
    const perFlush = blocksPerFlush(log.entries, journal, 1024, start);
    const commits = perFlush.filter((n) => n > 0).length;
    assert.ok(commits >= 3, `${commits} commits`);
    assert.ok(Math.max(...perFlush) <= MAX_TRANSACTION, `blocks per flush: ${perFlush.join(" ")}`);
    assert.equal((await fs.stat("/big")).size, BIG);
    await fs.close();
    const r = await fsck(dir.path, log.replay(base));
    assert.equal(r.code, 0, r.output);
  },
);

for (const layout of [EXT4, EXT3]) {
  testWith(
    `${layout.name} (1 KiB blocks, 1 MiB journal): writeFile of a huge file, its replacement and a huge handle write run in bounded commits; every crash point recovers`,
    IMAGE_TOOLS,
    async () => {
      // Writes far larger than one transaction takes (a bitmap and a descriptor per 1 MiB
      // group, a block map's indirect blocks): a new file, the same file replaced by other
      // contents (its old blocks freed in steps), and a write through a handle.
      const OLD = 120 * MiB;
      const NEW = 20 * MiB;
      const HANDLE = 30 * MiB;
      await using dir = await tempDir();
      const base = new MemoryBlockDevice(await mkfsImage(dir.path, layout));
      let fs = await Ext4.openDevice(base, { readOnly: false });
      await fs.writeFile("/old", new Uint8Array(OLD).fill(1));
      await fs.close();
      const before = base.bytes;
      const journal = await journalBlocks(before);
      const log = new WriteLogDevice(new MemoryBlockDevice(before.slice()));
      fs = await Ext4.openDevice(log, { readOnly: false });
      const start = log.entries.length;
      await fs.writeFile("/old", new Uint8Array(NEW).fill(2));
      const replaced = log.entries.length;
      const h = await fs.openWritable("/h");
      await h.write(new Uint8Array(HANDLE).fill(3));
      await h.close();
      const end = log.entries.length;
      await fs.close();
      const after = boundedCommits(before, log, journal, [
        ["replace", start, replaced],
        ["handle", replaced, end],
      ]);
      const final = await fsck(dir.path, after);
      assert.equal(final.code, 0, final.output);
      fs = await Ext4.openDevice(new MemoryBlockDevice(after, { readOnly: true }));
      const old = await fs.readFile("/old");
      const handle = await fs.readFile("/h");
      await fs.close();
      assert.ok(old.length === NEW && old.every((b) => b === 2), `/old: ${old.length} bytes`);
      assert.ok(handle.length === HANDLE && handle.every((b) => b === 3), "/h");

      // Crash points inside the replacement: /old recovers with its old contents, or with a
      // prefix of the new ones (its steps cut it to 0 first, then add 8 MiB at a time).
      const inside = <T extends { durable: number }>(all: T[], n: number) => {
        const within = all.filter((p) => p.durable >= start && p.durable < replaced);
        return Array.from(
          { length: n },
          (_, k) => within[Math.floor((k + 0.5) * within.length / n)],
        );
      };
      const points = [
        ...inside(flushCrashPoints(log.entries), 3),
        ...inside(tornCrashPoints(log.entries, { blockSize: 1024, perInterval: 1, seed: 7 }), 2),
      ];
      for (const { point, image } of crashImages(before, log.entries, points)) {
        const where = `${point.kind} crash point at ${point.durable}`;
        const ours = await recoveredClean(dir.path, image, where);
        const got = await Ext4.openDevice(new MemoryBlockDevice(ours, { readOnly: true }));
        const data = await got.readFile("/old");
        await got.close();
        const fill = data.length === OLD ? 1 : 2;
        assert.ok(
          data.length === OLD || data.length <= NEW,
          `${where}: /old has ${data.length} bytes`,
        );
        assert.ok(data.every((b) => b === fill), `${where}: /old holds other bytes`);
      }
    },
  );
}
