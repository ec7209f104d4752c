/**
 * Never write a filesystem that is in use: the writers (put, mkdir, rm, mv, journal replay)
 * and the library's writable `Ext4.open` refuse an image behind a mounted or held loop
 * device, an image another ext4ts process writes or mounts, with exit 8 / BUSY before the
 * first write (the image's bytes are compared); and the writers' `--offset` takes the
 * readers' syntax.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Ext4, openBlockDevice } from "../mod.ts";
import { Ext4Error } from "../lib/errors.ts";
import { sha256 } from "../lib/ondisk/sha256.ts";
import { openLocked } from "../ffi/file_lock.ts";
import { cstr, libc, O } from "../ffi/libc.ts";
import {
  makeImage,
  run,
  runCli,
  type RunResult,
  tempDir,
  testWith,
  withKernelMount,
} from "./helpers.ts";
import {
  detachLoop,
  detachLoopsOf,
  forceCleanup,
  FUSE_NEEDS,
  isMounted,
  loopsOf,
  losetup,
  umount,
} from "./fuse_test_util.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "losetup", "mkfs.ext4", "e2fsck"];

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

async function imageHash(path: string): Promise<string> {
  return hex(sha256(await Deno.readFile(path)));
}

/** An image with a file, a directory and a journal, and a host file to `put`. */
async function fixture(dir: string): Promise<{ img: string; host: string }> {
  const img = await makeImage(`${dir}/disk.img`, {
    size: "32M",
    populate: async (m) => {
      await Deno.writeTextFile(`${m}/a`, "a\n");
      await Deno.mkdir(`${m}/d`);
    },
  });
  const host = `${dir}/host.txt`;
  await Deno.writeTextFile(host, "from the host\n");
  return { img, host };
}

/** Every write command, each changing the filesystem when it runs. */
function writers(img: string, host: string, extra: string[] = []): string[][] {
  return [
    ["put", ...extra, img, host, "/put.txt"],
    ["mkdir", ...extra, img, "/made"],
    ["rm", ...extra, img, "/a"],
    ["mv", ...extra, img, "/d", "/moved"],
  ];
}

function assertOneLine(r: RunResult, code: number, pattern: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `${what}: one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0], pattern, what);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

async function fsckClean(img: string): Promise<void> {
  const r = await run("e2fsck", ["-fn", img]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
}

testWith(
  "a kernel loop mount of the image: every writer exits 8 naming it and writes nothing; after umount they work",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img, host } = await fixture(dir.path);
    const commands = [...writers(img, host), ["journal", "replay", img]];
    // Read-only, so the kernel itself writes nothing and the bytes can be compared.
    await withKernelMount(img, async (mnt) => {
      const before = await imageHash(img);
      const [loop] = await loopsOf(img);
      assert.ok(loop, "the mount attached a loop device");
      const want = new RegExp(
        `^ext4ts: ${esc(img)} is in use: backing ${esc(loop)}, mounted on ${esc(mnt)}$`,
      );
      for (const args of commands) {
        assertOneLine(await runCli(args), 8, want, args.join(" "));
        assert.equal(await imageHash(img), before, `${args[0]}: the image is unchanged`);
      }
      // A dry run writes nothing: it may look.
      assert.equal((await runCli(["journal", "replay", "--dry-run", img])).code, 0);
    }, { readOnly: true });
    // Read-write too, the mode does not matter.
    await withKernelMount(img, async (mnt) => {
      assertOneLine(await runCli(writers(img, host)[1]), 8, new RegExp(esc(mnt)), "rw mount");
    });
    assert.deepEqual(await loopsOf(img), []);
    for (const args of commands) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(" ")} after umount: ${r.stderr}`);
    }
    await fsckClean(img);
    const ls = await runCli(["ls", img, "/"]);
    assert.match(ls.stdout, /put\.txt/);
    assert.match(ls.stdout, /made/);
    assert.match(ls.stdout, /moved/);
    assert.doesNotMatch(ls.stdout, /^a$/m);
  },
);

