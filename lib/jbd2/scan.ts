/**
 * What the SCAN pass read of the logged (data) blocks: recovery's scan reads the whole log
 * sequentially as it passes, so the REPLAY pass decides each logged block from the checksum
 * noted here without reading it again.
 *
 * @module
 */

import { dataBlockChecksum } from "./descriptor_block.ts";
import type { JournalSuperblock } from "./superblock.ts";
import type { LogReader } from "./journal_store.ts";

/**
 * The logged blocks the scan read, by log block, with their v2/v3 data checksum (0 without).
 *
 * @example
 * ```ts ignore
 * const scanned = new ScannedBlocks(reader, jsb);
 * await scanned.note(logBlock, sequence);
 * scanned.checksumOf(logBlock); // undefined: read it in the replay pass
 * ```
 */
export class ScannedBlocks {
  readonly #reader: LogReader;
  readonly #checksums = new Map<number, number>();
  /** Log blocks the scan met more than once (never in a valid log): the replay reads them. */
  readonly #rescanned = new Set<number>();
  readonly #csumV2or3: boolean;
  readonly #seed: number;

  constructor(reader: LogReader, jsb: JournalSuperblock) {
    this.#reader = reader;
    this.#csumV2or3 = jsb.hasCsumV2or3;
    this.#seed = this.#csumV2or3 ? jsb.csumSeed : 0;
  }

  /**
   * Notes logged block `io` of transaction `sequence` as read by the scan (with `data`, or
   * reading it now). A block the scan cannot read is left to the replay pass, which reports
   * it as the kernel does (the kernel's scan does not read logged blocks).
   */
  async note(io: number, sequence: number, data?: Uint8Array): Promise<void> {
    if (this.#checksums.has(io) || this.#rescanned.has(io)) {
      this.#checksums.delete(io);
      this.#rescanned.add(io);
      return;
    }
    if (!data) {
      try {
        data = await this.#reader.read(io);
      } catch {
        return;
      }
    }
    this.#checksums.set(io, this.#csumV2or3 ? dataBlockChecksum(data, sequence, this.#seed) : 0);
  }

  /** The noted checksum of log block `io`; undefined when the replay must read the block. */
  checksumOf(io: number): number | undefined {
    return this.#checksums.get(io);
  }
}
