/**
 * Transaction ids (`tid_t`) compare modulo 2^32, as include/linux/jbd2.h's tid_gt/tid_geq.
 *
 * @module
 */

/**
 * tid_geq: transaction IDs compare modulo 2^32.
 *
 * @example
 * ```ts
 * import { tidGeq } from "./tid.ts";
 * console.log(tidGeq(0, 0xffffffff)); // true: 0 follows 0xffffffff
 * ```
 */
export function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * tid_gt: transaction IDs compare modulo 2^32.
 *
 * @example
 * ```ts
 * import { tidGt } from "./tid.ts";
 * console.log(tidGt(5, 5), tidGt(1, 0xfffffffe)); // false true
 * ```
 */
export function tidGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
