/**
 * Inode read-ahead (the kernel's `inode_readahead_blks`): a cold inode reads the run of table
 * blocks around its own in one device read, bounded by its group's table and in-use part
 * (lib/ext4/inode.ts `inodeTableWindow`) and by the block cache's size; on a writable
 * filesystem the run never replaces a newer image — one the cache holds, one logged in the
 * journal but not yet written home, or one a commit wrote while the read was in flight
 * (lib/txn/transaction.ts `BlockCache.readAhead`).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import { CountingDevice } from "../lib/block/counting_device.ts";
import { PassThroughDevice } from "../lib/block/pass_through_device.ts";
import { Ext4 } from "../lib/ext4/filesystem.ts";
import { INODE_READAHEAD_BLOCKS, inodeTableWindow, readInode } from "../lib/ext4/inode.ts";
import type { GroupDescriptorTable } from "../lib/ondisk/group_descriptor.ts";
import type { Superblock } from "../lib/ondisk/superblock.ts";
import { BlockCache, type CommitBatch, InPlaceCommitSink } from "../lib/txn/transaction.ts";
import { runOk, tempDir, testWith } from "./helpers.ts";
import { IMAGE_TOOLS, LAYOUTS, mkfsImage } from "./write_fixtures.ts";

const FILES = 600;

/** An image of one group (2048 inodes, 16 per 4 KiB table block) holding FILES empty files. */
async function imageWithFiles(dir: string): Promise<Uint8Array> {
  const src = `${dir}/src`;
  await Deno.mkdir(src);
  for (let i = 0; i < FILES; i++) await Deno.writeFile(`${src}/f${i}`, new Uint8Array());
  const img = `${dir}/files.img`;
  await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", "-N", "2048", "-d", src, img, "32M"], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
  });
  return await Deno.readFile(img);
}

/** The inode numbers of the files in the root. */
async function fileInodes(fs: Ext4): Promise<number[]> {
  const inos: number[] = [];
  for await (const e of fs.readDirIno(2)) if (e.name.startsWith("f")) inos.push(e.ino);
  assert.equal(inos.length, FILES);
  return inos;
}

for (const readOnly of [true, false]) {
  testWith(
    `${FILES} cold inodes of one group cost one read per ${INODE_READAHEAD_BLOCKS} table blocks (${
      readOnly ? "read-only" : "writable"
    })`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await imageWithFiles(dir.path);
      const device = new CountingDevice(new MemoryBlockDevice(image));
      const fs = await Ext4.openDevice(device, { readOnly });
      try {
        const inos = await fileInodes(fs);
        fs.invalidateCaches();
        const before = device.reads;
        const stats = [];
        for (const ino of inos) stats.push(await fs.getattr(ino));
        const reads = device.reads - before;
        // 600 records of 16 per block: 38 table blocks, 38 reads without read-ahead; with it
        // one per aligned 32-block window they touch (the lookups of the listing cached
        // nothing: the caches were dropped).
        const tableBlocks = Math.ceil(FILES / 16);
        assert.ok(
          reads <= Math.ceil(tableBlocks / INODE_READAHEAD_BLOCKS) + 1,
          `${reads} reads for ${tableBlocks} table blocks`,
        );
        // Every record is the one on the device.
        const plain = new MemoryBlockDevice(image);
        for (let i = 0; i < inos.length; i++) {
          const direct = await readInode(plain, fs.superblock, fs.groups, inos[i]);
          assert.equal(stats[i].mode, direct.mode);
          assert.equal(stats[i].ctime.sec, direct.ctime.sec);
        }
      } finally {
        await fs.close();
      }
    },
  );
}

