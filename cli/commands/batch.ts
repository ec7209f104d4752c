import { Command, CommanderError } from "@commander-js/extra-typings";
import { Ext4Error } from "../../lib/errors.ts";
import { type EditCommand, parsedOf } from "../edit_command.ts";
import { documentCommand, WRITER_EXIT_CODES } from "../help.ts";
import { ExitCode, exitCodeFor } from "../exit_codes.ts";
import { CliError, runAction } from "../output.ts";
import { splitWords } from "../shell_words.ts";
import { parseOffset } from "../reader_common.ts";
import { FORCE_UNCHECKED_HELP, withFilesystem, writeOpenOptions } from "../writer_open.ts";
import { chmodCommand } from "./chmod.ts";
import { chownCommand } from "./chown.ts";
import { lnCommand } from "./ln.ts";
import { mkdirCommand } from "./mkdir.ts";
import { mvCommand } from "./mv.ts";
import { rmCommand } from "./rm.ts";
import { setfattrCommand } from "./setfattr.ts";
import { touchCommand } from "./touch.ts";

/** The commands a batch script may use, with the CLI's syntax minus the image. */
export const BATCH_COMMANDS: EditCommand[] = [
  mkdirCommand,
  rmCommand,
  mvCommand,
  chmodCommand,
  chownCommand,
  lnCommand,
  touchCommand,
  setfattrCommand,
];

/** One parsed line of a script. */
export interface BatchStep {
  /** 1-based line number in the script. */
  line: number;
  edit: EditCommand;
  args: unknown[];
  opts: Record<string, unknown>;
}

/** A parser for one line: the batch commands, no output, errors thrown. */
function lineParser(steps: BatchStep[], line: number): Command {
  const parser = new Command()
    .name("batch")
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} })
    .helpCommand(false);
  for (const edit of BATCH_COMMANDS) {
    const cmd = parser.command(edit.name).description(edit.description);
    edit.configure(cmd as unknown as Command);
    cmd.action((...a: unknown[]) => {
      steps.push({ line, edit, ...parsedOf(a[a.length - 1] as Command) });
    });
  }
  return parser;
}

/**
 * Parses a batch script: one command a line (`#` comments and blank lines skipped), words
 * split like a shell's. A bad line is a {@link CliError} `line N: …` with exit code 2;
 * nothing is run.
 *
 * @example
 * ```ts ignore
 * const steps = parseBatch("mkdir -p /etc/app\nchmod 700 /etc/app\n");
 * ```
 */
export function parseBatch(script: string): BatchStep[] {
  const steps: BatchStep[] = [];
  const lines = script.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const usage = (message: string) =>
      new CliError(`line ${i + 1}: ${message.replace(/^error: /, "")}`, ExitCode.USAGE);
    let words: string[];
    try {
      words = splitWords(lines[i]);
    } catch (e) {
      throw usage((e as Error).message);
    }
    if (words.length === 0) continue;
    if (!BATCH_COMMANDS.some((c) => c.name === words[0])) {
      throw usage(`unknown command '${words[0]}'`);
    }
    try {
      lineParser(steps, i + 1).parse(words, { from: "user" });
    } catch (e) {
      if (e instanceof CommanderError) throw usage(e.message);
      throw e;
    }
  }
  return steps;
}

/** `e` from the step at `line`, as one `line N: …` error with the exit code `e` has. */
function atLine(e: unknown, line: number): unknown {
  if (e instanceof CliError) return new CliError(`line ${line}: ${e.message}`, e.exitCode);
  if (e instanceof Ext4Error) return new CliError(`line ${line}: ${e.message}`, exitCodeFor(e));
  return e;
}

/** Registers `ext4ts batch`. */
export function registerBatch(program: Command): void {
  const cmd = program
    .command("batch")
    .description(
      "apply many edits (one a line: mkdir, rm, mv, chmod, chown, ln, touch, setfattr) in one transaction",
    )
    .argument("<image>", "image file or block device")
    .option("-f, --file <script>", "read the script from this file (default: stdin)")
    .option("--offset <bytes>", "byte offset of the filesystem in the image", parseOffset)
    .option("--force-unchecked", FORCE_UNCHECKED_HELP)
    .action((image, opts) =>
      runAction(async () => {
        const script = opts.file !== undefined
          ? await Deno.readTextFile(opts.file).catch((e) => {
            throw new CliError(`${opts.file}: ${(e as Error).message}`, ExitCode.IO);
          })
          : await new Response(Deno.stdin.readable).text();
        const steps = parseBatch(script);
        await withFilesystem(image, writeOpenOptions(opts), (fs) =>
          fs.batch(async () => {
            for (const step of steps) {
              try {
                await step.edit.run(fs, step.args, step.opts);
              } catch (e) {
                throw atLine(e, step.line);
              }
            }
          }));
      })
    );
  documentCommand(cmd, {
    about:
      "Applies a script of edits with one open and one commit, like debugfs -f. Script: one command a line (mkdir, rm, mv, chmod, chown, ln, touch, setfattr), as on the command line without the image argument; words are split like a shell's ('…', \"…\", \\), no expansions; '#' comments and blank lines are skipped. The whole script is checked before the image is opened, then applied in ONE transaction: all of it is written, or — when a line fails — nothing.",
    examples: [
      "ext4ts batch disk.img < edits.txt",
      "printf 'mkdir -p /etc/app\\nchmod 700 /etc/app\\n' | ext4ts batch disk.img",
      "ext4ts batch -f edits.txt --offset 1048576 disk.img",
    ],
    exitCodes: [
      [ExitCode.FAILURE, "a line failed (ext4ts: line N: …); nothing of the batch is written"],
      [ExitCode.USAGE, "bad usage, or a bad script line (checked before the image is opened)"],
      ...WRITER_EXIT_CODES,
    ],
  });
}
