/**
 * POSIX ACLs: ext4's compact on-disk format (version 1: 4-byte entries for the owner, owning
 * group, mask and other; 8-byte entries with an id for named users and groups), the VFS's
 * `posix_acl_xattr` format that getxattr(2) returns (version 2, every entry 8 bytes, id
 * 0xFFFFFFFF where there is none), conversion both ways, and getfacl-style text.
 *
 * @module
 */

import { CorruptError, Errno, Ext4Error } from "../errors.ts";

/** ACL entry tags. */
export const AclTag = {
  USER_OBJ: 0x01,
  USER: 0x02,
  GROUP_OBJ: 0x04,
  GROUP: 0x08,
  MASK: 0x10,
  OTHER: 0x20,
} as const;

/** The id of entries that have none. */
export const ACL_UNDEFINED_ID = 0xffffffff;
/** Version of ext4's on-disk ACL format. */
export const EXT4_ACL_VERSION = 1;
/** Version of the posix_acl_xattr format. */
export const POSIX_ACL_XATTR_VERSION = 2;

/** One ACL entry. `id` is a uid/gid for USER/GROUP, else {@link ACL_UNDEFINED_ID}. */
export interface AclEntry {
  /**
   * `e_tag`: the entry kind, an {@link AclTag} value (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK,
   * OTHER).
   */
  tag: number;
  /** rwx bits: 4 read, 2 write, 1 execute. */
  perm: number;
  /** `e_id`: the uid (USER) or gid (GROUP); {@link ACL_UNDEFINED_ID} for the other tags. */
  id: number;
}

function hasId(tag: number): boolean {
  return tag === AclTag.USER || tag === AclTag.GROUP;
}

/**
 * Decodes ext4's on-disk ACL (the raw value of system.posix_acl_access/default).
 * Throws {@link CorruptError} on a bad version, size or tag, as the kernel refuses them,
 * naming `what` (e.g. "default ACL of inode 12").
 *
 * @example
 * ```ts
 * import { decodeExt4Acl } from "./acl.ts";
 * const v = new Uint8Array([1, 0, 0, 0, 1, 0, 6, 0, 4, 0, 4, 0, 0x20, 0, 4, 0]);
 * console.log(decodeExt4Acl(v).map((e) => e.tag)); // [ 1, 4, 32 ]
 * ```
 */
export function decodeExt4Acl(value: Uint8Array, what = "ext4 ACL"): AclEntry[] {
  const bad = (detail: string): never => {
    throw new CorruptError(what, detail);
  };
  if (value.length < 4) bad(`${value.length} bytes is too short`);
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const version = v.getUint32(0, true);
  if (version !== EXT4_ACL_VERSION) bad(`unknown version ${version}`);
  const entries: AclEntry[] = [];
  let p = 4;
  while (p < value.length) {
    if (p + 4 > value.length) bad("truncated entry");
    const tag = v.getUint16(p, true);
    const perm = v.getUint16(p + 2, true);
    if (hasId(tag)) {
      if (p + 8 > value.length) bad("truncated entry");
      entries.push({ tag, perm, id: v.getUint32(p + 4, true) });
      p += 8;
    } else if (
      tag === AclTag.USER_OBJ || tag === AclTag.GROUP_OBJ || tag === AclTag.MASK ||
      tag === AclTag.OTHER
    ) {
      entries.push({ tag, perm, id: ACL_UNDEFINED_ID });
      p += 4;
    } else {
      bad(`unknown tag 0x${tag.toString(16)}`);
    }
  }
  // The kernel derives the entry count from the size assuming exactly four short entries
  // when there are more than four; a value that breaks that assumption is refused.
  const rest = value.length - 4;
  const expected = rest - 16 < 0
    ? (rest % 4 ? -1 : rest / 4)
    : ((rest - 16) % 8 ? -1 : (rest - 16) / 8 + 4);
  if (expected !== entries.length) {
    bad(`size ${value.length} does not match ${entries.length} entries`);
  }
  return entries;
}

/**
 * Encodes entries in ext4's on-disk format (for the write path).
 *
 * @example
 * ```ts
 * import { encodeExt4Acl } from "./acl.ts";
 * console.log(encodeExt4Acl([{ tag: 1, perm: 6, id: 0xffffffff }]).length); // 8
 * ```
 */
export function encodeExt4Acl(entries: AclEntry[]): Uint8Array {
  const size = 4 + entries.reduce((n, e) => n + (hasId(e.tag) ? 8 : 4), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, EXT4_ACL_VERSION, true);
  let p = 4;
  for (const e of entries) {
    v.setUint16(p, e.tag, true);
    v.setUint16(p + 2, e.perm, true);
    if (hasId(e.tag)) {
      v.setUint32(p + 4, e.id >>> 0, true);
      p += 8;
    } else {
      p += 4;
    }
  }
  return out;
}

