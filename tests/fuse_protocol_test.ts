import assert from "node:assert/strict";
import {
  ATTR_OUT_SIZE,
  decodeInHeader,
  encodeOutHeader,
  ENTRY_OUT_SIZE,
  InitFlag,
  ProtocolError,
} from "../ffi/fuse/protocol.ts";
import {
  decodeBatchForgetIn,
  decodeGetxattrIn,
  decodeInitIn,
  decodeLseekIn,
  decodeName,
  decodeReadIn,
} from "../ffi/fuse/protocol_requests.ts";
import {
  AttrOutBody,
  DirentBuffer,
  direntTypeOfMode,
  encodeAttrOut,
  encodeDev,
  encodeEntryOut,
  encodeInitOut,
  encodeOpenOut,
  encodeStatfsOut,
  EntryOutBody,
  type FuseAttr,
} from "../ffi/fuse/protocol_replies.ts";
import { daemonArgs, parseDaemonArgs, parseMountOptions } from "../cli/commands/mount.ts";
import { parseMountInfo } from "../ffi/fuse/mountinfo.ts";
import { inoOfNode, nodeOfIno } from "../ffi/fuse/ext4_ops.ts";

const attr: FuseAttr = {
  ino: 12,
  size: 5000,
  blocks: 16,
  atime: { sec: -1, nsec: 5 },
  mtime: { sec: 2 ** 33, nsec: 6 },
  ctime: { sec: 3, nsec: 7 },
  mode: 0o100644,
  nlink: 1,
  uid: 1000,
  gid: 100,
  rdev: 0,
  blksize: 4096,
};

Deno.test("protocol: header decoding and reply header", () => {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint32(0, 40, true);
  v.setUint32(4, 15, true);
  v.setBigUint64(8, 0x1234567890n, true);
  v.setBigUint64(16, 7n, true);
  v.setUint32(24, 1000, true);
  v.setUint32(28, 100, true);
  v.setUint32(32, 4242, true);
  const h = decodeInHeader(b);
  assert.deepEqual(h, {
    len: 40,
    opcode: 15,
    unique: 0x1234567890n,
    nodeid: 7,
    uid: 1000,
    gid: 100,
    pid: 4242,
    totalExtlen: 0,
  });
  assert.throws(() => decodeInHeader(b.subarray(0, 39)), ProtocolError);
  const out = new DataView(encodeOutHeader(16, -2, 99n).buffer);
  assert.equal(out.getUint32(0, true), 16);
  assert.equal(out.getInt32(4, true), -2);
  assert.equal(out.getBigUint64(8, true), 99n);
});

Deno.test("protocol: INIT in/out sizes per minor version", () => {
  const inb = new Uint8Array(64);
  const v = new DataView(inb.buffer);
  v.setUint32(0, 7, true);
  v.setUint32(4, 45, true);
  v.setUint32(8, 131072, true);
  v.setUint32(12, InitFlag.ASYNC_READ | InitFlag.INIT_EXT, true);
  v.setUint32(16, 0xabc, true);
  assert.deepEqual(decodeInitIn(inb), {
    major: 7,
    minor: 45,
    maxReadahead: 131072,
    flags: InitFlag.ASYNC_READ | InitFlag.INIT_EXT,
    flags2: 0xabc,
  });
  const base = {
    major: 7,
    maxReadahead: 1,
    flags: 3,
    flags2: 0,
    maxBackground: 1,
    congestionThreshold: 1,
    maxWrite: 1 << 20,
    timeGran: 1,
    maxPages: 256,
  };
  assert.equal(encodeInitOut({ ...base, minor: 38 }).length, 64);
  assert.equal(encodeInitOut({ ...base, minor: 22 }).length, 24);
  const out = new DataView(encodeInitOut({ ...base, minor: 38 }).buffer);
  assert.equal(out.getUint32(20, true), 1 << 20);
  assert.equal(out.getUint16(28, true), 256);
});

