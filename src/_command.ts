// Starting a child process, with the error callers catch when it cannot be.

import { type _Child, _errorCode, _spawn } from "./_runtime.ts";
import { CommandNotStartedError } from "./errors.ts";

/**
 * Starts `argv` with this process's stdio.
 *
 * @throws {CommandNotStartedError} If it cannot be started.
 */
export async function _startCommand(argv: string[]): Promise<_Child> {
  try {
    return await _spawn(argv[0], argv.slice(1));
  } catch (error) {
    throw new CommandNotStartedError(argv[0], _errorCode(error), {
      cause: error,
    });
  }
}
