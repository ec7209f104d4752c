/**
 * Decoders of the FUSE request bodies ext4ts handles (INIT, names, FORGET, GETATTR, OPEN,
 * READ, RELEASE, xattrs, ACCESS, LSEEK, INTERRUPT). Each checks the body is long enough and
 * throws {@link ProtocolError} otherwise.
 *
 * @module
 */

import { InitFlag, need, ProtocolError, u64 } from "./protocol.ts";

/** `struct fuse_init_in` (flags2 only when the kernel sets INIT_EXT). */
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

/**
 * Decodes `fuse_init_in`.
 *
 * @example
 * ```ts ignore
 * const init = decodeInitIn(body); // { major: 7, minor: 45, ... }
 * ```
 */
export function decodeInitIn(body: Uint8Array): InitIn {
  const v = need(body, 8, "fuse_init_in");
  const major = v.getUint32(0, true);
  const minor = v.getUint32(4, true);
  if (body.length < 16) return { major, minor, maxReadahead: 0, flags: 0, flags2: 0 };
  const flags = v.getUint32(12, true);
  const flags2 = body.length >= 20 && (flags & InitFlag.INIT_EXT) ? v.getUint32(16, true) : 0;
  return { major, minor, maxReadahead: v.getUint32(8, true), flags, flags2 };
}

/**
 * A NUL-terminated name at the start of a request body (LOOKUP, GETXATTR's name).
 * Returns the bytes without the terminator.
 *
 * @example
 * ```ts ignore
 * new TextDecoder().decode(decodeName(body)); // the LOOKUP name
 * ```
 */
export function decodeName(body: Uint8Array, offset = 0): Uint8Array {
  const end = body.indexOf(0, offset);
  if (end < 0) throw new ProtocolError("name without NUL terminator");
  return body.subarray(offset, end);
}

/**
 * `fuse_forget_in.nlookup`.
 *
 * @example
 * ```ts ignore
 * const nlookup = decodeForgetIn(body);
 * ```
 */
export function decodeForgetIn(body: Uint8Array): number {
  return u64(need(body, 8, "fuse_forget_in"), 0);
}

/**
 * `fuse_batch_forget_in` followed by `count` × `fuse_forget_one`.
 *
 * @example
 * ```ts ignore
 * for (const f of decodeBatchForgetIn(body)) ops.forget?.(f.nodeid, f.nlookup);
 * ```
 */
export function decodeBatchForgetIn(body: Uint8Array): { nodeid: number; nlookup: number }[] {
  const v = need(body, 8, "fuse_batch_forget_in");
  const count = v.getUint32(0, true);
  // The kernel never sends more than fit the request; a bigger count is bounded by the body.
  const n = Math.min(count, Math.floor((body.length - 8) / 16));
  const out: { nodeid: number; nlookup: number }[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ nodeid: u64(v, 8 + i * 16), nlookup: u64(v, 16 + i * 16) });
  }
  return out;
}

/**
 * `fuse_open_in` (OPEN, OPENDIR).
 *
 * @example
 * ```ts ignore
 * const { flags } = decodeOpenIn(body);
 * ```
 */
export function decodeOpenIn(body: Uint8Array): { flags: number; openFlags: number } {
  const v = need(body, 8, "fuse_open_in");
  return { flags: v.getUint32(0, true), openFlags: v.getUint32(4, true) };
}

/** `fuse_read_in` (READ, READDIR, READDIRPLUS). */
export interface ReadIn {
  fh: number;
  offset: number;
  size: number;
  readFlags: number;
  flags: number;
}

/**
 * Decodes `fuse_read_in`.
 *
 * @example
 * ```ts ignore
 * const { offset, size } = decodeReadIn(body);
 * ```
 */
export function decodeReadIn(body: Uint8Array): ReadIn {
  const v = need(body, 24, "fuse_read_in");
  return {
    fh: u64(v, 0),
    offset: u64(v, 8),
    size: v.getUint32(16, true),
    readFlags: v.getUint32(20, true),
    flags: body.length >= 40 ? v.getUint32(32, true) : 0,
  };
}

/**
 * `fuse_release_in` (RELEASE, RELEASEDIR).
 *
 * @example
 * ```ts ignore
 * const { fh } = decodeReleaseIn(body);
 * ```
 */
export function decodeReleaseIn(body: Uint8Array): { fh: number; flags: number } {
  const v = need(body, 16, "fuse_release_in");
  return { fh: u64(v, 0), flags: v.getUint32(8, true) };
}

/**
 * `fuse_getxattr_in` followed by the attribute name (GETXATTR).
 *
 * @example
 * ```ts ignore
 * const { size, name } = decodeGetxattrIn(body);
 * ```
 */
export function decodeGetxattrIn(body: Uint8Array): { size: number; name: Uint8Array } {
  const v = need(body, 8, "fuse_getxattr_in");
  return { size: v.getUint32(0, true), name: decodeName(body, 8) };
}

/**
 * `fuse_getxattr_in` alone (LISTXATTR).
 *
 * @example
 * ```ts ignore
 * const { size } = decodeListxattrIn(body);
 * ```
 */
export function decodeListxattrIn(body: Uint8Array): { size: number } {
  return { size: need(body, 8, "fuse_getxattr_in").getUint32(0, true) };
}

/**
 * `fuse_access_in.mask` (R_OK 4, W_OK 2, X_OK 1).
 *
 * @example
 * ```ts ignore
 * const mask = decodeAccessIn(body); // R_OK 4, W_OK 2, X_OK 1
 * ```
 */
export function decodeAccessIn(body: Uint8Array): number {
  return need(body, 8, "fuse_access_in").getUint32(0, true);
}

/**
 * `fuse_lseek_in`.
 *
 * @example
 * ```ts ignore
 * const { offset, whence } = decodeLseekIn(body); // whence 3 = SEEK_DATA
 * ```
 */
export function decodeLseekIn(body: Uint8Array): { fh: number; offset: number; whence: number } {
  const v = need(body, 24, "fuse_lseek_in");
  return { fh: u64(v, 0), offset: Number(v.getBigInt64(8, true)), whence: v.getUint32(16, true) };
}

/**
 * `fuse_interrupt_in.unique`: the request the kernel wants interrupted.
 *
 * @example
 * ```ts ignore
 * const target = decodeInterruptIn(body); // unique of the interrupted request
 * ```
 */
export function decodeInterruptIn(body: Uint8Array): bigint {
  return need(body, 8, "fuse_interrupt_in").getBigUint64(0, true);
}