testWith(
  "the library: Ext4.open(image, { readOnly: false }) rejects with BUSY while the image is mounted",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img } = await fixture(dir.path);
    await withKernelMount(img, async (mnt) => {
      const before = await imageHash(img);
      await assert.rejects(
        () => Ext4.open(img, { readOnly: false }),
        (e) =>
          e instanceof Ext4Error && e.code === "BUSY" &&
          e.message.includes(`${img} is in use: backing /dev/loop`) &&
          e.message.includes(`mounted on ${mnt}`),
      );
      // Another name for the same file (the loop device is found by inode, not by path).
      const link = `${dir.path}/other-name.img`;
      await Deno.link(img, link);
      await assert.rejects(
        () => Ext4.open(link, { readOnly: false }),
        (e) =>
          e instanceof Ext4Error && e.code === "BUSY" && e.message.includes(`${link} is in use`),
      );
      await Deno.remove(link);
      assert.equal(await imageHash(img), before);
      // Reading is fine.
      const ro = await Ext4.open(img);
      assert.equal(new TextDecoder().decode(await ro.readFile("/a")), "a\n");
      await ro.close();
    }, { readOnly: true });
    const fs = await Ext4.open(img, { readOnly: false });
    await fs.mkdir("/after");
    await fs.close();
    await fsckClean(img);
  },
);

testWith(
  "a loop device held open exclusively (not mounted) is refused; attached and idle, writing is allowed",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img, host } = await fixture(dir.path);
    const loop = await losetup(img);
    try {
      const fd = libc().open(cstr(loop), O.RDONLY | O.EXCL | O.CLOEXEC, 0);
      assert.ok(fd >= 0, "the test holds the loop device");
      try {
        const before = await imageHash(img);
        const want = new RegExp(
          `^ext4ts: ${esc(img)} is in use: backing ${esc(loop)}, held open exclusively$`,
        );
        for (const args of [...writers(img, host), ["journal", "replay", img]]) {
          assertOneLine(await runCli(args), 8, want, args.join(" "));
        }
        await assert.rejects(
          () => Ext4.open(img, { readOnly: false }),
          (e) => e instanceof Ext4Error && e.code === "BUSY",
        );
        assert.equal(await imageHash(img), before, "the image is unchanged");
      } finally {
        libc().close(fd);
      }
      // Attached but neither mounted nor held: as for mke2fs and e2fsck, nothing uses the
      // filesystem, so writing it is allowed.
      const r = await runCli(["mkdir", img, "/idle"]);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      detachLoop(loop, img);
    }
    await fsckClean(img);
  },
);

testWith(
  "two writers: while the test process holds a writable Ext4, `ext4ts mkdir` and a second open are refused",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img } = await fixture(dir.path);
    const fs = await Ext4.open(img, { readOnly: false });
    try {
      const before = await imageHash(img);
      assertOneLine(
        await runCli(["mkdir", img, "/second"]),
        8,
        new RegExp(
          `^ext4ts: ${esc(img)} is in use: locked for writing by process ${Deno.pid} \\(deno\\)$`,
        ),
        "mkdir",
      );
      assert.equal(await imageHash(img), before, "the image is unchanged");
      // The lock belongs to the open file: a second writable open in this process is refused.
      await assert.rejects(
        () => Ext4.open(img, { readOnly: false }),
        (e) => e instanceof Ext4Error && e.code === "BUSY" && /this process/.test(e.message),
      );
      // So does a plain read-write openBlockDevice (the default claim); opting out opens it.
      assert.throws(
        () => openBlockDevice(img, { readOnly: false }),
        (e) => e instanceof Ext4Error && e.code === "BUSY",
      );
      await openBlockDevice(img, { readOnly: false, exclusive: false }).close();
      await fs.mkdir("/first");
    } finally {
      await fs.close();
    }
    // Closing released the lock.
    const r = await runCli(["mkdir", img, "/second"]);
    assert.equal(r.code, 0, r.stderr);
    await fsckClean(img);
  },
);

testWith(
  "a shared lock on the image (what an ext4ts mount holds while serving it) refuses writers",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const { img, host } = await fixture(dir.path);
    const fd = openLocked(img, "shared");
    try {
      const before = await imageHash(img);
      const want = new RegExp(
        `^ext4ts: ${esc(img)} is in use: locked for reading by process ${Deno.pid} \\(deno\\)$`,
      );
      for (const args of [...writers(img, host), ["journal", "replay", img]]) {
        assertOneLine(await runCli(args), 8, want, args.join(" "));
      }
      assert.equal(await imageHash(img), before, "the image is unchanged");
    } finally {
      libc().close(fd);
    }
    const r = await runCli(["mkdir", img, "/after"]);
    assert.equal(r.code, 0, r.stderr);
  },
);

