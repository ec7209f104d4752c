/**
 * `ext4ts mount` of real ext2/3/4 images: the tree listing taken through the mount point
 * with ordinary tools (tests/corpus/tools/tree_listing.py) must equal the kernel's.
 *
 * The adapter itself is also tested here against a small fake reader.
 */

import assert from "node:assert/strict";
import { READER_MATRIX } from "./reader_matrix.ts";
import {
  ext4Backend,
  type Ext4DirEntryLike,
  type Ext4Like,
  Ext4Operations,
  type Ext4StatLike,
} from "../ffi/fuse/ext4_ops.ts";
import type { RequestContext } from "../ffi/fuse/ops.ts";
import { Ext4Error } from "../lib/errors.ts";
import {
  IN_CI,
  makeImage,
  missing,
  run,
  runCli,
  runOk,
  testWith,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";
import { defaultSettings } from "../ffi/fuse/serve.ts";
import { findMount } from "../ffi/fuse/mountinfo.ts";
import {
  detachLoop,
  detachLoopsOf,
  forceCleanup,
  FUSE_NEEDS,
  isMounted,
  loopsOf,
  losetup,
  withoutProtectionWarning,
} from "./fuse_test_util.ts";

const NEEDS = [...FUSE_NEEDS, "mkfs.ext4", "python3", "kernel-ext4", "debugfs"];

function ext4Test(name: string, fn: () => Promise<void>): void {
  const lacking = missing(NEEDS);
  try {
    Deno.statSync(TREE_LISTING);
  } catch {
    lacking.push(TREE_LISTING);
  }
  Deno.test({
    name,
    ignore: lacking.length > 0 && !IN_CI,
    fn: lacking.length > 0
      ? () => {
        throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      }
      : fn,
  });
}

/** Fills a filesystem with every kind of object the listing compares. */
async function populate(m: string): Promise<void> {
  const sh = (s: string) => runOk("sh", ["-c", s]);
  await Deno.writeTextFile(`${m}/hello.txt`, "hello, world\n");
  await Deno.writeFile(`${m}/empty`, new Uint8Array(0));
  const big = new Uint8Array(3 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 12)) & 0xff;
  await Deno.writeFile(`${m}/big.bin`, big);
  await sh(`dd if=/dev/urandom of=${m}/sparse bs=4096 count=3 seek=500 2>/dev/null`);
  await sh(`truncate -s 10M ${m}/sparse`);
  await Deno.symlink("hello.txt", `${m}/fast-link`);
  await Deno.symlink("d/".repeat(40) + "target", `${m}/slow-link`);
  await Deno.link(`${m}/hello.txt`, `${m}/hard-link`);
  await Deno.mkdir(`${m}/many`);
  for (let i = 0; i < 3000; i++) {
    await Deno.writeTextFile(`${m}/many/entry-${i}-${"x".repeat(i % 40)}`, `${i}\n`);
  }
  await Deno.mkdir(`${m}/deep/a/b/c/d/e/f`, { recursive: true });
  await Deno.writeTextFile(`${m}/deep/a/b/c/d/e/f/leaf`, "leaf\n");
  await Deno.writeTextFile(`${m}/ünïcødé name ✓`, "unicode\n");
  await sh(`mknod ${m}/chr c 1 3 && mknod ${m}/blk b 7 200 && mkfifo ${m}/fifo`);
  await sh(`chmod 4755 ${m}/hello.txt && chmod 1777 ${m}/many && chown 1234:5678 ${m}/empty`);
  await sh(`setfattr -n user.color -v blue ${m}/hello.txt 2>/dev/null || true`);
  await sh(`setfattr -n user.big -v 0x${"ab".repeat(2000)} ${m}/big.bin 2>/dev/null || true`);
  await sh(`setfacl -m u:1000:rx ${m}/deep 2>/dev/null || true`);
  await sh(`touch -d '1960-01-01 00:00:00.5' ${m}/empty`);
}

async function kernelListing(img: string): Promise<string> {
  return await withKernelMount(img, (m) => runOk("python3", [TREE_LISTING, m]), {
    readOnly: true,
    mountOptions: "noload",
  });
}

