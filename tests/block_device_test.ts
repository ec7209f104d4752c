import assert from "node:assert/strict";
import { MemoryBlockDevice, OffsetBlockDevice, readBytes } from "../lib/block/block_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { SyscallError } from "../ffi/libc.ts";
import { mountPastBriefHolders } from "../ffi/fuse/serve.ts";
import { detachLoop, losetup, run, runOk, tempDir, testWith } from "./helpers.ts";

Deno.test("memory device: reads what was written, refuses out of range and read-only writes", async () => {
  const dev = new MemoryBlockDevice(new Uint8Array(1024));
  await dev.write(100, new Uint8Array([1, 2, 3]));
  assert.deepEqual(await readBytes(dev, 99, 5), new Uint8Array([0, 1, 2, 3, 0]));
  await assert.rejects(readBytes(dev, 1020, 8), (e) => e instanceof Ext4Error && e.code === "IO");
  const ro = new MemoryBlockDevice(new Uint8Array(16), { readOnly: true });
  await assert.rejects(
    ro.write(0, new Uint8Array(1)),
    (e) => e instanceof Ext4Error && e.code === "READ_ONLY",
  );
  await dev.close();
  await assert.rejects(readBytes(dev, 0, 1), (e) => e instanceof Ext4Error);
});

Deno.test("offset device: a window with its own bounds", async () => {
  const base = new MemoryBlockDevice(new Uint8Array(64).map((_, i) => i));
  const part = new OffsetBlockDevice(base, 16, 32);
  assert.equal(part.size, 32);
  assert.deepEqual(await readBytes(part, 0, 2), new Uint8Array([16, 17]));
  await assert.rejects(readBytes(part, 31, 2), (e) => e instanceof Ext4Error);
  assert.throws(
    () => new OffsetBlockDevice(base, 100),
    (e) => e instanceof Ext4Error && e.code === "INVALID",
  );
});

Deno.test("file device: read, write, large transfers, flush", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/f.img`;
  const data = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(path, data);
  const dev = openBlockDevice(path, { readOnly: false });
  try {
    assert.equal(dev.size, data.length);
    assert.equal(dev.isBlockDevice, false);
    assert.deepEqual(await readBytes(dev, 5, 3), data.subarray(5, 8));
    // Over the synchronous limit: goes through the nonblocking (other thread) path.
    assert.deepEqual(
      await readBytes(dev, 1000, 2 * 1024 * 1024),
      data.subarray(1000, 1000 + 2 * 1024 * 1024),
    );
    const big = new Uint8Array(512 * 1024).fill(0xab);
    await dev.write(4096, big);
    await dev.write(0, new Uint8Array([9]));
    // A large write from a view at an offset into its buffer (the AIO path takes a raw pointer).
    const view = data.subarray(777, 777 + 300_000);
    await dev.write(1 << 20, view);
    await dev.flush();
    assert.deepEqual(await readBytes(dev, 4096, big.length), big);
    assert.deepEqual(await readBytes(dev, 1 << 20, view.length), view);
    await assert.rejects(
      readBytes(dev, data.length - 1, 2),
      (e) => e instanceof Ext4Error && e.code === "IO",
    );
  } finally {
    await dev.close();
  }
  const back = await Deno.readFile(path);
  assert.equal(back[0], 9);
  assert.equal(back[4096], 0xab);
});

Deno.test("file device: missing path, directory, read-only open refuses writes", async () => {
  await using dir = await tempDir();
  assert.throws(
    () => openBlockDevice(`${dir.path}/nope`),
    (e) => e instanceof Ext4Error && e.code === "NOT_FOUND",
  );
  assert.throws(
    () => openBlockDevice(dir.path),
    (e) => e instanceof Ext4Error && e.code === "INVALID" && /directory/.test(e.message),
  );
  await Deno.writeFile(`${dir.path}/x`, new Uint8Array(4096));
  const dev = openBlockDevice(`${dir.path}/x`);
  await assert.rejects(
    dev.write(0, new Uint8Array(1)),
    (e) => e instanceof Ext4Error && e.code === "READ_ONLY",
  );
  await dev.close();
});

testWith("block device: size, sector size, and a write-protected loop device is detected", [
  "root",
  "loop",
  "losetup",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/d.img`;
  await Deno.writeFile(path, new Uint8Array(8 * 1024 * 1024));
  const loop = await losetup(path, ["-r"]);
  try {
    // O_RDWR succeeds on this kernel even though the device is read-only: BLKROGET tells.
    assert.throws(
      () => openBlockDevice(loop, { readOnly: false }),
      (e) => e instanceof Ext4Error && e.code === "READ_ONLY",
    );
    const dev = openBlockDevice(loop, { readOnly: false, fallbackToReadOnly: true });
    try {
      assert.equal(dev.isBlockDevice, true);
      assert.equal(dev.readOnly, true);
      assert.equal(dev.mediaReadOnly, true);
      assert.match(dev.readOnlyReason ?? "", /write-protected/);
      assert.equal(dev.size, 8 * 1024 * 1024);
      assert.equal(dev.sectorSize, 512);
    } finally {
      await dev.close();
    }
  } finally {
    detachLoop(loop, path);
  }
  const rw = await losetup(path);
  try {
    const dev = openBlockDevice(rw, { readOnly: false });
    assert.equal(dev.readOnly, false);
    assert.equal(dev.mediaReadOnly, false);
    await dev.write(512, new Uint8Array([1, 2]));
    await dev.flush();
    assert.deepEqual(await readBytes(dev, 512, 2), new Uint8Array([1, 2]));
    await dev.close();
  } finally {
    detachLoop(rw, path);
  }
  // BLKSSZGET: a loop device with 4 KiB logical sectors.
  const big = await losetup(path, ["-b", "4096"]);
  try {
    const dev = openBlockDevice(big);
    assert.equal(dev.sectorSize, 4096);
    assert.equal(dev.size, 8 * 1024 * 1024);
    assert.equal(dev.readOnly, true, "opened read-only by default");
    assert.equal(dev.mediaReadOnly, false);
    await dev.close();
  } finally {
    detachLoop(big, path);
  }
});

