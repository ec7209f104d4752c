/**
 * Recovery semantics on synthetic journals built in memory: every checksum scheme and tag
 * size, escaped blocks, revokes (32/64-bit, across and within transactions), a log that
 * wraps past the end of the journal, transaction IDs wrapping past 2^32, incomplete and
 * corrupt transactions, async commit, fast commits, and superblock validation.
 */

import assert from "node:assert/strict";
import { crc32c } from "../lib/ondisk/checksum.ts";
import { Ext4Error } from "../lib/errors.ts";
import { commitBlockChecksum, crc32Be } from "../lib/jbd2/commit_block.ts";
import { blockTailChecksum, dataBlockChecksum, TagFlag } from "../lib/jbd2/descriptor_block.ts";
import { recoverJournal } from "../lib/jbd2/recovery.ts";
import { assertRecoverable, finalWrites, replayedBlock } from "../lib/jbd2/recovery_plan.ts";
import type { JournalStore } from "../lib/jbd2/journal_store.ts";
import { tidGeq, tidGt } from "../lib/jbd2/tid.ts";
import {
  BlockType,
  JBD2_MAGIC,
  JournalCompat,
  JournalIncompat,
  parseJournalSuperblock,
} from "../lib/jbd2/superblock.ts";

const BS = 1024;
const UUID = Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1);

interface TxData {
  target: number;
  bytes: Uint8Array;
}

interface TxOptions {
  data?: TxData[];
  revokes?: number[];
  commit?: boolean;
  commitTime?: number;
  badCommit?: boolean;
  badData?: number; // index of a data block whose checksum is wrong
  badDescriptor?: boolean;
  revokeCount?: number; // override r_count
}

/** Writes jbd2 journals block by block, as the kernel lays them out. */
class JournalBuilder {
  readonly blocks: Uint8Array[];
  readonly incompat: number;
  readonly compat: number;
  readonly first = 1;
  readonly maxLen: number;
  pos: number;
  readonly startSeq: number;
  readonly startBlock: number;

  constructor(
    opts: { maxLen?: number; incompat?: number; compat?: number; start?: number; seq?: number },
  ) {
    this.maxLen = opts.maxLen ?? 64;
    this.incompat = opts.incompat ?? 0;
    this.compat = opts.compat ?? 0;
    this.blocks = Array.from({ length: this.maxLen }, () => new Uint8Array(BS));
    this.pos = opts.start ?? 1;
    this.startBlock = this.pos;
    this.startSeq = opts.seq ?? 1;
    this.#superblock();
  }

  get csum23(): boolean {
    return (this.incompat & (JournalIncompat.CSUM_V2 | JournalIncompat.CSUM_V3)) !== 0;
  }
  get seed(): number {
    return crc32c(0xffffffff, UUID);
  }

