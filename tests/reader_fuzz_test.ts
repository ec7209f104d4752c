/**
 * Corruption robustness: seeded bit flips in the superblock, group descriptors, inode
 * tables and metadata blocks (directories, extent and indirect blocks, xattr blocks) of
 * populated images, then everything is read. Every failure must be an Ext4Error, and each
 * round must finish within a time bound (no hang on cycles). The e2fsprogs upstream images
 * are read the same way.
 */
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { type BlockDevice, CorruptError, Ext4, Ext4Error, MemoryBlockDevice } from "../mod.ts";
import { groupHasSuperblock } from "../lib/ondisk/group_descriptor.ts";
import { CORPUS, makeImage, ROOT, runOk, tempDir, testWith } from "./helpers.ts";

const POPULATE = `${ROOT}tests/fixtures/populate_tree.py`;
const NEEDS = ["root", "loop", "kernel-ext4", "mkfs.ext4", "python3", "setfacl"];
const ROUND_LIMIT_MS = 20_000;
const MAX_OBJECTS = 20_000;
/**
 * Memory this test's isolate may hold while fuzzing (JS heap in use plus the buffers it
 * owns: every image copy and cache included). Not the process's resident size: under
 * `deno test --parallel` other test files run in the same process.
 */
const MAX_MEMORY = 1 * 2 ** 30;

/** The memory this isolate holds now (see {@link MAX_MEMORY}). */
function isolateMemory(): number {
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}
/**
 * What a CorruptError must name: the inode, block or group it is in, or a whole-filesystem
 * structure (superblock, descriptors, journal) — so that a message leads to the damage.
 */
const NAMES_WHERE = /inode \d+|block \d+|group \d+|superblock|descriptor|journal/;

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Reads everything reachable (by inode and by path), counting typed failures and rethrowing
 * anything else; bounded in objects. Corruption must be a CorruptError naming where it is.
 */
async function readEverything(
  fs: Ext4,
  deadline = Date.now() + ROUND_LIMIT_MS,
): Promise<{ objects: number; errors: number; codes: Set<string> }> {
  let objects = 0;
  let errors = 0;
  const codes = new Set<string>();
  const guard = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      if (e.code === "CORRUPT" && !(e instanceof CorruptError && NAMES_WHERE.test(e.message))) {
        throw new Error(`a corruption error that does not say where: ${e.message}`);
      }
      codes.add(e.code);
      errors++;
    }
  };
  const seen = new Set<number>();
  const stack = [2];
  while (stack.length > 0 && objects < MAX_OBJECTS) {
    const dirIno = stack.pop()!;
    if (seen.has(dirIno)) continue;
    seen.add(dirIno);
    await guard(async () => {
      for await (const e of fs.readDirIno(dirIno)) {
        if (++objects > MAX_OBJECTS) break;
        // Microtask-only reads would starve a timer: check the time bound here too.
        if (Date.now() > deadline) throw new Error(`no result after ${ROUND_LIMIT_MS} ms (hang?)`);
        if (e.name === "." || e.name === "..") continue;
        await guard(async () => {
          const st = await fs.getattr(e.ino);
          await guard(async () => {
            for (const name of await fs.listXattrIno(e.ino)) {
              await guard(() => fs.getXattrIno(e.ino, name));
            }
          });
          await guard(() => fs.lookup(dirIno, e.nameBytes));
          if (st.type === "dir") stack.push(e.ino);
          else if (st.type === "symlink") await guard(() => fs.readLinkIno(e.ino));
          else if (st.type === "file") {
            for (let off = 0; off < Math.min(st.size, 8 << 20); off += 1 << 20) {
              await fs.read(e.ino, off, 1 << 20);
            }
            await guard(() => fs.seekData(e.ino, 0, "data"));
          }
        });
      }
    });
  }
  // By path: resolution, whole-file reads, link targets and xattrs of what walk finds.
  await guard(async () => {
    for await (const { path, stat } of fs.walk("/")) {
      if (++objects > 2 * MAX_OBJECTS) break;
      if (Date.now() > deadline) throw new Error(`no result after ${ROUND_LIMIT_MS} ms (hang?)`);
      if (stat.type === "file" && stat.size < 1 << 20) await guard(() => fs.readFile(path));
      else if (stat.type === "symlink") await guard(() => fs.readLink(path));
      else if (stat.type === "dir") await guard(() => fs.listXattr(path));
    }
  });
  return { objects, errors, codes };
}

