/**
 * Directory name hashes of ext3/4 hash-indexed (htree) directories: the "legacy" hack hash,
 * half-MD4 and TEA, each in a signed-char and an unsigned-char variant, with the semantics of
 * the kernel's fs/ext4/hash.c (and e2fsprogs' `ext2fs_dirhash`).
 *
 * The signed variants exist because the original code read names through plain `char`, which
 * is signed on x86: bytes >= 0x80 entered the hash as negative numbers. The superblock records
 * which one a filesystem uses (`s_flags` SIGNED_HASH / UNSIGNED_HASH).
 *
 * All arithmetic is on unsigned 32-bit words (`>>> 0`, `Math.imul`).
 *
 * @module
 */

import { Ext4Error } from "../errors.ts";

/** Hash versions as stored in `s_def_hash_version` and the dx_root `hash_version`. */
export const DxHashVersion = {
  LEGACY: 0,
  HALF_MD4: 1,
  TEA: 2,
  LEGACY_UNSIGNED: 3,
  HALF_MD4_UNSIGNED: 4,
  TEA_UNSIGNED: 5,
  SIPHASH: 6,
} as const;

/** The hash of a name: `major` orders the index (bit 0 always clear), `minor` breaks ties. */
export interface DirHash {
  /** Major hash, unsigned 32 bits with bit 0 clear; never the end-of-index value 0xfffffffe. */
  major: number;
  /** Minor hash, unsigned 32 bits; 0 for the legacy hash, which has none. */
  minor: number;
}

/** The seed used when the superblock's `s_hash_seed` is all zero (the MD4 initial state). */
const DEFAULT_SEED = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/** The largest hash value; the kernel reserves it as an end-of-directory marker. */
const HTREE_EOF_32BIT = 0x7fffffff;

