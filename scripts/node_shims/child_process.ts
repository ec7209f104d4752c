/**
 * `node:child_process` for the bundle: commander spawns executable subcommands, which ext4ts
 * does not have.
 *
 * @module
 */

/** Refuses: the bundle has no executable subcommands. */
export function spawn(): never {
  throw new Error("executable subcommands are not part of ext4ts");
}

export default { spawn };
