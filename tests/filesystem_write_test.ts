/**
 * The write API of `Ext4`: every method against the kernel and e2fsck, reads through the same
 * object after each write (one coherent cache), streaming writes larger than the block cache,
 * files removed while open (orphan list), errors with the kernel's errno, and a property test
 * of random operation sequences against an in-memory model.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { parseDxNode, parseDxRoot } from "../lib/ondisk/dx.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import type { Ext4Stat } from "../lib/ext4/filesystem.ts";
import type { Ext4WritableFile } from "../lib/ext4/writable_file.ts";
import { ROOT, run, runCli, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, type Layout, LAYOUTS, mkfsImage, parseFsck } from "./write_fixtures.ts";
import { readSuperblock, State } from "../lib/ondisk/superblock.ts";
import { Incompat } from "../lib/ondisk/features.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";

/** The layout makes a journal (mkfs.ext2 does not; `-O ^has_journal` neither). */
function layoutHasJournal(layout: Layout): boolean {
  return layout.mkfs !== "mkfs.ext2" && !layout.args.some((a) => a.includes("^has_journal"));
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const KERNEL = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"];
const EXT4 = LAYOUTS[2];
const EXT2 = LAYOUTS[0];

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function sha(data: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(data)));
  return hex(h.subarray(0, 8));
}

function ns(t: { sec: number; nsec: number }): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

type Dump = Record<string, Record<string, unknown>>;

/** The tree as the kernel shows it (lost+found left out). */
async function kernelDump(mnt: string): Promise<Dump> {
  const script = `
import os, sys, json, hashlib, stat
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if rel.split("/")[0] == "lost+found": continue
        st = os.lstat(p)
        e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
             "mtime": str(st.st_mtime_ns), "atime": str(st.st_atime_ns)}
        if stat.S_ISREG(st.st_mode):
            e["size"] = st.st_size
            e["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
        if stat.S_ISLNK(st.st_mode): e["link"] = os.readlink(p)
        else: e["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in sorted(os.listxattr(p, follow_symlinks=False))}
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        out[rel] = e
print(json.dumps(out))
`;
  const r = await run("python3", ["-c", script, mnt]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The same dump made by reading through `fs`. */
async function ourDump(fs: Ext4): Promise<Dump> {
  const out: Dump = {};
  for await (const { path, stat } of fs.walk("/")) {
    if (path === "/" || path === "/lost+found" || path.startsWith("/lost+found/")) continue;
    const e: Record<string, unknown> = {
      mode: "0o" + stat.mode.toString(8),
      uid: stat.uid,
      gid: stat.gid,
      nlink: stat.nlink,
      mtime: ns(stat.mtime),
      atime: ns(stat.atime),
    };
    if (stat.type === "file") {
      e.size = stat.size;
      e.sha = await sha(await fs.read(stat.ino, 0, stat.size));
    }
    if (stat.type === "symlink") e.link = await fs.readLink(path);
    else {
      const x: Record<string, string> = {};
      for (const k of (await fs.listXattr(path)).sort()) x[k] = hex(await fs.getXattr(path, k));
      e.xattrs = x;
    }
    if (stat.type === "chardev" || stat.type === "blockdev") {
      e.rdev = [stat.rdev.major, stat.rdev.minor];
    }
    out[path.slice(1)] = e;
  }
  return out;
}

/** Asserts that `fn` rejects with an Ext4Error of `code` and `errno`. */
async function rejects(
  fn: () => Promise<unknown>,
  code: string,
  errno: number,
  what = "",
): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `${what}: ${e}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    assert.equal(e.errno, errno, `${what}: ${e.message}`);
    return true;
  });
}

async function names(fs: Ext4, path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of fs.readDir(path)) out.push(e.name);
  return out.sort();
}

const T2100 = { sec: 4102444800 + 17, nsec: 123456789 };

for (const layout of LAYOUTS) {
  testWith(
    `Ext4 write methods on ${layout.name}: read back through the same object, by a fresh reader and by the kernel; e2fsck clean`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      const img = `${dir.path}/fs.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, layout));
      const fs = await Ext4.open(img, { readOnly: false });
      assert.ok(fs.writable);
      await fs.mkdir("/a/b/c", { recursive: true, mode: 0o750, uid: 5, gid: 6 });
      await fs.mkdir("/a/b", { recursive: true }); // exists: fine
      assert.equal((await fs.stat("/a/b/c")).mode, 0o40750);
      assert.equal((await fs.stat("/a")).uid, 5);
      const f = pattern(1, 70000);
      await fs.writeFile("/a/b/c/f", f, { mode: 0o640, uid: 1000, gid: 100, mtime: T2100 });
      let st = await fs.stat("/a/b/c/f");
      assert.deepEqual([st.size, st.mode, st.uid, st.gid], [70000, 0o100640, 1000, 100]);
      assert.deepEqual(st.mtime, T2100);
      assert.deepEqual(await fs.readFile("/a/b/c/f"), f);
      await fs.writeFile("/a/b/c/f", enc.encode("!"), { append: true });
      assert.equal((await fs.stat("/a/b/c/f")).size, 70001);
      await fs.symlink("a/b", "/l");
      await fs.symlink("/" + "x".repeat(200), "/slow");
      assert.equal(await fs.readLink("/l"), "a/b");
      assert.equal(await fs.readLink("/slow"), "/" + "x".repeat(200));
      // Through a symlink in the middle of a path.
      await fs.writeFile("/l/c/g", enc.encode("via link"));
      assert.equal(dec.decode(await fs.readFile("/a/b/c/g")), "via link");
      await fs.link("/a/b/c/g", "/a/hard");
      assert.equal((await fs.stat("/a/b/c/g")).nlink, 2);
      await fs.rename("/a/hard", "/a/moved");
      assert.deepEqual(await names(fs, "/a"), ["b", "moved"]);
      await fs.chmod("/a/moved", 0o4755);
      await fs.chown("/l", 7, 8, { noFollow: true });
      assert.equal((await fs.lstat("/l")).uid, 7);
      await fs.chown("/a/b/c/g", null, 9);
      assert.deepEqual([(await fs.stat("/a/moved")).uid, (await fs.stat("/a/moved")).gid], [0, 9]);
      await fs.utime("/a/b/c/f", T2100, 1700000000123456789n);
      st = await fs.stat("/a/b/c/f");
      assert.deepEqual(st.atime, T2100);
      assert.deepEqual(st.mtime, { sec: 1700000000, nsec: 123456789 });
      await fs.setXattr("/a/b/c/f", "user.one", enc.encode("1"));
      await fs.setXattr("/a/b/c/f", "user.two", pattern(9, 300));
      await fs.setXattr("/a/b/c/f", "user.big", pattern(10, 600));
      await fs.removeXattr("/a/b/c/f", "user.one");
      assert.deepEqual((await fs.listXattr("/a/b/c/f")).sort(), ["user.big", "user.two"]);
      assert.deepEqual(await fs.getXattr("/a/b/c/f", "user.big"), pattern(10, 600));
      await fs.writeFile("/t", pattern(3, 50000));
      await fs.truncate("/t", 10);
      assert.deepEqual(await fs.readFile("/t"), pattern(3, 10));
      await fs.truncate("/t", 9000); // grows with a hole
      assert.deepEqual(
        await fs.readFile("/t"),
        Uint8Array.from([...pattern(3, 10), ...new Uint8Array(8990)]),
      );
      await fs.mknod("/fifo", 0o010640);
      await fs.mknod("/null", 0o020666, { major: 1, minor: 3 });
      assert.equal((await fs.stat("/null")).type, "chardev");
      assert.deepEqual((await fs.stat("/null")).rdev, { major: 1, minor: 3 });
      // An open file: positional writes with a hole, sequential writes, truncate.
      const w = await fs.openWritable("/w", { mode: 0o600 });
      await w.write(pattern(4, 5000), 1 << 20);
      await w.write(enc.encode("head"));
      await w.write(enc.encode("+more"));
      assert.equal(w.position, 9);
      assert.equal((await w.stat()).size, (1 << 20) + 5000);
      assert.deepEqual(await w.read(0, 9), enc.encode("head+more"));
      assert.deepEqual(await fs.read(w.ino, 1 << 20, 5000), pattern(4, 5000));
      await w.truncate((1 << 20) + 100);
      await w.sync();
      await w.close();
      await w.close(); // harmless
      // rename: exchange, noReplace.
      await fs.writeFile("/x1", enc.encode("one"));
      await fs.writeFile("/x2", enc.encode("two"));
      await fs.rename("/x1", "/x2", { exchange: true });
      assert.equal(dec.decode(await fs.readFile("/x1")), "two");
      await rejects(() => fs.rename("/x1", "/x2", { noReplace: true }), "EXISTS", Errno.EEXIST);
      await fs.rename("/x1", "/x2"); // replaces
      assert.equal(dec.decode(await fs.readFile("/x2")), "two");
      // A small file (inline on inline_data filesystems) with an xattr.
      await fs.setXattr("/x2", "user.small", enc.encode("s"));
      assert.equal(dec.decode(await fs.readFile("/x2")), "two");
      // A tree made and removed.
      await fs.mkdir("/tree/x/y", { recursive: true });
      for (let i = 0; i < 40; i++) await fs.writeFile(`/tree/x/y/file${i}`, pattern(i, i * 100));
      await fs.symlink("../..", "/tree/x/up");
      await fs.remove("/tree", { recursive: true });
      await fs.remove("/fifo");
      // A directory becoming an htree (ext4) or growing linearly (ext2), then shrinking.
      await fs.mkdir("/big");
      for (let i = 0; i < 300; i++) {
        await fs.writeFile(`/big/n${i}-${"y".repeat(40)}`, new Uint8Array());
      }
      for (let i = 0; i < 300; i += 3) await fs.remove(`/big/n${i}-${"y".repeat(40)}`);
      assert.equal((await names(fs, "/big")).length, 200);
      const ours = await ourDump(fs);
      await fs.close();
      await fs.close(); // harmless
      await rejects(() => fs.stat("/"), "INVALID", Errno.EBADF, "use after close");

      const check = await fsck(dir.path, await Deno.readFile(img));
      assert.equal(check.code, 0, check.output);
      const fresh = await Ext4.open(img);
      assert.deepEqual(await ourDump(fresh), ours);
      await fresh.close();
      const kernel = await withKernelMount(img, kernelDump, { readOnly: true });
      assert.deepEqual(kernel, ours);
      assert.deepEqual(Object.keys(kernel).filter((p) => !p.startsWith("big/")).sort(), [
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/f",
        "a/b/c/g",
        "a/moved",
        "big",
        "l",
        "null",
        "slow",
        "t",
        "w",
        "x2",
      ]);
      assert.equal(kernel["a/b/c/f"].sha, await sha(Uint8Array.from([...f, 0x21])));
      assert.equal(kernel["a/b/c/f"].atime, ns(T2100));
      assert.equal(kernel["a/moved"].mode, "0o104755");
      assert.equal(kernel["w"].size, (1 << 20) + 100);
    },
  );
}

