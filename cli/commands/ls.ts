import type { Command } from "@commander-js/extra-typings";
import { compareBytes, type DirEntry, type Ext4Stat } from "../../lib/ext4/filesystem.ts";
import type { Ext4 } from "../../ffi/open_filesystem.ts";
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

/**
 * One listed object. Names and paths are the stored bytes: like ls writing to a pipe, names
 * that are not valid UTF-8 are printed as they are (JSON shows them with U+FFFD).
 */
interface Item {
  name: Uint8Array;
  path: Uint8Array;
  stat: Ext4Stat;
  target?: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function join(dir: Uint8Array, name: Uint8Array): Uint8Array {
  return dir[dir.length - 1] === 0x2f ? concat(dir, name) : concat(dir, encoder.encode("/"), name);
}

/**
 * The sorted entries of directory inode `dirIno` (shown as `dir`); a damaged entry is
 * reported (`onError`) and left out. By inode, not path: a name that is not UTF-8 has no
 * string spelling to look it up by.
 */
async function entriesOf(
  fs: Ext4,
  dir: Uint8Array,
  dirIno: number,
  onError: (message: string) => void,
): Promise<Item[]> {
  const list: DirEntry[] = [];
  try {
    for await (const e of fs.readDirIno(dirIno)) {
      if (e.name !== "." && e.name !== "..") list.push(e);
    }
  } catch (e) {
    onError(`${decoder.decode(dir)}: ${(e as Error).message}`);
  }
  list.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
  const out: Item[] = [];
  for (const e of list) {
    const path = join(dir, e.nameBytes);
    try {
      const stat = await fs.entryStat(e.ino);
      const target = stat.type === "symlink" ? await fs.readLinkIno(e.ino) : undefined;
      out.push({ name: e.nameBytes, path, stat, target });
      const problem = await bitmapProblem(fs, decoder.decode(path), e.ino);
      if (problem) onError(problem);
    } catch (err) {
      onError(`${decoder.decode(path)}: ${(err as Error).message}`);
    }
  }
  return out;
}

function shown(it: Item, long: boolean): Uint8Array {
  return long ? longLine(it) : concat(it.name, encoder.encode("\n"));
}

function json(it: Item): Record<string, unknown> {
  const target = it.target === undefined ? undefined : decoder.decode(it.target);
  // An array cannot carry a version: each entry does (README "JSON output").
  return withSchemaVersion(statJson(decoder.decode(it.path), it.stat, target));
}

function longLine(it: Item): Uint8Array {
  const st = it.stat;
  const size = st.type === "chardev" || st.type === "blockdev"
    ? `${st.rdev.major}, ${st.rdev.minor}`
    : String(st.size);
  const when = formatTime(st.mtime).slice(0, 19);
  const head = `${modeString(st.type, st.mode)} ${String(st.nlink).padStart(3)} ${
    String(st.uid).padStart(5)
  } ${String(st.gid).padStart(5)} ${size.padStart(10)} ${when} `;
  const parts = [encoder.encode(head), it.name];
  if (it.target !== undefined) parts.push(encoder.encode(" -> "), it.target);
  parts.push(encoder.encode("\n"));
  return concat(...parts);
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
  const cmd = program
    .command("ls")
    .description("list a directory inside the filesystem (names in byte order)")
    .argument("<image>", "image file or block device")
    .argument("[path]", "directory (or file) inside the filesystem", "/")
    .option("-l, --long", "long format: mode, links, owner, size, mtime (UTC)")
    .option("-R, --recursive", "list subdirectories recursively")
    .option("--json", "print a JSON array of entries (with their paths)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--journal-dev <path>", JOURNAL_DEV_HELP)
    .action((image, path, opts) =>
      runAction(async () => {
        let failures = 0; // damaged blocks and entries, reported and skipped like ls does
        const fs = await openImage(image, opts, () => failures++);
        try {
          // Like ls: a symlink to a directory is listed as the link itself with -l.
          const self = await fs.lstat(path);
          const top = self.type === "symlink" && opts.long ? self : await fs.stat(path);
          const entries: Record<string, unknown>[] = [];
          const emit = async (bytes: Uint8Array) => {
            if (!opts.json) await writeStdout(bytes);
          };
          const pathBytes = encoder.encode(path);
          if (top.type !== "dir") {
            const lst = await fs.lstat(path);
            const it: Item = {
              name: pathBytes,
              path: pathBytes,
              stat: lst,
              target: lst.type === "symlink" ? await fs.readLinkIno(lst.ino) : undefined,
            };
            if (opts.json) entries.push(json(it));
            await emit(shown(it, !!opts.long));
            const problem = await bitmapProblem(fs, path, lst.ino);
            if (problem) {
              failures++;
              warn(problem);
            }
          } else {
            // Depth-first like ls -R: a directory's listing, then its subdirectories.
            const queue: { path: Uint8Array; ino: number }[] = [{ path: pathBytes, ino: top.ino }];
            const seen = new Set<number>([top.ino]);
            let first = true;
            while (queue.length > 0) {
              const dir = queue.shift()!;
              const items = await entriesOf(fs, dir.path, dir.ino, (m) => {
                failures++;
                warn(m);
              });
              if (opts.recursive) {
                await emit(
                  concat(encoder.encode(first ? "" : "\n"), dir.path, encoder.encode(":\n")),
                );
              }
              first = false;
              const text: Uint8Array[] = [];
              for (const it of items) {
                if (opts.json) entries.push(json(it));
                text.push(shown(it, !!opts.long));
              }
              await emit(concat(...text));
              if (opts.recursive) {
                // A directory seen twice is a cycle in a corrupt filesystem: list it once (and
                // say so, as GNU ls does).
                const subdirs: Item[] = [];
                for (const i of items) {
                  if (i.stat.type !== "dir") continue;
                  if (seen.has(i.stat.ino)) {
                    failures++;
                    warn(`${decoder.decode(i.path)}: not listing already-listed directory`);
                  } else {
                    seen.add(i.stat.ino);
                    subdirs.push(i);
                  }
                }
                queue.unshift(...subdirs.map((i) => ({ path: i.path, ino: i.stat.ino })));
              }
            }
          }
          if (opts.json) await writeStdout(JSON.stringify(entries, null, 1) + "\n");
          if (failures > 0) return ExitCode.FAILURE;
        } finally {
          await fs.close();
        }
      })
    );
  documentCommand(cmd, {
    about:
      "Lists a directory inside the filesystem (or names a file), in byte order like ls with LC_ALL=C; -l shows mode, links, owner, size and mtime (UTC), -R walks subdirectories. A journal that needs recovery is replayed in memory: nothing is written.",
    examples: [
      "ext4ts ls disk.img",
      "ext4ts ls -l disk.img /etc",
      "ext4ts ls -R --json --offset 1M disk.img / > tree.json",
    ],
    exitCodes: [[
      ExitCode.FAILURE,
      "no such path, or some entries could not be listed (each named on stderr)",
    ], ...READER_EXIT_CODES],
  });
}
