/**
 * `node:util` for the bundle: `stripVTControlCharacters`, which commander applies to help text
 * when colours are off.
 *
 * @module
 */

// CSI sequences (ESC [ or the 8-bit CSI, parameters, a final byte) and OSC sequences (ESC ],
// ended by BEL or ESC \).
// deno-lint-ignore no-control-regex
const CONTROL = /(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;

/** `s` without terminal control sequences. */
export function stripVTControlCharacters(s: string): string {
  return s.replace(CONTROL, "");
}

export default { stripVTControlCharacters };
