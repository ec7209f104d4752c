import assert from "node:assert/strict";
import fc from "fast-check";
import type { Ext4Error } from "../lib/errors.ts";
import {
  createFile,
  createSymlink,
  linkInode,
  lookupEntry,
  makeDirectory,
  makeNode,
} from "../lib/ext4/namei.ts";
import { removeDirectory, unlinkEntry } from "../lib/ext4/unlink.ts";
import { renameEntry } from "../lib/ext4/rename.ts";
import { setAttributes } from "../lib/ext4/attr.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";
import type { OpContext } from "../lib/ext4/context.ts";

/** What the model holds for each path. */
type Node =
  | { type: "dir"; ino: number }
  | { type: "file"; ino: number; data: Uint8Array }
  | { type: "symlink"; ino: number; target: string }
  | { type: "fifo"; ino: number };

type Op =
  | { kind: "mkdir" | "create" | "symlink" | "fifo"; dir: number; name: number; size: number }
  | { kind: "bulk"; dir: number; count: number }
  | { kind: "link"; pick: number; dir: number; name: number }
  | { kind: "unlink" | "rmdir"; pick: number }
  | { kind: "rename"; pick: number; dir: number; name: number; reuse: number; mode: number }
  | { kind: "end"; commit: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constantFrom(
        "mkdir" as const,
        "create" as const,
        "symlink" as const,
        "fifo" as const,
      ),
      dir: fc.nat(),
      name: fc.nat(40),
      size: fc.nat(30000),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("bulk" as const),
      dir: fc.nat(),
      count: fc.integer({ min: 20, max: 120 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("link" as const),
      pick: fc.nat(),
      dir: fc.nat(),
      name: fc.nat(40),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constantFrom("unlink" as const, "rmdir" as const),
      pick: fc.nat(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("rename" as const),
      pick: fc.nat(),
      dir: fc.nat(),
      name: fc.nat(40),
      reuse: fc.nat(),
      mode: fc.nat(5),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("end" as const), commit: fc.boolean() }) },
);

/** The model's answer to a rename: an error code, "noop", or the new model. */
function renameModel(
  model: Map<string, Node>,
  from: string,
  to: string,
  opts: { noReplace?: boolean; exchange?: boolean },
): string | Map<string, Node> {
  const src = model.get(from)!;
  const dst = model.get(to);
  const within = (p: string, a: string) => p === a || p.startsWith(a + "/");
  const move = (m: Map<string, Node>, a: string, b: string, out: Map<string, Node>) => {
    for (const [k, v] of m) if (within(k, a)) out.set(b + k.slice(a.length), v);
  };
  if (opts.exchange) {
    if (!dst) return "NOT_FOUND";
    if (from === to || src.ino === dst.ino) return "noop";
    if (src.type === "dir" && within(parentOf(to), from)) return "INVALID";
    if (dst.type === "dir" && within(parentOf(from), to)) return "INVALID";
    const out = new Map([...model].filter(([k]) => !within(k, from) && !within(k, to)));
    move(model, from, to, out);
    move(model, to, from, out);
    return out;
  }
  if (from === to) return "noop";
  if (dst) {
    if (opts.noReplace) return "EXISTS";
    if (dst.ino === src.ino) return "noop";
    if (dst.type === "dir" && src.type !== "dir") return "IS_DIRECTORY";
    if (dst.type !== "dir" && src.type === "dir") return "NOT_DIRECTORY";
    if (dst.type === "dir" && [...model.keys()].some((k) => parentOf(k) === to)) return "NOT_EMPTY";
  }
  if (src.type === "dir" && within(parentOf(to), from)) return "INVALID";
  const out = new Map([...model].filter(([k]) => !within(k, from) && k !== to));
  move(model, from, to, out);
  return out;
}

const nameOf = (n: number) => `entry-${n}-${"n".repeat(n % 17)}`;

function dirsOf(model: Map<string, Node>): string[] {
  return ["", ...[...model].filter(([, n]) => n.type === "dir").map(([p]) => p)].sort();
}

function join(dir: string, name: string) {
  return dir ? `${dir}/${name}` : name;
}

function parentOf(path: string) {
  return path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
}

