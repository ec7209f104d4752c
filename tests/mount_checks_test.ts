import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { CorruptError, Errno } from "../lib/errors.ts";
import { ErrorCode, saveFsError } from "../lib/ext4/fs_error.ts";
import { readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import {
  checkBeforeWrite,
  checkDescriptors,
  checkGeometry,
  checkState,
} from "../lib/ext4/super.ts";
import { readSuperblock, State, Superblock } from "../lib/ondisk/superblock.ts";
import { tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

/** Superblock and descriptors of a copy of `image` (changes stay in memory). */
async function load(image: Uint8Array) {
  const dev = new MemoryBlockDevice(Uint8Array.from(image));
  const sb = await readSuperblock(dev);
  const gdt = await readGroupDescriptors(dev, sb);
  return { dev, sb, gdt };
}

/** Sets a descriptor's block bitmap (0), inode bitmap (4) or inode table (8), low 32 bits. */
function setGd(bytes: Uint8Array, offset: 0 | 4 | 8, block: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(offset, block, true);
}

function assertCorrupt(fn: () => unknown, structure: string, detail: RegExp): void {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof CorruptError, String(e));
    assert.equal(e.structure, structure);
    assert.match(e.message, detail);
    assert.equal(e.errno, Errno.EUCLEAN);
    return true;
  });
}

testWith(
  "checkBeforeWrite accepts every fresh mkfs layout (no false refusal)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    for (const layout of LAYOUTS) {
      const { dev, sb, gdt } = await load(await mkfsImage(dir.path, layout));
      await checkBeforeWrite(dev, sb, gdt);
    }
  },
);

testWith("checkState: errors, or unclean without a journal, want force", IMAGE_TOOLS, async () => {
  await using dir = await tempDir();
  const ext4 = (await load(await mkfsImage(dir.path, LAYOUTS[2]))).sb;
  const ext2 = (await load(await mkfsImage(dir.path, LAYOUTS[0]))).sb;
  checkState(ext4);
  checkState(ext2);
  ext4.state = State.VALID | State.ERROR;
  assertCorrupt(() => checkState(ext4), "filesystem state", /with errors.*run e2fsck$/);
  checkState(ext4, { force: true });
  // A journal replays what an unclean stop left: only errors count there.
  ext4.state = 0;
  checkState(ext4);
  ext2.state = 0;
  assertCorrupt(() => checkState(ext2), "filesystem state", /not clean.*run e2fsck$/);
  checkState(ext2, { force: true });
});

testWith(
  "checkGeometry: the ext4_fill_super checks reading does not make",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const edit = (offset: number, size: 2 | 4, value: number): Superblock => {
      const sb = new Superblock(image.slice(1024, 2048));
      const v = new DataView(sb.bytes.buffer);
      if (size === 2) v.setUint16(offset, value, true);
      else v.setUint32(offset, value, true);
      return sb;
    };
    checkGeometry(edit(0x0, 4, new Superblock(image.slice(1024, 2048)).inodesCount));
    assertCorrupt(() => checkGeometry(edit(0x0, 4, 100)), "superblock", /inode count 100/);
    assertCorrupt(
      () => checkGeometry(edit(0xce, 2, 2000)),
      "superblock",
      /2000 reserved GDT blocks/,
    );
    assertCorrupt(() => checkGeometry(edit(0x54, 4, 1 << 30)), "superblock", /first inode/);
  },
);

testWith(
  "checkDescriptors: ext4_check_descriptors' ranges, and overlaps across groups",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const flex = await mkfsImage(dir.path, LAYOUTS[2]);
    const noFlex = await mkfsImage(dir.path, LAYOUTS[7]);

    // Two groups' block bitmaps in one block (f_overfsblks).
    let { sb, gdt } = await load(flex);
    setGd(gdt.get(1).bytes, 0, gdt.get(0).blockBitmap);
    assertCorrupt(
      () => checkDescriptors(sb, gdt),
      "group descriptor 1",
      /block bitmap at \d+ overlaps the block bitmap of group 0/,
    );

    // An inode bitmap on the primary superblock.
    ({ sb, gdt } = await load(flex));
    setGd(gdt.get(2).bytes, 4, 0);
    assertCorrupt(
      () => checkDescriptors(sb, gdt),
      "group descriptor 2",
      /inode bitmap at 0 overlaps the superblock and descriptors of group 0/,
    );

    // An inode table over another group's bitmap: the later group of the two is named.
    ({ sb, gdt } = await load(flex));
    setGd(gdt.get(0).bytes, 8, gdt.get(3).inodeBitmap);
    assertCorrupt(
      () => checkDescriptors(sb, gdt),
      "group descriptor 3",
      /inode bitmap at \d+ overlaps the inode table of group 0/,
    );

    // Without flex_bg, every group's metadata stays in its own group.
    ({ sb, gdt } = await load(noFlex));
    assert.ok(checkDescriptors(sb, gdt).length > 0);
    setGd(gdt.get(1).bytes, 8, gdt.get(0).inodeTable + sb.inodeTableBlocksPerGroup + 10);
    assertCorrupt(
      () => checkDescriptors(sb, gdt),
      "group descriptor 1",
      /inode table at \d+ is not in the group \(blocks 2048-4095\)/,
    );
  },
);

testWith("saveFsError records as the kernel's save_error_info", IMAGE_TOOLS, async () => {
  await using dir = await tempDir();
  const { sb } = await load(await mkfsImage(dir.path, LAYOUTS[2]));
  assert.equal(sb.errorCount, 0);
  saveFsError(sb, { func: "allocateInode", ino: 11, time: 1700000000 });
  saveFsError(sb, {
    func: "a_function_name_longer_than_32_bytes",
    block: 2 ** 33 + 5,
    time: 2 ** 32 + 7,
  });
  assert.equal(sb.state & State.ERROR, State.ERROR);
  assert.equal(sb.errorCount, 2);
  assert.deepEqual(
    [sb.firstErrorTime, sb.firstErrorIno, sb.firstErrorBlock, sb.firstErrorFunc],
    [1700000000, 11, 0, "allocateInode"],
  );
  assert.equal(sb.firstErrorErrcode, ErrorCode.EFSCORRUPTED);
  assert.deepEqual(
    [sb.lastErrorTime, sb.lastErrorIno, sb.lastErrorBlock, sb.lastErrorFunc],
    [2 ** 32 + 7, 0, 2 ** 33 + 5, "a_function_name_longer_than_32_b"],
  );
});
