/**
 * The on-disk codecs of ext2/3/4 (the `./ondisk` sub-export): superblock, group descriptors,
 * features, checksums, inodes, extent nodes, directory blocks and their tails, dx (htree)
 * nodes and the name hash, extended attributes, ACLs, bitmaps and the MMP block. They decode
 * and encode bytes and compute checksums; apart from `readSuperblock` and
 * `readGroupDescriptors`, which read a {@link BlockDevice}, they do no I/O. A power-user
 * surface: its names follow the kernel's structures and may change between minor versions.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../../mod.ts";
 * import { featureNames, readGroupDescriptors, readSuperblock } from "./mod.ts";
 *
 * const img = await Deno.makeTempFile({ suffix: ".img" });
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", "-L", "codecs", img, "4M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const sb = await readSuperblock(device);
 * const groups = await readGroupDescriptors(device, sb);
 * console.log(sb.volumeName, sb.blockSize, groups.length); // codecs 1024 1
 * console.log(featureNames(sb).includes("extent")); // true
 * await Deno.remove(img);
 * ```
 *
 * @module
 */

// ---- checksums and features ----
export { crc16, crc32c } from "./checksum.ts";
export {
  Compat,
  featureByName,
  type FeatureKind,
  featureNames,
  featureSupport,
  type FeatureWords,
  Incompat,
  RoCompat,
  type SupportLevel,
  type SupportVerdict,
} from "./features.ts";

// ---- superblock, group descriptors, bitmaps, MMP ----
export {
  EXT4_MAGIC,
  formatUuid,
  parseSuperblock,
  type ParseSuperblockOptions,
  readSuperblock,
  State,
  Superblock,
} from "./superblock.ts";
export {
  GroupDescriptor,
  groupDescriptorChecksum,
  GroupDescriptorTable,
  GroupFlags,
  groupHasSuperblock,
  readGroupDescriptors,
} from "./group_descriptor.ts";
export { blockBitmapChecksum, inodeBitmapChecksum } from "./bitmap.ts";
export { MMP_MAGIC, type MmpBlock, type MmpState, parseMmpBlock } from "./mmp.ts";

// ---- inodes and extent nodes ----
export {
  type FileType,
  fileTypeOfMode,
  Inode,
  inodeChecksum,
  InodeFlags,
  inodeLocation,
  Mode,
  parseInode,
  type ParseInodeOptions,
  type Timespec,
} from "./inode.ts";
export { decodeInode, encodeInode, type InodeFields, type InodeTime } from "./inode.ts";
export {
  EXTENT_MAGIC,
  extentBlockChecksum,
  type ExtentHeader,
  parseExtentHeader,
} from "./extent.ts";

// ---- directory blocks, dx nodes and the name hash ----
export {
  type DirBlockLocation,
  type DirContext,
  direntTypeOfMode,
  DirFileType,
  dirLeafChecksum,
  type DirRecord,
  parseDirectoryBlock,
  recLenToDisk,
  setDirentTail,
} from "./dirent.ts";
export { type DxEntry, type DxIndex, type DxRootInfo, parseDxNode, parseDxRoot } from "./dx.ts";
export { type DirHash, dirHash, DxHashVersion } from "./dir_hash.ts";

// ---- extended attributes and ACLs ----
export {
  splitXattrName,
  XATTR_PREFIXES,
  xattrBlockChecksum,
  type XattrEntry,
  XattrIndex,
} from "./xattr.ts";
export { encodeXattrBlock, type StoredXattr, xattrEntryHash } from "./xattr.ts";
export {
  type AclEntry,
  aclFromXattr,
  AclTag,
  aclToXattr,
  decodeExt4Acl,
  encodeExt4Acl,
  formatAcl,
} from "./acl.ts";

export type { BlockDevice } from "../block/block_device.ts";
