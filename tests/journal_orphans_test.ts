/**
 * Orphan cleanup after replay against e2fsck's: filesystems whose orphan list holds files
 * of every shape (extents, an extent tree with a leaf block, an ext3 block map with indirect
 * blocks, a directory, fast and slow symlinks, an empty file) are marked as needing
 * recovery with an empty journal, then recovered by ext4ts and by
 * `e2fsck -E journal_only`; the results must be identical outside the superblock.
 */

import assert from "node:assert/strict";
import { changedBlocks, IN_CI, makeImage, missing, run, runOk, tempDir } from "./helpers.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { Ext4 } from "../lib/ext4/filesystem.ts";

const E2ENV = {
  E2FSCK_CONFIG: "/dev/null",
  E2FSPROGS_SKIP_PROGRESS: "yes",
  TZ: "GMT0",
  E2FSCK_TIME: "2000000000",
  PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`,
};
const NOW = 2000000000;

const lacking = missing(["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs", "e2fsck"]);

async function dfs(img: string, cmd: string): Promise<string> {
  const r = await run("debugfs", ["-w", "-R", cmd, img], { env: E2ENV });
  if (r.code !== 0) throw new Error(`debugfs ${cmd}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

async function inodeOf(img: string, path: string): Promise<number> {
  const out = await dfs(img, `stat ${path}`);
  const m = /Inode: (\d+)/.exec(out);
  assert.ok(m, `no inode for ${path}: ${out}`);
  return Number(m[1]);
}

/** Unlinks `paths` and chains their inodes on the orphan list, as a crash would leave them. */
async function orphan(img: string, paths: string[]): Promise<number[]> {
  const inos: number[] = [];
  for (const p of paths) inos.push(await inodeOf(img, p));
  for (const p of paths) await dfs(img, `unlink ${p}`);
  for (let i = 0; i < inos.length; i++) {
    await dfs(img, `sif <${inos[i]}> links_count 0`);
    await dfs(img, `sif <${inos[i]}> dtime ${i + 1 < inos.length ? inos[i + 1] : 0}`);
  }
  await dfs(img, `ssv last_orphan ${inos[0]}`);
  await dfs(img, "feature needs_recovery");
  return inos;
}

const SHAPES: { name: string; mkfs: string; args: string[]; bs: number }[] = [
  { name: "ext4, 1 KiB blocks, metadata_csum", mkfs: "mkfs.ext4", args: ["-b", "1024"], bs: 1024 },
  {
    name: "ext4, 4 KiB blocks, no metadata_csum",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-O", "^metadata_csum"],
    bs: 4096,
  },
  { name: "ext3 block maps", mkfs: "mkfs.ext3", args: ["-b", "1024"], bs: 1024 },
];

for (const shape of SHAPES) {
  Deno.test({
    name: `orphan cleanup equals e2fsck's (${shape.name})`,
    ignore: lacking.length > 0 && !IN_CI,
    async fn() {
      if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      await using tmp = await tempDir();
      const img = `${tmp.path}/pre.img`;
      await makeImage(img, {
        mkfs: shape.mkfs,
        size: "32M",
        args: shape.args,
        populate: async (m) => {
          await Deno.writeFile(`${m}/small`, new Uint8Array(5000).fill(1));
          await Deno.writeFile(`${m}/big`, new Uint8Array(600 * 1024).fill(2));
          // Many small extents: every other block written, so the tree needs a leaf block.
          const f = await Deno.open(`${m}/sparse`, { create: true, write: true });
          for (let i = 0; i < 64; i++) {
            await f.seek(i * 2 * shape.bs, Deno.SeekMode.Start);
            await f.write(new Uint8Array(shape.bs).fill(i));
          }
          f.close();
          await Deno.writeFile(`${m}/empty`, new Uint8Array());
          await Deno.mkdir(`${m}/dir`);
          for (let i = 0; i < 40; i++) await Deno.writeTextFile(`${m}/dir/n${i}`, "x");
          for (let i = 0; i < 40; i++) await Deno.remove(`${m}/dir/n${i}`);
          await Deno.symlink("t", `${m}/fast`);
          await Deno.symlink("x".repeat(200), `${m}/slow`);
          await Deno.writeTextFile(`${m}/keep`, "kept\n");
          // Xattr blocks: one private, one shared by two files (refcount 2).
          const big = "v".repeat(shape.bs === 1024 ? 700 : 3000);
          for (const f of ["xattr", "shared1", "shared2"]) {
            await Deno.writeTextFile(`${m}/${f}`, f);
          }
          await runOk("python3", [
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'user.a', sys.argv[4].encode()); " +
            "[os.setxattr(p, 'user.s', sys.argv[4].encode() + b'S') for p in sys.argv[2:4]]",
            `${m}/xattr`,
            `${m}/shared1`,
            `${m}/shared2`,
            big,
          ]);
        },
      });
      const acl = async (p: string) =>
        Number(/File ACL: (\d+)/.exec(await dfs(img, `stat ${p}`))![1]);
      assert.notEqual(await acl("/xattr"), 0, "the xattr must live in a block");
      assert.notEqual(await acl("/shared1"), 0);
      assert.equal(await acl("/shared1"), await acl("/shared2"), "an xattr block shared by two");
      await orphan(img, [
        "/small",
        "/big",
        "/sparse",
        "/empty",
        "/dir",
        "/fast",
        "/slow",
        "/xattr",
        "/shared1",
      ]);
      const ours = `${tmp.path}/ours.img`;
      const jo = `${tmp.path}/jo.img`;
      await runOk("cp", [img, ours]);
      await runOk("cp", [img, jo]);
      const dev = openBlockDevice(ours, { readOnly: false });
      let r;
      try {
        r = await replayJournal(dev, { now: NOW });
      } finally {
        await dev.close();
      }
      assert.equal(r.prepared?.orphans?.skipped, undefined);
      assert.equal(r.prepared?.orphans?.released.length, 9);
      await run("e2fsck", ["-y", "-E", "journal_only", jo], { env: E2ENV });
      assert.ok((r.prepared?.orphans?.freed.length ?? 0) > 100);
      const sbBlock = Math.floor(1024 / shape.bs);
      const diff = (await changedBlocks(ours, jo, shape.bs)).filter((b) => b !== sbBlock);
      assert.deepEqual(diff, [], "blocks differing from e2fsck's orphan cleanup");
      const fnOurs = await run("e2fsck", ["-fn", ours], { env: E2ENV });
      const fnJo = await run("e2fsck", ["-fn", jo], { env: E2ENV });
      assert.ok(
        fnOurs.code <= fnJo.code,
        `e2fsck -fn ${fnOurs.code} > ${fnJo.code}:\n${fnOurs.stdout}`,
      );
    },
  });
}

