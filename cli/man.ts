/**
 * The manual page, ext4ts(1), generated in roff from the command tree and each command's
 * document (cli/help.ts), so it says what `--help` says: `ext4ts --man > ext4ts.1`.
 *
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { EXIT_CODE_MEANING } from "./exit_codes.ts";
import { commandDoc, commandPath, exitCodeList, walkCommands } from "./help.ts";

/** Text safe in roff: backslashes and hyphens escaped, no line starting a request. */
function roff(text: string): string {
  return text.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/^([.'])/gm, "\\&$1");
}

/** A tagged paragraph: the tag in bold, then its text. */
function tagged(tag: string, text: string): string[] {
  return [".TP", `.B ${roff(tag)}`, roff(text)];
}

function commandSection(cmd: CommandUnknownOpts): string[] {
  const out = [`.SS ${roff(`${commandPath(cmd)} ${cmd.usage()}`)}`, roff(cmd.description())];
  for (const opt of cmd.options) {
    let text = opt.description;
    if (opt.argChoices) text += ` (one of: ${opt.argChoices.join(", ")})`;
    if (opt.defaultValue !== undefined && typeof opt.defaultValue !== "boolean") {
      text += ` (default: ${opt.defaultValue})`;
    }
    out.push(...tagged(opt.flags, text));
  }
  const doc = commandDoc(cmd);
  if (doc) {
    out.push(".PP", "Examples:", ".RS", ".nf", ...doc.examples.map(roff), ".fi", ".RE");
    out.push(".PP", "Exit codes:", ".RS");
    for (const [code, meaning] of exitCodeList(doc)) out.push(...tagged(String(code), meaning));
    out.push(".RE");
  }
  return out;
}

/**
 * The man page of `program` in roff (render with `man -l ext4ts.1`).
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("ext4ts.1", manPage(buildProgram()));
 * ```
 */
export function manPage(program: CommandUnknownOpts): string {
  const name = program.name();
  const version = program.version() ?? "";
  const lines = [
    `.TH ${name.toUpperCase()} 1 "" "${name} ${version}" "User Commands"`,
    ".SH NAME",
    `${name} \\- ${roff(program.summary() || program.description())}`,
    ".SH SYNOPSIS",
    `.B ${name}`,
    ".I command",
    "[options] [arguments]",
    ".SH DESCRIPTION",
    roff(program.description()),
    ".SH OPTIONS",
  ];
  for (const opt of program.options) lines.push(...tagged(opt.flags, opt.description));
  lines.push(".SH COMMANDS");
  for (const cmd of walkCommands(program)) {
    if (cmd !== program) lines.push(...commandSection(cmd));
  }
  lines.push(".SH EXIT STATUS");
  for (const [code, meaning] of Object.entries(EXIT_CODE_MEANING)) {
    lines.push(...tagged(code, meaning));
  }
  lines.push(
    ".PP",
    roff(
      "Every failure prints one line on stderr, starting with `ext4ts: `. The codes are " +
        "never renumbered, only added.",
    ),
    ".SH ENVIRONMENT",
    ...tagged("EXT4TS_DEBUG", "set to 1 to print the stack trace of a failure"),
    ".SH SEE ALSO",
    ".BR e2fsck (8),",
    ".BR debugfs (8),",
    ".BR dumpe2fs (8),",
    ".BR blkid (8),",
    ".BR mount (8),",
    ".BR fusermount3 (1)",
  );
  return lines.join("\n") + "\n";
}
