/**
 * The journal's encoders and `JournalWriter` against our own parsers and recovery, in memory,
 * for every tag format (v1 superblock; v2 without checksums, with COMPAT_CHECKSUM, CSUM_V2,
 * CSUM_V3; each with and without 64bit; 1 KiB and 4 KiB blocks): round trips of each block
 * kind, whole transactions replayed as written (escaped blocks, revokes, several descriptor and
 * revoke blocks), log wrap with checkpoints, tid wrap at 2^32, refusals, and sticky failure.
 * tests/journal_writer_test.ts holds the oracles outside us (e2fsck, debugfs, the kernel).
 */

import assert from "node:assert/strict";
import { type BlockDevice, MemoryBlockDevice } from "../lib/block/block_device.ts";
import { FaultDevice } from "../lib/block/fault_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import {
  commitBlockValid,
  crc32Be,
  encodeCommitBlock,
  JBD2_CRC32_CHKSUM,
  parseCommitBlock,
} from "../lib/jbd2/commit_block.ts";
import {
  blockTailValid,
  dataBlockChecksum,
  dataBlockValid,
  encodeDescriptorBlock,
  escapeBlock,
  parseDescriptorTags,
  readHeader,
  TagFlag,
  tagsPerDescriptor,
} from "../lib/jbd2/descriptor_block.ts";
import type { JournalStore } from "../lib/jbd2/journal_store.ts";
import { JournalWriter, type LogBlock } from "../lib/jbd2/journal_writer.ts";
import { recoverJournal } from "../lib/jbd2/recovery.ts";
import { finalWrites, replayedBlock } from "../lib/jbd2/recovery_plan.ts";
import {
  encodeRevokeBlock,
  parseRevokeBlock,
  revokeRecordsPerBlock,
} from "../lib/jbd2/revocation_block.ts";
import {
  BlockType,
  JBD2_CRC32C_CHKSUM,
  JBD2_MAGIC,
  JournalCompat,
  JournalIncompat,
  JournalSuperblock,
  parseJournalSuperblock,
} from "../lib/jbd2/superblock.ts";

/** A journal format to test. */
interface Format {
  name: string;
  blockSize: number;
  v1?: boolean;
  compat?: number;
  incompat?: number;
}

const FORMATS: Format[] = [];
for (const blockSize of [1024, 4096]) {
  FORMATS.push({ name: `v1 superblock ${blockSize}`, blockSize, v1: true });
  for (const wide of [0, JournalIncompat.BIT64]) {
    const w = wide ? "+64bit" : "";
    FORMATS.push({ name: `none${w} ${blockSize}`, blockSize, incompat: wide });
    FORMATS.push({
      name: `checksum v1${w} ${blockSize}`,
      blockSize,
      compat: JournalCompat.CHECKSUM,
      incompat: wide,
    });
    FORMATS.push({
      name: `csum v2${w} ${blockSize}`,
      blockSize,
      incompat: wide | JournalIncompat.CSUM_V2,
    });
    FORMATS.push({
      name: `csum v3${w} ${blockSize}`,
      blockSize,
      incompat: wide | JournalIncompat.CSUM_V3 | JournalIncompat.REVOKE,
    });
  }
}

/** A journal of `blocks` blocks on a device, block n at byte n * blockSize. */
function deviceStore(device: BlockDevice, blockSize: number): JournalStore {
  return {
    blockSize,
    blockCount: device.size / blockSize,
    async readBlock(n) {
      const b = new Uint8Array(blockSize);
      await device.read(n * blockSize, b);
      return b;
    },
    writeBlock: (n, data) => device.write(n * blockSize, data),
    flush: () => device.flush(),
    fsBlock: () => undefined,
    description: "test journal",
  };
}

