/**
 * ext4ts: a userspace ext2/3/4 driver and toolkit.
 *
 * The public library API: the {@link Ext4} filesystem (read and write by path, inode and
 * stream), the block devices it runs on, its typed errors, {@link probeDevice}, journal replay
 * and inspection ({@link replayJournal}, {@link locateJournal} + {@link recoverJournal}) and the
 * FUSE mount server ({@link serve}). Power users find the on-disk codecs in the `./ondisk`
 * sub-export (lib/ondisk/mod.ts) and the journal format in `./jbd2` (lib/jbd2/mod.ts).
 * Everything else under lib/ and ffi/ is internal: its modules move and change without notice.
 *
 * @example
 * ```ts
 * import { Ext4, MemoryBlockDevice, probeDevice } from "./mod.ts";
 *
 * // A small filesystem made by mkfs.ext4, read into memory.
 * const img = await Deno.makeTempFile({ suffix: ".img" });
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", "-L", "demo", img, "4M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const probe = await probeDevice(device);
 * console.log(probe.fsType, probe.superblock.volumeName, probe.needsRecovery); // ext4 demo false
 *
 * const fs = await Ext4.open(device, { readOnly: false });
 * await fs.writeFile("/hello.txt", new TextEncoder().encode("hello\n"));
 * console.log(new TextDecoder().decode(await fs.readFile("/hello.txt"))); // "hello\n"
 * await fs.close();
 * await Deno.remove(img);
 * ```
 *
 * @module
 */

// ---- the filesystem ----
export { Ext4, type Ext4PathOpenOptions } from "./ffi/open_filesystem.ts";
export type {
  DirEntry,
  Ext4 as Ext4Base,
  Ext4File,
  Ext4OpenOptions,
  Ext4Stat,
  Ext4Statfs,
  FileType,
  FsCacheCounts,
  MkdirOptions,
  TimeInput,
  Timespec,
  WriteFileOptions,
} from "./lib/ext4/filesystem.ts";
export type { OpenPolicy } from "./lib/ext4/super.ts";
export type { CacheCounts } from "./lib/ext4/inode.ts";
export { Ext4WritableFile, type OpenWritableOptions } from "./lib/ext4/writable_file.ts";
export type { FallocateOptions } from "./lib/ext4/path_ops.ts";
export type { TrimRange } from "./lib/ext4/trim.ts";
export type {
  Ext4NodeWriter,
  NodeAttributeChange,
  NodeCreateOptions,
} from "./lib/ext4/fs_node_write.ts";
// What `inode(ino)` and `blockRuns(ino)` return (the inode codec is in `./ondisk`).
export type { Inode } from "./lib/ondisk/inode.ts";
export type { BlockRun } from "./lib/ext4/file_map.ts";

// ---- block devices ----
export {
  type BlockDevice,
  MemoryBlockDevice,
  OffsetBlockDevice,
} from "./lib/block/block_device.ts";
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

// ---- probe ----
export {
  type Capabilities,
  type Capability,
  type FsType,
  probeDevice,
  type ProbeResult,
  type RecoverySummary,
} from "./lib/report/probe.ts";
// The decoded structures a probe (and a journal) hands back; their codecs are in `./ondisk`.
export type { Superblock } from "./lib/ondisk/superblock.ts";
export type { GroupDescriptor, GroupDescriptorTable } from "./lib/ondisk/group_descriptor.ts";
export type { MmpBlock, MmpState } from "./lib/ondisk/mmp.ts";
export type { FeatureWords, SupportLevel } from "./lib/ondisk/features.ts";

// ---- journal: replay (`ext4ts journal replay`) and inspection (`ext4ts journal show`) ----
export {
  type BlockSource,
  needsRecovery,
  type PreparedReplay,
  type PrepareOptions,
  replayJournal,
  type ReplayOptions,
  type ReplayResult,
} from "./lib/ext4/recovery.ts";
export {
  type LocatedJournal,
  locateJournal,
  type LocateJournalOptions,
} from "./lib/ext4/journal.ts";
export { recoverJournal } from "./lib/jbd2/recovery.ts";
export type {
  LoggedBlock,
  RecoveryPlan,
  ReplayWrite,
  TransactionInfo,
} from "./lib/jbd2/recovery_plan.ts";
export type { JournalStore } from "./lib/jbd2/journal_store.ts";
export type { OrphanCleanup } from "./lib/ext4/orphans_replay.ts";
export type { JournalSuperblock } from "./lib/jbd2/superblock.ts";

// ---- the mount server (`ext4ts mount` runs it in a daemon) ----
export {
  defaultSettings,
  type MountBackend,
  type MountSettings,
  type OpenedFilesystem,
  serve,
  type ServeOptions,
} from "./ffi/fuse/serve.ts";
export { ext4Backend } from "./ffi/fuse/ext4_ops.ts";
// What a backend of one's own implements (OpenedFilesystem.ops) and the replies it builds.
export type {
  AttrReply,
  CreateRequest,
  DirentPlus,
  FallocateRequest,
  FuseOperations,
  FuseWriteOperations,
  OpenReply,
  RequestContext,
  SeekWhence,
  SetattrRequest,
} from "./ffi/fuse/ops.ts";
export type {
  DirentOut,
  EntryOut,
  FuseAttr,
  FuseTime,
  StatfsOut,
} from "./ffi/fuse/protocol_replies.ts";
export type { SessionEnd } from "./ffi/fuse/session.ts";
export type { MountState } from "./ffi/fuse/mount_state.ts";

export { VERSION } from "./lib/version.ts";
