import assert from "node:assert/strict";
import fc from "fast-check";
import { aclToXattr } from "../lib/ondisk/acl.ts";
import { Ext4Error } from "../lib/errors.ts";
import { decodeInode, type InodeFields } from "../lib/ondisk/inode.ts";
import { readInodeRaw } from "../lib/ext4/inode.ts";
import { createFile, makeDirectory } from "../lib/ext4/namei.ts";
import { unlinkEntry } from "../lib/ext4/unlink.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import {
  parseXattrBlock,
  XATTR_REFCOUNT_MAX,
  xattrBlockHeader,
  xattrEntryHash,
  xattrSetHash,
} from "../lib/ondisk/xattr.ts";
import { XattrBlockIndex } from "../lib/ext4/xattr_share.ts";
import {
  readXattrs,
  setXattr,
  setXattrs,
  type XattrChange as XattrChangeArg,
  xattrSourceOf,
} from "../lib/ext4/xattr.ts";
import { makeImage, run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, type LoadedFs, loadFs, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();
const KERNEL = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"];
const U = 0xffffffff;

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A default ACL as setfacl -d would set it (posix_acl_xattr format). */
const DEFAULT_ACL = aclToXattr([
  { tag: 0x01, perm: 7, id: U },
  { tag: 0x02, perm: 5, id: 1000 },
  { tag: 0x02, perm: 4, id: 1001 },
  { tag: 0x02, perm: 6, id: 1002 },
  { tag: 0x02, perm: 7, id: 1003 },
  { tag: 0x04, perm: 5, id: U },
  { tag: 0x08, perm: 5, id: 100 },
  { tag: 0x08, perm: 1, id: 101 },
  { tag: 0x10, perm: 7, id: U },
  { tag: 0x20, perm: 0, id: U },
]);

/** listxattr/getxattr (hex) and st_blocks of every file below a directory, as the kernel says. */
const ORACLE = `
import os, sys, json
out = {}
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        out[os.path.relpath(p, root)] = {
            "x": {k: os.getxattr(p, k, follow_symlinks=False).hex()
                  for k in os.listxattr(p, follow_symlinks=False)},
            "blocks": os.lstat(p).st_blocks,
        }
print(json.dumps(out))
`;
import type { OpContext } from "../lib/ext4/context.ts";

type KernelView = Record<string, { x: Record<string, string>; blocks: number }>;

async function kernelView(mnt: string): Promise<KernelView> {
  const r = await run("python3", ["-c", ORACLE, mnt]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function ctxOf(fs: LoadedFs, tx: Transaction): OpContext {
  // Attributes are set explicitly, as `put` sets them: no default-ACL inheritance on create.
  return { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, inheritAcls: false };
}

/** Runs `fn` in a transaction and commits. */
async function inTx<T>(fs: LoadedFs, fn: (ctx: OpContext) => Promise<T>): Promise<T> {
  const tx = fs.cache.begin();
  try {
    const r = await fn(ctxOf(fs, tx));
    await tx.commit();
    return r;
  } finally {
    tx.abort();
  }
}

/** Reads without changing anything. */
async function peek<T>(fs: LoadedFs, fn: (ctx: OpContext) => Promise<T>): Promise<T> {
  const tx = fs.cache.begin();
  try {
    return await fn(ctxOf(fs, tx));
  } finally {
    tx.abort();
  }
}

function fieldsOf(fs: LoadedFs, ino: number): Promise<InodeFields> {
  return peek(fs, async ({ tx }) => decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)));
}

async function refcountOf(fs: LoadedFs, block: number): Promise<number> {
  return xattrBlockHeader(await fs.cache.read(block)).refcount;
}

function inUse(fs: LoadedFs, block: number): Promise<boolean> {
  return peek(fs, ({ tx }) => fs.alloc.isBlockInUse(tx, block));
}

async function xattrsOf(fs: LoadedFs, ino: number): Promise<Map<string, string>> {
  return await peek(fs, async ({ tx }) => {
    const raw = await readInodeRaw(tx, fs.sb, fs.gdt, ino);
    const list = await readXattrs(xattrSourceOf(tx, fs.sb, ino, raw));
    return new Map([...list].map(([name, value]) => [name, hex(value)]));
  });
}

async function assertClean(dir: string, fs: LoadedFs): Promise<void> {
  const r = await fsck(dir, fs.dev.bytes);
  assert.equal(r.code, 0, r.output);
}

Deno.test("xattr block index: bounded, most recent first, hash 0 never indexed", () => {
  const index = new XattrBlockIndex(2);
  index.add(0, 5);
  assert.deepEqual(index.candidates(0), []);
  index.add(1, 10);
  index.add(1, 11);
  assert.deepEqual(index.candidates(1), [11, 10]);
  index.add(2, 20);
  index.add(3, 30); // hash 1 is the least recently used
  assert.deepEqual(index.candidates(1), []);
  assert.equal(index.size, 2);
  for (let b = 0; b < 20; b++) index.add(3, 100 + b);
  assert.equal(index.candidates(3).length, 8);
  index.remove(3, 119);
  assert.equal(index.candidates(3)[0], 118);
  const snap = index.snapshot();
  index.clear();
  index.restore(snap);
  assert.equal(index.candidates(2)[0], 20);
});

testWith(
  "entry and block hashes are the kernel's (unsigned chars, also for non-ASCII names)",
  [...KERNEL, "setfattr"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/h.img`;
    const name = "é€x";
    const value = enc.encode("hello, kernel");
    await makeImage(img, {
      size: "8M",
      args: ["-I", "128", "-b", "1024"],
      populate: async (m) => {
        await Deno.writeTextFile(`${m}/a`, "");
        await run("setfattr", ["-n", `user.${name}`, "-v", "hello, kernel", `${m}/a`]);
      },
    });
    const fs = await loadFs(await Deno.readFile(img));
    const f = await fieldsOf(fs, 12);
    assert.ok(f.fileAcl);
    const block = await fs.cache.read(f.fileAcl);
    const [e] = parseXattrBlock(fs.sb, 12, f.fileAcl, block);
    assert.equal(e.hash, xattrEntryHash(enc.encode(name), value));
    assert.notEqual(e.hash, xattrEntryHash(enc.encode(name), value, true));
    const set = [{ index: 1, suffix: enc.encode(name), value }];
    assert.equal(xattrBlockHeader(block).hash, xattrSetHash(set));
  },
);

for (const layout of [LAYOUTS[2], LAYOUTS[4]]) {
  testWith(
    `identical xattr sets share one block; copy on write; the last reference frees it (${layout.name})`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const per = fs.sb.blockSize / 512;
      const big = pattern(3, 300);
      // A tree as `put` writes it: directories with the same default ACL, files with the same
      // large attributes, set one attribute at a time across several transactions.
      const files: number[] = [];
      const dirs: number[] = [];
      const top = await inTx(fs, (ctx) => makeDirectory(ctx, 2, "tree", { perm: 0o755 }));
      for (let batch = 0; batch < 3; batch++) {
        await inTx(fs, async (ctx) => {
          for (let i = 0; i < 8; i++) {
            const n = batch * 8 + i;
            const d = await makeDirectory(ctx, top, `d${n}`, { perm: 0o755 });
            await setXattr(
              ctx.tx,
              fs.alloc,
              fs.sb,
              fs.gdt,
              d,
              "system.posix_acl_default",
              DEFAULT_ACL,
            );
            await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, d, "user.origin", enc.encode("host"));
            dirs.push(d);
            const f = await createFile(ctx, d, "file", pattern(n, 3000), { perm: 0o644 });
            await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, f, "user.big", big);
            await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, f, "user.tag", enc.encode("same"));
            files.push(f);
          }
        });
      }
      const fileBlock = (await fieldsOf(fs, files[0])).fileAcl;
      const dirBlock = (await fieldsOf(fs, dirs[0])).fileAcl;
      assert.ok(fileBlock && dirBlock && fileBlock !== dirBlock);
      for (const f of files) {
        const x = await fieldsOf(fs, f);
        assert.equal(x.fileAcl, fileBlock, `file inode ${f} shares`);
        assert.equal(x.blocks512, 2 * per, "one data block + the shared xattr block");
      }
      for (const d of dirs) assert.equal((await fieldsOf(fs, d)).fileAcl, dirBlock);
      assert.equal(await refcountOf(fs, fileBlock), files.length);
      assert.equal(await refcountOf(fs, dirBlock), dirs.length);
      await assertClean(dir.path, fs);

      // A change inside the inode leaves the shared block alone.
      await inTx(
        fs,
        (ctx) =>
          setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, files[3], "user.tag", enc.encode("in inode")),
      );
      assert.equal((await fieldsOf(fs, files[3])).fileAcl, fileBlock);
      assert.equal(await refcountOf(fs, fileBlock), files.length);
      // One file changes its block attribute: it gets its own block, the others keep theirs.
      const before = Uint8Array.from(await fs.cache.read(fileBlock));
      await inTx(
        fs,
        (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, files[0], "user.big", pattern(4, 300)),
      );
      const own = (await fieldsOf(fs, files[0])).fileAcl;
      assert.ok(own && own !== fileBlock);
      assert.equal(await refcountOf(fs, own), 1);
      assert.equal(await refcountOf(fs, fileBlock), files.length - 1);
      const after = await fs.cache.read(fileBlock);
      assert.deepEqual(after.subarray(32), before.subarray(32), "entries of the shared block kept");
      // Another drops its large value (the rest fits the inode): its reference goes.
      await inTx(
        fs,
        (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, files[1], "user.big", null),
      );
      assert.equal((await fieldsOf(fs, files[1])).fileAcl, 0);
      assert.equal((await fieldsOf(fs, files[1])).blocks512, per);
      assert.equal(await refcountOf(fs, fileBlock), files.length - 2);
      // The first changes back: its own block is freed and it shares again.
      await inTx(fs, (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, files[0], "user.big", big));
      assert.equal((await fieldsOf(fs, files[0])).fileAcl, fileBlock);
      assert.equal(await refcountOf(fs, fileBlock), files.length - 1);
      assert.equal(await inUse(fs, own), false, "the private block was freed");
      // Unlinking a sharer drops its reference.
      await inTx(fs, (ctx) => unlinkEntry(ctx, dirs[2], "file"));
      assert.equal(await refcountOf(fs, fileBlock), files.length - 2);
      await assertClean(dir.path, fs);

      const path = `${dir.path}/x.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      await withKernelMount(path, async (mnt) => {
        const view = await kernelView(`${mnt}/tree`);
        for (let n = 0; n < 24; n++) {
          const d = view[`d${n}`];
          assert.deepEqual(d.x, {
            "system.posix_acl_default": hex(DEFAULT_ACL),
            "user.origin": hex(enc.encode("host")),
          });
          const tag = hex(enc.encode(n === 3 ? "in inode" : "same"));
          if (n === 2) {
            assert.equal(view[`d${n}/file`], undefined);
            continue;
          }
          const f = view[`d${n}/file`];
          assert.deepEqual(
            f.x,
            n === 1 ? { "user.tag": tag } : { "user.big": hex(big), "user.tag": tag },
            `d${n}/file`,
          );
          assert.equal(f.blocks, n === 1 ? per : 2 * per, `st_blocks of d${n}/file`);
        }
      }, { readOnly: true });

      // Everyone drops the attributes: the last reference frees the block.
      await inTx(fs, async (ctx) => {
        for (const [i, f] of files.entries()) {
          if (i === 1 || i === 2) continue;
          await setXattrs(ctx.tx, fs.alloc, fs.sb, fs.gdt, f, [
            { name: "user.big", value: null },
            { name: "user.tag", value: null },
          ]);
        }
      });
      assert.equal(await inUse(fs, fileBlock), false, "the shared block was freed");
      for (const f of files) assert.equal((await fieldsOf(fs, f)).fileAcl, 0);
      await assertClean(dir.path, fs);
    },
  );
}

