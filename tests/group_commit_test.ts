/**
 * Group commit (issue 12, "handles and a running transaction"): with `commitInterval`, the
 * writable `Ext4` joins its operations into one running transaction that reaches the device
 * on sync(), on close(), when it reaches the journal's per-transaction limit and on the timer.
 * Readers see every joined operation at once; the device sees nothing of them until the
 * commit; blocks freed in the running transaction are not handed out again before it is
 * durable; a failed timed commit fails the filesystem object like any failed commit.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { FaultDevice } from "../lib/block/fault_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { run, runOk, tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS } from "./write_fixtures.ts";
import type { Transaction } from "../lib/txn/transaction.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fresh image's bytes. */
async function mkfs(dir: string, mkfs: string, args: string[], size = "16M"): Promise<Uint8Array> {
  const path = `${dir}/mk.img`;
  await runOk(mkfs, ["-qF", "-E", "lazy_itable_init=1", ...args, path, size], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  const bytes = await Deno.readFile(path);
  await Deno.remove(path);
  return bytes;
}

/** e2fsck -fn on a copy of `bytes`. */
async function fsck(dir: string, bytes: Uint8Array): Promise<{ code: number; output: string }> {
  const path = `${dir}/fsck-${crypto.randomUUID()}.img`;
  await Deno.writeFile(path, bytes);
  try {
    const r = await run("e2fsck", ["-fn", path]);
    return { code: r.code, output: r.stdout + r.stderr };
  } finally {
    await Deno.remove(path);
  }
}

/** The physical blocks of a file. */
async function blocksOf(fs: Ext4, path: string): Promise<Set<number>> {
  const runs = await fs.blockRuns(await fs.inode((await fs.stat(path)).ino));
  const out = new Set<number>();
  for (const r of runs) for (let i = 0; i < r.length; i++) out.add(r.physical + i);
  return out;
}

for (
  const [name, tool, args] of [
    ["ext2", "mkfs.ext2", ["-b", "1024"]],
    ["ext4", "mkfs.ext4", ["-b", "1024"]],
  ] as const
) {
  testWith(`group commit (${name}): nothing reaches the device before sync, all of it after`, [
    ...IMAGE_TOOLS,
  ], async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, tool, [...args]);
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false, commitInterval: 3600 });
    const afterOpen = Uint8Array.from(dev.bytes);
    for (let i = 0; i < 50; i++) {
      await fs.writeFile(`/f${i}`, enc.encode(`contents ${i}\n`.repeat(i + 1)));
    }
    await fs.mkdir("/dir");
    await fs.rename("/f3", "/dir/three");
    await fs.remove("/f4");
    // Readers see the running transaction.
    assert.equal(dec.decode(await fs.readFile("/dir/three")), "contents 3\n".repeat(4));
    await assert.rejects(fs.stat("/f4"), (e) => e instanceof Ext4Error && e.code === "NOT_FOUND");
    // The device: the superblock's "being written" mark, and file data in free blocks, but no
    // metadata that points at them: the image is still the empty filesystem.
    const uncommitted = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
    assert.deepEqual((await Array.fromAsync(uncommitted.readDir("/"))).map((e) => e.name), [
      "lost+found",
    ]);
    await uncommitted.close();
    assert.notDeepEqual(dev.bytes, afterOpen, "file data written in place at once");
    await fs.sync();
    const synced = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)), {
      recovery: "memory",
    });
    assert.equal(dec.decode(await synced.readFile("/f10")), "contents 10\n".repeat(11));
    assert.equal(dec.decode(await synced.readFile("/dir/three")), "contents 3\n".repeat(4));
    await synced.close();
    await fs.close();
    const r = await fsck(tmp.path, dev.bytes);
    assert.equal(r.code, 0, r.output);
  });
}

