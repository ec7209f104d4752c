import assert from "node:assert/strict";
import fc from "fast-check";
import { CorruptError, Ext4Error } from "../lib/errors.ts";
import {
  hasInlineData,
  INLINE_IBLOCK_BYTES,
  parseInlineDataXattr,
  readInlineData,
  readInlineFile,
} from "../lib/ondisk/inline_data.ts";
import { makeImage, tempDir, testWith } from "./helpers.ts";
import { RawImage } from "./raw_image.ts";

const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "debugfs"];

function content(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
}

testWith("inline files read back exactly what the kernel wrote", NEEDS, async () => {
  await using tmp = await tempDir();
  const img = `${tmp.path}/i.img`;
  const sizes = [0, 1, 59, 60, 61, 100, 120]; // 256-byte inodes hold up to 128 inline bytes
  await makeImage(img, {
    size: "8M",
    args: ["-O", "inline_data", "-I", "256"],
    populate: async (m) => {
      for (const n of sizes) await Deno.writeFile(`${m}/f${n}`, content(n));
      await Deno.writeFile(`${m}/big`, content(5000)); // too big: stored in blocks
    },
  });
  const raw = await RawImage.load(img);
  const v = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (const n of sizes) {
    const ino = await raw.ino(`/f${n}`);
    const inode = raw.inode(ino);
    if (n === 0) continue; // the kernel may or may not keep an empty file inline
    assert.ok(hasInlineData(inode), `f${n} is inline`);
    const size = v(inode).getUint32(4, true);
    assert.equal(size, n);
    assert.deepEqual(readInlineFile(raw.sb, ino, inode, size), content(n), `f${n}`);
    const extra = parseInlineDataXattr(raw.sb, ino, inode);
    assert.ok(extra !== null, "system.data exists on every inline inode");
    assert.equal(extra.length, Math.max(0, n - INLINE_IBLOCK_BYTES), `f${n} system.data size`);
    assert.equal(readInlineData(raw.sb, ino, inode).length, INLINE_IBLOCK_BYTES + extra.length);
    // An i_size beyond the inline bytes is corrupt.
    assert.throws(
      () => readInlineFile(raw.sb, ino, inode, INLINE_IBLOCK_BYTES + extra.length + 1),
      (e: unknown) => e instanceof CorruptError && e.message.includes(`inode ${ino}`),
    );
  }
  const big = raw.inode(await raw.ino("/big"));
  assert.ok(!hasInlineData(big));
  assert.equal(parseInlineDataXattr(raw.sb, 99, big), null);

  // Mutations of the xattr area of an inline inode: only Ext4Errors.
  const ino = await raw.ino("/f120");
  const inode = raw.inode(ino);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 128, max: inode.length - 1 }), fc.nat(255)), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.nat(400),
      (muts, size) => {
        const b = inode.slice();
        for (const [i, x] of muts) b[i] = x;
        try {
          readInlineFile(raw.sb, ino, b, size);
        } catch (e) {
          if (!(e instanceof Ext4Error)) throw e;
        }
      },
    ),
    { numRuns: 2000 },
  );
  assert.throws(() => readInlineData(raw.sb, ino, inode.subarray(0, 64)), CorruptError);
});
