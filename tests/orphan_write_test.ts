import assert from "node:assert/strict";
import { DirFileType } from "../lib/directory.ts";
import { removeDirEntry, setDirBlockChecksum } from "../lib/dir_write.ts";
import { writeNewFileData } from "../lib/file_write.ts";
import { decodeInode, encodeInode, readInodeRaw, writeInode } from "../lib/inode_write.ts";
import { addOrphan, listOrphans, removeOrphan } from "../lib/orphan_write.ts";
import type { Transaction } from "../lib/transaction.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  linkIntoRoot,
  type LoadedFs,
  loadFs,
  mkfsImage,
  rootBlock,
  writeTestInode,
} from "./write_fixtures.ts";

const enc = new TextEncoder();

async function createFile(
  fs: LoadedFs,
  tx: Transaction,
  name: string,
  size: number,
): Promise<number> {
  const { sb, alloc } = fs;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const generation = ino * 11;
  const data = await writeNewFileData(tx, alloc, sb, { ino, generation, data: pattern(ino, size) });
  const t = { sec: 1700000000, nsec: 0 };
  await writeTestInode(fs, tx, ino, {
    mode: 0o100644,
    size,
    generation,
    time: t,
    blocks512: data.blocks512,
    flags: data.flags,
    block: data.iBlock,
  });
  await linkIntoRoot(fs, tx, name, ino, DirFileType.REG_FILE);
  return ino;
}

/** Unlinks /name while "open": entry gone, link count 0, on the orphan list. */
async function unlinkOpen(fs: LoadedFs, tx: Transaction, name: string, ino: number) {
  const { sb, gdt } = fs;
  const { block, generation } = await rootBlock(fs, tx);
  assert.equal(removeDirEntry(sb, block, enc.encode(name)), ino);
  setDirBlockChecksum(sb, 2, generation, block);
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  await writeInode(
    tx,
    sb,
    gdt,
    ino,
    encodeInode(sb, ino, { ...decodeInode(sb, raw), linksCount: 0 }, raw),
  );
  await addOrphan(tx, sb, gdt, ino);
}

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0]]) {
  testWith(
    `orphan list on ${layout.name}: unlinked-open inodes are chained, and the kernel frees them at mount`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const fs = await loadFs(image);
      const freeBefore = fs.alloc.freeBlockCount;
      let tx = fs.cache.begin();
      const inos: number[] = [];
      for (const n of ["a", "b", "c", "keep"]) inos.push(await createFile(fs, tx, n, 20000));
      await tx.commit();
      tx = fs.cache.begin();
      for (let i = 0; i < 3; i++) await unlinkOpen(fs, tx, ["a", "b", "c"][i], inos[i]);
      assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), [inos[2], inos[1], inos[0]]);
      // "b" is closed again by someone who re-links it: off the list from the middle.
      await removeOrphan(tx, fs.sb, fs.gdt, inos[1]);
      assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), [inos[2], inos[0]]);
      await addOrphan(tx, fs.sb, fs.gdt, inos[1]);
      await tx.commit();
      const path = `${dir.path}/o.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      // The kernel's orphan recovery at mount frees a, b and c.
      await withKernelMount(path, async (mnt) => {
        const names = [];
        for await (const e of Deno.readDir(mnt)) names.push(e.name);
        assert.deepEqual(names.sort(), ["keep", "lost+found"]);
      });
      const after = await loadFs(await Deno.readFile(path));
      const check = await fsck(dir.path, after.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const per = Math.ceil(20000 / after.sb.blockSize);
      assert.equal(after.alloc.freeBlockCount, freeBefore - per, "only keep's blocks are in use");
    },
  );
}
