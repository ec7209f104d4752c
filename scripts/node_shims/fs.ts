/**
 * `node:fs` for the bundle: the two calls commander makes looking for executable subcommands
 * (ext4ts has none).
 *
 * @module
 */

/** Whether `path` exists. */
export function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `path` with symlinks resolved. */
export function realpathSync(path: string): string {
  return Deno.realPathSync(path);
}

export default { existsSync, realpathSync };
