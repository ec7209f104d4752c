/**
 * The one path resolver (lib/ext4/path.ts) against the kernel: the reader (`Ext4.resolve`)
 * and the writer (`resolvePath` in a transaction) answer what the kernel's path walk answers
 * for the cases where they used to differ — a trailing "/" on a file and on a symlink to a
 * directory, ".." at the root, a non-directory in the middle — and an empty symlink.
 */
import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { mkdirAt, removeAt, renameAt, resolvePath, symlinkAt } from "../lib/ext4/path_ops.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { makeImage, run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";

const NEEDS = ["mkfs.ext4", "debugfs", "python3", "root", "loop", "kernel-ext4"];

/** f, d/g, ld → d, lf → f, e → "" (an empty symlink, made with debugfs). */
async function image(dir: string): Promise<string> {
  const img = await makeImage(`${dir}/p.img`, {
    size: "8M",
    populate: async (m) => {
      await Deno.writeTextFile(`${m}/f`, "f\n");
      await Deno.mkdir(`${m}/d`);
      await Deno.writeTextFile(`${m}/d/g`, "g\n");
      await Deno.symlink("d", `${m}/ld`);
      await Deno.symlink("f", `${m}/lf`);
      await Deno.symlink("x", `${m}/e`);
    },
  });
  await runOk("debugfs", ["-w", "-R", "sif e size 0", img]);
  return img;
}

