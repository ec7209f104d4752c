/**
 * The one orphan implementation (lib/ext4/orphan.ts) where e2fsck's way and the kernel's meet
 * damage: after a replay (e2fsck's way, lib/ext4/orphans_replay.ts) a damaged list is left
 * untouched for the kernel — nothing of the cleanup is written — and a filesystem with errors
 * has its list dropped unprocessed, by the replay and by a forced read-write open alike.
 */

import assert from "node:assert/strict";
import { changedBlocks, run, tempDir, testWith } from "./helpers.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";

const NEEDS = ["mkfs.ext4", "debugfs"];
const ENV = { PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`, E2FSCK_CONFIG: "/dev/null" };

async function dfs(img: string, cmd: string): Promise<string> {
  const r = await run("debugfs", ["-w", "-R", cmd, img], { env: ENV });
  if (r.code !== 0) throw new Error(`debugfs ${cmd}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

/** An image with files /a and /b (unlinked, no links left), chained a -> b on the orphan list. */
async function orphanedImage(dir: string): Promise<{ img: string; a: number; b: number }> {
  const img = `${dir}/o.img`;
  const r = await run("mkfs.ext4", ["-qF", "-b", "1024", img, "8M"], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  await Deno.writeFile(`${dir}/data`, new Uint8Array(3000).fill(7));
  const inos: number[] = [];
  for (const name of ["a", "b"]) {
    await dfs(img, `write ${dir}/data ${name}`);
    inos.push(Number(/Inode: (\d+)/.exec(await dfs(img, `stat ${name}`))![1]));
    await dfs(img, `unlink ${name}`);
  }
  const [a, b] = inos;
  for (const ino of inos) await dfs(img, `sif <${ino}> links_count 0`);
  await dfs(img, `sif <${a}> dtime ${b}`);
  await dfs(img, `ssv last_orphan ${a}`);
  return { img, a, b };
}

/** Replays the journal of image `img` (marked as needing recovery) onto it. */
async function replay(img: string) {
  const dev = openBlockDevice(img, { readOnly: false });
  try {
    return await replayJournal(dev, { now: 2000000000 });
  } finally {
    await dev.close();
  }
}

testWith(
  "after a replay, a damaged orphan list (a loop) is left untouched for the kernel: nothing of the cleanup is written",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img, a, b } = await orphanedImage(dir.path);
    await dfs(img, `sif <${b}> dtime ${a}`); // b -> a: a loop
    await dfs(img, "feature needs_recovery");
    const journalSb = Number(/\d+/.exec(await dfs(img, "bmap <8> 0"))![0]);
    const before = `${dir.path}/before.img`;
    await Deno.copyFile(img, before);
    const r = await replay(img);
    assert.match(r.prepared?.orphans?.skipped ?? "", /orphan list: bad or repeated inode/);
    assert.equal(r.prepared?.orphans?.blocks.size, 0);
    assert.match(r.prepared!.warnings.join("\n"), /orphan inodes left for the kernel/);
    // The superblock (recovery done) and the journal superblock (emptied) only.
    assert.deepEqual(
      (await changedBlocks(before, img, 1024)).filter((n) => n !== 1 && n !== journalSb),
      [],
    );
    const sb = await readSuperblock(openBlockDevice(img));
    assert.equal(sb.lastOrphan, a, "the list is kept for the kernel");
  },
);

testWith(
  "a filesystem with errors: the replay and a forced read-write open drop the orphan list unprocessed",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img, a } = await orphanedImage(dir.path);
    await dfs(img, "ssv state 3"); // VALID | ERROR
    const copy = `${dir.path}/copy.img`;
    await Deno.copyFile(img, copy);

    await dfs(img, "feature needs_recovery");
    const r = await replay(img);
    assert.match(r.prepared?.orphans?.skipped ?? "", /has errors: the orphan list was dropped/);
    assert.equal(r.prepared?.orphans?.blocks.size, 0);
    assert.equal((await readSuperblock(openBlockDevice(img))).lastOrphan, 0);

    const notices: string[] = [];
    const fs = await Ext4.openDevice(openBlockDevice(copy, { readOnly: false }), {
      readOnly: false,
      force: true,
      onNotice: (m) => notices.push(m),
    });
    try {
      assert.deepEqual(notices, [
        "orphan list not processed: the filesystem has errors: the orphan list was dropped unprocessed",
      ]);
      assert.equal(fs.superblock.lastOrphan, 0);
      assert.ok(await fs.inodeAllocated(a), "the orphan was not freed");
    } finally {
      await fs.close();
    }
  },
);