for (const noblkdev of [false, true]) {
  testWith(
    `an ext4ts mount of the image${
      noblkdev ? " (noblkdev)" : ""
    }: writers are refused until ext4ts umount`,
    [...NEEDS, ...FUSE_NEEDS],
    async () => {
      await using dir = await tempDir();
      const { img, host } = await fixture(dir.path);
      const mnt = `${dir.path}/mnt`;
      await Deno.mkdir(mnt);
      try {
        const m = await runCli(["mount", img, mnt, ...(noblkdev ? ["-o", "noblkdev"] : [])]);
        assert.equal(m.code, 0, m.stderr);
        const before = await imageHash(img);
        const want = new RegExp(
          `^ext4ts: ${esc(img)} is in use: (backing /dev/loop\\d+, )?mounted on ${esc(mnt)}$`,
        );
        for (const args of [...writers(img, host), ["journal", "replay", img]]) {
          assertOneLine(await runCli(args), 8, want, args.join(" "));
        }
        await assert.rejects(
          () => Ext4.open(img, { readOnly: false }),
          (e) => e instanceof Ext4Error && e.code === "BUSY",
        );
        assert.equal(await imageHash(img), before, "the image is unchanged");
        assert.equal(await Deno.readTextFile(`${mnt}/a`), "a\n", "the mount still serves");
        const u = await umount(mnt);
        assert.equal(u.code, 0, u.stderr);
        assert.equal(isMounted(mnt), false);
        const r = await runCli(["mkdir", img, "/after"]);
        assert.equal(r.code, 0, r.stderr);
      } finally {
        await forceCleanup(mnt);
        await detachLoopsOf(img);
      }
      await fsckClean(img);
    },
  );
}

testWith(
  "an image being written cannot be mounted by ext4ts (the mount's shared lock is refused)",
  [...NEEDS, ...FUSE_NEEDS],
  async () => {
    await using dir = await tempDir();
    const { img } = await fixture(dir.path);
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const fs = await Ext4.open(img, { readOnly: false });
    try {
      const m = await runCli(["mount", img, mnt]);
      assertOneLine(m, 8, /is in use: locked for writing by process \d+ \(deno\)$/, "mount");
      assert.equal(isMounted(mnt), false);
      assert.deepEqual(await loopsOf(img), [], "no loop device was attached");
    } finally {
      await fs.close();
      await forceCleanup(mnt);
      await detachLoopsOf(img);
    }
  },
);

testWith(
  "writers' --offset takes the readers' syntax (1M, 2048s, bytes); a bad one is a usage error",
  ["mkfs.ext4", "e2fsck"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/disk.img`;
    // A partitioned-style image: 1 MiB of something else, then the filesystem.
    const lead = new Uint8Array(1 << 20).fill(0x50);
    await Deno.writeFile(img, lead);
    await Deno.truncate(img, (1 << 20) + (32 << 20));
    const mk = await run("mkfs.ext4", ["-q", "-F", "-E", "offset=1048576", img, "32M"], {
      env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
    });
    assert.equal(mk.code, 0, mk.stderr);
    const host = `${dir.path}/host.txt`;
    await Deno.writeTextFile(host, "from the host\n");
    const steps: string[][] = [
      ["mkdir", "--offset", "1M", img, "/d", "/e"],
      ["put", "--offset", "2048s", img, host, "/d/f"],
      ["mv", "--offset", "1048576", img, "/d/f", "/e/g"],
      ["rm", "--offset", "1MiB", img, "/d"],
    ];
    for (const args of steps) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    }
    const cat = await runCli(["cat", "--offset", "1M", img, "/e/g"]);
    assert.equal(cat.stdout, "from the host\n");
    const check = await run("e2fsck", ["-fn", `${img}?offset=1048576`]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const head = (await Deno.readFile(img)).subarray(0, lead.length);
    assert.deepEqual(head, lead, "nothing before the offset was touched");
    const before = await imageHash(img);
    for (const args of writers(img, host, ["--offset", "1Q"])) {
      assertOneLine(await runCli(args), 2, /invalid offset '1Q'/, args.join(" "));
    }
    assert.equal(await imageHash(img), before);
  },
);
