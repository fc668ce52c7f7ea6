// What every command shares: exit codes, the _Exit that ends a command
// with one, writing to stdout and stderr whole, colour, and the wording of
// a corrupt store's remedy for the shell.

import type { CorruptStoreError } from "../base/errors.ts";
import {
  _env,
  _isTerminal,
  _lstat,
  _writeStderr,
  _writeStdout,
} from "../runtime/mod.ts";

export const EXIT_OK = 0;
export const EXIT_CONFLICT = 1;
export const EXIT_USAGE = 2;
export const EXIT_IO = 3;
/** `flock(1)`'s status for a command it could not start (EX_UNAVAILABLE). */
export const EXIT_NOT_STARTED = 69;

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    conflict (the lock is held elsewhere) or not found
  2    usage error
  3    I/O or data error (a file cannot be read or written, a corrupt store)
  run: the command's own status; 128+N if signal N killed it; 69 if it
       could not be started (as flock(1))
  128+N  stopped by signal N (store watch: 130 on SIGINT, 143 on SIGTERM)

Colour only on a terminal, and never when NO_COLOR is set.`;

/** A failure that has already been explained; ends `main` with `code`. */
export class _Exit extends Error {
  constructor(readonly code: number, message?: string) {
    super(message);
  }
}

export function _say(message: string): void {
  _writeStderr(`lockbox: ${message}\n`);
}

/** A line on stdout, written whole before this returns; a failure throws. */
export function _print(text: string): void {
  _writeStdout(`${text}\n`);
}

export function _json(value: unknown): void {
  _print(JSON.stringify(value, null, 2));
}

export function _color(): boolean {
  return _isTerminal("stdout") && !_env("NO_COLOR");
}

/** `text` as one shell word: quoted only when it needs to be. */
export function _shellWord(text: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(text)
    ? text
    : `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * What the CLI says about a corrupt store: the library's message names the
 * API's remedy (`onCorrupt`), a person at a shell needs the command. A
 * corrupt journal is quarantined through its store file.
 */
export function _corruptMessage(error: CorruptStoreError): string {
  if (error.quarantinedTo !== undefined || _lstat(error.path) === null) {
    return error.message.replace(
      /, or use onCorrupt: "quarantine"$/,
      "",
    );
  }
  const file = error.path.replace(/\.journal$/, "");
  return `Cannot read store '${error.path}': ${error.reason}; the file was left as it is: repair it, restore a backup, or move it aside and go on from its newest valid backup with: lockbox store check --quarantine ${
    _shellWord(file)
  }`;
}
