import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { decodeInode, encodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { parseDirBlock } from "../lib/ondisk/dirent.ts";
import { readFileMap } from "../lib/ext4/file_map_write.ts";
import { parseInlineDataXattr } from "../lib/ondisk/inline_data.ts";
import { createFile, listEntries, lookupEntry, makeDirectory } from "../lib/ext4/namei.ts";
import { removeDirectory, unlinkEntry } from "../lib/ext4/unlink.ts";
import { renameEntry } from "../lib/ext4/rename.ts";
import { writeFileRange } from "../lib/ext4/file_update.ts";
import { setXattr } from "../lib/ext4/xattr.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import {
  fsck,
  IMAGE_TOOLS,
  type Layout,
  LAYOUTS,
  type LoadedFs,
  loadFs,
  mkfsImage,
} from "./write_fixtures.ts";
import type { OpContext } from "../lib/ext4/context.ts";

const INLINE = LAYOUTS.find((l) => l.name === "ext4-inline_data")!;
const NEEDS = [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"];

/** Every path below the root (lost+found skipped) → "dir" or "file <size>", via the kernel. */
async function kernelTree(path: string): Promise<Map<string, string>> {
  return await withKernelMount(path, async (mnt) => {
    const out = new Map<string, string>();
    const walk = async (rel: string, depth: number) => {
      assert.ok(depth < 16);
      for await (const e of Deno.readDir(`${mnt}/${rel}`)) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (p === "lost+found") continue;
        if (e.isDirectory) {
          out.set(p, "dir");
          await walk(p, depth + 1);
        } else out.set(p, `file ${(await Deno.stat(`${mnt}/${p}`)).size}`);
      }
    };
    await walk("", 0);
    return out;
  }, { readOnly: true });
}

function ctxOf(fs: LoadedFs, tx: OpContext["tx"]): OpContext {
  return { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
}

async function flagsOf(fs: LoadedFs, tx: OpContext["tx"], ino: number): Promise<number> {
  return decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)).flags;
}

type Op =
  | { kind: "file" | "dir"; dir: number; len: number; tag: number }
  | { kind: "remove"; pick: number }
  | { kind: "move"; pick: number; dir: number; tag: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constantFrom(...Array(6).fill("file" as const), "dir" as const),
      dir: fc.nat(),
      len: fc.integer({ min: 1, max: 40 }),
      tag: fc.nat(999),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("move" as const),
      pick: fc.nat(),
      dir: fc.nat(),
      tag: fc.nat(999),
    }),
  },
);

/** Large inodes (a 324-byte system.data room), 1 KiB blocks, no metadata_csum. */
const INLINE_BIG_INODES: Layout = {
  name: "ext4-inline_data-512",
  mkfs: "mkfs.ext4",
  args: ["-b", "1024", "-I", "512", "-O", "inline_data,^metadata_csum"],
  size: "24M",
};

