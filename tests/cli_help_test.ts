/**
 * The help convention (cli/help.ts): every command and group has a paragraph, an `Examples:`
 * block and an `Exit codes:` block; the man page and the completions are generated from the
 * same tree and name every command.
 */
import assert from "node:assert/strict";
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { buildProgram } from "../cli/main.ts";
import { commandDoc, commandPath, walkCommands } from "../cli/help.ts";
import { EXIT_CODE_MEANING } from "../cli/exit_codes.ts";
import { manPage } from "../cli/man.ts";
import { bashCompletion } from "../cli/completion.ts";
import { ROOT, run, runCli, tempDir, testWith } from "./helpers.ts";

/** What `COMMAND --help` prints, captured in-process. */
function helpOf(cmd: CommandUnknownOpts): string {
  let text = "";
  cmd.configureOutput({ writeOut: (s) => text += s, writeErr: (s) => text += s });
  cmd.outputHelp();
  return text;
}

Deno.test("every command's --help has a description, 2–4 examples and its exit codes", () => {
  const program = buildProgram();
  const paths: string[] = [];
  for (const cmd of walkCommands(program)) {
    const path = commandPath(cmd);
    paths.push(path);
    const doc = commandDoc(cmd);
    assert.ok(doc, `${path} has no documentCommand`);
    assert.ok(cmd.description().length > 60, `${path}: a paragraph, not a line`);
    const help = helpOf(cmd);
    const examples = /\nExamples:\n((?: {2}.*\n)+)/.exec(help);
    assert.ok(examples, `${path}: no Examples block in\n${help}`);
    const lines = examples[1].trimEnd().split("\n");
    assert.ok(lines.length >= 2 && lines.length <= 4, `${path}: ${lines.length} examples`);
    // Real invocations of this very command (the root's: of any).
    for (const l of lines) assert.ok(l.includes(`${path} `), `${path}: example '${l}'`);
    const codes = /\nExit codes:\n((?: {2}.*\n?)+)$/.exec(help);
    assert.ok(codes, `${path}: no Exit codes block at the end of\n${help}`);
    const listed = codes[1].trimEnd().split("\n").map((l) => Number(/^ {2}(\d+) /.exec(l)![1]));
    assert.deepEqual(listed, [...listed].sort((a, b) => a - b), `${path}: codes in order`);
    assert.ok(listed.includes(0) && listed.includes(2), `${path}: 0 and 2`);
    for (const c of listed) assert.ok(c in EXIT_CODE_MEANING, `${path}: undocumented code ${c}`);
  }
  // Groups and leaves alike: the whole tree is there.
  for (const p of ["ext4ts", "ext4ts probe", "ext4ts journal", "ext4ts journal replay"]) {
    assert.ok(paths.includes(p), p);
  }
});

Deno.test("the README's exit-code table is EXIT_CODE_MEANING", () => {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const section = readme.slice(readme.indexOf("## Exit codes"), readme.indexOf("## JSON output"));
  const rows = [...section.matchAll(/^\| (\d+) +\| (.*?) +\|/gm)].map((m) => [Number(m[1]), m[2]]);
  assert.deepEqual(rows, Object.entries(EXIT_CODE_MEANING).map(([c, m]) => [Number(c), m]));
});

Deno.test("ext4ts --help lists every command; help COMMAND and COMMAND --help agree", async () => {
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0);
  for (const cmd of buildProgram().commands) {
    assert.match(top.stdout, new RegExp(`^ {2}${cmd.name()} `, "m"), cmd.name());
  }
  const viaHelp = await runCli(["help", "stat"]);
  const viaFlag = await runCli(["stat", "--help"]);
  assert.equal(viaHelp.code, 0);
  assert.equal(viaHelp.stdout, viaFlag.stdout);
  assert.match(viaHelp.stdout, /^Usage: ext4ts stat /);
  // A subcommand of a group, too.
  const nested = await runCli(["help", "journal", "replay"]);
  assert.equal(nested.code, 0);
  assert.match(nested.stdout, /^Usage: ext4ts journal replay /);
});

