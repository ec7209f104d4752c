/**
 * STUB of the interface (the real writer comes from branch jwriter).
 *
 * @module
 */
import type { JournalStore } from "./journal_store.ts";
import type { JournalSuperblock } from "./superblock.ts";

/** A logged block. */
export interface LogBlock {
  /** Home block. */
  readonly block: number;
  /** One block image. */
  readonly bytes: Uint8Array;
}
/** A transaction to log. */
export interface LogTransaction {
  /** Blocks. */
  readonly blocks: readonly LogBlock[];
  /** Revoked. */
  readonly revoked: readonly number[];
}
/** Options. */
export interface JournalWriterOptions {
  /** Clock. */
  now?: () => number;
}
/** Stub. */
export class JournalWriter {
  /** Stub. */
  readonly superblock!: JournalSuperblock;
  /** Stub. */
  static open(_store: JournalStore, _options?: JournalWriterOptions): Promise<JournalWriter> {
    throw new Error("stub");
  }
  /** Stub. */
  blocksNeeded(_blocks: number, _revoked: number): number {
    throw new Error("stub");
  }
  /** Stub. */
  get maxTransactionBlocks(): number {
    throw new Error("stub");
  }
  /** Stub. */
  get freeBlocks(): number {
    throw new Error("stub");
  }
  /** Stub. */
  get nextSequence(): number {
    throw new Error("stub");
  }
  /** Stub. */
  get hasUncheckpointed(): boolean {
    throw new Error("stub");
  }
  /** Stub. */
  writeTransaction(_tx: LogTransaction): Promise<number> {
    throw new Error("stub");
  }
  /** Stub. */
  checkpointed(): Promise<void> {
    throw new Error("stub");
  }
  /** Stub. */
  markEmpty(): Promise<void> {
    throw new Error("stub");
  }
}
