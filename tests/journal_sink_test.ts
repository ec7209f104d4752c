/**
 * Commits through the jbd2 journal (issue 12): a writable `Ext4` on a journaled filesystem logs
 * every transaction, keeps logged blocks readable until they are checkpointed home, bounds its
 * transactions by what the journal takes, and closes cleanly (checkpoint, journal empty,
 * needs_recovery cleared). A writer that stops without closing leaves a journal that e2fsck,
 * the kernel and ext4ts replay to the same consistent tree.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { Incompat } from "../lib/ondisk/features.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { locateJournal } from "../lib/ext4/journal.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { IMAGE_TOOLS } from "./write_fixtures.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fresh image's bytes: `args` to mkfs.ext4, `size`. */
async function mkfs(dir: string, args: string[], size = "16M"): Promise<Uint8Array> {
  const path = `${dir}/mk.img`;
  await runOk("mkfs.ext4", ["-qF", "-E", "lazy_itable_init=1", ...args, path, size], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  const bytes = await Deno.readFile(path);
  await Deno.remove(path);
  return bytes;
}

/** The journal superblock's start and sequence, and whether the fs needs recovery. */
async function journalState(bytes: Uint8Array) {
  const dev = new MemoryBlockDevice(Uint8Array.from(bytes));
  const sb = await readSuperblock(dev);
  const { jsb } = await locateJournal(dev, sb);
  return {
    start: jsb.start,
    sequence: jsb.sequence,
    needsRecovery: (sb.incompat & Incompat.RECOVER) !== 0,
  };
}

/** e2fsck -fn of the image file at `path`. */
async function fsck(path: string): Promise<{ code: number; output: string }> {
  const r = await run("e2fsck", ["-fn", path]);
  return { code: r.code, output: r.stdout + r.stderr };
}

/** Writes `bytes` to a file in `dir` and returns its path. */
async function saved(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, bytes);
  return path;
}

/** Files `/d<i>/f<j>` with known contents, one transaction each. */
async function populate(fs: Ext4, dirs: number, files: number): Promise<Map<string, string>> {
  const expect = new Map<string, string>();
  for (let i = 0; i < dirs; i++) {
    await fs.mkdir(`/d${i}`);
    for (let j = 0; j < files; j++) {
      const text = `file ${i}/${j} `.repeat(1 + ((i * 7 + j) % 50));
      await fs.writeFile(`/d${i}/f${j}`, enc.encode(text));
      expect.set(`/d${i}/f${j}`, text);
    }
  }
  return expect;
}

async function assertTree(fs: Ext4, expect: Map<string, string>): Promise<void> {
  for (const [path, text] of expect) {
    assert.equal(dec.decode(await fs.readFile(path)), text, path);
  }
}

testWith("journal: a clean close leaves the journal empty, the fs clean, e2fsck clean", [
  ...IMAGE_TOOLS,
], async () => {
  await using tmp = await tempDir();
  const base = await mkfs(tmp.path, ["-b", "4096"]);
  const before = await journalState(base);
  const dev = new MemoryBlockDevice(Uint8Array.from(base));
  const fs = await Ext4.openDevice(dev, { readOnly: false });
  const expect = await populate(fs, 3, 10);
  // Mid-way: the journal holds committed transactions, the superblock says so.
  const mid = await journalState(dev.bytes);
  assert.ok(mid.needsRecovery, "needs_recovery while written");
  assert.notEqual(mid.start, 0, "the log holds transactions");
  await fs.close();
  const after = await journalState(dev.bytes);
  assert.equal(after.start, 0, "journal empty after close");
  assert.ok(!after.needsRecovery, "needs_recovery cleared");
  assert.ok(
    after.sequence > before.sequence + 30,
    `sequence ${before.sequence} → ${after.sequence}`,
  );
  const img = await saved(tmp.path, "clean.img", dev.bytes);
  const r = await fsck(img);
  assert.equal(r.code, 0, r.output);
  // The journal features the kernel gives a 64bit metadata_csum filesystem's journal (seen
  // with dumpe2fs after a kernel mount; revoke comes with the first revoke record).
  const features = (await runOk("dumpe2fs", ["-h", img])).match(/^Journal features:\s*(.*)$/m)?.[1];
  assert.deepEqual(features?.split(/\s+/).sort(), [
    "journal_64bit",
    "journal_checksum_v3",
  ]);
  const re = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
  await assertTree(re, expect);
  await re.close();
});

testWith(
  "journal: a clean close after a sync: the blocks home, one journal superblock write, the superblock clean — a flush after each",
  [...IMAGE_TOOLS],
  async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, ["-b", "4096"]);
    const mem = new MemoryBlockDevice(Uint8Array.from(base));
    const dev = new WriteLogDevice(mem);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const expect = await populate(fs, 2, 5);
    await fs.sync();
    const { store } = await locateJournal(mem, await readSuperblock(mem));
    const jsbOffset = store.fsBlock!(0)! * 4096;
    dev.clear();
    await fs.close();
    // Nothing was changed since the sync: the close is the checkpoint (blocks home), the
    // journal marked empty, the superblock marked clean, each made durable before the next.
    const writesTo = (offset: number) =>
      dev.entries.filter((e) => e.kind === "write" && e.offset === offset).length;
    assert.equal(writesTo(jsbOffset), 1, "the journal superblock: written once at close");
    const kinds = dev.entries.map((e) =>
      e.kind === "flush" ? "F" : e.offset === jsbOffset ? "J" : e.offset === 1024 ? "S" : "w"
    );
    // (The group commit's closing sync may flush with nothing new written first: a flush the
    // file device skips.)
    assert.match(kinds.join(""), /^F?w+FJFS+F$/, kinds.join(""));
    const after = await journalState(mem.bytes);
    assert.equal(after.start, 0, "journal empty after close");
    assert.ok(!after.needsRecovery, "needs_recovery cleared");
    const r = await fsck(await saved(tmp.path, "close.img", mem.bytes));
    assert.equal(r.code, 0, r.output);
    const re = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(mem.bytes)));
    await assertTree(re, expect);
    await re.close();
  },
);