/** The bytes of a fresh journal in `format`: superblock at block 0, the log from block 1. */
function makeJournal(format: Format, blocks: number, sequence = 1): Uint8Array {
  const bs = format.blockSize;
  const img = new Uint8Array(bs * blocks);
  const v = new DataView(img.buffer);
  v.setUint32(0, JBD2_MAGIC);
  v.setUint32(4, format.v1 ? BlockType.SUPERBLOCK_V1 : BlockType.SUPERBLOCK_V2);
  v.setUint32(0xc, bs);
  v.setUint32(0x10, blocks);
  v.setUint32(0x14, 1);
  v.setUint32(0x18, sequence);
  const jsb = new JournalSuperblock(img.subarray(0, bs));
  if (!format.v1) {
    jsb.featureCompat = format.compat ?? 0;
    jsb.featureIncompat = format.incompat ?? 0;
    for (let i = 0; i < 16; i++) img[0x30 + i] = (i * 37 + 11) & 0xff;
    v.setUint32(0x40, 1);
    if (jsb.hasCsumV2or3) jsb.checksumType = JBD2_CRC32C_CHKSUM;
    jsb.updateChecksum();
  }
  return img;
}

/** The journal superblock of a journal image (or of its block 0, given the journal's length). */
function parsed(img: Uint8Array, bs: number, blocks = img.length / bs): JournalSuperblock {
  return parseJournalSuperblock(img.slice(0, bs), { blockSize: bs, totalBlocks: blocks });
}

/** A block image with a recognisable pattern. */
function pattern(bs: number, seed: number): Uint8Array {
  const b = new Uint8Array(bs);
  for (let i = 0; i < bs; i++) b[i] = (seed * 131 + i * 7) & 0xff;
  return b;
}

/** A block starting with the jbd2 magic, which the log must escape. */
function magicBlock(bs: number, seed: number): Uint8Array {
  const b = pattern(bs, seed);
  new DataView(b.buffer).setUint32(0, JBD2_MAGIC);
  return b;
}

/** Replays `store`'s journal with our recovery: final content per target block. */
async function replay(store: JournalStore): Promise<Map<number, Uint8Array>> {
  const jsb = parsed(await store.readBlock(0), store.blockSize, store.blockCount);
  const plan = await recoverJournal(store, jsb);
  assert.equal(plan.error, undefined, plan.error?.message);
  const out = new Map<number, Uint8Array>();
  for (const [target, w] of finalWrites(plan)) out.set(target, await replayedBlock(store, w));
  return out;
}