testWith(
  "coherence: every read method shows each write at once (inodes, maps, lookups, listings, xattrs, links, name maps)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    // 1 KiB blocks without dir_index: large directories get the reader's cached name map.
    const image = await mkfsImage(dir.path, {
      name: "nodx",
      mkfs: "mkfs.ext4",
      args: ["-b", "1024", "-O", "^dir_index"],
      size: "32M",
    });
    const dev = new MemoryBlockDevice(Uint8Array.from(image));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.mkdir("/d");
    await fs.writeFile("/d/f", enc.encode("first"));
    await fs.setXattr("/d/f", "user.k", enc.encode("v1"));
    await fs.symlink("/d/f", "/l");
    const dIno = (await fs.stat("/d")).ino;
    const fIno = (await fs.stat("/d/f")).ino;
    // Prime every cache.
    // Prime every cache (paths that are gone by then simply fail).
    const prime = async () => {
      const quiet = (x: Promise<unknown>) => x.catch(() => {});
      await quiet(fs.stat("/d/f"));
      await quiet(fs.lstat("/l"));
      await names(fs, "/d");
      await fs.lookupIno(dIno, "f");
      await fs.lookupIno(dIno, "g");
      await quiet(fs.getXattr("/d/f", "user.k"));
      await quiet(fs.listXattr("/d/f"));
      await quiet(fs.readLink("/l"));
      await quiet(fs.readFile("/l"));
      for await (const _ of fs.walk("/")) { /* all inodes */ }
    };
    await prime();
    const reader = await fs.openFile("/d/f");
    await fs.writeFile("/d/f", enc.encode("second, longer"));
    assert.equal(dec.decode(await fs.readFile("/d/f")), "second, longer");
    assert.equal(dec.decode(await fs.readFile("/l")), "second, longer");
    assert.equal((await fs.stat("/d/f")).size, 14);
    assert.equal(
      dec.decode(await reader.read(0, 100)),
      "second, longer",
      "an open file sees writes",
    );
    await prime();
    await fs.setXattr("/d/f", "user.k", enc.encode("v2"));
    assert.equal(dec.decode(await fs.getXattr("/d/f", "user.k")), "v2");
    await fs.setXattr("/d/f", "user.k2", enc.encode("x"));
    assert.deepEqual((await fs.listXattr("/d/f")).sort(), ["user.k", "user.k2"]);
    await prime();
    await fs.chmod("/d/f", 0o600);
    await fs.chown("/d/f", 42, 43);
    await fs.utime("/d/f", T2100, T2100);
    let st = await fs.getattr(fIno);
    assert.deepEqual([st.mode, st.uid, st.gid, st.mtime], [0o100600, 42, 43, T2100]);
    await prime();
    await fs.rename("/d/f", "/d/g");
    assert.equal(await fs.lookupIno(dIno, "f"), null);
    assert.equal(await fs.lookupIno(dIno, "g"), fIno);
    assert.deepEqual(await names(fs, "/d"), ["g"]);
    await rejects(() => fs.readLink("/l").then(() => fs.readFile("/l")), "NOT_FOUND", Errno.ENOENT);
    await prime();
    await fs.remove("/l");
    await fs.symlink("/d/g", "/l");
    assert.equal(await fs.readLink("/l"), "/d/g");
    assert.equal((await fs.stat("/l")).ino, fIno);
    await prime();
    await fs.link("/d/g", "/d/h");
    assert.equal((await fs.stat("/d/g")).nlink, 2);
    await fs.remove("/d/g");
    assert.equal((await fs.stat("/d/h")).nlink, 1);
    await rejects(() => fs.stat("/d/g"), "NOT_FOUND", Errno.ENOENT);
    // A large unindexed directory: lookups go through the reader's name map.
    await fs.mkdir("/many");
    const manyIno = (await fs.stat("/many")).ino;
    for (let i = 0; i < 150; i++) {
      await fs.writeFile(`/many/entry-${i}-${"z".repeat(60)}`, new Uint8Array());
    }
    assert.ok((await fs.stat("/many")).size > 8 * 1024, "directory large enough for a name map");
    const name = (i: number) => `entry-${i}-${"z".repeat(60)}`;
    const e7 = await fs.lookupIno(manyIno, name(7));
    assert.ok(e7);
    assert.equal(await fs.lookupIno(manyIno, name(500)), null);
    await fs.remove(`/many/${name(7)}`);
    assert.equal(await fs.lookupIno(manyIno, name(7)), null);
    await fs.writeFile(`/many/${name(500)}`, enc.encode("new"));
    assert.ok(await fs.lookupIno(manyIno, name(500)));
    await fs.rename(`/many/${name(500)}`, `/many/${name(7)}`);
    assert.equal(dec.decode(await fs.readFile(`/many/${name(7)}`)), "new");
    assert.equal(await fs.lookupIno(manyIno, name(500)), null);
    // statfs follows the allocator.
    const before = fs.statfs().freeBlocks;
    await fs.writeFile("/bigfile", pattern(5, 300 * 1024));
    assert.ok(fs.statfs().freeBlocks <= before - 300, "statfs shows the blocks used");
    await fs.remove("/bigfile");
    assert.equal(fs.statfs().freeBlocks, before);
    // A refused operation changes nothing and leaves every cache right.
    await rejects(() => fs.mkdir("/d"), "EXISTS", Errno.EEXIST);
    st = await fs.stat("/d");
    assert.equal(st.type, "dir");
    assert.deepEqual(await names(fs, "/d"), ["h"]);
    await reader.close();
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

testWith(
  "concurrent calls: writes queue one transaction at a time while reads run; handles on one file interleave",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const dev = new MemoryBlockDevice(await mkfsImage(dir.path, EXT4));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.mkdir("/c");
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      jobs.push(fs.writeFile(`/c/f${i}`, pattern(i, 100 + i * 500)));
      jobs.push(names(fs, "/c"));
      if (i % 5 === 4) jobs.push(fs.remove(`/c/f${i - 2}`));
    }
    const results = await Promise.allSettled(jobs);
    assert.deepEqual(results.filter((r) => r.status === "rejected"), []);
    const left = await names(fs, "/c");
    assert.equal(left.length, 32);
    for (const n of left) {
      const i = Number(n.slice(1));
      assert.deepEqual(await fs.readFile(`/c/${n}`), pattern(i, 100 + i * 500));
    }
    // Opening and closing existing files changes nothing: no write, no flush.
    let deviceOps = 0;
    const { write, flush } = dev;
    dev.write = (o, d) => (deviceOps++, write.call(dev, o, d));
    dev.flush = () => (deviceOps++, flush.call(dev));
    for (let i = 0; i < 5; i++) {
      await (await fs.openFile("/c/f0")).close();
      await (await fs.openWritable("/c/f1")).close();
    }
    assert.equal(deviceOps, 0);
    const a = await fs.openWritable("/shared");
    const b = await fs.openWritable("/shared");
    await Promise.all([a.write(pattern(1, 10000), 0), b.write(pattern(2, 10000), 10000)]);
    assert.deepEqual(await a.read(10000, 10000), pattern(2, 10000));
    await Promise.all([a.close(), b.close()]);
    await fs.sync();
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

/** A stream of `total` pattern bytes in chunks of varying sizes. */
function patternStream(seed: number, total: number): ReadableStream<Uint8Array> {
  const data = pattern(seed, total);
  let at = 0;
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= total) return controller.close();
      const n = Math.min(total - at, [1, 4095, 65536, 300001, 12345, 1 << 20][i++ % 6]);
      controller.enqueue(data.slice(at, at + n));
      at += n;
    },
  });
}

