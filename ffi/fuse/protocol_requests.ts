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

/** Bits of `fuse_setattr_in.valid`: which attributes a SETATTR changes. */
export const SetattrValid = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** `struct fuse_setattr_in`, the fields `valid` names (others absent). */
export interface SetattrIn {
  /** The `FATTR_*` bits as sent. */
  valid: number;
  /** The file handle (FATTR_FH). */
  fh?: number;
  /** New size (FATTR_SIZE). */
  size?: number;
  /** New access time; "now" for FATTR_ATIME_NOW. */
  atime?: { sec: number; nsec: number } | "now";
  /** New modification time; "now" for FATTR_MTIME_NOW. */
  mtime?: { sec: number; nsec: number } | "now";
  /** New change time (FATTR_CTIME). */
  ctime?: { sec: number; nsec: number };
  /** New mode (FATTR_MODE): type bits as the kernel sends them, permissions. */
  mode?: number;
  /** New owner (FATTR_UID). */
  uid?: number;
  /** New group (FATTR_GID). */
  gid?: number;
}

/**
 * Decodes `fuse_setattr_in` (88 bytes): only what `valid` names is returned.
 *
 * @example
 * ```ts ignore
 * const { size, mode } = decodeSetattrIn(body);
 * ```
 */
export function decodeSetattrIn(body: Uint8Array): SetattrIn {
  const v = need(body, 88, "fuse_setattr_in");
  const valid = v.getUint32(0, true);
  const V = SetattrValid;
  const time = (o: number, ns: number) => ({
    sec: Number(v.getBigInt64(o, true)),
    nsec: v.getUint32(ns, true),
  });
  const r: SetattrIn = { valid };
  if (valid & V.FH) r.fh = u64(v, 8);
  if (valid & V.SIZE) r.size = u64(v, 16);
  if (valid & V.ATIME) r.atime = valid & V.ATIME_NOW ? "now" : time(32, 56);
  if (valid & V.MTIME) r.mtime = valid & V.MTIME_NOW ? "now" : time(40, 60);
  if (valid & V.CTIME) r.ctime = time(48, 64);
  if (valid & V.MODE) r.mode = v.getUint32(68, true);
  if (valid & V.UID) r.uid = v.getUint32(76, true);
  if (valid & V.GID) r.gid = v.getUint32(80, true);
  return r;
}

/**
 * `fuse_mknod_in` (mode, rdev, umask) and the name after it.
 *
 * @example
 * ```ts ignore
 * const { mode, rdev, umask, name } = decodeMknodIn(body);
 * ```
 */
export function decodeMknodIn(
  body: Uint8Array,
): { mode: number; rdev: number; umask: number; name: Uint8Array } {
  const v = need(body, 16, "fuse_mknod_in");
  return {
    mode: v.getUint32(0, true),
    rdev: v.getUint32(4, true),
    umask: v.getUint32(8, true),
    name: decodeName(body, 16),
  };
}

/**
 * `fuse_mkdir_in` (mode, umask) and the name after it.
 *
 * @example
 * ```ts ignore
 * const { mode, umask, name } = decodeMkdirIn(body);
 * ```
 */
export function decodeMkdirIn(body: Uint8Array): { mode: number; umask: number; name: Uint8Array } {
  const v = need(body, 8, "fuse_mkdir_in");
  return { mode: v.getUint32(0, true), umask: v.getUint32(4, true), name: decodeName(body, 8) };
}

/**
 * `fuse_create_in` (open flags, mode, umask, open_flags) and the name after it.
 *
 * @example
 * ```ts ignore
 * const { flags, mode, umask, name } = decodeCreateIn(body);
 * ```
 */
export function decodeCreateIn(
  body: Uint8Array,
): { flags: number; mode: number; umask: number; name: Uint8Array } {
  const v = need(body, 16, "fuse_create_in");
  return {
    flags: v.getUint32(0, true),
    mode: v.getUint32(4, true),
    umask: v.getUint32(8, true),
    name: decodeName(body, 16),
  };
}

/**
 * Two NUL-terminated names one after the other (SYMLINK: the entry name, then the target;
 * RENAME's old and new names after their fixed part at `offset`).
 *
 * @example
 * ```ts ignore
 * const [name, target] = decodeTwoNames(body);
 * ```
 */
export function decodeTwoNames(body: Uint8Array, offset = 0): [Uint8Array, Uint8Array] {
  const first = decodeName(body, offset);
  return [first, decodeName(body, offset + first.length + 1)];
}

/**
 * `fuse_link_in.oldnodeid` and the new name.
 *
 * @example
 * ```ts ignore
 * const { oldNodeid, name } = decodeLinkIn(body);
 * ```
 */
export function decodeLinkIn(body: Uint8Array): { oldNodeid: number; name: Uint8Array } {
  const v = need(body, 8, "fuse_link_in");
  return { oldNodeid: u64(v, 0), name: decodeName(body, 8) };
}

/** RENAME_* flags of renameat2(2) (`fuse_rename2_in.flags`). */
export const RenameFlag = { NOREPLACE: 1, EXCHANGE: 2, WHITEOUT: 4 } as const;

