/**
 * Failed writes and flushes reach the caller and nothing later claims success: a device that
 * fails a chosen write or flush with EIO (lib/block/fault_device.ts) under `put` (through the
 * body of `withWriter`) and the writable `Ext4` (writeFile, mkdir, rename, close); and
 * FileBlockDevice.flush's errno from a real writeback failure (a loop device over a full tmpfs).
 */
import assert from "node:assert/strict";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { FaultDevice, type FaultPlan } from "../lib/block/fault_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { putTree } from "../cli/commands/put.ts";
import { writeDevice } from "../cli/writer_open.ts";
import { detachLoop, losetup, run, runCli, runOk, tempDir, testWith } from "./helpers.ts";
import { fsckAfterRecovery, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const EXT4 = LAYOUTS[2];
const enc = new TextEncoder();

/** The error every write after the first failure is refused with. */
function isFatal(e: unknown): boolean {
  return e instanceof Ext4Error && e.code === "IO" && e.errno === Errno.EIO &&
    /accepts no more writes after an I\/O error: injected fault/.test(e.message);
}

/** The injected failure itself, as the device reported it. */
function isInjected(e: unknown): boolean {
  return e instanceof Ext4Error && e.code === "IO" && e.errno === Errno.EIO &&
    /^injected fault/.test(e.message);
}

Deno.test("FaultDevice fails the planned write and flush once, and blocks touched", async () => {
  const mem = new MemoryBlockDevice(new Uint8Array(8 * 4096));
  const dev = new FaultDevice(mem, { write: 2, flushesOf: [5] });
  await dev.write(0, new Uint8Array([1]));
  await assert.rejects(() => dev.write(4096, new Uint8Array([2])), isInjected);
  assert.equal(mem.bytes[4096], 0, "a failed write writes nothing");
  await dev.write(4096, new Uint8Array([2]));
  await dev.flush();
  await dev.write(5 * 4096 + 10, new Uint8Array(4));
  await assert.rejects(() => dev.flush(), isInjected);
  await dev.flush(); // reported once, like the kernel's writeback errors
  dev.plan({ writesTo: [7] });
  await assert.rejects(() => dev.write(6 * 4096, new Uint8Array(4097)), isInjected);
  assert.deepEqual(dev.faults.map((f) => `${f.kind} ${f.n}`), ["write 2", "flush 2", "write 5"]);
  assert.equal(dev.writes, 5);
  assert.equal(dev.flushes, 3);
});

/** A fresh ext4 image in memory behind a FaultDevice with no plan yet. */
async function faultyImage(dir: string): Promise<{ mem: MemoryBlockDevice; dev: FaultDevice }> {
  const mem = new MemoryBlockDevice(await mkfsImage(dir, EXT4));
  return { mem, dev: new FaultDevice(mem) };
}

/** Counts of what reached the device: nothing may after the failure. */
function after(dev: FaultDevice): { writes: number; flushes: number } {
  return { writes: dev.writes, flushes: dev.flushes };
}

/** e2fsck -fn of the device's bytes, logged so the report can say what it found. */
async function fsckOf(
  dir: string,
  mem: MemoryBlockDevice,
  label: string,
): Promise<{ code: number; output: string }> {
  // As a recovery sees it: the journal (holding the commits not yet checkpointed) replayed.
  const r = await fsckAfterRecovery(dir, mem.bytes);
  console.log(`e2fsck -fn after ${label} (and its journal replay): exit ${r.code}\n${r.output}`);
  return r;
}

/** How a plan is set for the next operation, counted from the device's writes and flushes. */
type Fault = { name: string; plan: (d: FaultDevice) => FaultPlan; damage: RegExp | null };
const FAULTS: Fault[] = [
  // The commit writes its data first: the next write is the file's data.
  { name: "a data write", plan: (d) => ({ write: d.writes + 1 }), damage: null },
  // After the data write the metadata follows, logged to the journal: fail the first write.
  { name: "a metadata write", plan: (d) => ({ write: d.writes + 2 }), damage: null },
  // The flush between the data + log and the commit block: no commit block after it.
  { name: "a flush", plan: (d) => ({ flush: d.flushes + 1 }), damage: null },
  // A later write of the commit (a block of its journal transaction): the transaction never
  // committed, so recovery ignores whatever of it reached the log. Written in place (before
  // the journal), this left the superblock's free counts ahead of the bitmaps.
  { name: "a later metadata write", plan: (d) => ({ write: d.writes + 3 }), damage: null },
];

for (const f of FAULTS) {
  testWith(`Ext4: EIO on ${f.name} of writeFile reaches the caller; then writes and close fail`, [
    ...IMAGE_TOOLS,
  ], async () => {
    await using dir = await tempDir();
    const { mem, dev } = await faultyImage(dir.path);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.writeFile("/before", enc.encode("committed before the fault\n"));
    dev.plan(f.plan(dev));
    await assert.rejects(() => fs.writeFile("/f", new Uint8Array(64 * 1024).fill(7)), isInjected);
    assert.equal(dev.faults.length, 1);
    const seen = after(dev);
    // Every later write fails at once with the fatal error naming the first failure.
    await assert.rejects(() => fs.mkdir("/d"), isFatal);
    await assert.rejects(() => fs.writeFile("/g", enc.encode("x")), isFatal);
    await assert.rejects(() => fs.rename("/before", "/after"), isFatal);
    await assert.rejects(() => fs.openWritable("/h"), isFatal);
    await assert.rejects(() => fs.sync(), isFatal);
    // Reads keep working.
    assert.equal(
      new TextDecoder().decode(await fs.readFile("/before")),
      "committed before the fault\n",
    );
    // close rejects, releases the device, and nothing reached it after the failure.
    await assert.rejects(() => fs.close(), isFatal);
    assert.ok(dev.closed);
    assert.deepEqual(after(dev), seen);
    const r = await fsckOf(dir.path, mem, `EIO on ${f.name}`);
    assert.equal(r.code, 0, r.output);
    if (f.damage) assert.match(r.output, f.damage);
    else assert.doesNotMatch(r.output, /Fix\? no/);
  });
}

testWith("Ext4: EIO on mkdir's and rename's metadata writes; close after them rejects", [
  ...IMAGE_TOOLS,
], async () => {
  await using dir = await tempDir();
  for (const op of ["mkdir", "rename"] as const) {
    const { mem, dev } = await faultyImage(dir.path);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.writeFile("/a", enc.encode("a"));
    dev.plan({ write: dev.writes + 1 }); // no data in these commits: the first metadata write
    const failing = op === "mkdir" ? fs.mkdir("/d") : fs.rename("/a", "/b");
    await assert.rejects(() => failing, isInjected);
    const seen = after(dev);
    await assert.rejects(() => fs.mkdir("/e"), isFatal);
    assert.deepEqual((await fs.stat("/a")).size, 1);
    await assert.rejects(() => fs.close(), isFatal);
    assert.deepEqual(after(dev), seen);
    const r = await fsckOf(dir.path, mem, `EIO on ${op}'s first metadata write`);
    assert.equal(r.code, 0, r.output);
    assert.doesNotMatch(r.output, /Fix\? no/);
  }
});

testWith("Ext4: a failed flush in close, and a failed write freeing an orphan in close, reject", [
  ...IMAGE_TOOLS,
], async () => {
  await using dir = await tempDir();
  {
    const { dev } = await faultyImage(dir.path);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.writeFile("/a", enc.encode("a"));
    dev.plan({ flush: dev.flushes + 1 });
    await assert.rejects(() => fs.close(), isInjected);
    assert.ok(dev.closed);
  }
  {
    // A file removed while open is freed by close: that transaction's failure was swallowed.
    const { mem, dev } = await faultyImage(dir.path);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const f = await fs.openWritable("/open");
    await f.write(new Uint8Array(10_000).fill(1));
    await fs.remove("/open");
    dev.plan({ write: dev.writes + 1 });
    await assert.rejects(() => fs.close(), isFatal);
    assert.equal(dev.faults.length, 1);
    assert.ok(dev.closed);
    // Nothing of the freeing was committed: the file stays the orphan it was, as after a
    // crash, and the recovery (journal replay, then the orphan list) finishes freeing it.
    const r = await fsckOf(dir.path, mem, "EIO freeing an orphan");
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /Clearing orphaned inode 12 /);
  }
});

