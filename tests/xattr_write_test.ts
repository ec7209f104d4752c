import assert from "node:assert/strict";
import fc from "fast-check";
import { DirFileType } from "../lib/ondisk/dirent.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { ext4AclToXattr, xattrAclToExt4 } from "../lib/ondisk/acl.ts";
import { writeNewFileData } from "../lib/ext4/file_write.ts";
import { decodeInode } from "../lib/ondisk/inode.ts";
import { readInodeRaw } from "../lib/ext4/inode.ts";
import { createFile } from "../lib/ext4/namei.ts";
import { setAttributes } from "../lib/ext4/attr.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import {
  readRawXattrs,
  readXattrs,
  setXattr,
  xattrNameForWrite,
  xattrSourceOf,
} from "../lib/ext4/xattr.ts";
import { xattrEntryHash } from "../lib/ondisk/xattr.ts";
import { makeImage, run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { pattern } from "./file_fixtures.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  linkIntoRoot,
  type LoadedFs,
  loadFs,
  mkfsImage,
  writeTestInode,
} from "./write_fixtures.ts";

const enc = new TextEncoder();

/** A POSIX ACL in the kernel's xattr format. */
function vfsAcl(entries: [tag: number, perm: number, id?: number][]): Uint8Array {
  const out = new Uint8Array(4 + 8 * entries.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 2, true);
  entries.forEach(([tag, perm, id], i) => {
    v.setUint16(4 + 8 * i, tag, true);
    v.setUint16(6 + 8 * i, perm, true);
    v.setUint32(8 + 8 * i, id ?? 0xffffffff, true);
  });
  return out;
}

Deno.test("xattr names for writing: the kernel's refusals and errnos", () => {
  assert.deepEqual(xattrNameForWrite("user.mime"), { index: 1, suffix: enc.encode("mime") });
  assert.deepEqual(xattrNameForWrite("system.posix_acl_access"), {
    index: 2,
    suffix: new Uint8Array(0),
  });
  assert.equal(xattrNameForWrite("security.selinux").index, 6);
  assert.equal(xattrNameForWrite("gnu.translator").index, 10);
  assert.equal(xattrNameForWrite("system.data", { internal: true }).index, 7);
  const refused = (name: string, code: string, errno: number) =>
    assert.throws(
      () => xattrNameForWrite(name),
      (e: Ext4Error) => e.code === code && e.errno === errno,
      name,
    );
  // xattr_resolve_name: no handler → EOPNOTSUPP; a bare prefix → EINVAL.
  for (
    const n of ["os2.x", "system.data", "system.richacl", "lustre.x", "system.posix_acl_accessX"]
  ) {
    refused(n, "UNSUPPORTED", Errno.EOPNOTSUPP);
  }
  refused("user.", "INVALID", Errno.EINVAL);
  // setxattr: names longer than XATTR_NAME_MAX (or empty) → ERANGE.
  refused("", "NAME_TOO_LONG", Errno.ERANGE);
  refused(`user.${"n".repeat(251)}`, "NAME_TOO_LONG", Errno.ERANGE);
  assert.equal(xattrNameForWrite(`user.${"n".repeat(250)}`).suffix.length, 250);
  // Entry hash of a name alone, by hand: h = (h << 5) ^ (h >>> 27) ^ c (unsigned chars).
  let h = 0;
  for (const c of enc.encode("ab")) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  assert.equal(xattrEntryHash(enc.encode("ab"), new Uint8Array(0)), h);
  assert.notEqual(
    xattrEntryHash(enc.encode("é"), new Uint8Array(0)),
    xattrEntryHash(enc.encode("é"), new Uint8Array(0), true),
  );
  // ACLs: one codec with the reader; user input errors are INVALID with the kernel's errno.
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.constantFrom(1, 2, 4, 8, 0x10, 0x20), fc.nat(7), fc.nat(0xfffffffe)), {
      maxLength: 10,
    }),
    (list) => {
      const acl = vfsAcl(list.map(([t, p, id]) => [t, p, t === 2 || t === 8 ? id : undefined]));
      let disk: Uint8Array | null = null;
      try {
        disk = xattrAclToExt4(acl);
      } catch (e) {
        assert.ok(e instanceof Ext4Error && e.code === "INVALID" && e.errno === Errno.EINVAL);
        return;
      }
      if (disk) assert.deepEqual(ext4AclToXattr(disk), acl);
      else assert.equal(list.length, 0);
    },
  ));
  const bad = (v: Uint8Array, errno: number) =>
    assert.throws(
      () => xattrAclToExt4(v),
      (e: Ext4Error) => e.code === "INVALID" && e.errno === errno,
    );
  bad(vfsAcl([[1, 6], [0x20, 4]]), Errno.EINVAL); // no owning group
  bad(vfsAcl([[1, 6], [2, 4, 5], [4, 4], [0x20, 4]]), Errno.EINVAL); // named entry, no mask
  bad(vfsAcl([[4, 4], [1, 6], [0x20, 4]]), Errno.EINVAL); // out of order
  bad(vfsAcl([[1, 8], [4, 4], [0x20, 4]]), Errno.EINVAL); // perm beyond rwx
  bad(vfsAcl([[1, 6], [2, 4], [4, 4], [0x10, 4], [0x20, 4]]), Errno.EINVAL); // uid -1
  const v1 = vfsAcl([[1, 6], [4, 4], [0x20, 4]]);
  v1[0] = 1;
  bad(v1, Errno.EOPNOTSUPP);
  bad(new Uint8Array([2, 0, 0, 0, 1]), Errno.EINVAL);
  assert.equal(xattrAclToExt4(vfsAcl([])), null, "an empty ACL removes");
});

