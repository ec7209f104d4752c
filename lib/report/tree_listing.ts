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
import type { Ext4, Ext4Stat, Timespec } from "../ext4/filesystem.ts";
import { CorruptError } from "../errors.ts";

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

/**
 * The code points Python gives a file name: UTF-8 decoded with `surrogateescape`, so each
 * byte that is not part of a valid UTF-8 sequence (overlong forms, encoded surrogates and
 * values above U+10FFFF are invalid too) becomes the lone surrogate U+DC00 + byte. Sorting
 * by these reproduces the order of tree_listing.py.
 *
 * @example
 * ```ts
 * import { pythonCodePoints } from "./tree_listing.ts";
 * pythonCodePoints(new Uint8Array([0x61, 0xc3, 0xa9, 0xff])); // [0x61, 0xe9, 0xdcff]
 * ```
 */
export function pythonCodePoints(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let cp = -1;
    let len = 1;
    if (b < 0x80) cp = b;
    else if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) len = 3;
    else if (b >= 0xf0 && b <= 0xf4) len = 4;
    if (cp < 0 && len > 1 && i + len <= bytes.length) {
      let v = b & (0xff >> (len + 1));
      let ok = true;
      for (let k = 1; k < len; k++) {
        const c = bytes[i + k];
        if ((c & 0xc0) !== 0x80) ok = false;
        v = (v << 6) | (c & 0x3f);
      }
      const min = len === 2 ? 0x80 : len === 3 ? 0x800 : 0x10000;
      if (ok && v >= min && v <= 0x10ffff && !(v >= 0xd800 && v <= 0xdfff)) cp = v;
    }
    if (cp < 0) {
      out.push(b < 0x80 ? b : 0xdc00 + b);
      i++;
    } else {
      out.push(cp);
      i += cp < 0x80 ? 1 : len;
    }
  }
  return out;
}

/** Python's string order: by code point. */
function compareCodePoints(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function ns(t: Timespec): string {
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

const SLASH = 0x2f;
const encoder = new TextEncoder();

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

function joinPath(dir: Uint8Array, name: Uint8Array): Uint8Array {
  const slash = dir.length === 1 && dir[0] === SLASH ? 0 : 1;
  const out = new Uint8Array(dir.length + slash + name.length);
  out.set(dir);
  if (slash) out[dir.length] = SLASH;
  out.set(name, dir.length + slash);
  return out;
}

/**
 * The path column, as bytes. tree_listing.py shows paths with control characters, tabs or
 * backslashes as the hex of their bytes; other paths are written as they are stored (its
 * stdout encodes the escaped bytes of non-UTF-8 names back to themselves).
 */
function displayPath(path: Uint8Array): Uint8Array {
  for (const b of path) {
    if (b < 0x20 || b === 0x5c) return encoder.encode(hex(path));
  }
  return path;
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
 * The listing of the tree under `/` of `fs`, as the exact bytes tree_listing.py writes
 * (names that are not valid UTF-8 included).
 *
 * @example
 * ```ts ignore
 * const bytes = await treeListingBytes(fs);
 * // compare with the stdout bytes of: python3 tree_listing.py /mnt/point
 * ```
 */
export async function treeListingBytes(
  fs: Ext4,
  options: TreeListingOptions = {},
): Promise<Uint8Array> {
  const times = options.times ?? true;
  const withIno = options.ino ?? true;
  const rows: { path: Uint8Array; key: number[]; cols: string }[] = [];
  // A walk like Ext4.walk, but on name bytes: names that are not UTF-8 keep their bytes.
  const root = new Uint8Array([SLASH]);
  const stack: { path: Uint8Array; ino: number }[] = [{ path: root, ino: 2 }];
  const seenDirs = new Set<number>();
  while (stack.length > 0) {
    const item = stack.pop()!;
    const stat = await fs.getattr(item.ino);
    const cols = [
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
    const path = displayPath(item.path);
    rows.push({ path, key: pythonCodePoints(path), cols: cols.join("\t") });
    if (stat.type !== "dir") continue;
    // A directory reached twice is a cycle in a corrupt filesystem.
    if (seenDirs.has(item.ino)) {
      throw new CorruptError(`directory inode ${item.ino}`, "directory reached twice (cycle)");
    }
    seenDirs.add(item.ino);
    for await (const e of fs.readDirIno(item.ino)) {
      if (!isDotOrDotDot(e.nameBytes)) {
        stack.push({ path: joinPath(item.path, e.nameBytes), ino: e.ino });
      }
    }
  }
  rows.sort((a, b) => compareCodePoints(a.key, b.key));
  const hdr = ["#path", "type", "mode", "uid", "gid", "nlink", "size", "content", "xattrs"];
  if (withIno) hdr.push("ino");
  if (times) hdr.push("mtime_ns", "ctime_ns");
  const parts: Uint8Array[] = [encoder.encode(hdr.join("\t") + "\n")];
  for (const r of rows) parts.push(r.path, encoder.encode("\t" + r.cols + "\n"));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The listing of the tree under `/` of `fs`, as text ending in a newline. Names that are not
 * valid UTF-8 show U+FFFD here; {@link treeListingBytes} keeps their bytes.
 *
 * @example
 * ```ts ignore
 * const text = await treeListing(fs);
 * // compare with: python3 tree_listing.py /mnt/point
 * ```
 */
export async function treeListing(fs: Ext4, options: TreeListingOptions = {}): Promise<string> {
  return new TextDecoder().decode(await treeListingBytes(fs, options));
}
