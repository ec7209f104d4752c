import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import {
  BlockCache,
  type CommitBatch,
  type CommitSink,
  InPlaceCommitSink,
} from "../lib/txn/transaction.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";

const BS = 1024;

function device(blocks = 64): MemoryBlockDevice {
  const bytes = new Uint8Array(blocks * BS);
  for (let b = 0; b < blocks; b++) bytes.fill(b & 0xff, b * BS, (b + 1) * BS);
  return new MemoryBlockDevice(bytes);
}

class RecordingSink implements CommitSink {
  batches: CommitBatch[] = [];
  inner: CommitSink;
  constructor(inner: CommitSink) {
    this.inner = inner;
  }
  async commit(batch: CommitBatch): Promise<void> {
    this.batches.push(batch);
    await this.inner.commit(batch);
  }
}

Deno.test("a block changed in an open transaction reads back changed; the device only after commit", async () => {
  const dev = device();
  const cache = new BlockCache(dev, BS);
  assert.equal((await cache.read(5))[0], 5);
  const tx = cache.begin();
  const img = await tx.getWritable(5);
  img[0] = 200;
  assert.equal((await cache.read(5))[0], 200);
  assert.equal((await tx.read(5))[0], 200);
  assert.equal((await cache.readCommitted(5))[0], 5);
  assert.equal(dev.bytes[5 * BS], 5);
  assert.equal(await tx.getWritable(5), img, "one image per block per transaction");
  await tx.commit();
  assert.equal(dev.bytes[5 * BS], 200);
  assert.equal((await cache.read(5))[0], 200);
  assert.equal(cache.active, null);
});

Deno.test("abort discards block changes and restores guarded buffers", async () => {
  const dev = device();
  const cache = new BlockCache(dev, BS);
  const tx = cache.begin();
  (await tx.getWritable(7)).fill(1);
  tx.newBlock(8)[3] = 9;
  tx.writeData(9, new Uint8Array(BS).fill(0xaa));
  const state = new Uint8Array([1, 2, 3]);
  tx.guard(state);
  state[0] = 100;
  tx.guard(state); // the first snapshot wins
  state[1] = 100;
  let aborted = false;
  tx.onAbort(() => aborted = true);
  tx.abort();
  assert.ok(aborted);
  assert.deepEqual([...state], [1, 2, 3]);
  assert.equal((await cache.read(7))[0], 7);
  assert.equal((await cache.read(8))[3], 8);
  assert.equal((await cache.read(9))[0], 9);
  assert.equal(dev.bytes[7 * BS], 7);
  assert.equal(tx.state, "aborted");
  await assert.rejects(() => tx.getWritable(1), (e: Ext4Error) => e.code === "INVALID");
  // A new transaction can start.
  cache.begin().abort();
});

Deno.test("discardOnError returns the step's value, or discards the transaction and rethrows", async () => {
  const dev = device();
  const cache = new BlockCache(dev, BS);
  const tx = cache.begin();
  const value = await tx.discardOnError(async () => {
    (await tx.getWritable(3)).fill(0x33);
    return 42;
  });
  assert.equal(value, 42);
  assert.equal(tx.state, "open", "a step that succeeds leaves the transaction open");
  const state = new Uint8Array([1]);
  tx.guard(state);
  await assert.rejects(
    () =>
      tx.discardOnError(async () => {
        state[0] = 2;
        (await tx.getWritable(4)).fill(0x44);
        throw new Ext4Error("NO_SPACE", "full");
      }),
    (e: Ext4Error) => e.code === "NO_SPACE",
  );
  assert.equal(tx.state, "aborted");
  assert.equal(state[0], 1);
  assert.equal((await cache.read(3))[0], 3, "changes made before the failing step are gone too");
  assert.equal((await cache.read(4))[0], 4);
  assert.equal(dev.bytes[3 * BS], 3);
});

