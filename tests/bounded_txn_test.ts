/**
 * Bounded transactions (issue 12): a recursive remove of a big tree commits in steps of about
 * a quarter of the block cache, never as one transaction held in memory; every flush boundary
 * between the steps is a consistent filesystem (after its journal's replay) holding the tree
 * partly removed.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { tempDir, testWith } from "./helpers.ts";
import {
  blocksPerFlush,
  fsckAfterRecovery,
  IMAGE_TOOLS,
  journalBlocks,
  LAYOUTS,
  mkfsImage,
} from "./write_fixtures.ts";

for (const layout of [LAYOUTS[0], LAYOUTS[2]]) {
  testWith(
    `${layout.name}: remove -r of a big tree commits in bounded steps, each flush boundary e2fsck-clean`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      const base = new MemoryBlockDevice(image);
      let fs = await Ext4.openDevice(base, { readOnly: false });
      const data = new Uint8Array(3 * 4096).fill(1);
      for (let d = 0; d < 24; d++) {
        await fs.mkdir(`/tree/d${d}`, { recursive: true });
        for (let f = 0; f < 30; f++) await fs.writeFile(`/tree/d${d}/f${f}`, data);
      }
      await fs.close();
      const before = Uint8Array.from(base.bytes);

      const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(before)));
      // 64 cached blocks: steps of 16 changed blocks.
      fs = await Ext4.openDevice(log, { readOnly: false, blockCacheSize: 64 });
      await fs.remove("/tree", { recursive: true });
      assert.equal(await fs.lookupIno(2, "tree"), null);
      await fs.close();
      const boundaries = log.flushBoundaries();
      // A commit's metadata (removing writes no data), counted between flushes: without a
      // journal, the blocks written in place; with one, the blocks logged (the journal's
      // checkpoints write home what many commits logged, at once).
      const perCommit = blocksPerFlush(log.entries, await journalBlocks(before), 4096);
      // 720 files and 25 directories: several commits, none much over the 16-block step.
      assert.ok(boundaries.length >= 4, `${boundaries.length} flushes`);
      assert.ok(Math.max(...perCommit) <= 32, `blocks per commit: ${perCommit.join(" ")}`);
      const picks = [1, 2, 3, 4].map((k) => boundaries[Math.floor(k * boundaries.length / 5)]);
      for (const n of [...picks, boundaries[boundaries.length - 1]]) {
        const r = await fsckAfterRecovery(dir.path, log.replay(before, n));
        assert.equal(r.code, 0, `after entry ${n}: ${r.output}`);
      }
    },
  );
}
