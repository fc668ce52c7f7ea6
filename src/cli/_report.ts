// How an error the library threw becomes a message and an exit status. Its
// own module, loaded by `main` only when a command fails, because telling the
// errors apart needs the classes of every seed system, which `lockbox run`
// and the other lock commands never load otherwise.

import {
  CorruptStoreError,
  LockBusyError,
  LockTimeoutError,
  StoreError,
} from "../base/errors.ts";
import { GroupNotFoundError } from "../seeds/capture_groups.ts";
import {
  AlreadyCheckedOutError,
  NotCheckedOutError,
  NotOwnerError,
} from "../seeds/checkout.ts";
import { ConfigError } from "../seeds/config.ts";
import { DocumentNotFoundError } from "../seeds/document_store.ts";
import {
  _corruptMessage,
  _say,
  EXIT_CONFLICT,
  EXIT_IO,
  EXIT_USAGE,
} from "./_output.ts";

/** The exit code for an error the library threw. */
export function _exitCodeOf(error: unknown): number {
  if (
    error instanceof LockTimeoutError || error instanceof LockBusyError ||
    error instanceof AlreadyCheckedOutError ||
    error instanceof NotCheckedOutError || error instanceof NotOwnerError ||
    error instanceof GroupNotFoundError ||
    error instanceof DocumentNotFoundError
  ) {
    return EXIT_CONFLICT;
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    return EXIT_USAGE;
  }
  return EXIT_IO;
}

/** Says what went wrong on stderr, worded for the shell; returns the status. */
export function _report(error: unknown): number {
  if (error instanceof CorruptStoreError) {
    _say(_corruptMessage(error));
    return EXIT_IO;
  }
  if (error instanceof ConfigError || error instanceof StoreError) {
    _say(error.message);
    return EXIT_IO;
  }
  _say(error instanceof Error ? error.message : String(error));
  return _exitCodeOf(error);
}
