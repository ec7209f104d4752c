import type { Command } from "@commander-js/extra-typings";
import { runAction, writeStdout } from "../output.ts";
import { JOURNAL_DEV_HELP, openImage, parseOffset } from "../reader_common.ts";
import { documentCommand, READER_EXIT_CODES } from "../help.ts";

/**
 * Registers `ext4ts cat IMG PATH`: writes a file's content to stdout.
 *
 * @example
 * ```ts ignore
 * registerCat(program); // in cli/main.ts
 * ```
 */
export function registerCat(program: Command): void {
  const cmd = program
    .command("cat")
    .description("write the content of a file inside the filesystem to stdout")
    .argument("<image>", "image file or block device")
    .argument("<path>", "file inside the filesystem (symlinks are followed)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--journal-dev <path>", JOURNAL_DEV_HELP)
    .action((image, path, opts) =>
      runAction(async () => {
        const fs = await openImage(image, opts);
        try {
          const file = await fs.openFile(path);
          for await (const chunk of file.readable()) await writeStdout(chunk);
        } finally {
          await fs.close();
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Writes the content of a file inside the filesystem to stdout, streaming it (symlinks are followed). A journal that needs recovery is replayed in memory: nothing is written.",
    examples: [
      "ext4ts cat disk.img /etc/hostname",
      "ext4ts cat --offset 2048s disk.img /boot/config > config",
    ],
    exitCodes: READER_EXIT_CODES,
  });
}
