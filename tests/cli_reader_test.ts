/**
 * The reader commands (ls, cat, stat, get) as a user runs them: outputs, exit codes, and
 * `get` copying a whole populated tree to a kernel-mounted ext4 where the kernel's listing
 * of the copy equals the kernel's listing of the original (all but inode numbers, ctimes and
 * directory sizes).
 */
import assert from "node:assert/strict";
import { Ext4, Ext4Error } from "../mod.ts";
import { inodeLocation } from "../lib/ondisk/inode.ts";
import {
  makeImage,
  ROOT,
  run,
  runCli,
  runOk,
  tempDir,
  testWith,
  TREE_LISTING,
  unprivileged,
  withKernelMount,
} from "./helpers.ts";

const POPULATE = `${ROOT}tests/fixtures/populate_tree.py`;
const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "python3", "setfacl"];

/** Drops the ino and ctime columns, and sizes of directories (they depend on the filesystem). */
function comparable(listing: string): string {
  return listing.trim().split("\n").map((line) => {
    const c = line.split("\t");
    if (c[1] === "d") c[6] = "-";
    return [...c.slice(0, 9), c[10]].join("\t");
  }).join("\n");
}

testWith("ls, cat, stat and get on a populated image", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/src.img`;
  await makeImage(img, {
    args: ["-b", "4096"],
    size: "96M",
    populate: (m) => runOk("python3", [POPULATE, m, "--files", "40"]).then(() => {}),
  });
  // ls
  let r = await runCli(["ls", img]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n").slice(0, 3), ["allhole", "dev", "files"]);
  r = await runCli(["ls", "-l", img, "/links"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^lrwxrwxrwx .* short -> \.\.\/files\/f01$/m);
  r = await runCli(["ls", "-l", img, "/links/todir"]);
  assert.match(r.stdout, /^lrwxrwxrwx .* \/links\/todir -> \.\.\/many\n$/);
  r = await runCli(["ls", img, "/links/todir"]);
  assert.match(r.stdout, /^file-00000\n/);
  r = await runCli(["ls", "-R", "--json", img, "/dev"]);
  const entries = JSON.parse(r.stdout) as { path: string; type: string; rdev?: unknown }[];
  assert.ok(entries.some((e) => e.path === "/dev/sda1" && e.type === "blockdev"));
  assert.deepEqual(entries.find((e) => e.path === "/dev/bigdev")?.rdev, {
    major: 300,
    minor: 70000,
  });
  r = await runCli(["ls", "-R", img, "/perm"]);
  assert.match(r.stdout, /^\/perm:\nm0\nm1777\n/);
  // cat
  r = await runCli(["cat", img, "/links/short"]);
  assert.equal(r.code, 0);
  const direct = await withKernelMount(img, (m) => Deno.readFile(`${m}/files/f01`), {
    readOnly: true,
  });
  assert.deepEqual(r.stdoutBytes, direct);
  r = await runCli(["cat", img, "/nope"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, /^ext4ts: no such file or directory/);
  r = await runCli(["cat", img, "/files"]);
  assert.equal(r.code, 1);
  // stat
  r = await runCli(["stat", "--json", img, "/times/future"]);
  const st = JSON.parse(r.stdout);
  assert.deepEqual(st.mtime, { sec: 4102444800, nsec: 123456789 });
  r = await runCli(["stat", img, "/times/future"]);
  assert.match(r.stdout, /Modify: 2100-01-01 00:00:00\.123456789 \+0000/);
  // usage and not-ext4
  r = await runCli(["ls", "--offset", "abc", img]);
  assert.equal(r.code, 2);
  await Deno.writeFile(`${dir.path}/zero.img`, new Uint8Array(1 << 20));
  r = await runCli(["ls", `${dir.path}/zero.img`]);
  assert.equal(r.code, 3);
  // --offset: the same filesystem behind 1 MiB of padding
  const padded = `${dir.path}/padded.img`;
  await runOk("sh", ["-c", `{ head -c 1048576 /dev/zero; cat '${img}'; } > '${padded}'`]);
  r = await runCli(["cat", "--offset", "1M", padded, "/links/short"]);
  assert.deepEqual(r.stdoutBytes, direct);

  // get: the whole tree onto a fresh kernel-mounted ext4, then compare kernel listings.
  const original = await withKernelMount(
    img,
    (m) => runOk("python3", [TREE_LISTING, m]),
    { readOnly: true },
  );
  const dst = `${dir.path}/dst.img`;
  await makeImage(dst, { args: ["-b", "4096"], size: "96M" });
  const copied = await withKernelMount(dst, async (m) => {
    // The destination's own lost+found is merged into, like cp -a does.
    const g = await runCli(["get", img, "/", m]);
    assert.equal(g.code, 0, g.stderr);
    // Copying a single file into a directory keeps its name.
    await Deno.mkdir(`${dir.path}/one`);
    const one = await runCli(["get", img, "/files/f03", `${dir.path}/one`]);
    assert.equal(one.code, 0, one.stderr);
    return runOk("python3", [TREE_LISTING, m]);
  });
  // Only the root directory's mtime may differ (it had lost+found before the copy).
  const a = comparable(original).split("\n").filter((l) => !l.startsWith("/\t"));
  const b = comparable(copied).split("\n").filter((l) => !l.startsWith("/\t"));
  assert.ok(a.length > 80, "the listing is suspiciously short");
  assert.deepEqual(b, a);
  assert.ok((await Deno.stat(`${dir.path}/one/f03`)).isFile);
});

testWith("get copies what it can from a damaged image and exits 1", ["mkfs.ext4"], async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/src`;
  await Deno.mkdir(`${src}/d`, { recursive: true });
  for (const n of ["a", "b", "c"]) await Deno.writeTextFile(`${src}/d/${n}`, n);
  const img = `${dir.path}/bad.img`;
  await runOk("mkfs.ext4", ["-q", "-F", "-d", src, img, "8M"]);
  // Break the checksum of /d/b's inode.
  const fs = await Ext4.open(img);
  const ino = (await fs.stat("/d/b")).ino;
  const at = inodeLocation(fs.superblock, fs.groups, ino);
  await fs.close();
  const bytes = await Deno.readFile(img);
  bytes[at + 0x10] ^= 0xff;
  await Deno.writeFile(img, bytes);
  const out = `${dir.path}/out`;
  const r = await runCli(["get", img, "/d", out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ext4ts: \/d\/b: corrupt inode \d+: checksum mismatch/m);
  assert.equal(await Deno.readTextFile(`${out}/a`), "a");
  assert.equal(await Deno.readTextFile(`${out}/c`), "c");
  // ls reports the damaged entry on stderr, lists the others, exits 1.
  const l = await runCli(["ls", "-l", img, "/d"]);
  assert.equal(l.code, 1);
  assert.match(l.stdout, / a\n.* c\n$/);
  assert.equal(l.stderr.trim().split("\n").length, 1);
});

