/**
 * Permission modes as chmod(1) and mkdir -m take them: octal (`755`) and symbolic
 * (`u+x,g-w,o=r,a+X`).
 *
 * @module
 */

import { Mode } from "../lib/ondisk/inode.ts";
import { ExitCode } from "./exit_codes.ts";
import { CliError } from "./output.ts";

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** Bits each "who" letter may change (set-id with its class, sticky with others). */
const WHO: Record<string, number> = {
  u: 0o4700,
  g: 0o2070,
  o: 0o1007,
  a: 0o7777,
};

function badMode(text: string): CliError {
  return new CliError(`invalid mode: '${text}'`, ExitCode.FAILURE);
}

/**
 * An octal mode (`0755`, `4755`); anything else is a one-line error (exit 1).
 *
 * @example
 * ```ts
 * import { parseOctalMode } from "./modes.ts";
 * console.log(parseOctalMode("750").toString(8)); // 750
 * ```
 */
export function parseOctalMode(text: string): number {
  if (!/^[0-7]{1,6}$/.test(text)) throw badMode(text);
  const mode = Number.parseInt(text, 8);
  if (mode > 0o7777) throw badMode(text);
  return mode;
}

/**
 * The permission bits chmod(1) gives an object whose current mode (type bits included) is
 * `current`, for `text`: octal, or symbolic clauses `[ugoa]*[-+=][rwxXst]*|[ugo]`, comma
 * separated. A clause without a "who" is `a` (the image is not the host: no umask applies).
 * As GNU chmod does, a directory keeps its set-user-ID and set-group-ID bits unless the mode
 * names them (symbolically, or with five or more octal digits).
 *
 * @example
 * ```ts
 * import { applyMode } from "./modes.ts";
 * console.log(applyMode("u+x,g-w,o=r", 0o100664).toString(8)); // 744
 * console.log(applyMode("a+X", 0o040600).toString(8)); // 711
 * ```
 */
export function applyMode(text: string, current: number): number {
  const isDir = (current & Mode.IFMT) === Mode.IFDIR;
  const keptSetId = isDir ? current & (S_ISUID | S_ISGID) : 0;
  if (/^[0-7]+$/.test(text)) {
    const mode = parseOctalMode(text);
    return text.length >= 5 ? mode : mode | keptSetId;
  }
  let mode = current & 0o7777;
  for (const clause of text.split(",")) {
    const m = /^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$/.exec(clause);
    if (!m) throw badMode(text);
    let who = 0;
    for (const c of m[1]) who |= WHO[c];
    if (who === 0) who = WHO.a;
    // [ugo] first: "=u" copies u, it is not "=" (nothing) followed by a stray "u".
    for (const action of m[2].matchAll(/([-+=])([ugo]|[rwxXst]*)/g)) {
      const [, op, perms] = action;
      let bits = 0;
      if (/^[ugo]$/.test(perms)) {
        const shift = { u: 6, g: 3, o: 0 }[perms]!;
        bits = ((mode >> shift) & 7) * 0o111;
      } else {
        for (const p of perms) {
          if (p === "r") bits |= 0o444;
          else if (p === "w") bits |= 0o222;
          else if (p === "x") bits |= 0o111;
          else if (p === "X" && (isDir || (mode & 0o111) !== 0)) bits |= 0o111;
          else if (p === "s") bits |= S_ISUID | S_ISGID;
          else if (p === "t") bits |= S_ISVTX;
        }
      }
      bits &= who;
      if (op === "+") mode |= bits;
      else if (op === "-") mode &= ~bits;
      else {
        // "=": the named classes get exactly `bits`; a directory's set-id bits stay unless
        // the clause names them.
        const cleared = isDir && !perms.includes("s") ? who & ~(S_ISUID | S_ISGID) : who;
        mode = (mode & ~cleared) | bits;
      }
    }
  }
  return mode & 0o7777;
}
