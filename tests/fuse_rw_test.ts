/**
 * `ext4ts mount -o rw` driven with ordinary tools and syscalls, the way a filesystem test
 * suite drives a filesystem. Each scenario runs a workload on the mount; the same workload
 * runs on the kernel's ext4 (a loop mount of an identical image) and the two tree listings
 * (tests/corpus/tools/tree_listing.py, without times and inode numbers) and the workload's
 * own output (errnos, sizes, st_blocks) must be equal. Then `ext4ts umount`, `e2fsck -fn`
 * must be clean, and the kernel's listing of the image (inode numbers and times included)
 * must equal the listing taken through the mount before it went.
 *
 * Deeper runs (100 yank cycles, 100 000 names, the hard-link limit) are opt-in:
 * `deno task test:rw-deep` (EXT4TS_DEEP=1).
 */

import assert from "node:assert/strict";
import {
  IN_CI,
  makeImage,
  missing,
  ROOT,
  run,
  runCli,
  runOk,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";
import {
  detachLoop,
  detachLoopsOf,
  forceCleanup,
  FUSE_NEEDS,
  isMounted,
  loopsOf,
  losetup,
  unprivileged,
  withOpenFuseDevice,
} from "./fuse_test_util.ts";
import { findMount } from "../ffi/fuse/mountinfo.ts";
import { processAlive, readState } from "../ffi/fuse/mount_state.ts";
import { ext4Backend } from "../ffi/fuse/ext4_ops.ts";
import { defaultSettings } from "../ffi/fuse/serve.ts";

const NEEDS = [
  ...FUSE_NEEDS,
  "mkfs.ext4",
  "e2fsck",
  "python3",
  "kernel-ext4",
  "setfattr",
  "setfacl",
  "fallocate",
  "setpriv",
  "debugfs",
  "dumpe2fs",
  "tune2fs",
  "chattr",
];
const DEEP = Deno.env.get("EXT4TS_DEEP") === "1";

/** Registers a scenario; outside CI a missing tool skips it visibly, under CI it fails. */
function rwTest(name: string, fn: () => Promise<void>, options: { deep?: boolean } = {}): void {
  const lacking = missing(NEEDS);
  try {
    Deno.statSync(TREE_LISTING);
  } catch {
    lacking.push(TREE_LISTING);
  }
  Deno.test({
    name,
    ignore: (options.deep && !DEEP) || (lacking.length > 0 && !IN_CI),
    fn: lacking.length > 0
      ? () => {
        throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      }
      : fn,
  });
}

/** A fresh image and a mount point in a temporary directory. */
interface Fixture {
  dir: string;
  img: string;
  mnt: string;
}

async function withFixture(
  fn: (f: Fixture) => Promise<void>,
  image: { size?: string; args?: string[]; mkfs?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuserw-" });
  const img = `${dir}/fs.img`;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  await Deno.chmod(dir, 0o755);
  try {
    await makeImage(img, {
      size: image.size ?? "32M",
      mkfs: image.mkfs,
      args: image.mkfs ? image.args : ["-b", "4096", ...(image.args ?? [])],
    });
    await fn({ dir, img, mnt });
  } finally {
    if (isMounted(mnt)) await forceCleanup(mnt);
    await detachLoopsOf(img);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function mountRw(img: string, mnt: string, options = "rw"): Promise<void> {
  const r = await runCli(["mount", "-o", options, img, mnt]);
  assert.equal(r.code, 0, `ext4ts mount -o ${options}: ${r.stderr}`);
  assert.ok(isMounted(mnt));
}

/** Runs a bash workload in `cwd`; its stdout (what it prints on purpose) is compared. */
async function workload(script: string, cwd: string): Promise<string> {
  const r = await run("bash", ["-c", `set -e; umask 022; ${script}`], { cwd });
  assert.equal(r.code, 0, `workload failed in ${cwd}: ${r.stderr}`);
  return r.stdout;
}

const listing = (dir: string, ...flags: string[]) =>
  runOk("python3", [TREE_LISTING, dir, ...flags]);

/**
 * The whole check of one scenario: `script` on the kernel's ext4 (a copy of the image) and
 * on the ext4ts mount must print the same and leave the same tree (directory sizes included:
 * ext4ts splits htree leaves as the kernel does); after `ext4ts umount` e2fsck is clean and
 * the kernel reads what the mount showed.
 */
async function sameAsKernel(f: Fixture, script: string): Promise<void> {
  const copy = `${f.dir}/kernel.img`;
  await Deno.copyFile(f.img, copy);
  const [kernelOut, kernelTree] = await withKernelMount(copy, async (m) => {
    const out = await workload(script, m);
    return [out, await listing(m, "--no-times", "--no-ino")];
  });
  await mountRw(f.img, f.mnt);
  const out = await workload(script, f.mnt);
  const tree = await listing(f.mnt, "--no-times", "--no-ino");
  const full = await listing(f.mnt);
  await unmountAndCheck(f);
  assert.equal(out, kernelOut, "the workload's output differs from the kernel's");
  assert.equal(tree, kernelTree, "the tree differs from the one the kernel made");
  const after = await withKernelMount(f.img, (m) => listing(m), { readOnly: true });
  assert.equal(after, full, "the kernel reads the image as the mount showed it");
}

/** `ext4ts umount`, nothing left behind, `e2fsck -fn` clean. */
async function unmountAndCheck(f: Fixture): Promise<void> {
  const u = await runCli(["umount", f.mnt]);
  assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);
  assert.ok(!isMounted(f.mnt));
  assert.deepEqual(await loopsOf(f.img), []);
  await fsckClean(f.img);
}

async function fsckClean(img: string): Promise<void> {
  const r = await run("e2fsck", ["-fn", img]);
  assert.equal(r.code, 0, `e2fsck -fn ${img}: ${r.stdout}${r.stderr}`);
}

rwTest(
  "rw mount: files, links, renames, holes, fallocate, modes, owners, xattrs, ACLs",
  async () => {
    await withFixture((f) =>
      sameAsKernel(
        f,
        `
      printf 'hello\\n' > a.txt; printf 'more\\n' >> a.txt
      mkdir -p d/e/f; ln a.txt d/hard; ln -s a.txt sym; ln -s ../../a.txt d/e/rel
      mv a.txt b.txt; mv d/e d/g; seq 1 300000 > seq.txt; cp seq.txt d/g/copy
      printf 'replaced\\n' > new; mv new seq.txt
      truncate -s 10M sparse; printf x | dd of=sparse bs=1 seek=5000000 conv=notrunc 2>/dev/null
      seq 1 5000 > shrink; truncate -s 1000 shrink; truncate -s 9000 shrink
      fallocate -l 1M fa; fallocate -p -o 4096 -l 8192 fa; fallocate -z -o 65536 -l 4096 fa
      touch keep; fallocate -n -l 2M keep; seq 1 100 | dd of=keep conv=notrunc 2>/dev/null
      sync; stat -c '%n %s %b' sparse shrink fa keep
      python3 -c 'import os
def seek(fd, o, w):
    try: return os.lseek(fd, o, w)
    except OSError as e: return e.strerror
for n in ("sparse", "fa", "keep"):
    fd = os.open(n, os.O_RDONLY)
    print(n, [seek(fd, o, w) for o in (0, 4096, 70000, 3 << 20) for w in (os.SEEK_DATA, os.SEEK_HOLE)])'
      mkfifo fifo; mknod cdev c 1 3; mknod bdev b 7 200; rm -f d/hard
      mkdir gone; rmdir gone; touch gone2; rm gone2
      chmod 4750 b.txt; chown 1000:100 b.txt; chmod 600 sym 2>/dev/null || true
      chown -h 7:7 sym; chown 1000 shrink; chmod g+s shrink
      stat -c '%n %a %u %g' b.txt shrink
      seq 1 10 > suid; chmod 6755 suid; echo more >> suid; stat -c '%n %a' suid
      chmod 6755 suid; truncate -s 3 suid; stat -c '%n %a' suid
      setfattr -n user.color -v blue b.txt; setfattr -n user.gone -v x b.txt
      setfattr -x user.gone b.txt; setfattr -n trusted.t -v 0x00ff d
      setfattr -n user.big -v "$(seq 1 400 | tr -d '\\n')" d/g/copy
      getfattr -n user.nothing b.txt 2>&1 | sed 's/^[^:]*: //' || true
      setfacl -m u:1000:rw,g:100:r b.txt; setfacl -d -m u:1000:rwx,g::rx,o::- d/g
      touch d/g/inherits; mkdir d/g/subdir
      mkdir sg; chgrp 100 sg; chmod 2775 sg; mkdir sg/sub; touch sg/file
      stat -c '%n %a %g' sg/sub sg/file
      (umask 077; touch masked; mkdir maskeddir; touch d/g/acl-not-masked)
      stat -c '%n %a' masked maskeddir d/g/acl-not-masked
      getfacl -c d/g/acl-not-masked
      sync; stat -f -c 'statfs %b %f %a %c %d %S %l' .
      `,
      )
    );
  },
);

for (const mkfs of ["mkfs.ext3", "mkfs.ext2"]) {
  rwTest(
    `rw mount of ${mkfs.slice(5)} (1 KiB blocks, block maps): the kernel's results`,
    async () => {
      await withFixture(
        (f) =>
          sameAsKernel(
            f,
            `seq 1 200000 > big; mkdir -p a/b; for i in $(seq 1 300); do echo $i > a/b/f$i; done
          ln big a/hl; ln -s big sl; mv a/b a/c; rm a/c/f1*; truncate -s 5000 big
          truncate -s 20M sparse; echo x >> sparse; seq 1 70000 | dd of=sparse conv=notrunc 2>/dev/null
          sync  # the kernel's delayed allocation counts indirect blocks only once written back
          stat -c '%n %s %b' big sparse
          if fallocate -l 1M fa 2>/dev/null; then echo fallocate ok; else echo fallocate refused; fi
          setfattr -n user.x -v y big; setfacl -m u:7:r big; chmod 4755 a/hl; chown -h 5:5 sl
          rm -r a/c; sync; stat -f -c 'statfs %b %f %a %c %d' .`,
          ),
        { mkfs, args: ["-b", "1024"] },
      );
    },
  );
}

rwTest(
  "rw mount: open-unlinked files, O_TMPFILE, rename over open files, renameat2, fsync",
  async () => {
    const py = `
import ctypes, errno, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
def rename2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
fd = os.open("held", os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"x" * 100000)
os.unlink("held")
os.fsync(fd)
os.pwrite(fd, b"tail", 200000)
print("held size", os.fstat(fd).st_size, "links", os.fstat(fd).st_nlink)
print("held data", os.pread(fd, 4, 200000), os.pread(fd, 3, 5))
os.ftruncate(fd, 50000); os.fchmod(fd, 0o600)
print("held after ftruncate", os.fstat(fd).st_size, oct(os.fstat(fd).st_mode))
open("victim", "w").write("old victim\\n")
vfd = os.open("victim", os.O_RDONLY)
open("replacer", "w").write("new\\n")
os.rename("replacer", "victim")
print("victim still reads", os.pread(vfd, 100, 0))
os.close(vfd)
os.close(fd)
open("a", "w").write("a\\n"); open("b", "w").write("b\\n"); os.mkdir("dir")
print("noreplace", errno.errorcode.get(rename2("a", "b", 1), 0))
print("exchange", rename2("a", "b", 2), open("a").read().strip(), open("b").read().strip())
print("exchange dir", rename2("a", "dir", 2), os.path.isdir("a"))
print("noreplace new", rename2("b", "c", 1), os.path.exists("c"))
f = os.open("synced", os.O_CREAT | os.O_WRONLY, 0o600)
os.write(f, b"durable\\n"); os.fdatasync(f); os.fsync(f); os.close(f)
d = os.open(".", os.O_RDONLY); os.fsync(d); os.close(d)
t = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o640)
os.write(t, b"tmp data\\n")
print("tmpfile links", os.fstat(t).st_nlink, oct(os.fstat(t).st_mode))
def link_fd(fd, name):  # linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH)
    r = libc.linkat(fd, b"", -100, name.encode(), 0x1000)
    return 0 if r == 0 else ctypes.get_errno()
print("linkat", link_fd(t, "from_tmp"))
print(open("from_tmp").read().strip(), os.stat("from_tmp").st_nlink, os.fstat(t).st_nlink)
os.close(t)
t = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600); os.write(t, b"x" * 50000); os.close(t)
t = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
print("O_EXCL tmpfile", errno.errorcode.get(link_fd(t, "never"), 0))
os.close(t)
src = os.open("held2", os.O_CREAT | os.O_RDWR, 0o644)
os.write(src, bytes(range(256)) * 300)
dst = os.open("copied", os.O_CREAT | os.O_RDWR, 0o644)
print("copy_file_range", os.copy_file_range(src, dst, 50000, 100, 7),
      os.copy_file_range(src, dst, 1 << 20, 76000), os.copy_file_range(src, dst, 10, 90000))
os.close(src); os.close(dst)
m = os.open("mapped", os.O_CREAT | os.O_RDWR, 0o644)
os.ftruncate(m, 3 * 4096)
with mmap.mmap(m, 3 * 4096) as mm:
    mm[100:105] = b"hello"; mm[8200:8205] = b"world"; mm.flush()
    mm[5000:5003] = b"end"  # dirty at munmap/close, never flushed by us
os.close(m)
print("mapped", open("mapped", "rb").read().strip(b"\\0"))
for call in [lambda: os.rmdir("dir"), lambda: os.unlink("a"), lambda: os.mkdir("c"),
             lambda: os.link("a", "x"), lambda: os.rename("a", "a/x"), lambda: os.rmdir("c")]:
    try:
        call(); print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
`;
    await withFixture((f) => sameAsKernel(f, `python3 - <<'EOF'\n${py}\nEOF`));
  },
);

rwTest(
  "rw mount: chattr/lsattr, and immutable and append-only files refuse as the kernel's",
  async () => {
    const attempt = (what: string, cmd: string) =>
      `if ${cmd} 2>/dev/null; then echo "${what}: ok"; else echo "${what}: refused"; fi`;
    await withFixture((f) =>
      sameAsKernel(
        f,
        `mkdir -p d sub/x; echo data > f; echo log > a; ln -s f sl
      chattr +i f; chattr +a a; chattr +a d; chattr +i sub; chattr +d +A f 2>/dev/null || true
      lsattr -d f a d sub | cut -c1-22
      ${attempt("write immutable", "echo x > f")}
      ${attempt("append immutable", "echo x >> f")}
      ${attempt("chmod immutable", "chmod 600 f")}
      ${attempt("touch immutable", "touch f")}
      ${attempt("rm immutable", "rm -f f")}
      ${attempt("ln immutable", "ln f f2")}
      ${attempt("mv immutable", "mv f f3")}
      ${attempt("setfattr immutable", "setfattr -n user.x -v 1 f")}
      ${attempt("truncate immutable", "truncate -s 0 f")}
      ${attempt("append append-only", "echo more >> a")}
      ${attempt("overwrite append-only", "echo x > a")}
      ${attempt("truncate append-only", "truncate -s 0 a")}
      ${attempt("touch append-only", "touch a")}
      ${attempt("touch -d append-only", "touch -d @100 a")}
      ${attempt("rm append-only", "rm -f a")}
      ${attempt("punch append-only", "fallocate -p -o 0 -l 1 a")}
      ${attempt("allocate append-only", "fallocate -n -o 0 -l 8192 a")}
      ${attempt("create in append-only dir", "touch d/new")}
      ${attempt("rm in append-only dir", "rm d/new")}
      ${attempt("create in immutable dir", "touch sub/new")}
      ${attempt("rmdir in immutable dir", "rmdir sub/x")}
      ${attempt("chattr on a symlink", "chattr +i sl")}
      chattr -i f; chattr -a a d; chattr -i sub
      echo after > f; rm a; rm -r d sub; lsattr f | cut -c1-22`,
      )
    );
  },
);

rwTest("rw mount: a big directory, names added and removed", async () => {
  const n = DEEP ? 100_000 : 2000;
  await withFixture(
    (f) =>
      sameAsKernel(
        f,
        `mkdir big; cd big
        python3 -c '
import os
for i in range(${n}): open("name-%06d-%s" % (i, "x" * (i % 40)), "w").close()
for i in range(0, ${n}, 3): os.unlink("name-%06d-%s" % (i, "x" * (i % 40)))
for i in range(1, ${n}, 7):
    if i % 3: os.rename("name-%06d-%s" % (i, "x" * (i % 40)), "r%d" % i)
print(len(os.listdir(".")))'`,
      ),
    { size: DEEP ? "256M" : "32M", args: DEEP ? ["-N", "120000"] : [] },
  );
});

/** One of the concurrent workers: its own tree, names of its own in a shared directory. */
const WORKER = `
import os, sys
me = int(sys.argv[1]); base = "w%d" % me
os.makedirs(base + "/sub")
for i in range(120):
    p = "%s/f%d" % (base, i)
    with open(p, "wb") as f:
        f.write(bytes([me]) * (i * 97 % 20000))
    if i % 5 == 0:
        os.link(p, "shared/%d-%d" % (me, i))
    if i % 4 == 0:
        os.rename(p, "%s/sub/r%d" % (base, i))
    elif i % 7 == 0:
        os.unlink(p)
    if i % 11 == 0:
        os.mkdir("%s/d%d" % (base, i))
        if i % 22 == 0:
            os.rmdir("%s/d%d" % (base, i))
for i in range(0, 120, 15):
    os.rename("shared/%d-%d" % (me, i), "shared/moved-%d-%d" % (me, i))
`;

rwTest("rw mount: four processes at once, each its own tree and one shared directory", async () => {
  // Interleaving changes nothing in the result: the same tree as the kernel's, whatever order
  // the requests came in (allocation, directory and rename updates under concurrency).
  await withFixture(async (f) => {
    await Deno.writeTextFile(`${f.dir}/worker.py`, WORKER);
    await sameAsKernel(
      f,
      `mkdir shared; for i in 1 2 3 4; do python3 ${f.dir}/worker.py $i & done; wait
      ls shared | wc -l`,
    );
  });
});

rwTest("rw mount: ENOSPC on a full image fails cleanly and loses nothing", async () => {
  await withFixture(
    async (f) => {
      await mountRw(f.img, f.mnt);
      const out = await workload(
        `seq 1 1000 > keep; sha256sum keep
        dd if=/dev/zero of=fill bs=64k 2>&1 | grep -o 'No space left on device' | head -1
        for i in $(seq 1 40); do seq 1 20000 > "more$i" 2>/dev/null || echo "more$i: ENOSPC"; done | head -1
        rm fill; seq 1 20000 > after; sha256sum keep after`,
        f.mnt,
      );
      const lines = out.trim().split("\n");
      assert.equal(lines[1], "No space left on device");
      assert.match(lines[2], /ENOSPC/);
      assert.equal(lines[0].split(" ")[0], lines[3].split(" ")[0], "keep unchanged");
      const full = await listing(f.mnt);
      await unmountAndCheck(f);
      assert.equal(await withKernelMount(f.img, (m) => listing(m), { readOnly: true }), full);
    },
    { size: "8M" },
  );
});

rwTest("rw mount: permissions as an ordinary user (allow_other, default_permissions)", async () => {
  await withFixture(async (f) => {
    await mountRw(f.img, f.mnt, "rw,allow_other");
    await workload("mkdir mine theirs; chown 65534:65534 mine; chmod 755 theirs", f.mnt);
    const as = (cmd: string) =>
      run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd], {
        cwd: f.mnt,
      });
    const ok = await as(
      "umask 022; echo hi > mine/file; mkdir mine/sub; ln -s file mine/l; stat -c '%u %g %a' mine/file",
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), "65534 65534 644");
    // Set-id bits: a writer without CAP_FSETID drops them on write, truncate and fallocate
    // (set-gid only with group execute), root keeps them, chown drops them — the kernel's
    // VFS rules, which ext4ts applies itself under HANDLE_KILLPRIV_V2 (outputs as kernel ext4).
    await workload(
      "touch mine/s mine/t mine/u; chown 65534:65534 mine/s mine/t mine/u; " +
        "chmod 6775 mine/s mine/u; chmod 2764 mine/t",
      f.mnt,
    );
    const setId = await as(
      "echo x >> mine/s; echo x >> mine/t; stat -c '%n %a' mine/s mine/t; " +
        "chmod 6775 mine/s; truncate -s 0 mine/s; stat -c '%n %a' mine/s; " +
        "chmod 6775 mine/s; fallocate -l 8192 mine/s; stat -c '%n %a' mine/s; " +
        "echo y >> mine/u; stat -c '%n %a' mine/u; chmod 6775 mine/s; " +
        // copy_file_range carries no flag: dropped for a caller other than root, as on ext4.
        `/usr/bin/python3 -c 'import os; a = os.open("mine/t", os.O_RDONLY); ` +
        `b = os.open("mine/s", os.O_WRONLY); print(os.copy_file_range(a, b, 2))'; ` +
        "stat -c '%n %a' mine/s",
    );
    assert.equal(setId.code, 0, setId.stderr);
    assert.equal(
      setId.stdout,
      "mine/s 775\nmine/t 2764\nmine/s 775\nmine/s 775\nmine/u 775\n2\nmine/s 775\n",
    );
    const rootKeeps = await workload(
      "chmod 6775 mine/u; echo root >> mine/u; stat -c '%n %a' mine/u; " +
        "chown 1:1 mine/u; stat -c '%n %a' mine/u",
      f.mnt,
    );
    assert.equal(rootKeeps, "mine/u 6775\nmine/u 775\n");
    const refused = await as("echo no > theirs/file");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Permission denied/);
    const chown = await as("chown 0 mine/file");
    assert.match(chown.stderr, /Operation not permitted/);
    // RENAME_WHITEOUT (overlayfs' own) is not supported: a clear EINVAL, nothing changed.
    const whiteout = await workload(
      `python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True)
print(l.renameat2(-100, b"theirs", -100, b"w", 4), ctypes.get_errno())'; ls`,
      f.mnt,
    );
    assert.equal(whiteout, "-1 22\nlost+found\nmine\ntheirs\n");
    await unmountAndCheck(f);
    const tree = await withKernelMount(f.img, (m) => listing(m, "--no-times"), { readOnly: true });
    assert.match(tree, /^\/mine\/file\tf\t644\t65534\t65534\t/m);
    assert.doesNotMatch(tree, /^\/theirs\/file/m);
  });
});

