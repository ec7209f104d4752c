/**
 * ext4ts as mount(8)'s helper, through the real chain: `mount -t fuse.ext4ts|fuseblk.ext4ts`,
 * fstab lines (`mount -T FILE`), `offset=`, mount.fuse3 called directly, `umount(8)`, and the
 * daemon's warnings on the mount command's stderr.
 *
 * mount(8) runs helpers without PATH, so `ext4ts` must be on /bin/sh's default path: these tests
 * install a launcher of this checkout with scripts/install_mount_helper.sh
 * (/usr/local/sbin/ext4ts and /sbin/mount.fuseblk.ext4ts, symbolic links) and remove it after.
 * They refuse to run over someone else's /usr/local/sbin/ext4ts.
 */

import * as assert from "node:assert/strict";
import { findMount } from "../ffi/fuse/mountinfo.ts";
import { defaultLogFile, processAlive, readState } from "../ffi/fuse/mount_state.ts";
import { HELPER_SEARCH_PATH } from "../cli/mount_helper.ts";
import {
  detachLoop,
  detachLoopsOf,
  eventually,
  exclusiveOpenWorks,
  forceCleanup,
  FUSE_NEEDS,
  loopsOf,
  losetup,
} from "./fuse_test_util.ts";
import {
  makeImage,
  ROOT,
  run,
  runCli,
  runOk,
  testWith,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";

const NEEDS = [
  ...FUSE_NEEDS,
  "mount",
  "umount",
  "mount.fuse3",
  "mkfs.ext4",
  "debugfs",
  "python3",
  "kernel-ext4",
];
const INSTALL = `${ROOT}scripts/install_mount_helper.sh`;
/** A fixed place, so a run that was killed leaves a link the next run recognises as its own. */
const LAUNCHER = "/tmp/ext4ts-mount-helper-test/ext4ts";
const ON_PATH = "/usr/local/sbin/ext4ts";
const FUSEBLK_HELPER = "/sbin/mount.fuseblk.ext4ts";

function linkTarget(path: string): string | undefined {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return undefined;
  }
}