for (const layout of [EXT4, EXT2]) {
  testWith(
    `streaming writes on ${layout.name}: a file far larger than the block cache, through writable() and writeFile(stream); the kernel reads it back`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      const img = `${dir.path}/fs.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, layout));
      // 16 blocks of cache against 24 MiB of data.
      const fs = await Ext4.open(img, { readOnly: false, blockCacheSize: 16 });
      const total = 24 << 20;
      const f = await fs.openWritable("/stream.bin");
      await patternStream(7, total).pipeTo(f.writable());
      assert.ok(f.closed, "closing the stream closes the file");
      await fs.writeFile("/via-writeFile", patternStream(8, 5_000_000), { mode: 0o600 });
      const want = pattern(7, total);
      let got = 0;
      for await (const chunk of (await fs.openFile("/stream.bin")).readable()) {
        assert.deepEqual(chunk, want.subarray(got, got + chunk.length));
        got += chunk.length;
      }
      assert.equal(got, total);
      assert.deepEqual(await fs.readFile("/via-writeFile"), pattern(8, 5_000_000));
      // Appending through a second stream.
      const g = await fs.openWritable("/stream.bin", { append: true });
      await patternStream(9, 100_000).pipeTo(g.writable());
      assert.equal((await fs.stat("/stream.bin")).size, total + 100_000);
      await fs.close();
      const check = await fsck(dir.path, await Deno.readFile(img));
      assert.equal(check.code, 0, check.output);
      const shas = await withKernelMount(img, async (mnt) => [
        await sha(await Deno.readFile(`${mnt}/stream.bin`)),
        await sha(await Deno.readFile(`${mnt}/via-writeFile`)),
      ], { readOnly: true });
      assert.deepEqual(shas, [
        await sha(concat(want, pattern(9, 100_000))),
        await sha(pattern(8, 5_000_000)),
      ]);
    },
  );
}

/** The head of the orphan list of the image file at `path`, after a copy (the file is open). */
/**
 * Copies the image at `path` (being written) to `copy` as a crash would leave it and a
 * recovery see it: its journal replayed (by ext4ts, orphans left alone: what e2fsck and the
 * kernel replay before they process orphans).
 */
async function crashCopy(path: string, copy: string): Promise<void> {
  const dev = new MemoryBlockDevice(await Deno.readFile(path));
  await replayJournal(dev, { orphans: false });
  await Deno.writeFile(copy, dev.bytes);
}

async function dumpe2fsOrphanOf(path: string): Promise<number> {
  const copy = `${path}.copy`;
  await crashCopy(path, copy);
  try {
    return await dumpe2fsOrphan(copy);
  } finally {
    await Deno.remove(copy);
  }
}

async function dumpe2fsOrphan(path: string): Promise<number> {
  const out = await runOk("dumpe2fs", ["-h", path]);
  const m = out.match(/^First orphan inode:\s+(\d+)/m);
  return m ? Number(m[1]) : 0;
}

testWith(
  "files removed or replaced while open stay on the orphan list until their last close (e2fsck, the kernel and a reopen free them after a crash)",
  [...KERNEL, "dumpe2fs"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, EXT4));
    const fs = await Ext4.open(img, { readOnly: false });
    const w = await fs.openWritable("/written");
    await w.write(pattern(1, 100_000));
    await fs.writeFile("/read", pattern(2, 50_000));
    await fs.writeFile("/linked", pattern(3, 5000));
    await fs.link("/linked", "/other-name");
    const r = await fs.openFile("/read");
    const r2 = await fs.openFile("/read"); // two handles: freed at the second close
    const k = await fs.openFile("/linked");
    const wIno = w.ino;
    const rIno = r.stat.ino;
    await fs.remove("/written");
    await fs.writeFile("/new", enc.encode("replacement"));
    await fs.rename("/new", "/read"); // replaces an open file
    await fs.remove("/linked"); // still linked as /other-name: no orphan
    assert.deepEqual(await names(fs, "/"), ["lost+found", "other-name", "read"]);
    // The open files still read and write.
    assert.deepEqual(await w.read(0, 100_000), pattern(1, 100_000));
    await w.write(enc.encode("after unlink"), 100_000);
    assert.deepEqual(await r.read(0, 50_000), pattern(2, 50_000));
    assert.equal(dec.decode(await fs.readFile("/read")), "replacement");
    assert.equal((await fs.getattr(wIno)).nlink, 0);

    // While open: both inodes on the list. e2fsck -n does not process an orphan list (it
    // cannot write), so it reports the list's inodes as it finds them: the last one (dtime 0)
    // as deleted with zero dtime, the others (dtime = the next orphan) as part of an orphan
    // list; their blocks and inodes are still marked in use. Nothing else.
    const whileOpen = `${dir.path}/open.img`;
    await crashCopy(img, whileOpen);
    assert.equal(await dumpe2fsOrphan(whileOpen), rIno);
    const n = await fsck(dir.path, await Deno.readFile(whileOpen));
    assert.equal(n.code, 4, n.output);
    const report = parseFsck(n.output);
    assert.deepEqual(report.inodeMinus.sort(), [wIno, rIno].sort());
    assert.ok(report.blockMinus.length >= Math.ceil(150_000 / 4096), n.output);
    assert.deepEqual(report.other, [
      `Deleted inode ${wIno} has zero dtime.  Fix? no`,
      "Inodes that were part of a corrupted orphan linked list found.  Fix? no",
      `Inode ${rIno} was part of the orphaned inode list.  IGNORED.`,
    ], n.output);
    // e2fsck (repairing) processes the list as after a crash: clean afterwards.
    const y = await run("e2fsck", ["-fy", whileOpen]);
    assert.match(y.stdout, /Clearing orphaned inode/, y.stdout);
    assert.equal((await run("e2fsck", ["-fn", whileOpen])).code, 0);
    // The kernel frees them at a read-write mount, ext4ts at a read-write open.
    const forKernel = `${dir.path}/kernel.img`;
    const forUs = `${dir.path}/ours.img`;
    await Deno.copyFile(img, forKernel);
    await Deno.copyFile(img, forUs);
    await withKernelMount(forKernel, () => Promise.resolve());
    const kc = await fsck(dir.path, await Deno.readFile(forKernel));
    assert.equal(kc.code, 0, kc.output);
    const notices: string[] = [];
    const reopened = await Ext4.open(forUs, {
      readOnly: false,
      recovery: "replay",
      onNotice: (m) => notices.push(m),
    });
    await reopened.close();
    assert.match(notices.join("\n"), /2 inode\(s\) freed/);
    const oc = await fsck(dir.path, await Deno.readFile(forUs));
    assert.equal(oc.code, 0, oc.output);
    assert.equal(await dumpe2fsOrphan(forUs), 0);

    // A whole tree removed with an open file inside: the file is kept until its close, and
    // it is still written at the head of the list (its dtime links to the next orphan).
    await fs.mkdir("/tree/sub", { recursive: true });
    await fs.writeFile("/tree/sub/inner", pattern(4, 9000));
    const inner = await fs.openWritable("/tree/sub/inner");
    await fs.remove("/tree", { recursive: true });
    assert.equal(await dumpe2fsOrphanOf(img), inner.ino);
    await inner.write(pattern(5, 3000), 9000);
    await inner.truncate(11000);
    assert.deepEqual(await inner.read(0, 20000), concat(pattern(4, 9000), pattern(5, 2000)));
    await inner.close();
    assert.equal(await dumpe2fsOrphanOf(img), rIno);

    // Closing: the writer's last close frees it at once; /read's inode when both handles go;
    // /linked's inode was never orphaned.
    await w.close();
    await k.close();
    await r.close();
    const mid = `${dir.path}/mid.img`;
    await crashCopy(img, mid);
    assert.equal(await dumpe2fsOrphan(mid), rIno);
    await fs.close(); // closes r2
    await r2.close(); // harmless after the filesystem's close
    assert.equal(await dumpe2fsOrphan(img), 0);
    const clean = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(clean.code, 0, clean.output);
    const kernel = await withKernelMount(img, kernelDump, { readOnly: true });
    assert.deepEqual(Object.keys(kernel).sort(), ["other-name", "read"]);
    assert.equal(kernel["other-name"].sha, await sha(pattern(3, 5000)));
  },
);

testWith(
  "inode cache across commits: a read after a write sees the new inode; cached inodes in inode table blocks the commit did not write survive it",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4);
    const dev = new MemoryBlockDevice(Uint8Array.from(image));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const perBlock = fs.superblock.blockSize / fs.superblock.inodeSize;
    for (let i = 0; i < 2 * perBlock; i++) {
      await fs.writeFile(`/f${String(i).padStart(2, "0")}`, new Uint8Array(0));
    }
    const near = (await fs.stat("/f00")).ino;
    const far = (await fs.stat(`/f${2 * perBlock - 1}`)).ino;
    const tableBlock = (ino: number) => Math.floor((ino - 1) / perBlock);
    assert.notEqual(tableBlock(near), tableBlock(far), "the two inodes are in different blocks");
    const nearBefore = await fs.inode(near);
    const farBefore = await fs.inode(far);
    assert.equal(nearBefore.size, 0);

    const h = await fs.openWritable("/f00");
    await h.write(enc.encode("hello"), 0);
    await h.close();

    const nearAfter = await fs.inode(near);
    assert.notEqual(nearAfter, nearBefore, "the written inode was re-read");
    assert.equal(nearAfter.size, 5);
    assert.equal((await fs.stat("/f00")).size, 5);
    assert.equal(dec.decode(await fs.readFile("/f00")), "hello");
    assert.equal(await fs.inode(far), farBefore, "the untouched cached inode survived the commit");
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

testWith(
  "orphan_file filesystems: a file removed while open is held in the orphan file until its close; e2fsck clean after",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4, ["-O", "orphan_file"]);
    const dev = new MemoryBlockDevice(Uint8Array.from(image));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    const features = async () => {
      const path = `${dir.path}/features-${crypto.randomUUID()}.img`;
      await Deno.writeFile(path, dev.bytes);
      await crashCopy(path, path); // what a recovery after a crash now would see
      const r = await run("dumpe2fs", ["-h", path]);
      await Deno.remove(path);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.match(/^Filesystem features:\s*(.*)$/m)?.[1].split(/\s+/) ?? [];
    };
    await fs.writeFile("/closed", pattern(1, 5000));
    await fs.remove("/closed"); // not open: no orphan needed
    assert.ok(!(await features()).includes("orphan_present"));
    await fs.writeFile("/open", pattern(2, 5000));
    const h = await fs.openWritable("/open");
    await fs.remove("/open");
    assert.deepEqual(await names(fs, "/"), ["lost+found"]);
    assert.ok((await features()).includes("orphan_present"), "the orphan file holds the inode");
    assert.deepEqual(await h.read(0, 5000), pattern(2, 5000));
    await h.write(enc.encode("still writable"), 5000);
    await h.close();
    assert.ok(!(await features()).includes("orphan_present"), "released at the last close");
    await fs.close();
    const check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);
    // 11 reserved and lost+found, and the orphan file (inode 12): the removed file is freed.
    assert.match(check.output, / 12\/\d+ files/, check.output);
  },
);

testWith(
  "errors carry the kernel's errno: EEXIST, ENOENT, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL, EPERM, ENODATA, EBUSY, EROFS, EBADF; refusals at open",
  [...IMAGE_TOOLS, "gzip"],
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4);
    const dev = new MemoryBlockDevice(Uint8Array.from(image));
    const fs = await Ext4.openDevice(dev, { readOnly: false });
    await fs.mkdir("/d/sub/deeper", { recursive: true });
    await fs.mkdir("/full/x", { recursive: true });
    await fs.writeFile("/file", enc.encode("x"));
    await fs.setXattr("/file", "user.a", enc.encode("1"));
    await fs.symlink("/file", "/link");
    const cases: [string, () => Promise<unknown>, string, number][] = [
      ["mkdir existing", () => fs.mkdir("/d"), "EXISTS", Errno.EEXIST],
      ["mkdir over a file", () => fs.mkdir("/file"), "EXISTS", Errno.EEXIST],
      ["mkdir without parent", () => fs.mkdir("/nope/x"), "NOT_FOUND", Errno.ENOENT],
      [
        "mkdir -p through a file",
        () => fs.mkdir("/file/x", { recursive: true }),
        "NOT_DIRECTORY",
        Errno.ENOTDIR,
      ],
      [
        "writeFile under a file",
        () => fs.writeFile("/file/x", new Uint8Array(1)),
        "NOT_DIRECTORY",
        Errno.ENOTDIR,
      ],
      [
        "writeFile on a directory",
        () => fs.writeFile("/d", new Uint8Array(1)),
        "IS_DIRECTORY",
        Errno.EISDIR,
      ],
      [
        "writeFile createNew",
        () => fs.writeFile("/file", new Uint8Array(1), { createNew: true }),
        "EXISTS",
        Errno.EEXIST,
      ],
      [
        "writeFile create: false",
        () => fs.writeFile("/none", new Uint8Array(1), { create: false }),
        "NOT_FOUND",
        Errno.ENOENT,
      ],
      ["openWritable a directory", () => fs.openWritable("/d"), "IS_DIRECTORY", Errno.EISDIR],
      [
        "openWritable create: false",
        () => fs.openWritable("/none", { create: false }),
        "NOT_FOUND",
        Errno.ENOENT,
      ],
      ["truncate a directory", () => fs.truncate("/d", 0), "IS_DIRECTORY", Errno.EISDIR],
      ["truncate missing", () => fs.truncate("/none", 0), "NOT_FOUND", Errno.ENOENT],
      ["truncate negative", () => fs.truncate("/file", -1), "INVALID", Errno.EINVAL],
      ["remove missing", () => fs.remove("/none"), "NOT_FOUND", Errno.ENOENT],
      ["remove non-empty", () => fs.remove("/d"), "NOT_EMPTY", Errno.ENOTEMPTY],
      ["remove the root", () => fs.remove("/", { recursive: true }), "INVALID", Errno.EBUSY],
      ["rename into own subtree", () => fs.rename("/d", "/d/sub/x"), "INVALID", Errno.EINVAL],
      ["rename onto own subtree", () => fs.rename("/d", "/d/sub"), "INVALID", Errno.EINVAL],
      [
        "rename onto an ancestor",
        () => fs.rename("/d/sub/deeper", "/d"),
        "NOT_EMPTY",
        Errno.ENOTEMPTY,
      ],
      [
        "rename dir over file",
        () => fs.rename("/d/sub/deeper", "/file"),
        "NOT_DIRECTORY",
        Errno.ENOTDIR,
      ],
      [
        "rename file over dir",
        () => fs.rename("/file", "/d/sub/deeper"),
        "IS_DIRECTORY",
        Errno.EISDIR,
      ],
      [
        "rename over non-empty dir",
        () => fs.rename("/d/sub/deeper", "/full"),
        "NOT_EMPTY",
        Errno.ENOTEMPTY,
      ],
      ["rename missing", () => fs.rename("/none", "/x"), "NOT_FOUND", Errno.ENOENT],
      [
        "rename noReplace",
        () => fs.rename("/file", "/link", { noReplace: true }),
        "EXISTS",
        Errno.EEXIST,
      ],
      [
        "exchange with nothing",
        () => fs.rename("/file", "/none", { exchange: true }),
        "NOT_FOUND",
        Errno.ENOENT,
      ],
      ["link a directory", () => fs.link("/d", "/d2"), "PERMISSION", Errno.EPERM],
      ["link onto existing", () => fs.link("/file", "/link"), "EXISTS", Errno.EEXIST],
      ["symlink onto existing", () => fs.symlink("x", "/file"), "EXISTS", Errno.EEXIST],
      [
        "removeXattr absent",
        () => fs.removeXattr("/file", "user.none"),
        "NOT_FOUND",
        Errno.ENODATA,
      ],
      [
        "setXattr create existing",
        () => fs.setXattr("/file", "user.a", enc.encode("2"), { create: true }),
        "EXISTS",
        Errno.EEXIST,
      ],
      [
        "setXattr replace absent",
        () => fs.setXattr("/file", "user.b", enc.encode("2"), { replace: true }),
        "NOT_FOUND",
        Errno.ENODATA,
      ],
      [
        "user xattr on a symlink",
        () => fs.setXattr("/link", "user.a", enc.encode("2")),
        "PERMISSION",
        Errno.EPERM,
      ],
      ["chmod missing", () => fs.chmod("/none", 0o644), "NOT_FOUND", Errno.ENOENT],
      [
        "utime bad nanoseconds",
        () => fs.utime("/file", { sec: 0, nsec: 1e9 }, null),
        "INVALID",
        Errno.EINVAL,
      ],
      ["mknod of a regular mode", () => fs.mknod("/n", 0o100644), "INVALID", Errno.EINVAL],
    ];
    for (const [what, fn, code, errno] of cases) await rejects(fn, code, errno, what);
    // Nothing changed.
    assert.deepEqual(await names(fs, "/"), ["d", "file", "full", "link", "lost+found"]);
    assert.deepEqual(await names(fs, "/d/sub"), ["deeper"]);
    await fs.close();
    await rejects(() => fs.writeFile("/x", new Uint8Array(1)), "INVALID", Errno.EBADF, "closed");
    let check = await fsck(dir.path, dev.bytes);
    assert.equal(check.code, 0, check.output);

    // Read-only: opened read-only (EROFS on every write), or a read-only device.
    const ro = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
    assert.equal(ro.writable, false);
    for (
      const fn of [
        () => ro.writeFile("/x", new Uint8Array(1)),
        () => ro.mkdir("/x"),
        () => ro.remove("/file"),
        () => ro.rename("/file", "/y"),
        () => ro.openWritable("/file"),
        () => ro.setXattr("/file", "user.x", new Uint8Array(1)),
      ]
    ) await rejects(fn, "READ_ONLY", Errno.EROFS, "read-only filesystem");
    await ro.close();
    await rejects(
      () =>
        Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(image), { readOnly: true }), {
          readOnly: false,
        }),
      "READ_ONLY",
      Errno.EROFS,
    );
    // Features ext4ts cannot write: UNSUPPORTED with the reason (and exit 6 from the CLI).
    const big = `${dir.path}/bigalloc.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-O", "bigalloc", "-C", "16384", big, "64M"]);
    await assert.rejects(
      () => Ext4.open(big, { readOnly: false }),
      (e: Ext4Error) => e.code === "UNSUPPORTED" && /bigalloc/.test(e.message),
    );
    const cli = await runCli(["mkdir", big, "/x"]);
    assert.equal(cli.code, 6, cli.stderr);
    assert.match(cli.stderr, /^ext4ts: .*bigalloc/);

    // A journal needing recovery: refused, or replayed onto the device first when asked.
    const crash = `${dir.path}/crash.img`;
    await runOk("sh", [
      "-c",
      `gzip -dc ${ROOT}tests/fixtures/journal_cases/32bit_nocsum_4k/crash.img.gz > ${crash}`,
    ]);
    const inMemory = await Ext4.open(crash); // read-only: replayed in memory
    const expected = [];
    for await (const { path, stat } of inMemory.walk("/")) expected.push([path, stat.size]);
    await inMemory.close();
    await rejects(() => Ext4.open(crash, { readOnly: false }), "NEEDS_RECOVERY", Errno.EIO);
    const notices: string[] = [];
    const replayed = await Ext4.open(crash, {
      readOnly: false,
      recovery: "replay",
      onNotice: (m) => notices.push(m),
    });
    assert.match(notices.join("\n"), /replayed onto the device/);
    const seen = [];
    for await (const { path, stat } of replayed.walk("/")) seen.push([path, stat.size]);
    assert.deepEqual(seen, expected);
    await replayed.writeFile("/after-replay", enc.encode("written"));
    await replayed.close();
    check = await fsck(dir.path, await Deno.readFile(crash));
    assert.equal(check.code, 0, check.output);
  },
);