testWith(
  "group commit: records changed again and again in one compound (patched in place) read back their latest state",
  [...IMAGE_TOOLS],
  async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, "mkfs.ext4", ["-b", "1024"]);
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false, commitInterval: 3600 });
    // Neighbours share inode table blocks: each chmod patches a record of a block the running
    // compound already holds, and every stat must see the newest mode, also of the neighbours.
    for (let i = 0; i < 8; i++) await fs.writeFile(`/f${i}`, enc.encode("x"));
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 8; i++) {
        const mode = 0o600 + round * 8 + i;
        await fs.chmod(`/f${i}`, mode);
        assert.equal((await fs.stat(`/f${i}`)).mode & 0o7777, mode, `round ${round}, f${i}`);
      }
      for (let i = 0; i < 8; i++) {
        assert.equal((await fs.stat(`/f${i}`)).mode & 0o7777, 0o600 + round * 8 + i);
      }
    }
    // A directory whose entries change while its own record sits in a patched block: its
    // listing follows every change.
    await fs.mkdir("/d");
    for (let i = 0; i < 20; i++) {
      await fs.writeFile(`/d/n${i}`, enc.encode("y"));
      await fs.chmod(`/f${i % 8}`, 0o640);
      const names = (await Array.fromAsync(fs.readDir("/d"))).map((e) => e.name);
      assert.equal(names.length, i + 1, `after n${i}`);
    }
    await fs.close();
    const r = await fsck(tmp.path, dev.bytes);
    assert.equal(r.code, 0, r.output);
  },
);

testWith(
  "group commit: blocks freed in the running transaction are not reused before it is durable; out of space, it is committed and the write retried",
  [
    ...IMAGE_TOOLS,
  ],
  async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, "mkfs.ext2", ["-b", "1024"], "4M");
    const dev = new MemoryBlockDevice(Uint8Array.from(base));
    const fs = await Ext4.openDevice(dev, { readOnly: false, commitInterval: 3600 });
    await fs.writeFile("/old", new Uint8Array(64 * 1024).fill(1));
    await fs.sync();
    const old = await blocksOf(fs, "/old");
    await fs.remove("/old");
    // Nearly all free space, while /old's blocks are freed but not durably so.
    const free = fs.statfs().freeBlocks;
    await fs.writeFile("/new", new Uint8Array((free - old.size - 40) * 1024).fill(2));
    for (const b of await blocksOf(fs, "/new")) assert.ok(!old.has(b), `block ${b} reused`);
    // Past what is free without them: the write runs out of space, so the running transaction
    // (the removal) is committed first and the write tried again, as ext4 forces a journal
    // commit before it gives up (ext4_should_retry_alloc).
    const onDisk = async () => {
      const copy = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
      try {
        return (await Array.fromAsync(copy.readDir("/"))).map((e) => e.name).sort();
      } finally {
        await copy.close();
      }
    };
    assert.deepEqual(await onDisk(), ["lost+found", "old"], "the removal is not committed yet");
    await fs.writeFile("/more", new Uint8Array((old.size + 20) * 1024).fill(3));
    assert.deepEqual(await onDisk(), ["lost+found", "new"], "committed to make room");
    await fs.close();
    const r = await fsck(tmp.path, dev.bytes);
    assert.equal(r.code, 0, r.output);
  },
);

testWith("group commit: the timer commits without a sync", [...IMAGE_TOOLS], async () => {
  await using tmp = await tempDir();
  const base = await mkfs(tmp.path, "mkfs.ext2", ["-b", "1024"], "4M");
  const dev = new MemoryBlockDevice(Uint8Array.from(base));
  const fs = await Ext4.openDevice(dev, { readOnly: false, commitInterval: 1 });
  await fs.mkdir("/timed");
  const onDisk = async () => {
    const copy = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(dev.bytes)));
    try {
      return (await Array.fromAsync(copy.readDir("/"))).some((e) => e.name === "timed");
    } finally {
      await copy.close();
    }
  };
  // A one-second timer: waiting a minute for it is a lower bound on a loaded machine, not a race.
  let seen = false;
  for (let i = 0; i < 600 && !seen; i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = await onDisk();
  }
  assert.ok(seen, "committed by the timer");
  await fs.close();
});

testWith("group commit: a failed commit reaches sync and close; nothing later succeeds", [
  ...IMAGE_TOOLS,
], async () => {
  await using tmp = await tempDir();
  const base = await mkfs(tmp.path, "mkfs.ext2", ["-b", "1024"], "4M");
  const dev = new FaultDevice(new MemoryBlockDevice(Uint8Array.from(base)));
  const fs = await Ext4.openDevice(dev, { readOnly: false, commitInterval: 3600 });
  await fs.mkdir("/a");
  dev.plan({ flush: dev.flushes + 1 }); // the next flush fails
  await assert.rejects(fs.sync(), (e) => e instanceof Ext4Error && e.errno === Errno.EIO);
  await assert.rejects(fs.mkdir("/b"), (e) => e instanceof Ext4Error && e.errno === Errno.EIO);
  await assert.rejects(fs.close(), (e) => e instanceof Ext4Error && e.errno === Errno.EIO);
});

