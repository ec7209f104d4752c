/**
 * The crash-point checker of tests/crash_enum_test.ts: a model of what a workload synced
 * (which path must hold what, from which log position, until which later change) and the
 * enumeration of a recorded write log's crash images (lib/block/crash_points.ts), each replayed
 * by `e2fsck -E journal_only` and by ext4ts, checked by `e2fsck -fn`, listed, compared with
 * what was synced and — sampled — with the kernel's replay and listing.
 *
 * @module
 */

import { Ext4, MemoryBlockDevice } from "../mod.ts";
import { needsRecovery, replayJournal } from "../lib/ext4/recovery.ts";
import { readSuperblock } from "../lib/ondisk/superblock.ts";
import { treeListing } from "../lib/report/tree_listing.ts";
import type { WriteLogDevice } from "../lib/block/write_log_device.ts";
import {
  crashImages,
  type CrashPoint,
  flushCrashPoints,
  mustHold,
  tornCrashPoints,
} from "../lib/block/crash_points.ts";
import { run, runOk, TREE_LISTING, withKernelMount } from "./helpers.ts";
import { fsck, type Layout } from "./write_fixtures.ts";

/** An image layout of the crash workloads; `journaled` ones get torn crash points too. */
export type CrashLayout = Layout & { journaled: boolean };

/**
 * A fixed UUID and directory hash seed (mkfs draws them at random): the same workload then
 * splits the same htree blocks and writes the same blocks, so a failing seed reproduces. The
 * later `-E` wins over mkfsImage's, hence lazy_itable_init again.
 */
const FIXED_IDS = [
  "-U",
  "c4a5e6d7-0000-4000-8000-000000000011",
  "-E",
  "lazy_itable_init=1,hash_seed=c4a5e6d7-0000-4000-8000-000000000012",
];

/**
 * The small images the crash workloads run on: 4 KiB and 1 KiB blocks, with and without a
 * journal, metadata_csum on (mkfs.ext4's default); small groups so that several exist.
 */
export const CRASH_LAYOUTS: CrashLayout[] = [
  {
    name: "ext4-4k",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "1024", ...FIXED_IDS],
    size: "16M",
    journaled: true,
  },
  {
    name: "ext4-1k",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024", "-g", "2048", ...FIXED_IDS],
    size: "12M",
    journaled: true,
  },
  {
    name: "ext4-4k-nojournal",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-g", "1024", "-O", "^has_journal", ...FIXED_IDS],
    size: "16M",
    journaled: false,
  },
  {
    name: "ext4-1k-nojournal",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024", "-g", "2048", "-O", "^has_journal", ...FIXED_IDS],
    size: "12M",
    journaled: false,
  },
];

/** A plain ext2 (no extents, no checksums, no journal): the oldest in-place layout. */
export const EXT2_LAYOUT: CrashLayout = {
  name: "ext2-1k",
  mkfs: "mkfs.ext2",
  args: ["-b", "1024", "-g", "2048", ...FIXED_IDS],
  size: "12M",
  journaled: false,
};

/** What a synced path must look like in a crash image. */
export type Expected =
  | { kind: "file"; data: Uint8Array; xattrs: Map<string, Uint8Array> }
  | { kind: "dir"; xattrs: Map<string, Uint8Array> }
  | { kind: "symlink"; target: string }
  | { kind: "absent" };

/** One object of the model; hard links share it. */
export type ModelNode =
  | { kind: "file"; data: Uint8Array; xattrs: Map<string, Uint8Array> }
  | { kind: "dir"; xattrs: Map<string, Uint8Array> }
  | { kind: "symlink"; target: string };

/** A path's state made durable at log position `syncedAt`, unchanged until `changedAt`. */
export interface SyncRecord {
  readonly path: string;
  readonly expected: Expected;
  readonly syncedAt: number;
  changedAt: number;
}

/**
 * The tree a workload built (paths to nodes, as the filesystem should show them now) and what
 * of it was synced when. A workload calls {@link SyncedModel.touch} with the paths an
 * operation changes before it starts, and {@link SyncedModel.syncedAll} /
 * {@link SyncedModel.syncedPath} after a sync returned.
 */
