import assert from "node:assert/strict";
import { DirFileType, removeDirEntry, setDirBlockChecksum } from "../lib/ondisk/dirent.ts";
import { writeNewFileData } from "../lib/ext4/file_write.ts";
import { decodeInode, encodeInode } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { addOrphan, listOrphans, orphanListWalks, removeOrphan } from "../lib/ext4/orphan.ts";
import { Ext4 } from "../mod.ts";
import { createFile as nsCreateFile } from "../lib/ext4/namei.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { run, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { Compat, RoCompat } from "../lib/ondisk/features.ts";
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

const ORPHAN_FILE = ["-O", "orphan_file"];

/** dumpe2fs -h's feature line and debugfs's view of the orphan file's first block. */
async function toolView(
  dir: string,
  bytes: Uint8Array,
): Promise<{ features: string; fsck: string }> {
  const path = `${dir}/view.img`;
  await Deno.writeFile(path, bytes);
  const dump = await run("dumpe2fs", ["-h", path]);
  const features = dump.stdout.split("\n").find((l) => l.startsWith("Filesystem features:")) ?? "";
  const check = await run("e2fsck", ["-fn", path]);
  await Deno.remove(path);
  return { features, fsck: check.stdout + check.stderr };
}

testWith(
  "orphan file: orphans take free slots (checksummed, orphan_present set), leave them, and an emptied file is e2fsck-clean",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2], ORPHAN_FILE));
    assert.ok(fs.sb.compat & Compat.ORPHAN_FILE);
    let tx = fs.cache.begin();
    const inos: number[] = [];
    for (const n of ["a", "b", "c"]) inos.push(await createFile(fs, tx, n, 5000));
    await tx.commit();
    tx = fs.cache.begin();
    // Pending truncates of linked files: orphans that may be removed again.
    for (const ino of inos) await addOrphan(tx, fs.sb, fs.gdt, ino);
    await addOrphan(tx, fs.sb, fs.gdt, inos[1]); // twice: no change
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), inos);
    assert.equal(fs.sb.lastOrphan, 0, "the classic list is not used");
    assert.ok(fs.sb.roCompat & RoCompat.ORPHAN_PRESENT);
    await removeOrphan(tx, fs.sb, fs.gdt, inos[1]);
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), [inos[0], inos[2]]);
    await assert.rejects(() => removeOrphan(tx, fs.sb, fs.gdt, inos[1]), /not an orphan/);
    await tx.commit();
    // Reloaded from disk: the slots and checksums read back (the kernel would refuse a bad one).
    const again = await loadFs(fs.dev.bytes);
    let rtx = again.cache.begin();
    assert.deepEqual(await listOrphans(rtx, again.sb, again.gdt), [inos[0], inos[2]]);
    const view = await toolView(dir.path, fs.dev.bytes);
    assert.match(view.features, /orphan_present/);
    // e2fsck -n does not process orphans: it names the orphan file's used block, no more.
    assert.match(view.fsck, /Orphan file \(inode \d+\) block 0 is not clean/);
    const complaints = view.fsck.split("\n").map((l) => l.trim()).filter((l) =>
      l && !/^Pass \d|^e2fsck \d|WARNING|files .* blocks$/.test(l)
    );
    assert.deepEqual(complaints, [
      `Orphan file (inode ${fs.sb.orphanFileInum}) block 0 is not clean.`,
      "Clear? no",
      "Failed to initialize orphan file.",
      "Recreate? no",
    ]);
    // e2fsck -fy processes them (pending truncates of linked files) and leaves it clean.
    const fixed = `${dir.path}/fixed.img`;
    await Deno.writeFile(fixed, fs.dev.bytes);
    await run("e2fsck", ["-fy", fixed]);
    const recheck = await run("e2fsck", ["-fn", fixed]);
    assert.equal(recheck.code, 0, recheck.stdout + recheck.stderr);
    await Deno.remove(fixed);
    rtx.abort();
    rtx = again.cache.begin();
    for (const ino of [inos[0], inos[2]]) await removeOrphan(rtx, again.sb, again.gdt, ino);
    assert.ok(!(again.sb.roCompat & RoCompat.ORPHAN_PRESENT), "cleared with the last entry");
    await rtx.commit();
    const empty = await toolView(dir.path, again.dev.bytes);
    assert.doesNotMatch(empty.features, /orphan_present/);
    const check = await fsck(dir.path, again.dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

testWith(
  "orphan file: unlinked-open inodes left by ext4ts are freed by the kernel at mount, e2fsck clean after",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2], ORPHAN_FILE));
    const freeBefore = fs.alloc.freeBlockCount;
    let tx = fs.cache.begin();
    const inos: number[] = [];
    for (const n of ["a", "b", "c", "keep"]) inos.push(await createFile(fs, tx, n, 20000));
    await tx.commit();
    tx = fs.cache.begin();
    for (let i = 0; i < 3; i++) await unlinkOpen(fs, tx, ["a", "b", "c"][i], inos[i]);
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), inos.slice(0, 3));
    await tx.commit();
    const view = await toolView(dir.path, fs.dev.bytes);
    assert.match(view.features, /orphan_present/);
    const path = `${dir.path}/of.img`;
    await Deno.writeFile(path, fs.dev.bytes);
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
    const atx = after.cache.begin();
    assert.deepEqual(await listOrphans(atx, after.sb, after.gdt), []);
    atx.abort();
  },
);

