/**
 * The checksums ext4 uses: crc32c (metadata_csum, jbd2 v2/v3) and crc16 (gdt_csum).
 *
 * `crc32c` here is the *raw* update function the kernel and e2fsprogs call: no inversion on
 * the way in or out. ext4 seeds it with `0xffffffff` (or a per-filesystem seed) and stores
 * the raw result. The textbook CRC-32C of some bytes is `~crc32c(0xffffffff, bytes)`.
 *
 * crc32c is table-driven, slicing by 8: it reads eight bytes per step from eight tables.
 *
 * @module
 */

const CRC32C_POLY = 0x82f63b78; // reflected Castagnoli polynomial

const CRC32C_TABLES: Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY : c >>> 1;
    tables[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[0][n];
    for (let t = 1; t < 8; t++) {
      c = tables[0][c & 0xff] ^ (c >>> 8);
      tables[t][n] = c >>> 0;
    }
  }
  return tables;
})();

/**
 * Continues a raw crc32c over `data` (no pre- or post-inversion), as ext4 computes it.
 *
 * @example
 * ```ts
 * import { crc32c } from "./checksum.ts";
 * const raw = crc32c(0xffffffff, new TextEncoder().encode("123456789"));
 * console.log((~raw >>> 0).toString(16)); // e3069283, the standard CRC-32C check value
 * ```
 */
export function crc32c(crc: number, data: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLES;
  let c = crc >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n % 8);
  while (i < end8) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c = t7[lo & 0xff] ^ t6[(lo >>> 8) & 0xff] ^ t5[(lo >>> 16) & 0xff] ^ t4[lo >>> 24] ^
      t3[data[i + 4]] ^ t2[data[i + 5]] ^ t1[data[i + 6]] ^ t0[data[i + 7]];
    i += 8;
  }
  while (i < n) c = t0[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/**
 * crc32c of a little-endian 32-bit number, the way ext4 folds inode and group numbers
 * into its checksums.
 *
 * @example
 * ```ts
 * import { crc32c, crc32cU32 } from "./checksum.ts";
 * console.log(crc32cU32(0xffffffff, 7) === crc32c(0xffffffff, new Uint8Array([7, 0, 0, 0]))); // true
 * ```
 */
export function crc32cU32(crc: number, value: number): number {
  const t0 = CRC32C_TABLES[0];
  let c = crc >>> 0;
  for (let k = 0; k < 4; k++) {
    c = t0[(c ^ (value >>> (8 * k))) & 0xff] ^ (c >>> 8);
  }
  return c >>> 0;
}

const CRC16_TABLE: Uint16Array = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/**
 * Continues a crc16 (the reflected 0x8005 polynomial, no final inversion) over `data`;
 * ext4 uses it, seeded with `0xffff`, for group descriptor checksums under gdt_csum.
 *
 * @example
 * ```ts
 * import { crc16 } from "./checksum.ts";
 * console.log(crc16(0, new TextEncoder().encode("123456789")).toString(16)); // bb3d (CRC-16/ARC)
 * ```
 */
export function crc16(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) c = CRC16_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c & 0xffff;
}
