import assert from "node:assert/strict";
import fc from "fast-check";
import { type BlockDevice, MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { openBlockDevice } from "../ffi/file_device.ts";
import { probeDevice } from "../lib/report/probe.ts";
import { journalReport, mmpReport, superblockReport } from "../lib/report/superblock_report.ts";
import { humanReport, probeJson } from "../cli/commands/probe.ts";
import {
  detachLoop,
  losetup,
  makeImage,
  ROOT,
  run,
  runCli,
  runOk,
  type RunResult,
  tempDir,
  testWith,
  unprivileged,
} from "./helpers.ts";

async function dumpe2fsHeader(path: string): Promise<string[]> {
  const out = await runOk("dumpe2fs", ["-h", path], { env: { TZ: "UTC" } });
  return out.split("\n").filter((l) => l !== "");
}

function dumpe2fsValue(lines: string[], label: string): string | undefined {
  const l = lines.find((x) => x.startsWith(label + ":"));
  return l?.slice(label.length + 1).trim();
}

/** dumpe2fs's time ("Thu Jan  1 12:00:00 2026", TZ=UTC) as ISO, "n/a" or absent as null. */
function dumpe2fsTime(text: string | undefined): string | null {
  if (text === undefined || text === "n/a") return null;
  const m = /^\w{3} (\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) (\d+)$/.exec(text);
  if (!m) throw new Error(`unexpected dumpe2fs time '${text}'`);
  const month = "JanFebMarAprMayJunJulAugSepOctNovDec".indexOf(m[1]) / 3;
  return new Date(Date.UTC(+m[6], month, +m[2], +m[3], +m[4], +m[5])).toISOString();
}

/** The documented `--json` keys (README "--json schema"): a test pins them so they stay. */
const JSON_KEYS = [
  "schemaVersion",
  "schema",
  "device",
  "deviceSize",
  "type",
  "label",
  "uuid",
  "blockSize",
  "clusterSize",
  "blocks",
  "freeBlocks",
  "reservedBlocks",
  "inodes",
  "freeInodes",
  "inodeSize",
  "groups",
  "features",
  "state",
  "lastMount",
  "lastWrite",
  "created",
  "mountCount",
  "maxMountCount",
  "journal",
  "recovery",
  "mmp",
  "inUse",
  "verdict",
  "exitCode",
];
const STATE_KEYS = [
  "summary",
  "clean",
  "errors",
  "needsRecovery",
  "descriptorChecksumErrors",
  "descriptorError",
];
const JOURNAL_KEYS = [
  "inode",
  "device",
  "uuid",
  "external",
  "blocks",
  "blockSize",
  "features",
  "sequence",
  "start",
  "error",
];
const MMP_KEYS = ["state", "block", "interval", "nodeName", "deviceName", "updated", "error"];
const IN_USE_KEYS = ["mounted", "mountPoints", "exclusivelyHeld", "loopDevices"];
const RECOVERY_KEYS = ["transactions", "blocks", "error", "warnings"];

/** A parsed `--json` object. */
// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

Deno.test("probe --json: README documents exactly the keys probe prints", () => {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const section = readme.slice(readme.indexOf("`--json` schema (version 1"));
  const table = section.slice(0, section.indexOf("\n\n", section.indexOf("| field")));
  const documented = [...table.matchAll(/^\| (.*?) +\|/gm)]
    .flatMap((m) => [...m[1].matchAll(/`([a-zA-Z.]+)`/g)].map((k) => k[1]))
    .filter((k) => k !== "field");
  const top = documented.filter((k) => !k.includes("."));
  const state = [...new Set(documented.filter((k) => k.startsWith("state.")))];
  assert.deepEqual(top, JSON_KEYS.filter((k) => k !== "state"));
  assert.deepEqual(state.map((k) => k.slice(6)), STATE_KEYS);
  // The nested objects' keys are listed in their rows, in order.
  for (
    const [key, keys] of [
      ["journal", JOURNAL_KEYS],
      ["recovery", RECOVERY_KEYS],
      ["mmp", MMP_KEYS],
      ["inUse", IN_USE_KEYS],
    ] as const
  ) {
    const row = table.split("\n").find((l) => l.startsWith(`| \`${key}\``))!;
    const listed = /`\{([^}]*)\}`/.exec(row)![1].split(",").map((x) => x.trim().split(":")[0]);
    assert.deepEqual(listed, keys, key);
  }
});

const MATRIX: {
  name: string;
  mkfs?: string;
  args: string[];
  size?: string;
  /** The verdict's reasons from the support table. */
  limits?: string[];
}[] = [
  { name: "ext4 1k", args: ["-b", "1024"] },
  { name: "ext4 2k", args: ["-b", "2048"] },
  { name: "ext4 4k", args: ["-b", "4096"] },
  { name: "ext4 64k", args: ["-b", "65536"], size: "256M" },
  { name: "^64bit", args: ["-O", "^64bit"] },
  { name: "^metadata_csum", args: ["-O", "^metadata_csum"] },
  {
    name: "bigalloc",
    args: ["-O", "bigalloc"],
    size: "256M",
    limits: ["bigalloc allocation is not implemented"],
  },
  { name: "inline_data", args: ["-O", "inline_data"] },
  {
    name: "casefold",
    args: ["-O", "casefold"],
    limits: ["casefolded directories cannot be written"],
  },
  { name: "encrypt", args: ["-O", "encrypt"], limits: ["encrypted files cannot be written"] },
  { name: "quota+project", args: ["-O", "quota,project"], limits: ["quota files are not updated"] },
  { name: "mmp", args: ["-O", "mmp"] },
  { name: "meta_bg", args: ["-O", "meta_bg,^resize_inode", "-b", "1024"], size: "300M" },
  { name: "sparse_super2", args: ["-O", "sparse_super2"] },
  { name: "orphan_file", args: ["-O", "orphan_file"] },
  { name: "fast_commit", args: ["-O", "fast_commit"] },
  { name: "huge_file,metadata_csum_seed", args: ["-O", "huge_file,metadata_csum_seed"] },
  { name: "^has_journal", args: ["-O", "^has_journal"] },
  { name: "ext2", mkfs: "mkfs.ext2", args: [] },
  { name: "ext3", mkfs: "mkfs.ext3", args: [] },
  {
    name: "label, raid, check interval, last mount",
    args: ["-L", "data-01", "-E", "stride=16,stripe_width=64", "-i", "8192"],
  },
];

/**
 * Every `--json` field against `dumpe2fs -h` (`d`) for a clean, unmounted image at `path`
 * (`deviceSize` bytes), and the keys against the documented schema.
 */
function assertJsonMatches(
  j: Json,
  d: string[],
  path: string,
  deviceSize: number,
  c: (typeof MATRIX)[number],
): void {
  const v = (label: string) => dumpe2fsValue(d, label);
  const num = (label: string) => {
    const text = v(label);
    assert.ok(text !== undefined, `dumpe2fs -h prints no '${label}'`);
    return Number(text);
  };
  assert.deepEqual(Object.keys(j), JSON_KEYS);
  assert.deepEqual(Object.keys(j.state), STATE_KEYS);
  assert.deepEqual(Object.keys(j.lastMount), ["time", "path"]);
  assert.deepEqual(Object.keys(j.inUse), IN_USE_KEYS);
  assert.deepEqual(Object.keys(j.verdict), [
    "level",
    "reasons",
    "read",
    "writeOffline",
    "mountReadWrite",
  ]);
  assert.equal(j.schemaVersion, 1);
  assert.equal(j.schema, 1);
  // Fresh filesystems: what the support table lets ext4ts write, it writes offline.
  assert.deepEqual(j.verdict.read, { ok: true, reasons: [] });
  assert.deepEqual(j.verdict.writeOffline, {
    ok: (c.limits ?? []).length === 0,
    reasons: c.limits ?? [],
  });
  assert.deepEqual(j.verdict.mountReadWrite, {
    ok: (c.limits ?? []).length === 0,
    reasons: c.limits ?? [],
  });
  assert.equal(j.device, path);
  assert.equal(j.deviceSize, deviceSize);
  assert.equal(j.type, c.mkfs === "mkfs.ext2" ? "ext2" : c.mkfs === "mkfs.ext3" ? "ext3" : "ext4");
  assert.equal(j.label || "<none>", v("Filesystem volume name"));
  assert.equal(j.uuid, v("Filesystem UUID"));
  assert.equal(j.blockSize, num("Block size"));
  assert.equal(j.clusterSize, num(v("Cluster size") ? "Cluster size" : "Fragment size"));
  assert.equal(j.blocks, num("Block count"));
  assert.equal(j.freeBlocks, num("Free blocks"));
  assert.equal(j.reservedBlocks, num("Reserved block count"));
  assert.equal(j.inodes, num("Inode count"));
  assert.equal(j.freeInodes, num("Free inodes"));
  assert.equal(j.inodeSize, num("Inode size"));
  assert.equal(
    j.groups,
    Math.ceil((num("Block count") - num("First block")) / num("Blocks per group")),
  );
  assert.equal(j.features.join(" "), v("Filesystem features"));
  assert.deepEqual(j.state, {
    summary: v("Filesystem state"),
    clean: true,
    errors: false,
    needsRecovery: false,
    descriptorChecksumErrors: [],
    descriptorError: null,
  });
  const lastOn = v("Last mounted on");
  assert.deepEqual(j.lastMount, {
    time: dumpe2fsTime(v("Last mount time")),
    path: lastOn === "<not available>" ? null : lastOn,
  });
  assert.equal(j.lastWrite, dumpe2fsTime(v("Last write time")));
  assert.equal(j.created, dumpe2fsTime(v("Filesystem created")));
  assert.equal(j.mountCount, num("Mount count"));
  assert.equal(j.maxMountCount, num("Maximum mount count"));
  if (j.features.includes("has_journal")) {
    assert.deepEqual(Object.keys(j.journal), JOURNAL_KEYS);
    const features = v("Journal features");
    assert.deepEqual(j.journal, {
      inode: num("Journal inode"),
      device: null,
      uuid: null,
      external: false,
      blocks: num("Total journal blocks"),
      blockSize: j.blockSize, // an internal journal uses the filesystem's block size
      features: features === "(none)" ? [] : features!.split(" "),
      sequence: parseInt(v("Journal sequence")!, 16),
      start: num("Journal start"),
      error: null,
    });
  } else {
    assert.equal(j.journal, null);
    assert.equal(v("Journal inode"), undefined);
  }
  assert.equal(j.recovery, null);
  if (j.features.includes("mmp")) {
    assert.deepEqual(Object.keys(j.mmp), MMP_KEYS);
    assert.deepEqual(j.mmp, {
      state: "clean",
      block: num("MMP block number"),
      interval: num("MMP update interval"),
      nodeName: v("    mmp_node_name"),
      deviceName: v("    mmp_device_name"),
      updated: dumpe2fsTime(v("    mmp_update_date")),
      error: null,
    });
  } else {
    assert.equal(j.mmp, null);
  }
  assert.deepEqual(j.inUse, {
    mounted: false,
    mountPoints: [],
    exclusivelyHeld: null,
    loopDevices: [],
  });
  assert.equal(j.verdict.level, (c.limits ?? []).length ? "ro" : "rw");
  assert.deepEqual(j.verdict.reasons, c.limits ?? []);
  assert.equal(j.exitCode, 0);
}

/** Every row of the human summary against `dumpe2fs -h` (`d`) and the JSON (`j`). */
function assertHumanMatches(text: string, d: string[], j: Json, path: string) {
  const v = (label: string) => dumpe2fsValue(d, label);
  const lines = text.trimEnd().split("\n");
  assert.equal(lines[0], `${path}: ${j.type} filesystem`);
  const rows = new Map<string, string>();
  for (const l of lines.slice(1, -1)) {
    const m = /^ {2}([a-zA-Z ]+): +(.*)$/.exec(l);
    assert.ok(m, `unexpected summary line '${l}'`);
    rows.set(m[1], m[2]);
  }
  const label = v("Filesystem volume name");
  const expected = new Map<string, string>([
    ["label", label === "<none>" ? "(none)" : label!],
    ["UUID", v("Filesystem UUID")!],
    ["size", `(${v("Block count")} blocks of ${v("Block size")} bytes)`],
    ["free blocks", `${v("Free blocks")} (`],
    ["free blocks reserved", `, ${v("Reserved block count")} reserved`],
    ["inodes", `${v("Inode count")} (${v("Free inodes")} free), ${v("Inode size")} bytes each`],
    ["features", v("Filesystem features")!],
    ["state", v("Filesystem state")!],
    [
      "last mounted",
      j.lastMount.time
        ? `${dumpe2fsTime(v("Last mount time"))}${
          v("Last mounted on") === "<not available>" ? "" : ` on ${v("Last mounted on")}`
        }`
        : "never",
    ],
    ["mount count", `${v("Mount count")} (maximum ${v("Maximum mount count")})`],
    [
      "journal",
      j.journal
        ? `internal, inode ${v("Journal inode")}, ${v("Total journal blocks")} blocks of ${
          v("Block size")
        } bytes, sequence ${parseInt(v("Journal sequence")!, 16)}, empty`
        : "none",
    ],
    ["in use", "not mounted"],
    ["read", "yes"],
    [
      "write offline",
      j.verdict.writeOffline.ok
        ? "yes (put, mkdir, rm, mv)"
        : `no (${j.verdict.writeOffline.reasons.join("; ")})`,
    ],
    [
      "mount",
      j.verdict.mountReadWrite.ok
        ? "read-write"
        : `read-only (${j.verdict.mountReadWrite.reasons.join("; ")})`,
    ],
  ]);
  if (j.mmp) {
    expected.set(
      "MMP",
      `clean, block ${v("MMP block number")}, interval ${v("MMP update interval")}s, ` +
        `last update by ${v("    mmp_node_name")} (${v("    mmp_device_name")}) at ${
          dumpe2fsTime(v("    mmp_update_date"))
        }`,
    );
  }
  assert.deepEqual(
    [...rows.keys()].sort(),
    [...expected.keys()].filter((k) => k !== "free blocks reserved").sort(),
  );
  for (const [k, want] of expected) {
    const got = rows.get(k === "free blocks reserved" ? "free blocks" : k)!;
    if (k === "size") assert.ok(got.endsWith(want), `size: '${got}' vs '${want}'`);
    else if (k === "free blocks") assert.ok(got.startsWith(want), `${k}: '${got}' vs '${want}'`);
    else if (k === "free blocks reserved") assert.ok(got.endsWith(want), `${k}: '${got}'`);
    else assert.equal(got, want, k);
  }
  assert.equal(
    lines.at(-1),
    j.verdict.mountReadWrite.ok
      ? "verdict: rw: ext4ts can mount it read-write; not mounted or held open right now"
      : `verdict: ro: ext4ts can read it but not write it (${
        j.verdict.reasons.join("; ")
      }); not mounted or held open right now`,
  );
}

testWith("probe --full equals dumpe2fs -h over the feature matrix; --json and the summary agree", [
  "mkfs.ext4",
  "dumpe2fs",
  "tune2fs",
  "debugfs",
], async (t) => {
  await using dir = await tempDir();
  for (const c of MATRIX) {
    await t.step(c.name, async () => {
      const path = `${dir.path}/${c.name.replace(/[^a-z0-9]/gi, "_")}.img`;
      await makeImage(path, { mkfs: c.mkfs, args: c.args, size: c.size ?? "64M" });
      if (c.name.startsWith("label")) {
        await runOk("tune2fs", ["-i", "3w", "-c", "25", "-e", "remount-ro", path]);
        // A filesystem mounted before: last mount time and place, a mount count.
        for (const cmd of ["last_mounted /srv/data", "mtime 20250314092653", "mnt_count 7"]) {
          await runOk("debugfs", ["-w", "-R", `ssv ${cmd}`, path]);
        }
      }
      const expected = await dumpe2fsHeader(path);
      const full = await runCli(["probe", "--full", path]);
      assert.equal(full.stderr, "");
      assert.equal(full.code, 0);
      assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);

      const json = await runCli(["probe", "--json", path]);
      assert.equal(json.stderr, "");
      assert.equal(json.code, 0);
      const j = JSON.parse(json.stdout);
      assertJsonMatches(j, expected, path, (await Deno.stat(path)).size, c);
      if (c.name.startsWith("label")) {
        assert.deepEqual(j.lastMount, { time: "2025-03-14T09:26:53.000Z", path: "/srv/data" });
        assert.equal(j.mountCount, 7);
        assert.equal(j.maxMountCount, 25);
      }

      const human = await runCli(["probe", path]);
      assert.equal(human.stderr, "");
      assert.equal(human.code, 0);
      assertHumanMatches(human.stdout, expected, j, path);
    });
  }
});

