/**
 * A timer for the commands' start-up and unmount paths that costs no start-up time: Deno's
 * global `setTimeout` is Node's, and its first use loads Deno's Node timers (measured 8–14 ms
 * of a ~60 ms `ext4ts umount`), where `AbortSignal.timeout` runs on Deno's own web timers
 * (~0.5 ms). It cannot be cancelled: a pending one keeps the process alive until it fires, so
 * use it only where the command exits once done (cli/main.ts exits explicitly) or the wait is
 * short; a long cancellable timeout (the mount command's wait for `ready`) keeps `setTimeout`.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds.
 *
 * @example
 * ```ts
 * import { delay } from "./delay.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) =>
    AbortSignal.timeout(Math.max(0, ms)).addEventListener("abort", () => resolve(), {
      once: true,
    })
  );
}
