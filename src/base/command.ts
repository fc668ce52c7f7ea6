// Starting a child process, with the error callers catch when it cannot be.

import {
  type _Child,
  _errorCode,
  _spawn,
  type _SpawnOptions,
} from "../runtime/mod.ts";
import { CommandNotStartedError } from "./errors.ts";

/**
 * Starts `argv` with this process's stdio.
 *
 * @throws {CommandNotStartedError} If it cannot be started.
 */
export async function _startCommand(
  argv: string[],
  options: _SpawnOptions = {},
): Promise<_Child> {
  try {
    return await _spawn(argv[0], argv.slice(1), options);
  } catch (error) {
    throw new CommandNotStartedError(argv[0], _errorCode(error), {
      cause: error,
    });
  }
}
