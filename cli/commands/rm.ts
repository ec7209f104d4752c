import type { Command } from "@commander-js/extra-typings";
import { runAction } from "../output.ts";
import { parseOffset } from "../reader_common.ts";
import { withFilesystem } from "../writer_open.ts";

/** Registers `ext4ts rm`. */
export function registerRm(program: Command): void {
  program
    .command("rm")
    .description("remove files, symlinks and empty directories inside the filesystem")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "what to remove")
    .option("-r, --recursive", "remove directories and their contents")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .action((image, paths, opts) =>
      runAction(async () => {
        await withFilesystem(
          image,
          { offset: opts.offset },
          async (fs) => {
            for (const p of paths) await fs.remove(p, { recursive: opts.recursive });
          },
        );
      })
    );
}