testWith("probe --full equals dumpe2fs -h on kernel-written journals (tests/fixtures)", [
  "gzip",
  "dumpe2fs",
], async (t) => {
  // Crash images whose journals the kernel wrote: v1/v2/v3 checksums, async commit, fast commit,
  // bigalloc, an external journal, a 4 MiB journal that wrapped.
  const cases = `${ROOT}tests/fixtures/journal_cases`;
  await using dir = await tempDir();
  const hasCrash = (name: string) => {
    try {
      return Deno.statSync(`${cases}/${name}/crash.img.gz`).isFile;
    } catch {
      return false; // a case the kernel left no crash image for
    }
  };
  const names = [...Deno.readDirSync(cases)].filter((e) => e.isDirectory && hasCrash(e.name))
    .map((e) => e.name);
  assert.ok(names.length >= 8, names.join(" "));
  for (const name of names.sort()) {
    await t.step(name, async () => {
      const img = `${dir.path}/${name}.img`;
      await runOk("sh", ["-c", `gzip -dc '${cases}/${name}/crash.img.gz' > '${img}'`]);
      try {
        const expected = await dumpe2fsHeader(img);
        const full = await runCli(["probe", "--full", img]);
        assert.equal(full.stderr, "");
        assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
        assert.equal(full.code, 4, "each needs recovery");
      } finally {
        await Deno.remove(img);
      }
    });
  }
});

