/**
 * Concurrent random operations on `ext4ts mount -o rw` against a model (issue #13,
 * "Concurrency"). Five workers run at the same time on one mount: three async tasks of this
 * process (Deno's file API: each call a real syscall on a thread of its own) and two separate
 * python3 processes (tests/fixtures/ns_worker.py, adding setxattr and renameat2). fast-check
 * draws each worker's operations: create, write, append, truncate, rename, link, unlink, mkdir,
 * rmdir, symlink (and setxattr) on the worker's own directory, and link/unlink — plus renameat2
 * NOREPLACE and EXCHANGE in the python workers — of names in two shared directories.
 *
 * Each operation is commutative-safe by design, so the final tree can be checked against what
 * any serialization of the successful operations leaves:
 * - A worker's own directory is touched by that worker alone: the outcome of each of its
 *   operations is predicted by its model (EEXIST, ENOENT, ENOTEMPTY… or success) and the final
 *   names, kinds, symlink targets, contents and xattrs there are exactly the model's.
 * - Every file starts with an 8-byte header naming it (worker and number), never overwritten:
 *   each inode found is a file some worker created, none twice, with the contents and xattrs
 *   its owner's model gives it, however many shared names it has or whether its own name is gone.
 * - Shared names: a link adds one, an unlink removes one, NOREPLACE and EXCHANGE renames keep
 *   the count; their outcomes must be success or the errors a race explains (EEXIST, ENOENT),
 *   and the names left are the links made less the unlinks made.
 * - Every inode's link count is the number of names found for it; a directory's is 2 plus its
 *   subdirectories.
 * The tree is read through the mount and, after `ext4ts umount`, through the kernel's ext4 (the
 * two must be identical, inode numbers and link counts included); `e2fsck -fn` must be clean.
 *
 * Fixed seeds; `EXT4TS_DEEP=1` runs many more plans.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  assertFsckClean,
  makeImage,
  ROOT,
  runCli,
  runOk,
  tempDir,
  testWith,
  withKernelMount,
} from "./helpers.ts";
import { detachLoopsOf, forceCleanup, FUSE_NEEDS, isMounted } from "./fuse_test_util.ts";

const NEEDS = [...FUSE_NEEDS, "mkfs.ext4", "e2fsck", "kernel-ext4", "python3"];
const DEEP = Deno.env.get("EXT4TS_DEEP") === "1";
const WORKER = `${ROOT}tests/fixtures/ns_worker.py`;
const HEADER = 8;
const DENO_WORKERS = ["d0", "d1", "d2"];
const PY_WORKERS = ["p0", "p1"];
const FILES = 6;
const DIRS = ["d0", "d1", "d0/x", "d1/x"];
const SHARED = ["a/n0", "a/n1", "a/n2", "a/n3", "b/n0", "b/n1", "b/n2", "b/n3"];

/** One operation of a worker (the python worker reads the same records). */
type Op =
  | { op: "create"; a: number; header: string }
  | { op: "write"; a: number; off: number; len: number; byte: number }
  | { op: "append"; a: number; len: number; byte: number }
  | { op: "truncate"; a: number; size: number }
  | { op: "rename" | "link"; a: number; b: number }
  | { op: "unlink"; a: number }
  | { op: "mkdir" | "rmdir"; dir: string }
  | { op: "symlink"; s: number; target: string }
  | { op: "unlinkSym"; s: number }
  | { op: "setxattr"; a: number; key: number; value: string }
  | { op: "share"; a: number; name: string }
  | { op: "unshare"; name: string }
  | { op: "move" | "exchange"; name: string; to: string };

const file = fc.nat(FILES - 1);
const byte = fc.integer({ min: 1, max: 255 });
const shared = fc.constantFrom(...SHARED);
const twoShared = fc.tuple(shared, shared).filter(([x, y]) => x !== y);

