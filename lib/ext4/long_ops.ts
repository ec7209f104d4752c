/**
 * Long operations in bounded journal transactions, as the kernel does them (fs/ext4/inode.c
 * `ext4_truncate`, orphan.c): a truncate, the release of an unlinked file, a hole punched and
 * the orphan processing at open free a huge file's blocks in steps (lib/ext4/free_steps.ts),
 * the inode on the orphan list in between wherever its size or link count does not match the
 * blocks it still maps, so a crash between steps leaves an orphan whose blocks past its size
 * (or all of them, without links) the kernel, e2fsck and ext4ts's own open free. Work that fits
 * one transaction ({@link stepBlockBudget}) stays one transaction, exactly as before, and so
 * does everything inside an `Ext4Writer.group`.
 *
 * @module
 */

import { encodeInode, Mode } from "../ondisk/inode.ts";
import { getInode, loadInode, writeInode } from "./inode.ts";
import { fallocateRange, punchHole, truncateFile } from "./file_update.ts";
import { lookupEntry } from "./namei.ts";
import { unlinkKeepingOpen } from "./open_files.ts";
import { releaseInode } from "./unlink.ts";
import {
  addOrphan,
  listOrphans,
  type OrphansProcessed,
  processOrphans,
  releaseIfUnlinked,
  removeOrphan,
} from "./orphan.ts";
import {
  bounded,
  freeCost,
  freeInSteps,
  MAP_END,
  type Step,
  stepBlockBudget,
} from "./free_steps.ts";
import { State } from "../ondisk/superblock.ts";
import type { OpContext } from "./context.ts";
import type { Ext4Writer } from "./writer.ts";

/** Finds the inode an operation works on, inside its first transaction (checks included). */
export type Target = (ctx: OpContext) => Promise<number>;

/**
 * True when freeing the blocks of regular file `ino` from logical block `from` on is more
 * than one step of `w` should hold (never inside a group or without a journal).
 *
 * @example
 * ```ts ignore
 * if (await tooBig(w, ctx, ino, 0)) await truncateSteps(step, w, async () => ino, 0);
 * ```
 */
export async function tooBig(
  w: Ext4Writer,
  ctx: OpContext,
  ino: number,
  from: number,
): Promise<boolean> {
  if (!bounded(w)) return false;
  const f = await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
  if ((f.mode & Mode.IFMT) !== Mode.IFREG) return false;
  return await freeCost(ctx, ino, from, MAP_END) > stepBlockBudget(w);
}

/**
 * truncate(2) of regular file `target` to `size`. A shrink freeing more than one step holds
 * runs as the kernel's: the inode goes on the orphan list with its new size, the blocks past
 * it are freed from the end in bounded steps, and the last step zeroes the tail of the last
 * block and takes it off the list (an inode already on it, unlinked and open, stays there).
 *
 * @example
 * ```ts ignore
 * await truncateInSteps(w, async () => ino, 0);
 * ```
 */
export function truncateInSteps(w: Ext4Writer, target: Target, size: number): Promise<void> {
  return w.steps((step) => truncateSteps(step, w, target, size));
}

/**
 * {@link truncateInSteps} inside steps the caller runs (`w.steps`): one `step` when the
 * shrink is small, else the orphan, the bounded frees and the last step.
 *
 * @example
 * ```ts ignore
 * await w.steps((step) => truncateSteps(step, w, async () => ino, 0));
 * ```
 */
export async function truncateSteps(
  step: Step,
  w: Ext4Writer,
  target: Target,
  size: number,
): Promise<void> {
  const plan = await step(async (ctx) => {
    const ino = await target(ctx);
    const keep = Math.ceil(size / ctx.sb.blockSize);
    if (!Number.isSafeInteger(size) || size < 0 || !await tooBig(w, ctx, ino, keep)) {
      await truncateFile(ctx, ino, size);
      return null;
    }
    const { tx, sb, gdt } = ctx;
    const wasOrphan = (await listOrphans(tx, sb, gdt)).includes(ino);
    if (!wasOrphan) await addOrphan(tx, sb, gdt, ino);
    const { raw, f } = await loadInode(tx, sb, gdt, ino);
    await writeInode(tx, sb, gdt, ino, encodeInode(sb, ino, { ...f, size }, raw));
    return { ino, keep, wasOrphan };
  });
  if (!plan) return;
  await freeInSteps(step, w, plan.ino, plan.keep, MAP_END);
  await step(async (ctx) => {
    await truncateFile(ctx, plan.ino, size); // the last block's tail, the times
    if (!plan.wasOrphan) await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, plan.ino);
  });
}

