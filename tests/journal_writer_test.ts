/**
 * `JournalWriter` against oracles that are not ours: on real mkfs.ext4 images (the journal
 * mkfs makes, without features; the kernel's csum v3 + 64bit; checksum v1 on 4 KiB blocks)
 * transactions log new contents for the data blocks of a file debugfs wrote, with escaped
 * blocks, revokes, checkpoints and enough traffic to wrap the log; then, the journal left
 * dirty, `debugfs logdump` lists them, and e2fsck, the kernel (loop mount) and our replay all
 * give exactly the blocks logged (revoked ones not replayed), `e2fsck -fn` clean after each.
 * Crash states: every flush boundary of a recorded run, and seeded random subsets of the
 * writes after each flush, replay to the state before or after the transaction in flight,
 * never a mix. tests/journal_encode_test.ts holds the in-memory round trips and failures.
 */

import assert from "node:assert/strict";
import { run, runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern as fixturePattern } from "./file_fixtures.ts";
import { type BlockDevice, MemoryBlockDevice } from "../lib/block/block_device.ts";
import { WriteLogDevice } from "../lib/block/write_log_device.ts";
import { locateJournal } from "../lib/ext4/journal.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { JournalWriter, type LogBlock } from "../lib/jbd2/journal_writer.ts";
import {
  JBD2_CRC32C_CHKSUM,
  JBD2_MAGIC,
  JournalCompat,
  JournalIncompat,
  JournalSuperblock,
} from "../lib/jbd2/superblock.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";

const TOOLS = ["mkfs.ext4", "debugfs", "e2fsck", "dumpe2fs"];
const KERNEL = ["root", "loop", "kernel-ext4", ...TOOLS];

/** An image to test on: mkfs arguments and the journal features to give the journal. */
interface Variant {
  name: string;
  mkfs: string[];
  size: string;
  compat?: number;
  incompat?: number;
}

const VARIANTS: Variant[] = [
  {
    name: "1k blocks, ^64bit ^metadata_csum, the journal as mkfs makes it (no features)",
    mkfs: ["-b", "1024", "-J", "size=1", "-O", "^64bit,^metadata_csum"],
    size: "16M",
  },
  {
    name: "1k blocks, metadata_csum: journal csum v3 + 64bit as the kernel sets them",
    mkfs: ["-b", "1024", "-J", "size=1"],
    size: "16M",
    incompat: JournalIncompat.CSUM_V3 | JournalIncompat.BIT64 | JournalIncompat.REVOKE,
  },
  {
    name: "4k blocks, ^metadata_csum: journal checksum v1 + 64bit",
    mkfs: ["-b", "4096", "-J", "size=4", "-O", "^metadata_csum"],
    size: "32M",
    compat: JournalCompat.CHECKSUM,
    incompat: JournalIncompat.BIT64,
  },
];

/** A made image: its bytes, block size, and the data blocks of file /f. */
interface Image {
  bytes: Uint8Array;
  bs: number;
  fileBlocks: number[];
}

