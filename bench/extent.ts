/**
 * Benchmark: changes to a fragmented extent-mapped file (tens of thousands of extents, a
 * depth-2 tree) with the in-place tree edits of lib/ext4/extents_edit.ts, against rebuilding
 * the whole mapping on every change (what file_update.ts did before: read the whole tree,
 * edit the list, free the old tree blocks and build a new tree with `rewriteFileMap`). Each
 * operation is one transaction, committed to an in-memory image; the table gives the median
 * time per operation and the metadata blocks each one changes before the commit.
 *
 *   deno run -A bench/extent.ts [--extents N] [--ops N]
 *
 * @module
 */

import { Allocator } from "../lib/ext4/alloc.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { emptyExtentRoot, type FileExtent } from "../lib/ondisk/extent.ts";
import {
  findExtent,
  insertExtents,
  markWritten,
  readFileMap,
  rewriteFileMap,
} from "../lib/ext4/file_map_write.ts";
import { writeFileRange } from "../lib/ext4/file_update.ts";
import { readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { decodeInode, encodeInode, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { BlockCache } from "../lib/txn/transaction.ts";
import { type BenchRow, printTable, sh } from "./lib.ts";
import type { OpContext } from "../lib/ext4/context.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const EXTENTS = arg("--extents", 20000);
const OPS = arg("--ops", 200);
const TIME = { sec: 1700000000, nsec: 0 };

async function makeFs(bytes: Uint8Array) {
  const dev = new MemoryBlockDevice(Uint8Array.from(bytes));
  const sb = await readSuperblock(dev);
  const gdt = await readGroupDescriptors(dev, sb);
  const cache = new BlockCache(dev, sb.blockSize, { capacity: 1 << 16 });
  return { dev, sb, gdt, cache, alloc: new Allocator(sb, gdt) };
}
type Fs = Awaited<ReturnType<typeof makeFs>>;

/** The old write path: the whole mapping read, edited as a list and rebuilt. */
async function rebuildWrite(ctx: OpContext, ino: number, offset: number, data: Uint8Array) {
  const { sb, tx, alloc, gdt } = ctx;
  const bs = sb.blockSize;
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const fields = decodeInode(sb, raw);
  const map = await readFileMap(tx, sb, ino, fields);
  let extents = map.extents;
  const oldData = extents.reduce((a, e) => a + e.length, 0);
  const first = Math.floor(offset / bs);
  const last = Math.floor((offset + data.length - 1) / bs);
  const added: FileExtent[] = [];
  for (let lb = first; lb <= last; lb++) {
    if (findExtent(extents, lb)) continue;
    const before = extents.filter((e) => e.logical < lb).at(-1);
    const goal = before ? before.physical + (lb - before.logical) : 0;
    const [r] = await alloc.allocateBlocks(tx, goal, 1);
    added.push({ logical: lb, physical: r.start, length: 1 });
  }
  extents = markWritten(insertExtents(extents, added), first, last + 1);
  for (let lb = first; lb <= last; lb++) {
    const e = findExtent(extents, lb)!;
    const buf = new Uint8Array(bs);
    buf.set(data.subarray((lb - first) * bs, (lb - first + 1) * bs));
    tx.writeData(e.physical + lb - e.logical, buf);
  }
  const rebuilt = await rewriteFileMap(tx, alloc, sb, {
    ino,
    generation: fields.generation,
    old: map,
    extents,
    goal: extents[0]?.physical,
  });
  const data512 = extents.reduce((a, e) => a + e.length, 0);
  const other = fields.blocks512 - (oldData + map.mapBlocks.length) * (bs / 512);
  await writeInode(
    tx,
    sb,
    gdt,
    ino,
    encodeInode(sb, ino, {
      ...fields,
      size: Math.max(fields.size, offset + data.length),
      block: rebuilt.iBlock,
      blocks512: other + (data512 + rebuilt.mapBlocks) * (bs / 512),
      mtime: TIME,
      ctime: TIME,
    }, raw),
  );
}

type Writer = typeof rebuildWrite;

/** Runs `lbs.length` one-block writes, one transaction each; median ms and tree blocks/op. */
async function timeWrites(fs: Fs, ino: number, write: Writer, lbs: number[]) {
  const bs = fs.sb.blockSize;
  const times: number[] = [];
  let metadata = 0;
  const block = new Uint8Array(bs).fill(7);
  for (const lb of lbs) {
    const t0 = performance.now();
    const tx = fs.cache.begin();
    await write({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt, now: TIME }, ino, lb * bs, block);
    metadata += tx.metadataBlocks;
    await tx.commit();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], metadata: metadata / lbs.length };
}

async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-bench-extent-" });
  const rows: BenchRow[] = [];
  try {
    await sh("mkfs.ext4", ["-q", "-F", "-b", "4096", `${dir}/e.img`, `${EXTENTS * 10 + 32768}K`], {
      PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`,
    });
    const base = await makeFs(await Deno.readFile(`${dir}/e.img`));
    // The fragmented file: one block at every other logical block, physically apart.
    let tx = base.cache.begin();
    const ino = await base.alloc.allocateInode(tx, { dir: false, parentGroup: 0 });
    await writeInode(
      tx,
      base.sb,
      base.gdt,
      ino,
      encodeInode(base.sb, ino, {
        mode: 0o100644,
        uid: 0,
        gid: 0,
        size: 0,
        linksCount: 1,
        blocks512: 0,
        flags: InodeFlags.EXTENTS,
        generation: 1,
        atime: TIME,
        ctime: TIME,
        mtime: TIME,
        crtime: TIME,
        dtime: 0,
        fileAcl: 0,
        block: emptyExtentRoot(),
        version: 0,
        projid: 0,
      }),
    );
    await tx.commit();
    const bs = base.sb.blockSize;
    const t0 = performance.now();
    tx = base.cache.begin();
    for (let i = 0; i < EXTENTS; i++) {
      await writeFileRange(
        { tx, alloc: base.alloc, sb: base.sb, gdt: base.gdt, now: TIME },
        ino,
        2 * i * bs,
        new Uint8Array(bs).fill(i),
      );
      if (i % 1000 === 999) {
        await tx.commit();
        tx = base.cache.begin();
      }
    }
    await tx.commit();
    const buildMs = performance.now() - t0;
    const image = base.dev.bytes;
    const rnd = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const cases: [string, (n: number) => number[]][] = [
      [
        "append one block (new extent)",
        (n) => Array.from({ length: n }, (_, i) => 2 * (EXTENTS + i)),
      ],
      ["fill a hole in the middle", (n) => {
        const r = rnd(1);
        return Array.from({ length: n }, () => 2 * Math.floor(r() * EXTENTS) + 1);
      }],
      ["overwrite a mapped block", (n) => {
        const r = rnd(2);
        return Array.from({ length: n }, () => 2 * Math.floor(r() * EXTENTS));
      }],
    ];
    const incremental: Writer = (ctx, i, o, d) => writeFileRange(ctx, i, o, d);
    for (const [name, lbs] of cases) {
      const list = lbs(OPS);
      const now = await timeWrites(await makeFs(image), ino, incremental, list);
      const old = await timeWrites(await makeFs(image), ino, rebuildWrite, list);
      rows.push({
        name: `${name}, ${EXTENTS} extents`,
        ext4ts: now.ms,
        peers: { rebuild: old.ms },
        note: `metadata blocks/op: ${now.metadata.toFixed(1)} vs ${old.metadata.toFixed(1)}`,
      });
    }
    printTable(
      `Extent tree edits vs whole-tree rebuild (median ms per one-block write; building the ${EXTENTS}-extent file took ${
        (buildMs / 1000).toFixed(1)
      } s)`,
      rows,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
