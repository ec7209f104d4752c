/**
 * Writing whole files with the write path's own code (allocator, extent tree or block map,
 * inode encoder), then checking them: e2fsck after linking them with debugfs, and the
 * kernel reading them back byte for byte.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MAX_EXTENT_LENGTH } from "../lib/ext4/alloc.ts";
import { buildBlockMap } from "../lib/ext4/indirect.ts";
import { buildExtentTree } from "../lib/ext4/extents.ts";
import { EXTENT_MAGIC, extentBlockChecksum, type FileExtent } from "../lib/ondisk/extent.ts";
import { groupFirstBlock } from "../lib/ondisk/group_descriptor.ts";
import { encodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { writeInode } from "../lib/ext4/inode.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { runOk, withKernelMount } from "./helpers.ts";
import { fsck, type LoadedFs } from "./write_fixtures.ts";

/** A file to write: runs of whole blocks at logical block numbers, and its size. */
export interface FileSpec {
  name: string;
  runs: { logical: number; blocks: number }[];
  size: number;
}

/** A file written by {@link writeNewFile}. */
export interface WrittenFile {
  spec: FileSpec;
  ino: number;
  /** Extent tree depth (-1 for a block map). */
  depth: number;
  /** Logical block → contents. */
  contents: Map<number, Uint8Array>;
  /** Blocks of mapping metadata (extent tree or indirect blocks). */
  mapBlocks: number;
}

/** Deterministic pseudo-random bytes. */
export function pattern(seed: number, length: number): Uint8Array {
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

/** Writes a new file (data, mapping, inode) into the transaction. */
export async function writeNewFile(
  fs: LoadedFs,
  tx: Transaction,
  spec: FileSpec,
  seed: number,
  mapping: "extents" | "blockmap",
): Promise<WrittenFile> {
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
  let iBlock: Uint8Array;
  let depth = -1;
  let mapBlocks = 0;
  let flags = 0;
  if (mapping === "extents") {
    const tree = await buildExtentTree(tx, alloc, sb, { ino, generation, extents, goal });
    iBlock = tree.iBlock;
    depth = tree.depth;
    mapBlocks = tree.treeBlocks.reduce((a, e) => a + e.length, 0);
    flags = InodeFlags.EXTENTS;
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
  } else {
    const map = await buildBlockMap(tx, alloc, sb, { extents, goal });
    iBlock = map.iBlock;
    mapBlocks = map.indirectBlocks.reduce((a, e) => a + e.length, 0);
  }
  const now = { sec: 1700000000 + seed, nsec: 5000 * seed };
  const raw = encodeInode(sb, ino, {
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: spec.size,
    linksCount: 1,
    blocks512: (dataBlocks + mapBlocks) * (bs / 512),
    flags,
    generation,
    atime: now,
    ctime: now,
    mtime: now,
    crtime: now,
    dtime: 0,
    fileAcl: 0,
    block: iBlock,
    version: 0,
    projid: 0,
  });
  await writeInode(tx, sb, gdt, ino, raw);
  return { spec, ino, depth, contents, mapBlocks };
}

/**
 * Links the files into the root with debugfs, checks e2fsck -fn is clean, then mounts the
 * image with the kernel and compares every file's size and contents.
 */
export async function checkWrittenFiles(
  dir: string,
  fs: LoadedFs,
  written: WrittenFile[],
): Promise<void> {
  const bs = fs.sb.blockSize;
  const path = `${dir}/files.img`;
  await Deno.writeFile(path, fs.dev.bytes);
  for (const w of written) {
    await runOk("debugfs", ["-w", "-R", `ln <${w.ino}> /${w.spec.name}`, path]);
  }
  const check = await fsck(dir, await Deno.readFile(path));
  assert.equal(check.code, 0, check.output);
  await withKernelMount(path, async (mnt) => {
    for (const w of written) {
      const file = `${mnt}/${w.spec.name}`;
      const st = await Deno.stat(file);
      assert.equal(st.size, w.spec.size, w.spec.name);
      if (Math.ceil(w.spec.size / bs) <= 20000) {
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
        // Too big to read whole: every data block, and a hole after each.
        using h = await Deno.open(file);
        const buf = new Uint8Array(bs);
        for (const [lb, data] of w.contents) {
          await h.seek(lb * bs, Deno.SeekMode.Start);
          assert.equal(await h.read(buf), bs);
          assert.deepEqual(buf, data, `${w.spec.name} block ${lb}`);
          if (!w.contents.has(lb + 10) && (lb + 11) * bs <= w.spec.size) {
            await h.seek((lb + 10) * bs, Deno.SeekMode.Start);
            assert.equal(await h.read(buf), bs);
            assert.ok(buf.every((b) => b === 0), `${w.spec.name} hole at ${lb + 10}`);
          }
        }
      }
    }
  }, { readOnly: true });
  await Deno.remove(path);
}