for (const f of FORMATS) {
  const bs = f.blockSize;
  Deno.test(`journal encoders (${f.name}): each block kind round-trips through its parser`, () => {
    const img = makeJournal(f, 1024);
    const jsb = parsed(img, bs);
    const wide = jsb.is64bit;
    const seed = jsb.csumSeed;

    // Descriptor: a full block of tags, the first escaped, targets past 2^32 with 64bit.
    const n = tagsPerDescriptor(jsb);
    const copies = Array.from({ length: n }, (_, i) => pattern(bs, i));
    const tags = copies.map((c, i) => ({
      target: (wide ? 2 ** 32 + 17 : 17) + i * 1000,
      escaped: i === 0,
      checksum: dataBlockChecksum(c, 42, seed),
    }));
    const d = encodeDescriptorBlock(tags, 42, jsb);
    assert.deepEqual(readHeader(d), { magic: JBD2_MAGIC, blockType: 1, sequence: 42 });
    assert.ok(blockTailValid(d, jsb));
    const back = parseDescriptorTags(d, jsb);
    assert.equal(back.length, n);
    back.forEach((t, i) => {
      assert.equal(t.target, tags[i].target);
      const want = (i === 0 ? TagFlag.ESCAPE : TagFlag.SAME_UUID) |
        (i === n - 1 ? TagFlag.LAST_TAG : 0);
      assert.equal(t.flags, want, `tag ${i} flags`);
      assert.ok(dataBlockValid(t, copies[i], 42, jsb), `tag ${i} checksum`);
    });
    // The UUID follows the first tag.
    assert.deepEqual(d.subarray(12 + jsb.tagBytes, 28 + jsb.tagBytes), jsb.uuid);
    if (jsb.hasCsumV2or3) {
      assert.ok(!dataBlockValid(back[1], copies[0], 42, jsb), "a wrong block fails its tag");
    }
    assert.throws(() => encodeDescriptorBlock([...tags, tags[0]], 42, jsb), Ext4Error);
    if (!wide) {
      assert.throws(
        () => encodeDescriptorBlock([{ target: 2 ** 32, escaped: false, checksum: 0 }], 1, jsb),
        (e: unknown) => e instanceof Ext4Error && e.code === "INVALID",
      );
    }

    // Revoke: a full block of records.
    const records = Array.from(
      { length: revokeRecordsPerBlock(jsb) },
      (_, i) => (wide ? 2 ** 40 : 0) + i * 3 + 1,
    );
    const r = encodeRevokeBlock(records, 43, jsb);
    assert.equal(readHeader(r)?.blockType, BlockType.REVOKE);
    assert.ok(blockTailValid(r, jsb));
    assert.deepEqual(parseRevokeBlock(r, jsb, 5), records);

    // Commit: time, and the checksum of the journal's scheme.
    const c = encodeCommitBlock(44, {
      commitSec: 2 ** 33 + 5,
      commitNsec: 999_000_000,
      crc32Sum: 0x1234abcd,
    }, jsb);
    const cb = parseCommitBlock(c);
    assert.equal(cb.commitSec, 2 ** 33 + 5);
    assert.equal(cb.commitNsec, 999_000_000);
    assert.ok(commitBlockValid(c, jsb));
    if (jsb.hasCsumV1) {
      assert.deepEqual([cb.checksumType, cb.checksumSize, cb.checksum], [
        JBD2_CRC32_CHKSUM,
        4,
        0x1234abcd,
      ]);
    } else if (jsb.hasCsumV2or3) {
      assert.deepEqual([cb.checksumType, cb.checksumSize], [0, 0]);
      c[100] ^= 1;
      assert.ok(!commitBlockValid(c, jsb), "a changed commit block fails its checksum");
    } else {
      assert.deepEqual([cb.checksumType, cb.checksumSize, cb.checksum], [0, 0, 0]);
    }

    // Superblock: what a writer changes, with the checksum kept valid.
    const block0 = img.slice(0, bs);
    const sb = new JournalSuperblock(block0);
    sb.start = 77;
    sb.sequence = 0xfffffff0;
    const out = sb.encode(block0.slice());
    const again = parseJournalSuperblock(out, { blockSize: bs, totalBlocks: 1024 });
    assert.deepEqual([again.start, again.sequence], [77, 0xfffffff0]);
  });

  Deno.test(`journal writer (${f.name}): transactions replay as written`, async () => {
    // Big enough for two full descriptors in a quarter of the journal.
    const journalBlocks = bs === 1024 ? 1024 : 4096;
    const dev = new MemoryBlockDevice(makeJournal(f, journalBlocks, 0xfffffffe));
    const store = deviceStore(dev, bs);
    const writer = await JournalWriter.open(store, { now: () => 1_700_000_000_123 });
    const wide = writer.superblock.is64bit;
    const base = wide ? 2 ** 33 : 5000;
    // Several descriptor blocks; two blocks starting with the journal magic.
    const count = 2 * tagsPerDescriptor(writer.superblock) + 3;
    const blocks: LogBlock[] = Array.from({ length: count }, (_, i) => ({
      block: base + i,
      bytes: i === 0 || i === count - 1 ? magicBlock(bs, i) : pattern(bs, i),
    }));
    const before = dev.bytes.slice();
    const t1 = await writer.writeTransaction({ blocks, revoked: [] });
    assert.equal(t1, 0xfffffffe);
    const written = new DataView(dev.bytes.buffer, 0, bs);
    assert.deepEqual([written.getUint32(0x18), written.getUint32(0x1c)], [0xfffffffe, 1]);
    assert.ok(before.some((b, i) => b !== dev.bytes[i]));

    // Revokes: of a block logged before (not replayed), more than one revoke block; a
    // block logged and revoked in one transaction is logged.
    const many = revokeRecordsPerBlock(writer.superblock) + 5;
    const revoked = [base + 1, ...Array.from({ length: many }, (_, i) => base + 100_000 + i)];
    const t2 = await writer.writeTransaction({
      blocks: [{ block: base + 2, bytes: pattern(bs, 999) }, {
        block: base + 7,
        bytes: pattern(bs, 7777),
      }],
      revoked: [...revoked, base + 7],
    });
    const t3 = await writer.writeTransaction({
      blocks: [{ block: base + 3, bytes: magicBlock(bs, 5) }],
      revoked: [],
    });
    assert.deepEqual([t2, t3, writer.nextSequence], [0xffffffff, 0, 1]);
    assert.equal(
      writer.freeBlocks,
      journalBlocks - 1 - writer.blocksNeeded(count, 0) - writer.blocksNeeded(2, revoked.length) -
        writer.blocksNeeded(1, 0),
    );

    const jsb = parsed(await store.readBlock(0), bs, store.blockCount);
    const plan = await recoverJournal(store, jsb);
    assert.equal(plan.error, undefined);
    assert.deepEqual(plan.transactions.map((t) => [t.sequence, t.replayed]), [
      [0xfffffffe, true],
      [0xffffffff, true],
      [0, true],
    ]);
    for (const t of plan.transactions) {
      assert.equal(t.commitChecksum, jsb.hasCsumV1 || jsb.hasCsumV2or3 ? "ok" : "none");
      assert.equal(t.commitTime, 1_700_000_000);
      for (const d of [...t.descriptorBlocks, ...t.revokeBlocks]) {
        assert.equal(d.checksumOk, jsb.hasCsumV2or3 ? true : undefined);
      }
    }
    assert.equal(plan.transactions[1].revokeBlocks.length, 2);
    assert.equal(plan.transactions[0].descriptorBlocks.length, 3);
    const want = new Map(blocks.map((b) => [b.block, b.bytes]));
    want.delete(base + 1);
    want.set(base + 2, pattern(bs, 999));
    want.set(base + 7, pattern(bs, 7777));
    want.set(base + 3, magicBlock(bs, 5));
    const got = await replay(store);
    assert.deepEqual([...got.keys()].sort((a, b) => a - b), [...want.keys()].sort((a, b) => a - b));
    for (const [b, bytes] of want) assert.deepEqual(got.get(b), bytes, `block ${b}`);
  });
}

