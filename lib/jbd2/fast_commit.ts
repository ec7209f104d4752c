/**
 * The fast-commit area of an ext4 journal (after the main log, `s_num_fc_blks` blocks): a
 * stream of tag-length-value records written by the kernel between full commits. ext4ts
 * does not replay them (recovery refuses when one is due, see recovery.ts); this module
 * decodes them for `journal show`.
 *
 * @module
 */

/** Fast-commit tags (`EXT4_FC_TAG_*`). */
export const FastCommitTag = {
  ADD_RANGE: 1,
  DEL_RANGE: 2,
  CREAT: 3,
  LINK: 4,
  UNLINK: 5,
  INODE: 6,
  PAD: 7,
  TAIL: 8,
  HEAD: 9,
} as const;

const NAMES: Record<number, string> = {
  1: "ADD_RANGE",
  2: "DEL_RANGE",
  3: "CREAT_DENTRY",
  4: "LINK",
  5: "DEL_ENTRY",
  6: "INODE",
  7: "PAD",
  8: "TAIL",
  9: "HEAD",
};

/** One decoded fast-commit record. */
export interface FastCommitRecord {
  /** Journal block holding the record. */
  block: number;
  /** `fc_tag`: the record kind, a {@link FastCommitTag} value. */
  tag: number;
  /** The tag's name, e.g. `ADD_RANGE` or `TAIL`. */
  name: string;
  /** A one-line description of the value. */
  text: string;
}

/**
 * Decodes the fast-commit records in `blocks` (the area, in order), stopping at an unknown
 * tag, a record that does not fit, or after the area ends. Records never span blocks; after
 * a TAIL the next commit starts in the next block.
 *
 * @example
 * ```ts
 * import { decodeFastCommits } from "./fast_commit.ts";
 * const b = new Uint8Array(1024);
 * const v = new DataView(b.buffer);
 * v.setUint16(0, 9, true); v.setUint16(2, 8, true); v.setUint32(8, 6, true);
 * console.log(decodeFastCommits([{ block: 900, data: b }])[0].text); // features 0x0, tid 6
 * ```
 */
export function decodeFastCommits(
  blocks: { block: number; data: Uint8Array }[],
): FastCommitRecord[] {
  const out: FastCommitRecord[] = [];
  const dec = new TextDecoder("utf-8", { fatal: false });
  for (const { block, data } of blocks) {
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let p = 0;
    while (p + 4 <= data.length) {
      const tag = v.getUint16(p, true);
      const len = v.getUint16(p + 2, true);
      const val = p + 4;
      if (tag === 0 && len === 0) break; // unused rest of the block
      const name = NAMES[tag];
      if (!name || val + len > data.length) return out;
      const u32 = (o: number) => (o + 4 <= len ? v.getUint32(val + o, true) : 0);
      let text = "";
      switch (tag) {
        case FastCommitTag.HEAD:
          text = `features 0x${u32(0).toString(16)}, tid ${u32(4)}`;
          break;
        case FastCommitTag.TAIL:
          text = `tid ${u32(0)}`;
          break;
        case FastCommitTag.INODE:
          text = `inode ${u32(0)}`;
          break;
        case FastCommitTag.ADD_RANGE: {
          const elen = len >= 16 ? v.getUint16(val + 8, true) : 0;
          const start = len >= 16 ? v.getUint16(val + 10, true) * 2 ** 32 + u32(12) : 0;
          text = `inode ${u32(0)}, lblk ${u32(4)}, pblk ${start}, len ${
            elen > 32768 ? `${elen - 32768} (unwritten)` : elen
          }`;
          break;
        }
        case FastCommitTag.DEL_RANGE:
          text = `inode ${u32(0)}, lblk ${u32(4)}, len ${u32(8)}`;
          break;
        case FastCommitTag.CREAT:
        case FastCommitTag.LINK:
        case FastCommitTag.UNLINK:
          text = `parent ${u32(0)}, inode ${u32(4)}, name ${
            JSON.stringify(dec.decode(data.subarray(val + 8, val + len)))
          }`;
          break;
        default:
          text = `${len} bytes`;
      }
      out.push({ block, tag, name, text });
      p = val + len;
      if (tag === FastCommitTag.TAIL) break; // the next commit starts in the next block
    }
  }
  return out;
}
