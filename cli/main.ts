/**
 * The ext4ts command line. Every command lives in cli/commands/ and is imported statically
 * here, so `deno compile` sees the whole program.
 *
 * @module
 */

import { Command, CommanderError, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { ExitCode } from "./exit_codes.ts";
import { registerProbe } from "./commands/probe.ts";
import { registerLs } from "./commands/ls.ts";
import { registerCat } from "./commands/cat.ts";
import { registerStat } from "./commands/stat.ts";
import { registerGet } from "./commands/get.ts";
import { registerJournal } from "./commands/journal.ts";
import { registerPut } from "./commands/put.ts";
import { registerMkdir } from "./commands/mkdir.ts";
import { registerRm } from "./commands/rm.ts";
import { registerMv } from "./commands/mv.ts";
import { registerChmod } from "./commands/chmod.ts";
import { registerChown } from "./commands/chown.ts";
import { registerLn } from "./commands/ln.ts";
import { registerTouch } from "./commands/touch.ts";
import { registerSetfattr } from "./commands/setfattr.ts";
import { registerGetfattr } from "./commands/getfattr.ts";
import { registerBatch } from "./commands/batch.ts";
import { mountCommand, parseDaemonArgs, parseMountArgs, registerMount } from "./commands/mount.ts";
import { parseUmountArgs, registerUmount, umountCommand } from "./commands/umount.ts";
import { ext4Backend } from "../ffi/fuse/ext4_ops.ts";
import { registerCompletion } from "./commands/completion.ts";
import { commandPath, documentCommand } from "./help.ts";
import { manPage } from "./man.ts";
import { runMountHelper } from "./mount_helper.ts";
import { runAction, warn } from "./output.ts";
import { exitAfterEvaluation, runningAsBundle } from "./bundle.ts";
import { VERSION } from "../lib/version.ts";

/** Builds the program with every command registered. */
export function buildProgram(): Command {
  const program = new Command()
    .name("ext4ts")
    .description("A userspace ext2/3/4 driver and toolkit.")
    .version(VERSION, "-V, --version")
    .option("--man", "print the manual page (roff) and exit")
    .exitOverride()
    // Commander's own errors (unknown option, missing argument) read like every other failure:
    // one line `ext4ts: …` (its "Did you mean" hint joined onto it), exit 2. Subcommands
    // inherit this, so it must come before they are registered.
    .configureOutput({
      outputError: (text, write) =>
        write(`ext4ts: ${text.replace(/^error: /, "").trimEnd().replace(/\s*\n\s*/g, " ")}\n`),
    });
  program.on("option:man", () => {
    Deno.stdout.writeSync(new TextEncoder().encode(manPage(program)));
    throw new CommanderError(ExitCode.OK, "ext4ts.man", "(man page)");
  });
  documentCommand(program, {
    about: "Reads, writes, checks and mounts ext2/3/4 filesystems in image files and on " +
      "block devices, without the kernel's ext4 driver: probe what a device holds, list and " +
      "copy files out, copy trees in and edit offline, replay or show the journal, and mount " +
      "read-only through FUSE. Run `ext4ts help COMMAND` for a command's options, examples " +
      "and exit codes.",
    examples: [
      "ext4ts probe /dev/sdb1",
      "ext4ts ls -l disk.img /etc",
      "ext4ts put disk.img ./rootfs /",
      "ext4ts completion bash > /etc/bash_completion.d/ext4ts",
    ],
    exitCodes: Object.values(ExitCode),
  });
  registerProbe(program);
  registerLs(program);
  registerCat(program);
  registerStat(program);
  registerGet(program);
  registerJournal(program);
  registerPut(program);
  registerMkdir(program);
  registerRm(program);
  registerMv(program);
  registerChmod(program);
  registerChown(program);
  registerLn(program);
  registerTouch(program);
  registerSetfattr(program);
  registerGetfattr(program);
  registerBatch(program);
  registerMount(program, ext4Backend);
  registerUmount(program);
  registerCompletion(program);
  return program;
}

/**
 * Why commander showed the usage instead of running a command: a group (or the program)
 * named without a subcommand, or `help` asked about an unknown one.
 */
function usageProblem(program: CommandUnknownOpts, args: string[]): string {
  const words = args.filter((a) => !a.startsWith("-"));
  let cmd = program;
  for (const [i, word] of words.entries()) {
    if (i === 0 && word === "help") continue;
    const sub = (cmd.commands as CommandUnknownOpts[]).find((c) =>
      c.name() === word || c.aliases().includes(word)
    );
    if (!sub) return `unknown command '${word}'`;
    cmd = sub;
  }
  const where = cmd === program ? "" : `${commandPath(cmd).replace(/^\S+ /, "")}: `;
  return `${where}missing command (one of: ${cmd.commands.map((c) => c.name()).join(", ")})`;
}

/**
 * The command lines that must start fast, run without commander (building the program, every
 * command with its help, is a measurable part of a start): the mount daemon as `ext4ts mount`
 * starts it (`daemonArgs`), `mount [-o OPTIONS] SOURCE MOUNTPOINT` and
 * `umount MOUNTPOINT [--timeout S]`. Any other spelling, help and every usage error go through
 * commander, which runs the same actions with the same options.
 */
function fastPath(args: string[]): (() => Promise<number | void>) | undefined {
  const [command, ...rest] = args;
  if (command === "mount" && rest.slice(0, rest.indexOf("--")).includes("-f")) {
    try {
      const { source, mountPoint, opts } = parseDaemonArgs(args);
      return () => mountCommand(source, mountPoint, opts, ext4Backend);
    } catch {
      return undefined;
    }
  }
  const mount = parseMountArgs(args);
  if (mount) {
    return () =>
      mountCommand(mount.source, mount.mountPoint, { options: mount.options }, ext4Backend);
  }
  const umount = parseUmountArgs(args);
  if (umount) return () => umountCommand(umount.mountPoint, umount).then(() => {});
  return undefined;
}

/**
 * Runs the CLI with `args`; resolves to the exit code. `ext4ts SOURCE MOUNTPOINT -o OPTIONS` (no
 * command) is mount(8)'s helper call (cli/mount_helper.ts).
 */
export async function main(args: string[]): Promise<number> {
  const fast = fastPath(args);
  if (fast) {
    await runAction(fast);
    return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  }
  const program = buildProgram();
  if (await runMountHelper(args, program.commands.map((c) => c.name()))) {
    return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  }
  // `help journal replay`: commander's help command looks one level deep only.
  if (args[0] === "help" && args.length > 2) args = [...args.slice(1), "--help"];
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return ExitCode.OK; // --help, --version, --man
      // No command, or a group without its subcommand: commander printed the usage to
      // stderr; say what is missing in the usual one line.
      if (e.code === "commander.help") warn(usageProblem(program, args));
      return ExitCode.USAGE;
    }
    throw e;
  }
  return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // The bundle exits once this module's evaluation has ended (its code cache is stored then);
  // from source at once: Node's streams there report a write to a closed pipe only after a turn.
  if (runningAsBundle()) exitAfterEvaluation(code);
  else Deno.exit(code);
}
