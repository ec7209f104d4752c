import assert from "node:assert/strict";
import type { Ext4Error } from "../lib/errors.ts";
import { extentsPerBlock, type FileExtent } from "../lib/ondisk/extent.ts";
import { validateExtents } from "../lib/ext4/extents.ts";
import { tempDir, testWith } from "./helpers.ts";
import {
  checkWrittenFiles,
  type FileSpec,
  writeNewFile,
  type WrittenFile,
} from "./file_fixtures.ts";
import { IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";

Deno.test("validateExtents refuses overlaps, disorder and oversize extents", () => {
  const ok: FileExtent[] = [{ logical: 0, physical: 10, length: 5 }, {
    logical: 5,
    physical: 100,
    length: 1,
  }];
  validateExtents(ok, 1000);
  const bad = (x: FileExtent[], re: RegExp) =>
    assert.throws(
      () => validateExtents(x, 1000),
      (e: Ext4Error) => e.code === "INVALID" && re.test(e.message),
    );
  bad(
    [{ logical: 3, physical: 10, length: 5 }, { logical: 5, physical: 100, length: 1 }],
    /overlaps/,
  );
  bad([{ logical: 0, physical: 10, length: 32769 }], /length/);
  bad([{ logical: 0, physical: 10, length: 32768, unwritten: true }], /length/);
  bad([{ logical: 0, physical: 999, length: 2 }], /outside/);
  bad([{ logical: 2 ** 32 - 1, physical: 10, length: 2 }], /out of order/);
  assert.equal(extentsPerBlock(4096), 340);
  assert.equal(extentsPerBlock(1024), 84);
});

const FILES: FileSpec[] = [
  { name: "small", runs: [{ logical: 0, blocks: 3 }], size: 0 }, // size set per block size
  { name: "contiguous", runs: [{ logical: 0, blocks: 700 }], size: 0 },
  {
    name: "sparse",
    runs: Array.from({ length: 1500 }, (_, i) => ({ logical: 3 * i + 1, blocks: 1 })),
    size: 0,
  },
  { name: "far", runs: [{ logical: 5, blocks: 2 }, { logical: 1_000_000, blocks: 3 }], size: 0 },
];

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[5], LAYOUTS[4], LAYOUTS[8]]) {
  testWith(
    `extent trees on ${layout.name}: files written by ext4ts are e2fsck-clean and the kernel reads them byte-identical`,
    [...IMAGE_TOOLS, "debugfs", "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const bs = fs.sb.blockSize;
      const written: WrittenFile[] = [];
      let seed = 1;
      for (const f of FILES) {
        const last = f.runs.at(-1)!;
        // A partial last block for the small file; a hole at the end of the far one.
        const size = f.name === "small"
          ? 2 * bs + 100
          : (last.logical + last.blocks + (f.name === "far" ? 7 : 0)) * bs;
        const tx = fs.cache.begin();
        written.push(await writeNewFile(fs, tx, { ...f, size }, seed++, "extents"));
        await tx.commit();
      }
      assert.equal(written[2].depth, 2, "1500 extents need two levels below the root");
      assert.equal(written[0].depth, 0);
      await checkWrittenFiles(dir.path, fs, written);
    },
  );
}