/** Operations every worker draws, weighted ("create" gets its header when the plan is made). */
const commonOps: fc.WeightedArbitrary<Op>[] = [
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("create" as const), a: file, header: fc.constant("") }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      a: file,
      off: fc.nat(3000),
      len: fc.integer({ min: 1, max: 1500 }),
      byte,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("append" as const),
      a: file,
      len: fc.integer({ min: 1, max: 900 }),
      byte,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("truncate" as const), a: file, size: fc.nat(5000) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom("rename" as const, "link" as const),
      a: file,
      b: file,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("unlink" as const), a: file }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constantFrom("mkdir" as const, "rmdir" as const),
      dir: fc.constantFrom(...DIRS),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("symlink" as const),
      s: fc.nat(2),
      target: fc.stringMatching(/^[a-z./]{1,30}$/),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("unlinkSym" as const), s: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("share" as const), a: file, name: shared }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("unshare" as const), name: shared }) },
];

/** What only the python workers draw: setxattr and renameat2 of shared names. */
const pythonOps: fc.WeightedArbitrary<Op>[] = [
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("setxattr" as const),
      a: file,
      key: fc.nat(2),
      value: fc.stringMatching(/^[a-z0-9]{0,40}$/),
    }),
  },
  { weight: 2, arbitrary: twoShared.map(([name, to]) => ({ op: "move" as const, name, to })) },
  { weight: 2, arbitrary: twoShared.map(([name, to]) => ({ op: "exchange" as const, name, to })) },
];

/** Gives each create a header naming its file, unique in the whole plan: "p0:0003\n". */
function withHeaders(worker: string, ops: Op[]): Op[] {
  let n = 0;
  return ops.map((o) =>
    o.op === "create" ? { ...o, header: `${worker}:${String(n++).padStart(4, "0")}\n` } : o
  );
}

const opsOf = (choices: fc.WeightedArbitrary<Op>[], n: number) =>
  fc.array(fc.oneof(...choices), { minLength: n, maxLength: n });
const OPS = DEEP ? 400 : 200;
const planArb = fc.record({
  deno: fc.tuple(...DENO_WORKERS.map(() => opsOf(commonOps, OPS))),
  python: fc.tuple(...PY_WORKERS.map(() => opsOf([...commonOps, ...pythonOps], OPS))),
});

// ---- running ----

/** The outcome of one operation: "OK" or the errno's name. */
type Outcome = string;

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    await fn();
    return "OK";
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === "string" && code.startsWith("E")) return code;
    throw e;
  }
}

async function writeAt(path: string, offset: number | "append", data: Uint8Array) {
  const f = await Deno.open(path, offset === "append" ? { append: true } : { write: true });
  try {
    if (offset !== "append") await f.seek(offset, Deno.SeekMode.Start);
    for (let done = 0; done < data.length;) done += await f.write(data.subarray(done));
  } finally {
    f.close();
  }
}

/** Runs `ops` as worker `w` of the mount at `root` through Deno's file API. */
async function runDeno(root: string, w: string, ops: Op[]): Promise<Outcome[]> {
  const f = (i: number) => `${root}/${w}/f${i}`;
  const sh = (name: string) => `${root}/shared/${name}`;
  const out: Outcome[] = [];
  for (const o of ops) {
    out.push(
      await outcome(async () => {
        switch (o.op) {
          case "create": {
            const h = await Deno.open(f(o.a), { write: true, createNew: true, mode: 0o644 });
            try {
              await h.write(new TextEncoder().encode(o.header));
            } finally {
              h.close();
            }
            return;
          }
          case "write":
            return await writeAt(f(o.a), HEADER + o.off, new Uint8Array(o.len).fill(o.byte));
          case "append":
            return await writeAt(f(o.a), "append", new Uint8Array(o.len).fill(o.byte));
          case "truncate":
            return await Deno.truncate(f(o.a), HEADER + o.size);
          case "rename":
            return await Deno.rename(f(o.a), f(o.b));
          case "link":
            return await Deno.link(f(o.a), f(o.b));
          case "unlink":
            return await Deno.remove(f(o.a));
          case "mkdir":
            return await Deno.mkdir(`${root}/${w}/${o.dir}`);
          case "rmdir":
            return await Deno.remove(`${root}/${w}/${o.dir}`);
          case "symlink":
            return await Deno.symlink(o.target, `${root}/${w}/s${o.s}`);
          case "unlinkSym":
            return await Deno.remove(`${root}/${w}/s${o.s}`);
          case "share":
            return await Deno.link(f(o.a), sh(o.name));
          case "unshare":
            return await Deno.remove(sh(o.name));
          default:
            throw new Error(`a Deno worker does not run ${o.op}`);
        }
      }),
    );
  }
  return out;
}