testWith(
  "get refuses names with a slash instead of writing outside DEST",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/d`, { recursive: true });
    await Deno.writeTextFile(`${src}/d/..Xescape`, "x");
    await Deno.writeTextFile(`${src}/d/ok`, "ok");
    const img = `${dir.path}/slash.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-O", "^metadata_csum", "-d", src, img, "8M"]);
    // Turn the stored name "..Xescape" into "../escape".
    const bytes = await Deno.readFile(img);
    const needle = new TextEncoder().encode("..Xescape");
    let hits = 0;
    for (let i = 0; i + needle.length <= bytes.length; i++) {
      if (needle.every((b, k) => bytes[i + k] === b)) {
        bytes[i + 2] = 0x2f;
        hits++;
      }
    }
    assert.equal(hits, 1);
    await Deno.writeFile(img, bytes);
    await Deno.mkdir(`${dir.path}/out`);
    const r = await runCli(["get", img, "/d", `${dir.path}/out/d`]);
    assert.equal(r.code, 1);
    // The reader leaves the entry out and reports it: one line, exit 1.
    assert.match(r.stderr, /entry name "\.\.\/escape" contains "\/" or NUL; skipped/);
    assert.equal(await Deno.readTextFile(`${dir.path}/out/d/ok`), "ok");
    await assert.rejects(Deno.stat(`${dir.path}/out/escape`));
  },
);

