import assert from "node:assert/strict";
import fc from "fast-check";
import { type DirectorySource, iterateDirectory } from "../lib/ext4/dir.ts";
import {
  type DirContext,
  DirFileType,
  dirLeafChecksum,
  dirRecLen,
  findDirentTail,
  parseDirectoryBlock,
  parseInlineDirectory,
  recLenFromDisk,
  recLenToDisk,
  setDirentTail,
} from "../lib/ondisk/dirent.ts";
import { computeDxChecksum } from "../lib/ondisk/dx.ts";
import { htreeLookup } from "../lib/ext4/htree.ts";
import { lookupInDirectory } from "../lib/ext4/lookup.ts";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import { makeImage, runOk, tempDir, testWith } from "./helpers.ts";
import { kernelListing, nameOf, RawImage } from "./raw_image.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs"];

async function collect(dir: DirectorySource, ctx: DirContext, from = 0) {
  const out = [];
  for await (const r of iterateDirectory(dir, ctx, from)) out.push(r);
  return out;
}

function asMap(recs: { name: Uint8Array; ino: number }[]): Map<string, number> {
  return new Map(recs.map((r) => [nameOf(r.name), r.ino]));
}

/** Fills `dir` with one entry of every file type and `n` regular files. */
async function fillTypes(dir: string, n: number): Promise<void> {
  await Deno.mkdir(`${dir}/subdir`);
  await Deno.symlink("target", `${dir}/link`);
  const mk = async (args: string[]) => {
    const r = await new Deno.Command("mknod", { args }).output();
    if (!r.success) throw new Error(`mknod ${args.join(" ")} failed`);
  };
  await mk([`${dir}/fifo`, "p"]);
  await mk([`${dir}/chr`, "c", "1", "3"]);
  await mk([`${dir}/blk`, "b", "7", "0"]);
  const sock = Deno.listen({ transport: "unix", path: `${dir}/sock` });
  sock.close();
  for (let i = 0; i < n; i++) {
    await Deno.writeTextFile(`${dir}/file-${i}-${"x".repeat(i % 40)}`, "");
  }
}

const TYPE_BY_NAME: Record<string, number> = {
  subdir: DirFileType.DIR,
  link: DirFileType.SYMLINK,
  fifo: DirFileType.FIFO,
  chr: DirFileType.CHRDEV,
  blk: DirFileType.BLKDEV,
  sock: DirFileType.SOCK,
};

