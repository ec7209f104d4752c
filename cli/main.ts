/**
 * The ext4ts command line. Every command lives in cli/commands/ and is imported statically
 * here, so `deno compile` sees the whole program.
 *
 * @module
 */

import { Command, CommanderError } from "@commander-js/extra-typings";
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
import { registerMount } from "./commands/mount.ts";
import { registerUmount } from "./commands/umount.ts";
import { runMountHelper } from "./mount_helper.ts";
import { VERSION } from "../lib/version.ts";

/** Builds the program with every command registered. */
export function buildProgram(): Command {
  const program = new Command()
    .name("ext4ts")
    .description("A userspace ext2/3/4 driver and toolkit.")
    .version(VERSION, "-V, --version")
    .exitOverride();
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
  registerMount(program);
  registerUmount(program);
  return program;
}

/**
 * Runs the CLI with `args`; resolves to the exit code. `ext4ts SOURCE MOUNTPOINT -o OPTIONS` (no
 * command) is mount(8)'s helper call (cli/mount_helper.ts).
 */
export async function main(args: string[]): Promise<number> {
  const program = buildProgram();
  if (await runMountHelper(args, program.commands.map((c) => c.name()))) {
    return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  }
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
      if (e.code === "commander.help") return 0;
      return ExitCode.USAGE;
    }
    throw e;
  }
  return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
