import type { Command } from "@commander-js/extra-typings";
import { InvalidArgumentError } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";

/** An octal mode like mkdir -m takes (0 to 7777); anything else is bad usage (exit 2). */
function parseMode(text: string): number {
  if (!/^[0-7]{1,4}$/.test(text)) {
    throw new InvalidArgumentError(`invalid mode '${text}': expected octal 0 to 7777, e.g. 755`);
  }
  return Number.parseInt(text, 8);
}

/** `mkdir PATH…`: make directories. */
export const mkdirCommand: EditCommand = {
  name: "mkdir",
  description: "make directories inside the filesystem",
  about:
    "Makes directories inside the filesystem without mounting it; -p makes missing parents and accepts existing directories, -m sets the permissions in octal.",
  examples: ["ext4ts mkdir -p disk.img /srv/www/static", "ext4ts mkdir -m 700 disk.img /root/.ssh"],
  failure: "exists, or a parent is missing (without -p)",
  configure(cmd: Command) {
    cmd
      .argument("<paths...>", "directories to make")
      .option("-p, --parents", "make missing parents; an existing directory is fine")
      .option("-m, --mode <octal>", "permissions (default 755)", parseMode);
  },
  async run(fs, args, opts) {
    const mode = typeof opts.mode === "number" ? opts.mode : 0o755;
    for (const p of args[0] as string[]) {
      await fs.mkdir(p, { recursive: opts.parents === true, mode });
    }
  },
};

/** Registers `ext4ts mkdir`. */
export function registerMkdir(program: Command): void {
  registerEdit(program, mkdirCommand);
}