async function createEmpty(fs: LoadedFs, tx: Transaction, name: string): Promise<number> {
  const { sb, alloc } = fs;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const generation = ino * 13;
  const data = await writeNewFileData(tx, alloc, sb, { ino, generation, data: pattern(ino, 100) });
  const t = { sec: 1700000000, nsec: 0 };
  await writeTestInode(fs, tx, ino, {
    mode: 0o100644,
    size: 100,
    generation,
    time: t,
    blocks512: data.blocks512,
    flags: data.flags,
    block: data.iBlock,
  });
  await linkIntoRoot(fs, tx, name, ino, DirFileType.REG_FILE);
  return ino;
}

/** The attributes the kernel reports for a file, via Python's os.getxattr. */
async function kernelXattrs(path: string): Promise<Map<string, string>> {
  const script = "import os,sys,json\np=sys.argv[1]\n" +
    "print(json.dumps({n: os.getxattr(p, n, follow_symlinks=False).hex() for n in os.listxattr(p, follow_symlinks=False)}))";
  const r = await run("python3", ["-c", script, path]);
  assert.equal(r.code, 0, r.stderr);
  return new Map(Object.entries(JSON.parse(r.stdout)));
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

for (
  const layout of [
    LAYOUTS[2],
    LAYOUTS[3],
    LAYOUTS[0],
    LAYOUTS[4],
    { ...LAYOUTS[2], name: "ext4-128-byte-inodes", args: [...LAYOUTS[2].args, "-I", "128"] },
  ]
) {
  testWith(
    `xattrs on ${layout.name}: in-inode and block attributes and ACLs as the kernel reads them`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"],
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const { sb, gdt, alloc } = fs;
      let tx = fs.cache.begin();
      const a = await createEmpty(fs, tx, "a");
      const b = await createEmpty(fs, tx, "b");
      await tx.commit();
      const acl = vfsAcl([[1, 6], [2, 4, 1000], [4, 4], [0x10, 4], [0x20, 0]]);
      const want = new Map<string, Uint8Array>([
        ["user.small", enc.encode("x")],
        ["user.empty", new Uint8Array(0)],
        ["trusted.t", enc.encode("trusted value")],
        ["security.label", enc.encode("system_u:object_r:etc_t:s0")],
        ["user.big", pattern(7, 600)],
        ["system.posix_acl_access", acl],
      ]);
      tx = fs.cache.begin();
      for (const [n, v] of want) await setXattr(tx, alloc, sb, gdt, a, n, v, { create: true });
      await assert.rejects(
        () => setXattr(tx, alloc, sb, gdt, a, "user.small", enc.encode("y"), { create: true }),
        (e: Ext4Error) => e.code === "EXISTS",
      );
      assert.equal(tx.state, "open", "a refused call changes nothing");
      await setXattr(tx, alloc, sb, gdt, b, "user.only", enc.encode("b's"));
      await tx.commit();
      // Change and remove, in a later transaction.
      tx = fs.cache.begin();
      await setXattr(tx, alloc, sb, gdt, a, "user.small", enc.encode("changed"), { replace: true });
      want.set("user.small", enc.encode("changed"));
      await setXattr(tx, alloc, sb, gdt, a, "trusted.t", null);
      want.delete("trusted.t");
      await setXattr(tx, alloc, sb, gdt, b, "user.only", null);
      await assert.rejects(
        () => setXattr(tx, alloc, sb, gdt, b, "user.only", null),
        (e: Ext4Error) => e.code === "NOT_FOUND" && e.errno === 61,
      );
      await tx.commit();
      // Our own reader agrees.
      tx = fs.cache.begin();
      const raw = await readInodeRaw(tx, sb, gdt, a);
      const mine = await readXattrs(xattrSourceOf(tx, sb, a, raw));
      tx.abort();
      assert.deepEqual(mine, want);

      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const path = `${dir.path}/x.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      await withKernelMount(path, async (mnt) => {
        assert.deepEqual(
          await kernelXattrs(`${mnt}/a`),
          new Map([...want].map(([n, v]) => [n, hex(v)])),
        );
        assert.deepEqual(await kernelXattrs(`${mnt}/b`), new Map());
      }, { readOnly: true });

      // Removing everything frees the block again.
      tx = fs.cache.begin();
      for (const n of want.keys()) await setXattr(tx, alloc, sb, gdt, a, n, null);
      await tx.commit();
      tx = fs.cache.begin();
      const after = decodeInode(sb, await readInodeRaw(tx, sb, gdt, a));
      tx.abort();
      assert.equal(after.fileAcl, 0);
      const clean = await fsck(dir.path, fs.dev.bytes);
      assert.equal(clean.code, 0, clean.output);
    },
  );
}

testWith(
  "setxattr semantics as the kernel's: ACLs set the mode (equivalent ones are not stored), default ACLs need a directory, size limits",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "setfacl", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/a.img`;
    const kernelSide = new Map<string, { mode: number; acl: string | null }>();
    const STATE = "import os,sys,json\nr={}\nfor p in sys.argv[1:]:\n" +
      "  st=os.lstat(p)\n  try: a=os.getxattr(p,'system.posix_acl_access').hex()\n" +
      "  except OSError: a=None\n  r[os.path.basename(p)]={'mode':st.st_mode,'acl':a}\n" +
      "print(json.dumps(r))";
    await makeImage(img, {
      size: "16M",
      populate: async (m) => {
        for (const n of ["named", "equiv", "chmodded", "ours1", "ours2", "ours3", "plain"]) {
          await Deno.writeTextFile(`${m}/${n}`, "x");
          await Deno.chmod(`${m}/${n}`, 0o644);
        }
        await Deno.mkdir(`${m}/dir`);
        await runOk("setfacl", ["-m", "u:1000:rwx,g::r-x,o::---", `${m}/named`]);
        await runOk("setfacl", ["-m", "u::rwx,g::r--,o::---", `${m}/equiv`]);
        await runOk("setfacl", ["-m", "u:1000:rwx,g::r-x,o::---", `${m}/chmodded`]);
        await Deno.chmod(`${m}/chmodded`, 0o751);
        const r = await run("python3", [
          "-c",
          STATE,
          `${m}/named`,
          `${m}/equiv`,
          `${m}/chmodded`,
        ]);
        for (const [k, v] of Object.entries(JSON.parse(r.stdout))) {
          kernelSide.set(k, v as { mode: number; acl: string | null });
        }
      },
    });
    const named = kernelSide.get("named")!;
    assert.ok(named.acl && kernelSide.get("equiv")!.acl === null, "the kernel's own behaviour");
    const ino = async (name: string) => {
      const r = await run("debugfs", ["-R", `stat /${name}`, img]);
      return Number(/Inode: (\d+)/.exec(r.stdout)![1]);
    };
    const [ours1, ours2, ours3, plain, dirIno] = [
      await ino("ours1"),
      await ino("ours2"),
      await ino("ours3"),
      await ino("plain"),
      await ino("dir"),
    ];
    const fs = await loadFs(await Deno.readFile(img));
    const { sb, gdt, alloc } = fs;
    const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
    let tx = fs.cache.begin();
    await setXattr(tx, alloc, sb, gdt, ours1, "system.posix_acl_access", unhex(named.acl!));
    const equivAcl = vfsAcl([[1, 7], [4, 4], [0x20, 0]]);
    await setXattr(tx, alloc, sb, gdt, ours2, "system.posix_acl_access", equivAcl);
    const refusal = async (
      name: string,
      value: Uint8Array,
      target: number,
      code: string,
      errno: number,
    ) => {
      await assert.rejects(
        () => setXattr(tx, alloc, sb, gdt, target, name, value),
        (e: Ext4Error) => e.code === code && e.errno === errno,
        name,
      );
      assert.equal(tx.state, "open", "a refusal changes nothing");
    };
    await refusal("system.posix_acl_default", equivAcl, plain, "PERMISSION", Errno.EACCES);
    await refusal("user.huge", new Uint8Array(65537), plain, "INVALID", Errno.E2BIG);
    await refusal("user.big", new Uint8Array(sb.blockSize), plain, "NO_SPACE", Errno.ENOSPC);
    await refusal("system.data", new Uint8Array(1), plain, "UNSUPPORTED", Errno.EOPNOTSUPP);
    await setXattr(tx, alloc, sb, gdt, dirIno, "system.posix_acl_default", equivAcl);
    await setXattr(tx, alloc, sb, gdt, ours3, "system.posix_acl_access", unhex(named.acl!));
    await setAttributes({ tx, alloc, sb, gdt }, ours3, { perm: 0o751 });
    await tx.commit();
    tx = fs.cache.begin();
    const f1 = decodeInode(sb, await readInodeRaw(tx, sb, gdt, ours1));
    const f2 = decodeInode(sb, await readInodeRaw(tx, sb, gdt, ours2));
    tx.abort();
    assert.equal(f1.mode, named.mode, "mode from the ACL as the kernel sets it");
    assert.equal(f2.mode, kernelSide.get("equiv")!.mode);
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    await Deno.writeFile(img, fs.dev.bytes);
    await withKernelMount(img, async (mnt) => {
      const r = await run("python3", [
        "-c",
        STATE,
        `${mnt}/ours1`,
        `${mnt}/ours2`,
        `${mnt}/ours3`,
      ]);
      const got = JSON.parse(r.stdout);
      assert.deepEqual(got.ours3, kernelSide.get("chmodded"), "chmod rewrites the ACL");
      assert.notDeepEqual(got.ours3.acl, named.acl);
      assert.deepEqual(got.ours1, named);
      assert.deepEqual(got.ours2, kernelSide.get("equiv"));
      assert.deepEqual(
        await kernelXattrs(`${mnt}/dir`),
        new Map([["system.posix_acl_default", hex(equivAcl)]]),
      );
      // The kernel's errno for each bad input is ours.
      const cases: [string, Uint8Array][] = [
        [`user.${"n".repeat(251)}`, enc.encode("v")],
        ["os2.x", enc.encode("v")],
        ["system.data", enc.encode("v")],
        ["user.", enc.encode("v")],
        ["user.huge", new Uint8Array(65537)],
        ["user.big", new Uint8Array(sb.blockSize)],
        ["system.posix_acl_default", equivAcl],
        ["system.posix_acl_access", vfsAcl([[1, 6], [0x20, 4]])],
        ["system.posix_acl_access", Uint8Array.of(1, 0, 0, 0)],
      ];
      const TRY = "import os,sys,json\nr=[]\nfor n,v in json.load(open(sys.argv[2])):\n" +
        "  try:\n    os.setxattr(sys.argv[1], n, bytes.fromhex(v)); r.append(0)\n" +
        "  except OSError as e: r.append(e.errno)\nprint(json.dumps(r))";
      const casesFile = `${dir.path}/cases.json`;
      await Deno.writeTextFile(casesFile, JSON.stringify(cases.map(([n, v]) => [n, hex(v)])));
      const k = await run("python3", ["-c", TRY, `${mnt}/plain`, casesFile]);
      assert.equal(k.code, 0, k.stderr);
      const kernelErrnos: number[] = JSON.parse(k.stdout);
      const tx2 = fs.cache.begin();
      for (const [i, [n, v]] of cases.entries()) {
        let errno = 0;
        try {
          await setXattr(tx2, alloc, sb, gdt, plain, n, v);
        } catch (e) {
          errno = (e as Ext4Error).errno;
        }
        assert.equal(errno, kernelErrnos[i], `errno for ${n.slice(0, 20)} (${v.length} bytes)`);
        assert.ok(kernelErrnos[i] !== 0, "every case is refused");
      }
      tx2.abort();
    });
  },
);

testWith(
  "ea_inode filesystems are refused for writing with the reason",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/e.img`;
    await makeImage(img, { size: "8M", args: ["-O", "ea_inode"] });
    const dev = new MemoryBlockDevice(await Deno.readFile(img));
    await assert.rejects(
      () => Ext4Writer.open(dev),
      (e: Ext4Error) => e.code === "UNSUPPORTED" && /ea_inode|xattr inodes/.test(e.message),
    );
  },
);

testWith(
  "inline-data files take ordinary attributes; their system.data stays in the inode body",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"],
  async () => {
    await using dir = await tempDir();
    const layout = LAYOUTS.find((l) => l.name === "ext4-inline_data")!;
    const fs = await loadFs(await mkfsImage(dir.path, layout));
    const { sb, gdt, alloc } = fs;
    const data = enc.encode("x".repeat(50)); // inline: in i_block, with an empty system.data
    let tx = fs.cache.begin();
    const ctx = { tx, alloc, sb, gdt };
    const ino = await createFile(ctx, 2, "inline", data, { perm: 0o644 });
    assert.ok(decodeInode(sb, await readInodeRaw(tx, sb, gdt, ino)).flags & 0x10000000);
    await setXattr(tx, alloc, sb, gdt, ino, "user.small", enc.encode("s"));
    await setXattr(tx, alloc, sb, gdt, ino, "user.big", pattern(5, 500));
    await assert.rejects(
      () => setXattr(tx, alloc, sb, gdt, ino, "system.data", new Uint8Array(3)),
      (e: Ext4Error) => e.errno === Errno.EOPNOTSUPP,
    );
    await tx.commit();
    tx = fs.cache.begin();
    const raw = await readInodeRaw(tx, sb, gdt, ino);
    const names = (await readRawXattrs(xattrSourceOf(tx, sb, ino, raw))).map((x) => x.name);
    tx.abort();
    assert.deepEqual(names.slice(0, 1), ["system.data"], "system.data first, in the inode");
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/i.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      assert.deepEqual(await Deno.readFile(`${mnt}/inline`), data);
      assert.deepEqual(
        await kernelXattrs(`${mnt}/inline`),
        new Map([["user.small", hex(enc.encode("s"))], ["user.big", hex(pattern(5, 500))]]),
      );
    }, { readOnly: true });
  },
);
