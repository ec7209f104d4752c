/**
 * fstrim(8) on `ext4ts mount -o rw` (FITRIM through FUSE, lib/ext4/trim.ts), next to the
 * kernel's ext4 doing the same on an identical image. ext4ts mounts the image file through a
 * loop device it attaches (fuseblk), so its discards are BLKDISCARD on the loop device, which
 * punches holes in the image: the image's allocated size shrinks once a big file is deleted
 * and the free space trimmed. The bytes fstrim reports follow the kernel's rule — every free
 * extent of at least the device's discard granularity (one block here) — so ext4ts, which has
 * no preallocations, reports all the free space (statfs f_bfree); the kernel reports a little
 * less (its preallocated space stays out of the trim), within 10%. A second fstrim reports 0 on
 * both: trimmed groups are remembered (the kernel's WAS_TRIMMED) until blocks are freed there
 * or a smaller minimum is asked; on the same image, mounted afresh by each, every fstrim of a
 * sequence (minimums, a file deleted) reports the kernel's number exactly. Live files keep
 * their contents, the kernel reads the same tree after `ext4ts umount`, `e2fsck -fn` is clean. A read-only mount answers EROFS; a user not root
 * EPERM, a device that cannot discard EOPNOTSUPP, a range past the end or a minimum over a
 * group EINVAL, with fstrim's messages the same as on the kernel's mount.
 */