  #superblock(): void {
    const b = this.blocks[0];
    const v = new DataView(b.buffer);
    v.setUint32(0, JBD2_MAGIC);
    v.setUint32(4, BlockType.SUPERBLOCK_V2);
    v.setUint32(0xc, BS);
    v.setUint32(0x10, this.maxLen);
    v.setUint32(0x14, this.first);
    v.setUint32(0x18, this.startSeq);
    v.setUint32(0x1c, this.startBlock);
    v.setUint32(0x24, this.compat);
    v.setUint32(0x28, this.incompat);
    b.set(UUID, 0x30);
    v.setUint32(0x40, 1);
    if (this.csum23) {
      v.setUint8(0x50, 4);
      v.setUint32(0xfc, crc32c(0xffffffff, b.slice(0, 1024).fill(0, 0xfc, 0x100)));
    }
  }

  #next(): Uint8Array {
    const b = this.blocks[this.pos];
    b.fill(0);
    this.pos++;
    if (this.pos >= this.maxLen) this.pos = this.first;
    return b;
  }

  #header(b: Uint8Array, type: number, seq: number): DataView {
    const v = new DataView(b.buffer);
    v.setUint32(0, JBD2_MAGIC);
    v.setUint32(4, type);
    v.setUint32(8, seq >>> 0);
    return v;
  }

  get tagBytes(): number {
    if (this.incompat & JournalIncompat.CSUM_V3) return 16;
    const size = 12 + (this.incompat & JournalIncompat.CSUM_V2 ? 2 : 0);
    return this.incompat & JournalIncompat.BIT64 ? size : size - 4;
  }

  transaction(seq: number, o: TxOptions = {}): void {
    let crc = 0xffffffff;
    const data = o.data ?? [];
    if (data.length) {
      const d = this.#next();
      const v = this.#header(d, BlockType.DESCRIPTOR, seq);
      let p = 12;
      const payloads: Uint8Array[] = [];
      data.forEach((x, i) => {
        const bytes = x.bytes.slice();
        let flags = i > 0 ? TagFlag.SAME_UUID : 0;
        if (i === data.length - 1) flags |= TagFlag.LAST_TAG;
        if (new DataView(bytes.buffer).getUint32(0) === JBD2_MAGIC) {
          flags |= TagFlag.ESCAPE;
          bytes.fill(0, 0, 4);
        }
        // The kernel sums the block as stored in the journal (escaped).
        let sum = dataBlockChecksum(bytes, seq, this.seed);
        if (o.badData === i) sum ^= 1;
        v.setUint32(p, x.target % 2 ** 32);
        if (this.incompat & JournalIncompat.CSUM_V3) {
          v.setUint32(p + 4, flags);
          if (this.incompat & JournalIncompat.BIT64) {
            v.setUint32(p + 8, Math.floor(x.target / 2 ** 32));
          }
          v.setUint32(p + 12, sum);
        } else {
          v.setUint16(p + 4, this.incompat & JournalIncompat.CSUM_V2 ? sum & 0xffff : 0);
          v.setUint16(p + 6, flags);
          if (this.incompat & JournalIncompat.BIT64) {
            v.setUint32(p + 8, Math.floor(x.target / 2 ** 32));
          }
        }
        p += this.tagBytes;
        if (i === 0) {
          d.set(UUID, p);
          p += 16;
        }
        payloads.push(bytes);
      });
      if (this.csum23) {
        v.setUint32(BS - 4, blockTailChecksum(d, this.seed) ^ (o.badDescriptor ? 1 : 0));
      }
      crc = crc32Be(crc, d);
      for (const bytes of payloads) {
        // The journal stores the escaped bytes, and v1 sums what is stored.
        this.#next().set(bytes);
        crc = crc32Be(crc, bytes);
      }
    }
    if (o.revokes?.length) {
      const r = this.#next();
      const v = this.#header(r, BlockType.REVOKE, seq);
      const wide = (this.incompat & JournalIncompat.BIT64) !== 0;
      let p = 16;
      for (const t of o.revokes) {
        if (wide) {
          v.setUint32(p, Math.floor(t / 2 ** 32));
          v.setUint32(p + 4, t % 2 ** 32);
          p += 8;
        } else {
          v.setUint32(p, t);
          p += 4;
        }
      }
      v.setUint32(12, o.revokeCount ?? p);
      if (this.csum23) v.setUint32(BS - 4, blockTailChecksum(r, this.seed));
    }
    if (o.commit === false) return;
    const c = this.#next();
    const v = this.#header(c, BlockType.COMMIT, seq);
    v.setUint32(48, 0);
    v.setUint32(52, o.commitTime ?? 1000 + seq % 1000);
    if (this.compat & JournalCompat.CHECKSUM) {
      v.setUint8(12, 1);
      v.setUint8(13, 4);
      v.setUint32(16, crc ^ (o.badCommit ? 1 : 0));
    } else if (this.csum23) {
      v.setUint32(16, commitBlockChecksum(c, this.seed) ^ (o.badCommit ? 1 : 0));
    }
  }

  store(): JournalStore {
    return {
      blockSize: BS,
      blockCount: this.maxLen,
      description: "memory",
      readBlock: (n) => Promise.resolve(this.blocks[n].slice()),
      writeBlock: (n, d) => {
        this.blocks[n].set(d);
        return Promise.resolve();
      },
      flush: () => Promise.resolve(),
      fsBlock: () => undefined,
    };
  }

  async recover() {
    const jsb = parseJournalSuperblock(this.blocks[0], { blockSize: BS, totalBlocks: this.maxLen });
    const store = this.store();
    const plan = await recoverJournal(store, jsb);
    return { plan, store, jsb };
  }
}