testWith("get never follows what a duplicate name created", ["mkfs.ext4"], async () => {
  await using dir = await tempDir();
  const src = `${dir.path}/src`;
  await Deno.mkdir(`${src}/d`, { recursive: true });
  const victim = `${dir.path}/victim`;
  await Deno.writeTextFile(victim, "keep");
  await Deno.symlink(victim, `${src}/d/aaaa`);
  await Deno.writeTextFile(`${src}/d/bbbb`, "overwrite!");
  const img = `${dir.path}/dup.img`;
  await runOk("mkfs.ext4", ["-q", "-F", "-O", "^metadata_csum", "-d", src, img, "8M"]);
  // Rename "bbbb" to "aaaa": two entries with one name, the symlink first.
  const bytes = await Deno.readFile(img);
  const needle = new TextEncoder().encode("bbbb");
  for (let i = 0; i + 4 <= bytes.length; i++) {
    if (needle.every((b, k) => bytes[i + k] === b)) bytes.set(new TextEncoder().encode("aaaa"), i);
  }
  await Deno.writeFile(img, bytes);
  const r = await runCli(["get", img, "/d", `${dir.path}/out`]);
  // The second "aaaa" replaces the first (cp --remove-destination), never writes through it.
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await Deno.readTextFile(victim), "keep");
  const st = await Deno.lstat(`${dir.path}/out/aaaa`);
  assert.ok(st.isFile || st.isSymlink);
  // A symlink already in DEST where a directory goes is not followed either.
  const elsewhere = `${dir.path}/elsewhere`;
  await Deno.mkdir(elsewhere);
  await Deno.mkdir(`${dir.path}/out2`);
  await Deno.symlink(elsewhere, `${dir.path}/out2/d`);
  const r2 = await runCli(["get", img, "/d", `${dir.path}/out2`]);
  assert.equal(r2.code, 1);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(elsewhere)), []);
});

/** Under argv[1]: a file and a directory (with a file) whose names are not UTF-8. */
const RAW_NAMES = String.raw`
import os, sys
m = os.fsencode(sys.argv[1])
os.mkdir(m + b"/d\xfe")
for p in [b"/a\xff", b"/d\xfe/in\xe2\x82", b"/d\xfe/ok", b"/plain"]:
    with open(m + p, "wb") as f:
        f.write(p)
`;
/** Prints ls -R style output of argv[1] with the raw name bytes, as the kernel lists them. */
const KERNEL_LS_R = String.raw`
import os, sys
out = sys.stdout.buffer
root = os.fsencode(sys.argv[1])
queue = [b"/"]
first = True
while queue:
    d = queue.pop(0)
    names = sorted(n for n in os.listdir(root + d) if n not in (b".", b".."))
    out.write((b"" if first else b"\n") + d + b":\n")
    first = False
    out.write(b"".join(n + b"\n" for n in names))
    sub = [(d.rstrip(b"/") + b"/" + n) for n in names if os.path.isdir(root + d + b"/" + n)]
    queue[:0] = sub
`;

