/**
 * The man page and the bash and zsh completions of the `ext4ts` command, generated from the
 * commander program itself (cli/main.ts `buildProgram`), so they cannot drift from the CLI:
 * every command's page section is its own `--help` text (with any help text a command adds),
 * the exit codes come from README.md's "Exit codes" table, and the completions list each
 * command's subcommands and options. scripts/install.ts writes them at install time.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { VERSION } from "../lib/version.ts";

/** A command and its path from the program, e.g. `["ext4ts", "journal", "replay"]`. */
interface CommandNode {
  path: string[];
  command: Command<unknown[], Record<string, unknown>, Record<string, unknown>>;
}

/** Every command of `program`, depth first, the program itself first. */
function commandTree(program: Command): CommandNode[] {
  const out: CommandNode[] = [];
  const visit = (command: CommandNode["command"], path: string[]) => {
    out.push({ path, command });
    for (const sub of command.commands) visit(sub, [...path, sub.name()]);
  };
  visit(program as CommandNode["command"], [program.name()]);
  return out;
}

/** What `COMMAND --help` prints: commander's help and any text the command adds around it. */
function helpText(command: CommandNode["command"], width: number): string {
  let text = "";
  command.configureOutput({
    writeOut: (s) => text += s,
    getOutHelpWidth: () => width,
    getOutHasColors: () => false,
  });
  command.outputHelp();
  return text;
}

/** The option spellings a command accepts (its help option included), for completion. */
function optionWords(command: CommandNode["command"]): string[] {
  const words = command.options.filter((o) => !o.hidden).flatMap((o) => [o.short, o.long]);
  return [...words, "-h", "--help"].filter((w): w is string => !!w);
}

/**
 * Roff text shown as is: backslashes escaped, `-` as the ASCII minus (options stay copyable in
 * UTF-8 locales), control characters at line starts defused.
 */
