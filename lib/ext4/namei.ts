/**
 * Namespace operations at inode level that create, composed from the write path's parts: new
 * inodes, directory entries in linear directories (growing by a block when full), mkdir,
 * create, symlink, mknod and link, with the directory helpers the other namespace modules
 * share (removing: lib/ext4/unlink.ts, rename: lib/ext4/rename.ts, attributes:
 * lib/ext4/attr.ts). Path resolution is not here: callers pass directory inode numbers.
 * Directories with an htree index (INDEX flag) are written through lib/ext4/htree.ts.
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
  scanDirBlock,
  setDirBlockChecksum,
} from "../ondisk/dirent.ts";
import { CorruptError, Ext4Error } from "../errors.ts";
import { emptyExtentRoot } from "../ondisk/extent.ts";
import { Compat, Incompat, RoCompat } from "../ondisk/features.ts";
import {
  dxCheckInsert,
  type DxDir,
  dxInsert,
  dxLookup,
  type DxPath,
  makeIndexed,
} from "./htree.ts";
import { isDxNode } from "../ondisk/dx.ts";
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
} from "./inline_dir.ts";
import { writeNewFileData } from "./file_write.ts";
import { InodeFlags } from "../ondisk/inode.ts";
import { changeTime, encodeInode, type InodeFields, type InodeTime } from "../ondisk/inode.ts";
import { loadInode, peekInodeFields, readInodeRaw, writeInode } from "./inode.ts";
import { deviceBlock, symlinkData } from "./special.ts";
import { setXattrs } from "./xattr.ts";
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
  /** Access time (default now): a copy keeps its source's without a second inode write. */
  atime?: InodeTime;
  /** Modification time (default now), as `atime`. */
  mtime?: InodeTime;
}

/** Largest link count; beyond it dir_nlink directories count 1. */
const LINK_MAX = 65000;
const ROOT_INO = 2;

/** The time an operation stamps (ctime, mtime): the context's clock. */
export function now(ctx: OpContext): InodeTime {
  return changeTime(ctx.now);
}

// load, peek and store hand on their callee's promise (not async themselves): each runs several
// times per operation, and an async wrapper costs a promise and a microtask turn every time.

/** Inode `ino`'s raw record (through the transaction) and its decoded fields. */
export function load(
  ctx: OpContext,
  ino: number,
): Promise<{ raw: Uint8Array; f: InodeFields }> {
  return loadInode(ctx.tx, ctx.sb, ctx.gdt, ino);
}

/** Inode `ino`'s fields to look at only: not a copy, never to be changed. */
export function peek(ctx: OpContext, ino: number): Promise<Readonly<InodeFields>> {
  return peekInodeFields(ctx.tx, ctx.sb, ctx.gdt, ino);
}

