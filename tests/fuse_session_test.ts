/**
 * The FUSE session in this process, serving the in-memory filesystem on a fuseblk mount of
 * a loop device, read through the mount point with ordinary tools and Deno's async APIs.
 * (Only async APIs and child processes here: a synchronous call on the mount from this
 * thread would wait for the answer this very thread must give.)
 */

import assert from "node:assert/strict";
import { FuseSession, type SessionEnd } from "../ffi/fuse/session.ts";
import { closeFd, mountFuse, openFuseDevice, unmountAsync } from "../ffi/fuse/mount.ts";
import { abortConnection, connectionOf, findMount } from "../ffi/fuse/mountinfo.ts";
import { bigContent, MemFs, pattern } from "./fuse_memfs.ts";
import { InitFlag } from "../ffi/fuse/protocol.ts";
import { run, runOk, testWith } from "./helpers.ts";
import {
  detachLoop,
  exclusiveOpenWorks,
  forceCleanup,
  FUSE_NEEDS,
  losetup,
} from "./fuse_test_util.ts";

interface Served {
  mnt: string;
  dev: string;
  fs: MemFs;
  session: FuseSession;
  ended: Promise<SessionEnd>;
  logs: string[];
  fd: number;
  cleanup(): Promise<void>;
}

async function serveMemFs(dir: string, fs = new MemFs()): Promise<Served> {
  const img = `${dir}/dev.img`;
  await Deno.writeFile(img, new Uint8Array(0));
  await Deno.truncate(img, 8 << 20);
  const dev = await losetup(img);
  const mnt = await Deno.makeTempDir({ prefix: "ext4ts-fuse-mnt-" });
  const fd = openFuseDevice();
  const logs: string[] = [];
  mountFuse({ fd, source: dev, target: mnt, blockDevice: true, subtype: "ext4ts" });
  const session = new FuseSession(fd, fs, {
    readOnly: true,
    log: (l) => logs.push(l),
  });
  const ended = session.run();
  await session.initialized;
  // A hung test must not leave this process unkillable (it would be waiting on itself).
  const m = findMount(mnt)!;
  const watchdog = setTimeout(() => {
    console.error(`watchdog: aborting FUSE connection of ${mnt}`);
    abortConnection(connectionOf(m)!);
  }, 120_000);
  return {
    mnt,
    dev,
    fs,
    session,
    ended,
    logs,
    fd,
    async cleanup() {
      clearTimeout(watchdog);
      if (findMount(mnt)) {
        const err = await unmountAsync(mnt);
        if (err !== 0) await forceCleanup(mnt);
      }
      session.stop();
      await ended.catch(() => {});
      closeFd(fd);
      await forceCleanup(mnt);
      detachLoop(dev, img);
    },
  };
}

async function sh(script: string): Promise<string> {
  return await runOk("sh", ["-c", script]);
}

