/**
 * `waitForExit` (ffi/fuse/mount_state.ts), what `ext4ts umount` waits on: it resolves once the
 * process has exited as `processAlive` counts it, false at the deadline, and at once for a pid
 * whose start time is not the one recorded (a reused pid).
 */

import assert from "node:assert/strict";
import { processAlive, processStartTime, waitForExit } from "../ffi/fuse/mount_state.ts";

function sleeper(seconds: number): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: [String(seconds)], stdout: "null", stderr: "null" })
    .spawn();
}

Deno.test("waitForExit: resolves true once the process has exited", async () => {
  const child = sleeper(0.3);
  const start = processStartTime(child.pid);
  try {
    const gone = await waitForExit(child.pid, start, Date.now() + 60_000);
    assert.equal(gone, true);
    assert.equal(processAlive(child.pid, start), false);
  } finally {
    await child.status;
  }
});

Deno.test("waitForExit: false at the deadline while the process runs", async () => {
  const child = sleeper(30);
  const start = processStartTime(child.pid);
  try {
    assert.equal(await waitForExit(child.pid, start, Date.now() + 200), false);
    assert.equal(processAlive(child.pid, start), true);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("waitForExit: another start time is another process (gone at once)", async () => {
  const child = sleeper(30);
  try {
    assert.equal(await waitForExit(child.pid, "1", Date.now() + 60_000), true);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});
