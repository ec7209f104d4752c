/**
 * Crash safety of `replayJournal`: a power cut after any number of writes of the replay
 * (journalled blocks, the journal reset) leaves an image that a second replay turns into
 * exactly what an uninterrupted replay gives; and the in-memory overlay of an image equals
 * its on-disk replay, with the superblock presented as recovered.
 */

import assert from "node:assert/strict";
import { CORPUS, CORPUS_FOUND, IN_CI, missing, run, runOk, tempDir } from "./helpers.ts";
import { type BlockDevice, MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { Incompat } from "../lib/ondisk/features.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { locateJournal } from "../lib/ext4/journal.ts";
import { recoverJournal } from "../lib/jbd2/recovery.ts";
import { finalWrites } from "../lib/jbd2/recovery_plan.ts";
import { parseDescriptorTags } from "../lib/jbd2/descriptor_block.ts";
import { JBD2_MAGIC } from "../lib/jbd2/superblock.ts";
import { JournalOverlayDevice } from "../lib/ext4/journal_overlay.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";

const lacking = missing(["gzip"]);
if (!CORPUS_FOUND) lacking.push("the journal corpus (set EXT4TS_CORPUS)");
const NOW = 2000000000;

/** A device that loses power after `budget` writes: later writes and flushes fail. */
class PowerCut implements BlockDevice {
  readonly inner: BlockDevice;
  budget: number;
  constructor(inner: BlockDevice, budget: number) {
    this.inner = inner;
    this.budget = budget;
  }
  get size() {
    return this.inner.size;
  }
  get sectorSize() {
    return this.inner.sectorSize;
  }
  get readOnly() {
    return false;
  }
  read(offset: number, buffer: Uint8Array) {
    return this.inner.read(offset, buffer);
  }
  write(offset: number, data: Uint8Array) {
    if (this.budget <= 0) return Promise.reject(new Ext4Error("IO", "power cut"));
    this.budget--;
    return this.inner.write(offset, data);
  }
  flush() {
    return this.budget <= 0 ? Promise.reject(new Ext4Error("IO", "power cut")) : Promise.resolve();
  }
  close() {
    return Promise.resolve();
  }
}

async function load(rel: string): Promise<Uint8Array> {
  await using tmp = await tempDir();
  await runOk("sh", ["-c", `gzip -dc "$1" > "$2"`, "sh", `${CORPUS}/${rel}`, `${tmp.path}/i`]);
  return await Deno.readFile(`${tmp.path}/i`);
}

Deno.test({
  name: "replay: a power cut during the journalled writes or the journal reset is recoverable",
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    // 1 KiB blocks: many single-block writes to cut between.
    const pre = await load("kernel/bs1k_nologflush/crash.img.gz");
    const clean = new MemoryBlockDevice(pre.slice());
    const r = await replayJournal(clean, { now: NOW });
    assert.ok(r.written);
    // Count the writes of an uninterrupted replay.
    const BIG = 1e9;
    const counter = new PowerCut(new MemoryBlockDevice(pre.slice()), BIG);
    await replayJournal(counter, { now: NOW });
    const total = BIG - counter.budget;
    assert.equal(r.prepared!.orphans?.blocks.size ?? 0, 0, "this case has no orphan to release");
    // Writes: the journalled blocks, the journal superblock, the final superblock.
    const jsbBlock = r.prepared!.journalSuperblockFsBlock!;
    const bs = r.prepared!.superblock.blockSize;
    const cuts = [0, 1, 2, 3, Math.floor(total / 3), Math.floor(total / 2), total - 3, total - 2];
    for (const budget of [...new Set(cuts)].filter((b) => b >= 0 && b < total)) {
      const disk = new MemoryBlockDevice(pre.slice());
      let finished = false;
      try {
        await replayJournal(new PowerCut(disk, budget), { now: NOW });
        finished = true;
      } catch (e) {
        assert.ok(e instanceof Ext4Error && /power cut/.test(e.message), String(e));
      }
      assert.equal(finished, false);
      const again = await replayJournal(disk, { now: NOW });
      assert.ok(again.needed, `after ${budget} writes recovery must still be needed`);
      for (let i = 0; i < disk.bytes.length; i++) {
        if (disk.bytes[i] === clean.bytes[i]) continue;
        // Cut after the journal reset: the second recovery finds an empty journal and moves
        // its sequence on once more, as the kernel and e2fsck would.
        if (budget === total - 1 && Math.floor(i / bs) === jsbBlock) continue;
        assert.fail(
          `a power cut after ${budget} of ${total} writes, then a replay, differs ` +
            `from a clean replay in block ${Math.floor(i / bs)}`,
        );
      }
    }
    // The cut between the journal reset and the final superblock.
    const disk = new MemoryBlockDevice(pre.slice());
    await replayJournal(new PowerCut(disk, total - 1), { now: NOW }).catch(() => {});
    const last = await replayJournal(disk, { now: NOW });
    assert.equal(last.needed, true);
    assert.equal(last.prepared!.plan.needed, false, "the journal was already reset");
    const sb = await readSuperblock(disk);
    assert.equal(sb.incompat & Incompat.RECOVER, 0);
  },
});

