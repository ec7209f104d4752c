/**
 * `ext4ts mount` / `ext4ts umount` end to end, with the in-memory filesystem behind the
 * same command code (tests/fuse_memfs_daemon.ts) so the machinery is tested without the
 * ext4 reader: the background daemon and its readiness handshake, fuseblk on a loop device,
 * image files through an auto-attached loop device, the umount that waits, 50 cycles with an
 * immediate O_EXCL open, a slow DESTROY, SIGKILL and SIGTERM of the daemon, a loop device
 * detached under the mount.
 */

import assert from "node:assert/strict";
import { findMount } from "../ffi/fuse/mountinfo.ts";
import { processAlive, readState } from "../ffi/fuse/mount_state.ts";
import { ROOT, run, runCli, runOk, testWith } from "./helpers.ts";
import {
  daemonPid,
  detachLoop,
  detachLoopsOf,
  eventually,
  exclusiveOpenWorks,
  forceCleanup,
  FUSE_NEEDS,
  isMounted,
  loopsOf,
  losetup,
  memMount,
  umount,
  unprivileged,
  withOpenFuseDevice,
} from "./fuse_test_util.ts";

interface Fixture {
  dir: string;
  img: string;
  dev: string;
  mnt: string;
}

async function withFixture(fn: (f: Fixture) => Promise<void>, attach = true): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-fusemount-" });
  const img = `${dir}/dev.img`;
  await Deno.writeFile(img, new Uint8Array(0));
  await Deno.truncate(img, 8 << 20);
  const dev = attach ? await losetup(img) : "";
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  try {
    await fn({ dir, img, dev, mnt });
  } finally {
    const pid = daemonPid(mnt);
    await forceCleanup(mnt);
    if (pid && processAlive(pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    if (dev) detachLoop(dev, img);
    await detachLoopsOf(img);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function mountOk(device: string, mnt: string, extra: string[] = [], env = {}) {
  const r = await memMount(device, mnt, extra, env);
  assert.equal(r.code, 0, `mount failed: ${r.stderr}`);
  assert.ok(isMounted(mnt), "mounted when the command returns");
}

testWith(
  "ext4ts mount: background daemon, state file, umount waits, device free",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt, dir }) => {
      await mountOk(dev, mnt, ["--log", `${dir}/daemon.log`]);
      const m = findMount(mnt)!;
      assert.equal(m.fsType, "fuseblk.ext4ts");
      assert.equal(m.source, dev);
      const state = readState(mnt)!;
      assert.equal(state.state, "mounted");
      assert.equal(state.device, dev);
      assert.ok(processAlive(state.pid));
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      assert.equal(exclusiveOpenWorks(dev), false);
      const u = await umount(mnt);
      assert.equal(u.code, 0, u.stderr);
      assert.equal(isMounted(mnt), false);
      assert.equal(processAlive(state.pid, state.startTime), false, "daemon gone");
      assert.equal(exclusiveOpenWorks(dev), true, "device free when umount returns");
      assert.equal(readState(mnt), undefined, "state file removed");
      const log = await Deno.readTextFile(`${dir}/daemon.log`);
      assert.match(log, /mounted .* \(read-only\)/);
      assert.match(log, /session ended: destroyed/);
    });
  },
);

testWith(
  "ext4ts mount: errors come back from the daemon with their exit code",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt, dir }) => {
      const bad = await memMount(dev, mnt, ["-o", "frobnicate"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /unknown mount option 'frobnicate'/);
      const nodir = await memMount(dev, `${dir}/nope`);
      assert.equal(nodir.code, 1);
      assert.match(nodir.stderr, /mount point does not exist/);
      const nodev = await memMount(`${dir}/missing.img`, mnt);
      assert.notEqual(nodev.code, 0);
      assert.match(nodev.stderr, /missing\.img/);
      // Already mounted: the second mount is refused, the first keeps working.
      await mountOk(dev, mnt);
      const again = await memMount(dev, mnt);
      assert.equal(again.code, 8);
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      assert.equal((await umount(mnt)).code, 0);
      const notMounted = await umount(mnt);
      assert.equal(notMounted.code, 1);
      assert.match(notMounted.stderr, /not mounted/);
      assert.equal((await runCli(["umount", "/"])).code, 2, "refuses a mount that is not ours");
    });
  },
);