/** Runs `ops` as worker `w` in a python3 process of its own. */
async function runPython(dir: string, root: string, w: string, ops: Op[]): Promise<Outcome[]> {
  const plan = `${dir}/${w}.plan.json`;
  const results = `${dir}/${w}.results.json`;
  await Deno.writeTextFile(plan, JSON.stringify({ root, worker: w, ops }));
  await runOk("python3", [WORKER, "run", plan, results]);
  return JSON.parse(await Deno.readTextFile(results));
}

// ---- the model ----

interface FileModel {
  header: string;
  content: Uint8Array;
  xattrs: Map<string, string>;
}

/** A worker's own directory as its operations leave it. */
interface WorkerModel {
  names: Map<number, FileModel>;
  dirs: Set<string>;
  symlinks: Map<number, string>;
  shares: number;
  unshares: number;
}

function resized(c: Uint8Array, size: number): Uint8Array {
  if (size <= c.length) return c.slice(0, size);
  const out = new Uint8Array(size);
  out.set(c);
  return out;
}

/**
 * Replays worker `w`'s operations with their outcomes, checking each outcome is one the model
 * allows (exactly the predicted one in the worker's own directory); returns the model.
 */
function replay(w: string, ops: Op[], outcomes: Outcome[], files: Map<string, FileModel>) {
  const m: WorkerModel = {
    names: new Map(),
    dirs: new Set(),
    symlinks: new Map(),
    shares: 0,
    unshares: 0,
  };
  const check = (i: number, allowed: Outcome[]) =>
    assert.ok(
      allowed.includes(outcomes[i]),
      `${w} op ${i} ${JSON.stringify(ops[i])}: ${outcomes[i]}, expected ${allowed.join("|")}`,
    );
  const exists = (a: number) => m.names.has(a) ? "OK" : "ENOENT";
  ops.forEach((o, i) => {
    const ok = outcomes[i] === "OK";
    switch (o.op) {
      case "create":
        check(i, [m.names.has(o.a) ? "EEXIST" : "OK"]);
        if (ok) {
          const f = {
            header: o.header,
            content: new TextEncoder().encode(o.header),
            xattrs: new Map(),
          };
          m.names.set(o.a, f);
          files.set(o.header, f);
        }
        break;
      case "write":
      case "append":
      case "truncate": {
        check(i, [exists(o.a)]);
        if (!ok) break;
        const f = m.names.get(o.a)!;
        if (o.op === "truncate") f.content = resized(f.content, HEADER + o.size);
        else {
          const at = o.op === "write" ? HEADER + o.off : f.content.length;
          f.content = resized(f.content, Math.max(f.content.length, at + o.len));
          f.content.fill(o.byte, at, at + o.len);
        }
        break;
      }
      case "rename": {
        check(i, [exists(o.a)]);
        const f = m.names.get(o.a);
        // rename(2) of two names of one file does nothing.
        if (ok && o.a !== o.b && m.names.get(o.b) !== f) {
          m.names.set(o.b, f!);
          m.names.delete(o.a);
        }
        break;
      }
      case "link":
        check(i, [!m.names.has(o.a) ? "ENOENT" : m.names.has(o.b) ? "EEXIST" : "OK"]);
        if (ok) m.names.set(o.b, m.names.get(o.a)!);
        break;
      case "unlink":
        check(i, [exists(o.a)]);
        m.names.delete(o.a);
        break;
      case "mkdir": {
        const parent = o.dir.includes("/") ? o.dir.split("/")[0] : null;
        check(i, [parent && !m.dirs.has(parent) ? "ENOENT" : m.dirs.has(o.dir) ? "EEXIST" : "OK"]);
        if (ok) m.dirs.add(o.dir);
        break;
      }
      case "rmdir":
        check(i, [!m.dirs.has(o.dir) ? "ENOENT" : m.dirs.has(`${o.dir}/x`) ? "ENOTEMPTY" : "OK"]);
        if (ok) m.dirs.delete(o.dir);
        break;
      case "symlink":
        check(i, [m.symlinks.has(o.s) ? "EEXIST" : "OK"]);
        if (ok) m.symlinks.set(o.s, o.target);
        break;
      case "unlinkSym":
        check(i, [m.symlinks.has(o.s) ? "OK" : "ENOENT"]);
        m.symlinks.delete(o.s);
        break;
      case "setxattr":
        check(i, [exists(o.a)]);
        if (ok) m.names.get(o.a)!.xattrs.set(`user.k${o.key}`, o.value);
        break;
      case "share":
        // The target name may have been taken by any worker: EEXIST is a race, not an error.
        check(i, m.names.has(o.a) ? ["OK", "EEXIST"] : ["ENOENT"]);
        if (ok) m.shares++;
        break;
      case "unshare":
        check(i, ["OK", "ENOENT"]);
        if (ok) m.unshares++;
        break;
      case "move":
        check(i, ["OK", "ENOENT", "EEXIST"]);
        break;
      case "exchange":
        check(i, ["OK", "ENOENT"]);
        break;
    }
  });
  return m;
}