for (
  const variant of [
    { label: "4k metadata_csum", args: ["-b", "4096"] },
    { label: "1k no metadata_csum", args: ["-b", "1024", "-O", "^metadata_csum"] },
    { label: "no filetype, no dir_index", args: ["-O", "^filetype,^dir_index,^metadata_csum"] },
  ]
) {
  testWith(`linear directories match the kernel (${variant.label})`, NEEDS, async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/a.img`;
    let expected = new Map<string, number>();
    let expectedSub = new Map<string, number>();
    await makeImage(img, {
      size: "16M",
      args: variant.args,
      populate: async (m) => {
        await Deno.mkdir(`${m}/d`);
        await fillTypes(`${m}/d`, 300);
        // Delete some so that records carry gaps and unused entries.
        for (let i = 0; i < 300; i += 7) {
          await Deno.remove(`${m}/d/file-${i}-${"x".repeat(i % 40)}`);
        }
        expected = await kernelListing(`${m}/d`);
        expectedSub = await kernelListing(`${m}/d/subdir`);
      },
    });
    const raw = await RawImage.load(img);
    const ctx = { sb: raw.sb };
    const ino = await raw.ino("/d");
    const dir = await raw.directory(ino);
    // 300 names do not fit a 4 KiB block: the kernel indexed it (read linearly here).
    assert.equal(dir.isHtree, !variant.label.includes("dir_index"));
    const recs = await collect(dir, ctx);
    assert.deepEqual(asMap(recs), expected);
    assert.equal(recs.length, expected.size, "no duplicate names");
    assert.equal(nameOf(recs[0].name), ".");
    assert.equal(nameOf(recs[1].name), "..");
    const ft = variant.label.startsWith("no filetype");
    for (const r of recs) {
      const want = TYPE_BY_NAME[nameOf(r.name)] ??
        (nameOf(r.name).startsWith(".") ? DirFileType.DIR : DirFileType.REG_FILE);
      assert.equal(r.fileType, ft ? 0 : want, nameOf(r.name));
      assert.ok(r.offset > 0);
    }
    // Offsets strictly increase, and resuming after any entry yields exactly the rest.
    for (let i = 1; i < recs.length; i++) assert.ok(recs[i].offset > recs[i - 1].offset);
    for (const k of [0, 1, 2, 50, recs.length - 2, recs.length - 1]) {
      const rest = await collect(dir, ctx, recs[k].offset);
      assert.deepEqual(rest.map((r) => r.offset), recs.slice(k + 1).map((r) => r.offset));
    }
    const sub = await collect(await raw.directory(await raw.ino("/d/subdir")), ctx);
    assert.deepEqual(asMap(sub), expectedSub);
  });
}

testWith(
  "directory checksums and bad records are CorruptErrors naming inode and block",
  NEEDS,
  async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/c.img`;
    await makeImage(img, {
      size: "8M",
      args: ["-b", "1024"],
      populate: async (m) => {
        await Deno.mkdir(`${m}/d`);
        for (let i = 0; i < 100; i++) await Deno.writeTextFile(`${m}/d/name-${i}`, "");
      },
    });
    const raw = await RawImage.load(img);
    assert.ok(raw.sb.hasMetadataCsum);
    const ino = await raw.ino("/d");
    const phys = await raw.physicalBlocks(ino);
    const dir = await raw.directory(ino);
    const gen = dir.generation;
    const ctx = { sb: raw.sb };
    const logical = phys.length - 1;
    const good = raw.block(phys[logical]);
    // The tail is found and the checksum verifies.
    const tail = findDirentTail(good);
    assert.equal(tail, good.length - 12);
    assert.equal(
      new DataView(good.buffer).getUint32(tail + 8, true),
      dirLeafChecksum(raw.sb, ino, gen, good),
    );
    assert.ok(parseDirectoryBlock(good, ctx, { ino, generation: gen, logical }).length > 0);
    // The write side: rebuilding the tail gives the same bytes.
    const rebuilt = good.slice();
    rebuilt.fill(0, tail);
    setDirentTail(raw.sb, ino, gen, rebuilt);
    assert.deepEqual(rebuilt, good);
    assert.ok(dir.isHtree, "100 names made it indexed");
    const root = raw.block(phys[0]);
    const dx = computeDxChecksum(raw.sb, ino, gen, root);
    assert.ok("checksum" in dx);
    assert.equal(new DataView(root.buffer).getUint32(dx.tail + 4, true), dx.checksum);

    // A flipped name byte: checksum mismatch.
    const flipped = good.slice();
    flipped[20] ^= 1;
    assert.throws(
      () => parseDirectoryBlock(flipped, ctx, { ino, generation: gen, logical }),
      (e: unknown) =>
        e instanceof CorruptError && e.message.includes(`inode ${ino}`) &&
        e.message.includes(`block ${logical}`) && /checksum/.test(e.message),
    );
    // Wrong generation: the seed differs, the checksum fails.
    assert.throws(
      () => parseDirectoryBlock(good, ctx, { ino, generation: gen + 1, logical }),
      CorruptError,
    );
    // No tail under metadata_csum.
    const noTail = good.slice();
    noTail[noTail.length - 5] = 0;
    assert.throws(
      () => parseDirectoryBlock(noTail, ctx),
      /no space for the directory leaf checksum/,
    );

    // A bad rec_len, through iterateDirectory: the error names the inode and logical block.
    const badRec = good.slice();
    new DataView(badRec.buffer).setUint16(4, 10, true);
    const src: DirectorySource = {
      ...dir,
      readBlock: (l) => Promise.resolve(l === logical ? badRec : raw.block(phys[l])),
    };
    const noCsumSb = { sb: withoutMetadataCsum(raw) };
    await assert.rejects(
      () => collect(src, noCsumSb),
      (e: unknown) =>
        e instanceof CorruptError &&
        e.message.includes(`directory inode ${ino} (logical block ${logical})`) &&
        e.message.includes("rec_len 10 is smaller than minimal"),
    );
    for (
      const [rl, msg] of [[13, "% 4"], [12, "too small for name_len"], [2048, "overrun"]] as const
    ) {
      const b = good.slice();
      new DataView(b.buffer).setUint16(4, rl, true);
      b[6] = 7;
      assert.throws(
        () => parseDirectoryBlock(b, noCsumSb, { ino, generation: gen, logical }),
        (e: unknown) => e instanceof CorruptError && e.message.includes(msg),
      );
    }
    // An inode number beyond the filesystem.
    const badIno = good.slice();
    new DataView(badIno.buffer).setUint32(0, raw.sb.inodesCount + 1, true);
    assert.throws(() => parseDirectoryBlock(badIno, noCsumSb), /out of bounds/);
  },
);

