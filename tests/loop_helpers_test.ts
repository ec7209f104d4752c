/**
 * The tests' loop-device helpers (tests/helpers.ts): a detach acts only on the attachment it
 * was made for. Test files run in parallel and `losetup -f` hands out the lowest free device,
 * so a device freed early is soon another test's, and a detach by name would pull it from
 * under that test (seen in CI as a kernel mount's "can't read superblock").
 *
 * @module
 */

import assert from "node:assert/strict";
import { detachLoop, detachLoopsOf, loopsOf, losetup, run, tempDir, testWith } from "./helpers.ts";

const NEEDS = ["root", "loop", "losetup"];

async function images(dir: string): Promise<[string, string]> {
  const [a, b] = [`${dir}/a.img`, `${dir}/b.img`];
  for (const f of [a, b]) await Deno.writeFile(f, new Uint8Array(1 << 20));
  return [a, b];
}

testWith(
  "loop helpers: a device freed early and attached to another file is left alone by the first one's cleanup",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const [a, b] = await images(dir.path);
    // a's device is freed (in the suite: a deferred detach completing at umount), then taken
    // for b (`losetup DEV b`, as another test's `losetup -f` takes the lowest free device).
    let dev = "";
    for (let attempt = 0; attempt < 10 && !dev; attempt++) {
      const freed = await losetup(a);
      assert.ok(detachLoop(freed, a), "a's own device is detached");
      // Another test file may take the freed device first: then again, with another one.
      if ((await run("losetup", [freed, b])).code === 0) dev = freed;
    }
    assert.ok(dev, "no freed device could be attached to b");
    try {
      assert.equal(detachLoop(dev, a), false, "a's late cleanup refuses b's device");
      await detachLoopsOf(a);
      assert.deepEqual(await loopsOf(b), [dev], "b's attachment survives a's cleanups");
    } finally {
      detachLoop(dev, b);
    }
    assert.deepEqual(await loopsOf(b), [], "b's own cleanup detaches it");
  },
);

testWith(
  "loop helpers: a device in use is detached at its last close, as with losetup -d",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const [a] = await images(dir.path);
    const dev = await losetup(a);
    const holder = await Deno.open(dev);
    try {
      assert.ok(detachLoop(dev, a), "deferred (autoclear)");
      assert.deepEqual(await loopsOf(a), [dev], "still attached while held");
    } finally {
      holder.close();
    }
    assert.deepEqual(await loopsOf(a), [], "detached at the last close");
    assert.equal(detachLoop(dev, a), false, "a second detach finds nothing of a's");
  },
);
