/**
 * Orphan cleanup after journal replay: the inodes on the `s_last_orphan` list that were
 * unlinked while still open are deleted, as e2fsck does right after its replay
 * (`release_orphan_inodes()`) and the kernel on its first read-write mount. Without it the
 * replayed filesystem keeps allocated blocks of files no directory reaches, which `e2fsck
 * -fn` reports.
 *
 * What is done matches e2fsck 1.47 byte for byte on the blocks that stay in use: every block
 * of the inode (data, extent tree or indirect blocks) is freed in the block bitmaps, the
 * inode in the inode bitmap, the group descriptors' counts and checksums follow, the inode
 * gets its deletion time (the inode is not otherwise rewritten, as e2fsck leaves it), and
 * `s_last_orphan` is cleared.
 *
 * Orphans still linked are pending truncates: the blocks past `i_size` are freed (regular
 * files with an in-inode extent tree). Cases left to the kernel (the list is kept
 * untouched, and the reason reported): other pending truncates, quota, and any
 * inconsistency in the list. Xattr blocks lose a reference and are freed with the last. With bigalloc, clusters are freed.
 *
 * @module
 */

import { crc32c } from "../ondisk/checksum.ts";
import { Compat, RoCompat } from "../ondisk/features.ts";
import {
  descriptorBlockLocation,
  GroupDescriptor,
  groupDescriptorChecksum,
  GroupFlags,
} from "../ondisk/group_descriptor.ts";
import { InodeFlags, inodeTableSlot, Mode, setInodeChecksum } from "../ondisk/inode.ts";
import { ORPHAN_BLOCK_MAGIC, orphanBlockChecksum } from "../ondisk/orphan_file.ts";
import { State, type Superblock } from "../ondisk/superblock.ts";

/** Result of {@link releaseOrphans}. */
export interface OrphanCleanup {
  /** Blocks changed, with their new contents. */
  blocks: Map<number, Uint8Array>;
  /** Inodes deleted. */
  released: number[];
  /** Blocks freed (their contents are no longer meaningful). */
  freed: number[];
  /** Why the orphan list was left for the kernel, when it was. */
  skipped?: string;
}

const EXTENT_MAGIC = 0xf30a;

class Skip extends Error {}