rwTest("rw mount: umount(8) then an immediate copy of the device: clean every time", async () => {
  const cycles = DEEP ? 100 : 8;
  await withFixture(async (f) => {
    for (let i = 0; i < cycles; i++) {
      await mountRw(f.img, f.mnt);
      await workload(
        `mkdir -p c${i}; seq 1 ${20_000 + i} > c${i}/data; cp c${i}/data c${i}/copy
        rm -rf c${i - 2}; echo ${i} >> log; ln -sf c${i}/data latest`,
        f.mnt,
      );
      const u = await run("umount", [f.mnt]);
      assert.equal(u.code, 0, u.stderr);
      // No sleep, no sync: what is in the image file now is what a pulled stick holds.
      const copy = `${f.dir}/copy.img`;
      await Deno.copyFile(f.img, copy);
      await fsckClean(copy);
      const seen = await withKernelMount(copy, async (m) => {
        const data = await Deno.readTextFile(`${m}/c${i}/data`);
        return [data.split("\n").length - 1, await Deno.readTextFile(`${m}/log`)] as const;
      }, { readOnly: true });
      assert.equal(seen[0], 20_000 + i, `cycle ${i}: the file is complete`);
      assert.equal(seen[1].trim().split("\n").length, i + 1);
      await Deno.remove(copy);
      assert.deepEqual(await loopsOf(f.img), [], "the loop device is gone when umount returns");
    }
  });
});

