import assert from "node:assert/strict";
import { featureByName, featureNames, featureSupport } from "../lib/features.ts";

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
