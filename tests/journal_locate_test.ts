/**
 * The journal reader of `locateJournal`: blocks read through its 128 KiB chunks (whose
 * buffers are reused once evicted) equal the bytes on the device, in any order; a view stays
 * right for as long as its contract says; a write is seen by later reads; and recovery finds
 * the same plan through views as through plain copies.
 */

import assert from "node:assert/strict";
import { CORPUS, CORPUS_FOUND, IN_CI, missing, runOk, tempDir } from "./helpers.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { locateJournal } from "../lib/ext4/journal.ts";
import { recoverJournal } from "../lib/jbd2/recovery.ts";
import type { JournalStore } from "../lib/jbd2/journal_store.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";

const lacking = missing(["gzip"]);
if (!CORPUS_FOUND) lacking.push("the journal corpus (set EXT4TS_CORPUS)");

async function load(rel: string): Promise<Uint8Array> {
  await using tmp = await tempDir();
  await runOk("sh", ["-c", `gzip -dc "$1" > "$2"`, "sh", `${CORPUS}/${rel}`, `${tmp.path}/i`]);
  return await Deno.readFile(`${tmp.path}/i`);
}

/** A small deterministic generator (xorshift32) for the random read order. */
function xorshift(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

// 4 KiB blocks (32 blocks a chunk) and 1 KiB blocks (128 a chunk); both journals span more
// chunks than the reader keeps (16), so its buffers are reused.
for (const rel of ["kernel/default_4k/crash.img.gz", "kernel/bs1k/crash.img.gz"]) {
  Deno.test({
    name: `journal reader (${rel}): chunked reads equal the device in any order`,
    ignore: lacking.length > 0 && !IN_CI,
    async fn() {
      if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      const disk = new MemoryBlockDevice(await load(rel));
      const sb = await readSuperblock(disk);
      const { store } = await locateJournal(disk, sb);
      const bs = sb.blockSize;
      const n = store.blockCount;
      const per = 131072 / bs;
      assert.ok(n > 20 * per, `the journal spans ${n / per} chunks`);
      const expected = (b: number) => {
        const p = store.fsBlock(b)! * bs;
        return disk.bytes.slice(p, p + bs);
      };
      const peek = store.peekBlock!.bind(store);

      // Forward: each view equal to the device; a view stays right while 14 more chunks
      // are read after its own.
      const held: { block: number; view: Uint8Array }[] = [];
      for (let b = 0; b < n; b++) {
        const view = await peek(b);
        assert.deepEqual(view, expected(b), `block ${b}`);
        if (b % per === 0) held.push({ block: b, view });
        while (held.length && Math.floor(b / per) - Math.floor(held[0].block / per) >= 15) {
          held.shift();
        }
        for (const h of held) assert.deepEqual(h.view, expected(h.block), `view of ${h.block}`);
      }

      // Backward, with copies kept to the end: copies never change.
      const copies = new Map<number, Uint8Array>();
      for (let b = n - 1; b >= 0; b--) {
        const copy = await store.readBlock(b);
        assert.deepEqual(copy, expected(b), `copy of block ${b}`);
        if (b % 7 === 0) copies.set(b, copy);
      }
      for (const [b, copy] of copies) assert.deepEqual(copy, expected(b), `kept copy of ${b}`);

      // Random order, far apart and near: every chunk is loaded and evicted many times.
      const next = xorshift(n);
      for (let i = 0; i < 4 * n; i++) {
        const b = i % 3 === 0 ? next() % n : (next() % per + (i * per) % n) % n;
        assert.deepEqual(await peek(b), expected(b), `random read of ${b}`);
      }

      // A write is seen by later reads; a view taken before it keeps the old bytes.
      const before = await peek(1);
      const old = before.slice();
      const changed = old.slice().fill(0xa5, 100, 200);
      await store.writeBlock(1, changed);
      assert.deepEqual(await store.readBlock(1), changed);
      assert.deepEqual(before, old);
      assert.deepEqual(expected(1), changed);
    },
  });

  Deno.test({
    name: `journal reader (${rel}): recovery through views equals recovery through copies`,
    ignore: lacking.length > 0 && !IN_CI,
    async fn() {
      if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
      const disk = new MemoryBlockDevice(await load(rel));
      const { store, jsb } = await locateJournal(disk, await readSuperblock(disk));
      const copiesOnly: JournalStore = {
        blockSize: store.blockSize,
        blockCount: store.blockCount,
        description: store.description,
        readBlock: (b) => store.readBlock(b),
        writeBlock: (b, d) => store.writeBlock(b, d),
        flush: () => store.flush(),
        fsBlock: (b) => store.fsBlock(b),
      };
      const viaViews = await recoverJournal(store, jsb);
      const viaCopies = await recoverJournal(copiesOnly, jsb);
      assert.ok(viaViews.writes.length > 0);
      assert.deepEqual(viaViews, viaCopies);
    },
  });
}