function roffLiteral(text: string): string {
  return text.replaceAll("\\", "\\e").replaceAll("-", "\\-").split("\n")
    .map((l) => /^[.']/.test(l) ? `\\&${l}` : l)
    .join("\n");
}

/**
 * The rows of README.md's "Exit codes" table as `[code, meaning]`.
 *
 * @example
 * ```ts
 * import { exitCodeRows } from "./cli_docs.ts";
 * console.log(exitCodeRows("## Exit codes\n\n| code | meaning |\n| -- | -- |\n| 0 | success |\n"));
 * // [["0", "success"]]
 * ```
 */
export function exitCodeRows(readme: string): [string, string][] {
  const section = readme.split(/^## /m).find((s) => s.startsWith("Exit codes")) ?? "";
  return [...section.matchAll(/^\|\s*(\d+)\s*\|\s*(.*?)\s*\|$/gm)].map((m) => [m[1], m[2]]);
}

/**
 * The man page ext4ts(1) in roff: synopsis, description, each command's `--help` text, the
 * exit codes of README.md, the environment.
 *
 * @example
 * ```ts ignore
 * import { buildProgram } from "../cli/main.ts";
 * await Deno.writeTextFile("ext4ts.1", manPage(buildProgram(), await Deno.readTextFile("README.md")));
 * ```
 */
export function manPage(program: Command, readme: string): string {
  const nodes = commandTree(program);
  const usage = (n: CommandNode) => `${n.path.slice(0, -1).join(" ")} ${n.command.name()}`.trim();
  const leaves = nodes.slice(1).filter((n) => n.command.commands.length === 0);
  const lines = [
    `.TH EXT4TS 1 "" "ext4ts ${VERSION}" "User Commands"`,
    ".SH NAME",
    `ext4ts \\- ${roffLiteral(program.description().replace(/^A /, "a ").replace(/\.$/, ""))}`,
    ".SH SYNOPSIS",
    ".nf",
    ...leaves.map((n) => roffLiteral(`${usage(n)} ${n.command.usage()}`)),
    ".fi",
    ".SH DESCRIPTION",
    roffLiteral(program.description()),
    "Paths inside a filesystem are resolved inside it; paths of devices, images and host files",
    "are resolved against the current directory. Every failure prints one line",
    "\\fBext4ts: \\&...\\fR on standard error.",
    ".SH COMMANDS",
  ];
  for (const n of nodes.slice(1)) {
    lines.push(`.SS "${usage(n)}"`, ".nf", roffLiteral(helpText(n.command, 72).trimEnd()), ".fi");
  }
  lines.push(".SH EXIT STATUS");
  for (const [code, meaning] of exitCodeRows(readme)) {
    lines.push(".TP", `.B ${code}`, roffLiteral(meaning));
  }
  lines.push(
    ".SH ENVIRONMENT",
    ".TP",
    ".B EXT4TS_DEBUG",
    "Set to 1 to print stack traces with errors.",
    ".SH SEE ALSO",
    ".BR mke2fs (8),",
    ".BR e2fsck (8),",
    ".BR dumpe2fs (8),",
    ".BR debugfs (8),",
    ".BR fuse2fs (1),",
    ".BR mount (8)",
    "",
  );
  return lines.join("\n");
}

/** Each command path (`ext4ts`, `ext4ts journal`, …) with its subcommands and options. */
function completionTable(program: Command): { key: string; subs: string; opts: string }[] {
  return commandTree(program).map((n) => ({
    key: n.path.join(" "),
    subs: n.command.commands.map((c) => c.name()).join(" "),
    opts: optionWords(n.command).join(" "),
  }));
}

/**
 * Bash completion for `ext4ts`: subcommands where a command has them, its options after `-`,
 * else file names (`complete -o default`).
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("ext4ts.bash", bashCompletion(buildProgram()));
 * // bash -c 'source ext4ts.bash; complete -p ext4ts'
 * ```
 */
export function bashCompletion(program: Command): string {
  const table = completionTable(program);
  const assign = (field: "subs" | "opts") =>
    table.map((r) => `  [${shQuote(r.key)}]=${shQuote(r[field])}`).join("\n") + "\n)";
  return `# bash completion for ext4ts ${VERSION} (generated by scripts/install.ts from the CLI)
declare -gA _ext4ts_subcommands=(
${assign("subs")}
declare -gA _ext4ts_options=(
${assign("opts")}
_ext4ts() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path=ext4ts i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    [[ " \${_ext4ts_subcommands[$path]} " == *" $w "* ]] && path="$path $w"
  done
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "\${_ext4ts_options[$path]}" -- "$cur")
  elif [[ -n \${_ext4ts_subcommands[$path]} ]]; then
    mapfile -t COMPREPLY < <(compgen -W "\${_ext4ts_subcommands[$path]}" -- "$cur")
  else
    COMPREPLY=() # file names (complete -o default)
  fi
}
complete -o default -F _ext4ts ext4ts
`;
}

/**
 * Zsh completion for `ext4ts` (a `#compdef` function file, installed as `_ext4ts`): the same
 * table as {@link bashCompletion}.
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("_ext4ts", zshCompletion(buildProgram()));
 * ```
 */
export function zshCompletion(program: Command): string {
  const table = completionTable(program);
  const pairs = (field: "subs" | "opts") =>
    table.map((r) => `    ${shQuote(r.key)} ${shQuote(r[field])}`).join("\n");
  return `#compdef ext4ts
# zsh completion for ext4ts ${VERSION} (generated by scripts/install.ts from the CLI)
_ext4ts() {
  local -A subcommands options
  subcommands=(
${pairs("subs")}
  )
  options=(
${pairs("opts")}
  )
  local cmdpath=ext4ts w i
  for (( i = 2; i < CURRENT; i++ )); do
    w=\${words[i]}
    (( \${\${(s: :)subcommands[$cmdpath]}[(Ie)$w]} )) && cmdpath="$cmdpath $w"
  done
  if [[ \${words[CURRENT]} == -* ]]; then
    compadd -- \${(s: :)options[$cmdpath]}
  elif [[ -n \${subcommands[$cmdpath]} ]]; then
    compadd -- \${(s: :)subcommands[$cmdpath]}
  else
    _files
  fi
}
_ext4ts "$@"
`;
}

/**
 * `s` single-quoted for sh, bash and zsh.
 *
 * @example
 * ```ts
 * import { shQuote } from "./cli_docs.ts";
 * console.log(shQuote("it's")); // 'it'\''s'
 * ```
 */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
