/**
 * Test-only access to the raw structures of a small image file, independent of the reader
 * core: the superblock, raw inode records (through the group descriptors), blocks, and a
 * directory's blocks as debugfs maps them. Used by the directory and xattr tests.
 *
 * @module
 */

import { MemoryBlockDevice } from "../lib/block/block_device.ts";
import type { DirectorySource } from "../lib/ext4/dir.ts";
import { type GroupDescriptorTable, readGroupDescriptors } from "../lib/ondisk/group_descriptor.ts";
import { hasInlineData, readInlineData } from "../lib/ondisk/inline_data.ts";
import { parseSuperblock, type Superblock } from "../lib/ondisk/superblock.ts";
import type { XattrSource } from "../lib/ext4/xattr.ts";
import { run, runOk } from "./helpers.ts";

/** A whole image held in memory. */
export class RawImage {
  readonly bytes: Uint8Array;
  readonly sb: Superblock;
  readonly groups: GroupDescriptorTable;
  readonly path: string;

  private constructor(
    path: string,
    bytes: Uint8Array,
    sb: Superblock,
    groups: GroupDescriptorTable,
  ) {
    this.path = path;
    this.bytes = bytes;
    this.sb = sb;
    this.groups = groups;
  }

  /** Loads an image file. */
  static async load(path: string): Promise<RawImage> {
    const bytes = await Deno.readFile(path);
    const sb = parseSuperblock(bytes.slice(1024, 2048));
    const groups = await readGroupDescriptors(new MemoryBlockDevice(bytes), sb);
    return new RawImage(path, bytes, sb, groups);
  }

  /** A copy of block `n`. */
  block(n: number): Uint8Array {
    const bs = this.sb.blockSize;
    return this.bytes.slice(n * bs, (n + 1) * bs);
  }

  /** Byte offset of inode `ino`'s record. */
  inodeOffset(ino: number): number {
    const ipg = this.sb.inodesPerGroup;
    const g = Math.floor((ino - 1) / ipg);
    const i = (ino - 1) % ipg;
    return this.groups.get(g).inodeTable * this.sb.blockSize + i * this.sb.inodeSize;
  }

  /** A copy of inode `ino`'s on-disk record. */
  inode(ino: number): Uint8Array {
    const o = this.inodeOffset(ino);
    return this.bytes.slice(o, o + this.sb.inodeSize);
  }

  /** Inode number of a path, by debugfs. */
  async ino(path: string): Promise<number> {
    const out = await runOk("debugfs", ["-R", `stat ${path}`, this.path]);
    const m = out.match(/Inode: (\d+)/);
    if (!m) throw new Error(`debugfs stat ${path}: ${out}`);
    return Number(m[1]);
  }

  /** Physical block of each logical block of inode `ino`, by debugfs (no holes expected). */
  async physicalBlocks(ino: number): Promise<number[]> {
    const out = await runOk("debugfs", ["-R", `blocks <${ino}>`, this.path]);
    return out.trim().split(/\s+/).filter((s) => s !== "").map(Number);
  }

  /** A DirectorySource over directory inode `ino`. */
  async directory(ino: number): Promise<DirectorySource> {
    const raw = this.inode(ino);
    const v = new DataView(raw.buffer);
    const flags = v.getUint32(0x20, true);
    const size = v.getUint32(0x4, true) + v.getUint32(0x6c, true) * 2 ** 32;
    const inline = hasInlineData(raw);
    const phys = inline ? [] : await this.physicalBlocks(ino);
    return {
      ino,
      generation: v.getUint32(0x64, true),
      size,
      blockSize: this.sb.blockSize,
      inlineData: inline ? readInlineData(this.sb, ino, raw) : null,
      readBlock: (l) => Promise.resolve(l < phys.length ? this.block(phys[l]) : null),
      isHtree: (flags & 0x1000) !== 0,
      flags,
    };
  }

  /** An XattrSource over inode `ino` (EA inode values read with debugfs cat). */
  xattrSource(ino: number): XattrSource {
    return {
      sb: this.sb,
      ino,
      inodeBytes: this.inode(ino),
      readBlock: (b) => Promise.resolve(this.block(b)),
      readEaInode: async (eino, size) => {
        const r = await run("debugfs", ["-R", `cat <${eino}>`, this.path]);
        return r.stdoutBytes.slice(0, size);
      },
    };
  }
}

/** Names and inode numbers of a directory as the kernel lists them (run inside a mount). */
export async function kernelListing(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  out.set(".", (await Deno.lstat(dir)).ino!);
  out.set("..", (await Deno.lstat(`${dir}/..`)).ino!);
  for await (const e of Deno.readDir(dir)) {
    out.set(e.name, (await Deno.lstat(`${dir}/${e.name}`)).ino!);
  }
  return out;
}

/** Decodes a name for comparisons. */
export function nameOf(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}
