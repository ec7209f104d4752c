/**
 * The Ext4 API over real images: path resolution, errors, directory cookies, streaming,
 * seek data/hole, files beyond 2 TiB, refusals (journal needing recovery, encrypted files),
 * casefolded lookups.
 */
import assert from "node:assert/strict";
import { Errno, Ext4, Ext4Error, MemoryBlockDevice } from "../mod.ts";
import { inodeLocation } from "../lib/ondisk/inode.ts";
import { makeImage, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs"];
const enc = new TextEncoder();
const dec = new TextDecoder();

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Ext4Error, `not an Ext4Error: ${e}`);
    return e.code;
  }
  return "no error";
}

testWith("paths, symlinks, errors, cookies, streaming, seek, huge files", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/a.img`;
  await makeImage(img, {
    args: ["-b", "4096"],
    size: "64M",
    populate: async (m) => {
      await Deno.mkdir(`${m}/a/b/c`, { recursive: true });
      await Deno.writeTextFile(`${m}/a/b/c/file`, "content\n");
      await Deno.symlink("b", `${m}/a/lb`);
      await Deno.symlink("/a/b/c/file", `${m}/abs`);
      await Deno.symlink("loop2", `${m}/loop1`);
      await Deno.symlink("loop1", `${m}/loop2`);
      await Deno.symlink("../..", `${m}/a/b/up`);
      for (let i = 0; i < 500; i++) await Deno.writeTextFile(`${m}/a/n${i}`, "");
      const f = await Deno.open(`${m}/huge`, { write: true, create: true });
      await f.truncate(3 * 2 ** 40 + 10); // 3 TiB + 10
      await f.seek(3 * 2 ** 40 + 4, Deno.SeekMode.Start);
      await f.write(enc.encode("TAIL!!"));
      f.close();
      const g = await Deno.open(`${m}/stream`, { write: true, create: true });
      const chunk = new Uint8Array(3 * 1024 * 1024 + 5);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
      await g.write(chunk);
      g.close();
    },
  });
  const fs = await Ext4.open(img);
  try {
    // Path resolution like a shell.
    assert.equal(dec.decode(await fs.readFile("/a/b/c/file")), "content\n");
    assert.equal(dec.decode(await fs.readFile("a/lb/c/file")), "content\n");
    assert.equal(dec.decode(await fs.readFile("/abs")), "content\n");
    assert.equal(dec.decode(await fs.readFile("/a/./b/../b/c//file")), "content\n");
    assert.equal((await fs.stat("/a/b/up")).ino, 2);
    assert.equal(dec.decode(await fs.readFile("/a/b/up/a/lb/c/../c/file")), "content\n");
    assert.equal((await fs.stat("/../..")).ino, 2); // ".." of the root is the root
    assert.equal((await fs.stat(".")).ino, 2);
    assert.equal((await fs.stat("a/b/")).ino, (await fs.stat("/a//b")).ino);
    assert.equal((await fs.lstat("/a/lb")).type, "symlink");
    assert.equal((await fs.lstat("/a/lb/")).type, "dir"); // a trailing slash follows it
    assert.equal((await fs.stat("/a/lb")).type, "dir");
    assert.equal(await fs.readLink("/a/lb"), "b");
    // Errors.
    assert.equal(await codeOf(fs.stat("/nope")), "NOT_FOUND");
    assert.equal(await codeOf(fs.stat("/a/b/c/file/x")), "NOT_DIRECTORY");
    assert.equal(await codeOf(fs.stat("/a/b/c/file/")), "NOT_DIRECTORY");
    assert.equal(await codeOf(fs.readFile("/a")), "IS_DIRECTORY");
    const loop = await fs.stat("/loop1").catch((e) => e);
    assert.ok(loop instanceof Ext4Error && loop.errno === Errno.ELOOP);
    assert.equal((await fs.lstat("/loop1")).type, "symlink");
    const nodata = await fs.getXattr("/abs", "user.none").catch((e) => e);
    assert.ok(nodata instanceof Ext4Error && nodata.errno === Errno.ENODATA);
    // readDir and resumable readDirIno.
    const names: string[] = [];
    for await (const e of fs.readDir("/a")) names.push(e.name);
    assert.equal(names.length, 502);
    assert.ok(!names.includes(".") && !names.includes(".."));
    const aIno = (await fs.stat("/a")).ino;
    const all: { name: string; offset: number }[] = [];
    for await (const e of fs.readDirIno(aIno)) all.push(e);
    assert.equal(all.length, 504);
    assert.ok(all.every((e) => e.offset > 0));
    const resumed: string[] = [];
    for await (const e of fs.readDirFrom(aIno, all[250].offset)) resumed.push(e.name);
    assert.deepEqual(resumed, all.slice(251).map((e) => e.name));
    assert.equal((await fs.lookup(aIno, "n42")).type, "file");
    assert.equal(await codeOf(fs.lookup(aIno, "n500")), "NOT_FOUND");
    // Files beyond 2 TiB.
    const huge = await fs.stat("/huge");
    assert.equal(huge.size, 3 * 2 ** 40 + 10);
    assert.equal(dec.decode(await fs.read(huge.ino, 3 * 2 ** 40 + 4, 100)), "TAIL!!");
    assert.deepEqual([...await fs.read(huge.ino, 2 ** 40, 4)], [0, 0, 0, 0]);
    assert.equal(await fs.seekData(huge.ino, 0, "data"), 3 * 2 ** 40);
    assert.equal(await fs.seekData(huge.ino, 0, "hole"), 0);
    assert.equal(await fs.seekData(huge.ino, 3 * 2 ** 40, "hole"), 3 * 2 ** 40 + 10);
    const nx = await fs.seekData(huge.ino, 3 * 2 ** 40 + 10, "data").catch((e) => e);
    assert.ok(nx instanceof Ext4Error && nx.errno === Errno.ENXIO);
    // Streaming equals a whole read.
    const f = await fs.open("/stream");
    const parts: Uint8Array[] = [];
    for await (const c of f.readable()) parts.push(c);
    const streamed = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) (streamed.set(p, o), o += p.length);
    assert.equal(streamed.length, f.stat.size);
    assert.deepEqual(streamed, await fs.readFile("/stream"));
    assert.equal(streamed[3 * 1024 * 1024 + 4], ((3 * 1024 * 1024 + 4) * 7) & 0xff);
    assert.deepEqual(await f.read(1000, 5), streamed.subarray(1000, 1005));
    await f.close();
    assert.equal(await codeOf(fs.open("/a")), "IS_DIRECTORY");
    assert.equal(await codeOf(fs.open("/a/b/c/file/")), "NOT_DIRECTORY");
    // walk: parents first, sorted.
    const walked: string[] = [];
    for await (const { path } of fs.walk("/a/b")) walked.push(path);
    assert.deepEqual(walked, ["/a/b", "/a/b/c", "/a/b/c/file", "/a/b/up"]);
    const st = fs.statfs();
    assert.equal(st.blockSize, 4096);
    assert.ok(st.freeBlocks > 0 && st.files > 0);
  } finally {
    await fs.close();
  }
});

testWith(
  "a journal needing recovery: replayed in memory by default, refused or read raw on request",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/j.img`;
    await makeImage(img, { size: "16M" });
    await runOk("debugfs", ["-w", "-R", "feature needs_recovery", img]);
    const bytes = await Deno.readFile(img);
    const err = await Ext4.open(new MemoryBlockDevice(bytes), { recovery: "refuse" }).catch((e) =>
      e
    );
    assert.ok(err instanceof Ext4Error);
    assert.equal(err.code, "NEEDS_RECOVERY");
    assert.match(err.message, /needs journal recovery/);
    for (const options of [{}, { allowDirtyJournal: true }, { recovery: "none" as const }]) {
      const notices: string[] = [];
      const copy = bytes.slice();
      const fs = await Ext4.open(new MemoryBlockDevice(copy), {
        ...options,
        onNotice: (m) => notices.push(m),
      });
      assert.equal((await fs.stat("/")).type, "dir");
      await fs.close();
      assert.equal(notices.length, 1);
      assert.match(
        notices[0],
        Object.keys(options).length ? /unreplayed state/ : /replayed in memory/,
      );
      assert.deepEqual(copy, bytes, "opening never writes");
    }
  },
);

