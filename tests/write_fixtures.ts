/**
 * Shared machinery of the write-path tests: images made by mkfs over a feature matrix,
 * loaded into memory with the allocator's state, and e2fsck runs whose output is parsed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Allocator } from "../lib/ext4/alloc.ts";
import { insertDirEntry, setDirBlockChecksum } from "../lib/ondisk/dirent.ts";
import { readFileMap } from "../lib/ext4/file_map_write.ts";
import { decodeInode, encodeInode, type InodeFields, type InodeTime } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { type GroupDescriptorTable, readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { readSuperblock, Superblock } from "../lib/ondisk/superblock.ts";
import { Compat, Incompat } from "../lib/ondisk/features.ts";
import { locateJournal } from "../lib/ext4/journal.ts";
import type { WriteLogEntry } from "../lib/block/write_log_device.ts";
import { BlockCache, type Transaction } from "../lib/txn/transaction.ts";
import { run, runOk } from "./helpers.ts";

/** One filesystem layout of the matrix. */
export interface Layout {
  name: string;
  mkfs: string;
  args: string[];
  size: string;
}

// Small groups (-g) so that every layout has several groups, flex groups and backups.
export const LAYOUTS: Layout[] = [
  { name: "ext2", mkfs: "mkfs.ext2", args: ["-b", "4096", "-g", "2048"], size: "48M" },
  { name: "ext3", mkfs: "mkfs.ext3", args: ["-b", "4096", "-g", "2048"], size: "48M" },
  { name: "ext4", mkfs: "mkfs.ext4", args: ["-b", "4096", "-g", "2048"], size: "48M" },
  { name: "ext4-1k", mkfs: "mkfs.ext4", args: ["-b", "1024"], size: "40M" },
  {
    name: "ext4-^metadata_csum",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "2048", "-O", "^metadata_csum"],
    size: "48M",
  },
  {
    name: "ext4-^64bit",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "2048", "-O", "^64bit"],
    size: "48M",
  },
  {
    name: "ext4-uninit_bg",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "2048", "-O", "^metadata_csum,uninit_bg"],
    size: "48M",
  },
  {
    name: "ext4-^flex_bg",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "2048", "-O", "^flex_bg"],
    size: "48M",
  },
  {
    name: "ext4-meta_bg",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"],
    size: "24M",
  },
  {
    name: "ext4-inline_data",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "2048", "-O", "inline_data"],
    size: "48M",
  },
];

/** Tools every image test needs. */
export const IMAGE_TOOLS = ["mkfs.ext4", "e2fsck", "dumpe2fs"];

/** Makes an image with mkfs in `dir` and returns its bytes. */
export async function mkfsImage(
  dir: string,
  layout: Layout,
  extra: string[] = [],
): Promise<Uint8Array> {
  const path = `${dir}/${layout.name.replace(/[^a-z0-9-]/gi, "_")}.img`;
  await Deno.remove(path).catch(() => {});
  await runOk(layout.mkfs, [
    "-q",
    "-F",
    "-E",
    "lazy_itable_init=1",
    ...layout.args,
    ...extra,
    path,
    layout.size,
  ], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  const bytes = await Deno.readFile(path);
  await Deno.remove(path);
  return bytes;
}

/** A filesystem loaded into memory, ready for transactions. */
export interface LoadedFs {
  dev: MemoryBlockDevice;
  sb: Superblock;
  gdt: GroupDescriptorTable;
  cache: BlockCache;
  alloc: Allocator;
}

/** Loads a copy of `image` (or uses `dev` as given). */
export async function loadFs(image: Uint8Array | MemoryBlockDevice): Promise<LoadedFs> {
  const dev = image instanceof MemoryBlockDevice
    ? image
    : new MemoryBlockDevice(Uint8Array.from(image));
  const sb = await readSuperblock(dev);
  const gdt = await readGroupDescriptors(dev, sb);
  const cache = new BlockCache(dev, sb.blockSize);
  return { dev, sb, gdt, cache, alloc: new Allocator(sb, gdt) };
}

/** The fields of a test file's inode; the rest are fixed (uid/gid 0, no xattr block). */
export interface TestInode {
  mode: number;
  size: number;
  generation: number;
  /** atime, ctime, mtime and crtime alike. */
  time: InodeTime;
  blocks512: number;
  flags: number;
  /** `i_block`, e.g. `writeNewFileData(...).iBlock`. */
  block: Uint8Array;
  /** Hard links (default 1). */
  links?: number;
}

/**
 * The full inode fields of a test file.
 *
 * @example
 * ```ts ignore
 * encodeInode(sb, ino, testInodeFields({ mode: 0o100644, size: 0, generation, time, ...data }));
 * ```
 */
export function testInodeFields(f: TestInode): InodeFields {
  return {
    mode: f.mode,
    uid: 0,
    gid: 0,
    size: f.size,
    linksCount: f.links ?? 1,
    blocks512: f.blocks512,
    flags: f.flags,
    generation: f.generation,
    atime: f.time,
    ctime: f.time,
    mtime: f.time,
    crtime: f.time,
    dtime: 0,
    fileAcl: 0,
    block: f.block,
    version: 0,
    projid: 0,
  };
}

/**
 * Writes inode `ino` of a test file with the write path.
 *
 * @example
 * ```ts ignore
 * await writeTestInode(fs, tx, ino, { mode: 0o100644, size: 0, generation, time, ...data });
 * ```
 */
export async function writeTestInode(
  fs: LoadedFs,
  tx: Transaction,
  ino: number,
  f: TestInode,
): Promise<void> {
  await writeInode(
    tx,
    fs.sb,
    fs.gdt,
    ino,
    encodeInode(fs.sb, ino, testInodeFields(f)),
  );
}

/**
 * The root directory's first block, writable in `tx`, and the root's generation.
 *
 * @example
 * ```ts ignore
 * const { block, generation } = await rootBlock(fs, tx);
 * ```
 */
export async function rootBlock(
  fs: LoadedFs,
  tx: Transaction,
): Promise<{ block: Uint8Array; generation: number }> {
  const root = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, 2));
  const map = await readFileMap(tx, fs.sb, 2, root);
  return { block: await tx.getWritable(map.extents[0].physical), generation: root.generation };
}