/** The kernel's answer per path (chrooted into the mount, so ".." at the root is its root). */
async function kernelAnswers(mnt: string, paths: string[]): Promise<Record<string, string>> {
  const script = `
import os, sys, json, stat, errno
os.chroot(sys.argv[1])
out = {}
for p in sys.argv[2:]:
    for follow in (True, False):
        try:
            st = os.stat(p, follow_symlinks=follow)
            a = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        except OSError as e:
            a = errno.errorcode[e.errno]
        out[p + (" follow" if follow else " nofollow")] = a
print(json.dumps(out))
`;
  const r = await run("python3", ["-c", script, mnt, ...paths]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function answer(type: number): string {
  return type === 0o040000 ? "dir" : type === 0o120000 ? "symlink" : "file";
}

function errnoName(e: unknown): string {
  if (!(e instanceof Ext4Error)) throw e;
  return {
    NOT_DIRECTORY: "ENOTDIR",
    NOT_FOUND: "ENOENT",
    INVALID: "ELOOP",
    EXISTS: "EEXIST",
  }[e.code as string] ??
    e.code;
}

const PATHS = [
  "/f/", // trailing slash on a file
  "/f/.",
  "/ld/", // trailing slash on a symlink to a directory: followed
  "/ld/.",
  "/lf/", // on a symlink to a file
  "/d/",
  "/..", // ".." at the root is the root
  "/../f",
  "/d/../../d/g",
  "/f/x", // a non-directory in the middle
  "/lf/x",
  "/nope/x",
  "/ld/g",
  "/ld",
];

testWith("path resolution: reader and writer answer as the kernel's path walk", NEEDS, async () => {
  await using dir = await tempDir();
  const img = await image(dir.path);
  const kernel = await withKernelMount(img, (m) => kernelAnswers(m, PATHS), { readOnly: true });
  const bytes = await Deno.readFile(img);
  const fs = await Ext4.openDevice(new MemoryBlockDevice(bytes.slice()));
  const w = await Ext4Writer.open(new MemoryBlockDevice(bytes.slice()));
  try {
    for (const p of PATHS) {
      for (const follow of [true, false]) {
        const key = `${p} ${follow ? "follow" : "nofollow"}`;
        const reader = await fs.resolve(p, follow).then(
          async (ino) => answer((await fs.entryStat(ino)).mode & 0o170000),
          errnoName,
        );
        assert.equal(reader, kernel[key], `reader: ${key}`);
        const writer = await w.transaction(async (ctx) => {
          const r = await resolvePath(ctx, p, { followLast: follow });
          if (!r.ino) return "ENOENT";
          return answer((await fs.entryStat(r.ino)).mode & 0o170000);
        }).catch(errnoName);
        assert.equal(writer, kernel[key], `writer: ${key}`);
      }
    }
  } finally {
    await fs.close();
  }
});

testWith(
  "path resolution: an empty symlink target is ENOENT for reader and writer",
  NEEDS,
  async () => {
    // The kernel's VFS answers ENOENT for an empty link body; ext4 itself refuses to load a
    // symlink inode of size 0 (EUCLEAN, "Structure needs cleaning") before the walk gets there.
    await using dir = await tempDir();
    const bytes = await Deno.readFile(await image(dir.path));
    const fs = await Ext4.openDevice(new MemoryBlockDevice(bytes.slice()));
    const w = await Ext4Writer.open(new MemoryBlockDevice(bytes.slice()));
    try {
      for (const p of ["/e", "/e/", "/e/g"]) {
        await assert.rejects(fs.resolve(p), { code: "NOT_FOUND" }, `reader: ${p}`);
        await assert.rejects(
          w.transaction((ctx) => resolvePath(ctx, p, { followLast: true })),
          { code: "NOT_FOUND" },
          `writer: ${p}`,
        );
      }
      // Not followed at the end: the symlink itself.
      assert.equal(await fs.resolve("/e", false), (await fs.lookup(2, "e")).ino);
    } finally {
      await fs.close();
    }
  },
);

testWith(
  "path resolution: a trailing slash on an entry operation (unlink, rmdir, rename, mkdir, symlink) as the kernel",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = await image(dir.path);
    // The kernel: unlink("lf/"), rmdir("ld/"), rename("f/", …) and rename("f", "g/") are
    // ENOTDIR; mkdir("f/") is EEXIST; symlink(…, "new/") is ENOENT.
    const kernel = await withKernelMount(img, async (m) => {
      const r = await run("python3", [
        "-c",
        `
import os, sys, errno, json
out = []
for op in (lambda: os.unlink(sys.argv[1] + "/lf/"), lambda: os.unlink(sys.argv[1] + "/f/"),
           lambda: os.rmdir(sys.argv[1] + "/ld/"),
           lambda: os.rename(sys.argv[1] + "/f/", sys.argv[1] + "/f2"),
           lambda: os.rename(sys.argv[1] + "/f", sys.argv[1] + "/f2/"),
           lambda: os.mkdir(sys.argv[1] + "/f/"),
           lambda: os.symlink("t", sys.argv[1] + "/new/")):
    try:
        op(); out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(json.dumps(out))
`,
        m,
      ]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as string[];
    });
    assert.deepEqual(kernel, [
      "ENOTDIR",
      "ENOTDIR",
      "ENOTDIR",
      "ENOTDIR",
      "ENOTDIR",
      "EEXIST",
      "ENOENT",
    ]);
    const w = await Ext4Writer.open(new MemoryBlockDevice(await Deno.readFile(img)));
    const ours = [];
    for (
      const op of [
        () => removeAt(w, "/lf/"),
        () => removeAt(w, "/f/"),
        () => removeAt(w, "/ld/"),
        () => renameAt(w, "/f/", "/f2"),
        () => renameAt(w, "/f", "/f2/"),
        () => mkdirAt(w, "/f/"),
        () => symlinkAt(w, "t", "/new/"),
      ]
    ) {
      ours.push(await op().then(() => "ok", errnoName));
    }
    assert.deepEqual(ours, kernel);
    // Nothing was removed: the symlink to the directory and the directory are both there.
    const names = await w.transaction(async (ctx) =>
      [
        (await resolvePath(ctx, "/ld")).ino,
        (await resolvePath(ctx, "/d/g")).ino,
        (await resolvePath(ctx, "/f")).ino,
      ].every((ino) => ino !== 0)
    );
    assert.ok(names);
  },
);