testWith(
  "an unsupported incompat feature is refused with the reason",
  ["mkfs.ext4", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/u.img`;
    await makeImage(img, { size: "16M" });
    const bytes = await Deno.readFile(img);
    bytes[1024 + 0x60] |= 0x01; // INCOMPAT_COMPRESSION
    const err = await Ext4.open(new MemoryBlockDevice(bytes), { ignoreChecksums: true }).catch((
      e,
    ) => e);
    assert.ok(err instanceof Ext4Error);
    assert.equal(err.code, "UNSUPPORTED");
    assert.match(err.message, /compression/);
  },
);

testWith("encrypted files are listed but reading them is refused", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/e.img`;
  await makeImage(img, {
    size: "16M",
    populate: (m) => Deno.writeTextFile(`${m}/secret`, "x"),
  });
  await runOk("debugfs", ["-w", "-R", "set_inode_field /secret flags 0x80800", img]);
  const fs = await Ext4.open(img);
  try {
    const names: string[] = [];
    for await (const e of fs.readDir("/")) names.push(e.name);
    assert.ok(names.includes("secret"));
    const err = await fs.readFile("/secret").catch((e) => e);
    assert.ok(err instanceof Ext4Error);
    assert.equal(err.code, "UNSUPPORTED");
    assert.match(err.message, /encrypted/);
  } finally {
    await fs.close();
  }
});