function block(fill: number, magic = false): Uint8Array {
  const b = new Uint8Array(BS).fill(fill);
  if (magic) new DataView(b.buffer).setUint32(0, JBD2_MAGIC);
  return b;
}

async function finalContents(
  plan: Awaited<ReturnType<JournalBuilder["recover"]>>["plan"],
  store: JournalStore,
): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  for (const [t, w] of finalWrites(plan)) out.set(t, await replayedBlock(store, w));
  return out;
}

const SCHEMES: [string, number, number][] = [
  ["no checksum, 32-bit tags", 0, 0],
  ["no checksum, 64-bit tags", JournalIncompat.BIT64, 0],
  ["checksum v1", JournalIncompat.REVOKE, JournalCompat.CHECKSUM],
  ["checksum v2, 32-bit", JournalIncompat.CSUM_V2 | JournalIncompat.REVOKE, 0],
  ["checksum v2, 64-bit", JournalIncompat.CSUM_V2 | JournalIncompat.BIT64, 0],
  ["checksum v3, 32-bit", JournalIncompat.CSUM_V3, 0],
  ["checksum v3, 64-bit", JournalIncompat.CSUM_V3 | JournalIncompat.BIT64, 0],
];

for (const [name, incompat, compat] of SCHEMES) {
  Deno.test(`recovery (${name}): replays committed transactions, last write wins, escapes restored`, async () => {
    const j = new JournalBuilder({ incompat, compat, seq: 5 });
    j.transaction(5, {
      data: [{ target: 100, bytes: block(1) }, { target: 101, bytes: block(2, true) }],
    });
    j.transaction(6, {
      data: [{ target: 100, bytes: block(3) }, { target: 102, bytes: block(4) }],
    });
    j.transaction(7, { data: [{ target: 103, bytes: block(5) }], commit: false }); // incomplete
    const { plan, store } = await j.recover();
    assert.equal(plan.error, undefined);
    assert.equal(plan.startSequence, 5);
    assert.equal(plan.endSequence, 7);
    const c = await finalContents(plan, store);
    assert.deepEqual([...c.keys()].sort((a, b) => a - b), [100, 101, 102]);
    assert.deepEqual(c.get(100), block(3));
    assert.deepEqual(c.get(101), block(2, true), "the escaped magic must be restored");
    assert.deepEqual(c.get(102), block(4));
    assert.equal(plan.transactions.length, 3);
    assert.deepEqual(plan.transactions.map((t) => t.replayed), [true, true, false]);
  });

  Deno.test(`recovery (${name}): a corrupt commit stops replay where the kernel stops`, async () => {
    const j = new JournalBuilder({ incompat, compat, seq: 1 });
    j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
    j.transaction(2, { data: [{ target: 11, bytes: block(2) }], badCommit: true });
    j.transaction(3, { data: [{ target: 12, bytes: block(3) }] });
    const { plan } = await j.recover();
    if (compat || incompat & (JournalIncompat.CSUM_V2 | JournalIncompat.CSUM_V3)) {
      assert.equal(plan.error?.kind, "corrupt");
      assert.equal(plan.failedCommit, 2);
      assert.equal(plan.endSequence, 2);
      assert.deepEqual(plan.writes.map((w) => w.target), [10]);
    } else {
      // Without checksums a commit cannot be corrupt: everything replays.
      assert.equal(plan.error, undefined);
      assert.deepEqual(plan.writes.map((w) => w.target), [10, 11, 12]);
    }
  });
}

