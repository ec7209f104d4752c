import type { Command } from "@commander-js/extra-typings";
import type { Ext4 } from "../../ffi/open_filesystem.ts";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { ExitCode } from "../exit_codes.ts";
import { accountIds } from "../names.ts";
import { CliError } from "../output.ts";
import { statOrNull } from "../paths.ts";

/** The image's account file `path`, or "" when it has none. */
async function imageAccounts(fs: Ext4, path: string): Promise<string> {
  if (!(await statOrNull(fs, path))) return "";
  return new TextDecoder().decode(await fs.readFile(path));
}

/**
 * `OWNER[:GROUP]` (also `OWNER:` for the owner's login group and `:GROUP`) as ids. Names are
 * looked up in the IMAGE's /etc/passwd and /etc/group — the accounts of the system the image
 * holds, not the host's; numeric ids always work.
 */
async function parseOwner(
  fs: Ext4,
  spec: string,
): Promise<{ uid: number | null; gid: number | null }> {
  const m = /^([^:]*)(?::(.*))?$/.exec(spec)!;
  const [, user, group] = m;
  const id = async (name: string, file: string, what: string) => {
    if (/^\d+$/.test(name) && Number(name) <= 0xffffffff) return { id: Number(name) };
    const found = accountIds(await imageAccounts(fs, file)).get(name);
    if (!found) throw new CliError(`invalid ${what}: '${spec}'`, ExitCode.FAILURE);
    return found;
  };
  if (user === "" && (group === undefined || group === "")) {
    throw new CliError(`invalid spec: '${spec}'`, ExitCode.FAILURE);
  }
  const owner = user === "" ? null : await id(user, "/etc/passwd", "user");
  let gid: number | null = null;
  if (group !== undefined && group !== "") gid = (await id(group, "/etc/group", "group")).id;
  else if (group === "" && owner) {
    // "OWNER:": the owner's login group, which only a passwd entry knows.
    if (owner.gid === undefined) {
      throw new CliError(`invalid spec: '${spec}' (no login group for ${user})`, ExitCode.FAILURE);
    }
    gid = owner.gid;
  }
  return { uid: owner ? owner.id : null, gid };
}

/** `chown OWNER[:GROUP] PATH…`. */
export const chownCommand: EditCommand = {
  name: "chown",
  description: "change owner and group (numeric, or names from the image's /etc/passwd, group)",
  about:
    "Sets owner and group (OWNER, OWNER:GROUP, OWNER: or :GROUP) inside the filesystem without mounting it. Numeric ids always work; names are looked up in the image's own /etc/passwd and /etc/group, the accounts of the system the image holds. A final symlink is followed unless -h.",
  failure: "no such path, or an unknown user or group",
  examples: [
    "ext4ts chown disk.img 1000:1000 /home/ann",
    "ext4ts chown disk.img www-data: /srv/www",
    "ext4ts chown -h disk.img :0 /etc/localtime",
  ],
  configure(cmd: Command) {
    cmd
      .helpOption("--help", "display help for command")
      .argument("<owner>", "OWNER[:GROUP], OWNER: (login group) or :GROUP; ids or names")
      .argument("<paths...>", "files to change")
      .option("-h, --no-dereference", "change a symlink itself, not what it points at");
  },
  async run(fs, args, opts) {
    const [spec, paths] = args as [string, string[]];
    const { uid, gid } = await parseOwner(fs, spec);
    for (const p of paths) {
      await fs.chown(p, uid, gid, { noFollow: opts.dereference === false });
    }
  },
};

/** Registers `ext4ts chown`. */
export function registerChown(program: Command): void {
  registerEdit(program, chownCommand);
}
