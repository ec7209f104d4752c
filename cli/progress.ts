/**
 * Progress of long commands (put, get, journal replay) on stderr. On a terminal: one line
 * redrawn at most 10 times a second and erased at the end. Elsewhere: nothing, unless asked
 * (`--progress`), then plain lines at most once a second and a last one at the end. Updates
 * cost a clock read; there is no timer, so a stalled copy shows a stalled line.
 *
 * @module
 */

/** How progress is shown: a redrawn line, plain lines, or not at all. */
export type ProgressMode = "tty" | "plain" | "off";

/**
 * The mode for a command's `--progress`/`--no-progress` flag (undefined when neither was
 * given): a terminal on stderr draws unless `--no-progress`; elsewhere only `--progress`
 * prints.
 *
 * @example
 * ```ts
 * import { progressMode } from "./progress.ts";
 * console.log(progressMode(false)); // "off"
 * ```
 */
export function progressMode(flag: boolean | undefined): ProgressMode {
  if (flag === false) return "off";
  if (Deno.stderr.isTerminal()) return "tty";
  return flag ? "plain" : "off";
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/**
 * A byte count for people: `512 B`, `1.5 MiB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./progress.ts";
 * console.log(formatBytes(3 << 20)); // "3.0 MiB"
 * ```
 */
export function formatBytes(n: number): string {
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${UNITS[u]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Totals known in advance (either may be unknown). */
export interface ProgressTotals {
  bytes?: number;
  entries?: number;
}

/**
 * One progress display. `update` with the running counts as often as convenient; `done` at
 * the end (also on failure).
 *
 * @example
 * ```ts ignore
 * const p = new Progress("put", progressMode(opts.progress), { bytes: total });
 * p.update(bytesSoFar, entriesSoFar);
 * p.done();
 * ```
 */
export class Progress {
  readonly label: string;
  readonly mode: ProgressMode;
  totals: ProgressTotals;
  /** What the counts are called ("entries", "blocks"). */
  readonly unit: string;
  #start = performance.now();
  #last = -Infinity;
  #bytes = 0;
  #entries = 0;
  #drawn = false;
  #updated = false;
  /** The counts of the last line drawn. */
  #shown = "";
  #enc = new TextEncoder();

  constructor(label: string, mode: ProgressMode, totals: ProgressTotals = {}, unit = "entries") {
    this.label = label;
    this.mode = mode;
    this.totals = totals;
    this.unit = unit;
  }

  /** The counts so far; draws when the last drawing is old enough. */
  update(bytes: number, entries: number): void {
    this.#bytes = bytes;
    this.#entries = entries;
    this.#updated = true;
    if (this.mode === "off") return;
    const now = performance.now();
    if (now - this.#last < (this.mode === "tty" ? 100 : 1000)) return;
    this.#last = now;
    this.#draw(now);
  }

  /**
   * Prints `line` on stdout (e.g. `-v`'s list of objects) without garbling the progress
   * line: it is erased first and redrawn at the next update.
   */
  note(line: string): void {
    this.#erase();
    this.#write(`${line}\n`, Deno.stdout);
  }

  /** Ends the display: a terminal line is erased, plain output gets its final line (if any). */
  done(): void {
    if (this.mode === "tty") this.#erase();
    else if (this.mode === "plain" && this.#updated && this.#shown !== this.#counts()) {
      this.#draw(performance.now());
    }
  }

  /** The text of the progress line at `now` (performance.now() milliseconds). */
  line(now = performance.now()): string {
    const elapsed = Math.max((now - this.#start) / 1000, 1e-3);
    const { bytes: tb, entries: te } = this.totals;
    const parts = [
      tb !== undefined
        ? `${formatBytes(this.#bytes)} / ${formatBytes(tb)}`
        : formatBytes(this.#bytes),
      te !== undefined ? `${this.#entries} / ${te} ${this.unit}` : `${this.#entries} ${this.unit}`,
      `${formatBytes(Math.round(this.#bytes / elapsed))}/s`,
    ];
    // The ETA follows bytes when their total is known, else entries.
    const [done, total] = tb ? [this.#bytes, tb] : [this.#entries, te];
    if (total && done > 0 && done <= total) {
      parts.push(`ETA ${formatDuration((elapsed * (total - done)) / done)}`);
    }
    const pct = total ? ` ${Math.min(100, Math.floor((done / total) * 100))}%` : "";
    return `${this.label}:${pct} ${parts.join(", ")}`;
  }

  #counts(): string {
    return `${this.#bytes}/${this.#entries}`;
  }

  #draw(now: number): void {
    this.#shown = this.#counts();
    const text = this.line(now);
    if (this.mode === "tty") {
      this.#write(`\r\x1b[K${text}`);
      this.#drawn = true;
    } else this.#write(`${text}\n`);
  }

  #erase(): void {
    if (!this.#drawn) return;
    this.#write("\r\x1b[K");
    this.#drawn = false;
  }

  #write(text: string, to: { writeSync(p: Uint8Array): number } = Deno.stderr): void {
    const bytes = this.#enc.encode(text);
    let done = 0;
    while (done < bytes.length) done += to.writeSync(bytes.subarray(done));
  }
}