/**
 * Deletes the orphan inodes of a replayed filesystem. `sb` is the superblock to be written
 * (its free counts and `s_last_orphan` are updated in place); `readBlock` reads the
 * filesystem as replayed. Nothing is written: the changed blocks are returned.
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
  const result: OrphanCleanup = { blocks: new Map(), released: [], freed: [] };
  const sbView = new DataView(sb.bytes.buffer, sb.bytes.byteOffset, 1024);
  const first = sb.lastOrphan;
  const orphanPresent = (sb.roCompat & RoCompat.ORPHAN_PRESENT) !== 0;
  if (first === 0 && !orphanPresent) return result;
  if (sb.state & State.ERROR) {
    // Both e2fsck and the kernel drop the list of a filesystem with errors unprocessed.
    sbView.setUint32(0xe8, 0, true);
    result.skipped = "the filesystem has errors: the orphan list was dropped unprocessed";
    return result;
  }
  const bs = sb.blockSize;
  const blocks = result.blocks;
  const get = async (n: number): Promise<Uint8Array> => {
    let b = blocks.get(n);
    if (!b) {
      if (n >= sb.blocksCount) throw new Skip(`block ${n} is outside the filesystem`);
      b = (await readBlock(n)).slice();
      blocks.set(n, b);
    }
    return b;
  };
  const peek = async (n: number): Promise<Uint8Array> => {
    if (n >= sb.blocksCount || n < sb.firstDataBlock) {
      throw new Skip(`block ${n} is outside the filesystem`);
    }
    return blocks.get(n) ?? await readBlock(n);
  };
  try {
    if (sb.roCompat & RoCompat.QUOTA) throw new Skip("quota accounting");

    const descriptor = async (group: number): Promise<GroupDescriptor> => {
      const perBlock = bs / sb.descSize;
      const blk = descriptorBlockLocation(sb, Math.floor(group / perBlock));
      const b = await get(blk);
      const off = (group % perBlock) * sb.descSize;
      return new GroupDescriptor(group, b.subarray(off, off + sb.descSize));
    };
    const inodeLocation = async (ino: number) => {
      const { group, byte } = inodeTableSlot(sb, ino);
      const gd = await descriptor(group);
      return { block: gd.inodeTable + Math.floor(byte / bs), offset: byte % bs };
    };

    // Walk the list first: process nothing unless every orphan can be handled.
    const chain: number[] = [];
    const seen = new Set<number>();
    for (let ino = first; ino !== 0;) {
      if (ino < sb.firstIno || ino > sb.inodesCount) throw new Skip(`illegal orphan inode ${ino}`);
      if (seen.has(ino)) throw new Skip(`the orphan list loops at inode ${ino}`);
      seen.add(ino);
      chain.push(ino);
      const loc = await inodeLocation(ino);
      const raw = await peek(loc.block);
      const v = new DataView(raw.buffer, raw.byteOffset + loc.offset, sb.inodeSize);
      if (v.getUint16(0x1a, true) !== 0) checkTruncatable(ino, v);
      ino = v.getUint32(0x14, true); // i_dtime holds the next orphan
    }

    // The orphan file (orphan_file): inode numbers in each block, then a magic and checksum.
    const orphanBlocks: number[] = [];
    let orphanFile: { ino: number; gen: number } | undefined;
    if (orphanPresent) {
      if (!(sb.compat & Compat.ORPHAN_FILE)) throw new Skip("orphan_present without orphan_file");
      const ofIno = sb.orphanFileInum;
      if (ofIno < 1 || ofIno > sb.inodesCount) throw new Skip(`orphan file inode ${ofIno}`);
      const loc = await inodeLocation(ofIno);
      const raw = await peek(loc.block);
      const iv = new DataView(raw.buffer, raw.byteOffset + loc.offset, sb.inodeSize);
      const size = iv.getUint32(0x4, true) + iv.getUint32(0x6c, true) * 2 ** 32;
      const iBlock = raw.slice(loc.offset + 0x28, loc.offset + 0x28 + 60);
      const owned = await inodeBlocks(
        sb,
        ofIno,
        iv.getUint16(0, true),
        iv.getUint32(0x20, true),
        iBlock,
        iv,
        peek,
      );
      if (size % bs !== 0 || owned.holes || owned.data.length !== size / bs) {
        throw new Skip("the orphan file has holes or a partial block");
      }
      orphanFile = { ino: ofIno, gen: iv.getUint32(0x64, true) };
      const perBlock = (bs - 8) / 4;
      for (const blk of owned.data) {
        const b = await peek(blk);
        const bv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        if (bv.getUint32(bs - 8, true) !== ORPHAN_BLOCK_MAGIC) {
          throw new Skip(`orphan file block ${blk} has a bad magic`);
        }
        if (
          sb.hasMetadataCsum &&
          bv.getUint32(bs - 4, true) !== orphanBlockChecksum(sb, orphanFile, blk, b)
        ) {
          throw new Skip(`orphan file block ${blk} has a bad checksum`);
        }
        let used = false;
        for (let j = 0; j < perBlock; j++) {
          const ino = bv.getUint32(4 * j, true);
          if (ino === 0) continue;
          used = true;
          if (ino < sb.firstIno || ino > sb.inodesCount) {
            throw new Skip(`illegal orphan inode ${ino}`);
          }
          if (seen.has(ino)) throw new Skip(`orphan inode ${ino} is listed twice`);
          seen.add(ino);
          const l = await inodeLocation(ino);
          const r = await peek(l.block);
          const lv = new DataView(r.buffer, r.byteOffset + l.offset, sb.inodeSize);
          if (lv.getUint16(0x1a, true) !== 0) checkTruncatable(ino, lv);
          chain.push(ino);
        }
        if (used) orphanBlocks.push(blk);
      }
    }

    // With bigalloc the bitmaps and group counts are in clusters: free each cluster once.
    const ratio = sb.clusterSize / bs;
    const freedClusters = new Set<number>();
    const freeBlock = async (blk: number, owner: number) => {
      if (blk < sb.firstDataBlock || blk >= sb.blocksCount) {
        throw new Skip(`inode ${owner} maps block ${blk} outside the filesystem`);
      }
      result.freed.push(blk);
      const cluster = Math.floor((blk - sb.firstDataBlock) / ratio);
      if (freedClusters.has(cluster)) return;
      freedClusters.add(cluster);
      const group = Math.floor(cluster / sb.clustersPerGroup);
      const bit = cluster % sb.clustersPerGroup;
      const gd = await descriptor(group);
      if (gd.flags & GroupFlags.BLOCK_UNINIT) {
        throw new Skip(`inode ${owner} maps block ${blk} in uninitialised group ${group}`);
      }
      const bitmap = await get(gd.blockBitmap);
      if (!(bitmap[bit >> 3] & (1 << (bit & 7)))) {
        throw new Skip(`block ${blk} of inode ${owner} is already free`);
      }
      bitmap[bit >> 3] &= ~(1 << (bit & 7));
      gd.freeBlocksCount = gd.freeBlocksCount + 1;
      sb.freeBlocksCount = sb.freeBlocksCount + ratio;
      dirtyGroups.add(group);
    };
    const dirtyGroups = new Set<number>();

    for (const ino of chain) {
      const loc = await inodeLocation(ino);
      const raw = await get(loc.block);
      const inode = raw.subarray(loc.offset, loc.offset + sb.inodeSize);
      const v = new DataView(inode.buffer, inode.byteOffset, inode.byteLength);
      const mode = v.getUint16(0, true);
      const flags = v.getUint32(0x20, true);
      const iBlock = inode.slice(0x28, 0x28 + 60);
      if (v.getUint16(0x1a, true) !== 0) {
        // A pending truncate: free the blocks past i_size, as ext2fs_punch() does.
        for (const b of truncateExtents(sb, v)) await freeBlock(b, ino);
        v.setUint32(0x14, 0, true);
        setInodeChecksum(sb, ino, inode);
        result.released.push(ino);
        continue;
      }
      const owned = await inodeBlocks(sb, ino, mode, flags, iBlock, v, peek);
      for (const b of [...owned.data, ...owned.meta]) await freeBlock(b, ino);
      // The xattr block: one reference less, freed with the last (e2fsck's
      // ext2fs_adjust_ea_refcount3()), and the inode no longer points to it.
      const acl = v.getUint32(0x68, true) + v.getUint16(0x76, true) * 2 ** 32;
      if (acl !== 0) {
        if (acl >= sb.firstDataBlock && acl < sb.blocksCount) {
          const ea = await get(acl);
          const ev = new DataView(ea.buffer, ea.byteOffset, ea.byteLength);
          if (ev.getUint32(0, true) !== EA_MAGIC) {
            throw new Skip(`xattr block ${acl} of inode ${ino} has a bad magic`);
          }
          if (sb.hasMetadataCsum && ev.getUint32(0x10, true) !== eaBlockChecksum(sb, acl, ea)) {
            throw new Skip(`xattr block ${acl} of inode ${ino} has a bad checksum`);
          }
          const refs = ev.getUint32(4, true) - 1;
          ev.setUint32(4, Math.max(0, refs), true);
          if (sb.hasMetadataCsum) ev.setUint32(0x10, eaBlockChecksum(sb, acl, ea), true);
          if (refs <= 0) await freeBlock(acl, ino);
        }
        v.setUint32(0x68, 0, true);
        v.setUint16(0x76, 0, true);
      }
      // The inode itself.
      const group = Math.floor((ino - 1) / sb.inodesPerGroup);
      const bit = (ino - 1) % sb.inodesPerGroup;
      const gd = await descriptor(group);
      const ibitmap = await get(gd.inodeBitmap);
      ibitmap[bit >> 3] &= ~(1 << (bit & 7));
      gd.freeInodesCount = gd.freeInodesCount + 1;
      if ((mode & Mode.IFMT) === Mode.IFDIR) gd.usedDirsCount = Math.max(0, gd.usedDirsCount - 1);
      gd.flags = gd.flags & ~GroupFlags.INODE_UNINIT;
      sb.freeInodesCount = sb.freeInodesCount + 1;
      dirtyGroups.add(group);
      v.setUint32(0x14, now >>> 0, true);
      setInodeChecksum(sb, ino, inode);
      result.released.push(ino);
    }

    for (const group of dirtyGroups) {
      const gd = await descriptor(group);
      if (sb.hasMetadataCsum) {
        const gv = new DataView(gd.bytes.buffer, gd.bytes.byteOffset, gd.bytes.byteLength);
        const bb = await get(gd.blockBitmap);
        const bsum = crc32c(sb.csumSeed, bb.subarray(0, sb.clustersPerGroup / 8));
        gv.setUint16(0x18, bsum & 0xffff, true);
        if (sb.descSize >= 0x3c) gv.setUint16(0x38, bsum >>> 16, true);
        // An uninitialised inode bitmap keeps its (zero) checksum, as e2fsck leaves it.
        if (!(gd.flags & GroupFlags.INODE_UNINIT)) {
          const ib = await get(gd.inodeBitmap);
          const isum = crc32c(sb.csumSeed, ib.subarray(0, sb.inodesPerGroup / 8));
          gv.setUint16(0x1a, isum & 0xffff, true);
          if (sb.descSize >= 0x3c) gv.setUint16(0x3a, isum >>> 16, true);
        }
      }
      const sum = groupDescriptorChecksum(sb, gd);
      if (sum !== undefined) gd.checksum = sum;
    }
    // Empty the orphan file blocks used (as the kernel and e2fsck 1.47.1+ do).
    for (const blk of orphanBlocks) {
      const b = await get(blk);
      b.fill(0, 0, bs - 8);
      if (sb.hasMetadataCsum) {
        new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(
          bs - 4,
          orphanBlockChecksum(sb, orphanFile!, blk, b),
          true,
        );
      }
    }
    if (orphanPresent) sbView.setUint32(0x64, sb.roCompat & ~RoCompat.ORPHAN_PRESENT, true);
    sbView.setUint32(0xe8, 0, true);
  } catch (e) {
    if (!(e instanceof Skip)) throw e;
    return { blocks: new Map(), released: [], freed: [], skipped: e.message };
  }
  return result;
}

/**
 * Pending truncates are handled for regular files whose extent tree lives in the inode
 * (depth 0), the common case; anything else is left to the kernel.
 */