for (const layout of [INLINE, INLINE_BIG_INODES]) {
  testWith(
    `inline directories on ${layout.name}: random entries in inline dirs convert them to blocks as the kernel does; e2fsck-clean, kernel listing equals the model`,
    NEEDS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const path = `${dir.path}/m.img`;
      let sawInline = 0;
      let sawConverted = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 60, maxLength: 150 }), async (ops) => {
          const fs = await loadFs(image);
          const tx = fs.cache.begin();
          const ctx = ctxOf(fs, tx);
          // path → inode; directories are the paths whose value is negative-free "dir" entries.
          const model = new Map<string, { ino: number; dir: boolean; size: number }>();
          const dirs = () => ["", ...[...model].filter(([, v]) => v.dir).map(([p]) => p)].sort();
          const inoOf = (p: string) => (p === "" ? 2 : model.get(p)!.ino);
          // Every run starts by filling one directory past its inline room (so it converts).
          const fill: Op[] = [{ kind: "dir", dir: 0, len: 8, tag: 1 }];
          for (let k = 0; k < 24; k++) fill.push({ kind: "file", dir: 1, len: 30, tag: 4 * k + 5 });
          for (const op of [...fill, ...ops]) {
            if (op.kind === "file" || op.kind === "dir") {
              const ds = dirs();
              // Mostly into the first few directories, so that some fill up and convert.
              const parent = ds[op.dir % (op.tag % 4 === 0 ? ds.length : Math.min(ds.length, 3))];
              const name = `${op.tag}`.padEnd(op.len, "x");
              const p = parent ? `${parent}/${name}` : name;
              if (model.has(p) || p.split("/").length > 4) continue;
              if (op.kind === "dir") {
                const ino = await makeDirectory(ctx, inoOf(parent), name, { perm: 0o755 });
                assert.ok(
                  (await flagsOf(fs, tx, ino)) & InodeFlags.INLINE_DATA,
                  "new dirs are inline",
                );
                model.set(p, { ino, dir: true, size: 0 });
              } else {
                const size = op.tag % 3 === 0 ? op.tag : 0;
                const ino = await createFile(ctx, inoOf(parent), name, new Uint8Array(size), {
                  perm: 0o644,
                });
                model.set(p, { ino, dir: false, size });
              }
            } else if (op.kind === "remove") {
              const paths = [...model.keys()].sort();
              if (!paths.length) continue;
              const p = paths[op.pick % paths.length];
              const v = model.get(p)!;
              const parent = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "";
              const name = p.slice(parent ? parent.length + 1 : 0);
              if (v.dir) {
                if ([...model.keys()].some((q) => q.startsWith(p + "/"))) continue;
                await removeDirectory(ctx, inoOf(parent), name);
              } else await unlinkEntry(ctx, inoOf(parent), name);
              model.delete(p);
            } else if (op.kind === "move") {
              const paths = [...model.keys()].sort();
              if (!paths.length) continue;
              const from = paths[op.pick % paths.length];
              const ds = dirs().filter((d) => d !== from && !d.startsWith(from + "/"));
              const to = ds[op.dir % ds.length];
              const name = `m${op.tag}`;
              const dst = to ? `${to}/${name}` : name;
              if (model.has(dst) || dst.split("/").length > 4) continue;
              const fromParent = from.includes("/") ? from.slice(0, from.lastIndexOf("/")) : "";
              await renameEntry(
                ctx,
                inoOf(fromParent),
                from.slice(fromParent ? fromParent.length + 1 : 0),
                inoOf(to),
                name,
              );
              for (const [k, v] of [...model]) {
                if (k === from || k.startsWith(from + "/")) {
                  model.delete(k);
                  model.set(dst + k.slice(from.length), v);
                }
              }
            }
          }
          // Every directory reads back through the write path's own lookups.
          for (const d of dirs()) {
            const ino = inoOf(d);
            if (ino !== 2) {
              if ((await flagsOf(fs, tx, ino)) & InodeFlags.INLINE_DATA) sawInline++;
              else sawConverted++;
            }
            const names = (await listEntries(ctx, ino)).map((e) =>
              new TextDecoder().decode(e.name)
            );
            const want = [...model.keys()].filter((k) =>
              k.startsWith(d ? d + "/" : "") && !k.slice(d ? d.length + 1 : 0).includes("/")
            ).map((k) => k.slice(d ? d.length + 1 : 0));
            if (d === "") want.push("lost+found");
            assert.deepEqual(names.sort(), want.sort(), `entries of /${d}`);
            for (const n of want) if (n !== "lost+found") assert.ok(await lookupEntry(ctx, ino, n));
          }
          await tx.commit();
          const check = await fsck(dir.path, fs.dev.bytes);
          assert.equal(check.code, 0, check.output);
          await Deno.writeFile(path, fs.dev.bytes);
          const want = new Map(
            [...model].map(([p, v]) => [p, v.dir ? "dir" : `file ${v.size}`] as [string, string]),
          );
          assert.deepEqual(await kernelTree(path), want);
          // The reader (readdir, lookup, getattr) sees the same tree.
          const reader = await Ext4.openDevice(new MemoryBlockDevice(fs.dev.bytes.slice()));
          const seen = new Map<string, string>();
          for await (const { path: p, stat } of reader.walk("/")) {
            if (p === "/" || p.startsWith("/lost+found")) continue;
            seen.set(p.slice(1), stat.type === "dir" ? "dir" : `file ${stat.size}`);
          }
          await reader.close();
          assert.deepEqual(seen, want);
        }),
        { numRuns: 6 },
      );
      assert.ok(
        sawInline > 0 && sawConverted > 0,
        `inline ${sawInline}, converted ${sawConverted}`,
      );
    },
  );
}

