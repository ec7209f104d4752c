import assert from "node:assert/strict";
import { blockMapLimit, blockMapPath } from "../lib/ondisk/indirect.ts";
import { tempDir, testWith } from "./helpers.ts";
import {
  checkWrittenFiles,
  type FileSpec,
  writeNewFile,
  type WrittenFile,
} from "./file_fixtures.ts";
import { IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";

Deno.test("block map paths: direct, single, double and triple indirect", () => {
  const p = 256; // 1 KiB blocks
  assert.deepEqual(blockMapPath(1024, 0), [0]);
  assert.deepEqual(blockMapPath(1024, 11), [11]);
  assert.deepEqual(blockMapPath(1024, 12), [12, 0]);
  assert.deepEqual(blockMapPath(1024, 12 + p - 1), [12, p - 1]);
  assert.deepEqual(blockMapPath(1024, 12 + p), [13, 0, 0]);
  assert.deepEqual(blockMapPath(1024, 12 + p + p * p - 1), [13, p - 1, p - 1]);
  assert.deepEqual(blockMapPath(1024, 12 + p + p * p), [14, 0, 0, 0]);
  assert.deepEqual(blockMapPath(1024, blockMapLimit(1024) - 1), [14, p - 1, p - 1, p - 1]);
  assert.throws(() => blockMapPath(1024, blockMapLimit(1024)), /beyond/);
});

for (
  const layout of [LAYOUTS[0], LAYOUTS[1], {
    ...LAYOUTS[0],
    name: "ext2-1k",
    args: ["-b", "1024"],
    size: "24M",
  }]
) {
  testWith(
    `block maps on ${layout.name}: files written by ext4ts are e2fsck-clean and the kernel reads them byte-identical`,
    [...IMAGE_TOOLS, "debugfs", "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const bs = fs.sb.blockSize;
      const p = bs / 4;
      const files: FileSpec[] = [
        { name: "small", runs: [{ logical: 0, blocks: 3 }], size: 2 * bs + 1 },
        // Direct, single indirect, into double indirect.
        { name: "double", runs: [{ logical: 0, blocks: 12 + p + 40 }], size: (12 + p + 40) * bs },
        // Sparse: a block in each region, one in triple indirect.
        {
          name: "sparse",
          runs: [
            { logical: 3, blocks: 1 },
            { logical: 12 + 5, blocks: 2 },
            { logical: 12 + p + 3 * p + 7, blocks: 1 },
            { logical: 12 + p + p * p + p * p + 9, blocks: 2 },
          ],
          size: (12 + p + p * p + p * p + 30) * bs,
        },
      ];
      const written: WrittenFile[] = [];
      let seed = 11;
      for (const spec of files) {
        const tx = fs.cache.begin();
        written.push(await writeNewFile(fs, tx, spec, seed++, "blockmap"));
        await tx.commit();
      }
      assert.equal(written[0].mapBlocks, 0);
      assert.equal(written[1].mapBlocks, 1 + 2, "single indirect, double indirect and one child");
      assert.equal(written[2].mapBlocks, 1 + 2 + 3, "single; double + child; triple + two levels");
      await checkWrittenFiles(dir.path, fs, written);
    },
  );
}