Deno.test("protocol: entry/attr/statfs encodings have the kernel's sizes and fields", () => {
  const e = encodeEntryOut({
    nodeid: 12,
    generation: 3,
    entryTimeout: 1.5,
    attrTimeout: 2,
    attr,
  });
  assert.equal(e.length, ENTRY_OUT_SIZE);
  assert.equal(ENTRY_OUT_SIZE, 128);
  const v = new DataView(e.buffer);
  assert.equal(v.getBigUint64(0, true), 12n);
  assert.equal(v.getBigUint64(16, true), 1n);
  assert.equal(v.getUint32(32, true), 500_000_000);
  // attr starts at 40: negative atime as two's complement, 34-bit mtime kept.
  assert.equal(v.getBigInt64(40 + 24, true), -1n);
  assert.equal(v.getBigInt64(40 + 32, true), 2n ** 33n);
  assert.equal(v.getUint32(40 + 60, true), 0o100644);
  const a = encodeAttrOut(attr, 10);
  assert.equal(a.length, ATTR_OUT_SIZE);
  assert.equal(ATTR_OUT_SIZE, 104);
  assert.equal(
    encodeStatfsOut({
      blocks: 1,
      bfree: 1,
      bavail: 1,
      files: 1,
      ffree: 1,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    }).length,
    80,
  );
});

Deno.test("protocol: in-place reply bodies write every byte, as the encoders do", () => {
  // A reused reply buffer holds the previous reply: fill it with garbage first.
  const big = { ...attr, ino: 2 ** 40 + 7, size: 2 ** 52 + 3, blocks: 2 ** 32 };
  const reused = () => new Uint8Array(16 + 200).fill(0xa5);
  const at = (b: Uint8Array, size: number) => b.subarray(16, 16 + size);

  const a = new AttrOutBody(big, 1.25);
  const ab = reused();
  a.writeTo(new DataView(ab.buffer), 16);
  assert.equal(a.size, ATTR_OUT_SIZE);
  assert.deepEqual(at(ab, a.size), encodeAttrOut(big, 1.25));
  const v = new DataView(ab.buffer, 16);
  assert.equal(v.getBigUint64(16, true), 2n ** 40n + 7n);
  assert.equal(v.getBigUint64(24, true), 2n ** 52n + 3n);
  assert.equal(v.getBigInt64(16 + 24, true), -1n); // atime before 1970

  const entry = { nodeid: 2 ** 33, generation: 9, entryTimeout: 0, attrTimeout: 0.5, attr };
  const e = new EntryOutBody(entry);
  const eb = reused();
  e.writeTo(new DataView(eb.buffer), 16);
  assert.equal(e.size, ENTRY_OUT_SIZE);
  assert.deepEqual(at(eb, e.size), encodeEntryOut(entry));

  // CREATE: fuse_entry_out then fuse_open_out.
  const c = new EntryOutBody(entry, { fh: 5, flags: 1 << 5 });
  const cb = reused();
  c.writeTo(new DataView(cb.buffer), 16);
  assert.equal(c.size, ENTRY_OUT_SIZE + 16);
  const expected = new Uint8Array(c.size);
  expected.set(encodeEntryOut(entry));
  expected.set(encodeOpenOut(5, 1 << 5), ENTRY_OUT_SIZE);
  assert.deepEqual(at(cb, c.size), expected);
});

Deno.test("protocol: device numbers use the kernel's new_encode_dev", () => {
  assert.equal(encodeDev(8, 1), 0x801);
  assert.equal(encodeDev(259, 300), (300 & 0xff) | (259 << 8) | ((300 & ~0xff) << 12));
});

Deno.test("protocol: request bodies decode and reject short input", () => {
  const name = new TextEncoder().encode("user.x\0");
  const g = new Uint8Array(8 + name.length);
  new DataView(g.buffer).setUint32(0, 64, true);
  g.set(name, 8);
  const d = decodeGetxattrIn(g);
  assert.equal(d.size, 64);
  assert.equal(new TextDecoder().decode(d.name), "user.x");
  assert.throws(() => decodeName(new Uint8Array([0x61, 0x62])), ProtocolError);
  assert.throws(() => decodeReadIn(new Uint8Array(10)), ProtocolError);
  const r = new Uint8Array(40);
  const rv = new DataView(r.buffer);
  rv.setBigUint64(8, 1n << 40n, true);
  rv.setUint32(16, 131072, true);
  assert.equal(decodeReadIn(r).offset, 2 ** 40);
  assert.equal(decodeReadIn(r).size, 131072);
  const l = new Uint8Array(24);
  new DataView(l.buffer).setUint32(16, 3, true);
  assert.equal(decodeLseekIn(l).whence, 3);
  // A batch count larger than the body is bounded by the body.
  const bf = new Uint8Array(8 + 16);
  new DataView(bf.buffer).setUint32(0, 1000, true);
  assert.equal(decodeBatchForgetIn(bf).length, 1);
});

