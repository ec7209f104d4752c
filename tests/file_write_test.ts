import assert from "node:assert/strict";
import fc from "fast-check";
import type { Ext4Error } from "../lib/errors.ts";
import { writeNewFileData } from "../lib/ext4/file_write.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { tempDir, testWith } from "./helpers.ts";
import { checkWrittenFiles, pattern, type WrittenFile } from "./file_fixtures.ts";
import {
  IMAGE_TOOLS,
  LAYOUTS,
  type LoadedFs,
  loadFs,
  mkfsImage,
  writeTestInode,
} from "./write_fixtures.ts";

/** A file's contents as segments: data or zeros, in bytes. */
const segmentsArb = fc.array(
  fc.record({ zero: fc.boolean(), bytes: fc.integer({ min: 1, max: 9000 }) }),
  { minLength: 0, maxLength: 12 },
);

function contentsOf(segments: { zero: boolean; bytes: number }[], seed: number): Uint8Array {
  const total = segments.reduce((a, s) => a + s.bytes, 0);
  const out = new Uint8Array(total);
  let at = 0;
  segments.forEach((s, i) => {
    if (!s.zero) out.set(pattern(seed * 100 + i, s.bytes), at);
    at += s.bytes;
  });
  return out;
}

async function createFile(
  fs: LoadedFs,
  tx: Transaction,
  name: string,
  data: Uint8Array,
  seed: number,
  sparse: boolean,
): Promise<WrittenFile & { blocks512: number }> {
  const { sb, alloc } = fs;
  const bs = sb.blockSize;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: seed % sb.groupCount });
  const generation = seed * 31;
  const file = await writeNewFileData(tx, alloc, sb, { ino, generation, data, sparse });
  const t = { sec: 1700000000, nsec: seed };
  await writeTestInode(fs, tx, ino, {
    mode: 0o100600,
    size: data.length,
    generation,
    time: t,
    blocks512: file.blocks512,
    flags: file.flags,
    block: file.iBlock,
  });
  const contents = new Map<number, Uint8Array>();
  for (const e of file.extents) {
    for (let i = 0; i < e.length; i++) {
      const lb = e.logical + i;
      const block = new Uint8Array(bs);
      block.set(data.subarray(lb * bs, Math.min(data.length, (lb + 1) * bs)));
      contents.set(lb, block);
    }
  }
  const mapBlocks = file.mapBlocks.reduce((a, e) => a + e.length, 0);
  return {
    spec: { name, runs: [], size: data.length },
    ino,
    depth: 0,
    contents,
    mapBlocks,
    blocks512: file.blocks512,
  };
}

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0], LAYOUTS[7]]) {
  testWith(
    `new files on ${layout.name}: random contents with holes read back byte-identical through the kernel`,
    [...IMAGE_TOOLS, "debugfs", "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      await fc.assert(
        fc.asyncProperty(
          fc.array(segmentsArb, { minLength: 1, maxLength: 6 }),
          fc.boolean(),
          async (files, sparse) => {
            const fs = await loadFs(image);
            const written: (WrittenFile & { blocks512: number })[] = [];
            const tx = fs.cache.begin();
            for (let i = 0; i < files.length; i++) {
              written.push(
                await createFile(fs, tx, `f${i}`, contentsOf(files[i], i + 1), i + 1, sparse),
              );
            }
            await tx.commit();
            for (const w of written) {
              const dataBlocks = Math.ceil(w.spec.size / fs.sb.blockSize);
              if (!sparse) assert.equal(w.contents.size, dataBlocks, "no holes unless sparse");
            }
            await checkWrittenFiles(dir.path, fs, written);
          },
        ),
        { numRuns: 3 },
      );
    },
  );
}

testWith(
  "new files: ENOSPC before anything changes, and an aborted file leaves nothing behind",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[3]));
    const bs = fs.sb.blockSize;
    const tx = fs.cache.begin();
    const ino = await fs.alloc.allocateInode(tx, { dir: false });
    const free = fs.alloc.freeBlockCount;
    const gds = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
    await assert.rejects(
      () =>
        writeNewFileData(tx, fs.alloc, fs.sb, {
          ino,
          generation: 1,
          data: new Uint8Array((free + 1) * bs),
        }),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx.state, "open");
    fs.gdt.descriptors.forEach((gd, g) => assert.deepEqual(gd.bytes, gds[g]));
    tx.abort();

    // Data that fits exactly but whose extent tree does not: the whole transaction is discarded.
    const before = fs.gdt.descriptors.map((gd) => Uint8Array.from(gd.bytes));
    const tx2 = fs.cache.begin();
    const ino2 = await fs.alloc.allocateInode(tx2, { dir: false });
    const n = fs.alloc.freeBlockCount;
    // Alternate data and holes so that the file needs many extents.
    const data = new Uint8Array((2 * n - 1) * bs);
    for (let i = 0; i < n; i++) data[2 * i * bs] = 1;
    await assert.rejects(
      () =>
        writeNewFileData(tx2, fs.alloc, fs.sb, { ino: ino2, generation: 1, data, sparse: true }),
      (e: Ext4Error) => e.code === "NO_SPACE",
    );
    assert.equal(tx2.state, "aborted");
    fs.gdt.descriptors.forEach((gd, g) => assert.deepEqual(gd.bytes, before[g]));
  },
);

testWith(
  "new files, zeroPadded: files sharing one block-aligned buffer are written with zero tails, and a buffer without room is padded by a copy",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const fs = await loadFs(await mkfsImage(dir.path, LAYOUTS[2]));
    const bs = fs.sb.blockSize;
    // Two files in one buffer as put reads them: each at a block boundary, zeros after each.
    const shared = new Uint8Array(4 * bs);
    const first = shared.subarray(0, bs + 100);
    first.set(pattern(1, first.length));
    const second = shared.subarray(2 * bs, 2 * bs + 7);
    second.set(pattern(2, second.length));
    // zeroPadded claimed, but the buffer ends with the data: the last block needs a copy.
    const tight = pattern(3, bs + 5);
    const tx = fs.cache.begin();
    const files: { data: Uint8Array; extents: { physical: number; length: number }[] }[] = [];
    for (const [i, data] of [first, second, tight].entries()) {
      const ino = await fs.alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
      const file = await writeNewFileData(tx, fs.alloc, fs.sb, {
        ino,
        generation: i,
        data,
        zeroPadded: true,
      });
      files.push({ data, extents: file.extents });
    }
    await tx.commit();
    for (const [i, f] of files.entries()) {
      const want = new Uint8Array(Math.ceil(f.data.length / bs) * bs);
      want.set(f.data);
      const got = new Uint8Array(want.length);
      let at = 0;
      for (const e of f.extents) {
        got.set(fs.dev.bytes.subarray(e.physical * bs, (e.physical + e.length) * bs), at);
        at += e.length * bs;
      }
      assert.deepEqual(got, want, `file ${i}: its data, then zeros to the block's end`);
    }
  },
);