rwTest(
  "rw mount: a reused inode number gets a new generation; remount; norecovery refused",
  async () => {
    await withFixture(async (f) => {
      await mountRw(f.img, f.mnt);
      // A process stands in directory D; D is removed and E made: E reuses D's inode number.
      // The kernel still holds D's node id: the new generation makes that node stale (EIO),
      // and E is a clean new directory.
      const out = await workload(
        `python3 -c '
import errno, os
top = os.getcwd()
os.mkdir("D"); ino = os.stat("D").st_ino
os.chdir("D"); os.rmdir(top + "/D"); os.mkdir(top + "/E")
print("reused", os.stat(top + "/E").st_ino == ino)
for f in (lambda: os.stat("."), lambda: os.listdir("."), lambda: os.mkdir("x")):
    try: f(); print("ok")
    except OSError as e: print(errno.errorcode[e.errno])
os.chdir(top)
print(os.listdir("E"), os.stat("E").st_nlink)'`,
        f.mnt,
      );
      assert.equal(out, "reused True\nEIO\nEIO\nEIO\n[] 2\n");
      // remount,ro: the kernel refuses writes (the daemon stays as it is); remount,rw: allowed.
      await runOk("mount", ["-o", "remount,ro", f.mnt]);
      const refused = await run("bash", ["-c", "echo x > after"], { cwd: f.mnt });
      assert.match(refused.stderr, /Read-only file system/);
      await runOk("mount", ["-o", "remount,rw", f.mnt]);
      assert.equal(await workload("echo x > after; cat after", f.mnt), "x\n");
      await unmountAndCheck(f);
      // norecovery is for read-only mounts: refused with rw, before anything is mounted.
      const r = await runCli(["mount", "-o", "rw,norecovery", f.img, f.mnt]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, "ext4ts: norecovery (noload) is only for read-only mounts\n");
      assert.ok(!isMounted(f.mnt));
    });
  },
);