Deno.test("recovery: tag sizes follow journal_tag_bytes()", async () => {
  const { JournalSuperblock } = await import("../lib/jbd2/superblock.ts");
  const sizes = SCHEMES.map(([, incompat, compat]) => {
    const j = new JournalBuilder({ incompat, compat });
    return new JournalSuperblock(j.blocks[0]).tagBytes;
  });
  assert.deepEqual(sizes, [8, 12, 8, 10, 14, 16, 16]);
});

Deno.test("recovery: a log that wraps past the end of the journal", async () => {
  const j = new JournalBuilder({
    maxLen: 16,
    incompat: JournalIncompat.CSUM_V3,
    start: 11,
    seq: 40,
  });
  j.transaction(40, { data: [10, 11, 12].map((t) => ({ target: t, bytes: block(t) })) }); // 11..15
  j.transaction(41, { data: [13, 14, 15, 16].map((t) => ({ target: t, bytes: block(t) })) }); // 1..6
  const { plan, store } = await j.recover();
  assert.equal(plan.error, undefined);
  assert.equal(plan.endSequence, 42);
  assert.deepEqual(plan.transactions.map((t) => t.startBlock), [11, 1]);
  const c = await finalContents(plan, store);
  for (const t of [10, 11, 12, 13, 14, 15, 16]) assert.deepEqual(c.get(t), block(t));
  assert.deepEqual(plan.writes.map((w) => w.logBlock), [12, 13, 14, 2, 3, 4, 5]);
});

Deno.test("recovery: transaction IDs wrap past 2^32", async () => {
  assert.ok(tidGt(0, 0xffffffff) && tidGeq(1, 0xfffffffe) && !tidGt(0xffffffff, 0));
  const j = new JournalBuilder({ incompat: JournalIncompat.REVOKE, seq: 0xfffffffe });
  j.transaction(0xfffffffe, {
    data: [{ target: 7, bytes: block(1) }, { target: 8, bytes: block(1) }],
  });
  j.transaction(0xffffffff, { data: [{ target: 9, bytes: block(2) }] });
  j.transaction(0, { data: [{ target: 10, bytes: block(3) }], revokes: [7] });
  const { plan } = await j.recover();
  assert.equal(plan.error, undefined);
  assert.equal(plan.endSequence, 1);
  assert.deepEqual(plan.writes.map((w) => w.target), [8, 9, 10], "7 is revoked by tid 0");
});

Deno.test("recovery: revoke records, 32- and 64-bit, within and across transactions", async () => {
  for (const incompat of [JournalIncompat.REVOKE, JournalIncompat.REVOKE | JournalIncompat.BIT64]) {
    const big = incompat & JournalIncompat.BIT64 ? 2 ** 33 + 5 : 2 ** 31 + 5;
    const j = new JournalBuilder({ incompat, seq: 1 });
    j.transaction(1, { data: [{ target: 20, bytes: block(1) }, { target: big, bytes: block(1) }] });
    j.transaction(2, { revokes: [20, big] });
    j.transaction(3, { data: [{ target: 20, bytes: block(3) }] }); // after the revoke: replayed
    j.transaction(4, { data: [{ target: 30, bytes: block(4) }], revokes: [30] }); // same tx
    const { plan, store } = await j.recover();
    assert.equal(plan.error, undefined);
    assert.deepEqual(plan.writes.map((w) => w.target), [20]);
    assert.deepEqual((await finalContents(plan, store)).get(20), block(3));
    assert.equal(plan.revoked.get(big), 2);
    const shown = plan.transactions[0].blocks;
    assert.deepEqual(shown.map((b) => b.revoked), [true, true]);
  }
});