testWith(
  "inline directories: one fills i_block, then system.data, converts to a block, then to an htree",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, INLINE));
    const tx = fs.cache.begin();
    const ctx = ctxOf(fs, tx);
    const d = await makeDirectory(ctx, 2, "d", { perm: 0o755 });
    const size = async () => decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, d)).size;
    assert.equal(await size(), 60);
    // 56 bytes of i_block: four 12-byte entries (names of up to 4 bytes).
    for (let i = 0; i < 4; i++) {
      await createFile(ctx, d, `f${i}`, new Uint8Array(0), { perm: 0o644 });
    }
    assert.equal(await size(), 60, "i_block holds four short entries");
    await createFile(ctx, d, "f4", new Uint8Array(0), { perm: 0o644 });
    assert.equal(await size(), 128, "system.data grew to the room of a 256-byte inode");
    let n = 5;
    while ((await flagsOf(fs, tx, d)) & InodeFlags.INLINE_DATA) {
      await createFile(ctx, d, `f${n++}`, new Uint8Array(0), { perm: 0o644 });
      assert.ok(n < 20);
    }
    // As the kernel: f4..f8 fill the 68-byte value, f9 converts (checked with a loop mount).
    assert.equal(n, 10, "five entries fill system.data, the next converts");
    assert.equal(await size(), fs.sb.blockSize);
    while (!((await flagsOf(fs, tx, d)) & InodeFlags.INDEX)) {
      await createFile(ctx, d, `a-longer-name-for-entry-${n++}`, new Uint8Array(0), {
        perm: 0o644,
      });
      assert.ok(n < 400);
    }
    for (let i = 0; i < 20; i++) await unlinkEntry(ctx, d, `f${i % 10}`).catch(() => {});
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/h.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    const tree = await kernelTree(path);
    assert.equal(tree.size, 1 + (n - 10));
  },
);

