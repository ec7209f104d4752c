/**
 * The installed command (scripts/install.sh): one bundle (and one each of `ext4ts umount` and
 * the mount daemon), a launcher, a man page and completions under a prefix; run from any
 * directory, by root and by nobody, with an empty Deno cache and home, it prints nothing but
 * ext4ts' own words and fetches nothing; the launcher starts the mount daemon from its bundle and
 * fails as the source does. The bundle is built and installed once, into a temporary prefix.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BUNDLE_RUN_FLAGS } from "../cli/bundle.ts";
import { buildProgram } from "../cli/main.ts";
import { VERSION } from "../lib/version.ts";
import { bundleImports, launcher, layout } from "../scripts/install.ts";
import { findMount } from "../ffi/fuse/mountinfo.ts";
import { processAlive, readState } from "../ffi/fuse/mount_state.ts";
import {
  detachLoopsOf,
  FUSE_NEEDS,
  isMounted,
  withOpenFuseDevice,
  withoutProtectionWarning,
} from "./fuse_test_util.ts";
import {
  makeImage,
  missing,
  ROOT,
  run,
  runCli,
  type RunResult,
  testWith,
  unprivileged,
} from "./helpers.ts";

/** Runs `cmd` like a fresh login: a clean environment, an empty home and Deno cache. */
async function fresh(
  home: string,
  cwd: string,
  cmd: string,
  args: string[],
): Promise<RunResult> {
  await Deno.mkdir(home, { recursive: true });
  const env = [`HOME=${home}`, `DENO_DIR=${home}/.cache/deno`, "PATH=/usr/bin:/bin:/usr/sbin"];
  return run("env", ["-i", ...env, "TZ=UTC", cmd, ...args], { cwd });
}

async function tempDir755(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.chmod(dir, 0o755); // other users reach what is installed here
  return dir;
}