async function kernelView(path: string) {
  return await withKernelMount(path, async (mnt) => {
    const out = new Map<string, string>();
    const walk = async (rel: string) => {
      for await (const e of Deno.readDir(`${mnt}/${rel}`)) {
        const p = join(rel, e.name);
        if (p === "lost+found") continue;
        const st = await Deno.lstat(`${mnt}/${p}`);
        if (e.isDirectory) {
          out.set(p, `dir nlink=${st.nlink}`);
          await walk(p);
        } else if (e.isSymlink) out.set(p, `symlink ${await Deno.readLink(`${mnt}/${p}`)}`);
        else if (st.isFifo) out.set(p, `fifo nlink=${st.nlink}`);
        else {
          const data = await Deno.readFile(`${mnt}/${p}`);
          out.set(
            p,
            `file nlink=${st.nlink} ${data.length} ${data.reduce((a, b) => (a * 31 + b) >>> 0, 7)}`,
          );
        }
      }
    };
    await walk("");
    return out;
  }, { readOnly: true });
}

function expectedView(model: Map<string, Node>) {
  const links = new Map<number, number>();
  for (const n of model.values()) links.set(n.ino, (links.get(n.ino) ?? 0) + 1);
  const out = new Map<string, string>();
  for (const [p, n] of model) {
    if (n.type === "dir") {
      const subdirs = [...model].filter(([q, m]) => m.type === "dir" && parentOf(q) === p).length;
      out.set(p, `dir nlink=${2 + subdirs}`);
    } else if (n.type === "symlink") out.set(p, `symlink ${n.target}`);
    else if (n.type === "fifo") out.set(p, `fifo nlink=${links.get(n.ino)}`);
    else {out.set(
        p,
        `file nlink=${links.get(n.ino)} ${n.data.length} ${
          n.data.reduce((a, b) => (a * 31 + b) >>> 0, 7)
        }`,
      );}
  }
  return out;
}

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0], LAYOUTS[4], LAYOUTS[9]]) {
  testWith(
    `namespace on ${layout.name}: random mkdir/create/symlink/mknod/link/unlink/rmdir match a model in the kernel, e2fsck-clean`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
          const fs = await loadFs(image);
          let committed = new Map<string, Node>();
          let model = new Map(committed);
          let tx = fs.cache.begin();
          const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
          const inoOf = (d: string) => d === "" ? 2 : (model.get(d) as { ino: number }).ino;
          for (const op of ops) {
            if (op.kind === "end") {
              if (op.commit) {
                await tx.commit();
                committed = new Map(model);
              } else {
                tx.abort();
                model = new Map(committed);
              }
              tx = fs.cache.begin();
              continue;
            }
            const dirs = dirsOf(model);
            if (op.kind === "bulk") {
              const d = dirs[op.dir % dirs.length];
              for (let i = 0; i < op.count; i++) {
                const p = join(d, `bulk-${i}-${"b".repeat(i % 23)}`);
                if (model.has(p)) continue;
                const ino = await createFile(
                  ctx(),
                  inoOf(d),
                  p.slice(p.lastIndexOf("/") + 1),
                  new Uint8Array(0),
                  { perm: 0o644 },
                );
                model.set(p, { type: "file", ino, data: new Uint8Array(0) });
              }
            } else if (op.kind === "link") {
              const files = [...model].filter(([, n]) => n.type === "file" || n.type === "fifo");
              if (!files.length) continue;
              const [, target] = files[op.pick % files.length];
              const d = dirs[op.dir % dirs.length];
              const p = join(d, nameOf(op.name));
              if (model.has(p)) {
                await assert.rejects(
                  () => linkInode(ctx(), inoOf(d), nameOf(op.name), target.ino),
                  (e: Ext4Error) => e.code === "EXISTS",
                );
                continue;
              }
              await linkInode(ctx(), inoOf(d), nameOf(op.name), target.ino);
              model.set(p, target);
            } else if (op.kind === "unlink") {
              const victims = [...model].filter(([, n]) => n.type !== "dir");
              if (!victims.length) continue;
              const [p] = victims[op.pick % victims.length];
              await unlinkEntry(ctx(), inoOf(parentOf(p)), p.slice(p.lastIndexOf("/") + 1));
              model.delete(p);
            } else if (op.kind === "rename") {
              const paths = [...model.keys()];
              if (!paths.length) continue;
              const from = paths[op.pick % paths.length];
              const d = dirs[op.dir % dirs.length];
              const name = op.reuse % 2 === 0
                ? paths[op.reuse % paths.length].split("/").at(-1)!
                : nameOf(op.name);
              const to = join(d, name);
              const opts = { noReplace: op.mode === 1, exchange: op.mode === 2 };
              const expect = renameModel(model, from, to, opts);
              const call = () =>
                renameEntry(
                  ctx(),
                  inoOf(parentOf(from)),
                  from.split("/").at(-1)!,
                  inoOf(d),
                  name,
                  opts,
                );
              if (typeof expect === "string" && expect !== "noop") {
                await assert.rejects(call, (e: Ext4Error) => e.code === expect);
                assert.equal(tx.state, "open");
                continue;
              }
              await call();
              if (typeof expect !== "string") model = expect;
              // Touch the attributes of what moved, too.
              await setAttributes(ctx(), (model.get(to) ?? model.get(from))!.ino, {
                mtime: { sec: 2 ** 32 + 5, nsec: 123 },
              });
            } else if (op.kind === "rmdir") {
              const ds = dirs.filter((d) => d !== "");
              if (!ds.length) continue;
              const p = ds[op.pick % ds.length];
              const empty = ![...model.keys()].some((q) => parentOf(q) === p);
              const run = () =>
                removeDirectory(ctx(), inoOf(parentOf(p)), p.slice(p.lastIndexOf("/") + 1));
              if (!empty) {
                await assert.rejects(run, (e: Ext4Error) => e.code === "NOT_EMPTY");
                assert.equal(tx.state, "open");
                continue;
              }
              await run();
              model.delete(p);
            } else if ("size" in op) {
              const d = dirs[op.dir % dirs.length];
              const name = nameOf(op.name);
              const p = join(d, name);
              const parent = inoOf(d);
              if (model.has(p)) {
                await assert.rejects(
                  () => createFile(ctx(), parent, name, new Uint8Array(1), { perm: 0o600 }),
                  (e: Ext4Error) => e.code === "EXISTS",
                );
                assert.equal(tx.state, "open");
                continue;
              }
              if (op.kind === "mkdir") {
                model.set(p, {
                  type: "dir",
                  ino: await makeDirectory(ctx(), parent, name, { perm: 0o755 }),
                });
              } else if (op.kind === "create") {
                const data = pattern(op.size + 1, op.size);
                model.set(p, {
                  type: "file",
                  ino: await createFile(ctx(), parent, name, data, { perm: 0o640 }),
                  data,
                });
              } else if (op.kind === "symlink") {
                const target = "t".repeat(1 + (op.size % 300));
                model.set(p, {
                  type: "symlink",
                  ino: await createSymlink(ctx(), parent, name, target),
                  target,
                });
              } else {
                model.set(p, {
                  type: "fifo",
                  ino: await makeNode(ctx(), parent, name, 0o010644, { perm: 0o644 }),
                });
              }
              assert.equal(await lookupEntry(ctx(), parent, name), model.get(p)!.ino);
            }
          }
          await tx.commit();
          const check = await fsck(dir.path, fs.dev.bytes);
          assert.equal(check.code, 0, check.output);
          const path = `${dir.path}/n.img`;
          await Deno.writeFile(path, fs.dev.bytes);
          assert.deepEqual(await kernelView(path), expectedView(model));
        }),
        { numRuns: 4 },
      );
    },
  );
}

