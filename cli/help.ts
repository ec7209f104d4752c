/**
 * The help convention every command follows: its `.description()` is the one-line summary
 * shown in the command list; {@link documentCommand} adds a paragraph, an `Examples:` block
 * and an `Exit codes:` block to its `--help`. The man page (cli/man.ts) and the shell
 * completions (cli/completion.ts) are generated from the same command tree and documents.
 *
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { EXIT_CODE_MEANING, ExitCode, type ExitCodeValue } from "./exit_codes.ts";

/** What {@link documentCommand} adds to a command's help. */
export interface CommandDoc {
  /** One paragraph: what the command does, beyond its one-line summary. */
  about: string;
  /** 2–4 real invocations, each `ext4ts …` optionally followed by `  # comment`. */
  examples: string[];
  /**
   * The exit codes the command uses besides 0 (success) and 2 (usage), which every command
   * has; a code may carry a note saying what it means for this command.
   */
  exitCodes: (ExitCodeValue | [ExitCodeValue, string])[];
}

/** The codes every command that opens a filesystem to read it can end with. */
export const READER_EXIT_CODES: ExitCodeValue[] = [
  ExitCode.FAILURE,
  ExitCode.NOT_EXT4,
  ExitCode.FS_ERRORS,
  ExitCode.UNSUPPORTED,
  ExitCode.IO,
];

/** The codes every command that writes a filesystem offline can end with. */
export const WRITER_EXIT_CODES: ExitCodeValue[] = [
  ExitCode.FAILURE,
  ExitCode.NOT_EXT4,
  ExitCode.NEEDS_RECOVERY,
  ExitCode.FS_ERRORS,
  ExitCode.UNSUPPORTED,
  ExitCode.IO,
  ExitCode.BUSY,
  ExitCode.READ_ONLY,
];

const DOCS = new WeakMap<CommandUnknownOpts, CommandDoc>();

/**
 * Documents `cmd`: its current `.description()` becomes the summary listed by its parent,
 * `doc.about` its description, and its `--help` ends with the examples and exit codes.
 *
 * @example
 * ```ts ignore
 * const cmd = program.command("cat").description("write a file to stdout").action(…);
 * documentCommand(cmd, {
 *   about: "Writes the content of a file inside the filesystem to stdout.",
 *   examples: ["ext4ts cat disk.img /etc/hostname"],
 *   exitCodes: READER_EXIT_CODES,
 * });
 * ```
 */
export function documentCommand(cmd: CommandUnknownOpts, doc: CommandDoc): void {
  if (!cmd.summary()) cmd.summary(cmd.description());
  cmd.description(doc.about);
  DOCS.set(cmd, doc);
  cmd.addHelpText("after", () => "\n" + helpBlocks(doc));
}

/** The document of a command, if it has one. */
export function commandDoc(cmd: CommandUnknownOpts): CommandDoc | undefined {
  return DOCS.get(cmd);
}

/** The exit codes of a document with their meanings, 0 and 2 included, in order. */
export function exitCodeList(doc: CommandDoc): [ExitCodeValue, string][] {
  const notes = new Map<ExitCodeValue, string>();
  for (const c of doc.exitCodes) {
    if (Array.isArray(c)) notes.set(c[0], c[1]);
    else if (!notes.has(c)) notes.set(c, EXIT_CODE_MEANING[c]);
  }
  if (!notes.has(ExitCode.OK)) notes.set(ExitCode.OK, EXIT_CODE_MEANING[ExitCode.OK]);
  if (!notes.has(ExitCode.USAGE)) notes.set(ExitCode.USAGE, EXIT_CODE_MEANING[ExitCode.USAGE]);
  return [...notes].sort((a, b) => a[0] - b[0]);
}

/** The `Examples:` and `Exit codes:` blocks of a document. */
export function helpBlocks(doc: CommandDoc): string {
  const lines = ["Examples:", ...doc.examples.map((e) => `  ${e}`), "", "Exit codes:"];
  for (const [code, meaning] of exitCodeList(doc)) {
    lines.push(`  ${String(code).padEnd(3)} ${meaning}`);
  }
  return lines.join("\n");
}

/**
 * Every command of the tree under `root` (root first, then depth first), without commander's
 * implicit `help` command.
 *
 * @example
 * ```ts ignore
 * for (const cmd of walkCommands(buildProgram())) console.log(commandPath(cmd));
 * ```
 */
export function* walkCommands(root: CommandUnknownOpts): Generator<CommandUnknownOpts> {
  yield root;
  for (const sub of root.commands as CommandUnknownOpts[]) yield* walkCommands(sub);
}

/** The command's full name, e.g. `ext4ts journal replay`. */
export function commandPath(cmd: CommandUnknownOpts): string {
  const names: string[] = [];
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent as CommandUnknownOpts | null) {
    names.unshift(c.name());
  }
  return names.join(" ");
}
