import assert from "node:assert/strict";
import fc from "fast-check";
import { DirFileType } from "../lib/directory.ts";
import type { Ext4Error } from "../lib/errors.ts";
import { writeNewFileData } from "../lib/file_write.ts";
import { decodeInode, readInodeRaw } from "../lib/inode_write.ts";
import type { Transaction } from "../lib/transaction.ts";
import {
  aclFromDisk,
  aclToDisk,
  readXattrs,
  setXattr,
  splitXattrName,
  xattrEntryHash,
} from "../lib/xattr_write.ts";
import { run, tempDir, testWith, withKernelMount } from "./helpers.ts";
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

Deno.test("xattr names, hashes and ACL conversion", () => {
  assert.deepEqual(splitXattrName("user.mime"), { index: 1, suffix: enc.encode("mime") });
  assert.deepEqual(splitXattrName("system.posix_acl_access"), {
    index: 2,
    suffix: new Uint8Array(0),
  });
  assert.equal(splitXattrName("security.selinux").index, 6);
  assert.equal(splitXattrName("system.data").index, 7);
  assert.throws(() => splitXattrName("os2.x"), (e: Ext4Error) => e.code === "UNSUPPORTED");
  // Hash of a name alone, computed by hand: h = (h << 5) ^ (h >>> 27) ^ c.
  let h = 0;
  for (const c of enc.encode("ab")) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  assert.equal(xattrEntryHash(enc.encode("ab"), new Uint8Array(0)), h);
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.constantFrom(1, 2, 4, 8, 0x10, 0x20), fc.nat(7), fc.nat()), {
      maxLength: 10,
    }),
    (list) => {
      const acl = vfsAcl(list.map(([t, p, id]) => [t, p, t === 2 || t === 8 ? id : undefined]));
      assert.deepEqual(aclFromDisk(aclToDisk(acl)), acl);
    },
  ));
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
      const mine = await readXattrs(tx, sb, a, raw, decodeInode(sb, raw));
      tx.abort();
      assert.deepEqual(new Map(mine.map((x) => [x.name, x.value])), want);

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
