/**
 * Linear directory blocks for the write path: encoding entries, the first block of a new
 * directory ("." and ".."), inserting an entry where a block has room (splitting a record as
 * the kernel does), removing one (merging its record into the previous), and the
 * metadata_csum tail (a fake entry holding crc32c of the block, seeded per inode).
 *
 * @module
 */

import { CorruptError, Ext4Error } from "./errors.ts";
import { Incompat } from "./features.ts";
import {
  DIRENT_TAIL_SIZE,
  DirFileType,
  dirLeafChecksum,
  dirRecLen,
  recLenFromDisk,
  recLenToDisk,
} from "./directory.ts";
import type { Superblock } from "./superblock.ts";

/** One entry to write. */
export interface NewDirEntry {
  /** Inode number the entry points to (`inode`). */
  ino: number;
  /** The name's bytes (1..255 bytes, no '/' or NUL). */
  name: Uint8Array;
  /** A {@link DirFileType} code (ignored without the filetype feature). */
  type: number;
}

/** One entry found in a block. */
export interface DirBlockEntry {
  offset: number;
  ino: number;
  recLen: number;
  name: Uint8Array;
  type: number;
}

function hasFiletype(sb: Superblock): boolean {
  return (sb.incompat & Incompat.FILETYPE) !== 0;
}

function readRecLen(v: DataView, o: number, bs: number): number {
  return recLenFromDisk(v.getUint16(o + 4, true), bs);
}

function writeRecLen(v: DataView, o: number, len: number, bs: number): void {
  v.setUint16(o + 4, recLenToDisk(len, bs), true);
}

/** The usable end of a block: before the checksum tail when metadata_csum is on. */
export function dirBlockEnd(sb: Superblock): number {
  return sb.blockSize - (sb.hasMetadataCsum ? DIRENT_TAIL_SIZE : 0);
}

/**
 * The entries of a linear directory block (including unused ones, inode 0), checked: record
 * lengths must be multiples of 4, hold their name, and tile the block exactly.
 */
export function parseDirBlock(
  sb: Superblock,
  block: Uint8Array,
  where = "directory block",
  end: number = dirBlockEnd(sb),
): DirBlockEntry[] {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const out: DirBlockEntry[] = [];
  let o = 0;
  while (o < end) {
    if (o + 8 > end) throw new CorruptError(where, `entry at ${o} runs past the block`);
    const recLen = readRecLen(v, o, sb.blockSize);
    const nameLen = hasFiletype(sb) ? block[o + 6] : v.getUint16(o + 6, true);
    if (recLen < 12 || recLen % 4 !== 0 || o + recLen > end || 8 + nameLen > recLen) {
      throw new CorruptError(
        where,
        `bad entry at offset ${o}: rec_len ${recLen}, name_len ${nameLen}`,
      );
    }
    out.push({
      offset: o,
      ino: v.getUint32(o, true),
      recLen,
      name: block.slice(o + 8, o + 8 + nameLen),
      type: hasFiletype(sb) ? block[o + 7] : 0,
    });
    o += recLen;
  }
  return out;
}

function putEntry(
  sb: Superblock,
  block: Uint8Array,
  o: number,
  recLen: number,
  e: NewDirEntry,
): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(o, e.ino, true);
  writeRecLen(v, o, recLen, sb.blockSize);
  if (hasFiletype(sb)) {
    block[o + 6] = e.name.length;
    block[o + 7] = e.type;
  } else {
    v.setUint16(o + 6, e.name.length, true);
  }
  block.set(e.name, o + 8);
  // Zero the padding so identical directories have identical bytes.
  block.fill(0, o + 8 + e.name.length, o + dirRecLen(e.name.length));
}

function checkName(name: Uint8Array): void {
  if (name.length === 0 || name.length > 255) {
    throw new Ext4Error("NAME_TOO_LONG", `a name must be 1..255 bytes, got ${name.length}`);
  }
  if (name.includes(0) || name.includes(0x2f)) {
    throw new Ext4Error("INVALID", "a name cannot hold NUL or '/'");
  }
}

