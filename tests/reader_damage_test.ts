/**
 * Damaged filesystems through the readers (ls, get, stat) and the read-only mount: one bad
 * inode, directory block or name is an error of its own — every good entry is still listed,
 * copied and served, the damage is reported one line each (the daemon's log for the mount)
 * and the commands end non-zero; the mount answers the kernel's errno for each bad name and
 * lists what the kernel lists. Images are crafted here with mkfs.ext4 and debugfs; nothing
 * is ever written to them (checked by hash).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { run, runCli, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { Ext4, MemoryBlockDevice } from "../mod.ts";
import { Ext4Operations } from "../ffi/fuse/ext4_ops.ts";
import { detachLoopsOf, forceCleanup, FUSE_NEEDS, isMounted, loopsOf } from "./fuse_test_util.ts";

const NEEDS = ["mkfs.ext4", "debugfs"];
const MOUNT_NEEDS = [...FUSE_NEEDS, ...NEEDS, "kernel-ext4", "python3"];

const GOOD = ["good1", "good2", "good3"];
/** Entries of /d whose inodes debugfs damages, with the kernel's errno for each (stat). */
const BAD_INODES: Record<string, { damage: string; errno: number }> = {
  badcsum: { damage: "sif d/badcsum checksum 0x1234", errno: 74 }, // EBADMSG (EFSBADCRC)
  mode0: { damage: "sif d/mode0 mode 0", errno: 117 }, // EUCLEAN: bogus i_mode
  nolinks: { damage: "sif d/nolinks links_count 0", errno: 117 }, // deleted inode referenced
  bigsize: { damage: "sif d/bigsize size 0xffffffffffffffff", errno: 117 }, // bad i_size
};
/** Live, but freed in the inode bitmap: the kernel reads it, e2fsck calls the bitmap wrong. */
const FREED = "freed";
const BIG_ENTRIES = 90;

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** Runs debugfs commands (one invocation, writing). */
async function debugfs(img: string, commands: string[]): Promise<void> {
  const file = await Deno.makeTempFile({ prefix: "ext4ts-debugfs-" });
  try {
    await Deno.writeTextFile(file, commands.join("\n") + "\n");
    await runOk("debugfs", ["-w", "-f", file, img]);
  } finally {
    await Deno.remove(file);
  }
}

function bigName(i: number): string {
  return `entry-${String(i).padStart(3, "0")}-${"x".repeat(24)}`;
}

/**
 * A metadata_csum filesystem (1 KiB blocks): /d holds good files, the damaged inodes of
 * BAD_INODES and a freed one; /big holds BIG_ENTRIES files over several blocks, the second
 * of which fails its checksum. Returns the names missing with that block.
 */
async function damagedImage(img: string, dir: string): Promise<string[]> {
  await runOk("mkfs.ext4", ["-q", "-F", "-b", "1024", "-O", "metadata_csum", img, "16M"]);
  const src = `${dir}/content`;
  await Deno.writeTextFile(src, "content\n");
  const names = [...GOOD, ...Object.keys(BAD_INODES), FREED];
  await debugfs(img, [
    "mkdir d",
    "mkdir big",
    ...names.map((n) => `write ${src} d/${n}`),
    ...Array.from({ length: BIG_ENTRIES }, (_, i) => `write ${src} big/${bigName(i)}`),
  ]);
  await debugfs(img, [...Object.values(BAD_INODES).map((b) => b.damage), `freei d/${FREED}`]);
  // The names in /big's logical block 1, then one byte of it changed: its checksum fails.
  const block = Number((await runOk("debugfs", ["-R", "bmap big 1", img])).trim());
  assert.ok(block > 0, "bmap big 1");
  const f = await Deno.open(img, { read: true, write: true });
  try {
    const buf = new Uint8Array(1024);
    await f.seek(block * 1024, Deno.SeekMode.Start);
    assert.equal(await f.read(buf), 1024);
    const text = new TextDecoder("latin1").decode(buf);
    const lost = [...text.matchAll(/entry-\d{3}-x{24}/g)].map((m) => m[0]);
    assert.ok(lost.length > 3 && lost.length < BIG_ENTRIES / 2, `block 1 holds ${lost.length}`);
    buf[40] ^= 0xff; // inside the first name of the block
    await f.seek(block * 1024, Deno.SeekMode.Start);
    await f.write(buf);
    return lost;
  } finally {
    f.close();
  }
}

