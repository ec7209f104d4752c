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

Deno.test("Lru with a weight bounds the bytes held, not the entries", () => {
  const c = new Lru<number, Uint8Array>(10_000, (v) => v.length);
  const sizes = new Map<number, number>();
  for (let i = 0; i < 1000; i++) {
    sizes.set(i, 1 + (i % 300));
    c.set(i, new Uint8Array(1 + (i % 300)));
    assert.ok(c.weight <= 10_000, `weight ${c.weight} after ${i + 1} entries`);
  }
  let sum = 0;
  for (const k of c.keys()) sum += sizes.get(k)!;
  assert.equal(c.weight, sum, "the weight is the sum of what is held");
  assert.ok(c.size > 30, "small entries are kept in numbers");
  // Replacing an entry in the young generation replaces its weight; deleting one gives it back.
  const key = [...c.keys()][0];
  const before = c.weight;
  c.set(key, new Uint8Array(sizes.get(key)! + 10));
  assert.equal(c.weight, before + 10);
  c.delete(key);
  assert.equal(c.weight, before - sizes.get(key)!);
  c.clear();
  assert.equal(c.weight, 0);
});

Deno.test("Lru with a weight keeps a hot entry and refuses one over half the capacity", () => {
  const c = new Lru<string, Uint8Array>(1000, (v) => v.length);
  c.set("hot", new Uint8Array(100));
  for (let i = 0; i < 100; i++) {
    c.set(`cold${i}`, new Uint8Array(50));
    assert.ok(c.get("hot"), "a value used all the time survives");
  }
  c.set("huge", new Uint8Array(501));
  assert.equal(c.get("huge"), undefined, "an entry over half the capacity is not kept");
  assert.ok(c.weight <= 1000);
  c.set("hot", new Uint8Array(600));
  assert.equal(c.get("hot"), undefined, "replaced by one too heavy: gone, old value too");
});
