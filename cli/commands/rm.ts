import type { Command } from "@commander-js/extra-typings";
import { runAction } from "../output.ts";
import { FORCE_HELP, withFilesystem, writeOpenOptions } from "../writer_open.ts";

/** Registers `ext4ts rm`. */
export function registerRm(program: Command): void {
  program
    .command("rm")
    .description("remove files, symlinks and empty directories inside the filesystem")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "what to remove")
    .option("-r, --recursive", "remove directories and their contents")
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .option("--force", FORCE_HELP)
    .action((image, paths, opts) =>
      runAction(async () => {
        await withFilesystem(
          image,
          writeOpenOptions(opts),
          async (fs) => {
            for (const p of paths) await fs.remove(p, { recursive: opts.recursive });
          },
        );
      })
    );
}