testWith(
  "kernel-made shared blocks: ext4ts copies on write, joins them, and the kernel agrees",
  [...KERNEL, "setfattr"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/k.img`;
    const value = pattern(9, 700);
    const valueHex = "0x" + hex(value);
    await makeImage(img, {
      size: "16M",
      args: ["-b", "1024"],
      populate: async (m) => {
        for (let i = 0; i < 5; i++) {
          await Deno.writeTextFile(`${m}/f${i}`, `file ${i}\n`);
          await run("setfattr", ["-n", "user.shared", "-v", valueHex, `${m}/f${i}`]);
          await run("setfattr", ["-n", "user.n", "-v", "1", `${m}/f${i}`]);
        }
        await Deno.writeTextFile(`${m}/new`, "joins later\n");
      },
    });
    const fs = await loadFs(await Deno.readFile(img));
    const per = fs.sb.blockSize / 512;
    const ino = async (name: string) => {
      const r = await run("debugfs", ["-R", `stat /${name}`, img]);
      return Number(/Inode: (\d+)/.exec(r.stdout)![1]);
    };
    const inos: number[] = [];
    for (let i = 0; i < 5; i++) inos.push(await ino(`f${i}`));
    const newIno = await ino("new");
    const kernelBlock = (await fieldsOf(fs, inos[0])).fileAcl;
    for (const i of inos) assert.equal((await fieldsOf(fs, i)).fileAcl, kernelBlock);
    assert.equal(await refcountOf(fs, kernelBlock), 5, "the kernel shared the block");

    // ext4ts changes f0 (copy on write) and gives "new" the same set (joins the kernel's block).
    await inTx(fs, async (ctx) => {
      await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, inos[0], "user.shared", enc.encode("x"));
      await setXattrs(ctx.tx, fs.alloc, fs.sb, fs.gdt, newIno, [
        { name: "user.shared", value },
        { name: "user.n", value: enc.encode("1") },
      ]);
    });
    assert.notEqual((await fieldsOf(fs, inos[0])).fileAcl, kernelBlock);
    assert.equal((await fieldsOf(fs, newIno)).fileAcl, kernelBlock);
    assert.equal((await fieldsOf(fs, newIno)).blocks512, 2 * per);
    assert.equal(await refcountOf(fs, kernelBlock), 5);
    await assertClean(dir.path, fs);
    await Deno.writeFile(img, fs.dev.bytes);

    // The kernel reads every file back, then changes one sharer itself.
    await withKernelMount(img, async (mnt) => {
      const view = await kernelView(mnt);
      const want = { "user.n": hex(enc.encode("1")), "user.shared": hex(value) };
      for (const n of ["f1", "f2", "f3", "f4", "new"]) assert.deepEqual(view[n].x, want, n);
      assert.deepEqual(view.f0.x, {
        "user.n": hex(enc.encode("1")),
        "user.shared": hex(enc.encode("x")),
      });
      await runOk("setfattr", ["-n", "user.shared", "-v", "y", `${mnt}/f1`]);
      await runOk("setfattr", [
        "-n",
        "user.extra",
        "-v",
        "0x" + hex(pattern(4, 200)),
        `${mnt}/new`,
      ]);
    });
    const back = await loadFs(await Deno.readFile(img));
    assert.equal(await refcountOf(back, kernelBlock), 3, "the kernel copied on write twice");
    const x = await xattrsOf(back, newIno);
    assert.equal(x.get("user.extra"), hex(pattern(4, 200)));
    assert.equal(x.get("user.shared"), hex(value));
    const r = await run("e2fsck", ["-fn", img]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  },
);

testWith(
  `the refcount limit (${XATTR_REFCOUNT_MAX}) starts a new block`,
  KERNEL,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2], ["-N", "2048"]));
    const count = XATTR_REFCOUNT_MAX + 6;
    const value = pattern(1, 200);
    const inos: number[] = [];
    const top = await inTx(fs, (ctx) => makeDirectory(ctx, 2, "many", { perm: 0o755 }));
    for (let start = 0; start < count; start += 300) {
      await inTx(fs, async (ctx) => {
        for (let i = start; i < Math.min(count, start + 300); i++) {
          const f = await createFile(ctx, top, `f${i}`, new Uint8Array(0), { perm: 0o644 });
          await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, f, "user.v", value);
          inos.push(f);
        }
      });
    }
    const blocks = new Map<number, number>();
    for (const i of inos) {
      const b = (await fieldsOf(fs, i)).fileAcl;
      blocks.set(b, (blocks.get(b) ?? 0) + 1);
    }
    assert.equal(blocks.size, 2);
    const [[full, n1], [rest, n2]] = [...blocks].sort((a, b) => b[1] - a[1]);
    assert.deepEqual([n1, n2], [XATTR_REFCOUNT_MAX, 6]);
    assert.equal(await refcountOf(fs, full), XATTR_REFCOUNT_MAX);
    assert.equal(await refcountOf(fs, rest), 6);
    // A sharer of the full block leaves; the next identical set may join it again.
    assert.equal(
      (await fieldsOf(fs, inos[0])).fileAcl,
      full,
      "the first files filled the first block",
    );
    await inTx(fs, (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, inos[0], "user.v", null));
    assert.equal(await refcountOf(fs, full), XATTR_REFCOUNT_MAX - 1);
    await assertClean(dir.path, fs);
    const path = `${dir.path}/r.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      const view = await kernelView(`${mnt}/many`);
      const withValue = Object.values(view).filter((v) => v.x["user.v"] === hex(value)).length;
      assert.equal(withValue, count - 1);
    }, { readOnly: true });
  },
);

