/**
 * lib/ondisk/partition_table.ts on crafted tables: MBR primaries and a chain of logical partitions,
 * a GPT behind its protective MBR, and sectors that are not partition tables. (Tables made by
 * sfdisk are in probe_test.ts, through the CLI.)
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { partitionTableHint, readPartitionTable } from "../lib/ondisk/partition_table.ts";

const MiB = 1 << 20;

/** Writes an MBR/EBR entry `i` of the sector at `sector` (512-byte sectors). */
function entry(
  disk: Uint8Array,
  sector: number,
  i: number,
  type: number,
  start: number,
  n: number,
) {
  const at = sector * 512 + 446 + 16 * i;
  const v = new DataView(disk.buffer);
  disk[at + 4] = type;
  v.setUint32(at + 8, start, true);
  v.setUint32(at + 12, n, true);
  disk[sector * 512 + 510] = 0x55;
  disk[sector * 512 + 511] = 0xaa;
}

/** An ext2/3/4 superblock magic where a filesystem starting at `offset` has it. */
function extMagic(disk: Uint8Array, offset: number) {
  disk[offset + 1024 + 0x38] = 0x53;
  disk[offset + 1024 + 0x39] = 0xef;
}

Deno.test("MBR: primaries, and logical partitions through the EBR chain", async () => {
  const disk = new Uint8Array(16 * MiB);
  entry(disk, 0, 0, 0x83, 2048, 4096); // 1 MiB, 2 MiB long
  entry(disk, 0, 1, 0x05, 8192, 16384); // extended: 4 MiB to 12 MiB
  entry(disk, 8192, 0, 0x83, 2048, 2048); // logical 5 at 5 MiB
  entry(disk, 8192, 1, 0x05, 6144, 4096); // next EBR at 7 MiB
  entry(disk, 14336, 0, 0x83, 2048, 2048); // logical 6 at 8 MiB
  extMagic(disk, 8 * MiB);
  const t = await readPartitionTable(new MemoryBlockDevice(disk));
  assert.deepEqual(t, {
    scheme: "mbr",
    partitions: [
      { number: 1, offset: 1 * MiB, size: 2 * MiB, ext: false },
      { number: 5, offset: 5 * MiB, size: 1 * MiB, ext: false },
      { number: 6, offset: 8 * MiB, size: 1 * MiB, ext: true },
    ],
  });
  assert.equal(
    await partitionTableHint(new MemoryBlockDevice(disk)),
    "partition table (MBR) found: use --offset 8388608 (partition 1 at 1048576 bytes; " +
      "partition 5 at 5242880 bytes; partition 6 at 8388608 bytes, ext2/3/4)",
  );
});

Deno.test("GPT behind a protective MBR: used entries, first and last LBA", async () => {
  const disk = new Uint8Array(8 * MiB);
  entry(disk, 0, 0, 0xee, 1, 16383);
  const v = new DataView(disk.buffer);
  disk.set(new TextEncoder().encode("EFI PART"), 512);
  v.setBigUint64(512 + 72, 2n, true); // entries at LBA 2
  v.setUint32(512 + 80, 128, true);
  v.setUint32(512 + 84, 128, true);
  const gptEntry = (i: number, first: number, last: number) => {
    const at = 1024 + 128 * i;
    disk[at] = 0xaf; // a type GUID that is not all zero
    v.setBigUint64(at + 32, BigInt(first), true);
    v.setBigUint64(at + 40, BigInt(last), true);
  };
  gptEntry(0, 2048, 4095);
  gptEntry(2, 4096, 8191); // entry 2 unused: numbers follow the table's slots
  extMagic(disk, 1 * MiB);
  const t = await readPartitionTable(new MemoryBlockDevice(disk));
  assert.deepEqual(t, {
    scheme: "gpt",
    partitions: [
      { number: 1, offset: 1 * MiB, size: 1 * MiB, ext: true },
      { number: 3, offset: 2 * MiB, size: 2 * MiB, ext: false },
    ],
  });
});

Deno.test("no table: zeros, a boot sector whose flags are not 0x00/0x80, a tiny device", async () => {
  assert.equal(await readPartitionTable(new MemoryBlockDevice(new Uint8Array(MiB))), null);
  const fat = new Uint8Array(MiB);
  entry(fat, 0, 0, 0x83, 2048, 100);
  fat[446] = 0x29; // boot code where a boot flag would be
  assert.equal(await readPartitionTable(new MemoryBlockDevice(fat)), null);
  assert.equal(await readPartitionTable(new MemoryBlockDevice(new Uint8Array(100))), null);
  assert.equal(await partitionTableHint(new MemoryBlockDevice(new Uint8Array(MiB))), null);
});
