/**
 * An open regular file of a writable `Ext4`: positional and sequential writes, truncate, and a
 * Web Streams `WritableStream` for data that does not fit in memory. Every write is one or
 * more transactions of at most {@link WRITE_CHUNK} bytes: the file is consistent (e2fsck-clean,
 * its size covering what was written) after each, so a crash loses at most the chunk being
 * written. The stream gathers small chunks into writes of at least {@link STREAM_BATCH} bytes
 * so that a stream of small pieces does not cost a commit (two flushes) each.
 *
 * @module
 */

import { Errno, Ext4Error } from "../errors.ts";
import type { Ext4Stat } from "./attr.ts";
import type { FallocateOptions } from "./path_ops.ts";

/** Most bytes one transaction of a write carries. */
export const WRITE_CHUNK = 8 << 20;
/** The stream writes when it has gathered this many bytes (or at close). */
export const STREAM_BATCH = 4 << 20;

/** What a handle needs from its filesystem (the `Ext4` object provides it). */
export interface WritableFileHost {
  /** Writes `data` at `offset` of inode `ino` in one transaction. */
  write(ino: number, offset: number, data: Uint8Array): Promise<void>;
  /** Sets the size of inode `ino` in one transaction. */
  truncate(ino: number, size: number): Promise<void>;
  /** fallocate(2) on inode `ino` in one transaction. */
  fallocate(ino: number, offset: number, length: number, options: FallocateOptions): Promise<void>;
  /** The current stat of inode `ino`. */
  stat(ino: number): Promise<Ext4Stat>;
  /** Reads up to `length` bytes at `offset` of inode `ino`. */
  read(ino: number, offset: number, length: number): Promise<Uint8Array>;
  /** Makes everything written so far durable. */
  sync(): Promise<void>;
  /** The handle is closed: count it out (and free the inode if it was the last of an unlinked file). */
  release(ino: number): Promise<void>;
}

/** How a file is opened for writing. */
export interface OpenWritableOptions {
  /** Create the file when it is absent (default true). */
  create?: boolean;
  /** Fail with EXISTS when the file exists (O_EXCL). */
  createNew?: boolean;
  /** Cut the file to 0 bytes at open (O_TRUNC). */
  truncate?: boolean;
  /** Every sequential write goes to the end of the file (O_APPEND). */
  append?: boolean;
  /** Permission bits of a created file (default 0o644). */
  mode?: number;
  /** Owner of a created file (default 0). */
  uid?: number;
  /** Group of a created file (default 0). */
  gid?: number;
}

/**
 * An open regular file for reading and writing. Close it (or let `Ext4.close` do it): an
 * unlinked file is freed at its last close.
 *
 * @example
 * ```ts
 * import { Ext4 } from "../../mod.ts";
 * const img = await Deno.makeTempFile();
 * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
 * const fs = await Ext4.open(img, { readOnly: false });
 * const f = await fs.openWritable("/app.log", { append: true });
 * await f.write(new TextEncoder().encode("started\n"));
 * await f.close();
 * await fs.close();
 * await Deno.remove(img);
 * ```
 */
export class Ext4WritableFile {
  /** The file's inode number. */
  readonly ino: number;
  /** Sequential writes go to the end (O_APPEND). */
  readonly append: boolean;
  #host: WritableFileHost;
  #position = 0;
  #closed = false;

  /** @internal Made by `Ext4.openWritable`. */
  constructor(host: WritableFileHost, ino: number, append: boolean) {
    this.#host = host;
    this.ino = ino;
    this.append = append;
  }

  /** Where the next sequential write goes (ignored with `append`). */
  get position(): number {
    return this.#position;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #check(): void {
    if (this.#closed) {
      throw new Ext4Error("INVALID", `file (inode ${this.ino}) is closed`, { errno: Errno.EBADF });
    }
  }