testWith(
  "inline directories made by the kernel: ext4ts adds, removes, moves and converts; the kernel and e2fsck agree",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/k.img`;
    await Deno.writeFile(path, await mkfsImage(dir.path, INLINE));
    await withKernelMount(path, async (mnt) => {
      for (const d of ["a", "b", "c"]) await Deno.mkdir(`${mnt}/${d}`);
      await Deno.mkdir(`${mnt}/a/sub`);
      for (let i = 0; i < 6; i++) await Deno.writeTextFile(`${mnt}/a/k${i}`, "kernel");
      await Deno.writeTextFile(`${mnt}/b/one`, "x".repeat(100));
    });
    let fs = await loadFs(await Deno.readFile(path));
    let tx = fs.cache.begin();
    let ctx = ctxOf(fs, tx);
    const a = await lookupEntry(ctx, 2, "a");
    const b = await lookupEntry(ctx, 2, "b");
    const c = await lookupEntry(ctx, 2, "c");
    for (const x of [a, b, c]) assert.ok((await flagsOf(fs, tx, x)) & InodeFlags.INLINE_DATA);
    // In a (i_block and system.data in use): remove one, add two, move sub to b (its ".."
    // changes), rmdir c, and fill b until it converts.
    await unlinkEntry(ctx, a, "k2");
    await createFile(ctx, a, "new1", new TextEncoder().encode("ext4ts"), { perm: 0o644 });
    await createFile(ctx, a, "new2", new Uint8Array(0), { perm: 0o644 });
    await renameEntry(ctx, a, "sub", b, "moved");
    const moved = await lookupEntry(ctx, b, "moved");
    assert.equal(await lookupEntry(ctx, moved, ".."), b);
    await removeDirectory(ctx, 2, "c");
    for (let i = 0; i < 12; i++) {
      await createFile(ctx, b, `b-entry-${i}`, new Uint8Array(0), { perm: 0o644 });
    }
    assert.ok(!((await flagsOf(fs, tx, b)) & InodeFlags.INLINE_DATA), "b converted");
    // An inline file written in place, then grown out of its inode.
    const one = await lookupEntry(ctx, b, "one");
    await writeFileRange(ctx, one, 0, new TextEncoder().encode("yy"));
    assert.ok((await flagsOf(fs, tx, one)) & InodeFlags.INLINE_DATA, "still inline");
    await tx.commit();
    let check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    await Deno.writeFile(path, fs.dev.bytes);
    const want = new Map<string, string>([
      ["a", "dir"],
      ["b", "dir"],
      ["b/moved", "dir"],
      ["b/one", "file 100"],
      ["a/new1", "file 6"],
      ["a/new2", "file 0"],
    ]);
    for (const i of [0, 1, 3, 4, 5]) want.set(`a/k${i}`, "file 6");
    for (let i = 0; i < 12; i++) want.set(`b/b-entry-${i}`, "file 0");
    assert.deepEqual(await kernelTree(path), want);
    // The kernel keeps working on what ext4ts left, then ext4ts again.
    await withKernelMount(path, async (mnt) => {
      const got = await Deno.readTextFile(`${mnt}/b/one`);
      assert.equal(got, "yy" + "x".repeat(98));
      await Deno.writeTextFile(`${mnt}/a/kernel-again`, "k");
      await Deno.remove(`${mnt}/a/new1`);
    });
    fs = await loadFs(await Deno.readFile(path));
    tx = fs.cache.begin();
    ctx = ctxOf(fs, tx);
    assert.ok(await lookupEntry(ctx, a, "kernel-again"));
    assert.equal(await lookupEntry(ctx, a, "new1"), 0);
    await tx.commit();
    check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
  },
);

testWith(
  "inline inodes take ordinary xattrs; system.data stays in the inode body and is not settable",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, INLINE));
    const tx = fs.cache.begin();
    const ctx = ctxOf(fs, tx);
    const d = await makeDirectory(ctx, 2, "d", { perm: 0o755 });
    const body = new TextEncoder().encode("x".repeat(128));
    const f = await createFile(ctx, 2, "f", body, { perm: 0o644 });
    const value = new TextEncoder().encode("v".repeat(30));
    for (const ino of [d, f]) {
      await setXattr(tx, fs.alloc, fs.sb, fs.gdt, ino, "user.note", value);
      await assert.rejects(
        () => setXattr(tx, fs.alloc, fs.sb, fs.gdt, ino, "system.data", value),
        /not an attribute/,
      );
    }
    // The directory's body now has less room: i_block fills, then it converts directly.
    for (let i = 0; i < 8; i++) {
      await createFile(ctx, d, `e${i}`, new Uint8Array(0), { perm: 0o644 });
    }
    assert.ok(!((await flagsOf(fs, tx, d)) & InodeFlags.INLINE_DATA));
    assert.ok((await flagsOf(fs, tx, f)) & InodeFlags.INLINE_DATA);
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/x.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      assert.deepEqual(await Deno.readFile(`${mnt}/f`), body);
      for (const p of ["d", "f"]) {
        const r = await new Deno.Command("getfattr", {
          args: ["--only-values", "-n", "user.note", `${mnt}/${p}`],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(new TextDecoder().decode(r.stdout), "v".repeat(30), p);
      }
    }, { readOnly: true });
  },
);

testWith(
  "inline directories and files made by ext4ts: the kernel extends, shrinks and converts them; e2fsck clean",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, INLINE));
    const tx = fs.cache.begin();
    const ctx = ctxOf(fs, tx);
    // Directories with 0, 4 (i_block full) and 7 (system.data in use) entries.
    const counts = [0, 4, 7];
    for (const n of counts) {
      const d = await makeDirectory(ctx, 2, `d${n}`, { perm: 0o755 });
      for (let i = 0; i < n; i++) {
        await createFile(ctx, d, `e${i}`, new Uint8Array(0), { perm: 0o644 });
      }
      assert.ok((await flagsOf(fs, tx, d)) & InodeFlags.INLINE_DATA);
    }
    for (const size of [10, 60, 100]) {
      await createFile(ctx, 2, `f${size}`, new Uint8Array(size).fill(0x61), { perm: 0o644 });
    }
    await tx.commit();
    const path = `${dir.path}/r.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    await withKernelMount(path, async (mnt) => {
      for (const n of counts) {
        const names = [];
        for await (const e of Deno.readDir(`${mnt}/d${n}`)) names.push(e.name);
        assert.equal(names.length, n);
        await Deno.writeTextFile(`${mnt}/d${n}/kernel`, "k");
        if (n) await Deno.remove(`${mnt}/d${n}/e0`);
        await Deno.mkdir(`${mnt}/d${n}/sub`);
      }
      for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${mnt}/d7/more${i}`, "");
      for (const size of [10, 60, 100]) {
        await Deno.writeTextFile(`${mnt}/f${size}`, "b".repeat(20), { append: true });
      }
      await Deno.remove(`${mnt}/d0/sub`);
      await Deno.remove(`${mnt}/d0/kernel`);
      await Deno.remove(`${mnt}/d0`);
    });
    const check = await fsck(dir.path, await Deno.readFile(path));
    assert.equal(check.code, 0, check.output);
    const tree = await kernelTree(path);
    assert.equal(tree.get("f100"), "file 120");
    assert.equal(tree.get("f60"), "file 80");
    assert.equal([...tree.keys()].filter((k) => k.startsWith("d7/")).length, 6 + 2 + 20);
    assert.ok(!tree.has("d0"));
  },
);

testWith(
  "inline directories: a damaged one is a CorruptError before any change",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, INLINE));
    let tx = fs.cache.begin();
    let ctx = ctxOf(fs, tx);
    const d = await makeDirectory(ctx, 2, "d", { perm: 0o755 });
    for (let i = 0; i < 6; i++) {
      await createFile(ctx, d, `e${i}`, new Uint8Array(0), { perm: 0o644 });
    }
    await tx.commit();
    const damage = async (edit: (block: Uint8Array) => void) => {
      const t = fs.cache.begin();
      const raw = await readInodeRaw(t, fs.sb, fs.gdt, d);
      const f = decodeInode(fs.sb, raw);
      const block = f.block.slice();
      edit(block);
      await writeInode(t, fs.sb, fs.gdt, d, encodeInode(fs.sb, d, { ...f, block }, raw));
      await t.commit();
    };
    const cases: [string, (b: Uint8Array) => void][] = [
      ["rec_len 0", (b) => (b[8] = b[9] = 0)],
      ["rec_len past i_block", (b) => (b[8] = 200)],
      ["parent out of range", (b) => new DataView(b.buffer).setUint32(0, 0xffffff, true)],
    ];
    for (const [what, edit] of cases) {
      const bt = fs.cache.begin();
      const before = (await readInodeRaw(bt, fs.sb, fs.gdt, d)).slice();
      bt.abort();
      await damage(edit);
      tx = fs.cache.begin();
      ctx = ctxOf(fs, tx);
      for (
        const op of [
          () => createFile(ctx, d, "new", new Uint8Array(0), { perm: 0o644 }),
          () => lookupEntry(ctx, d, "e1"),
          () => listEntries(ctx, d),
          () => unlinkEntry(ctx, d, "e1"),
        ]
      ) {
        await assert.rejects(op, (e: Error) => e.name === "CorruptError", what);
      }
      assert.equal(tx.state, "open", what);
      assert.equal(tx.metadataBlocks, 0, what);
      tx.abort();
      // Restore for the next case.
      const t = fs.cache.begin();
      await writeInode(t, fs.sb, fs.gdt, d, before.slice());
      await t.commit();
    }
  },
);

/** The record layout of a directory (inline runs or its first block), inode numbers left out. */
async function layoutOf(fs: LoadedFs, ino: number): Promise<string[]> {
  const tx = fs.cache.begin();
  try {
    const raw = await readInodeRaw(tx, fs.sb, fs.gdt, ino);
    const f = decodeInode(fs.sb, raw);
    const show = (
      run: string,
      e: { offset: number; recLen: number; name: Uint8Array; ino: number },
    ) => `${run}@${e.offset}+${e.recLen} ${e.ino ? new TextDecoder().decode(e.name) : "-"}`;
    const out = [`size ${f.size} inline ${(f.flags & InodeFlags.INLINE_DATA) !== 0}`];
    if (f.flags & InodeFlags.INLINE_DATA) {
      for (const e of parseDirBlock(fs.sb, f.block.subarray(4), "i_block", 56)) {
        out.push(show("i", e));
      }
      const extra = parseInlineDataXattr(fs.sb, ino, raw) ?? new Uint8Array(0);
      if (extra.length) {
        for (const e of parseDirBlock(fs.sb, extra, "value", extra.length)) out.push(show("v", e));
      }
    } else {
      const map = await readFileMap(tx, fs.sb, ino, f);
      const block = await tx.read(map.extents[0].physical);
      for (const e of parseDirBlock(fs.sb, block)) out.push(show("b", e));
    }
    return out;
  } finally {
    tx.abort();
  }
}

testWith(
  "inline directories: the record layout ext4ts writes is the kernel's, op for op",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, INLINE);
    // [op, name]: "+" creates a file, "-" removes it; checkpoints compare after each step.
    const steps: [string, string][][] = [
      [["+", "a"], ["+", "bb"], ["+", "ccc"]],
      [["+", "dddd"], ["-", "bb"], ["+", "e"]],
      [["+", "ffffffff"], ["+", "g"], ["-", "a"], ["+", "hhhhhhhhhhhh"]],
      [["-", "ffffffff"], ["+", "iiii"], ["+", "jj"]],
      [["+", "kkkkkkkkkkkkkkkkkkkk"], ["+", "l"]],
      [["-", "e"], ["+", "mmmmmm"], ["+", "n"]],
    ];
    const kernelPath = `${dir.path}/kernel.img`;
    await Deno.writeFile(kernelPath, image);
    await withKernelMount(kernelPath, (mnt) => Deno.mkdir(`${mnt}/d`));
    const ours = await loadFs(image);
    let tx = ours.cache.begin();
    const d = await makeDirectory(ctxOf(ours, tx), 2, "d", { perm: 0o755 });
    await tx.commit();
    for (const step of steps) {
      await withKernelMount(kernelPath, async (mnt) => {
        for (const [op, name] of step) {
          if (op === "+") await Deno.writeFile(`${mnt}/d/${name}`, new Uint8Array(0));
          else await Deno.remove(`${mnt}/d/${name}`);
        }
      });
      tx = ours.cache.begin();
      const ctx = ctxOf(ours, tx);
      for (const [op, name] of step) {
        if (op === "+") await createFile(ctx, d, name, new Uint8Array(0), { perm: 0o644 });
        else await unlinkEntry(ctx, d, name);
      }
      await tx.commit();
      const kernel = await loadFs(await Deno.readFile(kernelPath));
      const kd = await (async () => {
        const t = kernel.cache.begin();
        const ino = await lookupEntry(ctxOf(kernel, t), 2, "d");
        t.abort();
        return ino;
      })();
      assert.deepEqual(await layoutOf(ours, d), await layoutOf(kernel, kd), JSON.stringify(step));
    }
    const last = await layoutOf(ours, d);
    assert.match(last[0], /inline false/, "the steps end converted");
  },
);
