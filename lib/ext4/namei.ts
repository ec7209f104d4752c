/**
 * Namespace operations at inode level, composed from the write path's parts: new inodes,
 * directory entries in linear directories (growing by a block when full), mkdir, create,
 * symlink, mknod, link, unlink and rmdir, and releasing an inode's blocks and attributes.
 * Path resolution is not here: callers pass directory inode numbers. Directories with an
 * htree index (INDEX flag) are written through lib/ext4/htree.ts.
 *
 * @module
 */

import {
  direntTypeOfMode,
  DirFileType,
  emptyDirBlock,
  insertDirEntry,
  newDirectoryBlock,
  parseDirBlock,
  removeDirEntry,
  retargetDirEntry,
  scanDirBlock,
  setDirBlockChecksum,
} from "../ondisk/dirent.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { emptyExtentRoot } from "../ondisk/extent.ts";
import { Compat, Incompat, RoCompat } from "../ondisk/features.ts";
import { dxCheckInsert, type DxDir, dxInsert, dxLookup, makeIndexed } from "./htree.ts";
import { isDxNode, setDxChecksum } from "../ondisk/dx.ts";
import { findExtent, insertExtents, readFileMap, rewriteFileMap } from "./file_map_write.ts";
import type { DirectorySource } from "./dir.ts";
import { lookupInDirectory } from "./lookup.ts";
import { readInlineData } from "../ondisk/inline_data.ts";
import { canInline, INLINE_MAX, inlineValueRoom, writeInline } from "./inline.ts";
import {
  canInlineDirectory,
  convertInlineDirectory,
  initInlineDirectory,
  inlineDirEntries,
  inlineDirInsert,
  inlineDirRemove,
  inlineDirRetarget,
} from "./inline_dir.ts";
import { writeNewFileData } from "./file_write.ts";
import { InodeFlags } from "../ondisk/inode.ts";
import {
  changeTime,
  decodeInode,
  encodeInode,
  type InodeFields,
  type InodeTime,
} from "../ondisk/inode.ts";
import { readInodeRaw, writeInode } from "./inode.ts";
import { deviceBlock, symlinkData } from "./special.ts";
import { chmodAccessAcl, releaseXattrBlock, setXattrs } from "./xattr.ts";
import { inheritAcls, inheritedXattrs, readDefaultAcl } from "./acl.ts";
import { parseInodeXattrs } from "../ondisk/xattr.ts";
import type { OpContext } from "./context.ts";

/** Size of an xattr entry's header (struct ext4_xattr_entry without its name). */
const XATTR_ENTRY_SIZE = 16;

/** Owner and permissions of a new inode. */
export interface NewInodeOptions {
  /** Permission bits (and setuid/setgid/sticky); the type comes from the operation. */
  perm: number;
  /** Owner id (default 0). */
  uid?: number;
  /** Group id (default 0). */
  gid?: number;
}

/** Largest link count; beyond it dir_nlink directories count 1. */
const LINK_MAX = 65000;
const ROOT_INO = 2;

function now(ctx: OpContext): InodeTime {
  return changeTime(ctx.now);
}

async function load(
  ctx: OpContext,
  ino: number,
): Promise<{ raw: Uint8Array; f: InodeFields }> {
  const raw = await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
  return { raw, f: decodeInode(ctx.sb, raw) };
}

async function store(
  ctx: OpContext,
  ino: number,
  raw: Uint8Array,
  f: InodeFields,
): Promise<void> {
  await writeInode(ctx.tx, ctx.sb, ctx.gdt, ino, encodeInode(ctx.sb, ino, f, raw));
}

function isDir(f: InodeFields): boolean {
  return (f.mode & 0o170000) === 0o040000;
}

function nameBytes(name: string | Uint8Array): Uint8Array {
  return typeof name === "string" ? new TextEncoder().encode(name) : name;
}

async function loadDir(ctx: OpContext, dirIno: number) {
  const d = await load(ctx, dirIno);
  if (!isDir(d.f)) throw new Ext4Error("NOT_DIRECTORY", `inode ${dirIno} is not a directory`);
  if (d.f.flags & InodeFlags.INLINE_DATA) {
    // Callers handle inline directories first (lib/ext4/inline_dir.ts).
    throw new Ext4Error("INVALID", `directory ${dirIno} is inline`);
  }
  const map = await readFileMap(ctx.tx, ctx.sb, dirIno, d.f);
  const indexed = (d.f.flags & InodeFlags.INDEX) !== 0;
  const dx: DxDir = {
    ino: dirIno,
    generation: d.f.generation,
    extents: map.extents,
    blocks: Math.ceil(d.f.size / ctx.sb.blockSize),
  };
  return { ...d, map, indexed, dx };
}

type LoadedDir = Awaited<ReturnType<typeof loadDir>>;

/** True when directory `dirIno` keeps its entries inline (NOT_DIRECTORY if not a directory). */
async function isInlineDir(ctx: OpContext, dirIno: number): Promise<boolean> {
  const { f } = await load(ctx, dirIno);
  if (!isDir(f)) throw new Ext4Error("NOT_DIRECTORY", `inode ${dirIno} is not a directory`);
  return (f.flags & InodeFlags.INLINE_DATA) !== 0;
}