// ---- random sequences against a model ----

const ACL_A = aclToXattr([
  { tag: 0x01, perm: 6, id: U },
  { tag: 0x02, perm: 7, id: 1000 },
  { tag: 0x04, perm: 4, id: U },
  { tag: 0x10, perm: 7, id: U },
  { tag: 0x20, perm: 4, id: U },
]);
const ACL_B = aclToXattr([
  { tag: 0x01, perm: 7, id: U },
  { tag: 0x04, perm: 5, id: U },
  { tag: 0x08, perm: 5, id: 4242 },
  { tag: 0x10, perm: 5, id: U },
  { tag: 0x20, perm: 0, id: U },
]);
const PLAIN = [
  new Uint8Array(0),
  enc.encode("1"),
  pattern(11, 30),
  pattern(12, 120),
  pattern(13, 400),
  pattern(14, 1500),
];
const NAMES: { name: string; values: Uint8Array[] }[] = [
  { name: "user.a", values: PLAIN },
  { name: "user.b", values: PLAIN },
  { name: "trusted.t", values: PLAIN },
  { name: "security.s", values: PLAIN },
  { name: "user.é", values: PLAIN },
  { name: "system.posix_acl_access", values: [ACL_A, ACL_B] },
];
const FILES = 5;

type XOp =
  | { kind: "set"; file: number; name: number; value: number }
  | { kind: "remove"; file: number; name: number }
  | { kind: "copy"; file: number; from: number }
  | { kind: "recreate"; file: number }
  | { kind: "end"; commit: boolean };

