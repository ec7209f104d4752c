/**
 * The in-memory journal replay as a reader sees it: every corpus case opened with
 * `Ext4.open` (which replays a dirty journal in memory and writes nothing) must list exactly
 * the oracle tree — the kernel's replay where the kernel replays. Cases the kernel refuses
 * to recover must be refused, and the device must be left byte-identical.
 */

import assert from "node:assert/strict";
import { Ext4 } from "../mod.ts";
import { treeListing } from "../lib/report/tree_listing.ts";
import { Ext4Error } from "../lib/errors.ts";
import { CORPUS, CORPUS_FOUND, IN_CI, missing, ROOT, runCli, tempDir } from "./helpers.ts";

interface Case {
  name: string;
  part: string;
  image: string;
  needsRecovery: boolean;
  kernel: string;
  listing: string;
}

function cases(): Case[] {
  const rows = Deno.readTextFileSync(`${CORPUS}/CASES.tsv`).trim().split("\n").slice(1);
  const out: Case[] = [];
  for (const row of rows) {
    const f = row.split("\t");
    const [part, name, variant, image] = f;
    const expected = f[f.length - 1];
    const listing = f[f.length - 3];
    // External-journal cases (a tarball, or a journal image in an extra column) are covered
    // by the journal corpus test, which passes the journal device.
    if (!image.endsWith(".gz") && !image.endsWith(".bz2") || image.endsWith(".tar.bz2")) continue;
    if (image.includes(" ") || f[4].endsWith(".gz")) continue;
    if (!listing.endsWith(".tsv")) continue;
    out.push({
      name: `${part}/${name}${variant === "-" ? "" : "/" + variant}`,
      part,
      image,
      needsRecovery: f[7] === "yes",
      kernel: /kernel=(\w+)/.exec(expected)?.[1] ?? "?",
      listing,
    });
  }
  return out;
}

async function decompress(src: string, dest: string): Promise<void> {
  const tool = src.endsWith(".bz2") ? "bzip2" : "gzip";
  const out = await new Deno.Command(tool, { args: ["-dc", src], stdout: "piped" }).output();
  if (!out.success) throw new Error(`${tool} -dc ${src} failed`);
  await Deno.writeFile(dest, out.stdout);
}