function isDots(n: Uint8Array): 0 | 1 | 2 {
  if (n.length === 1 && n[0] === 0x2e) return 1;
  if (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e) return 2;
  return 0;
}

/** Physical blocks of a directory holding entries (leaves; index blocks skipped). */
async function leafBlocks(ctx: OpContext, d: LoadedDir): Promise<number[]> {
  const out: number[] = [];
  for (const e of d.map.extents) {
    for (let i = 0; i < e.length; i++) {
      if (d.indexed && e.logical + i === 0) continue;
      if (d.indexed && isDxNode(ctx.sb, await ctx.tx.read(e.physical + i))) continue;
      out.push(e.physical + i);
    }
  }
  return out;
}

/** The physical block holding the live entry `name` (not "." or ".."), or 0. */
async function blockOfEntry(ctx: OpContext, d: LoadedDir, n: Uint8Array): Promise<number> {
  if (d.indexed) return (await dxLookup(ctx.tx, ctx.sb, d.dx, n)).leaf;
  for (const b of await leafBlocks(ctx, d)) {
    if (scanDirBlock(ctx.sb, await ctx.tx.read(b), n).ino) return b;
  }
  return 0;
}

/** The live entries of a directory (without "." and ".."), in on-disk order. */
export async function listEntries(
  ctx: OpContext,
  dirIno: number,
): Promise<{ name: Uint8Array; ino: number; type: number }[]> {
  if (await isInlineDir(ctx, dirIno)) return await inlineDirEntries(ctx, dirIno);
  const d = await loadDir(ctx, dirIno);
  const out: { name: Uint8Array; ino: number; type: number }[] = [];
  for (const b of await leafBlocks(ctx, d)) {
    for (const x of parseDirBlock(ctx.sb, await ctx.tx.read(b), `directory ${dirIno}`)) {
      if (x.ino !== 0 && !isDots(x.name)) out.push({ name: x.name, ino: x.ino, type: x.type });
    }
  }
  return out;
}

/** True when directory `ino` holds nothing but "." and "..". */
async function isEmptyDir(ctx: OpContext, ino: number): Promise<boolean> {
  if (await isInlineDir(ctx, ino)) return (await inlineDirEntries(ctx, ino)).length === 0;
  const d = await loadDir(ctx, ino);
  for (const b of await leafBlocks(ctx, d)) {
    for (const x of parseDirBlock(ctx.sb, await ctx.tx.read(b), `directory ${d.dx.ino}`)) {
      if (x.ino !== 0 && !isDots(x.name)) return false;
    }
  }
  return true;
}

/** Block 0 of a directory, where "." (offset 0) and ".." (offset 12) live. */
function firstBlock(d: LoadedDir): number {
  const e = d.map.extents[0];
  if (!e || e.logical !== 0) throw new CorruptError(`directory ${d.dx.ino}`, "no block 0");
  return e.physical;
}

/**
 * Directory `dirIno` as the shared name lookup (lib/ext4/lookup.ts) reads it: through the
 * transaction, so it sees the transaction's own changes.
 */
async function txDirectorySource(ctx: OpContext, dirIno: number): Promise<DirectorySource> {
  const { raw, f } = await load(ctx, dirIno);
  if (!isDir(f)) throw new Ext4Error("NOT_DIRECTORY", `inode ${dirIno} is not a directory`);
  const bs = ctx.sb.blockSize;
  const inline = (f.flags & InodeFlags.INLINE_DATA) !== 0;
  const extents = inline ? [] : (await readFileMap(ctx.tx, ctx.sb, dirIno, f)).extents;
  return {
    ino: dirIno,
    generation: f.generation,
    size: f.size,
    blockSize: bs,
    inlineData: inline ? readInlineData(ctx.sb, dirIno, raw) : null,
    isHtree: !inline && (f.flags & InodeFlags.INDEX) !== 0,
    flags: f.flags,
    readBlock: async (logical) => {
      const e = findExtent(extents, logical);
      if (logical * bs >= f.size || !e || e.unwritten) return null;
      return await ctx.tx.read(e.physical + (logical - e.logical));
    },
  };
}

/** Looks `name` up in a directory (linear, htree or inline): its inode, or 0. */
export async function lookupEntry(
  ctx: OpContext,
  dirIno: number,
  name: string | Uint8Array,
): Promise<number> {
  const n = nameBytes(name);
  const src = await txDirectorySource(ctx, dirIno);
  if (n.length === 0 || n.length > 255) return 0;
  return (await lookupInDirectory(src, n, { sb: ctx.sb })) ?? 0;
}

/**
 * Allocates and writes a new inode of `mode` (type and permissions): zero size, one link
 * (two for a directory, set by the caller's entries), an empty extent root for files and
 * directories where the filesystem has extents. Under a directory with a default ACL (and
 * `ctx.inheritAcls` not false) the inode gets the inherited ACLs and the mode they imply
 * before anything else is stored, as the kernel's `ext4_init_acl` does; the returned fields
 * are then the inode's as written (mode, xattr block and its block count included).
 */
