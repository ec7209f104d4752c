/**
 * Reading a directory's entries: iteration over every entry of a directory — block-based
 * (linear or hash-indexed, read linearly) or inline (in the inode) — through a
 * {@link DirectorySource}, the directory as the reader core (or a transaction) provides its
 * blocks. The records themselves are lib/ondisk/dirent.ts's.
 *
 * Resume cookies: each `DirRecord` carries `offset`, the logical byte position just after
 * the entry; {@link iterateDirectory} resumes at any such position.
 *
 * @module
 */

import { CorruptError } from "../errors.ts";
import {
  type DirBlockLocation,
  type DirContext,
  type DirRecord,
  isIndexedDirectory,
  parseDirectoryBlockPositioned,
  parseInlineDirectoryPositioned,
  type PositionedRecord,
  stripPosition,
} from "../ondisk/dirent.ts";

/**
 * The blocks of a directory, from wherever the caller reads them: the reader's caches or a
 * write transaction (which must see its own changes). Everything that walks a directory's
 * blocks (iteration, the htree probe, name lookup) reads through this.
 */
export interface DirBlocks {
  /** The directory's inode number (seeds metadata_csum block checksums). */
  ino: number;
  /** The directory's `i_generation` (seeds metadata_csum block checksums). */
  generation: number;
  /** `i_size`. */
  size: number;
  /** Reads logical block `logical`; null for a hole. */
  readBlock(logical: number): Promise<Uint8Array | null>;
}

/** A directory as the parsers see it; the reader core builds it from the inode. */
export interface DirectorySource extends DirBlocks {
  /** Block size in bytes. */
  blockSize: number;
  /** For inline directories: the 60 bytes of `i_block` followed by the system.data value. */
  inlineData: Uint8Array | null;
  /** The inode has the INDEX flag (EXT4_INDEX_FL). */
  isHtree: boolean;
  /** Optional: `i_flags`, so lookups can refuse casefolded or encrypted-casefolded dirs. */
  flags?: number;
  /**
   * Optional: the first mapped logical block >= `from`, or null when none is left. Lets
   * iteration jump over holes instead of asking for every block of a sparse directory.
   */
  nextMappedBlock?(from: number): Promise<number | null>;
}

/**
 * Iterates every live entry of a directory, "." and ".." included, in on-disk order.
 * Block directories are read block by block (holes skipped, index blocks of hash-indexed
 * directories contributing only "." and ".."); inline directories are read from
 * `dir.inlineData`, with "." and ".." synthesized as the kernel's readdir does.
 *
 * `from` resumes after an entry: pass the `offset` of the last entry seen, and iteration
 * continues with the entries that start at or after that position.
 *
 * With `onCorruptBlock`, a block that fails its checks is reported to it and skipped, as the
 * kernel's readdir does; without it the CorruptError propagates.
 *
 * @example
 * ```ts ignore
 * for await (const e of iterateDirectory(dir, { sb })) console.log(e.ino, e.name);
 * ```
 */
export async function* iterateDirectory(
  dir: DirectorySource,
  ctx: DirContext,
  from = 0,
  onCorruptBlock?: (error: CorruptError) => void,
): AsyncGenerator<DirRecord> {
  if (dir.inlineData) {
    for (const r of parseInlineDirectoryPositioned(dir.inlineData, dir.ino, ctx)) {
      if (r.pos >= from) yield stripPosition(r);
    }
    return;
  }
  for await (const { block, loc } of directoryBlocks(dir, ctx, Math.floor(from / dir.blockSize))) {
    let records: PositionedRecord[];
    try {
      records = parseDirectoryBlockPositioned(block, ctx, loc);
    } catch (e) {
      // The kernel's readdir reports a corrupt block and goes on with the next one.
      if (!(e instanceof CorruptError) || !onCorruptBlock) throw e;
      onCorruptBlock(e);
      records = [];
    }
    for (const r of records) {
      if (r.pos >= from) yield stripPosition(r);
    }
  }
}

/** One block of a block directory and where it is (what its checks are seeded with). */
export interface DirectoryBlock {
  /** The block's bytes. */
  block: Uint8Array;
  /** The directory, the block's logical number, and whether the directory is hash-indexed. */
  loc: DirBlockLocation;
}

/**
 * The blocks of a block directory (not inline) in logical order from block `fromLogical`,
 * holes skipped: what {@link iterateDirectory} parses, and what a lookup searches one block at
 * a time (lib/ext4/lookup.ts) without decoding every entry. Refuses (CorruptError) a block
 * size other than the filesystem's, an impossible size, or a block map that goes backwards.
 *
 * @example
 * ```ts ignore
 * for await (const { block, loc } of directoryBlocks(dir, { sb })) console.log(loc.logical);
 * ```
 */
export async function* directoryBlocks(
  dir: DirectorySource,
  ctx: DirContext,
  fromLogical = 0,
): AsyncGenerator<DirectoryBlock> {
  const bs = dir.blockSize;
  if (bs !== ctx.sb.blockSize) {
    throw new CorruptError(
      `directory inode ${dir.ino}`,
      `block size ${bs} does not match the filesystem's ${ctx.sb.blockSize}`,
    );
  }
  if (!Number.isSafeInteger(dir.size) || dir.size < 0) {
    throw new CorruptError(`directory inode ${dir.ino}`, `impossible size ${dir.size}`);
  }
  const blocks = Math.ceil(dir.size / bs);
  const htree = isIndexedDirectory(ctx.sb, dir.isHtree);
  let logical = Math.max(0, fromLogical);
  while (logical < blocks) {
    if (dir.nextMappedBlock) {
      const next = await dir.nextMappedBlock(logical);
      if (next === null || next >= blocks) return;
      if (!Number.isSafeInteger(next) || next < logical) {
        throw new CorruptError(
          `directory inode ${dir.ino}`,
          `block map went backwards at ${logical}`,
        );
      }
      logical = next;
    }
    const block = await dir.readBlock(logical);
    if (block) {
      yield { block, loc: { ino: dir.ino, generation: dir.generation, logical, isHtree: htree } };
    }
    logical++;
  }
}
