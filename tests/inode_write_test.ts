import assert from "node:assert/strict";
import fc from "fast-check";
import { emptyExtentRoot } from "../lib/ondisk/extent.ts";
import { Incompat, RoCompat } from "../lib/ondisk/features.ts";
import {
  decodeInode,
  decodeTime,
  encodeInode,
  encodeTime,
  inodeChecksumValid,
  type InodeFields,
  InodeFlags,
} from "../lib/ondisk/inode.ts";
import { readInodeRaw, writeInode } from "../lib/ext4/inode.ts";
import { Superblock } from "../lib/ondisk/superblock.ts";
import { runOk, tempDir, testWith } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, type Layout, LAYOUTS, loadFs, mkfsImage } from "./write_fixtures.ts";

/** A synthetic superblock: 256-byte inodes, metadata_csum, huge_file. */
function syntheticSuperblock(inodeSize = 256): Superblock {
  const b = new Uint8Array(1024);
  const v = new DataView(b.buffer);
  v.setUint16(0x38, 0xef53, true);
  v.setUint32(0x4c, 1, true);
  v.setUint32(0x18, 2, true);
  v.setUint16(0x58, inodeSize, true);
  v.setUint32(0x64, RoCompat.METADATA_CSUM | RoCompat.HUGE_FILE, true);
  b.set(Array.from({ length: 16 }, (_, i) => i * 17), 0x68);
  return new Superblock(b);
}

const timeArb = fc.record({
  sec: fc.integer({ min: -(2 ** 31), max: 2 ** 34 - 2 ** 31 - 1 }),
  nsec: fc.integer({ min: 0, max: 999999999 }),
}, { noNullPrototype: true });

const fieldsArb: fc.Arbitrary<InodeFields> = fc.record({
  mode: fc.integer({ min: 0, max: 0xffff }),
  uid: fc.integer({ min: 0, max: 0xffffffff }),
  gid: fc.integer({ min: 0, max: 0xffffffff }),
  size: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  linksCount: fc.integer({ min: 0, max: 0xffff }),
  blocks512: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  flags: fc.integer({ min: 0, max: 0xffffffff }).map((f) => f & ~InodeFlags.HUGE_FILE),
  generation: fc.integer({ min: 0, max: 0xffffffff }),
  atime: timeArb,
  ctime: timeArb,
  mtime: timeArb,
  crtime: timeArb,
  dtime: fc.integer({ min: 0, max: 0xffffffff }),
  fileAcl: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  block: fc.uint8Array({ minLength: 60, maxLength: 60 }),
  version: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  projid: fc.integer({ min: 0, max: 0xffffffff }),
}, { noNullPrototype: true });

Deno.test("times: seconds from 1901 to 2446 with nanoseconds survive encoding", () => {
  fc.assert(fc.property(timeArb, (t) => {
    const { lo, extra } = encodeTime(t);
    assert.deepEqual(decodeTime(lo, extra), t);
  }));
  assert.deepEqual(encodeTime({ sec: -1, nsec: 0 }), { lo: 0xffffffff, extra: 0 });
  assert.deepEqual(encodeTime({ sec: 2 ** 31, nsec: 1 }), { lo: 0x80000000, extra: 4 | 1 });
  assert.throws(() => encodeTime({ sec: 2 ** 34, nsec: 0 }), /outside/);
  assert.throws(() => encodeTime({ sec: 0, nsec: 1e9 }), /invalid time/);
});

Deno.test("inode records: decode(encode(fields)) = fields, with a valid checksum, on 256- and 128-byte inodes", () => {
  const sb = syntheticSuperblock();
  fc.assert(fc.property(fieldsArb, fc.integer({ min: 1, max: 2 ** 32 - 1 }), (f, ino) => {
    const raw = encodeInode(sb, ino, f);
    assert.equal(raw.length, 256);
    assert.ok(inodeChecksumValid(sb, ino, raw));
    assert.deepEqual(decodeInode(sb, raw), f);
    // Any flipped byte is caught by the checksum.
    const bad = Uint8Array.from(raw);
    bad[(ino * 7) % 256] ^= 0x10;
    assert.ok(!inodeChecksumValid(sb, ino, bad));
  }));
  const small = syntheticSuperblock(128);
  fc.assert(fc.property(fieldsArb, (f) => {
    const t = { sec: f.atime.sec | 0, nsec: 0 };
    const g = { ...f, atime: t, ctime: t, mtime: t, crtime: { sec: 0, nsec: 0 }, projid: 0 };
    g.version %= 2 ** 32;
    const raw = encodeInode(small, 11, g);
    assert.equal(raw.length, 128);
    assert.deepEqual(decodeInode(small, raw), g);
    assert.ok(inodeChecksumValid(small, 11, raw));
  }));
});

Deno.test("encodeInode keeps the bytes it does not own and refuses values that do not fit", () => {
  const sb = syntheticSuperblock();
  const base = new Uint8Array(256);
  base.fill(0xab, 160);
  base[0x80] = 32;
  base[0x81] = 0;
  const f = decodeInode(sb, base);
  const raw = encodeInode(sb, 20, { ...f, size: 5, flags: 0 }, base);
  assert.deepEqual(raw.subarray(160), base.subarray(160), "in-inode xattr space kept");
  assert.equal(decodeInode(sb, raw).size, 5);
  assert.throws(() => encodeInode(sb, 20, { ...f, linksCount: 70000 }), /link count/);
  assert.throws(() => encodeInode(sb, 20, { ...f, uid: -1 }), /uid/);
  assert.throws(() => encodeInode(sb, 20, { ...f, block: new Uint8Array(59) }), /60 bytes/);
  // More than 2^48 sectors: counted in blocks with HUGE_FILE.
  const huge = encodeInode(sb, 20, { ...f, flags: 0, blocks512: 2 ** 49 });
  assert.equal(decodeInode(sb, huge).blocks512, 2 ** 49);
  assert.ok(new DataView(huge.buffer).getUint32(0x20, true) & InodeFlags.HUGE_FILE);
});