/**
 * Encodes entries in the posix_acl_xattr format getxattr(2) returns.
 *
 * @example
 * ```ts
 * import { aclToXattr } from "./acl.ts";
 * console.log(aclToXattr([{ tag: 1, perm: 6, id: 0xffffffff }]).length); // 12
 * ```
 */
export function aclToXattr(entries: AclEntry[]): Uint8Array {
  const out = new Uint8Array(4 + 8 * entries.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, POSIX_ACL_XATTR_VERSION, true);
  entries.forEach((e, i) => {
    v.setUint16(4 + 8 * i, e.tag, true);
    v.setUint16(6 + 8 * i, e.perm, true);
    v.setUint32(8 + 8 * i, hasId(e.tag) ? e.id >>> 0 : ACL_UNDEFINED_ID, true);
  });
  return out;
}

/**
 * Decodes the posix_acl_xattr format (what setxattr(2) receives): user input, so a bad value
 * is an `INVALID` {@link Ext4Error} with the kernel's errno (`posix_acl_from_xattr`: EINVAL,
 * EOPNOTSUPP for an unknown version), not a {@link CorruptError}.
 *
 * @example
 * ```ts
 * import { aclFromXattr, aclToXattr } from "./acl.ts";
 * const e = [{ tag: 2, perm: 4, id: 1000 }];
 * console.log(aclFromXattr(aclToXattr(e))); // [ { tag: 2, perm: 4, id: 1000 } ]
 * ```
 */
export function aclFromXattr(value: Uint8Array): AclEntry[] {
  const invalid = (detail: string, errno: number = Errno.EINVAL): never => {
    throw new Ext4Error("INVALID", `posix_acl_xattr: ${detail}`, { errno });
  };
  if (value.length < 4) invalid(`bad size ${value.length}`);
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const version = v.getUint32(0, true);
  if (version !== POSIX_ACL_XATTR_VERSION) {
    invalid(`unknown version ${version}`, Errno.EOPNOTSUPP);
  }
  if ((value.length - 4) % 8 !== 0) invalid(`bad size ${value.length}`);
  const out: AclEntry[] = [];
  for (let p = 4; p < value.length; p += 8) {
    const tag = v.getUint16(p, true);
    if (!Object.values(AclTag).includes(tag as never)) {
      invalid(`unknown tag 0x${tag.toString(16)}`);
    }
    const id = hasId(tag) ? v.getUint32(p + 4, true) : ACL_UNDEFINED_ID;
    // make_kuid/make_kgid: (uid_t)-1 is no valid id.
    if (hasId(tag) && id === ACL_UNDEFINED_ID) invalid("invalid uid/gid 4294967295");
    out.push({ tag, perm: v.getUint16(p + 2, true), id });
  }
  return out;
}

/**
 * Checks an ACL as the kernel's `posix_acl_valid` does before storing it: perms within rwx,
 * exactly one owner, owning-group and other entry, in tag order (owner, named users, owning
 * group, named groups, mask, other), and a mask whenever there are named entries. A
 * violation is an `INVALID` {@link Ext4Error} (EINVAL).
 *
 * @example
 * ```ts
 * import { validateAcl } from "./acl.ts";
 * validateAcl([
 *   { tag: 1, perm: 6, id: 0xffffffff },
 *   { tag: 4, perm: 4, id: 0xffffffff },
 *   { tag: 0x20, perm: 4, id: 0xffffffff },
 * ]); // no error
 * ```
 */
export function validateAcl(entries: AclEntry[]): void {
  const invalid = (detail: string): never => {
    throw new Ext4Error("INVALID", `invalid ACL: ${detail}`);
  };
  // States as the kernel's: what may come next.
  const [USER, GROUP, OTHER, DONE] = [1, 2, 3, 4];
  let state = 0;
  let needsMask = false;
  for (const e of entries) {
    if (e.perm & ~7) invalid(`permission bits 0x${e.perm.toString(16)}`);
    switch (e.tag) {
      case AclTag.USER_OBJ:
        if (state !== 0) invalid("misplaced owner entry");
        state = USER;
        break;
      case AclTag.USER:
        if (state !== USER) invalid("misplaced named user entry");
        needsMask = true;
        break;
      case AclTag.GROUP_OBJ:
        if (state !== USER) invalid("misplaced owning group entry");
        state = GROUP;
        break;
      case AclTag.GROUP:
        if (state !== GROUP) invalid("misplaced named group entry");
        needsMask = true;
        break;
      case AclTag.MASK:
        if (state !== GROUP) invalid("misplaced mask entry");
        state = OTHER;
        break;
      case AclTag.OTHER:
        if (!(state === OTHER || (state === GROUP && !needsMask))) {
          invalid(needsMask ? "named entries without a mask" : "misplaced other entry");
        }
        state = DONE;
        break;
      default:
        invalid(`unknown tag 0x${e.tag.toString(16)}`);
    }
  }
  if (state !== DONE) invalid("owner, owning group or other entry missing");
}

