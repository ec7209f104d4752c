import type { Command } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { intoDirectory } from "../paths.ts";

/** `mv SRC DEST`: rename or move (into DEST when it is a directory). */
export const mvCommand: EditCommand = {
  name: "mv",
  description: "rename or move inside the filesystem (into DEST when it is a directory)",
  about:
    "Renames or moves SRC inside the filesystem without mounting it; when DEST is an existing directory SRC moves into it. An existing target is replaced (a directory only by a directory, and only when empty) unless -n; --exchange swaps SRC and DEST.",
  failure: "no such path, the target exists (-n), or a move into its own subtree",
  examples: ["ext4ts mv disk.img /etc/app.conf.new /etc/app.conf", "ext4ts mv disk.img /a /b/"],
  configure(cmd: Command) {
    cmd
      .argument("<src>", "path to move")
      .argument("<dest>", "new path, or an existing directory to move into")
      .option("-n, --no-clobber", "fail instead of replacing an existing target")
      .option("--exchange", "swap src and dest atomically (both must exist)");
  },
  async run(fs, args, opts) {
    const [src, dest] = args as [string, string];
    // mv semantics: into an existing directory (a symlink to one counts).
    const target = opts.exchange ? dest : await intoDirectory(fs, src, dest);
    await fs.rename(src, target, {
      noReplace: opts.clobber === false,
      exchange: opts.exchange === true,
    });
  },
};

/** Registers `ext4ts mv`. */
export function registerMv(program: Command): void {
  registerEdit(program, mvCommand);
}