// ---- the final tree ----

interface Entry {
  type: "file" | "dir" | "symlink";
  ino: number;
  nlink: number;
  content?: string;
  target?: string;
  xattrs?: Record<string, string>;
}
type Snapshot = Record<string, Entry>;

async function snapshot(root: string): Promise<Snapshot> {
  return JSON.parse(await runOk("python3", [WORKER, "snapshot", root]));
}

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const b64text = (s: string) => b64(new TextEncoder().encode(s));

function checkTree(
  snap: Snapshot,
  models: Map<string, WorkerModel>,
  files: Map<string, FileModel>,
) {
  const paths = Object.keys(snap);
  // Each worker's own directory is its model.
  for (const [w, m] of models) {
    const expected = new Map<string, string>();
    for (const [a, f] of m.names) expected.set(`${w}/f${a}`, `file ${f.header}`);
    for (const d of m.dirs) expected.set(`${w}/${d}`, "dir");
    for (const [s, t] of m.symlinks) expected.set(`${w}/s${s}`, `symlink ${t}`);
    const found = new Map<string, string>();
    for (const p of paths.filter((p) => p.startsWith(`${w}/`))) {
      const e = snap[p];
      found.set(
        p,
        e.type === "file"
          ? `file ${atob(e.content!).slice(0, HEADER)}`
          : e.type === "symlink"
          ? `symlink ${e.target}`
          : "dir",
      );
    }
    assert.deepEqual(found, expected, `the directory of ${w}`);
  }
  // Every inode: a file some worker created, once, with its owner's contents and xattrs, and as
  // many links as names.
  const byIno = new Map<number, string[]>();
  for (const p of paths) {
    if (snap[p].type !== "file") continue;
    byIno.set(snap[p].ino, [...(byIno.get(snap[p].ino) ?? []), p]);
  }
  const seen = new Set<string>();
  for (const [ino, names] of byIno) {
    const e = snap[names[0]];
    const header = atob(e.content!).slice(0, HEADER);
    const f = files.get(header);
    assert.ok(
      f,
      `inode ${ino} (${names.join(", ")}) holds ${JSON.stringify(header)}, no file made`,
    );
    assert.ok(!seen.has(header), `file ${header} is in two inodes`);
    seen.add(header);
    assert.equal(e.content, b64(f.content), `contents of ${header} (${names.join(", ")})`);
    const xattrs = Object.fromEntries([...f.xattrs].map(([k, v]) => [k, b64text(v)]));
    assert.deepEqual(e.xattrs, xattrs, `xattrs of ${header}`);
    assert.equal(e.nlink, names.length, `links of inode ${ino} (${names.join(", ")})`);
    for (const n of names) assert.equal(snap[n].ino, ino);
  }
  // Shared names: links made less unlinks made.
  const sharedNames = paths.filter((p) => /^shared\/[ab]\/n\d$/.test(p));
  assert.ok(sharedNames.every((p) => snap[p].type === "file"));
  let made = 0;
  for (const m of models.values()) made += m.shares - m.unshares;
  assert.equal(sharedNames.length, made, "shared names left = links made - unlinks made");
  // Directories: 2 + subdirectories.
  for (const p of paths) {
    if (snap[p].type !== "dir") continue;
    const prefix = p === "." ? "" : `${p}/`;
    const subdirs = paths.filter((q) =>
      q !== p && q.startsWith(prefix) && !q.slice(prefix.length).includes("/") &&
      snap[q].type === "dir" && q !== "."
    ).length;
    assert.equal(snap[p].nlink, 2 + subdirs, `links of directory ${p}`);
  }
}

