/**
 * htree leaf and index splits as the kernel's (lib/ext4/htree_split.ts): the same sequence of
 * creates and removes in one directory, with the same hash seed, run by the kernel's ext4 (a
 * loop mount) and by ext4ts (the writable library), must leave the same directory: the same
 * index (hashes, blocks, levels) and the same entries in the same order with the same record
 * lengths in every block, as `debugfs -R "htree_dump"` prints them (inode numbers, physical
 * block numbers and checksums aside: the two allocate inodes and blocks their own ways).
 * Cases: 1 KiB and 4 KiB blocks, names of many lengths, removals that leave slack the split
 * counts, a one-level index and a two-level one whose nodes split; `e2fsck -fn` clean.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../mod.ts";
import {
  assertFsckClean,
  makeImage,
  runOk,
  tempDir,
  testWith,
  withKernelMount,
} from "./helpers.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs", "e2fsck", "python3"];
const UUID = "11111111-2222-3333-4444-555555555555";
const SEED = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/** One step: create (`c`) or remove (`u`) a name in the directory. */
type Step = ["c" | "u", string];

/**
 * `n` names of varied lengths (up to `width` more characters), then every third removed, then
 * `more` new ones: the removals leave slack that the next splits count.
 */
function steps(n: number, width: number, more: number): Step[] {
  const name = (i: number) => `f${"x".repeat((i * 7) % (width + 1))}${i}`;
  const out: Step[] = [];
  for (let i = 1; i <= n; i++) out.push(["c", name(i)]);
  for (let i = 3; i <= n; i += 3) out.push(["u", name(i)]);
  for (let i = n + 1; i <= n + more; i++) out.push(["c", name(i)]);
  return out;
}

/** The kernel runs the steps (one python3 process: a syscall per step). */
async function kernelRun(img: string, dir: string, list: Step[]): Promise<void> {
  const plan = `${dir}/steps.json`;
  await Deno.writeTextFile(plan, JSON.stringify(list));
  await withKernelMount(img, async (m) => {
    await Deno.mkdir(`${m}/d`);
    await runOk("python3", [
      "-c",
      `import json, os, sys
for op, name in json.load(open(sys.argv[1])):
    p = os.path.join(sys.argv[2], name)
    if op == "c": os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    else: os.unlink(p)`,
      plan,
      `${m}/d`,
    ]);
  });
}

/** ext4ts runs the steps through the writable library. */
async function ext4tsRun(img: string, list: Step[]): Promise<void> {
  const fs = await Ext4.open(img, { readOnly: false });
  try {
    await fs.mkdir("/d");
    for (const [op, name] of list) {
      if (op === "c") await fs.writeFile(`/d/${name}`, new Uint8Array(0));
      else await fs.remove(`/d/${name}`);
    }
  } finally {
    await fs.close();
  }
}

/** `htree_dump` of /d, one item a line, without inode and physical block numbers or checksums. */
async function layout(img: string): Promise<string[]> {
  const dump = await runOk("debugfs", ["-R", "htree_dump /d", img]);
  const out: string[] = [];
  for (const line of dump.split("\n")) {
    const clean = line.replace(/phys \d+/, "").replace(/[Cc]hecksum: 0x[0-9a-f]+/, "");
    for (const part of clean.split(/ {3,}/)) {
      const item = part.trim().replace(/^\d+ (0x)/, "$1");
      if (item) out.push(item);
    }
  }
  return out;
}

for (
  const [what, bs, n, width, more, extra] of [
    ["1 KiB blocks, one index level", 1024, 1500, 40, 300, []],
    ["4 KiB blocks, long names, no metadata_csum", 4096, 1500, 120, 300, ["-O", "^metadata_csum"]],
    ["1 KiB blocks, two index levels whose nodes split", 1024, 7000, 8, 500, []],
  ] as const
) {
  testWith(`htree splits as the kernel's: ${what}`, NEEDS, async () => {
    await using dir = await tempDir("ext4ts-htree-");
    const kernelImg = `${dir.path}/kernel.img`;
    const oursImg = `${dir.path}/ours.img`;
    await makeImage(kernelImg, {
      size: "64M",
      args: ["-b", String(bs), "-U", UUID, "-E", `hash_seed=${SEED}`, ...extra],
    });
    await Deno.copyFile(kernelImg, oursImg);
    const list = steps(n, width, more);
    await kernelRun(kernelImg, dir.path, list);
    await ext4tsRun(oursImg, list);
    const kernel = await layout(kernelImg);
    const ours = await layout(oursImg);
    assert.ok(kernel.some((l) => /^Entry #1: /.test(l)), "the kernel's directory is indexed");
    if (n > 5000) assert.ok(kernel.includes("Indirect levels: 1"), "two index levels");
    assert.deepEqual(ours, kernel);
    await assertFsckClean(oursImg);
  });
}