testWith(
  "listing or looking up every name of a directory reads its blocks a window at a time",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const src = `${dir.path}/src`;
    await Deno.mkdir(`${src}/d`, { recursive: true });
    // 2000 entries of 48 bytes: 24 blocks of 4 KiB, laid out together by mkfs.
    for (let i = 0; i < 2000; i++) {
      await Deno.writeFile(`${src}/d/${String(i).padStart(40, "n")}`, new Uint8Array());
    }
    const img = `${dir.path}/dir.img`;
    await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", src, img, "32M"], {
      env: { MKE2FS_CONFIG: "/etc/mke2fs.conf" },
    });
    const image = await Deno.readFile(img);
    for (const readOnly of [true, false]) {
      const device = new CountingDevice(new MemoryBlockDevice(image.slice()));
      const fs = await Ext4.openDevice(device, { readOnly });
      try {
        const ino = await fs.resolve("/d");
        const blocks = Math.ceil((await fs.getattr(ino)).size / 4096);
        assert.ok(blocks >= 20, `only ${blocks} directory blocks`);
        fs.invalidateCaches();
        const before = device.reads;
        let names = 0;
        for await (const e of fs.readDirIno(ino)) if (e.name.length === 40) names++;
        assert.equal(names, 2000);
        const reads = device.reads - before;
        // The directory's inode (one table run), its extent map, then its blocks 32 at a time.
        const windows = Math.ceil(blocks / INODE_READAHEAD_BLOCKS) + 1;
        assert.ok(reads <= 2 + windows, `${reads} reads to list`);
        // Looking every name up visits the leaves in hash order: one read per window too.
        fs.invalidateCaches();
        const again = device.reads;
        for (let i = 0; i < 2000; i++) {
          assert.notEqual(await fs.lookupIno(ino, String(i).padStart(40, "n")), null);
        }
        const lookups = device.reads - again - 2; // the directory's inode and extent map
        assert.ok(lookups <= windows, `${lookups} reads of directory blocks for 2000 lookups`);
      } finally {
        await fs.close();
      }
    }
  },
);

/** A device that logs each read (first byte, length). */
class ReadLog extends PassThroughDevice {
  readonly reads: [number, number][] = [];
  override read(offset: number, buffer: Uint8Array): Promise<void> {
    this.reads.push([offset, buffer.length]);
    return super.read(offset, buffer);
  }
}

testWith(
  "a small cache gets small read-ahead runs: at most a sixteenth of its blocks at once",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await imageWithFiles(dir.path);
    const device = new ReadLog(new MemoryBlockDevice(image));
    // 1 MiB in all: 40% for metadata blocks, ~96 blocks of 4 KiB.
    const fs = await Ext4.openDevice(device, { cacheBytes: 1 << 20 });
    try {
      const inos = await fileInodes(fs);
      fs.invalidateCaches();
      device.reads.length = 0;
      for (const ino of inos) await fs.getattr(ino);
      const largest = Math.max(...device.reads.map(([, n]) => n));
      assert.ok(largest <= (96 / 16) * 4096, `a read of ${largest} bytes`);
      assert.ok(largest > 4096, "no read-ahead at all");
    } finally {
      await fs.close();
    }
  },
);

/** Just the fields {@link inodeTableWindow} reads, as a descriptor table could hold them. */
interface Geometry {
  blockSize: number;
  inodeSize: number;
  inodesPerGroup: number;
  groups: number;
  tables: number[];
  unused: number[];
  bad: number[];
  csum: boolean;
  blocksCount: number;
}

function fakeFs(g: Geometry): { sb: Superblock; groups: GroupDescriptorTable } {
  const sb = {
    blockSize: g.blockSize,
    inodeSize: g.inodeSize,
    inodesPerGroup: g.inodesPerGroup,
    inodesCount: g.inodesPerGroup * g.groups,
    inodeTableBlocksPerGroup: Math.ceil(g.inodesPerGroup * g.inodeSize / g.blockSize),
    blocksCount: g.blocksCount,
    hasMetadataCsum: g.csum,
    hasGdtCsum: false,
  } as unknown as Superblock;
  const groups = {
    length: g.groups,
    badChecksums: g.bad,
    get: (i: number) => ({ inodeTable: g.tables[i], itableUnused: g.unused[i] }),
  } as unknown as GroupDescriptorTable;
  return { sb, groups };
}

