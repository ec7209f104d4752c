/**
 * fscrypt "no-key names": how the kernel shows the entries of an encrypted directory when the
 * key is absent (ext4ts never has it). The stored ciphertext name is wrapped in a small
 * structure — the directory hash and minor hash of the entry (little-endian u32 each), then
 * the ciphertext, or for ciphertexts over 149 bytes their first 149 bytes and the SHA-256 of
 * the rest — and encoded as unpadded base64url. Lookups accept such names back.
 *
 * Learned from the kernel's fs/crypto/fname.c (struct fscrypt_nokey_name,
 * fscrypt_fname_disk_to_usr, fscrypt_setup_filename, fscrypt_match_name).
 *
 * @module
 */

import { sha256 } from "./sha256.ts";

/** Bytes of ciphertext a no-key name carries in full. */
export const NOKEY_NAME_BYTES = 149;
/** Offset of the ciphertext in the decoded structure (after the two hash words). */
const BYTES_OFFSET = 8;
/** Size of the decoded structure in digest form: hashes, 149 bytes, SHA-256. */
const NOKEY_NAME_MAX = BYTES_OFFSET + NOKEY_NAME_BYTES + 32;
/** Longest encoded no-key name (base64 of 189 bytes, unpadded). */
export const NOKEY_NAME_MAX_ENCODED = Math.ceil((NOKEY_NAME_MAX * 4) / 3);

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const CODES = new Uint8Array(ALPHABET.length);
for (let i = 0; i < ALPHABET.length; i++) CODES[i] = ALPHABET.charCodeAt(i);
const VALUES = new Int8Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUES[CODES[i]] = i;

function base64url(src: Uint8Array): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of src) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push(CODES[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push(CODES[(acc << (6 - bits)) & 0x3f]);
  return new Uint8Array(out);
}

/** Decodes unpadded base64url as the kernel does: null for a bad character or stray bits. */
function unbase64url(src: Uint8Array): Uint8Array | null {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of src) {
    const v = VALUES[c];
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xfff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return null;
  return new Uint8Array(out);
}

/**
 * The no-key name of the stored (ciphertext) name `cipher`, with the directory hash the
 * kernel's readdir passes (0 and 0 for unindexed directories and symlink targets).
 *
 * @example
 * ```ts
 * import { noKeyName } from "./fscrypt_name.ts";
 * const shown = new TextDecoder().decode(noKeyName(new Uint8Array(16), 0x1234, 0));
 * console.log(shown); // "NBIA" and 28 "A": 32 characters
 * ```
 */
export function noKeyName(cipher: Uint8Array, hash: number, minorHash: number): Uint8Array {
  const full = cipher.length <= NOKEY_NAME_BYTES;
  const buf = new Uint8Array(full ? BYTES_OFFSET + cipher.length : NOKEY_NAME_MAX);
  const view = new DataView(buf.buffer);
  view.setUint32(0, hash >>> 0, true);
  view.setUint32(4, minorHash >>> 0, true);
  if (full) {
    buf.set(cipher, BYTES_OFFSET);
  } else {
    buf.set(cipher.subarray(0, NOKEY_NAME_BYTES), BYTES_OFFSET);
    buf.set(sha256(cipher.subarray(NOKEY_NAME_BYTES)), BYTES_OFFSET + NOKEY_NAME_BYTES);
  }
  return base64url(buf);
}

/**
 * The length of the no-key name of a ciphertext of `cipherLength` bytes.
 *
 * @example
 * ```ts
 * import { noKeyNameLength } from "./fscrypt_name.ts";
 * console.log(noKeyNameLength(32), noKeyNameLength(320)); // 54 252
 * ```
 */
export function noKeyNameLength(cipherLength: number): number {
  const bytes = cipherLength <= NOKEY_NAME_BYTES ? BYTES_OFFSET + cipherLength : NOKEY_NAME_MAX;
  return Math.ceil((bytes * 4) / 3);
}

/** A no-key name decoded for a lookup. */
export interface ParsedNoKeyName {
  /** The directory hash the name carries (an index is probed with it). */
  hash: number;
  /** The minor hash the name carries. */
  minorHash: number;
  /** The whole ciphertext name, when the no-key name carries it (short names). */
  cipher?: Uint8Array;
  /** For long names: the first 149 ciphertext bytes. */
  prefix?: Uint8Array;
  /** For long names: the SHA-256 of the ciphertext after its first 149 bytes. */
  digest?: Uint8Array;
}

/**
 * Decodes a name given to a lookup in an encrypted directory; null when it cannot be a no-key
 * name (the kernel then answers ENOENT).
 *
 * @example
 * ```ts
 * import { noKeyName, parseNoKeyName } from "./fscrypt_name.ts";
 * const p = parseNoKeyName(noKeyName(new Uint8Array([1, 2, 3]), 8, 0));
 * console.log(p?.hash, p?.cipher); // 8 Uint8Array(3) [1, 2, 3]
 * ```
 */
export function parseNoKeyName(name: Uint8Array): ParsedNoKeyName | null {
  if (name.length > NOKEY_NAME_MAX_ENCODED) return null;
  const buf = unbase64url(name);
  if (buf === null) return null;
  if (
    buf.length < BYTES_OFFSET + 1 ||
    (buf.length > BYTES_OFFSET + NOKEY_NAME_BYTES && buf.length !== NOKEY_NAME_MAX)
  ) {
    return null;
  }
  const view = new DataView(buf.buffer);
  const parsed: ParsedNoKeyName = {
    hash: view.getUint32(0, true),
    minorHash: view.getUint32(4, true),
  };
  if (buf.length !== NOKEY_NAME_MAX) {
    parsed.cipher = buf.subarray(BYTES_OFFSET);
  } else {
    parsed.prefix = buf.subarray(BYTES_OFFSET, BYTES_OFFSET + NOKEY_NAME_BYTES);
    parsed.digest = buf.subarray(BYTES_OFFSET + NOKEY_NAME_BYTES);
  }
  return parsed;
}

/**
 * Whether the stored name `cipher` is the one a digest-form no-key name stands for.
 *
 * @example
 * ```ts
 * import { matchesNoKeyDigest, noKeyName, parseNoKeyName } from "./fscrypt_name.ts";
 * const cipher = new Uint8Array(200).fill(7);
 * matchesNoKeyDigest(parseNoKeyName(noKeyName(cipher, 0, 0))!, cipher); // true
 * ```
 */
export function matchesNoKeyDigest(p: ParsedNoKeyName, cipher: Uint8Array): boolean {
  if (!p.prefix || !p.digest || cipher.length <= NOKEY_NAME_BYTES) return false;
  for (let i = 0; i < NOKEY_NAME_BYTES; i++) if (cipher[i] !== p.prefix[i]) return false;
  const d = sha256(cipher.subarray(NOKEY_NAME_BYTES));
  return d.every((v, i) => v === p.digest![i]);
}