// This kernel lacks CONFIG_UNICODE, so the image is built by mkfs -d and the directory
// flagged casefold with debugfs (a small linear directory: no hashes to recompute).
testWith(
  "casefolded directories look names up case-insensitively",
  ["mkfs.ext4", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/ci`, { recursive: true });
    await Deno.writeTextFile(`${src}/ci/Hello.TXT`, "hi");
    await Deno.writeTextFile(`${src}/ci/Straße`, "ss");
    await Deno.writeTextFile(`${src}/ci/hello.txt2`, "");
    const img = `${dir.path}/c.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-O", "casefold", "-d", src, img, "16M"]);
    await runOk("debugfs", ["-w", "-R", "set_inode_field /ci flags 0x40080000", img]);
    const fs = await Ext4.open(img);
    try {
      assert.equal(dec.decode(await fs.readFile("/ci/Hello.TXT")), "hi");
      assert.equal(dec.decode(await fs.readFile("/ci/hello.txt")), "hi");
      assert.equal(dec.decode(await fs.readFile("/ci/HELLO.txt")), "hi");
      assert.equal(dec.decode(await fs.readFile("/ci/STRASSE")), "ss");
      assert.equal(await codeOf(fs.stat("/ci/nothere")), "NOT_FOUND");
      // Outside casefolded directories names stay exact.
      assert.equal(await codeOf(fs.stat("/CI")), "NOT_FOUND");
    } finally {
      await fs.close();
    }
  },
);

