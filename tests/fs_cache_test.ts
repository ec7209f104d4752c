/**
 * The one in-memory model of a writable `Ext4`: the write path reads inode records through
 * the reader's inode cache, a commit puts the records it wrote there, and it drops exactly
 * what was derived from the inodes it touched — another directory's lookups and another
 * file's block map stay cached (counted hits and misses, lib/ext4/fs_cache.ts). A randomized
 * test runs write sequences, with reads racing each write, and compares after every step what
 * the object serves (through its caches) with a fresh open of the image: nothing stale. Another
 * runs them under group commit (inode records patched into the running compound's images in
 * place) against an object committing each operation on its own: the same tree, the same errors.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import { FsCaches } from "../lib/ext4/fs_cache.ts";
import { openMetadata } from "../lib/ext4/super.ts";
import { splitCacheBudget } from "../lib/block/cache_budget.ts";
import { tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();
const EXT4 = LAYOUTS[2];

testWith(
  "a commit drops only what it touched: another directory's lookups and another file's map stay cached",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4);
    const fs = await Ext4.openDevice(new MemoryBlockDevice(image), { readOnly: false });
    try {
      await fs.mkdir("/a");
      await fs.mkdir("/b");
      await fs.writeFile("/a/old", enc.encode("old"));
      await fs.writeFile("/b/x", new Uint8Array(50000).fill(7));
      // Warm: lookups of "a", "b", "old", "x", the records, x's block map.
      await fs.stat("/a/old");
      await fs.readFile("/b/x");

      await fs.writeFile("/a/new", enc.encode("new")); // touches /a and the new inode only

      const mid = fs.cacheCounts;
      assert.equal((await fs.readFile("/b/x")).length, 50000);
      const after = fs.cacheCounts;
      // "b" in / and "x" in /b: both hits (neither directory was touched), no miss.
      assert.equal(after.lookups.misses, mid.lookups.misses, "a lookup of /b/x missed");
      assert.equal(after.lookups.hits - mid.lookups.hits, 2);
      // x's block map and record: hits too.
      assert.equal(after.maps.misses, mid.maps.misses, "the block map of /b/x was dropped");
      assert.ok(after.maps.hits > mid.maps.hits);
      assert.equal(after.inodes.misses, mid.inodes.misses, "a record on the way was dropped");

      // /a was touched: its lookups are recomputed (a miss), and see the new name.
      const beforeA = fs.cacheCounts.lookups.misses;
      assert.equal((await fs.stat("/a/old")).size, 3);
      assert.equal(fs.cacheCounts.lookups.misses, beforeA + 1);
      assert.equal((await fs.stat("/a/new")).size, 3);
    } finally {
      await fs.close();
    }
  },
);

testWith(
  "the write path reads records through the reader's inode cache, and a commit updates them",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4);
    const fs = await Ext4.openDevice(new MemoryBlockDevice(image), { readOnly: false });
    try {
      await fs.writeFile("/f", enc.encode("data"), { mode: 0o644 });
      const ino = await fs.resolve("/f");
      await fs.getattr(ino); // cached by the reader
      const before = fs.cacheCounts.inodes;
      await fs.chmod("/f", 0o600); // the write path finds /f's record in the shared cache
      const mid = fs.cacheCounts.inodes;
      assert.ok(mid.hits > before.hits, "the write path did not use the inode cache");
      // The commit put the new record in the cache: a hit, with the new mode.
      const st = await fs.getattr(ino);
      assert.equal(st.mode & 0o7777, 0o600);
      assert.equal(fs.cacheCounts.inodes.misses, mid.misses);
    } finally {
      await fs.close();
    }
  },
);

/** Everything a reader sees of the tree, by path (inode numbers, times and sizes of dirs too). */
async function dump(fs: Ext4): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const walk = async (path: string): Promise<void> => {
    const st = await fs.lstat(path);
    const xattrs: Record<string, number[]> = {};
    for (const name of (await fs.listXattr(path)).sort()) {
      xattrs[name] = [...await fs.getXattr(path, name)];
    }
    const entry: Record<string, unknown> = {
      ino: st.ino,
      type: st.type,
      mode: st.mode,
      nlink: st.nlink,
      size: st.size,
      blocks: st.blocks,
      mtime: st.mtime,
      xattrs,
    };
    if (st.type === "file") entry.data = [...await fs.readFile(path)].join(",");
    if (st.type === "symlink") entry.target = await fs.readLink(path);
    out[path] = entry;
    if (st.type !== "dir") return;
    const names: string[] = [];
    for await (const e of fs.readDir(path)) names.push(e.name);
    for (const n of names.sort()) await walk(path === "/" ? `/${n}` : `${path}/${n}`);
  };
  await walk("/");
  return out;
}