Deno.test("commit order: data, flush, metadata, flush", async () => {
  const log = new WriteLogDevice(device());
  const cache = new BlockCache(log, BS);
  const tx = cache.begin();
  (await tx.getWritable(3))[0] = 1;
  tx.writeData(20, new Uint8Array(3 * BS).fill(0x55));
  tx.writeData(30, new Uint8Array(BS).fill(0x66));
  (await tx.getWritable(2))[0] = 1;
  await tx.commit();
  const kinds = log.entries.map((e) =>
    e.kind === "write" ? `w${e.offset / BS}+${e.data.length / BS}` : "flush"
  );
  assert.deepEqual(kinds, ["w20+3", "w30+1", "flush", "w2+1", "w3+1", "flush"]);
  // Metadata only: one flush.
  log.clear();
  const tx2 = cache.begin();
  (await tx2.getWritable(4))[0] = 1;
  await tx2.commit();
  assert.deepEqual(log.entries.map((e) => e.kind), ["write", "flush"]);
});

Deno.test("data reaches the sink uncopied: a block alone, and a run from one buffer", async () => {
  const dev = device();
  const sink = new RecordingSink(new InPlaceCommitSink(dev));
  const cache = new BlockCache(dev, BS, { sink });
  const tx = cache.begin();
  const alone = new Uint8Array(BS).fill(7);
  const run = new Uint8Array(3 * BS).fill(8);
  tx.writeData(40, alone);
  tx.writeData(20, run);
  await tx.commit();
  const [r, a] = sink.batches[0].data;
  assert.equal(a.block, 40);
  assert.equal(a.bytes.buffer, alone.buffer, "a block alone is its caller's bytes");
  assert.equal(r.block, 20);
  assert.equal(r.bytes.buffer, run.buffer, "a run from one buffer is a view of it");
  assert.equal(r.bytes.length, 3 * BS);
  assert.equal(dev.bytes[40 * BS], 7);
  assert.equal(dev.bytes[22 * BS], 8);
});

Deno.test("data writes are read coherently and coalesced into runs", async () => {
  const dev = device();
  const sink = new RecordingSink(new InPlaceCommitSink(dev));
  const cache = new BlockCache(dev, BS, { sink });
  assert.equal((await cache.read(11))[0], 11); // cached before the write
  const tx = cache.begin();
  tx.writeData(11, new Uint8Array(BS).fill(1));
  tx.writeData(10, new Uint8Array(BS).fill(2));
  tx.writeData(12, new Uint8Array(2 * BS).fill(3));
  assert.equal((await cache.read(11))[0], 1);
  assert.equal(tx.dataBlocks, 4);
  await tx.commit();
  const b = sink.batches[0];
  assert.equal(b.data.length, 1);
  assert.equal(b.data[0].block, 10);
  assert.equal(b.data[0].bytes.length, 4 * BS);
  assert.equal((await cache.read(11))[0], 1, "no stale cached image after the commit");
  assert.equal(dev.bytes[13 * BS], 3);
  assert.throws(() => cache.begin().writeData(1, new Uint8Array(10)), /not whole blocks/);
});

Deno.test("forget drops a pending image and records the revoke; data over metadata is refused", async () => {
  const dev = device();
  const sink = new RecordingSink(new InPlaceCommitSink(dev));
  const cache = new BlockCache(dev, BS, { sink });
  const tx = cache.begin();
  (await tx.getWritable(6)).fill(0xee);
  assert.throws(() => tx.writeData(6, new Uint8Array(BS)), /metadata/);
  tx.forget(6);
  tx.writeData(6, new Uint8Array(BS).fill(0x11));
  await tx.commit();
  assert.deepEqual(sink.batches[0].revoked, [6]);
  assert.equal(sink.batches[0].metadata.length, 0);
  assert.equal(dev.bytes[6 * BS], 0x11);
});

Deno.test("finishing steps run once, in order, before the batch is taken; a failing one aborts", async () => {
  const dev = device();
  const cache = new BlockCache(dev, BS);
  const tx = cache.begin();
  const order: string[] = [];
  tx.beforeCommit("a", async () => {
    order.push("a");
    (await tx.getWritable(1))[0] = 77; // changes made by a hook are committed
    tx.beforeCommit("c", () => void order.push("c"));
  });
  tx.beforeCommit("b", () => void order.push("b"));
  tx.beforeCommit("a", () => void order.push("a2"));
  await tx.commit();
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(dev.bytes[BS], 77);

  const tx2 = cache.begin();
  const guarded = new Uint8Array([5]);
  tx2.guard(guarded);
  guarded[0] = 6;
  (await tx2.getWritable(2))[0] = 99;
  tx2.beforeCommit("x", () => {
    throw new Ext4Error("NO_SPACE", "full");
  });
  await assert.rejects(() => tx2.commit(), (e: Ext4Error) => e.code === "NO_SPACE");
  assert.equal(tx2.state, "aborted");
  assert.equal(guarded[0], 5);
  assert.equal(dev.bytes[2 * BS], 2);
});

