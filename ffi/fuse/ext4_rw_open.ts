/**
 * Opening an ext4 device for a read-write mount, in the order the kernel's own mount keeps:
 *
 * 1. Before mounting, with the device claimed (a block device O_EXCL; an image is already
 *    locked exclusively by the daemon): the superblock and the write policy checked (features
 *    ext4ts cannot write: exit 6; damage: exit 5; in use: exit 8), a journal needing recovery
 *    replayed onto the device and the orphan list processed, as the kernel does at a rw mount.
 * 2. The filesystem opened for writing on a plain (non-exclusive) descriptor: the fuseblk
 *    mount holds the device exclusively, and the daemon must still write it.
 * 3. After the mount, `verify` re-reads the superblock through a fresh open and compares it
 *    with what was opened (UUID, feature sets, state, geometry). Until it passes, every write
 *    request waits; when it fails, they fail (EIO) and nothing has been written.
 *
 * @module
 */

import { type BlockDevice, OffsetBlockDevice } from "../../lib/block/block_device.ts";
import { cacheBytesForMachine } from "../../lib/block/cache_budget.ts";
import { Ext4Error } from "../../lib/errors.ts";
import { Ext4 } from "../../lib/ext4/filesystem.ts";
import { formatUuid, readSuperblock, type Superblock } from "../../lib/ondisk/superblock.ts";
import { openBlockDevice } from "../file_device.ts";
import type { NodeWriterLike } from "./ext4_write_ops.ts";

/** The identity of a filesystem, compared after mounting (see {@link identityOf}). */
export interface SuperblockIdentity {
  /** The UUID. */
  uuid: string;
  /** Compatible features. */
  compat: number;
  /** Incompatible features. */
  incompat: number;
  /** Read-only compatible features. */
  roCompat: number;
  /** `s_state`. */
  state: number;
  /** Blocks in the filesystem. */
  blocksCount: number;
  /** Inodes in the filesystem. */
  inodesCount: number;
  /** Block size in bytes. */
  blockSize: number;
}

/**
 * The identity fields of a superblock: what must not differ between the open before the
 * mount and the device the mount holds.
 *
 * @example
 * ```ts ignore
 * const before = identityOf(await readSuperblock(device));
 * ```
 */
export function identityOf(sb: Superblock): SuperblockIdentity {
  return {
    uuid: formatUuid(sb.uuid),
    compat: sb.compat,
    incompat: sb.incompat,
    roCompat: sb.roCompat,
    state: sb.state,
    blocksCount: sb.blocksCount,
    inodesCount: sb.inodesCount,
    blockSize: sb.blockSize,
  };
}

/**
 * Throws (IO) naming the first field in which `now` differs from `before`.
 *
 * @example
 * ```ts ignore
 * assertSameIdentity(path, before, identityOf(await readSuperblock(again)));
 * ```
 */
export function assertSameIdentity(
  path: string,
  before: SuperblockIdentity,
  now: SuperblockIdentity,
): void {
  for (const k of Object.keys(before) as (keyof SuperblockIdentity)[]) {
    if (now[k] !== before[k]) {
      throw new Ext4Error(
        "IO",
        `${path}: the device changed while mounting (${k} ${before[k]} → ${now[k]})`,
      );
    }
  }
}

/** Opens `path` (its part from `offset` on) with `options`. */
export function openWindow(
  path: string,
  offset: number,
  options: { readOnly: boolean; exclusive?: boolean },
): BlockDevice {
  const file = openBlockDevice(path, options);
  if (!offset) return file;
  try {
    return new OffsetBlockDevice(file, offset);
  } catch (e) {
    void file.close();
    throw e;
  }
}

/**
 * The bytes a mount's caches may hold: `cacheSize` (`-o cache_size=`) when given, else 1/64 of
 * the machine's available memory (MemAvailable) between 4 and 32 MiB
 * (lib/block/cache_budget.ts `cacheBytesForMachine`; 16 MiB when it cannot be read).
 *
 * @example
 * ```ts
 * import { mountCacheBytes } from "./ext4_rw_open.ts";
 * console.log(mountCacheBytes(8 << 20)); // 8388608
 * console.log(mountCacheBytes(undefined) <= 32 << 20); // true
 * ```
 */
