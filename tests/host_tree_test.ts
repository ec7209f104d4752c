import assert from "node:assert/strict";
import {
  getXattr,
  HostFile,
  joinPath,
  listXattrs,
  lstatx,
  readDirNames,
  readLinkBytes,
  showPath,
} from "../ffi/host_tree.ts";
import { SyscallError } from "../ffi/libc.ts";
import { run, tempDir, testWith } from "./helpers.ts";

const enc = new TextEncoder();

testWith("lstatx: nanosecond times, the object itself, device numbers", [
  "touch",
  "mknod",
  "root",
], async () => {
  await using dir = await tempDir();
  const f = `${dir.path}/f`;
  await Deno.writeTextFile(f, "12345");
  assert.equal((await run("touch", ["-m", "-d", "@1234567890.123456789", f])).code, 0);
  assert.equal((await run("touch", ["-a", "-d", "@1234567891.000000007", f])).code, 0);
  const st = lstatx(f);
  assert.deepEqual(st.mtime, { sec: 1234567890, nsec: 123456789 });
  assert.deepEqual(st.atime, { sec: 1234567891, nsec: 7 });
  assert.equal(st.size, 5);
  assert.equal(st.mode, 0o100000 | (Deno.lstatSync(f).mode! & 0o7777));
  assert.equal(st.nlink, 1);
  assert.equal(st.ino, Deno.lstatSync(f).ino);
  await Deno.symlink("f", `${dir.path}/l`);
  assert.equal(lstatx(`${dir.path}/l`).mode & 0o170000, 0o120000, "not followed");
  assert.deepEqual(readLinkBytes(`${dir.path}/l`), enc.encode("f"));
  assert.equal((await run("mknod", [`${dir.path}/c`, "c", "4095", "1048575"])).code, 0);
  const c = lstatx(`${dir.path}/c`);
  assert.deepEqual([c.rdevMajor, c.rdevMinor], [4095, 1048575]);
  assert.throws(() => lstatx(`${dir.path}/missing`), (e) => {
    assert.ok(e instanceof SyscallError);
    assert.equal(e.errno, 2);
    assert.match(e.message, /missing/);
    return true;
  });
});

testWith("xattrs of files and symlinks; a missing one is null", ["setfattr", "root"], async () => {
  await using dir = await tempDir();
  const f = `${dir.path}/f`;
  await Deno.writeTextFile(f, "");
  assert.deepEqual(listXattrs(f), []);
  assert.equal(getXattr(f, "user.none"), null);
  assert.equal((await run("setfattr", ["-n", "user.a", "-v", "0x00ff", f])).code, 0);
  assert.equal((await run("setfattr", ["-n", "user.empty", f])).code, 0);
  assert.deepEqual(listXattrs(f).sort(), ["user.a", "user.empty"]);
  assert.deepEqual(getXattr(f, "user.a"), new Uint8Array([0, 0xff]));
  assert.deepEqual(getXattr(f, "user.empty"), new Uint8Array(0));
  await Deno.symlink("f", `${dir.path}/l`);
  assert.equal(
    (await run("setfattr", ["-h", "-n", "trusted.l", "-v", "x", `${dir.path}/l`])).code,
    0,
  );
  assert.deepEqual(listXattrs(`${dir.path}/l`), ["trusted.l"], "the link's own, not f's");
});

testWith("dataRegions: SEEK_DATA/SEEK_HOLE stretches; HostFile reads what is there", [
  "truncate",
], async () => {
  await using dir = await tempDir();
  const f = `${dir.path}/sparse`;
  assert.equal((await run("truncate", ["-s", "10M", f])).code, 0);
  {
    using h = await Deno.open(f, { write: true });
    await h.seek(4 << 20, Deno.SeekMode.Start);
    await h.write(new Uint8Array(5000).fill(9));
  }
  using h = new HostFile(f);
  const regions = h.dataRegions(10 << 20);
  assert.equal(regions.length, 1);
  const [from, to] = regions[0];
  assert.ok(from <= 4 << 20 && to >= (4 << 20) + 5000 && to - from <= 64 << 10, `${from}-${to}`);
  const buf = new Uint8Array(5000);
  assert.equal(h.read(buf, 4 << 20), 5000);
  assert.deepEqual(buf, new Uint8Array(5000).fill(9));
  assert.equal(h.read(new Uint8Array(10), (10 << 20) - 4), 4, "short at the end of file");
  assert.deepEqual(h.dataRegions(1 << 20), [], "a leading hole has no data");
});

testWith("readDirNames gives names as bytes, not UTF-8 ones included", ["python3"], async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/plain`, "");
  const r = await run("python3", [
    "-c",
    "import os, sys; open(os.fsencode(sys.argv[1]) + b'/caf\\xe9', 'w').close()",
    dir.path,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const names = readDirNames(dir.path).map((n) => Array.from(n)).sort();
  assert.deepEqual(
    names,
    [Array.from(enc.encode("caf")).concat(0xe9), Array.from(enc.encode("plain"))].sort(),
  );
  const odd = joinPath(dir.path, new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
  assert.equal(lstatx(odd).size, 0);
  assert.equal(showPath(odd), `${dir.path}/caf\ufffd`);
  assert.throws(() => readDirNames(`${dir.path}/plain`), SyscallError);
});