const xopArb: fc.Arbitrary<XOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("set" as const),
      file: fc.nat(FILES - 1),
      name: fc.nat(NAMES.length - 1),
      value: fc.nat(PLAIN.length - 1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("remove" as const),
      file: fc.nat(FILES - 1),
      name: fc.nat(NAMES.length - 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("copy" as const),
      file: fc.nat(FILES - 1),
      from: fc.nat(FILES - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("recreate" as const), file: fc.nat(FILES - 1) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("end" as const), commit: fc.boolean() }) },
);

type Model = Map<string, Uint8Array>[];
const cloneModel = (m: Model): Model => m.map((x) => new Map(x));

for (
  const layout of [
    LAYOUTS[2],
    LAYOUTS[4],
    { ...LAYOUTS[3], name: "ext4-1k-128-byte-inodes", args: [...LAYOUTS[3].args, "-I", "128"] },
  ]
) {
  testWith(
    `random xattr sequences over several inodes match a model; blocks shared and counted (${layout.name})`,
    KERNEL,
    async () => {
      await using dir = await tempDir();
      const base = await mkfsImage(dir.path, layout);
      let run = 0;
      let sharedSeen = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(xopArb, { minLength: 10, maxLength: 40, size: "max" }),
          async (ops) => {
            run++;
            const fs = await loadFs(base);
            const per = fs.sb.blockSize / 512;
            let inos = await inTx(fs, async (ctx) => {
              const list: number[] = [];
              for (let i = 0; i < FILES; i++) {
                list.push(await createFile(ctx, 2, `f${i}`, new Uint8Array(0), { perm: 0o644 }));
              }
              return list;
            });
            let committed: Model = inos.map(() => new Map());
            let committedInos = [...inos];
            let model = cloneModel(committed);
            let tx = fs.cache.begin();
            const apply = async (ino: number, changes: XattrChangeArg[]) =>
              await setXattrs(tx, fs.alloc, fs.sb, fs.gdt, ino, changes);
            for (const op of [...ops, { kind: "end" as const, commit: true }]) {
              if (op.kind === "end") {
                if (op.commit) {
                  await tx.commit();
                  committed = cloneModel(model);
                  committedInos = [...inos];
                } else {
                  tx.abort();
                  model = cloneModel(committed);
                  inos = [...committedInos];
                }
                tx = fs.cache.begin();
                continue;
              }
              if (op.kind === "recreate") {
                // Unlinking releases the inode's block reference; a new empty file takes its name.
                const ctx = ctxOf(fs, tx);
                await unlinkEntry(ctx, 2, `f${op.file}`);
                inos[op.file] = await createFile(ctx, 2, `f${op.file}`, new Uint8Array(0), {
                  perm: 0o644,
                });
                model[op.file] = new Map();
                continue;
              }
              const target = model[op.file];
              let changes: XattrChangeArg[];
              if (op.kind === "set") {
                const n = NAMES[op.name];
                changes = [{ name: n.name, value: n.values[op.value % n.values.length] }];
              } else if (op.kind === "remove") {
                changes = [{ name: NAMES[op.name].name, value: null }];
              } else {
                const src = model[op.from];
                changes = [
                  ...[...target.keys()].filter((k) => !src.has(k)).map((name) => ({
                    name,
                    value: null,
                  })),
                  ...[...src].map(([name, value]) => ({ name, value })),
                ];
              }
              if (op.kind === "remove" && !target.has(changes[0].name)) {
                await assert.rejects(
                  () => apply(inos[op.file], changes),
                  (e: Ext4Error) => e.code === "NOT_FOUND",
                );
                continue;
              }
              try {
                await apply(inos[op.file], changes);
              } catch (e) {
                // Too much for the inode and one block: refused, nothing changed.
                assert.ok(e instanceof Ext4Error && e.code === "NO_SPACE", String(e));
                assert.equal(tx.state, "open");
                continue;
              }
              for (const c of changes) {
                if (c.value === null) target.delete(c.name);
                else target.set(c.name, c.value);
              }
              const acl = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, inos[op.file]))
                .fileAcl;
              if (acl && xattrBlockHeader(await tx.read(acl)).refcount > 1) sharedSeen++;
            }
            tx.abort();

            // Every inode reads back its model; references counted; no two identical blocks.
            const refs = new Map<number, number>();
            for (const [i, ino] of inos.entries()) {
              const want = new Map([...model[i]].map(([n, v]) => [n, hex(v)]));
              assert.deepEqual(await xattrsOf(fs, ino), want, `f${i}`);
              const f = await fieldsOf(fs, ino);
              assert.equal(f.blocks512, f.fileAcl ? per : 0, `i_blocks of f${i}`);
              if (f.fileAcl) refs.set(f.fileAcl, (refs.get(f.fileAcl) ?? 0) + 1);
            }
            const contents = new Set<string>();
            for (const [block, n] of refs) {
              assert.equal(await refcountOf(fs, block), n, `refcount of block ${block}`);
              const img = await fs.cache.read(block);
              const key = hex(img.subarray(32));
              assert.ok(!contents.has(key), `block ${block} duplicates another shared block`);
              contents.add(key);
            }
            await assertClean(dir.path, fs);
            if (run % 5 === 1) {
              const path = `${dir.path}/m.img`;
              await Deno.writeFile(path, fs.dev.bytes);
              await withKernelMount(path, async (mnt) => {
                const view = await kernelView(mnt);
                for (let i = 0; i < FILES; i++) {
                  const want = Object.fromEntries([...model[i]].map(([n, v]) => [n, hex(v)]));
                  assert.deepEqual(view[`f${i}`].x, want, `kernel: f${i}`);
                }
              }, { readOnly: true });
            }
          },
        ),
        { numRuns: 12 },
      );
      assert.ok(sharedSeen > 0, "the sequences exercised shared blocks");
    },
  );
}