Deno.test("recovery: async_commit skips a transaction with a bad commit checksum", async () => {
  const incompat = JournalIncompat.CSUM_V3 | JournalIncompat.ASYNC_COMMIT;
  const j = new JournalBuilder({ incompat, seq: 1 });
  j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
  j.transaction(2, { data: [{ target: 11, bytes: block(2) }], badCommit: true });
  j.transaction(3, { data: [{ target: 12, bytes: block(3) }] });
  const { plan } = await j.recover();
  assert.equal(plan.error, undefined, "the kernel treats it as an interrupted commit");
  assert.equal(plan.endSequence, 2);
  assert.deepEqual(plan.writes.map((w) => w.target), [10]);
});

Deno.test("recovery: a bad data-block checksum skips that block and reports corruption", async () => {
  const j = new JournalBuilder({ incompat: JournalIncompat.CSUM_V2, seq: 1 });
  j.transaction(1, {
    data: [{ target: 10, bytes: block(1) }, { target: 11, bytes: block(2) }],
    badData: 0,
  });
  const { plan } = await j.recover();
  assert.equal(plan.error?.kind, "corrupt");
  assert.deepEqual(plan.writes.map((w) => w.target), [11]);
  assert.deepEqual(plan.badDataBlocks.map((b) => b.target), [10]);
});

Deno.test("recovery: bad data-block checksums under v2 and v3, in a later transaction, revoked or not", async () => {
  // The scan keeps each logged block's checksum; the replay pass decides from it. A block
  // overwritten later keeps its own verdict; a revoked bad block is skipped silently.
  for (const incompat of [JournalIncompat.CSUM_V2, JournalIncompat.CSUM_V3]) {
    const j = new JournalBuilder({ incompat: incompat | JournalIncompat.REVOKE, seq: 1 });
    j.transaction(1, { data: [{ target: 10, bytes: block(1) }, { target: 12, bytes: block(7) }] });
    j.transaction(2, {
      data: [{ target: 10, bytes: block(2) }, { target: 11, bytes: block(3) }],
      badData: 0,
    });
    j.transaction(3, { data: [{ target: 13, bytes: block(4) }], badData: 0 });
    j.transaction(4, { revokes: [13] });
    const { plan, store } = await j.recover();
    assert.equal(plan.error?.kind, "corrupt", `incompat ${incompat}`);
    assert.deepEqual(plan.writes.map((w) => w.target), [10, 12, 11]);
    assert.deepEqual(plan.badDataBlocks.map((b) => [b.target, b.sequence]), [[10, 2]]);
    const c = await finalContents(plan, store);
    assert.deepEqual(c.get(10), block(1), "the bad copy of transaction 2 is not replayed");
    const t2 = plan.transactions[1];
    assert.deepEqual(t2.blocks.map((b) => b.checksumOk), [false, true]);
    assert.equal(plan.transactions[2].blocks[0].revoked, true);
  }
});

Deno.test("recovery: an unreadable logged block is skipped and reported, the others replayed", async () => {
  for (const [incompat, compat] of SCHEMES.map(([, i, c]) => [i, c])) {
    const j = new JournalBuilder({ incompat, compat, seq: 1 });
    j.transaction(1, { data: [{ target: 10, bytes: block(1) }, { target: 11, bytes: block(2) }] });
    j.transaction(2, { data: [{ target: 12, bytes: block(3) }] });
    const jsb = parseJournalSuperblock(j.blocks[0], { blockSize: BS, totalBlocks: j.maxLen });
    const unreadable = 3; // transaction 1's second logged block (descriptor at 1)
    const base = j.store();
    const store: JournalStore = {
      ...base,
      readBlock: (n) => n === unreadable ? Promise.reject(new Error("EIO")) : base.readBlock(n),
    };
    const plan = await recoverJournal(store, jsb);
    const name = `incompat ${incompat} compat ${compat}`;
    if (compat & JournalCompat.CHECKSUM) {
      // Checksum v1 reads logged blocks in the scan, as the kernel does: the log ends there.
      assert.equal(plan.endSequence, 1, name);
      assert.deepEqual(plan.writes, [], name);
    } else {
      assert.equal(plan.error?.kind, "corrupt", name);
      assert.match(plan.error!.message, /cannot read journal block 3/, name);
      assert.deepEqual(plan.writes.map((w) => w.target), [10, 12], name);
    }
  }
});

