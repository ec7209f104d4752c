/**
 * Finding the journal of a filesystem: the internal journal inode (`s_journal_inum`,
 * normally 8) mapped through its extent tree or block map, or an external journal device
 * whose ext4 superblock UUID must match `s_journal_uuid`. Both become a
 * {@link JournalStore} for recovery.
 *
 * @module
 */

import { type BlockDevice, readBytes, writeBlockRuns } from "../block/block_device.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { Compat, Incompat, RoCompat } from "../ondisk/features.ts";
import { type GroupDescriptorTable, readGroupDescriptors } from "../ondisk/group_descriptor.ts";
import { EXT4_MAGIC, formatUuid, isZero, Superblock } from "../ondisk/superblock.ts";
import { crc32c } from "../ondisk/checksum.ts";
import { type Inode, Mode } from "../ondisk/inode.ts";
import { readInode } from "./inode.ts";
import { readExtentTree } from "./extents.ts";
import { readBlockMap } from "./indirect.ts";
import { type BlockRun, findRun } from "./file_map.ts";
import type { JournalStore } from "../jbd2/journal_store.ts";
import { type JournalSuperblock, parseJournalSuperblock } from "../jbd2/superblock.ts";

/**
 * Maps the journal inode's logical blocks to filesystem blocks, through the reader's inode,
 * extent tree and block map modules (so the journal gets the same validation as any file:
 * checksums, cycles, bounds).
 *
 * The returned function throws {@link CorruptError} for a block past the end or a hole.
 *
 * @example
 * ```ts ignore
 * const { map } = await journalBlockMapper(device, sb);
 * console.log(map(0)); // the filesystem block holding the journal superblock
 * ```
 */
export async function journalBlockMapper(
  device: BlockDevice,
  sb: Superblock,
  ino = sb.journalInum,
  groups?: GroupDescriptorTable,
): Promise<{ map: (logical: number) => number; blocks: number; inode: Inode }> {
  if (ino < 1 || ino > sb.inodesCount) {
    throw new CorruptError("superblock", `journal inode ${ino} is out of range`);
  }
  const table = groups ?? await readGroupDescriptors(device, sb);
  const inode = await readInode(device, sb, table, ino);
  const bs = sb.blockSize;
  const { runs, blocks } = await journalInodeRuns(
    sb,
    inode,
    (b) => readBytes(device, b * bs, bs),
  );
  const where = `journal inode ${ino}`;
  const map = (logical: number): number => {
    if (!Number.isInteger(logical) || logical < 0 || logical >= blocks) {
      throw new CorruptError(where, `journal block ${logical} is beyond its ${blocks} blocks`);
    }
    const i = findRun(runs, logical);
    const run = i < 0 ? undefined : runs[i];
    if (!run || logical >= run.logical + run.length || run.unwritten) {
      throw new CorruptError(where, `journal block ${logical} is a hole`);
    }
    return run.physical + (logical - run.logical);
  };
  return { map, blocks, inode };
}

/**
 * Checks that `inode` can be a journal (not deleted, a regular file of a plausible size) and
 * maps its blocks through its extent tree or block map: the runs, and its size in blocks.
 * Shared by the journal's reader and the allocator, which keeps new blocks off the journal.
 *
 * @example
 * ```ts ignore
 * const { runs } = await journalInodeRuns(sb, inode, (b) => readBytes(device, b * bs, bs));
 * ```
 */
export async function journalInodeRuns(
  sb: Superblock,
  inode: Inode,
  readBlock: (block: number) => Promise<Uint8Array>,
): Promise<{ runs: BlockRun[]; blocks: number }> {
  const ino = inode.ino;
  const where = `journal inode ${ino}`;
  if (inode.linksCount === 0) throw new CorruptError(where, "the journal inode is deleted");
  if ((inode.mode & Mode.IFMT) !== Mode.IFREG) {
    throw new CorruptError(where, `not a regular file (mode 0o${inode.mode.toString(8)})`);
  }
  const blocks = Math.floor(inode.size / sb.blockSize);
  if (blocks > 2 ** 26) throw new CorruptError(where, `size ${inode.size} is implausible`);
  const runs: BlockRun[] = inode.usesExtents
    ? await readExtentTree(sb, inode, readBlock)
    : await readBlockMap(sb, { ino, iBlock: inode.iBlock, size: inode.size }, readBlock);
  return { runs, blocks };
}

/** Chunks a {@link ChunkedReader} keeps. */
const CACHED_CHUNKS = 16;

/**
 * Reads journal blocks in chunks of 128 KiB (physically contiguous runs in one read each),
 * keeping the last few chunks: recovery reads the log sequentially, three times. Holes are
 * noted per chunk when it is read, so a block read costs a map lookup and a copy.
 *
 * 128 KiB is the largest read the device does synchronously, and larger reads measured
 * slower. The buffer of an evicted chunk is reused for the next one: fresh buffers for the
 * ~200 MiB a large replay reads cost more in page faults and garbage collection than the
 * reads themselves.
 */
