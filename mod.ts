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

// ---- FUSE ----
export {
  type AttrReply,
  type DirentPlus,
  errnoOf,
  FuseError,
  type FuseOperations,
  type OpenReply,
  type RequestContext,
} from "./ffi/fuse/ops.ts";
export { FuseSession, type SessionEnd, type SessionOptions } from "./ffi/fuse/session.ts";
export {
  ext4Backend,
  type Ext4Like,
  Ext4Operations,
  type Ext4OperationsOptions,
} from "./ffi/fuse/ext4_ops.ts";
export {
  defaultSettings,
  type MountBackend,
  type MountSettings,
  type OpenedFilesystem,
  serve,
} from "./ffi/fuse/serve.ts";
export { attachLoop, mountFuse, openFuseDevice, unmountAsync } from "./ffi/fuse/mount.ts";

// ---- writing ----

export { VERSION } from "./lib/version.ts";