import assert from "node:assert/strict";
import {
  assertFsckClean,
  makeImage,
  run,
  runCli,
  runOk,
  tempDir,
  testWith,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";
import {
  detachLoop,
  detachLoopsOf,
  forceCleanup,
  FUSE_NEEDS,
  isMounted,
  losetup,
} from "./fuse_test_util.ts";

const NEEDS = [...FUSE_NEEDS, "mkfs.ext4", "e2fsck", "fstrim", "kernel-ext4", "python3"];
const BIG_MIB = 24;

/** A fresh 4 KiB-block image `fs.img` of `size` and an empty `mnt` in `dir`. */
async function imageAndMountPoint(dir: string, size: string) {
  const img = `${dir}/fs.img`;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  await makeImage(img, { size, args: ["-b", "4096"] });
  return { img, mnt };
}

/** Runs a bash script in `cwd`; returns its stdout (fails the test when it fails). */
async function sh(script: string, cwd: string): Promise<string> {
  const r = await run("bash", ["-c", `set -e; ${script}`], { cwd });
  assert.equal(r.code, 0, `${script}: ${r.stderr}`);
  return r.stdout;
}

/** fstrim's outcome on `mnt`, the mount point's path taken out of its messages. */
async function fstrim(mnt: string, ...args: string[]): Promise<{ code: number; text: string }> {
  const r = await run("fstrim", [...args, mnt]);
  return { code: r.code, text: (r.stdout + r.stderr).replaceAll(mnt, "MNT").trim() };
}

/** The bytes `fstrim -v` says it trimmed. */
function trimmedBytes(text: string): number {
  const m = /\((\d+) bytes\) trimmed/.exec(text);
  assert.ok(m, `fstrim -v said: ${text}`);
  return Number(m[1]);
}

/** Free bytes as statfs reports them (f_bfree × f_bsize). */
async function freeBytes(dir: string): Promise<number> {
  const [free, bsize] = (await sh("stat -f -c '%f %S' .", dir)).trim().split(" ").map(Number);
  return free * bsize;
}

/** The oracle's listing of a tree (tests/corpus/tools/tree_listing.py). */
function listing(dir: string, ...flags: string[]): Promise<string> {
  return runOk("python3", [TREE_LISTING, dir, ...flags]);
}

/** Allocated bytes of an image file on the host (st_blocks). */
function allocated(img: string): number {
  return Deno.statSync(img).blocks! * 512;
}

const WRITE = `seq 1 300000 > keep; mkdir -p d; for i in $(seq 1 40); do seq $i 9000 > d/f$i; done
  yes 0123456789abcdef | head -c ${BIG_MIB}M > big; sync`;
const DELETE = "rm big d/f1*; sync";
const SUMS = "sha256sum keep d/*";

/**
 * The workload on a mount: write, delete, trim; returns what was measured on the way (the
 * image's allocated bytes come from `img` when given).
 */
async function trimWorkload(mnt: string, img?: string) {
  await sh(WRITE, mnt);
  const allocatedBefore = img ? allocated(img) : 0;
  await sh(DELETE, mnt);
  const free = await freeBytes(mnt);
  const first = await fstrim(mnt, "-v");
  assert.equal(first.code, 0, first.text);
  const allocatedAfter = img ? allocated(img) : 0;
  const second = await fstrim(mnt, "-v");
  assert.equal(second.code, 0, second.text);
  return {
    free,
    trimmed: trimmedBytes(first.text),
    again: trimmedBytes(second.text),
    allocatedBefore,
    allocatedAfter,
    pastEnd: await fstrim(mnt, "-o", "1G"),
    overGroup: await fstrim(mnt, "-m", "1G"),
    sums: await sh(SUMS, mnt),
    tree: await listing(mnt, "--no-times", "--no-ino"),
    full: await listing(mnt),
  };
}

testWith(
  "fstrim on a rw mount: the image shrinks, the kernel's rule and errors, data intact",
  NEEDS,
  async () => {
    await using dir = await tempDir("ext4ts-fitrim-");
    const { img, mnt } = await imageAndMountPoint(dir.path, "64M");
    const copy = `${dir.path}/kernel.img`;
    await Deno.copyFile(img, copy);
    const kernel = await withKernelMount(copy, (m) => trimWorkload(m));
    try {
      const m = await runCli(["mount", "-o", "rw", img, mnt]);
      assert.equal(m.code, 0, `ext4ts mount -o rw: ${m.stderr}`);
      const ours = await trimWorkload(mnt, img);
      const u = await runCli(["umount", mnt]);
      assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);

      // The deleted file's blocks went back to the image's filesystem.
      const freed = ours.allocatedBefore - ours.allocatedAfter;
      assert.ok(freed >= BIG_MIB << 20, `the image shrank by ${freed} bytes only`);
      // Every free block was discarded (the loop device's granularity is one 4 KiB block). The
      // kernel keeps its preallocations (512 blocks per locality group for small files, the
      // rest of a big file's) out of the trim although statfs counts them free: a little less.
      assert.equal(ours.trimmed, ours.free);
      assert.ok(kernel.trimmed <= kernel.free);
      assert.ok(
        Math.abs(ours.trimmed - kernel.trimmed) <= kernel.trimmed / 10,
        `ext4ts trimmed ${ours.trimmed} bytes, the kernel ${kernel.trimmed}`,
      );
      // Both remember the groups they trimmed: nothing was freed since, nothing to report.
      assert.equal(ours.again, 0);
      assert.equal(kernel.again, 0);
      // Bad ranges: the same errors (and messages) as on the kernel's mount.
      assert.deepEqual(ours.pastEnd, kernel.pastEnd);
      assert.equal(ours.pastEnd.code, 1);
      assert.match(ours.pastEnd.text, /Invalid argument/);
      assert.deepEqual(ours.overGroup, kernel.overGroup);
      // The contents and the tree are the kernel's, through the mount and on the image after.
      assert.equal(ours.sums, kernel.sums);
      assert.equal(ours.tree, kernel.tree);
      const after = await withKernelMount(img, async (k) => ({
        sums: await sh(SUMS, k),
        full: await listing(k),
      }), { readOnly: true });
      assert.equal(after.sums, ours.sums);
      assert.equal(after.full, ours.full, "the kernel reads the image as the mount showed it");
      await assertFsckClean(img);
    } finally {
      if (isMounted(mnt)) await forceCleanup(mnt);
      await detachLoopsOf(img);
    }
  },
);