/**
 * Links inode `ino` as /NAME into the root directory's first block (which must have room)
 * and updates its checksum.
 *
 * @example
 * ```ts ignore
 * await linkIntoRoot(fs, tx, "a", ino, DirFileType.REG_FILE);
 * ```
 */
export async function linkIntoRoot(
  fs: LoadedFs,
  tx: Transaction,
  name: string,
  ino: number,
  type: number,
): Promise<void> {
  const { block, generation } = await rootBlock(fs, tx);
  assert.ok(insertDirEntry(fs.sb, block, { ino, name: new TextEncoder().encode(name), type }));
  setDirBlockChecksum(fs.sb, 2, generation, block);
}

/**
 * e2fsck -fn on the bytes; returns the exit code and output. An image whose journal needs
 * recovery (a journaled filesystem still being written, or a crash image) is checked as a
 * recovery sees it: see {@link fsckAfterRecovery} (e2fsck -n alone skips the replay and would
 * check stale home blocks).
 */
export function fsck(
  dir: string,
  bytes: Uint8Array,
): Promise<{ code: number; output: string }> {
  return fsckAfterRecovery(dir, bytes);
}

/**
 * e2fsck -fn of the bytes as a recovery sees them: when the journal needs recovery (a crash
 * image of a journaled filesystem), e2fsck replays it first (`-E journal_only`, which must
 * succeed; it also releases orphans, as after a crash); returns the check's exit code and the
 * output of both.
 */
