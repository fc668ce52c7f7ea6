// Running a command while holding a lock, as `flock(1)` does.

import {
  type _Child,
  type _LockHandle,
  _lstat,
  _onTerminationSignals,
  _openReadOnly,
  _toPath,
} from "../runtime/mod.ts";
import { _after } from "../base/_promise.ts";
import { _checkTimeout } from "./_kernel.ts";
import { LockTimeoutError } from "../base/errors.ts";
import { _lockInternals } from "./_lock_internals.ts";
import { FileLock } from "./file_lock.ts";
import { _startCommand } from "../base/_command.ts";

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
  /**
   * Write the command line into the lock file's holder record (as
   * `metadata.command`), where `lockbox holder` and `lockbox status` show
   * it. The record stays in the file after the command ends, readable by
   * anyone who may read the lock file (created with mode 0666 less the
   * umask, so readable by all under the usual umask): pass `false`
   * when its arguments are secret.
   *
   * @default {true}
   */
  recordCommand?: boolean;
  /**
   * Called once the lock is held, just before the command starts, with how
   * long the lock took (`lockbox run --verbose` reports it here, as
   * `flock(1)` does).
   */
  onLocked?: (waitedMs: number) => void;
  /**
   * Do not pass the open lock file on to the command (`flock -o`). By
   * default the command inherits it, as with `flock(1)`: the lock stays
   * held while the command runs even if this process is killed, and a
   * background process the command leaves holding the file keeps it held.
   *
   * @default {false}
   */
  close?: boolean;
}

/** How the command ended, from {@linkcode runWithLock}. */
export interface RunResult {
  /** Its exit code, or 128 + the signal number if a signal killed it (as a shell reports it). */
  code: number;
  /**
   * The number of the signal that killed it, or that ended the run before
   * the command started; otherwise `null`.
   */
  signal: number | null;
  /** Whether the command was started (a signal may end the wait first). */
  started: boolean;
  /** How long the lock took, in milliseconds. */
  waitedMs: number;
}

const _SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;

/** A lock `runWithLock` holds: on a lock file, or on a directory. */
/** A lock a command runs under, whatever holds it (a file, a database). */
export interface _Held {
  /** The open lock file to pass on to the command, if any. */
  handle?: _LockHandle;
  /** Leaves the lock to a child that inherited it, on release. */
  shareWithChildren(): void;
  release(): Promise<void>;
  /** Aborts if the lock is lost while the command runs. */
  lost?: AbortSignal;
}

function _fileLock(lock: FileLock): _Held {
  return {
    handle: _lockInternals.handleOf(lock)!,
    shareWithChildren: () => _lockInternals.shareWithChildren(lock),
    release: () => lock.release(),
  };
}

/**
 * Locks a directory itself, as `flock(1)` does: opened read-only, with no
 * holder record (a directory holds none) and no inode re-check (a directory
 * is never removed by lockbox).
 */