export async function newInode(
  ctx: OpContext,
  parentIno: number,
  mode: number,
  options: NewInodeOptions,
  contents: Partial<Pick<InodeFields, "size" | "blocks512" | "flags" | "block">> = {},
): Promise<{ ino: number; fields: InodeFields }> {
  const { sb, alloc } = ctx;
  const dir = (mode & 0o170000) === 0o040000;
  const ino = await alloc.allocateInode(ctx.tx, {
    dir,
    parentGroup: alloc.groupOfInode(parentIno),
    topLevel: parentIno === ROOT_INO,
  });
  const t = now(ctx);
  const acls = ctx.inheritAcls === false || (mode & 0o170000) === 0o120000
    ? null
    : inheritAcls(await readDefaultAcl(ctx.tx, sb, ctx.gdt, parentIno), mode);
  const extents = (sb.incompat & Incompat.EXTENTS) !== 0;
  const regOrDir = dir || (mode & 0o170000) === 0o100000;
  const fields: InodeFields = {
    mode: acls ? acls.mode : mode,
    uid: options.uid ?? 0,
    gid: options.gid ?? 0,
    size: 0,
    linksCount: 1,
    blocks512: 0,
    flags: extents && regOrDir ? InodeFlags.EXTENTS : 0,
    generation: crypto.getRandomValues(new Uint32Array(1))[0],
    atime: t,
    ctime: t,
    mtime: t,
    crtime: t,
    dtime: 0,
    fileAcl: 0,
    block: extents && regOrDir ? emptyExtentRoot() : new Uint8Array(60),
    version: 0,
    projid: 0,
    ...contents,
  };
  await writeInode(ctx.tx, sb, ctx.gdt, ino, encodeInode(sb, ino, fields));
  const changes = acls ? inheritedXattrs(acls) : [];
  if (changes.length === 0) return { ino, fields };
  await setXattrs(ctx.tx, alloc, sb, ctx.gdt, ino, changes, { now: t, create: true });
  return { ino, fields: (await load(ctx, ino)).f };
}

/**
 * Adds entry `name` → `ino` to directory `dirIno`: in the first block with room, else in a
 * new block appended to the directory. EXISTS if the name is taken.
 */
export async function addEntry(
  ctx: OpContext,
  dirIno: number,
  name: string | Uint8Array,
  ino: number,
  type: number,
): Promise<void> {
  const { sb, tx } = ctx;
  const n = nameBytes(name);
  if (isDots(n)) throw new Ext4Error("EXISTS", "'.' and '..' always exist");
  const entry = { ino, name: n, type: (sb.incompat & Incompat.FILETYPE) ? type : 0 };
  if (await isInlineDir(ctx, dirIno)) {
    if (await inlineDirInsert(ctx, dirIno, entry)) return;
    // Full: the directory becomes a block directory, as the kernel converts it.
    await convertInlineDirectory(ctx, dirIno);
  }
  const d = await loadDir(ctx, dirIno);
  let nextLogical = d.dx.blocks;
  const lastExtent = d.map.extents.at(-1);
  let lastPhysical = lastExtent ? lastExtent.physical + lastExtent.length - 1 : 0;
  const grow = async () => {
    // Without large_dir the kernel reads a directory's size from i_size_lo alone.
    if (!(sb.incompat & Incompat.LARGEDIR) && (nextLogical + 1) * sb.blockSize >= 2 ** 32) {
      throw new Ext4Error("NO_SPACE", `directory ${dirIno} would reach 4 GiB without large_dir`);
    }
    const [got] = await ctx.alloc.allocateBlocks(tx, lastPhysical + 1, 1);
    lastPhysical = got.start;
    return { logical: nextLogical++, physical: got.start };
  };
  if (!d.indexed) {
    // One pass: the name must be new, and the first block with room takes it.
    let target = -1;
    for (const b of await leafBlocks(ctx, d)) {
      const scan = scanDirBlock(sb, await tx.read(b), n, `directory ${dirIno}`);
      if (scan.ino) {
        throw new Ext4Error(
          "EXISTS",
          `${new TextDecoder().decode(n)} exists in directory ${dirIno}`,
        );
      }
      if (target < 0 && scan.room) target = b;
    }
    if (target >= 0) {
      const block = await tx.getWritable(target);
      if (!insertDirEntry(sb, block, entry)) {
        throw new CorruptError(`directory ${dirIno}`, "lost room");
      }
      setDirBlockChecksum(sb, dirIno, d.f.generation, block);
      return await touch(ctx, dirIno, d.raw, d.f);
    }
    if (!(sb.compat & Compat.DIR_INDEX) || d.dx.blocks !== 1) {
      // Grow a linear directory by one block.
      const fresh = await grow();
      const img = tx.newBlock(fresh.physical);
      img.set(emptyDirBlock(sb));
      insertDirEntry(sb, img, entry);
      setDirBlockChecksum(sb, dirIno, d.f.generation, img);
      d.dx.extents = [...d.dx.extents, {
        logical: fresh.logical,
        physical: fresh.physical,
        length: 1,
      }];
      d.dx.blocks = fresh.logical + 1;
      return await saveDir(ctx, d, false);
    }
    // A full one-block directory becomes an htree, as the kernel does.
    await makeIndexed(tx, sb, d.dx, grow);
    await dxInsert(tx, sb, d.dx, entry, grow);
    return await saveDir(ctx, d, true);
  }
  const before = d.dx.blocks;
  await dxInsert(tx, sb, d.dx, entry, grow); // EXISTS when taken, NO_SPACE when the index is full
  if (d.dx.blocks === before) return await touch(ctx, dirIno, d.raw, d.f);
  await saveDir(ctx, d, true);
}