// ---------------------------------------------------------------- property test

/** The model: inodes by number, directories map names to inode numbers. */
type MNode =
  | { kind: "dir"; mode: number; entries: Map<string, number>; xattrs: Map<string, string> }
  | { kind: "file"; mode: number; data: Uint8Array; xattrs: Map<string, string> }
  | { kind: "symlink"; target: string };

class Model {
  /** Files held open (they live on when unlinked). */
  held: Extract<MNode, { kind: "file" }>[] = [];
  nodes = new Map<number, MNode>([[1, {
    kind: "dir",
    mode: 0o40755,
    entries: new Map(),
    xattrs: new Map(),
  }]]);
  #next = 2;

  add(node: MNode): number {
    this.nodes.set(this.#next, node);
    return this.#next++;
  }

  dir(id: number): Extract<MNode, { kind: "dir" }> {
    return this.nodes.get(id) as Extract<MNode, { kind: "dir" }>;
  }

  /**
   * Resolves a path of names (no symlink is ever followed successfully: every target dangles,
   * so following one is ENOENT). Returns the parent directory, the last name and the inode.
   */
  resolve(parts: string[], follow: boolean): { parent: number; name: string; id: number } {
    let cur = 1;
    for (let i = 0; i < parts.length; i++) {
      const node = this.nodes.get(cur)!;
      if (node.kind !== "dir") throw new ModelError("NOT_DIRECTORY");
      const id = node.entries.get(parts[i]) ?? 0;
      const last = i === parts.length - 1;
      if (last) {
        if (id && follow && this.nodes.get(id)!.kind === "symlink") {
          throw new ModelError("NOT_FOUND");
        }
        return { parent: cur, name: parts[i], id };
      }
      if (!id) throw new ModelError("NOT_FOUND");
      if (this.nodes.get(id)!.kind === "symlink") throw new ModelError("NOT_FOUND");
      cur = id;
    }
    return { parent: 1, name: ".", id: 1 };
  }

  within(dir: number, ancestor: number): boolean {
    const parentOf = new Map<number, number>();
    for (const [id, n] of this.nodes) {
      if (n.kind === "dir") {
        for (const c of n.entries.values()) {
          if (this.nodes.get(c)!.kind === "dir") parentOf.set(c, id);
        }
      }
    }
    for (let cur: number | undefined = dir; cur !== undefined; cur = parentOf.get(cur)) {
      if (cur === ancestor) return true;
    }
    return false;
  }

  /** Entries pointing at `id` (a directory's nlink is 2 + its subdirectories). */
  nlink(id: number, links = this.links()): number {
    const n = this.nodes.get(id)!;
    if (n.kind === "dir") {
      let subdirs = 0;
      for (const c of n.entries.values()) if (this.nodes.get(c)!.kind === "dir") subdirs++;
      return 2 + subdirs + (id === 1 ? 1 : 0); // the root also holds lost+found
    }
    return links.get(id) ?? 0;
  }

  /** How many entries point at each node, in one pass (big directories make per-node scans slow). */
  links(): Map<number, number> {
    const out = new Map<number, number>();
    for (const m of this.nodes.values()) {
      if (m.kind === "dir") {
        for (const c of m.entries.values()) out.set(c, (out.get(c) ?? 0) + 1);
      }
    }
    return out;
  }

  gc(): void {
    const links = this.links();
    for (const id of [...this.nodes.keys()]) {
      if (id !== 1 && !links.has(id) && this.nodes.get(id)!.kind !== "dir") this.nodes.delete(id);
    }
  }
}

class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

type Op =
  | { op: "writeFile"; path: string[]; seed: number; size: number; append: boolean }
  | { op: "mkdir"; path: string[]; recursive: boolean }
  | { op: "remove"; path: string[]; recursive: boolean }
  | { op: "rename"; from: string[]; to: string[]; noReplace: boolean; exchange: boolean }
  | { op: "symlink"; path: string[] }
  | { op: "link"; from: string[]; to: string[] }
  | { op: "chmod"; path: string[]; mode: number }
  | { op: "setXattr"; path: string[]; value: number }
  | { op: "truncate"; path: string[]; size: number }
  | { op: "pwrite"; path: string[]; seed: number; offset: number; size: number }
  | { op: "hold"; path: string[] }
  | { op: "writeHeld"; k: number; seed: number; offset: number; size: number }
  | { op: "closeHeld"; k: number };

const nameArb = fc.constantFrom("a", "a", "b", "b", "c");
// Short paths mostly, so that operations often meet what earlier ones made.
const pathArb = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(nameArb).map((t) => [...t]) },
  { weight: 3, arbitrary: fc.tuple(nameArb, nameArb).map((t) => [...t]) },
  { weight: 1, arbitrary: fc.tuple(nameArb, nameArb, nameArb).map((t) => [...t]) },
);
/** Targets of rename and link: mostly in the root, whose parent always exists. */
const targetArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom("a", "b", "d", "e")).map((t) => [...t]) },
  { weight: 1, arbitrary: pathArb },
);
const renameFlags = fc.constantFrom(
  { noReplace: false, exchange: false },
  { noReplace: false, exchange: false },
  { noReplace: true, exchange: false },
  { noReplace: false, exchange: true },
  { noReplace: true, exchange: true },
);
const sizeArb = fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 20000 }));
const w = (weight: number, arbitrary: fc.Arbitrary<Op>) => ({ weight, arbitrary });

