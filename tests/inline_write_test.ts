import assert from "node:assert/strict";
import { truncateFile, writeFileRange } from "../lib/file_update.ts";
import { InodeFlags } from "../lib/inode.ts";
import { decodeInode, readInodeRaw } from "../lib/inode_write.ts";
import {
  createFile,
  lookupEntry,
  type NamespaceContext,
  unlinkEntry,
} from "../lib/namespace_write.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";

testWith(
  "inline data: small files are written inline, grow out of the inode, and kernel-made inline files convert",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/i.img`;
    await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[9]));
    // The kernel's own inline file, longer than i_block: 100 bytes, 40 of them in system.data.
    const kernelData = pattern(99, 100);
    await withKernelMount(path, (mnt) => Deno.writeFile(`${mnt}/kernel-inline`, kernelData));
    const fs = await loadFs(await Deno.readFile(path));
    let tx = fs.cache.begin();
    const ctx = (): NamespaceContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    const flags = async (ino: number) =>
      decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)).flags;
    const want = new Map<string, Uint8Array>();
    const inos = new Map<string, number>();
    for (const size of [1, 17, 59, 60, 61, 128, 129]) {
      const data = pattern(size, size);
      inos.set(`f${size}`, await createFile(ctx(), 2, `f${size}`, data, { perm: 0o644 }));
      want.set(`f${size}`, data);
    }
    assert.ok((await flags(inos.get("f60")!)) & InodeFlags.INLINE_DATA, "60 bytes are inline");
    assert.ok((await flags(inos.get("f128")!)) & InodeFlags.INLINE_DATA, "128 bytes are inline");
    assert.ok(!((await flags(inos.get("f129")!)) & InodeFlags.INLINE_DATA), "129 bytes are not");
    await tx.commit();
    let check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);

    tx = fs.cache.begin();
    // Grow one out of the inode, truncate another, remove a third; convert the kernel's file.
    await writeFileRange(ctx(), inos.get("f17")!, 5000, pattern(5, 300));
    const grown = new Uint8Array(5300);
    grown.set(want.get("f17")!);
    grown.set(pattern(5, 300), 5000);
    want.set("f17", grown);
    assert.ok(!((await flags(inos.get("f17")!)) & InodeFlags.INLINE_DATA));
    await truncateFile(ctx(), inos.get("f59")!, 10);
    want.set("f59", want.get("f59")!.slice(0, 10));
    await unlinkEntry(ctx(), 2, "f1");
    want.delete("f1");
    const k = await lookupEntry(ctx(), 2, "kernel-inline");
    assert.ok((await flags(k)) & InodeFlags.INLINE_DATA, "the kernel stored it inline");
    await writeFileRange(ctx(), k, 100, pattern(7, 10));
    const kd = new Uint8Array(110);
    kd.set(kernelData);
    kd.set(pattern(7, 10), 100);
    want.set("kernel-inline", kd);
    await tx.commit();
    check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      const names = [];
      for await (const e of Deno.readDir(mnt)) if (e.name !== "lost+found") names.push(e.name);
      assert.deepEqual(names.sort(), [...want.keys()].sort());
      for (const [n, d] of want) assert.deepEqual(await Deno.readFile(`${mnt}/${n}`), d, n);
    }, { readOnly: true });
  },
);
