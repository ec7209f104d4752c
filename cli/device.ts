/**
 * Opening the device or image a command names, with `--offset`, reporting failure to open
 * as an I/O error (exit 7) with one clear line.
 *
 * @module
 */

import { type BlockDevice, OffsetBlockDevice } from "../lib/block/block_device.ts";
import { Ext4Error } from "../lib/errors.ts";
import {
  type FileBlockDevice,
  openBlockDevice,
  type OpenDeviceOptions,
} from "../ffi/file_device.ts";
import { CliError } from "./output.ts";
import { ExitCode, exitCodeFor } from "./exit_codes.ts";

/** Parses a byte count such as `1048576`, `2048s` (sectors), `1M`, `1MiB`. */
export function parseByteCount(text: string, what = "offset"): number {
  const m = /^(\d+)\s*(s|k|kib|m|mib|g|gib|t|tib)?$/i.exec(text.trim());
  if (!m) {
    throw new CliError(
      `invalid ${what} '${text}': expected bytes, e.g. 1048576, 2048s or 1MiB`,
      ExitCode.USAGE,
    );
  }
  const unit = (m[2] ?? "").toLowerCase();
  const mult: Record<string, number> = {
    "": 1,
    s: 512,
    k: 1024,
    kib: 1024,
    m: 2 ** 20,
    mib: 2 ** 20,
    g: 2 ** 30,
    gib: 2 ** 30,
    t: 2 ** 40,
    tib: 2 ** 40,
  };
  const value = Number(m[1]) * mult[unit];
  if (!Number.isSafeInteger(value)) {
    throw new CliError(`${what} '${text}' is too large`, ExitCode.USAGE);
  }
  return value;
}

/** An opened device and the raw file device under any offset window. */
export interface CliDevice {
  device: BlockDevice;
  file: FileBlockDevice;
}

/**
 * Opens `path` for a command; failures become CliErrors with exit code 7 (or 8 when busy,
 * 9 when read-write was required of a read-only device).
 *
 * @example
 * ```ts ignore
 * const { device } = openCliDevice("disk.img", { offset: 1048576 });
 * ```
 */
export function openCliDevice(
  path: string,
  options: OpenDeviceOptions & { offset?: number } = {},
): CliDevice {
  let file: FileBlockDevice;
  try {
    file = openBlockDevice(path, options);
  } catch (e) {
    // A DeviceOpenError: 7, or 8 busy, 9 write-protected.
    if (e instanceof Ext4Error) throw new CliError(`cannot open ${e.message}`, exitCodeFor(e));
    throw e;
  }
  if (!options.offset) return { device: file, file };
  try {
    return { device: new OffsetBlockDevice(file, options.offset), file };
  } catch (e) {
    file.close();
    if (e instanceof Ext4Error) throw new CliError(`${path}: ${e.message}`, ExitCode.USAGE);
    throw e;
  }
}
