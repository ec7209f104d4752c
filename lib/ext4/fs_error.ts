/**
 * Recording an inconsistency in the superblock, as the kernel's `ext4_error` does
 * (`save_error_info` + `ext4_commit_super`): `ERROR_FS` in `s_state`, `s_error_count`, the
 * first error's fields if none is recorded yet, and the last error's time, inode, block,
 * function (a 32-byte name) and error code. e2fsck reads them, dumpe2fs shows them, and the
 * next writer refuses the filesystem until e2fsck has cleared them (or is forced).
 *
 * The record is written in a transaction of its own, after the failed operation's transaction
 * was discarded: the operation leaves nothing behind, the error survives.
 *
 * @module
 */

import { State, type Superblock } from "../ondisk/superblock.ts";
import type { BlockCache, Transaction } from "../txn/transaction.ts";

/** `s_*_error_errcode` values (the kernel's `EXT4_ERR_*`). */
export const ErrorCode = {
  UNKNOWN: 1,
  EIO: 2,
  EFSCORRUPTED: 5,
} as const;

/** One inconsistency, as `ext4_error_inode` records it. */
export interface FsErrorInfo {
  /** The function that found it (truncated to 32 bytes, as the kernel's strncpy). */
  func: string;
  /** The inode concerned, 0 for none. */
  ino?: number;
  /** The block concerned, 0 for none. */
  block?: number;
  /** A line number (ext4ts records 0: it has no meaningful one). */
  line?: number;
  /** Seconds since the epoch (default: now). */
  time?: number;
  /** An {@link ErrorCode} (default EFSCORRUPTED). */
  errcode?: number;
}

/**
 * Records `info` in the in-memory superblock (not written; see {@link persistFsError}).
 *
 * @example
 * ```ts ignore
 * saveFsError(sb, { func: "allocateInode", ino: 11 });
 * console.log(sb.state & State.ERROR, sb.errorCount); // 2 1
 * ```
 */
export function saveFsError(sb: Superblock, info: FsErrorInfo): void {
  const time = info.time ?? Math.floor(Date.now() / 1000);
  const errcode = info.errcode ?? ErrorCode.EFSCORRUPTED;
  sb.state = sb.state | State.ERROR;
  sb.lastErrorTime = time;
  sb.lastErrorIno = info.ino ?? 0;
  sb.lastErrorBlock = info.block ?? 0;
  sb.lastErrorFunc = info.func;
  sb.lastErrorLine = info.line ?? 0;
  sb.lastErrorErrcode = errcode;
  if (sb.firstErrorTime === 0) {
    sb.firstErrorTime = time;
    sb.firstErrorIno = info.ino ?? 0;
    sb.firstErrorBlock = info.block ?? 0;
    sb.firstErrorFunc = info.func;
    sb.firstErrorLine = info.line ?? 0;
    sb.firstErrorErrcode = errcode;
  }
  sb.errorCount = (sb.errorCount + 1) >>> 0;
}

/**
 * Records `info` in the superblock and writes the primary superblock (with its checksum) in a
 * transaction of its own on `cache`. No transaction may be open on the cache: discard the
 * failed operation's first. A failure to write is swallowed (the caller is already failing
 * with the inconsistency, which matters more).
 *
 * @example
 * ```ts ignore
 * tx.abort();
 * await persistFsError(tx.cache, sb, { func: "allocateBlocks", block: 4711 });
 * throw new CorruptError("block bitmap of group 0", "…");
 * ```
 */
export async function persistFsError(
  cache: BlockCache,
  sb: Superblock,
  info: FsErrorInfo,
): Promise<void> {
  try {
    const tx = cache.begin();
    await tx.discardOnError(async () => {
      await recordFsError(tx, sb, info);
      await tx.commit();
    });
  } catch { /* the device refuses writes: the error is still reported to the caller */ }
}

/**
 * Records `info` in the superblock and puts the primary superblock (with its checksum) into
 * transaction `tx` (what {@link persistFsError} commits on its own).
 *
 * @example
 * ```ts ignore
 * await writer.transaction((ctx) => recordFsError(ctx.tx, ctx.sb, { func: "write", ino: 12 }));
 * ```
 */
export async function recordFsError(
  tx: Transaction,
  sb: Superblock,
  info: FsErrorInfo,
): Promise<void> {
  saveFsError(sb, info);
  sb.updateChecksum();
  const bs = sb.blockSize;
  await tx.patchUnshared(Math.floor(1024 / bs), 1024 % bs, sb.bytes);
}

/** Errors already recorded in the superblock by the code that found them. */
const recorded = new WeakSet<Error>();

/**
 * Marks `error` as recorded in the superblock (see {@link wasRecorded}); returns it.
 *
 * @example
 * ```ts ignore
 * throw markRecorded(new CorruptError("block bitmap of group 0", "…"));
 * ```
 */
export function markRecorded<E extends Error>(error: E): E {
  recorded.add(error);
  return error;
}

/**
 * True when `error` was recorded in the superblock already (the allocator records its own).
 *
 * @example
 * ```ts ignore
 * if (!wasRecorded(e)) await persistFsError(cache, sb, info);
 * ```
 */
export function wasRecorded(error: unknown): boolean {
  return error instanceof Error && recorded.has(error);
}