export class SyncedModel {
  /** Every path (`/` included) and its node. */
  readonly tree = new Map<string, ModelNode>([["/", { kind: "dir", xattrs: new Map() }]]);
  /** Every record made, in order. */
  readonly records: SyncRecord[] = [];
  #open = new Map<string, SyncRecord>();
  #removed = new Set<string>();

  /** The paths whose records end at `position`: an operation changing them starts there. */
  touch(paths: Iterable<string>, position: number): void {
    for (const p of paths) {
      const r = this.#open.get(p);
      if (r) r.changedAt = position;
      this.#open.delete(p);
    }
  }

  /** Paths (sorted) of the nodes of `kind`, or of every kind but the root's. */
  paths(kind?: ModelNode["kind"]): string[] {
    return [...this.tree.keys()].filter((p) =>
      p !== "/" && p !== "/lost+found" && (!kind || this.tree.get(p)!.kind === kind)
    ).sort();
  }

  /** The paths naming `node` (its hard links). */
  aliases(node: ModelNode): string[] {
    return [...this.tree].filter(([, n]) => n === node).map(([p]) => p);
  }

  /** `path` and every path below it. */
  subtree(path: string): string[] {
    return [...this.tree.keys()].filter((p) => p === path || p.startsWith(`${path}/`));
  }

  /** Adds `node` at `path`. */
  add(path: string, node: ModelNode): void {
    this.tree.set(path, node);
    this.#removed.delete(path);
  }

  /** Removes `path` and everything below it. */
  remove(path: string): void {
    for (const p of this.subtree(path)) {
      this.tree.delete(p);
      this.#removed.add(p);
    }
  }

  /** Moves `from` (and everything below it) to `to`, replacing what `to` named. */
  move(from: string, to: string): void {
    const moved = this.subtree(from).map((p) => [p, this.tree.get(p)!] as const);
    this.remove(to);
    this.remove(from);
    for (const [p, n] of moved) this.add(to + p.slice(from.length), n);
  }

