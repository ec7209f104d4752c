/**
 * Oracle tests: images over a feature matrix, populated through a kernel loop mount, listed
 * by the kernel (tree_listing.py on a read-only mount) and by ext4ts (lib/report/tree_listing.ts);
 * the two listings must be identical, all columns.
 */
import assert from "node:assert/strict";
import { READER_MATRIX } from "./reader_matrix.ts";
import { gunzipSync } from "node:zlib";
import { Ext4, MemoryBlockDevice } from "../mod.ts";
import { InodeFlags } from "../lib/ondisk/inode.ts";
import { parseExtentHeader } from "../lib/ondisk/extent.ts";
import { treeListing, treeListingBytes } from "../lib/report/tree_listing.ts";
import {
  CORPUS,
  makeImage,
  ROOT,
  run,
  runOk,
  tempDir,
  testWith,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";

const POPULATE = `${ROOT}tests/fixtures/populate_tree.py`;
/** Prints `ino st_blocks atime_ns` of every object under argv[1]. */
const STAT_EXTRA = `
import os, sys
for d, dirs, files in os.walk(sys.argv[1]):
    for n in [d] + [os.path.join(d, f) for f in dirs + files]:
        st = os.lstat(n)
        print(st.st_ino, st.st_blocks, st.st_atime_ns)
`;
/** statvfs of argv[1] in the order of Ext4Statfs. */
const STATVFS = `
import os, sys
s = os.statvfs(sys.argv[1])
print(s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_bsize)
`;
const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "python3", "setfacl"];

/**
 * The on-disk structures an image holds (the reading paths its listing went through):
 * "extent depth N" (the deepest extent tree), "unwritten extent", "double indirect" and
 * "triple indirect" (block maps), "htree" and "big htree" (/big indexed), "inline file",
 * "inline dir", "slow symlink", "xattr block".
 */
async function structuresOf(fs: Ext4): Promise<Set<string>> {
  const found = new Set<string>();
  let depth = -1;
  for await (const { path, stat } of fs.walk("/")) {
    const inode = await fs.inode(stat.ino);
    const v = new DataView(inode.iBlock.buffer, inode.iBlock.byteOffset, 60);
    if (inode.hasInlineData) found.add(stat.type === "dir" ? "inline dir" : "inline file");
    else if (stat.type === "symlink" && stat.size >= 60) found.add("slow symlink");
    else if (inode.usesExtents && (stat.type === "file" || stat.type === "dir")) {
      depth = Math.max(depth, parseExtentHeader(inode.iBlock, path).depth);
      if ((await fs.blockRuns(inode)).some((r) => r.unwritten)) found.add("unwritten extent");
    } else if (stat.type === "file") {
      if (v.getUint32(13 * 4, true) !== 0) found.add("double indirect");
      if (v.getUint32(14 * 4, true) !== 0) found.add("triple indirect");
    }
    if (stat.type === "dir" && (stat.flags & InodeFlags.INDEX) !== 0) {
      found.add(path === "/big" ? "big htree" : "htree");
    }
    if (inode.fileAcl !== 0) found.add("xattr block");
  }
  if (depth >= 0) found.add(`extent depth ${depth}`);
  return found;
}

function firstDifference(a: string, b: string): string {
  const la = a.split("\n");
  const lb = b.split("\n");
  const out: string[] = [];
  for (let i = 0; i < Math.max(la.length, lb.length) && out.length < 10; i++) {
    if (la[i] !== lb[i]) out.push(`line ${i + 1}:\n  kernel: ${la[i]}\n  ext4ts: ${lb[i]}`);
  }
  return out.join("\n");
}

for (const c of READER_MATRIX) {
  testWith(`oracle: ${c.name} reads exactly as the kernel`, NEEDS, async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await makeImage(img, {
      mkfs: c.mkfs,
      args: c.args,
      size: c.size ?? "96M",
      populate: (m) => runOk("python3", [POPULATE, m, ...(c.populate ?? [])]).then(() => {}),
    });
    // The listing, plus the stat fields it lacks (st_blocks, atime) for every object.
    const [kernel, extra, statvfs] = await withKernelMount(
      img,
      async (m) => [
        await runOk("python3", [TREE_LISTING, m]),
        await runOk("python3", ["-c", STAT_EXTRA, m]),
        await runOk("python3", ["-c", STATVFS, m]),
      ],
      { readOnly: true },
    );
    const fs = await Ext4.open(img);
    try {
      const ours = await treeListing(fs);
      assert.ok(kernel.split("\n").length > 100, "the kernel listing is suspiciously short");
      if (ours !== kernel) assert.fail(firstDifference(kernel, ours));
      // The image really holds what this case is meant to prove read.
      const held = await structuresOf(fs);
      const missing = (c.holds ?? []).filter((h) => !held.has(h));
      assert.deepEqual(missing, [], `the image lacks them (it holds: ${[...held].join(", ")})`);
      // Every path resolves by name (htree lookups for the large directories) to the
      // inode the kernel reports.
      let looked = 0;
      for (const line of kernel.split("\n").slice(1)) {
        const [path, , , , , , , , , ino] = line.split("\t");
        if (!path || !path.startsWith("/")) continue; // hex-shown names
        const st = await fs.lstat(path);
        if (String(st.ino) !== ino) {
          assert.fail(`lookup of ${path}: inode ${st.ino}, kernel ${ino}`);
        }
        looked++;
      }
      assert.ok(looked > 100);
      const mismatches: string[] = [];
      for (const line of extra.trim().split("\n")) {
        const [ino, blocks, atime] = line.split(" ");
        const st = await fs.getattr(Number(ino));
        const ns = BigInt(st.atime.sec) * 1_000_000_000n + BigInt(st.atime.nsec);
        if (String(st.blocks) !== blocks || String(ns) !== atime) {
          mismatches.push(`inode ${ino}: kernel ${blocks} ${atime}, ext4ts ${st.blocks} ${ns}`);
        }
      }
      assert.deepEqual(mismatches.slice(0, 5), []);
      const sf = fs.statfs();
      assert.equal(
        [sf.blocks, sf.freeBlocks, sf.availBlocks, sf.files, sf.freeFiles, sf.blockSize].join(" "),
        statvfs.trim(),
        "statfs",
      );
    } finally {
      await fs.close();
    }
  });
}

