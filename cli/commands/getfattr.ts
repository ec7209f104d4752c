import type { Command } from "@commander-js/extra-typings";
import type { Ext4 } from "../../ffi/open_filesystem.ts";
import { ExitCode } from "../exit_codes.ts";
import { documentCommand, READER_EXIT_CODES } from "../help.ts";
import { Ext4Error } from "../../lib/errors.ts";
import { CliError, runAction, warn, writeStdout } from "../output.ts";
import { followLinks } from "../paths.ts";
import { JOURNAL_DEV_HELP, openImage, parseOffset } from "../reader_common.ts";
import { formatXattrValue, type XattrEncoding } from "../xattr_text.ts";
import { noSuchAttribute } from "./setfattr.ts";

const enc = new TextEncoder();

/** Options of {@link getfattrOutput}, as getfattr(1) names them. */
export interface GetfattrOptions {
  /** -n: only this attribute, with its value. */
  name?: string;
  /** -d: values too. */
  dump?: boolean;
  /** -m: names matching this regular expression ("-" or "": all); default `^user\.`. */
  match?: string;
  /** -e: how values are written. */
  encoding?: XattrEncoding;
  /** -h: a symlink's own attributes. */
  noDereference?: boolean;
  /** --absolute-names: keep the leading "/" of paths in `# file:` lines. */
  absoluteNames?: boolean;
}

/**
 * What getfattr prints for `path`: `# file: PATH`, one line per attribute (`name` or
 * `name=value`), a blank line; nothing for a file without matching attributes (as getfattr).
 *
 * @example
 * ```ts ignore
 * await writeStdout(await getfattrOutput(fs, "/srv/a.txt", { dump: true }));
 * ```
 */
export async function getfattrOutput(
  fs: Ext4,
  path: string,
  options: GetfattrOptions,
): Promise<Uint8Array> {
  const target = options.noDereference ? path : await followLinks(fs, path);
  const lines: Uint8Array[] = [];
  const withValue = options.dump || options.name !== undefined;
  let names: string[];
  if (options.name !== undefined) names = [options.name];
  else {
    const pattern = options.match === undefined ? "^user\\." : options.match;
    const re = pattern === "-" || pattern === "" ? null : new RegExp(pattern);
    names = (await fs.listXattr(target)).filter((n) => !re || re.test(n));
  }
  for (const name of names) {
    if (!withValue) {
      lines.push(enc.encode(`${name}\n`));
      continue;
    }
    const value = await fs.getXattr(target, name).catch((e) => {
      throw noSuchAttribute(e, `${path}: ${name}`);
    });
    lines.push(enc.encode(`${name}=`), formatXattrValue(value, options.encoding), enc.encode("\n"));
  }
  if (lines.length === 0) return new Uint8Array(0);
  const shown = options.absoluteNames ? path : path.replace(/^\/+/, "") || ".";
  const all = [enc.encode(`# file: ${shown}\n`), ...lines, enc.encode("\n")];
  const out = new Uint8Array(all.reduce((n, l) => n + l.length, 0));
  let at = 0;
  for (const l of all) {
    out.set(l, at);
    at += l.length;
  }
  return out;
}

/** Registers `ext4ts getfattr`. */
export function registerGetfattr(program: Command): void {
  const cmd = program
    .command("getfattr")
    .description("print extended attributes, as getfattr(1)")
    .helpOption("--help", "display help for command")
    .argument("<image>", "image file or block device")
    .argument("<paths...>", "files inside the filesystem")
    .option("-n, --name <name>", "print this attribute (with its value)")
    .option("-d, --dump", "print the values of all matching attributes")
    .option("-m, --match <regex>", "names matching REGEX ('-' for all; default ^user\\.)")
    .option("-e, --encoding <en>", "write values as text, hex or base64")
    .option("-h, --no-dereference", "a symlink's own attributes")
    .option("--absolute-names", "keep the leading '/' in '# file:' lines")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--journal-dev <path>", JOURNAL_DEV_HELP)
    .action((image, paths, opts) =>
      runAction(async () => {
        const encoding = opts.encoding;
        if (encoding !== undefined && !["text", "hex", "base64"].includes(encoding)) {
          throw new CliError(`unrecognized encoding '${encoding}'`, ExitCode.USAGE);
        }
        if (opts.match !== undefined && opts.match !== "-") {
          try {
            new RegExp(opts.match);
          } catch {
            throw new CliError(`bad regular expression '${opts.match}'`, ExitCode.USAGE);
          }
        }
        const fs = await openImage(image, opts);
        // As getfattr: a path that fails is reported and the others are still printed.
        let failed = false;
        try {
          for (const p of paths) {
            let out: Uint8Array;
            try {
              out = await getfattrOutput(fs, p, {
                name: opts.name,
                dump: opts.dump,
                match: opts.match,
                encoding: encoding as XattrEncoding | undefined,
                noDereference: opts.dereference === false,
                absoluteNames: opts.absoluteNames,
              });
            } catch (e) {
              if (!(e instanceof CliError || e instanceof Ext4Error)) throw e;
              warn(e.message);
              failed = true;
              continue;
            }
            await writeStdout(out);
          }
        } finally {
          await fs.close();
        }
        return failed ? ExitCode.FAILURE : ExitCode.OK;
      })
    );
  documentCommand(cmd, {
    about:
      "Prints extended attributes exactly as getfattr(1) does: '# file: PATH', one line per attribute, a blank line. Without -n or -d only names are listed; -d adds values; -m selects names by regular expression (default ^user\\., '-' for all). Read-only.",
    examples: [
      "ext4ts getfattr -d disk.img /srv/a.txt",
      "ext4ts getfattr -n security.capability -e hex disk.img /usr/bin/ping",
      "ext4ts getfattr -d -m - disk.img /etc/shadow",
    ],
    exitCodes: [[ExitCode.FAILURE, "no such file or attribute"], ...READER_EXIT_CODES],
  });
}