Deno.test({
  name: "overlay: presents the replayed filesystem as recovered and writes nothing",
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    const pre = await load("kernel/default_4k/crash.img.gz");
    const base = new MemoryBlockDevice(pre.slice(), { readOnly: true });
    const before = (await readSuperblock(base)).incompat;
    assert.ok(before & Incompat.RECOVER);
    const view = await JournalOverlayDevice.open(base, { now: NOW });
    assert.ok(view.recovered);
    assert.equal(view.readOnly, true);
    const sb = await readSuperblock(view);
    assert.equal(sb.incompat & Incompat.RECOVER, 0, "needs_recovery must look cleared");
    assert.equal(sb.lastOrphan, 0, "the orphan list must look processed");
    await assert.rejects(() => view.write(0, new Uint8Array(1)), /read-only/);
    assert.ok(base.bytes.every((b, i) => b === pre[i]), "the base must be untouched");
    // A filesystem without recovery to do is passed through.
    const disk = new MemoryBlockDevice(pre.slice());
    await replayJournal(disk, { now: NOW });
    const plain = await JournalOverlayDevice.open(disk);
    assert.equal(plain.recovered, false);
  },
});

Deno.test({
  name: "replay: empties the journal with the next sequence, checksums right, flushed last",
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    // Checksum v3: both superblocks carry checksums that must be recomputed.
    const pre = await load("kernel/default_4k/crash.img.gz");
    const disk = new MemoryBlockDevice(pre.slice());
    const before = await locateJournal(disk, await readSuperblock(disk));
    assert.ok(before.jsb.start !== 0 && before.jsb.hasCsumV3);
    const rec = new WriteLogDevice(disk);
    const r = await replayJournal(rec, { now: NOW });
    const plan = r.prepared!.plan;
    assert.ok(plan.endSequence !== plan.startSequence);

    // readSuperblock and locateJournal verify both checksums.
    const sb = await readSuperblock(disk);
    assert.equal(sb.incompat & Incompat.RECOVER, 0, "needs_recovery cleared");
    const { jsb } = await locateJournal(disk, sb);
    assert.equal(jsb.start, 0, "s_start = 0: the journal is empty");
    assert.equal(jsb.sequence, (plan.endSequence + 1) >>> 0, "sequence moved past the log");
    assert.equal(jsb.errno, 0);
    assert.ok(jsb.checksumValid());
    // Nothing else in the journal superblock changed.
    const a = before.jsb.bytes.slice();
    const b = jsb.bytes.slice();
    for (const x of [a, b]) x.fill(0, 0x18, 0x24).fill(0, 0xfc, 0x100);
    assert.deepEqual(b, a);

    // Order: journalled blocks, flush, journal superblock, flush, superblock, flush.
    const bs = sb.blockSize;
    const ops = rec.entries;
    const writes = ops.flatMap((o, i) => (o.kind === "write" ? [{ offset: o.offset, i }] : []));
    const last = writes[writes.length - 1];
    assert.equal(last.offset, r.prepared!.superblockBlock * bs, "the superblock is written last");
    assert.deepEqual(ops.slice(last.i + 1), [{ kind: "flush" }], "and then flushed");
    // Between the journal reset and the superblock only the orphan cleanup is written.
    const jsbWrite = writes.find((w) => w.offset === r.prepared!.journalSuperblockFsBlock! * bs)!;
    const orphanBlocks = [...(r.prepared!.orphans?.blocks.keys() ?? [])].map((n) => n * bs);
    assert.deepEqual(
      writes.filter((w) => w.i > jsbWrite.i && w !== last).map((w) => w.offset).sort(),
      orphanBlocks.sort(),
    );
    assert.equal(ops[jsbWrite.i - 1].kind, "flush", "journalled blocks are flushed first");
    assert.equal(ops[jsbWrite.i + 1].kind, "flush", "the journal reset is flushed before");
  },
});