// ---- the property ----

testWith(
  "concurrent workers (3 async tasks, 2 processes) on a rw mount: the tree a serialization explains",
  NEEDS,
  async () => {
    await fc.assert(
      fc.asyncProperty(planArb, async (plan) => {
        await using dir = await tempDir("ext4ts-concurrent-");
        const img = `${dir.path}/fs.img`;
        const mnt = `${dir.path}/mnt`;
        await Deno.mkdir(mnt);
        await makeImage(img, { size: "64M", args: ["-b", "4096"] });
        const plans = new Map<string, Op[]>();
        DENO_WORKERS.forEach((w, i) => plans.set(w, withHeaders(w, plan.deno[i])));
        PY_WORKERS.forEach((w, i) => plans.set(w, withHeaders(w, plan.python[i])));
        try {
          const m = await runCli(["mount", "-o", "rw", img, mnt]);
          assert.equal(m.code, 0, `ext4ts mount -o rw: ${m.stderr}`);
          for (const d of ["shared", "shared/a", "shared/b", ...plans.keys()]) {
            await Deno.mkdir(`${mnt}/${d}`);
          }
          const outcomes = await Promise.all([
            ...DENO_WORKERS.map((w) => runDeno(mnt, w, plans.get(w)!)),
            ...PY_WORKERS.map((w) => runPython(dir.path, mnt, w, plans.get(w)!)),
          ]);
          const through = await snapshot(mnt);
          const u = await runCli(["umount", mnt]);
          assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);
          const kernel = await withKernelMount(img, (k) => snapshot(k), { readOnly: true });
          assert.deepEqual(kernel, through, "the kernel reads the tree the mount showed");
          const files = new Map<string, FileModel>();
          const models = new Map<string, WorkerModel>();
          [...plans.keys()].forEach((w, i) => {
            models.set(w, replay(w, plans.get(w)!, outcomes[i], files));
          });
          checkTree(kernel, models, files);
          await assertFsckClean(img);
        } finally {
          if (isMounted(mnt)) await forceCleanup(mnt);
          await detachLoopsOf(img);
        }
      }),
      { seed: 20261207, numRuns: DEEP ? 30 : 3, endOnFailure: true },
    );
  },
);