/** A Superblock copy without metadata_csum, to test record checks apart from checksums. */
function withoutMetadataCsum(raw: RawImage) {
  const bytes = raw.sb.bytes.slice();
  const v = new DataView(bytes.buffer);
  v.setUint32(0x64, v.getUint32(0x64, true) & ~0x400, true);
  return new (raw.sb.constructor as new (b: Uint8Array) => typeof raw.sb)(bytes);
}

testWith("inline directories list like the kernel, with synthesized . and ..", [
  ...NEEDS,
], async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/i.img`;
  const expected: Record<string, Map<string, number>> = {};
  await makeImage(img, {
    size: "8M",
    args: ["-O", "inline_data", "-I", "256"],
    populate: async (m) => {
      await Deno.mkdir(`${m}/empty`);
      await Deno.mkdir(`${m}/small`);
      for (const n of ["a", "bb", "ccc"]) await Deno.writeTextFile(`${m}/small/${n}`, "");
      // Enough entries to spill from i_block into the system.data xattr, not out of the inode.
      await Deno.mkdir(`${m}/spill`);
      for (let i = 0; i < 6; i++) await Deno.writeTextFile(`${m}/spill/f${i}`, "");
      await Deno.remove(`${m}/spill/f2`);
      for (const d of ["empty", "small", "spill"]) expected[d] = await kernelListing(`${m}/${d}`);
    },
  });
  const raw = await RawImage.load(img);
  const ctx = { sb: raw.sb };
  for (const d of ["empty", "small", "spill"]) {
    const dir = await raw.directory(await raw.ino(`/${d}`));
    assert.ok(dir.inlineData, `${d} is inline`);
    const recs = await collect(dir, ctx);
    assert.deepEqual(asMap(recs), expected[d], d);
    assert.deepEqual(recs.slice(0, 2).map((r) => [nameOf(r.name), r.offset]), [[".", 12], [
      "..",
      24,
    ]]);
    for (let k = 0; k < recs.length; k++) {
      const rest = await collect(dir, ctx, recs[k].offset);
      assert.deepEqual(rest, recs.slice(k + 1));
    }
  }
  const spill = await raw.directory(await raw.ino("/spill"));
  assert.ok(spill.inlineData!.length > 60, "the spill directory uses the system.data value");
  // A corrupt inline record.
  const bad = spill.inlineData!.slice();
  new DataView(bad.buffer).setUint16(8, 3, true);
  assert.throws(
    () => parseInlineDirectory(bad, spill.ino, ctx),
    (e: unknown) =>
      e instanceof CorruptError && e.message.includes(`inline directory inode ${spill.ino}`),
  );
});

testWith(
  "a linear directory lookup finds every listed name, block by block in place; a damaged record after the name does not hide it (the kernel's search_dirblock), one before it is CORRUPT",
  NEEDS,
  async () => {
    await using tmp = await tempDir();
    const img = `${tmp.path}/l.img`;
    await makeImage(img, {
      size: "8M",
      args: ["-b", "1024", "-O", "^metadata_csum,^dir_index"],
      populate: async (m) => {
        await Deno.mkdir(`${m}/d`);
        for (let i = 0; i < 120; i++) {
          await Deno.writeTextFile(`${m}/d/n${i}-${"y".repeat(i % 9)}`, "");
        }
      },
    });
    const raw = await RawImage.load(img);
    const ctx = { sb: raw.sb };
    const dir = await raw.directory(await raw.ino("/d"));
    const enc = new TextEncoder();
    const listed = await collect(dir, ctx);
    assert.ok(dir.size / 1024 >= 3, "the names span several blocks");
    for (const r of listed) assert.equal(await lookupInDirectory(dir, r.name, ctx), r.ino);
    for (const absent of ["n120", "n1-", "n1-yy", "nope", "N0"]) {
      assert.equal(await lookupInDirectory(dir, enc.encode(absent), ctx), null, absent);
    }
    // Damage the rec_len of the last record of block 1: names before it in that block are
    // still found, a name after it (later blocks) or in it meets the damage first.
    const blocks = [(await dir.readBlock(0))!, (await dir.readBlock(1))!.slice()];
    const recs = parseDirectoryBlock(blocks[1], ctx);
    const last = recs[recs.length - 1];
    let pos = 0;
    for (let i = 0; i < recs.length - 1; i++) {
      pos += recLenFromDisk(new DataView(blocks[1].buffer).getUint16(pos + 4, true), 1024);
    }
    new DataView(blocks[1].buffer).setUint16(pos + 4, 5, true);
    const damaged: DirectorySource = {
      ...dir,
      readBlock: (l) => l === 1 ? Promise.resolve(blocks[1]) : dir.readBlock(l),
    };
    assert.equal(await lookupInDirectory(damaged, recs[0].name, ctx), recs[0].ino);
    await assert.rejects(lookupInDirectory(damaged, last.name, ctx), CorruptError);
    await assert.rejects(lookupInDirectory(damaged, enc.encode("absent"), ctx), CorruptError);
    const inBlock0 = parseDirectoryBlock(blocks[0], ctx);
    assert.equal(await lookupInDirectory(damaged, inBlock0[2].name, ctx), inBlock0[2].ino);
  },
);

testWith("holes are skipped and nextMappedBlock jumps over them", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/h.img`;
  await makeImage(img, {
    size: "8M",
    args: ["-b", "1024", "-O", "^metadata_csum"],
    populate: async (m) => {
      await Deno.mkdir(`${m}/d`);
      for (let i = 0; i < 100; i++) await Deno.writeTextFile(`${m}/d/n${i}`, "");
    },
  });
  const raw = await RawImage.load(img);
  const ctx = { sb: raw.sb };
  const dir = await raw.directory(await raw.ino("/d"));

  const all = await collect(dir, ctx);
  const phys = await raw.physicalBlocks(dir.ino);
  assert.ok(phys.length >= 3);
  // Pretend block 1 is a hole: its entries vanish, the rest stays.
  const inBlock1 = parseDirectoryBlock(raw.block(phys[1]), ctx, {
    ino: dir.ino,
    generation: dir.generation,
    logical: 1,
  });
  const holey: DirectorySource = {
    ...dir,
    readBlock: (l) => l === 1 ? Promise.resolve(null) : dir.readBlock(l),
  };
  const got = await collect(holey, ctx);
  assert.equal(got.length, all.length - inBlock1.length);
  // A huge sparse directory with nextMappedBlock: finishes at once.
  const sparse: DirectorySource = {
    ...dir,
    size: 2 ** 40 * 1024,
    readBlock: (l) => l === 0 ? dir.readBlock(0) : Promise.resolve(null),
    nextMappedBlock: (from) => Promise.resolve(from === 0 ? 0 : null),
  };
  const first = await collect(sparse, ctx);
  assert.equal(first.length, parseDirectoryBlock(raw.block(phys[0]), ctx).length);
});