/** Writes fields `f` of inode `ino` over its raw record `raw`. */
export function store(
  ctx: OpContext,
  ino: number,
  raw: Uint8Array,
  f: InodeFields,
): Promise<void> {
  // encodeInode may throw: a rejected promise, as from an async function.
  try {
    return writeInode(ctx.tx, ctx.sb, ctx.gdt, ino, encodeInode(ctx.sb, ino, f, raw));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** True when the fields are a directory's. */
export function isDir(f: Readonly<InodeFields>): boolean {
  return (f.mode & 0o170000) === 0o040000;
}

/** A name as bytes (a string is encoded as UTF-8). */
export function nameBytes(name: string | Uint8Array): Uint8Array {
  return typeof name === "string" ? new TextEncoder().encode(name) : name;
}

/**
 * Directory `dirIno` with its block mapping and htree view (NOT_DIRECTORY if it is not one;
 * inline directories are the caller's to handle first).
 */
export async function loadDir(ctx: OpContext, dirIno: number) {
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
  // Added to the loaded record, not spread from it: its raw copy stays made on first use.
  return Object.assign(d, { map, indexed, dx });
}

/** A directory as {@link loadDir} loads it. */
export type LoadedDir = Awaited<ReturnType<typeof loadDir>>;

/** True when directory `dirIno` keeps its entries inline (NOT_DIRECTORY if not a directory). */
export async function isInlineDir(ctx: OpContext, dirIno: number): Promise<boolean> {
  const f = await peek(ctx, dirIno);
  if (!isDir(f)) throw new Ext4Error("NOT_DIRECTORY", `inode ${dirIno} is not a directory`);
  return (f.flags & InodeFlags.INLINE_DATA) !== 0;
}

/** 1 for ".", 2 for "..", 0 for any other name. */
export function isDots(n: Uint8Array): 0 | 1 | 2 {
  if (n.length === 1 && n[0] === 0x2e) return 1;
  if (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e) return 2;
  return 0;
}

/** Physical blocks of a directory holding entries (leaves; index blocks skipped). */
export async function leafBlocks(ctx: OpContext, d: LoadedDir): Promise<number[]> {
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
export async function blockOfEntry(ctx: OpContext, d: LoadedDir, n: Uint8Array): Promise<number> {
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

/**
 * Directory `dirIno` as the shared name lookup (lib/ext4/lookup.ts) reads it: through the
 * transaction, so it sees the transaction's own changes.
 */
async function txDirectorySource(ctx: OpContext, dirIno: number): Promise<DirectorySource> {
  const loaded = await load(ctx, dirIno); // its raw copy only for an inline directory
  const f = loaded.f;
  if (!isDir(f)) throw new Ext4Error("NOT_DIRECTORY", `inode ${dirIno} is not a directory`);
  const bs = ctx.sb.blockSize;
  const inline = (f.flags & InodeFlags.INLINE_DATA) !== 0;
  const extents = inline ? [] : (await readFileMap(ctx.tx, ctx.sb, dirIno, f)).extents;
  return {
    ino: dirIno,
    generation: f.generation,
    size: f.size,
    blockSize: bs,
    inlineData: inline ? readInlineData(ctx.sb, dirIno, loaded.raw) : null,
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
 * are then the inode's as written (mode, xattr block and its block count included). `raw` is
 * the record as stored, for the caller's next {@link store} without reading it back.
 */
export async function newInode(
  ctx: OpContext,
  parentIno: number,
  mode: number,
  options: NewInodeOptions,
  contents: Partial<Pick<InodeFields, "size" | "blocks512" | "flags" | "block">> = {},
): Promise<{ ino: number; fields: InodeFields; raw: Uint8Array }> {
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
    atime: options.atime ?? t,
    ctime: t,
    mtime: options.mtime ?? t,
    crtime: t,
    dtime: 0,
    fileAcl: 0,
    block: extents && regOrDir ? emptyExtentRoot() : new Uint8Array(60),
    version: 0,
    projid: 0,
    ...contents,
  };
  const raw = encodeInode(sb, ino, fields);
  await writeInode(ctx.tx, sb, ctx.gdt, ino, raw);
  const changes = acls ? inheritedXattrs(acls) : [];
  if (changes.length === 0) return { ino, fields, raw };
  await setXattrs(ctx.tx, alloc, sb, ctx.gdt, ino, changes, { now: t, create: true });
  const stored = await load(ctx, ino);
  return { ino, fields: stored.f, raw: stored.raw };
}

/**
 * Adds entry `name` → `ino` to directory `dirIno`: in the first block with room, else in a
 * new block appended to the directory. EXISTS if the name is taken. `checked`: what
 * {@link checkFree} returned for this name, the directory's blocks and record unchanged since
 * (it then skips loading the directory again, and the second probe and search of the index).
 */
export async function addEntry(
  ctx: OpContext,
  dirIno: number,
  name: string | Uint8Array,
  ino: number,
  type: number,
  checked?: CheckedName,
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
  const d = checked?.dir ?? await loadDir(ctx, dirIno);
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
      if (ctx.dirTimes === false) return; // the record is otherwise unchanged
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
  // EXISTS when taken, NO_SPACE when the index is full (unless `checked` says so already).
  await dxInsert(tx, sb, d.dx, entry, grow, checked?.path);
  if (d.dx.blocks === before) {
    if (ctx.dirTimes === false) return; // the record is otherwise unchanged
    return await touch(ctx, dirIno, d.raw, d.f);
  }
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

/** Sets a directory's mtime and ctime to now after its entries changed. */
export async function touch(
  ctx: OpContext,
  ino: number,
  raw: Uint8Array,
  f: InodeFields,
): Promise<void> {
  const t = now(ctx);
  await store(ctx, ino, raw, { ...f, mtime: t, ctime: t });
}

/**
 * Throws before any change when `name` is taken in `parent`, when `parent`'s htree index is
 * full (NO_SPACE, the kernel's ENOSPC "index full"), or when `parent` is unusable. For an htree
 * directory returns the directory as loaded and its probe for `name`, which {@link addEntry}
 * may reuse while nothing has changed the directory's blocks and record.
 */
export async function checkFree(
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
): Promise<CheckedName | undefined> {
  const n = nameBytes(name);
  if (n.length === 0 || n.length > 255) throw new Ext4Error("NAME_TOO_LONG", "bad name length");
  // put creates names it knows are new; addEntry still refuses a taken one.
  if (ctx.newNames) return undefined;
  const taken = () =>
    new Ext4Error("EXISTS", `${new TextDecoder().decode(n)} exists in directory ${parent}`);
  const f = await peek(ctx, parent);
  const indexed = isDir(f) && (f.flags & InodeFlags.INDEX) !== 0 &&
    (f.flags & InodeFlags.INLINE_DATA) === 0;
  if (!indexed || isDots(n)) {
    if (await lookupEntry(ctx, parent, n)) throw taken();
    return undefined;
  }
  const d = await loadDir(ctx, parent);
  const { ino, full, path } = await dxCheckInsert(ctx.tx, ctx.sb, d.dx, n);
  if (ino) throw taken();
  if (full) {
    throw new Ext4Error(
      "NO_SPACE",
      `directory ${parent}: index full, reach max htree level${
        ctx.sb.incompat & Incompat.LARGEDIR ? "" : " (the large_dir feature is not enabled)"
      }`,
    );
  }
  return { dir: d, path };
}

/** An htree directory as {@link checkFree} loaded it, and its probe for the name it checked. */
export interface CheckedName {
  /** The directory, loaded. */
  dir: LoadedDir;
  /** The index path to the leaf the name belongs in. */
  path: DxPath;
}

/**
 * Adds `delta` to inode `ino`'s link count (the dir_nlink rule for directories, TOO_MANY_LINKS
 * beyond the limit) and sets its ctime; returns the fields as written.
 */
export async function changeLinks(
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
  const checked = await checkFree(ctx, parent, name); // reused by addEntry, as in createFile
  return await tx.discardOnError(async () => {
    const { ino, fields, raw } = await newInode(
      ctx,
      parent,
      0o040000 | (options.perm & 0o7777),
      options,
    );
    if (canInlineDirectory(sb) && await systemDataFits(ctx, ino)) {
      // Directories start inline on inline_data filesystems, as the kernel makes them (not
      // when inherited ACLs leave the inode body no room: ext4_init_new_dir's ENOSPC).
      await initInlineDirectory(ctx, ino, parent);
      await addEntry(ctx, parent, name, ino, DirFileType.DIR, checked);
      await changeLinks(ctx, parent, 1);
      return ino;
    }
    const [blk] = await ctx.alloc.allocateBlocks(tx, 0, 1);
    const img = tx.newBlock(blk.start);
    img.set(newDirectoryBlock(sb, ino, parent));
    setDirBlockChecksum(sb, ino, fields.generation, img);
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
    await addEntry(ctx, parent, name, ino, DirFileType.DIR, checked);
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
  options: NewInodeOptions & { sparse?: boolean; inline?: boolean; zeroPadded?: boolean },
): Promise<number> {
  // Checked before anything is allocated (a refusal leaves the transaction open); the probe is
  // reused by the insert: nothing between them changes the directory's blocks.
  const checked = await checkFree(ctx, parent, name);
  return await ctx.tx.discardOnError(async () => {
    const { ino, fields, raw } = await newInode(
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
        zeroPadded: options.zeroPadded,
      });
      await store(ctx, ino, raw, {
        ...fields,
        size: data.length,
        flags: (fields.flags & ~InodeFlags.EXTENTS) | file.flags,
        block: file.iBlock,
        blocks512: fields.blocks512 + file.blocks512, // an inherited ACL's block counts too
      });
    }
    await addEntry(ctx, parent, name, ino, DirFileType.REG_FILE, checked);
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
  const checked = await checkFree(ctx, parent, name); // reused by addEntry, as in createFile
  return await ctx.tx.discardOnError(async () => {
    const { ino, fields, raw } = await newInode(ctx, parent, 0o120777, { perm: 0o777, ...options });
    const d = await symlinkData(ctx.tx, ctx.alloc, ctx.sb, {
      ino,
      generation: fields.generation,
      target: t,
    });
    await store(ctx, ino, raw, {
      ...fields,
      size: t.length,
      flags: d.flags,
      block: d.iBlock,
      blocks512: d.blocks512,
    });
    await addEntry(ctx, parent, name, ino, DirFileType.SYMLINK, checked);
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