Deno.test("recovery: a bad descriptor checksum fails recovery unless the commit is stale", async () => {
  const incompat = JournalIncompat.CSUM_V3;
  const fresh = new JournalBuilder({ incompat, seq: 1 });
  fresh.transaction(1, { data: [{ target: 10, bytes: block(1) }], commitTime: 100 });
  fresh.transaction(2, {
    data: [{ target: 11, bytes: block(1) }],
    badDescriptor: true,
    commitTime: 200,
  });
  const a = await fresh.recover();
  assert.equal(a.plan.error?.kind, "refused");
  assert.equal(a.plan.writes.length, 0, "the kernel writes nothing when the scan fails");
  assert.throws(
    () => assertRecoverable(a.plan),
    (e) => e instanceof Ext4Error && e.code === "CORRUPT",
  );

  const stale = new JournalBuilder({ incompat, seq: 1 });
  stale.transaction(1, { data: [{ target: 10, bytes: block(1) }], commitTime: 100 });
  stale.transaction(2, {
    data: [{ target: 11, bytes: block(1) }],
    badDescriptor: true,
    commitTime: 50,
  });
  const b = await stale.recover();
  assert.equal(b.plan.error, undefined);
  assert.equal(b.plan.endSequence, 2);
  assert.deepEqual(b.plan.writes.map((w) => w.target), [10]);
});

Deno.test("recovery: a revoke block with r_count beyond the block is refused", async () => {
  const j = new JournalBuilder({ incompat: JournalIncompat.REVOKE, seq: 1 });
  j.transaction(1, { revokes: [5], revokeCount: BS + 1 });
  const { plan } = await j.recover();
  assert.equal(plan.error?.kind, "refused");
  assert.match(plan.error!.message, /r_count/);
});

Deno.test("recovery: wrong sequence or a foreign block ends the log", async () => {
  const j = new JournalBuilder({ incompat: JournalIncompat.CSUM_V3, seq: 9 });
  j.transaction(9, { data: [{ target: 10, bytes: block(1) }] });
  j.transaction(11, { data: [{ target: 11, bytes: block(1) }] }); // a stale tid
  const { plan } = await j.recover();
  assert.equal(plan.endSequence, 10);
  assert.match(plan.endReason, /sequence 11, expected 10/);
  assert.deepEqual(plan.writes.map((w) => w.target), [10]);
});

Deno.test("recovery: an empty journal needs nothing", async () => {
  const j = new JournalBuilder({ seq: 3, start: 0 });
  const { plan } = await j.recover();
  assert.equal(plan.needed, false);
  assert.equal(plan.endSequence, 3);
});

Deno.test("recovery: a fast commit for the next transaction is refused, a stale one ignored", async () => {
  for (const stale of [false, true]) {
    const incompat = JournalIncompat.CSUM_V3 | JournalIncompat.FAST_COMMIT;
    const j = new JournalBuilder({ maxLen: 1024 + 256, incompat, seq: 1 });
    const sbv = new DataView(j.blocks[0].buffer);
    sbv.setUint32(0x54, 32); // s_num_fc_blks
    sbv.setUint32(0xfc, crc32c(0xffffffff, j.blocks[0].slice(0, 1024).fill(0, 0xfc, 0x100)));
    j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
    const fc = j.blocks[1024 + 256 - 32 + 1];
    const v = new DataView(fc.buffer);
    v.setUint16(0, 9, true); // EXT4_FC_TAG_HEAD
    v.setUint16(2, 8, true);
    v.setUint32(8, stale ? 7 : 2, true);
    const { plan } = await j.recover();
    if (stale) {
      assert.equal(plan.fastCommit, undefined);
      assertRecoverable(plan);
    } else {
      assert.deepEqual(plan.fastCommit, { firstBlock: 1024 + 256 - 32 + 1, tid: 2 });
      assert.throws(
        () => assertRecoverable(plan),
        (e) => e instanceof Ext4Error && e.code === "UNSUPPORTED",
      );
    }
  }
});

