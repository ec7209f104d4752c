import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import type { Ext4Error } from "../lib/errors.ts";
import { writeFileRange } from "../lib/ext4/file_update.ts";
import { createFile, makeDirectory } from "../lib/ext4/namei.ts";
import { removeDirectory, unlinkEntry } from "../lib/ext4/unlink.ts";
import { renameEntry } from "../lib/ext4/rename.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { runOk, tempDir, testWith } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

testWith(
  "Ext4Writer: a failing transaction leaves the device untouched; refusals are clear",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const dev = new MemoryBlockDevice(Uint8Array.from(image));
    const w = await Ext4Writer.open(dev);
    await w.transaction((ctx) => createFile(ctx, 2, "one", pattern(1, 3000), { perm: 0o644 }));
    const after = Uint8Array.from(dev.bytes);
    const free = w.alloc.freeBlockCount;
    await assert.rejects(
      () =>
        w.transaction(async (ctx) => {
          await makeDirectory(ctx, 2, "d", { perm: 0o755 });
          await createFile(ctx, 2, "one", new Uint8Array(1), { perm: 0o644 }); // EXISTS
        }),
      (e: Ext4Error) => e.code === "EXISTS",
    );
    assert.deepEqual(dev.bytes, after);
    assert.equal(w.alloc.freeBlockCount, free);
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);

    await assert.rejects(
      () => Ext4Writer.open(new MemoryBlockDevice(Uint8Array.from(image), { readOnly: true })),
      (e: Ext4Error) => e.code === "READ_ONLY",
    );
    const big = `${dir.path}/bigalloc.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-O", "bigalloc", "-C", "16384", big, "64M"]);
    await assert.rejects(
      async () => await Ext4Writer.open(new MemoryBlockDevice(await Deno.readFile(big))),
      (e: Ext4Error) => e.code === "UNSUPPORTED" && /bigalloc/.test(e.message),
    );
  },
);

testWith(
  "crash consistency of whole operations: every prefix of the write log up to a flush is e2fsck-clean",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0]]) {
      const image = await mkfsImage(dir.path, layout);
      const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(image)));
      const w = await Ext4Writer.open(log);
      const d = await w.transaction((ctx) => makeDirectory(ctx, 2, "dir", { perm: 0o755 }));
      const f = await w.transaction((ctx) =>
        createFile(ctx, d, "file", pattern(2, 70000), { perm: 0o644 })
      );
      for (let i = 0; i < 3; i++) {
        await w.transaction((ctx) => writeFileRange(ctx, f, 100000 * i + 5, pattern(3 + i, 30000)));
      }
      await w.transaction(async (ctx) => {
        for (let i = 0; i < 40; i++) {
          await createFile(ctx, d, `small-${i}`, pattern(i, 100 * i), { perm: 0o600 });
        }
      });
      await w.transaction((ctx) => renameEntry(ctx, d, "file", 2, "moved"));
      await w.transaction(async (ctx) => {
        for (let i = 0; i < 40; i += 2) await unlinkEntry(ctx, d, `small-${i}`);
      });
      await w.transaction(async (ctx) => {
        for (let i = 1; i < 40; i += 2) await unlinkEntry(ctx, d, `small-${i}`);
        await removeDirectory(ctx, 2, "dir");
      });
      const boundaries = log.flushBoundaries();
      assert.ok(boundaries.length >= 12);
      for (const b of boundaries) {
        const r = await fsck(dir.path, log.replay(image, b));
        assert.equal(r.code, 0, `${layout.name} prefix ${b}:\n${r.output}`);
      }
    }
  },
);
