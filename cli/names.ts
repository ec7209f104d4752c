/**
 * User and group names from /etc/passwd and /etc/group, for output that shows them the way
 * e2fsprogs does.
 *
 * @module
 */

import type { NameResolver } from "../lib/superblock_report.ts";

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
