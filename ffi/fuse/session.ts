/**
 * The FUSE request loop over a /dev/fuse file descriptor.
 *
 * Rules this loop keeps (see PLATFORM-FACTS.md, "FUSE"):
 * - The descriptor is non-blocking. Reads are synchronous FFI calls (so errno is valid:
 *   EAGAIN → wait, ENOENT → the request was interrupted before we read it, EINTR → retry,
 *   ENODEV → the connection is gone). Waiting for the next request: when nothing is in
 *   flight, a short synchronous `poll` on this thread (a request that follows within
 *   {@link SPIN_MS} costs no hand-off to a worker thread and back, ~20–30 µs each way); else,
 *   and after that, and at least every {@link TURN_EVERY_MS} (V8's collector finishes its work
 *   in event-loop tasks), `poll` on a worker thread (`nonblocking: true`) so the event loop
 *   keeps answering requests, timers and signals meanwhile.
 * - Replies are written from one reused buffer (one `write`); only large ones (READ data,
 *   big listings) go out by `writev` from their own buffers, uncopied.
 * - Requests are dispatched to async handlers without waiting: several are in flight at once.
 *   INIT and DESTROY are the session's own; every other opcode goes to `dispatch.ts`.
 * - Exactly one reply per request, always: a handler that throws answers its errno (or EIO,
 *   logged), an unknown opcode answers ENOSYS, an INTERRUPT answers the target with EINTR at
 *   once and the late result is dropped. FORGET, BATCH_FORGET and INTERRUPT get no reply, as
 *   the protocol says. An unanswered request would leave its caller in D state.
 * - DESTROY: wait for in-flight requests, run the filesystem's `destroy` (flush, close),
 *   then reply, and only then leave the loop. The session never unmounts anything itself
 *   (unmounting from the thread that must answer DESTROY deadlocks a fuseblk mount).
 * - No timer between a request and its reply.
 *
 * @module
 */

import { Errno } from "../../lib/errors.ts";
import { errno, libc, SyscallError } from "../libc.ts";
import { OpcodeDispatcher, ProtocolErrno } from "./dispatch.ts";
import {
  encodeOutHeader,
  IN_HEADER_SIZE,
  MIN_READ_BUFFER,
  Opcode,
  opcodeName,
  OUT_HEADER_SIZE,
  ProtocolError,
  readInHeader,
  WRITE_IN_SIZE,
  WRITE_OPCODES,
  writeOutHeader,
} from "./protocol.ts";
import {
  decodeBatchForgetIn,
  decodeForgetIn,
  decodeInitIn,
  decodeInterruptIn,
} from "./protocol_requests.ts";
import type { ReplyBody } from "./protocol_replies.ts";
import { type InitInfo, type InitNegotiation, negotiateInit } from "./init.ts";
import { errnoOf, type FuseOperations, type RequestContext } from "./ops.ts";

export type { InitInfo } from "./init.ts";

/** Options of a {@link FuseSession}. */
export interface SessionOptions {
  /** A read-only mount: write opcodes answer EROFS and big writes are not negotiated. */
  readOnly?: boolean;
  /**
   * Negotiate FUSE_POSIX_ACL: the kernel caches ACLs and, with default_permissions, enforces
   * them. The filesystem must answer system.posix_acl_* in the kernel's xattr format.
   */
  posixAcl?: boolean;
  /** READDIRPLUS for every directory read ("always", default) or the kernel's "auto". */
  readdirplus?: "always" | "auto";
  /** Largest READ/WRITE payload to negotiate (default and maximum 1 MiB). */
  maxIo?: number;
  /** Cache negative lookups this many seconds (0 = do not). */
  negativeTimeout?: number;
  /** Where log lines go (default: stderr). */
  log?: (line: string) => void;
  /** Runs after the filesystem's destroy and before the DESTROY reply (close devices). */
  beforeDestroyReply?: () => Promise<void> | void;
  /**
   * How long DESTROY waits for in-flight requests before going on (ms, default 10 000;
   * Infinity: no cap, what a read-write mount needs).
   */
  drainTimeoutMs?: number;
  /** µs to poll without sleeping after answering everything (default {@link BUSY_POLL_US}). */
  busyPollUs?: number;
  /**
   * Runs once when the session falls idle: no request in flight and none read for
   * `idleAfterMs`, after at least one request since the last run (the daemon collects its
   * garbage there). A request that arrives meanwhile waits for it.
   */
  onIdle?: () => void;
  /** ms without requests before {@link SessionOptions.onIdle} (default {@link IDLE_AFTER_MS}). */
  idleAfterMs?: number;
}

