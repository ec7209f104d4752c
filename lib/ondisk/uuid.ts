/**
 * UUIDs as ext4 and jbd2 store them (16 bytes, big-endian fields) and as tools print them. Its
 * own module so the journal (lib/jbd2/), which knows nothing of ext4, can use it.
 *
 * @module
 */

/**
 * Formats 16 bytes as a UUID string.
 *
 * @example
 * ```ts
 * import { formatUuid } from "./uuid.ts";
 * console.log(formatUuid(new Uint8Array(16))); // 00000000-0000-0000-0000-000000000000
 * ```
 */
export function formatUuid(bytes: Uint8Array): string {
  const h = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
