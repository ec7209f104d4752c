/**
 * How commands end: one clear line on stderr and a documented exit code for any failure,
 * never a stack trace (set EXT4TS_DEBUG=1 to see one).
 *
 * @module
 */

import { asExt4Error, DeviceOpenError, Ext4Error } from "../lib/errors.ts";
import { SyscallError } from "../ffi/libc.ts";
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
      // "cannot open X: why" — but an open refused because X is in use says so itself.
      const cannotOpen = e instanceof DeviceOpenError && e.code !== "BUSY";
      warn(cannotOpen ? `cannot open ${e.message}` : e.message);
      code = exitCodeFor(e);
    } else if (e instanceof Deno.errors.BrokenPipe) {
      code = ExitCode.OK;
    } else if (isCommanderError(e)) {
      // A parser's InvalidArgumentError met inside an action: still bad usage.
      warn(e.message.replace(/^error: /, ""));
      code = ExitCode.USAGE;
    } else if (isHostError(e)) {
      // The host side (a source file to copy in, a destination to copy out to): the message
      // names the path and the reason; no "internal error", which is for ext4ts's own bugs.
      warn((e as Error).message);
      code = ExitCode.FAILURE;
    } else {
      const err = asExt4Error(e);
      warn(`internal error: ${err.message}`);
      code = ExitCode.FAILURE;
    }
  }
  Deno.exitCode = code;
}

/**
 * A commander error (its codes are `commander.…`), recognised without importing commander:
 * the mount daemon runs actions through here and loads no commander.
 */
function isCommanderError(e: unknown): e is Error {
  return e instanceof Error && String((e as { code?: unknown }).code).startsWith("commander.");
}

/** An error from a host file operation: a failed libc call or one of Deno's file errors. */
function isHostError(e: unknown): boolean {
  if (e instanceof SyscallError) return true;
  return Object.values(Deno.errors).some((cls) => e instanceof cls);
}

/**
 * `value` with the version of its `--json` schema as its first field, `schemaVersion`. Every
 * command's JSON carries one (README "JSON output"): fields are only ever added without a
 * bump; removing, renaming or retyping one bumps that command's version.
 *
 * @example
 * ```ts
 * import { withSchemaVersion } from "./output.ts";
 * console.log(JSON.stringify(withSchemaVersion({ path: "/" }))); // {"schemaVersion":1,"path":"/"}
 * ```
 */
export function withSchemaVersion<T extends object>(
  value: T,
  version = 1,
): { schemaVersion: number } & T {
  return { schemaVersion: version, ...value };
}

/** Writes text to stdout without a trailing newline added. */
export async function writeStdout(text: string | Uint8Array): Promise<void> {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  let done = 0;
  while (done < bytes.length) done += await Deno.stdout.write(bytes.subarray(done));
}
