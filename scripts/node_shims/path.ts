/**
 * `node:path` for the bundle: the POSIX functions commander calls (for executable
 * subcommands and script names, which ext4ts does not use).
 *
 * @module
 */

/** The last component of `p`, without `ext` if it ends with it. */
export function basename(p: string, ext = ""): string {
  const base = p.replace(/\/+$/, "").split("/").pop() ?? "";
  return ext && base.endsWith(ext) && base !== ext ? base.slice(0, -ext.length) : base;
}

/** The extension of `p`'s last component (`.ts`), or "". */
export function extname(p: string): string {
  const base = basename(p);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot) : "";
}

/** `p` without its last component. */
export function dirname(p: string): string {
  const trimmed = p.replace(/\/+$/, "");
  const at = trimmed.lastIndexOf("/");
  return at < 0 ? "." : at === 0 ? "/" : trimmed.slice(0, at);
}

/** The absolute path of `parts` joined, from the current directory. */
export function resolve(...parts: string[]): string {
  let path = Deno.cwd();
  for (const part of parts) path = part.startsWith("/") ? part : `${path}/${part}`;
  const out: string[] = [];
  for (const c of path.split("/")) {
    if (c === "..") out.pop();
    else if (c && c !== ".") out.push(c);
  }
  return `/${out.join("/")}`;
}

export default { basename, extname, dirname, resolve };