Deno.test("protocol: dirent packing stops exactly at the buffer size, 8-byte aligned", () => {
  const enc = new TextEncoder();
  const buf = new DirentBuffer(100, false);
  assert.equal(buf.add({ ino: 2, offset: 1, type: 4, name: enc.encode(".") }), true); // 32
  assert.equal(buf.add({ ino: 2, offset: 2, type: 4, name: enc.encode("..") }), true); // 32
  assert.equal(buf.add({ ino: 12, offset: 3, type: 8, name: enc.encode("abcdefgh") }), true); // 32
  assert.equal(buf.add({ ino: 13, offset: 4, type: 8, name: enc.encode("x") }), false);
  assert.equal(buf.bytes().length, 96);
  assert.equal(buf.count, 3);
  const plus = new DirentBuffer(4096, true);
  plus.add({ ino: 12, offset: 3, type: 8, name: enc.encode("f") });
  assert.equal(plus.bytes().length, 128 + 32);
  assert.equal(direntTypeOfMode(0o120777), 10);
});

Deno.test("mount options: parsing, aliases and refusals", () => {
  const s = parseMountOptions("ro,noload,allow_other,uid=1000,gid=100,errors=remount-ro");
  assert.equal(s.readOnly, true);
  assert.equal(s.noRecovery, true);
  assert.equal(s.allowOther, true);
  assert.equal(s.defaultPermissions, true, "allow_other implies default_permissions");
  assert.equal(s.uid, 1000);
  assert.equal(s.gid, 100);
  assert.equal(s.errors, "remount-ro");
  assert.equal(parseMountOptions("rw").readOnly, false);
  assert.equal(parseMountOptions("noblkdev").noBlkdev, true);
  assert.throws(() => parseMountOptions("bogus"), /unknown mount option/);
  assert.throws(() => parseMountOptions("uid=x"), /numeric/);
  assert.throws(() => parseMountOptions("errors=explode"), /errors=/);
});

Deno.test("mount daemon arguments: written and read back, odd values intact", () => {
  const opts = { options: "ro,uid=5,errors=continue", log: "/tmp/a log,-o" };
  const argv = daemonArgs("-odd name.img", "/mnt/with space", opts);
  assert.deepEqual(argv.slice(-3), ["--", "-odd name.img", "/mnt/with space"]);
  const back = parseDaemonArgs(argv);
  assert.equal(back.source, "-odd name.img");
  assert.equal(back.mountPoint, "/mnt/with space");
  assert.deepEqual(back.opts, { foreground: true, ...opts });
  assert.deepEqual(parseDaemonArgs(daemonArgs("d", "/m", {})).opts, { foreground: true });
  assert.throws(() => parseDaemonArgs(["ls", "--", "d", "/m"]), /usage/);
  assert.throws(() => parseDaemonArgs(["mount", "--", "d"]), /usage/);
  assert.throws(
    () => parseDaemonArgs(["mount", "--bogus", "--", "d", "/m"]),
    /unexpected argument/,
  );
});

Deno.test("mountinfo parsing unescapes paths", () => {
  const m = parseMountInfo(
    "50 27 0:57 / /tmp/a\\040b ro,nosuid - fuseblk.ext4ts /dev/loop3 ro,user_id=0\n",
  )[0];
  assert.equal(m.mountPoint, "/tmp/a b");
  assert.equal(m.fsType, "fuseblk.ext4ts");
  assert.equal(m.source, "/dev/loop3");
  assert.equal(m.device, "0:57");
});

Deno.test("ext4 adapter: root inode 2 is node 1 and the mapping is its own inverse", () => {
  assert.equal(nodeOfIno(2), 1);
  assert.equal(nodeOfIno(1), 2);
  assert.equal(nodeOfIno(12), 12);
  for (const ino of [1, 2, 3, 11, 12, 2 ** 32 - 1]) assert.equal(inoOfNode(nodeOfIno(ino)), ino);
});
