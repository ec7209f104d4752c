/**
 * How commands end: one clear line on stderr and a documented exit code for any failure,
 * never a stack trace (set EXT4TS_DEBUG=1 to see one).
 *
 * @module
 */

import { asExt4Error, Ext4Error } from "../lib/errors.ts";
import { ExitCode, exitCodeFor, type ExitCodeValue } from "./exit_codes.ts";

/** A failure the CLI reports with a chosen exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCodeValue;
  constructor(message: string, exitCode: ExitCodeValue) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** Writes one line to stderr, prefixed with the program name. */
export function warn(message: string): void {
  console.error(`ext4ts: ${message}`);
}

/**
 * Runs a command action, turning any error into one stderr line and the exit code.
 *
 * @example
 * ```ts ignore
 * program.command("x").action((opts) => runAction(async () => { ... }));
 * ```
 */
export async function runAction(action: () => Promise<number | void>): Promise<void> {
  let code: number;
  try {
    code = (await action()) ?? ExitCode.OK;
  } catch (e) {
    if (Deno.env.get("EXT4TS_DEBUG")) console.error(e);
    if (e instanceof CliError) {
      warn(e.message);
      code = e.exitCode;
    } else if (e instanceof Ext4Error) {
      warn(e.message);
      code = exitCodeFor(e);
    } else if (e instanceof Deno.errors.BrokenPipe) {
      code = ExitCode.OK;
    } else {
      const err = asExt4Error(e);
      warn(`internal error: ${err.message}`);
      code = ExitCode.FAILURE;
    }
  }
  Deno.exitCode = code;
}

/** Writes text to stdout without a trailing newline added. */
export async function writeStdout(text: string | Uint8Array): Promise<void> {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  let done = 0;
  while (done < bytes.length) done += await Deno.stdout.write(bytes.subarray(done));
}
