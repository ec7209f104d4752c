import assert from "node:assert/strict";
import fc from "fast-check";
import { truncateFile, writeFileRange } from "../lib/ext4/file_update.ts";
import { decodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw } from "../lib/ext4/inode.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4 } from "../mod.ts";
import { createFile, lookupEntry } from "../lib/ext4/namei.ts";
import { unlinkEntry } from "../lib/ext4/unlink.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";
import type { OpContext } from "../lib/ext4/context.ts";

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
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
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

type FileOp =
  | { kind: "write"; file: number; offset: number; len: number; seed: number }
  | { kind: "truncate"; file: number; size: number };

const fileOpArb: fc.Arbitrary<FileOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      file: fc.nat(3),
      offset: fc.oneof(fc.nat(130), fc.nat(9000)),
      len: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3000 })),
      seed: fc.nat(255),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("truncate" as const),
      file: fc.nat(3),
      size: fc.oneof(fc.nat(140), fc.nat(9000)),
    }),
  },
);

testWith(
  "inline data: random writes and truncates stay in the inode while they fit, convert when not; the kernel reads the model",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[9]);
    const path = `${dir.path}/m.img`;
    let inPlace = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fileOpArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        const fs = await loadFs(image);
        const tx = fs.cache.begin();
        const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
        const flags = async (ino: number) =>
          decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)).flags;
        const model: Uint8Array[] = [];
        const inos: number[] = [];
        const converted: boolean[] = [];
        for (let i = 0; i < 4; i++) {
          model.push(pattern(i + 1, 10 + 30 * i));
          inos.push(await createFile(ctx, 2, `f${i}`, model[i], { perm: 0o644 }));
          converted.push(false);
        }
        for (const op of ops) {
          const i = op.file;
          if (op.kind === "write") {
            const data = pattern(op.seed, op.len);
            await writeFileRange(ctx, inos[i], op.offset, data);
            const next = new Uint8Array(Math.max(model[i].length, op.offset + op.len));
            next.set(model[i]);
            next.set(data, op.offset);
            model[i] = next;
          } else {
            await truncateFile(ctx, inos[i], op.size);
            const next = new Uint8Array(op.size);
            next.set(model[i].subarray(0, op.size));
            model[i] = next;
          }
          // Inline exactly while it has always fit (128 bytes with 256-byte inodes).
          if (model[i].length > 128) converted[i] = true;
          const inline = ((await flags(inos[i])) & InodeFlags.INLINE_DATA) !== 0;
          assert.equal(inline, !converted[i], `f${i} after ${JSON.stringify(op)}`);
          if (inline) inPlace++;
        }
        await tx.commit();
        const check = await fsck(dir.path, fs.dev.bytes);
        assert.equal(check.code, 0, check.output);
        await Deno.writeFile(path, fs.dev.bytes);
        await withKernelMount(path, async (mnt) => {
          for (let i = 0; i < 4; i++) {
            assert.deepEqual(await Deno.readFile(`${mnt}/f${i}`), model[i], `f${i}`);
          }
        }, { readOnly: true });
      }),
      { numRuns: 8 },
    );
    assert.ok(inPlace > 0);
  },
);

testWith(
  "inline data: files removed while open stay writable, whatever the orphan list keeps in i_dtime",
  [...IMAGE_TOOLS],
  async () => {
    await using dir = await tempDir();
    // The classic orphan list (no orphan file): each orphan's i_dtime names the next one.
    const dev = new MemoryBlockDevice(
      await mkfsImage(dir.path, LAYOUTS[9], ["-O", "^orphan_file"]),
    );
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.writeFile("/x", new Uint8Array([1]));
    await fs.writeFile("/y", new Uint8Array([2]));
    const x = await fs.openWritable("/x");
    const y = await fs.openWritable("/y");
    await fs.remove("/x");
    await fs.remove("/y"); // the list's head now: its i_dtime is x's inode number
    await y.write(new Uint8Array([7, 8, 9]), 0);
    await x.write(new Uint8Array([5]), 1);
    assert.deepEqual([...await y.read(0, 10)], [7, 8, 9]);
    assert.deepEqual([...await x.read(0, 10)], [1, 5]);
    await x.close();
    await y.close();
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);
