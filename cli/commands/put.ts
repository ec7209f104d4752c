import type { Command } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { writeFileRange } from "../../lib/file_update.ts";
import { decodeInode, readInodeRaw } from "../../lib/inode_write.ts";
import {
  createFile,
  createSymlink,
  linkInode,
  makeDirectory,
  makeNode,
  type NamespaceContext,
  setAttributes,
} from "../../lib/namespace_write.ts";
import { resolvePath } from "../../lib/path_write.ts";
import type { Ext4Writer } from "../../lib/writer.ts";
import { runAction, writeStdout } from "../output.ts";
import { parseOffset, withWriter } from "../writer_open.ts";

/** Entries per transaction, and bytes of file data per transaction. */
const BATCH_ENTRIES = 512;
const BATCH_BYTES = 32 << 20;

function timeOf(d: Date | null): { sec: number; nsec: number } {
  const ms = d ? d.getTime() : Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (((ms % 1000) + 1000) % 1000) * 1e6 };
}

interface PutStats {
  files: number;
  dirs: number;
  symlinks: number;
  links: number;
  others: number;
  bytes: number;
}

/**
 * Copies the host file or tree `src` to `dest` inside the filesystem, preserving modes,
 * owners, times, symlinks, hard links and special files. Extended attributes of host files
 * are not copied (Deno has no xattr API). Commits every few hundred entries.
 */
export async function putTree(w: Ext4Writer, src: string, dest: string): Promise<PutStats> {
  const stats: PutStats = { files: 0, dirs: 0, symlinks: 0, links: 0, others: 0, bytes: 0 };
  const seen = new Map<string, number>(); // host dev:ino -> inode, for hard links
  let tx = w.cache.begin();
  let pending = 0;
  let pendingBytes = 0;
  const ctx = (): NamespaceContext => ({ tx, alloc: w.alloc, sb: w.sb, gdt: w.gdt });
  const maybeCommit = async (force = false) => {
    if (force || pending >= BATCH_ENTRIES || pendingBytes >= BATCH_BYTES) {
      await tx.commit();
      tx = w.cache.begin();
      pending = 0;
      pendingBytes = 0;
    }
  };
  try {
    // Where src goes: dest itself, or inside dest when dest is an existing directory.
    let target = await resolvePath(ctx(), dest, { followLast: true });
    if (target.ino) {
      const mode = decodeInode(w.sb, await readInodeRaw(tx, w.sb, w.gdt, target.ino)).mode;
      if ((mode & 0o170000) !== 0o040000) {
        throw new Ext4Error("EXISTS", `${dest} exists and is not a directory`);
      }
      const base = src.replace(/\/+$/, "").split("/").pop() || src;
      target = { parent: target.ino, name: base, ino: 0 };
      const existing = await resolvePath(ctx(), `${dest}/${base}`);
      if (existing.ino) throw new Ext4Error("EXISTS", `${dest}/${base} exists`);
    }
    const copy = async (hostPath: string, parent: number, name: string): Promise<void> => {
      const st = await Deno.lstat(hostPath);
      const owner = { uid: st.uid ?? 0, gid: st.gid ?? 0 };
      const perm = (st.mode ?? 0o644) & 0o7777;
      const key = `${st.dev}:${st.ino}`;
      let ino: number;
      if (!st.isDirectory && (st.nlink ?? 1) > 1 && seen.has(key)) {
        await linkInode(ctx(), parent, name, seen.get(key)!);
        stats.links++;
        pending++;
        return await maybeCommit();
      }
      if (st.isDirectory) {
        ino = await makeDirectory(ctx(), parent, name, { perm, ...owner });
        stats.dirs++;
      } else if (st.isSymlink) {
        ino = await createSymlink(ctx(), parent, name, await Deno.readLink(hostPath), owner);
        stats.symlinks++;
      } else if (st.isFile) {
        const size = st.size;
        if (size <= BATCH_BYTES) {
          const data = await Deno.readFile(hostPath);
          ino = await createFile(ctx(), parent, name, data, { perm, ...owner, sparse: true });
          pendingBytes += data.length;
        } else {
          ino = await createFile(ctx(), parent, name, new Uint8Array(0), { perm, ...owner });
          using h = await Deno.open(hostPath);
          const buf = new Uint8Array(8 << 20);
          for (let off = 0; off < size;) {
            const n = await h.read(buf);
            if (n === null) break;
            await writeFileRange(ctx(), ino, off, buf.slice(0, n));
            off += n;
            pendingBytes += n;
            await maybeCommit();
          }
        }
        stats.files++;
        stats.bytes += size;
      } else {
        const rdev = st.rdev ?? 0;
        const type = st.isFifo
          ? 0o010000
          : st.isSocket
          ? 0o140000
          : st.isCharDevice
          ? 0o020000
          : 0o060000;
        ino = await makeNode(ctx(), parent, name, type | perm, {
          perm,
          ...owner,
          major: ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff),
          minor: (rdev & 0xff) | ((rdev >>> 12) & ~0xff),
        });
        stats.others++;
      }
      if (!st.isDirectory && (st.nlink ?? 1) > 1) seen.set(key, ino);
      pending++;
      if (st.isDirectory) {
        const names: string[] = [];
        for await (const e of Deno.readDir(hostPath)) names.push(e.name);
        names.sort();
        for (const n of names) await copy(`${hostPath}/${n}`, ino, n);
      }
      // Times last: children changed the directory's mtime.
      await setAttributes(ctx(), ino, { atime: timeOf(st.atime), mtime: timeOf(st.mtime) });
      await maybeCommit();
    };
    await copy(src, target.parent, target.name);
    await maybeCommit(true);
    return stats;
  } catch (e) {
    if (tx.state === "open") tx.abort();
    throw e;
  }
}

/** Registers `ext4ts put`. */
export function registerPut(program: Command): void {
  program
    .command("put")
    .description("copy a host file or tree into the filesystem (modes, owners, times, links)")
    .argument("<image>", "image file or block device")
    .argument("<src>", "host file or directory")
    .argument("<dest>", "path inside the filesystem (an existing directory receives src)")
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .option("-v, --verbose", "print what was copied")
    .action((image, src, dest, opts) =>
      runAction(async () => {
        const stats = await withWriter(
          image,
          { offset: opts.offset ? parseOffset(opts.offset) : 0 },
          (w) => putTree(w, src, dest),
        );
        if (opts.verbose) {
          await writeStdout(
            `${stats.files} files (${stats.bytes} bytes), ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.links} hard links, ${stats.others} special files\n`,
          );
        }
      })
    );
}