/**
 * FALLOC_FL_PUNCH_HOLE of bytes `[offset, offset+length)` of regular file `target`. A hole
 * freeing more than one step holds is freed from its end in bounded steps (no orphan needed:
 * every step leaves the file consistent, with a smaller hole); the last step zeroes the
 * partial blocks at its edges and sets the times.
 *
 * @example
 * ```ts ignore
 * await punchInSteps(w, async () => ino, 0, 1 << 30);
 * ```
 */
export function punchInSteps(
  w: Ext4Writer,
  target: Target,
  offset: number,
  length: number,
): Promise<void> {
  return w.steps(async (step) => {
    const plan = await step(async (ctx) => {
      const ino = await target(ctx);
      const bs = ctx.sb.blockSize;
      const f = await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
      const from = Math.ceil(offset / bs);
      const to = Math.floor(Math.min(offset + length, f.size) / bs);
      const valid = Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(length) &&
        length >= 0 && f.linksCount > 0;
      if (!valid || from >= to || !await tooBig(w, ctx, ino, from)) {
        await punchHole(ctx, ino, offset, length);
        return null;
      }
      return { ino, from, to };
    });
    if (!plan) return;
    await freeInSteps(step, w, plan.ino, plan.from, plan.to);
    await step((ctx) => punchHole(ctx, plan.ino, offset, length));
  });
}

/**
 * fallocate(2)'s allocating mode (with or without KEEP_SIZE) over `[offset, offset+length)` of
 * regular file `target`: one transaction when the range is small; else in chunks, one bounded
 * transaction each, as the kernel's `ext4_alloc_file_blocks` restarts its handle per chunk (the
 * size, unless kept, grows with each chunk; a crash leaves a file allocated part of the way).
 * A chunk spans at most a quarter of the step budget in block groups, so its bitmaps,
 * descriptors and extent blocks stay within one transaction.
 *
 * @example
 * ```ts ignore
 * await allocateInSteps(w, async () => ino, 0, 300 << 20, { keepSize: false });
 * ```
 */
export function allocateInSteps(
  w: Ext4Writer,
  target: Target,
  offset: number,
  length: number,
  options: { keepSize?: boolean },
): Promise<void> {
  return w.steps(async (step) => {
    // The first chunk with the checks (bad arguments fail there, whole, as before).
    const first = await step(async (ctx) => {
      const ino = await target(ctx);
      const { sb } = ctx;
      const groups = Math.max(1, Math.floor(stepBlockBudget(w) / 4));
      const chunk = bounded(w) ? groups * sb.blocksPerGroup * sb.blockSize : length;
      const valid = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && length > 0;
      const size = valid ? Math.min(chunk, length) : length;
      await fallocateRange(ctx, ino, offset, size, options);
      return { ino, chunk, end: offset + size };
    });
    for (let at = first.end; at < offset + length; at += first.chunk) {
      const size = Math.min(first.chunk, offset + length - at);
      await step((ctx) => fallocateRange(ctx, first.ino, at, size, options));
    }
  });
}

/**
 * unlink of `name` in `parent` inside a step, as `unlinkKeepingOpen`; but when it is the last
 * link of a regular file too big to free in one step (and not held open), the inode is kept on
 * the orphan list: returns it for {@link releaseInSteps} after this step commits (else 0).
 * `known` is the entry's inode (0: none) when the caller looked it up in this transaction.
 *
 * @example
 * ```ts ignore
 * const big = await w.transaction((ctx) => unlinkBounded(w, ctx, dir, "huge.img"));
 * if (big) await w.steps((step) => releaseInSteps(step, w, big));
 * ```
 */
export async function unlinkBounded(
  w: Ext4Writer,
  ctx: OpContext,
  parent: number,
  name: string | Uint8Array,
  keepOpen?: (ino: number) => boolean,
  known?: number,
): Promise<number> {
  const ino = known ?? await lookupEntry(ctx, parent, name);
  const open = ino !== 0 && (keepOpen?.(ino) ?? false);
  const big = ino !== 0 && !open &&
    (await getInode(ctx.tx, ctx.sb, ctx.gdt, ino)).linksCount === 1 &&
    await tooBig(w, ctx, ino, 0);
  await unlinkKeepingOpen(ctx, parent, name, big ? (i) => i === ino : keepOpen, ino);
  return big ? ino : 0;
}