/**
 * A filesystem without metadata_csum whose /n holds "ab/cd" and "ef\0gh" among good names
 * (patched into the directory block: no tool makes such names).
 */
async function badNamesImage(img: string, dir: string): Promise<void> {
  await runOk("mkfs.ext4", ["-q", "-F", "-b", "1024", "-O", "^metadata_csum", img, "8M"]);
  const src = `${dir}/content`;
  await Deno.writeTextFile(src, "content\n");
  await debugfs(img, [
    "mkdir n",
    ...["ok1", "abXcd", "efYgh", "ok2"].map((n) => `write ${src} n/${n}`),
  ]);
  const block = Number((await runOk("debugfs", ["-R", "bmap n 0", img])).trim());
  const f = await Deno.open(img, { read: true, write: true });
  try {
    const buf = new Uint8Array(1024);
    await f.seek(block * 1024, Deno.SeekMode.Start);
    assert.equal(await f.read(buf), 1024);
    const text = new TextDecoder("latin1").decode(buf);
    buf[text.indexOf("abXcd") + 2] = 0x2f;
    buf[text.indexOf("efYgh") + 2] = 0;
    await f.seek(block * 1024, Deno.SeekMode.Start);
    await f.write(buf);
  } finally {
    f.close();
  }
}

function stderrLines(stderr: string): string[] {
  return stderr.trim().split("\n").filter((l) => l !== "");
}

testWith(
  "ls, ls -R, ls --json: every good entry listed, each damage one line, exit 1",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    const lost = await damagedImage(img, dir.path);
    const before = await sha256(img);

    const ls = await runCli(["ls", img, "/d"]);
    assert.equal(ls.code, 1, ls.stderr);
    assert.deepEqual(ls.stdout.trim().split("\n"), [FREED, ...GOOD].sort());
    const lines = stderrLines(ls.stderr);
    assert.equal(lines.length, Object.keys(BAD_INODES).length + 1, ls.stderr);
    for (const l of lines) assert.match(l, /^ext4ts: \/d\/\w+: /);
    assert.match(ls.stderr, /\/d\/badcsum: corrupt inode \d+: checksum mismatch/);
    assert.match(ls.stderr, /\/d\/mode0: corrupt inode \d+: deleted or unused inode referenced/);
    assert.match(ls.stderr, /\/d\/nolinks: corrupt inode \d+: deleted inode referenced/);
    assert.match(ls.stderr, /\/d\/bigsize: corrupt inode \d+: bad i_size 18446744073709551615/);
    assert.match(ls.stderr, /\/d\/freed: inode \d+ is in use but free in the inode bitmap/);
    assert.doesNotMatch(ls.stderr, /out of range|internal error|\?---------/);

    // A damaged directory block: the other blocks' names, one line naming the block, exit 1.
    const big = await runCli(["ls", img, "/big"]);
    assert.equal(big.code, 1, big.stderr);
    const want = Array.from({ length: BIG_ENTRIES }, (_, i) => bigName(i))
      .filter((n) => !lost.includes(n));
    assert.deepEqual(big.stdout.trim().split("\n"), want);
    assert.equal(stderrLines(big.stderr).length, 1, big.stderr);
    assert.match(
      big.stderr,
      /^ext4ts: .*fs\.img: corrupt directory inode \d+ \(logical block 1\): checksum mismatch .*; skipped$/m,
    );

    // -R and --json: the same entries, the same reports, exit 1.
    const rec = await runCli(["ls", "-R", img, "/"]);
    assert.equal(rec.code, 1, rec.stderr);
    for (const n of [...GOOD, FREED, ...want.slice(0, 3)]) {
      assert.ok(
        rec.stdout.includes(`\n${n}\n`),
        n,
      );
    }
    assert.equal(stderrLines(rec.stderr).length, lines.length + 1, rec.stderr);
    const json = await runCli(["ls", "-R", "--json", img, "/"]);
    assert.equal(json.code, 1, json.stderr);
    const paths = (JSON.parse(json.stdout) as { path: string }[]).map((e) => e.path);
    for (const n of [...GOOD, FREED]) assert.ok(paths.includes(`/d/${n}`), n);
    for (const n of Object.keys(BAD_INODES)) assert.ok(!paths.includes(`/d/${n}`), n);
    assert.equal(paths.filter((p) => p.startsWith("/big/")).length, want.length);
    assert.equal(stderrLines(json.stderr).length, lines.length + 1, json.stderr);

    assert.equal(await sha256(img), before, "nothing written");
  },
);

