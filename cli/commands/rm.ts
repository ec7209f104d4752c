import type { Command } from "@commander-js/extra-typings";
import { runAction } from "../output.ts";
import { parseOffset, withFilesystem } from "../writer_open.ts";
import { ExitCode } from "../exit_codes.ts";
import { documentCommand, WRITER_EXIT_CODES } from "../help.ts";

/** Registers `ext4ts rm`. */
export function registerRm(program: Command): void {
  const cmd = program
    .command("rm")
    .description("remove files, symlinks and empty directories inside the filesystem")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "what to remove")
    .option("-r, --recursive", "remove directories and their contents")
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .action((image, paths, opts) =>
      runAction(async () => {
        await withFilesystem(
          image,
          { offset: opts.offset ? parseOffset(opts.offset) : 0 },
          async (fs) => {
            for (const p of paths) await fs.remove(p, { recursive: opts.recursive });
          },
        );
      })
    );
  documentCommand(cmd, {
    about:
      "Removes files, symlinks, special files and empty directories inside the filesystem without mounting it; -r removes whole trees. The root directory cannot be removed (exit 1).",
    examples: [
      "ext4ts rm disk.img /etc/motd",
      "ext4ts rm -r disk.img /var/cache/apt",
    ],
    exitCodes: [[
      ExitCode.FAILURE,
      "no such path, a non-empty directory without -r, or the root directory",
    ], ...WRITER_EXIT_CODES],
  });
}
