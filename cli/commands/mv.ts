import type { Command } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { runAction } from "../output.ts";
import { parseOffset, withFilesystem } from "../writer_open.ts";
import { ExitCode } from "../exit_codes.ts";
import { documentCommand, WRITER_EXIT_CODES } from "../help.ts";

/** Registers `ext4ts mv`. */
export function registerMv(program: Command): void {
  const cmd = program
    .command("mv")
    .description("rename or move inside the filesystem (into DEST when it is a directory)")
    .argument("<image>", "image file or block device")
    .argument("<src>", "path to move")
    .argument("<dest>", "new path, or an existing directory to move into")
    .option("-n, --no-clobber", "fail instead of replacing an existing target")
    .option("--exchange", "swap src and dest atomically (both must exist)")
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .action((image, src, dest, opts) =>
      runAction(async () => {
        await withFilesystem(
          image,
          { offset: opts.offset ? parseOffset(opts.offset) : 0 },
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
  documentCommand(cmd, {
    about:
      "Renames or moves SRC inside the filesystem without mounting it; when DEST is an existing directory SRC moves into it. An existing target is replaced (a directory only by a directory, and only when empty) unless -n; --exchange swaps SRC and DEST.",
    examples: [
      "ext4ts mv disk.img /etc/motd /etc/motd.old",
      "ext4ts mv disk.img /tmp/build /srv",
      "ext4ts mv --exchange disk.img /current /next",
    ],
    exitCodes: [[
      ExitCode.FAILURE,
      "no such path, the target exists (-n), or a move into its own subtree",
    ], ...WRITER_EXIT_CODES],
  });
}
