/**
 * Freed blocks are not reused before the freeing transaction commits (issue 12): a file
 * truncated and another written in the same transaction (a batch) never share a block, so a
 * crash before the commit cannot leave the truncated file's old mapping on disk pointing at
 * the new file's data. After the commit the freed blocks are allocated again.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { tempDir, testWith } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

/** Every device block of the file at `path`. */
async function blocksOf(fs: Ext4, path: string): Promise<number[]> {
  const runs = await fs.blockRuns(await fs.inode(await fs.resolve(path)));
  return runs.flatMap((r) => Array.from({ length: r.length }, (_, i) => r.physical + i));
}

for (const layout of [LAYOUTS[0], LAYOUTS[2]]) {
  testWith(
    `${layout.name}: truncate A and write B in one transaction: B gets none of A's old blocks; after the commit they are reused`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const dev = new MemoryBlockDevice(await mkfsImage(dir.path, layout));
      const fs = await Ext4.openDevice(dev, { readOnly: false });
      const data = new Uint8Array(64 * 4096).fill(0xa5);
      await fs.writeFile("/a", data);
      const old = await blocksOf(fs, "/a");
      assert.equal(old.length, 64);
      await fs.batch(async () => {
        await fs.truncate("/a", 0);
        await fs.writeFile("/b", data);
      });
      const b = await blocksOf(fs, "/b");
      assert.equal(b.length, 64);
      const reused = b.filter((x) => old.includes(x));
      assert.deepEqual(reused, [], "blocks of A handed to B in the same transaction");
      // Committed: the next file lands on A's old blocks (the allocator's first free run).
      await fs.writeFile("/c", data);
      const c = await blocksOf(fs, "/c");
      assert.ok(c.some((x) => old.includes(x)), `C at ${c[0]}, A was at ${old[0]}`);
      await fs.close();
      assert.equal((await fsck(dir.path, dev.bytes)).code, 0);
    },
  );
}