testWith(
  "statfs computes the overhead like the kernel when the superblock lacks it",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const cases: [string, string[]][] = [
      ["mkfs.ext4", ["-b", "4096"]],
      ["mkfs.ext4", ["-b", "1024", "-O", "meta_bg,^resize_inode"]],
      ["mkfs.ext2", []],
    ];
    for (const [mkfs, args] of cases) {
      const img = `${dir.path}/o.img`;
      await makeImage(img, { mkfs, args, size: "200M" });
      // Zero s_overhead_clusters (and fix the superblock checksum) with debugfs.
      await runOk("debugfs", ["-w", "-R", "ssv overhead_clusters 0", img]);
      const want = await withKernelMount(
        img,
        (m) =>
          runOk("python3", [
            "-c",
            "import os,sys;s=os.statvfs(sys.argv[1]);print(s.f_blocks,s.f_bfree,s.f_bavail)",
            m,
          ]),
        { readOnly: true },
      );
      const fs = await Ext4.open(img);
      assert.equal(fs.superblock.overheadClusters, 0);
      const sf = fs.statfs();
      await fs.close();
      assert.equal(
        `${sf.blocks} ${sf.freeBlocks} ${sf.availBlocks}`,
        want.trim(),
        `${mkfs} ${args}`,
      );
    }
  },
);

testWith(
  "lookups in a large directory without a hash index (mkfs -d)",
  ["mkfs.ext4", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/flat`, { recursive: true });
    for (let i = 0; i < 3000; i++) await Deno.writeFile(`${src}/flat/entry-${i}`, new Uint8Array());
    const img = `${dir.path}/flat.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-b", "1024", "-d", src, img, "32M"]);
    const fs = await Ext4.open(img);
    try {
      const flat = await fs.stat("/flat");
      assert.equal(flat.flags & 0x1000, 0, "the directory must be unindexed for this test");
      const byName = new Map<string, number>();
      for await (const e of fs.readDir("/flat")) byName.set(e.name, e.ino);
      assert.equal(byName.size, 3000);
      for (const [name, ino] of byName) {
        assert.equal(await fs.lookupIno(flat.ino, name), ino);
      }
      assert.equal(await fs.lookupIno(flat.ino, "entry-3000"), null);
      assert.equal(await fs.lookupIno(flat.ino, "entry-1"), byName.get("entry-1"));
      assert.equal((await fs.lookup(flat.ino, "..")).ino, 2);
    } finally {
      await fs.close();
    }
  },
);

testWith("cache invalidation sees changes made to the device", ["mkfs.ext4"], async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/src`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/f`, "before");
  const img = `${dir.path}/i.img`;
  await runOk("mkfs.ext4", ["-q", "-F", "-O", "^metadata_csum", "-d", src, img, "8M"]);
  const dev = new MemoryBlockDevice(await Deno.readFile(img));
  const fs = await Ext4.open(dev);
  const st = await fs.stat("/f");
  assert.equal(dec.decode(await fs.readFile("/f")), "before");
  // Change the mode in the inode record behind the caches' back.
  const at = inodeLocation(fs.superblock, fs.groups, st.ino);
  await dev.write(at, new Uint8Array([0xed, 0x81])); // 0o100755
  assert.equal((await fs.stat("/f")).mode, st.mode, "cached until invalidated");
  fs.invalidateBlock(Math.floor(at / fs.superblock.blockSize));
  fs.invalidateInode(st.ino);
  assert.equal((await fs.stat("/f")).mode, 0o100755);
  await fs.close();
});