async function ext4tsListing(img: string, options: string[] = []): Promise<string> {
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
  try {
    const r = await runCli(["mount", img, mnt, ...options]);
    assert.equal(r.code, 0, `ext4ts mount: ${r.stderr}`);
    const listing = await runOk("python3", [TREE_LISTING, mnt]);
    const u = await runCli(["umount", mnt]);
    assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);
    assert.deepEqual(await loopsOf(img), []);
    return listing;
  } finally {
    if (isMounted(mnt)) await forceCleanup(mnt);
    await detachLoopsOf(img);
    await Deno.remove(mnt).catch(() => {});
  }
}

const POPULATE_TREE = new URL("./fixtures/populate_tree.py", import.meta.url).pathname;

// The read-path matrix of tests/reader_oracle_test.ts, each image listed through the mount.
for (const v of READER_MATRIX) {
  ext4Test(`ext4ts mount (${v.name}): tree listing equals the kernel's`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
    try {
      const img = await makeImage(`${dir}/fs.img`, {
        size: v.size ?? "96M",
        mkfs: v.mkfs,
        args: v.args,
        populate: (m) => runOk("python3", [POPULATE_TREE, m, ...(v.populate ?? [])]).then(() => {}),
      });
      const expected = await kernelListing(img);
      assert.ok(expected.split("\n").length > 100, "the kernel listing is suspiciously short");
      const ours = await ext4tsListing(img);
      if (ours !== expected) assert.fail(firstDifference(expected, ours));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

ext4Test(
  "ext4ts mount: devices, fifos, ACLs, pre-1970 times, unicode names list as the kernel's",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
    try {
      const img = await makeImage(`${dir}/fs.img`, { size: "64M", populate });
      const expected = await kernelListing(img);
      assert.ok(expected.split("\n").length > 3000);
      const ours = await ext4tsListing(img);
      if (ours !== expected) assert.fail(firstDifference(expected, ours));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

function firstDifference(a: string, b: string): string {
  const la = a.split("\n");
  const lb = b.split("\n");
  const out: string[] = [];
  for (let i = 0; i < Math.max(la.length, lb.length) && out.length < 10; i++) {
    if (la[i] !== lb[i]) out.push(`line ${i + 1}:\n  kernel: ${la[i]}\n  ext4ts: ${lb[i]}`);
  }
  return out.join("\n");
}

/** Under argv[1]: objects whose names are not valid UTF-8. */
const RAW_NAMES = String.raw`
import os, sys
m = os.fsencode(sys.argv[1])
os.mkdir(m + b"/raw\xfe")
for p in [b"/bad\xff", b"/raw\xfe/half\xe2\x82", b"/raw\xfe/ok"]:
    with open(m + p, "wb") as f:
        f.write(p)
`;

ext4Test(
  "ext4ts mount: encrypted trees without the key and names that are not UTF-8 list as the kernel's",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
    const mnt = `${dir}/mnt`;
    await Deno.mkdir(mnt);
    try {
      const img = await makeImage(`${dir}/fs.img`, {
        size: "32M",
        args: ["-O", "encrypt"],
        populate: async (m) => {
          await runOk("python3", [
            new URL("./fixtures/populate_encrypted.py", import.meta.url).pathname,
            m,
          ]);
          await runOk("python3", ["-c", RAW_NAMES, m]);
        },
      });
      const listing = async (m: string) => {
        const r = await run("python3", [TREE_LISTING, m]);
        assert.equal(r.code, 0, r.stderr);
        return r.stdoutBytes;
      };
      const expected = await withKernelMount(img, listing, { readOnly: true });
      assert.ok(new TextDecoder().decode(expected).includes("\tERR:126\t"));
      assert.ok(expected.includes(0xff));
      const r = await runCli(["mount", img, mnt]);
      assert.equal(r.code, 0, `ext4ts mount: ${r.stderr}`);
      const ours = await listing(mnt);
      assert.equal((await runCli(["umount", mnt])).code, 0);
      assert.equal(new TextDecoder().decode(ours), new TextDecoder().decode(expected));
      assert.deepEqual(ours, expected);
    } finally {
      await forceCleanup(mnt);
      await detachLoopsOf(`${dir}/fs.img`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

ext4Test(
  "ext4ts mount: a journal needing recovery is replayed in memory; norecovery shows it raw",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
    const mnt = `${dir}/mnt`;
    await Deno.mkdir(mnt);
    try {
      const img = await makeImage(`${dir}/fs.img`, {
        populate: (m) => Deno.writeTextFile(`${m}/a`, "a\n"),
      });
      await runOk("debugfs", ["-w", "-R", "feature needs_recovery", img]);
      const before = await Deno.readFile(img);
      for (
        const [options, message] of [
          [[], /replayed in memory, nothing written/],
          [["-o", "norecovery"], /without journal recovery/],
        ] as const
      ) {
        const log = `${dir}/log`;
        const ok = await runCli(["mount", img, mnt, ...options, "--log", log]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(await Deno.readTextFile(`${mnt}/a`), "a\n");
        assert.match(await Deno.readTextFile(log), message);
        assert.equal((await runCli(["umount", mnt])).code, 0);
        assert.equal(isMounted(mnt), false);
        assert.deepEqual(await loopsOf(img), [], "no loop device left behind");
      }
      assert.deepEqual(await Deno.readFile(img), before, "a read-only mount writes nothing");
    } finally {
      await forceCleanup(mnt);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

ext4Test(
  "ext4ts mount: not an ext4 image (exit 3); a read-only device: ro, rw → ro with a warning",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-ext4-" });
    const mnt = `${dir}/mnt`;
    await Deno.mkdir(mnt);
    try {
      const junk = `${dir}/junk.img`;
      await Deno.writeFile(junk, new Uint8Array(4 << 20));
      const r = await runCli(["mount", junk, mnt]);
      assert.equal(r.code, 3, r.stderr);
      assert.deepEqual(await loopsOf(junk), []);
      const img = await makeImage(`${dir}/fs.img`);
      const dev = await losetup(img, ["-r"]);
      try {
        const m = await runCli(["mount", dev, mnt]);
        assert.equal(m.code, 0, m.stderr);
        // (Where PR_SET_IO_FLUSHER is not granted, the daemon's one line about it shows too.)
        assert.equal(
          withoutProtectionWarning(m.stderr),
          "",
          "a read-only mount of a read-only device: no warning",
        );
        assert.equal((await runCli(["umount", mnt])).code, 0);
        // Asked read-write: mounted read-only with mount(8)'s warning, not refused.
        const rw = await runCli(["mount", dev, mnt, "-o", "rw"]);
        assert.equal(rw.code, 0, rw.stderr);
        assert.match(rw.stderr, /WARNING: source write-protected, mounted read-only\./);
        assert.match(findMount(mnt)!.options, /^ro,/);
        assert.equal((await runCli(["umount", mnt])).code, 0);
        const excl = await run("python3", [
          "-c",
          `import os; os.close(os.open("${dev}", os.O_RDONLY | os.O_EXCL))`,
        ]);
        assert.equal(excl.code, 0, "device free after umount");
      } finally {
        detachLoop(dev, img);
      }
    } finally {
      await forceCleanup(mnt);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  "ext4 backend: the post-mount re-check (non-exclusive re-open) catches a changed device",
  ["root", "loop", "losetup", "mkfs.ext4", "debugfs"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-verify-" });
    const dev = await losetup(await mkfsSmall(`${dir}/a.img`));
    try {
      await mkfsSmall(`${dir}/b.img`);
      const opened = async () => {
        const fs = await ext4Backend.open(dev, defaultSettings(), () => {});
        await fs.verify!(dev); // unchanged: passes
        return fs;
      };
      const changes: [string, RegExp, () => Promise<unknown>][] = [
        ["state", /state 1 → 0/, () => runOk("debugfs", ["-w", "-R", "ssv state 0", dev])],
        ["features", /roCompat/, () => runOk("debugfs", ["-w", "-R", "feature ^dir_nlink", dev])],
        // Another filesystem swapped in between opening and mounting: the UUID differs.
        [
          "content",
          /uuid/,
          () => runOk("dd", [`if=${dir}/b.img`, `of=${dev}`, "bs=1M", "conv=fsync"]),
        ],
      ];
      for (const [what, message, change] of changes) {
        const fs = await opened();
        try {
          await change();
          await assert.rejects(fs.verify!(dev), (e: Ext4Error) => {
            assert.match(e.message, /changed while mounting/, what);
            assert.match(e.message, message, what);
            return true;
          });
        } finally {
          await fs.ops.destroy?.();
        }
      }
    } finally {
      detachLoop(dev, `${dir}/a.img`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  "ext4ts mount -o uid=,gid=,errors=: root's files shown as the mapped owner, others unchanged",
  [...FUSE_NEEDS, "mkfs.ext4"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-uid-" });
    const mnt = `${dir}/mnt`;
    try {
      await Deno.mkdir(`${dir}/src`);
      await Deno.writeTextFile(`${dir}/src/root-file`, "r\n");
      await Deno.writeTextFile(`${dir}/src/user-file`, "u\n");
      await Deno.chown(`${dir}/src/user-file`, 1234, 5678);
      await runOk("mkfs.ext4", ["-q", "-F", "-d", `${dir}/src`, `${dir}/fs.img`, "8M"]);
      await Deno.mkdir(mnt);
      const ids = async () =>
        (await runOk("stat", ["-c", "%n %u:%g", `${mnt}/root-file`, `${mnt}/user-file`]))
          .replaceAll(`${mnt}/`, "");
      let r = await runCli(["mount", `${dir}/fs.img`, mnt]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await ids(), "root-file 0:0\nuser-file 1234:5678\n");
      assert.equal((await runCli(["umount", mnt])).code, 0);
      r = await runCli([
        "mount",
        `${dir}/fs.img`,
        mnt,
        "-o",
        "ro,uid=1000,gid=100,errors=remount-ro",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await ids(), "root-file 1000:100\nuser-file 1234:5678\n");
      assert.equal((await runCli(["umount", mnt])).code, 0);
    } finally {
      await forceCleanup(mnt);
      await detachLoopsOf(`${dir}/fs.img`);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  "ext4ts mount: a device that disappears under the mount gives EIO, no hang; umount recovers",
  [...FUSE_NEEDS, "mkfs.ext4", "timeout"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-gone-" });
    const mnt = `${dir}/mnt`;
    const img = `${dir}/fs.img`;
    let dev = "";
    try {
      await Deno.mkdir(`${dir}/src`);
      const data = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
      for (const f of ["a", "b"]) await Deno.writeFile(`${dir}/src/${f}`, data);
      await runOk("mkfs.ext4", ["-q", "-F", "-d", `${dir}/src`, img, "16M"]);
      await Deno.mkdir(mnt);
      dev = await losetup(img);
      const m = await runCli(["mount", dev, mnt]);
      assert.equal(m.code, 0, m.stderr);
      assert.deepEqual(await Deno.readFile(`${mnt}/a`), data);
      // Detached (deferred while mounted) and its backing file cut to 1 MiB: the blocks of
      // `b` are gone from under the daemon.
      assert.ok(detachLoop(dev, img));
      await Deno.truncate(img, 1 << 20);
      await runOk("losetup", ["-c", dev]);
      const r = await run("timeout", ["20", "cat", `${mnt}/b`]);
      assert.notEqual(r.code, 124, "reading the vanished data hung");
      assert.match(r.stderr, /Input\/output error/);
      assert.deepEqual(await Deno.readFile(`${mnt}/a`), data, "cached data still served");
      const u = await runCli(["umount", mnt, "--timeout", "20"]);
      assert.equal(u.code, 0, u.stderr);
      assert.equal(isMounted(mnt), false);
      assert.deepEqual(await loopsOf(img), [], "the deferred detach happened on release");
    } finally {
      await forceCleanup(mnt);
      await detachLoopsOf(img);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** Prints SEEK_DATA/SEEK_HOLE answers for argv[1] at a range of offsets. */
const SEEKS = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for off in range(0, 6 << 20, 256 << 10):
    out = []
    for whence in (os.SEEK_DATA, os.SEEK_HOLE):
        try:
            out.append(str(os.lseek(fd, off, whence)))
        except OSError as e:
            out.append("E%d" % e.errno)
    print(off, *out)
`;

testWith(
  "ext4ts mount: SEEK_DATA/SEEK_HOLE on a sparse ext4 file answer as the kernel's",
  [...FUSE_NEEDS, "mkfs.ext4", "python3", "kernel-ext4"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-seek-" });
    const mnt = `${dir}/mnt`;
    const img = `${dir}/fs.img`;
    try {
      await Deno.mkdir(mnt);
      await runOk("mkfs.ext4", ["-q", "-F", img, "32M"]);
      const expected = await withKernelMount(img, async (m) => {
        // Data at 1 MiB (64 KiB) and at 3 MiB (1 MiB), a hole up to 5 MiB + 7.
        await runOk("sh", [
          "-c",
          `dd if=/dev/urandom of=${m}/sparse bs=64k count=1 seek=16 2>/dev/null &&
           dd if=/dev/urandom of=${m}/sparse bs=1M count=1 seek=3 conv=notrunc 2>/dev/null &&
           truncate -s $((5 * 1048576 + 7)) ${m}/sparse`,
        ]);
        return "";
      }).then(() =>
        withKernelMount(img, (m) => runOk("python3", ["-c", SEEKS, `${m}/sparse`]), {
          readOnly: true,
        })
      );
      assert.match(expected, /^1048576 1048576 1114112$/m, "the kernel sees the layout");
      const r = await runCli(["mount", img, mnt]);
      assert.equal(r.code, 0, r.stderr);
      const ours = await runOk("python3", ["-c", SEEKS, `${mnt}/sparse`]);
      assert.equal((await runCli(["umount", mnt])).code, 0);
      assert.equal(ours, expected);
    } finally {
      await forceCleanup(mnt);
      await detachLoopsOf(img);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

async function mkfsSmall(img: string): Promise<string> {
  await runOk("mkfs.ext4", ["-q", "-F", img, "8M"]);
  return img;
}

// ---- the adapter against a fake reader (runs without the reader) ----

const ctx: RequestContext = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };
const enc = new TextEncoder();

function stat(ino: number, type: Ext4StatLike["type"], mode: number, size = 0): Ext4StatLike {
  const t = { sec: -5, nsec: 1 };
  return {
    ino,
    type,
    mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    size,
    blocks: 8,
    rdev: type === "chardev" ? { major: 1, minor: 3 } : { major: 0, minor: 0 },
    atime: t,
    mtime: t,
    ctime: t,
    generation: 77,
  };
}

class FakeReader implements Ext4Like {
  closed = false;
  readonly stats = new Map<number, Ext4StatLike>([
    [2, stat(2, "dir", 0o40755)],
    [12, stat(12, "file", 0o100644, 5)],
    [13, stat(13, "chardev", 0o20644)],
  ]);
  getattr(ino: number): Promise<Ext4StatLike> {
    const s = this.stats.get(ino);
    if (!s) return Promise.reject(new Ext4Error("NOT_FOUND", `inode ${ino}`));
    return Promise.resolve(s);
  }
  entryStat(ino: number): Promise<Ext4StatLike> {
    return this.getattr(ino);
  }
  lookupIno(parent: number, name: string | Uint8Array): Promise<number | null> {
    const n = typeof name === "string" ? name : new TextDecoder().decode(name);
    if (parent === 2 && n === "f") return Promise.resolve(12);
    if (parent === 2 && n === "null") return Promise.resolve(13);
    return Promise.resolve(null);
  }
  async *readDirIno(ino: number): AsyncIterable<Ext4DirEntryLike> {
    yield* this.readDirFrom(ino, 0);
  }
  async *readDirFrom(_ino: number, cookie: number): AsyncIterable<Ext4DirEntryLike> {
    const all: Ext4DirEntryLike[] = [
      { name: ".", nameBytes: enc.encode("."), ino: 2, type: "dir", offset: 10 },
      { name: "..", nameBytes: enc.encode(".."), ino: 2, type: "dir", offset: 20 },
      { name: "f", nameBytes: enc.encode("f"), ino: 12, type: "file", offset: 30 },
      { name: "null", nameBytes: enc.encode("null"), ino: 13, type: "chardev", offset: 40 },
    ];
    for (const d of all) if (d.offset > cookie) yield d;
  }
  read(_ino: number, offset: number, length: number): Promise<Uint8Array> {
    return Promise.resolve(enc.encode("hello").subarray(offset, offset + length));
  }
  readLinkIno(): Promise<Uint8Array> {
    return Promise.resolve(enc.encode("t"));
  }
  listXattrIno(): Promise<string[]> {
    return Promise.resolve(["user.a"]);
  }
  findXattrIno(_ino: number, name: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(name === "user.a" ? enc.encode("1") : undefined);
  }
  seekData(_ino: number, offset: number): Promise<number> {
    return Promise.resolve(offset);
  }
  statfs() {
    return {
      blockSize: 4096,
      blocks: 100,
      freeBlocks: 50,
      availBlocks: 40,
      files: 64,
      freeFiles: 10,
      nameMax: 255,
    };
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

Deno.test("ext4 adapter: node ids, attributes, uid mapping, errors", async () => {
  const fake = new FakeReader();
  let closed = 0;
  const ops = new Ext4Operations(fake, {
    blockSize: 4096,
    uid: 1000,
    onClose: () => void closed++,
  });
  const root = await ops.getattr(ctx, 1);
  assert.equal(root.attr.ino, 2, "st_ino of the root is inode 2");
  assert.equal(root.attr.mode, 0o40755);
  assert.equal(root.timeout, 300);
  const f = await ops.lookup(ctx, 1, enc.encode("f"));
  assert.equal(f.nodeid, 12);
  assert.equal(f.generation, 77);
  assert.equal(f.attr.uid, 1000, "root-owned files shown as the mapped uid");
  assert.equal(f.attr.gid, 0, "gid not mapped without gid=");
  assert.equal(f.attr.atime.sec, -5);
  const dev = await ops.lookup(ctx, 1, enc.encode("null"));
  assert.equal(dev.attr.rdev, 0x103);
  await assert.rejects(ops.lookup(ctx, 1, enc.encode("nope")), (e: Ext4Error) => e.errno === 2);
  await assert.rejects(ops.open(ctx, 12, 2 /* O_RDWR */), (e: { errno: number }) => e.errno === 30);
  await assert.rejects(
    ops.open(ctx, 12, 0o1000 /* O_TRUNC */),
    (e: { errno: number }) => e.errno === 30,
  );
  assert.deepEqual(await ops.open(ctx, 12, 0), { fh: 0, keepCache: true });
  // Read-only: the kernel may keep pages and directory listings across opens.
  assert.deepEqual(await ops.opendir(ctx, 1, 0), { fh: 0, keepCache: true, cacheDir: true });
  assert.equal(f.entryTimeout, 300);
  assert.equal(f.attrTimeout, 300);
  assert.equal(new TextDecoder().decode(await ops.read(ctx, 12, 0, 1, 3)), "ell");
  assert.deepEqual(await ops.getxattr(ctx, 12, enc.encode("user.a")), enc.encode("1"));
  await assert.rejects(
    ops.getxattr(ctx, 12, enc.encode("user.b")),
    (e: { errno: number }) => e.errno === 61,
  );
  assert.deepEqual(await ops.listxattr(ctx, 12), [enc.encode("user.a")]);
  await assert.rejects(ops.access(ctx, 12, 2), (e: { errno: number }) => e.errno === 30);
  await ops.access(ctx, 12, 4);
  const sfs = await ops.statfs();
  assert.equal(sfs.bavail, 40);
  assert.equal(sfs.namelen, 255);
  await ops.destroy();
  await ops.destroy();
  assert.equal(fake.closed, true);
  assert.equal(closed, 1, "closed exactly once");
});

Deno.test("ext4 adapter: readdir resumes after a cookie; readdirplus carries entries", async () => {
  const ops = new Ext4Operations(new FakeReader(), { blockSize: 4096 });
  const names: string[] = [];
  for await (const d of ops.readdir(ctx, 1, 0, 0)) names.push(new TextDecoder().decode(d.name));
  assert.deepEqual(names, [".", "..", "f", "null"]);
  const after: number[] = [];
  for await (const d of ops.readdir(ctx, 1, 0, 20)) after.push(d.offset);
  assert.deepEqual(after, [30, 40]);
  const plus = [];
  for await (const d of ops.readdirplus(ctx, 1, 0, 0)) plus.push(d);
  assert.equal(plus[0].entry, undefined, "no entry (no lookup count) for '.'");
  assert.equal(plus[2].entry?.nodeid, 12);
  assert.equal(plus[2].dirent.type, 8);
  assert.equal(plus[3].dirent.type, 2);
});
