/**
 * Name lookup in one directory, as the kernel's `ext4_lookup` / `__ext4_find_entry`: the
 * ONE lookup the reader (`Ext4.lookupIno`, through its caches) and the writer
 * (`lookupEntry`, inside a transaction) both use. Blocks come from a
 * {@link DirectorySource}, so each side supplies its own block source.
 *
 * In order: an encrypted directory without the key accepts only no-key names (a short one
 * carries the ciphertext name, a digest-form one a hash, a prefix and a digest); a
 * hash-indexed directory is probed through its index (lib/ext4/htree.ts), falling back to a
 * linear scan when the index is unusable or damaged, as the kernel does; a casefolded
 * directory matches the exact name first, then the case-insensitive one; everything else is
 * scanned linearly (or through a name map the caller keeps for large directories).
 * Inline directories are scanned from their inline data.
 *
 * @module
 */

import { CorruptError } from "../errors.ts";
import { Incompat } from "../ondisk/features.ts";
import { matchesNoKeyDigest, parseNoKeyName } from "../ondisk/fscrypt_name.ts";
import {
  type DirContext,
  DirInodeFlags,
  findInDirectoryBlock,
  isDotName,
  sameName,
} from "../ondisk/dirent.ts";
import { directoryBlocks, type DirectorySource, iterateDirectory } from "./dir.ts";
import { htreeLookup } from "./htree.ts";

/** What a lookup may use besides the directory's blocks. */
export interface LookupOptions {
  /**
   * A name map of a directory without a usable hash index, keyed by {@link nameKey}: the
   * reader keeps one per large directory (built with {@link directoryNameMap}) instead of
   * scanning it for every lookup. Undefined or null: scan.
   */
  nameMap?: (dir: DirectorySource) => Promise<Map<string, number> | null>;
}

const utf8 = new TextDecoder();

/**
 * A name's bytes as a string key, one char per byte.
 *
 * @example
 * ```ts ignore
 * const key = nameKey(new TextEncoder().encode("a"));
 * ```
 */
export function nameKey(name: Uint8Array): string {
  return String.fromCharCode.apply(null, name as unknown as number[]);
}

/** The case-insensitive form of a name for casefolded directories (NFD + full case fold). */
function casefold(name: Uint8Array): string {
  return utf8.decode(name).normalize("NFD").toUpperCase().toLowerCase().normalize("NFD");
}

/**
 * Estimated bytes one name map entry costs besides its key's characters (measured: a Map
 * entry of a short string key and a small integer, Deno 2.9).
 */
const NAME_MAP_ENTRY_BYTES = 68;

/**
 * Every name of a directory mapped to its inode (the first entry of a name wins, as in a
 * linear scan), keyed by {@link nameKey}; null as soon as the map would take more than
 * `maxBytes` (estimated), so a huge directory is never mapped, only scanned.
 *
 * @example
 * ```ts ignore
 * const map = await directoryNameMap(src, { sb }, 4 * 1024 * 1024);
 * ```
 */
export async function directoryNameMap(
  dir: DirectorySource,
  ctx: DirContext,
  maxBytes = Number.POSITIVE_INFINITY,
): Promise<Map<string, number> | null> {
  const map = new Map<string, number>();
  let bytes = 0;
  for await (const rec of iterateDirectory(dir, ctx)) {
    const key = nameKey(rec.name);
    if (map.has(key)) continue;
    map.set(key, rec.ino);
    bytes += NAME_MAP_ENTRY_BYTES + key.length;
    if (bytes > maxBytes) return null;
  }
  return map;
}

/**
 * The first entry `matches` accepts (a predicate, or the exact name) in a linear scan, or
 * null. Block directories are searched a block at a time in place, as the kernel's
 * `search_dirblock` does: each block checked as a directory read checks it, no entry decoded
 * but the match (decoding every entry of every block was about a third of a create in a
 * directory of a hundred names).
 */
async function scan(
  dir: DirectorySource,
  ctx: DirContext,
  matches: ((stored: Uint8Array) => boolean) | Uint8Array,
): Promise<number | null> {
  if (dir.inlineData) {
    const test = matches instanceof Uint8Array
      ? (stored: Uint8Array) => sameName(stored, matches)
      : matches;
    for await (const rec of iterateDirectory(dir, ctx)) {
      if (test(rec.name)) return rec.ino;
    }
    return null;
  }
  for await (const { block, loc } of directoryBlocks(dir, ctx)) {
    const hit = findInDirectoryBlock(block, ctx, loc, matches);
    if (hit) return hit.ino;
  }
  return null;
}

/**
 * Through the hash index: the inode (or null when absent), or undefined when the index is
 * not there or not usable (damage included) and the caller scans instead.
 */
async function throughIndex(
  dir: DirectorySource,
  name: Uint8Array,
  ctx: DirContext,
  probe?: { hash: number; matches: (stored: Uint8Array) => boolean },
): Promise<number | null | undefined> {
  if (!dir.isHtree) return undefined;
  try {
    const rec = await htreeLookup(dir, name, ctx, probe);
    return rec === undefined ? undefined : rec === null ? null : rec.ino;
  } catch (e) {
    // A damaged index: the kernel falls back to a linear scan too.
    if (!(e instanceof CorruptError)) throw e;
    return undefined;
  }
}

/**
 * Finds `name` in directory `dir`: its inode number, or null. `name` must be 1..255 bytes.
 *
 * @example
 * ```ts ignore
 * const ino = await lookupInDirectory(src, new TextEncoder().encode("etc"), { sb });
 * ```
 */
export async function lookupInDirectory(
  dir: DirectorySource,
  name: Uint8Array,
  ctx: DirContext,
  options: LookupOptions = {},
): Promise<number | null> {
  const flags = dir.flags ?? 0;
  let want = name;
  if ((flags & DirInodeFlags.ENCRYPT) !== 0 && !isDotName(name)) {
    // Encrypted directory, no key: the kernel accepts only no-key names. A short one
    // carries the whole ciphertext name; a long one its start and a digest of the rest.
    const p = parseNoKeyName(name);
    if (p === null) return null;
    if (!p.cipher) {
      // Like the kernel: a hash index is probed with the hash the name carries (a wrong one
      // can miss), other directories are scanned whole; names match by prefix and digest.
      const matches = (stored: Uint8Array) => matchesNoKeyDigest(p, stored);
      const hit = await throughIndex(dir, name, ctx, { hash: p.hash, matches });
      return hit !== undefined ? hit : await scan(dir, ctx, matches);
    }
    want = p.cipher;
  }
  const folded = (flags & DirInodeFlags.CASEFOLD) !== 0 &&
    (ctx.sb.incompat & Incompat.CASEFOLD) !== 0;
  if (folded) {
    // Exact match first, then the case-insensitive one.
    const key = casefold(want);
    let loose: number | null = null;
    for await (const rec of iterateDirectory(dir, ctx)) {
      if (sameName(rec.name, want)) return rec.ino;
      if (loose === null && casefold(rec.name) === key) loose = rec.ino;
    }
    return loose;
  }
  const hit = await throughIndex(dir, want, ctx);
  if (hit !== undefined) return hit;
  const map = await options.nameMap?.(dir);
  if (map) return map.get(nameKey(want)) ?? null;
  return await scan(dir, ctx, want);
}
