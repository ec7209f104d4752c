/**
 * The directory hashes of ext3/4 htree directories (legacy, half-MD4 and TEA, each in signed
 * and unsigned-char flavours), as the kernel computes them: the major hash orders index
 * entries, bit 0 is reserved for the "continued" flag.
 *
 * @module
 */

import { Ext4Error } from "./errors.ts";

/** `dx_root_info.hash_version` values (the unsigned variants are the signed ones + 3). */
export const DxHash = {
  LEGACY: 0,
  HALF_MD4: 1,
  TEA: 2,
  LEGACY_UNSIGNED: 3,
  HALF_MD4_UNSIGNED: 4,
  TEA_UNSIGNED: 5,
  SIPHASH: 6,
} as const;

const rol = (x: number, s: number) => ((x << s) | (x >>> (32 - s))) >>> 0;

function halfMd4(buf: Uint32Array, x: Uint32Array): void {
  let [a, b, c, d] = buf;
  const F = (x: number, y: number, z: number) => (z ^ (x & (y ^ z))) >>> 0;
  const G = (x: number, y: number, z: number) => (((x & y) >>> 0) + (((x ^ y) & z) >>> 0)) >>> 0;
  const H = (x: number, y: number, z: number) => (x ^ y ^ z) >>> 0;
  const K2 = 0x5a827999;
  const K3 = 0x6ed9eba1;
  const r = (f: typeof F, a: number, b: number, c: number, d: number, v: number, s: number) =>
    rol((a + f(b, c, d) + v) >>> 0, s);
  a = r(F, a, b, c, d, x[0], 3);
  d = r(F, d, a, b, c, x[1], 7);
  c = r(F, c, d, a, b, x[2], 11);
  b = r(F, b, c, d, a, x[3], 19);
  a = r(F, a, b, c, d, x[4], 3);
  d = r(F, d, a, b, c, x[5], 7);
  c = r(F, c, d, a, b, x[6], 11);
  b = r(F, b, c, d, a, x[7], 19);
  a = r(G, a, b, c, d, (x[1] + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (x[3] + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (x[5] + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (x[7] + K2) >>> 0, 13);
  a = r(G, a, b, c, d, (x[0] + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (x[2] + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (x[4] + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (x[6] + K2) >>> 0, 13);
  a = r(H, a, b, c, d, (x[3] + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (x[7] + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (x[2] + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (x[6] + K3) >>> 0, 15);
  a = r(H, a, b, c, d, (x[1] + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (x[5] + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (x[0] + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (x[4] + K3) >>> 0, 15);
  buf[0] = (buf[0] + a) >>> 0;
  buf[1] = (buf[1] + b) >>> 0;
  buf[2] = (buf[2] + c) >>> 0;
  buf[3] = (buf[3] + d) >>> 0;
}

function tea(buf: Uint32Array, x: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0];
  let b1 = buf[1];
  const [a, b, c, d] = x;
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b)) >>> 0)) >>> 0;
    b1 = (b1 + ((((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d)) >>> 0)) >>> 0;
  }
  buf[0] = (buf[0] + b0) >>> 0;
  buf[1] = (buf[1] + b1) >>> 0;
}

/** The kernel's str2hashbuf: bytes packed big-end-first into words, padded with the length. */
function str2hashbuf(msg: Uint8Array, len: number, num: number, signed: boolean): Uint32Array {
  const out = new Uint32Array(num);
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  const n = Math.min(len, num * 4);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const c = signed ? (msg[i] << 24) >> 24 : msg[i];
    val = (c + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[k++] = val;
      val = pad;
    }
  }
  if (k < num) out[k++] = val;
  while (k < num) out[k++] = pad;
  return out;
}

function legacy(name: Uint8Array, signed: boolean): number {
  let h0 = 0x12a3fe2d;
  let h1 = 0x37abe8f9;
  for (const byte of name) {
    const c = signed ? (byte << 24) >> 24 : byte;
    let h = (h1 + ((h0 ^ Math.imul(c, 7152373)) >>> 0)) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/**
 * The hash of a name in an htree directory: `{ hash, minor }`, with bit 0 of `hash` clear.
 *
 * @example
 * ```ts ignore
 * const { hash } = dirHash(new TextEncoder().encode("file"), DxHash.HALF_MD4, sb.hashSeed);
 * ```
 */
export function dirHash(
  name: Uint8Array,
  version: number,
  seed: Uint32Array | number[],
): { hash: number; minor: number } {
  const buf = Uint32Array.from([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  if (seed.length === 4 && Array.from(seed).some((w) => w !== 0)) {
    for (let i = 0; i < 4; i++) buf[i] = seed[i];
  }
  let hash: number;
  let minor = 0;
  switch (version) {
    case DxHash.LEGACY:
    case DxHash.LEGACY_UNSIGNED:
      hash = legacy(name, version === DxHash.LEGACY);
      break;
    case DxHash.HALF_MD4:
    case DxHash.HALF_MD4_UNSIGNED: {
      const signed = version === DxHash.HALF_MD4;
      for (let p = 0, len = name.length; len > 0; p += 32, len -= 32) {
        halfMd4(buf, str2hashbuf(name.subarray(p), len, 8, signed));
      }
      hash = buf[1];
      minor = buf[2];
      break;
    }
    case DxHash.TEA:
    case DxHash.TEA_UNSIGNED: {
      const signed = version === DxHash.TEA;
      for (let p = 0, len = name.length; len > 0; p += 16, len -= 16) {
        tea(buf, str2hashbuf(name.subarray(p), len, 4, signed));
      }
      hash = buf[0];
      minor = buf[1];
      break;
    }
    default:
      throw new Ext4Error("UNSUPPORTED", `directory hash version ${version} is not supported`);
  }
  hash = (hash & ~1) >>> 0;
  if (hash === 0x7fffffff << 1 >>> 0) hash = ((0x7fffffff - 1) << 1) >>> 0;
  return { hash, minor };
}
