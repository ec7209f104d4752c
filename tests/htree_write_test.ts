import assert from "node:assert/strict";
import fc from "fast-check";
import { dirHash, DxHashVersion } from "../lib/dir_hash.ts";
import { InodeFlags } from "../lib/inode.ts";
import { decodeInode, readInodeRaw } from "../lib/inode_write.ts";
import {
  createFile,
  lookupEntry,
  makeDirectory,
  type NamespaceContext,
  removeDirectory,
  renameEntry,
  unlinkEntry,
} from "../lib/namespace_write.ts";
import { formatUuid } from "../lib/superblock.ts";
import type { Transaction } from "../lib/transaction.ts";
import { runOk, tempDir, testWith, withKernelMount } from "./helpers.ts";
import { fsck, IMAGE_TOOLS, LAYOUTS, type LoadedFs, loadFs, mkfsImage } from "./write_fixtures.ts";

const enc = new TextEncoder();

testWith(
  "directory hashes agree with debugfs dx_hash (half_md4, tea, legacy; with and without seed)",
  ["debugfs", "mkfs.ext4"],
  async () => {
    await using dir = await tempDir();
    const img = `${dir.path}/h.img`;
    await runOk("mkfs.ext4", ["-q", "-F", img, "8M"]);
    const fs = await loadFs(await Deno.readFile(img));
    const seed = formatUuid(fs.sb.hashSeedBytes);
    const names = fc.sample(fc.stringMatching(/^[a-zA-Z0-9._-]{1,70}$/), { numRuns: 6, seed: 42 });
    names.push("é-non-ascii-ü".normalize("NFC"));
    for (
      const [alg, version] of [["half_md4", DxHashVersion.HALF_MD4], ["tea", DxHashVersion.TEA], [
        "legacy",
        DxHashVersion.LEGACY,
      ]] as const
    ) {
      for (const name of names) {
        for (const s of [null, seed]) {
          const out = await runOk("debugfs", [
            "-R",
            `dx_hash -h ${alg}${s ? ` -s ${s}` : ""} -- ${name}`,
            img,
          ]);
          const m = out.match(/is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)/)!;
          const mine = dirHash(
            enc.encode(name),
            version,
            s ? fs.sb.hashSeed : new Uint32Array(4),
            true,
          );
          assert.equal(mine.major, Number.parseInt(m[1], 16), `${alg} ${name} ${s}`);
          assert.equal(mine.minor, Number.parseInt(m[2], 16), `${alg} minor ${name}`);
        }
      }
    }
  },
);

async function isIndexed(fs: LoadedFs, tx: Transaction, ino: number): Promise<boolean> {
  return (decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, ino)).flags &
    InodeFlags.INDEX) !== 0;
}

