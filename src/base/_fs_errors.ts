// The messages of failed file system calls: what failed, why, and what the
// user can do about it.

import { _errorCode } from "../runtime/mod.ts";
import { StoreError } from "./errors.ts";

/** A hint for the user from an error code. */
export function _hint(error: unknown): string {
  switch (_errorCode(error)) {
    case "ENOSPC":
    case "EDQUOT":
      return "the disk is full; free some space and retry";
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return "check that the directory is writable";
    case "EISDIR":
      return "the path is a directory; choose a file path";
    case "ENOENT":
      return "check that the directory exists";
    default:
      return "check the path and the file system";
  }
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
    `Cannot ${action} '${path}': ${_reason(error)}; ${_hint(error)}${suffix}`,
    { cause: error },
  );
}
