import type { Command } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { ExitCode } from "../exit_codes.ts";
import { CliError } from "../output.ts";
import { intoDirectory, statOrNull } from "../paths.ts";

/** `ln [-s] [-f] TARGET LINKNAME`: a hard link or (with -s) a symlink, as ln(1). */
export const lnCommand: EditCommand = {
  name: "ln",
  description: "make a hard link, or with -s a symbolic link (into LINKNAME when a directory)",
  about:
    "Makes a hard link to TARGET (a path in the filesystem; not a directory) or, with -s, a symbolic link holding TARGET as given, without mounting the filesystem. When LINKNAME is an existing directory the link is made inside it, as ln(1) does; -f removes an existing LINKNAME first.",
  failure: "no such TARGET, LINKNAME exists (without -f), or a hard link to a directory",
  examples: [
    "ext4ts ln disk.img /usr/bin/vim /usr/bin/vi",
    "ext4ts ln -sf disk.img /usr/share/zoneinfo/UTC /etc/localtime",
    "ext4ts ln -sfn disk.img /opt/app-2.1 /opt/app  # /opt/app: a symlink to a directory",
  ],
  configure(cmd: Command) {
    cmd
      .argument("<target>", "what the link points at (for -s: any text, stored as given)")
      .argument("<linkname>", "the new link, or an existing directory to make it in")
      .option("-s, --symbolic", "make a symbolic link")
      .option("-f, --force", "remove an existing LINKNAME first (not a directory)")
      .option("-n, --no-dereference", "a LINKNAME that is a symlink to a directory is replaced");
  },
  async run(fs, args, opts) {
    const [target, linkName] = args as [string, string];
    const path = await intoDirectory(fs, target, linkName, opts.dereference === false);
    if (!opts.symbolic && (await statOrNull(fs, target, true))?.type === "dir") {
      // The kernel's EPERM; ln(1) words it so and exits 1.
      throw new CliError(`${target}: hard link not allowed for directory`, ExitCode.FAILURE);
    }
    if (opts.force) {
      const existing = await statOrNull(fs, path, true);
      if (existing?.type === "dir") {
        throw new CliError(`${path}: cannot overwrite a directory`, ExitCode.FAILURE);
      }
      if (existing) await fs.remove(path);
    }
    if (opts.symbolic) await fs.symlink(target, path);
    else await fs.link(target, path);
  },
};

/** Registers `ext4ts ln`. */
export function registerLn(program: Command): void {
  registerEdit(program, lnCommand);
}
