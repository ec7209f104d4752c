/**
 * ext4ts: a userspace ext2/3/4 driver and toolkit.
 *
 * The public library API. Everything here is pure TypeScript over a {@link BlockDevice},
 * except the helpers that open files and block devices through libc.
 *
 * @example
 * ```ts ignore
 * import { openBlockDevice, readSuperblock } from "./mod.ts";
 * const dev = openBlockDevice("disk.img");
 * const sb = await readSuperblock(dev);
 * console.log(sb.volumeName, sb.blockSize);
 * await dev.close();
 * ```
 *
 * @module
 */

// ---- block layer ----
export {
  type BlockDevice,
  checkRange,
  MemoryBlockDevice,
  OffsetBlockDevice,
  readBytes,
} from "./lib/block_device.ts";
export { FileBlockDevice, openBlockDevice, type OpenDeviceOptions } from "./ffi/file_device.ts";

// ---- errors ----
export { asExt4Error, CorruptError, Errno, Ext4Error, type Ext4ErrorCode } from "./lib/errors.ts";

// ---- on-disk structures ----
export { crc16, crc32c, crc32cU32 } from "./lib/checksum.ts";
export {
  Compat,
  featureByName,
  featureNames,
  featureSupport,
  Incompat,
  RoCompat,
  type SupportLevel,
  type SupportVerdict,
} from "./lib/features.ts";
export {
  EXT4_MAGIC,
  formatUuid,
  parseSuperblock,
  readSuperblock,
  State,
  Superblock,
} from "./lib/superblock.ts";
export {
  GroupDescriptor,
  groupDescriptorChecksum,
  GroupDescriptorTable,
  GroupFlags,
  groupHasSuperblock,
  readGroupDescriptors,
} from "./lib/group_descriptor.ts";

// ---- reader (issue: complete reader) ----

// ---- journal (jbd2) ----

// ---- writing ----
export {
  BlockCache,
  type BlockCacheOptions,
  type CommitBatch,
  type CommitSink,
  type DataWrite,
  InPlaceCommitSink,
  type MetadataWrite,
  Transaction,
  type TransactionState,
} from "./lib/transaction.ts";
export { WriteLogDevice, type WriteLogEntry } from "./lib/write_log_device.ts";
export {
  blockBitmapChecksum,
  blocksInGroup,
  initialBlockBitmap,
  initialInodeBitmap,
  inodeBitmapChecksum,
  readBlockBitmap,
  readInodeBitmap,
} from "./lib/bitmap.ts";
export {
  type AllocateBlocksOptions,
  type AllocateInodeOptions,
  Allocator,
  assertWritable,
  type Extent,
} from "./lib/alloc.ts";
export {
  decodeInode,
  encodeInode,
  type InodeFields,
  InodeFlags,
  type InodeTime,
  writeInode,
} from "./lib/inode_write.ts";
export { buildExtentTree, type BuiltExtentTree, type FileExtent } from "./lib/extent_write.ts";
export { blockMapPath, buildBlockMap, type BuiltBlockMap } from "./lib/blockmap_write.ts";
export { type NewFileData, type NewFileDataOptions, writeNewFileData } from "./lib/file_write.ts";
export {
  DirFileType,
  fileTypeOfMode,
  insertDirEntry,
  newDirectoryBlock,
  removeDirEntry,
  setDirBlockChecksum,
} from "./lib/dir_write.ts";
export { type FileMap, readFileMap, rewriteFileMap } from "./lib/file_map.ts";
export {
  fallocateRange,
  type FileContext,
  punchHole,
  truncateFile,
  writeFileRange,
} from "./lib/file_update.ts";
export { decodeDeviceBlock, deviceBlock, symlinkData } from "./lib/special_write.ts";
export {
  aclFromDisk,
  aclToDisk,
  readXattrs,
  setXattr,
  type SetXattrOptions,
  type Xattr,
} from "./lib/xattr_write.ts";
export { addOrphan, listOrphans, removeOrphan } from "./lib/orphan_write.ts";
export {
  addEntry,
  type AttributeChange,
  createFile,
  createSymlink,
  linkInode,
  listEntries,
  lookupEntry,
  makeDirectory,
  makeNode,
  type NamespaceContext,
  newInode,
  type NewInodeOptions,
  releaseInode,
  removeDirectory,
  removeEntry,
  renameEntry,
  type RenameOptions,
  setAttributes,
  unlinkEntry,
} from "./lib/namespace_write.ts";
export { Ext4Writer, type WriterOptions } from "./lib/writer.ts";
export { canInline, readInline, uninline, writeInline } from "./lib/inline_write.ts";
export { dirHash, DxHash } from "./lib/dx_hash.ts";
export { dxInsert, dxLookup, makeIndexed } from "./lib/htree_write.ts";
export {
  chmodAt,
  chownAt,
  linkAt,
  mkdirAt,
  type PathWriteOptions,
  removeAt,
  removeXattrAt,
  renameAt,
  resolvePath,
  setXattrAt,
  symlinkAt,
  truncateAt,
  utimeAt,
  writeFileAt,
} from "./lib/path_write.ts";

export { VERSION } from "./lib/version.ts";