function statField(out: string, re: RegExp): string {
  const m = out.match(re);
  assert.ok(m, `${re} not in debugfs output:\n${out}`);
  return m[1];
}

const STAT_LAYOUTS: (Layout & { extra?: string[] })[] = [
  LAYOUTS[2],
  LAYOUTS[3],
  LAYOUTS[0],
  LAYOUTS[4],
  { ...LAYOUTS[2], name: "ext4-128-byte-inodes", extra: ["-I", "128"] },
];

for (const layout of STAT_LAYOUTS) {
  testWith(
    `inodes on ${layout.name}: checksums of mkfs's inodes verify; written inodes read back through debugfs stat`,
    [...IMAGE_TOOLS, "debugfs"],
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout, layout.extra ?? []);
      const fs = await loadFs(image);
      const { sb, gdt } = fs;
      const wide = sb.inodeSize > 128;
      const extents = (sb.incompat & Incompat.EXTENTS) !== 0;
      let tx = fs.cache.begin();
      // mkfs's root and lost+found inodes: checksums verify, re-encoding is the identity.
      for (const ino of [2, 11]) {
        const raw = await readInodeRaw(tx, sb, gdt, ino);
        assert.ok(inodeChecksumValid(sb, ino, raw), `inode ${ino} checksum`);
        assert.deepEqual(encodeInode(sb, ino, decodeInode(sb, raw), raw), raw);
      }
      tx.abort();

      const cases: { ino: number; f: InodeFields }[] = [];
      tx = fs.cache.begin();
      const times = [
        { sec: 1700000000, nsec: 123456789 },
        { sec: wide ? 2 ** 32 + 12345 : 2 ** 31 - 1, nsec: wide ? 999999999 : 0 },
        { sec: wide ? -1000 : 0, nsec: wide ? 1 : 0 },
      ];
      for (let i = 0; i < 3; i++) {
        const ino = await fs.alloc.allocateInode(tx, { dir: false, parentGroup: i });
        const f: InodeFields = {
          mode: 0o100000 | [0o644, 0o4755, 0o600][i],
          uid: [0, 1000, 70000][i],
          gid: [0, 100, 80000][i],
          size: 0,
          linksCount: 1,
          blocks512: 0,
          flags: extents ? InodeFlags.EXTENTS | (i === 1 ? InodeFlags.NODUMP : 0) : 0,
          generation: 0x1234567 * (i + 1),
          atime: times[i],
          ctime: times[(i + 1) % 3],
          mtime: times[(i + 2) % 3],
          crtime: wide ? times[i] : { sec: 0, nsec: 0 },
          dtime: 0,
          fileAcl: 0,
          block: extents ? emptyExtentRoot() : new Uint8Array(60),
          version: 0,
          projid: 0,
        };
        await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, f));
        cases.push({ ino, f });
      }
      await tx.commit();
      const path = `${dir.path}/img`;
      await Deno.writeFile(path, fs.dev.bytes);
      for (const { ino } of cases) {
        await runOk("debugfs", ["-w", "-R", `ln <${ino}> /file${ino}`, path]);
      }
      const bytes = await Deno.readFile(path);
      const check = await fsck(dir.path, bytes);
      assert.equal(check.code, 0, check.output);
      for (const { ino, f } of cases) {
        const out = await runOk("debugfs", ["-R", `stat <${ino}>`, path]);
        assert.doesNotMatch(out, /checksum does not match/i);
        assert.equal(Number.parseInt(statField(out, /Mode:\s+(\d+)/), 8), f.mode & 0o7777);
        assert.equal(Number(statField(out, /Flags: (0x[0-9a-f]+)/)), f.flags);
        assert.equal(Number(statField(out, /Generation: (\d+)/)), f.generation);
        assert.equal(Number(statField(out, /User:\s+(\d+)/)), f.uid);
        assert.equal(Number(statField(out, /Group:\s+(\d+)/)), f.gid);
        assert.equal(Number(statField(out, /Size: (\d+)/)), f.size);
        assert.equal(Number(statField(out, /Links: (\d+)/)), f.linksCount);
        assert.equal(Number(statField(out, /Blockcount: (\d+)/)), f.blocks512);
        for (
          const [name, t] of [["ctime", f.ctime], ["atime", f.atime], ["mtime", f.mtime]] as const
        ) {
          const enc = encodeTime(t);
          const hex = (n: number) => n.toString(16).padStart(8, "0");
          const want = wide
            ? `${name}: 0x${hex(enc.lo)}:${hex(enc.extra)}`
            : `${name}: 0x${hex(enc.lo)} `;
          assert.ok(out.includes(want), `${want} in\n${out}`);
        }
        if (wide) {
          const enc = encodeTime(f.crtime);
          assert.ok(out.includes(`crtime: 0x${enc.lo.toString(16).padStart(8, "0")}`));
          assert.equal(Number(statField(out, /Size of extra inode fields: (\d+)/)), 32);
        }
      }
    },
  );
}