testWith(
  "Ext4: a failed write in close's checkpoint or clean mark rejects, and loses nothing committed",
  [
    ...IMAGE_TOOLS,
  ],
  async () => {
    await using dir = await tempDir();
    const written = async () => {
      const { mem, dev } = await faultyImage(dir.path);
      const fs = await Ext4.openDevice(dev, { readOnly: false });
      for (let i = 0; i < 20; i++) await fs.writeFile(`/f${i}`, enc.encode(`file ${i}\n`));
      return { mem, dev, fs };
    };
    // How many writes a clean close makes: its last one marks the superblock clean.
    const twin = await written();
    const before = twin.dev.writes;
    await twin.fs.close();
    const closeWrites = twin.dev.writes - before;
    // Fail the checkpoint's first write home (block 0: the superblock's logged image), or the
    // clean mark (the last write).
    for (const which of ["checkpoint", "clean mark"] as const) {
      const { mem, dev, fs } = await written();
      dev.plan(
        which === "checkpoint" ? { writesTo: [0] } : { write: dev.writes + closeWrites },
      );
      await assert.rejects(() => fs.close(), isInjected);
      assert.ok(dev.closed);
      assert.equal(dev.faults.length, 1);
      // The journal still holds every commit (a failed checkpoint never moves its tail), or is
      // empty with everything home: either way recovery gives all of it.
      const r = await fsckOf(dir.path, mem, `EIO in close's ${which}`);
      assert.equal(r.code, 0, r.output);
      const re = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(mem.bytes)), {
        recovery: "memory",
      });
      for (let i = 0; i < 20; i++) {
        assert.equal(new TextDecoder().decode(await re.readFile(`/f${i}`)), `file ${i}\n`);
      }
      await re.close();
    }
  },
);