testWith(
  "group commit: the sync after an overwrite that changed no metadata is its data write and one flush; a crash before the flush leaves old or new data in that block, nothing else changed",
  [...IMAGE_TOOLS],
  async () => {
    await using tmp = await tempDir();
    const base = await mkfs(tmp.path, "mkfs.ext4", ["-b", "4096"], "16M");
    const log = new WriteLogDevice(new MemoryBlockDevice(Uint8Array.from(base)));
    const fs = await Ext4.openDevice(log, { readOnly: false, commitInterval: 3600 });
    const bs = 4096;
    const old = new Uint8Array(16 * bs).map((_, i) => i % 251);
    await fs.writeFile("/f", old);
    const { ino } = await fs.stat("/f");
    const nw = fs.nodeWriter();
    const target = 5;
    const phys = [...await blocksOf(fs, "/f")].sort((a, b) => a - b)[target];
    const fresh = new Uint8Array(bs).fill(0xee);
    const expected = Uint8Array.from(old);
    expected.set(fresh, target * bs);
    // Times are not restamped within the coarse tick they were set in, so an overwrite right
    // after one that stamped them changes data alone (retried when a tick boundary fell between).
    let dataOnly = 0;
    for (let attempt = 0; attempt < 20 && dataOnly < 3; attempt++) {
      await nw.write(ino, 0, old.subarray(0, bs));
      await fs.sync();
      const mtime = (await fs.stat("/f")).mtime;
      const start = log.position;
      await nw.write(ino, target * bs, fresh);
      const restamped = (await fs.stat("/f")).mtime;
      await fs.sync();
      const image = log.replay(base, start);
      if (restamped.sec !== mtime.sec || restamped.nsec !== mtime.nsec) continue;
      dataOnly++;
      const entries = log.entries.slice(start);
      assert.deepEqual(entries.map((e) => e.kind), ["write", "flush"], "data write, one flush");
      const w = entries[0] as { offset: number; data: Uint8Array };
      assert.equal(w.offset, phys * bs);
      assert.deepEqual(w.data, fresh);
      // A crash before the flush: the block may or may not have reached the medium.
      for (const crash of [image, log.replay(base, start + 1)]) {
        const copy = await Ext4.openDevice(new MemoryBlockDevice(crash), { recovery: "memory" });
        const got = await copy.readFile("/f");
        await copy.close();
        const block = got.subarray(target * bs, (target + 1) * bs);
        const isOld = block.every((b, i) => b === old[target * bs + i]);
        assert.ok(isOld || block.every((b) => b === 0xee), "old or new data in the block");
        const rest = Uint8Array.from(got);
        rest.set(expected.subarray(target * bs, (target + 1) * bs), target * bs);
        assert.deepEqual(rest, expected, "nothing else changed");
      }
      // What the sync returned after: the new data on the medium.
      const synced = await Ext4.openDevice(new MemoryBlockDevice(log.replay(base)), {
        recovery: "memory",
      });
      assert.deepEqual(await synced.readFile("/f"), expected);
      await synced.close();
    }
    assert.ok(dataOnly > 0, "an overwrite within the tick changed data alone");
    await fs.close();
    const r = await fsck(tmp.path, log.replay(base));
    assert.equal(r.code, 0, r.output);
  },
);

/**
 * A block cache of 1 KiB blocks over a group commit (in place) whose running compound holds its
 * own image of block 3 (its byte 0 set to 1 by a first commit, which copied the block).
 */