const V3: Format = {
  name: "v3",
  blockSize: 1024,
  incompat: JournalIncompat.CSUM_V3 | JournalIncompat.BIT64,
};

Deno.test("journal writer: the log wraps, checkpoints move the tail, every state replays", async () => {
  // 64 blocks: a log of 63, transactions of at most 16.
  const dev = new MemoryBlockDevice(makeJournal(V3, 64));
  const store = deviceStore(dev, 1024);
  const writer = await JournalWriter.open(store);
  assert.deepEqual([writer.maxTransactionBlocks, writer.freeBlocks], [16, 63]);
  const home = new Map<number, Uint8Array>(); // what a checkpoint wrote home
  const logged = new Map<number, Uint8Array>(); // logged since the last checkpoint
  let total = 0; // journal blocks written: past 63 the log has wrapped
  for (let i = 0; i < 40; i++) {
    const blocks = Array.from({ length: 1 + (i % 10) }, (_, k) => ({
      block: 100 + ((i * 3 + k) % 25),
      bytes: k === 0 && i % 4 === 0 ? magicBlock(1024, i) : pattern(1024, i * 100 + k),
    }));
    const need = writer.blocksNeeded(blocks.length, 0);
    if (need > writer.freeBlocks) {
      await assert.rejects(
        writer.writeTransaction({ blocks, revoked: [] }),
        (e: unknown) => e instanceof Ext4Error && e.code === "NO_SPACE",
      );
      for (const [b, bytes] of logged) home.set(b, bytes);
      logged.clear();
      await writer.checkpointed();
      assert.equal(writer.hasUncheckpointed, false);
      assert.equal(writer.freeBlocks, 63);
    }
    await writer.writeTransaction({ blocks, revoked: [] });
    total += need;
    for (const b of blocks) logged.set(b.block, b.bytes);
    assert.ok(writer.hasUncheckpointed);
    // Recovery from the superblock on disk gives exactly what was logged since the tail.
    const got = await replay(store);
    assert.deepEqual([...got.keys()].sort(), [...logged.keys()].sort(), `after transaction ${i}`);
    for (const [b, bytes] of logged) assert.deepEqual(got.get(b), bytes);
  }
  assert.ok(total > 3 * 63, `${total} journal blocks written: the log wrapped three times`);
  // Clean close: checkpoint, mark empty (idempotent), nothing to recover.
  await writer.checkpointed();
  await writer.markEmpty();
  const log = new WriteLogDevice(dev);
  const again = deviceStore(log, 1024);
  const w2 = await JournalWriter.open(again);
  await w2.markEmpty();
  assert.equal(log.writeCount, 0, "marking an empty journal empty writes nothing");
  const empty = parsed(dev.bytes, 1024);
  assert.deepEqual([empty.start, empty.sequence], [0, writer.nextSequence]);
  assert.equal((await recoverJournal(again, empty)).needed, false);
});

