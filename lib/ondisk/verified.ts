/**
 * Block images whose checksum has been verified, as the kernel's `buffer_verified` flag: a
 * cached image is checked once, not on every lookup. Keyed by the image object and the owner
 * the checksum was seeded with (a directory block's inode and generation): a block read again
 * from the device is a new object and is checked again, and so is the same image checked for
 * another owner; an image only ever changes in our own writers, which store its new checksum
 * and mark it (the image they checksummed is right by construction, and is the one the cache
 * holds once the transaction commits).
 *
 * @module
 */

const verified = new WeakMap<Uint8Array, { ino: number; generation: number }>();

/**
 * True when `image`'s checksum was verified, seeded for inode `ino` of `generation`, since it
 * was read.
 *
 * @example
 * ```ts
 * import { markVerified, wasVerified } from "./verified.ts";
 * const block = new Uint8Array(1024);
 * markVerified(block, 12, 7);
 * console.log(wasVerified(block, 12, 7), wasVerified(block, 12, 8)); // true false
 * ```
 */
export function wasVerified(image: Uint8Array, ino: number, generation: number): boolean {
  const v = verified.get(image);
  return v !== undefined && v.ino === ino && v.generation === generation;
}

/**
 * Records that `image`'s checksum, seeded for inode `ino` of `generation`, was verified.
 *
 * @example
 * ```ts
 * import { markVerified } from "./verified.ts";
 * markVerified(new Uint8Array(1024), 12, 7);
 * ```
 */
export function markVerified(image: Uint8Array, ino: number, generation: number): void {
  verified.set(image, { ino, generation });
}