testWith("the man page names every command and renders with man -l", ["man"], async () => {
  const program = buildProgram();
  const roff = manPage(program);
  for (const cmd of walkCommands(program)) {
    if (cmd === program) continue;
    assert.match(roff, new RegExp(`^\\.SS ${commandPath(cmd).replace(/ /g, " ")} `, "m"));
  }
  // What ext4ts --man prints is that page.
  const printed = await runCli(["--man"]);
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(printed.stdout, roff);
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/ext4ts.1`, roff);
  const r = await run("man", ["--warnings", "-l", `${dir.path}/ext4ts.1`], {
    env: { MANWIDTH: "100", MANPAGER: "cat", PAGER: "cat" },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "groff warnings");
  for (const cmd of walkCommands(program)) {
    assert.ok(r.stdout.includes(commandPath(cmd)), commandPath(cmd));
  }
  assert.match(r.stdout, /EXIT STATUS/);
});

testWith("bash completion: generated from the tree, registered, completes", ["bash"], async () => {
  const cli = `${Deno.execPath()} run --allow-all ${ROOT}cli/main.ts`;
  const r = await run("bash", ["-c", `source <(${cli} completion bash); complete -p ext4ts`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "complete -o default -F _ext4ts ext4ts\n");
  await using dir = await tempDir();
  const script = `${dir.path}/ext4ts.bash`;
  await Deno.writeTextFile(script, bashCompletion(buildProgram()));
  const complete = async (...words: string[]) => {
    const line = words.map((w) => `'${w}'`).join(" ");
    const out = await run("bash", [
      "-c",
      `source ${script}; COMP_WORDS=(ext4ts ${line}); COMP_CWORD=${words.length}; _ext4ts; ` +
      `printf '%s\\n' "\${COMPREPLY[@]}"`,
    ]);
    assert.equal(out.code, 0, out.stderr);
    return out.stdout.trim().split("\n").filter((l) => l !== "");
  };
  assert.deepEqual(await complete("jo"), ["journal"]);
  assert.deepEqual(await complete("journal", ""), ["replay", "show"]);
  assert.deepEqual(await complete("journal", "replay", "--d"), ["--dry-run"]);
  assert.deepEqual(await complete("probe", "-o", "e"), ["export"]);
  assert.deepEqual(await complete("completion", ""), ["bash", "zsh"]);
  assert.deepEqual(await complete("help", "um"), ["umount"]);
  // An image or path argument: nothing from ext4ts, so bash completes file names (-o default).
  assert.deepEqual(await complete("ls", "di"), []);
});

testWith("zsh completion: valid zsh, completes subcommands", ["zsh"], async () => {
  const r = await runCli(["completion", "zsh"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^#compdef ext4ts\n/);
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/_ext4ts`, r.stdout);
  const syntax = await run("zsh", ["-n", `${dir.path}/_ext4ts`]);
  assert.equal(syntax.code, 0, syntax.stderr);
  // Called as zsh's completion system would, with its builtins stubbed to print what they get.
  const out = await run("zsh", [
    "-c",
    `compdef() { :; }; source ${dir.path}/_ext4ts
compadd() { print -r -- "compadd \${@[-1]}"; }
_describe() { print -rl -- "\${(@P)2}"; }
_files() { print files; }
words=(ext4ts journal ''); CURRENT=3; PREFIX=''; _ext4ts
words=(ext4ts probe -o ''); CURRENT=4; PREFIX=''; _ext4ts
words=(ext4ts ls ''); CURRENT=3; PREFIX=''; _ext4ts`,
  ]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split("\n");
  assert.ok(lines.some((l) => l.startsWith("replay:")), out.stdout);
  assert.ok(lines.some((l) => l.startsWith("show:")), out.stdout);
  assert.ok(lines.includes("compadd export"), out.stdout);
  assert.equal(lines.at(-1), "files");
});
