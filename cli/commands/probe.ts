import type { Command } from "@commander-js/extra-typings";

/** Registers `ext4ts probe`. */
export function registerProbe(program: Command): void {
  program.command("probe").argument("<device>").action(() => {});
}
