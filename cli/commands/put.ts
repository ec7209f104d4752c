import type { Command } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { Incompat } from "../../lib/ondisk/features.ts";
import { truncateFile, writeFileRange } from "../../lib/ext4/file_update.ts";
import { Mode } from "../../lib/ondisk/inode.ts";
import { getInode } from "../../lib/ext4/inode.ts";
import {
  createFile,
  createSymlink,
  linkInode,
  load,
  lookupEntry,
  makeDirectory,
  makeNode,
  type NewInodeOptions,
  touch,
} from "../../lib/ext4/namei.ts";
import { unlinkEntry } from "../../lib/ext4/unlink.ts";
import { setAttributes } from "../../lib/ext4/attr.ts";
import { resolvePath } from "../../lib/ext4/path_ops.ts";
import type { Ext4Writer } from "../../lib/ext4/writer.ts";
import { setXattrs, xattrNameForWrite } from "../../lib/ext4/xattr.ts";
import {
  getXattr,
  HostFile,
  type HostPath,
  type HostStat,
  joinPath,
  listXattrs,
  lstatx,
  readDirNames,
  readLinkBytes,
  showPath,
} from "../../ffi/host_tree.ts";
import { runAction, writeStdout } from "../output.ts";
import { Progress, progressMode } from "../progress.ts";
import { parseOffset } from "../reader_common.ts";
import { FORCE_UNCHECKED_HELP, withWriter, writeOpenOptions } from "../writer_open.ts";
import { ExitCode } from "../exit_codes.ts";
import { documentCommand, WRITER_EXIT_CODES } from "../help.ts";
import type { OpContext } from "../../lib/ext4/context.ts";

/** Entries per transaction, and bytes of file data per transaction. */
const BATCH_ENTRIES = 4096;
const BATCH_BYTES = 32 << 20;
/** Bytes read from the host at a time when a file is streamed. */
const CHUNK = 8 << 20;
/**
 * Small files are read into one shared buffer of this size, each at a block boundary, rather
 * than one allocation each (and another to pad its last block): the transaction queues their
 * blocks as views of it until the commit.
 */
const SMALL_FILES_BUFFER = 4 << 20;
/**
 * Children of a directory read from the host in one synchronous pass before they are made:
 * at most this many, and this many bytes of small files' contents. The host's calls then run
 * back to back in one hot loop, not each between asynchronous library steps (measured about
 * 3x cheaper per call).
 */
const HOST_RUN_ENTRIES = 256;
const HOST_RUN_BYTES = 8 << 20;

/** What put needs of one host object, read before it is copied. */
interface HostEntry {
  st: HostStat;
  /** Names of its xattrs (none listed for a further link to an inode already copied). */
  xattrs: string[];
  /** A symlink's target. */
  target?: Uint8Array;
  /** A regular file's contents when at most one batch (holes as zeros), block-padded. */
  data?: Uint8Array;
  /**
   * A further name of a linked file that an entry read earlier holds the contents of: read
   * only if it is copied before that entry (a subdirectory's entries are copied before its
   * parent's later ones).
   */
  deferred?: boolean;
}

const dec = new TextDecoder();