/** mkfs + a file /f of `fileBytes` written by debugfs, journal features as the variant says. */
async function makeImage(dir: string, v: Variant, fileBytes: number): Promise<Image> {
  const img = `${dir}/base.img`;
  await runOk("mkfs.ext4", ["-q", "-F", ...v.mkfs, img, v.size], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  const src = `${dir}/src.bin`;
  await Deno.writeFile(src, pattern(fileBytes, 1));
  await runOk("debugfs", ["-w", "-R", `write ${src} f`, img]);
  const fileBlocks = (await runOk("debugfs", ["-R", "blocks /f", img])).trim().split(/\s+/)
    .map(Number);
  // mke2fs makes every journal without features (the kernel adds 64bit and csum v3 at mount).
  assert.match(await runOk("dumpe2fs", ["-h", img]), /Journal features:\s+\(none\)/);
  const bytes = await Deno.readFile(img);
  const device = new MemoryBlockDevice(bytes);
  const sb = await readSuperblock(device);
  if (v.compat || v.incompat) {
    const { store } = await locateJournal(device, sb);
    const block0 = await store.readBlock(0);
    const jsb = new JournalSuperblock(block0);
    jsb.featureCompat |= v.compat ?? 0;
    jsb.featureIncompat |= v.incompat ?? 0;
    if (jsb.hasCsumV2or3) jsb.checksumType = JBD2_CRC32C_CHKSUM;
    await store.writeBlock(0, jsb.encode(block0));
  }
  assert.equal(fileBlocks.length, Math.ceil(fileBytes / sb.blockSize));
  return { bytes, bs: sb.blockSize, fileBlocks };
}

/** Deterministic bytes. */
const pattern = (length: number, seed: number) => fixturePattern(seed, length);

/** A block image that starts with the jbd2 magic (the log must escape it). */
function magicBlock(bs: number, seed: number): Uint8Array {
  const b = pattern(bs, seed);
  new DataView(b.buffer).setUint32(0, JBD2_MAGIC);
  return b;
}

/** The contents of `blocks` in an image. */
function blocksOf(bytes: Uint8Array, bs: number, blocks: number[]): Map<number, Uint8Array> {
  return new Map(blocks.map((b) => [b, bytes.slice(b * bs, (b + 1) * bs)]));
}

/** The first block whose contents differ, or undefined when `got` equals `want` everywhere. */
function firstDifference(
  got: Map<number, Uint8Array>,
  want: Map<number, Uint8Array>,
): number | undefined {
  for (const [b, bytes] of want) {
    const g = got.get(b)!;
    if (g.length !== bytes.length || g.some((x, i) => x !== bytes[i])) return b;
  }
  return undefined;
}

/** Sets needs_recovery with debugfs, as the ext4 side sets it before its first journalled write. */
async function setNeedsRecovery(path: string): Promise<void> {
  await runOk("debugfs", ["-w", "-R", "feature needs_recovery", path]);
}

/** Replays `bytes` with e2fsck (journal only), then checks it with `e2fsck -fn`. */
async function e2fsckReplay(dir: string, bytes: Uint8Array): Promise<Uint8Array> {
  const path = `${dir}/e2fsck.img`;
  await Deno.writeFile(path, bytes);
  const r = await run("e2fsck", ["-fy", "-E", "journal_only", path]);
  assert.ok(r.code <= 1, `e2fsck -E journal_only exited ${r.code}: ${r.stdout}${r.stderr}`);
  await assertClean(path);
  return await Deno.readFile(path);
}

/** Replays `bytes` with the kernel (a rw loop mount and umount), then `e2fsck -fn`. */
async function kernelReplay(dir: string, bytes: Uint8Array): Promise<Uint8Array> {
  const path = `${dir}/kernel.img`;
  await Deno.writeFile(path, bytes);
  await withKernelMount(path, async () => {});
  await assertClean(path);
  return await Deno.readFile(path);
}

/** Replays `bytes` with ext4ts's replayJournal, then `e2fsck -fn`. */
async function ourReplay(dir: string, bytes: Uint8Array): Promise<Uint8Array> {
  const device = new MemoryBlockDevice(bytes.slice());
  const r = await replayJournal(device, { now: 1_800_000_000 });
  assert.equal(r.error, undefined);
  const path = `${dir}/ours.img`;
  await Deno.writeFile(path, device.bytes);
  await assertClean(path);
  return device.bytes;
}

async function assertClean(path: string): Promise<void> {
  const r = await run("e2fsck", ["-fn", path]);
  assert.equal(r.code, 0, `e2fsck -fn ${path}: ${r.stdout}${r.stderr}`);
}

/** Writes logged blocks home and flushes (the test's checkpoint), then tells the writer. */
async function checkpoint(
  device: BlockDevice,
  bs: number,
  writer: JournalWriter,
  logged: Map<number, Uint8Array>,
): Promise<void> {
  for (const [b, bytes] of logged) await device.write(b * bs, bytes);
  await device.flush();
  await writer.checkpointed();
  logged.clear();
}

for (const v of VARIANTS) {
  testWith(
    `journal writer (${v.name}): logdump reads our log; e2fsck, the kernel and ext4ts replay it`,
    KERNEL,
    async () => {
      await using tmp = await tempDir();
      const img = await makeImage(tmp.path, v, 300 * 1024);
      const { bs, fileBlocks } = img;
      const device = new MemoryBlockDevice(img.bytes);
      const { store } = await locateJournal(device, await readSuperblock(device));
      const writer = await JournalWriter.open(store, { now: () => 1_760_000_000_000 });
      const logSize = writer.superblock.last - writer.superblock.first;

      // Checkpointed traffic: enough to wrap the log more than once.
      const logged = new Map<number, Uint8Array>();
      let written = 0;
      let seed = 100;
      const perTx = Math.min(fileBlocks.length, Math.floor(writer.maxTransactionBlocks * 0.8));
      while (written < 1.5 * logSize) {
        const blocks: LogBlock[] = [];
        for (let k = 0; k < perTx; k++) {
          const b = fileBlocks[(seed * 7 + k) % fileBlocks.length];
          if (blocks.some((x) => x.block === b)) continue;
          blocks.push({ block: b, bytes: k === 3 ? magicBlock(bs, seed) : pattern(bs, seed + k) });
        }
        seed++;
        if (writer.blocksNeeded(blocks.length, 0) > writer.freeBlocks) {
          await checkpoint(device, bs, writer, logged);
        }
        await writer.writeTransaction({ blocks, revoked: [] });
        written += writer.blocksNeeded(blocks.length, 0);
        for (const b of blocks) logged.set(b.block, b.bytes);
      }
      await checkpoint(device, bs, writer, logged);
      assert.ok(written > logSize, `${written} log blocks written, the log has ${logSize}`);
      const home = blocksOf(device.bytes, bs, fileBlocks);

      // The dirty journal: three transactions, not checkpointed.
      const [r1, r2, x, y] = fileBlocks.slice(-4);
      const txs: { blocks: LogBlock[]; revoked: number[] }[] = [
        {
          blocks: [
            { block: fileBlocks[0], bytes: magicBlock(bs, 1) },
            { block: r1, bytes: pattern(bs, 2) },
            { block: r2, bytes: pattern(bs, 3) },
            { block: x, bytes: pattern(bs, 4) },
          ],
          revoked: [],
        },
        // Revokes r1 and r2 (freed): their logged copies must not be replayed.
        { blocks: [{ block: x, bytes: pattern(bs, 5) }], revoked: [r1, r2] },
        {
          blocks: [{ block: y, bytes: magicBlock(bs, 6) }, {
            block: fileBlocks[1],
            bytes: pattern(bs, 7),
          }],
          revoked: [],
        },
      ];
      const tids: number[] = [];
      for (const tx of txs) tids.push(await writer.writeTransaction(tx));
      assert.ok(writer.hasUncheckpointed);
      const expected = new Map(home);
      for (const tx of txs) for (const b of tx.blocks) expected.set(b.block, b.bytes);
      expected.set(r1, home.get(r1)!);
      expected.set(r2, home.get(r2)!);

      const dirty = `${tmp.path}/dirty.img`;
      await Deno.writeFile(dirty, device.bytes);
      await setNeedsRecovery(dirty);
      const dirtyBytes = await Deno.readFile(dirty);

      // debugfs logdump: every transaction, every logged block, the revokes.
      const dump = await runOk("debugfs", ["-R", "logdump -a", dirty]);
      for (const [i, tx] of txs.entries()) {
        assert.match(
          dump,
          new RegExp(`Found expected sequence ${tids[i]}, type 2 \\(commit block\\)`),
        );
        for (const b of tx.blocks) {
          assert.match(dump, new RegExp(`FS block ${b.block} logged at journal block \\d+`));
        }
        for (const r of tx.revoked) assert.match(dump, new RegExp(`Revoke FS block ${r}\\b`));
      }
      assert.doesNotMatch(dump, /checksum error|bad/i);
      // The first revoke gave the journal the revoke feature, as jbd2 does.
      assert.match(
        await runOk("dumpe2fs", ["-h", dirty]),
        /Journal features:.*journal_incompat_revoke/,
      );

      for (
        const [who, replay] of [["e2fsck", e2fsckReplay], ["the kernel", kernelReplay], [
          "ext4ts",
          ourReplay,
        ]] as const
      ) {
        const after = blocksOf(await replay(tmp.path, dirtyBytes), bs, fileBlocks);
        assert.equal(firstDifference(after, expected), undefined, `${who}: a block differs`);
      }
    },
  );
}

for (const v of VARIANTS.slice(0, 2)) {
  testWith(
    `journal writer (${v.name}): at every flush boundary and every torn write set, e2fsck, the kernel and ext4ts replay the state before or after the transaction in flight`,
    KERNEL,
    async () => {
      await using tmp = await tempDir();
      const img = await makeImage(tmp.path, v, 64 * 1024);
      const { bs, fileBlocks } = img;
      const basePath = `${tmp.path}/crash-base.img`;
      await Deno.writeFile(basePath, img.bytes);
      await setNeedsRecovery(basePath);
      const base = await Deno.readFile(basePath);

      const log = new WriteLogDevice(new MemoryBlockDevice(base.slice()));
      const { store } = await locateJournal(log, await readSuperblock(log));
      const writer = await JournalWriter.open(store, { now: () => 1_760_000_000_000 });
      // States: what the file blocks hold after 0, 1, … committed transactions.
      const states = [blocksOf(base, bs, fileBlocks)];
      /** Entries recorded when transaction k (1-based) had resolved. */
      const resolvedAt: number[] = [0];
      const logged = new Map<number, Uint8Array>();
      const never = fileBlocks[fileBlocks.length - 1]; // revoked, never logged: stays as it is
      for (let t = 1; t <= 6; t++) {
        const blocks: LogBlock[] = [];
        for (let k = 0; k < 3 + t * 4; k++) {
          const b = fileBlocks[(t * 5 + k * 3) % (fileBlocks.length - 1)];
          if (blocks.some((x) => x.block === b)) continue;
          blocks.push({
            block: b,
            bytes: k === 1 ? magicBlock(bs, t * 50 + k) : pattern(bs, t * 50 + k),
          });
        }
        await writer.writeTransaction({ blocks, revoked: t % 2 ? [never] : [] });
        resolvedAt.push(log.entries.length);
        const next = new Map(states[t - 1]);
        for (const b of blocks) {
          next.set(b.block, b.bytes);
          logged.set(b.block, b.bytes);
        }
        states.push(next);
        if (t % 3 === 0) await checkpoint(log, bs, writer, logged);
      }

      /** Which state (index) `bytes` shows, or -1. */
      const stateOf = (bytes: Uint8Array) => {
        const got = blocksOf(bytes, bs, fileBlocks);
        return states.findIndex((s) => firstDifference(got, s) === undefined);
      };
      // Crash images: each flush boundary, and random subsets of the writes after it.
      let rand = 12345;
      const random = () => (rand = (rand * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const crashes: { prefix: number; torn: number[]; label: string }[] = [];
      const starts = [0, ...log.flushBoundaries()];
      for (const f of starts) {
        crashes.push({ prefix: f, torn: [], label: `flush boundary ${f}` });
        const after: number[] = [];
        for (let i = f; i < log.entries.length && log.entries[i].kind === "write"; i++) {
          after.push(i);
        }
        for (let s = 0; s < Math.min(3, after.length); s++) {
          const torn = after.filter(() => random() < 0.5);
          crashes.push({ prefix: f, torn, label: `after ${f}, writes ${torn.join(",")}` });
        }
      }
      let kernelChecked = 0;
      for (const [n, c] of crashes.entries()) {
        const bytes = log.replay(base, c.prefix);
        for (const i of c.torn) {
          const e = log.entries[i];
          if (e.kind === "write") bytes.set(e.data, e.offset);
        }
        const done = resolvedAt.filter((r) => r <= c.prefix).length - 1;
        const allowed = [done, Math.min(done + 1, states.length - 1)];
        const replays: [string, (dir: string, b: Uint8Array) => Promise<Uint8Array>][] = [
          ["ext4ts", ourReplay],
          ["e2fsck", e2fsckReplay],
        ];
        // The kernel on every third crash image (a loop mount is the slow oracle).
        if (n % 3 === 0) {
          replays.push(["the kernel", kernelReplay]);
          kernelChecked++;
        }
        for (const [who, replay] of replays) {
          const s = stateOf(await replay(tmp.path, bytes));
          assert.ok(
            allowed.includes(s),
            `${c.label}: ${who} gives state ${s}, expected one of ${allowed.join(" or ")}`,
          );
        }
      }
      console.log(`${crashes.length} crash images checked (${kernelChecked} with the kernel too)`);
      assert.ok(crashes.length > 30);
    },
  );
}
