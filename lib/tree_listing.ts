/**
 * A deterministic listing of a whole filesystem tree, byte-for-byte the format of the
 * project's oracle script `tree_listing.py` run on a kernel mount: one tab-separated line per
 * object, sorted by path, with type, permissions, owner, link count, size, a sha256 of the
 * content (or link target, or device number), the xattrs, the inode number and the mtime and
 * ctime in nanoseconds. Comparing the two texts proves ext4ts reads what the kernel reads.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Ext4, Ext4Stat, Timespec } from "./filesystem.ts";

/** Options for {@link treeListing}. */
export interface TreeListingOptions {
  /** Include the mtime_ns and ctime_ns columns (default true). */
  times?: boolean;
  /** Include the inode number column (default true). */
  ino?: boolean;
}

const TYPE_CHAR: Record<string, string> = {
  file: "f",
  dir: "d",
  symlink: "l",
  chardev: "c",
  blockdev: "b",
  fifo: "p",
  socket: "s",
};

const CHUNK = 4 * 1024 * 1024;

function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, "0");
  return s;
}

/** Python's string order (by code point), not JavaScript's (by UTF-16 code unit). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Surrogates stand for code points above U+FFFF: above every other BMP unit.
    if (ca >= 0xd800 && ca <= 0xdfff) ca += 0x10000;
    if (cb >= 0xd800 && cb <= 0xdfff) cb += 0x10000;
    return ca - cb;
  }
  return a.length - b.length;
}

function ns(t: Timespec): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

function displayPath(path: string): string {
  // tree_listing.py shows paths with control characters, tabs or backslashes as hex.
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\t\\]/.test(path) ? hex(new TextEncoder().encode(path)) : path;
}

async function contentOf(fs: Ext4, st: Ext4Stat): Promise<string> {
  switch (st.type) {
    case "file": {
      const h = createHash("sha256");
      try {
        for (let off = 0; off < st.size; off += CHUNK) {
          h.update(await fs.read(st.ino, off, CHUNK));
        }
      } catch (e) {
        return `ERR:${(e as { errno?: number }).errno ?? 5}`;
      }
      return h.digest("hex");
    }
    case "symlink":
      return "target:" + hex(await fs.readLinkIno(st.ino));
    case "chardev":
    case "blockdev":
      return `rdev:${st.rdev.major},${st.rdev.minor}`;
    default:
      return "-";
  }
}

async function xattrsOf(fs: Ext4, ino: number): Promise<string> {
  const names = (await fs.listXattrIno(ino)).sort();
  const out: string[] = [];
  for (const n of names) {
    const v = await fs.getXattrIno(ino, n);
    if (v.length <= 64) out.push(`${n}=${hex(v)}`);
    else out.push(`${n}=len${v.length}:sha256:${createHash("sha256").update(v).digest("hex")}`);
  }
  return out.length ? out.join(";") : "-";
}

/**
 * The listing of the tree under `/` of `fs`, as text ending in a newline.
 *
 * @example
 * ```ts ignore
 * const text = await treeListing(fs);
 * // compare with: python3 tree_listing.py /mnt/point
 * ```
 */
export async function treeListing(fs: Ext4, options: TreeListingOptions = {}): Promise<string> {
  const times = options.times ?? true;
  const withIno = options.ino ?? true;
  const rows: string[][] = [];
  for await (const { path, stat } of fs.walk("/")) {
    const cols = [
      displayPath(path),
      TYPE_CHAR[stat.type] ?? "?",
      (stat.mode & 0o7777).toString(8),
      String(stat.uid),
      String(stat.gid),
      String(stat.nlink),
      String(stat.size),
      await contentOf(fs, stat),
      await xattrsOf(fs, stat.ino),
    ];
    if (withIno) cols.push(String(stat.ino));
    if (times) cols.push(ns(stat.mtime), ns(stat.ctime));
    rows.push(cols);
  }
  rows.sort((a, b) => compareCodePoints(a[0], b[0]));
  const hdr = ["#path", "type", "mode", "uid", "gid", "nlink", "size", "content", "xattrs"];
  if (withIno) hdr.push("ino");
  if (times) hdr.push("mtime_ns", "ctime_ns");
  return [hdr, ...rows].map((r) => r.join("\t")).join("\n") + "\n";
}
