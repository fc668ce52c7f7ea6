// What lockbox's own modules may do with a FileLock that its public API
// does not offer. Filled in by FileLock's static block; never re-exported.

import type { _LockHandle } from "../runtime/mod.ts";
import type { _KeptLockFile } from "./kept_lock_file.ts";

/** Hooks into FileLock for lockbox's own modules. */
export const _lockInternals: {
  /** The open lock file of a held lock, or `null` once released. */
  handleOf: (lock: object) => _LockHandle | null;
  /**
   * Makes `release()` close the lock file without unlocking it, so that a
   * child process that inherited it keeps the lock until it exits, as with
   * flock(1).
   */
  shareWithChildren: (lock: object) => void;
  /**
   * Runs `fn` as the holder of `lock`: a request for the same lock file
   * from inside `fn` (through any API) fails at once with a `LockError`
   * instead of waiting for itself.
   */
  runHolding: <R>(lock: object, fn: () => R) => R;
  /**
   * Makes what `runHolding` needs before the lock is taken: on Deno its
   * first use starts Node's compatibility layer (node:async_hooks), tens of
   * milliseconds of CPU that must not be spent while holding a lock.
   */
  prepareHolding: () => void;
  /**
   * A store refused `token` as older than the fence `highest`: if this
   * process handed it out, the next exclusive token of its lock path
   * exceeds `highest`.
   */
  noteStaleFence: (token: number, highest: number) => void;
  /**
   * `FileLock.acquire` (its `LockOptions`, a `FileLock`: typed loosely, as
   * the other hooks, so that this module need not import file_lock.ts),
   * reusing the lock file `kept` holds open, and leaving it there on release
   * instead of closing it.
   */
  acquireKept: (
    path: string | URL,
    options: object,
    kept: _KeptLockFile,
  ) => Promise<object>;
} = {
  handleOf: () => null,
  shareWithChildren: () => {},
  runHolding: (_lock, fn) => fn(),
  prepareHolding: () => {},
  noteStaleFence: () => {},
  acquireKept: () => Promise.reject(new Error("FileLock is not loaded")),
};