class ChunkedReader {
  readonly #device: BlockDevice;
  readonly #bs: number;
  readonly #blocks: number;
  readonly #map: (n: number) => number;
  readonly #per: number;
  readonly #chunks = new Map<number, { data: Uint8Array; holes?: Set<number> }>();
  /** The buffer of the last chunk evicted, for the next load. */
  #spare?: Uint8Array;

  constructor(device: BlockDevice, bs: number, blocks: number, map: (n: number) => number) {
    this.#device = device;
    this.#bs = bs;
    this.#blocks = blocks;
    this.#map = map;
    this.#per = Math.max(1, Math.floor(131072 / bs));
  }

  /** Journal block `n`, a copy. */
  async read(n: number): Promise<Uint8Array> {
    return (await this.peek(n)).slice();
  }

  /**
   * Journal block `n` as a view into its chunk; callers must not modify it. The view stays
   * as it was while at most 15 other chunks are read after its own (then its buffer may be
   * reused: use it before reading far away, or copy it); a write drops the chunk without
   * reusing its buffer.
   */
  async peek(n: number): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 0 || n >= this.#blocks) this.#map(n); // throws
    const bs = this.#bs;
    const c = Math.floor(n / this.#per);
    const chunk = this.#chunks.get(c) ?? await this.#load(c);
    if (chunk.holes?.has(n)) this.#map(n); // throws: the block is a hole
    const off = (n - c * this.#per) * bs;
    return chunk.data.subarray(off, off + bs);
  }

  /**
   * Journal block `n` read on its own when its chunk is not at hand (a view when it is),
   * for a lone block away from the log (the fast-commit area's head).
   */
  async peekOne(n: number): Promise<Uint8Array> {
    const c = Math.floor(n / this.#per);
    if (this.#chunks.has(c)) return await this.peek(n);
    const p = this.#map(n); // throws for a block past the end or a hole
    const data = new Uint8Array(this.#bs);
    await this.#device.read(p * this.#bs, data);
    return data;
  }

  async #load(c: number): Promise<{ data: Uint8Array; holes?: Set<number> }> {
    const bs = this.#bs;
    const data = this.#spare ?? new Uint8Array(this.#per * bs);
    this.#spare = undefined;
    let holes: Set<number> | undefined;
    const first = c * this.#per;
    const end = Math.min(first + this.#per, this.#blocks);
    for (let i = first; i < end;) {
      const p = this.#physical(i);
      if (p < 0) {
        (holes ??= new Set()).add(i);
        i++;
        continue;
      }
      let k = 1;
      while (i + k < end && this.#physical(i + k) === p + k) k++;
      await this.#device.read(p * bs, data.subarray((i - first) * bs, (i - first + k) * bs));
      i += k;
    }
    const chunk = { data, holes };
    this.#chunks.set(c, chunk);
    if (this.#chunks.size > CACHED_CHUNKS) {
      const oldest = this.#chunks.keys().next().value!;
      this.#spare = this.#chunks.get(oldest)!.data;
      this.#chunks.delete(oldest);
    }
    return chunk;
  }

  invalidate(n: number): void {
    this.#chunks.delete(Math.floor(n / this.#per));
  }

  #physical(i: number): number {
    try {
      return this.#map(i);
    } catch {
      return -1;
    }
  }
}

/** The journal of a filesystem, ready for recovery. */
export interface LocatedJournal {
  /** Reads and writes journal blocks (the inode's blocks or the external device). */
  store: JournalStore;
  /** The journal superblock, parsed. */
  jsb: JournalSuperblock;
  /** True for an external journal device. */
  external: boolean;
}

/** Options for {@link locateJournal}. */
export interface LocateJournalOptions {
  /** The external journal device, for filesystems whose journal lives elsewhere. */
  journalDevice?: BlockDevice;
  /** Its name, for messages. */
  journalDeviceName?: string;
  /**
   * The group descriptors, when the caller has read them already (a 16 TiB filesystem has
   * 8 MiB of them): saves reading them again to find the journal inode.
   */
  groups?: GroupDescriptorTable;
}

/**
 * Finds and opens the journal of a filesystem and validates its superblock as the kernel
 * does before recovery. Throws `UNSUPPORTED`/`CORRUPT`/`INVALID` with the reason the kernel
 * would give.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/superblock.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store, jsb } = await locateJournal(device, await readSuperblock(device));
 * console.log(jsb.sequence, jsb.start, store.description); // 1 0 inode 8
 * await Deno.remove(img);
 * ```
 */
export async function locateJournal(
  device: BlockDevice,
  sb: Superblock,
  options: LocateJournalOptions = {},
): Promise<LocatedJournal> {
  if (!(sb.compat & Compat.HAS_JOURNAL)) {
    throw new Ext4Error("INVALID", "the filesystem has no journal (has_journal is not set)");
  }
  const bs = sb.blockSize;
  let store: JournalStore;
  let external = false;
  if (sb.journalInum !== 0 && !options.journalDevice) {
    const { map, blocks } = await journalBlockMapper(device, sb, sb.journalInum, options.groups);
    const ino = sb.journalInum;
    const reader = new ChunkedReader(device, bs, blocks, map);
    store = {
      blockSize: bs,
      blockCount: blocks,
      description: `inode ${ino}`,
      readBlock: (n) => reader.read(n),
      peekBlock: (n) => reader.peek(n),
      peekOneBlock: (n) => reader.peekOne(n),
      writeBlock: async (n, data) => {
        reader.invalidate(n);
        await device.write(map(n) * bs, data);
      },
      writeBlocks: async (n, data) => {
        data.forEach((_, i) => reader.invalidate(n + i));
        await writeBlockRuns(device, bs, data.map((bytes, i) => ({ block: map(n + i), bytes })));
      },
      flush: () => device.flush(),
      fsBlock: (n) => map(n),
    };
  } else {
    if (!options.journalDevice) {
      if (!isZero(sb.journalUuid)) {
        throw new Ext4Error(
          "INVALID",
          `the journal is on an external device (UUID ${formatUuid(sb.journalUuid)}): ` +
            `give it with --journal-dev`,
        );
      }
      throw new CorruptError("superblock", "has_journal is set but there is no journal inode");
    }
    store = await externalJournalStore(sb, options.journalDevice, options.journalDeviceName);
    external = true;
  }
  const block0 = await store.readBlock(0);
  const jsb = parseJournalSuperblock(block0, { blockSize: bs, totalBlocks: store.blockCount });
  if (external) {
    if (jsb.nrUsers !== 1) {
      throw new Ext4Error(
        "UNSUPPORTED",
        `external journal has ${jsb.nrUsers} users; only journals with one user are supported`,
      );
    }
    if (jsb.isV2 && !jsb.users.some((u) => equalBytes(u, sb.uuid))) {
      throw new CorruptError(
        "external journal",
        `it does not list this filesystem (UUID ${formatUuid(sb.uuid)}) as a user`,
      );
    }
  }
  return { store, jsb, external };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The journal store of an external journal device: its ext4 superblock (journal_dev) at
 * byte 1024 must carry the UUID in the filesystem's `s_journal_uuid`; the journal
 * superblock is in the block after that superblock, log blocks are device blocks.
 */
async function externalJournalStore(
  sb: Superblock,
  dev: BlockDevice,
  name = "external journal",
): Promise<JournalStore> {
  const bs = sb.blockSize;
  if (dev.size < 2048) throw new CorruptError(name, "too small to hold a superblock");
  const jdsb = new Superblock(await readBytes(dev, 1024, 1024));
  if (jdsb.magic !== EXT4_MAGIC || !(jdsb.incompat & Incompat.JOURNAL_DEV)) {
    throw new CorruptError(name, "bad superblock: not an external journal device");
  }
  if (
    (jdsb.roCompat & RoCompat.METADATA_CSUM) &&
    crc32c(0xffffffff, jdsb.bytes.subarray(0, 0x3fc)) !== jdsb.checksum
  ) {
    throw new CorruptError(name, "the external journal has a corrupt superblock (bad checksum)");
  }
  if (!equalBytes(jdsb.uuid, sb.journalUuid)) {
    throw new CorruptError(
      name,
      `journal UUID does not match (device ${formatUuid(jdsb.uuid)}, filesystem expects ${
        formatUuid(sb.journalUuid)
      })`,
    );
  }
  if (jdsb.blockSize !== bs) {
    throw new CorruptError(
      name,
      `block size ${jdsb.blockSize} differs from the filesystem's ${bs}`,
    );
  }
  const start = Math.floor(1024 / bs) + 1;
  const len = jdsb.blocksCount;
  const devBlocks = Math.floor(dev.size / bs);
  // The journal superblock sits at `start`, but jbd2 does not offset the log: log block n
  // of an external journal is device block n (s_first is absolute, e.g. 2 with 4 KiB
  // blocks). Journal block 0 here stands for the superblock.
  const check = (n: number) => {
    const block = n === 0 ? start : n;
    if (!Number.isInteger(n) || n < 0 || n >= len || block >= devBlocks) {
      throw new CorruptError(name, `journal block ${n} is beyond the device`);
    }
    return block * bs;
  };
  const reader = new ChunkedReader(dev, bs, len, (n) => check(n) / bs);
  return {
    blockSize: bs,
    blockCount: len,
    description: `external journal ${name}`,
    readBlock: (n) => reader.read(n),
    peekBlock: (n) => reader.peek(n),
    peekOneBlock: (n) => reader.peekOne(n),
    writeBlock: async (n, data) => {
      reader.invalidate(n);
      await dev.write(check(n), data);
    },
    flush: () => dev.flush(),
    fsBlock: () => undefined,
  };
}
