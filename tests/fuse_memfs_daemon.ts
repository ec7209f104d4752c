/**
 * `ext4ts mount` with the in-memory test filesystem instead of ext4: the same command
 * code (options, daemon start-up, readiness handshake, state file, signals), so the FUSE
 * tests exercise the real mount/umount machinery without the ext4 reader.
 *
 * Usage: deno run -A tests/fuse_memfs_daemon.ts mount DEVICE MOUNTPOINT [-o …] [-f] [--log F]
 * EXT4TS_TEST_DESTROY_DELAY_MS makes DESTROY slow on purpose; EXT4TS_TEST_VERIFY_FAIL=1 makes
 * the post-mount device check fail.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { registerMount } from "../cli/commands/mount.ts";
import type { MountBackend } from "../ffi/fuse/serve.ts";
import { MemFs } from "./fuse_memfs.ts";
import { Ext4Error } from "../lib/errors.ts";

const memBackend: MountBackend = {
  open() {
    const delay = Number(Deno.env.get("EXT4TS_TEST_DESTROY_DELAY_MS") ?? "0");
    const failVerify = Deno.env.get("EXT4TS_TEST_VERIFY_FAIL") === "1";
    return Promise.resolve({
      ops: new MemFs({ destroyDelayMs: delay }),
      blockSize: 4096,
      // deno-lint-ignore require-await
      async verify(path: string) {
        if (failVerify) throw new Ext4Error("IO", `${path}: the device changed while mounting`);
      },
    });
  },
};

if (import.meta.main) {
  const program = new Command().name("ext4ts-memfs").exitOverride();
  registerMount(program, memBackend);
  try {
    await program.parseAsync(Deno.args, { from: "user" });
  } catch {
    Deno.exit(2);
  }
  Deno.exit(typeof Deno.exitCode === "number" ? Deno.exitCode : 0);
}