testWith(
  "stat: a damaged inode is exit 5 with one line; a freed one is shown, then exit 5",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await damagedImage(img, dir.path);
    const before = await sha256(img);
    for (const name of Object.keys(BAD_INODES)) {
      const r = await runCli(["stat", img, `/d/${name}`]);
      assert.equal(r.code, 5, `${name}: ${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.equal(stderrLines(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /^ext4ts: corrupt inode \d+: /);
    }
    // A path through a damaged inode fails the same way; a good one is fine.
    assert.equal((await runCli(["cat", img, "/d/bigsize"])).code, 5);
    const good = await runCli(["stat", img, "/d/good1"]);
    assert.equal(good.code, 0, good.stderr);
    const freed = await runCli(["stat", "--json", img, `/d/${FREED}`]);
    assert.equal(freed.code, 5, freed.stderr);
    assert.equal(JSON.parse(freed.stdout).size, 8);
    assert.match(
      freed.stderr,
      /^ext4ts: \/d\/freed: inode \d+ is in use but free in the inode bitmap/,
    );
    assert.equal(await sha256(img), before, "nothing written");
  },
);

testWith("get /: everything good copied, each damaged object one line, exit 1", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/fs.img`;
  const lost = await damagedImage(img, dir.path);
  const before = await sha256(img);
  const dest = `${dir.path}/out`;
  const r = await runCli(["get", img, "/", dest]);
  assert.equal(r.code, 1, r.stderr);
  const names = (p: string) => [...Deno.readDirSync(p)].map((e) => e.name).sort();
  assert.deepEqual(names(`${dest}/d`), [FREED, ...GOOD].sort());
  for (const n of [...GOOD, FREED]) {
    assert.equal(Deno.readTextFileSync(`${dest}/d/${n}`), "content\n");
  }
  assert.equal(names(`${dest}/big`).length, BIG_ENTRIES - lost.length);
  const lines = stderrLines(r.stderr);
  assert.equal(lines.length, Object.keys(BAD_INODES).length + 2, r.stderr);
  for (const l of lines) assert.match(l, /^ext4ts: /);
  assert.match(r.stderr, /corrupt directory inode \d+ \(logical block 1\).*; skipped/);
  assert.doesNotMatch(r.stderr, /out of range|internal error|unknown file type/);
  assert.equal(await sha256(img), before, "nothing written");
});

testWith("names with / or NUL: left out of ls and get and reported, exit 1", NEEDS, async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/fs.img`;
  await badNamesImage(img, dir.path);
  const before = await sha256(img);
  const ls = await runCli(["ls", img, "/n"]);
  assert.equal(ls.code, 1, ls.stderr);
  assert.deepEqual(ls.stdout.trim().split("\n"), ["ok1", "ok2"]);
  const lines = stderrLines(ls.stderr);
  assert.equal(lines.length, 2, ls.stderr);
  assert.match(lines[0], /^ext4ts: .*: corrupt directory inode \d+: entry name "ab\/cd" contains/);
  assert.match(lines[1], /entry name "ef\\u0000gh" contains "\/" or NUL; skipped$/);
  const r = await runCli(["get", img, "/n", `${dir.path}/out`]);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual([...Deno.readDirSync(`${dir.path}/out`)].map((e) => e.name).sort(), [
    "ok1",
    "ok2",
  ]);
  assert.equal(await sha256(img), before, "nothing written");
});

testWith("a root inode with mode 0 or not a directory: exit 5, one line", NEEDS, async () => {
  await using dir = await tempDir();
  for (const [mode, shown] of [["0", "0o0"], ["0100644", "0o100644"]]) {
    const img = `${dir.path}/root-${mode}.img`;
    await runOk("mkfs.ext4", ["-q", "-F", img, "8M"]);
    await debugfs(img, [`sif <2> mode ${mode}`]);
    const before = await sha256(img);
    for (
      const args of [["ls", img], ["ls", "-l", img, "/"], ["stat", img, "/"], [
        "get",
        img,
        "/",
        `${dir.path}/o`,
      ]]
    ) {
      const r = await runCli(args);
      assert.equal(r.code, 5, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.deepEqual(stderrLines(r.stderr), [
        `ext4ts: corrupt root inode 2: not a directory (mode ${shown}); run e2fsck`,
      ]);
    }
    assert.equal(await sha256(img), before, "nothing written");
  }
});

testWith(
  "FUSE adapter: READDIRPLUS serves bad entries without attributes, LOOKUP answers their errno",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await damagedImage(img, dir.path);
    const logged: string[] = [];
    const fs = await Ext4.openDevice(new MemoryBlockDevice(await Deno.readFile(img)), {
      onCorrupt: (e) => logged.push(`${e.message}; skipped`),
    });
    const ops = new Ext4Operations(fs, { blockSize: 1024, log: (l) => logged.push(l) });
    try {
      const ctx = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };
      const d = await ops.lookup(ctx, 1, new TextEncoder().encode("d"));
      const served = new Map<string, number | undefined>();
      for await (const e of ops.readdirplus(ctx, d.nodeid, 0, 0)) {
        served.set(new TextDecoder().decode(e.dirent.name), e.entry?.nodeid);
      }
      for (const n of [...GOOD, FREED]) assert.ok(served.get(n)! > 0, `${n} has attributes`);
      for (const [n, bad] of Object.entries(BAD_INODES)) {
        assert.ok(served.has(n), `${n} listed`);
        assert.equal(served.get(n), undefined, `${n} served without attributes`);
        await assert.rejects(
          ops.lookup(ctx, d.nodeid, new TextEncoder().encode(n)),
          (e: { errno: number }) => e.errno === bad.errno,
        );
      }
      // One line per damaged entry, naming inode and directory, though looked up again.
      assert.equal(logged.length, Object.keys(BAD_INODES).length, logged.join("\n"));
      for (const l of logged) {
        assert.match(l, /^damaged inode \d+ \(entry "\w+"\) in directory inode \d+: corrupt/);
      }
      // A damaged directory block: reported through onCorrupt, the other blocks listed.
      const big = await ops.lookup(ctx, 1, new TextEncoder().encode("big"));
      let count = 0;
      for await (const e of ops.readdir(ctx, big.nodeid, 0, 0)) count += e.name[0] === 0x2e ? 0 : 1;
      assert.ok(count > BIG_ENTRIES / 2 && count < BIG_ENTRIES, `${count} entries`);
      assert.match(logged.at(-1)!, /\(logical block 1\): checksum mismatch.*; skipped$/);
    } finally {
      await ops.destroy();
    }
  },
);

/** Names of a directory, and the errno of lstat for each (0 when it works). */
const PROBE = String.raw`
import json, os, sys
out = {}
for d in sys.argv[1:]:
    names = sorted(os.listdir(d))
    errs = {}
    for n in names:
        try:
            os.lstat(os.path.join(d, n))
            errs[n] = 0
        except OSError as e:
            errs[n] = e.errno
    out[d] = errs
print(json.dumps(out))
`;

async function probe(mnt: string, dirs: string[]): Promise<Record<string, Record<string, number>>> {
  const r = await run("python3", ["-c", PROBE, ...dirs.map((d) => `${mnt}/${d}`)]);
  assert.equal(r.code, 0, r.stderr);
  const raw = JSON.parse(r.stdout) as Record<string, Record<string, number>>;
  return Object.fromEntries(dirs.map((d) => [d, raw[`${mnt}/${d}`]]));
}

/** Mounts `img` with ext4ts, probes `dirs`, unmounts; returns the probe and the daemon's log. */
async function ext4tsProbe(
  img: string,
  dirs: string[],
): Promise<{ seen: Record<string, Record<string, number>>; log: string }> {
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-damage-mnt-" });
  const log = `${mnt}.log`;
  try {
    const m = await runCli(["mount", img, mnt, "--log", log]);
    assert.equal(m.code, 0, m.stderr);
    const seen = await probe(mnt, dirs);
    const u = await runCli(["umount", mnt]);
    assert.equal(u.code, 0, u.stderr);
    return { seen, log: await Deno.readTextFile(log) };
  } finally {
    if (isMounted(mnt)) await forceCleanup(mnt);
    await detachLoopsOf(img);
    await Deno.remove(mnt).catch(() => {});
    await Deno.remove(log).catch(() => {});
  }
}

testWith(
  "mount: damaged inodes and a damaged block fail only themselves; names and errnos are the kernel's",
  MOUNT_NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    const lost = await damagedImage(img, dir.path);
    const copy = `${dir.path}/kernel.img`;
    await Deno.copyFile(img, copy);
    const kernel = await withKernelMount(copy, (m) => probe(m, ["d", "big"]), {
      readOnly: true,
      mountOptions: "noload",
    });
    // The kernel: every name listed; lstat fails for the damaged inodes only.
    assert.deepEqual(kernel.d, {
      ...Object.fromEntries(GOOD.map((n) => [n, 0])),
      [FREED]: 0,
      ...Object.fromEntries(Object.entries(BAD_INODES).map(([n, b]) => [n, b.errno])),
    });
    assert.equal(Object.keys(kernel.big).length, BIG_ENTRIES - lost.length);
    const before = await sha256(img);
    const { seen, log } = await ext4tsProbe(img, ["d", "big"]);
    assert.deepEqual(seen.d, kernel.d);
    // The same names; the kernel's lookups that scan past the bad block fail (EBADMSG), while
    // READDIRPLUS has already given ext4ts's entries their attributes: not compared.
    assert.deepEqual(Object.keys(seen.big), Object.keys(kernel.big));
    for (const name of Object.keys(BAD_INODES)) {
      const lines = log.split("\n").filter((l) => l.includes(`"${name}"`));
      assert.equal(lines.length, 1, `one log line for ${name}:\n${log}`);
      assert.match(
        lines[0],
        /damaged inode \d+ \(entry "\w+"\) in directory inode \d+: corrupt inode/,
      );
    }
    assert.match(
      log,
      /corrupt directory inode \d+ \(logical block 1\): checksum mismatch.*; skipped/,
    );
    assert.equal(await sha256(img), before, "nothing written");
  },
);

testWith(
  "mount: names with / or NUL are left out (logged); the rest of the directory is served",
  MOUNT_NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await badNamesImage(img, dir.path);
    const copy = `${dir.path}/kernel.img`;
    await Deno.copyFile(img, copy);
    // The kernel's getdents fails the whole directory for such a name (fs/readdir.c refuses
    // a "/"); ext4ts serves the rest of it.
    const kernel = await withKernelMount(
      copy,
      (m) => run("python3", ["-c", "import os,sys; os.listdir(sys.argv[1])", `${m}/n`]),
      { readOnly: true },
    );
    assert.match(kernel.stderr, /OSError: \[Errno \d+\]/, "the kernel cannot list it");
    const before = await sha256(img);
    const { seen, log } = await ext4tsProbe(img, ["n"]);
    assert.deepEqual(seen, { n: { ok1: 0, ok2: 0 } });
    assert.match(log, /entry name "ab\/cd" contains "\/" or NUL; skipped/);
    assert.match(log, /entry name "ef\\u0000gh" contains "\/" or NUL; skipped/);
    assert.equal(await sha256(img), before, "nothing written");
  },
);

testWith(
  "mount: a root inode with mode 0 is refused with exit 5, as the kernel refuses it",
  MOUNT_NEEDS,
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/fs.img`;
    await runOk("mkfs.ext4", ["-q", "-F", img, "8M"]);
    await debugfs(img, ["sif <2> mode 0"]);
    const before = await sha256(img);
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    try {
      const kernel = await run("mount", ["-o", "loop,ro,noload", img, mnt]);
      assert.notEqual(kernel.code, 0, "the kernel refuses it too");
      const r = await runCli(["mount", img, mnt]);
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /corrupt root inode 2: not a directory \(mode 0o0\)/);
      assert.equal(isMounted(mnt), false);
      assert.deepEqual(await loopsOf(img), []);
    } finally {
      if (isMounted(mnt)) await forceCleanup(mnt);
      await detachLoopsOf(img);
    }
    assert.equal(await sha256(img), before, "nothing written");
  },
);
