/**
 * The orphan list: inodes unlinked while still open (or being truncated) are chained from the
 * superblock's `s_last_orphan` through their `i_dtime`, so that recovery (the kernel at mount,
 * e2fsck) frees them after a crash. The orphan_file feature is not written yet: filesystems
 * that have it are refused here with a clear reason.
 *
 * @module
 */

import { Compat } from "./features.ts";
import { CorruptError, Ext4Error } from "./errors.ts";
import type { GroupDescriptorTable } from "./group_descriptor.ts";
import { decodeInode, encodeInode, readInodeRaw, writeInode } from "./inode_write.ts";
import type { Superblock } from "./superblock.ts";
import type { Transaction } from "./transaction.ts";

const LAST_ORPHAN = 0xe8;

function lastOrphan(sb: Superblock): number {
  return new DataView(sb.bytes.buffer, sb.bytes.byteOffset).getUint32(LAST_ORPHAN, true);
}

function setLastOrphan(tx: Transaction, sb: Superblock, ino: number): void {
  tx.guard(sb.bytes);
  new DataView(sb.bytes.buffer, sb.bytes.byteOffset).setUint32(LAST_ORPHAN, ino, true);
  tx.beforeCommit("superblock:orphan", async () => {
    sb.updateChecksum();
    const bs = sb.blockSize;
    await tx.patch(Math.floor(1024 / bs), 1024 % bs, sb.bytes);
  });
}

function checkSupported(sb: Superblock): void {
  if (sb.compat & Compat.ORPHAN_FILE) {
    throw new Ext4Error("UNSUPPORTED", "the orphan_file feature is not written yet");
  }
}

/** The inodes on the orphan list, head first (bounded; a loop is a CorruptError). */
export async function listOrphans(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
): Promise<number[]> {
  const out: number[] = [];
  const seen = new Set<number>();
  let ino = lastOrphan(sb);
  while (ino !== 0) {
    if (ino < 1 || ino > sb.inodesCount || seen.has(ino)) {
      throw new CorruptError("orphan list", `bad or repeated inode ${ino}`);
    }
    seen.add(ino);
    out.push(ino);
    ino = decodeInode(sb, await readInodeRaw(tx, sb, gdt, ino)).dtime;
  }
  return out;
}

/**
 * Puts inode `ino` at the head of the orphan list (its `i_dtime` points at the old head).
 *
 * @example
 * ```ts ignore
 * await addOrphan(tx, sb, gdt, ino); // unlinked while open
 * ```
 */
export async function addOrphan(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<void> {
  checkSupported(sb);
  if ((await listOrphans(tx, sb, gdt)).includes(ino)) return;
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const f = decodeInode(sb, raw);
  await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, dtime: lastOrphan(sb) }, raw));
  setLastOrphan(tx, sb, ino);
}

/** Takes inode `ino` off the orphan list (when it is released or linked again). */
export async function removeOrphan(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<void> {
  checkSupported(sb);
  const list = await listOrphans(tx, sb, gdt);
  const at = list.indexOf(ino);
  if (at < 0) throw new Ext4Error("NOT_FOUND", `inode ${ino} is not on the orphan list`);
  const raw = await readInodeRaw(tx, sb, gdt, ino);
  const f = decodeInode(sb, raw);
  const next = f.dtime;
  await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, dtime: 0 }, raw));
  if (at === 0) {
    setLastOrphan(tx, sb, next);
  } else {
    const prev = list[at - 1];
    const praw = await readInodeRaw(tx, sb, gdt, prev);
    const pf = decodeInode(sb, praw);
    await writeInode(tx, sb, gdt, prev, encodeInode(sb, prev, { ...pf, dtime: next }, praw));
  }
}
