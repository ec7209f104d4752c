/**
 * ext4ts: a userspace ext2/3/4 driver and toolkit.
 *
 * The public library API. Everything here is pure TypeScript over a {@link BlockDevice},
 * except the helpers that open files and block devices through libc.
 *
 * @example
 * ```ts ignore
 * import { Ext4, openBlockDevice, readSuperblock } from "./mod.ts";
 * const dev = openBlockDevice("disk.img");
 * const sb = await readSuperblock(dev);
 * console.log(sb.volumeName, sb.blockSize);
 * await dev.close();
 *
 * const fs = await Ext4.open("disk.img");
 * console.log(new TextDecoder().decode(await fs.readFile("/etc/hostname")));
 * await fs.close();
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
export { FsFileBlockDevice, openFsFileDevice } from "./ffi/fsfile_device.ts";

// ---- errors ----
export {
  asExt4Error,
  CorruptError,
  DeviceOpenError,
  Errno,
  Ext4Error,
  type Ext4ErrorCode,
} from "./lib/errors.ts";

// ---- on-disk structures ----
export { crc16, crc32c, crc32cU32, crc32cWords } from "./lib/checksum.ts";
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
} from "./lib/features.ts";
export {
  EXT4_MAGIC,
  formatUuid,
  parseSuperblock,
  type ParseSuperblockOptions,
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

export { MMP_MAGIC, type MmpBlock, type MmpState, parseMmpBlock, readMmpBlock } from "./lib/mmp.ts";
export { ctime, type NameResolver, superblockReport } from "./lib/superblock_report.ts";

// ---- probe ----
export {
  type Capabilities,
  capabilitiesFor,
  type Capability,
  type FsType,
  fsTypeOf,
  NO_READ_WRITE_MOUNT,
  probeDevice,
  type ProbeResult,
  type RecoverySummary,
  stateSummary,
  WRITE_SUPPORTED,
} from "./lib/probe.ts";
export {
  type Partition,
  type PartitionTable,
  partitionTableHint,
  readPartitionTable,
} from "./lib/partition_table.ts";
export { type DeviceUse, deviceUse, type MountEntry } from "./ffi/device_status.ts";

// ---- reader (issue: complete reader) ----
export { Ext4, type Ext4PathOpenOptions } from "./ffi/open_filesystem.ts";
export {
  compareBytes,
  type DirEntry,
  type Ext4File,
  type Ext4OpenOptions,
  type Ext4Stat,
  type Ext4Statfs,
  type FileType,
  type Timespec,
} from "./lib/filesystem.ts";
export type { Ext4 as Ext4Base } from "./lib/filesystem.ts";
export type { OpenPolicy } from "./lib/ext4/super.ts";
export {
  fileTypeOfMode,
  Inode,
  inodeChecksum,
  InodeFlags,
  inodeLocation,
  Mode,
  parseInode,
  type ParseInodeOptions,
  readInode,
} from "./lib/inode.ts";
export {
  EXTENT_MAGIC,
  extentBlockChecksum,
  type ExtentHeader,
  type ExtentOwner,
  type ExtentTreeOptions,
  parseExtentHeader,
  readExtentTree,
} from "./lib/extent.ts";
export { type BlockMapOwner, readBlockMap } from "./lib/block_map.ts";
export { type BlockRun, findRun, readMapped, seekRuns } from "./lib/file_map.ts";
export {
  matchesNoKeyDigest,
  noKeyName,
  noKeyNameLength,
  type ParsedNoKeyName,
  parseNoKeyName,
} from "./lib/fscrypt_name.ts";
export {
  pythonCodePoints,
  treeListing,
  treeListingBytes,
  type TreeListingOptions,
} from "./lib/tree_listing.ts";
export {
  computeDxChecksum,
  type DirBlockLocation,
  type DirContext,
  type DirectorySource,
  direntTypeOfMode,
  DirFileType,
  dirLeafChecksum,
  type DirRecord,
  iterateDirectory,
  parseDirectoryBlock,
  parseInlineDirectory,
  recLenToDisk,
  setDirentTail,
} from "./lib/directory.ts";
export {
  type DxEntry,
  type DxIndex,
  type DxRootInfo,
  htreeLookup,
  type HtreeProbe,
  parseDxNode,
  parseDxRoot,
} from "./lib/dir_htree.ts";
export { type DirHash, dirHash, DxHashVersion } from "./lib/dir_hash.ts";
export { readInlineData, readInlineFile } from "./lib/inline_data.ts";
export {
  HANDLED_XATTR_INDEXES,
  readRawXattrs,
  readXattrs,
  splitXattrName,
  XATTR_PREFIXES,
  xattrBlockChecksum,
  type XattrEntry,
  XattrIndex,
  type XattrSource,
} from "./lib/xattr.ts";
export {
  type AclEntry,
  aclFromXattr,
  aclModeBits,
  AclTag,
  aclToXattr,
  decodeExt4Acl,
  encodeExt4Acl,
  formatAcl,
  validateAcl,
  xattrAclToExt4,
} from "./lib/acl.ts";
export { Lru } from "./lib/lru.ts";

// ---- journal (jbd2) ----
export {
  BlockType,
  JBD2_MAGIC,
  JournalCompat,
  journalFeatureNames,
  JournalIncompat,
  JournalSuperblock,
  parseJournalSuperblock,
  type ParseJournalSuperblockOptions,
} from "./lib/journal/superblock.ts";
export {
  type DescriptorTag,
  type JournalHeader,
  parseDescriptorTags,
  readHeader,
  TagFlag,
} from "./lib/journal/descriptor_block.ts";
export { type CommitBlock, crc32Be, parseCommitBlock } from "./lib/journal/commit_block.ts";
export { parseRevokeBlock } from "./lib/journal/revocation_block.ts";
export {
  assertRecoverable,
  finalWrites,
  type JournalStore,
  type LoggedBlock,
  recoverJournal,
  type RecoveryPlan,
  replayedBlock,
  type ReplayWrite,
  tidGeq,
  tidGt,
  type TransactionInfo,
} from "./lib/journal/recovery.ts";
export {
  journalBlockMapper,
  type LocatedJournal,
  locateJournal,
  type LocateJournalOptions,
} from "./lib/journal/locate.ts";
export { type OrphanCleanup, releaseOrphans } from "./lib/journal/orphans.ts";
export {
  blockContents,
  type BlockSource,
  needsRecovery,
  type PreparedReplay,
  type PrepareOptions,
  prepareReplay,
  replayJournal,
  type ReplayOptions,
  type ReplayResult,
} from "./lib/journal/replay.ts";
export {
  decodeFastCommits,
  type FastCommitRecord,
  FastCommitTag,
} from "./lib/journal/fast_commit.ts";
export { JournalOverlayDevice } from "./lib/journal_overlay.ts";

// ---- FUSE ----
export {
  type AttrReply,
  type DirentPlus,
  errnoOf,
  FuseError,
  type FuseOperations,
  type OpenReply,
  type RequestContext,
  type SeekWhence,
} from "./ffi/fuse/ops.ts";
export {
  type DirentOut,
  type EntryOut,
  type FuseAttr,
  type FuseTime,
  type StatfsOut,
} from "./ffi/fuse/protocol.ts";
export {
  FuseSession,
  type InitInfo,
  type SessionEnd,
  type SessionOptions,
} from "./ffi/fuse/session.ts";
export {
  ext4Backend,
  type Ext4DirEntryLike,
  type Ext4FileType,
  type Ext4Like,
  Ext4Operations,
  type Ext4OperationsOptions,
  type Ext4StatLike,
} from "./ffi/fuse/ext4_ops.ts";
export {
  defaultSettings,
  type MountBackend,
  type MountSettings,
  type OpenedFilesystem,
  serve,
  type ServeOptions,
} from "./ffi/fuse/serve.ts";
export {
  attachLoop,
  type FuseMountOptions,
  type LoopDevice,
  mountFuse,
  type MountState,
  openFuseDevice,
  unmountAsync,
} from "./ffi/fuse/mount.ts";

// ---- writing ----
// (The writer uses the reader's InodeFlags, DirFileType, direntTypeOfMode, rec_len and
// checksum-tail helpers and dirHash, and the reader's xattr names and ACL codec; its readXattrs
// (through a transaction, built on the reader's parsers) is not exported.)
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
  type BlockReader,
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
  type InodeTime,
  writeInode,
} from "./lib/inode_write.ts";
export { buildExtentTree, type BuiltExtentTree, type FileExtent } from "./lib/extent_write.ts";
export { blockMapPath, buildBlockMap, type BuiltBlockMap } from "./lib/blockmap_write.ts";
export { type NewFileData, type NewFileDataOptions, writeNewFileData } from "./lib/file_write.ts";
export {
  insertDirEntry,
  newDirectoryBlock,
  type NewDirEntry,
  removeDirEntry,
  setDirBlockChecksum,
} from "./lib/dir_write.ts";
export {
  BlockMapEditor,
  type FileMap,
  type FileMapEditor,
  maxFileSize,
  readFileMap,
  rewriteFileMap,
} from "./lib/file_map_write.ts";
export { ExtentTreeEditor, type ExtentTreeEditorOptions } from "./lib/extent_tree_write.ts";
export type { OpContext } from "./lib/ext4/context.ts";
export {
  fallocateRange,
  punchHole,
  truncateFile,
  writeFileRange,
  zeroRange,
} from "./lib/file_update.ts";
export { decodeDeviceBlock, deviceBlock, symlinkData } from "./lib/special_write.ts";
export {
  chmodAccessAcl,
  releaseXattrBlock,
  setXattr,
  type SetXattrOptions,
  setXattrs,
  type Xattr,
  type XattrChange,
  xattrNameForWrite,
} from "./lib/xattr_write.ts";
export {
  compareXattrs,
  encodeXattrBlock,
  type StoredXattr,
  XATTR_REFCOUNT_MAX,
  xattrBlockHash,
  xattrEntryHash,
} from "./lib/xattr_block.ts";
export { XattrBlockIndex, xattrBlockIndex } from "./lib/xattr_share.ts";
export {
  aclCreateMasq,
  inheritAcls,
  type InheritedAcls,
  inheritedXattrs,
  readDefaultAcl,
} from "./lib/acl_inherit.ts";
export {
  addOrphan,
  listOrphans,
  orphanIfUnlinked,
  processOrphans,
  releaseIfUnlinked,
  removeOrphan,
} from "./lib/ext4/orphan.ts";
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
export {
  canInline,
  inlineValueRoom,
  readInline,
  truncateInlineInPlace,
  uninline,
  writeInline,
  writeInlineInPlace,
} from "./lib/inline_write.ts";
export {
  canInlineDirectory,
  convertInlineDirectory,
  initInlineDirectory,
  inlineDirEntries,
  type InlineDirEntry,
  inlineDirInsert,
  inlineDirLookup,
  inlineDirRemove,
  inlineDirRetarget,
} from "./lib/inline_dir_write.ts";
export {
  ORPHAN_BLOCK_MAGIC,
  ORPHAN_BLOCK_TAIL,
  orphanBlockChecksum,
  orphanSlotsPerBlock,
} from "./lib/orphan_file.ts";
export {
  type DirBlockAllocator,
  dxCheckInsert,
  type DxDir,
  dxInsert,
  dxLimit,
  dxLookup,
  makeIndexed,
} from "./lib/htree_write.ts";
export {
  checkRegular,
  chmodAt,
  chownAt,
  fallocateAt,
  fallocateInode,
  type FallocateOptions,
  linkAt,
  mkdirAt,
  mknodAt,
  type PathWriteOptions,
  removeAt,
  removeXattrAt,
  renameAt,
  type Resolved,
  type ResolveOptions,
  resolvePath,
  setXattrAt,
  symlinkAt,
  truncateAt,
  type UnlinkOptions,
  utimeAt,
  writeFileAt,
} from "./lib/path_write.ts";
// The write API of Ext4 (issue #6): its option types, open files for writing, the block cache
// it shares between reads and transactions, and open files kept on the orphan list.
export type { MkdirOptions, TimeInput, WriteFileOptions } from "./lib/filesystem.ts";
export {
  Ext4WritableFile,
  type OpenWritableOptions,
  STREAM_BATCH,
  type WritableFileHost,
  WRITE_CHUNK,
} from "./lib/writable_file.ts";
export { type CommitListener, SharedBlockCache } from "./lib/shared_block_cache.ts";
export { OpenFiles, unlinkKeepingOpen } from "./lib/open_files.ts";

export { VERSION } from "./lib/version.ts";
