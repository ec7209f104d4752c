import type { Command } from "@commander-js/extra-typings";
import { compareBytes, type DirEntry, type Ext4Stat } from "../../lib/filesystem.ts";
import type { Ext4 } from "../../ffi/open_filesystem.ts";
import { ExitCode } from "../exit_codes.ts";
import { runAction, warn, writeStdout } from "../output.ts";
import { formatTime, modeString, openImage, parseOffset, statJson } from "../reader_common.ts";

interface Item {
  name: string;
  path: string;
  stat: Ext4Stat;
  target?: string;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The sorted entries of `dir`; a damaged entry is reported (`onError`) and left out. */
async function entriesOf(
  fs: Ext4,
  dir: string,
  onError: (message: string) => void,
): Promise<Item[]> {
  const list: DirEntry[] = [];
  try {
    for await (const e of fs.readDir(dir)) list.push(e);
  } catch (e) {
    onError(`${dir}: ${(e as Error).message}`);
  }
  list.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
  const out: Item[] = [];
  for (const e of list) {
    const path = join(dir, e.name);
    try {
      const stat = await fs.getattr(e.ino);
      const target = stat.type === "symlink"
        ? new TextDecoder().decode(await fs.readLinkIno(e.ino))
        : undefined;
      out.push({ name: e.name, path, stat, target });
    } catch (err) {
      onError(`${path}: ${(err as Error).message}`);
    }
  }
  return out;
}

function longLine(it: Item): string {
  const st = it.stat;
  const size = st.type === "chardev" || st.type === "blockdev"
    ? `${st.rdev.major}, ${st.rdev.minor}`
    : String(st.size);
  const when = formatTime(st.mtime).slice(0, 19);
  return `${modeString(st.type, st.mode)} ${String(st.nlink).padStart(3)} ${
    String(st.uid).padStart(5)
  } ${String(st.gid).padStart(5)} ${size.padStart(10)} ${when} ${it.name}${
    it.target !== undefined ? ` -> ${it.target}` : ""
  }`;
}

/**
 * Registers `ext4ts ls [-l] [-R] [--json] IMG [PATH]`.
 *
 * @example
 * ```ts ignore
 * registerLs(program); // in cli/main.ts
 * ```
 */
export function registerLs(program: Command): void {
  program
    .command("ls")
    .description("list a directory inside the filesystem (names in byte order)")
    .argument("<image>", "image file or block device")
    .argument("[path]", "directory (or file) inside the filesystem", "/")
    .option("-l, --long", "long format: mode, links, owner, size, mtime (UTC)")
    .option("-R, --recursive", "list subdirectories recursively")
    .option("--json", "print a JSON array of entries (with their paths)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .action((image, path, opts) =>
      runAction(async () => {
        const fs = await openImage(image, opts);
        try {
          // Like ls: a symlink to a directory is listed as the link itself with -l.
          const self = await fs.lstat(path);
          const top = self.type === "symlink" && opts.long ? self : await fs.stat(path);
          const json: Record<string, unknown>[] = [];
          let failures = 0; // damaged entries, reported and skipped like ls does
          const emit = async (text: string) => {
            if (!opts.json) await writeStdout(text);
          };
          if (top.type !== "dir") {
            const lst = await fs.lstat(path);
            const it: Item = {
              name: path,
              path,
              stat: lst,
              target: lst.type === "symlink" ? await fs.readLink(path) : undefined,
            };
            if (opts.json) json.push(statJson(path, it.stat, it.target));
            await emit((opts.long ? longLine(it) : it.name) + "\n");
          } else {
            // Depth-first like ls -R: a directory's listing, then its subdirectories.
            const queue: string[] = [path];
            const seen = new Set<number>([top.ino]);
            let first = true;
            while (queue.length > 0) {
              const dir = queue.shift()!;
              const items = await entriesOf(fs, dir, (m) => {
                failures++;
                warn(m);
              });
              if (opts.recursive) await emit(`${first ? "" : "\n"}${dir}:\n`);
              first = false;
              let text = "";
              for (const it of items) {
                if (opts.json) json.push(statJson(it.path, it.stat, it.target));
                text += (opts.long ? longLine(it) : it.name) + "\n";
              }
              await emit(text);
              if (opts.recursive) {
                // A directory seen twice is a cycle in a corrupt filesystem: list it once.
                const subdirs = items.filter((i) => i.stat.type === "dir" && !seen.has(i.stat.ino));
                for (const d of subdirs) seen.add(d.stat.ino);
                queue.unshift(...subdirs.map((i) => i.path));
              }
            }
          }
          if (opts.json) await writeStdout(JSON.stringify(json, null, 1) + "\n");
          if (failures > 0) return ExitCode.FAILURE;
        } finally {
          await fs.close();
        }
      })
    );
}