testWith("fuse session: the in-memory filesystem through a fuseblk mount", [
  ...FUSE_NEEDS,
  "getfattr",
  "python3",
], async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-" });
  const s = await serveMemFs(dir);
  try {
    const m = findMount(s.mnt)!;
    assert.equal(m.fsType, "fuseblk.ext4ts");
    assert.equal(m.source, s.dev);
    assert.match(m.options, /^ro,/);

    await t.step("INIT with this kernel: 1 MiB requests, async reads, readdirplus", async () => {
      const info = await s.session.initialized;
      assert.equal(info.major, 7);
      assert.ok(info.minor >= 19 && info.minor <= 38, `minor ${info.minor}`);
      assert.equal(info.maxWrite, 1 << 20);
      assert.equal(info.maxPages, 256);
      for (const f of ["ASYNC_READ", "DO_READDIRPLUS", "PARALLEL_DIROPS", "MAX_PAGES"] as const) {
        assert.ok(info.flags & InitFlag[f], `${f} negotiated with the kernel`);
      }
    });

    await t.step("stat and ls", async () => {
      const st = await Deno.stat(`${s.mnt}/hello.txt`);
      assert.equal(st.size, 13);
      assert.equal(st.mode! & 0o777, 0o644);
      assert.equal(st.mtime!.getTime(), 1_700_000_000_123);
      const names: string[] = [];
      for await (const e of Deno.readDir(`${s.mnt}/dir`)) names.push(e.name);
      assert.equal(names.length, 1000);
      assert.equal(names.sort()[999], "f0999");
      const ls = await sh(`ls -la ${s.mnt} | wc -l`);
      assert.equal(Number(ls.trim()), 1 + 2 + 9); // total line, . and .., 9 entries
      const lsl = await sh(`ls -l ${s.mnt}/dir | tail -n 1`);
      assert.match(lsl, /-rw-r--r-- 1 root root\s+9 .* f0999/);
    });

    await t.step("file contents: small, big (8 MiB), symlink", async () => {
      assert.equal(await Deno.readTextFile(`${s.mnt}/hello.txt`), "hello, world\n");
      assert.equal(await Deno.readTextFile(`${s.mnt}/link`), "hello, world\n");
      assert.equal(await Deno.readLink(`${s.mnt}/link`), "hello.txt");
      const big = await Deno.readFile(`${s.mnt}/big.bin`);
      assert.deepEqual(big, bigContent());
      const tail = await sh(
        `dd if=${s.mnt}/big.bin bs=4096 skip=2047 count=1 2>/dev/null | od -An -tu1 | tail -n 2 | head -n 1`,
      );
      assert.ok(tail.trim().length > 0);
    });

    await t.step("extended attributes: list, get, size probe, ERANGE, ENODATA", async () => {
      const out = await sh(`getfattr -d --absolute-names ${s.mnt}/hello.txt`);
      assert.match(out, /user\.greeting="hi"/);
      const py = await runOk("python3", [
        "-c",
        `
import os, errno
p = "${s.mnt}/hello.txt"
print(sorted(os.listxattr(p)))
print(len(os.getxattr(p, "user.big")))
try:
    os.getxattr(p, "user.missing")
except OSError as e:
    print("missing", errno.errorcode[e.errno])
import ctypes
libc = ctypes.CDLL("libc.so.6", use_errno=True)
buf = ctypes.create_string_buffer(10)
r = libc.getxattr(p.encode(), b"user.big", buf, 10)
print("small", r, errno.errorcode[ctypes.get_errno()])
print("probe", libc.getxattr(p.encode(), b"user.big", None, 0))
print("listprobe", libc.listxattr(p.encode(), None, 0))
`,
      ]);
      assert.equal(
        py,
        "['user.big', 'user.greeting']\n300\nmissing ENODATA\nsmall -1 ERANGE\nprobe 300\n" +
          "listprobe 23\n",
      );
    });

    await t.step("SEEK_DATA / SEEK_HOLE", async () => {
      const py = await runOk("python3", [
        "-c",
        `
import os
fd = os.open("${s.mnt}/sparse", os.O_RDONLY)
print(os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE))
print(os.lseek(fd, (1<<20) + 65536, os.SEEK_DATA), os.lseek(fd, 3<<20, os.SEEK_HOLE))
try:
    os.lseek(fd, 5<<20, os.SEEK_DATA)
except OSError as e:
    print("past end", e.errno)
os.lseek(fd, 1<<20, os.SEEK_SET)
print(os.read(fd, 4) == bytes(${
          "[" + [0, 1, 2, 3].map((i) => pattern((1 << 20) + i)).join(",") + "]"
        }))
`,
      ]);
      assert.equal(py, `1048576 0\n3145728 4194304\npast end 6\nTrue\n`);
    });

    await t.step("statfs and access", async () => {
      const out = await sh(`stat -f -c '%b %f %a %c %d %S %l' ${s.mnt}`);
      assert.equal(out.trim(), "1000 100 90 2000 500 4096 255");
      const w = await run("sh", ["-c", `test -w ${s.mnt}/hello.txt`]);
      assert.notEqual(w.code, 0, "a read-only mount is not writable");
      const wr = await run("sh", ["-c", `echo x > ${s.mnt}/hello.txt`]);
      assert.match(wr.stderr, /Read-only file system/);
    });

    await t.step("evicted inodes come back as FORGET/BATCH_FORGET", async () => {
      const before = s.fs.forgotten;
      await sh(`ls -l ${s.mnt}/dir > /dev/null`);
      await sh("sync; echo 2 > /proc/sys/vm/drop_caches");
      for (let i = 0; i < 200 && s.fs.forgotten < before + 1000; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(s.fs.forgotten >= before + 1000, `forgotten ${s.fs.forgotten - before}`);
      assert.equal(await Deno.readTextFile(`${s.mnt}/dir/f0001`), "file 1\n", "looked up again");
    });

    await t.step("a handler that throws answers EIO and the mount stays usable", async () => {
      const r = await run("cat", [`${s.mnt}/throws`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Input\/output error/);
      assert.ok(s.logs.some((l) => l.includes("deliberate failure")), "the failure is logged");
      assert.equal(await Deno.readTextFile(`${s.mnt}/hello.txt`), "hello, world\n");
    });

    await t.step("concurrent reads, and a slow read does not hold up others", async () => {
      // Child processes, not Deno's async file API: that runs on the same small thread pool
      // as this session's poll, and many calls blocked on this very mount would starve it.
      const slow = runOk("cat", [`${s.mnt}/slow`]);
      const files = Array.from(
        { length: 50 },
        (_, i) => `${s.mnt}/dir/f${String(i).padStart(4, "0")}`,
      );
      const t0 = performance.now();
      const many = await runOk("cat", files);
      const fast = performance.now() - t0;
      assert.equal(many.split("\n")[7], "file 7");
      assert.ok(fast < 190, `50 reads took ${fast} ms while a 200 ms read was pending`);
      assert.equal(await slow, "slow data\n");
      const parallel = await Promise.all(files.slice(0, 20).map((f) => runOk("cat", [f])));
      assert.equal(parallel[19], "file 19\n");
      const sums = await Promise.all(
        Array.from({ length: 4 }, () => sh(`cat ${s.mnt}/big.bin | md5sum`)),
      );
      assert.equal(new Set(sums).size, 1);
    });

    await t.step("a killed reader of a slow file leaves no stuck request", async () => {
      await run("timeout", ["-s", "KILL", "0.05", "cat", `${s.mnt}/slow`]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(s.session.inFlight, 0);
      assert.equal(await Deno.readTextFile(`${s.mnt}/hello.txt`), "hello, world\n");
    });

    await t.step(
      "INTERRUPT: a signal ends a slow read at once; the late result is dropped",
      async () => {
        const py = await runOk("python3", [
          "-c",
          `
import os, signal, time
class Alarm(Exception): pass
def on_alarm(*a): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open("${s.mnt}/slow-direct", os.O_RDONLY)
t = time.monotonic()
signal.setitimer(signal.ITIMER_REAL, 0.1)
try:
    os.read(fd, 100)
    print("completed")
except Alarm:
    print("interrupted", time.monotonic() - t < 1.0)
os.close(fd)
`,
        ]);
        assert.equal(py, "interrupted True\n");
        for (let i = 0; i < 100 && s.fs.interruptedReads === 0; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(s.fs.interruptedReads, 1, "the handler saw its AbortSignal");
        assert.equal(s.session.inFlight, 0);
        assert.equal(await Deno.readTextFile(`${s.mnt}/hello.txt`), "hello, world\n");
      },
    );

    await t.step("unmount waits for DESTROY; the device is free right after", async () => {
      assert.equal(exclusiveOpenWorks(s.dev), false, "a mounted device is held exclusively");
      assert.equal(await unmountAsync(s.mnt), 0);
      assert.equal(s.fs.destroyed, true, "DESTROY ran before umount returned");
      assert.equal(await s.ended, "destroyed");
      assert.equal(exclusiveOpenWorks(s.dev), true);
    });
  } finally {
    await s.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

/** MemFs whose reads return new buffers, each recorded; `owned` says so to the session. */
class CopyingMemFs extends MemFs {
  readonly replies: { bytes: Uint8Array<ArrayBuffer>; size: number }[] = [];
  constructor(readonly readRepliesOwned: boolean) {
    super();
  }
  override async read(
    ...args: Parameters<MemFs["read"]>
  ): Promise<Uint8Array> {
    const copy = (await super.read(...args)).slice();
    this.replies.push({ bytes: copy, size: copy.length });
    return copy;
  }
}

testWith(
  "fuse session: large READ replies are freed once written when the filesystem owns none",
  FUSE_NEEDS,
  async () => {
    for (const owned of [true, false]) {
      const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-" });
      const fs = new CopyingMemFs(owned);
      const s = await serveMemFs(dir, fs);
      try {
        assert.deepEqual(await Deno.readFile(`${s.mnt}/big.bin`), bigContent());
        const large = fs.replies.filter((r) => r.size > 64 * 1024);
        assert.ok(large.length > 0, "the 8 MiB file was read in large requests");
        const freed = large.filter((r) => r.bytes.buffer.detached).length;
        // Owned: every large reply's memory released right after its reply; else none touched.
        assert.equal(freed, owned ? large.length : 0, `owned=${owned}`);
      } finally {
        await s.cleanup();
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
);

testWith("fuse session: a slow DESTROY is waited for by umount(2)", FUSE_NEEDS, async () => {
  const dir = await Deno.makeTempDir({ prefix: "ext4ts-fuse-" });
  const s = await serveMemFs(dir, new MemFs({ destroyDelayMs: 700 }));
  try {
    assert.equal(await Deno.readTextFile(`${s.mnt}/hello.txt`), "hello, world\n");
    const t0 = performance.now();
    assert.equal(await unmountAsync(s.mnt), 0);
    const took = performance.now() - t0;
    assert.ok(took >= 650, `umount returned after ${took} ms, before DESTROY was answered`);
    assert.equal(s.fs.destroyed, true);
    assert.equal(await s.ended, "destroyed");
    assert.equal(exclusiveOpenWorks(s.dev), true);
  } finally {
    await s.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
