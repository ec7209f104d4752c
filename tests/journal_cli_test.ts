/**
 * `ext4ts journal show` and `ext4ts journal replay` as a user runs them: output, --json,
 * --dry-run, exit codes, and the refusal of a read-only device.
 */

import assert from "node:assert/strict";
import { Ext4, type Ext4Error } from "../mod.ts";
import {
  CORPUS,
  CORPUS_FOUND,
  detachLoop,
  IN_CI,
  losetup,
  missing,
  ROOT,
  run,
  runCli,
  runOk,
  tempDir,
  testWith,
} from "./helpers.ts";

const lacking = missing(["gzip", "sha256sum"]);
if (!CORPUS_FOUND) lacking.push("the journal corpus (set EXT4TS_CORPUS)");
const ignore = lacking.length > 0 && !IN_CI;

async function image(dir: string, rel: string, name: string): Promise<string> {
  const out = `${dir}/${name}`;
  const tool = rel.endsWith(".bz2") ? "bzip2" : "gzip";
  await runOk("sh", [
    "-c",
    `${tool} -dc "$1" | cp --sparse=always /dev/stdin "$2"`,
    "sh",
    `${CORPUS}/${rel}`,
    out,
  ]);
  return out;
}

async function sha(path: string): Promise<string> {
  return (await runOk("sha256sum", [path])).split(" ")[0];
}

function check() {
  if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
}

Deno.test({
  name: "journal show: superblock and transactions, text and JSON",
  ignore,
  async fn() {
    check();
    await using tmp = await tempDir();
    const img = await image(tmp.path, "kernel/default_4k/crash.img.gz", "a.img");
    const before = await sha(img);
    const text = await runCli(["journal", "show", img]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /Filesystem needs_recovery: yes/);
    assert.match(
      text.stdout,
      /features: journal_incompat_revoke journal_64bit journal_checksum_v3/,
    );
    assert.match(
      text.stdout,
      /Transaction 2 at block 1: commit at block \d+ .*checksum ok; replayed/,
    );
    assert.match(text.stdout, /log block 2 -> fs block \d+ checksum ok/);
    assert.match(text.stdout, /Recovery: transactions 2 to 66 \(65\)/);
    const json = await runCli(["journal", "show", "--json", img]);
    assert.equal(json.code, 0, json.stderr);
    const j = JSON.parse(json.stdout);
    assert.equal(j.needsRecovery, true);
    assert.equal(j.superblock.sequence, 2);
    assert.equal(j.recovery.endSequence, 67);
    assert.equal(j.recovery.transactions.length, 65);
    assert.equal(await sha(img), before, "show must not write");
  },
});

Deno.test({
  name: "journal replay: --dry-run writes nothing, replay writes once, then nothing is needed",
  ignore,
  async fn() {
    check();
    await using tmp = await tempDir();
    const img = await image(tmp.path, "kernel/bs1k/crash.img.gz", "b.img");
    const before = await sha(img);
    const dry = await runCli(["journal", "replay", "--dry-run", img]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would replay 66 transaction\(s\) 2 to 67/);
    assert.match(dry.stdout, /<- journal block \d+ \(transaction \d+\)/);
    assert.match(dry.stdout, /<- superblock/);
    assert.equal(await sha(img), before, "--dry-run must not write");
    const r = await runCli(["journal", "replay", "--json", img]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.written, true);
    assert.equal(j.endSequence, 68);
    assert.notEqual(await sha(img), before);
    const again = await runCli(["journal", "replay", img]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /does not need recovery/);
  },
});

Deno.test({
  name: "journal replay: exit codes for corrupt, unsupported and foreign journals",
  ignore,
  async fn() {
    check();
    await using tmp = await tempDir();
    const d = tmp.path;
    // A corrupt commit: the valid prefix is replayed, the corruption reported (exit 5).
    const corrupt = await image(d, "upstream/j_corrupt_commit_csum/image.gz", "c.img");
    const rc = await runCli(["journal", "replay", corrupt]);
    assert.equal(rc.code, 5, rc.stderr);
    assert.match(rc.stderr, /transaction 3 is corrupt/);
    // Refused before writing (bad journal superblock checksum): exit 5, image untouched.
    const badsb = await image(d, "upstream/j_corrupt_sb_csum/image.gz", "s.img");
    const sbBefore = await sha(badsb);
    const rs = await runCli(["journal", "replay", badsb]);
    assert.equal(rs.code, 5);
    assert.match(rs.stderr, /^ext4ts: corrupt journal superblock: checksum error/);
    assert.equal(await sha(badsb), sbBefore);
    // A fast commit to replay: refused clearly (exit 6), image untouched.
    const fc = await image(d, "upstream/j_recover_fast_commit/image.gz", "f.img");
    const fcBefore = await sha(fc);
    const rf = await runCli(["journal", "replay", fc]);
    assert.equal(rf.code, 6, rf.stderr);
    assert.match(rf.stderr, /fast commit.*nothing was written/);
    assert.equal(await sha(fc), fcBefore);
    const fs = await runCli(["journal", "show", fc]);
    assert.equal(fs.code, 0, fs.stderr);
    assert.match(fs.stdout, /block 1025: HEAD features 0x0, tid 6/);
    assert.match(fs.stdout, /ADD_RANGE inode 13, lblk 128, pblk 1793, len 128/);
    assert.match(fs.stdout, /CREAT_DENTRY parent 12, inode 13, name "data"/);
    assert.match(fs.stdout, /Fast commit for transaction 6 .*cannot replay/);
    // A journal device is not a filesystem.
    const jd = await image(d, "upstream/j_ext_dumpe2fs/image.gz", "j.img");
    const rj = await runCli(["journal", "replay", jd]);
    assert.equal(rj.code, 1);
    assert.match(rj.stderr, /external journal device, not a filesystem/);
    // Nothing to recover.
    const clean = await image(d, "upstream/f_jnl_errno/image.gz", "e.img");
    const rn = await runCli(["journal", "replay", clean]);
    assert.equal(rn.code, 0);
    // Usage errors.
    assert.equal((await runCli(["journal", "replay"])).code, 2);
    // A missing image is "cannot open" (7), as in every command.
    const gone = await runCli(["journal", "replay", `${d}/missing.img`]);
    assert.equal(gone.code, 7);
    assert.match(gone.stderr, /^ext4ts: cannot open .*missing\.img: No such file or directory\n$/);
  },
});

