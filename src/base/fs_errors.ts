// The messages of failed file system calls: what failed, why, and what the
// user can do about it.

import { _errorCode } from "../runtime/mod.ts";
import { StoreError } from "./errors.ts";

/**
 * A hint for the user from an error code. `action` is what failed ("read",
 * "write", ...): a file that may not be read is a matter of its own
 * permissions, not of whether anything is writable.
 */
export function _hint(error: unknown, action = ""): string {
  const code = _errorCode(error);
  if (
    (code === "EACCES" || code === "EPERM") && action.startsWith("read")
  ) {
    return "check that this user may read the file (its owner and mode, and the directories above it)";
  }
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return "the disk is full; free some space and retry";
    case "EACCES":
      return "check that this user may write the file and that its directory is writable";
    case "EPERM":
      // Not the permission bits: an attribute (chattr +i, +a), a sticky
      // directory (only a file's owner replaces or removes it there), or a
      // change of owner only root may make.
      return "the file or its directory refuses this user (an immutable or append-only attribute, or a sticky directory where only the file's owner may replace it); check that both are writable by this user";
    case "EROFS":
      return "the file system is mounted read-only";
    case "EISDIR":
      return "the path is a directory; choose a file path";
    case "ENOENT":
      return "check that the directory exists";
    default:
      return "check the path and the file system";
  }
}

/** Permission bits as `ls` users write them: `0664`. */
export function _octal(mode: number | null): string {
  return mode === null ? "unknown" : `0${mode.toString(8).padStart(3, "0")}`;
}

export function _reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The `StoreError` for a failed file system call:
 * "Cannot <action> '<path>': <reason>; <what to do>".
 */
export function _fsError(
  action: string,
  path: string,
  error: unknown,
  suffix = "",
): StoreError {
  return new StoreError(
    path,
    `Cannot ${action} '${path}': ${_reason(error)}; ${
      _hint(error, action)
    }${suffix}`,
    { cause: error },
  );
}