testWith(
  "namespace: a linear directory grows to many blocks, loses entries, empties and goes",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    let tx = fs.cache.begin();
    const ctx = (): OpContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
    const d = await makeDirectory(ctx(), 2, "big", { perm: 0o755 });
    const names: string[] = [];
    // ~40-byte records in 1 KiB blocks: 1000 names need ~40 blocks, in several extents
    // when other allocations interleave.
    for (let i = 0; i < 1000; i++) {
      const name = `file-with-a-longish-name-${i}`;
      names.push(name);
      await createFile(ctx(), d, name, i % 50 === 0 ? pattern(i, 100) : new Uint8Array(0), {
        perm: 0o644,
      });
      if (i % 200 === 199) {
        await tx.commit();
        tx = fs.cache.begin();
      }
    }
    for (let i = 0; i < 1000; i += 3) await unlinkEntry(ctx(), d, names[i]);
    await assert.rejects(
      () => removeDirectory(ctx(), 2, "big"),
      (e: Ext4Error) => e.code === "NOT_EMPTY",
    );
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/g.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    const listed = await withKernelMount(path, async (mnt) => {
      const out: string[] = [];
      for await (const e of Deno.readDir(`${mnt}/big`)) {
        out.push(e.name);
      }
      return { names: out.sort(), size: (await Deno.stat(`${mnt}/big`)).size };
    }, { readOnly: true });
    assert.deepEqual(listed.names, names.filter((_, i) => i % 3 !== 0).sort());
    assert.ok(listed.size > 30 * 1024, `directory of ${listed.size} bytes`);
    // Empty it and remove it: everything is freed.
    tx = fs.cache.begin();
    for (let i = 0; i < 1000; i++) if (i % 3 !== 0) await unlinkEntry(ctx(), d, names[i]);
    await removeDirectory(ctx(), 2, "big");
    await tx.commit();
    const fresh = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    assert.equal(fs.alloc.freeBlockCount, fresh.alloc.freeBlockCount);
    assert.equal(fs.alloc.freeInodeCount, fresh.alloc.freeInodeCount);
    const clean = await fsck(dir.path, fs.dev.bytes);
    assert.equal(clean.code, 0, clean.output);
  },
);

