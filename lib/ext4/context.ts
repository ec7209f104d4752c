/**
 * The one operation context: what every write operation inside a transaction works with
 * (the kernel passes `handle_t` and reaches the rest through the inode's superblock).
 *
 * @module
 */

import type { Allocator } from "./alloc.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import type { InodeTime } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/** Everything an operation inside a transaction needs. */
export interface OpContext {
  /** The transaction every block write goes through. */
  tx: Transaction;
  /** Block and inode allocator for the transaction. */
  alloc: Allocator;
  /** The filesystem's superblock. */
  sb: Superblock;
  /** The group descriptor table (free counts, bitmaps, inode tables). */
  gdt: GroupDescriptorTable;
  /** Time stamped on what changes (default: now). */
  now?: InodeTime;
  /**
   * The caller knows every name it creates is new (e.g. copying a host directory into a new
   * one): the lookup before creating is skipped. A taken name still fails (EXISTS) when the
   * entry is added, then discarding the transaction.
   */
  newNames?: boolean;
  /**
   * Give new inodes the ACLs their directory's default ACL implies, as the kernel does
   * (lib/acl_inherit.ts; default true). `put` turns it off: it copies the host's own ACLs.
   */
  inheritAcls?: boolean;
  /**
   * Stamp a directory's mtime and ctime when an entry is added to it (default true). `put`
   * turns it off: it sets every directory's times once, after its children, so a stamp per
   * entry would be an inode write per entry that is overwritten anyway.
   */
  dirTimes?: boolean;
}
