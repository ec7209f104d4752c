/**
 * `ext4ts batch` and the library's `Ext4.batch` under it: a script of edits applied with one
 * open and ONE commit (no device write before the end), all or nothing (a failing line leaves
 * the image byte for byte as it was), reads inside the batch seeing its earlier steps, and
 * script errors reported as `ext4ts: line N: …` with the line's exit code.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { parseBatch } from "../cli/commands/batch.ts";
import { run, runCli, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();
const KERNEL = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"];

testWith("Ext4.batch: one commit at the end, reads see the batch, a failure writes nothing", [
  ...IMAGE_TOOLS,
], async () => {
  await using dir = await tempDir();
  const image = await mkfsImage(dir.path, LAYOUTS[2]);
  const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(image)));
  const fs = await Ext4.openDevice(log, { readOnly: false });
  try {
    log.clear();
    await fs.batch(async () => {
      await fs.mkdir("/etc/app", { recursive: true });
      await fs.writeFile("/etc/app/conf", enc.encode("x = 1\n"));
      await fs.chmod("/etc/app/conf", 0o600);
      // Reads inside the batch see its own steps.
      assert.equal((await fs.stat("/etc/app/conf")).mode & 0o7777, 0o600);
      await fs.rename("/etc/app/conf", "/etc/app/conf.d");
      await fs.setXattr("/etc/app/conf.d", "user.k", enc.encode("v"));
      assert.deepEqual(await fs.listXattr("/etc/app/conf.d"), ["user.k"]);
      assert.equal(log.writeCount, 0, "nothing reaches the device before the batch ends");
    });
    assert.ok(log.writeCount > 0);
    // The journal-less in-place commit: data, then metadata, each followed by a flush.
    const flushes = log.flushBoundaries().length;
    assert.ok(flushes <= 3, `one commit, not one per step (${flushes} flushes)`);
    assert.equal((await fs.stat("/etc/app/conf.d")).mode & 0o7777, 0o600);

    // A failing step: nothing of the batch is written, memory as before.
    log.clear();
    await assert.rejects(
      fs.batch(async () => {
        await fs.mkdir("/new");
        await fs.chmod("/etc/app/conf.d", 0o644);
        await fs.remove("/does/not/exist");
      }),
      (e) => e instanceof Ext4Error && e.code === "NOT_FOUND",
    );
    assert.equal(log.writeCount, 0, "a failed batch writes nothing");
    await assert.rejects(fs.stat("/new"), (e) => e instanceof Ext4Error && e.code === "NOT_FOUND");
    assert.equal((await fs.stat("/etc/app/conf.d")).mode & 0o7777, 0o600);
    // The filesystem is still usable after the discarded batch.
    await fs.mkdir("/after");
  } finally {
    await fs.close();
  }
  const check = await fsck(dir.path, (log.inner as MemoryBlockDevice).bytes);
  assert.equal(check.code, 0, check.output);
});

Deno.test("batch scripts: comments, blank lines and quoting; errors name their line", () => {
  const steps = parseBatch(
    `# a comment\n\nmkdir -p "/srv/my www"\n  chmod 'u+x,g-w' /a /b   # trailing comment\n`,
  );
  assert.deepEqual(steps.map((s) => [s.line, s.edit.name, s.args]), [
    [3, "mkdir", [["/srv/my www"]]],
    [4, "chmod", ["u+x,g-w", ["/a", "/b"]]],
  ]);
  assert.equal(steps[0].opts.parents, true);
  const fails = (script: string, message: RegExp) =>
    assert.throws(() => parseBatch(script), (e: Error & { exitCode?: number }) => {
      assert.match(e.message, message);
      assert.equal(e.exitCode, 2);
      return true;
    });
  fails("mkdir /a\nfrobnicate /x\n", /^line 2: unknown command 'frobnicate'$/);
  fails("\n\nchmod 755\n", /^line 3: missing required argument 'paths'$/);
  fails("rm --bogus /x\n", /^line 1: unknown option '--bogus'$/);
  fails("touch 'open\n", /^line 1: unterminated single quote$/);
  fails("put /host /x\n", /^line 1: unknown command 'put'$/);
});

testWith(
  "ext4ts batch: a script applied in one go, seen by the kernel, e2fsck clean",
  KERNEL,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/b.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[2]));
    await Deno.writeTextFile(
      `${dir.path}/script`,
      `# provision
mkdir -p /etc/app /srv/data

touch -d 2024-05-01T00:00:00Z /etc/app/app.conf
chmod 600 /etc/app/app.conf
chmod u+x,g+r /etc/app/app.conf   # 600 -> 740
chown 1000:1000 /srv/data
setfattr -n user.note -v "two words" /etc/app/app.conf
ln -s app.conf /etc/app/link
ln /etc/app/app.conf /srv/data/hard
mv /srv/data/hard "/srv/data/hard link"
touch /tmp-file
rm /tmp-file
`,
    );
    const r = await runCli(["batch", "-f", `${dir.path}/script`, img]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);
    await withKernelMount(img, async (mnt) => {
      const py = `
import os, sys, json
m = sys.argv[1]
st = lambda p: os.lstat(os.path.join(m, p))
c = st("etc/app/app.conf")
print(json.dumps({
  "conf": [oct(c.st_mode), c.st_nlink, c.st_mtime_ns, os.getxattr(os.path.join(m, "etc/app/app.conf"), "user.note").decode()],
  "data": [st("srv/data").st_uid, st("srv/data").st_gid],
  "link": os.readlink(os.path.join(m, "etc/app/link")),
  "hard": st("srv/data/hard link").st_ino == c.st_ino,
  "tmp": os.path.exists(os.path.join(m, "tmp-file")),
}))`;
      const k = await run("python3", ["-c", py, mnt]);
      assert.equal(k.code, 0, k.stderr);
      assert.deepEqual(JSON.parse(k.stdout), {
        conf: ["0o100740", 2, 1714521600000000000, "two words"],
        data: [1000, 1000],
        link: "app.conf",
        hard: true,
        tmp: false,
      });
    }, { readOnly: true });
  },
);

testWith(
  "ext4ts batch: a failing line applies nothing; bad lines exit 2 before the image is opened",
  [...IMAGE_TOOLS, "sha256sum"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/b.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[2]));
    const sum = async () => (await run("sha256sum", [img])).stdout;
    const before = await sum();
    const cases: [string, number, string][] = [
      [
        "mkdir /a\nmkdir /b\nrm /nothing\n",
        1,
        "ext4ts: line 3: no such file or directory: /nothing\n",
      ],
      ["mkdir /a\n\nchmod 9 /a\n", 1, "ext4ts: line 3: invalid mode: '9'\n"],
      ["mkdir /a\nsetfattr -x user.none /a\n", 1, "ext4ts: line 2: /a: No such attribute\n"],
      ["mkdir /a\n# fine\nfrobnicate /a\n", 2, "ext4ts: line 3: unknown command 'frobnicate'\n"],
      ["mkdir /a\nchmod 755\n", 2, "ext4ts: line 2: missing required argument 'paths'\n"],
    ];
    for (const [script, code, stderr] of cases) {
      const r = await runCli(["batch", img], { stdin: enc.encode(script) });
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stderr, stderr);
      assert.equal(await sum(), before, `the image changed for ${JSON.stringify(script)}`);
    }
    // Script errors come before the image is opened: a missing image is not even noticed.
    const bad = await runCli(["batch", `${dir.path}/no.img`], { stdin: enc.encode("frob\n") });
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(bad.stderr, "ext4ts: line 1: unknown command 'frob'\n");
    // A missing script file is an I/O error, before the image is opened.
    const r = await runCli(["batch", "-f", `${dir.path}/none`, img]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /^ext4ts: [^\n]*none[^\n]*\n$/);
  },
);