rwTest(
  "rw mount of a filesystem needing recovery replays the journal onto the device first",
  async () => {
    await withFixture(async (f) => {
      const kase = `${ROOT}tests/fixtures/journal_cases/32bit_nocsum_4k`;
      await Deno.writeFile(
        f.img,
        (await Deno.open(`${kase}/crash.img.gz`)).readable.pipeThrough(
          new DecompressionStream("gzip"),
        ),
      );
      const kernel = await Deno.readTextFile(`${kase}/crash.kr.tsv`);
      assert.match(await runOk("dumpe2fs", ["-h", f.img]), /needs_recovery/);
      await mountRw(f.img, f.mnt);
      assert.equal(await listing(f.mnt), kernel, "served as the kernel's replay left it");
      await unmountAndCheck(f);
      assert.doesNotMatch(await runOk("dumpe2fs", ["-h", f.img]), /needs_recovery/);
      assert.equal(await withKernelMount(f.img, (m) => listing(m), { readOnly: true }), kernel);
    });
  },
);

rwTest(
  "rw mount as an ordinary user: plain fuse, ext4ts umount waits until all is written",
  async () => {
    await withFixture(async (f) => {
      await Deno.chown(f.img, 65534, 65534);
      await Deno.chown(f.mnt, 65534, 65534);
      const nobody = await unprivileged(f.dir);
      await withOpenFuseDevice(async () => {
        const m = await nobody.cli(["mount", "-o", "rw", f.img, f.mnt]);
        assert.equal(m.code, 0, m.stderr);
        assert.equal(findMount(f.mnt)?.fsType, "fuse.ext4ts", "plain fuse without root");
        const w = await nobody.run("bash", [
          "-c",
          `cd ${f.mnt} && seq 1 100000 > data && mkdir d && cp data d/copy && sha256sum data`,
        ]);
        assert.equal(w.code, 0, w.stderr);
        const u = await nobody.cli(["umount", f.mnt]);
        assert.equal(u.code, 0, u.stderr);
        // No wait, no sync: the image is complete and clean when umount returns.
        await fsckClean(f.img);
        const seen = await withKernelMount(
          f.img,
          (mnt) => runOk("sha256sum", [`${mnt}/data`, `${mnt}/d/copy`]),
          { readOnly: true },
        );
        const sum = w.stdout.split(" ")[0];
        assert.equal(seen.split("\n").filter((l) => l.startsWith(sum)).length, 2);
      });
    }, { args: ["-E", "root_owner=65534:65534"] });
  },
);