Deno.test("one transaction at a time; a failed commit makes the cache refuse writes", async () => {
  const dev = device();
  let fail = true;
  const sink: CommitSink = {
    commit: async (b) => {
      if (fail) throw new Error("disk on fire");
      await new InPlaceCommitSink(dev).commit(b);
    },
  };
  const cache = new BlockCache(dev, BS, { sink });
  const tx = cache.begin();
  assert.throws(() => cache.begin(), (e: Ext4Error) => e.code === "BUSY");
  (await tx.getWritable(1))[0] = 1;
  await assert.rejects(() => tx.commit(), (e: Ext4Error) => e.code === "IO");
  assert.equal(tx.state, "failed");
  fail = false;
  // Every later write is refused at once: IO (EIO), naming the first failure; so is a flush,
  // without asking the device.
  const fatal = (e: Ext4Error) =>
    e.code === "IO" && e.errno === Errno.EIO &&
    /after an I\/O error: .*disk on fire/.test(e.message);
  assert.throws(() => cache.begin(), fatal);
  assert.equal(cache.failure?.code, "IO");
  await assert.rejects(() => cache.flush(), fatal);
  // Reads still work (from the device).
  assert.equal((await cache.read(1))[0], 1 & 0xff);
});

Deno.test("a commit is done only once the sink's writes and flushes succeeded", async () => {
  const dev = device();
  let states: string[] = [];
  let tx = new BlockCache(dev, BS, {
    sink: {
      commit: async (b) => {
        states.push(tx.state);
        await new InPlaceCommitSink(dev).commit(b);
        throw new Ext4Error("IO", "fsync failed", { errno: Errno.EIO });
      },
    },
  }).begin();
  let done = false;
  tx.onCommit(() => done = true);
  (await tx.getWritable(1))[0] = 1;
  await assert.rejects(() => tx.commit(), (e: Ext4Error) => e.message === "fsync failed");
  assert.deepEqual(states, ["committing"]);
  assert.equal(tx.state, "failed");
  assert.equal(done, false, "onCommit must not run for a failed commit");
  states = [];
  tx = new BlockCache(dev, BS, {
    sink: { commit: () => Promise.resolve(states.push(tx.state)).then(() => {}) },
  }).begin();
  await tx.commit();
  assert.deepEqual(states, ["committing"]);
  assert.equal(tx.state, "committed");
});

Deno.test("a read-only device refuses transactions", () => {
  const cache = new BlockCache(
    new MemoryBlockDevice(new Uint8Array(4 * BS), { readOnly: true }),
    BS,
  );
  assert.throws(() => cache.begin(), (e: Ext4Error) => e.code === "READ_ONLY");
});

Deno.test("out-of-range blocks are IO errors, not crashes", async () => {
  const cache = new BlockCache(device(8), BS);
  await assert.rejects(() => cache.read(8), (e: Ext4Error) => e.code === "IO");
  await assert.rejects(() => cache.read(-1), (e: Ext4Error) => e.code === "IO");
  const tx = cache.begin();
  assert.throws(() => tx.newBlock(100), (e: Ext4Error) => e.code === "IO");
  assert.throws(() => tx.writeData(7, new Uint8Array(2 * BS)), (e: Ext4Error) => e.code === "IO");
  await assert.rejects(
    () => tx.patch(1, BS - 1, new Uint8Array(2)),
    (e: Ext4Error) => e.code === "INVALID",
  );
});

Deno.test("the cache stays within its capacity and serves repeated reads from memory", async () => {
  const cache = new BlockCache(device(64), BS, { capacity: 16 });
  for (let b = 0; b < 64; b++) await cache.read(b);
  assert.equal(cache.size, 16);
  const before = cache.stats.misses;
  for (let b = 48; b < 64; b++) assert.equal((await cache.read(b))[0], b);
  assert.equal(cache.stats.misses, before, "the 16 most recent blocks are cached");
  await cache.read(0);
  assert.equal(cache.stats.misses, before + 1);
});

