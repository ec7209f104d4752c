import assert from "node:assert/strict";
import fc from "fast-check";
import { buildBlockMap } from "../lib/ext4/indirect.ts";
import {
  dirBlockChecksumValid,
  DirFileType,
  emptyDirBlock,
  insertDirEntry,
  newDirectoryBlock,
  parseDirBlock,
  removeDirEntry,
  scanDirBlock,
  setDirBlockChecksum,
} from "../lib/ondisk/dirent.ts";
import type { Ext4Error } from "../lib/errors.ts";
import { buildExtentTree } from "../lib/ext4/extents.ts";
import { Incompat, RoCompat } from "../lib/ondisk/features.ts";
import { type NewFileData, writeNewFileData } from "../lib/ext4/file_write.ts";
import { decodeInode, encodeInode, type InodeFields, InodeFlags } from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { Superblock } from "../lib/ondisk/superblock.ts";
import type { Transaction } from "../lib/txn/transaction.ts";
import { tempDir, testWith, withKernelMount } from "./helpers.ts";
import { pattern } from "./file_fixtures.ts";
import {
  fsck,
  IMAGE_TOOLS,
  LAYOUTS,
  type LoadedFs,
  loadFs,
  mkfsImage,
  testInodeFields,
} from "./write_fixtures.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function syntheticSuperblock(csum: boolean, blockSize = 1024): Superblock {
  const b = new Uint8Array(1024);
  const v = new DataView(b.buffer);
  v.setUint16(0x38, 0xef53, true);
  v.setUint32(0x4c, 1, true);
  v.setUint32(0x18, Math.log2(blockSize / 1024), true);
  v.setUint16(0x58, 256, true);
  v.setUint32(0x60, Incompat.FILETYPE, true);
  v.setUint32(0x64, csum ? RoCompat.METADATA_CSUM : 0, true);
  return new Superblock(b);
}

Deno.test("directory blocks: random inserts and removals agree with a model and keep the block well-formed", () => {
  const nameArb = fc.stringMatching(/^[a-z0-9._-]{1,40}$/).filter((n) => n !== "." && n !== "..");
  const opArb = fc.oneof(
    fc.record({ insert: fc.constant(true), name: nameArb, ino: fc.integer({ min: 11, max: 1e6 }) }),
    fc.record({ insert: fc.constant(false), pick: fc.nat() }),
  );
  for (const csum of [true, false]) {
    const sb = syntheticSuperblock(csum);
    fc.assert(fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
      const block = newDirectoryBlock(sb, 12, 2);
      const model = new Map<string, number>([[".", 12], ["..", 2]]);
      for (const op of ops) {
        if (op.insert) {
          if (model.has(op.name)) {
            assert.throws(
              () => insertDirEntry(sb, block, { ino: op.ino, name: enc.encode(op.name), type: 1 }),
              (e: Ext4Error) => e.code === "EXISTS",
            );
            continue;
          }
          const need = (8 + op.name.length + 3) & ~3;
          const room = parseDirBlock(sb, block).some((e) =>
            e.ino === 0 ? e.recLen >= need : e.recLen - ((8 + e.name.length + 3) & ~3) >= need
          );
          assert.deepEqual(scanDirBlock(sb, block, enc.encode(op.name)), { ino: 0, room });
          const ok = insertDirEntry(sb, block, { ino: op.ino, name: enc.encode(op.name), type: 1 });
          assert.equal(ok, room, "refused exactly when no record has room");
          if (ok) model.set(op.name, op.ino);
        } else {
          const names = [...model.keys()].filter((n) => n !== "." && n !== "..");
          if (names.length === 0) continue;
          const name = names[op.pick % names.length];
          assert.equal(removeDirEntry(sb, block, enc.encode(name)), model.get(name));
          model.delete(name);
        }
        const entries = parseDirBlock(sb, block);
        assert.deepEqual(
          new Map(entries.filter((e) => e.ino !== 0).map((e) => [dec.decode(e.name), e.ino])),
          model,
        );
        for (const [name, ino] of model) {
          assert.equal(scanDirBlock(sb, block, enc.encode(name)).ino, ino);
        }
        assert.equal(dec.decode(entries[0].name), ".");
        assert.equal(dec.decode(entries[1].name), "..");
      }
      setDirBlockChecksum(sb, 12, 99, block);
      assert.ok(dirBlockChecksumValid(sb, 12, 99, block));
      block[20] ^= 1;
      assert.equal(dirBlockChecksumValid(sb, 12, 99, block), !csum);
    }));
  }
  const sb = syntheticSuperblock(true);
  const block = emptyDirBlock(sb);
  assert.deepEqual(parseDirBlock(sb, block).map((e) => [e.ino, e.recLen]), [[0, 1012]]);
  assert.ok(insertDirEntry(sb, block, { ino: 5, name: enc.encode("x"), type: 1 }));
  assert.throws(
    () => insertDirEntry(sb, block, { ino: 5, name: new Uint8Array(256), type: 1 }),
    /255/,
  );
  assert.throws(
    () => insertDirEntry(sb, block, { ino: 5, name: enc.encode("a/b"), type: 1 }),
    /'\/'/,
  );
  const bad = Uint8Array.from(block);
  bad[4] = 13;
  assert.throws(() => parseDirBlock(sb, bad), /bad entry/);
});