Deno.test("journal superblock: validation as the kernel does it", () => {
  const ok = new JournalBuilder({ incompat: JournalIncompat.CSUM_V3 });
  const parse = (b: Uint8Array) => parseJournalSuperblock(b, { blockSize: BS, totalBlocks: 64 });
  assert.equal(parse(ok.blocks[0]).sequence, 1);
  const mutate = (f: (v: DataView) => void, fixCsum = true) => {
    const b = ok.blocks[0].slice();
    const v = new DataView(b.buffer);
    f(v);
    if (fixCsum) v.setUint32(0xfc, crc32c(0xffffffff, b.slice(0, 1024).fill(0, 0xfc, 0x100)));
    return b;
  };
  assert.throws(() => parse(mutate((v) => v.setUint32(0, 0))), /bad magic/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0xfc, 0), false)), /checksum error/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0xc, 4096))), /block size/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0x10, 65))), /too short/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0x14, 0))), /start block/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0x28, 0x18))), /v2 and v3/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0x28, 0x10 | 0x100))), /unrecognised/);
  assert.throws(() => parse(mutate((v) => v.setUint32(0x2c, 0x1))), /unrecognised.*FEATURE_R0/);
  // An unknown compat feature is ignored, as by the kernel and e2fsck.
  assert.equal(parse(mutate((v) => v.setUint32(0x24, 0x80))).featureCompat, 0x80);
  assert.throws(() => parse(mutate((v) => v.setUint8(0x50, 1))), /checksum type/);
});

Deno.test("crc32_be matches the CRC-32/BZIP2 check value", () => {
  const c = crc32Be(0xffffffff, new TextEncoder().encode("123456789"));
  assert.equal((~c >>> 0).toString(16), "fc891918");
});