/** Writes a directory's new mapping, size, block count and flags after it grew. */
async function saveDir(ctx: OpContext, d: LoadedDir, indexed: boolean): Promise<void> {
  const { sb, tx } = ctx;
  const extents = insertExtents([], d.dx.extents);
  const rebuilt = await rewriteFileMap(tx, ctx.alloc, sb, {
    ino: d.dx.ino,
    generation: d.f.generation,
    old: d.map,
    extents,
  });
  const per = sb.blockSize / 512;
  const oldData = d.map.extents.reduce((a, e) => a + e.length, 0);
  const newData = extents.reduce((a, e) => a + e.length, 0);
  await touch(ctx, d.dx.ino, d.raw, {
    ...d.f,
    size: d.dx.blocks * sb.blockSize,
    block: rebuilt.iBlock,
    flags: indexed ? d.f.flags | InodeFlags.INDEX : d.f.flags,
    blocks512: d.f.blocks512 +
      (newData - oldData + rebuilt.mapBlocks - d.map.mapBlocks.length) * per,
  });
}

async function touch(
  ctx: OpContext,
  ino: number,
  raw: Uint8Array,
  f: InodeFields,
): Promise<void> {
  const t = now(ctx);
  await store(ctx, ino, raw, { ...f, mtime: t, ctime: t });
}

/** Removes entry `name` from directory `dirIno`; returns its inode (NOT_FOUND if absent). */
export async function removeEntry(
  ctx: OpContext,
  dirIno: number,
  name: string | Uint8Array,
): Promise<number> {
  const n = nameBytes(name);
  if (isDots(n)) throw new Ext4Error("INVALID", "cannot remove '.' or '..'");
  if (await isInlineDir(ctx, dirIno)) {
    const gone = await inlineDirRemove(ctx, dirIno, n);
    if (!gone) {
      throw new Ext4Error(
        "NOT_FOUND",
        `${new TextDecoder().decode(n)} not in directory ${dirIno}`,
      );
    }
    return gone;
  }
  const d = await loadDir(ctx, dirIno);
  const b = await blockOfEntry(ctx, d, n);
  if (!b) {
    throw new Ext4Error("NOT_FOUND", `${new TextDecoder().decode(n)} not in directory ${dirIno}`);
  }
  const block = await ctx.tx.getWritable(b);
  const ino = removeDirEntry(ctx.sb, block, n);
  setDirBlockChecksum(ctx.sb, dirIno, d.f.generation, block);
  await touch(ctx, dirIno, d.raw, d.f);
  return ino;
}

/**
 * Throws before any change when `name` is taken in `parent`, when `parent`'s htree index is
 * full (NO_SPACE, the kernel's ENOSPC "index full"), or when `parent` is unusable.
 */
async function checkFree(ctx: OpContext, parent: number, name: string | Uint8Array) {
  const n = nameBytes(name);
  if (n.length === 0 || n.length > 255) throw new Ext4Error("NAME_TOO_LONG", "bad name length");
  // put creates names it knows are new; addEntry still refuses a taken one.
  if (ctx.newNames) return;
  const taken = () =>
    new Ext4Error("EXISTS", `${new TextDecoder().decode(n)} exists in directory ${parent}`);
  const { f } = await load(ctx, parent);
  const indexed = isDir(f) && (f.flags & InodeFlags.INDEX) !== 0 &&
    (f.flags & InodeFlags.INLINE_DATA) === 0;
  if (!indexed || isDots(n)) {
    if (await lookupEntry(ctx, parent, n)) throw taken();
    return;
  }
  const d = await loadDir(ctx, parent);
  const { ino, full } = await dxCheckInsert(ctx.tx, ctx.sb, d.dx, n);
  if (ino) throw taken();
  if (full) {
    throw new Ext4Error(
      "NO_SPACE",
      `directory ${parent}: index full, reach max htree level${
        ctx.sb.incompat & Incompat.LARGEDIR ? "" : " (the large_dir feature is not enabled)"
      }`,
    );
  }
}

