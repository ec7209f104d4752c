import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import { parseSuperblock, readSuperblock, SUPERBLOCK_OFFSET } from "../lib/ondisk/superblock.ts";
import { GroupFlags, readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { makeImage, runOk, tempDir, testWith } from "./helpers.ts";

async function imageBytes(args: string[], size = "16M"): Promise<Uint8Array> {
  await using dir = await tempDir();
  const path = `${dir.path}/fs.img`;
  await makeImage(path, { args, size });
  return await Deno.readFile(path);
}

function sbBytes(image: Uint8Array): Uint8Array {
  return image.slice(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
}

testWith("superblock: geometry of a 1 KiB-block metadata_csum filesystem", [
  "mkfs.ext4",
  "dumpe2fs",
], async () => {
  const img = await imageBytes([
    "-b",
    "1024",
    "-O",
    "metadata_csum,64bit",
    "-L",
    "lbl",
    "-N",
    "4096",
  ]);
  const sb = parseSuperblock(sbBytes(img));
  assert.equal(sb.blockSize, 1024);
  assert.equal(sb.firstDataBlock, 1);
  assert.equal(sb.blocksCount, 16384);
  assert.equal(sb.volumeName, "lbl");
  assert.equal(sb.descSize, 64);
  assert.equal(sb.groupCount, 2);
  assert.ok(sb.checksumValid());
  const gdt = await readGroupDescriptors(new MemoryBlockDevice(img), sb);
  assert.equal(gdt.length, 2);
  assert.deepEqual(gdt.badChecksums, []);
});

testWith(
  "superblock: checksum mismatch is a CorruptError naming the superblock",
  ["mkfs.ext4"],
  async () => {
    const img = await imageBytes(["-O", "metadata_csum"]);
    const bytes = sbBytes(img);
    bytes[0x78] ^= 0xff; // volume name: changes the content but not the stored checksum
    assert.throws(
      () => parseSuperblock(bytes),
      (e) => e instanceof CorruptError && /checksum mismatch/.test(e.message),
    );
    assert.equal(parseSuperblock(bytes, { ignoreChecksum: true }).checksumValid(), false);
  },
);

testWith("superblock: gdt_csum (crc16) descriptors verify, and a flipped byte is caught", [
  "mkfs.ext4",
], async () => {
  const img = await imageBytes(["-O", "^metadata_csum,uninit_bg", "-b", "1024"]);
  const sb = parseSuperblock(sbBytes(img));
  assert.ok(sb.hasGdtCsum);
  assert.deepEqual((await readGroupDescriptors(new MemoryBlockDevice(img), sb)).badChecksums, []);
  img[2 * 1024 + 0x10] ^= 1; // group 0 used_dirs_count
  assert.deepEqual((await readGroupDescriptors(new MemoryBlockDevice(img), sb)).badChecksums, [0]);
});

testWith("superblock: meta_bg descriptors are found where e2fsprogs puts them", [
  "mkfs.ext4",
  "dumpe2fs",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/fs.img`;
  await makeImage(path, { args: ["-b", "1024", "-O", "meta_bg,^resize_inode"], size: "300M" });
  const img = await Deno.readFile(path);
  const sb = parseSuperblock(sbBytes(img));
  const gdt = await readGroupDescriptors(new MemoryBlockDevice(img), sb);
  const dump = await runOk("dumpe2fs", [path]);
  for (const m of dump.matchAll(/^Group (\d+):[\s\S]*?Inode table at (\d+)-/gm)) {
    assert.equal(gdt.get(Number(m[1])).inodeTable, Number(m[2]), `group ${m[1]}`);
  }
  assert.deepEqual(gdt.badChecksums, []);
});

Deno.test("superblock: wrong magic is NOT_EXT4; a too small device is NOT_EXT4", async () => {
  await assert.rejects(
    readSuperblock(new MemoryBlockDevice(new Uint8Array(4096))),
    (e) => e instanceof Ext4Error && e.code === "NOT_EXT4",
  );
  await assert.rejects(
    readSuperblock(new MemoryBlockDevice(new Uint8Array(1500))),
    (e) => e instanceof Ext4Error && e.code === "NOT_EXT4",
  );
});

testWith("superblock: impossible fields are CorruptErrors, truncated images are caught", [
  "mkfs.ext4",
], async () => {
  const img = await imageBytes(["-O", "^metadata_csum"]);
  const mutate = (off: number, value: number, width: 1 | 2 | 4) => {
    const b = sbBytes(img);
    const v = new DataView(b.buffer);
    if (width === 1) v.setUint8(off, value);
    else if (width === 2) v.setUint16(off, value, true);
    else v.setUint32(off, value, true);
    return b;
  };
  for (
    const [off, value, width, what] of [
      [0x18, 9, 4, /block size/],
      [0x20, 0, 4, /blocks per group/],
      [0x28, 0, 4, /inodes per group/],
      [0x58, 100, 2, /inode size/],
      [0x4c, 7, 4, /revision/],
    ] as const
  ) {
    assert.throws(
      () => parseSuperblock(mutate(off, value, width)),
      (e) => e instanceof CorruptError && what.test(e.message),
    );
  }
  const dev = new MemoryBlockDevice(img.slice(0, 1024 * 1024));
  await assert.rejects(
    readSuperblock(dev),
    (e) => e instanceof CorruptError && /truncated/.test(e.message),
  );
});

testWith(
  "superblock: random corruption never escapes as anything but an Ext4Error",
  ["mkfs.ext4"],
  async () => {
    const img = await imageBytes(["-b", "1024"]);
    const base = sbBytes(img);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(1023), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 12,
        }),
        (flips) => {
          const b = base.slice();
          for (const [at, v] of flips) b[at] = v;
          try {
            const sb = parseSuperblock(b);
            // Derived geometry must be computable for anything parseSuperblock accepted.
            assert.ok(sb.groupCount > 0 && Number.isFinite(sb.groupCount));
          } catch (e) {
            assert.ok(e instanceof Ext4Error, String(e));
          }
        },
      ),
      { numRuns: 2000, seed: 42 },
    );
  },
);

testWith("group descriptors: every field of every group equals dumpe2fs, 32- and 64-bit", [
  "mkfs.ext4",
  "dumpe2fs",
], async (t) => {
  const FLAG_NAMES: Record<string, number> = {
    INODE_UNINIT: GroupFlags.INODE_UNINIT,
    BLOCK_UNINIT: GroupFlags.BLOCK_UNINIT,
    ITABLE_ZEROED: GroupFlags.ITABLE_ZEROED,
  };
  for (
    const [name, args, descSize] of [
      ["64-bit, metadata_csum", ["-O", "64bit,metadata_csum"], 64],
      ["32-bit, metadata_csum", ["-O", "^64bit,metadata_csum"], 32],
      ["32-bit, gdt_csum", ["-O", "^64bit,^metadata_csum,uninit_bg"], 32],
      ["64-bit, no checksums", ["-O", "64bit,^metadata_csum,^uninit_bg"], 64],
    ] as const
  ) {
    await t.step(name, async () => {
      await using dir = await tempDir();
      const path = `${dir.path}/g.img`;
      await makeImage(path, { args: ["-b", "1024", ...args], size: "64M" });
      const img = await Deno.readFile(path);
      const sb = parseSuperblock(sbBytes(img));
      assert.equal(sb.descSize, descSize);
      const gdt = await readGroupDescriptors(new MemoryBlockDevice(img), sb);
      assert.deepEqual(gdt.badChecksums, []);
      const dump = await runOk("dumpe2fs", [path]);
      const re =
        /^Group (\d+): \(Blocks [^)]*\)(?: csum 0x([0-9a-f]+))?(?: \[([A-Z_, ]+)\])?\n(?: {2}(?!Block bitmap).*\n)*? {2}Block bitmap at (\d+) [^\n]*?(?:, csum 0x([0-9a-f]+))?\n {2}Inode bitmap at (\d+) [^\n]*?(?:, csum 0x([0-9a-f]+))?\n {2}Inode table at (\d+)-[^\n]*\n {2}(\d+) free blocks, (\d+) free inodes, (\d+) directories(?:, (\d+) unused inodes)?/gm;
      let seen = 0;
      for (const m of dump.matchAll(re)) {
        const gd = gdt.get(Number(m[1]));
        const where = `${name}, group ${m[1]}`;
        if (m[2] !== undefined) assert.equal(gd.checksum, parseInt(m[2], 16), where);
        const flags = (m[3] ?? "").split(", ").filter((f) => f).reduce(
          (a, f) => a | FLAG_NAMES[f],
          0,
        );
        assert.equal(gd.flags, flags, where);
        assert.equal(gd.blockBitmap, Number(m[4]), where);
        if (m[5] !== undefined) assert.equal(gd.blockBitmapCsum, parseInt(m[5], 16), where);
        assert.equal(gd.inodeBitmap, Number(m[6]), where);
        if (m[7] !== undefined) assert.equal(gd.inodeBitmapCsum, parseInt(m[7], 16), where);
        assert.equal(gd.inodeTable, Number(m[8]), where);
        assert.equal(gd.freeBlocksCount, Number(m[9]), where);
        assert.equal(gd.freeInodesCount, Number(m[10]), where);
        assert.equal(gd.usedDirsCount, Number(m[11]), where);
        if (m[12] !== undefined) assert.equal(gd.itableUnused, Number(m[12]), where);
        seen++;
      }
      assert.equal(seen, gdt.length, "every group parsed from dumpe2fs");
      assert.equal(seen, sb.groupCount);
    });
  }
});