Deno.test({
  name: "orphan cleanup: pending truncates (in-inode extent trees) as e2fsck does them",
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    await using tmp = await tempDir();
    const img = `${tmp.path}/pre.img`;
    const bs = 1024;
    await makeImage(img, {
      size: "32M",
      args: ["-b", "1024"],
      populate: async (m) => {
        await Deno.writeFile(`${m}/one`, new Uint8Array(600 * 1024).fill(3));
        // Two extents with a hole between them (a third would not leave e2fsck's punch room
        // to split in the inode: it then allocates a leaf block, which ext4ts does not).
        const f = await Deno.open(`${m}/four`, { create: true, write: true });
        for (let i = 0; i < 2; i++) {
          await f.seek(i * 40 * bs, Deno.SeekMode.Start);
          await f.write(new Uint8Array(20 * bs).fill(i + 1));
        }
        f.close();
        await Deno.writeFile(`${m}/gone`, new Uint8Array(30 * 1024).fill(9));
      },
    });
    const one = await inodeOf(img, "/one");
    const four = await inodeOf(img, "/four");
    const gone = await inodeOf(img, "/gone");
    // Sizes shrunk as a crash in the middle of two truncates leaves them.
    await dfs(img, `sif <${one}> size 10000`);
    await dfs(img, `sif <${four}> size ${45 * bs + 10}`);
    assert.match(await dfs(img, `stat <${four}>`), /\(0-19\):\d+-\d+, \(40-59\):\d+-\d+\n/);
    await dfs(img, "unlink /gone");
    await dfs(img, `sif <${gone}> links_count 0`);
    await dfs(img, `sif <${one}> dtime ${four}`);
    await dfs(img, `sif <${four}> dtime ${gone}`);
    await dfs(img, `sif <${gone}> dtime 0`);
    await dfs(img, `ssv last_orphan ${one}`);
    await dfs(img, "feature needs_recovery");
    const ours = `${tmp.path}/ours.img`;
    const jo = `${tmp.path}/jo.img`;
    await runOk("cp", [img, ours]);
    await runOk("cp", [img, jo]);
    const dev = openBlockDevice(ours, { readOnly: false });
    let r;
    try {
      r = await replayJournal(dev, { now: NOW });
    } finally {
      await dev.close();
    }
    assert.equal(r.prepared?.orphans?.skipped, undefined);
    assert.deepEqual(r.prepared?.orphans?.released, [one, four, gone]);
    await run("e2fsck", ["-y", "-E", "journal_only", jo], { env: E2ENV });
    // e2fsprogs' punch leaves stale bytes of an intermediate extent split in unused slots
    // of i_block, and zeroes part of a block it frees: compare those inodes by their fields.
    const freed = new Set(r.prepared?.orphans?.freed);
    const itable = new Set<number>();
    for (const ino of [one, four]) {
      const loc = await dfs(img, `imap <${ino}>`);
      itable.add(Number(/located at block (\d+)/.exec(loc)![1]));
    }
    const diff = (await changedBlocks(ours, jo, bs)).filter((b) =>
      b !== 1 && !freed.has(b) && !itable.has(b)
    );

    assert.deepEqual(diff, [], "blocks differing from e2fsck's orphan cleanup");
    for (const ino of [one, four, gone]) {
      const fields = async (f: string) =>
        (await dfs(f, `stat <${ino}>`)).split("\n").filter((l) => !/time|checksum/.test(l))
          .join("\n");
      assert.equal(await fields(ours), await fields(jo), `inode ${ino}`);
    }
    const fn = await run("e2fsck", ["-fn", ours], { env: E2ENV });
    assert.equal(fn.code, 0, fn.stdout);
  },
});

