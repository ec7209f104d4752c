import type { Command } from "@commander-js/extra-typings";
import { runAction } from "../output.ts";
import { parseOffset } from "../reader_common.ts";
import { withFilesystem } from "../writer_open.ts";

/** Registers `ext4ts mkdir`. */
export function registerMkdir(program: Command): void {
  program
    .command("mkdir")
    .description("make directories inside the filesystem")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "directories to make")
    .option("-p, --parents", "make missing parents; an existing directory is fine")
    .option("-m, --mode <octal>", "permissions (default 755)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .action((image, paths, opts) =>
      runAction(async () => {
        const mode = opts.mode ? Number.parseInt(opts.mode, 8) : 0o755;
        if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
          throw new Error(`bad mode ${opts.mode}`);
        }
        await withFilesystem(
          image,
          { offset: opts.offset },
          async (fs) => {
            for (const p of paths) await fs.mkdir(p, { recursive: opts.parents, mode });
          },
        );
      })
    );
}
