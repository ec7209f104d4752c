import type { Command } from "@commander-js/extra-typings";
import type { Timespec } from "../../lib/ext4/filesystem.ts";
import { type EditCommand, registerEdit } from "../edit_command.ts";
import { ExitCode } from "../exit_codes.ts";
import { CliError } from "../output.ts";
import { statOrNull } from "../paths.ts";

function badDate(text: string): CliError {
  return new CliError(`invalid date format '${text}'`, ExitCode.FAILURE);
}

/** Milliseconds since the epoch as seconds and nanoseconds. */
function fromMs(ms: number, text: string): Timespec {
  if (!Number.isFinite(ms)) throw badDate(text);
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: (ms - sec * 1000) * 1e6 };
}

/**
 * `touch -d`: `@SECONDS[.FRACTION]`, or a date Date.parse reads (ISO 8601 above all, e.g.
 * `2024-05-01T12:00:00.123456789Z`), its fraction of a second kept to the nanosecond.
 *
 * @example
 * ```ts
 * import { parseTouchDate } from "./touch.ts";
 * console.log(parseTouchDate("@1700000000.5")); // { sec: 1700000000, nsec: 500000000 }
 * ```
 */
export function parseTouchDate(text: string): Timespec {
  const epoch = /^@(-?\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (epoch) return { sec: Number(epoch[1]), nsec: Number((epoch[2] ?? "").padEnd(9, "0")) };
  const frac = /^(.*\d\d:\d\d:\d\d)\.(\d{1,9})(.*)$/.exec(text);
  if (!frac) return fromMs(Date.parse(text), text);
  const t = fromMs(Date.parse(frac[1] + frac[3]), text);
  return { sec: t.sec, nsec: Number(frac[2].padEnd(9, "0")) };
}

/**
 * `touch -t`: `[[CC]YY]MMDDhhmm[.ss]` in local time, as touch(1) (YY 69-99 is 19YY, else
 * 20YY).
 *
 * @example
 * ```ts ignore
 * parseTouchStamp("202405011200.30");
 * ```
 */
export function parseTouchStamp(text: string): Timespec {
  const m = /^(\d{2}|\d{4})?(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{2}))?$/.exec(text);
  if (!m) throw badDate(text);
  const now = new Date();
  let year = now.getFullYear();
  if (m[1]?.length === 4) year = Number(m[1]);
  else if (m[1]) year = Number(m[1]) + (Number(m[1]) >= 69 ? 1900 : 2000);
  const [month, day, hour, minute, second] = [m[2], m[3], m[4], m[5], m[6] ?? "0"].map(Number);
  const d = new Date(year, month - 1, day, hour, minute, second);
  // Date rolls 31 April over to 1 May; touch refuses it.
  if (d.getMonth() !== month - 1 || d.getDate() !== day || hour > 23 || minute > 59) {
    throw badDate(text);
  }
  if (second > 60) throw badDate(text);
  return fromMs(d.getTime(), text);
}

/** `touch PATH…`: create empty files or set their times. */
export const touchCommand: EditCommand = {
  name: "touch",
  description: "create empty files, or set access and modification times",
  about:
    "Creates missing files empty (mode 644, owner 0) or sets the access and modification times of existing ones, without mounting the filesystem: now, or -d DATE (ISO 8601 to the nanosecond, or @SECONDS) or -t STAMP as touch(1). -a and -m change one of the two times, -c creates nothing, -h sets a symlink's own times.",
  failure: "a missing parent, or a bad date",
  examples: [
    "ext4ts touch disk.img /etc/machine-id",
    "ext4ts touch -d 2024-05-01T12:00:00Z disk.img /srv/www/index.html",
    "ext4ts touch -m -t 202405011200 disk.img /srv/data",
  ],
  configure(cmd: Command) {
    cmd
      .helpOption("--help", "display help for command")
      .argument("<paths...>", "files to touch")
      .option("-a", "change only the access time")
      .option("-m", "change only the modification time")
      .option("-c, --no-create", "do not create missing files")
      .option("-d, --date <date>", "use DATE (ISO 8601, or @SECONDS) instead of now")
      .option("-t <stamp>", "use [[CC]YY]MMDDhhmm[.ss] (local time) instead of now")
      .option("-h, --no-dereference", "set a symlink's own times (creates nothing)");
  },
  async run(fs, args, opts) {
    if (opts.date !== undefined && opts.t !== undefined) {
      throw new CliError("cannot specify times from more than one source", ExitCode.USAGE);
    }
    const time = typeof opts.date === "string"
      ? parseTouchDate(opts.date)
      : typeof opts.t === "string"
      ? parseTouchStamp(opts.t)
      : fromMs(Date.now(), "now");
    // -a alone keeps the modification time, -m alone the access time.
    const atime = opts.m && !opts.a ? null : time;
    const mtime = opts.a && !opts.m ? null : time;
    const noFollow = opts.dereference === false;
    for (const p of args[0] as string[]) {
      if (await statOrNull(fs, p, noFollow)) {
        await fs.utime(p, atime, mtime, { noFollow });
      } else if (opts.create !== false && !noFollow) {
        const now = fromMs(Date.now(), "now");
        await fs.writeFile(p, new Uint8Array(0), {
          createNew: true,
          atime: atime ?? now,
          mtime: mtime ?? now,
        });
      }
    }
  },
};

/** Registers `ext4ts touch`. */
export function registerTouch(program: Command): void {
  registerEdit(program, touchCommand);
}