/** Sequences of operations on paths drawn from `pathArb`, renamed and linked to `targetArb`. */
function opsArbOver(
  pathArb: fc.Arbitrary<string[]>,
  targetArb: fc.Arbitrary<string[]>,
): fc.Arbitrary<Op[]> {
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    w(
      4,
      fc.record({
        op: fc.constant("writeFile" as const),
        path: pathArb,
        seed: fc.nat(1000),
        size: sizeArb,
        append: fc.boolean(),
      }),
    ),
    w(4, fc.record({ op: fc.constant("mkdir" as const), path: pathArb, recursive: fc.boolean() })),
    w(2, fc.record({ op: fc.constant("remove" as const), path: pathArb, recursive: fc.boolean() })),
    w(
      3,
      fc.record({
        op: fc.constant("rename" as const),
        from: pathArb,
        to: targetArb,
        flags: renameFlags,
      }).map(({ op, from, to, flags }) => ({ op, from, to, ...flags })),
    ),
    w(1, fc.record({ op: fc.constant("symlink" as const), path: pathArb })),
    w(2, fc.record({ op: fc.constant("link" as const), from: pathArb, to: targetArb })),
    w(
      1,
      fc.record({
        op: fc.constant("chmod" as const),
        path: pathArb,
        mode: fc.integer({ min: 0, max: 0o777 }),
      }),
    ),
    w(1, fc.record({ op: fc.constant("setXattr" as const), path: pathArb, value: fc.nat(3000) })),
    w(1, fc.record({ op: fc.constant("truncate" as const), path: pathArb, size: sizeArb })),
    w(1, fc.record({ op: fc.constant("hold" as const), path: pathArb })),
    w(
      1,
      fc.record({
        op: fc.constant("writeHeld" as const),
        k: fc.nat(10),
        seed: fc.nat(1000),
        offset: sizeArb,
        size: sizeArb,
      }),
    ),
    w(1, fc.record({ op: fc.constant("closeHeld" as const), k: fc.nat(10) })),
    w(
      2,
      fc.record({
        op: fc.constant("pwrite" as const),
        path: pathArb,
        seed: fc.nat(1000),
        offset: sizeArb,
        size: sizeArb,
      }),
    ),
  );

  /** Open a file, then remove it or rename something over it: orphans while held. */
  const holdThenDropArb: fc.Arbitrary<Op[]> = fc.record({
    path: pathArb,
    seed: fc.nat(1000),
    size: sizeArb,
    other: pathArb,
    rename: fc.boolean(),
  }).map(({ path, seed, size, other, rename }) => [
    { op: "hold", path },
    { op: "writeHeld", k: 10, seed, offset: 0, size },
    rename
      ? { op: "rename", from: other, to: path, noReplace: false, exchange: false }
      : { op: "remove", path, recursive: false },
  ]);
  /** Make a file or directory tree, then move it: most random renames find no source. */
  const makeThenMoveArb: fc.Arbitrary<Op[]> = fc.record({
    path: pathArb,
    to: targetArb,
    dir: fc.boolean(),
    seed: fc.nat(1000),
    flags: renameFlags,
  }).map(({ path, to, dir, seed, flags }) => [
    dir
      ? { op: "mkdir", path, recursive: true }
      : { op: "pwrite", path, seed, offset: 0, size: 100 },
    { op: "rename", from: path, to, ...flags },
  ]);
  const opsArb: fc.Arbitrary<Op[]> = fc.array(
    fc.oneof(
      { weight: 12, arbitrary: opArb.map((o) => [o]) },
      { weight: 1, arbitrary: holdThenDropArb },
      { weight: 1, arbitrary: makeThenMoveArb },
    ),
    { minLength: 10, maxLength: 45 },
  ).map((groups) => groups.flat());
  return opsArb;
}
const opsArb = opsArbOver(pathArb, targetArb);

