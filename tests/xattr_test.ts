import assert from "node:assert/strict";
import fc from "fast-check";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import { readRawXattrs, readXattrs } from "../lib/ext4/xattr.ts";
import {
  parseInodeXattrs,
  parseXattrBlock,
  splitXattrName,
  xattrBlockNumber,
  xattrFullName,
  XattrIndex,
} from "../lib/ondisk/xattr.ts";
import { makeImage, runOk, tempDir, testWith } from "./helpers.ts";
import { RawImage } from "./raw_image.ts";

const NEEDS = [
  "root",
  "loop",
  "kernel-ext4",
  "mkfs.ext4",
  "debugfs",
  "setfattr",
  "setfacl",
  "python3",
];

/** listxattr order and getxattr values (hex) of each path, as the kernel answers. */
const ORACLE = `
import os, sys, json
out = {}
for p in sys.argv[1:]:
    names = os.listxattr(p, follow_symlinks=False)
    out[p] = [[n, os.getxattr(p, n, follow_symlinks=False).hex()] for n in names]
print(json.dumps(out))
`;

async function kernelXattrs(paths: string[]): Promise<Record<string, [string, string][]>> {
  return JSON.parse(await runOk("python3", ["-c", ORACLE, ...paths]));
}

async function setfattr(path: string, name: string, value: string | Uint8Array): Promise<void> {
  const v = typeof value === "string"
    ? value
    : "0x" + Array.from(value, (b) => b.toString(16).padStart(2, "0")).join("");
  await runOk("setfattr", ["-h", "-n", name, "-v", v, path]);
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

/** Populates a mix of xattr placements; returns the kernel's view per relative path. */
async function populate(m: string, opts: { eaInode: boolean }) {
  const files: string[] = [];
  const f = async (name: string) => {
    await Deno.writeTextFile(`${m}/${name}`, "data\n");
    files.push(name);
    return `${m}/${name}`;
  };
  await f("none");
  const small = await f("small");
  await setfattr(small, "user.a", "1");
  await setfattr(small, "user.comment", "hello world");
  await setfattr(small, "user.empty", new Uint8Array(0));
  const spill = await f("spill");
  for (let i = 0; i < 3; i++) await setfattr(spill, `user.k${i}`, bytes(180 + i, i));
  await setfattr(spill, "trusted.t", "trusted value");
  await setfattr(spill, "security.s", bytes(40, 9));
  await setfattr(spill, "gnu.hurd", "gnu");
  const acl = await f("acl");
  await runOk("setfacl", ["-m", "u:1000:rwx,u:2000:r--,g:100:r-x,g:4000000000:-w-,m::rwx", acl]);
  await Deno.mkdir(`${m}/dacl`);
  files.push("dacl");
  await runOk("setfacl", ["-m", "u:7:rw-", `${m}/dacl`]);
  await runOk("setfacl", ["-d", "-m", "u:1000:r-x,g::rwx,o::---", `${m}/dacl`]);
  // Identical attributes on two files share one xattr block.
  for (const n of ["shared1", "shared2"]) {
    const p = await f(n);
    await setfattr(p, "user.shared", bytes(600, 3));
  }
  // Edge cases: a 250-byte name suffix, empty values in the block, many small entries.
  const edge = await f("edge");
  await setfattr(edge, `user.${"N".repeat(250)}`, "long name");
  for (let i = 0; i < 25; i++) {
    await setfattr(edge, `user.e${i}`, i % 5 ? `v${i}` : new Uint8Array());
  }
  await Deno.symlink("none", `${m}/symlink`);
  files.push("symlink");
  await setfattr(`${m}/symlink`, "trusted.onlink", "x");
  if (opts.eaInode) {
    const big = await f("ea_inode");
    await setfattr(big, "user.huge", bytes(20000, 5));
    await setfattr(big, "user.small", "s");
    await setfattr(big, "trusted.huge2", bytes(9000, 6));
  }
  const oracle = await kernelXattrs(files.map((n) => `${m}/${n}`));
  return new Map(files.map((n) => [n, oracle[`${m}/${n}`]]));
}

for (
  const variant of [
    { label: "256-byte inodes, 4 KiB, metadata_csum", args: ["-I", "256"], eaInode: false },
    {
      label: "128-byte inodes (block only), 1 KiB",
      args: ["-I", "128", "-b", "1024"],
      eaInode: false,
    },
    {
      label: "ea_inode, no metadata_csum, 1 KiB",
      args: ["-O", "ea_inode,^metadata_csum", "-b", "1024"],
      eaInode: true,
    },
    { label: "ea_inode, 64bit, 4 KiB", args: ["-O", "ea_inode,64bit"], eaInode: true },
  ]
) {
  testWith(`xattrs match the kernel's listxattr/getxattr (${variant.label})`, NEEDS, async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/x.img`;
    let expected = new Map<string, [string, string][]>();
    await makeImage(img, {
      size: "32M",
      args: variant.args,
      populate: async (m) => {
        expected = await populate(m, { eaInode: variant.eaInode });
      },
    });
    const raw = await RawImage.load(img);
    let sawBlock = false, sawInode = false, sawEaInode = false;
    for (const [name, want] of expected) {
      const ino = await raw.ino(`/${name}`);
      const got = await readXattrs(raw.xattrSource(ino));
      assert.deepEqual([...got].map(([n, v]) => [n, hex(v)]), want, name);
      for (const e of await readRawXattrs(raw.xattrSource(ino))) {
        if (e.inBlock) sawBlock = true;
        else sawInode = true;
        if (e.valueInum) sawEaInode = true;
      }
    }
    assert.ok(sawBlock, "some attributes live in an xattr block");
    assert.equal(sawInode, !variant.args.includes("128"), "in-inode attributes iff room");
    assert.equal(sawEaInode, variant.eaInode, "EA inode values");
    // Identical attribute sets share one xattr block (mbcache; not with ea_inode).
    const s1 = xattrBlockNumber(raw.sb, raw.inode(await raw.ino("/shared1")));
    const s2 = xattrBlockNumber(raw.sb, raw.inode(await raw.ino("/shared2")));
    if (!variant.eaInode) assert.ok(s1 !== 0 && s1 === s2, `shared block ${s1} ${s2}`);
  });
}

testWith("system.data (inline data) is hidden like the kernel hides it", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/i.img`;
  let expected = new Map<string, [string, string][]>();
  await makeImage(img, {
    size: "8M",
    args: ["-O", "inline_data"],
    populate: async (m) => {
      await Deno.writeTextFile(`${m}/tiny`, "tiny inline file\n");
      await setfattr(`${m}/tiny`, "user.x", "y");
      await Deno.mkdir(`${m}/dir`);
      expected = new Map(
        Object.entries(await kernelXattrs([`${m}/tiny`, `${m}/dir`])).map((
          [p, v],
        ) => [p.slice(m.length + 1), v]),
      );
    },
  });
  const raw = await RawImage.load(img);
  for (const [name, want] of expected) {
    const src = raw.xattrSource(await raw.ino(`/${name}`));
    const all = await readRawXattrs(src);
    assert.ok(all.some((e) => e.name === "system.data"), `${name} has system.data on disk`);
    assert.deepEqual([...(await readXattrs(src))].map(([n, v]) => [n, hex(v)]), want, name);
  }
});

testWith(
  "corrupt xattrs are CorruptErrors naming the inode; fuzzing throws only Ext4Error",
  NEEDS,
  async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/c.img`;
    await makeImage(img, {
      size: "8M",
      args: ["-b", "1024"],
      populate: async (m) => {
        await Deno.writeTextFile(`${m}/f`, "");
        await setfattr(`${m}/f`, "user.in", "inode value");
        for (let i = 0; i < 3; i++) await setfattr(`${m}/f`, `user.blk${i}`, bytes(200, i));
      },
    });
    const raw = await RawImage.load(img);
    const ino = await raw.ino("/f");
    const src = raw.xattrSource(ino);
    const blockNr = xattrBlockNumber(raw.sb, src.inodeBytes);
    const block = raw.block(blockNr);
    assert.equal(parseXattrBlock(raw.sb, ino, blockNr, block).length, 3);
    assert.equal(parseInodeXattrs(raw.sb, ino, src.inodeBytes).length, 1);

    const expectCorrupt = (f: () => unknown, re: RegExp) =>
      assert.throws(
        f,
        (e: unknown) =>
          e instanceof CorruptError && re.test(e.message) && e.message.includes(`${ino}`),
      );
    // Block: checksum, magic, h_blocks, wrong block number (the checksum covers it).
    const flip = block.slice();
    flip[100] ^= 1;
    expectCorrupt(() => parseXattrBlock(raw.sb, ino, blockNr, flip), /checksum mismatch/);
    expectCorrupt(() => parseXattrBlock(raw.sb, ino, blockNr + 1, block), /checksum mismatch/);
    const magic = block.slice();
    magic[3] = 0;
    expectCorrupt(() => parseXattrBlock(raw.sb, ino, blockNr, magic), /invalid header/);
    const hblocks = block.slice();
    hblocks[8] = 2;
    expectCorrupt(() => parseXattrBlock(raw.sb, ino, blockNr, hblocks), /invalid header/);
    // In-inode: a value offset out of bounds, a bad i_extra_isize, a NUL in a name.
    const inode = src.inodeBytes;
    const extra = new DataView(inode.buffer).getUint16(0x80, true);
    const first = 128 + extra + 4;
    const offs = inode.slice();
    new DataView(offs.buffer).setUint16(first + 2, 500, true);
    expectCorrupt(() => parseInodeXattrs(raw.sb, ino, offs), /e_value out of bounds|overlapping/);
    const size = inode.slice();
    new DataView(size.buffer).setUint32(first + 8, 200, true);
    expectCorrupt(() => parseInodeXattrs(raw.sb, ino, size), /overlapping/);
    const isize = inode.slice();
    new DataView(isize.buffer).setUint16(0x80, 2, true);
    expectCorrupt(() => parseInodeXattrs(raw.sb, ino, isize), /i_extra_isize/);
    const nul = inode.slice();
    nul[first + 17] = 0;
    expectCorrupt(() => parseInodeXattrs(raw.sb, ino, nul), /e_name/);
    // An EA-inode reference without the feature.
    const inum = inode.slice();
    new DataView(inum.buffer).setUint32(first + 4, 13, true);
    expectCorrupt(() => parseInodeXattrs(raw.sb, ino, inum), /ea_inode/);
    // The block number out of range.
    const far = inode.slice();
    new DataView(far.buffer).setUint32(0x68, raw.sb.blocksCount + 5, true);
    await assert.rejects(() => readRawXattrs({ ...src, inodeBytes: far }), /out of range/);

    // Fuzz: random mutations of the in-inode area and of the block, random blocks.
    const onlyExt4 = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
      }
    };
    const muts = fc.array(fc.tuple(fc.nat(1023), fc.nat(255)), { minLength: 1, maxLength: 10 });
    await fc.assert(
      fc.asyncProperty(muts, muts, async (mi, mb) => {
        const i2 = inode.slice();
        for (const [k, v] of mi) if (k >= 128 && k < i2.length) i2[k] = v;
        const b2 = block.slice();
        for (const [k, v] of mb) b2[k] = v;
        await onlyExt4(() =>
          readXattrs({ ...src, inodeBytes: i2, readBlock: () => Promise.resolve(b2) })
        );
        // Without checksums the entry checks themselves are exercised.
        await onlyExt4(() => parseXattrBlock(raw.sb, ino, blockNr, b2));
      }),
      { numRuns: 2000 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1024, maxLength: 1024 }),
        fc.uint8Array({ minLength: 256, maxLength: 256 }),
        async (b, i) => {
          await onlyExt4(() =>
            readXattrs({ ...src, inodeBytes: i, readBlock: () => Promise.resolve(b) })
          );
        },
      ),
      { numRuns: 500 },
    );
  },
);

Deno.test("xattr names: prefixes both ways", () => {
  const enc = new TextEncoder();
  assert.equal(xattrFullName(XattrIndex.USER, enc.encode("a.b")), "user.a.b");
  assert.equal(
    xattrFullName(XattrIndex.POSIX_ACL_ACCESS, new Uint8Array()),
    "system.posix_acl_access",
  );
  assert.equal(xattrFullName(XattrIndex.SYSTEM, enc.encode("data")), "system.data");
  assert.equal(xattrFullName(42, enc.encode("x")), "index42.x");
  assert.deepEqual(splitXattrName("system.posix_acl_default"), {
    index: XattrIndex.POSIX_ACL_DEFAULT,
    suffix: new Uint8Array(),
  });
  assert.equal(splitXattrName("system.data")?.index, XattrIndex.SYSTEM);
  assert.equal(splitXattrName("trusted.overlay.opaque")?.index, XattrIndex.TRUSTED);
  assert.equal(splitXattrName("gnu.translator")?.index, XattrIndex.HURD);
  assert.equal(splitXattrName("system.posix_acl_accessX"), null);
  assert.equal(splitXattrName("nonsense.x"), null);
});
