/**
 * The jbd2 journal (the `./jbd2` sub-export): its superblock, descriptor, commit and revoke
 * blocks, fast-commit records, recovery — the kernel's three passes over a log, worked out
 * in memory ({@link recoverJournal} writes nothing) — and {@link JournalWriter}, which logs
 * transactions as jbd2's commit does. It knows nothing of ext4: a
 * {@link JournalStore} gives it the journal's blocks (`locateJournal` in the main entry point
 * finds a filesystem's journal). A power-user surface: its names follow the kernel's
 * structures and may change between minor versions.
 *
 * @example
 * ```ts
 * import { locateJournal, MemoryBlockDevice } from "../../mod.ts";
 * import { readSuperblock } from "../ondisk/mod.ts";
 * import { journalFeatureNames, recoverJournal } from "./mod.ts";
 *
 * const img = await Deno.makeTempFile({ suffix: ".img" });
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "8M"] }).output();
 * const device = new MemoryBlockDevice(await Deno.readFile(img));
 * const { store, jsb } = await locateJournal(device, await readSuperblock(device));
 * const f = journalFeatureNames(jsb.featureCompat, jsb.featureIncompat, jsb.featureRoCompat);
 * console.log(store.description, jsb.maxLen, f); // inode 8 1024 []
 * console.log((await recoverJournal(store, jsb)).needed); // false: a clean journal
 * await Deno.remove(img);
 * ```
 *
 * @module
 */

export {
  BlockType,
  JBD2_MAGIC,
  JournalCompat,
  journalFeatureNames,
  JournalIncompat,
  JournalSuperblock,
  parseJournalSuperblock,
  type ParseJournalSuperblockOptions,
} from "./superblock.ts";
export {
  type DescriptorTag,
  type JournalHeader,
  parseDescriptorTags,
  readHeader,
  TagFlag,
} from "./descriptor_block.ts";
export { type CommitBlock, parseCommitBlock } from "./commit_block.ts";
export { parseRevokeBlock } from "./revocation_block.ts";
export { recoverJournal } from "./recovery.ts";
export {
  JournalWriter,
  type JournalWriterOptions,
  type LogBlock,
  type LogTransaction,
} from "./journal_writer.ts";
export {
  type LoggedBlock,
  type RecoveryPlan,
  replayedBlock,
  type ReplayWrite,
  type TransactionInfo,
} from "./recovery_plan.ts";
export type { JournalStore } from "./journal_store.ts";
export { decodeFastCommits, type FastCommitRecord, FastCommitTag } from "./fast_commit.ts";
