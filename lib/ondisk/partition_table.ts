/**
 * Partition tables (MBR with its extended partitions, and GPT) at the start of a whole-disk
 * image, read only to tell a user who points ext4ts at the disk where its filesystems start
 * (`--offset`). Nothing here is trusted for more than that hint.
 *
 * @module
 */

import { type BlockDevice, readBytes } from "../block/block_device.ts";

/** One partition of a table. */
export interface Partition {
  /** Its number as Linux names it (sda1…; logical MBR partitions from 5). */
  number: number;
  /** Where it starts, in bytes from the start of the device. */
  offset: number;
  /** Its length in bytes. */
  size: number;
  /** Whether an ext2/3/4 superblock magic is where its superblock would be. */
  ext: boolean;
}

/** A partition table found at the start of a device. */
export interface PartitionTable {
  /** An MBR (DOS) table or a GPT. */
  scheme: "mbr" | "gpt";
  /** Its partitions in table order (extended containers left out), each with its offset. */
  partitions: Partition[];
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE = 0xee;
/** More entries than any real table has: a bound against loops and garbage. */
const MAX_ENTRIES = 1024;

const u32 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const u64 = (b: Uint8Array, at: number) =>
  Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true));

interface MbrEntry {
  type: number;
  start: number;
  sectors: number;
}

/** The four entries of an MBR or EBR sector; null without the 0x55AA signature or boot flags. */
function mbrEntries(sector: Uint8Array): MbrEntry[] | null {
  if (sector[510] !== 0x55 || sector[511] !== 0xaa) return null;
  const entries: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const e = sector.subarray(446 + 16 * i, 462 + 16 * i);
    // A boot flag other than 0x00/0x80 means this is no partition table (a FAT boot sector).
    if (e[0] !== 0 && e[0] !== 0x80) return null;
    entries.push({ type: e[4], start: u32(e, 8), sectors: u32(e, 12) });
  }
  return entries;
}

async function hasExtMagic(device: BlockDevice, offset: number): Promise<boolean> {
  if (offset + 2048 > device.size) return false;
  const magic = await readBytes(device, offset + 1024 + 0x38, 2);
  return magic[0] === 0x53 && magic[1] === 0xef;
}

async function gptPartitions(device: BlockDevice, sectorSize: number): Promise<Partition[] | null> {
  if (2 * sectorSize > device.size) return null;
  const header = await readBytes(device, sectorSize, 512);
  if (new TextDecoder().decode(header.subarray(0, 8)) !== "EFI PART") return null;
  const entriesLba = u64(header, 72);
  const count = Math.min(u32(header, 80), MAX_ENTRIES);
  const entrySize = u32(header, 84);
  const bytes = count * entrySize;
  if (entrySize < 128 || entriesLba * sectorSize + bytes > device.size) return null;
  const table = await readBytes(device, entriesLba * sectorSize, bytes);
  const out: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const e = table.subarray(i * entrySize, (i + 1) * entrySize);
    if (e.subarray(0, 16).every((b) => b === 0)) continue; // unused entry
    const first = u64(e, 32);
    const last = u64(e, 40);
    if (last < first) continue;
    const offset = first * sectorSize;
    out.push({
      number: i + 1,
      offset,
      size: (last - first + 1) * sectorSize,
      ext: await hasExtMagic(device, offset),
    });
  }
  return out;
}

async function mbrPartitions(
  device: BlockDevice,
  entries: MbrEntry[],
  sectorSize: number,
): Promise<Partition[]> {
  const out: Partition[] = [];
  const add = async (number: number, startSector: number, sectors: number) => {
    const offset = startSector * sectorSize;
    if (offset >= device.size) return;
    out.push({
      number,
      offset,
      size: sectors * sectorSize,
      ext: await hasExtMagic(device, offset),
    });
  };
  for (const [i, e] of entries.entries()) {
    if (e.type === 0 || e.sectors === 0) continue;
    if (!EXTENDED_TYPES.has(e.type)) {
      await add(i + 1, e.start, e.sectors);
      continue;
    }
    // Logical partitions: a chain of EBRs, each starting relative to the extended partition.
    let ebr = e.start;
    for (let n = 5; n < 5 + MAX_ENTRIES && ebr * sectorSize + 512 <= device.size; n++) {
      const link = mbrEntries(await readBytes(device, ebr * sectorSize, 512));
      if (!link) break;
      if (link[0].type !== 0 && link[0].sectors) {
        await add(n, ebr + link[0].start, link[0].sectors);
      }
      if (!EXTENDED_TYPES.has(link[1].type) || link[1].start === 0) break;
      ebr = e.start + link[1].start;
    }
  }
  return out;
}

/**
 * The partition table at the start of `device`, or null when there is none: an MBR (with
 * logical partitions) or, behind a protective MBR, a GPT (sectors of `device.sectorSize`).
 *
 * @example
 * ```ts ignore
 * const t = await readPartitionTable(device);
 * for (const p of t?.partitions ?? []) console.log(p.number, p.offset, p.ext);
 * ```
 */
export async function readPartitionTable(device: BlockDevice): Promise<PartitionTable | null> {
  if (device.size < 512) return null;
  const entries = mbrEntries(await readBytes(device, 0, 512));
  if (!entries) return null;
  const sectorSize = device.sectorSize || 512;
  if (entries.some((e) => e.type === GPT_PROTECTIVE)) {
    const gpt = await gptPartitions(device, sectorSize);
    if (gpt) return { scheme: "gpt", partitions: gpt };
  }
  const partitions = await mbrPartitions(device, entries, sectorSize);
  return partitions.length ? { scheme: "mbr", partitions } : null;
}

/**
 * What to tell a user whose device holds a partition table instead of a filesystem: the
 * `--offset` of the first ext2/3/4 partition (else the first partition) and every partition's
 * offset; null when there is no partition table.
 *
 * @example
 * ```ts ignore
 * console.log(await partitionTableHint(device));
 * // partition table (GPT) found: use --offset 1048576 (partition 1 at 1048576 bytes, ext2/3/4)
 * ```
 */
export async function partitionTableHint(device: BlockDevice): Promise<string | null> {
  const table = await readPartitionTable(device);
  if (!table || table.partitions.length === 0) return null;
  const best = table.partitions.find((p) => p.ext) ?? table.partitions[0];
  const list = table.partitions.map((p) =>
    `partition ${p.number} at ${p.offset} bytes${p.ext ? ", ext2/3/4" : ""}`
  ).join("; ");
  return `partition table (${table.scheme.toUpperCase()}) found: use --offset ${best.offset} (${list})`;
}
