/**
 * Orphan cleanup right after a journal replay (`journal replay`, the in-memory overlay, probe's
 * dry run): the inodes the replayed filesystem lists as orphans are released as e2fsck does
 * right after its replay, so the result matches `e2fsck -E journal_only` block for block.
 * Without it the replayed filesystem keeps allocated blocks of files no directory reaches,
 * which `e2fsck -fn` reports.
 *
 * This is no second orphan implementation: the one of lib/ext4/orphan.ts (`processOrphans`,
 * with its `e2fsck` option) runs in a transaction over the replayed view of the device, with a
 * release-only allocator, and the transaction's commit is captured instead of written — its
 * blocks are what the replay writes last (or the overlay serves). Nothing here writes.
 *
 * @module
 */

import { type BlockDevice, checkRange } from "../block/block_device.ts";
import { Ext4Error } from "../errors.ts";
import { RoCompat } from "../ondisk/features.ts";
import { readGroupDescriptors } from "../ondisk/group_descriptor.ts";
import { Superblock } from "../ondisk/superblock.ts";
import { BlockCache, type CommitBatch, type Transaction } from "../txn/transaction.ts";
import { Allocator } from "./alloc.ts";
import { processOrphans } from "./orphan.ts";

/** Result of {@link releaseOrphans}. */
export interface OrphanCleanup {
  /** Blocks changed, with their new contents. */
  blocks: Map<number, Uint8Array>;
  /** Inodes released (freed or truncated), in list order. */
  released: number[];
  /** Blocks freed (their contents are no longer meaningful). */
  freed: number[];
  /** Why the orphan list was left for the kernel (or dropped), when it was. */
  skipped?: string;
}

/** The allocator of the cleanup: release only, and it notes every block it frees. */
class RecordingAllocator extends Allocator {
  readonly freedBlocks: number[] = [];

  override async freeBlocks(
    tx: Transaction,
    start: number,
    count: number,
    options: { metadata?: boolean } = {},
  ): Promise<void> {
    await super.freeBlocks(tx, start, count, options);
    for (let i = 0; i < count; i++) this.freedBlocks.push(start + i);
  }
}

/**
 * The replayed filesystem as a device for a block cache: reads come from `readBlock`; nothing
 * is ever written to it (the cleanup's commit is captured by its sink).
 */
function replayedView(sb: Superblock, readBlock: (block: number) => Promise<Uint8Array>) {
  const bs = sb.blockSize;
  const device: BlockDevice = {
    size: sb.blocksCount * bs,
    sectorSize: 512,
    readOnly: false,
    async read(offset: number, buffer: Uint8Array): Promise<void> {
      checkRange(device.size, offset, buffer.length);
      for (let at = 0; at < buffer.length;) {
        const block = Math.floor((offset + at) / bs);
        const from = (offset + at) % bs;
        const n = Math.min(bs - from, buffer.length - at);
        buffer.set((await readBlock(block)).subarray(from, from + n), at);
        at += n;
      }
    },
    write: () => Promise.reject(new Ext4Error("READ_ONLY", "the replayed view is not written")),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  return device;
}

/**
 * Releases the orphan inodes of a replayed filesystem. `sb` is the superblock to be written
 * (its free counts, `s_last_orphan` and orphan_present are updated in place); `readBlock` reads
 * the filesystem as replayed; `now` is the deletion time stamped. Nothing is written: the
 * changed blocks are returned (the superblock's block aside: `sb` holds its changes).
 *
 * @example
 * ```ts ignore
 * const r = await releaseOrphans(sb, (n) => readReplayed(n), Math.floor(Date.now() / 1000));
 * for (const [block, data] of r.blocks) await dev.write(block * sb.blockSize, data);
 * ```
 */
export async function releaseOrphans(
  sb: Superblock,
  readBlock: (block: number) => Promise<Uint8Array>,
  now: number,
): Promise<OrphanCleanup> {
  const none = (skipped?: string): OrphanCleanup => ({
    blocks: new Map(),
    released: [],
    freed: [],
    ...(skipped ? { skipped } : {}),
  });
  if (sb.lastOrphan === 0 && !(sb.roCompat & RoCompat.ORPHAN_PRESENT)) return none();
  const bs = sb.blockSize;
  let batch: CommitBatch | undefined;
  const cache = new BlockCache(replayedView(sb, readBlock), bs, {
    sink: { commit: (b) => Promise.resolve(void (batch ??= b)) },
  });
  // A working copy: what a refused cleanup changed in memory (or recorded) is dropped.
  const work = new Superblock(sb.bytes.slice());
  let done;
  let alloc: RecordingAllocator;
  let before: { blocks: number; inodes: number };
  try {
    alloc = new RecordingAllocator(work, await readGroupDescriptors(cache.device, work), {
      releaseOnly: true,
    });
    before = { blocks: alloc.freeBlockCount, inodes: alloc.freeInodeCount };
    const tx = cache.begin();
    const ctx = { tx, alloc, sb: work, gdt: alloc.gdt, now: { sec: now, nsec: 0 } };
    done = await processOrphans(ctx, { e2fsck: true });
    // Left to the kernel: the transaction was discarded (and whatever the allocator recorded
    // about the damage went to the working copies only). Dropped (errors): it commits.
    if (tx.state !== "open") return none(done.skipped);
    await tx.commit();
  } catch (e) {
    if (e instanceof Ext4Error) return none(e.message);
    throw e;
  }
  // The superblock's free counts go up by what was freed, as e2fsck's do (the allocator sets
  // the sums of the descriptors, which a crashed kernel's superblock may not hold).
  const ratio = sb.clusterSize / bs;
  const blocksFreed = (alloc.freeBlockCount - before.blocks) * ratio;
  const inodesFreed = alloc.freeInodeCount - before.inodes;
  const free = { blocks: sb.freeBlocksCount, inodes: sb.freeInodesCount };
  sb.bytes.set(work.bytes);
  sb.freeBlocksCount = free.blocks + blocksFreed;
  sb.freeInodesCount = free.inodes + inodesFreed;
  const sbBlock = Math.floor(1024 / bs);
  const blocks = new Map<number, Uint8Array>();
  for (const m of batch?.metadata ?? []) if (m.block !== sbBlock) blocks.set(m.block, m.bytes);
  for (const d of batch?.data ?? []) {
    for (let i = 0; i * bs < d.bytes.length; i++) {
      blocks.set(d.block + i, d.bytes.subarray(i * bs, (i + 1) * bs));
    }
  }
  return {
    blocks,
    released: done.released,
    freed: alloc.freedBlocks,
    ...(done.skipped ? { skipped: done.skipped } : {}),
  };
}
