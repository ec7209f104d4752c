import type { Command } from "@commander-js/extra-typings";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { applyMode } from "../modes.ts";

/** `chmod MODE PATH…`: octal or symbolic modes, a final symlink followed (as chmod(1)). */
export const chmodCommand: EditCommand = {
  name: "chmod",
  description: "change permission bits (octal or symbolic, as chmod(1))",
  about:
    "Sets permission bits as chmod(1) does, inside the filesystem without mounting it: MODE is octal (755, 4755) or symbolic clauses such as u+x,g-w,o=r, a+X or go=u. A clause without who is a, and no umask applies (the image is not the host). A final symlink is followed.",
  failure: "no such path, or a bad mode",
  examples: [
    "ext4ts chmod disk.img 755 /usr/local/bin/tool",
    "ext4ts chmod disk.img u+x,g-w,o=r /srv/run.sh",
    "ext4ts chmod disk.img a+X /srv/www /srv/www/index.html",
  ],
  configure(cmd: Command) {
    cmd
      .argument("<mode>", "octal (0755) or symbolic ([ugoa]*[-+=][rwxXst]*, comma separated)")
      .argument("<paths...>", "files to change");
  },
  async run(fs, args) {
    const [mode, paths] = args as [string, string[]];
    for (const p of paths) {
      const st = await fs.stat(p);
      await fs.chmod(p, applyMode(mode, st.mode));
    }
  },
};

/** Registers `ext4ts chmod`. */
export function registerChmod(program: Command): void {
  registerEdit(program, chmodCommand);
}
