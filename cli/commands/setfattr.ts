import type { Command } from "@commander-js/extra-typings";
import { Errno, Ext4Error } from "../../lib/errors.ts";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { ExitCode } from "../exit_codes.ts";
import { CliError } from "../output.ts";
import { followLinks } from "../paths.ts";
import { parseXattrValue } from "../xattr_text.ts";

/**
 * `ENODATA` from the library as attr(1) words it: `WHAT: No such attribute` (exit 1), WHAT
 * being `PATH` (setfattr -x) or `PATH: NAME` (getfattr -n).
 *
 * @example
 * ```ts ignore
 * await fs.getXattr(p, name).catch((e) => { throw noSuchAttribute(e, `${p}: ${name}`); });
 * ```
 */
export function noSuchAttribute(e: unknown, what: string): unknown {
  if (e instanceof Ext4Error && e.errno === Errno.ENODATA) {
    return new CliError(`${what}: No such attribute`, ExitCode.FAILURE);
  }
  return e;
}

/** `setfattr -n NAME [-v VALUE] PATH…` and `setfattr -x NAME PATH…`, as attr(1). */
export const setfattrCommand: EditCommand = {
  name: "setfattr",
  description: "set (-n, -v) or remove (-x) an extended attribute, as setfattr(1)",
  about:
    "Sets or removes an extended attribute with attr(1)'s syntax, without mounting the filesystem. VALUE is text, \"quoted text\", 0x… hex or 0s… base64; NAME carries its namespace (user., trusted., security., system.posix_acl_* in the kernel's format). A final symlink is followed unless -h.",
  failure: "no such path or attribute, or a bad value",
  examples: [
    'ext4ts setfattr disk.img -n user.mime_type -v "text/plain" /srv/a.txt',
    "ext4ts setfattr disk.img -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= /usr/bin/ping",
    "ext4ts setfattr disk.img -x user.comment /srv/a.txt",
  ],
  configure(cmd: Command) {
    cmd
      .helpOption("--help", "display help for command")
      .argument("<paths...>", "files to change")
      .option("-n, --name <name>", "the attribute to set (namespace included: user.x)")
      .option(
        "-v, --value <value>",
        'its value: text, "quoted text", 0x… (hex) or 0s… (base64); empty when omitted',
      )
      .option("-x, --remove <name>", "the attribute to remove")
      .option("-h, --no-dereference", "act on a symlink itself, not what it points at");
  },
  async run(fs, args, opts) {
    const name = opts.name as string | undefined;
    const remove = opts.remove as string | undefined;
    if ((name === undefined) === (remove === undefined)) {
      throw new CliError("give exactly one of -n NAME and -x NAME", ExitCode.USAGE);
    }
    if (remove !== undefined && opts.value !== undefined) {
      throw new CliError("-v goes with -n, not -x", ExitCode.USAGE);
    }
    const value = parseXattrValue((opts.value as string | undefined) ?? "");
    for (const p of args[0] as string[]) {
      const path = opts.dereference === false ? p : await followLinks(fs, p);
      if (name !== undefined) await fs.setXattr(path, name, value);
      else {
        await fs.removeXattr(path, remove!).catch((e) => {
          throw noSuchAttribute(e, p);
        });
      }
    }
  },
};

/** Registers `ext4ts setfattr`. */
export function registerSetfattr(program: Command): void {
  registerEdit(program, setfattrCommand);
}
