import assert from "node:assert/strict";
import { MAX_EXTENT_LENGTH } from "../lib/alloc.ts";
import type { Ext4Error } from "../lib/errors.ts";
import {
  buildExtentTree,
  EXTENT_MAGIC,
  extentBlockChecksum,
  extentsPerBlock,
  type FileExtent,
  validateExtents,
} from "../lib/extent_write.ts";
import { groupFirstBlock } from "../lib/group_descriptor.ts";
import { encodeInode, InodeFlags, writeInode } from "../lib/inode_write.ts";
import type { Transaction } from "../lib/transaction.ts";
import { runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, type LoadedFs, loadFs, mkfsImage } from "./write_fixtures.ts";

/** A file to write: runs of whole blocks at logical block numbers, and its size. */
interface FileSpec {
  name: string;
  runs: { logical: number; blocks: number }[];
  size: number;
}

function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Writes a new file with the write path's own code; returns its inode and tree depth. */
async function writeNewFile(
  fs: LoadedFs,
  tx: Transaction,
  spec: FileSpec,
  seed: number,
): Promise<{ ino: number; depth: number; contents: Map<number, Uint8Array> }> {
  const { sb, gdt, alloc } = fs;
  const bs = sb.blockSize;
  const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
  const goal = groupFirstBlock(sb, alloc.groupOfInode(ino));
  const extents: FileExtent[] = [];
  const contents = new Map<number, Uint8Array>();
  let dataBlocks = 0;
  let n = 0;
  for (const run of spec.runs) {
    const got = await alloc.allocateBlocks(tx, goal, run.blocks, { contiguousPreferred: true });
    let logical = run.logical;
    for (const e of got) {
      const data = pattern(seed * 1000 + n++, e.length * bs);
      tx.writeData(e.start, data);
      for (let i = 0; i < e.length; i++) {
        contents.set(logical + i, data.subarray(i * bs, (i + 1) * bs));
      }
      const last = extents.at(-1);
      if (
        last && last.logical + last.length === logical && last.physical + last.length === e.start &&
        last.length + e.length <= MAX_EXTENT_LENGTH
      ) {
        last.length += e.length;
      } else {
        extents.push({ logical, physical: e.start, length: e.length });
      }
      logical += e.length;
      dataBlocks += e.length;
    }
  }
  const generation = (seed * 7919) >>> 0;
  const tree = await buildExtentTree(tx, alloc, sb, { ino, generation, extents, goal });
  const treeBlocks = tree.treeBlocks.reduce((a, e) => a + e.length, 0);
  const now = { sec: 1700000000 + seed, nsec: 5000 * seed };
  const raw = encodeInode(sb, ino, {
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: spec.size,
    linksCount: 1,
    blocks512: (dataBlocks + treeBlocks) * (bs / 512),
    flags: InodeFlags.EXTENTS,
    generation,
    atime: now,
    ctime: now,
    mtime: now,
    crtime: now,
    dtime: 0,
    fileAcl: 0,
    block: tree.iBlock,
    version: 0,
    projid: 0,
  });
  await writeInode(tx, sb, gdt, ino, raw);
  // The tree blocks carry valid headers and checksums.
  for (const e of tree.treeBlocks) {
    for (let b = e.start; b < e.start + e.length; b++) {
      const img = await tx.read(b);
      assert.equal(img[0] | (img[1] << 8), EXTENT_MAGIC);
      if (sb.hasMetadataCsum) {
        const max = img[4] | (img[5] << 8);
        const stored = new DataView(img.buffer, img.byteOffset).getUint32(12 + 12 * max, true);
        assert.equal(stored, extentBlockChecksum(sb, ino, generation, img));
      }
    }
  }
  return { ino, depth: tree.depth, contents };
}

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
      const written: {
        spec: FileSpec;
        ino: number;
        depth: number;
        contents: Map<number, Uint8Array>;
      }[] = [];
      let seed = 1;
      for (const f of FILES) {
        const last = f.runs.at(-1)!;
        // A partial last block for the small file; whole blocks (and a hole at the end) otherwise.
        const size = f.name === "small"
          ? 2 * bs + 100
          : (last.logical + last.blocks + (f.name === "far" ? 7 : 0)) * bs;
        const spec = { ...f, size };
        const tx = fs.cache.begin();
        const r = await writeNewFile(fs, tx, spec, seed++);
        await tx.commit();
        written.push({ spec, ...r });
      }
      const sparse = written.find((w) => w.spec.name === "sparse")!;
      assert.equal(sparse.depth, 2, "1500 extents need two levels below the root");
      assert.equal(written.find((w) => w.spec.name === "small")!.depth, 0);

      const path = `${dir.path}/img`;
      await Deno.writeFile(path, fs.dev.bytes);
      for (const w of written) {
        await runOk("debugfs", ["-w", "-R", `ln <${w.ino}> /${w.spec.name}`, path]);
      }
      const check = await fsck(dir.path, await Deno.readFile(path));
      assert.equal(check.code, 0, check.output);

      await withKernelMount(path, async (mnt) => {
        for (const w of written) {
          const file = `${mnt}/${w.spec.name}`;
          const st = await Deno.stat(file);
          assert.equal(st.size, w.spec.size, w.spec.name);
          const lastBlock = Math.ceil(w.spec.size / bs);
          if (lastBlock <= 20000) {
            const want = new Uint8Array(w.spec.size);
            for (const [lb, data] of w.contents) {
              want.set(data.subarray(0, Math.min(bs, w.spec.size - lb * bs)), lb * bs);
            }
            const got = await Deno.readFile(file);
            assert.ok(
              got.length === want.length && got.every((b, i) => b === want[i]),
              `${w.spec.name} content`,
            );
          } else {
            // Too big to read whole: every data block, and the holes around them.
            using h = await Deno.open(file);
            const buf = new Uint8Array(bs);
            for (const [lb, data] of w.contents) {
              await h.seek(lb * bs, Deno.SeekMode.Start);
              assert.equal(await h.read(buf), bs);
              assert.deepEqual(buf, data, `${w.spec.name} block ${lb}`);
              await h.seek((lb + 10) * bs, Deno.SeekMode.Start);
              const n = await h.read(buf);
              if (n !== null && !w.contents.has(lb + 10)) {
                assert.ok(buf.subarray(0, n).every((b) => b === 0));
              }
            }
          }
        }
      }, { readOnly: true });
    },
  );
}