/** How a session ended. */
export type SessionEnd =
  /** DESTROY answered (fuseblk unmount). */
  | "destroyed"
  /** The connection went away without DESTROY (plain fuse unmount, abort). */
  | "disconnected"
  /** {@link FuseSession.stop} was called. */
  | "stopped";

const E = Errno;
/** Requests an INTERRUPT does not cut short: their effect may already be on the device. */
const MUTATING: ReadonlySet<number> = new Set([
  ...WRITE_OPCODES,
  Opcode.FSYNC,
  Opcode.FSYNCDIR,
  Opcode.SYNCFS,
  Opcode.RELEASE,
  Opcode.IOCTL,
]);
const POLLIN = 1;
/** The body of an error reply: none (shared, never changed). */
const NO_BODY: Uint8Array[] = [];
const MAX_IO = 1 << 20;
/** After this many requests read back to back, give the event loop a real turn. */
const YIELD_EVERY = 32;

/** ms the loop then waits on its own thread before a worker thread's wait (timers wait that). */
const SPIN_MS = 10;
/**
 * µs polled without sleeping once every request is answered (then {@link SPIN_MS}): a request
 * that follows is read without a cross-CPU wake-up (GETATTR round trip 47 → 18 µs on 2 vCPUs).
 */
const BUSY_POLL_US = 50;
/** ms without requests after which the session counts as idle ({@link SessionOptions.onIdle}). */
const IDLE_AFTER_MS = 1000;
/**
 * Microtask turns given to handlers that just started, so their answers go out before the loop
 * waits again: a CREATE or UNLINK needs 130–1000 (with 64, nearly all paid a thread hand-off).
 */
const SETTLE_TURNS = 1024;
/**
 * The turns while a request that usually waits for device I/O ({@link IO_OPCODES}) is in
 * flight: its I/O completes on a worker thread, and more turns only delay it.
 */
const IO_SETTLE_TURNS = 64;
const IO_OPCODES: ReadonlySet<number> = new Set([
  Opcode.READ,
  Opcode.WRITE,
  Opcode.FSYNC,
  Opcode.FSYNCDIR,
  Opcode.SYNCFS,
  Opcode.FALLOCATE,
  Opcode.COPY_FILE_RANGE,
  Opcode.LSEEK,
  Opcode.IOCTL,
]);
/**
 * The longest the loop answers requests without a real event-loop turn (ms): V8 finishes its
 * incremental collections in tasks that run only then (never turning, the daemon grew 40–60 MiB).
 */
const TURN_EVERY_MS = 2;
/** Replies up to this size are copied into the session's reply buffer and written at once. */
const REPLY_COPY_MAX = 64 * 1024;
/**
 * A WRITE with at least this much data gets the read buffer itself, and the loop reads on into
 * a spare one, instead of a copy of its body: copying a 1 MiB body into fresh memory (page
 * faults, zeroing, the copy) made the FUSE layer's part of a WRITE 150–270 µs, not 35–50.
 */
const LEND_MIN = 32 * 1024;
/** Read buffers held by WRITE handlers at once at most; past that, bodies are copied. */
const LEND_MAX = 2;

/** A request being answered: who asked, and its abort signal made only when asked for. */
class InFlight implements RequestContext {
  replied = false;
  done: Promise<void> = Promise.resolve();
  /** The read buffer this request's body lies in, back to the session once it is answered. */
  lent: Uint8Array<ArrayBuffer> | undefined;
  #controller: AbortController | undefined;
  #interrupted = false;

  constructor(
    readonly opcode: number,
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
  ) {}

