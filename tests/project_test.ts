/**
 * The project's set-up promises: the tasks deno.json must have, the CLI run as
 * `deno task ext4ts`, the README's two set-up commands (the second is what `.ci/run` runs),
 * pinned versions, and code that `deno compile` can bundle whole.
 */
import assert from "node:assert/strict";
import { CORPUS, makeImage, ROOT, run, runCli, tempDir, testWith } from "./helpers.ts";

const denoJson = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));

Deno.test("deno.json: the tasks test, check, lint, fmt, bench, compile and ext4ts", () => {
  for (const task of ["test", "check", "lint", "fmt", "bench", "compile", "ext4ts"]) {
    assert.equal(typeof denoJson.tasks[task], "string", `task ${task}`);
  }
  // The task that runs from source and the binary deno compile builds share one entry point.
  assert.match(denoJson.tasks.ext4ts, /^deno run --allow-all cli\/main\.ts$/);
  assert.match(denoJson.tasks.compile, /deno compile .*cli\/main\.ts$/);
});

Deno.test("deno.json: the public entry points, their JSDoc examples in the suite and doc lint", () => {
  assert.deepEqual(denoJson.exports, {
    ".": "./mod.ts",
    "./ondisk": "./lib/ondisk/mod.ts",
    "./jbd2": "./lib/jbd2/mod.ts",
    "./cli": "./cli/main.ts",
  });
  // `deno test --doc` over the library runs the examples of every module the entry points
  // re-export (they live beside the code, not in mod.ts).
  assert.match(denoJson.tasks.test, /^deno test .*--doc\b.* tests\/ mod\.ts lib\/ ffi\/$/);
  const lint = denoJson.tasks.check.match(/deno doc --lint (.*)$/)?.[1].split(" ");
  assert.deepEqual(lint, ["mod.ts", "lib/ondisk/mod.ts", "lib/jbd2/mod.ts"]);
});

Deno.test("dependencies are pinned: exact versions in the import map, all in deno.lock", () => {
  const lock = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.lock`));
  for (const [name, spec] of Object.entries<string>(denoJson.imports)) {
    assert.match(spec, /^npm:(@[^/@]+\/)?[^@]+@\d+\.\d+\.\d+$/, `${name}: ${spec}`);
    assert.ok(lock.specifiers[spec], `${spec} is not in deno.lock`);
  }
  const tools = JSON.parse(Deno.readTextFileSync(`${ROOT}tools/deno/package-lock.json`));
  assert.match(tools.packages["node_modules/@deno/linux-x64-glibc"].version, /^\d+\.\d+\.\d+$/);
});

Deno.test("README: exactly two set-up commands; .ci/run runs the second and nothing else", () => {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const setup = readme.split(/^## /m).find((s) => s.startsWith("Set-up"));
  assert.ok(setup, "README has a Set-up section");
  const commands = [...setup.matchAll(/```sh\n([^`]*)```/g)].map((m) => m[1].trim());
  assert.deepEqual(commands, ["bash scripts/demo.sh", "bash scripts/test.sh"]);
  const ci = Deno.readTextFileSync(`${ROOT}.ci/run`).split("\n")
    .filter((l) => l.trim() && !l.startsWith("#") && !l.startsWith("set ") && !l.startsWith("cd "));
  assert.deepEqual(ci, [`exec ${commands[1]}`]);
});

/** Source files of the program (what `deno compile` bundles): cli/, lib/, ffi/ and mod.ts. */
function programSources(): string[] {
  const out = [`${ROOT}mod.ts`];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ts")) out.push(p);
    }
  };
  for (const d of ["cli", "lib", "ffi"]) walk(`${ROOT}${d}`);
  return out;
}

