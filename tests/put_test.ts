import assert from "node:assert/strict";
import { run, runCli, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

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
      let r = await runCli(["put", img, host, "/"]);
      assert.equal(r.code, 0, r.stderr);
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
  assert.equal(r.code, 9, r.stderr);
  assert.match(r.stderr, /bigalloc/);
});