function rol32(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

/** A name byte as the hash sees it: as a signed or an unsigned char. */
function charValue(b: number, signed: boolean): number {
  return signed && b >= 0x80 ? b - 256 : b;
}

/** The original ext3 hash (dx_hack_hash); has no minor hash. */
function legacyHash(name: Uint8Array, signed: boolean): number {
  let h0 = 0x12a3fe2d;
  let h1 = 0x37abe8f9;
  for (let i = 0; i < name.length; i++) {
    let h = (h1 + ((h0 ^ Math.imul(charValue(name[i], signed), 7152373)) >>> 0)) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/**
 * Packs up to `words * 4` bytes of `name` from `start` into big-endian-ish words the way the
 * kernel's str2hashbuf does: each word starts from a padding pattern built from the number
 * of bytes remaining, and bytes are shifted in from the right.
 */
function packWords(
  name: Uint8Array,
  start: number,
  out: Uint32Array,
  words: number,
  signed: boolean,
): void {
  const remaining = name.length - start;
  let pad = (remaining | (remaining << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  const len = Math.min(remaining, words * 4);
  let val = pad;
  let w = 0;
  for (let i = 0; i < len; i++) {
    val = (charValue(name[start + i], signed) + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[w++] = val;
      val = pad;
    }
  }
  if (w < words) out[w++] = val;
  while (w < words) out[w++] = pad;
}

const K2 = 0x5a827999; // 013240474631
const K3 = 0x6ed9eba1; // 015666365641

function mdF(x: number, y: number, z: number): number {
  return (z ^ (x & (y ^ z))) >>> 0;
}
function mdG(x: number, y: number, z: number): number {
  return (((x & y) >>> 0) + (((x ^ y) & z) >>> 0)) >>> 0;
}
function mdH(x: number, y: number, z: number): number {
  return (x ^ y ^ z) >>> 0;
}

/** The cut-down MD4 compression: three rounds of eight steps over 8 input words. */
function halfMd4Transform(buf: Uint32Array, input: Uint32Array): void {
  const st = [buf[0], buf[1], buf[2], buf[3]];
  // Each step updates one of a,b,c,d (rotating through 0,3,2,1) from the other three.
  const step = (
    f: (x: number, y: number, z: number) => number,
    k: number,
    word: number,
    s: number,
    n: number,
  ) => {
    const t = [0, 3, 2, 1][n % 4];
    const x = st[(t + 1) % 4], y = st[(t + 2) % 4], z = st[(t + 3) % 4];
    st[t] = rol32((st[t] + f(x, y, z) + ((input[word] + k) >>> 0)) >>> 0, s);
  };
  const r1 = [0, 1, 2, 3, 4, 5, 6, 7], s1 = [3, 7, 11, 19];
  const r2 = [1, 3, 5, 7, 0, 2, 4, 6], s2 = [3, 5, 9, 13];
  const r3 = [3, 7, 2, 6, 1, 5, 0, 4], s3 = [3, 9, 11, 15];
  for (let n = 0; n < 8; n++) step(mdF, 0, r1[n], s1[n % 4], n);
  for (let n = 0; n < 8; n++) step(mdG, K2, r2[n], s2[n % 4], n);
  for (let n = 0; n < 8; n++) step(mdH, K3, r3[n], s3[n % 4], n);
  for (let i = 0; i < 4; i++) buf[i] = (buf[i] + st[i]) >>> 0;
}

const TEA_DELTA = 0x9e3779b9;

/** 16 rounds of TEA mixing 4 input words into the first two state words. */
function teaTransform(buf: Uint32Array, input: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0], b1 = buf[1];
  const [a, b, c, d] = input;
  for (let n = 0; n < 16; n++) {
    sum = (sum + TEA_DELTA) >>> 0;
    b0 = (b0 +
      ((((b1 << 4) >>> 0) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b))) >>> 0;
    b1 = (b1 +
      ((((b0 << 4) >>> 0) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d))) >>> 0;
  }
  buf[0] = (buf[0] + b0) >>> 0;
  buf[1] = (buf[1] + b1) >>> 0;
}

/**
 * Computes the htree hash of a name.
 *
 * `version` is a hash version (0 legacy, 1 half_md4, 2 tea, 3–5 their unsigned variants).
 * For versions 0–2, `signed` picks the signed-char variant (the superblock's SIGNED_HASH
 * flag, the default on x86) or the unsigned one; versions 3–5 are always unsigned. `seed` is
 * `s_hash_seed` as four words; all zero means the default seed. SipHash (version 6, for
 * encrypted casefolded directories) needs the encryption key and is UNSUPPORTED.
 *
 * @example
 * ```ts
 * import { dirHash } from "./dir_hash.ts";
 * const { major } = dirHash(new TextEncoder().encode("hello"), 1, new Uint32Array(4), true);
 * console.log(major.toString(16)); // 6f5bb1a8, as `debugfs -R "dx_hash -h half_md4 hello"`
 * ```
 */
export function dirHash(
  name: Uint8Array,
  version: number,
  seed: Uint32Array,
  signed: boolean,
): DirHash {
  let v = version;
  let isSigned = signed;
  if (v >= DxHashVersion.LEGACY_UNSIGNED && v <= DxHashVersion.TEA_UNSIGNED) {
    v -= 3;
    isSigned = false;
  }
  const buf = new Uint32Array(DEFAULT_SEED);
  if (seed.length >= 4 && (seed[0] | seed[1] | seed[2] | seed[3]) !== 0) {
    for (let i = 0; i < 4; i++) buf[i] = seed[i];
  }
  let major: number;
  let minor = 0;
  if (v === DxHashVersion.LEGACY) {
    major = legacyHash(name, isSigned);
  } else if (v === DxHashVersion.HALF_MD4) {
    const input = new Uint32Array(8);
    for (let p = 0; p < name.length; p += 32) {
      packWords(name, p, input, 8, isSigned);
      halfMd4Transform(buf, input);
    }
    major = buf[1];
    minor = buf[2];
  } else if (v === DxHashVersion.TEA) {
    const input = new Uint32Array(4);
    for (let p = 0; p < name.length; p += 16) {
      packWords(name, p, input, 4, isSigned);
      teaTransform(buf, input);
    }
    major = buf[0];
    minor = buf[1];
  } else if (version === DxHashVersion.SIPHASH) {
    throw new Ext4Error(
      "UNSUPPORTED",
      "siphash directory hashes (encrypted casefolded directories) need the encryption key",
    );
  } else {
    throw new Ext4Error("UNSUPPORTED", `unknown directory hash version ${version}`);
  }
  major = (major & ~1) >>> 0;
  if (major === ((HTREE_EOF_32BIT << 1) >>> 0)) major = ((HTREE_EOF_32BIT - 1) << 1) >>> 0;
  return { major, minor };
}