Deno.test("the read-ahead window stays inside the inode's table, whatever the descriptor says", () => {
  const geometry = fc.integer({ min: 1, max: 4 }).chain((groups) =>
    fc.record({
      blockSize: fc.constantFrom(1024, 4096),
      inodeSize: fc.constantFrom(128, 256, 1024),
      inodesPerGroup: fc.constantFrom(8, 64, 2048, 8192),
      groups: fc.constant(groups),
      tables: fc.array(fc.integer({ min: 1, max: 100_000 }), {
        minLength: groups,
        maxLength: groups,
      }),
      // Corrupt counts too: more unused inodes than the group has, or 0xffff.
      unused: fc.array(fc.oneof(fc.integer({ min: 0, max: 8192 }), fc.constant(0xffff)), {
        minLength: groups,
        maxLength: groups,
      }),
      bad: fc.subarray([0, 1, 2, 3]),
      csum: fc.boolean(),
      blocksCount: fc.integer({ min: 2, max: 200_000 }),
    })
  );
  fc.assert(
    fc.property(
      geometry,
      fc.nat(),
      fc.constantFrom(1, 2, 5, 16, 32, 64),
      (g, seed, limit) => {
        const { sb, groups } = fakeFs(g);
        const ino = 1 + (seed % (g.inodesPerGroup * g.groups));
        const group = Math.floor((ino - 1) / g.inodesPerGroup);
        const table = g.tables[group];
        const tableBlocks = Math.ceil(g.inodesPerGroup * g.inodeSize / g.blockSize);
        const w = inodeTableWindow(sb, groups, ino, limit);
        const own = table + Math.floor(((ino - 1) % g.inodesPerGroup) * g.inodeSize / g.blockSize);
        assert.equal(w.block, own);
        assert.ok(w.first <= w.block && w.block < w.first + w.count, "the inode's block is read");
        assert.ok(w.first >= table, "read before the table");
        assert.ok(w.first + w.count <= table + tableBlocks, "read past the table");
        // Past the inode's own block, only the table's blocks inside the filesystem.
        assert.ok(w.first + w.count <= Math.max(w.block + 1, g.blocksCount), "past the end");
        assert.ok(w.count <= Math.max(1, limit), "more than the limit");
        // Beyond its in-use part (checksummed, trusted descriptors), only up to its own block.
        if (g.csum && !g.bad.includes(group)) {
          const perBlock = Math.floor(g.blockSize / g.inodeSize);
          const used = Math.max(0, g.inodesPerGroup - g.unused[group]);
          const usedEnd = table + Math.ceil(used / perBlock);
          assert.ok(w.first + w.count <= Math.max(usedEnd, w.block + 1), "past the in-use part");
        }
      },
    ),
    { seed: 15, numRuns: 2000 },
  );
});

/** A device whose next read copies the bytes at once but returns only when released. */
class HeldRead extends PassThroughDevice {
  #held: Promise<void> | null = null;
  release: () => void = () => {};
  /** Holds the next read (only that one). */
  holdNext(): void {
    this.#held = new Promise((resolve) => this.release = resolve);
  }
  override async read(offset: number, buffer: Uint8Array): Promise<void> {
    const held = this.#held;
    this.#held = null;
    await super.read(offset, buffer);
    if (held) await held;
  }
}

Deno.test("read-ahead keeps the journal's logged image, not the stale one at home", async () => {
  const device = new MemoryBlockDevice(new Uint8Array(64 * 1024));
  const newer = new Uint8Array(1024).fill(0xaa);
  const inner = new InPlaceCommitSink(device);
  const cache = new BlockCache(device, 1024, {
    sink: {
      commit: (b: CommitBatch) => inner.commit(b),
      loggedImage: (b) => b === 5 ? newer : undefined,
    },
  });
  await cache.readAhead(0, 16);
  assert.ok(cache.has(4) && cache.has(6), "the run was not kept");
  assert.ok(!cache.has(5), "the stale home image of a logged block was kept");
  assert.deepEqual(await cache.readCommitted(5), newer);
});