testWith("ls and get with names that are not valid UTF-8", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/src.img`;
  await makeImage(img, {
    args: ["-b", "4096"],
    size: "16M",
    populate: (m) => runOk("python3", ["-c", RAW_NAMES, m]).then(() => {}),
  });
  const kernel = await withKernelMount(img, async (m) => {
    const r = await run("python3", ["-c", KERNEL_LS_R, m]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdoutBytes;
  }, { readOnly: true });
  // ls -R prints the stored bytes and descends into the directory whose name is not UTF-8.
  let r = await runCli(["ls", "-R", img]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(kernel.includes(0xfe));
  assert.deepEqual(r.stdoutBytes, kernel);
  r = await runCli(["ls", "-l", img]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdoutBytes.includes(0xff) && r.stdoutBytes.includes(0xfe));
  // get cannot create names from raw bytes (Deno paths are strings): it copies the rest and
  // reports each such name, exit 1.
  const out = `${dir.path}/out`;
  r = await runCli(["get", img, "/", out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /a\uFFFD: name is not valid UTF-8 \(bytes 61ff\), not copied/);
  assert.match(r.stderr, /d\uFFFD: name is not valid UTF-8 \(bytes 64fe\), not copied/);
  assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).sort(), ["lost+found", "plain"]);
});

testWith(
  "get without root: the caller owns the copy, device nodes are skipped, refused xattrs warn once",
  ["root", "mkfs.ext4", "setpriv", "setfattr", "mknod"],
  async () => {
    await using dir = await tempDir();
    await Deno.chmod(dir.path, 0o755);
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/d`, { recursive: true });
    await Deno.writeTextFile(`${src}/d/file`, "data");
    await Deno.chown(`${src}/d/file`, 1234, 5678);
    await Deno.chmod(`${src}/d/file`, 0o4750);
    // Set-id bits stay only on what the caller could keep the owner of (nobody's own file).
    await Deno.writeTextFile(`${src}/own`, "");
    await Deno.chown(`${src}/own`, 65534, 65534);
    await Deno.chmod(`${src}/own`, 0o6755);
    await Deno.link(`${src}/d/file`, `${src}/hard`);
    await Deno.symlink("d/file", `${src}/link`);
    await runOk("mknod", [`${src}/fifo`, "p"]);
    await runOk("mknod", [`${src}/null`, "c", "1", "3"]);
    await runOk("mknod", [`${src}/disk`, "b", "8", "1"]);
    await runOk("setfattr", ["-n", "user.keep", "-v", "yes", `${src}/d/file`]);
    // trusted.* needs CAP_SYS_ADMIN: refused twice, warned about once.
    await runOk("setfattr", ["-n", "trusted.one", "-v", "1", `${src}/d/file`]);
    await runOk("setfattr", ["-n", "trusted.two", "-v", "2", `${src}/d`]);
    await Deno.utime(`${src}/d/file`, 1600000000.5, 1600000000.25);
    const img = `${dir.path}/src.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-d", src, img, "8M"]);
    await Deno.chmod(img, 0o644);
    // The CLI runs as nobody (with a copy of the npm cache it can read: no network).
    const nobody = await unprivileged(`${dir.path}/user`);
    const out = `${dir.path}/out`;
    await Deno.mkdir(out);
    await Deno.chown(out, nobody.uid, nobody.gid);
    const r = await nobody.cli(["get", img, "/", out]);
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 3, r.stderr);
    for (
      const want of [/\/disk: not recreating a device node/, /\/null: not recreating a device/]
    ) {
      assert.ok(lines.some((l) => want.test(l)), `${want} in ${r.stderr}`);
    }
    assert.ok(lines.some((l) => /cannot set xattr trusted\.(one|two) .*; continuing$/.test(l)));
    await assert.rejects(Deno.lstat(`${out}/null`));
    await assert.rejects(Deno.lstat(`${out}/disk`));
    const file = await Deno.lstat(`${out}/d/file`);
    assert.equal(file.uid, 65534);
    assert.equal(file.mode! & 0o7777, 0o750, "cp -a drops set-id bits with the owner");
    assert.equal((await Deno.lstat(`${out}/own`)).mode! & 0o7777, 0o6755);
    // (mke2fs -d may drop the nanoseconds; the kernel-populated test above checks them.)
    assert.equal(Math.floor(file.mtime!.getTime() / 1000), 1600000000);
    assert.equal(file.nlink, 2);
    assert.equal((await Deno.lstat(`${out}/hard`)).ino, file.ino);
    assert.equal(await Deno.readLink(`${out}/link`), "d/file");
    assert.ok((await Deno.lstat(`${out}/fifo`)).isFifo);
    assert.equal(
      await runOk("getfattr", ["--only-values", "-n", "user.keep", `${out}/d/file`]),
      "yes",
    );
  },
);

testWith(
  "a directory cycle (an entry naming an ancestor) ends every traversal",
  ["mkfs.ext4", "debugfs"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/a/b`, { recursive: true });
    await Deno.writeTextFile(`${src}/a/b/f`, "x");
    const img = `${dir.path}/cycle.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-d", src, img, "8M"]);
    await runOk("debugfs", ["-w", "-R", "ln /a /a/b/up", img]); // /a/b/up is /a again
    const fs = await Ext4.open(img);
    try {
      const walked: string[] = [];
      const err = await (async () => {
        for await (const { path } of fs.walk("/")) walked.push(path);
      })().catch((e) => e);
      assert.ok(err instanceof Ext4Error && err.code === "CORRUPT", String(err));
      assert.match(err.message, /cycle/);
      assert.ok(walked.includes("/a/b/f") && walked.length < 20, walked.join(" "));
      assert.equal((await fs.stat("/a/b/up/b/up/b/f")).type, "file"); // paths may still go round
    } finally {
      await fs.close();
    }
    const ls = await runCli(["ls", "-R", img]);
    assert.equal(ls.code, 1, ls.stderr);
    assert.equal(ls.stdout.split("\n").filter((l) => l.endsWith(":")).length, 4); // / a a/b l+f
    assert.equal(ls.stderr, "ext4ts: /a/b/up: not listing already-listed directory\n");
    const out = `${dir.path}/out`;
    const get = await runCli(["get", img, "/", out]);
    assert.equal(get.code, 1, get.stderr);
    assert.equal(
      get.stderr,
      "ext4ts: /a/b/up: directory already copied (a cycle), not copied again\n",
    );
    assert.equal(await Deno.readTextFile(`${out}/a/b/f`), "x");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${out}/a/b/up`)), []);
  },
);

