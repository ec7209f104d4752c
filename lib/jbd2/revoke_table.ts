/**
 * The revoke table recovery builds in its REVOKE pass and consults in REPLAY
 * (fs/jbd2/revoke.c's recovery half): filesystem block → the latest transaction revoking it.
 *
 * @module
 */

import { tidGeq, tidGt } from "./tid.ts";

/**
 * Revoke records by filesystem block.
 *
 * @example
 * ```ts
 * import { RevokeTable } from "./revoke_table.ts";
 * const table = new RevokeTable();
 * table.set(100, 7);
 * console.log(table.revokes(100, 7), table.revokes(100, 8)); // true false
 * ```
 */
export class RevokeTable {
  /** Block → latest revoking transaction. */
  readonly records: Map<number, number> = new Map();

  /** `jbd2_journal_set_revoke()`: keep the latest revoking transaction. */
  set(block: number, sequence: number): void {
    const prev = this.records.get(block);
    if (prev === undefined || tidGt(sequence, prev)) this.records.set(block, sequence);
  }

  /** `jbd2_journal_test_revoke()`: true when revoked by transaction `sequence` or a later one. */
  revokes(block: number, sequence: number): boolean {
    const rev = this.records.get(block);
    return rev !== undefined && tidGeq(rev, sequence);
  }
}
