/**
 * The mount daemon polls /dev/fuse without sleeping for a moment after answering a burst of
 * requests (ffi/fuse/session.ts `BUSY_POLL_US`: a request that follows closely is read
 * without a cross-CPU wake-up), and must then sleep: an idle mount costs no CPU. A bound on
 * the daemon's CPU seconds over a second of idleness, not on time: a loop that kept polling
 * would use most of that second whatever the machine's load.
 */

import * as assert from "node:assert/strict";
import { readState } from "../ffi/fuse/mount_state.ts";
import { fuseWakesDaemonHere, idleMemoryReleaser } from "../ffi/fuse/serve.ts";
import { makeImage, runCli, runOk, tempDir, testWith } from "./helpers.ts";

/** CPU seconds (user + system, all threads) process `pid` has used so far. */
function cpuSeconds(pid: number): number {
  // Fields after "(comm) ": state is the first; utime and stime the 12th and 13th.
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

testWith(
  "mount daemon: after a burst of requests it stops polling and sleeps (an idle mount costs no CPU)",
  ["root", "fuse", "mkfs.ext4", "e2fsck", "python3"],
  async () => {
    await using tmp = await tempDir("ext4ts-idle-");
    const img = `${tmp.path}/fs.img`;
    const mnt = `${tmp.path}/mnt`;
    await Deno.mkdir(mnt);
    await makeImage(img, { size: "32M", args: ["-b", "4096"] });
    const m = await runCli(["mount", "-o", "rw", img, mnt]);
    assert.equal(m.code, 0, `ext4ts mount -o rw: ${m.stderr}`);
    try {
      const pid = readState(mnt)?.pid;
      assert.ok(pid, "the mount's state names its daemon");
      // Requests back to back (each listing is OPENDIR, READDIRPLUS, RELEASEDIR), ending the
      // way a burst ends: nothing follows.
      const burst = "import os, sys\nfor i in range(3000): os.listdir(sys.argv[1])\n";
      await runOk("python3", ["-c", burst, mnt]);
      for (const round of [1, 2]) {
        const before = cpuSeconds(pid);
        await new Promise((r) => setTimeout(r, 1000));
        const idle = cpuSeconds(pid) - before;
        assert.ok(
          idle < 0.25,
          `round ${round}: the idle daemon used ${idle.toFixed(2)} s of CPU in 1 s`,
        );
      }
      assert.deepEqual((await Array.fromAsync(Deno.readDir(mnt))).map((e) => e.name), [
        "lost+found",
      ]);
    } finally {
      const u = await runCli(["umount", mnt]);
      assert.equal(u.code, 0, `ext4ts umount: ${u.stderr}`);
    }
    await runOk("e2fsck", ["-fn", img]);
  },
);

Deno.test("the busy poll is off when the kernel wakes the daemon on the requester's CPU (fuse.wake_here)", async () => {
  await using tmp = await tempDir("ext4ts-wake-here-");
  const param = `${tmp.path}/wake_here`;
  assert.equal(fuseWakesDaemonHere(param), false, "no such parameter: poll");
  await Deno.writeTextFile(param, "N\n");
  assert.equal(fuseWakesDaemonHere(param), false);
  await Deno.writeTextFile(param, "Y\n");
  assert.equal(fuseWakesDaemonHere(param), true);
});

Deno.test("the idle collection runs only when 4 MiB or more were allocated since the last one", () => {
  const release = idleMemoryReleaser();
  assert.equal(release(), true, "the first call collects (nothing collected before)");
  assert.equal(release(), false, "nothing allocated since: no collection");
  const kept = Array.from({ length: 2048 }, () => new Uint8Array(4096));
  assert.equal(release(), true, `${kept.length} blocks of 4 KiB allocated: collected`);
  assert.equal(release(), false);
});

Deno.test("the idle collection also runs when the resident set grew by 4 MiB while the JS heap stayed level", () => {
  const MiB = 1 << 20;
  let rss = 100 * MiB;
  const release = idleMemoryReleaser(() => ({
    rss,
    heapTotal: 40 * MiB,
    heapUsed: 30 * MiB,
    external: 2 * MiB,
  }));
  assert.equal(release(), true, "the first call collects");
  assert.equal(release(), false, "nothing grew");
  rss += 3 * MiB;
  assert.equal(release(), false, "3 MiB more resident: not yet");
  rss += 1 * MiB;
  assert.equal(release(), true, "4 MiB more resident, the heap level: collected");
  assert.equal(release(), false);
});