for (
  const [label, layout, extra] of [
    ["ext4 1k half_md4", LAYOUTS[3], "half_md4"],
    ["ext4 tea", LAYOUTS[2], "tea"],
    ["ext4 ^metadata_csum legacy", LAYOUTS[4], "legacy"],
  ] as const
) {
  testWith(
    `htree on ${label}: a directory becomes indexed, grows a node level, and stays e2fsck-clean and kernel-readable`,
    [...IMAGE_TOOLS, "tune2fs", "root", "loop", "kernel-ext4"],
    async () => {
      await using dir = await tempDir();
      const img = `${dir.path}/tuned.img`;
      await Deno.writeFile(img, await mkfsImage(dir.path, layout));
      await runOk("tune2fs", ["-E", `hash_alg=${extra}`, img]);
      const fs = await loadFs(await Deno.readFile(img));
      assert.equal(fs.sb.defHashVersion, { legacy: 0, half_md4: 1, tea: 2 }[extra]);
      let tx = fs.cache.begin();
      const ctx = (): NamespaceContext => ({ tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt });
      const d = await makeDirectory(ctx(), 2, "many", { perm: 0o755 });
      // Enough long names that the root's index fills and a node level appears on 1 KiB
      // blocks (123 leaves), fewer on 4 KiB blocks.
      const n = fs.sb.blockSize === 1024 ? 6000 : 3000;
      const name = (i: number) => `entry-number-${i}-${"x".repeat(i % 40)}`;
      const inos: number[] = [];
      for (let i = 0; i < n; i++) {
        inos.push(await createFile(ctx(), d, name(i), new Uint8Array(0), { perm: 0o644 }));
        if (i % 1000 === 999) {
          await tx.commit();
          tx = fs.cache.begin();
        }
      }
      assert.ok(await isIndexed(fs, tx, d));
      const levels = (await tx.read(
        await (async () => {
          const f = decodeInode(fs.sb, await readInodeRaw(tx, fs.sb, fs.gdt, d));
          return new DataView(f.block.buffer).getUint32(12 + 8, true);
        })(),
      ))[0x1e];
      if (fs.sb.blockSize === 1024) assert.equal(levels, 1, "a node level below the root");
      for (let i = 0; i < n; i += 97) assert.equal(await lookupEntry(ctx(), d, name(i)), inos[i]);
      assert.equal(await lookupEntry(ctx(), d, "not-there"), 0);
      // Remove a third, rename some across into the root (itself indexed once full).
      for (let i = 0; i < n; i += 3) await unlinkEntry(ctx(), d, name(i));
      for (let i = 1; i < 400; i += 3) await renameEntry(ctx(), d, name(i), 2, `moved-${i}`);
      await tx.commit();
      const check = await fsck(dir.path, fs.dev.bytes);
      assert.equal(check.code, 0, check.output);
      const want = new Set<string>();
      for (let i = 0; i < n; i++) if (i % 3 !== 0 && !(i < 400 && i % 3 === 1)) want.add(name(i));
      const path = `${dir.path}/h.img`;
      await Deno.writeFile(path, fs.dev.bytes);
      const got = await withKernelMount(path, async (mnt) => {
        const names = new Set<string>();
        for await (const e of Deno.readDir(`${mnt}/many`)) names.add(e.name);
        // The kernel's own lookups go through the index.
        for (let i = 2; i < n; i += 301) {
          if (want.has(name(i))) await Deno.stat(`${mnt}/many/${name(i)}`);
        }
        await Deno.stat(`${mnt}/moved-1`);
        return names;
      }, { readOnly: true });
      assert.deepEqual(got, want);
      // Empty it and remove it.
      tx = fs.cache.begin();
      for (const nm of want) await unlinkEntry(ctx(), d, nm);
      await removeDirectory(ctx(), 2, "many");
      await tx.commit();
      const clean = await fsck(dir.path, fs.dev.bytes);
      assert.equal(clean.code, 0, clean.output);
    },
  );
}

testWith("htree: directories indexed by the kernel are extended and shrunk by ext4ts", [
  ...IMAGE_TOOLS,
  "root",
  "loop",
  "kernel-ext4",
], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/k.img`;
  await Deno.writeFile(path, await mkfsImage(dir.path, LAYOUTS[2]));
  await withKernelMount(path, async (mnt) => {
    await Deno.mkdir(`${mnt}/kdir`);
    for (let i = 0; i < 2000; i++) {
      await Deno.writeFile(`${mnt}/kdir/kernel-file-${i}`, new Uint8Array(0));
    }
  });
  const fs = await loadFs(await Deno.readFile(path));
  const tx = fs.cache.begin();
  const ctx: NamespaceContext = { tx, alloc: fs.alloc, sb: fs.sb, gdt: fs.gdt };
  const d = await lookupEntry(ctx, 2, "kdir");
  assert.ok(await isIndexed(fs, tx, d), "the kernel indexed it");
  assert.ok(await lookupEntry(ctx, d, "kernel-file-1234"));
  for (let i = 0; i < 2000; i += 2) await unlinkEntry(ctx, d, `kernel-file-${i}`);
  for (let i = 0; i < 1500; i++) {
    await createFile(ctx, d, `ext4ts-file-${i}`, new Uint8Array(0), { perm: 0o600 });
  }
  await tx.commit();
  const check = await fsck(dir.path, fs.dev.bytes);
  assert.equal(check.code, 0, check.output);
  await Deno.writeFile(path, fs.dev.bytes);
  const names = await withKernelMount(path, async (mnt) => {
    const out = new Set<string>();
    for await (const e of Deno.readDir(`${mnt}/kdir`)) out.add(e.name);
    await Deno.stat(`${mnt}/kdir/ext4ts-file-777`);
    await Deno.stat(`${mnt}/kdir/kernel-file-777`);
    return out;
  }, { readOnly: true });
  const want = new Set<string>();
  for (let i = 1; i < 2000; i += 2) want.add(`kernel-file-${i}`);
  for (let i = 0; i < 1500; i++) want.add(`ext4ts-file-${i}`);
  assert.deepEqual(names, want);
});
