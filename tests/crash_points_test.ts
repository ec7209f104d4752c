/**
 * The crash points of a write log (lib/block/crash_points.ts): flush boundaries, torn subsets
 * cut at block boundaries, the images built from them, and what a crash image must hold.
 */

import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import {
  crashImages,
  type CrashPoint,
  flushCrashPoints,
  mustHold,
  seededRandom,
  tornCrashPoints,
} from "../lib/block/crash_points.ts";

const BS = 1024;

/** A log: one interval of three writes (one spanning three blocks, one unaligned), flushed,
 * then a single-block interval, flushed, then two writes never flushed. */
async function sampleLog(base: Uint8Array) {
  const log = new WriteLogDevice(new MemoryBlockDevice(base.slice()));
  await log.write(0, new Uint8Array(3 * BS).fill(1)); // blocks 0, 1, 2
  await log.write(5 * BS + 100, new Uint8Array(BS).fill(2)); // blocks 5 and 6, cut at 6
  await log.write(9 * BS, new Uint8Array(10).fill(3)); // part of block 9
  await log.flush();
  const synced = log.mark("fsync");
  await log.write(1 * BS, new Uint8Array(BS).fill(4));
  await log.flush();
  await log.write(12 * BS, new Uint8Array(BS).fill(5));
  await log.write(13 * BS, new Uint8Array(BS).fill(6));
  return { log, synced };
}

Deno.test("crash points: flush boundaries, marks and positions", async () => {
  const base = new Uint8Array(16 * BS);
  const { log, synced } = await sampleLog(base);
  assert.equal(synced, 4);
  assert.deepEqual(log.marks, [{ label: "fsync", position: 4 }]);
  assert.equal(log.position, 8);
  assert.deepEqual(flushCrashPoints(log.entries).map((p) => [p.kind, p.durable, p.end]), [
    ["flush", 4, 4],
    ["flush", 6, 6],
  ]);
  log.clear();
  assert.equal(log.position, 0);
  assert.deepEqual(log.marks, []);
});

Deno.test("crash points: torn subsets are proper, distinct, cut at blocks, seeded", async () => {
  const base = new Uint8Array(16 * BS);
  const { log } = await sampleLog(base);
  const torn = tornCrashPoints(log.entries, { blockSize: BS, perInterval: 1000, seed: 5 });
  // Interval [0, 3): 3 + 2 + 1 = 6 pieces, 2^6 - 2 proper subsets; [4, 5): one piece, none;
  // [6, 8) (never flushed): 2 pieces, 2 proper subsets.
  const first = torn.filter((p) => p.durable === 0);
  const last = torn.filter((p) => p.durable === 6);
  assert.equal(first.length, 62);
  assert.equal(last.length, 2);
  assert.equal(torn.length, 64);
  for (const p of first) {
    assert.equal(p.end, 3);
    assert.equal(p.pieces, 6);
    assert.ok(p.landed.length > 0 && p.landed.length < 6);
    for (const w of p.landed) {
      // Every piece lies in one block.
      assert.equal(Math.floor(w.offset / BS), Math.floor((w.offset + w.length - 1) / BS));
    }
  }
  const keys = first.map((p) => p.landed.map((w) => w.offset).join(","));
  assert.equal(new Set(keys).size, 62);
  const pieces = new Set(first.flatMap((p) => p.landed.map((w) => `${w.offset}+${w.length}`)));
  assert.deepEqual([...pieces].sort(), [
    "0+1024",
    "1024+1024",
    "2048+1024",
    "5220+924",
    "6144+100",
    "9216+10",
  ]);
  // The same seed draws the same subsets; another seed others.
  const again = tornCrashPoints(log.entries, { blockSize: BS, perInterval: 3, seed: 5 });
  assert.deepEqual(again, tornCrashPoints(log.entries, { blockSize: BS, perInterval: 3, seed: 5 }));
  assert.notDeepEqual(
    again,
    tornCrashPoints(log.entries, { blockSize: BS, perInterval: 3, seed: 6 }),
  );
  assert.equal(again.filter((p) => p.durable === 0).length, 3);
});

Deno.test("crash points: images are the durable prefix plus the landed pieces", async () => {
  const base = new Uint8Array(16 * BS).fill(9);
  const { log } = await sampleLog(base);
  const torn = tornCrashPoints(log.entries, { blockSize: BS, perInterval: 4, seed: 1 });
  const points = [...torn, ...flushCrashPoints(log.entries)];
  let seen = 0;
  let previous = -1;
  for (const { point, image } of crashImages(base, log.entries, points)) {
    assert.ok(point.durable >= previous, "in the order of their prefixes");
    previous = point.durable;
    const want = log.replay(base, point.durable);
    for (const w of point.landed) {
      const e = log.entries[w.entry];
      assert.ok(e.kind === "write");
      want.set(e.data.subarray(w.offset - e.offset, w.offset - e.offset + w.length), w.offset);
    }
    assert.deepEqual(image, want);
    image.fill(0); // each image is a copy of its own
    seen++;
  }
  assert.equal(seen, points.length);
  const [atFirstFlush] = crashImages(base, log.entries, flushCrashPoints(log.entries));
  assert.deepEqual([...atFirstFlush.image.subarray(5 * BS + 99, 5 * BS + 101)], [9, 2]);
});

Deno.test("crash points: what a crash image must hold", () => {
  const at = (durable: number, end: number): CrashPoint => ({
    kind: durable === end ? "flush" : "torn",
    durable,
    end,
    landed: [],
    pieces: 0,
  });
  assert.equal(mustHold(at(4, 4), 4, Infinity), true, "synced by the flush in the prefix");
  assert.equal(mustHold(at(4, 4), 6, Infinity), false, "synced later");
  assert.equal(mustHold(at(4, 4), 4, 4), true, "changed by writes after the crash");
  assert.equal(mustHold(at(4, 7), 4, 5), false, "a torn write of the change may be there");
  assert.equal(mustHold(at(4, 7), 4, 7), true);
  const r = seededRandom(3);
  const xs = [r(), r(), r()];
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.deepEqual(xs, [
    seededRandom(3)(),
    ...(() => {
      const q = seededRandom(3);
      q();
      return [q(), q()];
    })(),
  ]);
});