testWith(
  "block device: another program's brief O_EXCL probe fails neither a writer's open nor a fuseblk mount; a lasting holder does",
  ["root", "loop", "losetup"],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/d.img`;
    await Deno.writeFile(path, new Uint8Array(8 * 1024 * 1024));
    const loop = await losetup(path);
    // A separate process holds the device O_EXCL for `seconds`, as e2fsck's mount check or a
    // racing loop set-up does for a moment; it says "held" once it has it.
    const hold = (seconds: number) => {
      const child = new Deno.Command("python3", {
        args: [
          "-c",
          `import os,sys,time\nfd=os.open(sys.argv[1],os.O_RDONLY|os.O_EXCL)\nprint("held",flush=True)\ntime.sleep(float(sys.argv[2]))`,
          loop,
          String(seconds),
        ],
        stdout: "piped",
      }).spawn();
      const reader = child.stdout.getReader();
      return {
        child,
        held: reader.read().then((r) => new TextDecoder().decode(r.value)),
        done: child.status.finally(() => reader.cancel()),
      };
    };
    try {
      const brief = hold(0.05);
      assert.equal((await brief.held).trim(), "held");
      const dev = openBlockDevice(loop, { readOnly: false });
      await dev.close();
      assert.ok((await brief.done).success);
      // mount(2) of a fuseblk mount: an EBUSY while nothing holds the device is tried again.
      const busyTimes = (n: number) => {
        let calls = 0;
        const mount = () => {
          if (++calls <= n) throw new SyscallError("mount", Errno.EBUSY, loop);
        };
        return { mount, calls: () => calls };
      };
      const twice = busyTimes(2);
      await mountPastBriefHolders(twice.mount, true, loop);
      assert.equal(twice.calls(), 3);
      const always = busyTimes(Infinity);
      await assert.rejects(mountPastBriefHolders(always.mount, false, loop), SyscallError);
      assert.equal(always.calls(), 1, "not a block device: EBUSY is final");
      const lasting = hold(30);
      try {
        assert.equal((await lasting.held).trim(), "held");
        assert.throws(
          () => openBlockDevice(loop, { readOnly: false }),
          (e) =>
            e instanceof Ext4Error && e.code === "BUSY" &&
            e.message === `${loop} is in use: held open exclusively`,
        );
        const held = busyTimes(Infinity);
        await assert.rejects(mountPastBriefHolders(held.mount, true, loop), SyscallError);
        assert.equal(held.calls(), 1, "the device is held: EBUSY is final");
      } finally {
        lasting.child.kill();
        await lasting.done;
      }
    } finally {
      detachLoop(loop, path);
    }
  },
);

testWith("file device: a flush with nothing written since the last one issues no device flush", [
  "root",
  "loop",
  "losetup",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/d.img`;
  await Deno.writeFile(path, new Uint8Array(8 * 1024 * 1024));
  const loop = await losetup(path);
  try {
    // Field 16 of /sys/block/loopN/stat: flush requests the device completed.
    const stat = `/sys/block/${loop.split("/").pop()}/stat`;
    const flushes = async () => Number((await Deno.readTextFile(stat)).trim().split(/\s+/)[15]);
    const dev = openBlockDevice(loop, { readOnly: false });
    try {
      let before = await flushes();
      await dev.flush();
      assert.equal(await flushes(), before + 1, "the first flush after open always runs");
      await dev.write(4096, new Uint8Array(512).fill(7));
      before = await flushes();
      await dev.flush();
      assert.equal(await flushes(), before + 1, "a write, then a flush");
      await dev.flush();
      await dev.flush();
      assert.equal(await flushes(), before + 1, "nothing written since: no flush");
      await dev.write(8192, new Uint8Array(512).fill(8));
      await dev.flush();
      assert.equal(await flushes(), before + 2, "written again: flushed again");
      assert.deepEqual(await readBytes(dev, 4096, 2), new Uint8Array([7, 7]));
    } finally {
      await dev.close();
    }
  } finally {
    detachLoop(loop, path);
  }
});

testWith("file device: a writeback error reaches flush with its errno, and every later flush", [
  "root",
  "loop",
  "losetup",
], async () => {
  // A loop device over a sparse file on a full 1 MiB tmpfs: the write lands in the page cache,
  // its writeback fails (ENOSPC below the loop device, EIO above it).
  await using dir = await tempDir();
  await runOk("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]);
  try {
    const img = `${dir.path}/d.img`;
    await Deno.writeFile(img, new Uint8Array(0));
    await Deno.truncate(img, 8 << 20); // sparse: its blocks are taken only when written
    await Deno.writeFile(`${dir.path}/fill`, new Uint8Array(1 << 20)).catch(() => {});
    const loop = await losetup(img);
    try {
      const dev = openBlockDevice(loop, { readOnly: false });
      try {
        await dev.write(4 << 20, new Uint8Array(4096).fill(1));
        const eio = (e: unknown) =>
          e instanceof Ext4Error && e.code === "IO" && e.errno === Errno.EIO;
        await assert.rejects(dev.flush(), eio);
        // Linux reports the error once: a second fsync would answer success.
        await assert.rejects(dev.flush(), eio);
      } finally {
        await dev.close();
      }
    } finally {
      detachLoop(loop, img);
    }
  } finally {
    await run("umount", [dir.path]);
  }
});