async function changeLinks(
  ctx: OpContext,
  ino: number,
  delta: number,
): Promise<InodeFields> {
  const { raw, f } = await load(ctx, ino);
  let links = f.linksCount + delta;
  if (isDir(f)) {
    // dir_nlink: a directory with too many subdirectories counts 1.
    if (f.linksCount === 1 && delta !== 0) links = 1;
    else if (links >= LINK_MAX) {
      if (!(ctx.sb.roCompat & RoCompat.DIR_NLINK)) {
        throw new Ext4Error("TOO_MANY_LINKS", `directory ${ino} has too many subdirectories`);
      }
      links = 1;
    }
  } else if (links > LINK_MAX) {
    throw new Ext4Error("TOO_MANY_LINKS", `inode ${ino} has too many links`);
  }
  const t = now(ctx);
  const updated = { ...f, linksCount: Math.max(0, links), ctime: t };
  await store(ctx, ino, raw, updated);
  return updated;
}

/**
 * True when a "system.data" attribute with an empty value still fits the inode body of new
 * inode `ino` next to the attributes it already has (inherited ACLs), as the kernel's
 * ext4_xattr_ibody_set checks: entries, values and the end marker within the body.
 */
async function systemDataFits(ctx: OpContext, ino: number): Promise<boolean> {
  const { sb } = ctx;
  const raw = await readInodeRaw(ctx.tx, sb, ctx.gdt, ino);
  const r4 = (n: number) => (n + 3) & ~3;
  const extra = raw[0x80] | (raw[0x81] << 8);
  let free = sb.inodeSize - 128 - extra - 4 - 4; // the magic and the end marker
  for (const e of parseInodeXattrs(sb, ino, raw)) {
    free -= XATTR_ENTRY_SIZE + r4(e.suffix.length) + (e.valueInum ? 0 : r4(e.value.length));
  }
  return free >= XATTR_ENTRY_SIZE + r4(4); // "data", no value
}

/**
 * True when a new file of `size` bytes goes inline: as {@link canInline} for a fresh inode,
 * and (ext4_get_max_inline_size) only while the inode body, next to the attributes inode
 * `ino` already has, still leaves system.data a value.
 */
async function canInlineNew(ctx: OpContext, ino: number, size: number): Promise<boolean> {
  if (!canInline(ctx, size)) return false;
  const room = inlineValueRoom(ctx.sb, await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino));
  return room > 0 && size <= INLINE_MAX + room;
}

/** Creates directory `name` in `parent`; returns its inode. */
export async function makeDirectory(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  options: NewInodeOptions,
): Promise<number> {
  const { sb, tx } = ctx;
  await checkFree(ctx, parent, name);
  return await tx.discardOnError(async () => {
    const { ino, fields } = await newInode(
      ctx,
      parent,
      0o040000 | (options.perm & 0o7777),
      options,
    );
    if (canInlineDirectory(sb) && await systemDataFits(ctx, ino)) {
      // Directories start inline on inline_data filesystems, as the kernel makes them (not
      // when inherited ACLs leave the inode body no room: ext4_init_new_dir's ENOSPC).
      await initInlineDirectory(ctx, ino, parent);
      await addEntry(ctx, parent, name, ino, DirFileType.DIR);
      await changeLinks(ctx, parent, 1);
      return ino;
    }
    const [blk] = await ctx.alloc.allocateBlocks(tx, 0, 1);
    const img = tx.newBlock(blk.start);
    img.set(newDirectoryBlock(sb, ino, parent));
    setDirBlockChecksum(sb, ino, fields.generation, img);
    const raw = await readInodeRaw(tx, sb, ctx.gdt, ino);
    const map = await readFileMap(tx, sb, ino, fields);
    const rebuilt = await rewriteFileMap(tx, ctx.alloc, sb, {
      ino,
      generation: fields.generation,
      old: map,
      extents: [{ logical: 0, physical: blk.start, length: 1 }],
    });
    await store(ctx, ino, raw, {
      ...fields,
      linksCount: 2,
      size: sb.blockSize,
      block: rebuilt.iBlock,
      blocks512: fields.blocks512 + (1 + rebuilt.mapBlocks) * (sb.blockSize / 512),
    });
    await addEntry(ctx, parent, name, ino, DirFileType.DIR);
    await changeLinks(ctx, parent, 1);
    return ino;
  });
}

/** Creates a regular file `name` in `parent` holding `data`; returns its inode. */
export async function createFile(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  data: Uint8Array,
  options: NewInodeOptions & { sparse?: boolean; inline?: boolean },
): Promise<number> {
  await checkFree(ctx, parent, name);
  return await ctx.tx.discardOnError(async () => {
    const { ino, fields } = await newInode(
      ctx,
      parent,
      0o100000 | (options.perm & 0o7777),
      options,
    );
    if (options.inline !== false && await canInlineNew(ctx, ino, data.length)) {
      await writeInline(ctx, ino, data);
    } else if (data.length > 0) {
      const file = await writeNewFileData(ctx.tx, ctx.alloc, ctx.sb, {
        ino,
        generation: fields.generation,
        data,
        sparse: options.sparse,
      });
      const raw = await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
      await store(ctx, ino, raw, {
        ...fields,
        size: data.length,
        flags: (fields.flags & ~InodeFlags.EXTENTS) | file.flags,
        block: file.iBlock,
        blocks512: fields.blocks512 + file.blocks512, // an inherited ACL's block counts too
      });
    }
    await addEntry(ctx, parent, name, ino, DirFileType.REG_FILE);
    return ino;
  });
}

