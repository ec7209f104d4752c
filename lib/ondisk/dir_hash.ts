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

/** One MD4 step: `a + f + word + k`, rotated left by `s` (the kernel's ROUND macro). */
function md4Step(a: number, f: number, word: number, k: number, s: number): number {
  return rol32((a + f + word + k) >>> 0, s);
}

/**
 * The cut-down MD4 compression: three rounds of eight steps over 8 input words, as the
 * kernel's half_md4_transform spells them out (straight-line: this runs for every name looked
 * up in a hashed directory).
 */
function halfMd4Transform(buf: Uint32Array, input: Uint32Array): void {
  let a = buf[0], b = buf[1], c = buf[2], d = buf[3];
  // Round 1: F, no constant.
  a = md4Step(a, mdF(b, c, d), input[0], 0, 3);
  d = md4Step(d, mdF(a, b, c), input[1], 0, 7);
  c = md4Step(c, mdF(d, a, b), input[2], 0, 11);
  b = md4Step(b, mdF(c, d, a), input[3], 0, 19);
  a = md4Step(a, mdF(b, c, d), input[4], 0, 3);
  d = md4Step(d, mdF(a, b, c), input[5], 0, 7);
  c = md4Step(c, mdF(d, a, b), input[6], 0, 11);
  b = md4Step(b, mdF(c, d, a), input[7], 0, 19);
  // Round 2: G, K2.
  a = md4Step(a, mdG(b, c, d), input[1], K2, 3);
  d = md4Step(d, mdG(a, b, c), input[3], K2, 5);
  c = md4Step(c, mdG(d, a, b), input[5], K2, 9);
  b = md4Step(b, mdG(c, d, a), input[7], K2, 13);
  a = md4Step(a, mdG(b, c, d), input[0], K2, 3);
  d = md4Step(d, mdG(a, b, c), input[2], K2, 5);
  c = md4Step(c, mdG(d, a, b), input[4], K2, 9);
  b = md4Step(b, mdG(c, d, a), input[6], K2, 13);
  // Round 3: H, K3.
  a = md4Step(a, mdH(b, c, d), input[3], K3, 3);
  d = md4Step(d, mdH(a, b, c), input[7], K3, 9);
  c = md4Step(c, mdH(d, a, b), input[2], K3, 11);
  b = md4Step(b, mdH(c, d, a), input[6], K3, 15);
  a = md4Step(a, mdH(b, c, d), input[1], K3, 3);
  d = md4Step(d, mdH(a, b, c), input[5], K3, 9);
  c = md4Step(c, mdH(d, a, b), input[0], K3, 11);
  b = md4Step(b, mdH(c, d, a), input[4], K3, 15);
  buf[0] = (buf[0] + a) >>> 0;
  buf[1] = (buf[1] + b) >>> 0;
  buf[2] = (buf[2] + c) >>> 0;
  buf[3] = (buf[3] + d) >>> 0;
}

/** Scratch state and input words of {@link dirHash} (synchronous: never shared by two calls). */
const STATE = new Uint32Array(4);
const WORDS = new Uint32Array(8);

const TEA_DELTA = 0x9e3779b9;

/** 16 rounds of TEA mixing 4 input words into the first two state words. */
function teaTransform(buf: Uint32Array, input: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0], b1 = buf[1];
  const a = input[0], b = input[1], c = input[2], d = input[3];
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
  const buf = STATE;
  const custom = seed.length >= 4 && (seed[0] | seed[1] | seed[2] | seed[3]) !== 0;
  for (let i = 0; i < 4; i++) buf[i] = custom ? seed[i] : DEFAULT_SEED[i];
  let major: number;
  let minor = 0;
  if (v === DxHashVersion.LEGACY) {
    major = legacyHash(name, isSigned);
  } else if (v === DxHashVersion.HALF_MD4) {
    const input = WORDS;
    for (let p = 0; p < name.length; p += 32) {
      packWords(name, p, input, 8, isSigned);
      halfMd4Transform(buf, input);
    }
    major = buf[1];
    minor = buf[2];
  } else if (v === DxHashVersion.TEA) {
    const input = WORDS;
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
