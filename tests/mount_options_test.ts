/**
 * The mount option parser (cli/mount_options.ts) and mount(8)'s helper call
 * (cli/mount_helper.ts), without mounting anything (tests/mount_helper_test.ts mounts).
 */

import * as assert from "node:assert/strict";
import { parseMountOptions } from "../cli/mount_options.ts";
import { parseMountHelperCall } from "../cli/mount_helper.ts";
import { daemonArgs, parseDaemonArgs } from "../cli/commands/mount.ts";
import { CliError } from "../cli/output.ts";
import { fusermountFlagOptions, MountFlag } from "../ffi/fuse/mount.ts";
import { defaultSettings } from "../ffi/fuse/serve.ts";

const F = MountFlag;

function usageError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e) => e instanceof CliError && e.exitCode === 2 && message.test(e.message));
}

Deno.test("mount options: no options is a read-only nosuid,nodev mount", () => {
  assert.deepEqual(parseMountOptions(undefined), defaultSettings());
  assert.deepEqual(parseMountOptions(""), defaultSettings());
  assert.equal(defaultSettings().mountFlags, F.NOSUID | F.NODEV);
  assert.equal(defaultSettings().readOnly, true);
});

Deno.test("mount options: mount(8)'s generic flags become MS_* flags, later ones win", () => {
  const flags = (list: string) => parseMountOptions(list).mountFlags;
  assert.equal(flags("defaults,noatime,nosuid,nodev"), F.NOSUID | F.NODEV | F.NOATIME);
  // What mount.fuse3 passes when nodev/nosuid were not asked for: dev,suid clear them.
  assert.equal(flags("rw,dev,suid"), 0);
  assert.equal(parseMountOptions("rw,dev,suid").readOnly, false);
  assert.equal(flags("dev,suid,noexec"), F.NOEXEC);
  assert.equal(flags("dev,suid,noexec,exec"), 0);
  assert.equal(flags("dev,suid,sync,dirsync"), F.SYNCHRONOUS | F.DIRSYNC);
  assert.equal(flags("dev,suid,sync,async"), 0);
  // One atime mode: the last one given.
  assert.equal(flags("dev,suid,noatime,relatime"), F.RELATIME);
  assert.equal(flags("dev,suid,relatime,noatime"), F.NOATIME);
  assert.equal(flags("dev,suid,noatime,strictatime"), F.STRICTATIME);
  assert.equal(flags("dev,suid,noatime,atime"), 0, "atime undoes noatime");
  assert.equal(flags("dev,suid,strictatime,nostrictatime,relatime,norelatime"), 0);
  assert.equal(flags("dev,suid,nodiratime"), F.NODIRATIME);
  assert.equal(flags("dev,suid,nodiratime,diratime"), 0);
  assert.equal(parseMountOptions("ro,rw").readOnly, false);
  assert.equal(parseMountOptions("rw,ro").readOnly, true);
});

Deno.test("mount options: mount(8)'s own options are accepted and change nothing", () => {
  const own = [
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "loop",
    "x-systemd.automount",
    "x-systemd.device-timeout=10s",
    "x-systemd.requires=network-online.target",
    "x-gvfs-show",
    "comment=systemd.automount",
  ];
  assert.deepEqual(parseMountOptions(own.join(",")), defaultSettings());
  for (const o of own) assert.deepEqual(parseMountOptions(o), defaultSettings(), o);
});

Deno.test("mount options: ext4 and fuse2fs options keep working", () => {
  const s = parseMountOptions("ro,noload,allow_other,uid=1000,gid=100,errors=remount-ro");
  assert.equal(s.noRecovery, true);
  assert.equal(s.allowOther, true);
  assert.equal(s.defaultPermissions, true);
  assert.deepEqual([s.uid, s.gid, s.errors], [1000, 100, "remount-ro"]);
  assert.equal(parseMountOptions("norecovery").noRecovery, true);
  assert.equal(parseMountOptions("noblkdev").noBlkdev, true);
  assert.equal(parseMountOptions("default_permissions").defaultPermissions, true);
});

Deno.test("mount options: offset= takes the readers' --offset syntax", () => {
  assert.equal(parseMountOptions("offset=1M").offset, 1 << 20);
  assert.equal(parseMountOptions("offset=1MiB").offset, 1 << 20);
  assert.equal(parseMountOptions("offset=2048s").offset, 1 << 20);
  assert.equal(parseMountOptions("offset=1048576").offset, 1 << 20);
  assert.equal(parseMountOptions("offset=0").offset, 0);
  usageError(() => parseMountOptions("offset=1Q"), /^invalid offset '1Q': expected bytes/);
  usageError(() => parseMountOptions("offset"), /^invalid offset ''/);
  usageError(() => parseMountOptions("offset=-1"), /^invalid offset '-1'/);
});

