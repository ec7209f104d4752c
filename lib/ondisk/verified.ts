/**
 * Block images whose checksum has been verified, as the kernel's `buffer_verified` flag: a
 * cached image is checked once, not on every lookup. Keyed by the image object: a block read
 * again from the device is a new object and is checked again; an image only ever changes in
 * our own writers, which store its new checksum.
 *
 * @module
 */

const verified = new WeakSet<Uint8Array>();

/**
 * True when `image`'s checksum was verified since it was read.
 *
 * @example
 * ```ts
 * import { markVerified, wasVerified } from "./verified.ts";
 * const block = new Uint8Array(1024);
 * markVerified(block);
 * console.log(wasVerified(block), wasVerified(new Uint8Array(1024))); // true false
 * ```
 */
export function wasVerified(image: Uint8Array): boolean {
  return verified.has(image);
}

/**
 * Records that `image`'s checksum was verified.
 *
 * @example
 * ```ts
 * import { markVerified } from "./verified.ts";
 * markVerified(new Uint8Array(1024));
 * ```
 */
export function markVerified(image: Uint8Array): void {
  verified.add(image);
}