testWith(
  "ext4ts mount: an image file gets an autoclear loop device, released on umount",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ img, mnt }) => {
      await mountOk(img, mnt);
      const m = findMount(mnt)!;
      assert.match(m.source, /^\/dev\/loop\d+$/);
      assert.deepEqual(await loopsOf(img), [m.source]);
      assert.equal(readState(mnt)!.image, img);
      assert.equal(await Deno.readTextFile(`${mnt}/link`), "hello, world\n");
      const u = await umount(mnt);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(await loopsOf(img), [], "loop device detached when umount returns");
    }, false);
  },
);

testWith(
  "ext4ts mount: noblkdev gives a plain fuse mount; umount still waits",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt }) => {
      await mountOk(dev, mnt, ["-o", "noblkdev"]);
      assert.equal(findMount(mnt)!.fsType, "fuse.ext4ts");
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      const pid = readState(mnt)!.pid;
      assert.equal((await umount(mnt)).code, 0);
      assert.equal(processAlive(pid), false);
      assert.equal(exclusiveOpenWorks(dev), true);
    });
  },
);

testWith(
  "ext4ts umount: 50 cycles (ext4, and the in-memory filesystem with a slow DESTROY), each followed by an immediate O_EXCL open",
  [...FUSE_NEEDS, "mkfs.ext4"],
  async () => {
    await withFixture(async ({ dev, mnt, dir }) => {
      await Deno.mkdir(`${dir}/src`);
      await Deno.writeTextFile(`${dir}/src/data`, "ext4 data\n");
      await runOk("mkfs.ext4", ["-q", "-F", "-d", `${dir}/src`, dev]);
      for (let i = 0; i < 50; i++) {
        // Every tenth cycle: a DESTROY that takes 300 ms, which umount must wait for.
        const slow = i % 10 === 9;
        let expected: string;
        if (slow) {
          await mountOk(dev, mnt, [], { EXT4TS_TEST_DESTROY_DELAY_MS: "300" });
          const r = await run("cat", [`${mnt}/dir/f${String(i).padStart(4, "0")}`]);
          expected = `file ${i}\n`;
          assert.equal(r.stdout, expected);
        } else {
          const m = await runCli(["mount", dev, mnt]);
          assert.equal(m.code, 0, `cycle ${i}: ${m.stderr}`);
          assert.equal((await run("cat", [`${mnt}/data`])).stdout, "ext4 data\n");
        }
        const pid = readState(mnt)!.pid;
        const t0 = performance.now();
        const u = await umount(mnt);
        assert.equal(u.code, 0, `cycle ${i}: ${u.stderr}`);
        if (slow) assert.ok(performance.now() - t0 >= 280, `cycle ${i}: DESTROY not waited for`);
        assert.equal(processAlive(pid), false, `cycle ${i}: daemon still running after umount`);
        assert.equal(exclusiveOpenWorks(dev), true, `cycle ${i}: device still busy after umount`);
      }
    });
  },
);

testWith("ext4ts umount: waits for a slow DESTROY", FUSE_NEEDS, async () => {
  await withFixture(async ({ dev, mnt }) => {
    await mountOk(dev, mnt, [], { EXT4TS_TEST_DESTROY_DELAY_MS: "1500" });
    const pid = readState(mnt)!.pid;
    await run("cat", [`${mnt}/hello.txt`]);
    const t0 = performance.now();
    const u = await umount(mnt);
    const took = performance.now() - t0;
    assert.equal(u.code, 0, u.stderr);
    assert.ok(took >= 1400, `umount returned after ${took} ms`);
    assert.equal(processAlive(pid), false);
    assert.equal(exclusiveOpenWorks(dev), true);
  });
});

testWith(
  "ext4ts umount: a too-short --timeout aborts the connection and exits 10",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt }) => {
      await mountOk(dev, mnt, [], { EXT4TS_TEST_DESTROY_DELAY_MS: "6000" });
      const pid = readState(mnt)!.pid;
      const t0 = performance.now();
      const u = await umount(mnt, 1);
      assert.equal(u.code, 10, u.stderr);
      assert.match(u.stderr, /aborted/);
      assert.ok(performance.now() - t0 < 10_000);
      assert.equal(isMounted(mnt), false);
      await eventually(() => !processAlive(pid), 30_000, "daemon exit");
      await eventually(() => exclusiveOpenWorks(dev), 5_000, "device free");
    });
  },
);