Deno.test({
  name: 'a writable open with recovery: "replay" processes the orphans once, in a transaction',
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    await using tmp = await tempDir();
    const img = `${tmp.path}/replay.img`;
    await makeImage(img, {
      size: "16M",
      populate: async (m) => {
        await Deno.writeFile(`${m}/a`, new Uint8Array(20000).fill(1));
        await Deno.writeFile(`${m}/b`, new Uint8Array(3000).fill(2));
        await Deno.symlink("x".repeat(200), `${m}/c`);
        await Deno.writeTextFile(`${m}/keep`, "kept\n");
      },
    });
    await orphan(img, ["/a", "/b", "/c"]);
    const notices: string[] = [];
    const fs = await Ext4.openDevice(openBlockDevice(img, { readOnly: false }), {
      readOnly: false,
      recovery: "replay",
      onNotice: (m) => notices.push(m),
    });
    try {
      // The replay leaves the orphans alone; the open's own processing frees all three.
      assert.match(notices[0], /replayed onto the device/);
      assert.deepEqual(notices.slice(1), ["orphan list processed: 3 inode(s) freed, 0 truncated"]);
      assert.equal(fs.superblock.lastOrphan, 0);
      assert.equal(new TextDecoder().decode(await fs.readFile("/keep")), "kept\n");
    } finally {
      await fs.close();
    }
    const fn = await run("e2fsck", ["-fn", img], { env: E2ENV });
    assert.equal(fn.code, 0, fn.stdout);
  },
});