testWith("probe --full equals dumpe2fs -h for rarely set fields (errors, options, orphans, salt)", [
  "mkfs.ext4",
  "dumpe2fs",
  "debugfs",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/rare.img`;
  await makeImage(path, {});
  const settings = [
    "error_count 3",
    "first_error_time 20250102030405",
    "first_error_ino 12",
    "first_error_block 345",
    "first_error_func ext4_lookup",
    "first_error_line 1789",
    "last_error_time 20250202030405",
    "last_error_ino 13",
    "last_error_block 678",
    "last_error_func ext4_readdir",
    "last_error_line 242",
    "mount_opts nodelalloc,data=journal",
    "last_orphan 14",
    "def_resuid 65534",
    "def_resgid 65534",
    "flags 6", // unsigned directory hash, test_filesystem
    "kbytes_written 123456789",
    "default_mount_opts 0x60c",
    "errors 3",
    "lastcheck 20250101000000",
    "checkinterval 86400",
    "raid_stride 32",
    "raid_stripe_width 128",
    "encrypt_pw_salt 01234567-89ab-cdef-0123-456789abcdef",
    "creator_os 3",
    "first_ino 20",
    "want_extra_isize 64",
    "min_extra_isize 48",
    "log_groups_per_flex 2",
    "state 3",
  ];
  const script = `${dir.path}/ssv.txt`;
  await Deno.writeTextFile(script, settings.map((x) => `ssv ${x}\n`).join(""));
  await runOk("debugfs", ["-w", "-f", script, path]);
  const expected = await dumpe2fsHeader(path);
  for (
    const label of ["FS Error count", "Mount options", "First orphan inode", "Next check after"]
  ) {
    assert.ok(dumpe2fsValue(expected, label), `dumpe2fs -h prints '${label}'`);
  }
  const full = await runCli(["probe", "--full", path]);
  assert.equal(full.code, 5, "the error state is exit 5");
  assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
  const j = JSON.parse((await runCli(["probe", "--json", path])).stdout);
  assert.equal(j.state.summary, "clean with errors");
  assert.equal(j.state.errors, true);
});

testWith("probe: an external journal device, and a filesystem whose journal is on one", [
  "root",
  "loop",
  "losetup",
  "mkfs.ext4",
  "dumpe2fs",
], async () => {
  await using dir = await tempDir();
  const journal = `${dir.path}/journal.img`;
  await makeImage(journal, { args: ["-O", "journal_dev", "-b", "4096"], size: "16M" });
  const jr = await runCli(["probe", "--json", journal]);
  assert.equal(jr.code, 6, jr.stderr);
  assert.equal(jr.stdout, "");
  assert.match(
    jr.stderr,
    /^ext4ts: .*journal\.img: an external journal device \(UUID [0-9a-f-]{36}\), not a filesystem: probe the filesystem that uses it\n$/,
  );
  // mke2fs takes an external journal only on a block device.
  const loop = await losetup(journal);
  try {
    const fs = `${dir.path}/fs.img`;
    await makeImage(fs, { args: ["-b", "4096", "-J", `device=${loop}`], size: "64M" });
    const expected = await dumpe2fsHeader(fs);
    const full = await runCli(["probe", "--full", fs]);
    assert.equal(full.code, 0, full.stderr);
    assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
    const j = JSON.parse((await runCli(["probe", "--json", fs])).stdout);
    assert.deepEqual(j.journal, {
      inode: null,
      device: parseInt(dumpe2fsValue(expected, "Journal device")!, 16),
      uuid: dumpe2fsValue(expected, "Journal UUID"),
      external: true,
      blocks: null,
      blockSize: null,
      features: null,
      sequence: null,
      start: null,
      error: null,
    });
    const human = await runCli(["probe", fs]);
    assert.match(
      human.stdout,
      new RegExp(`^ {2}journal: +external, device UUID ${j.journal.uuid}$`, "m"),
    );
    // --full shows the journal device as dumpe2fs -h does (its user now listed), still exit 6.
    const jExpected = await dumpe2fsHeader(journal);
    assert.equal(
      dumpe2fsValue(jExpected, "Journal users"),
      dumpe2fsValue(expected, "Filesystem UUID"),
    );
    const jFull = await runCli(["probe", "--full", journal]);
    assert.equal(jFull.code, 6);
    assert.deepEqual(jFull.stdout.split("\n").filter((l) => l !== ""), jExpected);
    assert.match(jFull.stderr, /^ext4ts: .*an external journal device .*\n$/);
  } finally {
    detachLoop(loop, journal);
  }
});

testWith("probe: a corrupt journal superblock is shown as stored and is an error (exit 5)", [
  "mkfs.ext4",
  "dumpe2fs",
  "debugfs",
], async (t) => {
  await using dir = await tempDir();
  /** Writes big-endian `value` at `offset` in the journal superblock of `path`. */
  const patchJournal = async (path: string, offset: number, value: number) => {
    const block = Number(/(\d+)/.exec(await runOk("debugfs", ["-R", "bmap <8> 0", path]))![1]);
    const blockSize = Number(dumpe2fsValue(await dumpe2fsHeader(path), "Block size"));
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value); // jbd2 is big-endian
    const f = await Deno.open(path, { write: true });
    await f.seek(block * blockSize + offset, Deno.SeekMode.Start);
    await f.write(b);
    f.close();
  };
  await t.step("three users, none named (no checksum): shown as dumpe2fs shows them", async () => {
    const path = `${dir.path}/users.img`;
    await makeImage(path, { args: ["-O", "^metadata_csum"] });
    await patchJournal(path, 0x40, 3); // s_nr_users
    const expected = await dumpe2fsHeader(path);
    assert.equal(dumpe2fsValue(expected, "Journal number of users"), "3");
    const full = await runCli(["probe", "--full", path]);
    assert.equal(full.code, 0, full.stderr);
    assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
  });
  await t.step("a journal superblock checksum error", async () => {
    const path = `${dir.path}/csum.img`;
    await makeImage(path, { args: ["-O", "metadata_csum"] });
    await patchJournal(path, 0x20, 0xfffffffb); // s_errno -5 (EIO)
    // s_feature_incompat: revoke, 64bit, checksum v3, so the (never written) checksum counts.
    await patchJournal(path, 0x28, 0x13);
    await patchJournal(path, 0x50, 0x04000000); // s_checksum_type crc32c; s_checksum stays 0
    const expected = await dumpe2fsHeader(path);
    assert.equal(dumpe2fsValue(expected, "Journal errno"), "-5");
    const full = await runCli(["probe", "--full", path]);
    assert.equal(full.code, 5, full.stderr);
    assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
    const j = JSON.parse((await runCli(["probe", "--json", path])).stdout);
    assert.match(
      j.journal.error,
      /^corrupt journal superblock: checksum error \(stored 0x00000000/,
    );
    assert.equal(j.journal.blocks, Number(dumpe2fsValue(expected, "Total journal blocks")));
    assert.equal(j.state.errors, true);
    assert.equal(j.state.summary, `clean, unusable journal: ${j.journal.error}`);
    const human = await runCli(["probe", path]);
    assert.match(human.stdout, /^ {2}journal: +internal, inode 8, .*\(unusable: corrupt journal/m);
  });
});

testWith("probe: states map to exit codes (errors 5, needs recovery 4, unsupported 6)", [
  "mkfs.ext4",
  "debugfs",
  "dumpe2fs",
], async (t) => {
  await using dir = await tempDir();
  const path = `${dir.path}/s.img`;
  await makeImage(path, { args: ["-O", "^metadata_csum"] });
  const debugfs = (cmd: string) => runOk("debugfs", ["-w", "-R", cmd, path]);
  const getWord = async (offset: number) =>
    new DataView((await Deno.readFile(path)).buffer).getUint32(1024 + offset, true);
  let incompatWas = 0;
  /** Sets a superblock word directly (debugfs will not open a filesystem with unknown bits). */
  const setWord = async (offset: number, value: number) => {
    const f = await Deno.open(path, { read: true, write: true });
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value, true);
    await f.seek(1024 + offset, Deno.SeekMode.Start);
    await f.write(b);
    f.close();
  };
  /** Probes: the exit code, the JSON's, and the state summary equal to dumpe2fs's. */
  const probe = async (code: number, dumpe2fsOpens = true) => {
    const r = await runCli(["probe", "--json", path]);
    assert.equal(r.code, code, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.exitCode, code);
    if (dumpe2fsOpens) {
      const dumped = dumpe2fsValue(await dumpe2fsHeader(path), "Filesystem state")!;
      assert.ok(j.state.summary.startsWith(dumped), `${j.state.summary} vs ${dumped}`);
    }
    const human = await runCli(["probe", path]);
    assert.equal(human.code, code);
    assert.ok(human.stdout.includes(`\n  state:         ${j.state.summary}\n`), human.stdout);
    return { j, human: human.stdout };
  };
  await t.step("not clean (never cleanly unmounted): usable, 0", async () => {
    await debugfs("ssv state 0");
    const { j } = await probe(0);
    assert.equal(j.state.summary, "not clean");
    assert.equal(j.state.clean, false);
    assert.equal(j.state.errors, false);
  });
  await t.step("errors recorded by the kernel: 5", async () => {
    await debugfs("ssv state 3"); // the error bit, as an ext4_error() sets it
    const { j } = await probe(5);
    assert.equal(j.state.summary, "clean with errors");
    assert.equal(j.state.errors, true);
    await debugfs("ssv state 2");
    assert.equal((await probe(5)).j.state.summary, "not clean with errors");
  });
  await t.step("needs journal recovery: 4; with errors too: 5", async () => {
    await debugfs("ssv state 1");
    await debugfs("feature needs_recovery");
    const { j, human } = await probe(4);
    assert.equal(j.state.needsRecovery, true);
    assert.match(human, /needs journal recovery/);
    // Readable (replayed in memory), not writable offline until the journal is replayed.
    const recovery = "the journal needs recovery (replay it first: ext4ts journal replay)";
    assert.deepEqual(j.verdict.read, { ok: true, reasons: [] });
    assert.deepEqual(j.verdict.writeOffline, { ok: false, reasons: [recovery] });
    assert.match(human, /^ {2}write offline: no \(the journal needs recovery/m);
    // A read-write mount replays the journal onto the device first, as the kernel's does.
    assert.deepEqual(j.verdict.mountReadWrite, { ok: true, reasons: [] });
    assert.match(
      human,
      /^verdict: rw: ext4ts can mount it read-write \(the mount replays the journal first; .*needs recovery/m,
    );
    await debugfs("ssv state 3");
    const both = (await probe(5)).j;
    assert.equal(both.state.needsRecovery, true, "5 wins over 4");
    assert.deepEqual(both.verdict.writeOffline.reasons, [
      recovery,
      "the filesystem has errors (check it with e2fsck first)",
    ]);
    assert.deepEqual(both.verdict.mountReadWrite.reasons, [
      "the filesystem has errors (check it with e2fsck first)",
    ]);
  });
  await t.step("an unknown incompatible feature: refuse, 6 (wins over 5 and 4)", async () => {
    incompatWas = await getWord(0x60); // with needs_recovery from the step before
    await setWord(0x60, incompatWas | 0x80000000);
    const { j, human } = await probe(6, false);
    const refused = { ok: false, reasons: ["unknown incompatible feature FEATURE_I31"] };
    assert.deepEqual(j.verdict, {
      level: "refuse",
      reasons: ["unknown incompatible feature FEATURE_I31"],
      read: refused,
      writeOffline: refused,
      mountReadWrite: refused,
    });
    assert.match(human, /^verdict: refuse: ext4ts cannot use it \(.*FEATURE_I31\)/m);
  });
  await t.step("an unknown read-only-compatible feature: ro, 0", async () => {
    await setWord(0x60, incompatWas & ~0x4); // the known bits again, without needs_recovery
    await debugfs("ssv state 1");
    await setWord(0x64, (await getWord(0x64)) | 0x80000000);
    const { j } = await probe(0, false);
    assert.equal(j.verdict.level, "ro");
    assert.deepEqual(j.verdict.reasons, [
      "unknown read-only-compatible feature FEATURE_R31",
    ]);
  });
});

testWith("probe: bad descriptor checksums (crc32c, crc16) and corrupt descriptors exit 5", [
  "mkfs.ext4",
], async (t) => {
  await using dir = await tempDir();
  const flip = async (path: string, at: number, bytes: Uint8Array) => {
    const f = await Deno.open(path, { read: true, write: true });
    await f.seek(at, Deno.SeekMode.Start);
    await f.write(bytes);
    f.close();
  };
  // 4 KiB blocks: the descriptor table is block 1; descriptor g at 4096 + g * descSize.
  for (
    const [name, args, descSize] of [
      ["metadata_csum (crc32c)", ["-O", "metadata_csum,64bit"], 64],
      ["gdt_csum (crc16)", ["-O", "^metadata_csum,uninit_bg,^64bit"], 32],
    ] as const
  ) {
    await t.step(name, async () => {
      const path = `${dir.path}/${descSize}.img`;
      await makeImage(path, { args: ["-b", "4096", ...args], size: "300M" });
      // Group 1's free inode count changes; its stored checksum does not.
      await flip(path, 4096 + descSize + 0xe, new Uint8Array([0x55]));
      const r = await runCli(["probe", "--json", path]);
      assert.equal(r.code, 5, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.deepEqual(j.state.descriptorChecksumErrors, [1]);
      assert.equal(j.state.errors, true);
      assert.equal(j.state.summary, "clean, 1 group descriptor checksum error(s)");
      assert.equal(j.exitCode, 5);
    });
  }
  await t.step("a descriptor pointing outside the filesystem", async () => {
    const path = `${dir.path}/range.img`;
    await makeImage(path, { args: ["-b", "4096", "-O", "^metadata_csum,^uninit_bg"] });
    await flip(path, 4096 + 8, new Uint8Array([0, 0xe1, 0xf5, 0x05])); // inode table 10^8
    const r = await runCli(["probe", "--json", path]);
    assert.equal(r.code, 5, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.match(j.state.descriptorError, /group descriptor 0: .*inode table 100000000/);
    assert.equal(j.state.summary, "clean, corrupt group descriptors");
    assert.equal(j.verdict.level, "refuse");
    assert.match(j.verdict.reasons[0], /outside the filesystem/);
  });
});

testWith("probe: MMP states (in use, fsck) and a corrupt MMP block", [
  "mkfs.ext4",
  "dumpe2fs",
], async (t) => {
  await using dir = await tempDir();
  /** Writes `bytes` at `at` inside the MMP block of `path`; returns the probe before. */
  const patchMmp = async (path: string, at: number, bytes: Uint8Array) => {
    const before = JSON.parse((await runCli(["probe", "--json", path])).stdout);
    const f = await Deno.open(path, { read: true, write: true });
    await f.seek(before.mmp.block * before.blockSize + at, Deno.SeekMode.Start);
    await f.write(bytes);
    f.close();
    return before;
  };
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return b;
  };
  // Without metadata_csum the MMP block has no checksum: its sequence can be set directly.
  const plain = `${dir.path}/plain.img`;
  await makeImage(plain, { args: ["-O", "mmp,^metadata_csum"] });
  for (
    const [state, seq, reason] of [
      ["in-use", 42, "MMP says the filesystem is in use on another node"],
      ["fsck", 0xe24d4d50, "MMP says e2fsck is running on it"],
    ] as const
  ) {
    await t.step(`mmp_seq ${seq.toString(16)}: ${state}`, async () => {
      await patchMmp(plain, 4, u32(seq));
      const r = await runCli(["probe", "--json", plain]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.mmp.state, state);
      assert.equal(j.mmp.error, null);
      assert.deepEqual(j.verdict.reasons, [reason]);
      const human = await runCli(["probe", plain]);
      assert.match(human.stdout, new RegExp(`^ {2}MMP: +${state}, block ${j.mmp.block}, `, "m"));
      assert.match(human.stdout, new RegExp(`^verdict: ro: .*\\(${reason}\\); not mounted`, "m"));
    });
  }
  await t.step("an MMP update time no Date can hold (a corrupt 64-bit time)", async () => {
    await patchMmp(plain, 4, u32(0xff4d4d50)); // clean again
    await patchMmp(plain, 12, u32(0x7fffffff)); // mmp_time high half
    const r = await runCli(["probe", "--json", plain]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).mmp.updated, null);
    const human = await runCli(["probe", plain]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      /^ {2}MMP: +clean, .* at \d+ seconds after the epoch \(out of range\)$/m,
    );
    const full = await runCli(["probe", "--full", plain]);
    assert.match(full.stdout, /^ {4}mmp_update_date: \(null\)$/m); // what glibc's ctime gives
  });
  const csum = `${dir.path}/csum.img`;
  await makeImage(csum, { args: ["-O", "mmp,metadata_csum"] });
  await t.step("a wrong MMP checksum is an error (exit 5)", async () => {
    await patchMmp(csum, 16, new TextEncoder().encode("intruder")); // mmp_nodename
    const r = await runCli(["probe", "--json", csum]);
    assert.equal(r.code, 5, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.mmp.nodeName, "intruder");
    assert.equal(j.mmp.error, "MMP block checksum mismatch");
    assert.equal(j.state.summary, "clean, MMP block checksum error");
    const human = await runCli(["probe", csum]);
    assert.match(human.stdout, /^ {2}MMP: +clean, .*\(MMP block checksum mismatch\)$/m);
    // --full prints what dumpe2fs -h prints: no MMP section, the error on stderr.
    const full = await runCli(["probe", "--full", csum]);
    assert.equal(full.code, 5);
    assert.deepEqual(
      full.stdout.split("\n").filter((l) => l !== ""),
      await dumpe2fsHeader(csum),
    );
    assert.match(full.stderr, /^ext4ts: .*: MMP block \d+: MMP block checksum mismatch\n$/);
  });
  await t.step("an MMP block without its magic is unreadable (exit 5), same keys", async () => {
    await patchMmp(csum, 0, u32(0));
    const r = await runCli(["probe", "--json", csum]);
    assert.equal(r.code, 5, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j.mmp), MMP_KEYS);
    assert.equal(j.mmp.state, "unreadable");
    assert.match(j.mmp.error, /MMP block: bad magic 0x0/);
    assert.equal(j.state.summary, "clean, unreadable MMP block");
  });
});

testWith("probe: a mounted image is reported in use, held exclusively", [
  "root",
  "loop",
  "kernel-ext4",
  "mkfs.ext4",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/m.img`;
  await makeImage(path, {});
  const mnt = `${dir.path}/mnt`;
  await Deno.mkdir(mnt);
  await runOk("mount", ["-o", "loop,ro", path, mnt]);
  try {
    const r = await runCli(["probe", "--json", path]);
    const j = JSON.parse(r.stdout);
    assert.equal(j.inUse.mounted, true);
    assert.deepEqual(j.inUse.mountPoints, [mnt]);
    assert.equal(j.inUse.exclusivelyHeld, true);
    const busy = `it is mounted right now on ${mnt} and held open exclusively`;
    assert.deepEqual(j.verdict, {
      level: "ro",
      reasons: [busy],
      read: { ok: true, reasons: [] },
      writeOffline: { ok: false, reasons: [busy] },
      mountReadWrite: { ok: false, reasons: [busy] },
    });
    const loop = j.inUse.loopDevices[0];
    const h = await runCli(["probe", loop]);
    assert.match(
      h.stdout,
      new RegExp(`in use: +mounted on ${mnt} \\(ext4\\), held open exclusively`),
    );
    assert.match(
      h.stdout,
      new RegExp(
        `^verdict: ro: .*; it is mounted right now on ${mnt} and held open exclusively\\)$`,
        "m",
      ),
    );
  } finally {
    await runOk("umount", [mnt]);
  }
});