rwTest(
  "rw backend: a device changed before the post-mount re-check is refused, nothing written",
  async () => {
    await withFixture(async (f) => {
      const dev = await losetup(f.img);
      try {
        const fs = await ext4Backend.open(dev, { ...defaultSettings(), readOnly: false }, () => {});
        const ctx = { uid: 0, gid: 0, pid: 0, signal: new AbortController().signal };
        try {
          // The filesystem changes state between the open and the re-check (another writer).
          await runOk("debugfs", ["-w", "-R", "ssv state 0", dev]);
          const changed = await Deno.readFile(f.img);
          const mkdir = fs.ops.writer!.mkdir(ctx, 1, new TextEncoder().encode("x"), {
            mode: 0o40755,
            umask: 0,
          });
          await assert.rejects(fs.verify!(dev), /changed while mounting \(state 1 → 0\)/);
          // A write that came in meanwhile fails; nothing reaches the device.
          await assert.rejects(mkdir, /not verified/);
          await fs.ops.destroy?.();
          assert.deepEqual(await Deno.readFile(f.img), changed, "not one byte written");
        } finally {
          await fs.ops.destroy?.();
        }
        // A mount undone before its re-check (serve's failure path): waiting writes fail at
        // once, so the unmount that waits for every request cannot hang on them.
        await runOk("debugfs", ["-w", "-R", "ssv state 1", dev]);
        const again = await ext4Backend.open(
          dev,
          { ...defaultSettings(), readOnly: false },
          () => {},
        );
        try {
          const waiting = again.ops.writer!.mkdir(ctx, 1, new TextEncoder().encode("y"), {
            mode: 0o40755,
            umask: 0,
          });
          again.abandon!(new Error("INIT never came"));
          await assert.rejects(waiting, /the mount was undone: INIT never came/);
        } finally {
          await again.ops.destroy?.();
        }
      } finally {
        detachLoop(dev, f.img);
      }
    });
  },
);

