/**
 * A small in-memory filesystem implementing {@link FuseOperations}, for testing the FUSE
 * stack (session, mount, daemon, umount) without the ext4 reader.
 *
 * Tree:
 * ```
 * /hello.txt        "hello, world\n", xattrs user.greeting=hi, user.big (300 bytes)
 * /big.bin          8 MiB of deterministic bytes (pattern(i) = (i * 2654435761) >>> 24)
 * /sparse           4 MiB: data at [1 MiB, 1 MiB + 64 KiB) and [3 MiB, 4 MiB), holes elsewhere
 * /link -> hello.txt
 * /dir/f0000 … f0999  one line each, "file N\n"
 * /throws           every read throws a plain Error (the session must answer EIO)
 * /slow             reads take 200 ms
 * /slow-direct      reads take 2 s, opened with direct I/O (reads can be interrupted)
 * /private          mode 0600, owned by root
 * ```
 *
 * @module
 */

import {
  type AttrReply,
  type DirentOut,
  type EntryOut,
  type FuseAttr,
  FuseError,
  type FuseOperations,
  type OpenReply,
  type RequestContext,
  type SeekWhence,
  type StatfsOut,
} from "../ffi/fuse/ops.ts";
import { DirentType } from "../ffi/fuse/protocol.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Byte `i` of /big.bin.
 *
 * @example
 * ```ts ignore
 * pattern(12345); // byte 12345 of /big.bin
 * ```
 */
export function pattern(i: number): number {
  return Math.imul(i, 2654435761) >>> 24;
}

/**
 * The contents of /big.bin.
 *
 * @example
 * ```ts ignore
 * const expected = bigContent();
 * ```
 */
export function bigContent(size = 8 << 20): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = pattern(i);
  return b;
}

interface Node {
  id: number;
  mode: number;
  data?: Uint8Array;
  size: number;
  /** Data extents of a sparse file: [start, end). */
  extents?: [number, number][];
  target?: Uint8Array;
  children?: Map<string, number>;
  parent: number;
  xattrs: Map<string, Uint8Array>;
  behaviour?: "throws" | "slow" | "slow-direct";
}

/** Options of {@link MemFs}. */
export interface MemFsOptions {
  /** DESTROY takes this long (to test that unmount waits for it). */
  destroyDelayMs?: number;
  /** Called when destroy finished. */
  onDestroy?: () => void;
}

/**
 * The in-memory filesystem.
 *
 * @example
 * ```ts ignore
 * const session = new FuseSession(fd, new MemFs(), { readOnly: true });
 * ```
 */
export class MemFs implements FuseOperations {
  readonly nodes = new Map<number, Node>();
  readonly options: MemFsOptions;
  destroyed = false;
  openFiles = 0;
  /** Reads of /slow-direct that ended because the kernel interrupted them. */
  interruptedReads = 0;
  /** Lookup references the kernel has dropped (FORGET and BATCH_FORGET). */
  forgotten = 0;
  #nextId = 1;

  constructor(options: MemFsOptions = {}) {
    this.options = options;
    const root = this.#add(0o40755, 1);
    root.children = new Map();
    const hello = this.#file(root, "hello.txt", enc.encode("hello, world\n"));
    hello.xattrs.set("user.greeting", enc.encode("hi"));
    hello.xattrs.set("user.big", new Uint8Array(300).fill(0x61));
    this.#file(root, "big.bin", bigContent());
    const sparse = this.#file(root, "sparse", new Uint8Array(0));
    sparse.size = 4 << 20;
    sparse.extents = [[1 << 20, (1 << 20) + 65536], [3 << 20, 4 << 20]];
    const link = this.#add(0o120777, root.id);
    link.target = enc.encode("hello.txt");
    link.size = link.target.length;
    root.children.set("link", link.id);
    const dir = this.#add(0o40755, root.id);
    dir.children = new Map();
    root.children.set("dir", dir.id);
    for (let i = 0; i < 1000; i++) {
      this.#file(dir, `f${String(i).padStart(4, "0")}`, enc.encode(`file ${i}\n`));
    }
    this.#file(root, "throws", enc.encode("never readable\n")).behaviour = "throws";
    this.#file(root, "slow", enc.encode("slow data\n")).behaviour = "slow";
    this.#file(root, "slow-direct", enc.encode("slow direct data\n")).behaviour = "slow-direct";
    this.#file(root, "private", enc.encode("owner only\n")).mode = 0o100600;
  }

  #add(mode: number, parent: number): Node {
    const n: Node = { id: this.#nextId++, mode, size: 0, parent, xattrs: new Map() };
    this.nodes.set(n.id, n);
    return n;
  }

