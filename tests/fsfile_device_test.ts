/**
 * ffi/fsfile_device.ts: reading images through Deno.FsFile, with --allow-read only (no FFI).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Ext4Error } from "../lib/errors.ts";
import { openFsFileDevice } from "../ffi/fsfile_device.ts";
import { makeImage, ROOT, run, tempDir, testWith } from "./helpers.ts";

testWith(
  "FsFileBlockDevice: the library reads an image with --allow-read only",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    await Deno.mkdir(`${dir.path}/src/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir.path}/src/sub/file.txt`, "read without FFI\n");
    const img = `${dir.path}/t.img`;
    await makeImage(img, { size: "8M", args: ["-d", `${dir.path}/src`] });
    const script = `
    import { Ext4, openFsFileDevice } from "${ROOT}mod.ts";
    const fs = await Ext4.openDevice(await openFsFileDevice(Deno.args[0]));
    console.log(new TextDecoder().decode(await fs.readFile("/sub/file.txt")).trim());
    for await (const e of fs.readDir("/")) console.log(e.name);
    await fs.close();
    // Ext4.open by path picks this device itself when FFI is not permitted.
    const byPath = await Ext4.open(Deno.args[0]);
    console.log((await byPath.stat("/sub/file.txt")).size);
    await byPath.close();
  `;
    await Deno.writeTextFile(`${dir.path}/read.ts`, script);
    // No --allow-ffi, no --allow-all: a permission prompt would fail the run (--no-prompt).
    const r = await run(Deno.execPath(), [
      "run",
      "--no-prompt",
      `--allow-read=${dir.path}`,
      `${dir.path}/read.ts`,
      img,
    ]);
    assert.deepEqual([r.code, r.stderr], [0, ""]);
    assert.equal(r.stdout, "read without FFI\nlost+found\nsub\n17\n");
  },
);

testWith(
  "FsFileBlockDevice: concurrent reads, bounds, read-only, errors",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/t.img`;
    await makeImage(img, { size: "4M" });
    const whole = await Deno.readFile(img);
    const dev = await openFsFileDevice(img);
    assert.equal(dev.size, whole.length);
    assert.equal(dev.readOnly, true);
    // Reads share one file position: issued together, each must still get its own bytes.
    const offsets = Array.from({ length: 64 }, (_, i) => (i * 65_537) % (whole.length - 4096));
    const bufs = offsets.map(() => new Uint8Array(4096));
    await Promise.all(offsets.map((o, i) => dev.read(o, bufs[i])));
    offsets.forEach((o, i) => assert.deepEqual(bufs[i], whole.subarray(o, o + 4096), `at ${o}`));
    await assert.rejects(dev.read(whole.length - 1, new Uint8Array(2)), Ext4Error);
    await assert.rejects(dev.write(), (e) => e instanceof Ext4Error && e.code === "READ_ONLY");
    await dev.close();
    await assert.rejects(async () => await dev.read(0, new Uint8Array(1)), Ext4Error);
    await assert.rejects(
      openFsFileDevice(`${dir.path}/missing.img`),
      (e) => e instanceof Ext4Error && e.code === "NOT_FOUND",
    );
    await assert.rejects(
      openFsFileDevice(dir.path),
      (e) => e instanceof Ext4Error && e.code === "INVALID",
    );
  },
);