async function _lockDirectory(
  dir: string,
  options: RunWithLockOptions,
  signal: AbortSignal,
): Promise<_Held> {
  const timeout = _checkTimeout(options.timeout);
  const exclusive = options.shared !== true;
  const handle = _openReadOnly(dir);
  let shared = false;
  const held: _Held = {
    handle,
    shareWithChildren: () => shared = true,
    release: () => {
      if (!shared) handle.unlock();
      handle.close();
      return Promise.resolve();
    },
  };
  if (handle.tryLock(exclusive)) return held;
  if (timeout === 0 || signal.aborted) {
    handle.close();
    signal.throwIfAborted();
    throw new LockTimeoutError(dir, null);
  }
  let giveUp!: (error: unknown) => void;
  const gaveUp = new Promise<never>((_, reject) => giveUp = reject);
  const cancelTimer = _after(
    timeout,
    () => giveUp(new LockTimeoutError(dir, null)),
  );
  const onAbort = () => giveUp(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  // A kernel wait cannot be called off: if it is given up on, the lock it
  // is granted later is let go at once.
  const granted = handle.lock(exclusive);
  try {
    await Promise.race([granted, gaveUp]);
    return held;
  } catch (error) {
    granted.then(() => handle.unlock(), () => {}).finally(() => handle.close());
    throw error;
  } finally {
    cancelTimer();
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Runs a command while holding the lock on `lockFile` (the lock file itself,
 * created if missing, or a directory, which is locked as it is, with no
 * holder record), as `flock(1)` does: the lock is taken before the
 * command starts and released as soon as it ends. The command inherits the
 * open lock file (unless `close`), so it keeps the lock even if this process
 * is killed.
 *
 * SIGINT and SIGTERM are caught from the moment this is called until it
 * returns: one that arrives while waiting for the lock ends the wait and the
 * command is never started (`started: false`, `code` 128 + N); one that
 * arrives once the command runs is passed on to it.
 *
 * Requires `--allow-read`, `--allow-write`, `--allow-run`, and on Deno
 * `--allow-ffi` unless `close` (Deno has no API to let a child inherit a
 * file; lockbox clears its close-on-exec flag through the C library).
 *
 * @param lockFile The lock file.
 * @param command The program and its arguments.
 * @param options Shared or exclusive, timeout, abort, close.
 * @returns How the command ended, and how long the lock took.
 * @throws {LockTimeoutError} If the lock was held elsewhere past `timeout`;
 *   the command was not run.
 * @throws {CommandNotStartedError} If the command could not be started.
 * @throws {TypeError} If `command` is empty.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runWithLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const result = await runWithLock(`${dir}/job.lock`, ["true"]);
 * assert.equal(result.code, 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runWithLock(
  lockFile: string | URL,
  command: string[],
  options: RunWithLockOptions = {},
): Promise<RunResult> {
  const path = _toPath(lockFile);
  return await _runUnder(
    command,
    options,
    async (endWait, metadata) =>
      _lstat(path)?.isDirectory
        ? await _lockDirectory(path, options, endWait)
        : _fileLock(
          await FileLock.acquire(path, {
            lockPath: path,
            shared: options.shared,
            timeout: options.timeout,
            signal: endWait,
            metadata,
          }),
        ),
  );
}

/**
 * Runs `command` under the lock `take` gets, as `runWithLock` does: a
 * SIGINT or SIGTERM during the wait ends it (the command never starts),
 * one after the start goes to the command; a lock lost while the command
 * runs sends it SIGTERM and is reported through `onLost`. `take` gets the
 * signal that ends its wait and the holder metadata to record (the command
 * line, unless `recordCommand` is false).
 */
export async function _runUnder(
  command: string[],
  options: RunWithLockOptions & { onLost?: (reason: unknown) => void },
  take: (
    endWait: AbortSignal,
    metadata: Record<string, unknown> | undefined,
  ) => Promise<_Held>,
): Promise<RunResult> {
  if (
    !Array.isArray(command) || command.length === 0 ||
    !command.every((part) => typeof part === "string") || command[0] === ""
  ) {
    throw new TypeError(
      "Cannot run a command under a lock: expected a non-empty array of strings",
    );
  }
  const started = performance.now();
  // Listen before anything can start: a signal that found no listener
  // would kill this process and leave the command running unlocked.
  const caught: ("SIGINT" | "SIGTERM")[] = [];
  const stopWaiting = new AbortController();
  let child: _Child | null = null;
  const stopListening = _onTerminationSignals((signal) => {
    if (child) child.kill(signal);
    else {
      caught.push(signal);
      stopWaiting.abort(new Error(`${signal} while waiting for the lock`));
    }
  });
  const signaled = (waitedMs: number): RunResult => {
    const signal = _SIGNAL_NUMBERS[caught[0]];
    return { code: 128 + signal, signal, started: false, waitedMs };
  };
  try {
    // The caller's signal, or a termination signal, ends the wait.
    const endWait = options.signal
      ? AbortSignal.any([options.signal, stopWaiting.signal])
      : stopWaiting.signal;
    let lock: _Held;
    try {
      lock = await take(
        endWait,
        options.recordCommand === false
          ? undefined
          : { command: command.join(" ") },
      );
    } catch (error) {
      if (caught.length > 0) return signaled(performance.now() - started);
      throw error;
    }
    let released = false;
    const onLost = () => {
      if (released) return;
      options.onLost?.(lock.lost!.reason);
      child?.kill("SIGTERM");
    };
    try {
      const waitedMs = performance.now() - started;
      if (caught.length > 0) return signaled(waitedMs);
      options.onLocked?.(waitedMs);
      const passLock = options.close ? undefined : lock.handle;
      child = await _startCommand(command, { passLock });
      if (passLock) lock.shareWithChildren();
      lock.lost?.addEventListener("abort", onLost, { once: true });
      if (lock.lost?.aborted) onLost();
      // A signal caught while the command was being started goes to it now.
      for (const signal of caught) child.kill(signal);
      const { code, signal } = await child.status;
      return {
        code: signal === null ? code : 128 + signal,
        signal,
        started: true,
        waitedMs,
      };
    } finally {
      released = true;
      lock.lost?.removeEventListener("abort", onLost);
      await lock.release();
    }
  } finally {
    stopListening();
  }
}