/** An empty directory block: one unused entry spanning it, and the tail. */
export function emptyDirBlock(sb: Superblock): Uint8Array {
  const block = new Uint8Array(sb.blockSize);
  const v = new DataView(block.buffer);
  writeRecLen(v, 0, dirBlockEnd(sb), sb.blockSize);
  initTail(sb, block);
  return block;
}

/**
 * A directory block holding `entries` packed from its start, in the order given (the last
 * record spans the rest of the block), with the metadata_csum tail (checksum not yet set);
 * or null when they do not fit. Linear time, unlike repeated {@link insertDirEntry} calls.
 *
 * @example
 * ```ts ignore
 * const block = packDirBlock(sb, sortedByHash) ?? split();
 * setDirBlockChecksum(sb, dirIno, dirGeneration, block);
 * ```
 */
export function packDirBlock(sb: Superblock, entries: NewDirEntry[]): Uint8Array | null {
  const end = dirBlockEnd(sb);
  let total = 0;
  for (const e of entries) {
    checkName(e.name);
    total += dirRecLen(e.name.length);
  }
  if (total > end) return null;
  if (entries.length === 0) return emptyDirBlock(sb);
  const block = new Uint8Array(sb.blockSize);
  let o = 0;
  entries.forEach((e, i) => {
    const len = i === entries.length - 1 ? end - o : dirRecLen(e.name.length);
    putEntry(sb, block, o, len, e);
    o += len;
  });
  initTail(sb, block);
  return block;
}

/** The first block of a new directory: "." and "..", the rest free. */
export function newDirectoryBlock(sb: Superblock, ino: number, parentIno: number): Uint8Array {
  const block = new Uint8Array(sb.blockSize);
  putEntry(sb, block, 0, 12, { ino, name: new Uint8Array([0x2e]), type: DirFileType.DIR });
  putEntry(sb, block, 12, dirBlockEnd(sb) - 12, {
    ino: parentIno,
    name: new Uint8Array([0x2e, 0x2e]),
    type: DirFileType.DIR,
  });
  initTail(sb, block);
  return block;
}

function initTail(sb: Superblock, block: Uint8Array): void {
  if (!sb.hasMetadataCsum) return;
  const o = sb.blockSize - DIRENT_TAIL_SIZE;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(o, 0, true);
  v.setUint16(o + 4, DIRENT_TAIL_SIZE, true);
  block[o + 6] = 0;
  block[o + 7] = DirFileType.DIR_CSUM;
  v.setUint32(o + 8, 0, true);
}

/**
 * Inserts an entry into a linear block where it fits: an unused entry large enough, or the
 * slack after a live entry (which is split). Returns false when the block has no room.
 * Throws `EXISTS` if the name is already there.
 *
 * @example
 * ```ts ignore
 * const block = await tx.getWritable(dirBlock);
 * if (!insertDirEntry(sb, block, { ino, name, type: DirFileType.REG_FILE })) { ... add a block ... }
 * setDirBlockChecksum(sb, dirIno, dirGeneration, block);
 * ```
 */
export function insertDirEntry(
  sb: Superblock,
  block: Uint8Array,
  entry: NewDirEntry,
  end: number = dirBlockEnd(sb),
): boolean {
  checkName(entry.name);
  const need = dirRecLen(entry.name.length);
  // Allocation-free (this runs for every entry created): the checking scan first, then the
  // first slot that fits, on the structure the scan validated.
  const scan = scanDirBlock(sb, block, entry.name, "directory block", end);
  if (scan.ino) {
    throw new Ext4Error("EXISTS", `${new TextDecoder().decode(entry.name)} already exists`);
  }
  if (!scan.room) return false;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const filetype = hasFiletype(sb);
  for (let o = 0; o < end;) {
    const recLen = readRecLen(v, o, sb.blockSize);
    const ino = v.getUint32(o, true);
    if (ino === 0 && recLen >= need) {
      putEntry(sb, block, o, recLen, entry);
      return true;
    }
    const used = ino === 0 ? 0 : dirRecLen(filetype ? block[o + 6] : v.getUint16(o + 6, true));
    if (ino !== 0 && recLen - used >= need) {
      writeRecLen(v, o, used, sb.blockSize);
      putEntry(sb, block, o + used, recLen - used, entry);
      return true;
    }
    o += recLen;
  }
  return false;
}