/** Installs the helper links to a launcher of this checkout for the time of `fn`. */
async function withHelper(fn: () => Promise<void>): Promise<void> {
  const theirs = linkTarget(ON_PATH);
  let exists = false;
  try {
    Deno.lstatSync(ON_PATH);
    exists = true;
  } catch { /* free */ }
  if (exists && theirs !== LAUNCHER) {
    throw new Error(`${ON_PATH} exists and is not this test's link (${theirs}): not replaced`);
  }
  const hadFuseblk = linkTarget(FUSEBLK_HELPER);
  await Deno.mkdir(LAUNCHER.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(
    LAUNCHER,
    `#!/bin/sh\nexec '${Deno.execPath()}' run --allow-all '${ROOT}cli/main.ts' "$@"\n`,
  );
  await Deno.chmod(LAUNCHER, 0o755);
  await runOk("sh", [INSTALL, LAUNCHER]);
  try {
    await fn();
  } finally {
    await runOk("sh", [INSTALL, "--uninstall", LAUNCHER]);
    if (hadFuseblk) await Deno.symlink(hadFuseblk, FUSEBLK_HELPER);
  }
}

/** Small tree for the listings. */
async function populate(m: string): Promise<void> {
  await Deno.writeTextFile(`${m}/hello.txt`, "hello, world\n");
  await Deno.mkdir(`${m}/dir/sub`, { recursive: true });
  await Deno.writeTextFile(`${m}/dir/sub/leaf`, "leaf\n");
  await Deno.writeFile(`${m}/dir/zeros`, new Uint8Array(200_000));
  await Deno.symlink("hello.txt", `${m}/link`);
  await Deno.chmod(`${m}/hello.txt`, 0o4755);
}

function listing(dir: string): Promise<string> {
  return runOk("python3", [TREE_LISTING, dir]);
}

async function kernelListing(img: string): Promise<string> {
  return await withKernelMount(img, listing, { readOnly: true, mountOptions: "noload" });
}

/** mountinfo's per-mount options of `mnt` as a set. */
function flagsOf(mnt: string): Set<string> {
  const m = findMount(mnt);
  assert.ok(m, `${mnt} is mounted`);
  return new Set(m.options.split(","));
}

/** umount(8), then: the daemon is gone and its state file removed. */
async function umount8(mnt: string): Promise<void> {
  const pid = readState(mnt)?.pid;
  const r = await run("umount", [mnt]);
  assert.equal(r.code, 0, `umount: ${r.stderr}`);
  assert.equal(findMount(mnt), undefined);
  assert.ok(pid, "the daemon recorded its state");
  await eventually(() => !processAlive(pid), 10_000, "the daemon to exit");
  await eventually(() => readState(mnt) === undefined, 10_000, "the state file to go");
}

/** Waits until no loop device is attached to `img` any more. */
async function loopsReleased(img: string): Promise<void> {
  for (let i = 0; (await loopsOf(img)).length > 0; i++) {
    if (i > 1000) assert.deepEqual(await loopsOf(img), [], "loop devices released");
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function withDir(fn: (dir: string, mnt: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-mounthelper-" });
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  try {
    await withHelper(() => fn(dir, mnt));
  } finally {
    await forceCleanup(mnt);
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.name.endsWith(".img")) {
        await detachLoopsOf(`${dir}/${entry.name}`);
      }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

testWith(
  "mount -t fuse.ext4ts IMAGE: ro, mount(8)'s generic options as mount flags, umount(8) frees it",
  NEEDS,
  () =>
    withDir(async (dir, mnt) => {
      const img = await makeImage(`${dir}/fs.img`, { size: "32M", populate });
      const expected = await kernelListing(img);

      const ro = await run("mount", ["-t", "fuse.ext4ts", img, mnt, "-o", "ro"]);
      assert.equal(ro.code, 0, ro.stderr);
      assert.doesNotMatch(ro.stderr, /WARNING/);
      const m = findMount(mnt)!;
      assert.equal(m.fsType, "fuseblk.ext4ts", "an image gets a loop device: fuseblk");
      assert.match(m.source, /^\/dev\/loop\d+$/);
      assert.ok(flagsOf(mnt).has("ro"));
      assert.equal(await listing(mnt), expected);
      await umount8(mnt);
      await loopsReleased(img);

      // mount(8) adds `rw` unless `ro` is given: a read-write mount, without a warning.
      const opts = "defaults,noatime,nosuid,nodev";
      const generic = await run("mount", ["-t", "fuse.ext4ts", img, mnt, "-o", opts]);
      assert.equal(generic.code, 0, generic.stderr);
      assert.doesNotMatch(generic.stderr, /WARNING/);
      for (const f of ["rw", "noatime", "nosuid", "nodev"]) assert.ok(flagsOf(mnt).has(f), f);
      assert.ok(!flagsOf(mnt).has("noexec"));
      assert.equal(await listing(mnt), expected);
      await umount8(mnt);

      // mount.fuse3 adds dev,suid unless nodev/nosuid were given (root mounts as mount(8) does).
      const more = "ro,noexec,strictatime,nodiratime";
      const other = await run("mount", ["-t", "fuse.ext4ts", img, mnt, "-o", more]);
      assert.equal(other.code, 0, other.stderr);
      const f = flagsOf(mnt);
      for (const x of ["ro", "noexec", "nodiratime"]) assert.ok(f.has(x), `${x} in ${[...f]}`);
      for (const x of ["nosuid", "nodev", "noatime", "relatime"]) {
        assert.ok(!f.has(x), `${x} not in ${[...f]}`);
      }
      await umount8(mnt);
      await loopsReleased(img);

      // An unknown option: the helper's one line and exit code 2, through mount(8); nothing left.
      const bad = await run("mount", ["-t", "fuse.ext4ts", img, mnt, "-o", "ro,bogus"]);
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr, "ext4ts: unknown mount option 'bogus'\n");
      assert.equal(findMount(mnt), undefined);
      assert.deepEqual(await loopsOf(img), []);
    }),
);

testWith(
  "mount -t fuse.ext4ts and -t fuseblk.ext4ts of a block device (loop): fuseblk, freed by umount(8)",
  NEEDS,
  () =>
    withDir(async (dir, mnt) => {
      const img = await makeImage(`${dir}/fs.img`, { size: "32M", populate });
      const dev = await losetup(img);
      try {
        for (const type of ["fuse.ext4ts", "fuseblk.ext4ts"]) {
          const r = await run("mount", ["-t", type, dev, mnt, "-o", "ro"]);
          assert.equal(r.code, 0, `${type}: ${r.stderr}`);
          const m = findMount(mnt)!;
          assert.equal(m.fsType, "fuseblk.ext4ts", type);
          assert.equal(m.source, dev);
          assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
          assert.equal(exclusiveOpenWorks(dev), false, "the kernel holds the device");
          await umount8(mnt);
          await eventually(() => exclusiveOpenWorks(dev), 10_000, `${dev} free`);
        }
      } finally {
        await forceCleanup(mnt);
        detachLoop(dev, img);
      }
    }),
);

testWith(
  "fstab lines of type fuse.ext4ts (nofail, _netdev, x-systemd.*, noauto, loop) with mount -T FILE",
  NEEDS,
  () =>
    withDir(async (dir, mnt) => {
      const img = await makeImage(`${dir}/fs.img`, { size: "32M", populate });
      const mnt2 = `${dir}/mnt2`;
      await Deno.mkdir(mnt2);
      const fstab = `${dir}/fstab`;
      await Deno.writeTextFile(
        fstab,
        "# ext4ts through mount.fuse3\n" +
          `${img} ${mnt} fuse.ext4ts defaults,nofail,_netdev,x-systemd.automount,` +
          "x-systemd.device-timeout=10s,x-systemd.requires=local-fs-pre.target 0 2\n" +
          `${img} ${mnt2} fuse.ext4ts noauto,ro,users,loop 0 0\n`,
      );
      try {
        const one = await run("mount", ["-T", fstab, mnt]);
        assert.equal(one.code, 0, one.stderr);
        assert.equal(findMount(mnt)?.fsType, "fuseblk.ext4ts");
        assert.equal(await Deno.readTextFile(`${mnt}/dir/sub/leaf`), "leaf\n");
        await umount8(mnt);
        await loopsReleased(img);

        // `mount -a` mounts the line without noauto and leaves the noauto one alone.
        const all = await run("mount", ["-a", "-T", fstab]);
        assert.equal(all.code, 0, all.stderr);
        assert.equal(findMount(mnt)?.fsType, "fuseblk.ext4ts");
        assert.equal(findMount(mnt2), undefined, "noauto");
        await umount8(mnt);
        await loopsReleased(img);

        // The noauto line by name: `users` means noexec,nosuid,nodev (mount(8) adds them);
        // `loop` makes mount(8) attach the loop device itself and hand ext4ts /dev/loopN.
        const two = await run("mount", ["-T", fstab, mnt2]);
        assert.equal(two.code, 0, two.stderr);
        assert.doesNotMatch(two.stderr, /WARNING/);
        const loop = findMount(mnt2)!.source;
        assert.match(loop, /^\/dev\/loop\d+$/);
        assert.deepEqual(await loopsOf(img), [loop], "mount(8)'s loop device, no second one");
        const f = flagsOf(mnt2);
        for (const x of ["ro", "noexec", "nosuid", "nodev"]) assert.ok(f.has(x), `${x}`);
        await umount8(mnt2);
        await loopsReleased(img);
      } finally {
        await forceCleanup(mnt2);
      }
    }),
);

testWith(
  "offset=1M: a filesystem at 1 MiB of a disk image, through mount(8) and mount.fuse3 directly",
  NEEDS,
  () =>
    withDir(async (dir, mnt) => {
      const part = await makeImage(`${dir}/part.img`, { size: "32M", populate });
      const expected = await kernelListing(part);
      const disk = `${dir}/disk.img`;
      const bytes = await Deno.readFile(part);
      const whole = new Uint8Array((1 << 20) + bytes.length);
      whole.set(bytes, 1 << 20);
      await Deno.writeFile(disk, whole);

      // mount(8) attaches a loop device at the offset itself, and calls the helper with it.
      const r = await run("mount", ["-t", "fuse.ext4ts", disk, mnt, "-o", "ro,offset=1M"]);
      assert.equal(r.code, 0, r.stderr);
      const loop = findMount(mnt)!.source;
      assert.match(loop, /^\/dev\/loop\d+$/);
      assert.equal(
        Deno.readTextFileSync(`/sys/block/${loop.slice(5)}/loop/offset`).trim(),
        String(1 << 20),
      );
      assert.equal(await listing(mnt), expected);
      await umount8(mnt);
      await loopsReleased(disk);

      // mount.fuse3 called directly passes offset= on: ext4ts serves the image from there.
      const direct = await run("mount.fuse3", [`ext4ts#${disk}`, mnt, "-o", "ro,offset=1M"], {
        env: { PATH: HELPER_SEARCH_PATH.join(":") },
      });
      assert.equal(direct.code, 0, direct.stderr);
      assert.equal(findMount(mnt)?.fsType, "fuseblk.ext4ts");
      assert.equal(await listing(mnt), expected);
      await umount8(mnt);
      await loopsReleased(disk);
    }),
);

testWith(
  "the daemon's warnings (norecovery, IO flusher) reach the mount command's stderr and the log",
  NEEDS,
  () =>
    withDir(async (dir, mnt) => {
      const img = await makeImage(`${dir}/fs.img`, { size: "32M", populate });
      await runOk("debugfs", ["-w", "-R", "feature needs_recovery", img]);
      const r = await run("mount", ["-t", "fuse.ext4ts", img, mnt, "-o", "ro,norecovery"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.split("\n").filter((l) => l);
      const norecovery = lines.filter((l) => /mounting without journal recovery/.test(l));
      assert.equal(norecovery.length, 1, r.stderr);
      assert.match(norecovery[0], /^ext4ts: warning: \/dev\/loop\d+: mounting without journal/);
      for (const l of lines) assert.match(l, /^ext4ts: warning: /, "only warnings, one line each");
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      await umount8(mnt);
      let hasSystemLog = false;
      try {
        Deno.statSync("/dev/log");
        hasSystemLog = true;
      } catch { /* none: the daemon logs beside its state file */ }
      if (!hasSystemLog) {
        const log = await Deno.readTextFile(defaultLogFile(Deno.realPathSync(mnt)));
        for (const l of lines) assert.ok(log.includes(l.replace(/^ext4ts: /, "")), l);
        assert.match(log, /mounted .* \(read-only\)/);
        assert.match(log, /session ended: destroyed/);
      }
    }),
);

testWith(
  "generic options through fusermount3 (the unprivileged path): those it knows reach the kernel",
  [...NEEDS, "fusermount3"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-mounthelper-" });
    const mnt = `${dir}/mnt`;
    await Deno.mkdir(mnt);
    try {
      const img = await makeImage(`${dir}/fs.img`, { size: "32M", populate });
      const opts = "ro,noexec,noatime,nodiratime,dev,suid";
      const r = await runCli(["mount", img, mnt, "-o", opts], { env: { EXT4TS_FUSERMOUNT: "1" } });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(findMount(mnt)?.fsType, "fuse.ext4ts");
      const f = flagsOf(mnt);
      // fusermount3 mounts nosuid,nodev whatever is asked, and knows no nodiratime.
      for (const x of ["ro", "noexec", "noatime", "nosuid", "nodev"]) assert.ok(f.has(x), x);
      assert.ok(!f.has("nodiratime"));
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      const u = await runCli(["umount", mnt]);
      assert.equal(u.code, 0, u.stderr);
      assert.equal(findMount(mnt), undefined);
    } finally {
      await forceCleanup(mnt);
      await detachLoopsOf(`${dir}/fs.img`);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);