rwTest("rw mount: the hard-link limit (65000) is EMLINK, as the kernel's", async () => {
  await withFixture((f) =>
    sameAsKernel(
      f,
      `python3 -c '
import errno, os
open("f", "w").close()
for i in range(1, 65000): os.link("f", "l%d" % i)
try: os.link("f", "over"); print("linked")
except OSError as e: print(errno.errorcode[e.errno])
print(os.stat("f").st_nlink)'`,
    ), { args: ["-N", "1024"] });
}, { deep: true });

rwTest(
  "rw mount: errors=continue, remount-ro and the superblock's panic after a corruption",
  async () => {
    await withFixture(async (f) => {
      // A file whose extent root is destroyed: writing it finds the corruption (EUCLEAN).
      const src = `${f.dir}/src`;
      await Deno.mkdir(src);
      await Deno.writeTextFile(`${src}/f`, "hello\n");
      await runOk("mkfs.ext4", ["-qF", "-b", "4096", "-d", src, f.img, "32M"]);
      await runOk("debugfs", ["-w", "-R", "sif /f block[0] 0", f.img]);
      const pristine = await Deno.readFile(f.img);
      const after = async (options: string) => {
        await Deno.writeFile(f.img, pristine);
        await mountRw(f.img, f.mnt, options);
        const r = await run("bash", [
          "-c",
          "echo data >> f; echo write $?; mkdir x; echo mkdir $?; ls",
        ], { cwd: f.mnt });
        const u = await runCli(["umount", f.mnt]);
        assert.equal(u.code, 0, u.stderr);
        return r.stdout + r.stderr.replace(/^bash: line \d+: /gm, "");
      };
      const cont = await after("rw,errors=continue");
      assert.match(cont, /^write 1\nmkdir 0\nf\nlost\+found\nx\n/);
      assert.match(cont, /Structure needs cleaning/);
      // Recorded in the superblock as the kernel's ext4_error records it (a later rw mount
      // is then refused until e2fsck, as offline writers refuse it).
      const sb = await runOk("dumpe2fs", ["-h", f.img]);
      assert.match(sb, /^Filesystem state: +clean with errors$/m);
      assert.match(sb, /^FS Error count: +1$/m);
      assert.match(sb, /^Last error function: +write$/m);
      assert.match(sb, /^Last error inode #: +12$/m);
      const refused = await runCli(["mount", "-o", "rw", f.img, f.mnt]);
      assert.equal(refused.code, 5, refused.stderr);
      const ro = await after("rw,errors=remount-ro");
      assert.match(ro, /^write 1\nmkdir 1\nf\nlost\+found\n/);
      assert.match(ro, /mkdir: cannot create directory ‘x’: Read-only file system/);
      // Without errors=, the superblock's behaviour: panic aborts the connection.
      await Deno.writeFile(f.img, pristine);
      await runOk("tune2fs", ["-e", "panic", f.img]);
      await mountRw(f.img, f.mnt);
      const p = await run("bash", ["-c", "echo data >> f; echo write $?; mkdir x; echo mkdir $?"], {
        cwd: f.mnt,
      });
      assert.equal(p.stdout, "write 1\nmkdir 1\n");
      assert.match(
        p.stderr,
        /Transport endpoint is not connected|Software caused connection abort/,
      );
      const u = await runCli(["umount", f.mnt]);
      assert.equal(u.code, 0, u.stderr);
      assert.ok(!isMounted(f.mnt));
      assert.equal((await run("e2fsck", ["-fn", f.img])).code, 4, "the corruption is still there");
    });
  },
);

rwTest(
  "rw mount of a filesystem in use is refused (exit 8) before anything is written",
  async () => {
    await withFixture(async (f) => {
      const bytes = await Deno.readFile(f.img);
      // Mounted by the kernel (through a loop device of the image).
      await withKernelMount(f.img, async () => {
        const r = await runCli(["mount", "-o", "rw", f.img, f.mnt]);
        assert.equal(r.code, 8, r.stderr);
        assert.match(r.stderr, /^ext4ts: .*in use/);
        assert.ok(!isMounted(f.mnt));
      }, { readOnly: true });
      assert.deepEqual(await Deno.readFile(f.img), bytes, "not one byte written");
      // Served read-only by ext4ts: a read-write mount of it is refused too.
      const ro = await runCli(["mount", f.img, f.mnt]);
      assert.equal(ro.code, 0, ro.stderr);
      const other = await Deno.makeTempDir({ dir: f.dir });
      const r = await runCli(["mount", "-o", "rw", f.img, other]);
      assert.equal(r.code, 8, r.stderr);
      assert.ok(!isMounted(other));
      assert.equal((await runCli(["umount", f.mnt])).code, 0);
      assert.deepEqual(await Deno.readFile(f.img), bytes, "not one byte written");
      // And a block device the kernel has mounted.
      const dev = await losetup(f.img);
      const kmnt = await Deno.makeTempDir({ dir: f.dir });
      try {
        await runOk("mount", ["-o", "ro", dev, kmnt]);
        const b = await runCli(["mount", "-o", "rw", dev, f.mnt]);
        assert.equal(b.code, 8, b.stderr);
        assert.ok(!isMounted(f.mnt));
      } finally {
        await run("umount", [kmnt]);
        detachLoop(dev, f.img);
      }
      assert.deepEqual(await Deno.readFile(f.img), bytes, "not one byte written");
    });
  },
);

rwTest(
  "rw mount: the daemon killed (SIGKILL) mid-workload: the kernel and ext4ts replay the journal, fsynced data intact",
  async () => {
    // Each cycle: fsynced files (python's os.fsync through the mount: FSYNC commits the running
    // transaction), then more changes that are never synced, then SIGKILL. What the journal
    // holds is what survives: the synced files exactly, the rest old or new but consistent.
    const cycles = DEEP ? 20 : 3;
    await withFixture(async (f) => {
      for (let i = 0; i < cycles; i++) {
        await mountRw(f.img, f.mnt);
        await workload(
          `python3 - <<'PY'
import os
for k in range(5):
    p = "synced-${i}-%d" % k
    with open(p, "wb") as fh:
        fh.write(b"cycle ${i} file %d\\n" % k * (200 + k))
        fh.flush()
        os.fsync(fh.fileno())
PY
          mkdir -p unsynced-${i}; seq 1 5000 > unsynced-${i}/data; rm -f synced-${i - 1}-0`,
          f.mnt,
        );
        const pid = readState(f.mnt)!.pid;
        Deno.kill(pid, "SIGKILL");
        for (let w = 0; w < 600 && processAlive(pid); w++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.ok(!processAlive(pid), "the daemon is gone");
        const u = await runCli(["umount", f.mnt]);
        assert.equal(u.code, 0, `ext4ts umount after the kill: ${u.stderr}`);
        assert.deepEqual(await loopsOf(f.img), []);
        // The crash image: the journal holds the synced commits (needs_recovery) …
        const features = await runOk("dumpe2fs", ["-h", f.img]);
        assert.match(features, /^Filesystem features:.*needs_recovery/m, "a journal to replay");
        // … the kernel replays it at a read-write mount of a copy …
        const copy = `${f.dir}/crash.img`;
        await Deno.copyFile(f.img, copy);
        const kernelTree = await withKernelMount(copy, async (m) => {
          for (let c = 0; c <= i; c++) {
            for (let k = 0; k < 5; k++) {
              if (c < i && k === 0) continue; // removed in the next cycle (maybe not committed)
              const want = `cycle ${c} file ${k}\n`.repeat(200 + k);
              assert.equal(await Deno.readTextFile(`${m}/synced-${c}-${k}`), want);
            }
          }
          return await listing(m, "--no-times");
        });
        await fsckClean(copy);
        // … and ext4ts's replay gives the same tree, e2fsck clean.
        const ours = await runCli(["journal", "replay", f.img]);
        assert.equal(ours.code, 0, `ext4ts journal replay: ${ours.stderr}`);
        await fsckClean(f.img);
        const oursTree = await withKernelMount(
          f.img,
          (m) => listing(m, "--no-times"),
          { readOnly: true },
        );
        assert.equal(oursTree, kernelTree, "ext4ts's replay gives the kernel's tree");
        await Deno.remove(copy);
      }
    });
  },
);

rwTest(
  "rw mount: truncate, hole punch and rm of huge files on a small journal (bounded steps)",
  async () => {
    // 1 KiB blocks, 1024-block groups and a 1 MiB journal: freeing a few hundred MiB changes
    // more bitmaps and descriptors than one journal transaction takes; the mount frees them in
    // bounded steps (lib/ext4/long_ops.ts) instead of failing with ENOSPC.
    await withFixture(async (f) => {
      await mountRw(f.img, f.mnt);
      const out = await workload(
        `fallocate -l 300M big; fallocate -l 200M gone; fallocate -l 250M holey
        truncate -s 1000 big; rm gone; fallocate -p -o 4096 -l 240M holey
        stat -c '%n %s' big holey; ls`,
        f.mnt,
      );
      assert.equal(out, "big 1000\nholey 262144000\nbig\nholey\nlost+found\n");
      await unmountAndCheck(f);
    }, { size: "800M", mkfs: "mkfs.ext4", args: ["-b", "1024", "-g", "1024", "-J", "size=1"] });
  },
);

rwTest("rw mount: sync(1) (syncfs) commits the running transaction", async () => {
  // With a commit interval no test waits for, only the syncfs can have made the file durable.
  await withFixture(async (f) => {
    await mountRw(f.img, f.mnt, "rw,commit=3600");
    await workload("seq 1 3000 > synced; sync -f synced; seq 1 10 > unsynced", f.mnt);
    const pid = readState(f.mnt)!.pid;
    Deno.kill(pid, "SIGKILL");
    for (let w = 0; w < 600 && processAlive(pid); w++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const u = await runCli(["umount", f.mnt]);
    assert.equal(u.code, 0, u.stderr);
    const seen = await withKernelMount(f.img, async (m) => {
      const text = await Deno.readTextFile(`${m}/synced`);
      return text.split("\n").length - 1;
    });
    assert.equal(seen, 3000, "the file synced by syncfs survives the killed daemon");
    await fsckClean(f.img);
  });
});

rwTest(
  "rw mount: a write after a stat shows new times even within the coarse clock's tick, as the kernel's",
  async () => {
    // Kernel ext4 (multigrain timestamps, 6.13+) keeps a file's times within one 4 ms tick
    // only while nobody looked: after a stat, the next write stamps a new, later time. Writes
    // and stats here are far apart less than a tick, so many pairs fall within one.
    const script = `python3 - <<'PY'
import os
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
block = b"x" * 4096
same = 0
for i in range(200):
    os.pwrite(fd, block, (i % 16) * 4096)
    before = os.fstat(fd)
    os.pwrite(fd, block, ((i + 1) % 16) * 4096)
    after = os.fstat(fd)
    if (after.st_mtime_ns, after.st_ctime_ns) <= (before.st_mtime_ns, before.st_ctime_ns):
        same += 1
os.close(fd)
print("writes after a stat that left the times as they were:", same)
PY`;
    await withFixture((f) => sameAsKernel(f, script));
  },
);