  /** Records that a sync of the whole filesystem returned at `position`. */
  syncedAll(position: number): void {
    for (const p of this.tree.keys()) this.syncedPath(p, position);
    for (const p of this.#removed) {
      if (this.#open.has(p) || this.tree.has(p)) continue;
      this.#record(p, { kind: "absent" }, position);
    }
    this.#removed.clear();
  }

  /** Records that an fsync of `path` returned at `position`. */
  syncedPath(path: string, position: number): void {
    if (this.#open.has(path)) return;
    const n = this.tree.get(path);
    if (!n) return;
    const expected: Expected = n.kind === "symlink"
      ? { kind: "symlink", target: n.target }
      : n.kind === "dir"
      ? { kind: "dir", xattrs: new Map(n.xattrs) }
      : { kind: "file", data: n.data.slice(), xattrs: new Map(n.xattrs) };
    this.#record(path, expected, position);
  }

  #record(path: string, expected: Expected, syncedAt: number): void {
    const r = { path, expected, syncedAt, changedAt: Infinity };
    this.records.push(r);
    this.#open.set(path, r);
  }

  /** The records a crash image must hold, the latest per path. */
  mustHold(point: CrashPoint): SyncRecord[] {
    const byPath = new Map<string, SyncRecord>();
    for (const r of this.records) {
      if (mustHold(point, r.syncedAt, r.changedAt)) byPath.set(r.path, r);
    }
    return [...byPath.values()];
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function userXattrs(fs: Ext4, path: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const name of (await fs.listXattr(path)).filter((n) => n.startsWith("user."))) {
    out.set(name, await fs.getXattr(path, name));
  }
  return out;
}

function sameXattrs(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.has(k) && sameBytes(v, b.get(k)!));
}

/** What differs between the synced records and the filesystem `fs` shows. */
async function syncedProblems(fs: Ext4, records: SyncRecord[]): Promise<string[]> {
  const out: string[] = [];
  for (const { path, expected, syncedAt } of records) {
    const what = `${path} (synced at ${syncedAt})`;
    let st;
    try {
      st = await fs.lstat(path);
    } catch (e) {
      if (expected.kind !== "absent") out.push(`${what}: missing (${(e as Error).message})`);
      continue;
    }
    if (expected.kind === "absent") {
      out.push(`${what}: removed and synced, but there`);
    } else if (st.type !== expected.kind) {
      out.push(`${what}: a ${st.type}, synced as a ${expected.kind}`);
    } else if (expected.kind === "symlink") {
      const target = await fs.readLink(path);
      if (target !== expected.target) out.push(`${what}: points at ${target}`);
    } else {
      if (expected.kind === "file") {
        if (st.size !== expected.data.length) {
          out.push(`${what}: size ${st.size}, synced ${expected.data.length}`);
        } else if (!sameBytes(await fs.readFile(path), expected.data)) {
          out.push(`${what}: content differs from what was synced`);
        }
      }
      if (!sameXattrs(await userXattrs(fs, path), expected.xattrs)) {
        out.push(`${what}: user xattrs differ from what was synced`);
      }
    }
  }
  return out;
}

/** The listing ext4ts gives of `image` (lib/report/tree_listing.ts, the oracle's format). */
async function listing(image: Uint8Array, check?: (fs: Ext4) => Promise<string[]>) {
  const fs = await Ext4.openDevice(new MemoryBlockDevice(image, { readOnly: true }));
  try {
    return { text: await treeListing(fs), problems: check ? await check(fs) : [] };
  } finally {
    await fs.close();
  }
}

/** `e2fsck -fy -E journal_only` on a copy of `image`: e2fsck's replay. */
async function e2fsckReplay(dir: string, image: Uint8Array): Promise<Uint8Array> {
  const path = `${dir}/replay-${crypto.randomUUID()}.img`;
  await Deno.writeFile(path, image);
  try {
    const r = await run("e2fsck", ["-fy", "-E", "journal_only", path], {
      env: { E2FSCK_CONFIG: "/dev/null" },
    });
    if (r.code > 1) throw new Error(`e2fsck -E journal_only exited ${r.code}: ${r.stdout}`);
    return await Deno.readFile(path);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** The kernel's listing of `image` (mounted read-write on a copy, so that it replays). */
async function kernelListing(dir: string, image: Uint8Array): Promise<string> {
  const path = `${dir}/kernel-${crypto.randomUUID()}.img`;
  await Deno.writeFile(path, image);
  try {
    // `-o ro` would set the loop device read-only, and the kernel refuses to replay a dirty
    // journal without write access; `noload` skips the replay. A writable mount of a copy
    // replays as a boot after a power cut does.
    return await withKernelMount(path, (m) => runOk("python3", [TREE_LISTING, m]), {
      mountOptions: "noatime",
    });
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

function firstDifference(a: string, b: string): string {
  const la = a.split("\n");
  const lb = b.split("\n");
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) return `line ${i + 1}: ${la[i]} | ${lb[i]}`;
  }
  return "";
}

function firstLines(text: string, n = 6): string {
  return text.split("\n").filter((l) => l && !/^Pass \d|^e2fsck \d/.test(l)).slice(0, n).join(
    " / ",
  );
}

/** Checks one crash image; returns what is wrong with it (nothing: consistent). */
async function checkImage(
  dir: string,
  image: Uint8Array,
  point: CrashPoint,
  model: SyncedModel,
  kernel: boolean,
): Promise<string[]> {
  const problems: string[] = [];
  const recover = needsRecovery(
    await readSuperblock(new MemoryBlockDevice(image, { readOnly: true })),
  );
  // (2) ext4ts's replay, then e2fsck -fn.
  const ours = image.slice();
  if (recover) await replayJournal(new MemoryBlockDevice(ours));
  const fo = await fsck(dir, ours);
  if (fo.code !== 0) {
    problems.push(`e2fsck -fn after ext4ts's replay: exit ${fo.code}: ${firstLines(fo.output)}`);
  }
  // (4) what was synced, read back by ext4ts.
  const listed = await listing(ours, (fs) => syncedProblems(fs, model.mustHold(point)));
  problems.push(...listed.problems);
  // (1) e2fsck's replay, then e2fsck -fn; the tree listed equals ext4ts's replay's. With
  // nothing to replay both replays leave the image as it is: the run above covered it.
  if (recover) {
    const theirs = await e2fsckReplay(dir, image);
    const ft = await fsck(dir, theirs);
    if (ft.code !== 0) {
      problems.push(`e2fsck -fn after its replay: exit ${ft.code}: ${firstLines(ft.output)}`);
    }
    const text = (await listing(theirs)).text;
    if (text !== listed.text) {
      problems.push(
        `ext4ts's replay lists another tree than e2fsck's: ${firstDifference(text, listed.text)}`,
      );
    }
  }
  // (3) sampled: the kernel's replay lists the same tree.
  if (kernel) {
    const k = await kernelListing(dir, image);
    if (k !== listed.text) {
      problems.push(`the kernel lists another tree: ${firstDifference(k, listed.text)}`);
    }
  }
  return problems;
}

/** How a log's crash points are enumerated. */
export interface EnumerateOptions {
  /** Where the image files e2fsck and the kernel see are written. */
  dir: string;
  /** The image before the log. */
  base: Uint8Array;
  log: WriteLogDevice;
  model: SyncedModel;
  /** Torn at this granularity: the filesystem's block size. */
  blockSize: number;
  /** Torn subsets per flush interval (0: none, as for a filesystem without a journal). */
  tornPerInterval: number;
  /** Torn subsets must be consistent (else their failures are only counted). */
  tornMustBeConsistent: boolean;
  seed: number;
  /** Every `kernelEvery`th point expected consistent is listed by the kernel too... */
  kernelEvery: number;
  /** ...at most this many per log. */
  kernelMax: number;
}

/** What an enumeration checked and found. */
export interface EnumerateResult {
  flush: number;
  torn: number;
  /** Torn points found inconsistent (only counted when they need not be consistent). */
  tornInconsistent: number;
  kernel: number;
  /** One line per failing point that must be consistent. */
  failures: string[];
}

/**
 * Checks every flush boundary of the log and the torn subsets drawn from it, two images at a
 * time (two e2fsck runs at most in parallel).
 *
 * @example
 * ```ts ignore
 * const r = await enumerateCrashPoints({ dir, base, log, model, blockSize: 4096, ... });
 * assert.deepEqual(r.failures, []);
 * ```
 */
export async function enumerateCrashPoints(o: EnumerateOptions): Promise<EnumerateResult> {
  const flush = flushCrashPoints(o.log.entries);
  const torn = o.tornPerInterval > 0
    ? tornCrashPoints(o.log.entries, {
      blockSize: o.blockSize,
      perInterval: o.tornPerInterval,
      seed: o.seed,
    })
    : [];
  const result: EnumerateResult = {
    flush: flush.length,
    torn: torn.length,
    tornInconsistent: 0,
    kernel: 0,
    failures: [],
  };
  let consistentSeen = 0;
  const images = crashImages(o.base, o.log.entries, [...flush, ...torn]);
  const lane = async () => {
    for (const { point, image } of images) {
      const mustBeConsistent = point.kind === "flush" || o.tornMustBeConsistent;
      const kernel = mustBeConsistent && consistentSeen++ % o.kernelEvery === 0 &&
        result.kernel < o.kernelMax;
      if (kernel) result.kernel++;
      let problems: string[];
      try {
        problems = await checkImage(o.dir, image, point, o.model, kernel);
      } catch (e) {
        problems = [`${(e as Error).name}: ${(e as Error).message}`];
      }
      if (problems.length === 0) continue;
      if (mustBeConsistent) {
        const where = point.kind === "flush"
          ? `flush boundary ${point.durable}`
          : `torn after ${point.durable} (${point.landed.length}/${point.pieces} blocks up to ${point.end})`;
        result.failures.push(`${where}: ${problems.join("; ")}`);
      } else {
        result.tornInconsistent++;
      }
    }
  };
  await Promise.all([lane(), lane()]);
  return result;
}
