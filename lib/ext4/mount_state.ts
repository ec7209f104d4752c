/**
 * What the superblock says while a filesystem is written, as the kernel's `ext4_setup_super`
 * (read-write mount) and `ext4_put_super` (clean unmount) keep it: before the first write of a
 * writable open (its first commit that changes anything; an open that writes nothing leaves
 * the image as it was, unlike a kernel mount) the mount count goes up, the mount time is set and, without a journal, `VALID_FS` is
 * cleared, all written and flushed before anything else; at a clean close `VALID_FS` is put
 * back as it was at open (a filesystem written unchecked with `force` stays "not clean", as
 * the kernel restores `s_mount_state`), the write time set and the lifetime writes increased. A crash in between leaves a
 * journal-less filesystem "not clean", so `e2fsck -p` checks it and writers refuse it.
 *
 * With a journal `VALID_FS` stays set, as the kernel keeps it: `needs_recovery` is set before
 * the first journaled write and cleared at a clean close, after the journal was checkpointed
 * and marked empty (lib/txn/journal_sink.ts), so a crash in between is replayed by the next
 * mount, e2fsck or `ext4ts journal replay`.
 *
 * Only the primary superblock is written (the kernel does not update the backups either).
 *
 * @module
 */

import type { BlockDevice } from "../block/block_device.ts";
import { Compat, Incompat } from "../ondisk/features.ts";
import { State, type Superblock, SUPERBLOCK_OFFSET } from "../ondisk/superblock.ts";

/** Now, in seconds since the epoch. */
function now(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Writes the primary superblock (checksum updated) straight to the device and flushes: not
 * through a transaction, so that it is on disk before the commit it precedes.
 */
async function writeSuperblock(device: BlockDevice, sb: Superblock): Promise<void> {
  sb.updateChecksum();
  await device.write(SUPERBLOCK_OFFSET, sb.bytes);
  await device.flush();
}

/**
 * Records in the superblock that the filesystem is being written (`ext4_setup_super`):
 * `s_mnt_count` + 1, `s_mtime` = now, and without a journal `VALID_FS` cleared; writes and
 * flushes it. Call before the first other write of a writable open. Returns the state found
 * (the kernel's `s_mount_state`), for {@link markClean}.
 *
 * @example
 * ```ts ignore
 * const found = await markWriting(device, sb); // dumpe2fs: "Filesystem state: not clean"
 * ```
 */
export async function markWriting(device: BlockDevice, sb: Superblock): Promise<number> {
  const found = sb.state;
  sb.mountCount = sb.mountCount + 1;
  sb.mountTime = now();
  if (!(sb.compat & Compat.HAS_JOURNAL)) sb.state = sb.state & ~State.VALID;
  // Journaled: the journal may hold committed transactions from now on until a clean close.
  else sb.incompat = sb.incompat | Incompat.RECOVER;
  await writeSuperblock(device, sb);
  return found;
}

/**
 * Records a clean close (`ext4_put_super`): without a journal `VALID_FS` as in `found` (the
 * state {@link markWriting} found; errors recorded since are kept), `s_wtime` = now,
 * `s_kbytes_written` + what this open wrote (`bytesWritten`, this write included, rounded up
 * to KiB); writes and flushes the superblock. Call after everything else was committed and
 * flushed.
 *
 * @example
 * ```ts ignore
 * await markClean(device, sb, found, counter.bytesWritten); // "Filesystem state: clean"
 * ```
 */
export async function markClean(
  device: BlockDevice,
  sb: Superblock,
  found: number,
  bytesWritten: number,
): Promise<void> {
  if (!(sb.compat & Compat.HAS_JOURNAL)) {
    sb.state = (sb.state & ~State.VALID) | (found & State.VALID);
  } else {
    sb.incompat = sb.incompat & ~Incompat.RECOVER; // the journal was checkpointed and emptied
  }
  sb.writeTime = now();
  sb.kbytesWritten = sb.kbytesWritten + Math.ceil((bytesWritten + sb.bytes.length) / 1024);
  await writeSuperblock(device, sb);
}