testWith(
  "get over an earlier copy replaces every kind of object (cp -a --remove-destination)",
  ["root", "mkfs.ext4", "mknod"],
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/d`, { recursive: true });
    await Deno.writeTextFile(`${src}/file`, "new");
    await Deno.link(`${src}/file`, `${src}/d/hard`);
    await Deno.symlink("file", `${src}/link`);
    await runOk("mknod", [`${src}/fifo`, "p"]);
    await runOk("mknod", [`${src}/null`, "c", "1", "3"]);
    await Deno.writeTextFile(`${src}/blocked`, "");
    const img = `${dir.path}/src.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-d", src, img, "8M"]);
    const out = `${dir.path}/out`;
    const first = await runCli(["get", img, "/", out]);
    assert.equal(first.code, 0, first.stderr);
    // Change what is there: other contents, other kinds, and a directory where a file goes.
    for (const n of ["file", "link", "fifo", "null", "d/hard"]) await Deno.remove(`${out}/${n}`);
    await Deno.writeTextFile(`${out}/link`, "old");
    await Deno.symlink("/etc/passwd", `${out}/file`);
    await Deno.writeTextFile(`${out}/fifo`, "old");
    await runOk("mknod", [`${out}/null`, "p"]);
    await Deno.writeTextFile(`${out}/d/hard`, "old");
    await Deno.remove(`${out}/blocked`);
    await Deno.mkdir(`${out}/blocked`);
    const again = await runCli(["get", img, "/", out]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr.trim(),
      /blocked: cannot overwrite a directory with a non-directory$/,
    );
    assert.equal(again.stderr.trim().split("\n").length, 1, again.stderr);
    const file = await Deno.lstat(`${out}/file`);
    assert.ok(file.isFile && file.nlink === 2);
    assert.equal((await Deno.lstat(`${out}/d/hard`)).ino, file.ino);
    assert.equal(await Deno.readTextFile(`${out}/file`), "new");
    assert.equal(await Deno.readLink(`${out}/link`), "file");
    assert.ok((await Deno.lstat(`${out}/fifo`)).isFifo);
    assert.ok((await Deno.lstat(`${out}/null`)).isCharDevice);
    assert.notEqual(await Deno.readTextFile("/etc/passwd"), "new");
  },
);