testWith(
  "the kernel joins blocks ext4ts made (its mbcache finds them by ext4ts's hashes)",
  [...KERNEL, "setfattr", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const layout = { ...LAYOUTS[3], name: "ext4-1k-128", args: [...LAYOUTS[3].args, "-I", "128"] };
    const fs = await loadFs(await mkfsImage(dir.path, layout));
    // In the block's entry order (name index, name length, name). The kernel (6.18 measured)
    // joins a cached block only when the block it built is laid out like it: it places each
    // value below the previous one in the order they were set, ext4ts places them in entry
    // order. Set in any other order, the hashes match but the kernel keeps its own block.
    const set: XattrChangeArg[] = [
      { name: "user.a", value: enc.encode("α") },
      { name: "user.b", value: pattern(21, 100) },
      { name: "user.é", value: pattern(22, 7) },
      { name: "trusted.t", value: new Uint8Array(0) },
    ];
    const inos = await inTx(fs, async (ctx) => {
      const out: number[] = [];
      for (const n of ["a", "b"]) {
        const ino = await createFile(ctx, 2, n, new Uint8Array(0), { perm: 0o644 });
        await setXattrs(ctx.tx, fs.alloc, fs.sb, fs.gdt, ino, set);
        out.push(ino);
      }
      return out;
    });
    const ours = (await fieldsOf(fs, inos[0])).fileAcl;
    assert.equal(await refcountOf(fs, ours), 2);
    const entries = parseXattrBlock(fs.sb, inos[0], ours, await fs.cache.read(ours));
    assert.deepEqual(entries.map((e) => e.name), set.map((x) => x.name), "set in entry order");
    const img = `${dir.path}/j.img`;
    await Deno.writeFile(img, fs.dev.bytes);
    await withKernelMount(img, async (mnt) => {
      // The mbcache knows only blocks the kernel has read or written since the mount: without
      // this read it has nothing to join.
      await kernelView(mnt);
      await Deno.writeTextFile(`${mnt}/c`, "");
      for (const { name, value } of set) {
        await runOk("setfattr", ["-n", name, "-v", "0x" + hex(value!), `${mnt}/c`]);
      }
    });
    const r = await run("debugfs", ["-R", "stat /c", img]);
    assert.match(r.stdout, new RegExp(`File ACL: ${ours}\\b`), "the kernel shared ext4ts's block");
    const back = await loadFs(await Deno.readFile(img));
    assert.equal(await refcountOf(back, ours), 3);
    const check = await run("e2fsck", ["-fn", img]);
    assert.equal(check.code, 0, check.stdout);
  },
);

