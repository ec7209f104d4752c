import assert from "node:assert/strict";
import { Inode, inodeChecksum, parseInode } from "../lib/ondisk/inode.ts";
import { readInode } from "../lib/ext4/inode.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { CorruptError } from "../lib/errors.ts";
import type { Superblock } from "../lib/ondisk/superblock.ts";
import { runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { Ext4 } from "../mod.ts";

const sb = (roCompat = 0) =>
  ({ roCompat, blockSize: 4096, hasMetadataCsum: false }) as unknown as Superblock;

Deno.test("inode fields: uid/gid high halves, 64-bit size, times with epoch bits", () => {
  const b = new Uint8Array(256);
  const v = new DataView(b.buffer);
  v.setUint16(0x0, 0o100644, true);
  v.setUint16(0x2, 0x1234, true);
  v.setUint16(0x78, 0x5, true); // uid hi
  v.setUint16(0x18, 0xffff, true);
  v.setUint16(0x7a, 0xffff, true); // gid hi -> 0xffffffff
  v.setUint32(0x4, 1, true);
  v.setUint32(0x6c, 3, true); // size = 3 * 2^32 + 1
  v.setUint16(0x80, 32, true); // extra_isize
  v.setInt32(0x10, -1, true); // mtime base: -1
  v.setUint32(0x88, (123456789 << 2) | 1, true); // epoch 1
  v.setInt32(0xc, 1000, true);
  v.setUint32(0x84, 999999999 << 2, true);
  v.setUint32(0x90, 7, true);
  v.setUint32(0x94, 0, true);
  const ino = new Inode(sb(), 12, b);
  assert.equal(ino.type, "file");
  assert.equal(ino.uid, 0x51234);
  assert.equal(ino.gid, 0xffffffff);
  assert.equal(ino.size, 3 * 2 ** 32 + 1);
  assert.deepEqual(ino.mtime, { sec: 2 ** 32 - 1, nsec: 123456789 });
  assert.deepEqual(ino.ctime, { sec: 1000, nsec: 999999999 });
  assert.deepEqual(ino.crtime, { sec: 7, nsec: 0 });
  // A 128-byte record has no extra fields: signed 32-bit seconds only, no crtime.
  const small = new Inode(sb(), 12, b.slice(0, 128));
  assert.deepEqual(small.mtime, { sec: -1, nsec: 0 });
  assert.equal(small.crtime, null);
});

Deno.test("sameBytesAt: a record equals an image's bytes at an offset only when every byte does", () => {
  for (const size of [128, 256, 158]) {
    const record = new Uint8Array(size).map((_, i) => (i * 7 + 3) & 0xff);
    const inode = new Inode(sb(), 12, record);
    const image = new Uint8Array(4096);
    const at = 5 * 256;
    image.set(record, at);
    const view = new DataView(image.buffer);
    assert.ok(inode.sameBytesAt(view, at), `${size}: equal`);
    // Any one byte changed, first, last, in a word or in the tail past the last whole word.
    for (const k of [0, 1, size - 1, size - 2, size >> 1]) {
      image[at + k] ^= 0x40;
      assert.ok(!inode.sameBytesAt(view, at), `${size}: byte ${k} differs`);
      image[at + k] ^= 0x40;
    }
    assert.ok(!inode.sameBytesAt(view, at + 4), `${size}: another place`);
    assert.ok(!inode.sameBytesAt(view, 4096 - size + 1), `${size}: past the end`);
    assert.ok(!inode.sameBytesAt(view, -4), `${size}: before the start`);
  }
});

Deno.test("inode blocks: huge_file semantics", () => {
  const b = new Uint8Array(128);
  const v = new DataView(b.buffer);
  v.setUint32(0x1c, 8, true);
  v.setUint16(0x74, 1, true);
  assert.equal(new Inode(sb(0), 1, b).blocks, 8); // without huge_file the high half is ignored
  assert.equal(new Inode(sb(0x8), 1, b).blocks, 8 + 2 ** 32);
  v.setUint32(0x20, 0x40000, true); // HUGE_FILE flag: fs-block units
  assert.equal(new Inode(sb(0x8), 1, b).blocks, (8 + 2 ** 32) * 8);
});

Deno.test("device numbers: old and new encodings", () => {
  const b = new Uint8Array(128);
  const v = new DataView(b.buffer);
  v.setUint16(0, 0o020644, true);
  v.setUint32(0x28, (8 << 8) | 1, true);
  assert.deepEqual(new Inode(sb(), 1, b).rdev, { major: 8, minor: 1 });
  v.setUint32(0x28, 0, true);
  // new_encode_dev(major 259, minor 65536+5): (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)
  const major = 259, minor = 65536 + 5;
  v.setUint32(0x2c, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  assert.deepEqual(new Inode(sb(), 1, b).rdev, { major, minor });
});

testWith(
  "inode checksums of an mkfs image verify; a flipped byte is CORRUPT",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(src);
    await Deno.writeTextFile(`${src}/hello`, "hello\n");
    const img = `${dir.path}/a.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-d", src, img, "8M"]);
    const dev = new MemoryBlockDevice(await Deno.readFile(img));
    const s = await readSuperblock(dev);
    const g = await readGroupDescriptors(dev, s);
    const root = await readInode(dev, s, g, 2);
    assert.equal(root.type, "dir");
    assert.ok(root.checksumValid());
    assert.equal(root.computeChecksum(), inodeChecksum(s, 2, root.bytes));
    const bad = root.bytes.slice();
    bad[0x20] ^= 0x01;
    assert.throws(() => parseInode(s, 2, bad), CorruptError);
    assert.doesNotThrow(() => parseInode(s, 2, bad, { ignoreChecksum: true }));
  },
);

testWith(
  "huge_file: i_blocks_hi and the HUGE_FILE flag give the kernel's st_blocks",
  ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs", "python3"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(src);
    for (const n of ["plain", "hi", "flag", "both"]) {
      await Deno.writeFile(`${src}/${n}`, new Uint8Array(40960).fill(7));
    }
    const img = `${dir.path}/h.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", "-O", "huge_file", "-d", src, img, "16M"]);
    const huge = (0x80000 | 0x40000).toString(); // EXTENTS | HUGE_FILE
    for (
      const cmd of [
        "sif /hi blocks_hi 1",
        `sif /flag flags ${huge}`,
        "sif /both blocks_hi 3",
        `sif /both flags ${huge}`,
      ]
    ) await runOk("debugfs", ["-w", "-R", cmd, img]);
    const kernel = await withKernelMount(img, (m) =>
      runOk("python3", [
        "-c",
        "import os,sys\nfor n in sys.argv[2:]: print(os.lstat(sys.argv[1] + '/' + n).st_blocks)",
        m,
        "plain",
        "hi",
        "flag",
        "both",
      ]), { readOnly: true });
    const fs = await Ext4.open(img);
    try {
      const ours: number[] = [];
      for (const n of ["plain", "hi", "flag", "both"]) ours.push((await fs.stat(`/${n}`)).blocks);
      assert.equal(ours.join("\n"), kernel.trim());
      assert.equal(ours[1], ours[0] + 2 ** 32); // the high half counts with huge_file
      assert.equal(ours[2], ours[0] * 8); // HUGE_FILE: counted in 4 KiB blocks
    } finally {
      await fs.close();
    }
  },
);