Deno.test("read-ahead does not keep what it read while a commit ended", async () => {
  const device = new HeldRead(new MemoryBlockDevice(new Uint8Array(64 * 1024)));
  const cache = new BlockCache(device, 1024);
  device.holdNext();
  const ahead = cache.readAhead(0, 16); // has copied the old blocks, waits
  // A commit writes block 3 as file data (the cache drops its image) and block 7 as metadata.
  const tx = cache.begin();
  tx.writeData(3, new Uint8Array(1024).fill(3));
  (await tx.getWritable(7)).fill(7);
  await tx.commit();
  device.release();
  await ahead;
  assert.deepEqual(await cache.readCommitted(3), new Uint8Array(1024).fill(3));
  assert.deepEqual(await cache.readCommitted(7), new Uint8Array(1024).fill(7));
  // Nothing of the run was kept: every block but 7 is read again.
  assert.ok(!cache.has(2) && !cache.has(4), "blocks read before the commit were kept");
});

testWith(
  "a writable filesystem's read-ahead serves an inode changed in the journal, not its old home",
  IMAGE_TOOLS,
  async () => {
    await using dir = await tempDir();
    const image = await mkfsImage(dir.path, LAYOUTS[2]);
    const device = new MemoryBlockDevice(image);
    const fs = await Ext4.openDevice(device, { readOnly: false });
    try {
      await fs.batch(async () => {
        for (let i = 0; i < 64; i++) await fs.writeFile(`/f${i}`, new Uint8Array());
      });
      const changed = await fs.resolve("/f3");
      const other = await fs.resolve("/f60"); // a table block or more away, same window
      const w = inodeTableWindow(fs.superblock, fs.groups, other, INODE_READAHEAD_BLOCKS);
      const own = inodeTableWindow(fs.superblock, fs.groups, changed, 1).block;
      assert.ok(own !== w.block && w.first <= own && own < w.first + w.count, "not one window");
      await fs.chmod("/f3", 0o600);
      // Logged, not checkpointed: the home copy still has the old mode.
      const home = await readInode(device, fs.superblock, fs.groups, changed);
      assert.notEqual(home.mode & 0o7777, 0o600, "checkpointed already: the test proves nothing");
      fs.invalidateCaches();
      await fs.getattr(other); // reads the window holding /f3's block
      assert.equal((await fs.getattr(changed)).mode & 0o7777, 0o600);
    } finally {
      await fs.close();
    }
  },
);

/** A device whose reads of more than one block inside `[from, to)` fail (read-ahead there). */
class NoRunsDevice extends PassThroughDevice {
  failed = 0;
  constructor(
    inner: MemoryBlockDevice,
    readonly blockSize: number,
    readonly from: number,
    readonly to: number,
  ) {
    super(inner);
  }
  override read(offset: number, buffer: Uint8Array): Promise<void> {
    if (buffer.length > this.blockSize && offset >= this.from && offset < this.to) {
      this.failed++;
      return Promise.reject(new Error("injected: read-ahead refused"));
    }
    return this.inner.read(offset, buffer);
  }
}

for (const readOnly of [true, false]) {
  testWith(
    `a failed inode read-ahead is only a missed hint: every inode still read (${
      readOnly ? "read-only" : "writable"
    })`,
    IMAGE_TOOLS,
    async () => {
      await using dir = await tempDir();
      const image = await imageWithFiles(dir.path);
      const plain = new MemoryBlockDevice(image);
      const probe = await Ext4.openDevice(new MemoryBlockDevice(image));
      const table = probe.groups.get(0).inodeTable * 4096;
      const tableEnd = table + probe.superblock.inodeTableBlocksPerGroup * 4096;
      await probe.close();
      const device = new NoRunsDevice(new MemoryBlockDevice(image), 4096, table, tableEnd);
      const fs = await Ext4.openDevice(device, { readOnly });
      try {
        const inos = await fileInodes(fs);
        fs.invalidateCaches();
        for (const ino of inos) {
          const direct = await readInode(plain, fs.superblock, fs.groups, ino);
          assert.equal((await fs.getattr(ino)).mode, direct.mode);
        }
        assert.ok(device.failed > 0, "read-ahead was tried and refused");
        if (!readOnly) await fs.writeFile("/after", new Uint8Array(10)); // still writable
      } finally {
        await fs.close();
      }
    },
  );
}
