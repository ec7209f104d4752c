/**
 * POSIX default-ACL inheritance on create, as the kernel's `posix_acl_create` and ext4's
 * `ext4_init_acl` do it: an inode created in a directory with a default ACL
 * (`system.posix_acl_default`) gets an access ACL made from that default ACL masked by the
 * create mode (stored only when it says more than a mode can: named entries or a mask), its
 * permission bits reduced to what the ACL allows, and — a directory — the default ACL itself.
 * Symlinks never get ACLs. Without a default ACL nothing changes (the kernel would apply the
 * umask there; this library has none, the mode given is used as is).
 *
 * @module
 */

import { type AclEntry, AclTag, aclToXattr, decodeExt4Acl } from "../ondisk/acl.ts";
import { CorruptError } from "../errors.ts";
import type { GroupDescriptorTable } from "../ondisk/group_descriptor.ts";
import { getInode } from "./inode.ts";
import { Mode } from "../ondisk/inode.ts";
import type { Superblock } from "../ondisk/superblock.ts";
import type { Transaction } from "../txn/transaction.ts";
import { XattrIndex } from "../ondisk/xattr.ts";
import { findRawXattr, type XattrChange, xattrSourceOf } from "./xattr.ts";

/** What a new inode gets from its directory's default ACL. */
export interface InheritedAcls {
  /** The new mode: type and special bits as given, permission bits masked by the ACL. */
  mode: number;
  /** The access ACL to store, or null when the mode says it all. */
  access: AclEntry[] | null;
  /** The default ACL to store (directories only), or null. */
  default: AclEntry[] | null;
}

/**
 * Masks a copy of default ACL `acl` by create mode `mode` (`posix_acl_create_masq`): the
 * owner and other entries, and the mask (without one, the owning group entry) keep only the
 * bits the mode has, and the mode keeps only the bits those entries have. `equivalent` when
 * the ACL has neither named entries nor a mask, so the mode says everything it does.
 * CorruptError when the ACL has neither a mask nor an owning group entry (the kernel's EIO).
 *
 * @example
 * ```ts
 * import { aclCreateMasq } from "./acl.ts";
 * const u = 0xffffffff;
 * const r = aclCreateMasq([
 *   { tag: 1, perm: 7, id: u }, { tag: 2, perm: 7, id: 1000 }, { tag: 4, perm: 5, id: u },
 *   { tag: 0x10, perm: 7, id: u }, { tag: 0x20, perm: 5, id: u },
 * ], 0o100640);
 * console.log(r.mode.toString(8), r.acl.map((e) => e.perm), r.equivalent);
 * // 100640 [ 6, 7, 5, 4, 0 ] false
 * ```
 */
export function aclCreateMasq(
  acl: AclEntry[],
  mode: number,
): { acl: AclEntry[]; mode: number; equivalent: boolean } {
  const out = acl.map((e) => ({ ...e }));
  let m = mode & 0o777;
  let groupObj: AclEntry | null = null;
  let mask: AclEntry | null = null;
  let equivalent = true;
  for (const e of out) {
    switch (e.tag) {
      case AclTag.USER_OBJ:
        e.perm &= (m >> 6) | ~7;
        m &= (e.perm << 6) | ~0o700;
        break;
      case AclTag.USER:
      case AclTag.GROUP:
        equivalent = false;
        break;
      case AclTag.GROUP_OBJ:
        groupObj = e;
        break;
      case AclTag.OTHER:
        e.perm &= m | ~7;
        m &= e.perm | ~7;
        break;
      case AclTag.MASK:
        mask = e;
        equivalent = false;
        break;
      default:
        throw new CorruptError("default ACL", `unknown tag 0x${e.tag.toString(16)}`);
    }
  }
  const group = mask ?? groupObj;
  if (!group) throw new CorruptError("default ACL", "neither a mask nor an owning group entry");
  group.perm &= (m >> 3) | ~7;
  m &= (group.perm << 3) | ~0o70;
  return { acl: out, mode: (mode & ~0o777) | (m & 0o777), equivalent };
}

/**
 * What an inode of `mode` created under default ACL `defaultAcl` gets (`posix_acl_create`):
 * null for a symlink or without a default ACL (nothing to inherit).
 *
 * @example
 * ```ts
 * import { inheritAcls } from "./acl.ts";
 * const u = 0xffffffff;
 * const def = [{ tag: 1, perm: 7, id: u }, { tag: 4, perm: 5, id: u }, { tag: 0x20, perm: 0, id: u }];
 * const r = inheritAcls(def, 0o40777)!;
 * console.log(r.mode.toString(8), r.access, r.default === def); // 40750 null true
 * ```
 */
export function inheritAcls(defaultAcl: AclEntry[] | null, mode: number): InheritedAcls | null {
  if (!defaultAcl || (mode & Mode.IFMT) === Mode.IFLNK) return null;
  const masked = aclCreateMasq(defaultAcl, mode);
  return {
    mode: masked.mode,
    access: masked.equivalent ? null : masked.acl,
    default: (mode & Mode.IFMT) === Mode.IFDIR ? defaultAcl : null,
  };
}

/**
 * The xattr changes that store `acls` on a new inode, in the kernel's order (default ACL,
 * then access ACL), values in the posix_acl_xattr format `setXattrs` takes.
 *
 * @example
 * ```ts ignore
 * await setXattrs(tx, alloc, sb, gdt, ino, inheritedXattrs(acls));
 * ```
 */
export function inheritedXattrs(acls: InheritedAcls): XattrChange[] {
  const out: XattrChange[] = [];
  if (acls.default) {
    out.push({ name: "system.posix_acl_default", value: aclToXattr(acls.default) });
  }
  if (acls.access) out.push({ name: "system.posix_acl_access", value: aclToXattr(acls.access) });
  return out;
}

/**
 * The default ACL of directory `dirIno` (from its inode body, else its xattr block, as the
 * kernel looks), or null when it has none or an empty one. A value that does not decode is a
 * CorruptError; one kept in an EA inode is UNSUPPORTED.
 *
 * @example
 * ```ts ignore
 * const def = await readDefaultAcl(tx, sb, gdt, parent);
 * ```
 */
export async function readDefaultAcl(
  tx: Transaction,
  sb: Superblock,
  gdt: GroupDescriptorTable,
  dirIno: number,
): Promise<AclEntry[] | null> {
  const raw = (await getInode(tx, sb, gdt, dirIno)).bytes; // only read: no copy
  const found = await findRawXattr(
    xattrSourceOf(tx, sb, dirIno, raw),
    (e) => e.index === XattrIndex.POSIX_ACL_DEFAULT && e.suffix.length === 0,
  );
  if (!found) return null;
  const entries = decodeExt4Acl(found.value, `default ACL of inode ${dirIno}`);
  return entries.length === 0 ? null : entries;
}