/** Creates symlink `name` → `target` in `parent`; returns its inode. */
export async function createSymlink(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  target: string | Uint8Array,
  options: Partial<NewInodeOptions> = {},
): Promise<number> {
  const t = nameBytes(target);
  await checkFree(ctx, parent, name);
  return await ctx.tx.discardOnError(async () => {
    const { ino, fields } = await newInode(ctx, parent, 0o120777, { perm: 0o777, ...options });
    const d = await symlinkData(ctx.tx, ctx.alloc, ctx.sb, {
      ino,
      generation: fields.generation,
      target: t,
    });
    const raw = await readInodeRaw(ctx.tx, ctx.sb, ctx.gdt, ino);
    await store(ctx, ino, raw, {
      ...fields,
      size: t.length,
      flags: d.flags,
      block: d.iBlock,
      blocks512: d.blocks512,
    });
    await addEntry(ctx, parent, name, ino, DirFileType.SYMLINK);
    return ino;
  });
}

/** Creates a device, FIFO or socket node (`mode` carries the type). */
export async function makeNode(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  mode: number,
  options: NewInodeOptions & { major?: number; minor?: number },
): Promise<number> {
  const type = mode & 0o170000;
  if (![0o020000, 0o060000, 0o010000, 0o140000].includes(type)) {
    throw new Ext4Error("INVALID", `mknod of mode 0${mode.toString(8)}`);
  }
  await checkFree(ctx, parent, name);
  return await ctx.tx.discardOnError(async () => {
    const device = type === 0o020000 || type === 0o060000;
    const { ino } = await newInode(ctx, parent, type | (options.perm & 0o7777), options, {
      block: device ? deviceBlock(options.major ?? 0, options.minor ?? 0) : new Uint8Array(60),
    });
    await addEntry(ctx, parent, name, ino, direntTypeOfMode(mode));
    return ino;
  });
}

/** Adds hard link `name` in `parent` to the non-directory `ino`. */
export async function linkInode(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  ino: number,
): Promise<void> {
  const { f } = await load(ctx, ino);
  if (isDir(f)) throw new Ext4Error("PERMISSION", "hard links to directories are not allowed");
  if (f.linksCount === 0) throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  await checkFree(ctx, parent, name);
  await ctx.tx.discardOnError(async () => {
    await changeLinks(ctx, ino, 1);
    await addEntry(ctx, parent, name, ino, direntTypeOfMode(f.mode));
  });
}

/**
 * Frees everything inode `ino` holds (data or directory blocks and mapping, its xattr block
 * unless shared) and the inode itself; marks it deleted (dtime, no links).
 */
export async function releaseInode(ctx: OpContext, ino: number): Promise<void> {
  const { sb, tx, alloc } = ctx;
  const { raw, f } = await load(ctx, ino);
  const fastLink = (f.mode & 0o170000) === 0o120000 &&
    f.blocks512 === (f.fileAcl ? sb.blockSize / 512 : 0);
  const special = [0o020000, 0o060000, 0o010000, 0o140000].includes(f.mode & 0o170000);
  if (!fastLink && !special && !(f.flags & InodeFlags.INLINE_DATA)) {
    const map = await readFileMap(tx, sb, ino, f);
    for (const e of map.extents) {
      await alloc.freeBlocks(tx, e.physical, e.length, { metadata: isDir(f) });
    }
    for (const b of map.mapBlocks) await alloc.freeBlocks(tx, b, 1, { metadata: true });
  }
  if (f.fileAcl) await releaseXattrBlock(tx, alloc, sb, f.fileAcl);
  await alloc.freeInode(tx, ino, { dir: isDir(f) });
  const t = now(ctx);
  await store(ctx, ino, raw, {
    ...f,
    linksCount: 0,
    dtime: Math.max(1, t.sec % 2 ** 32),
    ctime: t,
    size: 0,
    blocks512: 0,
    fileAcl: 0,
    block: (f.flags & InodeFlags.EXTENTS) ? emptyExtentRoot() : new Uint8Array(60),
  });
}

/**
 * Removes entry `name` (not a directory) from `parent`; the inode is released when its last
 * link goes (callers keeping it open put it on the orphan list instead).
 */
export async function unlinkEntry(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  options: { keepInode?: boolean } = {},
): Promise<number> {
  const ino = await lookupEntry(ctx, parent, name);
  if (!ino) throw new Ext4Error("NOT_FOUND", "no such entry");
  const { f } = await load(ctx, ino);
  if (isDir(f)) throw new Ext4Error("IS_DIRECTORY", "unlink of a directory");
  return await ctx.tx.discardOnError(async () => {
    await removeEntry(ctx, parent, name);
    const after = await changeLinks(ctx, ino, -1);
    if (after.linksCount === 0 && !options.keepInode) await releaseInode(ctx, ino);
    return ino;
  });
}

