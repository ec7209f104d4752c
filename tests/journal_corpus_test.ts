/**
 * Every case of the journal-replay corpus (tests/corpus, see its README.md): our replay
 * against the kernel's tree listing, against e2fsck's replay block by block, `e2fsck -fn`
 * no worse than on e2fsck's replay, refusals where the kernel refuses, and the in-memory
 * overlay byte-identical to the on-disk replay.
 *
 * One test with a step per case; images are decompressed sparse into a temporary directory.
 */

import assert from "node:assert/strict";
import {
  CORPUS,
  CORPUS_FOUND,
  detachLoop,
  IN_CI,
  losetup,
  missing,
  ROOT,
  run,
  runOk,
  tempDir,
} from "./helpers.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { replayJournal } from "../lib/ext4/recovery.ts";
import { JournalOverlayDevice } from "../lib/ext4/journal_overlay.ts";

/** The deletion time stamped on orphans: e2fsck's, so that inode tables compare equal. */
const NOW = 2000000000;
const E2ENV = {
  E2FSCK_CONFIG: "/dev/null",
  E2FSPROGS_SKIP_PROGRESS: "yes",
  TZ: "GMT0",
  LC_ALL: "C",
  E2FSCK_TIME: "2000000000",
  E2FSPROGS_FAKE_TIME: "2000000000",
  PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`,
};

interface Case {
  /** Directory the paths below are relative to. */
  root: string;
  part: string;
  name: string;
  variant: string;
  images: string[];
  blockSize: number;
  needsRecovery: boolean;
  fsFeatures: string[];
  oracleListing: string;
  expected: string;
}

function readCases(corpus: string): Case[] {
  const lines = Deno.readTextFileSync(`${corpus}/CASES.tsv`).trim().split("\n").slice(1);
  return lines.map((l) => {
    const f = l.split("\t");
    return {
      root: corpus,
      part: f[0],
      name: f[1],
      variant: f[2],
      images: f[3].split(" "),
      blockSize: Number(f[4]),
      needsRecovery: f[7] === "yes",
      fsFeatures: f[5].split("+"),
      oracleListing: f[10],
      expected: f[12],
    };
  });
}

/**
 * Cases made with the corpus' make_journal_cases.sh (its results.tsv) for feature sets the
 * corpus lacks: kept in tests/fixtures/journal_cases (or a directory named by
 * EXT4TS_EXTRA_CASES). They are part of the repository, so a missing set is a failure.
 */
function readExtraCases(): Case[] {
  const dir = Deno.env.get("EXT4TS_EXTRA_CASES") ?? `${ROOT}tests/fixtures/journal_cases`;
  const text = Deno.readTextFileSync(`${dir}/results.tsv`);
  const out: Case[] = [];
  for (const line of text.trim().split("\n").slice(1)) {
    const f = line.split("\t");
    if (f[1] !== "crash" && f[1] !== "umount") continue; // a case the kernel refused to build
    const [features, , bs] = f[2].split("|");
    const img = `${f[0]}/${f[1]}.img.gz`;
    const jnl = `${f[0]}/${f[1]}.jnl.gz`;
    let hasJnl = false;
    try {
      hasJnl = Deno.statSync(`${dir}/${jnl}`).isFile;
    } catch { /* internal journal */ }
    out.push({
      root: dir,
      part: "extra",
      name: f[0],
      variant: f[1],
      images: hasJnl ? [img, jnl] : [img],
      blockSize: Number(bs.replace("bs=", "")),
      needsRecovery: f[3] === "yes",
      fsFeatures: features.split(","),
      oracleListing: `${f[0]}/${f[1]}.kr.tsv`,
      expected: "kernel=replay",
    });
  }
  return out;
}

/** What ext4ts must do with a case. */
type Outcome = "replay" | "corrupt" | "refuse" | "none" | "unsupported" | "replay-or-unsupported";

/**
 * Our outcome follows the kernel's (CASES.tsv `expected`), except where the kernel writes
 * the recoverable part and then fails the mount: there we replay what the kernel writes
 * and report the corruption ("corrupt"), as e2fsck does. Fast commits are refused.
 */
function ourOutcome(c: Case): Outcome {
  if (c.name === "j_corrupt_commit_csum" || c.name === "j_corrupt_journal_block") return "corrupt";
  if (c.name === "j_recover_fast_commit") return "unsupported";
  if (c.name === "j_ext_dumpe2fs") return "refuse"; // a journal device, not a filesystem
  // The kernel replays this external journal (its log is empty) and then finds it too
  // short to use; e2fsck replays it. We replay what the kernel replays.
  if (c.name === "f_ext_journal") return "replay";
  // The kernel replays fast commits, ext4ts refuses them: unless the fast-commit area is
  // stale, in which case there is nothing but full transactions to replay.
  if (c.part === "extra" && c.fsFeatures.includes("fast_commit")) return "replay-or-unsupported";
  // Without needs_recovery there is nothing to replay, whatever the kernel thinks of the
  // journal inode (it refuses to mount f_badjourblks, f_miss_journal, ...).
  if (!c.needsRecovery) return "none";
  const k = /kernel=(\w+)/.exec(c.expected)?.[1];
  if (k === "replay") return "replay";
  if (k === "none") return "none";
  return "refuse";
}

async function decompress(src: string, dir: string, out: string): Promise<void> {
  if (src.endsWith(".tar.bz2")) {
    await runOk("tar", ["-xjf", src, "-C", dir]);
    for (const e of Deno.readDirSync(dir)) {
      if (e.name.endsWith(".jnl")) await Deno.rename(`${dir}/${e.name}`, `${dir}/j.jnl`);
      else if (e.name.endsWith(".img")) await Deno.rename(`${dir}/${e.name}`, `${dir}/${out}`);
    }
    return;
  }
  const tool = src.endsWith(".bz2") ? "bzip2" : "gzip";
  await runOk("sh", [
    "-c",
    `${tool} -dc "$1" | cp --sparse=always /dev/stdin "$2"`,
    "sh",
    src,
    `${dir}/${out}`,
  ]);
}

async function sha(path: string): Promise<string> {
  return (await runOk("sha256sum", [path])).split(" ")[0];
}

/** Block numbers (of `bs` bytes) where two files differ. */
async function diffBlocks(a: string, b: string, bs: number): Promise<number[]> {
  const fa = await Deno.open(a);
  const fb = await Deno.open(b);
  const chunk = 4 << 20;
  const ba = new Uint8Array(chunk);
  const bb = new Uint8Array(chunk);
  const out: number[] = [];
  try {
    for (let off = 0;; off += chunk) {
      const na = await readFull(fa, ba);
      const nb = await readFull(fb, bb);
      assert.equal(na, nb, `${a} and ${b} differ in size`);
      if (na === 0) break;
      for (let p = 0; p < na; p += bs) {
        const end = Math.min(p + bs, na);
        for (let i = p; i < end; i++) {
          if (ba[i] !== bb[i]) {
            out.push((off + p) / bs);
            break;
          }
        }
      }
      if (na < chunk) break;
    }
  } finally {
    fa.close();
    fb.close();
  }
  return out;
}

async function readFull(f: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const r = await f.read(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

/** Journal inode blocks (data and mapping blocks) as debugfs lists them. */
async function journalBlocks(img: string): Promise<Set<number>> {
  const r = await run("debugfs", ["-R", "blocks <8>", img], { env: E2ENV });
  return new Set(r.stdout.split(/\s+/).filter((t) => /^\d+$/.test(t)).map(Number));
}

/** The kernel's read-only listing of an image (losetup -r, mount ro,noload). */
async function kernelListing(img: string, corpus: string): Promise<string> {
  const loop = await losetup(img, ["-r"]);
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-jmnt-" });
  try {
    await runOk("mount", ["-t", "ext4", "-o", "ro,noload", loop, mnt]);
    try {
      return await runOk("python3", [`${corpus}/tools/tree_listing.py`, mnt]);
    } finally {
      await runOk("umount", [mnt]);
    }
  } finally {
    detachLoop(loop, img);
    await Deno.remove(mnt).catch(() => {});
  }
}

/** The kernel's own replay of an image: a read-write mount and umount on a loop device. */
async function kernelReplay(img: string): Promise<void> {
  const loop = await losetup(img);
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-jmnt-" });
  try {
    await runOk("mount", ["-t", "ext4", loop, mnt]);
    await runOk("umount", [mnt]);
  } finally {
    detachLoop(loop, img);
    await Deno.remove(mnt).catch(() => {});
  }
}

function columns(listing: string, n: number): string {
  return listing.trim().split("\n").map((l) => l.split("\t").slice(0, n).join("\t")).join("\n");
}

async function e2fsckFn(img: string, jnl?: string): Promise<{ code: number; out: string }> {
  const r = await run("e2fsck", ["-fn", ...(jnl ? ["-j", jnl] : []), img], { env: E2ENV });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** Compares the overlay over `pre` with the on-disk replay `ours`, block by block. */
async function assertOverlayMatches(
  pre: string,
  ours: string,
  bs: number,
  jnl?: string,
): Promise<void> {
  const base = openBlockDevice(pre);
  const jdev = jnl ? openBlockDevice(jnl) : undefined;
  const view = await JournalOverlayDevice.open(base, { now: NOW, journalDevice: jdev });
  const f = await Deno.open(ours);
  try {
    assert.ok(view.recovered, "the overlay should replay the journal");
    const chunk = 4 << 20;
    const a = new Uint8Array(chunk);
    const b = new Uint8Array(chunk);
    for (let off = 0; off < view.size; off += chunk) {
      const n = Math.min(chunk, view.size - off);
      await view.read(off, a.subarray(0, n));
      assert.equal(await readFull(f, b.subarray(0, n)), n);
      for (let i = 0; i < n; i++) {
        if (a[i] !== b[i]) {
          assert.fail(
            `overlay differs from the on-disk replay in block ${Math.floor((off + i) / bs)}`,
          );
        }
      }
    }
    await assert.rejects(() => view.write(0, new Uint8Array(1)), /read-only/);
  } finally {
    f.close();
    await view.close();
    await jdev?.close();
  }
}

const lacking = missing(["root", "loop", "kernel-ext4", "e2fsck", "debugfs", "losetup", "python3"]);
if (!CORPUS_FOUND) lacking.push("the journal corpus (set EXT4TS_CORPUS)");

Deno.test({
  name: "journal corpus: every case replays (or refuses) as the kernel does",
  ignore: lacking.length > 0 && !IN_CI,
  async fn(t) {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    const corpus = CORPUS;
    const only = Deno.env.get("EXT4TS_CASES")?.split(",");
    for (const c of [...readCases(corpus), ...readExtraCases()]) {
      const label = c.variant === "-" ? c.name : `${c.name}/${c.variant}`;
      if (only && !only.some((o) => label.startsWith(o))) continue;
      await t.step(`${c.part}/${label}`, async () => {
        await using tmp = await tempDir("ext4ts-jcase-");
        const d = tmp.path;
        await decompress(`${c.root}/${c.images[0]}`, d, "pre.img");
        let jnl: string | undefined;
        if (c.images[1]) await decompress(`${c.root}/${c.images[1]}`, d, "j.jnl");
        try {
          Deno.statSync(`${d}/j.jnl`);
          jnl = `${d}/j.jnl`;
        } catch { /* internal journal */ }
        const ours = `${d}/ours.img`;
        await runOk("cp", ["--sparse=always", `${d}/pre.img`, ours]);
        const preSha = await sha(`${d}/pre.img`);
        const expect = ourOutcome(c);

        const dev = openBlockDevice(ours, { readOnly: false });
        // Our replay and e2fsck's each get their own copy of an external journal.
        const oursJnl = jnl ? `${d}/ours.jnl` : undefined;
        const joJnl = jnl ? `${d}/jo.jnl` : undefined;
        if (jnl) {
          await runOk("cp", ["--sparse=always", jnl, oursJnl!]);
          await runOk("cp", ["--sparse=always", jnl, joJnl!]);
        }
        const jnlSha = jnl ? await sha(jnl) : undefined;
        const jdev = oursJnl ? openBlockDevice(oursJnl, { readOnly: false }) : undefined;
        let result: Awaited<ReturnType<typeof replayJournal>> | undefined;
        let error: unknown;
        try {
          result = await replayJournal(dev, { journalDevice: jdev, now: NOW });
        } catch (e) {
          error = e;
        } finally {
          await jdev?.close();
          await dev.close();
        }

        if (
          expect === "refuse" || expect === "unsupported" ||
          (expect === "replay-or-unsupported" && error instanceof Ext4Error &&
            error.code === "UNSUPPORTED")
        ) {
          assert.ok(error instanceof Ext4Error, `expected a refusal, got ${error ?? "a replay"}`);
          if (expect !== "refuse") assert.equal(error.code, "UNSUPPORTED");
          else assert.ok(["CORRUPT", "INVALID", "UNSUPPORTED"].includes(error.code), error.message);
          assert.equal(await sha(ours), preSha, "a refused replay must leave the image untouched");
          if (oursJnl) assert.equal(await sha(oursJnl), jnlSha, "and the journal untouched");
          return;
        }
        if (error) throw error;
        assert.ok(result);
        if (expect === "none") {
          assert.equal(result.needed, false);
          assert.equal(await sha(ours), preSha, "nothing to recover: the image must be untouched");
          return;
        }
        assert.equal(result.needed, true);
        assert.equal(result.written, true);
        if (expect === "corrupt") assert.ok(result.error, "the corruption must be reported");
        else assert.equal(result.error, undefined);
        if (c.name === "journal_1k_wraps") {
          // Made for this: the kernel's log runs past the end of the journal and on from s_first.
          const plan = result.prepared!.plan;
          assert.ok(
            plan.transactions.some((t) =>
              t.replayed && t.blocks.some((b) => b.logBlock < t.startBlock)
            ),
            "the log must wrap around the end of the journal",
          );
        }

        // (a) blocks: identical to e2fsck -E journal_only (replay and orphan cleanup)
        // outside the superblock and the journal; and to libext2fs' pure replay (debugfs
        // journal_run) outside those and the blocks our orphan cleanup changed.
        const bs = c.blockSize;
        const sbBlock = Math.floor(1024 / bs);
        const jblocks = jnl ? new Set<number>() : await journalBlocks(`${d}/pre.img`);
        const allowed = (b: number) => b === sbBlock || jblocks.has(b);
        const jo = `${d}/jo.img`;
        await runOk("cp", ["--sparse=always", `${d}/pre.img`, jo]);
        // e2fsck 1.47.0 discards the whole journal of a kernel-written fast-commit image
        // (see the corpus README): the reference is then the kernel's own replay.
        const fastCommit = c.part === "extra" && c.fsFeatures.includes("fast_commit");
        if (fastCommit) {
          await kernelReplay(jo);
        } else {
          await run("e2fsck", ["-y", "-E", "journal_only", ...(joJnl ? ["-j", joJnl] : []), jo], {
            env: E2ENV,
          });
        }
        // e2fsck 1.47.0 mishandles the orphan file after a journal-only replay (it leaves
        // the orphan file blocks dirty and the inodes without deletion time; fixed in
        // 1.47.1+): there our orphan cleanup may differ from it, by design.
        const orphanFileCase = c.fsFeatures.includes("orphan_file");
        const orphanChanged = new Set(result.prepared?.orphans?.blocks.keys());
        const oursVsJo = (await diffBlocks(ours, jo, bs)).filter((b) =>
          !allowed(b) && !(orphanFileCase && orphanChanged.has(b))
        );
        // (The kernel's replay differs in times, backup superblocks and its own orphan
        // cleanup: blocks are compared against e2fsck only.)
        if (!fastCommit) assert.deepEqual(oursVsJo, [], "blocks differing from e2fsck's replay");
        if (oursJnl && joJnl) {
          assert.deepEqual(
            await diffBlocks(oursJnl, joJnl, bs),
            [],
            "the external journal differs from e2fsck's after replay",
          );
        }
        if (!jnl && !fastCommit) {
          const jr = `${d}/jr.img`;
          await runOk("cp", ["--sparse=always", `${d}/pre.img`, jr]);
          const jrRun = await run("debugfs", ["-w", "-R", "journal_run", jr], { env: E2ENV });
          // debugfs cannot open a filesystem whose (pre-replay) bitmaps fail their checksums,
          // as after some crashes, and then replays nothing (exit 0 all the same): e2fsck's
          // replay above is the reference there.
          const jrOpened = !/Filesystem not open/.test(jrRun.stderr + jrRun.stdout);
          const orphanBlocks = new Set(result.prepared?.orphans?.blocks.keys());
          const oursVsJr = (await diffBlocks(ours, jr, bs)).filter((b) =>
            !allowed(b) && !orphanBlocks.has(b)
          );
          if (jrOpened) assert.deepEqual(oursVsJr, [], "blocks differing from debugfs journal_run");
        }

        // (b) the kernel's listing of our result equals the oracle listing.
        const listing = await kernelListing(ours, corpus);
        const oracle = Deno.readTextFileSync(`${c.root}/${c.oracleListing}`);
        const strict = c.part !== "upstream";
        assert.equal(
          columns(listing, strict ? 12 : 9),
          columns(oracle, strict ? 12 : 9),
          "tree listing differs from the oracle",
        );

        // (c) e2fsck -fn finds no more on ours than on e2fsck's own replay.
        const fnOurs = await e2fsckFn(ours, oursJnl);
        const fnJo = await e2fsckFn(jo, joJnl);
        assert.ok(
          fnOurs.code <= fnJo.code,
          `e2fsck -fn rc ${fnOurs.code} > ${fnJo.code} on e2fsck's replay:\n${fnOurs.out}`,
        );

        // The in-memory overlay over the pre-replay image equals the on-disk replay.
        await assertOverlayMatches(`${d}/pre.img`, ours, bs, jnl);
      });
    }
  },
});
