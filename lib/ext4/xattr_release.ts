/**
 * Letting go of an xattr block (the kernel's `ext4_xattr_release_block()`): an inode stops
 * using it, so its reference count drops, and the block is freed with the last reference. Used
 * when an inode's attributes move to another block (lib/ext4/xattr.ts) and when an inode is
 * released (lib/ext4/unlink.ts), the kernel's way or e2fsck's.
 *
 * @module
 */

import type { Allocator } from "./alloc.ts";
import { CorruptError } from "../errors.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";
import {
  setXattrBlockRefcount,
  XATTR_MAGIC,
  XATTR_REFCOUNT_MAX,
  xattrBlockChecksum,
  xattrBlockHeader,
} from "../ondisk/xattr.ts";
import { xattrBlockIndex } from "./xattr_share.ts";

/**
 * Drops one reference to xattr block `block` (an inode stops using it): the count is
 * lowered, or the block freed when it was the last. The block must be a valid xattr block
 * header (CorruptError otherwise, nothing freed).
 *
 * With `e2fsck`, as e2fsck's orphan release does it (`ext2fs_adjust_ea_refcount3()`): a block
 * outside the filesystem is let go without freeing anything, the checksum is verified (under
 * metadata_csum), and the last reference writes the count 0 into the block it frees (the
 * kernel frees it as it is).
 *
 * @example
 * ```ts ignore
 * if (fields.fileAcl) await releaseXattrBlock(tx, alloc, sb, fields.fileAcl);
 * ```
 */
export async function releaseXattrBlock(
  tx: Transaction,
  alloc: Allocator,
  sb: Superblock,
  block: number,
  options: { e2fsck?: boolean } = {},
): Promise<void> {
  if (block < sb.firstDataBlock || block >= sb.blocksCount) {
    if (options.e2fsck) return;
    throw new CorruptError(`xattr block ${block}`, "outside the filesystem");
  }
  const img = await tx.read(block);
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  if (v.getUint32(0, true) !== XATTR_MAGIC || v.getUint32(8, true) !== 1) {
    throw new CorruptError(`xattr block ${block}`, "invalid header");
  }
  if (
    options.e2fsck && sb.hasMetadataCsum &&
    v.getUint32(16, true) !== xattrBlockChecksum(sb, block, img)
  ) {
    throw new CorruptError(`xattr block ${block}`, "checksum mismatch");
  }
  const { refcount, hash } = xattrBlockHeader(img);
  const index = xattrBlockIndex(tx);
  if (options.e2fsck && refcount <= 1) {
    index.remove(hash, block);
    setXattrBlockRefcount(sb, block, await tx.getWritable(block), 0);
    await alloc.freeBlocks(tx, block, 1); // its new image is written: not forgotten
    return;
  }
  if (refcount > 1) {
    setXattrBlockRefcount(sb, block, await tx.getWritable(block), refcount - 1);
    if (refcount - 1 < XATTR_REFCOUNT_MAX) index.add(hash, block);
  } else {
    index.remove(hash, block);
    await alloc.freeBlocks(tx, block, 1, { metadata: true });
  }
}
