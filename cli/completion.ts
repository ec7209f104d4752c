/**
 * Shell completion scripts for bash and zsh, generated from the command tree: subcommands,
 * options, and the choices of options and arguments that have them; anything else completes
 * file names. A command registered in cli/main.ts is completed without further work.
 *
 * @module
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { commandPath, walkCommands } from "./help.ts";

/** What the completion of one command offers. */
interface Completions {
  /** The words before it, e.g. `journal replay` ("" for the program itself). */
  path: string;
  /** Subcommands (or an argument's choices) with their summaries. */
  words: [string, string][];
  /** Option flags, short and long. */
  options: string[];
  /** Options whose value is one of a list: flag → choices. */
  choices: [string, string[]][];
}

function completionsOf(cmd: CommandUnknownOpts, program: CommandUnknownOpts): Completions {
  const words: [string, string][] = (cmd.commands as CommandUnknownOpts[]).map((c) => [
    c.name(),
    c.summary() || c.description(),
  ]);
  if (cmd === program && words.length) words.push(["help", "show the help of a command"]);
  for (const arg of cmd.registeredArguments) {
    for (const choice of arg.argChoices ?? []) words.push([choice, arg.description]);
  }
  const options = ["-h", "--help"];
  const choices: [string, string[]][] = [];
  for (const opt of cmd.options) {
    const flags = [opt.short, opt.long].filter((f): f is string => !!f);
    options.push(...flags);
    if (opt.argChoices) { for (const f of flags) choices.push([f, opt.argChoices]); }
  }
  return { path: commandPath(cmd).split(" ").slice(1).join(" "), words, options, choices };
}

function allCompletions(program: CommandUnknownOpts): Completions[] {
  const all = [...walkCommands(program)].map((c) => completionsOf(c, program));
  // `ext4ts help COMMAND` completes the commands.
  const top = all[0].words.filter(([w]) => w !== "help");
  if (top.length) all.push({ path: "help", words: top, options: [], choices: [] });
  return all;
}

/** A word in single quotes for the shell. */
function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The `case` labels of the known command paths: `"<path> <word>"` for each descent. */
function descentLabels(all: Completions[]): string {
  return all.filter((c) => c.path).map((c) => {
    const parts = c.path.split(" ");
    return quote(`${parts.slice(0, -1).join(" ")} ${parts[parts.length - 1]}`);
  }).join("|");
}

/**
 * The bash completion script (`source <(ext4ts completion bash)`), registered with
 * `complete -o default` so that arguments without choices complete file names.
 *
 * @example
 * ```ts ignore
 * console.log(bashCompletion(buildProgram()));
 * ```
 */
export function bashCompletion(program: CommandUnknownOpts): string {
  const name = program.name();
  const all = allCompletions(program);
  const fn = `_${name.replace(/\W/g, "_")}`;
  const lines = [
    `# bash completion for ${name}, generated from its command tree (${name} completion bash)`,
    `${fn}() {`,
    `  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}`,
    `  local cmdpath="" w i words="" options=""`,
    `  for ((i = 1; i < COMP_CWORD; i++)); do`,
    `    w=\${COMP_WORDS[i]}`,
    `    case "$cmdpath $w" in`,
    `      ${descentLabels(all)}) cmdpath=\${cmdpath:+$cmdpath }$w ;;`,
    `    esac`,
    `  done`,
    `  case "$cmdpath:$prev" in`,
  ];
  for (const c of all) {
    for (const [flag, values] of c.choices) {
      lines.push(
        `    ${quote(`${c.path}:${flag}`)}) COMPREPLY=($(compgen -W ${
          quote(values.join(" "))
        } -- "$cur")); return ;;`,
      );
    }
  }
  lines.push(`  esac`, `  case "$cmdpath" in`);
  for (const c of all) {
    lines.push(
      `    ${quote(c.path)}) words=${quote(c.words.map(([w]) => w).join(" "))} options=${
        quote(c.options.join(" "))
      } ;;`,
    );
  }
  lines.push(
    `  esac`,
    `  if [[ $cur == -* ]]; then`,
    `    COMPREPLY=($(compgen -W "$options" -- "$cur"))`,
    `  elif [[ -n $words ]]; then`,
    `    COMPREPLY=($(compgen -W "$words" -- "$cur"))`,
    `  fi`,
    `}`,
    `complete -o default -F ${fn} ${name}`,
  );
  return lines.join("\n") + "\n";
}

/**
 * The zsh completion script: install it as `_ext4ts` in a directory of `$fpath`, or
 * `source <(ext4ts completion zsh)` after `compinit`.
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("_ext4ts", zshCompletion(buildProgram()));
 * ```
 */
export function zshCompletion(program: CommandUnknownOpts): string {
  const name = program.name();
  const all = allCompletions(program);
  const fn = `_${name.replace(/\W/g, "_")}`;
  const described = (words: [string, string][]) =>
    words.map(([w, d]) => quote(`${w.replace(/:/g, "\\:")}:${d}`)).join(" ");
  const lines = [
    `#compdef ${name}`,
    `# zsh completion for ${name}, generated from its command tree (${name} completion zsh)`,
    `${fn}() {`,
    `  local cmdpath="" w i`,
    `  local -a subs opts`,
    `  for (( i = 2; i < CURRENT; i++ )); do`,
    `    w=\${words[i]}`,
    `    case "$cmdpath $w" in`,
    `      (${descentLabels(all)}) cmdpath=\${cmdpath:+$cmdpath }$w ;;`,
    `    esac`,
    `  done`,
    `  case "$cmdpath:\${words[CURRENT-1]}" in`,
  ];
  for (const c of all) {
    for (const [flag, values] of c.choices) {
      lines.push(
        `    (${quote(`${c.path}:${flag}`)}) compadd -- ${values.map(quote).join(" ")}; return ;;`,
      );
    }
  }
  lines.push(`  esac`, `  case "$cmdpath" in`);
  for (const c of all) {
    lines.push(
      `    (${quote(c.path)}) subs=(${described(c.words)}) opts=(${
        c.options.map(quote).join(" ")
      }) ;;`,
    );
  }
  lines.push(
    `  esac`,
    `  if [[ $PREFIX == -* ]]; then`,
    `    compadd -- $opts`,
    `  elif (( $#subs )); then`,
    `    _describe command subs`,
    `  else`,
    `    _files`,
    `  fi`,
    `}`,
    `if [[ $zsh_eval_context[-1] == loadautofunc ]]; then`,
    `  ${fn} "$@"`,
    `else`,
    `  compdef ${fn} ${name}`,
    `fi`,
  );
  return lines.join("\n") + "\n";
}