const NAMES = ["d0", "d1", "d0/d2", "d0/f", "d1/f", "d1/g", "f", "g", "d0/d2/f"];
const nameArb = fc.constantFrom(...NAMES.map((n) => `/${n}`));
const opArb = fc.oneof(
  fc.record({ op: fc.constant("mkdir"), path: nameArb }),
  fc.record({
    op: fc.constant("write"),
    path: nameArb,
    size: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 4000, max: 60000 })),
    fill: fc.integer({ min: 1, max: 255 }),
    append: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("truncate"),
    path: nameArb,
    size: fc.integer({ min: 0, max: 9000 }),
  }),
  fc.record({ op: fc.constant("remove"), path: nameArb }),
  fc.record({ op: fc.constant("rename"), path: nameArb, to: nameArb }),
  fc.record({ op: fc.constant("link"), path: nameArb, to: nameArb }),
  fc.record({ op: fc.constant("symlink"), path: nameArb, to: nameArb }),
  fc.record({ op: fc.constant("chmod"), path: nameArb, mode: fc.integer({ min: 0, max: 0o777 }) }),
  fc.record({
    op: fc.constant("xattr"),
    path: nameArb,
    size: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 3000 })),
  }),
);
type Op = {
  op: string;
  path: string;
  to?: string;
  size?: number;
  fill?: number;
  append?: boolean;
  mode?: number;
};

async function apply(fs: Ext4, o: Op): Promise<void> {
  switch (o.op) {
    case "mkdir":
      return await fs.mkdir(o.path);
    case "write":
      return await fs.writeFile(o.path, new Uint8Array(o.size!).fill(o.fill!), {
        append: o.append,
      });
    case "truncate":
      return await fs.truncate(o.path, o.size);
    case "remove":
      return await fs.remove(o.path, { recursive: true });
    case "rename":
      return await fs.rename(o.path, o.to!);
    case "link":
      return await fs.link(o.path, o.to!);
    case "symlink":
      return await fs.symlink(o.to!, o.path);
    case "chmod":
      return await fs.chmod(o.path, o.mode!);
    case "xattr":
      return o.size! < 0
        ? await fs.removeXattr(o.path, "user.k")
        : await fs.setXattr(o.path, "user.k", new Uint8Array(o.size!).fill(o.size! & 0xff));
  }
}

for (const layout of [LAYOUTS[2], LAYOUTS[0]]) {
  testWith(
    `nothing stale is served: random writes with racing reads, against a fresh open (${layout.name})`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await mkfsImage(dir.path, layout);
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
          const dev = new MemoryBlockDevice(Uint8Array.from(image));
          const fs = await Ext4.openDevice(dev, { readOnly: false });
          try {
            for (const [i, o] of ops.entries()) {
              // Reads race the write (and may cache what they read while it commits).
              const racing = dump(fs).catch(() => {});
              try {
                await apply(fs, o);
              } catch (e) {
                if (!(e instanceof Ext4Error)) throw e;
              }
              await racing;
              const fresh = await Ext4.openDevice(new MemoryBlockDevice(dev.bytes.slice()), {
                readOnly: true,
              });
              try {
                assert.deepEqual(
                  await dump(fs),
                  await dump(fresh),
                  `step ${i}: ${JSON.stringify(o)}`,
                );
              } finally {
                await fresh.close();
              }
            }
          } finally {
            await fs.close();
          }
        }),
        { numRuns: 15 },
      );
    },
  );
}

/** A {@link dump} without its modification times. */
function untimed(d: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(d).map(([k, v]) => [k, { ...(v as Record<string, unknown>), mtime: undefined }]),
  );
}

testWith(
  "group commit serves what per-operation commits serve: random writes with racing reads, records patched in place",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, EXT4);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), async (ops) => {
        // One compound for everything (a sync every few steps starts the next), its inode
        // table blocks patched in place; the reference commits each operation on its own.
        const fs = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(image)), {
          readOnly: false,
          commitInterval: 3600,
        });
        const ref = await Ext4.openDevice(new MemoryBlockDevice(Uint8Array.from(image)), {
          readOnly: false,
        });
        const outcome = (p: Promise<void>) =>
          p.then(() => "ok", (e) => {
            if (!(e instanceof Ext4Error)) throw e;
            return e.code;
          });
        try {
          for (const [i, o] of ops.entries()) {
            const racing = dump(fs).catch(() => {});
            const got = await outcome(apply(fs, o));
            await racing;
            assert.equal(got, await outcome(apply(ref, o)), `step ${i}: ${JSON.stringify(o)}`);
            if (i % 4 === 3) await fs.sync();
            // The two stamp their own clock's times: everything else must be equal.
            const [a, b] = [untimed(await dump(fs)), untimed(await dump(ref))];
            assert.deepEqual(a, b, `step ${i}: ${JSON.stringify(o)}`);
          }
        } finally {
          await fs.close();
          await ref.close();
        }
      }),
      { numRuns: 40 },
    );
  },
);