function checkTruncatable(ino: number, v: DataView): void {
  const mode = v.getUint16(0, true);
  const flags = v.getUint32(0x20, true);
  const depth = v.getUint16(0x28 + 6, true);
  if (
    (mode & Mode.IFMT) !== Mode.IFREG || !(flags & InodeFlags.EXTENTS) ||
    (flags & InodeFlags.INLINE_DATA) ||
    v.getUint16(0x28, true) !== EXTENT_MAGIC || depth !== 0
  ) {
    throw new Skip(`orphan inode ${ino} is a pending truncate of a kind left to the kernel`);
  }
}

/**
 * Truncates an inode's depth-0 extent tree to its size, in place: extents past the end are
 * dropped from the end of the list (their bytes stay, as ext2fs_punch() leaves them), a
 * straddling extent is shortened, `i_blocks` shrinks. Returns the blocks to free.
 */
function truncateExtents(sb: Superblock, v: DataView): number[] {
  const bs = sb.blockSize;
  const size = v.getUint32(0x4, true) + v.getUint32(0x6c, true) * 2 ** 32;
  const keep = Math.ceil(size / bs);
  const root = 0x28;
  const entries = v.getUint16(root + 2, true);
  const freed: number[] = [];
  let kept = entries;
  for (let i = entries - 1; i >= 0; i--) {
    const o = root + 12 + 12 * i;
    const lblk = v.getUint32(o, true);
    const raw = v.getUint16(o + 4, true);
    const unwritten = raw > 32768;
    const len = unwritten ? raw - 32768 : raw;
    const start = v.getUint16(o + 6, true) * 2 ** 32 + v.getUint32(o + 8, true);
    if (lblk >= keep) {
      for (let k = 0; k < len; k++) freed.push(start + k);
      kept = i;
    } else if (lblk + len > keep) {
      const newLen = keep - lblk;
      for (let k = newLen; k < len; k++) freed.push(start + k);
      v.setUint16(o + 4, unwritten ? newLen + 32768 : newLen, true);
    }
  }
  v.setUint16(root + 2, kept, true);
  // i_blocks counts 512-byte sectors, or filesystem blocks with the huge_file inode flag.
  const unit = v.getUint32(0x20, true) & InodeFlags.HUGE_FILE ? 1 : bs / 512;
  const blocks = v.getUint32(0x1c, true) + v.getUint16(0x74, true) * 2 ** 32 - freed.length * unit;
  v.setUint32(0x1c, Math.max(0, blocks) % 2 ** 32, true);
  v.setUint16(0x74, Math.floor(Math.max(0, blocks) / 2 ** 32), true);
  return freed;
}