Deno.test("journal writer: the log crosses its end (descriptor, copies and commit continue at s_first)", async () => {
  const dev = new MemoryBlockDevice(makeJournal(V3, 64));
  const store = deviceStore(dev, 1024);
  const writer = await JournalWriter.open(store);
  const tx = (n: number, seed: number) => ({
    blocks: Array.from(
      { length: n },
      (_, k) => ({ block: 300 + k, bytes: pattern(1024, seed + k) }),
    ),
    revoked: [],
  });
  for (let i = 0; i < 4; i++) await writer.writeTransaction(tx(12, i * 50)); // 4 x 14 = 56 blocks
  await writer.checkpointed();
  // Head at 57 of a log [1, 64): 14 blocks run 57..63 then 1..7.
  await writer.writeTransaction(tx(12, 1000));
  const jsb = parsed(dev.bytes, 1024);
  assert.equal(jsb.start, 57);
  const plan = await recoverJournal(store, jsb);
  assert.equal(plan.transactions.length, 1);
  assert.equal(plan.transactions[0].commitBlock, 7);
  const got = await replay(store);
  for (let k = 0; k < 12; k++) assert.deepEqual(got.get(300 + k), pattern(1024, 1000 + k));
});

Deno.test("journal writer: open refuses what it cannot write, before writing", async () => {
  const refuses = async (img: Uint8Array, re: RegExp, code = "UNSUPPORTED") => {
    const log = new WriteLogDevice(new MemoryBlockDevice(img));
    await assert.rejects(
      JournalWriter.open(deviceStore(log, 1024)),
      (e: unknown) => e instanceof Ext4Error && e.code === code && re.test(e.message),
    );
    assert.equal(log.entries.length, 0);
  };
  const dirty = makeJournal(V3, 1024);
  const sb = new JournalSuperblock(dirty.subarray(0, 1024));
  sb.start = 5;
  sb.updateChecksum();
  await refuses(dirty, /needs recovery/);
  await refuses(makeJournal({ ...V3, incompat: JournalIncompat.FAST_COMMIT }, 2048), /fast_commit/);
  await refuses(makeJournal({ ...V3, incompat: 0x100 }, 1024), /unrecognised features/);
  await refuses(makeJournal(V3, 8), /too small/);
  const bad = makeJournal(V3, 1024);
  bad[0x18] ^= 1; // checksum no longer matches
  await refuses(bad, /checksum/, "CORRUPT");
});

