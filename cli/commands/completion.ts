/**
 * `ext4ts completion bash|zsh`: prints a completion script generated from the command tree.
 *
 * @module
 */

import { Argument, type Command } from "@commander-js/extra-typings";
import { bashCompletion, zshCompletion } from "../completion.ts";
import { documentCommand } from "../help.ts";
import { runAction, writeStdout } from "../output.ts";

/**
 * Registers `ext4ts completion SHELL` (register it last: it completes the commands before it).
 *
 * @example
 * ```ts ignore
 * registerCompletion(program); // in cli/main.ts
 * ```
 */
export function registerCompletion(program: Command): void {
  const cmd = program
    .command("completion")
    .description("print a bash or zsh completion script")
    .addArgument(new Argument("<shell>", "the shell").choices(["bash", "zsh"] as const))
    .action((shell) =>
      runAction(async () => {
        await writeStdout(shell === "bash" ? bashCompletion(program) : zshCompletion(program));
      })
    );
  documentCommand(cmd, {
    about: "Prints a completion script for bash or zsh, generated from ext4ts's command tree " +
      "(commands, options, the values of options that take one of a list); other arguments " +
      "complete file names. The install step installs both.",
    examples: [
      "source <(ext4ts completion bash)",
      "ext4ts completion bash > /usr/share/bash-completion/completions/ext4ts",
      'ext4ts completion zsh > "${fpath[1]}/_ext4ts"',
    ],
    exitCodes: [],
  });
}
