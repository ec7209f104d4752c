import assert from "node:assert/strict";
import fc from "fast-check";
import { direntTypeOfMode, DirFileType } from "../lib/ondisk/dirent.ts";
import type { Ext4Error } from "../lib/errors.ts";
import type { NewFileData } from "../lib/ext4/file_write.ts";
import { decodeDeviceBlock, deviceBlock, symlinkData } from "../lib/ext4/special.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  linkIntoRoot,
  type LoadedFs,
  loadFs,
  mkfsImage,
  writeTestInode,
} from "./write_fixtures.ts";

const enc = new TextEncoder();

Deno.test("device numbers: old and new encodings round-trip", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xfff }),
      fc.integer({ min: 0, max: 0xfffff }),
      (major, minor) => {
        if (major === 0 && minor === 0) return;
        assert.deepEqual(decodeDeviceBlock(deviceBlock(major, minor)), { major, minor });
      },
    ),
  );
  const v = new DataView(deviceBlock(8, 300).buffer);
  assert.equal(v.getUint32(0, true), 0, "new encoding when the minor does not fit a byte");
  assert.throws(() => deviceBlock(4096, 0), /out of range/);
  assert.equal(direntTypeOfMode(0o020644), DirFileType.CHRDEV);
  assert.equal(direntTypeOfMode(0o140755), DirFileType.SOCK);
});

/** Makes an inode of `mode` with the given mapping fields and links it into the root. */
async function makeNode(
  fs: LoadedFs,
  tx: Transaction,
  name: string,
  mode: number,
  size: number,
  data: (ino: number, gen: number) => Promise<NewFileData>,
) {
  const { alloc } = fs;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const generation = ino * 17;
  const d = await data(ino, generation);
  const t = { sec: 1700000000, nsec: 1 };
  await writeTestInode(fs, tx, ino, {
    mode,
    size,
    generation,
    time: t,
    blocks512: d.blocks512,
    flags: d.flags,
    block: d.iBlock,
  });
  await linkIntoRoot(fs, tx, name, ino, direntTypeOfMode(mode));
  return ino;
}

const none = (iBlock: Uint8Array = new Uint8Array(60)) => () =>
  Promise.resolve({ iBlock, flags: 0, blocks512: 0, extents: [], mapBlocks: [] });

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0]]) {
  testWith(
    `special inodes on ${layout.name}: fast and slow symlinks, devices, fifo and socket as the kernel sees them`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const { sb, alloc } = fs;
      const tx = fs.cache.begin();
      const fast = "a/fast/target-" + "x".repeat(59 - 14);
      const slow = "/a/slow/target/" + "y".repeat(185);
      for (const [name, target] of [["fast", fast], ["fast1", "t"], ["slow", slow]]) {
        const bytes = enc.encode(target);
        await makeNode(
          fs,
          tx,
          name,
          0o120777,
          bytes.length,
          (ino, generation) => symlinkData(tx, alloc, sb, { ino, generation, target: bytes }),
        );
      }
      await assert.rejects(
        () =>
          symlinkData(tx, alloc, sb, {
            ino: 20,
            generation: 0,
            target: new Uint8Array(sb.blockSize),
          }),
        (e: Ext4Error) => e.code === "NAME_TOO_LONG",
      );
      await makeNode(fs, tx, "chr", 0o020620, 0, none(deviceBlock(1, 3)));
      await makeNode(fs, tx, "blk", 0o060660, 0, none(deviceBlock(259, 70000)));
      await makeNode(fs, tx, "fifo", 0o010644, 0, none());
      await makeNode(fs, tx, "sock", 0o140755, 0, none());
      await tx.commit();
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const path = `${dir.path}/s.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      await withKernelMount(path, async (mnt) => {
        assert.equal(await Deno.readLink(`${mnt}/fast`), fast);
        assert.equal(await Deno.readLink(`${mnt}/fast1`), "t");
        assert.equal(await Deno.readLink(`${mnt}/slow`), slow);
        const dev = (rdev: number) => ({
          major: ((rdev >>> 8) & 0xfff) | Math.floor(rdev / 2 ** 32) & ~0xfff,
          minor: (rdev & 0xff) | ((rdev >>> 12) & ~0xff),
        });
        const chr = await Deno.lstat(`${mnt}/chr`);
        assert.ok(chr.isCharDevice);
        assert.deepEqual(dev(chr.rdev!), { major: 1, minor: 3 });
        const blk = await Deno.lstat(`${mnt}/blk`);
        assert.ok(blk.isBlockDevice);
        assert.deepEqual(dev(blk.rdev!), { major: 259, minor: 70000 });
        assert.ok((await Deno.lstat(`${mnt}/fifo`)).isFifo);
        assert.ok((await Deno.lstat(`${mnt}/sock`)).isSocket);
      }, { readOnly: true });
    },
  );
}