Deno.test("rec_len encoding for 64 KiB blocks and dirRecLen", () => {
  assert.equal(dirRecLen(0), 8);
  assert.equal(dirRecLen(1), 12);
  assert.equal(dirRecLen(4), 12);
  assert.equal(dirRecLen(5), 16);
  assert.equal(dirRecLen(255), 264);
  for (const bs of [1024, 4096, 65536]) {
    for (const len of [12, 16, 1020, bs - 12, bs]) {
      assert.equal(recLenFromDisk(recLenToDisk(len, bs), bs), len, `${len} in ${bs}`);
    }
  }
  assert.equal(recLenFromDisk(0, 65536), 65536);
  assert.equal(recLenFromDisk(0xffff, 65536), 65536);
});

testWith("parsers throw only Ext4Error on random and mutated input", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/f.img`;
  await makeImage(img, {
    size: "8M",
    args: ["-b", "1024", "-O", "inline_data"],
    populate: async (m) => {
      await Deno.mkdir(`${m}/d`);
      for (let i = 0; i < 30; i++) await Deno.writeTextFile(`${m}/d/entry-${i}`, "");
      await Deno.mkdir(`${m}/i`);
      for (let i = 0; i < 4; i++) await Deno.writeTextFile(`${m}/i/x${i}`, "");
    },
  });
  const raw = await RawImage.load(img);
  const sbs = [raw.sb, withoutMetadataCsum(raw)];
  const dir = await raw.directory(await raw.ino("/d"));
  const block0 = (await dir.readBlock(0))!;
  const inline = (await raw.directory(await raw.ino("/i"))).inlineData!;
  const onlyExt4 = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
    }
  };
  const mutate = (base: Uint8Array) =>
    fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(255)), { maxLength: 12 }).map((muts) => {
      const b = base.slice();
      for (const [i, v] of muts) b[i] = v;
      return b;
    });
  fc.assert(
    fc.property(mutate(block0), fc.boolean(), fc.nat(1), (b, htree, s) => {
      onlyExt4(() =>
        parseDirectoryBlock(b, { sb: sbs[s] }, {
          ino: dir.ino,
          generation: 0,
          logical: 0,
          isHtree: htree,
        })
      );
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1024, maxLength: 1024 }), fc.nat(1), (b, s) => {
      onlyExt4(() => parseDirectoryBlock(b, { sb: sbs[s] }));
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(
      fc.oneof(mutate(inline), fc.uint8Array({ minLength: 0, maxLength: 200 })),
      (b) => onlyExt4(() => parseInlineDirectory(b, 12, { sb: raw.sb })),
    ),
    { numRuns: 2000 },
  );
  // A directory of random blocks, sizes and holes: iteration ends and fails only cleanly.
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.option(fc.uint8Array({ minLength: 1024, maxLength: 1024 })), { maxLength: 5 }),
      fc.nat(8 * 1024),
      fc.boolean(),
      async (blocks, size, htree) => {
        const src: DirectorySource = {
          ino: 12,
          generation: 0,
          size,
          blockSize: 1024,
          inlineData: null,
          isHtree: htree,
          readBlock: (l) => Promise.resolve(blocks[l] ?? null),
        };
        try {
          await collect(src, { sb: sbs[1] });
        } catch (e) {
          if (!(e instanceof Ext4Error)) throw e;
        }
      },
    ),
    { numRuns: 300 },
  );
});

testWith("64 KiB blocks: rec_len 65536 (stored as 0) decodes; listing matches debugfs", [
  "mkfs.ext4",
  "debugfs",
], async () => {
  // The kernel here cannot mount 64 KiB blocks; debugfs builds the directory instead.
  await using tmp = await tempDir();
  const img = `${tmp.path}/b64.img`;
  await runOk("mkfs.ext4", [
    "-q",
    "-F",
    "-b",
    "65536",
    "-N",
    "4096",
    "-O",
    "^metadata_csum,^has_journal",
    img,
    "64M",
  ]);
  const make = ["mkdir d", "cd d"];
  for (let i = 1; i <= 3000; i++) make.push(`write /dev/null file-number-${i}`);
  // Empty the second block completely: one unused record spans all 65536 bytes.
  for (let i = 2500; i <= 3000; i++) make.push(`rm file-number-${i}`);
  await Deno.writeTextFile(`${tmp.path}/cmds`, make.join("\n") + "\n");
  await runOk("debugfs", ["-w", "-f", `${tmp.path}/cmds`, img]);
  const listing = await runOk("debugfs", ["-R", "ls -p /d", img]);
  const expected = new Map(
    listing.trim().split("\n").map((l) => l.split("/")).map((f) => [f[5], Number(f[1])] as const)
      .filter(([, ino]) => ino !== 0), // debugfs also shows the unused record's old name
  );
  const raw = await RawImage.load(img);
  const dir = await raw.directory(await raw.ino("/d"));
  assert.equal(dir.size, 2 * 65536);
  const second = (await dir.readBlock(1))!;
  assert.equal(new DataView(second.buffer).getUint16(4, true), 0, "rec_len stored as 0");
  assert.equal(parseDirectoryBlock(second, { sb: raw.sb }).length, 0);
  const recs = await collect(dir, { sb: raw.sb });
  assert.deepEqual(asMap(recs), expected);
  assert.equal(recs.length, 2 + 2499);
});

/** Makes files with arbitrary byte names and lists (hex name, inode) as the kernel does. */
const ODD_NAMES = `
import os, sys, json
d = sys.argv[1].encode()
names = [b"\\xff\\xfe", b"a\\nb", b"n" * 255, b"\\xc3\\x28", b" space ", b"-dash", b"\\x01",
         b"\\xe6\\x97\\xa5\\xe6\\x9c\\xac", b"." * 3, b"\\\\"]
for i in range(40):
    names.append(bytes([(i * 37 + k) % 254 + 1 for k in range(1 + i * 6)]).replace(b"/", b"_").replace(b"\\x00", b"_"))
for n in names:
    with open(os.path.join(d, n), "wb"):
        pass
print(json.dumps({e.name.hex(): e.inode() for e in os.scandir(d)}))
`;

testWith("names are bytes: invalid UTF-8, control characters, 255 bytes", [
  ...NEEDS,
  "python3",
], async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/n.img`;
  let expected: Record<string, number> = {};
  await makeImage(img, {
    size: "8M",
    args: ["-b", "1024"],
    populate: async (m) => {
      await Deno.mkdir(`${m}/odd`);
      expected = JSON.parse(await runOk("python3", ["-c", ODD_NAMES, `${m}/odd`]));
    },
  });
  const raw = await RawImage.load(img);
  const dir = await raw.directory(await raw.ino("/odd"));
  const got: Record<string, number> = {};
  for await (const r of iterateDirectory(dir, { sb: raw.sb })) {
    const name = Array.from(r.name, (b) => b.toString(16).padStart(2, "0")).join("");
    if (name !== "2e" && name !== "2e2e") got[name] = r.ino;
  }
  assert.deepEqual(got, expected);
  assert.ok(Object.keys(got).some((h) => h.length === 510), "a 255-byte name");
  // Hashed lookup of the same byte names (hashes see bytes >= 0x80 as signed chars).
  assert.ok(dir.isHtree, "long names made the directory indexed");
  for (const [h, ino] of Object.entries(expected)) {
    const name = Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
    assert.equal((await htreeLookup(dir, name, { sb: raw.sb }))?.ino, ino, h);
  }
});