/** The one block of a small directory (extent depth 0 or direct pointer). */
function firstBlockOf(f: InodeFields): number {
  const v = new DataView(f.block.buffer, f.block.byteOffset, f.block.byteLength);
  if (f.flags & InodeFlags.EXTENTS) {
    assert.equal(v.getUint16(6, true), 0, "depth 0");
    return v.getUint32(12 + 8, true) + v.getUint16(12 + 6, true) * 2 ** 32;
  }
  return v.getUint32(0, true);
}

function inodeFields(
  mode: number,
  size: number,
  links: number,
  data: NewFileData,
  generation: number,
): InodeFields {
  return testInodeFields({
    mode,
    size,
    links,
    generation,
    time: { sec: 1700000000, nsec: 42 },
    blocks512: data.blocks512,
    flags: data.flags,
    block: data.iBlock,
  });
}

/** Adds an entry to a one-block directory and refreshes its checksum. */
async function addEntry(
  fs: LoadedFs,
  tx: Transaction,
  dirIno: number,
  name: string,
  ino: number,
  type: number,
) {
  const { sb, gdt } = fs;
  const dir = decodeInode(sb, await readInodeRaw(tx, sb, gdt, dirIno));
  const block = await tx.getWritable(firstBlockOf(dir));
  assert.ok(insertDirEntry(sb, block, { ino, name: enc.encode(name), type }));
  setDirBlockChecksum(sb, dirIno, dir.generation, block);
}

async function mkdir(fs: LoadedFs, tx: Transaction, parent: number, name: string): Promise<number> {
  const { sb, gdt, alloc } = fs;
  const ino = await alloc.allocateInode(tx, {
    dir: true,
    parentGroup: alloc.groupOfInode(parent),
    topLevel: parent === 2,
  });
  const generation = ino * 3;
  const [blk] = await alloc.allocateBlocks(tx, 0, 1);
  const img = tx.newBlock(blk.start);
  img.set(newDirectoryBlock(sb, ino, parent));
  setDirBlockChecksum(sb, ino, generation, img);
  const extents = [{ logical: 0, physical: blk.start, length: 1 }];
  let data: NewFileData;
  if (sb.incompat & Incompat.EXTENTS) {
    const t = await buildExtentTree(tx, alloc, sb, { ino, generation, extents });
    data = {
      iBlock: t.iBlock,
      flags: InodeFlags.EXTENTS,
      blocks512: sb.blockSize / 512,
      extents,
      mapBlocks: [],
    };
  } else {
    const m = await buildBlockMap(tx, alloc, sb, { extents });
    data = { iBlock: m.iBlock, flags: 0, blocks512: sb.blockSize / 512, extents, mapBlocks: [] };
  }
  await writeInode(
    tx,
    sb,
    gdt,
    ino,
    encodeInode(sb, ino, inodeFields(0o40755, sb.blockSize, 2, data, generation)),
  );
  await addEntry(fs, tx, parent, name, ino, DirFileType.DIR);
  // The parent gains a link from "..".
  const raw = await readInodeRaw(tx, sb, gdt, parent);
  const pf = decodeInode(sb, raw);
  await writeInode(
    tx,
    sb,
    gdt,
    parent,
    encodeInode(sb, parent, { ...pf, linksCount: pf.linksCount + 1 }, raw),
  );
  return ino;
}