for (const f of FAULTS.slice(0, 3)) {
  testWith(`put through withWriter: EIO on ${f.name} reaches the caller; the writer refuses`, [
    ...IMAGE_TOOLS,
  ], async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/sub`, { recursive: true });
    await Deno.writeFile(`${src}/sub/file`, new Uint8Array(100_000).fill(3));
    const { mem, dev } = await faultyImage(dir.path);
    let writer: Parameters<Parameters<typeof writeDevice>[2]>[0] | undefined;
    // Fails in putTree's final commit (its only one here), as a user's put would.
    await assert.rejects(
      () =>
        writeDevice(dev, {}, (w) => {
          writer = w;
          dev.plan(f.plan(dev));
          return putTree(w, src, "/copy");
        }),
      isInjected,
    );
    const seen = after(dev);
    assert.ok(writer);
    await assert.rejects(() => writer!.flush(), isFatal);
    await assert.rejects(() => writer!.transaction(() => Promise.resolve()), isFatal);
    await assert.rejects(() => putTree(writer!, src, "/again"), isFatal);
    assert.deepEqual(after(dev), seen);
    const r = await fsckOf(dir.path, mem, `put, EIO on ${f.name}`);
    assert.equal(r.code, 0, r.output);
    assert.doesNotMatch(r.output, /Fix\? no/);
  });
}

testWith("put through withWriter: a failure fn swallowed still makes the final flush reject", [
  ...IMAGE_TOOLS,
], async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/f`;
  await Deno.writeFile(src, new Uint8Array(5000).fill(9));
  const { dev } = await faultyImage(dir.path);
  await assert.rejects(
    () =>
      writeDevice(dev, {}, async (w) => {
        dev.plan({ flush: dev.flushes + 1 });
        await putTree(w, src, "/f").catch(() => {}); // a careless caller
        return "done";
      }),
    isFatal,
  );
});