/** The blocks an inode owns: data blocks in logical order and mapping blocks. */
interface OwnedBlocks {
  data: number[];
  meta: number[];
  /** True when `data` is not indexed by logical block (holes or unordered extents). */
  holes: boolean;
}

/** Every block an inode owns (data and mapping blocks); none for inline or fast symlinks. */
async function inodeBlocks(
  sb: Superblock,
  ino: number,
  mode: number,
  flags: number,
  iBlock: Uint8Array,
  v: DataView,
  peek: (n: number) => Promise<Uint8Array>,
): Promise<OwnedBlocks> {
  if (flags & InodeFlags.INLINE_DATA) return { data: [], meta: [], holes: false };
  const blocksLo = v.getUint32(0x1c, true);
  const acl = v.getUint32(0x68, true) + v.getUint16(0x76, true) * 2 ** 32;
  const aclSectors = acl !== 0 ? sb.blockSize / 512 : 0;
  if ((mode & Mode.IFMT) === Mode.IFLNK && blocksLo - aclSectors === 0) {
    return { data: [], meta: [], holes: false }; // fast symlink
  }
  const data: number[] = [];
  const meta: number[] = [];
  let holes = false;
  const bs = sb.blockSize;
  const limit = sb.blocksCount;
  if (flags & InodeFlags.EXTENTS) {
    const walk = async (node: Uint8Array, depth: number, level: number): Promise<void> => {
      const nv = new DataView(node.buffer, node.byteOffset, node.byteLength);
      const entries = nv.getUint16(2, true);
      if (nv.getUint16(0, true) !== EXTENT_MAGIC || nv.getUint16(6, true) !== depth || level > 5) {
        throw new Skip(`bad extent tree in orphan inode ${ino}`);
      }
      if (12 + 12 * entries > node.length) throw new Skip(`bad extent header in inode ${ino}`);
      for (let i = 0; i < entries; i++) {
        const o = 12 + 12 * i;
        if (depth === 0) {
          let len = nv.getUint16(o + 4, true);
          if (len > 32768) len -= 32768;
          const start = nv.getUint16(o + 6, true) * 2 ** 32 + nv.getUint32(o + 8, true);
          if (start + len > limit) throw new Skip(`extent outside the filesystem in inode ${ino}`);
          if (nv.getUint32(o, true) !== data.length) {
            // Holes or out-of-order extents: fine for freeing, not for the orphan file.
            holes = true;
          }
          for (let k = 0; k < len; k++) data.push(start + k);
        } else {
          const leaf = nv.getUint32(o + 4, true) + nv.getUint16(o + 8, true) * 2 ** 32;
          meta.push(leaf);
          await walk(await peek(leaf), depth - 1, level + 1);
        }
      }
    };
    await walk(iBlock, new DataView(iBlock.buffer).getUint16(6, true), 0);
  } else {
    const words = new DataView(iBlock.buffer);
    const per = bs / 4;
    const walk = async (blk: number, level: number): Promise<void> => {
      if (blk === 0) {
        holes = true;
        return;
      }
      if (level === 0) {
        data.push(blk);
        return;
      }
      meta.push(blk);
      const b = await peek(blk);
      const bv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let i = 0; i < per; i++) await walk(bv.getUint32(4 * i, true), level - 1);
    };
    for (let i = 0; i < 12; i++) await walk(words.getUint32(4 * i, true), 0);
    await walk(words.getUint32(48, true), 1);
    await walk(words.getUint32(52, true), 2);
    await walk(words.getUint32(56, true), 3);
  }
  const all = [...data, ...meta];
  if (new Set(all).size !== all.length) throw new Skip(`inode ${ino} maps a block twice`);
  return { data, meta, holes };
}

/** `h_magic` of an xattr block. */
const EA_MAGIC = 0xea020000;

/** The checksum of an xattr block: crc32c over its 64-bit number and the block (h_checksum 0). */
function eaBlockChecksum(sb: Superblock, blk: number, b: Uint8Array): number {
  const le64 = new Uint8Array(8);
  const v = new DataView(le64.buffer);
  v.setUint32(0, blk % 2 ** 32, true);
  v.setUint32(4, Math.floor(blk / 2 ** 32), true);
  const copy = b.slice();
  copy.fill(0, 0x10, 0x14);
  return crc32c(crc32c(sb.csumSeed, le64), copy);
}
