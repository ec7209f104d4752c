/**
 * Writers on damaged filesystems (issue 10): refused before the first write when the kernel
 * would refuse to mount (exit 5), refused unless forced when the superblock records errors or
 * an unclean journal-less stop, and an allocation the bitmap gets wrong fails with EUCLEAN and
 * an error recorded in the superblock, never overwriting. Each case is crafted with mkfs and
 * debugfs -w.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Errno, Ext4Error } from "../lib/errors.ts";
import { readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { sha256 } from "../lib/ondisk/sha256.ts";
import { parseSuperblock, readSuperblock, State } from "../lib/ondisk/superblock.ts";
import { Ext4Writer } from "../lib/ext4/writer.ts";
import { run, runCli, runOk, tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS, type Layout, LAYOUTS, mkfsImage } from "./write_fixtures.ts";
import { Compat } from "../lib/ondisk/features.ts";
import { locateJournal } from "../lib/ext4/journal.ts";

/**
 * A copy of the image with its internal journal's blocks zeroed: recording an error is a
 * journaled transaction (as the kernel's ext4 journals its error record), so the log changes
 * beside the superblock; comparing the rest shows nothing else did.
 */
async function outsideJournal(image: Uint8Array): Promise<Uint8Array> {
  const copy = Uint8Array.from(image);
  const dev = new MemoryBlockDevice(copy);
  const sb = await readSuperblock(dev);
  if (!(sb.compat & Compat.HAS_JOURNAL)) return copy;
  const { store } = await locateJournal(dev, sb);
  const bs = sb.blockSize;
  for (let n = 0; n < store.blockCount; n++) {
    copy.fill(0, store.fsBlock(n)! * bs, (store.fsBlock(n)! + 1) * bs);
  }
  return copy;
}

const TOOLS = [...IMAGE_TOOLS, "debugfs"];
const EXT2 = LAYOUTS[0];
const EXT4 = LAYOUTS[2];
/** No group checksums: debugfs setb/freeb leave consistent bitmaps the writer reads as is. */
const PLAIN: Layout = {
  name: "ext4-plain",
  mkfs: "mkfs.ext4",
  args: ["-b", "4096", "-g", "2048", "-O", "^metadata_csum,^uninit_bg"],
  size: "48M",
};

/** A fresh image file in `dir` and a small host file to put into it. */
async function setup(dir: string, layout: Layout): Promise<{ img: string; host: string }> {
  const img = `${dir}/fs.img`;
  await Deno.writeFile(img, await mkfsImage(dir, layout));
  const host = `${dir}/hello.txt`;
  await Deno.writeTextFile(host, "hello\n");
  return { img, host };
}

/** Runs debugfs -w commands on `img`, one per line. */
async function debugfs(img: string, ...commands: string[]): Promise<void> {
  const r = await run("debugfs", ["-w", "-f", "-", img], {
    stdin: new TextEncoder().encode(commands.join("\n") + "\n"),
  });
  assert.equal(r.code, 0, r.stderr);
}

