import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Errno, type Ext4Error } from "../lib/errors.ts";
import {
  chmodAt,
  chownAt,
  linkAt,
  mkdirAt,
  removeAt,
  removeXattrAt,
  renameAt,
  setXattrAt,
  symlinkAt,
  truncateAt,
  utimeAt,
  writeFileAt,
} from "../lib/ext4/path_ops.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { run, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();

/** The tree as the kernel shows it: per path, type, mode, owner, mtime_ns, size, sha, link, xattrs. */
async function kernelDump(mnt: string): Promise<Record<string, Record<string, unknown>>> {
  const script = `
import os, sys, json, hashlib, stat
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if rel.startswith("lost+found"): continue
        st = os.lstat(p)
        e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
             "mtime_ns": st.st_mtime_ns}
        if stat.S_ISREG(st.st_mode):
            e["size"] = st.st_size
            e["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
        if stat.S_ISLNK(st.st_mode): e["link"] = os.readlink(p)
        else: e["xattrs"] = sorted(os.listxattr(p))
        out[rel] = e
print(json.dumps(out))
`;
  const r = await run("python3", ["-c", script, mnt]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function sha(data: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(data)));
  return Array.from(h.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

for (const layout of [LAYOUTS[2], LAYOUTS[0]]) {
  testWith(
    `path operations on ${layout.name}: writeFile, mkdir -p, symlinks, links, rename, chmod/chown/utime, xattrs, truncate, rm -r`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3"],
    async () => {
      await using dir = await tempDir();
      const dev = new MemoryBlockDevice(await mkfsImage(dir.path, layout));
      const w = await Ext4Writer.open(dev);
      await mkdirAt(w, "/a/b/c", { recursive: true });
      await mkdirAt(w, "/a/b", { recursive: true }); // exists: fine
      await assert.rejects(() => mkdirAt(w, "/a/b"), (e: Ext4Error) => e.code === "EXISTS");
      const f = pattern(5, 70000);
      await writeFileAt(w, "/a/b/c/f", f, { mode: 0o640, uid: 1000, gid: 100 });
      await symlinkAt(w, "a/b", "/l");
      await symlinkAt(w, "/a/b/c/f", "/abs");
      // Through a symlink in the middle of the path.
      await writeFileAt(w, "/l/c/g", enc.encode("via link"));
      await writeFileAt(w, "/abs", enc.encode("replaced through the final symlink"));
      await linkAt(w, "/a/b/c/g", "/a/hard");
      await renameAt(w, "/a/b/c/g", "/a/b/moved");
      await symlinkAt(w, "loop2", "/loop1");
      await symlinkAt(w, "loop1", "/loop2");
      await assert.rejects(
        () => writeFileAt(w, "/loop1/x", enc.encode("x")),
        (e: Ext4Error) => e.errno === 40,
      );
      await assert.rejects(
        () => writeFileAt(w, "/a/hard/x", enc.encode("x")),
        (e: Ext4Error) => e.code === "NOT_DIRECTORY",
      );
      await assert.rejects(() => removeAt(w, "/a"), (e: Ext4Error) => e.code === "NOT_EMPTY");
      await assert.rejects(
        () => removeAt(w, "/"),
        (e: Ext4Error) => e.code === "INVALID" && e.errno === Errno.EBUSY,
      );
      await chmodAt(w, "/a/b/moved", 0o4755);
      await chownAt(w, "/l", 7, 8, { followLast: false });
      const t2100 = { sec: 4102444800 + 17, nsec: 123456789 };
      await utimeAt(w, "/a/hard", t2100, t2100);
      await setXattrAt(w, "/a/b/c/f", "user.one", enc.encode("1"));
      await setXattrAt(w, "/a/b/c/f", "user.two", pattern(9, 300));
      await removeXattrAt(w, "/a/b/c/f", "user.one");
      await truncateAt(w, "/a/b/c/f", 10);
      await mkdirAt(w, "/tree/x/y", { recursive: true });
      for (let i = 0; i < 30; i++) await writeFileAt(w, `/tree/x/y/file${i}`, pattern(i, i * 100));
      await symlinkAt(w, "../..", "/tree/x/up");
      await removeAt(w, "/tree", { recursive: true });
      await w.close(); // everything home, the journal empty: what the kernel mounts read-only
      const check = await fsck(dir.path, dev.bytes);
      assert.equal(check.code, 0, check.output);
      const path = `${dir.path}/p.img`;
      await Deno.writeFile(path, dev.bytes);
      const dump = await withKernelMount(path, kernelDump, { readOnly: true });
      const replaced = enc.encode("replaced through the final symlink");
      assert.deepEqual(Object.keys(dump).sort(), [
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/f",
        "a/b/moved",
        "a/hard",
        "abs",
        "l",
        "loop1",
        "loop2",
      ]);
      assert.equal(dump["a/b/c/f"].size, 10);
      assert.equal(dump["a/b/c/f"].sha, await sha(replaced.subarray(0, 10)));
      assert.equal(dump["a/b/c/f"].mode, "0o100640");
      assert.equal(dump["a/b/c/f"].uid, 1000);
      assert.deepEqual(dump["a/b/c/f"].xattrs, ["user.two"]);
      assert.equal(dump["a/b/moved"].mode, "0o104755");
      assert.equal(dump["a/b/moved"].nlink, 2);
      assert.equal(dump["a/b/moved"].sha, await sha(enc.encode("via link")));
      assert.equal(dump["a/hard"].mtime_ns, 4102444817123456789);
      assert.equal(dump["l"].link, "a/b");
      assert.equal(dump["l"].uid, 7);
      assert.equal(dump["abs"].link, "/a/b/c/f");
      assert.equal(dump["a/b"].nlink, 3);
    },
  );
}