Deno.test("compile-safe: no dynamic imports, no files read beside the source, no module workers", () => {
  const sources = programSources();
  assert.ok(sources.length > 50, `found only ${sources.length} source files`);
  const banned: [RegExp, string][] = [
    [/\bimport\s*\(/, "dynamic import"],
    [/import\.meta\.(url|dirname|filename|resolve)/, "a path beside the source"],
    [/new\s+Worker\s*\(/, "a module worker (deno compile must be told to include it)"],
  ];
  const found: string[] = [];
  // A line may name a file beside the source only for a path taken when running from source
  // (never in the compiled binary or the bundle), or take its own URL only to compare it with
  // Deno.mainModule (cli/bundle.ts), and must say so in a comment on the line before it.
  const fromSourceOnly =
    /\/\/ compile-safe: (from source only|compared with Deno\.mainModule, never read)\b/;
  for (const path of sources) {
    const lines = Deno.readTextFileSync(path).split("\n");
    lines.forEach((line, i) => {
      const code = line.trim();
      if (code.startsWith("*") || code.startsWith("//") || code.startsWith("/*")) return;
      if (i > 0 && fromSourceOnly.test(lines[i - 1])) return;
      for (const [re, what] of banned) {
        if (re.test(code)) found.push(`${path.slice(ROOT.length)}:${i + 1}: ${what}: ${code}`);
      }
    });
  }
  assert.deepEqual(found, []);
});

testWith(
  "compile-safe: cli/main.ts's module graph is local files and pinned npm packages",
  [],
  async () => {
    const r = await run(Deno.execPath(), ["info", "--json", `${ROOT}cli/main.ts`]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    const outside = info.modules
      .map((m: { specifier: string }) => m.specifier)
      .filter((s: string) => !s.startsWith(`file://${ROOT}`) && !/^(npm|node):/.test(s));
    assert.deepEqual(outside, []);
    const local = info.modules.filter((m: { specifier: string }) =>
      m.specifier.startsWith("file:")
    );
    // Every command module is reached statically from the entry point.
    for (const cmd of Deno.readDirSync(`${ROOT}cli/commands`)) {
      assert.ok(
        local.some((m: { specifier: string }) => m.specifier.endsWith(`/cli/commands/${cmd.name}`)),
        `cli/commands/${cmd.name} is not imported statically`,
      );
    }
  },
);

testWith("`deno task ext4ts ARGS…` runs the CLI as the tests do", ["mkfs.ext4"], async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/t.img`;
  await makeImage(path, { size: "8M", args: ["-L", "task-run"] });
  const viaTask = await run(Deno.execPath(), ["task", "-q", "ext4ts", "probe", "--json", path], {
    cwd: ROOT,
    env: { TZ: "UTC" },
  });
  assert.equal(viaTask.code, 0, viaTask.stderr);
  const direct = await runCli(["probe", "--json", path]);
  assert.equal(viaTask.stdout, direct.stdout);
  assert.equal(JSON.parse(viaTask.stdout).label, "task-run");
  const usage = await run(Deno.execPath(), ["task", "-q", "ext4ts", "probe"], { cwd: ROOT });
  assert.equal(usage.code, 2, "the task passes the exit code through");
});

Deno.test("tests/corpus is the verbatim copy its SHA256SUMS lists, and the tests use it", async () => {
  const dir = `${ROOT}tests/corpus`;
  const sums = (await Deno.readTextFile(`${dir}/SHA256SUMS`)).trim().split("\n");
  assert.ok(sums.length > 300, `only ${sums.length} files listed`);
  const listed = new Set<string>();
  for (const line of sums) {
    const m = line.match(/^([0-9a-f]{64}) {2}\.\/(.+)$/);
    assert.ok(m, `bad SHA256SUMS line: ${line}`);
    listed.add(m[2]);
    const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${dir}/${m[2]}`));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(hex, m[1], `tests/corpus/${m[2]} differs from the copied corpus`);
  }
  const present: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${dir}/${rel}`)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p);
      else if (p !== "SHA256SUMS" && p !== "PROVENANCE.md") present.push(p);
    }
  };
  await walk("");
  assert.deepEqual(present.sort(), [...listed].sort(), "files added to or missing from the copy");
  if (!Deno.env.get("EXT4TS_CORPUS")) assert.equal(CORPUS, dir);
});

testWith(
  "deno publish --dry-run passes and ships only the library, the CLI, README and LICENSE",
  [],
  async () => {
    const r = await run(Deno.execPath(), ["publish", "--dry-run", "--allow-dirty"], {
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    });
    assert.equal(r.code, 0, r.stderr);
    const files = [...(r.stdout + r.stderr).matchAll(/file:\/\/\S+/g)]
      .map((m) => m[0].slice(`file://${ROOT}`.length));
    assert.ok(files.length > 50, `only ${files.length} files`);
    const shipped = (f: string) =>
      ["mod.ts", "README.md", "LICENSE", "deno.json"].includes(f) || /^(lib|ffi|cli)\//.test(f);
    assert.deepEqual(files.filter((f) => !shipped(f)), [], "no tests, bench, scripts or tools");
    for (const f of ["mod.ts", "LICENSE", "README.md", "cli/main.ts"]) {
      assert.ok(
        files.includes(f),
        f,
      );
    }
    assert.equal(denoJson.license, "Apache-2.0");
    assert.match(Deno.readTextFileSync(`${ROOT}LICENSE`), /Apache License\s+Version 2\.0/);
  },
);

/** The .ts files under lib/ and ffi/, relative to ROOT. */
function libAndFfiSources(): string[] {
  return programSources().map((p) => p.slice(ROOT.length))
    .filter((p) => /^(lib|ffi)\//.test(p)).sort();
}

Deno.test("small modules: no file in lib/ or ffi/ over 700 lines without a reason at its top", () => {
  const over: string[] = [];
  for (const path of libAndFfiSources()) {
    const text = Deno.readTextFileSync(`${ROOT}${path}`);
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (lines <= 700) continue;
    // The first comment block must say why, in a line starting "Over 700 lines because".
    const first = text.match(/^\s*\/\*\*?([\s\S]*?)\*\//)?.[1] ?? "";
    const why = first.split("\n").map((l) => l.replace(/^\s*\*\s?/, ""))
      .some((l) => l.startsWith("Over 700 lines because"));
    if (!why) over.push(`${path}: ${lines} lines`);
  }
  assert.deepEqual(over, []);
});

/** The relative imports and re-exports of a module (`import type` included), resolved to ROOT. */
function localImports(path: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}${path}`);
  const dir = path.split("/").slice(0, -1);
  const out: string[] = [];
  const statement = /^(?:import|export)\s(?:[^;"']*?\sfrom\s)?["'](\.{1,2}\/[^"']+)["']/gm;
  for (const m of text.matchAll(statement)) {
    const parts = [...dir];
    for (const seg of m[1].split("/")) {
      if (seg === "..") parts.pop();
      else if (seg !== ".") parts.push(seg);
    }
    out.push(parts.join("/"));
  }
  return out;
}

/** Strongly connected components of more than one module (or a module importing itself). */
function importCycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)!.includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

Deno.test("import graph: lib/ and ffi/ have no import cycle (type-only imports count)", () => {
  const sources = libAndFfiSources();
  const graph = new Map<string, string[]>();
  for (const path of sources) {
    graph.set(path, localImports(path).filter((p) => sources.includes(p)));
  }
  assert.ok([...graph.values()].some((deps) => deps.length > 0), "no imports found");
  // The detector itself: a two-module cycle is found.
  assert.deepEqual(importCycles(new Map([["a", ["b"]], ["b", ["a"]], ["c", ["a"]]])), [[
    "a",
    "b",
  ]]);
  assert.deepEqual(importCycles(graph), []);
});