async function compoundWithBlock3() {
  const { BlockCache, InPlaceCommitSink } = await import("../lib/txn/transaction.ts");
  const { GroupCommitSink } = await import("../lib/txn/group_commit.ts");
  const dev = new MemoryBlockDevice(new Uint8Array(16 * 1024));
  const sink = new GroupCommitSink(dev, new InPlaceCommitSink(dev), { intervalMs: 60_000 });
  const cache = new BlockCache(dev, 1024, { sink });
  const tx = cache.begin();
  await tx.patch(3, 0, new Uint8Array([1]));
  await tx.commit();
  return { dev, sink, cache, image: await cache.read(3) };
}

Deno.test("patchUnshared: group commit patches the compound's own image in place, one copy per compound", async () => {
  const { dev, sink, cache, image } = await compoundWithBlock3();
  let tx: Transaction;
  for (let i = 1; i <= 3; i++) {
    tx = cache.begin();
    await tx.patchUnshared(3, i, new Uint8Array([i + 1]));
    assert.equal(tx.metadataBlocks, 1, "a patched block counts as changed");
    assert.equal((await cache.read(3))[i], 0, "not visible before the commit");
    await tx.commit();
    assert.equal(await cache.read(3), image, `commit ${i}: the compound's image, patched in place`);
  }
  assert.deepEqual([...image.subarray(0, 5)], [1, 2, 3, 4, 0]);
  // An aborted transaction's patch never reaches the image.
  tx = cache.begin();
  await tx.patchUnshared(3, 4, new Uint8Array([9]));
  tx.abort();
  assert.equal(image[4], 0);
  // A later getWritable of the block in the same transaction takes the patch first.
  tx = cache.begin();
  await tx.patchUnshared(3, 5, new Uint8Array([6]));
  const w = await tx.getWritable(3);
  assert.equal(w[5], 6, "the patch is in the writable image");
  w[5] = 7;
  await tx.commit();
  assert.equal((await cache.read(3))[5], 7, "the later change wins");
  // Once the compound commits, its images are the commit's: the next patch copies.
  await sink.sync();
  assert.deepEqual([...dev.bytes.subarray(3 * 1024, 3 * 1024 + 6)], [1, 2, 3, 4, 0, 7]);
  const committed = await cache.read(3);
  tx = cache.begin();
  await tx.patchUnshared(3, 0, new Uint8Array([8]));
  await tx.commit();
  const next = await cache.read(3);
  assert.notEqual(next, committed, "a committed image is never changed");
  assert.equal(committed[0], 1);
  assert.equal(next[0], 8);
  await sink.close();
  assert.equal(dev.bytes[3 * 1024], 8);
});

Deno.test("patchRecord: in the compound's image at the commit, seen by the transaction's own reads", async () => {
  const { dev, sink, cache, image } = await compoundWithBlock3();
  let tx: Transaction;
  // Two records of block 3 (bytes 256-259 and 512-515) patched: one range read back, no copy.
  tx = cache.begin();
  await tx.patchRecord(3, 256, new Uint8Array([1, 2, 3, 4]));
  await tx.patchRecord(3, 258, new Uint8Array([9]));
  assert.equal(tx.metadataBlocks, 1);
  assert.equal(tx.changesRange(3, 0, 256), false, "the record before is untouched");
  assert.equal(tx.changesRange(3, 259, 512), true, "a range overlapping a patch");
  assert.equal(tx.changesRange(3, 260, 512), false);
  assert.deepEqual([...await tx.readRange(3, 254, 262)], [0, 0, 1, 2, 9, 4, 0, 0]);
  assert.deepEqual(
    await tx.readRange(3, 512, 516),
    image.slice(512, 516),
    "a range no patch overlaps: the committed bytes",
  );
  assert.equal(image[256], 0);
  let left: Uint8Array | undefined;
  tx.onCommit(() => left = tx.committedImage(3));
  await tx.commit();
  assert.equal(await cache.read(3), image, "patched in place: the compound's own image");
  assert.deepEqual([...image.subarray(256, 260)], [1, 2, 9, 4]);
  assert.equal(left, image, "the image the commit left, as its onCommit steps see it");
  assert.equal(tx.committedImage(3), undefined, "not kept after them");
  // A read of the whole block inside the transaction sees the patches (the block is copied).
  tx = cache.begin();
  await tx.patchRecord(3, 512, new Uint8Array([7]));
  const seen = await tx.read(3);
  assert.notEqual(seen, image, "a copy of its own");
  assert.equal(seen[512], 7);
  assert.equal(seen[256], 1);
  assert.equal(image[512], 0, "the committed image waits for the commit");
  // A patch after that goes into the copy; the batch carries the block whole.
  await tx.patchRecord(3, 513, new Uint8Array([8]));
  assert.equal(seen[513], 8);
  await tx.commit();
  assert.deepEqual([...(await cache.read(3)).subarray(512, 514)], [7, 8]);
  // An aborted transaction's record patch reaches nothing.
  tx = cache.begin();
  await tx.patchRecord(3, 600, new Uint8Array([5]));
  tx.abort();
  assert.equal((await cache.read(3))[600], 0);
  // Committed compound images never change: after a sync the next patch works on a copy.
  await sink.sync();
  const committed = await cache.read(3);
  tx = cache.begin();
  await tx.patchRecord(3, 256, new Uint8Array([6]));
  await tx.commit();
  assert.notEqual(await cache.read(3), committed);
  assert.equal(committed[256], 1);
  assert.equal((await cache.read(3))[256], 6);
  await sink.close();
  assert.deepEqual([...dev.bytes.subarray(3 * 1024 + 256, 3 * 1024 + 260)], [6, 2, 9, 4]);
  assert.deepEqual([...dev.bytes.subarray(3 * 1024 + 512, 3 * 1024 + 514)], [7, 8]);
});