testWith(
  "install.sh: the bundle, launcher, man page and completions, used from anywhere by anyone",
  [...FUSE_NEEDS, "mkfs.ext4", "setpriv", "fusermount3", "bash"],
  async (t) => {
    const prefix = await tempDir755("ext4ts-prefix-");
    const work = await tempDir755("ext4ts-install-");
    const to = layout(prefix);
    const mnt = `${work}/mnt`;
    try {
      await t.step("scripts/install.sh installs into PREFIX", async () => {
        const r = await run("bash", [`${ROOT}scripts/install.sh`], { env: { PREFIX: prefix } });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, "");
        for (
          const [path, mode] of [
            [to.launcher, 0o755],
            [to.deno, 0o755],
            [to.bundle, 0o644],
            [to.umountBundle, 0o644],
            [to.mountBundle, 0o644],
            [to.man, 0o644],
            [to.bash, 0o644],
            [to.zsh, 0o644],
          ] as const
        ) {
          assert.equal(Deno.statSync(path).mode! & 0o777, mode, path);
        }
        const text = await Deno.readTextFile(to.launcher);
        assert.ok(text.includes(`run ${BUNDLE_RUN_FLAGS.join(" ")} '${to.bundle}' "$@"`), text);
        assert.ok(
          text.includes(`run ${BUNDLE_RUN_FLAGS.join(" ")} '${to.umountBundle}' "$@"`),
          text,
        );
        assert.ok(
          text.includes(`run ${BUNDLE_RUN_FLAGS.join(" ")} '${to.mountBundle}' mount "$@"`),
        );
        assert.ok(text.includes("DENO_NO_UPDATE_CHECK=1"));
      });

      await t.step(
        "the bundle imports nothing: no npm, no local files, no node: built-ins",
        async () => {
          assert.deepEqual(bundleImports('import { EventEmitter } from "node:events";'), [
            "node:events",
          ]);
          assert.deepEqual(bundleImports(await Deno.readTextFile(to.bundle)), []);
          assert.deepEqual(bundleImports(await Deno.readTextFile(to.umountBundle)), []);
          assert.deepEqual(bundleImports(await Deno.readTextFile(to.mountBundle)), []);
        },
      );

      await t.step(
        "help and usage errors: the bundle (node: shims) says what the source says",
        async () => {
          const program = buildProgram();
          const commands = program.commands.flatMap((c) => [
            [c.name()],
            ...c.commands.map((s) => [c.name(), s.name()]),
          ]);
          const cases = [
            ["--help"],
            ["help"],
            ["help", "probe"],
            ...commands.map((c) => [...c, "--help"]),
            ["nosuch"],
            ["probe"],
            ["probe", "--bogus", "x"],
            ["ls", "--offset"],
            ["journal"],
          ];
          // Help into a pipe whose reader has gone: exit 0, nothing on stderr, as from source.
          const closed = (cmd: string[]) =>
            run("bash", ["-c", `{ sleep 1; "$@"; } | true; echo "\${PIPESTATUS[0]}"`, "-", ...cmd]);
          const [bundledPipe, sourcePipe] = await Promise.all([
            closed([to.launcher, "--help"]),
            closed([Deno.execPath(), "run", "--allow-all", `${ROOT}cli/main.ts`, "--help"]),
          ]);
          assert.deepEqual([bundledPipe.stdout, bundledPipe.stderr], ["0\n", ""]);
          assert.deepEqual([sourcePipe.stdout, sourcePipe.stderr], ["0\n", ""]);
          for (const args of cases) {
            const [bundled, source] = await Promise.all([
              fresh(`${work}/root-home`, work, to.launcher, args),
              runCli(args),
            ]);
            assert.deepEqual(
              [bundled.code, bundled.stdout, bundled.stderr],
              [source.code, source.stdout, source.stderr],
              `ext4ts ${args.join(" ")}`,
            );
          }
        },
      );

      // An image beside the user's home, given by a relative path from there.
      const src = `${work}/src`;
      await Deno.mkdir(src);
      await Deno.writeTextFile(`${src}/hello.txt`, "hello from the bundle\n");
      const img = `${work}/t.img`;
      await makeImage(img, { size: "16M", args: ["-L", "installed", "-d", src] });
      await Deno.chmod(img, 0o644);
      const expected = await runCli(["probe", img]);
      assert.equal(expected.code, 0, expected.stderr);

      await t.step("root, another directory, empty Deno cache: only ext4ts' words", async () => {
        const r = await fresh(`${work}/root-home`, work, to.launcher, ["probe", "t.img"]);
        assert.equal(r.stderr, "", "nothing from Deno on stderr (no Download lines)");
        assert.equal(r.code, 0);
        assert.equal(r.stdout, expected.stdout.replace(`${img}:`, "t.img:"));
        const v = await fresh(`${work}/root-home2`, "/", to.launcher, ["--version"]);
        assert.deepEqual([v.code, v.stdout, v.stderr], [0, `${VERSION}\n`, ""]);
        const missing = await fresh(`${work}/root-home`, work, to.launcher, ["probe", "no.img"]);
        assert.equal(missing.code, 7);
        assert.equal(missing.stdout, "");
        assert.match(missing.stderr, /^ext4ts: [^\n]*no\.img[^\n]*\n$/);
        const usage = await fresh(`${work}/root-home`, work, to.launcher, ["probe"]);
        assert.equal(usage.code, 2, "exit codes pass through the launcher");
      });

      await t.step("nobody, empty Deno cache and home: only ext4ts' words", async (st) => {
        const home = `${work}/nobody`;
        await Deno.mkdir(home);
        const nobody = await unprivileged(home);
        const env = { HOME: `${home}/fresh`, DENO_DIR: `${home}/fresh/deno` };
        const r = await nobody.run(to.launcher, ["probe", "../t.img"], env);
        assert.equal(r.stderr, "");
        assert.equal(r.code, 0);
        assert.match(r.stdout, /^\.\.\/t\.img: ext4 filesystem\n/);
        assert.match(r.stdout, /label: +installed\n/);
        const cat = await nobody.run(to.launcher, ["cat", "../t.img", "/hello.txt"], env);
        assert.deepEqual([cat.code, cat.stdout, cat.stderr], [0, "hello from the bundle\n", ""]);
        // No home at all, as for a system user.
        const bare = await nobody.run(to.launcher, ["--version"], {
          HOME: "/nonexistent",
          DENO_DIR: "",
        });
        assert.deepEqual([bare.code, bare.stdout, bare.stderr], [0, `${VERSION}\n`, ""]);

        await st.step("mount and umount as nobody (fusermount3)", async () => {
          const umnt = `${home}/mnt`;
          await Deno.mkdir(umnt);
          await run("chown", ["65534:65534", umnt]);
          await withOpenFuseDevice(async () => {
            try {
              const m = await nobody.run(to.launcher, ["mount", "../t.img", "mnt"], env);
              assert.deepEqual([m.code, withoutProtectionWarning(m.stderr)], [0, ""]);
              assert.equal(findMount(umnt)?.fsType, "fuse.ext4ts");
              const read = await nobody.run("cat", [`${umnt}/hello.txt`]);
              assert.equal(read.stdout, "hello from the bundle\n");
              const u = await nobody.run(to.launcher, ["umount", "mnt"], env);
              assert.deepEqual([u.code, u.stderr], [0, ""]);
              assert.equal(isMounted(umnt), false);
            } finally {
              if (isMounted(umnt)) await run("umount", ["-l", umnt]);
            }
          });
        });
      });

      await t.step(
        "mount and umount as root: the launcher starts the daemon's bundle",
        async () => {
          await Deno.mkdir(mnt);
          const m = await fresh(`${work}/root-home`, work, to.launcher, ["mount", "t.img", "mnt"]);
          assert.deepEqual([m.code, m.stdout, withoutProtectionWarning(m.stderr)], [0, "", ""]);
          assert.equal(findMount(mnt)?.fsType, "fuseblk.ext4ts");
          assert.equal(await Deno.readTextFile(`${mnt}/hello.txt`), "hello from the bundle\n");
          const pid = readState(mnt)!.pid;
          const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
          assert.deepEqual(
            cmdline.slice(0, 3 + BUNDLE_RUN_FLAGS.length),
            [to.deno, "run", ...BUNDLE_RUN_FLAGS, to.mountBundle],
            "the installed Deno runs the daemon's bundle, with the launcher's flags",
          );
          assert.equal(Deno.readLinkSync(`/proc/${pid}/cwd`), "/", "the daemon left the directory");
          // The caller's pipes (its own stdio, and copies Deno keeps) are let go of: pointed at
          // /dev/null, so no descriptor number Deno still uses is free to be reused.
          const pipes = [...Deno.readDirSync(`/proc/${pid}/fd`)]
            .map((e) => Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`))
            .filter((l) => l.startsWith("pipe:"));
          assert.deepEqual(pipes, [], "the live daemon holds no pipe of its caller");
          const u = await fresh(`${work}/root-home`, work, to.launcher, ["umount", "mnt"]);
          assert.deepEqual([u.code, u.stdout, u.stderr], [0, "", ""]);
          assert.equal(isMounted(mnt), false);
          assert.equal(processAlive(pid), false, "the daemon is gone when umount returns");
        },
      );

      await t.step(
        "mount failures through the launcher: the source's line and exit code",
        async () => {
          const cases = [
            ["mount", "no.img", "mnt"], // 7, cannot open
            ["mount", "t.img", "nodir"], // 1, no mount point
            ["mount", "-o", "rw,bogus", "t.img", "mnt"], // 2, bad option
            ["mount", "src/hello.txt", "mnt"], // 3, not ext4
            ["mount", "t.img", "t.img"], // 1, not a directory
          ];
          for (const args of cases) {
            const [bundled, source] = await Promise.all([
              fresh(`${work}/root-home`, work, to.launcher, args),
              run(Deno.execPath(), ["run", "--allow-all", `${ROOT}cli/main.ts`, ...args], {
                cwd: work,
              }),
            ]);
            assert.notEqual(bundled.code, 0, args.join(" "));
            assert.deepEqual(
              [bundled.code, bundled.stdout, bundled.stderr],
              [source.code, source.stdout, source.stderr],
              `ext4ts ${args.join(" ")}`,
            );
            assert.equal(isMounted(mnt), false);
          }
        },
      );

      await t.step("mount.fuse3's call through the launcher: the daemon's bundle", async () => {
        // What mount.fuse3 runs for `mount -t fuse.ext4ts` and fstab lines (cli/mount_helper.ts).
        const args = [`${work}/t.img`, mnt, "-o", "rw,dev,suid"];
        const m = await fresh(`${work}/root-home`, "/", to.launcher, args);
        assert.deepEqual([m.code, m.stdout, withoutProtectionWarning(m.stderr)], [0, "", ""]);
        assert.equal(findMount(mnt)?.fsType, "fuseblk.ext4ts");
        assert.ok(findMount(mnt)!.options.split(",").includes("rw"), "mounted read-write");
        const pid = readState(mnt)!.pid;
        const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
        assert.equal(cmdline[2 + BUNDLE_RUN_FLAGS.length], to.mountBundle);
        assert.ok(cmdline.includes("--mount-helper"), cmdline.join(" "));
        const u = await fresh(`${work}/root-home`, work, to.launcher, ["umount", "mnt"]);
        assert.deepEqual([u.code, u.stdout, u.stderr], [0, "", ""]);
        const bad = [`${work}/t.img`, mnt, "-o", "bogus"];
        const [bundled, source] = await Promise.all([
          fresh(`${work}/root-home`, "/", to.launcher, bad),
          run(Deno.execPath(), ["run", "--allow-all", `${ROOT}cli/main.ts`, ...bad]),
        ]);
        assert.equal(bundled.code, 2);
        assert.deepEqual(
          [bundled.code, bundled.stdout, bundled.stderr],
          [source.code, source.stdout, source.stderr],
        );
      });

      await t.step("the man page renders", async () => {
        const page = await Deno.readTextFile(to.man);
        assert.match(page, /^\.TH EXT4TS 1 /);
        // Rendered where man is installed; otherwise the roff source shows the same sections.
        const shown = missing(["man"]).length > 0
          ? page.replaceAll("\\-", "-")
          : await (async () => {
            const r = await run("man", ["-l", to.man], {
              env: { MANWIDTH: "100", MANPAGER: "cat" },
            });
            assert.deepEqual([r.code, r.stderr], [0, ""]);
            return r.stdout;
          })();
        for (const s of ["SYNOPSIS", "ext4ts journal replay", "EXIT STATUS", "--offset"]) {
          assert.ok(shown.includes(s), `the page shows ${s}`);
        }
      });

      await t.step("the bash (and zsh) completions source cleanly and complete", async () => {
        const script = `source '${to.bash}' && complete -p ext4ts &&
          COMP_WORDS=(ext4ts journal ''); COMP_CWORD=2; _ext4ts; echo "\${COMPREPLY[*]}" &&
          COMP_WORDS=(ext4ts probe --j); COMP_CWORD=2; _ext4ts; echo "\${COMPREPLY[*]}"`;
        const r = await run("bash", ["-c", script]);
        assert.deepEqual([r.code, r.stderr], [0, ""]);
        assert.equal(r.stdout, "complete -o default -F _ext4ts ext4ts\nreplay show\n--json\n");
        assert.match(await Deno.readTextFile(to.zsh), /^#compdef ext4ts\n/);
        // The installed zsh completion is the CLI's own (its behaviour: tests/cli_help_test.ts),
        // and valid zsh; scripts/setup.sh installs zsh.
        if (missing(["zsh"]).length > 0) throw new Error("zsh is missing: run scripts/setup.sh");
        const own = await runCli(["completion", "zsh"]);
        assert.equal(await Deno.readTextFile(to.zsh), own.stdout);
        const z = await run("zsh", ["-n", to.zsh]);
        assert.deepEqual([z.code, z.stderr], [0, ""]);
      });

      await t.step("DENO= and a relative PREFIX: that Deno, paths made absolute", async () => {
        const r = await run("bash", [`${ROOT}scripts/install.sh`], {
          cwd: work,
          env: { PREFIX: "other-prefix", DENO: Deno.execPath() },
        });
        assert.equal(r.code, 0, r.stderr);
        const other = layout(`${work}/other-prefix`);
        const text = await Deno.readTextFile(other.launcher);
        assert.ok(text.includes(`exec '${Deno.execPath()}' run `), text);
        assert.throws(() => Deno.lstatSync(other.deno), Deno.errors.NotFound, "no copy of Deno");
        const v = await fresh(`${work}/root-home`, "/", other.launcher, ["--version"]);
        assert.deepEqual([v.code, v.stdout, v.stderr], [0, `${VERSION}\n`, ""]);
      });

      await t.step(
        "mount(8)'s helper links: a hint off the default path, made and removed when asked",
        async () => {
          // A prefix off mount.fuse3's default path (this one): no links, the command to make them.
          const hint = await run("bash", [`${ROOT}scripts/install.sh`], {
            env: { PREFIX: prefix },
          });
          assert.equal(hint.code, 0, hint.stderr);
          assert.match(
            hint.stdout,
            /run as root: sh scripts\/install_mount_helper\.sh \S+\/bin\/ext4ts\n$/,
          );
          // Asked (EXT4TS_MOUNT_HELPER=yes), into temporary link directories, then uninstalled.
          const bin = `${work}/helper-bin`;
          const sbin = `${work}/helper-sbin`;
          const env = {
            PREFIX: prefix,
            EXT4TS_MOUNT_HELPER: "yes",
            EXT4TS_HELPER_BIN: bin,
            EXT4TS_HELPER_SBIN: sbin,
          };
          const made = await run("bash", [`${ROOT}scripts/install.sh`], { env });
          assert.equal(made.code, 0, made.stderr);
          assert.equal(Deno.readLinkSync(`${bin}/ext4ts`), to.launcher);
          assert.match(Deno.readLinkSync(`${sbin}/mount.fuseblk.ext4ts`), /mount\.fuse3$/);
          const gone = await run("bash", [`${ROOT}scripts/install.sh`, "uninstall"], { env });
          assert.equal(gone.code, 0, gone.stderr);
          for (const link of [`${bin}/ext4ts`, `${sbin}/mount.fuseblk.ext4ts`]) {
            assert.throws(() => Deno.lstatSync(link), Deno.errors.NotFound, link);
          }
          const again = await run("bash", [`${ROOT}scripts/install.sh`], {
            env: { PREFIX: prefix },
          });
          assert.equal(again.code, 0, again.stderr); // installed again for the next step
        },
      );

      await t.step("uninstall removes what install put there, and only that", async () => {
        await Deno.writeTextFile(`${prefix}/bin/other`, "kept\n");
        const r = await run("bash", [`${ROOT}scripts/install.sh`, "uninstall"], {
          env: { PREFIX: prefix },
        });
        assert.equal(r.code, 0, r.stderr);
        for (const path of [to.launcher, to.libDir, to.man, to.bash, to.zsh]) {
          assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound, path);
        }
        assert.equal(await Deno.readTextFile(`${prefix}/bin/other`), "kept\n");
        // A command of that name that install.sh did not write is left alone.
        await Deno.writeTextFile(to.launcher, "#!/bin/sh\necho someone else's\n");
        const again = await run("bash", [`${ROOT}scripts/install.sh`, "uninstall"], {
          env: { PREFIX: prefix },
        });
        assert.equal(again.code, 1);
        assert.match(again.stderr, /^install: .*not installed by ext4ts/);
        assert.equal(await Deno.readTextFile(to.launcher), "#!/bin/sh\necho someone else's\n");
      });
    } finally {
      if (isMounted(mnt)) await run("umount", ["-l", mnt]);
      await detachLoopsOf(`${work}/t.img`);
      await Deno.remove(prefix, { recursive: true }).catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
);

testWith(
  "after set-up, the CLI from source needs nothing fetched (no Download lines)",
  [],
  async () => {
    // scripts/setup.sh caches every package deno.lock pins; --cached-only fails if one is not.
    const r = await run(Deno.execPath(), [
      "run",
      "--cached-only",
      "--allow-all",
      "cli/main.ts",
      "-V",
    ], {
      cwd: ROOT,
    });
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, `${VERSION}\n`, ""]);
  },
);

testWith(
  "the launcher's mount: the daemon's report read in sh (warnings, ready, exit N, killed first)",
  ["sh"],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ext4ts-launcher-" });
    try {
      const to = layout(dir);
      await Deno.mkdir(`${dir}/bin`);
      await Deno.writeTextFile(to.launcher, launcher(`${dir}/deno`, to, ["probe", "help"]));
      await Deno.chmod(to.launcher, 0o755);
      // A stand-in for Deno running the daemon's bundle: it reports as the test asks.
      const daemonSays = async (script: string) => {
        await Deno.writeTextFile(
          `${dir}/deno`,
          `#!/bin/sh
${script}
`,
        );
        await Deno.chmod(`${dir}/deno`, 0o755);
        return await run(to.launcher, ["mount", "disk.img", "mnt"]);
      };
      let r = await daemonSays(
        `echo $$ > ${dir}/pid; echo "warning could not set X"; echo ready; exec >/dev/null 2>&1; sleep 30`,
      );
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", "ext4ts: could not set X\n"]);
      const pid = Number(await Deno.readTextFile(`${dir}/pid`));
      assert.equal(processAlive(pid), true, "the launcher returned on ready, the daemon serves on");
      Deno.kill(pid, "SIGKILL");
      r = await daemonSays('echo "ext4ts: disk.img: No such file" >&2; echo "exit 7"; exit 7');
      assert.deepEqual([r.code, r.stdout, r.stderr], [7, "", "ext4ts: disk.img: No such file\n"]);
      r = await daemonSays("kill -9 $$");
      assert.deepEqual(
        [r.code, r.stdout, r.stderr],
        [1, "", "ext4ts: the mount daemon exited before it was ready\n"],
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
