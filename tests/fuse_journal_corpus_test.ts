/**
 * `ext4ts mount` over the journal corpus (tests/corpus, see its README): every image
 * with an internal journal is mounted read-only and its tree listing (columns 1-9: path,
 * type, mode, uid, gid, nlink, size, content, xattrs) compared with the oracle's.
 *
 * - Images that need no recovery: the listing must equal the oracle's now.
 * - Images that need recovery: served through the in-memory journal overlay; the listing
 *   must equal the oracle's where the kernel replays. Where the kernel refuses, the mount
 *   fails or (stopping where e2fsck stops) shows e2fsck's tree, the oracle for those cases.
 *   Fast commits, which ext4ts cannot replay, are refused. Either way the image's bytes are
 *   unchanged afterwards (sha256), and for a few crash images `-o norecovery` shows exactly
 *   the kernel's `ro,noload` (raw, unreplayed) listing.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  CORPUS,
  CORPUS_FOUND,
  IN_CI,
  missing,
  run,
  runCli,
  runOk,
  TREE_LISTING,
  withKernelMount,
} from "./helpers.ts";
import { detachLoopsOf, forceCleanup, FUSE_NEEDS, isMounted } from "./fuse_test_util.ts";

interface Case {
  name: string;
  image: string;
  needsRecovery: boolean;
  kernel: string;
  oracle: string;
}

function cases(): Case[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${CORPUS}/CASES.tsv`);
  } catch {
    return [];
  }
  const out: Case[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.split("\t");
    if (f.length < 13) continue;
    const [part, name, variant, image] = f;
    // External journals (two files) and archives are left to the jbd2 tests.
    if (image.includes(" ") || image.endsWith(".tar.bz2")) continue;
    if (!f[10].endsWith(".tsv")) continue; // no listing: not a mountable filesystem
    try {
      // An oracle the kernel could not list (e.g. "listing mount failed") is no oracle.
      if (!Deno.readTextFileSync(`${CORPUS}/${f[10]}`).startsWith("#path")) continue;
    } catch {
      continue;
    }
    out.push({
      name: `${part}/${name}${variant === "-" ? "" : "/" + variant}`,
      image: `${CORPUS}/${image}`,
      needsRecovery: f[7] === "yes",
      kernel: f[8],
      oracle: `${CORPUS}/${f[10]}`,
    });
  }
  return out;
}

/** Columns 1-9 of a listing, header dropped. */
function columns(listing: string): string {
  return listing.split("\n").filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split("\t").slice(0, 9).join("\t")).join("\n");
}

async function unpack(image: string, dir: string): Promise<string> {
  const out = `${dir}/fs.img`;
  const tool = image.endsWith(".bz2") ? "bzip2" : "gzip";
  await runOk("sh", ["-c", `${tool} -dc '${image}' > '${out}'`]);
  return out;
}

/** Images whose `-o norecovery` listing is compared with the kernel's `ro,noload` one. */
const RAW_CHECKED = new Set(["kernel/default_4k/crash", "kernel/nocsum_4k/crash"]);

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}

const all = cases();
const lacking = missing([...FUSE_NEEDS, "python3", "gzip", "bzip2"]);
if (!CORPUS_FOUND || all.length === 0) lacking.push(`the journal corpus (${CORPUS})`);

Deno.test({
  name: `ext4ts mount: journal corpus (${all.length} images) against the oracle listings`,
  ignore: lacking.length > 0 && !IN_CI,
  fn: async (t) => {
    if (lacking.length > 0) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    for (const c of all) {
      await t.step(c.name, async () => {
        const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-jc-" });
        const mnt = `${dir}/mnt`;
        await Deno.mkdir(mnt);
        const img = await unpack(c.image, dir);
        const before = await sha256File(img);
        try {
          const r = await runCli(["mount", img, mnt]);
          if (c.name === "upstream/j_recover_fast_commit") {
            // Fast-commit replay is not implemented: refused clearly, never ignored.
            assert.notEqual(r.code, 0, "a fast commit ext4ts cannot replay must be refused");
            assert.match(r.stderr, /fast commit/);
            assert.equal(isMounted(mnt), false);
            return;
          }
          if (c.needsRecovery && c.kernel.startsWith("REFUSED") && r.code !== 0) {
            // Refusing where the kernel refuses is right; stopping where e2fsck stops is
            // acceptable too (EXPECTED.md), and then the tree must be e2fsck's (the oracle).
            assert.equal(isMounted(mnt), false);
            return;
          }
          assert.equal(r.code, 0, r.stderr);
          const listing = await runOk("python3", [TREE_LISTING, mnt]);
          const u = await runCli(["umount", mnt]);
          assert.equal(u.code, 0, u.stderr);
          assert.equal(columns(listing), columns(await Deno.readTextFile(c.oracle)));
          if (c.needsRecovery) {
            // Replayed in memory only: the image is byte for byte what it was.
            assert.equal(await sha256File(img), before, "a read-only mount wrote to the image");
          }
          if (RAW_CHECKED.has(c.name)) {
            // norecovery: the raw, unreplayed state, as the kernel shows it with ro,noload.
            const raw = await withKernelMount(img, (m) => runOk("python3", [TREE_LISTING, m]), {
              readOnly: true,
              mountOptions: "noload",
            });
            const n = await runCli(["mount", img, mnt, "-o", "norecovery"]);
            assert.equal(n.code, 0, n.stderr);
            const ours = await runOk("python3", [TREE_LISTING, mnt]);
            assert.equal((await runCli(["umount", mnt])).code, 0);
            assert.equal(columns(ours), columns(raw));
            assert.notEqual(columns(ours), columns(listing), "replay must make a difference here");
            assert.equal(await sha256File(img), before, "norecovery wrote to the image");
          }
        } finally {
          if (isMounted(mnt)) await forceCleanup(mnt);
          await detachLoopsOf(img);
          await run("rm", ["-rf", dir]);
        }
      });
    }
  },
});