  /** Aborted when the kernel interrupts the request (most handlers never look). */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#interrupted) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  abort(): void {
    this.#interrupted = true;
    this.#controller?.abort();
  }
}

/**
 * Serves one FUSE connection: reads requests from `fd`, calls `ops`, writes replies.
 *
 * @example
 * ```ts ignore
 * const session = new FuseSession(fuseFd, myOps, { readOnly: true });
 * const ended = session.run();           // resolves when the mount goes away
 * await session.initialized;             // INIT answered: the mount is live
 * console.log(await ended);              // "destroyed"
 * ```
 */
export class FuseSession {
  readonly #fd: number;
  readonly #ops: FuseOperations;
  readonly #opts: Required<Omit<SessionOptions, "beforeDestroyReply" | "onIdle">> & SessionOptions;
  readonly #inflight = new Map<bigint, InFlight>();
  /** Requests of {@link IO_OPCODES} in flight. */
  #ioInFlight = 0;
  readonly #pollfd = new Uint8Array(8);
  /** The buffer requests are read into, and its view; lent to a long WRITE (see LEND_MIN). */
  #readBuf: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  #readView = new DataView(this.#readBuf.buffer);
  /** Read buffers back from the handlers they were lent to, and how many are lent now. */
  readonly #spareReadBufs: Uint8Array<ArrayBuffer>[] = [];
  #lent = 0;
  /** The buffer every small reply is assembled in (header + body, one write). */
  readonly #replyBuf = new Uint8Array(OUT_HEADER_SIZE + REPLY_COPY_MAX);
  readonly #replyView = new DataView(this.#replyBuf.buffer);
  #ended: SessionEnd | undefined;
  #stopRequested = false;
  #initResolve!: (i: InitInfo) => void;
  #initReject!: (e: Error) => void;
  readonly #dispatcher: OpcodeDispatcher;
  #initInfo: InitInfo | undefined;
  /**
   * Whether the next wait may spin. Not right after INIT: whoever awaits
   * {@link FuseSession.initialized} (the daemon's start-up: state file, post-mount check,
   * `ready`) runs in promise callbacks, which a spin on this thread would hold up for
   * {@link SPIN_MS} (measured: 10 ms of a 55 ms mount).
   */
  #spinNext = true;
  /** When the event loop last turned (a wait on a worker thread): see {@link TURN_EVERY_MS}. */
  #lastTurn = 0;
  /** When the last request was read ({@link SessionOptions.onIdle}). */
  #lastRequest = 0;
  /** A request came since onIdle last ran (or since the start). */
  #idleDue = false;
  #destroying: Promise<void> | undefined;
  /** Resolves once INIT has been answered (the mount is usable). */
  readonly initialized: Promise<InitInfo>;
  /** Requests answered so far (for tests and logs). */
  replies = 0;

