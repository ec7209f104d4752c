import assert from "node:assert/strict";
import { putTree } from "../cli/commands/put.ts";
import { Ext4 } from "../ffi/open_filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { ROOT, run, runCli, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, fsckAfterRecovery, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

/** The tree under `root` as Python's lstat sees it (mtime to the millisecond). */
async function dumpTree(root: string): Promise<Record<string, unknown>> {
  const script = `
import os, sys, json, hashlib, stat
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
        if not stat.S_ISDIR(st.st_mode): e["mtime_ms"] = st.st_mtime_ns // 1000000
        if stat.S_ISREG(st.st_mode):
            e["size"] = st.st_size
            e["sha"] = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
        if stat.S_ISLNK(st.st_mode): e["link"] = os.readlink(p)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode): e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        out[rel] = e
print(json.dumps(out, sort_keys=True))
`;
  const r = await run("python3", ["-c", script, root]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function makeHostTree(root: string): Promise<void> {
  const w = (p: string, data: Uint8Array, mode: number) =>
    Deno.writeFile(`${root}/${p}`, data, { mode });
  await Deno.mkdir(`${root}/etc/deep/er`, { recursive: true });
  await Deno.mkdir(`${root}/empty`);
  await w("etc/hostname", new TextEncoder().encode("box\n"), 0o644);
  await w("etc/secret", new Uint8Array(5000).fill(7), 0o600);
  await w("etc/deep/er/exe", new Uint8Array(12345).map((_, i) => i * 31), 0o755);
  await Deno.chmod(`${root}/etc/deep/er/exe`, 0o4755);
  await Deno.chown(`${root}/etc/secret`, 1000, 1001);
  await Deno.chown(`${root}/etc/deep`, 70000, 80000);
  // A big file (chunked writes) and a sparse one.
  const big = new Uint8Array(40 << 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = i / 4096 & 0xff;
  await w("big", big, 0o644);
  using f = await Deno.open(`${root}/sparse`, { write: true, create: true });
  await f.seek(30 << 20, Deno.SeekMode.Start);
  await f.write(new TextEncoder().encode("end"));
  await Deno.symlink("hostname", `${root}/etc/link`);
  await Deno.symlink("/" + "long/".repeat(30), `${root}/slowlink`);
  await Deno.link(`${root}/etc/hostname`, `${root}/hardlink`);
  // Two names in one directory: read in one run, before either is copied.
  await Deno.link(`${root}/etc/secret`, `${root}/etc/secret2`);
  await run("mkfifo", [`${root}/fifo`]);
  await run("mknod", [`${root}/null`, "c", "1", "3"]);
  await Deno.utime(`${root}/etc/hostname`, new Date(1600000000123), new Date(1600000000456));
}

for (const layout of [LAYOUTS[2], LAYOUTS[1]]) {
  testWith(
    `ext4ts put/mkdir/mv/rm on ${layout.name}: the kernel sees the host tree exactly, e2fsck is clean`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "mkfifo", "mknod"],
    async () => {
      await using dir = await tempDir();
      const host = `${dir.path}/host`;
      await Deno.mkdir(host);
      await makeHostTree(host);
      const img = `${dir.path}/fs.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, { ...layout, size: "160M" }));
      const beforePut = Date.now();
      let r = await runCli(["put", img, host, "/"]);
      assert.equal(r.code, 0, r.stderr);
      // The directory receiving the tree is stamped as an added entry stamps it (mkfs's time
      // is whole seconds, before beforePut).
      r = await runCli(["stat", "--json", img, "/"]);
      const { mtime, ctime } = JSON.parse(r.stdout);
      assert.ok(mtime.sec * 1000 + mtime.nsec / 1e6 >= beforePut, "/ mtime stamped by put");
      assert.deepEqual(ctime, mtime);
      r = await runCli(["mkdir", "-p", img, "/made/by/cli", "/other"]);
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(["mv", img, "/host/empty", "/made/by"]);
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(["rm", img, "/other"]);
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(["rm", img, "/made/by/cli/nothing"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^ext4ts: /);
      r = await runCli(["rm", img, "/made"]);
      assert.equal(r.code, 1, "a non-empty directory needs -r");
      const check = await fsck(dir.path, await Deno.readFile(img));
      assert.equal(check.code, 0, check.output);
      const want = await dumpTree(host);
      await Deno.rename(`${host}/empty`, `${dir.path}/gone`);
      const wantAfterMv = await dumpTree(host);
      await withKernelMount(img, async (mnt) => {
        const got = await dumpTree(`${mnt}/host`);
        assert.deepEqual(got, wantAfterMv);
        assert.ok((await Deno.stat(`${mnt}/made/by/empty`)).isDirectory);
        assert.ok(want["empty"]);
      }, { readOnly: true });
      r = await runCli(["rm", "-r", img, "/host", "/made"]);
      assert.equal(r.code, 0, r.stderr);
      const clean = await fsck(dir.path, await Deno.readFile(img));
      assert.equal(clean.code, 0, clean.output);
      await withKernelMount(img, async (mnt) => {
        const names = [];
        for await (const e of Deno.readDir(mnt)) names.push(e.name);
        assert.deepEqual(names, ["lost+found"]);
      }, { readOnly: true });
    },
  );
}

testWith("ext4ts put refuses filesystems it cannot write, with the documented exit code", [
  "mkfs.ext4",
], async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/b.img`;
  await run("mkfs.ext4", ["-q", "-F", "-O", "bigalloc", "-C", "16384", img, "64M"]);
  await Deno.writeTextFile(`${dir.path}/f`, "x");
  const r = await runCli(["put", img, `${dir.path}/f`, "/f"]);
  assert.equal(r.code, 6, r.stderr);
  assert.match(r.stderr, /^ext4ts: cannot write: .*bigalloc/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
});

/**
 * Everything the kernel (or the host) says about each object under `root`, with nanosecond
 * times and every xattr (the object's own, symlinks included). Files are read with O_NOATIME
 * so dumping does not change the access times it reports.
 */
async function dumpTreeFull(root: string): Promise<Record<string, Record<string, unknown>>> {
  const script = `
import os, sys, json, hashlib, stat, base64
root = sys.argv[1]
out = {}
def entry(p):
    st = os.lstat(p)
    e = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
         "mtime_ns": st.st_mtime_ns, "atime_ns": st.st_atime_ns}
    if stat.S_ISREG(st.st_mode):
        e["size"] = st.st_size
        e["sparse"] = st.st_blocks * 512 < st.st_size // 2
        fd = os.open(p, os.O_RDONLY | os.O_NOATIME)
        h = hashlib.sha256()
        while True:
            b = os.read(fd, 1 << 20)
            if not b: break
            h.update(b)
        os.close(fd)
        e["sha"] = h.hexdigest()[:16]
    if stat.S_ISLNK(st.st_mode): e["link"] = os.readlink(p)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    e["xattrs"] = {n: base64.b64encode(os.getxattr(p, n, follow_symlinks=False)).decode()
                   for n in sorted(os.listxattr(p, follow_symlinks=False))}
    return e
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        out[os.path.relpath(p, root)] = entry(p)
print(json.dumps(out, sort_keys=True))
`;
  const r = await run("python3", ["-c", script, root]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A host tree with xattrs of every namespace, ACLs, ns times, links, holes and nodes. */
async function makeXattrTree(root: string): Promise<void> {
  const ok = async (cmd: string, ...args: string[]) => {
    const r = await run(cmd, args);
    assert.equal(r.code, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
  };
  await Deno.mkdir(`${root}/a/deep`, { recursive: true });
  await Deno.mkdir(`${root}/b`);
  await Deno.writeTextFile(`${root}/a/f`, "contents of f\n");
  await Deno.writeFile(`${root}/a/deep/blocks`, new Uint8Array(20000).map((_, i) => i % 251));
  await Deno.writeTextFile(`${root}/b/plain`, "no attributes\n");
  await ok("setfattr", "-n", "user.x", "-v", "hello", `${root}/a/f`);
  await ok("setfattr", "-n", "user.empty", `${root}/a/f`);
  await ok("setfattr", "-n", "user.bin", "-v", "0sAAECA/8=", `${root}/a/deep/blocks`);
  await ok("setfattr", "-n", "user.big", "-v", "0x" + "ab".repeat(1500), `${root}/a/deep/blocks`);
  await ok("setfattr", "-n", "security.label", "-v", "secret", `${root}/a/f`);
  await ok("setfattr", "-n", "trusted.t", "-v", "0sAAEC", `${root}/a/f`);
  await ok("setfacl", "-m", "u:1000:rw,g:1001:r", `${root}/a/f`);
  await ok("setfacl", "-m", "u:1002:rwx", `${root}/a`);
  await ok("setfacl", "-d", "-m", "g:100:rx,o::-", `${root}/a`);
  await ok("setfattr", "-n", "user.dir", "-v", "d", `${root}/b`);
  // Hard links across directories (the xattrs come with the inode).
  await Deno.link(`${root}/a/f`, `${root}/b/hard`);
  await Deno.link(`${root}/b/plain`, `${root}/a/deep/hard2`);
  // Symlinks with their own xattrs (trusted.* and security.*: user.* is refused on links).
  await Deno.symlink("f", `${root}/a/sl`);
  await Deno.symlink("/" + "x".repeat(200), `${root}/b/slowlink`);
  await ok("setfattr", "-h", "-n", "trusted.sym", "-v", "on", `${root}/a/sl`);
  await ok("setfattr", "-h", "-n", "security.s", "-v", "lnk", `${root}/b/slowlink`);
  // Sparse files: a small one (read whole) and one above a batch (streamed by regions),
  // ending in a hole.
  await ok("truncate", "-s", "20M", `${root}/sparse`);
  await ok("sh", "-c", `printf middle | dd of=${root}/sparse bs=1 seek=7000000 conv=notrunc`);
  await ok("truncate", "-s", "80M", `${root}/bigsparse`);
  await ok("sh", "-c", `head -c 9000 /dev/urandom | dd of=${root}/bigsparse conv=notrunc`);
  await ok("sh", "-c", `printf tail | dd of=${root}/bigsparse bs=1 seek=41943140 conv=notrunc`);
  await ok("mkfifo", `${root}/fifo`);
  await ok("mknod", `${root}/blk`, "b", "8", "17");
  await ok("mknod", `${root}/chr`, "c", "4095", "1048575");
  await ok("setfattr", "-n", "trusted.on_fifo", "-v", "1", `${root}/fifo`);
  await ok(
    "python3",
    "-c",
    "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
    `${root}/b/sock`,
  );
  // Nanosecond times; atimes after the ctimes (an hour ahead) so that reading a directory
  // (relatime) leaves them alone.
  const paths: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      paths.push(`${d}/${e.name}`);
      if (e.isDirectory) walk(`${d}/${e.name}`);
    }
  };
  walk(root);
  const now = Math.floor(Date.now() / 1000);
  for (const [i, p] of paths.sort().reverse().entries()) {
    await ok("touch", "-h", "-m", "-d", `@${1500000000 + i * 7777}.${123456789 + i}`, p);
    await ok("touch", "-h", "-a", "-d", `@${now + 3600 + i}.${987654321 - i}`, p);
  }
  // Names that are not UTF-8 are copied byte for byte (made after the walk above, which
  // sees names as strings).
  await ok(
    "python3",
    "-c",
    `import os, sys, time
d = os.fsencode(sys.argv[1]) + b"/caf\\xe9"
os.mkdir(d)
with open(d + b"/n\\xff\\xfe", "w") as f: f.write("x")
a = (int(time.time()) + 7200) * 10**9 + 5
os.utime(d + b"/n\\xff\\xfe", ns=(a, 1400000000 * 10**9 + 77))
os.utime(d, ns=(a, 1400000001 * 10**9 + 99))`,
    root,
  );
  await ok("touch", "-h", "-m", "-d", "@1600000000.000000001", root);
}

for (const layout of [LAYOUTS[2], LAYOUTS[1], LAYOUTS[LAYOUTS.length - 1]]) {
  testWith(
    `ext4ts put on ${layout.name} copies xattrs, ACLs, ns times, links, holes and nodes exactly`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "setfattr", "setfacl", "mknod"],
    async () => {
      await using dir = await tempDir();
      const host = `${dir.path}/host`;
      await Deno.mkdir(host);
      await makeXattrTree(host);
      const want = await dumpTreeFull(host);
      // The tree holds what the test means it to (guards against a host without xattrs).
      assert.equal(want["a/f"].nlink, 2);
      assert.ok(Object.keys(want["a/f"].xattrs as object).includes("system.posix_acl_access"));
      assert.ok(Object.keys(want["a"].xattrs as object).includes("system.posix_acl_default"));
      assert.deepEqual(Object.keys(want["a/sl"].xattrs as object), ["trusted.sym"]);
      assert.equal(want["sparse"].sparse, true);
      assert.equal(want["bigsparse"].sparse, true);
      assert.match(String(want["b/sock"].mode), /^0o140/);
      assert.equal(want["caf\udce9/n\udcff\udcfe"].mtime_ns, 1400000000000000077);
      const img = `${dir.path}/fs.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, { ...layout, size: "160M" }));
      const r = await runCli(["put", "-v", img, host, "/"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /1[0-9] xattrs/);
      assert.equal(r.stderr, "");
      const check = await fsck(dir.path, await Deno.readFile(img));
      assert.equal(check.code, 0, check.output);
      // The host tree is unchanged by the copy (atimes included).
      assert.deepEqual(await dumpTreeFull(host), want);
      await withKernelMount(img, async (mnt) => {
        const got = await dumpTreeFull(`${mnt}/host`);
        assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
        for (const [path, w] of Object.entries(want)) {
          assert.deepEqual(got[path], w, `${path} differs`);
        }
        const top = await dumpTreeFull(mnt);
        assert.equal(top["host"].mtime_ns, 1600000000000000001);
      }, { readOnly: true });
    },
  );
}

testWith(
  "put in small batches: every flush boundary is an e2fsck-clean image (after its journal replay), the last one the whole tree",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "setfattr"],
  async () => {
    await using dir = await tempDir();
    const host = `${dir.path}/host`;
    for (let d = 0; d < 4; d++) {
      await Deno.mkdir(`${host}/d${d}/sub`, { recursive: true });
      for (let i = 0; i < 60; i++) {
        const p = `${host}/d${d}/${i % 3 ? "" : "sub/"}f${i}`;
        await Deno.writeFile(p, new Uint8Array((i * 997) % 9000).fill(i + 1));
        if (i % 10 === 0) await run("setfattr", ["-n", "user.n", "-v", `v${i}`, p]);
      }
      await Deno.symlink(`d${d}`, `${host}/link${d}`);
    }
    for (let d = 0; d < 4; d++) {
      await Deno.link(`${host}/d${d}/f1`, `${host}/d${(d + 1) % 4}/hard${d}`);
    }
    // Streamed across several transactions: 1 MiB of data with a hole in the middle.
    await run("truncate", ["-s", "3M", `${host}/streamed`]);
    await run("sh", ["-c", `head -c 1048576 /dev/urandom | dd of=${host}/streamed conv=notrunc`]);
    await run("sh", ["-c", `printf end | dd of=${host}/streamed bs=1 seek=3000000 conv=notrunc`]);
    // Directory atimes move as the tree is read (relatime); the test above pins them.
    const noDirAtime = (t: Record<string, Record<string, unknown>>) => {
      for (const e of Object.values(t)) if (String(e.mode).startsWith("0o40")) delete e.atime_ns;
      return t;
    };
    const want = noDirAtime(await dumpTreeFull(host));
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(image)));
    const w = await Ext4Writer.open(log);
    await putTree(w, host, "/", { batchEntries: 40, batchBytes: 256 << 10 });
    await w.close(); // the journal checkpointed and emptied: the kernel mounts it read-only
    const boundaries = log.flushBoundaries();
    assert.ok(boundaries.length >= 16, `${boundaries.length} flushes: several transactions`);
    let files = 0;
    for (const b of boundaries) {
      // As a recovery sees the crash image: its journal replayed first.
      const r = await fsckAfterRecovery(dir.path, log.replay(image, b));
      assert.equal(r.code, 0, `prefix ${b}: ${r.output}`);
      const used = Number([...r.output.matchAll(/: (\d+)\/\d+ files/g)].at(-1)?.[1]);
      assert.ok(used >= files, "each commit adds to the tree");
      files = used;
    }
    const img = `${dir.path}/final.img`;
    await Deno.writeFile(img, log.replay(image, boundaries.at(-1)!));
    await withKernelMount(img, async (mnt) => {
      assert.deepEqual(noDirAtime(await dumpTreeFull(`${mnt}/host`)), want);
    }, { readOnly: true });
  },
);

testWith(
  "put fails cleanly: a name already there, an xattr too big for the block size",
  [...IMAGE_TOOLS, "setfattr"],
  async () => {
    await using dir = await tempDir();
    const host = `${dir.path}/tree`;
    await Deno.mkdir(host);
    await Deno.writeTextFile(`${host}/f`, "data");
    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[3])); // 1 KiB blocks
    let r = await runCli(["put", img, `${host}/f`, "/single"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(["put", img, host, "/"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(["put", img, host, "/"]);
    assert.equal(r.code, 1, "/tree exists");
    assert.match(r.stderr, /^ext4ts: .*tree exists/);
    const big = await run("setfattr", [
      "-n",
      "user.big",
      "-v",
      "0x" + "ab".repeat(1500),
      `${host}/f`,
    ]);
    assert.equal(big.code, 0, big.stderr);
    r = await runCli(["put", img, host, "/again"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ext4ts: \S+\/tree\/f: xattr user\.big .*cannot fit/);
    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);
    // 11 reserved and lost+found, /single, /tree and /tree/f; nothing of /again.
    assert.match(check.output, / 14\/\d+ files/, check.output);
  },
);

testWith(
  "put: files with the same xattrs and directories with the same default ACL share one xattr block each",
  [...IMAGE_TOOLS, "root", "setfattr", "setfacl"],
  async () => {
    await using dir = await tempDir();
    const host = `${dir.path}/host`;
    const img = `${dir.path}/share.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[2]));
    const big = "x".repeat(2000);
    for (let i = 0; i < 12; i++) {
      await Deno.mkdir(`${host}/d${i}`, { recursive: true });
      await Deno.writeTextFile(`${host}/d${i}/f`, `file ${i}`);
      for (const [name, value] of [["user.big", big], ["user.tag", "same"]]) {
        const r = await run("setfattr", ["-n", name, "-v", value, `${host}/d${i}/f`]);
        assert.equal(r.code, 0, r.stderr);
      }
      // Named entries enough for the ACL not to fit in the inode body.
      const acl = Array.from({ length: 16 }, (_, u) => `u:${1000 + u}:rx`).join(",");
      const r = await run("setfacl", ["-d", "-m", acl, `${host}/d${i}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const put = await runCli(["put", img, host, "/tree"]);
    assert.equal(put.code, 0, put.stderr);
    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);
    const fs = await Ext4.open(img);
    try {
      const blocksOf = async (rel: (i: number) => string) => {
        const out = new Set<number>();
        for (let i = 0; i < 12; i++) {
          out.add((await fs.inode((await fs.lstat(rel(i))).ino)).fileAcl);
        }
        return out;
      };
      const files = await blocksOf((i) => `/tree/d${i}/f`);
      const dirs = await blocksOf((i) => `/tree/d${i}`);
      assert.equal(files.size, 1, `one block for the files: ${[...files]}`);
      assert.equal(dirs.size, 1, `one block for the directories: ${[...dirs]}`);
      const [fileBlock] = files;
      const [dirBlock] = dirs;
      assert.ok(fileBlock !== 0 && dirBlock !== 0 && fileBlock !== dirBlock);
      // h_refcount, the second word of the xattr block header.
      const refcount = async (b: number) =>
        new DataView((await fs.readBlock(b)).buffer, (await fs.readBlock(b)).byteOffset)
          .getUint32(4, true);
      assert.equal(await refcount(fileBlock), 12);
      assert.equal(await refcount(dirBlock), 12);
    } finally {
      await fs.close();
    }
  },
);

testWith(
  "put --force and SRC/.: files replaced, directories merged as cp -a does; a type clash or a taken name without -f writes nothing",
  [...IMAGE_TOOLS, "root", "loop", "kernel-ext4", "python3", "sha256sum"],
  async () => {
    await using dir = await tempDir();
    const old = `${dir.path}/old`;
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${old}/d`, { recursive: true });
    await Deno.writeTextFile(`${old}/a`, "old a\n");
    await Deno.writeTextFile(`${old}/keep`, "kept\n");
    await Deno.writeTextFile(`${old}/d/old`, "old in d\n");
    await Deno.symlink("keep", `${old}/l`);
    await Deno.chmod(`${old}/d`, 0o700);
    await Deno.mkdir(`${src}/d/new`, { recursive: true });
    await Deno.writeTextFile(`${src}/a`, "new a, longer than the old one\n");
    await Deno.writeTextFile(`${src}/d/b`, "b\n");
    await Deno.writeTextFile(`${src}/l`, "a file where a symlink was\n");
    await Deno.writeFile(`${src}/d/new/big`, new Uint8Array(300000).map((_, i) => i % 253));
    await Deno.chmod(`${src}/d`, 0o755);
    await Deno.chmod(src, 0o750);
    await Deno.chown(`${src}/d/b`, 1234, 5678);
    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[2]));
    let r = await runCli(["put", img, old, "/dst"]);
    assert.equal(r.code, 0, r.stderr);
    const sum = async () => (await run("sha256sum", [img])).stdout;
    const before = await sum();

    // Without --force a taken name fails, naming it; nothing is written.
    r = await runCli(["put", img, `${src}/.`, "/dst"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "ext4ts: /dst/a exists (--force replaces it)\n");
    r = await runCli(["put", img, `${src}/a`, "/dst/keep"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ext4ts: \/dst\/keep exists and is not a directory\n$/);
    // A directory over a file is a clash even with --force.
    await Deno.mkdir(`${dir.path}/clash/keep`, { recursive: true });
    r = await runCli(["put", "-f", img, `${dir.path}/clash/.`, "/dst"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "ext4ts: cannot overwrite non-directory /dst/keep with a directory\n");
    assert.equal(await sum(), before, "failed puts wrote nothing");

    r = await runCli(["put", "-f", img, `${src}/.`, "/dst"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(["put", "--force", img, `${src}/a`, "/dst/keep"]); // a file over a file
    assert.equal(r.code, 0, r.stderr);
    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);

    // What cp -a does with the same trees on the host is the reference.
    const want = `${dir.path}/want`;
    await runOk("cp", ["-a", old, want]);
    await runOk("rm", [`${want}/l`]); // cp -a replaces a symlink by the file, as put -f
    await runOk("cp", ["-a", `${src}/.`, want]);
    await runOk("cp", ["-a", `${src}/a`, `${want}/keep`]);
    await withKernelMount(img, async (mnt) => {
      assert.deepEqual(await dumpTree(`${mnt}/dst`), await dumpTree(want));
      const st = await Deno.stat(`${mnt}/dst`);
      assert.equal(st.mode! & 0o7777, 0o750, "the merged directory takes SRC's mode");
    }, { readOnly: true });
  },
);

testWith(
  "progress: plain lines with --progress to a pipe, nothing by default, a redrawn line on a terminal",
  [...IMAGE_TOOLS, "script"],
  async () => {
    await using dir = await tempDir();
    const host = `${dir.path}/tree`;
    await Deno.mkdir(`${host}/sub`, { recursive: true });
    await Deno.writeFile(`${host}/big`, new Uint8Array(3 << 20).fill(1));
    await Deno.writeTextFile(`${host}/sub/small`, "x");
    const img = `${dir.path}/fs.img`;
    await Deno.writeFile(img, await mkfsImage(dir.path, LAYOUTS[2]));
    // Default, not a terminal: silent.
    let r = await runCli(["put", img, host, "/quiet"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "");
    // --progress: plain lines with totals, no escape codes; the last one says 100%.
    r = await runCli(["put", "--progress", img, host, "/loud"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trimEnd().split("\n");
    assert.ok(lines.length >= 1, r.stderr);
    for (const l of lines) assert.match(l, /^put: \d+% [\d.]+ \S+ \/ 3\.0 MiB, \d+ \/ 4 entries, /);
    assert.match(lines.at(-1)!, /^put: 100% 3\.0 MiB \/ 3\.0 MiB, 4 \/ 4 entries, .*\/s/);
    assert.ok(!r.stderr.includes("\x1b"), "no escape codes in plain output");
    // -v lists each object on stdout.
    r = await runCli(["put", "-v", img, host, "/listed"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout.split("\n").slice(0, 4).join("\n"),
      "/listed\n/listed/big\n/listed/sub\n/listed/sub/small",
    );
    // get: the same.
    const out = `${dir.path}/out`;
    r = await runCli(["get", img, "/loud", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr + r.stdout, "");
    r = await runCli(["get", "--progress", "-v", img, "/loud", `${out}2`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^get: 100% 3\.0 MiB \/ 3\.0 MiB, 4 \/ 4 entries, /m);
    assert.ok(!r.stderr.includes("\x1b"));
    assert.equal(r.stdout, `${out}2\n${out}2/big\n${out}2/sub\n${out}2/sub/small\n`);
    // On a terminal (script(1) gives a pseudo-terminal): a line redrawn in place, erased.
    const cmd = [
      Deno.execPath(),
      "run",
      "--allow-all",
      `${ROOT}cli/main.ts`,
      "put",
      img,
      host,
      "/tty",
    ];
    const tty = await run("script", ["-qec", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"]);
    assert.equal(tty.code, 0, tty.stdout);
    assert.ok(tty.stdout.includes("\r\x1b[Kput: "), JSON.stringify(tty.stdout.slice(0, 80)));
    assert.ok(tty.stdout.endsWith("\r\x1b[K"), JSON.stringify(tty.stdout.slice(-40)));
    // --no-progress: nothing on the terminal either.
    const quiet = [...cmd.slice(0, -1), "--no-progress", "/tty-quiet"];
    const off = await run("script", ["-qec", quiet.map((a) => `'${a}'`).join(" "), "/dev/null"]);
    assert.equal(off.code, 0, off.stdout);
    assert.equal(off.stdout, "");
    const check = await fsck(dir.path, await Deno.readFile(img));
    assert.equal(check.code, 0, check.output);
  },
);
