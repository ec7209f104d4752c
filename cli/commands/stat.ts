import type { Command } from "@commander-js/extra-typings";
import { ExitCode } from "../exit_codes.ts";
import { runAction, warn, withSchemaVersion, writeStdout } from "../output.ts";
import {
  bitmapProblem,
  formatTime,
  JOURNAL_DEV_HELP,
  modeString,
  openImage,
  parseOffset,
  statJson,
} from "../reader_common.ts";
import { documentCommand, READER_EXIT_CODES } from "../help.ts";

const TYPE_NAME: Record<string, string> = {
  file: "regular file",
  dir: "directory",
  symlink: "symbolic link",
  chardev: "character special file",
  blockdev: "block special file",
  fifo: "fifo",
  socket: "socket",
  unknown: "unknown",
};

/**
 * Registers `ext4ts stat [--json] IMG PATH` (does not follow a final symlink, like stat).
 *
 * @example
 * ```ts ignore
 * registerStat(program); // in cli/main.ts
 * ```
 */
export function registerStat(program: Command): void {
  const cmd = program
    .command("stat")
    .description("show an inode's metadata (a final symlink is not followed)")
    .argument("<image>", "image file or block device")
    .argument("<path>", "path inside the filesystem")
    .option("--json", "print JSON")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--journal-dev <path>", JOURNAL_DEV_HELP)
    .action((image, path, opts) =>
      runAction(async () => {
        const fs = await openImage(image, opts);
        try {
          const st = await fs.lstat(path);
          const target = st.type === "symlink" ? await fs.readLink(path) : undefined;
          // Shown as the kernel shows it, then reported as the corruption e2fsck would find.
          const problem = await bitmapProblem(fs, path, st.ino);
          const done = () => {
            if (!problem) return ExitCode.OK;
            warn(problem);
            return ExitCode.FS_ERRORS;
          };
          if (opts.json) {
            await writeStdout(
              JSON.stringify(withSchemaVersion(statJson(path, st, target)), null, 2) + "\n",
            );
            return done();
          }
          const dev = st.type === "chardev" || st.type === "blockdev"
            ? `  Device type: ${st.rdev.major},${st.rdev.minor}`
            : "";
          const lines = [
            `  File: ${path}${target !== undefined ? ` -> ${target}` : ""}`,
            `  Size: ${st.size}\tBlocks: ${st.blocks}\tIO Block: ${fs.superblock.blockSize}\t${
              TYPE_NAME[st.type]
            }`,
            ` Inode: ${st.ino}\tLinks: ${st.nlink}${dev}`,
            `Access: (${(st.mode & 0o7777).toString(8).padStart(4, "0")}/${
              modeString(st.type, st.mode)
            })  Uid: ${st.uid}  Gid: ${st.gid}`,
            `Access: ${formatTime(st.atime)}`,
            `Modify: ${formatTime(st.mtime)}`,
            `Change: ${formatTime(st.ctime)}`,
            ` Birth: ${st.birthtime ? formatTime(st.birthtime) : "-"}`,
            ` Flags: 0x${st.flags.toString(16)}\tGeneration: ${st.generation}`,
          ];
          await writeStdout(lines.join("\n") + "\n");
          return done();
        } finally {
          await fs.close();
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Shows an inode's metadata as stat(1) does: type, size, blocks, links, mode, owner, the four times with nanoseconds (UTC), flags and generation; a final symlink is not followed. --json prints the same as an object.",
    examples: [
      "ext4ts stat disk.img /etc/passwd",
      "ext4ts stat --json disk.img /bin/sh",
    ],
    exitCodes: READER_EXIT_CODES,
  });
}