  /** Serves the open /dev/fuse descriptor `fd` with `ops`; {@link FuseSession.run} starts it. */
  constructor(fd: number, ops: FuseOperations, options: SessionOptions = {}) {
    this.#fd = fd;
    this.#ops = ops;
    this.#opts = {
      readOnly: options.readOnly ?? true,
      posixAcl: options.posixAcl ?? false,
      readdirplus: options.readdirplus ?? "always",
      maxIo: Math.min(MAX_IO, Math.max(4096, options.maxIo ?? MAX_IO)),
      negativeTimeout: options.negativeTimeout ?? 0,
      log: options.log ?? ((l) => console.error(l)),
      drainTimeoutMs: options.drainTimeoutMs ?? 10_000,
      busyPollUs: options.busyPollUs ?? BUSY_POLL_US,
      idleAfterMs: options.idleAfterMs ?? IDLE_AFTER_MS,
      beforeDestroyReply: options.beforeDestroyReply,
      onIdle: options.onIdle,
    };
    this.#dispatcher = new OpcodeDispatcher(ops, {
      readOnly: this.#opts.readOnly,
      negativeTimeout: this.#opts.negativeTimeout,
      maxIo: MAX_IO,
      log: (line) => this.#log(line),
    });
    this.initialized = new Promise((res, rej) => {
      this.#initResolve = res;
      this.#initReject = rej;
    });
    // Callers may never await `initialized` (e.g. when the mount fails): no unhandled rejection.
    this.initialized.catch(() => {});
    const v = new DataView(this.#pollfd.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, POLLIN, true);
  }

  /** Number of requests currently being handled. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Asks the loop to end after the current wait (at most ~0.5 s). No DESTROY is answered. */
  stop(): void {
    this.#stopRequested = true;
  }

  /**
   * Runs the loop until DESTROY is answered, the connection disappears or {@link stop} is
   * called. If the session ends without DESTROY, the filesystem's `destroy` still runs.
   */
  async run(): Promise<SessionEnd> {
    const c = libc();
    this.#useReadBuffer(this.#newReadBuffer());
    const bufLength = BigInt(this.#readBuf.length);
    let streak = 0;
    let readErrors = 0;
    try {
      while (this.#ended === undefined && !this.#stopRequested) {
        const n = c.read_i32(this.#fd, this.#readBuf, bufLength);
        if (n < 0) {
          const err = errno();
          if (err === E.EAGAIN) {
            streak = 0;
            await this.#waitForRequest();
            continue;
          }
          if (err === E.EINTR || err === E.ENOENT) continue;
          if (err === E.ENODEV || err === E.ECONNABORTED) {
            this.#ended ??= "disconnected";
            break;
          }
          // Unexpected: log, and give up after a run of failures. Ending closes the device
          // (in the daemon), which aborts the connection: callers get ENOTCONN, never a hang.
          this.#log(`fuse: ${new SyscallError("read", err, "reading /dev/fuse").message}`);
          if (++readErrors >= 100 || err === E.EBADF || err === E.EINVAL) {
            this.#ended ??= "disconnected";
            break;
          }
          await this.#waitReadable(10);
          continue;
        }
        readErrors = 0;
        if (n === 0) {
          this.#ended ??= "disconnected";
          break;
        }
        this.#lastRequest = performance.now();
        this.#idleDue = true;
        this.#dispatch(this.#readBuf, this.#readView, n);
        if (++streak >= YIELD_EVERY) {
          streak = 0;
          await this.#waitReadable(0); // a real event-loop turn so worker-thread I/O completes
        } else {
          await null; // let the handlers just started run their synchronous parts
        }
      }
    } finally {
      this.#initReject(new Error("FUSE session ended before INIT"));
    }
    if (this.#ended !== "destroyed") {
      if (this.#stopRequested) this.#ended ??= "stopped";
      await this.#drain();
      await this.#runDestroy();
    }
    return this.#ended ?? "stopped";
  }

  /**
   * Waits until /dev/fuse has a request (or a while has passed). Handlers just started get
   * their microtask turns first; then, if none is left in flight, polls here (busy, then
   * sleeping) catch a request that follows closely without a thread hand-off; otherwise the
   * wait runs on a worker thread and the event loop turns.
   */
  async #waitForRequest(): Promise<void> {
    const turns = this.#ioInFlight > 0 ? IO_SETTLE_TURNS : SETTLE_TURNS;
    for (let i = 0; i < turns && this.#inflight.size > 0; i++) await null;
    const spin = this.#spinNext && performance.now() - this.#lastTurn < TURN_EVERY_MS;
    this.#spinNext = true;
    if (spin && this.#inflight.size === 0) {
      const c = libc(), until = performance.now() + this.#opts.busyPollUs / 1000;
      while (performance.now() < until) if (c.poll(this.#pollfd, 1n, 0) !== 0) return;
      if (c.poll(this.#pollfd, 1n, SPIN_MS) > 0) return;
    }
    if (this.#idleDue && this.#inflight.size === 0 && this.#opts.onIdle) {
      const left = this.#opts.idleAfterMs - (performance.now() - this.#lastRequest);
      if (left > 0) return await this.#waitReadable(Math.min(500, Math.ceil(left)));
      this.#idleDue = false;
      try {
        this.#opts.onIdle();
      } catch (e) {
        this.#log(`fuse: idle step failed: ${(e as Error).message}`);
      }
    }
    await this.#waitReadable();
  }

  async #waitReadable(timeoutMs = 500): Promise<void> {
    this.#lastTurn = performance.now();
    const r = await libc().poll_nb(this.#pollfd, 1n, timeoutMs);
    if (r < 0) {
      // errno is lost on the worker thread; a failed poll is retried by the next read.
      return;
    }
  }

  #log(line: string): void {
    try {
      this.#opts.log(line);
    } catch { /* logging never breaks the loop */ }
  }

  /** A buffer to read requests into (the kernel refuses one that cannot hold the largest WRITE). */
  #newReadBuffer(): Uint8Array<ArrayBuffer> {
    return new Uint8Array(
      Math.max(MIN_READ_BUFFER, IN_HEADER_SIZE + WRITE_IN_SIZE + this.#opts.maxIo + 4096),
    );
  }

  #useReadBuffer(buf: Uint8Array<ArrayBuffer>): void {
    this.#readBuf = buf;
    this.#readView = new DataView(buf.buffer);
  }

  /**
   * Starts the request in the first `n` bytes of the read buffer `buf` (`v` views it). The
   * header is read in place; the body is copied (the buffer is reused by the next read while
   * the handler runs), except for the requests answered before the next read and a long
   * WRITE's, which keeps the buffer until it is answered (LEND_MIN).
   */
  #dispatch(buf: Uint8Array<ArrayBuffer>, v: DataView, n: number): void {
    let h;
    try {
      h = readInHeader(v, n);
    } catch (e) {
      this.#log(`fuse: dropping malformed request: ${(e as Error).message}`);
      return;
    }
    const { opcode, nodeid } = h;
    const end = Math.max(IN_HEADER_SIZE, Math.min(n, h.len) - h.totalExtlen * 8);
    switch (opcode) {
      case Opcode.FORGET:
        try {
          this.#ops.forget?.(nodeid, decodeForgetIn(buf.subarray(IN_HEADER_SIZE, end)));
        } catch (e) {
          this.#log(`fuse: FORGET: ${(e as Error).message}`);
        }
        return;
      case Opcode.BATCH_FORGET:
        try {
          const body = buf.subarray(IN_HEADER_SIZE, end);
          for (const f of decodeBatchForgetIn(body)) this.#ops.forget?.(f.nodeid, f.nlookup);
        } catch (e) {
          this.#log(`fuse: BATCH_FORGET: ${(e as Error).message}`);
        }
        return;
      case Opcode.INTERRUPT:
        this.#interrupt(buf.subarray(IN_HEADER_SIZE, end));
        return;
    }
    const unique = h.unique;
    const entry = new InFlight(opcode, h.uid, h.gid, h.pid);
    this.#inflight.set(unique, entry);
    if (IO_OPCODES.has(opcode)) this.#ioInFlight++;
    let body: Uint8Array;
    if (opcode === Opcode.WRITE && end - IN_HEADER_SIZE >= LEND_MIN && this.#lent < LEND_MAX) {
      body = buf.subarray(IN_HEADER_SIZE, end);
      entry.lent = buf;
      this.#lent++;
      this.#useReadBuffer(this.#spareReadBufs.pop() ?? this.#newReadBuffer());
    } else {
      body = buf.slice(IN_HEADER_SIZE, end);
    }
    entry.done = this.#answer(unique, opcode, nodeid, body, entry);
  }

  /** Runs one request to its one reply (or none, when INTERRUPT answered it already). */
  async #answer(
    unique: bigint,
    opcode: number,
    nodeid: number,
    body: Uint8Array,
    entry: InFlight,
  ): Promise<void> {
    try {
      let reply: ReplyBody;
      try {
        // INIT and DESTROY are the session's own; one async frame less for the others.
        reply = opcode === Opcode.INIT || opcode === Opcode.DESTROY
          ? await this.#handleOwn(opcode, body, entry)
          : await this.#dispatcher.handle(opcode, nodeid, body, entry);
      } catch (e) {
        let code = errnoOf(e);
        if (e instanceof ProtocolError) code = E.EINVAL;
        if (code === undefined) {
          code = E.EIO;
          this.#log(
            `fuse: ${opcodeName(opcode)} on node ${nodeid} failed: ${
              e instanceof Error ? (e.stack ?? e.message) : String(e)
            }`,
          );
        }
        this.#reply(unique, -code, []);
        return;
      }
      this.#reply(unique, 0, reply);
      if (opcode === Opcode.READ && this.#ops.readRepliesOwned && Array.isArray(reply)) {
        releaseLarge(reply);
      }
      if (opcode === Opcode.INIT && this.#initInfo) {
        this.#spinNext = false;
        this.#initResolve(this.#initInfo);
      }
      // DESTROY answered: the loop ends at its next turn, never before the reply is out.
      if (opcode === Opcode.DESTROY) this.#ended = "destroyed";
    } catch (e) {
      this.#log(`fuse: reply failed: ${(e as Error).message}`);
    } finally {
      this.#inflight.delete(unique);
      if (IO_OPCODES.has(opcode)) this.#ioInFlight--;
      // Answered: its handler is done with the body (the library writes a WRITE's data before
      // the WRITE returns, lib/ext4/file_update.ts `borrow`).
      if (entry.lent) {
        this.#spareReadBufs.push(entry.lent);
        entry.lent = undefined;
        this.#lent--;
      }
    }
  }

  #interrupt(body: Uint8Array): void {
    let target: bigint;
    try {
      target = decodeInterruptIn(body);
    } catch {
      return;
    }
    const f = this.#inflight.get(target);
    // Not found: already answered. INTERRUPT itself is never answered (optional in the
    // protocol); the interrupted request is answered EINTR now, its late result dropped.
    // A change (and FSYNC) is never interrupted: once started it runs to its end and is
    // answered with its result, so a completed change is never reported as EINTR.
    if (!f || f.replied || MUTATING.has(f.opcode)) return;
    this.#reply(target, -E.EINTR, []);
    f.abort();
  }

  /** Writes one reply. Later replies for the same request are dropped. */
  #reply(unique: bigint, error: number, reply: ReplyBody): void {
    error = Math.trunc(error);
    const f = this.#inflight.get(unique);
    if (f) {
      if (f.replied) return;
      f.replied = true;
    }
    let body = error === 0 ? reply : NO_BODY;
    if (!(error <= 0 && error > -4096)) {
      this.#log(`fuse: invalid error ${error} in a reply: answering EIO`);
      error = -E.EIO;
      body = NO_BODY;
    }
    let failure: number | string;
    try {
      failure = this.#write(unique, error, body);
    } catch (e) {
      failure = (e as Error).message;
    }
    this.replies++;
    // ENOENT: the kernel no longer waits for it (interrupted/aborted). ENODEV: gone.
    if (failure === 0 || failure === E.ENOENT || failure === E.ENODEV) return;
    // Never leave a request unanswered: a reply the kernel rejected becomes a bare EIO.
    this.#log(`fuse: writing a reply (error ${error}) failed (${failure}): answering EIO`);
    try {
      this.#write(unique, -E.EIO, []);
    } catch (e) {
      this.#log(`fuse: writing EIO failed too: ${(e as Error).message}`);
    }
  }

  /**
   * Writes header + body: a small reply assembled in the reply buffer (an in-place body
   * encoded there, parts copied) and written at once, a large one by writev from its own
   * buffers. 0 or the errno.
   */
  #write(unique: bigint, error: number, body: ReplyBody): number {
    const b = this.#replyBuf;
    const v = this.#replyView;
    let len = OUT_HEADER_SIZE;
    if (Array.isArray(body)) {
      for (const p of body) len += p.length;
      if (len > b.length) return this.#writev(unique, error, body, len);
      let o = OUT_HEADER_SIZE;
      for (const p of body) {
        b.set(p, o);
        o += p.length;
      }
    } else {
      len += body.size;
      body.writeTo(v, OUT_HEADER_SIZE);
    }
    writeOutHeader(v, len, error, unique);
    const c = libc();
    const size = BigInt(len);
    let n = c.write_i32(this.#fd, b, size);
    while (n < 0 && errno() === E.EINTR) n = c.write_i32(this.#fd, b, size);
    return n < 0 ? errno() : 0;
  }

  /** One writev of header + body from their own buffers; 0 or the errno. */
  #writev(unique: bigint, error: number, body: Uint8Array[], len: number): number {
    const all = [encodeOutHeader(len, error, unique), ...body.filter((p) => p.length > 0)];
    const iov = new BigUint64Array(2 * all.length);
    for (let i = 0; i < all.length; i++) {
      iov[2 * i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(all[i])));
      iov[2 * i + 1] = BigInt(all[i].length);
    }
    const c = libc();
    const iovBytes = new Uint8Array(iov.buffer);
    let n = Number(c.writev(this.#fd, iovBytes, all.length));
    while (n < 0 && errno() === E.EINTR) n = Number(c.writev(this.#fd, iovBytes, all.length));
    const err = n < 0 ? errno() : 0;
    // Keep every buffer alive until the synchronous write has returned.
    void all;
    return err;
  }

  /** INIT and DESTROY, the session's own requests. */
  async #handleOwn(opcode: number, body: Uint8Array, self: InFlight): Promise<Uint8Array[]> {
    if (opcode === Opcode.INIT) return await this.#init(body);
    // DESTROY: wait for every other request, flush and close, and only then answer.
    await this.#drain(self);
    await this.#runDestroy();
    return [];
  }

  async #init(body: Uint8Array): Promise<Uint8Array[]> {
    let n: InitNegotiation;
    try {
      n = negotiateInit(decodeInitIn(body), this.#opts);
    } catch (e) {
      if (e instanceof ProtocolErrno) this.#initReject(e);
      throw e;
    }
    if (!n.info) return [n.reply]; // the kernel sends INIT again, with our major version
    this.#dispatcher.maxIo = n.info.maxWrite;
    await this.#ops.init?.({ major: n.info.major, minor: n.info.minor });
    this.#initInfo = n.info; // resolved once this reply is written
    return [n.reply];
  }

  async #drain(except?: InFlight): Promise<void> {
    const pending = [...this.#inflight.values()].filter((f) => f !== except).map((f) => f.done);
    if (pending.length === 0) return;
    if (this.#opts.drainTimeoutMs === Infinity) {
      await Promise.allSettled(pending);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((res) => {
      timer = setTimeout(() => res("timeout"), this.#opts.drainTimeoutMs);
    });
    const r = await Promise.race([Promise.allSettled(pending), timeout]);
    clearTimeout(timer);
    if (r === "timeout") {
      this.#log(`fuse: ${pending.length} request(s) still running at unmount; going on`);
    }
  }

  /** Runs the filesystem's destroy and the cleanup hook, once (idempotent). */
  #runDestroy(): Promise<void> {
    this.#destroying ??= (async () => {
      try {
        await this.#ops.destroy?.();
      } catch (e) {
        this.#log(`fuse: destroy failed: ${(e as Error).message}`);
      }
      try {
        await this.#opts.beforeDestroyReply?.();
      } catch (e) {
        this.#log(`fuse: cleanup before the DESTROY reply failed: ${(e as Error).message}`);
      }
    })();
    return this.#destroying;
  }
}

/**
 * Frees the buffers of a READ reply written by writev (larger than the reply buffer) at once:
 * the handler has finished and the filesystem said nobody else holds them
 * (`readRepliesOwned`). Detaching an ArrayBuffer releases its memory now; left to V8, large
 * buffers of finished reads pile up to tens of MiB before a collection frees them.
 */
function releaseLarge(parts: Uint8Array[]): void {
  for (const p of parts) {
    const b = p.buffer;
    if (p.byteLength <= REPLY_COPY_MAX || !(b instanceof ArrayBuffer) || b.detached) continue;
    try {
      b.transfer(0);
    } catch { /* not detachable (memory of a native owner): left to the collector */ }
  }
}
