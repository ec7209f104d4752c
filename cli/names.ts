/**
 * User and group names from /etc/passwd and /etc/group, for output that shows them the way
 * e2fsprogs does.
 *
 * @module
 */

import type { NameResolver } from "../lib/report/superblock_report.ts";

function table(path: string): Map<number, string> {
  const map = new Map<number, string>();
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return map;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && /^\d+$/.test(f[2]) && !map.has(Number(f[2]))) map.set(Number(f[2]), f[0]);
  }
  return map;
}

/** A resolver over the local account databases. */
export function systemNames(): NameResolver {
  let users: Map<number, string> | undefined;
  let groups: Map<number, string> | undefined;
  return {
    user: (uid) => (users ??= table("/etc/passwd")).get(uid),
    group: (gid) => (groups ??= table("/etc/group")).get(gid),
  };
}

/**
 * Account names to ids from the text of a passwd or group file (`name:x:id:gid:…`); for
 * passwd the login group comes along. The first entry of a name wins, as getpwnam.
 *
 * @example
 * ```ts
 * import { accountIds } from "./names.ts";
 * console.log(accountIds("www-data:x:33:33::/var/www:/bin/sh\n").get("www-data")); // { id: 33, gid: 33 }
 * ```
 */
export function accountIds(text: string): Map<string, { id: number; gid?: number }> {
  const map = new Map<string, { id: number; gid?: number }>();
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 3 || !/^\d+$/.test(f[2]) || map.has(f[0])) continue;
    map.set(
      f[0],
      /^\d+$/.test(f[3] ?? "") ? { id: Number(f[2]), gid: Number(f[3]) } : {
        id: Number(f[2]),
      },
    );
  }
  return map;
}