/** Per group, the free block count and free extents (as [first, count]) dumpe2fs lists. */
async function groupsOf(img: string): Promise<{ free: number; extents: [number, number][] }[]> {
  const groups: { free: number; extents: [number, number][] }[] = [];
  for (const line of (await runOk("dumpe2fs", [img])).split("\n")) {
    const count = /^\s+(\d+) free blocks,/.exec(line);
    if (count) groups.push({ free: Number(count[1]), extents: [] });
    const m = /^\s+Free blocks: (.+)$/.exec(line);
    if (!m || groups.length === 0) continue;
    for (const part of m[1].split(",")) {
      const [a, b] = part.trim().split("-").map(Number);
      groups.at(-1)!.extents.push([a, (b ?? a) - a + 1]);
    }
  }
  return groups;
}

/**
 * The fstrim sequence run on a fresh mount of the same image by the kernel and by ext4ts; the
 * bytes each step reports. No allocation happens on the way (the kernel then holds no
 * preallocations), so the kernel's numbers are exact references.
 */
const SEQUENCE: { label: string; before?: string; args: string[] }[] = [
  { label: "minimum 4 MiB", args: ["-m", "4M"] },
  { label: "minimum 4 MiB again", args: ["-m", "4M"] },
  { label: "a smaller minimum", args: [] },
  { label: "again", args: [] },
  { label: "after rm keep", before: "rm keep; sync", args: [] },
  { label: "again", args: [] },
  { label: "a larger minimum", args: ["-m", "4M"] },
];

async function trimSequence(mnt: string): Promise<number[]> {
  const out: number[] = [];
  for (const step of SEQUENCE) {
    if (step.before) await sh(step.before, mnt);
    const r = await fstrim(mnt, "-v", ...step.args);
    assert.equal(r.code, 0, r.text);
    out.push(trimmedBytes(r.text));
  }
  return out;
}

testWith(
  "fstrim remembers trimmed groups as the kernel does: the same numbers, step by step",
  NEEDS,
  async () => {
    await using dir = await tempDir("ext4ts-fitrim-");
    const img = `${dir.path}/fs.img`;
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    // Four groups of 8192 4 KiB blocks, written by the kernel.
    await makeImage(img, {
      size: "128M",
      args: ["-b", "4096", "-g", "8192"],
      populate: async (m) => {
        await sh(WRITE, m);
      },
    });
    const bs = 4096;
    const extents = (await runOk("debugfs", ["-R", "ex /keep", img])).trim().split("\n").slice(1);
    assert.equal(extents.length, 1, "keep is one extent");
    // "Level Entries Logical Physical Length": the physical range is the second "a - b".
    const phys = /\d+\s*-\s*\d+\s+(\d+)\s*-\s*(\d+)/.exec(extents[0]);
    assert.ok(phys, extents[0]);
    const keepGroup = Math.floor(Number(phys[1]) / 8192);
    assert.equal(Math.floor(Number(phys[2]) / 8192), keepGroup, "keep lies in one group");
    const before = await groupsOf(img);
    assert.equal(before.length, 4);
    const copy = `${dir.path}/kernel.img`;
    await Deno.copyFile(img, copy);
    const kernel = await withKernelMount(copy, (m) => trimSequence(m));
    let ours: number[];
    try {
      const m = await runCli(["mount", "-o", "rw", img, mnt]);
      assert.equal(m.code, 0, `ext4ts mount -o rw: ${m.stderr}`);
      ours = await trimSequence(mnt);
      const u = await runCli(["umount", mnt]);
      assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);
    } finally {
      if (isMounted(mnt)) await forceCleanup(mnt);
      await detachLoopsOf(img);
    }
    await assertFsckClean(img);
    await assertFsckClean(copy);
    // Side by side: every step reports the kernel's number.
    assert.deepEqual(ours, kernel);
    // And the rule they follow (the discard granularity of the loop devices is one block).
    const after = await groupsOf(img);
    const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0) * bs;
    const runsOf = (gs: typeof before, min: number) =>
      sum(gs.flatMap((g) => g.extents.map(([, n]) => n).filter((n) => n >= min)));
    const allFree = sum(before.map((g) => g.free));
    assert.deepEqual(ours, [
      runsOf(before, 1024), // runs of 4 MiB and more, every group marked
      0, // the same minimum: every group skipped
      allFree, // a smaller minimum: every group again, every run
      0,
      sum([after[keepGroup].free]), // keep's blocks freed: its group again, only its group
      0,
      0, // a larger minimum than the last: skipped
    ]);
    assert.ok(after[keepGroup].free - before[keepGroup].free >= 486, "keep's blocks are free");
    assert.ok(runsOf(before, 1024) < allFree, "the 4 MiB minimum left runs out");
  },
);