/**
 * One allocation-free pass over a block: the inode of the live entry named `name` (0 if
 * none) and whether an entry of that name's length would fit. Structure errors are
 * CorruptError as in {@link parseDirBlock}.
 */
export function scanDirBlock(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  where = "directory block",
  end: number = dirBlockEnd(sb),
): { ino: number; room: boolean } {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const need = dirRecLen(name.length);
  const filetype = hasFiletype(sb);
  let room = false;
  let o = 0;
  while (o < end) {
    if (o + 8 > end) throw new CorruptError(where, `entry at ${o} runs past the block`);
    const recLen = readRecLen(v, o, sb.blockSize);
    const nameLen = filetype ? block[o + 6] : v.getUint16(o + 6, true);
    if (recLen < 12 || recLen % 4 !== 0 || o + recLen > end || 8 + nameLen > recLen) {
      throw new CorruptError(
        where,
        `bad entry at offset ${o}: rec_len ${recLen}, name_len ${nameLen}`,
      );
    }
    const ino = v.getUint32(o, true);
    if (ino === 0) {
      if (recLen >= need) room = true;
    } else {
      if (recLen - dirRecLen(nameLen) >= need) room = true;
      if (nameLen === name.length) {
        let same = true;
        for (let i = 0; i < nameLen; i++) {
          if (block[o + 8 + i] !== name[i]) {
            same = false;
            break;
          }
        }
        if (same) return { ino, room };
      }
    }
    o += recLen;
  }
  return { ino: 0, room };
}

/** True when an entry with a name of `nameLen` bytes fits in the block (see {@link insertDirEntry}). */
export function dirBlockHasRoom(entries: DirBlockEntry[], nameLen: number): boolean {
  const need = dirRecLen(nameLen);
  return entries.some((e) =>
    e.ino === 0 ? e.recLen >= need : e.recLen - dirRecLen(e.name.length) >= need
  );
}

/**
 * Removes the entry named `name`: merged into the previous entry's record, or (the first
 * entry of the block) marked unused. Returns the removed entry's inode, or 0 if absent.
 */
export function removeDirEntry(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  end: number = dirBlockEnd(sb),
): number {
  const entries = parseDirBlock(sb, block, "directory block", end);
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.ino === 0 || !sameName(e.name, name)) continue;
    if (i === 0) {
      v.setUint32(e.offset, 0, true);
    } else {
      const prev = entries[i - 1];
      writeRecLen(v, prev.offset, prev.recLen + e.recLen, sb.blockSize);
      block.fill(0, e.offset, e.offset + 8 + e.name.length);
    }
    return e.ino;
  }
  return 0;
}

/**
 * Points the live entry `name` at another inode (and file type) in place. Returns the inode
 * it pointed to, or 0 if there is no such entry.
 */
export function retargetDirEntry(
  sb: Superblock,
  block: Uint8Array,
  name: Uint8Array,
  ino: number,
  type: number,
  end: number = dirBlockEnd(sb),
): number {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  for (const e of parseDirBlock(sb, block, "directory block", end)) {
    if (e.ino === 0 || !sameName(e.name, name)) continue;
    v.setUint32(e.offset, ino, true);
    if (hasFiletype(sb)) block[e.offset + 7] = type;
    return e.ino;
  }
  return 0;
}

function sameName(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Stores the tail checksum of a linear directory block (no-op without metadata_csum). */
export function setDirBlockChecksum(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): void {
  if (!sb.hasMetadataCsum) return;
  const o = sb.blockSize - DIRENT_TAIL_SIZE;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (v.getUint16(o + 4, true) !== DIRENT_TAIL_SIZE || block[o + 7] !== DirFileType.DIR_CSUM) {
    throw new CorruptError(`directory block of inode ${ino}`, "no checksum tail");
  }
  v.setUint32(o + 8, dirLeafChecksum(sb, ino, generation, block), true);
}

/** True when the tail checksum matches (always true without metadata_csum). */
export function dirBlockChecksumValid(
  sb: Superblock,
  ino: number,
  generation: number,
  block: Uint8Array,
): boolean {
  if (!sb.hasMetadataCsum) return true;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return v.getUint32(sb.blockSize - 4, true) === dirLeafChecksum(sb, ino, generation, block);
}