  /**
   * Moves the position of sequential writes.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new TextEncoder().encode("hello"));
   * f.seek(0);
   * await f.write(new TextEncoder().encode("J"));
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  seek(position: number): void {
    this.#check();
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new Ext4Error("INVALID", `bad position ${position}`);
    }
    this.#position = position;
  }

  /**
   * The file's current stat.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new Uint8Array(10));
   * console.log((await f.stat()).size); // 10
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  stat(): Promise<Ext4Stat> {
    this.#check();
    return this.#host.stat(this.ino);
  }

  /**
   * Reads up to `length` bytes at `offset` (short at the end of the file); what was written
   * through any handle shows.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new TextEncoder().encode("hello"));
   * const head = await f.read(0, 512);
   * console.log(head.length); // 5
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  read(offset: number, length: number): Promise<Uint8Array> {
    this.#check();
    return this.#host.read(this.ino, offset, length);
  }

  /**
   * Writes `data` at `offset` (pwrite: the position does not move), or without an offset at the
   * position (at the end with `append`) and moves the position past it. Returns the bytes
   * written (all of them). Data beyond {@link WRITE_CHUNK} goes in several transactions.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new Uint8Array(4096), 1 << 20); // a hole before it
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async write(data: Uint8Array, offset?: number): Promise<number> {
    this.#check();
    let at: number;
    if (offset !== undefined) {
      if (!Number.isSafeInteger(offset) || offset < 0) {
        throw new Ext4Error("INVALID", `bad offset ${offset}`);
      }
      at = offset;
    } else {
      at = this.append ? (await this.#host.stat(this.ino)).size : this.#position;
    }
    if (data.length === 0) return 0;
    for (let done = 0; done < data.length;) {
      const n = Math.min(WRITE_CHUNK, data.length - done);
      await this.#host.write(this.ino, at + done, data.subarray(done, done + n));
      done += n;
      if (offset === undefined) this.#position = at + done;
    }
    return data.length;
  }

  /**
   * Sets the file's size: blocks past it are freed, growing adds a hole.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new Uint8Array(5000));
   * await f.truncate(0);
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  truncate(size: number): Promise<void> {
    this.#check();
    return this.#host.truncate(this.ino, size);
  }

  /**
   * fallocate(2): preallocates unwritten blocks (default), punches a hole or zeroes a range of
   * `length` bytes at `offset` (see {@link FallocateOptions}).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.allocate(0, 64 << 10, { keepSize: true });
   * await f.allocate(4096, 4096, { mode: "punchHole" });
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  allocate(offset: number, length: number, options: FallocateOptions = {}): Promise<void> {
    this.#check();
    return this.#host.fallocate(this.ino, offset, length, options);
  }

  /**
   * Makes what was written durable (every write is committed already; this flushes the device).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new Uint8Array(10));
   * await f.sync();
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  sync(): Promise<void> {
    this.#check();
    return this.#host.sync();
  }

  /**
   * Closes the handle; closing twice is harmless. The last close of a file that was removed
   * while open frees it.
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const f = await fs.openWritable("/f");
   * await f.write(new Uint8Array(10));
   * await f.close();
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#host.release(this.ino);
  }

  /**
   * A stream writing sequentially from the position (or at the end with `append`); closing the
   * stream closes the handle, aborting it closes the handle too (what was written stays).
   *
   * @example
   * ```ts
   * import { Ext4 } from "../../mod.ts";
   * const img = await Deno.makeTempFile();
   * await new Deno.Command("mkfs.ext4", { args: ["-qF", img, "4M"] }).output();
   * const fs = await Ext4.open(img, { readOnly: false });
   * const src = ReadableStream.from([new Uint8Array(4096), new Uint8Array(4096)]);
   * await src.pipeTo((await fs.openWritable("/big.iso")).writable());
   * console.log((await fs.stat("/big.iso")).size); // 8192
   * await fs.close();
   * await Deno.remove(img);
   * ```
   */
  writable(): WritableStream<Uint8Array> {
    this.#check();
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const buf = pending.length === 1 ? pending[0] : new Uint8Array(pendingBytes);
      if (pending.length > 1) {
        let at = 0;
        for (const p of pending) {
          buf.set(p, at);
          at += p.length;
        }
      }
      pending = [];
      pendingBytes = 0;
      await this.write(buf);
    };
    return new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (!(chunk instanceof Uint8Array)) {
          throw new Ext4Error("INVALID", "a file stream takes Uint8Array chunks");
        }
        if (chunk.length === 0) return;
        // Copied: the caller may reuse its buffer once write() resolves.
        pending.push(chunk.slice());
        pendingBytes += chunk.length;
        if (pendingBytes >= STREAM_BATCH) await flush();
      },
      close: async () => {
        try {
          await flush();
        } finally {
          await this.close();
        }
      },
      abort: async () => {
        pending = [];
        pendingBytes = 0;
        await this.close();
      },
    });
  }
}