testWith(
  "fstrim: EROFS on a read-only mount, EPERM for a user, EOPNOTSUPP without discard (as the kernel)",
  [...NEEDS, "setpriv"],
  async () => {
    await using dir = await tempDir("ext4ts-fitrim-");
    const { img, mnt } = await imageAndMountPoint(dir.path, "32M");
    const ram = `${dir.path}/ram`;
    await Deno.mkdir(ram);
    let loop: string | undefined;
    let ramMounted = false;
    try {
      // Read-only (the default): the device is open read-only.
      const m = await runCli(["mount", img, mnt]);
      assert.equal(m.code, 0, `ext4ts mount: ${m.stderr}`);
      const ro = await fstrim(mnt, "-v");
      assert.equal(ro.code, 1);
      assert.match(ro.text, /Read-only file system/);
      assert.equal((await runCli(["umount", mnt])).code, 0);

      // Not root: EPERM (the kernel asks for CAP_SYS_ADMIN), the same message as the kernel's.
      await Deno.chmod(dir.path, 0o755);
      const asNobody = async (at: string) => {
        const r = await run("setpriv", [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "fstrim",
          at,
        ]);
        return { code: r.code, text: (r.stdout + r.stderr).replaceAll(at, "MNT").trim() };
      };
      const kernelPerm = await withKernelMount(img, (k) => asNobody(k));
      assert.equal(kernelPerm.code, 1);
      assert.match(kernelPerm.text, /Operation not permitted/);
      const rwm = await runCli(["mount", "-o", "rw,allow_other", img, mnt]);
      assert.equal(rwm.code, 0, `ext4ts mount -o rw,allow_other: ${rwm.stderr}`);
      assert.deepEqual(await asNobody(mnt), kernelPerm);
      assert.equal((await runCli(["umount", mnt])).code, 0);

      // A loop device over a file on ramfs, which has no fallocate: it cannot discard
      // (discard_max_bytes 0). The kernel's mount and ext4ts's both refuse.
      await runOk("mount", ["-t", "ramfs", "ramfs", ram]);
      ramMounted = true;
      await Deno.copyFile(img, `${ram}/fs.img`);
      loop = await losetup(`${ram}/fs.img`);
      const name = loop.replace("/dev/", "");
      assert.equal(Deno.readTextFileSync(`/sys/block/${name}/queue/discard_max_bytes`).trim(), "0");
      await runOk("mount", ["-t", "ext4", loop, mnt]);
      let kernel;
      try {
        kernel = await fstrim(mnt, "-v");
      } finally {
        await runOk("umount", [mnt]);
      }
      assert.equal(kernel.code, 1);
      assert.match(kernel.text, /not supported/);
      const rw = await runCli(["mount", "-o", "rw", loop, mnt]);
      assert.equal(rw.code, 0, `ext4ts mount -o rw ${loop}: ${rw.stderr}`);
      assert.deepEqual(await fstrim(mnt, "-v"), kernel);
      assert.equal((await runCli(["umount", mnt])).code, 0);
      await assertFsckClean(loop);
    } finally {
      if (isMounted(mnt)) await forceCleanup(mnt);
      if (loop) detachLoop(loop, `${ram}/fs.img`);
      await detachLoopsOf(img);
      if (ramMounted) await run("umount", ["-l", ram]);
    }
  },
);
