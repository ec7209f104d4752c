import assert from "node:assert/strict";
import { Lru } from "../lib/block/lru.ts";

Deno.test("Lru keeps recently used entries and stays bounded", () => {
  const c = new Lru<number, number>(100);
  for (let i = 0; i < 10_000; i++) {
    c.set(i, i * 2);
    assert.equal(c.get(0), 0, "entry 0 is used constantly and must survive");
    if (i === 0) continue;
    c.set(0, 0);
    assert.ok(c.size <= 100);
  }
  assert.equal(c.get(9_999), 19_998);
  assert.equal(c.get(5), undefined);
  c.delete(9_999);
  assert.equal(c.get(9_999), undefined);
  c.clear();
  assert.equal(c.size, 0);
});
