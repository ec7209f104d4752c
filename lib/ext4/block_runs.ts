/**
 * What building a file's block map asks of the allocator: runs of physical blocks. Declared
 * apart from lib/ext4/alloc.ts (whose `Allocator` satisfies `BlockRunAllocator`), because the
 * allocator reads the journal's extent tree to keep its blocks out of reach: with this module
 * between them, allocation and extent trees do not import each other.
 *
 * @module
 */

import type { Transaction } from "../txn/transaction.ts";

/** A run of physical blocks. */
export interface Extent {
  /** First physical block of the run. */
  readonly start: number;
  /** Number of blocks in the run. */
  readonly length: number;
}

/** Options for {@link BlockRunAllocator.allocateBlocks}. */
export interface AllocateBlocksOptions {
  /** Look for one run of the whole count first (file data); else take free runs in order. */
  contiguousPreferred?: boolean;
  /**
   * Leave the superblock's reserved blocks (`s_r_blocks_count`) free, as the kernel does for
   * users other than root and the reserved uid/gid. Default false (root).
   */
  keepReserved?: boolean;
}

/** Allocates runs of blocks in a transaction (lib/ext4/alloc.ts `Allocator` is the one). */
export interface BlockRunAllocator {
  /** `count` blocks near `goal`, as one or more runs. */
  allocateBlocks(
    tx: Transaction,
    goal: number,
    count: number,
    options?: AllocateBlocksOptions,
  ): Promise<Extent[]>;
}