Deno.test("random transactions: the device equals a model after each commit, reads always see the latest image", async () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("meta" as const), block: fc.nat(31), value: fc.nat(255) }),
    fc.record({ kind: fc.constant("data" as const), block: fc.nat(31), value: fc.nat(255) }),
    fc.record({ kind: fc.constant("end" as const), commit: fc.boolean() }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(op, { maxLength: 60 }),
      fc.integer({ min: 16, max: 40 }),
      async (ops, cap) => {
        const dev = device(32);
        const cache = new BlockCache(dev, BS, { capacity: cap });
        const committed = Array.from({ length: 32 }, (_, b) => b);
        let pending = new Map<number, number>();
        let metaBlocks = new Set<number>();
        let tx = cache.begin();
        for (const o of ops) {
          if (o.kind === "end") {
            if (o.commit) {
              await tx.commit();
              for (const [b, v] of pending) committed[b] = v;
            } else tx.abort();
            pending = new Map();
            metaBlocks = new Set();
            tx = cache.begin();
          } else if (o.kind === "meta") {
            (await tx.getWritable(o.block)).fill(o.value);
            pending.set(o.block, o.value);
            metaBlocks.add(o.block);
          } else if (!metaBlocks.has(o.block)) {
            tx.writeData(o.block, new Uint8Array(BS).fill(o.value));
            pending.set(o.block, o.value);
          }
          for (let b = 0; b < 32; b++) {
            const expect = pending.get(b) ?? committed[b];
            assert.equal((await cache.read(b))[BS - 1], expect);
          }
        }
        tx.abort();
        for (let b = 0; b < 32; b++) assert.equal(dev.bytes[b * BS + 17], committed[b]);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("WriteLogDevice records writes and flushes and replays prefixes", async () => {
  const base = new Uint8Array(64);
  const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(base)));
  await log.write(0, new Uint8Array([1, 1]));
  await log.write(8, new Uint8Array([2]));
  await log.flush();
  await log.write(0, new Uint8Array([3]));
  await log.flush();
  assert.deepEqual(log.flushBoundaries(), [3, 5]);
  assert.equal(log.writeCount, 3);
  assert.deepEqual([...log.replay(base, 3).subarray(0, 9)], [1, 1, 0, 0, 0, 0, 0, 0, 2]);
  assert.deepEqual([...log.replay(base).subarray(0, 2)], [3, 1]);
  const now = new Uint8Array(2);
  await log.read(0, now);
  assert.deepEqual([...now], [3, 1]);
  // The log holds copies: changing the caller's buffer later does not rewrite history.
  const buf = new Uint8Array([9]);
  await log.write(20, buf);
  buf[0] = 10;
  assert.equal(log.replay(base)[20], 9);
  await assert.rejects(() => log.write(63, new Uint8Array(2)), (e: Ext4Error) => e.code === "IO");
});

Deno.test("a transaction reports where it changed a block: patches as ranges, a block handed out whole without", async () => {
  const device = new MemoryBlockDevice(new Uint8Array(16 * 1024));
  let seen: CommitBatch | null = null;
  const cache = new BlockCache(device, 1024, {
    sink: {
      commit: (b) => {
        seen = b;
        return Promise.resolve();
      },
    },
  });
  let tx = cache.begin();
  await tx.patch(3, 10, new Uint8Array([1, 2]));
  await tx.patch(3, 100, new Uint8Array(4));
  await tx.patch(4, 0, new Uint8Array(8));
  (await tx.getWritable(4))[500] = 1; // whole: any byte may have changed
  tx.newBlock(5);
  await tx.commit();
  const byBlock = new Map(seen!.metadata.map((m) => [m.block, m.changed]));
  assert.deepEqual(byBlock.get(3), [10, 12, 100, 104]);
  assert.equal(byBlock.get(4), undefined);
  assert.equal(byBlock.get(5), undefined);
  // A block first written as data and then patched as metadata: whole.
  tx = cache.begin();
  tx.writeData(6, new Uint8Array(1024));
  await tx.patch(6, 0, new Uint8Array(2));
  await tx.commit();
  assert.equal(seen!.metadata.find((m) => m.block === 6)!.changed, undefined);
});
