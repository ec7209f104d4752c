/**
 * The exit-code matrix (README "Exit codes"): every command through every condition that
 * applies to it, each failure with exactly one stderr line `ext4ts: …` and the code the table
 * gives that condition, the same in every command.
 */
import assert from "node:assert/strict";
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
  withKernelMount,
} from "./helpers.ts";

/** One command as the matrix runs it. */
interface Cmd {
  name: string;
  /** Its arguments on `image`; `n` makes host paths unique; `inside` a path in the image. */
  args: (image: string, n: number, inside: string) => string[];
  /** Whether it writes the filesystem (runs on a fresh copy of the image). */
  writes?: boolean;
}

/** The conditions, with the image each runs on and what each command exits with there. */
type Condition =
  | "success"
  | "missing image"
  | "not ext4"
  | "needs recovery"
  | "corrupt"
  | "unknown feature"
  | "unwritable feature"
  | "permission denied"
  | "busy"
  | "read-only device"
  | "usage: unknown option"
  | "usage: missing argument"
  | "not found inside";

const READERS = ["probe", "ls", "cat", "stat", "get", "journal show"];
const WRITERS = ["put", "mkdir", "rm", "mv"];

/**
 * The expected code of each command under each condition; a missing entry means the condition
 * does not apply to that command (e.g. a path inside for probe).
 */
const EXPECTED: Record<Condition, Record<string, number>> = {
  "success": all(0),
  "missing image": all(7),
  "not ext4": all(3),
  // Readers replay the journal in memory; writers refuse; probe reports it.
  "needs recovery": {
    ...some(READERS, 0),
    probe: 4,
    "journal replay": 0,
    ...some(WRITERS, 4),
  },
  "corrupt": all(5),
  // The journal commands read only the journal (like debugfs logdump), and there is nothing to
  // replay (needs_recovery is not set): nothing refused, nothing written.
  "unknown feature": { ...all(6), "journal show": 0, "journal replay": 0 },
  // bigalloc: read, not written.
  "unwritable feature": { ...some(READERS, 0), "journal replay": 0, ...some(WRITERS, 6) },
  "permission denied": all(7),
  // The device the kernel has mounted: reading is allowed, writing is not. Its journal is in
  // use, so the kernel has set needs_recovery: probe says so (4).
  "busy": { ...some(READERS, 0), probe: 4, "journal replay": 8, ...some(WRITERS, 8) },
  "read-only device": { ...some(READERS, 0), "journal replay": 9, ...some(WRITERS, 9) },
  "usage: unknown option": all(2),
  "usage: missing argument": all(2),
  "not found inside": { ls: 1, cat: 1, stat: 1, get: 1, ...some(WRITERS, 1) },
};

function some(names: string[], code: number): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, code]));
}

function all(code: number): Record<string, number> {
  return some([...READERS, "journal replay", ...WRITERS], code);
}

