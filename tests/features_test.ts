import assert from "node:assert/strict";
import { featureByName, featureNames, featureSupport } from "../lib/ondisk/features.ts";
import { run, testWith } from "./helpers.ts";

Deno.test("featureNames: e2fsprogs order and spelling, unknown bits as FEATURE_Xn", () => {
  assert.deepEqual(
    featureNames({ compat: 0x4 | 0x2000, incompat: 0x2 | 0x40 | 0x80000000, roCompat: 0x400 }),
    ["has_journal", "FEATURE_C13", "filetype", "extent", "FEATURE_I31", "metadata_csum"],
  );
});

Deno.test("featureSupport: unknown incompat refuses, unknown ro_compat is read-only", () => {
  assert.equal(featureSupport({ compat: 0, incompat: 0x80000000, roCompat: 0 }).level, "refuse");
  assert.match(
    featureSupport({ compat: 0, incompat: 0x80000000, roCompat: 0 }).reasons[0],
    /unknown incompatible feature FEATURE_I31/,
  );
  assert.equal(featureSupport({ compat: 0, incompat: 0, roCompat: 0x80000000 }).level, "ro");
  assert.equal(featureSupport({ compat: 0x80000000, incompat: 0, roCompat: 0 }).level, "rw");
});

Deno.test("featureSupport: named limits", () => {
  const v = featureSupport({ compat: 0, incompat: 0x2 | 0x40, roCompat: 0x200 });
  assert.deepEqual(v, { level: "ro", reasons: ["bigalloc allocation is not implemented"] });
  assert.equal(featureSupport({ compat: 0, incompat: 0x8, roCompat: 0 }).level, "refuse");
  assert.equal(
    featureSupport({ compat: 0x4 | 0x20, incompat: 0x2c2, roCompat: 0x47b }).level,
    "rw",
  );
});

Deno.test("featureByName round-trips every name", () => {
  for (const kind of [0, 1, 2]) {
    for (let bit = 0; bit < 32; bit++) {
      const words = {
        compat: kind === 0 ? 2 ** bit : 0,
        incompat: kind === 1 ? 2 ** bit : 0,
        roCompat: kind === 2 ? 2 ** bit : 0,
      };
      const [name] = featureNames(words);
      if (name.startsWith("FEATURE_")) continue;
      const found = featureByName(name);
      assert.ok(found, name);
      assert.equal(found.mask, 2 ** bit);
    }
  }
});

testWith("featureNames: every bit of the three words is named as e2fsprogs' libe2p names it", [
  "python3",
], async () => {
  // e2p_feature2string is what dumpe2fs, tune2fs and mke2fs print.
  const r = await run("python3", [
    "-c",
    `import ctypes, json
l = ctypes.CDLL("libe2p.so.2")
l.e2p_feature2string.restype = ctypes.c_char_p
print(json.dumps([[l.e2p_feature2string(k, 1 << b).decode() for b in range(32)] for k in range(3)]))`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const e2p: string[][] = JSON.parse(r.stdout);
  const ours = [0, 1, 2].map((k) =>
    Array.from({ length: 32 }, (_, b) =>
      featureNames({
        compat: k === 0 ? 2 ** b : 0,
        incompat: k === 1 ? 2 ** b : 0,
        roCompat: k === 2 ? 2 ** b : 0,
      })[0])
  );
  assert.deepEqual(ours, e2p);
});

Deno.test("featureSupport: every feature e2fsprogs names has a decided level", () => {
  // A filesystem as mke2fs makes it by default: rw (nothing in the table holds it back).
  assert.deepEqual(
    featureSupport({
      compat: 0x4 | 0x8 | 0x10 | 0x20,
      incompat: 0x2 | 0x40 | 0x80 | 0x200,
      roCompat: 0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x400,
    }),
    { level: "rw", reasons: [] },
  );
  for (
    const [word, bit, level] of [
      ["incompat", 0x1, "refuse"], // compression
      ["incompat", 0x8, "refuse"], // journal_dev
      ["incompat", 0x1000, "refuse"], // dirdata
      ["incompat", 0x400, "ro"], // ea_inode
      ["incompat", 0x10000, "ro"], // encrypt
      ["incompat", 0x20000, "ro"], // casefold
      ["ro_compat", 0x100, "ro"], // quota
      ["ro_compat", 0x200, "ro"], // bigalloc
      ["ro_compat", 0x1000, "ro"], // read-only
      ["ro_compat", 0x4000, "ro"], // shared_blocks
      ["ro_compat", 0x8000, "ro"], // verity
      ["ro_compat", 0x4, "ro"], // FEATURE_R2 (btree_dir, never used)
      ["compat", 0x100, "ro"], // snapshot_bitmap
    ] as const
  ) {
    const v = featureSupport({
      compat: word === "compat" ? bit : 0,
      incompat: word === "incompat" ? bit : 0,
      roCompat: word === "ro_compat" ? bit : 0,
    });
    assert.equal(v.level, level, `${word} 0x${bit.toString(16)}`);
    assert.equal(v.reasons.length, 1);
  }
  // mmp is written (lib/ext4/mmp_guard.ts keeps the MMP block as the kernel does).
  assert.deepEqual(featureSupport({ compat: 0, incompat: 0x100, roCompat: 0 }), {
    level: "rw",
    reasons: [],
  });
});
