/**
 * The superblock while a filesystem is written (issue 12), as the kernel's ext4_setup_super and
 * ext4_put_super keep it: a writable open raises the mount count and sets the mount time, and
 * without a journal clears VALID_FS before its first other write; a clean close sets VALID_FS
 * again, the write time and the lifetime writes. A writer that dies in between leaves a
 * journal-less filesystem "not clean": e2fsck -p checks it and writers refuse it.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { readSuperblock, State } from "../lib/ondisk/superblock.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { makeDirectory } from "../lib/ext4/namei.ts";
import { run, runCli, runOk, tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const EXT2 = LAYOUTS[0];
const EXT4 = LAYOUTS[2];

/** The dumpe2fs -h fields this test follows. */
async function header(img: string) {
  const out = await runOk("dumpe2fs", ["-h", img]);
  const field = (name: string) => out.match(new RegExp(`^${name}:\\s*(.*)$`, "m"))?.[1] ?? "";
  return {
    state: field("Filesystem state"),
    mountCount: Number(field("Mount count")),
    lastWrite: field("Last write time"),
    lastMount: field("Last mount time"),
    lifetime: field("Lifetime writes"),
  };
}

/** "93 kB" / "1204 MB" in KiB; dumpe2fs leaves the line out while it is 0. */
function kib(lifetime: string): number {
  if (lifetime === "") return 0;
  const m = lifetime.match(/^(\d+) (kB|MB|GB)$/);
  assert.ok(m, `Lifetime writes: ${lifetime}`);
  return Number(m[1]) * { kB: 1, MB: 1024, GB: 1024 ** 2 }[m[2] as "kB" | "MB" | "GB"];
}

/** An image file of `layout` in `dir`, its write time set back (so "updated" shows). */
async function image(dir: string, layout = EXT2): Promise<string> {
  const img = `${dir}/fs.img`;
  const bytes = await mkfsImage(dir, layout);
  // 2020-01-01 (debugfs cannot: it sets the write time when it closes).
  const sb = await readSuperblock(new MemoryBlockDevice(bytes));
  sb.writeTime = 1577836800;
  sb.updateChecksum();
  bytes.set(sb.bytes, 1024);
  await Deno.writeFile(img, bytes);
  return img;
}

for (const layout of [EXT2, EXT4]) {
  testWith(
    `${layout.name}: a clean put/mkdir raises the mount count, sets the write time and lifetime writes, leaves the state clean`,
    [...IMAGE_TOOLS, "debugfs"],
    async () => {
      await using dir = await tempDir();
      const img = await image(dir.path, layout);
      const before = await header(img);
      assert.equal(before.state, "clean");
      const host = `${dir.path}/big.bin`;
      await Deno.writeFile(host, new Uint8Array(600 * 1024).fill(7));
      let r = await runCli(["put", img, host, "/big.bin"]);
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(["mkdir", img, "/etc"]);
      assert.equal(r.code, 0, r.stderr);
      const after = await header(img);
      assert.equal(after.state, "clean");
      assert.equal(after.mountCount, before.mountCount + 2);
      assert.notEqual(after.lastWrite, before.lastWrite);
      assert.doesNotMatch(after.lastWrite, /2020/);
      assert.notEqual(after.lastMount, "n/a");
      // At least the file's 600 KiB were written.
      assert.ok(kib(after.lifetime) >= kib(before.lifetime) + 600, after.lifetime);
      const fsck = await run("e2fsck", ["-fn", img]);
      assert.equal(fsck.code, 0, fsck.stdout);
    },
  );
}

/** A device that refuses every write after the first `allowed` ones (a writer cut off). */
class CutDevice extends MemoryBlockDevice {
  allowed: number;
  constructor(bytes: Uint8Array, allowed: number) {
    super(bytes);
    this.allowed = allowed;
  }
  override write(offset: number, data: Uint8Array): Promise<void> {
    if (this.allowed <= 0) return Promise.reject(new Ext4Error("IO", "the device is gone"));
    this.allowed--;
    return super.write(offset, data);
  }
}