/** What {@link putTree} copied. */
export interface PutStats {
  files: number;
  dirs: number;
  symlinks: number;
  links: number;
  /** Devices, fifos and sockets. */
  others: number;
  bytes: number;
  /** Extended attributes copied (ACLs included). */
  xattrs: number;
  /** "path: name" of host xattrs ext4 cannot store (an unknown namespace), not copied. */
  skippedXattrs: string[];
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Tuning of {@link putTree}. */
export interface PutOptions {
  /** Entries per transaction (default 4096). */
  batchEntries?: number;
  /** Bytes of file data per transaction, and the size above which files are streamed (32 MiB). */
  batchBytes?: number;
  /**
   * Replace what is in the way (`put --force`, as `cp -f`): an existing non-directory is
   * unlinked and copied anew, an existing directory is merged (its mode, owner, times and
   * the host's xattrs set from the host's). A type clash (a directory over a non-directory
   * or the reverse) fails naming the path. Without it, any existing name fails with EXISTS.
   */
  force?: boolean;
  /** Called with each object's path inside the filesystem once it is copied (`-v`). */
  onEntry?: (path: string) => void;
  /** Called after each object and each streamed chunk with bytes and objects done. */
  onProgress?: (bytes: number, entries: number) => void;
}

/** Objects copied so far. */
function entriesOf(s: PutStats): number {
  return s.files + s.dirs + s.symlinks + s.links + s.others;
}

/**
 * What copying host `src` involves: its objects and the bytes of its regular files (a hard
 * linked file counted once), read with the same lstat and directory calls as the copy.
 *
 * @example
 * ```ts ignore
 * const { bytes, entries } = hostTotals("/srv/root");
 * ```
 */
export function hostTotals(src: HostPath): { bytes: number; entries: number } {
  let bytes = 0;
  let entries = 0;
  const seen = new Set<string>();
  const stack: HostPath[] = [src];
  while (stack.length > 0) {
    const path = stack.pop()!;
    const st = lstatx(path);
    entries++;
    const type = st.mode & Mode.IFMT;
    if (type === Mode.IFDIR) {
      for (const n of readDirNames(path)) stack.push(joinPath(path, n));
    } else if (type === Mode.IFREG && !(st.nlink > 1 && seen.has(`${st.dev}:${st.ino}`))) {
      if (st.nlink > 1) seen.add(`${st.dev}:${st.ino}`);
      bytes += st.size;
    }
  }
  return { bytes, entries };
}

/** `SRC/.` (or `.`): the contents of SRC go into DEST, as `cp -a SRC/. DEST`. */
function isContents(src: string): boolean {
  return /(^|\/)\.\/*$/.test(src);
}

/**
 * Copies the host file or tree `src` to `dest` inside the filesystem, preserving modes,
 * owners, atime and mtime with nanoseconds, symlinks, hard links, devices, fifos, sockets,
 * extended attributes (POSIX ACLs, security.*, trusted.*, user.*) and holes of sparse files.
 * Host metadata comes from synchronous libc calls (ffi/host_tree.ts), host paths and names
 * as bytes; files larger than one batch are streamed. Commits every 4096 entries or 32 MiB
 * of data (see {@link PutOptions}), so what is on disk is consistent at every commit (a
 * prefix of the tree, a streamed file possibly cut short); a failure loses the uncommitted
 * batch only.
 *
 * @example
 * ```ts ignore
 * await withWriter("fs.img", {}, (w) => putTree(w, "/srv/root", "/"));
 * ```
 */
export async function putTree(
  w: Ext4Writer,
  src: string,
  dest: string,
  options: PutOptions = {},
): Promise<PutStats> {
  const batchEntries = options.batchEntries ?? BATCH_ENTRIES;
  const batchBytes = options.batchBytes ?? BATCH_BYTES;
  const stats: PutStats = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    links: 0,
    others: 0,
    bytes: 0,
    xattrs: 0,
    skippedXattrs: [],
  };
  const seen = new Map<string, number>(); // host dev:ino -> inode, for hard links
  const readAhead = new Set<string>(); // host dev:ino of linked files read, copied or not yet
  const inlineData = (w.sb.incompat & Incompat.INLINE_DATA) !== 0;
  let tx = w.cache.begin();
  let pending = 0;
  let pendingBytes = 0;
  // Names come from host directories (unique) into directories put itself made, and the
  // top-level name is checked below: the lookup before each create can be skipped. No ACL
  // inheritance: the host's own ACLs are copied (a file without one must stay without one).
  const context = (): OpContext => ({
    tx,
    alloc: w.alloc,
    sb: w.sb,
    gdt: w.gdt,
    newNames: true,
    inheritAcls: false,
    dirTimes: false, // set once per directory, after its children
  });
  let ctx = context();
  const maybeCommit = async (force = false) => {
    if (
      force || pending >= batchEntries || pendingBytes >= batchBytes ||
      // What the journal takes per transaction, with room for the next entry's blocks.
      tx.metadataBlocks >= w.transactionBlockLimit / 2
    ) {
      await w.commit(tx);
      tx = w.cache.begin();
      ctx = context();
      pending = 0;
      pendingBytes = 0;
    }
  };
  const copyXattrs = async (hostPath: HostPath, ino: number, names: string[]) => {
    // The whole set in one call: the inode and its xattr block are written once (a block
    // shared with identical sets where possible), never an intermediate block per attribute.
    const changes: { name: string; value: Uint8Array }[] = [];
    for (const name of names) {
      try {
        xattrNameForWrite(name);
      } catch (e) {
        // A namespace ext4 has no index for (e.g. from another filesystem): skipped.
        if (e instanceof Ext4Error && e.code === "UNSUPPORTED") {
          stats.skippedXattrs.push(`${showPath(hostPath)}: ${name}`);
          continue;
        }
        throw e;
      }
      const value = getXattr(hostPath, name);
      if (value !== null) changes.push({ name, value });
    }
    if (changes.length === 0) return;
    try {
      await setXattrs(tx, w.alloc, w.sb, w.gdt, ino, changes);
      stats.xattrs += changes.length;
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      const what = e.code === "NO_SPACE"
        ? `xattr ${changes.map((c) => c.name).join(", ")} (${
          changes.reduce((n, c) => n + c.value.length, 0)
        } bytes) cannot fit: ${e.message}`
        : e.message;
      throw new Ext4Error(e.code, `${showPath(hostPath)}: ${what}`, { cause: e, errno: e.errno });
    }
  };
  const bs = w.sb.blockSize;
  let smallFiles = new Uint8Array(0);
  let smallFilesUsed = 0;
  /**
   * `size` zero bytes, followed in their buffer by zeros up to a block boundary: from the
   * shared buffer when they fit in it (a fresh one when it is full; never reused, so views the
   * transaction holds stay as they were), else a buffer of their own.
   */
  const blockPadded = (size: number): Uint8Array => {
    const padded = Math.ceil(size / bs) * bs;
    if (padded > SMALL_FILES_BUFFER / 4) return new Uint8Array(padded).subarray(0, size);
    if (smallFilesUsed + padded > smallFiles.length) {
      smallFiles = new Uint8Array(SMALL_FILES_BUFFER);
      smallFilesUsed = 0;
    }
    const out = smallFiles.subarray(smallFilesUsed, smallFilesUsed + size);
    smallFilesUsed += padded;
    return out;
  };
  /** Where a host file's data is: asked of the host when it has fewer blocks than its size. */
  const dataRegionsOf = (h: HostFile, st: HostStat): [number, number][] =>
    st.blocks * 512 < st.size ? h.dataRegions(st.size) : [[0, st.size]];
  /**
   * The host side of copying `hostPath`: its statx, xattr names, a symlink's target and a
   * small file's contents (a larger one is streamed when copied).
   */
  const readHostEntry = (hostPath: HostPath, force = false): HostEntry => {
    const st = lstatx(hostPath);
    const type = st.mode & Mode.IFMT;
    if (type !== Mode.IFDIR && st.nlink > 1 && !force) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return { st, xattrs: [] };
      // Two names of one file in a directory's run: its contents are read once.
      if (readAhead.has(key)) return { st, xattrs: [], deferred: true };
      readAhead.add(key);
    }
    const xattrs = listXattrs(hostPath);
    if (type === Mode.IFLNK) return { st, xattrs, target: readLinkBytes(hostPath) };
    if (type !== Mode.IFREG || st.size > batchBytes) return { st, xattrs };
    using h = new HostFile(hostPath);
    const data = blockPadded(st.size);
    for (const [from, to] of dataRegionsOf(h, st)) h.read(data.subarray(from, to), from);
    return { st, xattrs, data };
  };
  /** A regular file: read whole (holes stay zeros, written sparse) or streamed by regions. */
  const copyFile = async (
    hostPath: HostPath,
    parent: number,
    name: string | Uint8Array,
    entry: HostEntry,
    owner: NewInodeOptions,
    inline: boolean,
  ): Promise<number> => {
    const { st, data } = entry;
    const size = st.size;
    if (data) {
      pendingBytes += size;
      return await createFile(ctx, parent, name, data, {
        ...owner,
        sparse: true,
        inline,
        zeroPadded: true,
      });
    }
    using h = new HostFile(hostPath);
    const regions = dataRegionsOf(h, st);
    const ino = await createFile(ctx, parent, name, new Uint8Array(0), { ...owner, inline });
    const chunk = Math.min(CHUNK, batchBytes);
    const buf = new Uint8Array(chunk);
    for (const [from, to] of regions) {
      for (let off = from; off < to;) {
        const n = h.read(buf.subarray(0, Math.min(chunk, to - off)), off);
        if (n === 0) break; // the host file shrank
        await writeFileRange(ctx, ino, off, buf.subarray(0, n));
        off += n;
        pendingBytes += n;
        options.onProgress?.(stats.bytes + off, entriesOf(stats));
        await maybeCommit();
      }
    }
    // A trailing hole: the size says where the file ends.
    await truncateFile(ctx, ino, size);
    return ino;
  };
  /**
   * The directory that received the copy's top entry (not one put made or merged, whose times
   * come from the host) gets its mtime and ctime stamped, as adding the entry would have done
   * had the context not left directory times alone (`dirTimes: false`).
   */
  const stampDirectory = async (ino: number) => {
    const d = await load(ctx, ino);
    await touch(ctx, ino, d.raw, d.f);
  };
  const modeOf = async (ino: number) => (await getInode(tx, w.sb, w.gdt, ino)).mode & Mode.IFMT;
  /**
   * Clears the way for an object of `type` at `name` in `parent` (a directory put did not
   * make, so the name may be taken): 0 when the name is free (now), or the existing directory
   * to merge into.
   */
  const makeRoom = async (
    parent: number,
    name: string | Uint8Array,
    type: number,
    where: string,
  ): Promise<number> => {
    const ino = await lookupEntry(ctx, parent, name);
    if (!ino) return 0;
    if (!options.force) throw new Ext4Error("EXISTS", `${where} exists (--force replaces it)`);
    const isDir = (await modeOf(ino)) === Mode.IFDIR;
    if (isDir && type === Mode.IFDIR) return ino;
    if (isDir) {
      throw new Ext4Error(
        "IS_DIRECTORY",
        `cannot overwrite directory ${where} with a non-directory`,
      );
    }
    if (type === Mode.IFDIR) {
      throw new Ext4Error(
        "NOT_DIRECTORY",
        `cannot overwrite non-directory ${where} with a directory`,
      );
    }
    await unlinkEntry(ctx, parent, name);
    return 0;
  };
  try {
    const copy = async (
      hostPath: HostPath,
      parent: number,
      name: string | Uint8Array,
      where: string,
      /** The directory to merge into (0: none), or -1 when the name may be taken. */
      into: number,
      /** What {@link readHostEntry} read of it, or the error it met there. */
      read: HostEntry | Error = readHostEntry(hostPath),
    ): Promise<void> => {
      if (read instanceof Error) throw read;
      const st = read.st;
      const type = st.mode & Mode.IFMT;
      const owner = { perm: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      // A non-directory gets the host's times as it is made (one inode write, not two); a
      // directory's change with its children, and a streamed file's with each chunk.
      const times = { atime: st.atime, mtime: st.mtime };
      const timesAtCreate = type !== Mode.IFDIR && !(type === Mode.IFREG && st.size > batchBytes);
      const made = timesAtCreate ? { ...owner, ...times } : owner;
      const key = `${st.dev}:${st.ino}`;
      if (into < 0) into = await makeRoom(parent, name, type, where);
      if (type !== Mode.IFDIR && st.nlink > 1) {
        const first = seen.get(key);
        if (first !== undefined) {
          await linkInode(ctx, parent, name, first);
          stats.links++;
          pending++;
          options.onEntry?.(where);
          options.onProgress?.(stats.bytes, entriesOf(stats));
          return await maybeCommit();
        }
        // The first name copied, though another was read first: read it now.
        if (read.deferred) read = { ...readHostEntry(hostPath, true), st };
      }
      const xattrs = read.xattrs;
      let ino: number;
      if (type === Mode.IFDIR && into > 0) {
        ino = into;
        await setAttributes(ctx, ino, owner);
        stats.dirs++;
      } else if (type === Mode.IFDIR) {
        ino = await makeDirectory(ctx, parent, name, owner);
        stats.dirs++;
      } else if (type === Mode.IFLNK) {
        ino = await createSymlink(ctx, parent, name, read.target!, made);
        stats.symlinks++;
      } else if (type === Mode.IFREG) {
        // Inline data and xattrs share the inode's space: keep files with xattrs in blocks.
        const inline = inlineData && xattrs.length === 0;
        ino = await copyFile(hostPath, parent, name, read, made, inline);
        stats.files++;
        stats.bytes += st.size;
      } else {
        ino = await makeNode(ctx, parent, name, st.mode, {
          ...made,
          major: st.rdevMajor,
          minor: st.rdevMinor,
        });
        stats.others++;
      }
      if (type !== Mode.IFDIR && st.nlink > 1) seen.set(key, ino);
      if (xattrs.length) await copyXattrs(hostPath, ino, xattrs);
      pending++;
      options.onEntry?.(where);
      options.onProgress?.(stats.bytes, entriesOf(stats));
      if (type === Mode.IFDIR) {
        // Names as bytes (they need not be UTF-8), in byte order for a deterministic result.
        // In a merged directory a name may be taken; in one put made, never.
        const names = readDirNames(hostPath).sort(compareBytes);
        const prefix = where.endsWith("/") ? where : `${where}/`;
        for (let i = 0; i < names.length;) {
          // A run of children read from the host first; an error stops the run there and is
          // thrown when that child's turn comes, as if met then.
          const run: { path: Uint8Array; name: Uint8Array; read: HostEntry | Error }[] = [];
          let bytes = 0;
          while (i < names.length && run.length < HOST_RUN_ENTRIES && bytes < HOST_RUN_BYTES) {
            const path = joinPath(hostPath, names[i]);
            let read: HostEntry | Error;
            try {
              read = readHostEntry(path);
              bytes += read.data?.length ?? 0;
            } catch (e) {
              read = e instanceof Error ? e : new Error(String(e));
            }
            run.push({ path, name: names[i++], read });
            if (read instanceof Error) break;
          }
          for (const c of run) {
            await copy(c.path, ino, c.name, prefix + dec.decode(c.name), into > 0 ? -1 : 0, c.read);
          }
        }
      }
      // Times last: children changed the directory's mtime.
      if (!timesAtCreate) await setAttributes(ctx, ino, times);
      await maybeCommit();
    };
    // Where src goes: dest itself, or inside dest when dest is an existing directory; with
    // SRC/., into dest itself (merged).
    const target = await resolvePath(ctx, dest, { followLast: true });
    const destIsDir = target.ino !== 0 && (await modeOf(target.ino)) === Mode.IFDIR;
    if (destIsDir && isContents(src)) {
      await copy(src, 0, "", dest, target.ino);
    } else if (destIsDir) {
      const base = src.replace(/\/+$/, "").split("/").pop() || src;
      await copy(src, target.ino, base, `${dest.replace(/\/+$/, "")}/${base}`, -1);
      await stampDirectory(target.ino);
    } else if (target.ino) {
      if (!options.force) throw new Ext4Error("EXISTS", `${dest} exists and is not a directory`);
      const entry = await resolvePath(ctx, dest);
      await copy(src, entry.parent, entry.name, dest, -1);
      await stampDirectory(entry.parent);
    } else {
      await copy(src, target.parent, target.name, dest, 0);
      await stampDirectory(target.parent);
    }
    await w.commit(tx); // the last batch; no transaction left open (the writer closes next)
    return stats;
  } catch (e) {
    if (tx.state === "open") tx.abort();
    throw e;
  }
}

/** Registers `ext4ts put`. */
export function registerPut(program: Command): void {
  const cmd = program
    .command("put")
    .description(
      "copy a host file or tree into the filesystem (modes, owners, ns times, links, xattrs)",
    )
    .argument("<image>", "image file or block device")
    .argument("<src>", "host file or directory (SRC/. : its contents, into DEST)")
    .argument("<dest>", "path inside the filesystem (an existing directory receives src)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("-f, --force", "replace existing files, merge existing directories (as cp -f)")
    .option("--force-unchecked", FORCE_UNCHECKED_HELP)
    .option("-v, --verbose", "list each object copied, then what was copied in all")
    .option("--progress", "show progress on stderr even when it is not a terminal")
    .option("--no-progress", "no progress line, even on a terminal")
    .action((image, src, dest, opts) =>
      runAction(async () => {
        const progress = new Progress("put", progressMode(opts.progress));
        if (progress.mode !== "off") progress.totals = hostTotals(src);
        let stats: PutStats;
        try {
          stats = await withWriter(
            image,
            writeOpenOptions(opts),
            (w) =>
              putTree(w, src, dest, {
                force: opts.force,
                onEntry: opts.verbose ? (path) => progress.note(path) : undefined,
                onProgress: (bytes, entries) => progress.update(bytes, entries),
              }),
          );
        } finally {
          progress.done();
        }
        for (const s of stats.skippedXattrs) {
          console.error(`ext4ts: warning: xattr not copied (namespace unknown to ext4): ${s}`);
        }
        if (opts.verbose) {
          await writeStdout(
            `${stats.files} files (${stats.bytes} bytes), ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.links} hard links, ${stats.others} special files, ${stats.xattrs} xattrs\n`,
          );
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Copies a host file or directory tree into the filesystem without mounting it, preserving modes, owners, times with nanoseconds, symlinks, hard links, device nodes, FIFOs, sockets, xattrs and ACLs, and holes. When DEST is an existing directory, SRC is copied into it. Work is committed in batches, each complete on its own: an interrupted put leaves a consistent filesystem.",
    examples: [
      "ext4ts put disk.img ./rootfs /",
      "ext4ts put disk.img ./site /srv/www        # /srv/www/site when /srv/www exists",
      "ext4ts put -f disk.img ./rootfs/. /         # contents of rootfs over /, replacing",
      "ext4ts put -v --offset 1MiB disk.img ./site /srv",
    ],
    exitCodes: [[
      ExitCode.FAILURE,
      "DEST exists (without -f), a type clash, a parent is missing, a host file cannot be read, or xattrs cannot fit",
    ], ...WRITER_EXIT_CODES],
  });
}