Deno.test("journal writer: refused transactions write nothing; empty ones write nothing", async () => {
  const log = new WriteLogDevice(
    new MemoryBlockDevice(makeJournal({ ...V3, incompat: JournalIncompat.CSUM_V3 }, 64)),
  );
  const writer = await JournalWriter.open(deviceStore(log, 1024));
  const b = (block: number) => ({ block, bytes: pattern(1024, block) });
  const rejects = (tx: { blocks: LogBlock[]; revoked: number[] }, code: string) =>
    assert.rejects(
      writer.writeTransaction(tx),
      (e: unknown) => e instanceof Ext4Error && e.code === code,
    );
  await rejects(
    { blocks: Array.from({ length: 15 }, (_, i) => b(i + 10)), revoked: [] },
    "NO_SPACE",
  );
  await rejects({ blocks: [b(10), b(10)], revoked: [] }, "INVALID");
  await rejects({ blocks: [b(2 ** 32)], revoked: [] }, "INVALID"); // no 64bit
  await rejects({ blocks: [b(10)], revoked: [2 ** 32] }, "INVALID");
  await rejects({ blocks: [{ block: 10, bytes: new Uint8Array(512) }], revoked: [] }, "INVALID");
  assert.equal(await writer.writeTransaction({ blocks: [], revoked: [] }), 0);
  assert.equal(log.entries.length, 0);
  assert.equal(writer.nextSequence, 1);
  // Still usable.
  assert.equal(await writer.writeTransaction({ blocks: [b(10)], revoked: [] }), 1);
  await assert.rejects(
    writer.markEmpty(),
    (e: unknown) => e instanceof Ext4Error && e.code === "INVALID",
  );
});

Deno.test("journal writer: a failed write or flush rejects the call and every later one", async () => {
  // Writes of the first transaction: superblock, descriptor, copy, commit; flushes: 2.
  const plans = [
    { write: 1 },
    { write: 3 },
    { write: 4 },
    { flush: 1 },
    { flush: 2 },
    { write: 5 },
    { flush: 3 },
  ];
  for (const plan of plans) {
    const dev = new FaultDevice(new MemoryBlockDevice(makeJournal(V3, 1024)), {
      ...plan,
      blockSize: 1024,
    });
    const writer = await JournalWriter.open(deviceStore(dev, 1024));
    const tx = { blocks: [{ block: 50, bytes: pattern(1024, 1) }], revoked: [] };
    let failedAt = -1;
    for (let i = 0; i < 2 && failedAt < 0; i++) {
      try {
        await writer.writeTransaction(tx);
      } catch (e) {
        assert.ok(e instanceof Ext4Error && e.code === "IO", String(e));
        failedAt = i;
      }
    }
    assert.ok(failedAt >= 0, `${JSON.stringify(plan)} failed a call`);
    assert.equal(dev.faults.length, 1);
    const writes = dev.writes;
    const flushes = dev.flushes;
    for (
      const call of [
        () => writer.writeTransaction(tx),
        () => writer.checkpointed(),
        () => writer.markEmpty(),
      ]
    ) {
      await assert.rejects(
        call(),
        (e: unknown) => e instanceof Ext4Error && /failed earlier/.test(e.message),
      );
    }
    assert.deepEqual([dev.writes, dev.flushes], [writes, flushes], "nothing after the failure");
  }
});