/** The image is "not clean"; writers refuse it; e2fsck -p checks it fully (never skips it). */
async function assertLeftUnclean(img: string): Promise<void> {
  assert.equal((await header(img)).state, "not clean");
  const refused = await runCli(["mkdir", img, "/again"]);
  assert.equal(refused.code, 5, refused.stderr);
  assert.match(refused.stderr, /not cleanly unmounted and without a journal/);
  const bytes = await Deno.readFile(img);
  await assert.rejects(
    Ext4Writer.open(new MemoryBlockDevice(Uint8Array.from(bytes))),
    /not cleanly unmounted/,
  );
  const p = await run("e2fsck", ["-p", img]);
  assert.ok(p.code === 0 || p.code === 1, `e2fsck -p exited ${p.code}: ${p.stdout}${p.stderr}`);
  assert.doesNotMatch(p.stdout, /clean, \d+\/\d+ files/, p.stdout);
  assert.equal((await header(img)).state, "clean");
}

testWith(
  "ext2: a library writer whose device stops accepting writes leaves the filesystem not clean",
  [...IMAGE_TOOLS, "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = await image(dir.path);
    // Writes allowed: the superblock at open, then nothing more.
    const dev = new CutDevice(await Deno.readFile(img), 1);
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await assert.rejects(fs.mkdir("/etc"), /device is gone|commit failed/);
    await fs.close().catch(() => {});
    await Deno.writeFile(img, dev.bytes);
    await assertLeftUnclean(img);
  },
);

testWith(
  "ext2: an Ext4Writer that wrote and was never closed (its process killed) leaves the filesystem not clean; closed, clean",
  [...IMAGE_TOOLS, "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = await image(dir.path);
    const bytes = await Deno.readFile(img);
    const w = await Ext4Writer.open(new MemoryBlockDevice(bytes));
    // Nothing written yet: the image is as it was.
    assert.deepEqual(bytes, await Deno.readFile(img));
    await w.transaction((ctx) => makeDirectory(ctx, 2, "etc", { perm: 0o755 }));
    assert.equal((await readSuperblock(new MemoryBlockDevice(bytes))).state & State.VALID, 0);
    await Deno.writeFile(img, bytes);
    await assertLeftUnclean(img);
    await w.close();
    assert.equal((await readSuperblock(new MemoryBlockDevice(bytes))).state & State.VALID, 1);
  },
);

testWith(
  "ext2: SIGKILL of a CLI put of a large tree mid-way leaves the filesystem not clean",
  [...IMAGE_TOOLS, "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = await image(dir.path);
    const tree = `${dir.path}/tree`;
    for (let d = 0; d < 40; d++) {
      await Deno.mkdir(`${tree}/d${d}`, { recursive: true });
      for (let f = 0; f < 50; f++) await Deno.writeTextFile(`${tree}/d${d}/f${f}`, `${d}/${f}\n`);
    }
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("../cli/main.ts", import.meta.url).pathname,
        "put",
        img,
        tree,
        "/tree",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Kill it once the superblock says "being written", before it ends.
    const sb = new Uint8Array(2);
    let exited = false;
    child.status.then(() => exited = true);
    using file = await Deno.open(img, { read: true });
    for (;;) {
      await file.seek(1024 + 0x3a, Deno.SeekMode.Start);
      await file.read(sb);
      if ((sb[0] & State.VALID) === 0 || exited) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(!exited, "the put ended before it could be killed");
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    await assertLeftUnclean(img);
  },
);

testWith(
  "with a journal VALID_FS stays set while writing (the kernel relies on needs_recovery); an open that writes nothing changes nothing",
  [...IMAGE_TOOLS, "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = await image(dir.path, EXT4);
    const bytes = await Deno.readFile(img);
    const before = await readSuperblock(new MemoryBlockDevice(Uint8Array.from(bytes)));
    const w = await Ext4Writer.open(new MemoryBlockDevice(bytes));
    await w.transaction((ctx) => makeDirectory(ctx, 2, "etc", { perm: 0o755 }));
    const during = await readSuperblock(new MemoryBlockDevice(Uint8Array.from(bytes)));
    assert.equal(during.state & State.VALID, State.VALID);
    assert.equal(during.mountCount, before.mountCount + 1);

    // A failed mkdir (the name is taken) writes nothing at all.
    await Deno.writeFile(img, bytes);
    const r = await runCli(["mkdir", img, "/etc"]);
    assert.notEqual(r.code, 0);
    assert.deepEqual(await Deno.readFile(img), bytes);
  },
);