async function createFile(
  fs: LoadedFs,
  tx: Transaction,
  parent: number,
  name: string,
  contents: Uint8Array,
) {
  const { sb, gdt, alloc } = fs;
  const ino = await alloc.allocateInode(tx, {
    dir: false,
    parentGroup: alloc.groupOfInode(parent),
  });
  const generation = ino * 5;
  const data = await writeNewFileData(tx, alloc, sb, { ino, generation, data: contents });
  await writeInode(
    tx,
    sb,
    gdt,
    ino,
    encodeInode(sb, ino, inodeFields(0o100644, contents.length, 1, data, generation)),
  );
  await addEntry(fs, tx, parent, name, ino, DirFileType.REG_FILE);
  return { ino, data };
}

async function kernelTree(image: string): Promise<Map<string, Uint8Array | "dir">> {
  return await withKernelMount(image, async (mnt) => {
    const out = new Map<string, Uint8Array | "dir">();
    const walk = async (rel: string) => {
      for await (const e of Deno.readDir(`${mnt}/${rel}`)) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (p === "lost+found") continue;
        if (e.isDirectory) {
          out.set(p, "dir");
          await walk(p);
        } else out.set(p, await Deno.readFile(`${mnt}/${p}`));
      }
    };
    await walk("");
    return out;
  }, { readOnly: true });
}

for (const layout of [LAYOUTS[2], LAYOUTS[3], LAYOUTS[0], LAYOUTS[4]]) {
  testWith(
    `directories on ${layout.name}: mkdir, create and unlink with the write path are e2fsck-clean and the kernel lists them`,
    [...IMAGE_TOOLS, "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const fs = await loadFs(await mkfsImage(dir.path, layout));
      const tx = fs.cache.begin();
      const sub = await mkdir(fs, tx, 2, "sub");
      const deeper = await mkdir(fs, tx, sub, "deeper");
      const files = new Map<string, Uint8Array>([
        ["top", pattern(1, 5000)],
        ["sub/a", pattern(2, 123)],
        ["sub/b", pattern(3, 3 * fs.sb.blockSize)],
        ["sub/deeper/c", new Uint8Array(0)],
      ]);
      const made = new Map<string, { ino: number; data: NewFileData }>();
      for (const [path, contents] of files) {
        const parts = path.split("/");
        const parent = parts.length === 1 ? 2 : parts.length === 2 ? sub : deeper;
        made.set(path, await createFile(fs, tx, parent, parts.at(-1)!, contents));
      }
      await tx.commit();
      const path = `${dir.path}/d.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      let check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const want = new Map<string, Uint8Array | "dir">([
        ["sub", "dir"],
        ["sub/deeper", "dir"],
        ...files,
      ]);
      assert.deepEqual(await kernelTree(path), want);

      // Unlink sub/a: entry, blocks and inode go.
      const tx2 = fs.cache.begin();
      const { sb, gdt, alloc } = fs;
      const subFields = decodeInode(sb, await readInodeRaw(tx2, sb, gdt, sub));
      const block = await tx2.getWritable(firstBlockOf(subFields));
      const a = made.get("sub/a")!;
      assert.equal(removeDirEntry(sb, block, enc.encode("a")), a.ino);
      setDirBlockChecksum(sb, sub, subFields.generation, block);
      for (
        const e of [
          ...a.data.extents.map((x) => ({ start: x.physical, length: x.length })),
          ...a.data.mapBlocks,
        ]
      ) {
        await alloc.freeBlocks(tx2, e.start, e.length);
      }
      await alloc.freeInode(tx2, a.ino, { dir: false });
      const raw = await readInodeRaw(tx2, sb, gdt, a.ino);
      const af = decodeInode(sb, raw);
      await writeInode(
        tx2,
        sb,
        gdt,
        a.ino,
        encodeInode(sb, a.ino, { ...af, linksCount: 0, dtime: 1700000100 }, raw),
      );
      await tx2.commit();
      await Deno.writeFile(path, fs.dev.bytes);
      check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      want.delete("sub/a");
      assert.deepEqual(await kernelTree(path), want);
    },
  );
}