testWith(
  "orphan file: a full orphan file falls back to the classic list; the kernel processes both",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    // One 1 KiB orphan block: 254 slots.
    const fs = await loadFs(
      await mkfsImage(dir.path, LAYOUTS[3], ["-O", "orphan_file", "-E", "orphan_file_size=1"]),
    );
    let tx = fs.cache.begin();
    const ctx = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const inos: number[] = [];
    for (let i = 0; i < 257; i++) {
      inos.push(await nsCreateFile(ctx, 2, `f${i}`, new Uint8Array(0), { perm: 0o644 }));
    }
    await tx.commit();
    tx = fs.cache.begin();
    // Linked files being "truncated": orphans the kernel truncates (a no-op here) and drops.
    for (const ino of inos) await addOrphan(tx, fs.sb, fs.gdt, ino);
    const listed = await listOrphans(tx, fs.sb, fs.gdt);
    assert.deepEqual(listed, [...inos.slice(0, 254), inos[256], inos[255], inos[254]]);
    assert.equal(fs.sb.lastOrphan, inos[256]);
    // A slot freed in the file is reused before the list grows.
    await removeOrphan(tx, fs.sb, fs.gdt, inos[7]);
    await removeOrphan(tx, fs.sb, fs.gdt, inos[255]);
    await addOrphan(tx, fs.sb, fs.gdt, inos[255]);
    assert.equal((await listOrphans(tx, fs.sb, fs.gdt))[7], inos[255]);
    assert.equal(fs.sb.lastOrphan, inos[256]);
    await tx.commit();
    const path = `${dir.path}/full.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      let n = 0;
      for await (const _ of Deno.readDir(mnt)) n++;
      assert.equal(n, 258);
    });
    const after = await loadFs(await Deno.readFile(path));
    const check = await fsck(dir.path, after.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const atx = after.cache.begin();
    assert.deepEqual(await listOrphans(atx, after.sb, after.gdt), []);
    atx.abort();
  },
);

testWith(
  "orphan file: a bad magic or checksum is a CorruptError before any change",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2], ORPHAN_FILE);
    const probe = await loadFs(image);
    const ptx = probe.cache.begin();
    const ofIno = probe.sb.orphanFileInum;
    const of = decodeInode(probe.sb, await readInodeRaw(ptx, probe.sb, probe.gdt, ofIno));
    ptx.abort();
    const firstBlock = new DataView(of.block.buffer, of.block.byteOffset).getUint32(20, true);
    const bs = probe.sb.blockSize;
    const cases: [string, (bytes: Uint8Array) => void][] = [
      ["bad magic", (b) => (b[firstBlock * bs + bs - 8] ^= 1)],
      ["bad checksum", (b) => (b[firstBlock * bs + 40] = 7)],
    ];
    for (const [what, edit] of cases) {
      const bytes = Uint8Array.from(image);
      edit(bytes);
      const fs = await loadFs(bytes);
      const tx = fs.cache.begin();
      await assert.rejects(() => listOrphans(tx, fs.sb, fs.gdt), /orphan file/, what);
      await assert.rejects(() => addOrphan(tx, fs.sb, fs.gdt, 11), /orphan file/, what);
      assert.equal(tx.metadataBlocks, 0, what);
      tx.abort();
    }
  },
);

testWith(
  "orphan list: a change an aborted transaction made to it is forgotten (the list kept in memory is dropped)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    let tx = fs.cache.begin();
    const inos: number[] = [];
    for (const n of ["a", "b", "c"]) inos.push(await createFile(fs, tx, n, 100));
    for (let i = 0; i < 3; i++) await unlinkOpen(fs, tx, ["a", "b", "c"][i], inos[i]);
    await tx.commit();
    const chain = [inos[2], inos[1], inos[0]];
    tx = fs.cache.begin();
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), chain);
    // From the middle: the head (s_last_orphan) stays, so only the abort can tell.
    await removeOrphan(tx, fs.sb, fs.gdt, inos[1]);
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), [inos[2], inos[0]]);
    tx.abort();
    tx = fs.cache.begin();
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), chain, "as on disk again");
    await removeOrphan(tx, fs.sb, fs.gdt, inos[1]);
    await tx.commit();
    tx = fs.cache.begin();
    assert.deepEqual(await listOrphans(tx, fs.sb, fs.gdt), [inos[2], inos[0]]);
    tx.abort();
    // What a fresh load walks on disk is what was kept.
    const again = await loadFs(fs.dev.bytes);
    assert.deepEqual(await listOrphans(again.cache.begin(), again.sb, again.gdt), [
      inos[2],
      inos[0],
    ]);
  },
);

testWith(
  "orphan list: many files unlinked while open are added and released without walking the list each time",
  ["mkfs.ext4", "e2fsck"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await run("mkfs.ext4", ["-qF", "-b", "4096", img, "64M"]);
    const fs = await Ext4.open(img, { readOnly: false, commitInterval: 5 });
    const nw = fs.nodeWriter();
    await fs.mkdir("/d");
    const d = (await fs.stat("/d")).ino;
    const inos: number[] = [];
    for (let i = 0; i < 300; i++) {
      inos.push(await nw.create(d, enc.encode(`f${i}`), { mode: 0o100644, uid: 0, gid: 0 }));
    }
    const walks = orphanListWalks.count;
    for (let i = 0; i < 300; i++) await nw.unlink(d, enc.encode(`f${i}`));
    // Released in an order that takes every one from inside the list.
    for (let i = 0; i < 300; i++) await nw.release(inos[(i * 7) % 300]);
    // One walk at most (the first addition); each of the 600 changes walked it before.
    assert.ok(orphanListWalks.count - walks <= 1, `${orphanListWalks.count - walks} walks`);
    assert.deepEqual(await Array.fromAsync(fs.readDir("/d")), []);
    await fs.close();
    const r = await run("e2fsck", ["-fn", img]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /Fix\? no/);
    const dump = await run("dumpe2fs", ["-h", img]);
    assert.doesNotMatch(dump.stdout, /First orphan inode/);
  },
);