testWith("ext4ts umount: recovers after SIGKILL of the daemon", FUSE_NEEDS, async () => {
  await withFixture(async ({ dev, mnt }) => {
    await mountOk(dev, mnt);
    const pid = readState(mnt)!.pid;
    Deno.kill(pid, "SIGKILL");
    await eventually(() => !processAlive(pid), 10_000, "daemon death");
    let r = await run("stat", [mnt]);
    for (let i = 0; i < 100 && r.code === 0; i++) r = await run("stat", [mnt]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Transport endpoint is not connected/);
    const u = await umount(mnt);
    assert.equal(u.code, 0, u.stderr);
    assert.equal(isMounted(mnt), false);
    assert.equal(exclusiveOpenWorks(dev), true);
    assert.equal(readState(mnt), undefined);
  });
});

testWith("ext4ts mount: SIGTERM makes the daemon unmount itself and exit", FUSE_NEEDS, async () => {
  await withFixture(async ({ dev, mnt }) => {
    await mountOk(dev, mnt);
    const pid = readState(mnt)!.pid;
    Deno.kill(pid, "SIGTERM");
    await eventually(() => !processAlive(pid), 10_000, "daemon exit");
    assert.equal(isMounted(mnt), false);
    assert.equal(exclusiveOpenWorks(dev), true);
    // Nothing left to do for umount, which says so.
    assert.equal((await umount(mnt)).code, 1);
  });
});

testWith(
  "ext4ts mount: SIGTERM with a file open detaches lazily; DESTROY follows the close",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt }) => {
      await mountOk(dev, mnt);
      const pid = readState(mnt)!.pid;
      const holder = new Deno.Command("sh", {
        args: ["-c", `exec 3<${mnt}/hello.txt; read -r x <&3; sleep 1; cat <&3 >/dev/null`],
      }).spawn();
      await new Promise((r) => setTimeout(r, 300));
      Deno.kill(pid, "SIGTERM");
      await eventually(() => !isMounted(mnt), 10_000, "lazy unmount");
      assert.equal((await holder.status).code, 0);
      await eventually(() => !processAlive(pid), 10_000, "daemon exit after last close");
      await eventually(() => exclusiveOpenWorks(dev), 5_000, "device free");
    });
  },
);

testWith(
  "ext4ts mount: a loop device detached under the mount does not hang",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt, img }) => {
      await mountOk(dev, mnt);
      assert.ok(detachLoop(dev, img)); // busy: the kernel defers the detach (autoclear)
      assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
      const u = await umount(mnt);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(await loopsOf(img), [], "the deferred detach happened on release");
    });
  },
);

testWith("ext4ts mount: the fusermount3 path (SCM_RIGHTS hand-over), umount waits", [
  ...FUSE_NEEDS,
  "fusermount3",
], async () => {
  await withFixture(async ({ dev, mnt }) => {
    await mountOk(dev, mnt, [], { EXT4TS_FUSERMOUNT: "1" });
    const m = findMount(mnt)!;
    assert.equal(m.fsType, "fuse.ext4ts");
    assert.equal(m.source, dev, "fsname is the device");
    assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
    const pid = readState(mnt)!.pid;
    const u = await umount(mnt);
    assert.equal(u.code, 0, u.stderr);
    assert.equal(isMounted(mnt), false);
    assert.equal(processAlive(pid), false, "daemon gone when umount returns");
    assert.equal(exclusiveOpenWorks(dev), true);
  });
});

testWith(
  "ext4ts mount: a failed post-mount device check unmounts and fails",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt, img }) => {
      for (const device of [dev, img]) {
        const r = await memMount(device, mnt, [], { EXT4TS_TEST_VERIFY_FAIL: "1" });
        assert.equal(r.code, 7, r.stderr);
        assert.match(r.stderr, /changed while mounting/);
        assert.equal(isMounted(mnt), false, "no mount left behind");
        assert.equal(readState(mnt), undefined, "no state file left behind");
        await eventually(() => exclusiveOpenWorks(dev), 5_000, "device free");
      }
      assert.deepEqual(await loopsOf(img), [dev], "the image's auto loop device is gone");
    });
  },
);

