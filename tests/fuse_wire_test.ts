/**
 * The FUSE session against a fake kernel: a SOCK_SEQPACKET socketpair keeps message
 * boundaries as /dev/fuse does, so the test writes raw requests and reads raw replies. This
 * checks what a real mount cannot force at will: the INIT negotiation for several kernels,
 * ENOSYS/EROFS for the opcodes ext4ts does not serve, one reply per request (never two,
 * never none) with requests completing out of order, a throwing handler answered EIO, no reply
 * to FORGET/BATCH_FORGET/INTERRUPT, malformed requests, and DESTROY waiting for the requests
 * still in flight. Needs no root.
 */

import assert from "node:assert/strict";
import { FuseSession, type SessionEnd, type SessionOptions } from "../ffi/fuse/session.ts";
import {
  type AttrReply,
  type CreateRequest,
  type EntryOut,
  type FallocateRequest,
  type FuseAttr,
  FuseError,
  type FuseOperations,
  type FuseWriteOperations,
  type OpenReply,
  type SetattrRequest,
  type StatfsOut,
} from "../ffi/fuse/ops.ts";
import { InitFlag, Opcode } from "../ffi/fuse/protocol.ts";
import { errno, libc, O } from "../ffi/libc.ts";

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const F_GETFL = 3;
const F_SETFL = 4;
const EAGAIN = 11;

const attr: FuseAttr = {
  ino: 5,
  size: 3,
  blocks: 1,
  atime: { sec: 1, nsec: 0 },
  mtime: { sec: 1, nsec: 0 },
  ctime: { sec: 1, nsec: 0 },
  mode: 0o100644,
  nlink: 1,
  uid: 0,
  gid: 0,
  rdev: 0,
  blksize: 4096,
};

/** Operations whose lookups misbehave on request, by name. */
class FakeOps implements FuseOperations {
  forgets: [number, number][] = [];
  destroyed = false;
  slowAborted = 0;
  #release: (() => void)[] = [];

  /** Lets every pending "slow" lookup finish. */
  releaseSlow(): void {
    for (const r of this.#release.splice(0)) r();
  }

  async lookup(
    ctx: { signal: AbortSignal },
    _parent: number,
    name: Uint8Array,
  ): Promise<EntryOut> {
    const n = new TextDecoder().decode(name);
    if (n === "boom") throw new Error("deliberate failure in lookup");
    if (n === "gone") throw new FuseError(2);
    if (n === "slow") {
      await new Promise<void>((r) => this.#release.push(r));
      if (ctx.signal.aborted) this.slowAborted++;
    }
    return { nodeid: 5, generation: 1, entryTimeout: 1, attrTimeout: 1, attr };
  }
  forget(nodeid: number, nlookup: number): void {
    this.forgets.push([nodeid, nlookup]);
  }
  getattr(): Promise<AttrReply> {
    return Promise.resolve({ attr, timeout: 1 });
  }
  readlink(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array([0x74]));
  }
  open(): Promise<OpenReply> {
    return Promise.resolve({ fh: 1 });
  }
  read(_c: unknown, _n: number, _fh: number, _off: number, size: number): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(Math.min(size, 3)));
  }
  opendir(): Promise<OpenReply> {
    return Promise.resolve({ fh: 2 });
  }
  async *readdir(_c: unknown, _n: number, _fh: number, offset: number) {
    const names = ["a", "bb", "ccc"];
    for (let i = offset; i < names.length; i++) {
      yield { ino: 10 + i, offset: i + 1, type: 8, name: new TextEncoder().encode(names[i]) };
    }
  }
  statfs(): Promise<StatfsOut> {
    return Promise.resolve({
      blocks: 1,
      bfree: 0,
      bavail: 0,
      files: 1,
      ffree: 0,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    });
  }
  getxattr(): Promise<Uint8Array> {
    return Promise.reject(new FuseError(61));
  }
  listxattr(): Promise<Uint8Array[]> {
    return Promise.resolve([]);
  }
  async destroy(): Promise<void> {
    await new Promise((r) => setTimeout(r, 50));
    this.destroyed = true;
  }
}

interface Reply {
  error: number;
  unique: bigint;
  body: Uint8Array;
}

/** The kernel's side of the socketpair. */
class FakeKernel {
  readonly fd: number;
  readonly sessionFd: number;
  readonly #buf = new Uint8Array(1 << 16);

  constructor() {
    const c = libc();
    const sv = new Int32Array(2);
    assert.equal(c.socketpair(AF_UNIX, SOCK_SEQPACKET, 0, new Uint8Array(sv.buffer)), 0);
    [this.fd, this.sessionFd] = [sv[0], sv[1]];
    for (const fd of sv) c.fcntl(fd, F_SETFL, BigInt(c.fcntl(fd, F_GETFL, 0n) | O.NONBLOCK));
  }

