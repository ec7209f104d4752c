import assert from "node:assert/strict";
import fc from "fast-check";
import { crc16, crc32c, crc32cU32, crc32cWords } from "../lib/ondisk/checksum.ts";

const enc = (s: string) => new TextEncoder().encode(s);

// Bitwise reference implementation, independent of the table-driven one.
function crc32cBitwise(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

Deno.test("crc32c: standard check value of '123456789'", () => {
  assert.equal((~crc32c(0xffffffff, enc("123456789"))) >>> 0, 0xe3069283);
});

Deno.test("crc32c: empty input returns the seed", () => {
  assert.equal(crc32c(0x12345678, new Uint8Array()), 0x12345678);
});

Deno.test("crc32c: slicing-by-16 equals the bitwise definition for any input and split", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), fc.integer(), (data, cut, seed) => {
      const at = Math.min(cut, data.length);
      const whole = crc32c(seed >>> 0, data);
      assert.equal(whole, crc32cBitwise(seed >>> 0, data));
      assert.equal(crc32c(crc32c(seed >>> 0, data.subarray(0, at)), data.subarray(at)), whole);
    }),
  );
});

Deno.test("crc32c: blocks at any alignment equal the bitwise definition (word loop and tails)", () => {
  // Journal blocks are 1-64 KiB views at any offset into a larger buffer: cover the
  // sixteen-byte loop, the word and byte tails and the unaligned head on lengths up to 4 KiB.
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 64, maxLength: 4200 }),
      fc.nat(7),
      fc.nat(31),
      fc.integer(),
      (raw, head, tail, seed) => {
        const view = raw.subarray(Math.min(head, raw.length), Math.max(head, raw.length - tail));
        assert.equal(crc32c(seed >>> 0, view), crc32cBitwise(seed >>> 0, view));
      },
    ),
    { numRuns: 200 },
  );
  const block = new Uint8Array(65536).map((_, i) => (i * 2654435761) >>> 13);
  assert.equal(crc32c(0xffffffff, block), crc32cBitwise(0xffffffff, block));
});

Deno.test("crc32cU32 equals crc32c of the little-endian bytes", () => {
  fc.assert(fc.property(fc.integer(), fc.nat(), (seed, v) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    assert.equal(crc32cU32(seed >>> 0, v >>> 0), crc32c(seed >>> 0, b));
  }));
});

Deno.test("crc16: CRC-16/ARC check value", () => {
  assert.equal(crc16(0, enc("123456789")), 0xbb3d);
  // CRC-16/MODBUS is the same polynomial seeded with 0xffff.
  assert.equal(crc16(0xffff, enc("123456789")), 0x4b37);
});

Deno.test("crc32cWords equals crc32c of the bytes with the masked word's bits cleared", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 4, maxLength: 128 }),
      fc.integer(),
      fc.nat(),
      fc.integer(),
      (raw, seed, at, mask) => {
        const bytes = raw.slice(0, raw.length & ~3);
        const words = new Int32Array(bytes.buffer, 0, bytes.length / 4);
        const maskAt = at % words.length;
        const expected = bytes.slice();
        const v = new DataView(expected.buffer);
        v.setInt32(maskAt * 4, v.getInt32(maskAt * 4, true) & mask, true);
        assert.equal(
          crc32cWords(seed >>> 0, words, 0, words.length, maskAt, mask),
          crc32c(seed >>> 0, expected),
        );
        // A window of the words, unmasked.
        if (words.length > 2) {
          assert.equal(
            crc32cWords(seed >>> 0, words, 1, words.length - 2),
            crc32c(seed >>> 0, bytes.subarray(4, bytes.length - 4)),
          );
        }
      },
    ),
  );
});