const p = (parts: string[]) => "/" + parts.join("/");

/** Applies `op` to the model: the error code the filesystem must give, or null. */
function applyModel(m: Model, op: Op): string | null {
  try {
    switch (op.op) {
      case "hold": {
        const r = m.resolve(op.path, true);
        let id = r.id;
        if (!id) {
          id = m.add({ kind: "file", mode: 0o100644, data: new Uint8Array(), xattrs: new Map() });
          m.dir(r.parent).entries.set(r.name, id);
        }
        const node = m.nodes.get(id)!;
        if (node.kind === "dir") throw new ModelError("IS_DIRECTORY");
        if (node.kind !== "file") throw new ModelError("INVALID");
        m.held.push(node);
        return null;
      }
      case "writeHeld": {
        if (m.held.length === 0 || op.size === 0) return null;
        const node = m.held[op.k % m.held.length];
        const out = new Uint8Array(Math.max(node.data.length, op.offset + op.size));
        out.set(node.data);
        out.set(pattern(op.seed, op.size), op.offset);
        node.data = out;
        return null;
      }
      case "closeHeld":
        if (m.held.length > 0) m.held.splice(op.k % m.held.length, 1);
        return null;
      case "writeFile":
      case "pwrite": {
        const r = m.resolve(op.path, true);
        const data = pattern(op.seed, op.size);
        let id = r.id;
        if (!id) {
          id = m.add({ kind: "file", mode: 0o100644, data: new Uint8Array(), xattrs: new Map() });
          m.dir(r.parent).entries.set(r.name, id);
        }
        const node = m.nodes.get(id)!;
        if (node.kind === "dir") throw new ModelError("IS_DIRECTORY");
        if (node.kind !== "file") throw new ModelError("INVALID");
        if (op.op === "writeFile") {
          node.data = op.append ? Uint8Array.from([...node.data, ...data]) : data;
        } else if (op.size > 0) {
          const end = Math.max(node.data.length, op.offset + op.size);
          const out = new Uint8Array(end);
          out.set(node.data);
          out.set(data, op.offset);
          node.data = out;
        }
        return null;
      }
      case "mkdir": {
        if (op.recursive) {
          let cur = 1;
          for (const name of op.path) {
            const d = m.nodes.get(cur)!;
            if (d.kind !== "dir") throw new ModelError("NOT_DIRECTORY");
            const id = d.entries.get(name);
            if (id === undefined) {
              const nid = m.add({
                kind: "dir",
                mode: 0o40755,
                entries: new Map(),
                xattrs: new Map(),
              });
              d.entries.set(name, nid);
              cur = nid;
            } else {
              const n = m.nodes.get(id)!;
              if (n.kind === "symlink") throw new ModelError("NOT_FOUND");
              if (n.kind !== "dir") throw new ModelError("NOT_DIRECTORY");
              cur = id;
            }
          }
          return null;
        }
        const r = m.resolve(op.path, false);
        if (r.id) throw new ModelError("EXISTS");
        m.dir(r.parent).entries.set(
          r.name,
          m.add({ kind: "dir", mode: 0o40755, entries: new Map(), xattrs: new Map() }),
        );
        return null;
      }
      case "remove": {
        const r = m.resolve(op.path, false);
        if (!r.id) throw new ModelError("NOT_FOUND");
        const n = m.nodes.get(r.id)!;
        if (n.kind === "dir" && n.entries.size > 0 && !op.recursive) {
          throw new ModelError("NOT_EMPTY");
        }
        m.dir(r.parent).entries.delete(r.name);
        const drop = (id: number) => {
          const x = m.nodes.get(id)!;
          if (x.kind === "dir") {
            for (const c of x.entries.values()) drop(c);
            m.nodes.delete(id);
          }
        };
        drop(r.id);
        m.gc();
        return null;
      }
      case "rename": {
        if (op.noReplace && op.exchange) throw new ModelError("INVALID");
        const a = m.resolve(op.from, false);
        if (!a.id) throw new ModelError("NOT_FOUND");
        const b = m.resolve(op.to, false);
        if (op.exchange && !b.id) throw new ModelError("NOT_FOUND");
        if (op.noReplace && b.id) throw new ModelError("EXISTS");
        const an = m.nodes.get(a.id)!;
        if (an.kind === "dir" && m.within(b.parent, a.id)) throw new ModelError("INVALID");
        const bn = b.id ? m.nodes.get(b.id)! : null;
        if (bn && b.id !== a.id && bn.kind === "dir" && m.within(a.parent, b.id)) {
          throw new ModelError(op.exchange ? "INVALID" : "NOT_EMPTY");
        }
        if (op.exchange) {
          m.dir(a.parent).entries.set(a.name, b.id);
          m.dir(b.parent).entries.set(b.name, a.id);
          return null;
        }
        if (b.id === a.id) return null;
        if (bn) {
          if (an.kind === "dir" && bn.kind !== "dir") throw new ModelError("NOT_DIRECTORY");
          if (an.kind !== "dir" && bn.kind === "dir") throw new ModelError("IS_DIRECTORY");
          if (bn.kind === "dir" && bn.entries.size > 0) throw new ModelError("NOT_EMPTY");
          if (bn.kind === "dir") m.nodes.delete(b.id);
        }
        m.dir(a.parent).entries.delete(a.name);
        m.dir(b.parent).entries.set(b.name, a.id);
        m.gc();
        return null;
      }
      case "symlink": {
        const r = m.resolve(op.path, false);
        if (r.id) throw new ModelError("EXISTS");
        m.dir(r.parent).entries.set(r.name, m.add({ kind: "symlink", target: "/nowhere/x" }));
        return null;
      }
      case "link": {
        const a = m.resolve(op.from, false);
        if (!a.id) throw new ModelError("NOT_FOUND");
        const b = m.resolve(op.to, false);
        if (b.id) throw new ModelError("EXISTS");
        if (m.nodes.get(a.id)!.kind === "dir") throw new ModelError("PERMISSION");
        m.dir(b.parent).entries.set(b.name, a.id);
        return null;
      }
      case "chmod": {
        const r = m.resolve(op.path, true);
        if (!r.id) throw new ModelError("NOT_FOUND");
        const n = m.nodes.get(r.id)!;
        if (n.kind !== "symlink") n.mode = (n.mode & 0o170000) | op.mode;
        return null;
      }
      case "setXattr": {
        const r = m.resolve(op.path, false);
        if (!r.id) throw new ModelError("NOT_FOUND");
        const n = m.nodes.get(r.id)!;
        if (n.kind === "symlink") throw new ModelError("PERMISSION");
        n.xattrs.set("user.k", hex(pattern(op.value, op.value % 200)));
        return null;
      }
      case "truncate": {
        const r = m.resolve(op.path, true);
        if (!r.id) throw new ModelError("NOT_FOUND");
        const n = m.nodes.get(r.id)!;
        if (n.kind === "dir") throw new ModelError("IS_DIRECTORY");
        if (n.kind !== "file") throw new ModelError("INVALID");
        const out = new Uint8Array(op.size);
        out.set(n.data.subarray(0, op.size));
        n.data = out;
        return null;
      }
    }
  } catch (e) {
    if (e instanceof ModelError) return e.code;
    throw e;
  }
}

