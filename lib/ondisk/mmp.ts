/**
 * Multiple-mount protection (the mmp feature): the MMP block a mounting node updates
 * periodically, so that a second node can see the filesystem is in use.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";
import { crc32c } from "./checksum.ts";
import { CorruptError } from "../errors.ts";
import type { Superblock } from "./superblock.ts";

/** `mmp_magic`. */
export const MMP_MAGIC = 0x004d4d50;
/** `mmp_seq` when the filesystem was cleanly unmounted. */
export const MMP_SEQ_CLEAN = 0xff4d4d50;
/** `mmp_seq` while e2fsck runs. */
export const MMP_SEQ_FSCK = 0xe24d4d50;
/** The largest `mmp_seq` of a node in use (the kernel's EXT4_MMP_SEQ_MAX). */
export const MMP_SEQ_MAX = 0xe24d4d4f;

/** What the MMP block says about who uses the filesystem. */
export type MmpState = "clean" | "fsck" | "in-use";

/** A parsed MMP block. */
export interface MmpBlock {
  /** `mmp_magic`: {@link MMP_MAGIC} in a valid MMP block. */
  magic: number;
  /** `mmp_seq`: the update sequence; special values mark clean and fsck, anything else in use. */
  sequence: number;
  /** Last update, seconds since the epoch. */
  time: number;
  /** `mmp_nodename`: host name of the node that last updated the block. */
  nodeName: string;
  /** `mmp_bdevname`: block device name on that node. */
  deviceName: string;
  /** `mmp_check_interval`: the updater's check interval, in seconds. */
  checkInterval: number;
  /** `mmp_checksum`: crc32c of the block (metadata_csum). */
  checksum: number;
  /** False when metadata_csum is on and the checksum does not match. */
  checksumValid: boolean;
  /** Derived from `sequence`: clean (MMP_SEQ_CLEAN), fsck (MMP_SEQ_FSCK) or in use. */
  state: MmpState;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/**
 * Parses an MMP block (the first 1024 bytes matter).
 *
 * @example
 * ```ts
 * import { MMP_MAGIC, MMP_SEQ_CLEAN, parseMmpBlock } from "./mmp.ts";
 * const b = new Uint8Array(1024);
 * const v = new DataView(b.buffer);
 * v.setUint32(0, MMP_MAGIC, true);
 * v.setUint32(4, MMP_SEQ_CLEAN, true);
 * console.log(parseMmpBlock(b).state); // clean
 * ```
 */
export function parseMmpBlock(bytes: Uint8Array, csumSeed?: number): MmpBlock {
  if (bytes.length < 1024) throw new CorruptError("MMP block", "shorter than 1024 bytes");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint32(0, true);
  if (magic !== MMP_MAGIC) {
    throw new CorruptError("MMP block", `bad magic 0x${magic.toString(16)}`);
  }
  const sequence = v.getUint32(4, true);
  const checksum = v.getUint32(1020, true);
  const checksumValid = csumSeed === undefined ||
    crc32c(csumSeed, bytes.subarray(0, 1020)) === checksum;
  return {
    magic,
    sequence,
    time: v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32,
    nodeName: cString(bytes.subarray(16, 80)),
    deviceName: cString(bytes.subarray(80, 112)),
    checkInterval: v.getUint16(112, true),
    checksum,
    checksumValid,
    state: sequence === MMP_SEQ_CLEAN ? "clean" : sequence === MMP_SEQ_FSCK ? "fsck" : "in-use",
  };
}

/**
 * Reads the MMP block of a filesystem with the mmp feature.
 *
 * @example
 * ```ts ignore
 * const mmp = await readMmpBlock(device, sb);
 * if (mmp.state === "in-use") console.log(`in use by ${mmp.nodeName}`);
 * ```
 */
export async function readMmpBlock(device: BlockDevice, sb: Superblock): Promise<MmpBlock> {
  const block = sb.mmpBlock;
  if (block < sb.firstDataBlock || block >= sb.blocksCount) {
    throw new CorruptError("superblock", `MMP block ${block} is outside the filesystem`);
  }
  const bytes = await readBytes(device, block * sb.blockSize, 1024);
  return parseMmpBlock(bytes, sb.hasMetadataCsum ? sb.csumSeed : undefined);
}

/** The fields a node writes into its MMP block. */
export interface MmpUpdate {
  /** `mmp_seq`. */
  sequence: number;
  /** `mmp_time`, seconds since the epoch. */
  time: number;
  /** `mmp_nodename` (at most 64 bytes, NUL-padded). */
  nodeName: string;
  /** `mmp_bdevname` (at most 32 bytes, NUL-padded). */
  deviceName: string;
  /** `mmp_check_interval`, seconds. */
  checkInterval: number;
}

/**
 * Writes `update` into the MMP block `bytes` (magic set; the rest of the block kept) and its
 * checksum when `csumSeed` is given (metadata_csum): the kernel's kmmpd update.
 *
 * @example
 * ```ts
 * import { encodeMmpBlock, parseMmpBlock } from "./mmp.ts";
 * const b = new Uint8Array(1024);
 * encodeMmpBlock(b, { sequence: 7, time: 0, nodeName: "box", deviceName: "sdc", checkInterval: 5 });
 * console.log(parseMmpBlock(b).nodeName); // box
 * ```
 */
export function encodeMmpBlock(bytes: Uint8Array, update: MmpUpdate, csumSeed?: number): void {
  if (bytes.length < 1024) throw new CorruptError("MMP block", "shorter than 1024 bytes");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  v.setUint32(0, MMP_MAGIC, true);
  v.setUint32(4, update.sequence >>> 0, true);
  v.setUint32(8, update.time % 2 ** 32, true);
  v.setUint32(12, Math.floor(update.time / 2 ** 32), true);
  const text = new TextEncoder();
  bytes.fill(0, 16, 112);
  bytes.set(text.encode(update.nodeName).subarray(0, 64), 16);
  bytes.set(text.encode(update.deviceName).subarray(0, 32), 80);
  v.setUint16(112, Math.min(0xffff, update.checkInterval), true);
  if (csumSeed !== undefined) v.setUint32(1020, crc32c(csumSeed, bytes.subarray(0, 1020)), true);
}
