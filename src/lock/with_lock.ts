// withLock: run a function while holding a FileLock.

import { FileLock, type LockOptions } from "./file_lock.ts";
import { _lockInternals } from "./lock_internals.ts";
import type { LockTarget } from "./lock_target.ts";

/**
 * Runs `fn` while holding the lock on `path`, and releases it afterwards,
 * whether `fn` returns or throws.
 *
 * Locks are not re-entrant: calling `withLock` (or `FileLock.acquire`) for the
 * same lock path inside `fn`, in the same async call chain, throws a
 * `LockError` at once instead of waiting for itself forever.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @param path What to lock: `{ lockFile }`, `{ guards }` or a bare path
 *   (the file to guard), as for {@linkcode FileLock.acquire}.
 * @param fn The work to do under the lock; it receives the lock.
 * @param options Mode, timeout, abort signal, lock path and metadata.
 * @returns What `fn` returns.
 * @throws {LockTimeoutError} If the lock could not be taken in time.
 * @throws {LockError} If the lock path is unusable, or this async context holds it already.
 *
 * @example
 * ```ts
 * import { withLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const file = `${dir}/counter.txt`;
 * await withLock(file, async () => {
 *   const n = Number(await Deno.readTextFile(file).catch(() => "0"));
 *   await Deno.writeTextFile(file, String(n + 1));
 * });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function withLock<T>(
  path: string | URL | LockTarget,
  fn: (lock: FileLock) => T | Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  _lockInternals.prepareHolding();
  const lock = await FileLock.acquire(path, options);
  try {
    return await _lockInternals.runHolding(lock, () => fn(lock));
  } finally {
    await lock.release();
  }
}
