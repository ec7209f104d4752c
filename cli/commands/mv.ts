import type { Command } from "@commander-js/extra-typings";
import { renameAt, resolvePath } from "../../lib/path_write.ts";
import { decodeInode, readInodeRaw } from "../../lib/inode_write.ts";
import { runAction } from "../output.ts";
import { parseOffset, withWriter } from "../writer_open.ts";

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
    .option("--offset <bytes>", "filesystem starts at this byte offset")
    .action((image, src, dest, opts) =>
      runAction(async () => {
        await withWriter(
          image,
          { offset: opts.offset ? parseOffset(opts.offset) : 0 },
          async (w) => {
            let target = dest;
            if (!opts.exchange) {
              // mv semantics: into an existing directory.
              const tx = w.cache.begin();
              try {
                const r = await resolvePath({ tx, alloc: w.alloc, sb: w.sb, gdt: w.gdt }, dest, {
                  followLast: true,
                });
                if (r.ino) {
                  const mode = decodeInode(w.sb, await readInodeRaw(tx, w.sb, w.gdt, r.ino)).mode;
                  if ((mode & 0o170000) === 0o040000) {
                    target = `${dest.replace(/\/+$/, "")}/${
                      src.replace(/\/+$/, "").split("/").pop()
                    }`;
                  }
                }
              } finally {
                tx.abort();
              }
            }
            await renameAt(w, src, target, {
              noReplace: opts.clobber === false,
              exchange: opts.exchange,
            });
          },
        );
      })
    );
}