testWith(
  "ext4ts mount -f: serves in the foreground until unmounted, then exits 0",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt }) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${ROOT}tests/fuse_memfs_daemon.ts`, "mount", dev, mnt, "-f"],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      try {
        await eventually(() => readState(mnt)?.state === "mounted", 20_000, "foreground mount");
        assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello, world\n");
        const u = await umount(mnt);
        assert.equal(u.code, 0, u.stderr);
        const out = await child.output();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        assert.match(new TextDecoder().decode(out.stderr), /session ended: destroyed/);
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }
    });
  },
);

testWith(
  "ext4ts mount: a dead mount on the mount point is named, umount clears it",
  FUSE_NEEDS,
  async () => {
    await withFixture(async ({ dev, mnt }) => {
      await mountOk(dev, mnt);
      const pid = readState(mnt)!.pid;
      Deno.kill(pid, "SIGKILL");
      await eventually(() => !processAlive(pid), 10_000, "daemon death");
      let r = await memMount(dev, mnt);
      for (let i = 0; i < 50 && r.code !== 8; i++) r = await memMount(dev, mnt);
      assert.equal(r.code, 8, r.stderr);
      assert.match(r.stderr, /dead FUSE mount/);
      assert.equal((await umount(mnt)).code, 0);
      await mountOk(dev, mnt);
      assert.equal((await umount(mnt)).code, 0);
    });
  },
);

testWith(
  "ext4ts mount as an unprivileged user: plain fuse through fusermount3; umount waits for the daemon",
  [...FUSE_NEEDS, "fusermount3", "setpriv", "mkfs.ext4"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-nonroot-" });
    const mnt = `${dir}/mnt`;
    const pids: number[] = [];
    try {
      await Deno.mkdir(`${dir}/src`);
      await Deno.writeTextFile(`${dir}/src/file.txt`, "owned by root\n");
      await run("mkfs.ext4", ["-q", "-F", "-d", `${dir}/src`, `${dir}/fs.img`, "16M"]);
      await Deno.writeFile(`${dir}/mem.img`, new Uint8Array(1 << 20));
      await Deno.mkdir(mnt);
      const nobody = await unprivileged(dir);
      const statePid = () => {
        const file = `${nobody.stateDir}/${encodeURIComponent(mnt)}.json`;
        try {
          return (JSON.parse(Deno.readTextFileSync(file)) as { pid: number }).pid;
        } catch {
          return undefined;
        }
      };
      await withOpenFuseDevice(async () => {
        // The real CLI and ext4 backend; fakeroot shows root's files as the user's.
        // A path relative to where the user stands (its home, `dir`).
        const m = await nobody.cli([
          "mount",
          "fs.img",
          mnt,
          "-o",
          "fakeroot",
        ]);
        assert.equal(m.code, 0, m.stderr);
        const info = findMount(mnt)!;
        assert.equal(info.fsType, "fuse.ext4ts", "plain fuse without root");
        assert.match(info.superOptions, /user_id=65534,group_id=65534/);
        const pid = statePid()!;
        assert.ok(pid && processAlive(pid), "state file in the user's state directory");
        pids.push(pid);
        assert.equal(Deno.readLinkSync(`/proc/${pid}/cwd`), "/", "the daemon pins no directory");
        assert.equal((await nobody.run("cat", [`${mnt}/file.txt`])).stdout, "owned by root\n");
        const st = await nobody.run("stat", ["-c", "%u:%g", `${mnt}/file.txt`]);
        assert.equal(st.stdout.trim(), "65534:65534", "fakeroot maps uid/gid 0 to the user");
        const u = await nobody.cli(["umount", mnt]);
        assert.equal(u.code, 0, u.stderr);
        assert.equal(isMounted(mnt), false);
        assert.equal(processAlive(pid), false, "daemon gone when umount returns");
        assert.equal(statePid(), undefined, "state file removed");

        // A slow destroy: plain fuse sends no DESTROY, the daemon cleans up after the
        // disconnect, and `ext4ts umount` waits for it to finish.
        const slow = await nobody.deno(
          `${nobody.root}tests/fuse_memfs_daemon.ts`,
          ["mount", `${dir}/mem.img`, mnt],
          { EXT4TS_TEST_DESTROY_DELAY_MS: "1000" },
        );
        assert.equal(slow.code, 0, slow.stderr);
        const pid2 = statePid()!;
        pids.push(pid2);
        assert.equal((await nobody.run("cat", [`${mnt}/hello.txt`])).stdout, "hello, world\n");
        const t0 = performance.now();
        const u2 = await nobody.cli(["umount", mnt]);
        const took = performance.now() - t0;
        assert.equal(u2.code, 0, u2.stderr);
        assert.equal(processAlive(pid2), false, "daemon gone when umount returns");
        assert.ok(took >= 900, `umount returned after ${took} ms, before the daemon finished`);
        assert.equal(isMounted(mnt), false);
      });
    } finally {
      await forceCleanup(mnt);
      for (const pid of pids) {
        try {
          if (processAlive(pid)) Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);

testWith(
  "ext4ts mount: allow_other and default_permissions; the daemon's OOM score and IO flusher flag",
  [...FUSE_NEEDS, "setpriv"],
  async () => {
    await withFixture(async ({ dev, mnt, dir }) => {
      const asNobody = (...cmd: string[]) =>
        run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", ...cmd]);
      await Deno.chmod(dir, 0o755);
      // Without allow_other, the kernel keeps every other user out.
      await mountOk(dev, mnt, ["--log", `${dir}/daemon.log`]);
      assert.match((await asNobody("cat", `${mnt}/hello.txt`)).stderr, /Permission denied/);
      // Each protection is set, or (without CAP_SYS_RESOURCE, as in some sandboxes) named in
      // the one warning line. PR_SET_IO_FLUSHER shows as PF_MEMALLOC_NOIO (0x80000).
      const pid = readState(mnt)!.pid;
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const flags = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[6]);
      const oom = Deno.readTextFileSync(`/proc/${pid}/oom_score_adj`).trim();
      // The daemon creates its log with the first line it writes: none yet reads as empty.
      const readLog = () => {
        try {
          return Deno.readTextFileSync(`${dir}/daemon.log`);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return "";
          throw e;
        }
      };
      if ((flags & 0x80000) === 0 || oom !== "-900") {
        await eventually(() => readLog().includes("warning: could not set"), 5000, "warning");
      }
      const log = readLog();
      const warning = log.split("\n").filter((l) => l.includes("warning: could not set"));
      assert.ok(warning.length <= 1, "one warning line at most");
      assert.ok(
        (flags & 0x80000) !== 0 || /PR_SET_IO_FLUSHER/.test(warning[0] ?? ""),
        `neither PF_MEMALLOC_NOIO (flags ${flags.toString(16)}) nor a warning: ${log}`,
      );
      assert.ok(oom === "-900" || /oom_score_adj/.test(warning[0] ?? ""), `oom ${oom}: ${log}`);
      assert.equal((await umount(mnt)).code, 0);

      await mountOk(dev, mnt, ["-o", "default_permissions"]);
      assert.match(findMount(mnt)!.superOptions, /default_permissions/);
      assert.doesNotMatch(findMount(mnt)!.superOptions, /allow_other/);
      assert.equal((await umount(mnt)).code, 0);

      // allow_other (which implies default_permissions): others get what the modes allow.
      await mountOk(dev, mnt, ["-o", "allow_other"]);
      assert.match(findMount(mnt)!.superOptions, /default_permissions,allow_other|allow_other/);
      assert.match(findMount(mnt)!.superOptions, /default_permissions/);
      const ok = await asNobody("cat", `${mnt}/hello.txt`);
      assert.equal(ok.stdout, "hello, world\n", ok.stderr);
      const denied = await asNobody("cat", `${mnt}/private`);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /Permission denied/);
      assert.equal(await Deno.readTextFile(`${mnt}/private`), "owner only\n", "root still reads");
      assert.equal((await umount(mnt)).code, 0);
    });
  },
);