/**
 * Frees unlinked inode `ino` (on the orphan list) in bounded steps: its blocks from the end,
 * then the inode, taken off the list in the same last step.
 *
 * @example
 * ```ts ignore
 * await w.steps((step) => releaseInSteps(step, w, ino));
 * ```
 */
export async function releaseInSteps(step: Step, w: Ext4Writer, ino: number): Promise<void> {
  await freeInSteps(step, w, ino, 0, MAP_END);
  await step((ctx) => releaseIfUnlinked(ctx, ino));
}

/**
 * At the last close of `ino`: when it has no links left, takes it off the orphan list and
 * frees it (lib/ext4/orphan.ts `releaseIfUnlinked`) — in bounded steps when it is big. True
 * when it was freed.
 *
 * @example
 * ```ts ignore
 * await releaseUnlinked(w, ino);
 * ```
 */
export function releaseUnlinked(w: Ext4Writer, ino: number): Promise<boolean> {
  return w.steps(async (step) => {
    const r = await step(async (ctx) => {
      const f = await getInode(ctx.tx, ctx.sb, ctx.gdt, ino);
      if (f.linksCount === 0 && f.mode !== 0 && await tooBig(w, ctx, ino, 0)) return "big";
      return await releaseIfUnlinked(ctx, ino) ? "freed" : "kept";
    });
    if (r === "big") await releaseInSteps(step, w, ino);
    return r !== "kept";
  });
}

/**
 * The orphan processing of a read-write open (lib/ext4/orphan.ts `processOrphans`, the
 * kernel's way), in bounded transactions when the whole list is more than one step holds:
 * each orphan in its own steps — an unlinked one's blocks freed from the end, then the inode;
 * a linked one's blocks past its size, then its tail — taken off the list in its last step.
 * Any length of list is processed then (one transaction took at most 4096).
 *
 * @example
 * ```ts ignore
 * const { freed, truncated } = await processOrphansInSteps(w);
 * ```
 */
export function processOrphansInSteps(w: Ext4Writer): Promise<OrphansProcessed> {
  return w.steps(async (step) => {
    const first = await step(async (ctx) => {
      const { sb } = ctx;
      if (!bounded(w) || (sb.state & State.ERROR)) return await processOrphans(ctx);
      const list = await listOrphans(ctx.tx, sb, ctx.gdt);
      const budget = stepBlockBudget(w);
      let cost = 0;
      for (const ino of list) {
        if (cost > budget) break;
        const f = await getInode(ctx.tx, sb, ctx.gdt, ino);
        cost += 3 + (f.linksCount === 0 ? await freeCost(ctx, ino, 0, MAP_END) : 0);
        if (f.linksCount !== 0 && (f.mode & Mode.IFMT) === Mode.IFREG) {
          cost += await freeCost(ctx, ino, Math.ceil(f.size / sb.blockSize), MAP_END);
        }
      }
      if (cost <= budget) return await processOrphans(ctx);
      return list;
    });
    if (!Array.isArray(first)) return first;
    const done: OrphansProcessed = { freed: [], truncated: [], released: [] };
    for (const ino of first) {
      const f = await step((ctx) => getInode(ctx.tx, ctx.sb, ctx.gdt, ino));
      const regular = (f.mode & Mode.IFMT) === Mode.IFREG;
      if (f.linksCount === 0) {
        if (regular) await freeInSteps(step, w, ino, 0, MAP_END);
        await step(async (ctx) => {
          await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
          await releaseInode(ctx, ino);
        });
        done.freed.push(ino);
      } else {
        if (regular) await freeInSteps(step, w, ino, Math.ceil(f.size / w.sb.blockSize), MAP_END);
        await step(async (ctx) => {
          if (regular) await truncateFile(ctx, ino, f.size);
          await removeOrphan(ctx.tx, ctx.sb, ctx.gdt, ino);
        });
        if (regular) done.truncated.push(ino);
      }
      done.released.push(ino);
    }
    // Whatever is left of the lists (orphan_present with no entry): emptied as processOrphans
    // leaves them.
    await step((ctx) => processOrphans(ctx));
    return done;
  });
}