/** Removes the empty directory `name` from `parent`. */
export async function removeDirectory(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
): Promise<void> {
  const ino = await lookupEntry(ctx, parent, name);
  if (!ino) throw new Ext4Error("NOT_FOUND", "no such entry");
  if (!(await isEmptyDir(ctx, ino))) throw new Ext4Error("NOT_EMPTY", "directory not empty");
  const dotdot = await lookupEntry(ctx, ino, "..");
  if (dotdot !== parent) {
    throw new CorruptError(`directory ${ino}`, `'..' points to ${dotdot}, not ${parent}`);
  }
  await ctx.tx.discardOnError(async () => {
    await removeEntry(ctx, parent, name);
    await changeLinks(ctx, parent, -1);
    await releaseInode(ctx, ino);
  });
}

/** Points entry `name` of directory `dirIno` at `ino` in place; returns the old inode. */
async function retargetEntry(
  ctx: OpContext,
  dirIno: number,
  name: Uint8Array,
  ino: number,
  type: number,
): Promise<number> {
  const { sb, tx } = ctx;
  const ft = (sb.incompat & Incompat.FILETYPE) ? type : 0;
  if (await isInlineDir(ctx, dirIno)) {
    const old = await inlineDirRetarget(ctx, dirIno, name, ino, ft);
    if (!old) {
      throw new Ext4Error("NOT_FOUND", `no entry ${new TextDecoder().decode(name)} in ${dirIno}`);
    }
    return old;
  }
  const d = await loadDir(ctx, dirIno);
  if (isDots(name) === 2) {
    const block = await tx.getWritable(firstBlock(d));
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    const old = v.getUint32(12, true);
    v.setUint32(12, ino, true);
    if (d.indexed) setDxChecksum(sb, d.dx, block, true);
    else setDirBlockChecksum(sb, dirIno, d.f.generation, block);
    await touch(ctx, dirIno, d.raw, d.f);
    return old;
  }
  const b = await blockOfEntry(ctx, d, name);
  if (!b) {
    throw new Ext4Error("NOT_FOUND", `no entry ${new TextDecoder().decode(name)} in ${dirIno}`);
  }
  const block = await tx.getWritable(b);
  const old = retargetDirEntry(sb, block, name, ino, ft);
  setDirBlockChecksum(sb, dirIno, d.f.generation, block);
  await touch(ctx, dirIno, d.raw, d.f);
  return old;
}

/** True when directory `ino` is `ancestor` or lies below it (walking ".." up to the root). */
async function isWithin(ctx: OpContext, ino: number, ancestor: number): Promise<boolean> {
  const seen = new Set<number>();
  let cur = ino;
  for (;;) {
    if (cur === ancestor) return true;
    if (cur === ROOT_INO) return false;
    if (seen.has(cur)) throw new CorruptError(`directory ${ino}`, "'..' chain loops");
    seen.add(cur);
    cur = await lookupEntry(ctx, cur, "..");
    if (!cur) throw new CorruptError(`directory ${ino}`, "no '..' entry");
  }
}

/** Options for {@link renameEntry}. */
export interface RenameOptions {
  /** RENAME_NOREPLACE: fail with EXISTS if the target exists. */
  noReplace?: boolean;
  /** RENAME_EXCHANGE: swap the two entries (both must exist). */
  exchange?: boolean;
}

/**
 * Renames `oldName` in `oldParent` to `newName` in `newParent`, as rename(2)/renameat2: an
 * existing target is replaced (a directory only by a directory, and only when empty), moving
 * a directory updates its ".." and both parents' link counts, moving a directory into its own
 * subtree is INVALID. Refusals come before any change.
 */