testWith(
  "probe: a write-protected loop device is read-only; a device held O_EXCL by another process is reported",
  [
    "root",
    "loop",
    "losetup",
    "mkfs.ext4",
    "python3",
  ],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/w.img`;
    await makeImage(path, { size: "16M" });
    // losetup -r: BLKROGET says read-only although an O_RDWR open would succeed.
    const loop = await losetup(path, ["-r"]);
    let holder: Deno.ChildProcess | undefined;
    try {
      let r = await runCli(["probe", "--json", loop]);
      assert.equal(r.code, 0, r.stderr);
      let j = JSON.parse(r.stdout);
      assert.deepEqual(j.verdict, {
        level: "ro",
        reasons: ["the device is read-only"],
        read: { ok: true, reasons: [] },
        writeOffline: { ok: false, reasons: ["the device is read-only"] },
        mountReadWrite: { ok: false, reasons: ["the device is read-only"] },
      });
      assert.equal(j.deviceSize, 16 * 2 ** 20, "BLKGETSIZE64");
      assert.equal(j.device, loop);
      const idle = await runCli(["probe", loop]);
      assert.match(
        idle.stdout,
        /^verdict: ro: .*the device is read-only\); not mounted or held open right now$/m,
      );
      assert.deepEqual(j.inUse, {
        mounted: false,
        mountPoints: [],
        exclusivelyHeld: false,
        loopDevices: [],
      });
      // Probing the image finds the loop device over it.
      j = JSON.parse((await runCli(["probe", "--json", path])).stdout);
      assert.deepEqual(j.inUse.loopDevices, [loop]);
      assert.equal(j.inUse.exclusivelyHeld, false);
      assert.ok(
        !j.verdict.reasons.includes("the device is read-only"),
        "the file itself is writable",
      );

      // Another process holds the device with O_EXCL (as mkfs, a mount or a VM would).
      holder = new Deno.Command("python3", {
        args: [
          "-c",
          "import os,sys,time\nfd=os.open(sys.argv[1],os.O_RDONLY|os.O_EXCL)\nprint('held',flush=True)\nsys.stdin.read()",
          loop,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = holder.stdout.getReader();
      let said = "";
      while (!said.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        said += new TextDecoder().decode(value);
      }
      assert.equal(said, "held\n");
      reader.releaseLock();
      r = await runCli(["probe", "--json", loop]);
      j = JSON.parse(r.stdout);
      assert.equal(j.inUse.mounted, false);
      assert.equal(j.inUse.exclusivelyHeld, true);
      j = JSON.parse((await runCli(["probe", "--json", path])).stdout);
      assert.equal(j.inUse.exclusivelyHeld, true, "held through the loop device over the image");
      assert.deepEqual(j.verdict.reasons.slice(-1), [
        "another program holds it open exclusively right now",
      ]);
      const human = await runCli(["probe", loop]);
      assert.match(human.stdout, /^ {2}in use: +not mounted, held open exclusively$/m);
      assert.match(
        human.stdout,
        /^verdict: ro: .*the device is read-only; another program holds it open exclusively right now\)$/m,
      );
    } finally {
      if (holder) {
        await holder.stdin.close();
        await holder.stdout.cancel().catch(() => {});
        await holder.status;
      }
      detachLoop(loop, path);
    }
  },
);

testWith("probe: bad input gets one clear line on stderr and a documented exit code", [
  "mkfs.ext4",
  "mkfs.vfat",
  "setpriv",
], async (t) => {
  await using dir = await tempDir();
  const d = dir.path;
  const expectOneLine = (r: RunResult, code: number, message: RegExp) => {
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], message);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+|Error:|^\s+at /m); // no stack trace
  };
  const check = async (args: string[], code: number, message: RegExp) =>
    expectOneLine(await runCli(args), code, message);
  await t.step(
    "missing path",
    () =>
      check(
        ["probe", `${d}/missing.img`],
        7,
        /^ext4ts: cannot open .*missing\.img: No such file or directory$/,
      ),
  );
  await t.step("a directory", () => check(["probe", d], 7, /is a directory/));
  await t.step("an empty file", async () => {
    await Deno.writeFile(`${d}/empty.img`, new Uint8Array());
    await check(["probe", `${d}/empty.img`], 3, /not an ext2\/3\/4 filesystem/);
  });
  await t.step("random bytes", async () => {
    const junk = new Uint8Array(1 << 20);
    for (let i = 0; i < junk.length; i += 65536) {
      crypto.getRandomValues(junk.subarray(i, i + 65536));
    }
    junk[1024 + 0x38] = 0; // make sure the magic is not there by chance
    await Deno.writeFile(`${d}/random.img`, junk);
    await check(["probe", `${d}/random.img`], 3, /not an ext2\/3\/4 filesystem \(bad magic/);
  });
  await t.step("a zeroed disk", async () => {
    await Deno.writeFile(`${d}/zero.img`, new Uint8Array(4 << 20));
    await check(["probe", `${d}/zero.img`], 3, /bad magic 0x0000/);
  });
  await t.step("a FAT filesystem", async () => {
    await runOk("mkfs.vfat", ["-C", `${d}/fat.img`, "8192"]);
    await check(["probe", `${d}/fat.img`], 3, /not an ext2\/3\/4 filesystem/);
  });
  await t.step("a truncated image", async () => {
    await makeImage(`${d}/trunc.img`, {});
    await Deno.truncate(`${d}/trunc.img`, 2 << 20);
    await check(["probe", `${d}/trunc.img`], 5, /truncated image/);
  });
  await t.step("a corrupted superblock checksum", async () => {
    await makeImage(`${d}/csum.img`, { args: ["-O", "metadata_csum"] });
    const f = await Deno.open(`${d}/csum.img`, { read: true, write: true });
    await f.seek(1024 + 0x78, Deno.SeekMode.Start);
    await f.write(new TextEncoder().encode("tampered"));
    f.close();
    await check(["probe", `${d}/csum.img`], 5, /corrupt superblock: checksum mismatch/);
  });
  await t.step("permission denied (root without CAP_DAC_OVERRIDE)", async () => {
    await makeImage(`${d}/perm.img`, {});
    await Deno.chmod(`${d}/perm.img`, 0);
    // Root without CAP_DAC_OVERRIDE is refused like any user.
    const r = await run("setpriv", [
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--",
      Deno.execPath(),
      "run",
      "--allow-all",
      `${ROOT}cli/main.ts`,
      "probe",
      `${d}/perm.img`,
    ]);
    expectOneLine(r, 7, /^ext4ts: cannot open .*perm\.img: .*Permission denied$/);
  });
  await t.step("permission denied (an ordinary user)", async () => {
    await Deno.chmod(`${d}/perm.img`, 0o600);
    // The user nobody runs ext4ts (with a Deno cache of its own: no network) on an image
    // only root may read.
    await Deno.chmod(d, 0o755);
    const nobody = await unprivileged(`${d}/user`);
    const r = await nobody.cli(["probe", `${d}/perm.img`]);
    expectOneLine(r, 7, /^ext4ts: cannot open .*perm\.img: .*Permission denied$/);
  });
  await t.step("--json: failures are the same one line on stderr, nothing on stdout", async () => {
    await check(["probe", "--json", `${d}/missing.img`], 7, /No such file or directory$/);
    await check(["probe", "--json", `${d}/random.img`], 3, /not an ext2\/3\/4 filesystem/);
    await check(["probe", "--json", `${d}/csum.img`], 5, /checksum mismatch/);
    await check(["probe", "--full", `${d}/trunc.img`], 5, /truncated image/);
  });
  await t.step("a wrong option", async () => {
    const r = await runCli(["probe", "--bogus", `${d}/zero.img`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--bogus'/);
  });
  await t.step("a missing argument", async () => {
    const r = await runCli(["probe"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing required argument 'device'/);
  });
  await t.step(
    "a bad offset",
    () => check(["probe", "--offset", "12x", `${d}/zero.img`], 2, /invalid offset '12x'/),
  );
});

testWith("probe --offset finds a filesystem inside a partitioned disk image", [
  "mkfs.ext4",
  "dumpe2fs",
], async () => {
  await using dir = await tempDir();
  const fs = `${dir.path}/fs.img`;
  await makeImage(fs, { size: "16M", args: ["-L", "part1"] });
  const fsBytes = await Deno.readFile(fs);
  // An MBR disk: one Linux partition (type 0x83) from sector 2048 holding the filesystem.
  const image = new Uint8Array((1 << 20) + fsBytes.length + (1 << 20));
  const mbr = new DataView(image.buffer);
  image[446 + 4] = 0x83;
  mbr.setUint32(446 + 8, 2048, true);
  mbr.setUint32(446 + 12, fsBytes.length / 512, true);
  mbr.setUint16(510, 0xaa55, true);
  image.set(fsBytes, 1 << 20);
  const disk = `${dir.path}/disk.img`;
  await Deno.writeFile(disk, image);
  const expected = await dumpe2fsHeader(fs);
  for (const offset of ["1048576", "2048s", "1MiB", "1M", "1024k"]) {
    const r = await runCli(["probe", "--json", "--offset", offset, disk]);
    assert.equal(r.code, 0, `${offset}: ${r.stderr}`);
    const j = JSON.parse(r.stdout);
    assert.equal(j.uuid, dumpe2fsValue(expected, "Filesystem UUID"));
    assert.equal(j.label, "part1");
    assert.equal(j.deviceSize, fsBytes.length + (1 << 20), "the device from the offset on");
    assert.equal(j.inUse, null, "current use is not known for a part of a device");
  }
  const full = await runCli(["probe", "--full", "--offset", "2048s", disk]);
  assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
  const human = await runCli(["probe", "--offset", "2048s", disk]);
  assert.equal(human.code, 0);
  assert.doesNotMatch(human.stdout, /in use:/);
  // Without the offset the disk is not a filesystem; an offset past the end is bad usage.
  const whole = await runCli(["probe", disk]);
  assert.equal(whole.code, 3);
  assert.equal(
    whole.stderr,
    `ext4ts: ${disk}: not an ext2/3/4 filesystem (bad magic 0x0000); partition table (MBR) ` +
      "found: use --offset 1048576 (partition 1 at 1048576 bytes, ext2/3/4)\n",
  );
  const past = await runCli(["probe", "--offset", "1G", disk]);
  assert.equal(past.code, 2, past.stderr);
  assert.equal(past.stderr.trim().split("\n").length, 1);
  const inside = await runCli(["probe", "--offset", "4096s", disk]);
  assert.equal(inside.code, 3, "an offset that misses the filesystem finds no superblock");
});

/** One filesystem for the export test: how it is made and the type blkid gives it. */
interface ExportCase {
  name: string;
  mkfs?: string;
  args: string[];
  type: string;
}

testWith(
  "probe -o export prints what blkid -o export -p prints (labels escaped, SEC_TYPE, EXT_JOURNAL), then EXT4TS_ keys",
  ["mkfs.ext4", "blkid", "loop"],
  async (t) => {
    await using dir = await tempDir();
    // mke2fs takes an external journal only on a block device.
    await runOk("truncate", ["-s", "8M", `${dir.path}/journal.img`]);
    const journal = await losetup(`${dir.path}/journal.img`);
    try {
      await runOk("mkfs.ext4", ["-q", "-F", "-O", "journal_dev", "-b", "4096", journal]);
      await exportCases(t, dir.path, [
        { name: "ext2", mkfs: "mkfs.ext2", args: [], type: "ext2" },
        { name: "ext3", mkfs: "mkfs.ext3", args: ["-L", "data"], type: "ext3" },
        // Shell metacharacters, a control character, trailing blanks.
        { name: "odd label", args: ["-L", "a\tb <>`$\"'\\  "], type: "ext4" },
        { name: "leading blank", args: ["-L", " x"], type: "ext4" },
        // Bytes above 127 as blkid shows them (M-…: not for a shell to source, as with blkid).
        { name: "non-ASCII label", args: ["-L", "é"], type: "ext4" },
        { name: "external journal", args: ["-J", `device=${journal}`], type: "ext4" },
      ]);
    } finally {
      assert.ok(detachLoop(journal, `${dir.path}/journal.img`));
    }
  },
);

