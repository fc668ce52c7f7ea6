// Running a command while holding a lock, as `flock(1)` does.

import { _onTerminationSignals, _toPath } from "./_runtime.ts";
import { FileLock } from "./file_lock.ts";
import { _startCommand } from "./_command.ts";

/** How {@linkcode runWithLock} locks. */
export interface RunWithLockOptions {
  /**
   * Take the lock shared instead of exclusive.
   *
   * @default {false}
   */
  shared?: boolean;
  /**
   * How long to wait for the lock, in milliseconds; `0` tries once.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /** Gives up waiting for the lock; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** How the command ended, from {@linkcode runWithLock}. */
export interface RunResult {
  /** Its exit code, or 128 + the signal number if a signal killed it (as a shell reports it). */
  code: number;
  /** The number of the signal that killed it, or `null`. */
  signal: number | null;
  /** How long the lock took, in milliseconds. */
  waitedMs: number;
}

/**
 * Runs a command while holding the lock on `lockFile` (the lock file itself,
 * created if missing), as `flock(1)` does: the lock is taken before the
 * command starts and released as soon as it ends. SIGINT and SIGTERM sent to
 * this process are passed on to the command. The command does not inherit
 * the lock, so a daemon it leaves behind does not keep it held.
 *
 * Requires `--allow-read`, `--allow-write` and `--allow-run`.
 *
 * @param lockFile The lock file.
 * @param command The program and its arguments.
 * @param options Shared or exclusive, timeout, abort.
 * @returns How the command ended, and how long the lock took.
 * @throws {LockTimeoutError} If the lock was held elsewhere past `timeout`;
 *   the command was not run.
 * @throws {CommandNotStartedError} If the command could not be started.
 * @throws {TypeError} If `command` is empty.
 *
 * @example
 * ```ts
 * import { runWithLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const result = await runWithLock(`${dir}/job.lock`, ["true"]);
 * console.assert(result.code === 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runWithLock(
  lockFile: string | URL,
  command: string[],
  options: RunWithLockOptions = {},
): Promise<RunResult> {
  if (
    !Array.isArray(command) || command.length === 0 ||
    !command.every((part) => typeof part === "string") || command[0] === ""
  ) {
    throw new TypeError(
      "Cannot run a command under a lock: expected a non-empty array of strings",
    );
  }
  const path = _toPath(lockFile);
  const started = performance.now();
  const lock = await FileLock.acquire(path, {
    lockPath: path,
    shared: options.shared,
    timeout: options.timeout,
    signal: options.signal,
    metadata: { command: command.join(" ") },
  });
  try {
    const waitedMs = performance.now() - started;
    const child = await _startCommand(command);
    const stopForwarding = _onTerminationSignals((signal) =>
      child.kill(signal)
    );
    try {
      const { code, signal } = await child.status;
      return { code: signal === null ? code : 128 + signal, signal, waitedMs };
    } finally {
      stopForwarding();
    }
  } finally {
    await lock.release();
  }
}