  #file(dir: Node, name: string, data: Uint8Array): Node {
    const n = this.#add(0o100644, dir.id);
    n.data = data;
    n.size = data.length;
    dir.children!.set(name, n.id);
    return n;
  }

  #node(id: number): Node {
    const n = this.nodes.get(id);
    if (!n) throw new FuseError(2);
    return n;
  }

  attrOf(n: Node): FuseAttr {
    const t = { sec: 1_700_000_000, nsec: 123_456_789 };
    const isDir = (n.mode & 0o170000) === 0o40000;
    return {
      ino: n.id,
      size: isDir ? 4096 : n.size,
      blocks: Math.ceil((isDir ? 4096 : n.size) / 512),
      atime: t,
      mtime: t,
      ctime: t,
      mode: n.mode,
      nlink: isDir ? 2 : 1,
      uid: 0,
      gid: 0,
      rdev: 0,
      blksize: 4096,
    };
  }

  #entry(n: Node): EntryOut {
    return { nodeid: n.id, generation: 0, entryTimeout: 1, attrTimeout: 1, attr: this.attrOf(n) };
  }

  lookup(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryOut> {
    const p = this.#node(parent);
    if (!p.children) throw new FuseError(20);
    const id = p.children.get(dec.decode(name));
    if (id === undefined) throw new FuseError(2);
    return Promise.resolve(this.#entry(this.#node(id)));
  }

  getattr(_ctx: RequestContext, nodeid: number): Promise<AttrReply> {
    return Promise.resolve({ attr: this.attrOf(this.#node(nodeid)), timeout: 1 });
  }

  readlink(_ctx: RequestContext, nodeid: number): Promise<Uint8Array> {
    const n = this.#node(nodeid);
    if (!n.target) throw new FuseError(22);
    return Promise.resolve(n.target);
  }

  open(_ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply> {
    this.#node(nodeid);
    if ((flags & 3) !== 0) throw new FuseError(30);
    this.openFiles++;
    const n = this.#node(nodeid);
    if (n.behaviour === "slow-direct") return Promise.resolve({ fh: nodeid, directIo: true });
    return Promise.resolve({ fh: nodeid, keepCache: true });
  }

  async read(
    ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
    size: number,
  ): Promise<Uint8Array> {
    const n = this.#node(nodeid);
    if (n.behaviour === "throws") throw new Error("deliberate failure in a read handler");
    if (n.behaviour === "slow") await new Promise((r) => setTimeout(r, 200));
    if (n.behaviour === "slow-direct") {
      this.interruptedReads += await new Promise<number>((r) => {
        const timer = setTimeout(() => r(0), 2000);
        ctx.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          r(1);
        });
      });
    }
    const end = Math.min(n.size, offset + size);
    if (offset >= end) return new Uint8Array(0);
    if (n.extents) {
      const out = new Uint8Array(end - offset);
      for (const [s, e] of n.extents) {
        for (let i = Math.max(s, offset); i < Math.min(e, end); i++) out[i - offset] = pattern(i);
      }
      return out;
    }
    return n.data!.subarray(offset, end);
  }

  release(): Promise<void> {
    this.openFiles--;
    return Promise.resolve();
  }

  opendir(_ctx: RequestContext, nodeid: number): Promise<OpenReply> {
    if (!this.#node(nodeid).children) throw new FuseError(20);
    return Promise.resolve({ fh: 0 });
  }

  async *readdir(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
  ): AsyncIterable<DirentOut> {
    const n = this.#node(nodeid);
    const all: DirentOut[] = [
      { ino: n.id, offset: 1, type: DirentType.DIR, name: enc.encode(".") },
      { ino: n.parent, offset: 2, type: DirentType.DIR, name: enc.encode("..") },
    ];
    let i = 3;
    for (const [name, id] of n.children ?? []) {
      const c = this.#node(id);
      all.push({ ino: id, offset: i++, type: (c.mode >>> 12) & 0xf, name: enc.encode(name) });
    }
    for (const d of all) if (d.offset > offset) yield d;
  }

  statfs(): Promise<StatfsOut> {
    return Promise.resolve({
      blocks: 1000,
      bfree: 100,
      bavail: 90,
      files: 2000,
      ffree: 500,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    });
  }

  getxattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array> {
    const v = this.#node(nodeid).xattrs.get(dec.decode(name));
    if (!v) throw new FuseError(61);
    return Promise.resolve(v);
  }

  listxattr(_ctx: RequestContext, nodeid: number): Promise<Uint8Array[]> {
    return Promise.resolve([...this.#node(nodeid).xattrs.keys()].map((k) => enc.encode(k)));
  }

  access(_ctx: RequestContext, nodeid: number, mask: number): Promise<void> {
    this.#node(nodeid);
    if (mask & 2) throw new FuseError(30);
    return Promise.resolve();
  }

  lseek(
    _ctx: RequestContext,
    nodeid: number,
    _fh: number,
    offset: number,
    whence: SeekWhence,
  ): Promise<number> {
    const n = this.#node(nodeid);
    if (offset >= n.size) throw new FuseError(6);
    const extents = n.extents ?? [[0, n.size]];
    if (whence === "data") {
      for (const [s, e] of extents) {
        if (offset < e) return Promise.resolve(Math.max(s, offset));
      }
      throw new FuseError(6);
    }
    for (const [s, e] of extents) {
      if (offset < s) return Promise.resolve(offset);
      if (offset < e) offset = e;
    }
    return Promise.resolve(Math.min(offset, n.size));
  }

  forget(_nodeid: number, nlookup: number): void {
    this.forgotten += nlookup;
  }

  async destroy(): Promise<void> {
    if (this.options.destroyDelayMs) {
      await new Promise((r) => setTimeout(r, this.options.destroyDelayMs));
    }
    this.destroyed = true;
    this.options.onDestroy?.();
  }
}