async function exportCases(t: Deno.TestContext, dir: string, cases: ExportCase[]): Promise<void> {
  for (const c of cases) {
    await t.step(c.name, async () => {
      const path = `${dir}/${c.name.replace(/ /g, "_")}.img`;
      await makeImage(path, { mkfs: c.mkfs, args: [...c.args, "-b", "4096"], size: "16M" });
      const r = await runCli(["probe", "-o", "export", path]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      const lines = r.stdout.trimEnd().split("\n");
      const blkid = (await runOk("blkid", ["-o", "export", "-p", path])).trimEnd().split("\n");
      assert.deepEqual(lines.filter((l) => !l.startsWith("EXT4TS_")), blkid);
      assert.deepEqual(lines.filter((l) => l.startsWith("EXT4TS_")).map((l) => l.split("=")[0]), [
        "EXT4TS_VERDICT",
        "EXT4TS_CAN_READ",
        "EXT4TS_CAN_WRITE_OFFLINE",
        "EXT4TS_CAN_MOUNT_RW",
        "EXT4TS_STATE",
        "EXT4TS_NEEDS_RECOVERY",
        "EXT4TS_ERRORS",
        "EXT4TS_IN_USE",
        "EXT4TS_EXIT_CODE",
      ]);
      if (c.name === "external journal") {
        assert.ok(lines.some((l) => l.startsWith("EXT_JOURNAL=")), r.stdout);
      }
      if (c.name === "non-ASCII label") return;
      // The lines are shell assignments: a shell sourcing them gets the values.
      const sourced = await run("sh", [
        "-c",
        'eval "$(cat)"; printf "%s|%s|%s" "$DEVNAME" "$TYPE" "$EXT4TS_CAN_READ"',
      ], { stdin: r.stdoutBytes });
      assert.equal(sourced.stdout, `${path}|${c.type}|1`, sourced.stderr);
    });
  }
}

testWith(
  "a disk image with a partition table (sfdisk: MBR with a logical partition, GPT) gets a hint with the partitions' offsets, for every command",
  [
    "mkfs.ext4",
    "sfdisk",
    "blkid",
  ],
  async (t) => {
    await using dir = await tempDir();
    const layouts = {
      // Primary 1, an extended partition 2 holding logical 5 (the filesystem).
      mbr: "label: dos\nstart=2048, size=20480, type=83\nstart=24576, size=40960, type=5\n" +
        "start=26624, size=32768, type=83\n",
      gpt: "label: gpt\nstart=2048, size=20480\nstart=24576, size=32768\n",
    };
    for (const [scheme, layout] of Object.entries(layouts)) {
      await t.step(scheme, async () => {
        const disk = `${dir.path}/${scheme}.img`;
        await runOk("truncate", ["-s", "40M", disk]);
        await run("sh", ["-c", `printf '${layout.replace(/\n/g, "\\n")}' | sfdisk -q ${disk}`]);
        // The partitions as sfdisk reports them: the hint must name the same offsets.
        const dump = JSON.parse(await runOk("sfdisk", ["--json", disk]));
        const parts =
          (dump.partitiontable.partitions as { node: string; start: number; type: string }[])
            .filter((p) => p.type !== "5") // the extended partition holds partitions, not a filesystem
            .map((p) => ({ n: Number(/(\d+)$/.exec(p.node)![1]), offset: p.start * 512 }));
        const fsPart = parts[parts.length - 1];
        await runOk("mkfs.ext4", [
          "-q",
          "-F",
          "-E",
          `offset=${fsPart.offset}`,
          disk,
          "16M",
        ], { env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" } });
        const list = parts.map((p) =>
          `partition ${p.n} at ${p.offset} bytes${p === fsPart ? ", ext2/3/4" : ""}`
        ).join("; ");
        const hint =
          `partition table (${scheme.toUpperCase()}) found: use --offset ${fsPart.offset} (${list})`;
        for (const args of [["probe"], ["probe", "--json"], ["ls"], ["mkdir", "-p"]]) {
          const tail = args[0] === "mkdir" ? ["/x"] : [];
          const r = await runCli([...args, disk, ...tail]);
          assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
          assert.equal(r.stdout, "");
          assert.equal(r.stderr.split("\n").length, 2, r.stderr);
          assert.ok(r.stderr.startsWith("ext4ts: ") && r.stderr.endsWith(`; ${hint}\n`), r.stderr);
        }
        // The offset the hint gives finds the filesystem blkid finds there.
        const r = await runCli(["probe", "-o", "export", "--offset", String(fsPart.offset), disk]);
        assert.equal(r.code, 0, r.stderr);
        const blkid = await runOk("blkid", [
          "-o",
          "export",
          "-p",
          "-O",
          String(fsPart.offset),
          disk,
        ]);
        const uuid = (text: string) => /^UUID=(.*)$/m.exec(text)?.[1];
        assert.equal(uuid(r.stdout), uuid(blkid));
      });
    }
  },
);

/** A device that counts what is read through it. */
class CountingDevice implements BlockDevice {
  reads = 0;
  bytes = 0;
  constructor(readonly inner: BlockDevice) {}
  get size() {
    return this.inner.size;
  }
  get sectorSize() {
    return this.inner.sectorSize;
  }
  get readOnly() {
    return this.inner.readOnly;
  }
  read(offset: number, buffer: Uint8Array): Promise<void> {
    this.reads++;
    this.bytes += buffer.length;
    return this.inner.read(offset, buffer);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

testWith("probe: a 16 TiB sparse image is probed from its superblock and descriptors only", [
  "mkfs.ext4",
  "dumpe2fs",
], async () => {
  // tmpfs allows 16 TiB sparse files; most disk filesystems stop just short of it.
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "ext4ts-big-" });
  try {
    const path = `${dir}/big.img`;
    const f = await Deno.create(path);
    await f.truncate(16 * 2 ** 40);
    f.close();
    await runOk("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=1,nodiscard", path]);
    const expected = await dumpe2fsHeader(path);
    const device = new CountingDevice(openBlockDevice(path));
    try {
      const r = await probeDevice(device);
      assert.equal(r.superblock.blocksCount * r.superblock.blockSize, 16 * 2 ** 40);
      assert.equal(r.groups?.length, 131072);
      assert.deepEqual(r.groups?.badChecksums, []);
      assert.equal(r.journal?.maxLen, Number(dumpe2fsValue(expected, "Total journal blocks")));
      // What probe may read: the superblock, 131072 descriptors of 64 bytes (8 MiB), the
      // journal inode and the journal superblock (in the journal reader's 128 KiB read-ahead).
      const descriptors = 131072 * 64;
      assert.ok(
        device.bytes <= descriptors + 256 * 1024,
        `probe read ${device.bytes} bytes in ${device.reads} reads`,
      );
      assert.ok(device.reads <= 16, `probe made ${device.reads} reads`);
    } finally {
      await device.close();
    }
    // The CLI over the same image: --full still equals dumpe2fs -h.
    const full = await runCli(["probe", "--full", path]);
    assert.equal(full.code, 0, full.stderr);
    assert.deepEqual(full.stdout.split("\n").filter((l) => l !== ""), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

testWith(
  "probe: a dirty journal is dry-run in memory: what a replay would do, or why it would fail",
  ["gzip", "debugfs"],
  async () => {
    // A kernel crash image kept in the repository (tests/fixtures/journal_cases).
    const fixture = `${ROOT}tests/fixtures/journal_cases/32bit_nocsum_4k`;
    await using dir = await tempDir();
    const crash = `${dir.path}/crash.img`;
    await runOk("sh", ["-c", `gzip -dc '${fixture}/crash.img.gz' > '${crash}'`]);
    const before = await Deno.readFile(crash);
    const r = await runCli(["probe", "--json", crash]);
    assert.equal(r.code, 4, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.state.needsRecovery, true);
    assert.deepEqual(Object.keys(j), JSON_KEYS);
    assert.deepEqual(Object.keys(j.recovery), RECOVERY_KEYS);
    // debugfs logdump of the same image finds one commit block per transaction.
    const logdump = await Deno.readTextFile(`${fixture}/crash.logdump.txt`);
    const commits = logdump.match(/type 2 \(commit block\)/g)?.length ?? 0;
    assert.ok(commits > 1);
    assert.equal(j.recovery.transactions, commits);
    assert.ok(j.recovery.blocks > 0);
    assert.equal(j.recovery.error, null);
    assert.equal(
      j.state.summary,
      `clean, needs journal recovery (${commits} transaction(s), ${j.recovery.blocks} block(s))`,
    );
    const human = await runCli(["probe", crash]);
    assert.equal(human.code, 4);
    assert.ok(human.stdout.includes(`  state:         ${j.state.summary}\n`), human.stdout);
    assert.deepEqual(await Deno.readFile(crash), before, "probe writes nothing");

    // The same image with the journal superblock's magic wiped: a replay would be refused.
    const bad = `${dir.path}/bad.img`;
    await Deno.writeFile(bad, before);
    const first = Number(/(\d+)/.exec(await runOk("debugfs", ["-R", "bmap <8> 0", bad]))![1]);
    const f = await Deno.open(bad, { write: true });
    await f.seek(first * j.blockSize, Deno.SeekMode.Start);
    await f.write(new Uint8Array(4));
    f.close();
    const b = await runCli(["probe", "--json", bad]);
    assert.equal(b.code, 5, "a corrupt journal is an error, which wins over recovery");
    const bj = JSON.parse(b.stdout);
    assert.match(bj.recovery.error, /journal/);
    assert.equal(bj.recovery.transactions, 0);
    assert.match(bj.state.summary, /needs journal recovery, which would fail: /);
    assert.match(bj.journal.error, /journal/);
  },
);

testWith(
  "probe: random corruption of the metadata it reads never escapes as anything but an Ext4Error",
  [
    "mkfs.ext4",
  ],
  async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/fuzz.img`;
    // 1 KiB blocks, mmp and metadata_csum: superblock, descriptors, MMP block and journal all small.
    await makeImage(path, { args: ["-b", "1024", "-O", "mmp,metadata_csum"], size: "8M" });
    const base = await Deno.readFile(path);
    const j = JSON.parse((await runCli(["probe", "--json", path])).stdout);
    // Where probe reads: superblock and descriptors (blocks 1-2), the MMP block, and the journal's
    // first blocks (found through inode 8 in the inode table).
    const journalBlock = Number(
      /(\d+)/.exec(await runOk("debugfs", ["-R", "bmap <8> 0", path]))![1],
    );
    const regions = [1024, 2048, j.mmp.block * 1024, journalBlock * 1024];
    const targets = fc.oneof(
      ...regions.map((start) => fc.integer({ min: start, max: start + 1023 })),
      fc.integer({ min: 0, max: base.length - 1 }),
    );
    let threw = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(targets, fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.boolean(),
        async (flips, ignoreChecksums) => {
          const img = base.slice();
          for (const [at, v] of flips) img[at] = v;
          if (ignoreChecksums) {
            // Recompute nothing, but drop metadata_csum so corruption reaches the parsers.
            img[1024 + 0x64 + 1] &= ~0x04;
          }
          try {
            const r = await probeDevice(new MemoryBlockDevice(img));
            assert.ok(["rw", "ro", "refuse"].includes(r.support.level));
            // Every rendering of what was found works too.
            JSON.stringify(probeJson("fuzz.img", img.length, r, null));
            humanReport("fuzz.img", r, null);
            superblockReport(r.superblock);
            if (r.journal) journalReport(r.journal, r.superblock.blockSize, true);
            if (r.mmp) mmpReport(r.mmp);
          } catch (e) {
            assert.ok(e instanceof Ext4Error, String((e as Error)?.stack ?? e));
            threw++;
          }
        },
      ),
      { numRuns: 1000, seed: 7 },
    );
    assert.ok(threw > 0, "some corruptions are refused");
  },
);