/**
 * The mode an access ACL gives a file (`posix_acl_equiv_mode`): owner bits from the owner
 * entry, group bits from the mask (else the owning group), other bits from the other entry;
 * `equivalent` when the ACL says no more than those bits (the kernel then stores no ACL).
 *
 * @example
 * ```ts
 * import { aclModeBits } from "./acl.ts";
 * const u = 0xffffffff;
 * console.log(aclModeBits([
 *   { tag: 1, perm: 7, id: u }, { tag: 4, perm: 5, id: u }, { tag: 0x20, perm: 0, id: u },
 * ])); // { mode: 488, equivalent: true }
 * ```
 */
export function aclModeBits(entries: AclEntry[]): { mode: number; equivalent: boolean } {
  let mode = 0;
  let equivalent = true;
  for (const e of entries) {
    switch (e.tag) {
      case AclTag.USER_OBJ:
        mode |= (e.perm & 7) << 6;
        break;
      case AclTag.GROUP_OBJ:
        mode |= (e.perm & 7) << 3;
        break;
      case AclTag.OTHER:
        mode |= e.perm & 7;
        break;
      case AclTag.MASK:
        mode = (mode & ~0o70) | ((e.perm & 7) << 3);
        equivalent = false;
        break;
      default:
        equivalent = false;
    }
  }
  return { mode, equivalent };
}

/**
 * The value setxattr(2) of a POSIX ACL stores on ext4: posix_acl_xattr input decoded
 * ({@link aclFromXattr}), checked ({@link validateAcl}) and encoded in ext4's format; null
 * for an ACL without entries (the kernel then removes the ACL).
 *
 * @example
 * ```ts
 * import { aclToXattr, xattrAclToExt4 } from "./acl.ts";
 * const u = 0xffffffff;
 * const acl = [{ tag: 1, perm: 6, id: u }, { tag: 4, perm: 4, id: u }, { tag: 0x20, perm: 4, id: u }];
 * console.log(xattrAclToExt4(aclToXattr(acl))?.length); // 16
 * ```
 */
export function xattrAclToExt4(value: Uint8Array): Uint8Array | null {
  const entries = aclFromXattr(value);
  if (entries.length === 0) return null;
  validateAcl(entries);
  return encodeExt4Acl(entries);
}

/**
 * Converts an on-disk ext4 ACL value to what the kernel's getxattr returns.
 *
 * @example
 * ```ts
 * import { ext4AclToXattr } from "./acl.ts";
 * const disk = new Uint8Array([1, 0, 0, 0, 1, 0, 6, 0, 4, 0, 4, 0, 0x20, 0, 4, 0]);
 * console.log(ext4AclToXattr(disk).length); // 28
 * ```
 */
export function ext4AclToXattr(value: Uint8Array): Uint8Array {
  return aclToXattr(decodeExt4Acl(value));
}

function permString(perm: number): string {
  return (perm & 4 ? "r" : "-") + (perm & 2 ? "w" : "-") + (perm & 1 ? "x" : "-");
}

/**
 * Formats entries like getfacl (numeric ids), one per line; `prefix` "default:" for a
 * default ACL. With `effective`, entries limited by the mask get getfacl's
 * `#effective:` comment.
 *
 * @example
 * ```ts
 * import { formatAcl } from "./acl.ts";
 * console.log(formatAcl([
 *   { tag: 1, perm: 6, id: 0xffffffff },
 *   { tag: 2, perm: 7, id: 1000 },
 *   { tag: 4, perm: 4, id: 0xffffffff },
 *   { tag: 0x10, perm: 5, id: 0xffffffff },
 *   { tag: 0x20, perm: 4, id: 0xffffffff },
 * ]));
 * // user::rw-
 * // user:1000:rwx	#effective:r-x
 * // group::r--
 * // mask::r-x
 * // other::r--
 * ```
 */
export function formatAcl(
  entries: AclEntry[],
  options: { prefix?: string; effective?: boolean } = {},
): string {
  const prefix = options.prefix ?? "";
  const effective = options.effective ?? true;
  const mask = entries.find((e) => e.tag === AclTag.MASK);
  const lines = entries.map((e) => {
    let head: string;
    switch (e.tag) {
      case AclTag.USER_OBJ:
        head = "user::";
        break;
      case AclTag.USER:
        head = `user:${e.id}:`;
        break;
      case AclTag.GROUP_OBJ:
        head = "group::";
        break;
      case AclTag.GROUP:
        head = `group:${e.id}:`;
        break;
      case AclTag.MASK:
        head = "mask::";
        break;
      case AclTag.OTHER:
        head = "other::";
        break;
      default:
        head = `tag${e.tag}:${e.id}:`;
    }
    let line = prefix + head + permString(e.perm);
    const masked = e.tag === AclTag.USER || e.tag === AclTag.GROUP_OBJ || e.tag === AclTag.GROUP;
    if (effective && mask && masked && (e.perm & ~mask.perm & 7) !== 0) {
      line += `\t#effective:${permString(e.perm & mask.perm)}`;
    }
    return line;
  });
  return lines.join("\n");
}
