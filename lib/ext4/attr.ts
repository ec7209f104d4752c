/**
 * An inode's attributes as `stat(2)` reports them ({@link Ext4Stat}): what the `Ext4` facade
 * returns and what an open writable file asks its filesystem for.
 *
 * @module
 */

import type { FileType, Timespec } from "../ondisk/inode.ts";

/** What `stat` returns: the kernel's `struct stat` for an inode. */
export interface Ext4Stat {
  /** Inode number. */
  ino: number;
  /** Kind of object. */
  type: FileType;
  /** Full st_mode: type bits and permissions. */
  mode: number;
  /** Hard link count. */
  nlink: number;
  /** uid and gid including their high 16 bits. */
  uid: number;
  /** Group id (with its high half). */
  gid: number;
  /** Size in bytes (a symlink: its target's length). */
  size: number;
  /** st_blocks, in 512-byte units. */
  blocks: number;
  /** Devices only; 0/0 otherwise. */
  rdev: { major: number; minor: number };
  /** Last access. */
  atime: Timespec;
  /** Last data modification. */
  mtime: Timespec;
  /** Last inode change. */
  ctime: Timespec;
  /** Creation time, null when the inode has no room for it. */
  birthtime: Timespec | null;
  /** `i_flags`. */
  flags: number;
  /** `i_generation`. */
  generation: number;
}