testWith("a 4 TiB hole file: positional reads work, readFile is refused, bad lengths are INVALID", [
  "mkfs.ext4",
  "debugfs",
], async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/s.img`;
  await runOk("mkfs.ext4", ["-q", "-F", img, "16M"]);
  await runOk("debugfs", ["-w", "-R", "write /dev/null f", img]);
  await runOk("debugfs", ["-w", "-R", "sif /f size 0x40000000000", img]); // 4 TiB, all hole
  const fs = await Ext4.open(img);
  try {
    const ino = (await fs.stat("/f")).ino;
    const head = await fs.read(ino, 2 ** 41, 4096);
    assert.deepEqual(head, new Uint8Array(4096));
    assert.equal(await codeOf(fs.readFile("/f")), "INVALID");
    assert.equal(await codeOf(fs.read(ino, 0, NaN)), "INVALID");
  } finally {
    await fs.close();
  }
});

testWith(
  "readDirFrom resumes after any cookie (inline and hash-indexed directories)",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/r.img`;
    await makeImage(img, {
      args: ["-b", "4096", "-O", "inline_data"],
      size: "32M",
      populate: async (m) => {
        await Deno.mkdir(`${m}/small`);
        for (const n of ["x", "yy", "zzz"]) await Deno.writeTextFile(`${m}/small/${n}`, "");
        await Deno.mkdir(`${m}/large`);
        for (let i = 0; i < 2000; i++) await Deno.writeTextFile(`${m}/large/entry-${i}`, "");
      },
    });
    const fs = await Ext4.open(img);
    try {
      for (const name of ["/small", "/large"]) {
        const ino = (await fs.stat(name)).ino;
        const all: { name: string; offset: number }[] = [];
        for await (const e of fs.readDirIno(ino)) all.push({ name: e.name, offset: e.offset });
        assert.equal(new Set(all.map((e) => e.name)).size, all.length, `${name}: duplicates`);
        assert.ok(all.some((e) => e.name === "..") && all.some((e) => e.name === "."));
        const step = Math.max(1, Math.floor(all.length / 25));
        for (let i = 0; i < all.length; i += step) {
          const rest: string[] = [];
          for await (const e of fs.readDirFrom(ino, all[i].offset)) rest.push(e.name);
          assert.deepEqual(rest, all.slice(i + 1).map((e) => e.name), `${name} after #${i}`);
        }
      }
    } finally {
      await fs.close();
    }
  },
);

testWith("readdir skips a corrupt directory block like the kernel; lookups through it fail", [
  "mkfs.ext4",
  "debugfs",
], async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/d.img`;
  await makeImage(img, { size: "8M", args: ["-b", "1024", "-O", "metadata_csum,^dir_index"] });
  // A directory of two blocks: names 000..059 fill block 0, the rest spill into block 1.
  const names = Array.from(
    { length: 90 },
    (_, i) => `entry-with-a-long-name-${String(i).padStart(3, "0")}`,
  );
  await runOk("debugfs", ["-w", "-R", "mkdir /d", img]);
  const script = names.map((n) => `write /dev/null /d/${n}`).join("\n");
  await runOk("sh", ["-c", `printf '%s\\n' "$1" | debugfs -w -f - "$2"`, "sh", script, img]);
  const blocks = (await runOk("debugfs", ["-R", "blocks /d", img])).trim().split(/\s+/).map(Number);
  assert.ok(blocks.length >= 2, `directory has ${blocks.length} blocks`);
  const bytes = await Deno.readFile(img);
  const before = new Set<string>();
  {
    const fs = await Ext4.open(new MemoryBlockDevice(bytes.slice()));
    for await (const e of fs.readDir("/d")) before.add(e.name);
    await fs.close();
  }
  assert.equal(before.size, names.length);
  // Flip a byte of a name in the second block: its checksum no longer matches.
  bytes[blocks[1] * 1024 + 20] ^= 0x01;
  const notices: string[] = [];
  const fs = await Ext4.open(new MemoryBlockDevice(bytes), { onNotice: (m) => notices.push(m) });
  try {
    const after: string[] = [];
    for await (const e of fs.readDir("/d")) after.push(e.name);
    assert.ok(after.length > 0 && after.length < names.length, `${after.length} listed`);
    assert.ok(after.every((n) => before.has(n)));
    assert.equal(notices.length, 1);
    assert.match(notices[0], /corrupt directory inode \d+ \(logical block 1\).*skipped/);
    const missing = names.find((n) => !after.includes(n))!;
    await assert.rejects(
      fs.stat(`/d/${missing}`),
      (e) => e instanceof Ext4Error && e.code === "CORRUPT",
    );
  } finally {
    await fs.close();
  }
});
