import assert from "node:assert/strict";
import fc from "fast-check";
import {
  blockBitmapChecksumValid,
  blocksInGroup,
  countZeros,
  findOne,
  findZero,
  findZeroRun,
  hasGroupChecksums,
  inodeBitmapChecksumValid,
  readBlockBitmap,
  readInodeBitmap,
  setBits,
  testBit,
} from "../lib/ondisk/bitmap.ts";
import { groupFirstBlock, GroupFlags } from "../lib/ondisk/group_descriptor.ts";
import { run, tempDir, testWith } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, loadFs, mkfsImage, parseFsck } from "./write_fixtures.ts";

// ---- bit operations against a naive model ----

const bitmapArb = fc.uint8Array({ minLength: 1, maxLength: 64 });

Deno.test("findZero/findOne/countZeros agree with a bit-by-bit scan", () => {
  fc.assert(
    fc.property(bitmapArb, fc.nat(), fc.nat(), (bm, a, b) => {
      const n = bm.length * 8;
      const from = a % (n + 1);
      const to = from + (b % (n - from + 1));
      let zero = -1;
      for (let i = from; i < to; i++) {
        if (!testBit(bm, i)) {
          zero = i;
          break;
        }
      }
      assert.equal(findZero(bm, from, to), zero);
      let one = to;
      for (let i = from; i < to; i++) {
        if (testBit(bm, i)) {
          one = i;
          break;
        }
      }
      assert.equal(findOne(bm, from, to), one);
      let zeros = 0;
      for (let i = 0; i < to; i++) if (!testBit(bm, i)) zeros++;
      assert.equal(countZeros(bm, to), zeros);
    }),
  );
});

Deno.test("findZeroRun finds the first run of the wanted length", () => {
  fc.assert(
    fc.property(bitmapArb, fc.nat(), fc.integer({ min: 1, max: 40 }), (bm, a, len) => {
      const n = bm.length * 8;
      const from = a % n;
      let expect = -1;
      for (let s = from; s + len <= n && expect < 0; s++) {
        let ok = true;
        for (let i = s; i < s + len; i++) if (testBit(bm, i)) ok = false;
        if (ok) expect = s;
      }
      assert.equal(findZeroRun(bm, from, n, len), expect);
    }),
  );
});

Deno.test("setBits sets exactly the range", () => {
  const bm = new Uint8Array(4);
  setBits(bm, 3, 13);
  assert.deepEqual([...bm], [0b11111000, 0b00011111, 0, 0]);
});

// ---- bitmaps of real images ----

/** Per group, the free blocks and free inodes dumpe2fs (libext2fs) sees, as sets. */
async function dumpe2fsFree(
  dir: string,
  bytes: Uint8Array,
): Promise<{ blocks: Set<number>[]; inodes: Set<number>[] }> {
  const path = `${dir}/dump.img`;
  await Deno.writeFile(path, bytes);
  const r = await run("dumpe2fs", [path]);
  await Deno.remove(path);
  assert.equal(r.code, 0, r.stderr);
  const blocks: Set<number>[] = [];
  const inodes: Set<number>[] = [];
  const expand = (list: string) => {
    const s = new Set<number>();
    for (const part of list.split(",")) {
      const t = part.trim();
      if (!t) continue;
      const [a, b] = t.split("-").map(Number);
      for (let i = a; i <= (b ?? a); i++) s.add(i);
    }
    return s;
  };
  for (const line of r.stdout.split("\n")) {
    let m;
    if ((m = line.match(/^\s+Free blocks: (.*)$/))) blocks.push(expand(m[1]));
    if ((m = line.match(/^\s+Free inodes: (.*)$/))) inodes.push(expand(m[1]));
  }
  return { blocks, inodes };
}