/** `inner` with unreadable blocks: reads touching one of `bad` fail with an I/O error. */
function badSectors(inner: BlockDevice, bs: number, bad: Set<number>): BlockDevice {
  return {
    size: inner.size,
    sectorSize: inner.sectorSize,
    readOnly: inner.readOnly,
    read: (offset, buffer) => {
      for (let b = Math.floor(offset / bs); b * bs < offset + buffer.length; b++) {
        if (bad.has(b)) return Promise.reject(new Ext4Error("IO", `bad sector in block ${b}`));
      }
      return inner.read(offset, buffer);
    },
    write: (offset, data) => inner.write(offset, data),
    flush: () => inner.flush(),
    close: () => inner.close(),
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms (hang?)`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Metadata regions of an image: block lists per class, found by reading it once. */
async function regions(bytes: Uint8Array): Promise<Record<string, number[]>> {
  const fs = await Ext4.open(new MemoryBlockDevice(bytes.slice()));
  const bs = fs.superblock.blockSize;
  const meta = new Set<number>();
  const orig = fs.readBlock.bind(fs);
  fs.readBlock = (b: number) => {
    meta.add(b);
    return orig(b);
  };
  await readEverything(fs);
  const itable: number[] = [];
  const perGroup = fs.superblock.inodeTableBlocksPerGroup;
  for (let g = 0; g < Math.min(fs.groups.length, 4); g++) {
    const start = fs.groups.get(g).inodeTable;
    for (let i = 0; i < Math.min(perGroup, 64); i++) itable.push(start + i);
  }
  const gdtFirst = bs === 1024 ? 2 : 1;
  // The first backup copies (group 1): a reader must not trip over damaged backups either.
  const sb = fs.superblock;
  const g1 = sb.firstDataBlock + sb.blocksPerGroup;
  const out = {
    superblock: [bs === 1024 ? 1 : 0],
    descriptors: [gdtFirst],
    backups: groupHasSuperblock(sb, 1) ? [g1, g1 + 1] : [gdtFirst],
    inodeTable: itable,
    metadata: [...meta],
  };
  await fs.close();
  return out;
}

async function fuzzImage(name: string, bytes: Uint8Array, rounds: number, seed: number) {
  const rnd = prng(seed);
  const reg = await regions(bytes);
  assert.ok(reg.metadata.length > 10, `${name}: too few metadata blocks found`);
  const bs = (await Ext4.open(new MemoryBlockDevice(bytes.slice()))).superblock.blockSize;
  const classes = Object.keys(reg);
  let opened = 0;
  let typedErrors = 0;
  let peakMemory = 0;
  const img = new Uint8Array(bytes.length);
  for (let round = 0; round < rounds; round++) {
    const cls = classes[round % classes.length];
    const blocks = reg[cls];
    img.set(bytes); // one buffer for every round: memory measures the reader, not the copies
    const flips = 1 + Math.floor(rnd() * 8);
    for (let k = 0; k < flips; k++) {
      const block = blocks[Math.floor(rnd() * blocks.length)];
      // Superblock: flip inside its 1024 bytes (at 1024 whatever the block size).
      const base = cls === "superblock" ? 1024 : block * bs;
      const span = cls === "superblock" ? 1024 : bs;
      const at = base + Math.floor(rnd() * span);
      img[at] ^= 1 << Math.floor(rnd() * 8);
    }
    const ignoreChecksums = round % 2 === 1;
    const what =
      `${name} round ${round} (${cls}, ${flips} flips, ignoreChecksums ${ignoreChecksums})`;
    await withTimeout(
      (async () => {
        let fs: Ext4;
        try {
          fs = await Ext4.open(new MemoryBlockDevice(img), { ignoreChecksums });
        } catch (e) {
          assert.ok(e instanceof Ext4Error, `${what}: open threw ${e}`);
          return;
        }
        opened++;
        try {
          typedErrors += (await readEverything(fs)).errors;
          peakMemory = Math.max(peakMemory, isolateMemory());
        } catch (e) {
          assert.fail(`${what}: ${e instanceof Error ? e.stack : e}`);
        } finally {
          await fs.close();
        }
      })(),
      ROUND_LIMIT_MS,
      what,
    );
  }
  assert.ok(opened > rounds / 4, `${name}: only ${opened} of ${rounds} rounds opened`);
  assert.ok(peakMemory < MAX_MEMORY, `${name}: ${peakMemory} bytes held`);
  // A disk with bad sectors under a fifth of the metadata blocks: those reads are I/O errors,
  // typed like the rest, and everything else still reads.
  const fixed = new Set([...reg.superblock, ...reg.descriptors, 0]);
  const bad = new Set(reg.metadata.filter((b, i) => i % 5 === 2 && !fixed.has(b)));
  const sick = await Ext4.open(badSectors(new MemoryBlockDevice(bytes.slice()), bs, bad));
  try {
    const r = await withTimeout(readEverything(sick), ROUND_LIMIT_MS, `${name} bad sectors`);
    assert.ok(r.codes.has("IO"), `${name} bad sectors: ${[...r.codes].join(", ")}`);
    assert.ok(r.objects > 10, `${name} bad sectors: only ${r.objects} objects read`);
  } finally {
    await sick.close();
  }
  // The flips must reach the parsers, not only be refused at open.
  assert.ok(typedErrors > 0, `${name}: no corruption was ever detected while reading`);
  if (Deno.env.get("EXT4TS_FUZZ_VERBOSE")) {
    console.log(
      `${name}: ${rounds} rounds, ${opened} opened, ${typedErrors} typed errors, ${peakMemory} bytes held at most`,
    );
  }
}

testWith(
  "corruption fuzz: ext4 (extents, htree, xattrs, csums) and ext2 (block maps)",
  NEEDS,
  async () => {
    await using dir = await tempDir();
    const images: [string, string[], string][] = [
      ["ext4", ["-b", "4096", "-O", "inline_data,ea_inode"], "mkfs.ext4"],
      ["ext4-1k", ["-b", "1024"], "mkfs.ext4"],
      ["ext2", [], "mkfs.ext2"],
    ];
    for (const [name, args, mkfs] of images) {
      const img = `${dir.path}/${name}.img`;
      await makeImage(img, {
        mkfs,
        args,
        size: "96M",
        populate: (m) =>
          runOk("python3", [
            POPULATE,
            m,
            "--files",
            "400",
            ...(args.join().includes("ea_inode") ? ["--ea-inode"] : []),
          ]).then(() => {}),
      });
      const bytes = await Deno.readFile(img);
      await fuzzImage(name, bytes, 60, 0xe4 + name.length);
    }
  },
);

testWith(
  "corpus images (e2fsprogs upstream, kernel-written) read without untyped failures",
  [],
  async () => {
    const corpus = CORPUS;
    const images: string[] = [];
    for await (const e of Deno.readDir(`${corpus}/upstream`)) {
      if (e.isDirectory) images.push(`${corpus}/upstream/${e.name}/image.gz`);
    }
    // The kernel-written images of the journal corpus, before replay (read as they are).
    for await (const e of Deno.readDir(`${corpus}/kernel`)) {
      if (e.isDirectory) {
        images.push(`${corpus}/kernel/${e.name}/crash.img.gz`);
        images.push(`${corpus}/kernel/${e.name}/umount.img.gz`);
      }
    }
    let read = 0;
    for (const path of images.sort()) {
      let gz: Uint8Array;
      try {
        gz = await Deno.readFile(path);
      } catch {
        continue; // bz2 and tar images are left to the journal tests
      }
      const bytes = new Uint8Array(gunzipSync(gz));
      const what = path.slice(corpus.length + 1);
      await withTimeout(
        (async () => {
          let fs: Ext4;
          try {
            fs = await Ext4.open(new MemoryBlockDevice(bytes), { allowDirtyJournal: true });
          } catch (e) {
            assert.ok(e instanceof Ext4Error, `${what}: open threw ${e}`);
            return;
          }
          read++;
          try {
            await readEverything(fs);
          } finally {
            await fs.close();
          }
        })(),
        ROUND_LIMIT_MS,
        what,
      );
    }
    assert.ok(read >= 30, `only ${read} corpus images opened`);
  },
);