/** A loop device over a sparse image on a tmpfs with no room left: writeback fails (EIO). */
async function withFullLoop(
  fn: (loop: string, backing: string) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir();
  const mnt = `${dir.path}/tmpfs`;
  await Deno.mkdir(mnt);
  await runOk("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]);
  try {
    const img = `${mnt}/fs.img`;
    // mkfs writes its metadata (a few hundred KiB, lazy inode tables, no journal) first.
    await runOk("mkfs.ext4", [
      "-q",
      "-F",
      "-E",
      "lazy_itable_init=1,nodiscard",
      "-O",
      "^has_journal",
      img,
      "64M",
    ], {
      env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
    });
    // Then fill the tmpfs: blocks of the image's holes now have nowhere to go.
    await run("dd", ["if=/dev/zero", `of=${mnt}/filler`, "bs=64k"]);
    const loop = await losetup(img);
    try {
      await fn(loop, img);
    } finally {
      detachLoop(loop, img);
    }
  } finally {
    await run("umount", [mnt]);
  }
}

/**
 * The next flush of `dev` fails with the writeback's EIO, and every later one with that same
 * error (the old code asked a second fsync, which Linux answers 0 after reporting the error).
 */
async function assertFlushFailsForGood(dev: { flush(): Promise<void> }): Promise<void> {
  const first = await dev.flush().then(() => null, (e) => e);
  assert.ok(first instanceof Ext4Error, "flush must fail: the data never reached the file");
  assert.equal(first.code, "IO");
  assert.equal(first.errno, Errno.EIO, first.message);
  assert.match(first.message, /: fsync: Input\/output error$/);
  await assert.rejects(() => dev.flush(), (e) => e === first);
}

/** `fn` with a writable FileBlockDevice over {@link withFullLoop}'s loop device. */
function withFullDevice(fn: (dev: ReturnType<typeof openBlockDevice>) => Promise<void>) {
  return withFullLoop(async (loop) => {
    const dev = openBlockDevice(loop, { readOnly: false, exclusive: true });
    try {
      await fn(dev);
    } finally {
      await dev.close();
    }
  });
}

const FULL_LOOP_NEEDS = ["root", "loop", "losetup", "mkfs.ext4", "dd"];

testWith(
  "FileBlockDevice.flush reports a writeback EIO once learnt, and never succeeds after",
  FULL_LOOP_NEEDS,
  () =>
    withFullDevice(async (dev) => {
      // 8 MiB in one large write (the AIO path) and small ones (synchronous), into holes.
      await dev.write(32 << 20, new Uint8Array(8 << 20).fill(0x5a));
      for (let i = 0; i < 16; i++) await dev.write((48 << 20) + i * 4096, new Uint8Array(4096));
      await assertFlushFailsForGood(dev);
    }),
);

testWith(
  "FileBlockDevice.flush of a few blocks (fsync on the loop's thread) reports EIO too",
  FULL_LOOP_NEEDS,
  () =>
    withFullDevice(async (dev) => {
      // First a flush that succeeds: the superblock's block rewritten as it is (mkfs wrote it,
      // so it has room in the full tmpfs).
      const head = new Uint8Array(4096);
      await dev.read(0, head);
      await dev.write(0, head);
      await dev.flush();
      // Then 64 KiB into holes: a flush this small calls fsync synchronously, whose errno must
      // be the writeback's, reported then and by every later flush.
      for (let i = 0; i < 16; i++) await dev.write((52 << 20) + i * 4096, new Uint8Array(4096));
      await assertFlushFailsForGood(dev);
    }),
);

testWith("ext4ts put and mkdir on a device whose writeback fails exit 7 with one line", [
  "root",
  "loop",
  "losetup",
  "mkfs.ext4",
  "dd",
  "e2fsck",
], async () => {
  await withFullLoop(async (loop, backing) => {
    await using dir = await tempDir();
    const src = `${dir.path}/big`;
    await Deno.writeFile(src, new Uint8Array(4 << 20).fill(1));
    const put = await runCli(["put", loop, src, "/big"]);
    assert.equal(put.code, 7, put.stderr);
    assert.match(put.stderr, /^ext4ts: [^\n]*Input\/output error\n$/);
    // The failed put left the journal-less filesystem "not clean" (it was being written):
    // a writer refuses it (exit 5) unless told to write anyway.
    const refused = await runCli(["mkdir", loop, "/d"]);
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, /^ext4ts: [^\n]*not clean[^\n]*\n$/);
    const mkdir = await runCli(["mkdir", "--force-unchecked", loop, "/d"]);
    // The new directory's blocks are holes of the image too (through withFilesystem's close).
    assert.equal(mkdir.code, 7, mkdir.stderr);
    assert.match(mkdir.stderr, /^ext4ts: [^\n]*Input\/output error\n$/);
    assert.ok(detachLoop(loop, backing));
    const r = await run("e2fsck", ["-fn", backing]);
    // What reached the file: the blocks mkfs had written (not holes) took mkdir's metadata, the
    // rest failed — in-place damage e2fsck can read and name (0: none, 4: left unfixed by -n).
    console.log(`e2fsck -fn of the backing file: exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.ok(r.code === 0 || r.code === 4, `${r.code}`);
  });
});