for (const layout of LAYOUTS) {
  testWith(
    `bitmaps of ${layout.name}: effective bitmaps, counts and checksums match what mkfs wrote`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const img = await mkfsImage(dir.path, layout);
      const { sb, gdt, cache } = await loadFs(img);
      const dump = await dumpe2fsFree(dir.path, img);
      assert.equal(dump.blocks.length, sb.groupCount);
      let uninit = 0;
      for (let g = 0; g < sb.groupCount; g++) {
        const gd = gdt.get(g);
        const bb = await readBlockBitmap(cache, sb, gdt, g);
        const ib = await readInodeBitmap(cache, sb, gdt, g);
        const first = groupFirstBlock(sb, g);
        const size = blocksInGroup(sb, g);
        const free = new Set<number>();
        for (let i = 0; i < size; i++) if (!testBit(bb, i)) free.add(first + i);
        assert.deepEqual(free, dump.blocks[g], `free blocks of group ${g}`);
        assert.equal(countZeros(bb, size), gd.freeBlocksCount, `free count of group ${g}`);
        for (let i = size; i < sb.blockSize * 8; i++) assert.ok(testBit(bb, i), `padding bit ${i}`);
        const freeInodes = new Set<number>();
        for (let i = 0; i < sb.inodesPerGroup; i++) {
          if (!testBit(ib, i)) freeInodes.add(g * sb.inodesPerGroup + i + 1);
        }
        assert.deepEqual(freeInodes, dump.inodes[g], `free inodes of group ${g}`);
        assert.equal(countZeros(ib, sb.inodesPerGroup), gd.freeInodesCount);
        const bUninit = hasGroupChecksums(sb) && (gd.flags & GroupFlags.BLOCK_UNINIT) !== 0;
        const iUninit = hasGroupChecksums(sb) && (gd.flags & GroupFlags.INODE_UNINIT) !== 0;
        if (bUninit) uninit++;
        if (!bUninit) assert.ok(blockBitmapChecksumValid(sb, gd, bb), `block csum ${g}`);
        if (!iUninit) assert.ok(inodeBitmapChecksumValid(sb, gd, ib), `inode csum ${g}`);
      }
      if (hasGroupChecksums(sb)) assert.ok(uninit > 0, "the layout has BLOCK_UNINIT groups");
    },
  );

  testWith(
    `bitmaps of ${layout.name}: the first use of every uninit group gives bitmaps e2fsck agrees with`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const img = await mkfsImage(dir.path, layout);
      const fs = await loadFs(img);
      const { sb, gdt, alloc } = fs;
      const taken: number[] = [];
      const inodes: number[] = [];
      const tx = fs.cache.begin();
      for (let g = 0; g < sb.groupCount; g++) {
        const gd = gdt.get(g);
        const flags = gd.flags;
        if (
          gd.freeBlocksCount > 0 && (!hasGroupChecksums(sb) || (flags & GroupFlags.BLOCK_UNINIT))
        ) {
          // The last block of the group: far from anything mkfs placed.
          const goal = groupFirstBlock(sb, g) + blocksInGroup(sb, g) - 1;
          const [e] = await alloc.allocateBlocks(tx, goal, 1);
          assert.equal(alloc.groupOfBlock(e.start), g);
          taken.push(e.start);
        }
        // Files go to their parent's group when it has free inodes and free blocks.
        if (
          gd.freeInodesCount > 0 && gd.freeBlocksCount > 0 &&
          (!hasGroupChecksums(sb) || (flags & GroupFlags.INODE_UNINIT))
        ) {
          const ino = await alloc.allocateInode(tx, { dir: false, parentGroup: g });
          assert.equal(alloc.groupOfInode(ino), g);
          inodes.push(ino);
        }
      }
      await tx.commit();
      assert.ok(taken.length > 0 && inodes.length > 0, "some groups were first used");
      for (const b of taken) {
        assert.equal(gdt.get(alloc.groupOfBlock(b)).flags & GroupFlags.BLOCK_UNINIT, 0);
      }
      for (const i of inodes) {
        const flags = gdt.get(alloc.groupOfInode(i)).flags;
        assert.equal(flags & (GroupFlags.INODE_UNINIT | GroupFlags.BLOCK_UNINIT), 0);
      }
      const r = parseFsck((await fsck(dir.path, fs.dev.bytes)).output);
      assert.deepEqual(r.other, []);
      assert.deepEqual(r.blockMinus.sort((a, b) => a - b), taken.sort((a, b) => a - b));
      assert.deepEqual(r.blockPlus, []);
      assert.deepEqual(r.inodeMinus.sort((a, b) => a - b), inodes.sort((a, b) => a - b));
      assert.deepEqual(r.inodePlus, []);
      assert.equal(r.groupDirs.size, 0);
      // And freeing them again leaves a clean filesystem.
      const tx2 = fs.cache.begin();
      for (const b of taken) await alloc.freeBlocks(tx2, b, 1);
      for (const i of inodes) await alloc.freeInode(tx2, i, { dir: false });
      await tx2.commit();
      const clean = await fsck(dir.path, fs.dev.bytes);
      assert.equal(clean.code, 0, clean.output);
    },
  );
}