Deno.test("patchUnshared: without a sink that takes patches it is a patch", async () => {
  const { BlockCache } = await import("../lib/txn/transaction.ts");
  const dev = new MemoryBlockDevice(new Uint8Array(8192));
  const cache = new BlockCache(dev, 1024);
  await cache.read(2);
  const tx = cache.begin();
  await tx.patchUnshared(2, 10, new Uint8Array([5]));
  assert.equal((await cache.read(2))[10], 5, "the open transaction's image, as patch() makes");
  await tx.commit();
  assert.equal(dev.bytes[2 * 1024 + 10], 5);
});

testWith(
  "group commit: a record written in a transaction reads back changed in it, its neighbours as committed",
  [...IMAGE_TOOLS],
  async () => {
    const { BlockCache } = await import("../lib/txn/transaction.ts");
    const { GroupCommitSink } = await import("../lib/txn/group_commit.ts");
    const { InPlaceCommitSink } = await import("../lib/txn/transaction.ts");
    const { openMetadata } = await import("../lib/ext4/super.ts");
    const { getInode, loadInode, writeInode } = await import("../lib/ext4/inode.ts");
    const { encodeInode } = await import("../lib/ondisk/inode.ts");
    await using tmp = await tempDir();
    const dev = new MemoryBlockDevice(await mkfs(tmp.path, "mkfs.ext4", ["-b", "4096"]));
    const { sb, groups } = await openMetadata(dev);
    const sink = new GroupCommitSink(dev, new InPlaceCommitSink(dev), { intervalMs: 60_000 });
    const cache = new BlockCache(dev, sb.blockSize, { sink });
    // Inodes 2 and 11 share a table block (4 KiB blocks, 256-byte records: 1-16).
    assert.equal(sb.blockSize / sb.inodeSize, 16);
    const links = async (ino: number, n: number) => {
      const tx = cache.begin();
      const { raw, f } = await loadInode(tx, sb, groups, ino);
      await writeInode(tx, sb, groups, ino, encodeInode(sb, ino, { ...f, linksCount: n }, raw));
      return tx;
    };
    let tx = cache.begin();
    const rootLinks = (await getInode(tx, sb, groups, 2)).linksCount;
    await tx.commit();
    for (let n = 5; n < 9; n++) {
      tx = await links(11, n);
      assert.equal((await getInode(tx, sb, groups, 11)).linksCount, n, "this transaction's record");
      assert.equal((await getInode(tx, sb, groups, 2)).linksCount, rootLinks, "a neighbour");
      await tx.commit();
      tx = cache.begin();
      assert.equal((await getInode(tx, sb, groups, 11)).linksCount, n, "after the commit");
      tx.abort();
    }
    // An aborted change leaves the committed record.
    tx = await links(11, 99);
    tx.abort();
    tx = cache.begin();
    assert.equal((await getInode(tx, sb, groups, 11)).linksCount, 8);
    tx.abort();
    await sink.close();
  },
);