testWith("journal: logged blocks are read back before they are home (tiny cache)", [
  ...IMAGE_TOOLS,
], async () => {
  await using tmp = await tempDir();
  const base = await mkfs(tmp.path, ["-b", "1024"]);
  const dev = new MemoryBlockDevice(Uint8Array.from(base));
  // 16 clean blocks: almost every metadata read misses the cache and must find the logged copy.
  const fs = await Ext4.openDevice(dev, { readOnly: false, blockCacheSize: 16 });
  const expect = await populate(fs, 4, 12);
  fs.invalidateCaches();
  await assertTree(fs, expect);
  await fs.close();
  const r = await fsck(await saved(tmp.path, "tiny.img", dev.bytes));
  assert.equal(r.code, 0, r.output);
});

testWith(
  "journal: a writer that stops without closing is replayed by e2fsck, the kernel and ext4ts alike",
  [
    ...IMAGE_TOOLS,
    "root",
    "loop",
    "kernel-ext4",
  ],
  async () => {
    await using tmp = await tempDir();
    // A 1024-block journal: the log wraps and checkpoints several times.
    const base = await mkfs(tmp.path, ["-b", "1024", "-J", "size=1"], "32M");
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const expect = await populate(fs, 8, 40);
    await fs.remove("/d0/f1");
    expect.delete("/d0/f1");
    await fs.rename("/d1/f2", "/d2/moved");
    expect.set("/d2/moved", expect.get("/d1/f2")!);
    expect.delete("/d1/f2");
    // The crash: the device as it is now, never closed.
    const crashed = Uint8Array.from(dev.bytes);
    const state = await journalState(crashed);
    assert.ok(state.needsRecovery && state.start !== 0, "a dirty journal");

    // e2fsck replays it.
    const e2 = await saved(tmp.path, "e2fsck.img", crashed);
    const replay = await run("e2fsck", ["-fy", "-E", "journal_only", e2]);
    assert.ok(replay.code <= 1, replay.stdout + replay.stderr);
    const checked = await fsck(e2);
    assert.equal(checked.code, 0, checked.output);
    const e2fs = await Ext4.openDevice(new MemoryBlockDevice(await Deno.readFile(e2)));
    await assertTree(e2fs, expect);
    await e2fs.close();

    // ext4ts replays it to the same bytes e2fsck's replay gives (its orphan-free case).
    const ours = new MemoryBlockDevice(Uint8Array.from(crashed));
    await replayJournal(ours);
    const oursImg = await saved(tmp.path, "ours.img", ours.bytes);
    const oursChecked = await fsck(oursImg);
    assert.equal(oursChecked.code, 0, oursChecked.output);
    const oursFs = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(ours.bytes)));
    await assertTree(oursFs, expect);
    await oursFs.close();

    // The kernel replays it at mount.
    const k = await saved(tmp.path, "kernel.img", crashed);
    await withKernelMount(k, async (mnt) => {
      for (const [path, text] of expect) {
        assert.equal(await Deno.readTextFile(`${mnt}${path}`), text, path);
      }
      await assert.rejects(Deno.stat(`${mnt}/d0/f1`));
    });
    const kChecked = await fsck(k);
    assert.equal(kChecked.code, 0, kChecked.output);
  },
);

testWith(
  "journal: a batch larger than the journal takes is refused (ENOSPC), the fs stays writable",
  [
    ...IMAGE_TOOLS,
  ],
  async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, ["-b", "1024", "-J", "size=1"], "32M");
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await assert.rejects(
      fs.batch(async () => {
        for (let i = 0; i < 3000; i++) await fs.mkdir(`/big${i}`);
      }),
      (e) => e instanceof Ext4Error && e.code === "NO_SPACE",
    );
    await assert.rejects(fs.stat("/big0"), (e) => e instanceof Ext4Error && e.code === "NOT_FOUND");
    await fs.mkdir("/after");
    await fs.close();
    const r = await fsck(await saved(tmp.path, "batch.img", dev.bytes));
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "journal: a fast_commit filesystem is journaled through the whole log, as the kernel replays it",
  [
    ...IMAGE_TOOLS,
    "root",
    "loop",
    "kernel-ext4",
  ],
  async () => {
    // mkfs reserves a fast-commit area, but the journal does not use fast commits until the
    // kernel mounts it (INCOMPAT_FAST_COMMIT unset): its recovery reads the whole log, so ours
    // writes the whole log (a journal that uses fast commits is refused, lib/jbd2/journal_writer.ts).
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, ["-b", "1024", "-J", "size=1", "-O", "fast_commit"], "32M");
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const expect = await populate(fs, 6, 40); // several times around the log
    const k = await saved(tmp.path, "fc.img", dev.bytes);
    await withKernelMount(k, async (mnt) => {
      for (const [path, text] of expect) {
        assert.equal(await Deno.readTextFile(`${mnt}${path}`), text, path);
      }
    });
    const checked = await fsck(k);
    assert.equal(checked.code, 0, checked.output);
    await fs.close();
  },
);