Deno.test("mount options: cache_size= takes fuse2fs's sizes (bytes, K, M, G; up to 2 GiB)", () => {
  assert.equal(parseMountOptions("").cacheSize, undefined, "absent: sized from the machine");
  assert.equal(parseMountOptions("cache_size=8M").cacheSize, 8 << 20);
  assert.equal(parseMountOptions("cache_size=4096k").cacheSize, 4 << 20);
  assert.equal(parseMountOptions("cache_size=1048576").cacheSize, 1 << 20);
  assert.equal(parseMountOptions("cache_size=2047M").cacheSize, 2047 << 20);
  usageError(() => parseMountOptions("cache_size=2G"), /^cache_size must be between/);
  usageError(() => parseMountOptions("cache_size=0"), /^cache_size must be between/);
  usageError(() => parseMountOptions("cache_size=lots"), /^invalid cache_size 'lots'/);
});

Deno.test("mount options: anything else is a usage error naming the option", () => {
  usageError(() => parseMountOptions("ro,bogus"), /^unknown mount option 'bogus'$/);
  usageError(() => parseMountOptions("sizelimit=1M"), /^unknown mount option 'sizelimit=1M'$/);
  usageError(() => parseMountOptions("noatime=1"), /^unknown mount option 'noatime=1'$/);
  usageError(() => parseMountOptions("xsystemd"), /^unknown mount option 'xsystemd'$/);
  usageError(() => parseMountOptions("uid=x"), /^option uid needs a numeric id, got 'x'$/);
  usageError(() => parseMountOptions("errors=explode"), /^errors= must be/);
  // commit=: seconds of group commit; 0 is the kernel's default, 5.
  assert.equal(parseMountOptions("rw,commit=30").commit, 30);
  assert.equal(parseMountOptions("rw,commit=0").commit, 5);
  assert.equal(parseMountOptions("rw").commit, undefined);
  usageError(() => parseMountOptions("commit=soon"), /^commit= needs seconds/);
  usageError(() => parseMountOptions("commit"), /^commit= needs seconds/);
});

Deno.test("fusermount3 gets the flags it knows (users are nosuid,nodev regardless)", () => {
  assert.deepEqual(fusermountFlagOptions(0), []);
  assert.deepEqual(
    fusermountFlagOptions(parseMountOptions("noexec,noatime,sync,dirsync").mountFlags),
    ["noexec", "sync", "noatime", "dirsync"],
  );
  // relatime is the kernel's default; strictatime and nodiratime cannot be asked of it.
  assert.deepEqual(
    fusermountFlagOptions(parseMountOptions("dev,suid,strictatime,nodiratime").mountFlags),
    [],
  );
});

Deno.test("mount helper call: mount.fuse3's 'ext4ts SOURCE MOUNTPOINT -o OPTIONS'", () => {
  const commands = ["probe", "ls", "mount", "umount"];
  assert.deepEqual(
    parseMountHelperCall(["/dev/sdc", "/data", "-o", "rw,nofail,dev,suid"], commands),
    { source: "/dev/sdc", mountPoint: "/data", options: "rw,nofail,dev,suid" },
  );
  assert.deepEqual(
    parseMountHelperCall(["a.img", "/mnt", "-o", "ro", "-onoatime"], commands)?.options,
    "ro,noatime",
  );
  // Commands, options, and calls without -o (mount.fuse3 always passes one) are the ordinary
  // command line.
  for (
    const args of [
      ["mount", "a.img", "/mnt"],
      ["ls", "a.img", "/"],
      ["--version"],
      ["-h"],
      ["a.img"],
      ["prob", "a.img"],
      ["a.img", "/mnt", "-f"],
      ["a.img", "-o", "ro"],
      [],
      ["help", "mount"],
    ]
  ) {
    assert.equal(parseMountHelperCall(args, commands), undefined, args.join(" "));
  }
  usageError(() => parseMountHelperCall(["a.img", "/mnt", "-o", "ro", "-f"], commands), /'-f'/);
  usageError(() => parseMountHelperCall(["a.img", "/mnt", "-o", "ro", "-o"], commands), /'-o'/);
  usageError(() => parseMountHelperCall(["a.img", "-x", "-o", "ro"], commands), /usage/);
  usageError(
    () => parseMountHelperCall(["a.img", "/dev/fd/3", "-o", "ro"], commands),
    /drop_privileges/,
  );
});

Deno.test("mount daemon arguments carry the helper mode", () => {
  const argv = daemonArgs("/a.img", "/mnt", { options: "rw,dev,suid", mountHelper: true });
  assert.deepEqual(argv, [
    "mount",
    "-o",
    "rw,dev,suid",
    "--mount-helper",
    "-f",
    "--",
    "/a.img",
    "/mnt",
  ]);
  assert.deepEqual(parseDaemonArgs(argv).opts, {
    foreground: true,
    options: "rw,dev,suid",
    mountHelper: true,
  });
});