testWith(
  "namespace: rename edge cases (directory over empty directory, moves, exchange, own subtree, noreplace, hard links)",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const tx = fs.cache.begin();
    const ctx: OpContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
    const model = new Map<string, Node>();
    const mk = async (parent: string, name: string) => {
      const ino = await makeDirectory(ctx, parent ? (model.get(parent) as Node).ino : 2, name, {
        perm: 0o755,
      });
      model.set(join(parent, name), { type: "dir", ino });
      return ino;
    };
    const file = async (parent: string, name: string, data: Uint8Array) => {
      const ino = await createFile(ctx, parent ? (model.get(parent) as Node).ino : 2, name, data, {
        perm: 0o644,
      });
      model.set(join(parent, name), { type: "file", ino, data });
      return ino;
    };
    const a = await mk("", "a");
    const b = await mk("", "b");
    const a1 = await mk("a", "a1");
    await mk("a", "empty");
    await mk("a/a1", "deep");
    const f = await file("a", "f", pattern(1, 5000));
    await file("b", "g", pattern(2, 100));
    // Directory over an empty directory in the same parent: the parent loses a link.
    await renameEntry(ctx, a, "a1", a, "empty");
    model.delete("a/empty");
    for (const [k, v] of [...model]) {
      if (k === "a/a1" || k.startsWith("a/a1/")) {
        model.delete(k);
        model.set("a/empty" + k.slice(4), v);
      }
    }
    // Into its own subtree.
    await assert.rejects(
      () => renameEntry(ctx, 2, "a", a1, "x"),
      (e: Ext4Error) => e.code === "INVALID",
    );
    await assert.rejects(
      () => renameEntry(ctx, 2, "a", a, "x"),
      (e: Ext4Error) => e.code === "INVALID",
    );
    // Noreplace, directory over a non-empty directory, file over directory.
    await assert.rejects(
      () => renameEntry(ctx, a, "f", 2, "b", { noReplace: true }),
      (e: Ext4Error) => e.code === "EXISTS",
    );
    await assert.rejects(
      () => renameEntry(ctx, 2, "a", 2, "b"),
      (e: Ext4Error) => e.code === "NOT_EMPTY",
    );
    await assert.rejects(
      () => renameEntry(ctx, a, "f", 2, "b"),
      (e: Ext4Error) => e.code === "IS_DIRECTORY",
    );
    // Cross-directory move of a directory: ".." and both parents' link counts.
    await renameEntry(ctx, a, "empty", b, "moved");
    for (const [k, v] of [...model]) {
      if (k === "a/empty" || k.startsWith("a/empty/")) {
        model.delete(k);
        model.set("b/moved" + k.slice(7), v);
      }
    }
    assert.equal(await lookupEntry(ctx, a1, ".."), b);
    // Exchange a directory with a file across parents.
    await renameEntry(ctx, b, "moved", a, "f", { exchange: true });
    const moved = [...model].filter(([k]) => k === "b/moved" || k.startsWith("b/moved/"));
    const fNode = model.get("a/f")!;
    for (const [k] of moved) {
      model.delete(k);
    }
    model.delete("a/f");
    for (const [k, v] of moved) {
      model.set("a/f" + k.slice(7), v);
    }
    model.set("b/moved", fNode);
    assert.equal(await lookupEntry(ctx, a1, ".."), a);
    // A file over one of its own hard links: nothing happens.
    await linkInode(ctx, 2, "hard", f);
    model.set("hard", fNode);
    await renameEntry(ctx, 2, "hard", b, "moved");
    // A file over another file with two links: the target keeps one.
    await file("", "victim", pattern(3, 10));
    await linkInode(ctx, b, "victim2", model.get("victim")!.ino);
    model.set("b/victim2", model.get("victim")!);
    await renameEntry(ctx, b, "g", 2, "victim");
    model.set("victim", model.get("b/g")!);
    model.delete("b/g");
    await tx.commit();
    const check = await fsck(dir.path, fs.dev.bytes);
    assert.equal(check.code, 0, check.output);
    const path = `${dir.path}/r.img`;
    await Deno.writeFile(path, fs.dev.bytes);
    assert.deepEqual(await kernelView(path), expectedView(model));
  },
);
