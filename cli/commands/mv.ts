import type { Command } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { runAction } from "../output.ts";
import { parseOffset } from "../reader_common.ts";
import { withFilesystem } from "../writer_open.ts";

/** Registers `ext4ts mv`. */
export function registerMv(program: Command): void {
  program
    .command("mv")
    .description("rename or move inside the filesystem (into DEST when it is a directory)")
    .argument("<image>", "image file or block device")
    .argument("<src>", "path to move")
    .argument("<dest>", "new path, or an existing directory to move into")
    .option("-n, --no-clobber", "fail instead of replacing an existing target")
    .option("--exchange", "swap src and dest atomically (both must exist)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .action((image, src, dest, opts) =>
      runAction(async () => {
        await withFilesystem(
          image,
          { offset: opts.offset },
          async (fs) => {
            let target = dest;
            if (!opts.exchange) {
              // mv semantics: into an existing directory (a symlink to one counts).
              const st = await fs.stat(dest).catch((e) => {
                if (e instanceof Ext4Error && e.code === "NOT_FOUND") return null;
                throw e;
              });
              if (st?.type === "dir") {
                target = `${dest.replace(/\/+$/, "")}/${src.replace(/\/+$/, "").split("/").pop()}`;
              }
            }
            await fs.rename(src, target, {
              noReplace: opts.clobber === false,
              exchange: opts.exchange,
            });
          },
        );
      })
    );
}
