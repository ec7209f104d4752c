/**
 * The small edit commands (mkdir, rm, mv, chmod, chown, ln, touch, setfattr) are declared
 * once, as an {@link EditCommand}: `ext4ts NAME IMAGE ARGS…` opens the image around one
 * edit, and `ext4ts batch IMAGE` parses the same `NAME ARGS…` lines (without the image) and
 * runs them all in one transaction.
 *
 * @module
 */

import type { Command, CommandUnknownOpts } from "@commander-js/extra-typings";
import { ExitCode } from "./exit_codes.ts";
import { type CommandDoc, documentCommand, WRITER_EXIT_CODES } from "./help.ts";
import type { Ext4 } from "../ffi/open_filesystem.ts";
import { runAction } from "./output.ts";
import { parseOffset } from "./reader_common.ts";
import { FORCE_UNCHECKED_HELP, withFilesystem, writeOpenOptions } from "./writer_open.ts";

/** An edit command: its syntax after the image, and what it does to an open filesystem. */
export interface EditCommand {
  /** The command name (`chmod`). */
  name: string;
  /** One line for `--help` (the summary in `ext4ts --help`). */
  description: string;
  /** The paragraph of its `--help` (cli/help.ts); the description when absent. */
  about?: string;
  /** Example command lines for `--help` (full lines, image included). */
  examples: string[];
  /** What exit code 1 means for this command, for its `Exit codes:` block. */
  failure?: string;
  /** Declares the arguments that follow the image, and the options. */
  configure(cmd: Command): void;
  /** Does the edit: `args` are the parsed arguments after the image, `opts` the options. */
  run(fs: Ext4, args: unknown[], opts: Record<string, unknown>): Promise<void>;
}

/** The help of an edit command (cli/help.ts convention: `Examples:` and `Exit codes:`). */
export function editCommandDoc(edit: EditCommand): CommandDoc {
  return {
    about: edit.about ?? edit.description,
    examples: edit.examples,
    exitCodes: [
      [ExitCode.FAILURE, edit.failure ?? "the edit failed (no such file, exists, bad value, …)"],
      ...WRITER_EXIT_CODES,
    ],
  };
}

/** The parsed arguments and options of the command a commander action runs for. */
export function parsedOf(cmd: Command): { args: unknown[]; opts: Record<string, unknown> } {
  return { args: [...cmd.processedArgs], opts: cmd.opts() as Record<string, unknown> };
}

/**
 * Registers `ext4ts NAME IMAGE ARGS…` for `edit`: opens the image for writing (with
 * `--offset` and `--force-unchecked`), runs the edit, closes.
 *
 * @example
 * ```ts ignore
 * registerEdit(program, chmodCommand);
 * ```
 */
export function registerEdit(program: Command, edit: EditCommand): void {
  const cmd = program
    .command(edit.name)
    .description(edit.description)
    .argument("<image>", "image file or block device");
  edit.configure(cmd as unknown as Command);
  cmd
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--force-unchecked", FORCE_UNCHECKED_HELP)
    .action((...a: unknown[]) =>
      runAction(async () => {
        const { args, opts } = parsedOf(a[a.length - 1] as Command);
        await withFilesystem(
          args[0] as string,
          writeOpenOptions(opts),
          (fs) => edit.run(fs, args.slice(1), opts),
        );
      })
    );
  documentCommand(cmd as unknown as CommandUnknownOpts, editCommandDoc(edit));
}