Deno.test("recovery: corrupt journals never crash or hang (fuzz)", async () => {
  const fc = (await import("fast-check")).default;
  const schemes = SCHEMES.map(([, incompat, compat]) => ({ incompat, compat }));
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: schemes.length - 1 }),
      fc.array(
        fc.record({
          block: fc.integer({ min: 0, max: 63 }),
          offset: fc.integer({ min: 0, max: BS - 1 }),
          value: fc.integer({ min: 0, max: 255 }),
        }),
        { minLength: 1, maxLength: 24 },
      ),
      async (scheme, flips) => {
        const j = new JournalBuilder({ ...schemes[scheme], start: 50, seq: 0xfffffff0 });
        for (let t = 0; t < 6; t++) {
          j.transaction(0xfffffff0 + t, {
            data: [{ target: 10 + t, bytes: block(t) }, { target: 20, bytes: block(t, true) }],
            revokes: t % 2 ? [10 + t - 1] : [],
          });
        }
        for (const f of flips) j.blocks[f.block][f.offset] = f.value;
        let plan;
        try {
          plan = (await j.recover()).plan;
        } catch (e) {
          assert.ok(e instanceof Ext4Error, `unexpected ${e}`);
          return;
        }
        assert.ok(plan.writes.length <= 64 * 2, "replay cannot write more than the log holds");
        for (const w of plan.writes) assert.ok(w.logBlock >= 1 && w.logBlock < 64);
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("recovery: a v1 journal superblock has no features (8-byte tags), revokes still honoured", async () => {
  // Written as a plain journal (8-byte tags, no checksums), then the superblock is turned
  // into v1 with garbage where v2 keeps its feature words: v1 has none, as in the kernel.
  const j = new JournalBuilder({ seq: 3 });
  j.transaction(3, {
    data: [{ target: 40, bytes: block(1) }, { target: 41, bytes: block(2, true) }],
  });
  j.transaction(4, { data: [{ target: 42, bytes: block(3) }], revokes: [40] });
  const v = new DataView(j.blocks[0].buffer);
  v.setUint32(4, BlockType.SUPERBLOCK_V1);
  v.setUint32(0x24, 0xffffffff);
  v.setUint32(0x28, JournalIncompat.CSUM_V3 | JournalIncompat.BIT64 | 0x100);
  v.setUint32(0x2c, 0xffffffff);
  const { plan, store, jsb } = await j.recover();
  assert.equal(jsb.isV2, false);
  assert.equal(jsb.featureIncompat, 0);
  assert.equal(jsb.tagBytes, 8);
  assert.equal(plan.error, undefined);
  assert.equal(plan.endSequence, 5);
  const c = await finalContents(plan, store);
  assert.deepEqual([...c.keys()].sort(), [41, 42], "40 is revoked by transaction 4");
  assert.deepEqual(c.get(41), block(2, true));
});

Deno.test("recovery: a log start beyond the journal is refused before anything is written", async () => {
  const j = new JournalBuilder({ incompat: JournalIncompat.REVOKE, seq: 1 });
  j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
  new DataView(j.blocks[0].buffer).setUint32(0x1c, 64); // s_start = s_maxlen
  const { plan } = await j.recover();
  assert.equal(plan.error?.kind, "refused");
  assert.match(plan.error!.message, /beyond the journal/);
  assert.equal(plan.writes.length, 0);
  assert.throws(
    () => assertRecoverable(plan),
    (e) => e instanceof Ext4Error && e.code === "CORRUPT",
  );
});

Deno.test("recovery: checksum v1 with async_commit: a bad commit ends the log, later commits are not replayed", async () => {
  // The kernel's v1 path: after a failed commit under async_commit the end is known; the
  // next commit block sets j_failed_commit and stops the scan.
  const j = new JournalBuilder({
    incompat: JournalIncompat.ASYNC_COMMIT,
    compat: JournalCompat.CHECKSUM,
    seq: 1,
  });
  j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
  j.transaction(2, { data: [{ target: 11, bytes: block(2) }], badCommit: true });
  j.transaction(3, { data: [{ target: 12, bytes: block(3) }] });
  const { plan } = await j.recover();
  assert.equal(plan.endSequence, 2);
  assert.deepEqual(plan.writes.map((w) => w.target), [10]);
  assert.equal(plan.failedCommit, 2, "the kernel records the known end as j_failed_commit");
});

Deno.test("recovery: a commit block written only up to its header is accepted (partial checksum)", async () => {
  // jbd2_commit_block_csum_verify_partial(): the checksum is right for the 60-byte commit
  // header followed by zeros, and the rest of the block holds whatever was there before.
  for (const csum of [true, false]) {
    const j = new JournalBuilder({ incompat: JournalIncompat.CSUM_V3, seq: 1 });
    j.transaction(1, { data: [{ target: 10, bytes: block(1) }] });
    j.transaction(2, { data: [{ target: 11, bytes: block(2) }] });
    const commit = j.blocks[j.pos - 1];
    assert.equal(new DataView(commit.buffer).getUint32(4), BlockType.COMMIT);
    commit.fill(0xa5, 100, 200); // stale bytes past the header
    if (!csum) commit[16] ^= 1; // and a wrong checksum: corrupt, not partial
    const { plan } = await j.recover();
    const t2 = plan.transactions.find((t) => t.sequence === 2)!;
    if (csum) {
      assert.equal(plan.error, undefined);
      assert.equal(t2.commitChecksum, "partial");
      assert.deepEqual(plan.writes.map((w) => w.target), [10, 11]);
    } else {
      assert.equal(t2.commitChecksum, "bad");
      assert.equal(plan.error?.kind, "corrupt");
      assert.deepEqual(plan.writes.map((w) => w.target), [10]);
    }
  }
});
