/**
 * Writing an mmp filesystem (issue 13: "MMP: refuse when another node is active; keep the MMP
 * block updated while writing"), as the kernel's fs/ext4/mmp.c: a writer claims the MMP block
 * before its first write, keeps it updated every s_mmp_update_interval seconds and marks it
 * clean at close; e2fsck running or another active node is refused (BUSY, exit 8); a block
 * left "in use" by a crashed node is taken over after waiting out that node's interval.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { FaultDevice } from "../lib/block/fault_device.ts";
import { MmpGuard } from "../lib/ext4/mmp_guard.ts";
import {
  encodeMmpBlock,
  MMP_SEQ_CLEAN,
  MMP_SEQ_FSCK,
  parseMmpBlock,
  readMmpBlock,
} from "../lib/ondisk/mmp.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { runCli, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS } from "./write_fixtures.ts";

const enc = new TextEncoder();

/** An mmp filesystem (update interval 1 s) written to `dir`; returns its path. */
async function mmpImage(dir: string): Promise<string> {
  const path = `${dir}/mmp.img`;
  await runOk("mkfs.ext4", ["-qF", "-O", "mmp", "-E", "mmp_update_interval=1", path, "16M"], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  return path;
}

/** Sets the MMP block's sequence in the image bytes (checksum updated) as another node would. */
async function setSequence(dev: MemoryBlockDevice, sequence: number): Promise<void> {
  const sb = await readSuperblock(dev);
  const at = sb.mmpBlock * sb.blockSize;
  const block = dev.bytes.slice(at, at + sb.blockSize);
  const mmp = parseMmpBlock(block);
  encodeMmpBlock(block, { ...mmp, sequence, nodeName: "othernode" }, sb.csumSeed);
  dev.bytes.set(block, at);
}

testWith("mmp: a writer claims the block, keeps it updated and marks it clean at close", [
  ...IMAGE_TOOLS,
  "root",
  "loop",
  "kernel-ext4",
], async () => {
  await using tmp = await tempDir();
  const path = await mmpImage(tmp.path);
  const dev = new MemoryBlockDevice(await Deno.readFile(path));
  const sb = await readSuperblock(dev);
  assert.equal((await readMmpBlock(dev, sb)).sequence, MMP_SEQ_CLEAN);
  const fs = await Ext4.openDevice(dev, { readOnly: false });
  const claimed = await readMmpBlock(dev, sb);
  assert.equal(claimed.state, "in-use");
  assert.ok(claimed.checksumValid);
  await fs.writeFile("/hello", enc.encode("hello\n"));
  // Updated every second while open: wait until it moves (a lower bound, not a race).
  let moved = false;
  for (let i = 0; i < 600 && !moved; i++) {
    await new Promise((r) => setTimeout(r, 100));
    moved = (await readMmpBlock(dev, sb)).sequence !== claimed.sequence;
  }
  assert.ok(moved, "the MMP sequence is updated while the filesystem is open");
  await fs.close();
  const closed = await readMmpBlock(new MemoryBlockDevice(dev.bytes), sb);
  assert.equal(closed.sequence, MMP_SEQ_CLEAN);
  assert.ok(closed.checksumValid);
  const r = await fsck(tmp.path, dev.bytes);
  assert.equal(r.code, 0, r.output);
  // The kernel mounts it (its own MMP check passes on the clean block) and reads what we wrote.
  await Deno.writeFile(path, dev.bytes);
  await withKernelMount(path, async (mnt) => {
    assert.equal(await Deno.readTextFile(`${mnt}/hello`), "hello\n");
  });
});

testWith("mmp: e2fsck running is refused at once (BUSY, exit 8), nothing written", [
  ...IMAGE_TOOLS,
], async () => {
  await using tmp = await tempDir();
  const path = await mmpImage(tmp.path);
  const dev = new MemoryBlockDevice(await Deno.readFile(path));
  await setSequence(dev, MMP_SEQ_FSCK);
  const before = Uint8Array.from(dev.bytes);
  await assert.rejects(
    Ext4.openDevice(dev, { readOnly: false }),
    (e) => e instanceof Ext4Error && e.code === "BUSY" && /e2fsck is running/.test(e.message),
  );
  assert.deepEqual(dev.bytes, before);
  await Deno.writeFile(path, dev.bytes);
  const cli = await runCli(["mkdir", path, "/d"]);
  assert.equal(cli.code, 8, cli.stderr);
  assert.match(cli.stderr, /^ext4ts: .*e2fsck is running/);
  assert.deepEqual(await Deno.readFile(path), before);
});

testWith(
  "mmp: an active node is refused after its interval; a stale 'in use' block is taken over",
  [
    ...IMAGE_TOOLS,
  ],
  async () => {
    await using tmp = await tempDir();
    const path = await mmpImage(tmp.path);
    const base = await Deno.readFile(path);
    const waits: number[] = [];
    // Another node updates the block while we wait: refused, nothing of ours written.
    {
      const dev = new MemoryBlockDevice(Uint8Array.from(base));
      await setSequence(dev, 1234);
      const sb = await readSuperblock(dev);
      const before = Uint8Array.from(dev.bytes);
      await assert.rejects(
        MmpGuard.claim(dev, sb, {
          sleep: async (ms) => {
            waits.push(ms);
            await setSequence(dev, 1235); // the other node's kmmpd
          },
        }),
        (e) =>
          e instanceof Ext4Error && e.code === "BUSY" && /active on another node/.test(e.message),
      );
      // The kernel's wait: min(2 × check interval + 1, check interval + 60), check interval >= 5 s.
      assert.deepEqual(waits, [11_000]);
      // Nothing of ours was written: the image is what the other node made it.
      const expected = new MemoryBlockDevice(before);
      await setSequence(expected, 1235);
      assert.deepEqual(dev.bytes, expected.bytes);
    }
    // A node that crashed left 1234 behind and writes no more: taken over after the wait.
    {
      const dev = new MemoryBlockDevice(Uint8Array.from(base));
      await setSequence(dev, 1234);
      const sb = await readSuperblock(dev);
      const notices: string[] = [];
      waits.length = 0;
      const guard = await MmpGuard.claim(dev, sb, {
        sleep: (ms) => {
          waits.push(ms);
          return Promise.resolve();
        },
        onNotice: (m) => notices.push(m),
        nodeName: "here",
      });
      assert.deepEqual(waits, [11_000, 11_000]);
      assert.match(
        notices.join("\n"),
        /node "othernode" may be using the filesystem: waiting 11 s/,
      );
      const mine = await readMmpBlock(dev, sb);
      assert.equal(mine.nodeName, "here");
      assert.notEqual(mine.sequence, 1234);
      await guard.stop();
      assert.equal((await readMmpBlock(dev, sb)).sequence, MMP_SEQ_CLEAN);
      const r = await fsck(tmp.path, dev.bytes);
      assert.equal(r.code, 0, r.output);
    }
  },
);

testWith("mmp: a failed MMP update stops all writing (EIO), nothing later claims success", [
  ...IMAGE_TOOLS,
], async () => {
  await using tmp = await tempDir();
  const path = await mmpImage(tmp.path);
  const mem = new MemoryBlockDevice(await Deno.readFile(path));
  const sb = await readSuperblock(mem);
  const dev = new FaultDevice(mem);
  const fs = await Ext4.openDevice(dev, { readOnly: false });
  await fs.writeFile("/before", enc.encode("committed\n"));
  // The next write of the MMP block (the once-a-second update) fails.
  dev.plan({ writesTo: [sb.mmpBlock], blockSize: sb.blockSize });
  for (let i = 0; i < 600 && dev.faults.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(dev.faults.length, 1, "the MMP update was attempted and failed");
  await assert.rejects(
    fs.mkdir("/after"),
    (e) => e instanceof Ext4Error && e.code === "IO" && e.errno === Errno.EIO,
  );
  await assert.rejects(fs.close(), (e) => e instanceof Ext4Error && e.errno === Errno.EIO);
  const re = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(mem.bytes)), {
    recovery: "memory",
  });
  assert.equal(new TextDecoder().decode(await re.readFile("/before")), "committed\n");
  await assert.rejects(re.stat("/after"));
  await re.close();
});
