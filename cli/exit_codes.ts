/**
 * Exit codes of every ext4ts command, documented in README.md. Scripts depend on them:
 * never renumber, only add.
 *
 * @module
 */

import { DeviceOpenError, Ext4Error } from "../lib/errors.ts";

/** The documented exit codes. */
export const ExitCode = {
  /** Success. */
  OK: 0,
  /** The operation failed (e.g. no such file inside the filesystem). */
  FAILURE: 1,
  /** Bad usage: unknown command or option, missing argument. */
  USAGE: 2,
  /** The device or image is not an ext2/3/4 filesystem. */
  NOT_EXT4: 3,
  /** The filesystem's journal needs recovery. */
  NEEDS_RECOVERY: 4,
  /** The filesystem has errors or a corrupt structure. */
  FS_ERRORS: 5,
  /** The filesystem uses features ext4ts cannot handle for this operation. */
  UNSUPPORTED: 6,
  /** I/O or permission error (cannot open, read or write the device). */
  IO: 7,
  /** The device is busy (mounted or held open exclusively). */
  BUSY: 8,
  /** The device or filesystem is read-only and the operation needs to write. */
  READ_ONLY: 9,
  /** Timed out waiting (umount --timeout). */
  TIMEOUT: 10,
} as const;

/** What each exit code means, one line each: the README table, `--help` and the man page. */
export const EXIT_CODE_MEANING: Record<ExitCodeValue, string> = {
  0: "success",
  1: "the operation failed (e.g. no such file inside the filesystem)",
  2: "bad usage: unknown command or option, missing or bad argument",
  3: "not an ext2/3/4 filesystem",
  4: "the journal needs recovery",
  5: "the filesystem has errors or a corrupt structure",
  6: "unsupported: the filesystem uses features ext4ts cannot handle for this operation",
  7: "cannot open, read or write the device or image (missing, permission denied, I/O error)",
  8: "busy: the device or image is in use (mounted, held, written or served by ext4ts)",
  9: "read-only: the device is read-only and the operation needs to write",
  10: "timed out waiting",
};

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/**
 * The exit code for an error thrown by the library.
 *
 * @example
 * ```ts
 * import { Ext4Error } from "../lib/errors.ts";
 * import { exitCodeFor } from "./exit_codes.ts";
 * console.log(exitCodeFor(new Ext4Error("NOT_EXT4", "bad magic"))); // 3
 * ```
 */
export function exitCodeFor(e: unknown): ExitCodeValue {
  if (!(e instanceof Ext4Error)) return ExitCode.FAILURE;
  if (e instanceof DeviceOpenError) {
    // The device itself: missing or unreadable is "cannot open" (7), like permission denied.
    if (e.code === "BUSY") return ExitCode.BUSY;
    if (e.code === "READ_ONLY") return ExitCode.READ_ONLY;
    return ExitCode.IO;
  }
  switch (e.code) {
    case "NOT_EXT4":
      return ExitCode.NOT_EXT4;
    case "NEEDS_RECOVERY":
      return ExitCode.NEEDS_RECOVERY;
    case "CORRUPT":
      return ExitCode.FS_ERRORS;
    case "UNSUPPORTED":
      return ExitCode.UNSUPPORTED;
    case "IO":
    case "PERMISSION":
      return ExitCode.IO;
    case "BUSY":
      return ExitCode.BUSY;
    case "READ_ONLY":
      return ExitCode.READ_ONLY;
    default:
      return ExitCode.FAILURE;
  }
}