Deno.test("journal writer: calls queue in order and log the blocks as they were when called", async () => {
  const dev = new MemoryBlockDevice(makeJournal(V3, 1024));
  const store = deviceStore(dev, 1024);
  const writer = await JournalWriter.open(store);
  const buffer = pattern(1024, 1);
  const first = writer.writeTransaction({ blocks: [{ block: 70, bytes: buffer }], revoked: [] });
  buffer.set(pattern(1024, 2)); // the next transaction's change to the same cached block
  const second = writer.writeTransaction({ blocks: [{ block: 71, bytes: buffer }], revoked: [] });
  buffer.fill(0);
  // Images the caller never changes again (committed ones) are logged as they are, uncopied.
  const stable = pattern(1024, 3);
  const third = writer.writeTransaction({ blocks: [{ block: 72, bytes: stable }], revoked: [] }, {
    unchanging: true,
  });
  assert.deepEqual(await Promise.all([first, second, third]), [1, 2, 3]);
  const got = await replay(store);
  assert.deepEqual(got.get(70), pattern(1024, 1));
  assert.deepEqual(got.get(71), pattern(1024, 2));
  assert.deepEqual(got.get(72), pattern(1024, 3));
});

Deno.test("journal writer: a failed checkpoint or close fails the writer too", async () => {
  for (const step of ["checkpointed", "markEmpty"] as const) {
    const dev = new FaultDevice(new MemoryBlockDevice(makeJournal(V3, 1024)));
    const writer = await JournalWriter.open(deviceStore(dev, 1024));
    const tx = { blocks: [{ block: 50, bytes: pattern(1024, 1) }], revoked: [] };
    await writer.writeTransaction(tx);
    if (step === "markEmpty") await writer.checkpointed();
    dev.plan({ flush: dev.flushes + 1 });
    await assert.rejects(writer[step](), (e: unknown) => e instanceof Ext4Error && e.code === "IO");
    const writes = dev.writes;
    await assert.rejects(writer.writeTransaction(tx), /failed earlier/);
    await assert.rejects(writer.checkpointed(), /failed earlier/);
    await assert.rejects(writer.markEmpty(), /failed earlier/);
    assert.equal(dev.writes, writes, `${step}: nothing written after the failure`);
  }
});

Deno.test("journal writer: checksum v1 commit covers descriptors and copies as e2fsck computes it", async () => {
  const f: Format = { name: "v1", blockSize: 1024, compat: JournalCompat.CHECKSUM };
  const dev = new MemoryBlockDevice(makeJournal(f, 1024));
  const store = deviceStore(dev, 1024);
  const writer = await JournalWriter.open(store);
  await writer.writeTransaction({
    blocks: [{ block: 9, bytes: magicBlock(1024, 3) }],
    revoked: [5],
  });
  // Log: revoke at 1, descriptor at 2, the copy at 3, the commit at 4.
  const at = (n: number) => dev.bytes.slice(n * 1024, n * 1024 + 1024);
  const sum = crc32Be(crc32Be(0xffffffff, at(2)), at(3));
  assert.equal(parseCommitBlock(at(4)).checksum, sum);
  assert.deepEqual(at(3), escapeBlock(magicBlock(1024, 3)).copy);
});

Deno.test("journal sink: a batch's patched blocks count toward what one transaction may log", async () => {
  const { JournalCommitSink } = await import("../lib/txn/journal_sink.ts");
  // 64 blocks: transactions of at most 16 journal blocks.
  const dev = new MemoryBlockDevice(makeJournal(V3, 64));
  const writer = await JournalWriter.open(deviceStore(dev, 1024));
  const sink = new JournalCommitSink(new MemoryBlockDevice(new Uint8Array(1 << 20)), writer);
  const base = new Uint8Array(1024);
  const patch = (block: number, offset = 0) => ({ block, offset, bytes: new Uint8Array(4), base });
  const batch = (patches: ReturnType<typeof patch>[]) => ({
    blockSize: 1024,
    data: [],
    metadata: [],
    revoked: [],
    patches,
  });
  // Forty patches of one block are one logged block; forty blocks patched are forty.
  sink.check(batch(Array.from({ length: 40 }, (_, i) => patch(100, i * 4))));
  assert.throws(
    () => sink.check(batch(Array.from({ length: 40 }, (_, i) => patch(100 + i)))),
    (e) => e instanceof Ext4Error && e.code === "NO_SPACE" && /40 metadata blocks/.test(e.message),
  );
});