Deno.test({
  name: "journal replay: refuses a read-only device, --dry-run still works",
  ignore: ignore || (missing(["root", "loop", "losetup"]).length > 0 && !IN_CI),
  async fn() {
    check();
    const more = missing(["root", "loop", "losetup"]);
    if (more.length) throw new Error(`test environment lacks: ${more.join(", ")}`);
    await using tmp = await tempDir();
    const img = await image(tmp.path, "kernel/default_4k/crash.img.gz", "r.img");
    const before = await sha(img);
    const loop = await losetup(img, ["-r"]);
    try {
      const r = await runCli(["journal", "replay", loop]);
      assert.equal(r.code, 9, r.stderr);
      assert.match(r.stderr, /(read-only|write-protected).*cannot replay the journal/);
      const dry = await runCli(["journal", "replay", "--dry-run", loop]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would replay 65 transaction/);
    } finally {
      detachLoop(loop, img);
    }
    assert.equal(await sha(img), before);
  },
});

Deno.test({
  name: "journal replay: a mounted block device is busy (exit 8)",
  ignore: ignore || (missing(["root", "loop", "losetup", "kernel-ext4"]).length > 0 && !IN_CI),
  async fn() {
    check();
    const more = missing(["root", "loop", "losetup", "kernel-ext4"]);
    if (more.length) throw new Error(`test environment lacks: ${more.join(", ")}`);
    await using tmp = await tempDir();
    const img = await image(tmp.path, "kernel/default_4k/umount.img.gz", "m.img");
    const loop = await losetup(img);
    const mnt = await Deno.makeTempDir({ prefix: "ext4ts-jmnt-" });
    try {
      // A read-only mount without replay keeps needs_recovery set on disk.
      await runOk("mount", ["-t", "ext4", "-o", "ro,noload", loop, mnt]);
      try {
        const r = await runCli(["journal", "replay", loop]);
        assert.equal(r.code, 8, r.stderr);
      } finally {
        await runOk("umount", [mnt]);
      }
    } finally {
      detachLoop(loop, img);
      await Deno.remove(mnt).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "external journal (mke2fs -O journal_dev, -J device=): --journal-dev for show, replay and the readers",
  ignore: ignore || (missing(["mkfs.ext4"]).length > 0 && !IN_CI),
  async fn() {
    check();
    await using tmp = await tempDir();
    const d = tmp.path;
    // Made by make_journal_cases.sh: mke2fs -O journal_dev, then mkfs.ext4 -J device=, a
    // kernel workload with journal_path=, and a shutdown.
    const fixture = `${ROOT}tests/fixtures/journal_cases/ext_journal`;
    const unzip = async (src: string, out: string) => {
      await runOk("sh", [
        "-c",
        `gzip -dc "$1" | cp --sparse=always /dev/stdin "$2"`,
        "sh",
        src,
        out,
      ]);
      return out;
    };
    const img = await unzip(`${fixture}/crash.img.gz`, `${d}/fs.img`);
    const jnl = await unzip(`${fixture}/crash.jnl.gz`, `${d}/fs.jnl`);
    const oracle = new Map(
      Deno.readTextFileSync(`${fixture}/crash.kr.tsv`).trim().split("\n").map((l) => l.split("\t"))
        .map((f) => [f[0], f] as const),
    );
    const imgSha = await sha(img);
    const jnlSha = await sha(jnl);
    const untouched = async () => {
      assert.equal(await sha(img), imgSha, "the filesystem must be untouched");
      assert.equal(await sha(jnl), jnlSha, "the journal must be untouched");
    };

    // Without the journal device: a clear message, exit 1, nothing written.
    const bare = await runCli(["journal", "replay", img]);
    assert.equal(bare.code, 1, bare.stderr);
    assert.match(bare.stderr, /external device \(UUID [0-9a-f-]+\): give it with --journal-dev/);
    const bareLs = await runCli(["ls", img, "/"]);
    assert.equal(bareLs.code, 1);
    assert.match(bareLs.stderr, /--journal-dev/);
    // Another journal device (a UUID that does not match): refused, exit 5.
    const other = `${d}/other.jnl`;
    await runOk("truncate", ["-s", "16M", other]);
    await runOk("mkfs.ext4", ["-q", "-F", "-O", "journal_dev", "-b", "4096", other]);
    const wrong = await runCli(["journal", "replay", "--journal-dev", other, img]);
    assert.equal(wrong.code, 5, wrong.stderr);
    assert.match(wrong.stderr, /journal UUID does not match/);
    await untouched();

    const show = await runCli(["journal", "show", "--journal-dev", jnl, img]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /Journal: external journal .*fs\.jnl, v2/);
    assert.match(show.stdout, /Transaction 2 at block 2: commit at block \d+ .*; replayed/);

    // The readers replay it in memory.
    const cat = await runCli(["cat", "--journal-dev", jnl, img, "/d1/renamed010"]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.match(cat.stderr, /replayed in memory/);
    const digest = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", cat.stdoutBytes.slice())),
      (x) => x.toString(16).padStart(2, "0"),
    ).join("");
    assert.equal(digest, oracle.get("/d1/renamed010")![7]);
    const stat = await runCli(["stat", "--json", "--journal-dev", jnl, img, "/d1/f014"]);
    assert.equal(stat.code, 0, stat.stderr);
    assert.equal(JSON.parse(stat.stdout).size, Number(oracle.get("/d1/f014")![6]));
    // The library: Ext4.open opens the journal device itself and closes it with the filesystem.
    const openFds = (path: string) =>
      [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${e.name}`) === path;
        } catch {
          return false;
        }
      }).length;
    const fs = await Ext4.open(img, { journalPath: jnl, onNotice: () => {} });
    assert.equal(openFds(jnl), 1, "the journal device is open while the filesystem is");
    assert.equal((await fs.stat("/d1/f014")).size, Number(oracle.get("/d1/f014")![6]));
    await fs.close();
    assert.equal(openFds(jnl), 0, "closing the filesystem closes the journal device");
    assert.equal(openFds(img), 0);
    await assert.rejects(
      Ext4.open(img, { journalPath: `${d}/missing.jnl` }),
      (e: Ext4Error) => e.code === "IO" || e.code === "NOT_FOUND",
    );
    assert.equal(openFds(img), 0, "a journal that cannot be opened leaves nothing open");
    const dry = await runCli(["journal", "replay", "--dry-run", "--journal-dev", jnl, img]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /external journal block 0 <- journal superblock/);
    await untouched();

    // The replay writes both; then nothing is left to do.
    const r = await runCli(["journal", "replay", "--json", "--journal-dev", jnl, img]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).written, true);
    assert.notEqual(await sha(img), imgSha);
    assert.notEqual(await sha(jnl), jnlSha, "the external journal is reset");
    const again = await runCli(["journal", "replay", "--journal-dev", jnl, img]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /does not need recovery/);
    const after = await runCli(["journal", "show", "--json", "--journal-dev", jnl, img]);
    const j = JSON.parse(after.stdout);
    assert.equal(j.superblock.start, 0);
    assert.equal(j.superblock.sequence, JSON.parse(r.stdout).endSequence + 1);
  },
});

testWith(
  "journal replay --progress: plain lines to a pipe, nothing by default",
  ["mkfs.ext4", "debugfs", "e2fsck"],
  async () => {
    await using tmp = await tempDir();
    const data = `${tmp.path}/block`;
    await Deno.writeFile(data, new Uint8Array(3 * 4096).fill(0x5a)); // one block each
    const dirty = async (name: string) => {
      const img = `${tmp.path}/${name}`;
      await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", img, "32M"]);
      // debugfs writes one journal transaction (three blocks) and leaves it unreplayed.
      const script = `${tmp.path}/script`;
      await Deno.writeTextFile(script, `jo\njw -b 7000,7001,7002 ${data}\njc\n`);
      await runOk("debugfs", ["-w", "-f", script, img]);
      return img;
    };
    const quiet = await runCli(["journal", "replay", await dirty("a.img")]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
    const img = await dirty("b.img");
    const loud = await runCli(["journal", "replay", "--progress", img]);
    assert.equal(loud.code, 0, loud.stderr);
    assert.match(loud.stdout, /replayed 1 transaction/);
    assert.equal(
      loud.stderr.replace(/, [\d.]+ \S+\/s, ETA \S+/g, ""),
      "journal replay: 100% 12.0 KiB / 12.0 KiB, 3 / 3 blocks\n",
    );
    const check = await run("e2fsck", ["-fn", img]);
    assert.equal(check.code, 0, check.stdout);
  },
);