export function mountCacheBytes(cacheSize: number | undefined): number {
  if (cacheSize !== undefined) return cacheSize;
  let available: number | undefined;
  try {
    available = Deno.systemMemoryInfo().available;
  } catch { /* no --allow-sys: the default */ }
  return cacheBytesForMachine(available);
}

/** What {@link openForReadWrite} gives the backend. */
export interface ReadWriteOpen {
  /** The writable filesystem (on a non-exclusive descriptor). */
  fs: Ext4;
  /** Its inode-level writer; each call waits for {@link ReadWriteOpen.verify}. */
  nodeWriter: NodeWriterLike;
  /** The post-mount re-check: a fresh open of `path` compared with what `fs` opened. */
  verify(path: string): Promise<void>;
  /** The mount is undone before it was verified: the waiting writes fail (EIO). */
  abandon(error: unknown): void;
}

/**
 * Steps 1 and 2 above. `claim` says whether to open the device O_EXCL for the pre-mount
 * work (false for an image the daemon has locked itself); `cacheBytes` bounds the caches.
 *
 * @example
 * ```ts ignore
 * const { fs, nodeWriter, verify } = await openForReadWrite("/dev/loop3", 0, true, log);
 * ```
 */
export async function openForReadWrite(
  path: string,
  offset: number,
  claim: boolean,
  log: (line: string) => void,
  commitInterval = 5,
  cacheBytes = mountCacheBytes(undefined),
): Promise<ReadWriteOpen> {
  // 1. Claimed: the checks, a journal replay and the orphans, as the kernel's rw mount.
  const first = openWindow(path, offset, { readOnly: false, exclusive: claim });
  const checked = await Ext4.openDevice(first, {
    readOnly: false,
    recovery: "replay",
    cacheBytes,
    onNotice: (message) => log(`${path}: ${message}`),
  }).catch(async (e) => {
    await first.close();
    throw e;
  });
  await checked.close(); // marks it clean again if the orphans were processed
  // 2. The descriptor the mount keeps using, not exclusive.
  const device = openWindow(path, offset, { readOnly: false, exclusive: false });
  let fs: Ext4;
  try {
    // Group commit, as the kernel's jbd2: changes join one running transaction, committed on
    // fsync/syncfs, at unmount (close) and every `commitInterval` seconds.
    fs = await Ext4.openDevice(device, {
      readOnly: false,
      recovery: "refuse",
      commitInterval,
      cacheBytes,
    });
  } catch (e) {
    await device.close();
    throw e;
  }
  const identity = identityOf(fs.superblock);
  let open!: () => void;
  let fail!: (e: unknown) => void;
  const gate = new Promise<void>((res, rej) => {
    open = res;
    fail = rej;
  });
  gate.catch(() => {}); // nobody may be waiting
  return {
    fs,
    nodeWriter: gated(fs.nodeWriter(), gate),
    async verify(again: string): Promise<void> {
      try {
        const d = openWindow(again, offset, { readOnly: true });
        try {
          assertSameIdentity(again, identity, identityOf(await readSuperblock(d)));
        } finally {
          await d.close();
        }
      } catch (e) {
        fail(new Ext4Error("IO", `the mount was not verified: ${(e as Error).message}`));
        throw e;
      }
      open();
    },
    abandon(error: unknown): void {
      fail(new Ext4Error("IO", `the mount was undone: ${(error as Error)?.message ?? error}`));
    },
  };
}

/** `nw` with every method waiting for `gate` first (and failing when it fails). */
function gated(nw: NodeWriterLike, gate: Promise<void>): NodeWriterLike {
  return new Proxy(nw, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof v !== "function") return v;
      return async (...args: unknown[]) => {
        await gate;
        return await v.apply(target, args);
      };
    },
  });
}