async function applyFs(
  fs: Ext4,
  op: Op,
  held: Ext4WritableFile[],
): Promise<string | null> {
  try {
    switch (op.op) {
      case "hold":
        held.push(await fs.openWritable(p(op.path)));
        break;
      case "writeHeld":
        if (held.length > 0) {
          await held[op.k % held.length].write(pattern(op.seed, op.size), op.offset);
        }
        break;
      case "closeHeld":
        if (held.length > 0) await held.splice(op.k % held.length, 1)[0].close();
        break;
      case "writeFile":
        await fs.writeFile(p(op.path), pattern(op.seed, op.size), { append: op.append });
        break;
      case "pwrite": {
        const f = await fs.openWritable(p(op.path));
        try {
          await f.write(pattern(op.seed, op.size), op.offset);
        } finally {
          await f.close();
        }
        break;
      }
      case "mkdir":
        await fs.mkdir(p(op.path), { recursive: op.recursive });
        break;
      case "remove":
        await fs.remove(p(op.path), { recursive: op.recursive });
        break;
      case "rename":
        await fs.rename(p(op.from), p(op.to), { noReplace: op.noReplace, exchange: op.exchange });
        break;
      case "symlink":
        await fs.symlink("/nowhere/x", p(op.path));
        break;
      case "link":
        await fs.link(p(op.from), p(op.to));
        break;
      case "chmod":
        await fs.chmod(p(op.path), op.mode);
        break;
      case "setXattr":
        await fs.setXattr(p(op.path), "user.k", pattern(op.value, op.value % 200));
        break;
      case "truncate":
        await fs.truncate(p(op.path), op.size);
        break;
    }
    return null;
  } catch (e) {
    if (e instanceof Ext4Error) return e.code;
    throw e;
  }
}

/** The model as a dump comparable with {@link ourDump} and {@link kernelDump} (times left out). */
async function modelDump(m: Model): Promise<Dump> {
  const out: Dump = {};
  const links = m.links();
  const visit = async (id: number, prefix: string) => {
    const d = m.dir(id);
    for (const name of [...d.entries.keys()].sort()) {
      const cid = d.entries.get(name)!;
      const n = m.nodes.get(cid)!;
      const path = prefix + name;
      if (n.kind === "symlink") {
        out[path] = { mode: "0o120777", nlink: m.nlink(cid, links), link: n.target };
        continue;
      }
      const xattrs = Object.fromEntries([...n.xattrs].sort());
      out[path] = { mode: "0o" + n.mode.toString(8), nlink: m.nlink(cid, links), xattrs };
      if (n.kind === "file") {
        out[path].size = n.data.length;
        out[path].sha = await sha(n.data);
      } else await visit(cid, path + "/");
    }
  };
  await visit(1, "");
  return out;
}

function withoutTimes(d: Dump): Dump {
  const out: Dump = {};
  for (const [k, v] of Object.entries(d)) {
    const { mtime: _m, atime: _a, uid: _u, gid: _g, ...rest } = v;
    out[k] = rest;
  }
  return out;
}

/** A run of the property test: a layout, how many sequences, what they work on. */
interface PropertyVariant {
  layout: Layout;
  numRuns: number;
  ops: fc.Arbitrary<Op[]>;
  /** Fills the fresh image (once) before any sequence runs, through the library. */
  populate?: (fs: Ext4) => Promise<void>;
  /** The same content in the model (every run). */
  populateModel?: (m: Model) => void;
  /** Checks the populated image before the sequences run (`initial`) and after each. */
  checkImage?: (fs: Ext4, initial: boolean) => Promise<void>;
  /** Ops on paths under this top-level directory are counted: some must succeed. */
  focus?: string;
  /** Checks made after all the sequences ran. */
  finish?: () => void;
}

/**
 * The "large htree directories" variant: `/h` holds at least {@link BULK} entries with 200-byte
 * names (every 8th an empty directory) on 1 KiB blocks, so that its index has two levels before
 * the sequence starts, and more until one index node is full, so that the new long names of
 * the sequence split leaves and that index node. The sequence mostly works inside it (creates,
 * unlinks, renames in and out, rmdir of its subdirectories, files in them).
 */
const BULK = 600;
/** The populate stops here at the latest (a node fills long before). */
const BULK_MAX = 2400;
const bulkName = (i: number) => String(i).padStart(4, "0") + "x".repeat(196);
const isBulkDir = (i: number) => i % 8 === 0;
const bulkArb = fc.nat(BULK - 1).map(bulkName);
const bulkDirArb = fc.nat(BULK / 8 - 1).map((k) => bulkName(k * 8));
/** New long names: inserting them splits full leaves (four 200-byte names fill a block). */
const freshLongArb = fc.nat(40).map((k) => bulkName(BULK_MAX + k));

/** The index of directory `path`: its root and the count and limit of every index node below. */
async function htreeShape(fs: Ext4, path: string) {
  const st = await fs.stat(path);
  const inode = await fs.inode(st.ino);
  assert.ok(inode.flags & 0x1000, `${path} is hash-indexed (EXT4_INDEX_FL)`);
  const block = async (logical: number) => {
    const b = await fs.mapBlock(inode, logical);
    assert.ok(b !== null, `${path}: logical block ${logical} is mapped`);
    return await fs.readBlock(b);
  };
  const { info, index } = parseDxRoot(await block(0), fs.superblock, st.ino);
  const nodes: { count: number; limit: number }[] = [];
  if (info.indirectLevels >= 1) {
    for (const e of index.entries) {
      const node = parseDxNode(await block(e.block), fs.superblock, st.ino);
      nodes.push({ count: node.count, limit: node.limit });
    }
  }
  return { levels: info.indirectLevels, rootCount: index.count, nodes };
}

const htreePathArb: fc.Arbitrary<string[]> = fc.oneof(
  { weight: 4, arbitrary: nameArb.map((n) => ["h", n]) },
  { weight: 3, arbitrary: bulkArb.map((n) => ["h", n]) },
  { weight: 3, arbitrary: freshLongArb.map((n) => ["h", n]) },
  { weight: 2, arbitrary: fc.tuple(bulkDirArb, nameArb).map(([d, n]) => ["h", d, n]) },
  { weight: 1, arbitrary: bulkDirArb.map((n) => ["h", n]) },
  { weight: 2, arbitrary: pathArb },
);
const htreeTargetArb: fc.Arbitrary<string[]> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("a", "b", "d", "e").map((n) => ["h", n]) },
  { weight: 2, arbitrary: bulkArb.map((n) => ["h", n]) },
  { weight: 2, arbitrary: freshLongArb.map((n) => ["h", n]) },
  { weight: 1, arbitrary: targetArb },
  { weight: 1, arbitrary: htreePathArb },
);

/**
 * Random sequences in and around `/h`, with a burst of new long names somewhere: leaf splits,
 * enough of them to split the nearly full index node now and then.
 */
