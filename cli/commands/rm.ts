import type { Command } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";

/** `rm PATH…`: remove files, symlinks, empty directories or (with -r) trees. */
export const rmCommand: EditCommand = {
  name: "rm",
  description: "remove files, symlinks and empty directories inside the filesystem",
  about:
    "Removes files, symlinks, special files and empty directories inside the filesystem without mounting it; -r removes whole trees. The root directory cannot be removed (exit 1).",
  failure: "no such path, a non-empty directory without -r, or the root directory",
  examples: ["ext4ts rm disk.img /etc/motd", "ext4ts rm -r disk.img /var/cache/apt"],
  configure(cmd: Command) {
    cmd
      .argument("<paths...>", "what to remove")
      .option("-r, --recursive", "remove directories and their contents");
  },
  async run(fs, args, opts) {
    for (const p of args[0] as string[]) {
      await fs.remove(p, { recursive: opts.recursive === true });
    }
  },
};

/** Registers `ext4ts rm`. */
export function registerRm(program: Command): void {
  registerEdit(program, rmCommand);
}
