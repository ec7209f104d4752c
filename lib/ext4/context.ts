/**
 * What every operation on a file's data inside a transaction works with ({@link FileContext}):
 * the writers of extents, inline data and block maps all take it.
 *
 * @module
 */

import type { Allocator } from "../alloc.ts";
import type { GroupDescriptorTable } from "../group_descriptor.ts";
import type { InodeTime } from "../ondisk/inode.ts";
import type { Superblock } from "../superblock.ts";
import type { Transaction } from "../transaction.ts";

/** What every file operation needs. */
export interface FileContext {
  /** The transaction every block write goes through. */
  tx: Transaction;
  /** Block and inode allocator for the transaction. */
  alloc: Allocator;
  /** The filesystem's superblock. */
  sb: Superblock;
  /** The group descriptor table (free counts, bitmaps, inode tables). */
  gdt: GroupDescriptorTable;
  /** The time to stamp as mtime/ctime (default: now). */
  now?: InodeTime;
}
