import type { Command } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { parseOctalMode } from "../modes.ts";

/** `mkdir PATH…`: make directories. */
export const mkdirCommand: EditCommand = {
  name: "mkdir",
  description: "make directories inside the filesystem",
  examples: ["ext4ts mkdir -p disk.img /srv/www/static", "ext4ts mkdir -m 700 disk.img /root/.ssh"],
  configure(cmd: Command) {
    cmd
      .argument("<paths...>", "directories to make")
      .option("-p, --parents", "make missing parents; an existing directory is fine")
      .option("-m, --mode <octal>", "permissions (default 755)");
  },
  async run(fs, args, opts) {
    const mode = typeof opts.mode === "string" ? parseOctalMode(opts.mode) : 0o755;
    for (const p of args[0] as string[]) {
      await fs.mkdir(p, { recursive: opts.parents === true, mode });
    }
  },
};

/** Registers `ext4ts mkdir`. */
export function registerMkdir(program: Command): void {
  registerEdit(program, mkdirCommand);
}