  send(opcode: number, unique: bigint, nodeid: number, body: Uint8Array = new Uint8Array(0)) {
    const msg = new Uint8Array(40 + body.length);
    const v = new DataView(msg.buffer);
    v.setUint32(0, msg.length, true);
    v.setUint32(4, opcode, true);
    v.setBigUint64(8, unique, true);
    v.setBigUint64(16, BigInt(nodeid), true);
    v.setUint32(32, 4242, true);
    msg.set(body, 40);
    this.sendRaw(msg);
  }

  sendRaw(msg: Uint8Array): void {
    assert.equal(Number(libc().write(this.fd, msg, BigInt(msg.length))), msg.length);
  }

  /** The next reply, or undefined when none comes within `ms`. */
  async next(ms = 2000): Promise<Reply | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const n = Number(libc().read(this.fd, this.#buf, BigInt(this.#buf.length)));
      if (n >= 16) {
        const v = new DataView(this.#buf.buffer);
        assert.equal(v.getUint32(0, true), n, "out header length = message length");
        return {
          error: v.getInt32(4, true),
          unique: v.getBigUint64(8, true),
          body: this.#buf.slice(16, n),
        };
      }
      assert.ok(n < 0 && errno() === EAGAIN, `read from the session: ${n}`);
      if (Date.now() > end) return undefined;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Exactly one reply to `unique`, then no other within a short while. */
  async only(unique: bigint): Promise<Reply> {
    const r = await this.next();
    assert.ok(r, `no reply to request ${unique}`);
    assert.equal(r.unique, unique);
    assert.equal(await this.next(50), undefined, "one reply per request");
    return r;
  }

  close(): void {
    libc().close(this.fd);
  }
}

function initBody(major: number, minor: number, flags: number): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  v.setUint32(0, major, true);
  v.setUint32(4, minor, true);
  v.setUint32(8, 128 * 1024, true);
  v.setUint32(12, flags >>> 0, true);
  return b;
}

function nameBody(name: string): Uint8Array {
  return new TextEncoder().encode(name + "\0");
}

/** Kernel 7.45 flags: everything ext4ts might want plus things it must not take. */
const KERNEL_FLAGS = InitFlag.ASYNC_READ | InitFlag.POSIX_LOCKS | InitFlag.ATOMIC_O_TRUNC |
  InitFlag.BIG_WRITES | InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO |
  InitFlag.ASYNC_DIO | InitFlag.WRITEBACK_CACHE | InitFlag.PARALLEL_DIROPS |
  InitFlag.POSIX_ACL | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS | InitFlag.INIT_EXT;

async function withSession(
  fn: (k: FakeKernel, s: FuseSession, ops: FakeOps, logs: string[]) => Promise<void>,
  options: { init?: boolean; session?: SessionOptions } = {},
): Promise<SessionEnd> {
  const k = new FakeKernel();
  const ops = new FakeOps();
  const logs: string[] = [];
  const s = new FuseSession(k.sessionFd, ops, {
    readOnly: true,
    log: (l) => logs.push(l),
    ...options.session,
  });
  const ended = s.run();
  try {
    if (options.init !== false) {
      k.send(Opcode.INIT, 1n, 0, initBody(7, 45, KERNEL_FLAGS));
      assert.equal((await k.only(1n)).error, 0);
    }
    await fn(k, s, ops, logs);
  } finally {
    ops.releaseSlow();
    k.close(); // the session reads end-of-file: "disconnected"
  }
  const end = await ended;
  libc().close(k.sessionFd);
  return end;
}

Deno.test("fuse wire: INIT negotiates 7.38, 1 MiB I/O, async reads, readdirplus, parallel dirops", async () => {
  await withSession(async (k, s) => {
    k.send(Opcode.INIT, 1n, 0, initBody(7, 45, KERNEL_FLAGS));
    const r = await k.only(1n);
    assert.equal(r.error, 0);
    assert.equal(r.body.length, 64, "fuse_init_out of a 7.23+ protocol");
    const v = new DataView(r.body.buffer);
    assert.equal(v.getUint32(0, true), 7);
    assert.equal(v.getUint32(4, true), 38);
    const flags = v.getUint32(12, true);
    for (
      const f of ["ASYNC_READ", "DO_READDIRPLUS", "PARALLEL_DIROPS", "MAX_PAGES", "ASYNC_DIO"]
    ) {
      assert.ok(flags & InitFlag[f as keyof typeof InitFlag], `${f} negotiated`);
    }
    for (const f of ["POSIX_LOCKS", "WRITEBACK_CACHE", "BIG_WRITES", "READDIRPLUS_AUTO"]) {
      assert.equal(flags & InitFlag[f as keyof typeof InitFlag], 0, `${f} not taken read-only`);
    }
    assert.equal(v.getUint32(20, true), 1 << 20, "max_write 1 MiB");
    assert.equal(v.getUint16(28, true), 256, "max_pages 256 (1 MiB)");
    const info = await s.initialized;
    assert.deepEqual([info.minor, info.maxWrite, info.maxPages], [38, 1 << 20, 256]);
  }, { init: false });

  // A kernel without FUSE_MAX_PAGES: 32 pages, so 128 KiB.
  await withSession(async (k) => {
    k.send(Opcode.INIT, 1n, 0, initBody(7, 27, InitFlag.ASYNC_READ));
    const v = new DataView((await k.only(1n)).body.buffer);
    assert.equal(v.getUint32(4, true), 27, "the kernel's lower minor");
    assert.equal(v.getUint32(12, true), InitFlag.ASYNC_READ);
    assert.equal(v.getUint32(20, true), 128 * 1024);
  }, { init: false });

  // Too old a kernel is refused; a newer major gets our major back to retry with.
  const old = await withSession(async (k, s) => {
    k.send(Opcode.INIT, 1n, 0, initBody(7, 12, 0));
    assert.equal((await k.only(1n)).error, -71, "EPROTO");
    await assert.rejects(s.initialized, /too old/);
  }, { init: false });
  assert.equal(old, "disconnected");
  await withSession(async (k) => {
    k.send(Opcode.INIT, 1n, 0, initBody(8, 0, 0));
    const r = await k.only(1n);
    assert.equal(r.error, 0);
    assert.equal(r.body.length, 8);
    assert.equal(new DataView(r.body.buffer).getUint32(0, true), 7);
  }, { init: false });
});

Deno.test("fuse wire: ENOSYS for unserved opcodes, EROFS for writes, one reply each", async () => {
  await withSession(async (k, _s, _ops, logs) => {
    let u = 100n;
    for (
      const op of [
        Opcode.BMAP,
        Opcode.IOCTL,
        Opcode.POLL,
        Opcode.GETLK,
        Opcode.SETLK,
        Opcode.SETLKW,
        Opcode.STATX,
        Opcode.SETUPMAPPING,
        4000,
      ]
    ) {
      k.send(op, ++u, 1, new Uint8Array(64));
      assert.equal((await k.only(u)).error, -38, `opcode ${op}: ENOSYS`);
    }
    assert.ok(logs.some((l) => l.includes("BMAP not implemented")), "logged once per opcode");
    // syncfs (sync(1)) has nothing to make durable on a read-only session: done, not ENOSYS
    // (a read-write one commits its running transaction: tests/fuse_rw_test.ts).
    k.send(Opcode.SYNCFS, ++u, 1, new Uint8Array(8));
    assert.equal((await k.only(u)).error, 0, "SYNCFS answered");
    for (const op of [Opcode.MKDIR, Opcode.WRITE, Opcode.SETATTR, Opcode.CREATE, Opcode.UNLINK]) {
      k.send(op, ++u, 1, new Uint8Array(64));
      assert.equal((await k.only(u)).error, -30, `opcode ${op}: EROFS on a read-only session`);
    }
    // Served opcodes on the same connection still work.
    k.send(Opcode.GETATTR, ++u, 1, new Uint8Array(16));
    const g = await k.only(u);
    assert.equal(g.error, 0);
    assert.equal(g.body.length, 104);
  });
});

Deno.test("fuse wire: requests in flight complete out of order, each answered exactly once", async () => {
  await withSession(async (k, s, ops) => {
    for (let i = 0; i < 5; i++) k.send(Opcode.LOOKUP, BigInt(10 + i), 1, nameBody("slow"));
    k.send(Opcode.GETATTR, 20n, 1, new Uint8Array(16));
    k.send(Opcode.LOOKUP, 21n, 1, nameBody("gone"));
    const first = await k.next();
    const second = await k.next();
    assert.deepEqual([first?.unique, second?.unique], [20n, 21n], "fast requests overtake");
    assert.equal(second?.error, -2);
    assert.equal(s.inFlight, 5);
    ops.releaseSlow();
    const rest = new Set<bigint>();
    for (let i = 0; i < 5; i++) {
      const r = await k.next();
      assert.ok(r);
      assert.equal(r.error, 0);
      rest.add(r.unique);
    }
    assert.deepEqual([...rest].sort(), [10n, 11n, 12n, 13n, 14n]);
    assert.equal(await k.next(100), undefined, "no duplicate replies");
    assert.equal(s.inFlight, 0);
  });
});

Deno.test("fuse wire: onIdle runs once per idle spell, never while a request is in flight", async () => {
  let idles = 0;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await withSession(async (k, s, ops) => {
    await sleep(400);
    assert.equal(idles, 1, "idle after INIT");
    await sleep(300);
    assert.equal(idles, 1, "once per idle spell");
    k.send(Opcode.LOOKUP, 10n, 1, nameBody("slow"));
    await sleep(400);
    assert.equal(s.inFlight, 1);
    assert.equal(idles, 1, "not while a request is in flight");
    ops.releaseSlow();
    assert.equal((await k.only(10n)).error, 0);
    await sleep(400);
    assert.equal(idles, 2, "idle again after the request");
  }, { session: { idleAfterMs: 100, onIdle: () => idles++ } });
});

Deno.test("fuse wire: an onIdle that throws is logged and the session goes on", async () => {
  await withSession(async (k, _s, _ops, logs) => {
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(logs.some((l) => l.includes("idle step failed: deliberate")), logs.join("\n"));
    k.send(Opcode.GETATTR, 5n, 1, new Uint8Array(16));
    assert.equal((await k.only(5n)).error, 0, "still answering");
  }, {
    session: {
      idleAfterMs: 100,
      onIdle: () => {
        throw new Error("deliberate failure in onIdle");
      },
    },
  });
});

Deno.test("fuse wire: a throwing handler answers EIO, is logged, and the session goes on", async () => {
  await withSession(async (k, _s, _ops, logs) => {
    k.send(Opcode.LOOKUP, 30n, 1, nameBody("boom"));
    assert.equal((await k.only(30n)).error, -5);
    assert.ok(logs.some((l) => /LOOKUP on node 1 failed: .*deliberate failure/s.test(l)));
    // Malformed: a READ too short for fuse_read_in, a name without its NUL.
    k.send(Opcode.READ, 31n, 5, new Uint8Array(8));
    assert.equal((await k.only(31n)).error, -22, "EINVAL");
    k.send(Opcode.LOOKUP, 32n, 1, new TextEncoder().encode("noterminator"));
    assert.equal((await k.only(32n)).error, -22);
    // A message shorter than a header cannot be answered (no unique): dropped, logged.
    k.sendRaw(new Uint8Array(12));
    assert.equal(await k.next(100), undefined);
    assert.ok(logs.some((l) => l.includes("malformed")));
    k.send(Opcode.LOOKUP, 33n, 1, nameBody("ok"));
    assert.equal((await k.only(33n)).error, 0);
  });
});

Deno.test("fuse wire: FORGET, BATCH_FORGET and INTERRUPT get no reply; INTERRUPT answers EINTR", async () => {
  await withSession(async (k, s, ops) => {
    const f = new Uint8Array(8);
    new DataView(f.buffer).setBigUint64(0, 3n, true);
    k.send(Opcode.FORGET, 40n, 12, f);
    const b = new Uint8Array(8 + 32);
    const bv = new DataView(b.buffer);
    bv.setUint32(0, 2, true);
    bv.setBigUint64(8, 13n, true);
    bv.setBigUint64(16, 1n, true);
    bv.setBigUint64(24, 14n, true);
    bv.setBigUint64(32, 7n, true);
    k.send(Opcode.BATCH_FORGET, 41n, 0, b);
    assert.equal(await k.next(100), undefined, "no reply to forgets");
    assert.deepEqual(ops.forgets, [[12, 3], [13, 1], [14, 7]]);

    k.send(Opcode.LOOKUP, 42n, 1, nameBody("slow"));
    await new Promise((r) => setTimeout(r, 20));
    const i = new Uint8Array(8);
    new DataView(i.buffer).setBigUint64(0, 42n, true);
    k.send(Opcode.INTERRUPT, 43n, 0, i);
    const r = await k.next();
    assert.deepEqual([r?.unique, r?.error], [42n, -4], "the target answered EINTR at once");
    ops.releaseSlow();
    assert.equal(await k.next(100), undefined, "the late result is dropped");
    assert.equal(ops.slowAborted, 1, "the handler saw its AbortSignal");
    // An INTERRUPT for a request already answered is ignored.
    k.send(Opcode.INTERRUPT, 44n, 0, i);
    assert.equal(await k.next(100), undefined);
    assert.equal(s.inFlight, 0);
  });
});

Deno.test("fuse wire: DESTROY waits for requests in flight, runs destroy, replies, ends the loop", async () => {
  const k = new FakeKernel();
  const ops = new FakeOps();
  let hook = false;
  const s = new FuseSession(k.sessionFd, ops, {
    readOnly: true,
    log: () => {},
    beforeDestroyReply: () => {
      assert.ok(ops.destroyed, "filesystem destroyed before the cleanup hook");
      hook = true;
    },
  });
  const ended = s.run();
  try {
    k.send(Opcode.INIT, 1n, 0, initBody(7, 45, KERNEL_FLAGS));
    await k.only(1n);
    k.send(Opcode.LOOKUP, 50n, 1, nameBody("slow"));
    k.send(Opcode.DESTROY, 51n, 0);
    assert.equal(await k.next(200), undefined, "DESTROY is not answered while a request runs");
    assert.equal(ops.destroyed, false);
    ops.releaseSlow();
    const a = await k.next();
    const b = await k.next();
    assert.deepEqual([a?.unique, b?.unique], [50n, 51n], "the request first, then DESTROY");
    assert.equal(b?.error, 0);
    assert.ok(ops.destroyed && hook);
    assert.equal(await ended, "destroyed");
  } finally {
    ops.releaseSlow();
    k.close();
    libc().close(k.sessionFd);
  }
});

Deno.test("fuse wire: READDIR packs dirents to the kernel's size and resumes at the cookie", async () => {
  await withSession(async (k) => {
    const readIn = (offset: number, size: number) => {
      const b = new Uint8Array(40);
      const v = new DataView(b.buffer);
      v.setBigUint64(8, BigInt(offset), true);
      v.setUint32(16, size, true);
      return b;
    };
    const names = (body: Uint8Array) => {
      const v = new DataView(body.buffer, body.byteOffset);
      const out: string[] = [];
      for (let o = 0; o < body.length;) {
        const len = v.getUint32(o + 16, true);
        out.push(
          `${v.getBigUint64(o, true)}:${v.getBigUint64(o + 8, true)}:` +
            new TextDecoder().decode(body.subarray(o + 24, o + 24 + len)),
        );
        o += (24 + len + 7) & ~7;
      }
      return out;
    };
    k.send(Opcode.OPENDIR, 60n, 1, new Uint8Array(8));
    assert.equal((await k.only(60n)).error, 0);
    k.send(Opcode.READDIR, 61n, 1, readIn(0, 4096));
    assert.deepEqual(names((await k.only(61n)).body), ["10:1:a", "11:2:bb", "12:3:ccc"]);
    k.send(Opcode.READDIR, 62n, 1, readIn(0, 64)); // room for two 32-byte records
    assert.deepEqual(names((await k.only(62n)).body), ["10:1:a", "11:2:bb"]);
    k.send(Opcode.READDIR, 63n, 1, readIn(2, 4096));
    assert.deepEqual(names((await k.only(63n)).body), ["12:3:ccc"]);
    k.send(Opcode.READDIR, 64n, 1, readIn(3, 4096));
    assert.equal((await k.only(64n)).body.length, 0, "end of directory: empty reply");
    // READDIRPLUS without a readdirplus operation: readdir + lookup, entries of 128 + dirent.
    k.send(Opcode.READDIRPLUS, 65n, 1, readIn(0, 4096));
    assert.equal((await k.only(65n)).body.length, 3 * (128 + 32));
    k.send(Opcode.RELEASEDIR, 66n, 1, new Uint8Array(24));
    assert.equal((await k.only(66n)).error, 0);
  });
});

/** A writer that records its calls; `unlink` waits until released. */
class RecordingWriter implements FuseWriteOperations {
  calls: unknown[][] = [];
  #release: (() => void)[] = [];
  releaseSlow(): void {
    for (const r of this.#release.splice(0)) r();
  }
  #entry(): EntryOut {
    return { nodeid: 9, generation: 3, entryTimeout: 1, attrTimeout: 1, attr };
  }
  setattr(_c: unknown, nodeid: number, change: SetattrRequest): Promise<AttrReply> {
    this.calls.push(["setattr", nodeid, change]);
    return Promise.resolve({ attr, timeout: 1 });
  }
  mknod(_c: unknown, parent: number, name: Uint8Array, r: CreateRequest): Promise<EntryOut> {
    this.calls.push(["mknod", parent, new TextDecoder().decode(name), r.mode, r.umask, r.rdev]);
    return Promise.resolve(this.#entry());
  }
  mkdir(_c: unknown, parent: number, name: Uint8Array, r: CreateRequest): Promise<EntryOut> {
    this.calls.push(["mkdir", parent, new TextDecoder().decode(name), r.mode, r.umask]);
    return Promise.resolve(this.#entry());
  }
  symlink(_c: unknown, parent: number, name: Uint8Array, target: Uint8Array) {
    const d = new TextDecoder();
    this.calls.push(["symlink", parent, d.decode(name), d.decode(target)]);
    return Promise.resolve(this.#entry());
  }
  link(_c: unknown, nodeid: number, parent: number, name: Uint8Array): Promise<EntryOut> {
    this.calls.push(["link", nodeid, parent, new TextDecoder().decode(name)]);
    return Promise.resolve(this.#entry());
  }
  async unlink(_c: unknown, parent: number, name: Uint8Array): Promise<void> {
    await new Promise<void>((r) => this.#release.push(r));
    this.calls.push(["unlink", parent, new TextDecoder().decode(name)]);
  }
  rmdir(): Promise<void> {
    return Promise.resolve();
  }
  rename(_c: unknown, p: number, n: Uint8Array, np: number, nn: Uint8Array, flags: number) {
    const d = new TextDecoder();
    this.calls.push(["rename", p, d.decode(n), np, d.decode(nn), flags]);
    return Promise.resolve();
  }
  create(_c: unknown, parent: number, name: Uint8Array, r: CreateRequest, flags: number) {
    this.calls.push(["create", parent, new TextDecoder().decode(name), r.mode, r.umask, flags]);
    return Promise.resolve({ entry: this.#entry(), open: { fh: 7 } });
  }
  copyFileRange(_c: unknown, n: number, off: number, out: number, offOut: number, len: number) {
    this.calls.push(["copyFileRange", n, off, out, offOut, len]);
    return Promise.resolve(4096);
  }
  ioctl(_c: unknown, nodeid: number, cmd: number, input: Uint8Array): Promise<Uint8Array> {
    this.calls.push(["ioctl", nodeid, cmd, [...input]]);
    return Promise.resolve(new Uint8Array([0x10, 0, 8, 0, 0xff, 0xff]));
  }
  tmpfile(_c: unknown, parent: number, r: CreateRequest) {
    this.calls.push(["tmpfile", parent, r.mode, r.umask]);
    return Promise.resolve({ entry: this.#entry(), open: { fh: 8 } });
  }
  write(_c: unknown, nodeid: number, fh: number, offset: number, data: Uint8Array) {
    this.calls.push(["write", nodeid, fh, offset, new TextDecoder().decode(data)]);
    return Promise.resolve(data.length);
  }
  setxattr(_c: unknown, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number) {
    const d = new TextDecoder();
    this.calls.push(["setxattr", nodeid, d.decode(name), d.decode(value), flags]);
    return Promise.resolve();
  }
  removexattr(_c: unknown, nodeid: number, name: Uint8Array): Promise<void> {
    this.calls.push(["removexattr", nodeid, new TextDecoder().decode(name)]);
    return Promise.resolve();
  }
  fsync(_c: unknown, nodeid: number, datasync: boolean): Promise<void> {
    this.calls.push(["fsync", nodeid, datasync]);
    return Promise.resolve();
  }
  fallocate(_c: unknown, nodeid: number, fh: number, r: FallocateRequest): Promise<void> {
    this.calls.push(["fallocate", nodeid, fh, r]);
    return Promise.resolve();
  }
}

function bytes(parts: (number | bigint | string)[][]): Uint8Array {
  const out: number[] = [];
  for (const [kind, value] of parts) {
    const b = new Uint8Array(kind === "u64" ? 8 : kind === "u32" ? 4 : 0);
    const v = new DataView(b.buffer);
    if (kind === "u64") v.setBigUint64(0, BigInt(value), true);
    else if (kind === "u32") v.setUint32(0, Number(value), true);
    out.push(...(kind === "str" ? new TextEncoder().encode(`${value}\0`) : b));
  }
  return new Uint8Array(out);
}

Deno.test("fuse wire: the write opcodes decoded and answered; an INTERRUPT never cuts a change short", async () => {
  const k = new FakeKernel();
  const ops = new FakeOps();
  const writer = new RecordingWriter();
  (ops as FuseOperations).writer = writer;
  const s = new FuseSession(k.sessionFd, ops, { readOnly: false, log: () => {} });
  const ended = s.run();
  try {
    k.send(Opcode.INIT, 1n, 0, initBody(7, 45, KERNEL_FLAGS | InitFlag.DONT_MASK));
    const init = await k.only(1n);
    const flags = new DataView(init.body.buffer).getUint32(12, true);
    assert.ok(
      flags & InitFlag.BIG_WRITES && flags & InitFlag.DONT_MASK,
      "rw: big writes, umask ours",
    );
    assert.equal(flags & (InitFlag.WRITEBACK_CACHE | InitFlag.ATOMIC_O_TRUNC), 0);

    const write = bytes([["u64", 7], ["u64", 4096], ["u32", 5], ["u32", 0], ["u64", 0], [
      "u32",
      0,
    ], ["u32", 0]]);
    k.send(Opcode.WRITE, 2n, 12, new Uint8Array([...write, ...new TextEncoder().encode("hello")]));
    const w = await k.only(2n);
    assert.equal(new DataView(w.body.buffer).getUint32(0, true), 5, "fuse_write_out.size");
    // SETATTR: mode (type bits dropped), size, atime NOW, mtime given.
    const sa = new Uint8Array(88);
    const sv = new DataView(sa.buffer);
    sv.setUint32(0, 1 | 8 | 16 | 32 | 128, true);
    sv.setBigUint64(16, 1000n, true);
    sv.setBigInt64(40, -5n, true);
    sv.setUint32(60, 7, true);
    sv.setUint32(68, 0o104755, true);
    k.send(Opcode.SETATTR, 3n, 12, sa);
    assert.equal((await k.only(3n)).body.length, 104, "fuse_attr_out");
    k.send(
      Opcode.MKDIR,
      4n,
      1,
      new Uint8Array([...bytes([["u32", 0o755], ["u32", 0o22]]), ...nameBody("d")]),
    );
    assert.equal((await k.only(4n)).body.length, 128, "fuse_entry_out");
    k.send(
      Opcode.MKNOD,
      5n,
      1,
      bytes([["u32", 0o20644], ["u32", 0x801], ["u32", 0o22], ["u32", 0], ["str", "c"]]),
    );
    await k.only(5n);
    k.send(Opcode.SYMLINK, 6n, 1, bytes([["str", "l"], ["str", "target"]]));
    await k.only(6n);
    k.send(Opcode.LINK, 7n, 1, bytes([["u64", 12], ["str", "h"]]));
    await k.only(7n);
    k.send(
      Opcode.CREATE,
      8n,
      1,
      bytes([["u32", 0o101], ["u32", 0o100644], ["u32", 0o22], ["u32", 0], ["str", "f"]]),
    );
    assert.equal((await k.only(8n)).body.length, 128 + 16, "fuse_entry_out + fuse_open_out");
    k.send(
      Opcode.RENAME2,
      9n,
      1,
      bytes([["u64", 1], ["u32", 1], ["u32", 0], ["str", "a"], ["str", "b"]]),
    );
    await k.only(9n);
    k.send(
      Opcode.RENAME2,
      10n,
      1,
      bytes([["u64", 1], ["u32", 4], ["u32", 0], ["str", "a"], ["str", "b"]]),
    );
    assert.equal((await k.only(10n)).error, -22, "RENAME_WHITEOUT: EINVAL");
    k.send(
      Opcode.SETXATTR,
      11n,
      12,
      bytes([["u32", 1], ["u32", 1], ["str", "user.a"], ["str", "v"]]).subarray(0, 16),
    );
    await k.only(11n);
    k.send(Opcode.REMOVEXATTR, 12n, 12, nameBody("user.a"));
    await k.only(12n);
    k.send(Opcode.FSYNC, 13n, 12, bytes([["u64", 7], ["u32", 1], ["u32", 0]]));
    await k.only(13n);
    const fa = (mode: number) =>
      bytes([["u64", 7], ["u64", 0], ["u64", 8192], ["u32", mode], ["u32", 0]]);
    k.send(Opcode.FALLOCATE, 14n, 12, fa(3));
    await k.only(14n);
    k.send(Opcode.FALLOCATE, 15n, 12, fa(2));
    assert.equal((await k.only(15n)).error, -95, "PUNCH_HOLE without KEEP_SIZE: EOPNOTSUPP");
    k.send(Opcode.FALLOCATE, 16n, 12, fa(0x08));
    assert.equal((await k.only(16n)).error, -95, "COLLAPSE_RANGE: EOPNOTSUPP");
    k.send(
      Opcode.TMPFILE,
      17n,
      1,
      bytes([["u32", 2], ["u32", 0o100600], ["u32", 0o22], ["u32", 0], ["str", "/"]]),
    );
    assert.equal((await k.only(17n)).body.length, 128 + 16, "fuse_entry_out + fuse_open_out");
    // IOCTL (the kernel's fileattr calls): out_size bounds the data after fuse_ioctl_out.
    const ioctl = (cmd: number, input: number[], outSize: number) =>
      bytes([["u64", 7], ["u32", 0], ["u32", cmd], ["u64", 0], ["u32", input.length], [
        "u32",
        outSize,
      ]]);
    k.send(Opcode.IOCTL, 21n, 12, ioctl(0x80086601, [], 4));
    assert.deepEqual([...(await k.only(21n)).body], [...new Uint8Array(16), 0x10, 0, 8, 0]);
    k.send(
      Opcode.IOCTL,
      22n,
      12,
      new Uint8Array([...ioctl(0x40086602, [0, 0, 8, 0], 0), 0, 0, 8, 0]),
    );
    assert.equal((await k.only(22n)).body.length, 16);
    const copy = bytes([["u64", 7], ["u64", 10], ["u64", 13], ["u64", 8], ["u64", 20], [
      "u64",
      1 << 30,
    ], ["u64", 0]]);
    k.send(Opcode.COPY_FILE_RANGE, 20n, 12, copy);
    assert.equal(new DataView((await k.only(20n)).body.buffer).getUint32(0, true), 4096);
    k.send(Opcode.BMAP, 23n, 12, new Uint8Array(16));
    assert.equal((await k.only(23n)).error, -38, "not implemented: ENOSYS");

    // An INTERRUPT of a change under way is not answered EINTR: the change finishes and
    // its real result is the one reply.
    k.send(Opcode.UNLINK, 18n, 1, nameBody("victim"));
    await new Promise((r) => setTimeout(r, 20));
    const i = new Uint8Array(8);
    new DataView(i.buffer).setBigUint64(0, 18n, true);
    k.send(Opcode.INTERRUPT, 19n, 0, i);
    assert.equal(await k.next(100), undefined, "no EINTR for a change");
    writer.releaseSlow();
    assert.equal((await k.only(18n)).error, 0, "answered with its result");

    assert.deepEqual(writer.calls, [
      ["write", 12, 7, 4096, "hello"],
      ["setattr", 12, {
        mode: 0o4755,
        uid: undefined,
        gid: undefined,
        size: 1000,
        atime: "now",
        mtime: { sec: -5, nsec: 7 },
        fh: undefined,
        dropSetId: false,
      }],
      ["mkdir", 1, "d", 0o755, 0o22],
      ["mknod", 1, "c", 0o20644, 0o22, 0x801],
      ["symlink", 1, "l", "target"],
      ["link", 12, 1, "h"],
      ["create", 1, "f", 0o100644, 0o22, 0o101],
      ["rename", 1, "a", 1, "b", 1],
      ["setxattr", 12, "user.a", "v", 1],
      ["removexattr", 12, "user.a"],
      ["fsync", 12, true],
      ["fallocate", 12, 7, { offset: 0, length: 8192, mode: "punchHole", keepSize: true }],
      ["tmpfile", 1, 0o100600, 0o22],
      ["ioctl", 12, 0x80086601, []],
      ["ioctl", 12, 0x40086602, [0, 0, 8, 0]],
      ["copyFileRange", 12, 10, 13, 20, 1 << 30],
      ["unlink", 1, "victim"],
    ]);
  } finally {
    writer.releaseSlow();
    k.close();
  }
  await ended;
  libc().close(k.sessionFd);
});

/** The next `n` replies (request and error), in request order; no more within 50 ms. */
async function replies(k: FakeKernel, n: number): Promise<[bigint, number][]> {
  const got: [bigint, number][] = [];
  for (let i = 0; i < n; i++) {
    const r = await k.next();
    assert.ok(r, `${i} of ${n} replies came`);
    got.push([r.unique, r.error]);
  }
  assert.equal(await k.next(50), undefined, "one reply per request");
  return got.sort((a, b) => Number(a[0] - b[0]));
}

/** A writer whose WRITEs wait until {@link GatedWriter.open}, then record the data they got. */
class GatedWriter extends RecordingWriter {
  seen: string[] = [];
  #gates: (() => void)[] = [];
  get waiting(): number {
    return this.#gates.length;
  }
  open(): void {
    for (const g of this.#gates.splice(0)) g();
  }
  /** Records the bytes a WRITE got and whether they lie in a lent read buffer (≥ 1 MiB). */
  override async write(_c: unknown, _n: number, _fh: number, offset: number, data: Uint8Array) {
    await new Promise<void>((r) => this.#gates.push(r));
    const same = data.every((b) => b === data[0]);
    const where = data.buffer.byteLength >= 1 << 20 ? "lent" : "copied";
    this.seen.push(`${offset}: ${same ? `${data.length} × ${data[0]}` : "mixed bytes"}, ${where}`);
    if (data[0] === 0xee) throw new FuseError(5); // a WRITE that fails (EIO)
    return data.length;
  }
}

Deno.test("fuse wire: a long WRITE's data stays intact while its handler waits and later requests are read", async () => {
  const writer = new GatedWriter();
  await withSession(async (k, _s, ops) => {
    (ops as FuseOperations).writer = writer;
    const size = 40 * 1024; // past the length at which the read buffer is lent, not copied
    const write = (unique: bigint, fill: number) => {
      const head = bytes([
        ["u64", 7],
        ["u64", Number(unique) * size],
        ["u32", size],
        ["u32", 0],
        [
          "u64",
          0,
        ],
        ["u32", 0],
        ["u32", 0],
      ]);
      const msg = new Uint8Array(head.length + size).fill(fill);
      msg.set(head);
      k.send(Opcode.WRITE, unique, 12, msg);
    };
    // Each WRITE sent once the one before reached its handler (however loaded the machine).
    const handled = async (n: number) => {
      const end = Date.now() + 10_000; // a failure, never a hang
      while (writer.waiting < n) {
        assert.ok(Date.now() < end, `${n} WRITEs reached their handler`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // Four at once: two in lent buffers, two copied; a GETATTR read in between.
    for (const [u, fill, n] of [[2n, 0xa1, 1], [3n, 0xa2, 2], [4n, 0xa3, 3]] as const) {
      write(u, fill);
      await handled(n);
    }
    k.send(Opcode.GETATTR, 5n, 12, new Uint8Array(16));
    assert.equal((await k.only(5n)).error, 0, "answered while the WRITEs wait");
    write(6n, 0xa4);
    await handled(4);
    writer.open();
    assert.deepEqual(await replies(k, 4), [[2n, 0], [3n, 0], [4n, 0], [6n, 0]]);
    // Again, in buffers given back.
    write(7n, 0xb1);
    await handled(1);
    write(8n, 0xb2);
    await handled(2);
    writer.open();
    assert.deepEqual(await replies(k, 2), [[7n, 0], [8n, 0]]);
    // Two that fail give their buffers back too: the next one is lent again.
    write(9n, 0xee);
    await handled(1);
    write(10n, 0xee);
    await handled(2);
    writer.open();
    assert.deepEqual(await replies(k, 2), [[9n, -5], [10n, -5]]);
    write(11n, 0xc1);
    await handled(1);
    writer.open();
    assert.deepEqual(await replies(k, 1), [[11n, 0]]);
  }, { session: { readOnly: false } });
  const got = (u: number, fill: number, where: string) => `${u * 40960}: 40960 × ${fill}, ${where}`;
  assert.deepEqual(writer.seen, [
    got(2, 0xa1, "lent"),
    got(3, 0xa2, "lent"),
    got(4, 0xa3, "copied"), // two lent at most
    got(6, 0xa4, "copied"),
    got(7, 0xb1, "lent"),
    got(8, 0xb2, "lent"),
    got(9, 0xee, "lent"),
    got(10, 0xee, "lent"),
    got(11, 0xc1, "lent"),
  ]);
});