function columns(text: string, n: number): string[] {
  return text.trim().split("\n").filter((l) => !l.startsWith("#")).map((l) =>
    l.split("\t").slice(0, n).join("\t")
  );
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

const lacking = CORPUS_FOUND ? missing(["gzip", "bzip2"]) : [`the journal corpus (${CORPUS})`];

Deno.test({
  name: "journal overlay: every corpus case reads as the oracle tree, nothing written",
  ignore: lacking.length > 0 && !IN_CI,
  fn: async (t) => {
    if (lacking.length) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    await using dir = await tempDir();
    for (const c of cases()) {
      await t.step(c.name, async () => {
        const img = `${dir.path}/${c.name.replaceAll("/", "_")}.img`;
        await decompress(`${CORPUS}/${c.image}`, img);
        const before = await sha256(img);
        const notices: string[] = [];
        const open = () => Ext4.open(img, { onNotice: (m) => notices.push(m) });
        const oracle = await Deno.readTextFile(`${CORPUS}/${c.listing}`);
        // No oracle where even the kernel could not mount the result to list it.
        if (!oracle.startsWith("#path")) return;
        if (c.kernel === "refuse" && c.needsRecovery) {
          // The kernel refuses; stopping where e2fsck stops is acceptable too (EXPECTED.md),
          // and then the tree must be e2fsck's (the oracle for refused cases).
          try {
            const fs = await open();
            try {
              assert.deepEqual(columns(await treeListing(fs), 9), columns(oracle, 9));
            } finally {
              await fs.close();
            }
          } catch (e) {
            if (e instanceof assert.AssertionError) throw e;
            assert.ok(e instanceof Ext4Error, String(e));
          }
        } else if (c.name === "upstream/j_recover_fast_commit") {
          // Fast-commit replay is not implemented: it must be refused clearly, never ignored.
          await assert.rejects(
            open(),
            (e) => e instanceof Ext4Error && /fast commit/.test(e.message),
          );
        } else if (c.kernel === "replay" || c.kernel === "none") {
          const fs = await open();
          try {
            const ours = await treeListing(fs);
            // Columns 1-9 always; inode numbers and times too for kernel-made images, where
            // the corpus README says every replayer agrees on them.
            const n = c.part === "kernel" ? 12 : 9;
            assert.deepEqual(columns(ours, n), columns(oracle, n));
          } finally {
            await fs.close();
          }
          assert.ok(
            notices.filter((m) => /journal/.test(m)).length === (c.needsRecovery ? 1 : 0),
            notices.join("; "),
          );
        } else {
          return;
        }
        assert.equal(await sha256(img), before, "the overlay must not write to the device");
      });
    }
  },
});

Deno.test({
  name: "journal overlay: ls on a dirty image says so on stderr and shows the replayed tree",
  ignore: lacking.length > 0 && !IN_CI,
  fn: async () => {
    if (lacking.length) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    await using dir = await tempDir();
    const img = `${dir.path}/c.img`;
    await decompress(`${CORPUS}/kernel/default_4k/crash.img.gz`, img);
    const deno = Deno.execPath();
    const out = await new Deno.Command(deno, {
      args: ["run", "-A", `${ROOT}cli/main.ts`, "ls", img, "/"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0);
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.match(stderr, /journal needs recovery: replayed in memory, nothing written/);
    const oracle = columns(await Deno.readTextFile(`${CORPUS}/kernel/default_4k/crash.kr.tsv`), 1)
      .filter((p) => /^\/[^/]+$/.test(p))
      .map((p) => p.slice(1));
    const listed = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.deepEqual(listed.sort(), oracle.sort());
  },
});

Deno.test({
  name:
    "journal overlay: probe, cat, stat and get on a dirty image use the replay, nothing written",
  ignore: lacking.length > 0 && !IN_CI,
  fn: async () => {
    if (lacking.length) throw new Error(`test environment lacks: ${lacking.join(", ")}`);
    await using dir = await tempDir();
    const img = `${dir.path}/c.img`;
    await decompress(`${CORPUS}/kernel/default_4k/crash.img.gz`, img);
    const before = await sha256(img);
    const oracle = new Map(
      (await Deno.readTextFile(`${CORPUS}/kernel/default_4k/crash.kr.tsv`)).trim().split("\n")
        .map((l) => l.split("\t")).map((f) => [f[0], f] as const),
    );
    const notice = /journal needs recovery: replayed in memory, nothing written/;
    const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    const digest = async (b: Uint8Array<ArrayBuffer>) =>
      hex(new Uint8Array(await crypto.subtle.digest("SHA-256", b)));

    // /d1/renamed010 exists only after the replay (a rename of phase 2), and /d1/f014 is
    // 65536 bytes on disk but truncated to 3000 in the journal: the raw image shows neither.
    const cat = await runCli(["cat", img, "/d1/renamed010"]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.match(cat.stderr, notice);
    assert.equal(await digest(cat.stdoutBytes.slice()), oracle.get("/d1/renamed010")![7]);

    const stat = await runCli(["stat", "--json", img, "/d1/f014"]);
    assert.equal(stat.code, 0, stat.stderr);
    assert.match(stat.stderr, notice);
    assert.equal(JSON.parse(stat.stdout).size, Number(oracle.get("/d1/f014")![6]));

    const dest = `${dir.path}/out`;
    const get = await runCli(["get", img, "/d1", dest]);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stderr, notice);
    for (const name of ["renamed010", "f014", "f006"]) {
      assert.equal(
        await digest(await Deno.readFile(`${dest}/${name}`)),
        oracle.get(`/d1/${name}`)![7],
        `get /d1/${name}`,
      );
    }
    await assert.rejects(Deno.stat(`${dest}/f010`), "f010 was renamed by the journal");

    // probe reports the pending recovery (exit 4) from the replay worked out in memory.
    const probe = await runCli(["probe", "--json", img]);
    assert.equal(probe.code, 4, probe.stderr);
    const p = JSON.parse(probe.stdout);
    assert.equal(p.state.needsRecovery, true);
    assert.ok(p.recovery.transactions > 0 && p.recovery.blocks > 0, probe.stdout);
    assert.equal(p.recovery.error, null);

    assert.equal(await sha256(img), before, "the readers must not write to the device");
  },
});