/** A failure's stderr: exactly one line, `ext4ts: …`. */
function assertOneLine(r: RunResult, what: string): void {
  const lines = r.stderr.split("\n");
  assert.equal(lines.length, 2, `${what}: one line on stderr, got:\n${r.stderr}`);
  assert.ok(lines[0].startsWith("ext4ts: ") && lines[1] === "", `${what}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, what);
}

/** Writes `value` (little endian) into the superblock of an image at `offset`. */
async function patchSuperblock(path: string, offset: number, value: number): Promise<void> {
  const f = await Deno.open(path, { read: true, write: true });
  try {
    const b = new Uint8Array(4);
    await f.seek(1024 + offset, Deno.SeekMode.Start);
    await f.read(b);
    const v = new DataView(b.buffer);
    v.setUint32(0, v.getUint32(0, true) | value, true);
    await f.seek(1024 + offset, Deno.SeekMode.Start);
    await f.write(b);
  } finally {
    f.close();
  }
}

testWith(
  "exit codes: every command, every condition of the README's table, one stderr line each",
  ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs", "setpriv", "losetup"],
  async (t) => {
    await using dir = await tempDir();
    const d = dir.path;
    const host = `${d}/host.txt`;
    await Deno.writeTextFile(host, "from the host\n");
    let n = 0;
    const COMMANDS: Cmd[] = [
      { name: "probe", args: (img) => ["probe", img] },
      { name: "ls", args: (img, _, p) => ["ls", img, p] },
      { name: "cat", args: (img, _, p) => ["cat", img, p] },
      { name: "stat", args: (img, _, p) => ["stat", img, p] },
      { name: "get", args: (img, i, p) => ["get", img, p, `${d}/out-${i}`] },
      { name: "journal show", args: (img) => ["journal", "show", img] },
      { name: "journal replay", args: (img) => ["journal", "replay", img], writes: true },
      { name: "put", args: (img, _, p) => ["put", img, host, `${p}.new`], writes: true },
      { name: "mkdir", args: (img, _, p) => ["mkdir", img, `${p}.dir`], writes: true },
      { name: "rm", args: (img, _, p) => ["rm", img, p], writes: true },
      { name: "mv", args: (img, _, p) => ["mv", img, p, "/moved"], writes: true },
    ];

    // The images: a populated filesystem and its damaged and unusual variants.
    const good = `${d}/good.img`;
    await makeImage(good, { size: "16M", args: ["-O", "^metadata_csum"] });
    await runOk("debugfs", ["-w", "-R", `write ${host} f`, good]);
    const zero = `${d}/zero.img`;
    await runOk("truncate", ["-s", "16M", zero]);
    const variant = async (name: string, change: (path: string) => Promise<unknown>) => {
      const path = `${d}/${name}.img`;
      await Deno.copyFile(good, path);
      await change(path);
      return path;
    };
    const recovery = await variant(
      "recovery",
      (p) => runOk("debugfs", ["-w", "-R", "feature needs_recovery", p]),
    );
    const corrupt = `${d}/corrupt.img`;
    await makeImage(corrupt, { size: "16M", args: ["-O", "metadata_csum"] });
    await patchSuperblock(corrupt, 0x78, 0x58); // a label byte: the checksum no longer matches
    const unknown = await variant("unknown", (p) => patchSuperblock(p, 0x60, 0x80000000));
    const bigalloc = `${d}/bigalloc.img`;
    await makeImage(bigalloc, { size: "64M", args: ["-O", "bigalloc", "-C", "16384"] });
    await runOk("debugfs", ["-w", "-R", `write ${host} f`, bigalloc]);
    const noPerm = await variant("noperm", (p) => Deno.chmod(p, 0));

    /** Runs a command as root without CAP_DAC_OVERRIDE (so a mode-0 image is refused). */
    const withoutCaps = (args: string[]) =>
      run("setpriv", [
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        `${ROOT}cli/main.ts`,
        ...args,
      ], { env: { TZ: "UTC" } });

    const runCondition = async (
      condition: Condition,
      image: string | null,
      options: { inside?: string; args?: (cmd: Cmd) => string[]; copy?: boolean } = {},
      launch: (args: string[]) => Promise<RunResult> = runCli,
    ) => {
      await t.step(condition, async (t2) => {
        for (const cmd of COMMANDS) {
          const want = EXPECTED[condition][cmd.name];
          if (want === undefined) continue;
          await t2.step(cmd.name, async () => {
            let img = image ?? `${d}/no-such.img`;
            if (image && cmd.writes && options.copy !== false) {
              img = `${d}/copy-${++n}.img`;
              await Deno.copyFile(image, img);
            }
            const args = options.args?.(cmd) ?? cmd.args(img, ++n, options.inside ?? "/f");
            const r = await launch(args);
            const what = `ext4ts ${args.join(" ")}`;
            assert.equal(r.code, want, `${what}: ${r.stderr}`);
            if (cmd.name === "probe" && /^verdict: /m.test(r.stdout)) {
              // probe's 4, 5 and 6 are its verdict on a filesystem it could probe: the report
              // is on stdout and says why; stderr stays empty.
              assert.equal(r.stderr, "", what);
            } else if (want !== 0) assertOneLine(r, what);
            else {
              // Success may carry notices (a journal replayed in memory), all `ext4ts: …`.
              for (const l of r.stderr.split("\n").filter((l) => l !== "")) {
                assert.ok(l.startsWith("ext4ts: "), `${what}: ${l}`);
              }
            }
          });
        }
      });
    };

    await runCondition("success", good);
    await runCondition("missing image", null);
    await runCondition("not ext4", zero);
    await runCondition("needs recovery", recovery);
    await runCondition("corrupt", corrupt);
    await runCondition("unknown feature", unknown);
    await runCondition("unwritable feature", bigalloc);
    await runCondition("permission denied", noPerm, { copy: false }, withoutCaps);
    await runCondition("usage: unknown option", good, {
      args: (cmd) => [...cmd.name.split(" "), "--bogus", good],
    });
    await runCondition("usage: missing argument", good, { args: (cmd) => cmd.name.split(" ") });
    await runCondition("not found inside", good, { inside: "/nope/x" });

    // A block device: read-only (losetup -r), then mounted by the kernel (busy).
    const loop = await losetup(good, ["-r"]);
    try {
      await runCondition("read-only device", loop, { copy: false });
    } finally {
      assert.ok(detachLoop(loop, good));
    }
    const busyImage = `${d}/busy.img`;
    await Deno.copyFile(good, busyImage);
    await withKernelMount(busyImage, async () => {
      const dev = (await runOk("losetup", ["-j", busyImage])).split(":")[0];
      await runCondition("busy", dev, { copy: false });
    });
    // Every condition of the table was walked.
    assert.deepEqual(Object.keys(EXPECTED).length, 13);
  },
);

testWith("exit codes: mount and umount follow the same table", ["root", "mkfs.ext4"], async () => {
  await using dir = await tempDir();
  const mnt = `${dir.path}/mnt`;
  await Deno.mkdir(mnt);
  const zero = `${dir.path}/zero.img`;
  await runOk("truncate", ["-s", "16M", zero]);
  const good = `${dir.path}/good.img`;
  await makeImage(good, { size: "16M" });
  // Readable, not writable by ext4ts (quota files are not updated): a read-write mount is exit 6.
  const quota = `${dir.path}/quota.img`;
  await makeImage(quota, { size: "16M", args: ["-O", "quota"] });
  const cases: [string[], number][] = [
    [["mount", `${dir.path}/missing.img`, mnt], 7],
    [["mount", zero, mnt], 3],
    [["mount", "-o", "rw", quota, mnt], 6],
    [["mount", good, `${dir.path}/no-such-dir`], 1],
    [["mount", "--bogus", good, mnt], 2],
    [["mount", good], 2],
    [["umount", mnt], 1],
    [["umount", "--bogus", mnt], 2],
    [["umount"], 2],
  ];
  for (const [args, want] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, want, `${args.join(" ")}: ${r.stderr}`);
    assertOneLine(r, args.join(" "));
  }
});

Deno.test("exit codes: no command, or a group alone, is usage (2): the usage, then one line", async () => {
  for (
    const [args, line] of [
      [[], /^ext4ts: missing command \(one of: probe, ls, .*\)$/],
      [["journal"], /^ext4ts: journal: missing command \(one of: replay, show\)$/],
      [["help", "bogus"], /^ext4ts: unknown command 'bogus'$/],
    ] as const
  ) {
    const r = await runCli([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^Usage: ext4ts /);
    const ours = r.stderr.split("\n").filter((l) => l.startsWith("ext4ts: "));
    assert.equal(ours.length, 1, r.stderr);
    assert.match(ours[0], line);
    assert.equal(r.stderr.trimEnd().split("\n").at(-1), ours[0], "the one line comes last");
  }
  // An unknown command, or commander's "did you mean", is one line too.
  for (const args of [["bogus"], ["probe", "--jsn", "x.img"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 2);
    assertOneLine(r, args.join(" "));
  }
  const r = await runCli(["mkdir", "-m", "999", "x.img", "/d"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "ext4ts: option '-m, --mode <octal>' argument '999' is invalid. invalid mode '999': expected octal 0 to 7777, e.g. 755\n",
  );
});

testWith("exit codes: rm / and a missing host file are failures (1), not internal errors", [
  "mkfs.ext4",
], async () => {
  await using dir = await tempDir();
  const img = `${dir.path}/a.img`;
  await makeImage(img, { size: "16M" });
  let r = await runCli(["rm", "-r", img, "/"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "ext4ts: cannot remove the root directory\n");
  r = await runCli(["mv", img, "/", "/x"]);
  assert.equal(r.code, 1);
  assertOneLine(r, "mv /");
  r = await runCli(["put", img, `${dir.path}/no-such-file`, "/x"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `ext4ts: ${dir.path}/no-such-file: No such file or directory\n`);
  r = await runCli(["mkdir", "--offset", "abc", img, "/y"]);
  assert.equal(r.code, 2);
  assertOneLine(r, "mkdir --offset abc");
});

testWith(
  "every --json output carries schemaVersion 1 (ls: each entry)",
  ["mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/a.img`;
    await makeImage(img, { size: "16M" });
    for (
      const args of [
        ["probe", "--json", img],
        ["probe", "-o", "json", img],
        ["stat", "--json", img, "/"],
        ["journal", "show", "--json", img],
        ["journal", "replay", "--dry-run", "--json", img],
      ]
    ) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      const j = JSON.parse(r.stdout);
      assert.equal(Object.keys(j)[0], "schemaVersion", args.join(" "));
      assert.equal(j.schemaVersion, 1, args.join(" "));
    }
    const ls = await runCli(["ls", "-R", "--json", img, "/"]);
    const entries = JSON.parse(ls.stdout) as { schemaVersion: number }[];
    assert.ok(entries.length > 0);
    for (const e of entries) assert.equal(e.schemaVersion, 1);
  },
);