async function hash(img: string): Promise<string> {
  return Array.from(sha256(await Deno.readFile(img)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function header(img: string): Promise<string> {
  return await runOk("dumpe2fs", ["-h", img]);
}

async function fsck(img: string): Promise<{ code: number; output: string }> {
  const r = await run("e2fsck", ["-fn", img]);
  return { code: r.code, output: r.stdout };
}

/** Group descriptor facts of the image file. */
async function geometry(img: string) {
  const dev = new MemoryBlockDevice(await Deno.readFile(img));
  const sb = await readSuperblock(dev);
  const gdt = await readGroupDescriptors(dev, sb);
  return { sb, gdt };
}

/** One `ext4ts: …` line on stderr, exit 5, matching `detail`. */
function assertRefused(r: { code: number; stderr: string }, detail: RegExp): void {
  assert.equal(r.code, 5, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^ext4ts: /);
  assert.match(lines[0], detail);
}

/** Every write command on `img` (the paths /a, /b exist; put makes /new.txt), with `extra` options. */
function writeCommands(img: string, host: string, extra: string[]): string[][] {
  return [
    ["put", ...extra, img, host, "/new.txt"],
    ["mkdir", ...extra, img, "/newdir"],
    ["mv", ...extra, img, "/a", "/a2"],
    ["rm", ...extra, "-r", img, "/b"],
    // An edit command: the same opening (cli/edit_command.ts) serves chmod, chown, ln, touch,
    // setfattr and batch.
    ["chmod", ...extra, img, "600", "/new.txt"],
  ];
}

for (const layout of [EXT4, EXT2]) {
  testWith(
    `${layout.name}: inode 11 free in the bitmap: put fails with EUCLEAN and records the error; /lost+found is intact`,
    TOOLS,
    async () => {
      await using dir = await tempDir();
      const { img, host } = await setup(dir.path, layout);
      await debugfs(img, "freei <11>");
      const damaged = await Deno.readFile(img);
      const before = await fsck(img);

      const r = await runCli(["put", img, host, "/hello.txt"]);
      assertRefused(
        r,
        /corrupt inode bitmap of group 0: marks inode 11 free, but its record is in use/,
      );
      const ls = await runOk("debugfs", ["-R", "ls -l /", img]);
      assert.match(ls, /^\s*11\s+40700 \(2\).*lost\+found/m);
      assert.doesNotMatch(ls, /hello/);
      const stat = await runOk("debugfs", ["-R", "stat <11>", img]);
      assert.match(stat, /Type: directory/);
      assert.match(stat, /Links: 2/);

      const h = await header(img);
      assert.match(h, /Filesystem state:\s+clean with errors/);
      assert.match(h, /FS Error count:\s+1\n/);
      assert.match(h, /First error function:\s+allocateInode/);
      assert.match(h, /First error inode #:\s+11\n/);
      assert.match(h, /Last error function:\s+allocateInode/);
      assert.match(h, /Last error inode #:\s+11\n/);
      assert.match(h, /Last error err:\s+EFSCORRUPTED/);
      // Only the superblock changed (and the journal that logged it), and e2fsck sees exactly
      // the damage there was.
      const after = await Deno.readFile(img);
      assert.deepEqual(after.subarray(0, 1024), damaged.subarray(0, 1024));
      assert.deepEqual(
        (await outsideJournal(after)).subarray(2048),
        (await outsideJournal(damaged)).subarray(2048),
      );
      assert.deepEqual(await fsck(img), before);

      // The library, through the writable Ext4: the typed error, EUCLEAN.
      const dev = new MemoryBlockDevice(Uint8Array.from(damaged));
      const fs = await Ext4.openDevice(dev, { readOnly: false });
      try {
        await assert.rejects(fs.writeFile("/x", new Uint8Array(3)), (e) => {
          assert.ok(e instanceof Ext4Error);
          assert.equal(e.code, "CORRUPT");
          assert.equal(e.errno, Errno.EUCLEAN);
          return true;
        });
        assert.equal(fs.superblock.state & State.ERROR, State.ERROR);
        assert.equal(fs.superblock.errorCount, 1);
      } finally {
        await fs.close();
      }
      const persisted = parseSuperblock(dev.bytes.slice(1024, 2048));
      assert.equal(persisted.lastErrorIno, 11);
      assert.equal(persisted.state & State.ERROR, State.ERROR);
      assert.deepEqual(
        (await outsideJournal(dev.bytes)).subarray(2048),
        (await outsideJournal(damaged)).subarray(2048),
      );
    },
  );
}

testWith(
  "two groups' block bitmaps in one block: every writer refuses (exit 5) naming it, the image unchanged",
  TOOLS,
  async () => {
    await using dir = await tempDir();
    const { img, host } = await setup(dir.path, EXT4);
    const { gdt } = await geometry(img);
    await debugfs(img, "mkdir /a", "mkdir /b", `set_bg 1 block_bitmap ${gdt.get(0).blockBitmap}`);
    const sum = await hash(img);
    for (const args of writeCommands(img, host, [])) {
      assertRefused(
        await runCli(args),
        /corrupt group descriptor 1: block bitmap at \d+ overlaps the block bitmap of group 0/,
      );
    }
    assert.equal(await hash(img), sum);
  },
);

testWith(
  "root inode freed in the bitmap, or cleared: refused (exit 5), the image unchanged",
  TOOLS,
  async () => {
    await using dir = await tempDir();
    for (
      const [cmd, detail] of [
        ["freei <2>", /corrupt root inode 2: not allocated in the inode bitmap: run e2fsck/],
        ["clri <2>", /corrupt root inode 2: deleted \(no links\): run e2fsck/],
        ["sif <2> mode 0100644", /corrupt root inode 2: not a directory/],
      ] as const
    ) {
      const { img, host } = await setup(dir.path, EXT4);
      await debugfs(img, cmd);
      const sum = await hash(img);
      assertRefused(await runCli(["put", img, host, "/hello.txt"]), detail);
      assertRefused(await runCli(["mkdir", img, "/d"]), detail);
      assert.equal(await hash(img), sum);
    }
  },
);

testWith(
  "bad blocks inode: a bad block in the inode table or the journal is refused; one elsewhere is fine",
  TOOLS,
  async () => {
    await using dir = await tempDir();
    // e2fsprogs reads the list by its pointers: old images (f_badtable) leave i_size 0.
    const badBlock = async (img: string, block: number, size = 4096) =>
      await debugfs(
        img,
        `setb ${block}`,
        `sif <1> block[0] ${block}`,
        `sif <1> size ${size}`,
        "sif <1> blocks 8",
      );
    let { img, host } = await setup(dir.path, EXT4);
    const { gdt } = await geometry(img);
    const table = gdt.get(0).inodeTable + 1;
    await badBlock(img, table, 0);
    let sum = await hash(img);
    assertRefused(
      await runCli(["put", img, host, "/hello.txt"]),
      new RegExp(
        `corrupt bad blocks inode 1: block ${table}, listed as bad, holds the inode table of group 0: run e2fsck$`,
      ),
    );
    assert.equal(await hash(img), sum);

    ({ img, host } = await setup(dir.path, EXT4));
    const journal = Number((await runOk("debugfs", ["-R", "bmap <8> 5", img])).trim());
    await badBlock(img, journal);
    sum = await hash(img);
    assertRefused(
      await runCli(["mkdir", img, "/d"]),
      new RegExp(`block ${journal}, listed as bad, holds the journal: run e2fsck$`),
    );
    assert.equal(await hash(img), sum);

    // A bad block outside the metadata (group 0's last): in use in the bitmap, never allocated.
    ({ img, host } = await setup(dir.path, EXT4));
    await badBlock(img, 2047);
    await run("e2fsck", ["-fy", img]); // debugfs setb leaves the free counts to e2fsck
    assert.equal((await fsck(img)).code, 0);
    const r = await runCli(["put", img, host, "/hello.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await fsck(img)).code, 0);
  },
);

testWith(
  "a block bitmap that marks an inode table block or the journal free: no overwrite, the error recorded",
  TOOLS,
  async () => {
    await using dir = await tempDir();
    const cases = [
      {
        name: "inode table",
        target: async (img: string) => (await geometry(img)).gdt.get(1).inodeTable + 3,
        detail: /but they overlap filesystem metadata at/,
      },
      {
        name: "journal",
        target: async (img: string) =>
          Number((await runOk("debugfs", ["-R", "bmap <8> 0", img])).trim()),
        detail: /but they overlap the journal at/,
      },
    ];
    for (const c of cases) {
      const { img, host } = await setup(dir.path, PLAIN);
      const block = await c.target(img);
      // Every block in use but the victim: the allocator can only pick it.
      await debugfs(img, "setb 1 12287", `freeb ${block} 2`);
      const bytes = await Deno.readFile(img);
      const before = await fsck(img);
      const r = await runCli(["put", img, host, "/hello.txt"]);
      assertRefused(r, c.detail);
      assert.match(r.stderr, new RegExp(`marks blocks ${block}\\+`), c.name);
      const after = await Deno.readFile(img);
      assert.deepEqual(
        (await outsideJournal(after)).subarray(2048),
        (await outsideJournal(bytes)).subarray(2048),
        c.name,
      );
      const h = await header(img);
      assert.match(h, /Filesystem state:\s+clean with errors/);
      assert.match(h, /Last error function:\s+allocateBlocks/);
      assert.match(h, new RegExp(`Last error block #:\\s+${block}\\n`));
      assert.deepEqual(await fsck(img), before, c.name);
    }
  },
);

for (
  const [layout, state, detail] of [
    [EXT4, 3, /errors were recorded in the superblock \(state "with errors"\)/],
    [EXT2, 0, /not cleanly unmounted and without a journal \(state "not clean"\)/],
  ] as const
) {
  testWith(
    `${layout.name} with s_state ${state}: every writer refuses without --force-unchecked (image unchanged), writes with it`,
    TOOLS,
    async () => {
      await using dir = await tempDir();
      const { img, host } = await setup(dir.path, layout);
      await debugfs(img, "mkdir /a", "mkdir /b", `ssv state ${state}`);
      const sum = await hash(img);
      for (const args of writeCommands(img, host, [])) {
        const r = await runCli(args);
        assertRefused(r, detail);
        assert.match(r.stderr.trimEnd(), /run e2fsck$/);
      }
      assert.equal(await hash(img), sum);

      // The library: refused without force, writable with it.
      const bytes = await Deno.readFile(img);
      const dev = () => new MemoryBlockDevice(Uint8Array.from(bytes));
      await assert.rejects(Ext4Writer.open(dev()), detail);
      await assert.rejects(Ext4.openDevice(dev(), { readOnly: false }), detail);
      const fs = await Ext4.openDevice(dev(), { readOnly: false, force: true });
      await fs.mkdir("/lib");
      await fs.close();
      await Ext4Writer.open(dev(), { force: true });

      for (const args of writeCommands(img, host, ["--force-unchecked"])) {
        const r = await runCli(args);
        assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      }
      const ls = await runOk("debugfs", ["-R", "ls /", img]);
      for (const name of ["new.txt", "newdir", "a2"]) assert.match(ls, new RegExp(name));
      assert.doesNotMatch(ls, /\bb\b/);
      // Clean for e2fsck; the state is left as found (e2fsck clears it).
      assert.equal((await fsck(img)).code, 0);
      assert.equal(
        (await readSuperblock(new MemoryBlockDevice(await Deno.readFile(img)))).state,
        state,
      );
    },
  );
}