export async function renameEntry(
  ctx: OpContext,
  oldParent: number,
  oldName: string | Uint8Array,
  newParent: number,
  newName: string | Uint8Array,
  options: RenameOptions = {},
): Promise<void> {
  const on = nameBytes(oldName);
  const nn = nameBytes(newName);
  const dotty = (n: Uint8Array) => n.length <= 2 && n.every((c) => c === 0x2e);
  if (dotty(on) || dotty(nn)) throw new Ext4Error("INVALID", "cannot rename '.' or '..'");
  if (nn.length === 0 || nn.length > 255) throw new Ext4Error("NAME_TOO_LONG", "bad name length");
  await isInlineDir(ctx, oldParent);
  await isInlineDir(ctx, newParent);
  const src = await lookupEntry(ctx, oldParent, on);
  if (!src) throw new Ext4Error("NOT_FOUND", "no such source entry");
  const dst = await lookupEntry(ctx, newParent, nn);
  const sf = (await load(ctx, src)).f;
  const srcDir = isDir(sf);
  const sameEntry = oldParent === newParent && on.length === nn.length &&
    on.every((b, i) => b === nn[i]);
  if (options.exchange) {
    if (!dst) throw new Ext4Error("NOT_FOUND", "no such target entry");
    const df = (await load(ctx, dst)).f;
    const dstDir = isDir(df);
    if (sameEntry || src === dst) return;
    if (srcDir && await isWithin(ctx, newParent, src)) {
      throw new Ext4Error("INVALID", "into itself");
    }
    if (dstDir && await isWithin(ctx, oldParent, dst)) {
      throw new Ext4Error("INVALID", "into itself");
    }
    await ctx.tx.discardOnError(async () => {
      await retargetEntry(ctx, oldParent, on, dst, direntTypeOfMode(df.mode));
      await retargetEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode));
      if (oldParent !== newParent) {
        if (srcDir) await retargetEntry(ctx, src, nameBytes(".."), newParent, DirFileType.DIR);
        if (dstDir) await retargetEntry(ctx, dst, nameBytes(".."), oldParent, DirFileType.DIR);
        const delta = (dstDir ? 1 : 0) - (srcDir ? 1 : 0);
        if (delta) {
          await changeLinks(ctx, oldParent, delta);
          await changeLinks(ctx, newParent, -delta);
        }
      }
      await changeLinks(ctx, src, 0);
      await changeLinks(ctx, dst, 0);
    });
    return;
  }
  if (sameEntry) return;
  let dstDir = false;
  if (dst) {
    if (options.noReplace) throw new Ext4Error("EXISTS", "target exists");
    if (dst === src) return; // two links to one inode: nothing to do
    const df = (await load(ctx, dst)).f;
    dstDir = isDir(df);
    if (dstDir && !srcDir) throw new Ext4Error("IS_DIRECTORY", "target is a directory");
    if (!dstDir && srcDir) throw new Ext4Error("NOT_DIRECTORY", "target is not a directory");
    if (dstDir) {
      if (!(await isEmptyDir(ctx, dst))) {
        throw new Ext4Error("NOT_EMPTY", "target not empty");
      }
    }
  }
  if (srcDir && await isWithin(ctx, newParent, src)) {
    throw new Ext4Error("INVALID", "cannot move a directory into itself");
  }
  if (!dst) await checkFree(ctx, newParent, nn);
  await ctx.tx.discardOnError(async () => {
    if (dst) {
      await retargetEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode));
      if (dstDir) {
        await changeLinks(ctx, newParent, -1); // dst's ".." is gone
        await releaseInode(ctx, dst);
      } else {
        const after = await changeLinks(ctx, dst, -1);
        if (after.linksCount === 0) await releaseInode(ctx, dst);
      }
    } else {
      await addEntry(ctx, newParent, nn, src, direntTypeOfMode(sf.mode));
    }
    await removeEntry(ctx, oldParent, on);
    if (srcDir && oldParent !== newParent) {
      await retargetEntry(ctx, src, nameBytes(".."), newParent, DirFileType.DIR);
      await changeLinks(ctx, oldParent, -1);
      await changeLinks(ctx, newParent, 1);
    }
    await changeLinks(ctx, src, 0); // ctime
  });
}

/** Attributes {@link setAttributes} can change. */
export interface AttributeChange {
  /** Permission bits (the type bits are kept). */
  perm?: number;
  /** New owner id; absent keeps it. */
  uid?: number;
  /** New group id; absent keeps it. */
  gid?: number;
  /** New access time; absent keeps it. */
  atime?: InodeTime;
  /** New modification time; absent keeps it. */
  mtime?: InodeTime;
  /** Inode flags to set (e.g. IMMUTABLE, APPEND, NODUMP, NOATIME). */
  flags?: number;
}

/** chmod, chown, utimes and flag changes; ctime becomes now. */
export async function setAttributes(
  ctx: OpContext,
  ino: number,
  change: AttributeChange,
): Promise<void> {
  const { raw, f } = await load(ctx, ino);
  // Freed in the bitmap, not just unlinked: an orphan (unlinked while open) is still changed.
  if (f.linksCount === 0 && !(await ctx.alloc.isInodeInUse(ctx.tx, ino))) {
    throw new Ext4Error("NOT_FOUND", `inode ${ino} is deleted`);
  }
  const settable = InodeFlags.SYNC | InodeFlags.IMMUTABLE | InodeFlags.APPEND | InodeFlags.NODUMP |
    InodeFlags.NOATIME | InodeFlags.PROJINHERIT;
  if (change.flags !== undefined && (change.flags & ~settable) !== 0) {
    throw new Ext4Error("INVALID", `flags 0x${change.flags.toString(16)} cannot be set`);
  }
  const t = now(ctx);
  const mode = change.perm === undefined ? f.mode : (f.mode & 0o170000) | (change.perm & 0o7777);
  await store(ctx, ino, raw, {
    ...f,
    mode,
    uid: change.uid ?? f.uid,
    gid: change.gid ?? f.gid,
    atime: change.atime ?? f.atime,
    mtime: change.mtime ?? f.mtime,
    flags: change.flags === undefined ? f.flags : (f.flags & ~settable) | change.flags,
    ctime: t,
  });
  // chmod also rewrites the access ACL's owner/mask/other entries (posix_acl_chmod).
  if (change.perm !== undefined) {
    await ctx.tx.discardOnError(async () => {
      await chmodAccessAcl(ctx.tx, ctx.alloc, ctx.sb, ctx.gdt, ino, mode, t);
    });
  }
}