Deno.test({
  name: "replay: a journal block aimed beyond the filesystem is refused, nothing written",
  ignore: lacking.length > 0 && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    // No checksums in this journal, so the tag can be changed without fixing one.
    const pre = await load("kernel/bs1k_32bit_nocsum/crash.img.gz");
    const disk = new MemoryBlockDevice(pre.slice());
    const sb = await readSuperblock(disk);
    const { store, jsb } = await locateJournal(disk, sb);
    const plan = await recoverJournal(store, jsb);
    const last = plan.transactions.filter((t) => t.replayed).at(-1)!;
    const desc = last.descriptorBlocks[0].logBlock;
    const fsBlock = store.fsBlock(desc)!;
    const bs = sb.blockSize;
    // The first tag's t_blocknr (after the 12-byte header): past the end of the filesystem.
    new DataView(disk.bytes.buffer).setUint32(fsBlock * bs + 12, sb.blocksCount + 5, false);
    const patched = disk.bytes.slice();
    await assert.rejects(
      () => replayJournal(disk, { now: NOW }),
      (e) =>
        e instanceof Ext4Error && e.code === "CORRUPT" && /beyond the filesystem/.test(e.message),
    );
    assert.ok(disk.bytes.every((x, i) => x === patched[i]), "nothing may be written");
    await assert.rejects(
      () => JournalOverlayDevice.open(new MemoryBlockDevice(patched, { readOnly: true })),
      /beyond the filesystem/,
    );
  },
});

Deno.test({
  name: "replay: an escaped block gets the journal magic back, as e2fsck restores it",
  ignore: (lacking.length > 0 || missing(["e2fsck"]).length > 0) && !IN_CI,
  async fn() {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    // A journal without checksums, so a tag can be marked escaped without fixing one: the
    // logged block's first four bytes are zeroed and its tag gets JBD2_FLAG_ESCAPE, as jbd2
    // writes a block that starts with the journal magic.
    const pre = await load("kernel/bs1k_32bit_nocsum/crash.img.gz");
    const disk = new MemoryBlockDevice(pre.slice());
    const sb = await readSuperblock(disk);
    const bs = sb.blockSize;
    const { store, jsb } = await locateJournal(disk, sb);
    const plan = await recoverJournal(store, jsb);
    const final = finalWrites(plan);
    let chosen: { target: number; logBlock: number; tagOffset: number; desc: number } | undefined;
    for (const t of plan.transactions.filter((t) => t.replayed)) {
      const desc = t.descriptorBlocks[0]?.logBlock;
      if (desc === undefined) continue;
      const tags = parseDescriptorTags(await store.readBlock(desc), jsb);
      tags.forEach((tag, i) => {
        const w = final.get(tag.target);
        if (w?.logBlock === desc + 1 + i && tag.target > 100) {
          chosen ??= { target: tag.target, logBlock: w.logBlock, tagOffset: tag.offset, desc };
        }
      });
      if (chosen) break;
    }
    assert.ok(chosen, "a replayed block to escape");
    const bytes = disk.bytes;
    const view = new DataView(bytes.buffer);
    const descAt = store.fsBlock(chosen.desc)! * bs;
    view.setUint16(
      descAt + chosen.tagOffset + 6,
      view.getUint16(descAt + chosen.tagOffset + 6) | 1,
    );
    const dataAt = store.fsBlock(chosen.logBlock)! * bs;
    view.setUint32(dataAt, 0);
    const expected = bytes.slice(dataAt, dataAt + bs);
    new DataView(expected.buffer).setUint32(0, JBD2_MAGIC, false);
    const patched = bytes.slice();

    // e2fsck's replay of the same journal.
    await using tmp = await tempDir();
    await Deno.writeFile(`${tmp.path}/e.img`, patched);
    await run("e2fsck", ["-y", "-E", "journal_only", `${tmp.path}/e.img`], {
      env: { E2FSCK_CONFIG: "/dev/null", PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin` },
    });
    const e2 = await Deno.readFile(`${tmp.path}/e.img`);
    const at = chosen.target * bs;
    assert.deepEqual(e2.subarray(at, at + bs), expected, "e2fsck restores the magic");

    const view2 = await JournalOverlayDevice.open(new MemoryBlockDevice(patched.slice()));
    const seen = new Uint8Array(bs);
    await view2.read(at, seen);
    assert.deepEqual(seen, expected, "the overlay restores the magic");
    await replayJournal(disk, { now: NOW });
    assert.deepEqual(disk.bytes.subarray(at, at + bs), expected, "the replay restores the magic");
  },
});
