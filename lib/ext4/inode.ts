/**
 * Inode records in and out of the inode table: reading one through a device (the reader) or
 * a {@link Transaction} (the write path), and writing one through a transaction. The record
 * itself — fields, encoding, checksum, location — is the codec in lib/ondisk/inode.ts.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import { type Inode, inodeLocation, parseInode, type ParseInodeOptions } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";

/**
 * Reads and decodes inode `ino`.
 *
 * @example
 * ```ts ignore
 * const root = await readInode(device, sb, groups, 2);
 * console.log(root.type); // dir
 * ```
 */
export async function readInode(
  device: BlockDevice,
  sb: Superblock,
  groups: GroupDescriptorTable,
  ino: number,
  options: ParseInodeOptions = {},
): Promise<Inode> {
  const offset = inodeLocation(sb, groups, ino);
  if (offset + sb.inodeSize > device.size) {
    throw new CorruptError(`inode ${ino}`, `inode table at byte ${offset} is beyond the device`);
  }
  return parseInode(sb, ino, await readBytes(device, offset, sb.inodeSize), options);
}

/** The inode table block holding inode `ino`'s record, and the record's offset in it. */
function tableBlock(
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): { block: number; offset: number } {
  const at = inodeLocation(sb, gdt, ino);
  return { block: Math.floor(at / sb.blockSize), offset: at % sb.blockSize };
}

/**
 * Reads the raw record of inode `ino` (a copy) through the transaction.
 *
 * @example
 * ```ts ignore
 * const f = decodeInode(sb, await readInodeRaw(tx, sb, gdt, 12));
 * ```
 */
export async function readInodeRaw(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
): Promise<Uint8Array> {
  const { block, offset } = tableBlock(sb, gdt, ino);
  return (await tx.read(block)).slice(offset, offset + sb.inodeSize);
}

/**
 * Writes a raw inode record (already checksummed) into the inode table.
 *
 * @example
 * ```ts ignore
 * await writeInode(tx, sb, gdt, 12, encodeInode(sb, 12, fields, old));
 * ```
 */
export async function writeInode(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  ino: number,
  raw: Uint8Array,
): Promise<void> {
  if (raw.length !== sb.inodeSize) {
    throw new Ext4Error("INVALID", `inode record of ${raw.length} bytes, expected ${sb.inodeSize}`);
  }
  const { block, offset } = tableBlock(sb, gdt, ino);
  await tx.patch(block, offset, raw);
}
