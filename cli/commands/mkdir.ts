import type { Command } from "@commander-js/extra-typings";
import { ExitCode } from "../exit_codes.ts";
import { CliError, runAction } from "../output.ts";
import { parseOffset, withFilesystem } from "../writer_open.ts";
import { documentCommand, WRITER_EXIT_CODES } from "../help.ts";

/** An octal mode like mkdir -m takes (0 to 7777); anything else is bad usage. */
function parseMode(text: string): number {
  if (!/^[0-7]{1,4}$/.test(text)) {
    throw new CliError(
      `invalid mode '${text}': expected octal 0 to 7777, e.g. 755`,
      ExitCode.USAGE,
    );
  }
  return Number.parseInt(text, 8);
}

/** Registers `ext4ts mkdir`. */
export function registerMkdir(program: Command): void {
  const cmd = program
    .command("mkdir")
    .description("make directories inside the filesystem")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "directories to make")
    .option("-p, --parents", "make missing parents; an existing directory is fine")
    .option("-m, --mode <octal>", "permissions (default 755)")
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .action((image, paths, opts) =>
      runAction(async () => {
        const mode = opts.mode === undefined ? 0o755 : parseMode(opts.mode);
        await withFilesystem(
          image,
          { offset: opts.offset ? parseOffset(opts.offset) : 0 },
          async (fs) => {
            for (const p of paths) await fs.mkdir(p, { recursive: opts.parents, mode });
          },
        );
      })
    );
  documentCommand(cmd, {
    about:
      "Makes directories inside the filesystem without mounting it; -p makes missing parents and accepts existing directories, -m sets the permissions in octal.",
    examples: [
      "ext4ts mkdir disk.img /srv",
      "ext4ts mkdir -p -m 700 disk.img /home/user/.ssh",
    ],
    exitCodes: [
      [ExitCode.FAILURE, "exists, or a parent is missing (without -p)"],
      ...WRITER_EXIT_CODES,
    ],
  });
}
