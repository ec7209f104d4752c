/**
 * Extended attribute values as text, in attr(1)'s notation: setfattr reads `0x…` (hex),
 * `0s…` (base64), `"…"` (a string with backslash escapes) or plain text; getfattr writes
 * `"…"`, `0x…` or `0s…`.
 *
 * @module
 */

import { ExitCode } from "./exit_codes.ts";
import { CliError } from "./output.ts";

const enc = new TextEncoder();

/** Standard base64 of `bytes` (btoa takes one character per byte). */
function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * The bytes a setfattr `-v` value stands for.
 *
 * @example
 * ```ts
 * import { parseXattrValue } from "./xattr_text.ts";
 * console.log(parseXattrValue("0x6869")); // Uint8Array(2) [ 104, 105 ]
 * ```
 */
export function parseXattrValue(text: string): Uint8Array {
  const bad = () => new CliError(`bad input encoding: '${text}'`, ExitCode.FAILURE);
  const prefix = text.slice(0, 2).toLowerCase();
  if (prefix === "0x") {
    const hex = text.slice(2).replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw bad();
    return Uint8Array.from(hex.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
  }
  if (prefix === "0s") {
    try {
      return Uint8Array.from(atob(text.slice(2).replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch {
      throw bad();
    }
  }
  if (!text.startsWith('"')) return enc.encode(text);
  const m = /^"((?:[^"\\]|\\.)*)"$/s.exec(text);
  if (!m) throw bad();
  // \ooo is an octal byte; any other escaped character stands for itself.
  const out: number[] = [];
  const body = m[1];
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== "\\") {
      out.push(...enc.encode(body[i]));
      continue;
    }
    const oct = /^[0-7]{1,3}/.exec(body.slice(i + 1));
    if (oct) {
      out.push(Number.parseInt(oct[0], 8) & 0xff);
      i += oct[0].length;
    } else {
      out.push(...enc.encode(body[++i]));
    }
  }
  return Uint8Array.from(out);
}

/** getfattr's `-e` encodings. */
export type XattrEncoding = "text" | "hex" | "base64";

/**
 * A value as getfattr prints it after `name=`: `-e text` quotes it (NUL, CR and LF as `\ooo`,
 * `\` and `"` escaped), hex is `0x…`, base64 `0s…`; without an encoding, text when at most
 * one byte in eight is unprintable, else base64 (as getfattr).
 *
 * @example
 * ```ts
 * import { formatXattrValue } from "./xattr_text.ts";
 * console.log(new TextDecoder().decode(formatXattrValue(new TextEncoder().encode("hi")))); // "hi"
 * ```
 */
export function formatXattrValue(value: Uint8Array, encoding?: XattrEncoding): Uint8Array {
  if (!encoding) {
    const unprintable = value.filter((b) => b < 0x20 || b > 0x7e).length;
    encoding = value.length >= unprintable * 8 ? "text" : "base64";
  }
  if (encoding === "hex") {
    return enc.encode("0x" + Array.from(value, (b) => b.toString(16).padStart(2, "0")).join(""));
  }
  if (encoding === "base64") return enc.encode("0s" + toBase64(value));
  const out: number[] = [0x22];
  for (const b of value) {
    if (b === 0 || b === 0x0a || b === 0x0d) {
      out.push(...enc.encode(`\\${b.toString(8).padStart(3, "0")}`));
    } else if (b === 0x5c || b === 0x22) out.push(0x5c, b);
    else out.push(b);
  }
  out.push(0x22);
  return Uint8Array.from(out);
}
