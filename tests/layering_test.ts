/**
 * The import rules of ARCHITECTURE.md ("Folders and import rules"), checked on the source:
 * every relative import of every module in lib/, ffi/ and cli/ is allowed by the rule of the
 * folder it is in. A rule names the folders a folder may import from (its own always).
 */

import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";

/** Folder (relative to the repository) → the folders (and files) its modules may import. */
export const IMPORT_RULES: Record<string, string[]> = {
  // Devices and caches: the block layer knows no file system.
  "lib/block": ["lib/errors.ts"],
  // One codec per on-disk structure: pure, no I/O, no transactions.
  "lib/ondisk": ["lib/errors.ts", "lib/block"],
  // The journal knows nothing of ext4: its own format, devices and checksums.
  "lib/jbd2": ["lib/errors.ts", "lib/block", "lib/ondisk/checksum.ts", "lib/ondisk/uuid.ts"],
  // Transactions and commit sinks: blocks in, blocks out.
  "lib/txn": ["lib/errors.ts", "lib/block", "lib/ondisk", "lib/jbd2"],
  // ext4's concerns, in kernel terms.
  "lib/ext4": ["lib/errors.ts", "lib/version.ts", "lib/block", "lib/ondisk", "lib/jbd2", "lib/txn"],
  // Reports read everything.
  "lib/report": [
    "lib/errors.ts",
    "lib/version.ts",
    "lib/block",
    "lib/ondisk",
    "lib/jbd2",
    "lib/txn",
    "lib/ext4",
  ],
  "lib": ["lib/ondisk"],
  // The operating system: lib/, never cli/.
  "ffi": ["lib"],
  "cli": ["lib", "ffi", "mod.ts"],
};

function* modules(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* modules(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** The folder whose rule applies to `path`: the longest rule key that contains it. */
export function ruleOf(path: string): string {
  const keys = Object.keys(IMPORT_RULES).sort((a, b) => b.length - a.length);
  const key = keys.find((k) => path.startsWith(`${k}/`));
  if (!key) throw new Error(`no import rule covers ${path}`);
  return key;
}

function normalize(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

Deno.test("import rules: every module imports only what its folder's rule allows", () => {
  const broken: string[] = [];
  for (const top of ["lib", "ffi", "cli"]) {
    for (const path of modules(top)) {
      const rule = ruleOf(path);
      const allowed = [rule, ...IMPORT_RULES[rule]];
      // Comments out: JSDoc examples import mod.ts as a user would.
      const text = Deno.readTextFileSync(`${ROOT}${path}`).replace(/\/\*[\s\S]*?\*\//g, "");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const target = normalize(path, m[1]);
        const ok = allowed.some((a) => target === a || target.startsWith(`${a}/`));
        if (!ok) {
          broken.push(`${path} imports ${target} (${rule} may import ${allowed.join(", ")})`);
        }
      }
    }
  }
  assert.deepEqual(broken, []);
});

Deno.test("import rules: every folder of lib/ has a rule, and ARCHITECTURE.md states them", () => {
  const arch = Deno.readTextFileSync(`${ROOT}ARCHITECTURE.md`);
  for (const e of Deno.readDirSync(`${ROOT}lib`)) {
    if (!e.isDirectory) continue;
    assert.ok(`lib/${e.name}` in IMPORT_RULES, `lib/${e.name} has no import rule`);
    assert.ok(arch.includes(`lib/${e.name}/`), `ARCHITECTURE.md does not mention lib/${e.name}/`);
  }
});