testWith(
  "oracle: the corpus's kernel-written ext2 image reads as its kernel listing",
  [],
  async () => {
    const dir = `${CORPUS}/kernel/ext2_control_nojournal`;
    const bytes = new Uint8Array(gunzipSync(await Deno.readFile(`${dir}/umount.img.gz`)));
    const want = await Deno.readTextFile(`${dir}/umount.kr.tsv`);
    const fs = await Ext4.open(new MemoryBlockDevice(bytes));
    try {
      const ours = await treeListing(fs);
      if (ours !== want) assert.fail(firstDifference(want, ours));
    } finally {
      await fs.close();
    }
  },
);

/** Creates objects whose names are not valid UTF-8 (raw bytes) under argv[1]. */
const POPULATE_RAW_NAMES = String.raw`
import os, sys
m = os.fsencode(sys.argv[1])
names = [b"bad\xff", b"half\xe2\x82", b"overlong\xc0\xaf", b"surrogate\xed\xa0\x80",
         b"beyond\xf4\x90\x80\x80", b"latin1 caf\xe9", b"ok caf\xc3\xa9", b"\xee\x80\x80",
         b"\xff", b"\x80lead", b"ctl\x01\xfe", b"back\\slash\xfa", b"plain"]
for n in names:
    fd = os.open(m + b"/" + n, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, n)
    os.close(fd)
os.mkdir(m + b"/dir\xfe")
for n in names[:4]:
    os.close(os.open(m + b"/dir\xfe/" + n, os.O_CREAT | os.O_WRONLY, 0o600))
os.symlink(b"target\xff", m + b"/dir\xfe/link\xf5")
os.link(m + b"/bad\xff", m + b"/dir\xfe/hard\xc1")
`;

testWith("oracle: names that are not valid UTF-8 list byte for byte as the kernel's", [
  "root",
  "loop",
  "kernel-ext4",
  "mkfs.ext4",
  "python3",
], async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/fs.img`;
  await makeImage(img, {
    args: ["-b", "4096"],
    size: "16M",
    populate: (m) => runOk("python3", ["-c", POPULATE_RAW_NAMES, m]).then(() => {}),
  });
  const kernel = await withKernelMount(img, async (m) => {
    const r = await run("python3", [TREE_LISTING, m]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdoutBytes;
  }, { readOnly: true });
  const fs = await Ext4.open(img);
  try {
    const ours = await treeListingBytes(fs);
    const dec = new TextDecoder();
    assert.ok(kernel.includes(0xff), "the kernel listing holds a raw 0xff byte");
    if (!bytesEqual(ours, kernel)) {
      assert.fail(firstDifference(dec.decode(kernel), dec.decode(ours)));
    }
    // Lookups by the raw bytes find the same inodes.
    const sub = await fs.lookupIno(2, new Uint8Array([0x64, 0x69, 0x72, 0xfe]));
    assert.ok(sub !== null);
    const bad = await fs.lookupIno(2, new Uint8Array([0x62, 0x61, 0x64, 0xff]));
    const hard = await fs.lookupIno(sub, new Uint8Array([0x68, 0x61, 0x72, 0x64, 0xc1]));
    assert.ok(bad !== null && bad === hard);
    // The U+FFFD spelling is a different name.
    assert.equal(await fs.lookupIno(2, "bad\uFFFD"), null);
  } finally {
    await fs.close();
  }
});

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

testWith("oracle: inline-data symlinks (made by mke2fs -d) read as the kernel reads them", [
  "root",
  "loop",
  "kernel-ext4",
  "mkfs.ext4",
  "python3",
], async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/src`;
  await Deno.mkdir(src);
  // Fast (< 60 bytes), inline (fits the inode's inline area) and block symlinks.
  for (const n of [1, 59, 60, 61, 100, 150, 200, 400, 1000]) {
    await Deno.symlink("t".repeat(n - 1) + "/", `${src}/len${n}`);
  }
  const img = `${dir.path}/fs.img`;
  await runOk("mkfs.ext4", ["-q", "-F", "-O", "inline_data", "-I", "512", "-d", src, img, "8M"]);
  const kernel = await withKernelMount(
    img,
    (m) => runOk("python3", [TREE_LISTING, m]),
    { readOnly: true },
  );
  const fs = await Ext4.open(img);
  try {
    const ours = await treeListing(fs);
    if (ours !== kernel) assert.fail(firstDifference(kernel, ours));
    const inline: string[] = [];
    for await (const { path, stat } of fs.walk("/")) {
      if (stat.type === "symlink" && (await fs.inode(stat.ino)).hasInlineData) inline.push(path);
    }
    assert.ok(inline.includes("/len100"), `inline symlinks: ${inline.join(" ")}`);
    assert.equal(await fs.readLink("/len150"), "t".repeat(149) + "/");
  } finally {
    await fs.close();
  }
});