const htreeOpsArb: fc.Arbitrary<Op[]> = fc.tuple(
  opsArbOver(htreePathArb, htreeTargetArb),
  fc.array(freshLongArb, { maxLength: 16 }),
  fc.nat(),
).map(([ops, names, at]) => {
  const burst: Op[] = names.map((n, k) => ({
    op: "writeFile",
    path: ["h", n],
    seed: k,
    size: k % 3 === 0 ? 0 : 700,
    append: false,
  }));
  const i = at % (ops.length + 1);
  return [...ops.slice(0, i), ...burst, ...ops.slice(i)];
});

function htreeVariant(layout: Layout, numRuns: number): PropertyVariant {
  /** How many bulk entries the populate made (at least BULK). */
  let count = 0;
  /** The root's entries after the populate; runs that ended with more split an index node. */
  let rootCount = 0;
  let nodeSplits = 0;
  return {
    layout,
    numRuns,
    ops: htreeOpsArb,
    focus: "h",
    populate: async (fs) => {
      await fs.mkdir("/h");
      const aNodeIsFull = async () =>
        (await htreeShape(fs, "/h")).nodes.some((n) => n.count === n.limit);
      for (count = 0; count < BULK_MAX; count++) {
        if (count >= BULK && await aNodeIsFull()) break;
        if (isBulkDir(count)) await fs.mkdir(`/h/${bulkName(count)}`);
        else await fs.writeFile(`/h/${bulkName(count)}`, new Uint8Array());
      }
    },
    populateModel: (m) => {
      const h = m.add({ kind: "dir", mode: 0o40755, entries: new Map(), xattrs: new Map() });
      m.dir(1).entries.set("h", h);
      for (let i = 0; i < count; i++) {
        m.dir(h).entries.set(
          bulkName(i),
          m.add(
            isBulkDir(i)
              ? { kind: "dir", mode: 0o40755, entries: new Map(), xattrs: new Map() }
              : { kind: "file", mode: 0o100644, data: new Uint8Array(), xattrs: new Map() },
          ),
        );
      }
    },
    checkImage: async (fs, initial) => {
      const shape = await htreeShape(fs, "/h");
      assert.ok(shape.levels >= 1, `/h has ${shape.levels} index levels below the root`);
      assert.ok(shape.rootCount >= 2 && shape.nodes.length === shape.rootCount);
      if (initial) {
        assert.ok(count < BULK_MAX, `no index node of /h filled up with ${count} entries`);
        assert.ok(shape.nodes.some((n) => n.count === n.limit), JSON.stringify(shape));
        rootCount = shape.rootCount;
      } else if (shape.rootCount > rootCount) nodeSplits++;
    },
    // A full index node splits on its next leaf split: most runs get there.
    finish: () => assert.ok(nodeSplits > 0, `no index node split in ${numRuns} runs`),
  };
}

const PROPERTY_VARIANTS: PropertyVariant[] = [
  ...[EXT4, EXT2, LAYOUTS[3], LAYOUTS[9]].map((layout) => ({ layout, numRuns: 15, ops: opsArb })),
  // The rest of the feature matrix: ext3, ^metadata_csum, ^64bit, fewer sequences each (enough
  // that each common operation succeeds at least once but in about one CI run in 10^4).
  ...[LAYOUTS[1], LAYOUTS[4], LAYOUTS[5]].map((layout) => ({ layout, numRuns: 12, ops: opsArb })),
  // Large htree directories: extents and large_dir (ext4), block maps (ext3).
  htreeVariant({
    name: "ext4-1k-large_dir-htree",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024", "-O", "large_dir"],
    size: "40M",
  }, 10),
  htreeVariant({ name: "ext3-1k-htree", mkfs: "mkfs.ext3", args: ["-b", "1024"], size: "40M" }, 8),
];

for (
  const { layout, numRuns, ops: opsArb, populate, populateModel, checkImage, focus, finish }
    of PROPERTY_VARIANTS
) {
  testWith(
    `property (${layout.name}): random operation sequences on Ext4 match an in-memory model, read back through the same object after every step; e2fsck and the kernel agree at the end`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      let image = await mkfsImage(dir.path, layout);
      if (populate) {
        const dev = new MemoryBlockDevice(image);
        const fs = await Ext4.openDevice(dev, { readOnly: false });
        try {
          await populate(fs);
          await checkImage?.(fs, true);
        } finally {
          await fs.close();
        }
        image = dev.bytes;
      }
      const img = `${dir.path}/prop.img`;
      const outcomes = new Map<string, number>();
      let focused = 0;
      await fc.assert(
        fc.asyncProperty(opsArb, async (ops) => {
          const dev = new MemoryBlockDevice(Uint8Array.from(image));
          const fs = await Ext4.openDevice(dev, { readOnly: false });
          const model = new Model();
          populateModel?.(model);
          const held: Ext4WritableFile[] = [];
          try {
            for (const [i, op] of ops.entries()) {
              const want = applyModel(model, op);
              const got = await applyFs(fs, op, held);
              assert.equal(got, want, `step ${i}: ${JSON.stringify(op)}`);
              const key = `${op.op}:${got ?? "ok"}`;
              outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
              if (got === null && focus && JSON.stringify(op).includes(`["${focus}",`)) focused++;
              assert.deepEqual(
                withoutTimes(await ourDump(fs)),
                await modelDump(model),
                `after step ${i}: ${JSON.stringify(op)}`,
              );
              const root: Ext4Stat = await fs.stat("/");
              assert.equal(root.nlink, model.nlink(1));
              // Held files read what the model says, linked or not.
              for (const [k, h] of held.entries()) {
                const want = model.held[k].data;
                assert.deepEqual(await h.read(0, want.length + 1), want, `held ${k} after ${i}`);
              }
            }
            // A crash now: e2fsck's orphan processing (the kernel's at mount) frees exactly the
            // held files that lost their last name, and finds nothing else to repair.
            const live = new Set(model.nodes.values());
            const orphans = new Set(model.held.filter((n) => !live.has(n))).size;
            const crash = `${dir.path}/crash.img`;
            await Deno.writeFile(crash, dev.bytes);
            // A journal-less filesystem being written says "not clean" (VALID_FS cleared, as
            // the kernel's rw mount does): e2fsck then marks it clean, exit 1.
            const crashSb = await readSuperblock(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
            const unclean = (crashSb.state & State.VALID) === 0;
            if (unclean) assert.ok(!layoutHasJournal(layout), "VALID_FS cleared with a journal");
            // A journaled filesystem being written (once something was committed) says
            // needs_recovery, its journal holding the commits not yet checkpointed: e2fsck
            // replays the journal first (exit 0 or 1 as e2fsck counts the replay: nothing but
            // the replay and the orphans below may be reported).
            const journaled = (crashSb.incompat & Incompat.RECOVER) !== 0;
            if (journaled) assert.ok(layoutHasJournal(layout), "needs_recovery without a journal");
            const y = await run("e2fsck", ["-fy", crash]);
            if (journaled) assert.ok(y.code === 0 || y.code === 1, y.stdout);
            else assert.equal(y.code, unclean ? 1 : 0, y.stdout);
            if (journaled) assert.match(y.stdout + y.stderr, /: recovering journal$/m);
            const lines = (y.stdout + y.stderr).split("\n").filter((l) =>
              l.trim() &&
              !/^Pass \d|^e2fsck \d|FILE SYSTEM WAS MODIFIED|: \d+\/\d+ files|: recovering journal$/
                .test(l)
            );
            assert.equal(lines.length, orphans, y.stdout);
            for (const l of lines) assert.match(l, /^Clearing orphaned inode \d+ /, y.stdout);
            // The big directory is still the multi-level index the sequence worked in.
            await checkImage?.(fs, false);
          } finally {
            await fs.close();
          }
          const check = await fsck(dir.path, dev.bytes);
          assert.equal(check.code, 0, check.output);
          await Deno.writeFile(img, dev.bytes);
          const kernel = await withKernelMount(img, kernelDump, { readOnly: true });
          assert.deepEqual(withoutTimes(kernel), await modelDump(model));
        }),
        { numRuns },
      );
      // The sequences did real work: a good share of the operations succeeded, the common
      // ones each at least once.
      const total = [...outcomes.values()].reduce((x, y) => x + y, 0);
      const ok = [...outcomes].filter(([k]) => k.endsWith(":ok")).reduce((x, [, n]) => x + n, 0);
      assert.ok(ok >= total / 4, `only ${ok} of ${total} operations succeeded: ${[...outcomes]}`);
      for (const op of ["writeFile", "pwrite", "mkdir", "remove", "rename", "hold"]) {
        assert.ok((outcomes.get(`${op}:ok`) ?? 0) > 0, `${op} never succeeded: ${[...outcomes]}`);
      }
      finish?.();
      // The htree variant worked inside its big directory, not only around it.
      if (focus) {
        assert.ok(focused >= numRuns * 5, `only ${focused} operations in /${focus} succeeded`);
      }
    },
  );
}