testWith(
  "a freed xattr block is never shared again (the index forgets it; free blocks are refused)",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const big = pattern(31, 500);
    const [a, b, c] = await inTx(fs, async (ctx) => {
      const out: number[] = [];
      for (const n of ["a", "b", "c"]) {
        out.push(await createFile(ctx, 2, n, new Uint8Array(0), { perm: 0o644 }));
      }
      return out;
    });
    for (const [freeBy, target] of [["remove", b], ["unlink", c]] as const) {
      await inTx(fs, (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, a, "user.big", big));
      const x = (await fieldsOf(fs, a)).fileAcl;
      assert.equal(await refcountOf(fs, x), 1);
      // The last reference goes: the block is free but still holds the same entries.
      if (freeBy === "remove") {
        await inTx(fs, (ctx) => setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, a, "user.big", null));
      } else {
        await inTx(fs, (ctx) => unlinkEntry(ctx, 2, "a"));
      }
      assert.equal(await inUse(fs, x), false);
      assert.equal(await refcountOf(fs, x), 1, "its old image is unchanged on disk");
      // Occupy the freed block so the next set cannot get it back by allocation.
      await inTx(fs, async (ctx) => {
        const [run] = await fs.alloc.allocateBlocks(ctx.tx, x, 1);
        assert.equal(run.start, x);
        await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, target, "user.big", big);
      });
      const y = (await fieldsOf(fs, target)).fileAcl;
      assert.notEqual(y, x, `${freeBy}: a new block, not the freed one`);
      assert.equal(await refcountOf(fs, y), 1);
      // Give the occupied block back and recreate a for the next round.
      await inTx(fs, async (ctx) => {
        await fs.alloc.freeBlocks(ctx.tx, x, 1);
        if (freeBy === "unlink") return;
        await setXattr(ctx.tx, fs.alloc, fs.sb, fs.gdt, target, "user.big", null);
      });
    }
    await assertClean(dir.path, fs);
  },
);