testWith(
  "a large unindexed directory is looked up through a name map only when the map fits the budget",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[0], ["-O", "^dir_index"]);
    const fs = await Ext4.openDevice(new MemoryBlockDevice(image), { readOnly: false });
    const names = Array.from({ length: 2500 }, (_, i) => `file-${String(i).padStart(5, "0")}`);
    let bytes: Uint8Array;
    try {
      await fs.mkdir("/big");
      await fs.batch(async () => {
        for (const n of names) await fs.writeFile(`/big/${n}`, new Uint8Array(0));
      });
      bytes = (fs.device as MemoryBlockDevice).bytes.slice();
    } finally {
      await fs.close();
    }
    // 1 MiB: the name-map share cannot hold 2500 names; 16 MiB (the default) can.
    for (const cacheBytes of [1 << 20, 16 << 20]) {
      const ro = await Ext4.openDevice(new MemoryBlockDevice(bytes.slice()), { cacheBytes });
      try {
        const want = new Map<string, number>();
        for await (const e of ro.readDir("/big")) want.set(e.name, e.ino);
        const big = await ro.resolve("/big");
        for (const n of names) assert.equal(await ro.lookupIno(big, n), want.get(n), n);
        assert.equal(await ro.lookupIno(big, "absent"), null);
        // Built (or found too large) once, then served: never rebuilt per lookup.
        assert.deepEqual(ro.cacheCounts.nameMaps, { hits: names.length, misses: 1 });
      } finally {
        await ro.close();
      }
    }
  },
);

testWith(
  "a commit that writes an inode table block replaces the cached records whose bytes it changes, whoever changed them",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const device = new MemoryBlockDevice(await mkfsImage(dir.path, EXT4));
    const { sb, groups } = await openMetadata(device);
    const caches = new FsCaches(sb, groups, {
      budget: splitCacheBudget(1 << 20, sb),
      writable: true,
      ignoreChecksums: true,
    });
    const bs = sb.blockSize;
    const isz = sb.inodeSize;
    // Inodes 12 and 13 share a block of group 0's inode table.
    const at = (ino: number) => ({
      block: groups.get(0).inodeTable + Math.floor(((ino - 1) * isz) / bs),
      offset: ((ino - 1) * isz) % bs,
    });
    assert.equal(at(12).block, at(13).block);
    const table = new Uint8Array(bs);
    await device.read(at(12).block * bs, table);
    const record = (ino: number) => table.slice(at(ino).offset, at(ino).offset + isz);
    const twelve = caches.inodeCache.keep(12, record(12), caches.generation);
    const thirteen = caches.inodeCache.keep(13, record(13), caches.generation);

    // Written by a commit that did not touch either inode through lib/ext4/inode.ts.
    const image = table.slice();
    image[at(13).offset + 0x1c] ^= 0xff; // i_blocks_lo of 13
    caches.committed({
      blockSize: bs,
      data: [],
      metadata: [{ block: at(12).block, bytes: image }],
      revoked: [],
    });
    assert.equal(caches.inodeCache.records.get(12), twelve, "same bytes: the same record");
    const now = caches.inodeCache.records.get(13);
    assert.ok(now && now !== thirteen, "changed bytes: a new record");
    assert.deepEqual(now.bytes, image.subarray(at(13).offset, at(13).offset + isz));

    // Changes known by range (every change a Transaction.patch): only the records the ranges
    // cover are compared. Inode 12 changed within its range: a new record; a change to 13
    // outside every range is not looked for, by design (a patch-only block changed nowhere
    // else); 14, covered by a range of its last byte only, is compared.
    const image2 = image.slice();
    image2[at(12).offset + 0x1c] ^= 0xff;
    image2[at(13).offset + 0x1c] ^= 0x0f;
    image2[at(14).offset + 0x1c] ^= 0xff;
    const cachedThirteen = caches.inodeCache.records.get(13);
    const fourteen = caches.inodeCache.keep(
      14,
      image.slice(at(14).offset, at(14).offset + isz),
      caches.generation,
    );
    caches.committed({
      blockSize: bs,
      data: [],
      metadata: [{
        block: at(12).block,
        bytes: image2,
        changed: [
          at(12).offset + 0x10,
          at(12).offset + 0x20,
          at(14).offset + isz - 1,
          at(14).offset + isz,
        ],
      }],
      revoked: [],
    });
    const twelveNow = caches.inodeCache.records.get(12);
    assert.ok(twelveNow && twelveNow !== twelve, "within a changed range: a new record");
    assert.deepEqual(twelveNow.bytes, image2.subarray(at(12).offset, at(12).offset + isz));
    assert.equal(caches.inodeCache.records.get(13), cachedThirteen, "outside every range: kept");
    const fourteenNow = caches.inodeCache.records.get(14);
    assert.ok(fourteenNow && fourteenNow !== fourteen, "a range over its last byte: compared");
  },
);