/**
 * `fuse_rename_in` (RENAME: newdir) or `fuse_rename2_in` (RENAME2: newdir, flags), then
 * the old and the new name.
 *
 * @example
 * ```ts ignore
 * const { newDir, flags, oldName, newName } = decodeRenameIn(body, true);
 * ```
 */
export function decodeRenameIn(
  body: Uint8Array,
  rename2: boolean,
): { newDir: number; flags: number; oldName: Uint8Array; newName: Uint8Array } {
  const size = rename2 ? 16 : 8;
  const v = need(body, size, rename2 ? "fuse_rename2_in" : "fuse_rename_in");
  const [oldName, newName] = decodeTwoNames(body, size);
  return { newDir: u64(v, 0), flags: rename2 ? v.getUint32(8, true) : 0, oldName, newName };
}

/**
 * `fuse_write_in` and the data after it (the data is a view into `body`).
 *
 * @example
 * ```ts ignore
 * const { fh, offset, data } = decodeWriteIn(body);
 * ```
 */
export function decodeWriteIn(
  body: Uint8Array,
): { fh: number; offset: number; writeFlags: number; data: Uint8Array } {
  const v = need(body, 40, "fuse_write_in");
  const size = v.getUint32(16, true);
  if (body.length < 40 + size) {
    throw new ProtocolError(`fuse_write_in: ${size} bytes announced, ${body.length - 40} sent`);
  }
  return {
    fh: u64(v, 0),
    offset: u64(v, 8),
    writeFlags: v.getUint32(20, true),
    data: body.subarray(40, 40 + size),
  };
}

/**
 * `fuse_setxattr_in` (size, flags; 16 bytes with FUSE_SETXATTR_EXT, else 8), the name and
 * the value.
 *
 * @example
 * ```ts ignore
 * const { name, value, flags } = decodeSetxattrIn(body, false);
 * ```
 */
export function decodeSetxattrIn(
  body: Uint8Array,
  extended: boolean,
): { flags: number; name: Uint8Array; value: Uint8Array } {
  const head = extended ? 16 : 8;
  const v = need(body, head, "fuse_setxattr_in");
  const size = v.getUint32(0, true);
  const name = decodeName(body, head);
  const start = head + name.length + 1;
  if (body.length < start + size) {
    throw new ProtocolError(`fuse_setxattr_in: value of ${size} bytes announced`);
  }
  return { flags: v.getUint32(4, true), name, value: body.subarray(start, start + size) };
}

/**
 * `fuse_fsync_in` (FSYNC, FSYNCDIR): the handle and whether only data is asked for.
 *
 * @example
 * ```ts ignore
 * const { datasync } = decodeFsyncIn(body);
 * ```
 */
export function decodeFsyncIn(body: Uint8Array): { fh: number; datasync: boolean } {
  const v = need(body, 16, "fuse_fsync_in");
  return { fh: u64(v, 0), datasync: (v.getUint32(8, true) & 1) !== 0 };
}

/** fallocate(2) mode bits (`fuse_fallocate_in.mode`). */
export const FallocateMode = {
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  COLLAPSE_RANGE: 0x08,
  ZERO_RANGE: 0x10,
  INSERT_RANGE: 0x20,
  UNSHARE_RANGE: 0x40,
} as const;

/**
 * `fuse_fallocate_in`.
 *
 * @example
 * ```ts ignore
 * const { offset, length, mode } = decodeFallocateIn(body);
 * ```
 */
export function decodeFallocateIn(
  body: Uint8Array,
): { fh: number; offset: number; length: number; mode: number } {
  const v = need(body, 32, "fuse_fallocate_in");
  return { fh: u64(v, 0), offset: u64(v, 8), length: u64(v, 16), mode: v.getUint32(24, true) };
}

/**
 * `fuse_ioctl_in` and the input data after it.
 *
 * @example
 * ```ts ignore
 * const { cmd, input, outSize } = decodeIoctlIn(body);
 * ```
 */
export function decodeIoctlIn(
  body: Uint8Array,
): { fh: number; flags: number; cmd: number; input: Uint8Array; outSize: number } {
  const v = need(body, 32, "fuse_ioctl_in");
  const inSize = v.getUint32(24, true);
  if (body.length < 32 + inSize) {
    throw new ProtocolError(`fuse_ioctl_in: ${inSize} input bytes announced`);
  }
  return {
    fh: u64(v, 0),
    flags: v.getUint32(8, true),
    cmd: v.getUint32(12, true),
    input: body.subarray(32, 32 + inSize),
    outSize: v.getUint32(28, true),
  };
}

/**
 * `fuse_copy_file_range_in`: from the request's node at `offIn` to `nodeidOut` at `offOut`.
 *
 * @example
 * ```ts ignore
 * const { offIn, nodeidOut, offOut, len } = decodeCopyFileRangeIn(body);
 * ```
 */
export function decodeCopyFileRangeIn(body: Uint8Array): {
  fhIn: number;
  offIn: number;
  nodeidOut: number;
  fhOut: number;
  offOut: number;
  len: number;
  flags: number;
} {
  const v = need(body, 56, "fuse_copy_file_range_in");
  return {
    fhIn: u64(v, 0),
    offIn: u64(v, 8),
    nodeidOut: u64(v, 16),
    fhOut: u64(v, 24),
    offOut: u64(v, 32),
    len: u64(v, 40),
    flags: u64(v, 48),
  };
}