export async function fsckAfterRecovery(
  dir: string,
  bytes: Uint8Array,
): Promise<{ code: number; output: string }> {
  const path = `${dir}/fsck-${crypto.randomUUID()}.img`;
  await Deno.writeFile(path, bytes);
  try {
    const sb = new Superblock(bytes.slice(1024, 2048));
    let replayed = "";
    if (sb.incompat & Incompat.RECOVER) {
      const replay = await run("e2fsck", ["-fy", "-E", "journal_only", path]);
      replayed =
        `journal replay (e2fsck -E journal_only): exit ${replay.code}\n${replay.stdout}${replay.stderr}\n`;
      if (replay.code > 1) return { code: replay.code, output: replayed };
    }
    const r = await run("e2fsck", ["-fn", path]);
    return { code: r.code, output: replayed + r.stdout + r.stderr };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** What e2fsck -fn reported, sorted by kind. */
export interface FsckReport {
  /** Blocks e2fsck would mark free ("-N") and used ("+N"). */
  blockMinus: number[];
  blockPlus: number[];
  inodeMinus: number[];
  inodePlus: number[];
  /** "Free blocks count wrong for group #G (X, counted=Y)" → G: [X, Y]. */
  groupFreeBlocks: Map<number, [number, number]>;
  groupFreeInodes: Map<number, [number, number]>;
  groupDirs: Map<number, [number, number]>;
  /** Superblock totals: [stored, counted]. */
  freeBlocks?: [number, number];
  freeInodes?: [number, number];
  /** Every other line that is not a pass header, a summary or a "Fix? no". */
  other: string[];
}

function expandDiffs(text: string): { minus: number[]; plus: number[] } {
  const minus: number[] = [];
  const plus: number[] = [];
  for (const m of text.matchAll(/([+-])(?:\((\d+)--(\d+)\)|(\d+))/g)) {
    const list = m[1] === "-" ? minus : plus;
    const a = Number(m[2] ?? m[4]);
    const b = Number(m[3] ?? m[4]);
    for (let i = a; i <= b; i++) list.push(i);
  }
  return { minus, plus };
}

/** Parses e2fsck -fn output. */
export function parseFsck(output: string): FsckReport {
  const r: FsckReport = {
    blockMinus: [],
    blockPlus: [],
    inodeMinus: [],
    inodePlus: [],
    groupFreeBlocks: new Map(),
    groupFreeInodes: new Map(),
    groupDirs: new Map(),
    other: [],
  };
  // Difference lists may wrap over several lines until "Fix? no".
  const text = output.replace(/\n(?=\s+[+-][(\d])/g, " ");
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    let m;
    if ((m = line.match(/^Block bitmap differences:\s*(.*)$/))) {
      const d = expandDiffs(m[1]);
      r.blockMinus.push(...d.minus);
      r.blockPlus.push(...d.plus);
    } else if ((m = line.match(/^Inode bitmap differences:\s*(.*)$/))) {
      const d = expandDiffs(m[1]);
      r.inodeMinus.push(...d.minus);
      r.inodePlus.push(...d.plus);
    } else if (
      (m = line.match(/^Free blocks count wrong for group #(\d+) \((\d+), counted=(\d+)\)/))
    ) {
      r.groupFreeBlocks.set(Number(m[1]), [Number(m[2]), Number(m[3])]);
    } else if (
      (m = line.match(/^Free inodes count wrong for group #(\d+) \((\d+), counted=(\d+)\)/))
    ) {
      r.groupFreeInodes.set(Number(m[1]), [Number(m[2]), Number(m[3])]);
    } else if (
      (m = line.match(/^Directories count wrong for group #(\d+) \((\d+), counted=(\d+)\)/))
    ) {
      r.groupDirs.set(Number(m[1]), [Number(m[2]), Number(m[3])]);
    } else if ((m = line.match(/^Free blocks count wrong \((\d+), counted=(\d+)\)/))) {
      r.freeBlocks = [Number(m[1]), Number(m[2])];
    } else if ((m = line.match(/^Free inodes count wrong \((\d+), counted=(\d+)\)/))) {
      r.freeInodes = [Number(m[1]), Number(m[2])];
    } else if (
      /^Pass \d/.test(line) || /^Fix\? no$/.test(line) || /^e2fsck \d/.test(line) ||
      /: \d+\/\d+ files .* blocks$/.test(line) ||
      /^Warning: skipping journal recovery/.test(line) ||
      /WARNING: Filesystem still has errors/.test(line) || /^\*+$/.test(line) ||
      /^[^ ]+: \*+ WARNING/.test(line)
    ) {
      continue;
    } else {
      r.other.push(line);
    }
  }
  return r;
}

/** The filesystem blocks of the image's internal journal, or null without one. */
export async function journalBlocks(image: Uint8Array): Promise<Set<number> | null> {
  const dev = new MemoryBlockDevice(Uint8Array.from(image));
  const sb = await readSuperblock(dev);
  if (!(sb.compat & Compat.HAS_JOURNAL)) return null;
  const { store } = await locateJournal(dev, sb);
  const out = new Set<number>();
  for (let n = 0; n < store.blockCount; n++) out.add(store.fsBlock(n)!);
  return out;
}

/**
 * A commit's metadata, counted between the flushes of a write log (entries `[from, to)`):
 * without a journal, the blocks written in place; with one (`journal`, from
 * {@link journalBlocks}), the blocks logged (the journal's checkpoints write home what many
 * commits logged, at once). One number per flush interval.
 */
export function blocksPerFlush(
  entries: readonly WriteLogEntry[],
  journal: Set<number> | null,
  blockSize: number,
  from = 0,
  to = entries.length,
): number[] {
  const out: number[] = [0];
  for (const e of entries.slice(from, to)) {
    if (e.kind === "flush") out.push(0);
    else if (!journal || journal.has(Math.floor(e.offset / blockSize))) {
      out[out.length - 1] += e.data.length / blockSize;
    }
  }
  return out;
}
