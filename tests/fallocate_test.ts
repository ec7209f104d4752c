/**
 * fallocate(2) through the writable `Ext4`: preallocation, punch hole and zero range give the
 * bytes and sizes the kernel gives for the same operations (util-linux `fallocate` on a loop
 * mount of an identical image), e2fsck-clean, with zeroed whole blocks left unwritten.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Errno, type Ext4Error } from "../lib/errors.ts";
import type { FallocateOptions } from "../lib/ext4/path_ops.ts";
import { run, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const NEEDS = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "fallocate"];

interface Op {
  file: string;
  offset: number;
  length: number;
  options: FallocateOptions;
}

/** The util-linux `fallocate` arguments for `op`. */
function cliArgs(op: Op): string[] {
  const mode = op.options.mode === "punchHole"
    ? ["-p"]
    : op.options.mode === "zeroRange"
    ? ["-z"]
    : [];
  const keep = op.options.keepSize && op.options.mode !== "punchHole" ? ["-n"] : [];
  return [...mode, ...keep, "-o", String(op.offset), "-l", String(op.length)];
}

const OPS: Op[] = [
  // Partial head and tail blocks, whole blocks in between; size kept.
  { file: "f", offset: 1000, length: 10000, options: { mode: "zeroRange", keepSize: true } },
  // Past the end: the size grows to the range's end.
  { file: "f", offset: 38000, length: 10000, options: { mode: "zeroRange" } },
  { file: "f", offset: 5000, length: 9000, options: { mode: "punchHole" } },
  { file: "f", offset: 60000, length: 20000, options: { keepSize: true } },
  { file: "f", offset: 50000, length: 3000, options: {} },
  // Inside one block, over a hole the punch left.
  { file: "f", offset: 6000, length: 50, options: { mode: "zeroRange" } },
  // An empty file.
  { file: "g", offset: 0, length: 8192, options: { mode: "zeroRange" } },
  { file: "g", offset: 100, length: 10, options: { mode: "zeroRange", keepSize: true } },
];

async function kernelView(mnt: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of ["f", "g"]) {
    const data = await Deno.readFile(`${mnt}/${name}`);
    out[name] = `${data.length}:${data.reduce((a, b) => (a * 31 + b) >>> 0, 7)}`;
  }
  return out;
}

for (const layout of [LAYOUTS[2], LAYOUTS[3]]) {
  testWith(
    `fallocate on ${layout.name}: allocate, punch hole and zero range match the kernel's results`,
    NEEDS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const content = pattern(3, 40000);

      // The kernel's results, on a copy of the same image.
      const kernelPath = `${dir.path}/kernel.img`;
      await Deno.writeFile(kernelPath, image);
      const expected = await withKernelMount(kernelPath, async (mnt) => {
        await Deno.writeFile(`${mnt}/f`, content);
        await Deno.writeFile(`${mnt}/g`, new Uint8Array());
        for (const op of OPS) {
          const r = await run("fallocate", [...cliArgs(op), `${mnt}/${op.file}`]);
          assert.equal(r.code, 0, `kernel fallocate ${cliArgs(op).join(" ")}: ${r.stderr}`);
        }
        return await kernelView(mnt);
      });

      const dev = new MemoryBlockDevice(Uint8Array.from(image));
      const fs = await Ext4.openDevice(dev, { readOnly: false });
      await fs.writeFile("/f", content);
      const g = await fs.openWritable("/g");
      for (const op of OPS) {
        if (op.file === "f") await fs.fallocate("/f", op.offset, op.length, op.options);
        else await g.allocate(op.offset, op.length, op.options);
      }
      await g.close();
      // The whole blocks of the first zeroed range that nothing wrote since are unwritten.
      const bs = fs.superblock.blockSize;
      const runs = await fs.blockRuns(await fs.inode((await fs.stat("/g")).ino));
      assert.ok(runs.length > 0 && runs.every((r) => r.unwritten), "zeroed blocks are unwritten");
      const fRuns = await fs.blockRuns(await fs.inode((await fs.stat("/f")).ino));
      const lastZeroed = Math.floor(48000 / bs) - 1;
      assert.ok(
        fRuns.some((r) =>
          r.unwritten && r.logical <= lastZeroed && lastZeroed < r.logical + r.length
        ),
        `block ${lastZeroed} of /f is unwritten`,
      );
      await fs.close();

      const check = await fsck(dir.path, dev.bytes);
      assert.equal(check.code, 0, check.output);
      const oursPath = `${dir.path}/ours.img`;
      await Deno.writeFile(oursPath, dev.bytes);
      const got = await withKernelMount(oursPath, kernelView, { readOnly: true });
      assert.deepEqual(got, expected);
    },
  );
}

testWith(
  "fallocate: block-mapped (ext2) files refuse preallocation and zero range with EOPNOTSUPP; punch works",
  [...IMAGE_TOOLS],
  async () => {
    await using dir = await tempDir();
    const dev = new MemoryBlockDevice(await mkfsImage(dir.path, LAYOUTS[0]));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.writeFile("/f", pattern(1, 20000));
    for (const mode of ["allocate", "zeroRange"] as const) {
      await assert.rejects(
        () => fs.fallocate("/f", 0, 4096, { mode }),
        (e: Ext4Error) => e.code === "UNSUPPORTED" && e.errno === Errno.EOPNOTSUPP,
      );
    }
    await fs.fallocate("/f", 4096, 8192, { mode: "punchHole" });
    const data = await fs.readFile("/f");
    assert.equal(data.length, 20000);
    assert.ok(data.subarray(4096, 12288).every((b) => b === 0));
    assert.deepEqual(data.subarray(12288), pattern(1, 20000).subarray(12288));
    await assert.rejects(
      () => fs.fallocate("/f", -1, 10, { mode: "zeroRange" }),
      (e: Ext4Error) => e.code === "INVALID",
    );
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);
