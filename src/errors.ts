// Errors that callers catch. Bad arguments are `TypeError` / `RangeError`.

import type { LockHolder } from "./lock_holder.ts";

function _by(holder: LockHolder | null | undefined): string {
  return holder ? ` by pid ${holder.pid} on ${holder.hostname}` : "";
}

/**
 * The base class of every lock failure lockbox reports.
 *
 * @example Catch any lock failure
 * ```ts ignore
 * import { FileLock, LockError } from "@lockbox/lockbox";
 * try {
 *   await FileLock.acquire("state.json", { timeout: 100 });
 * } catch (error) {
 *   if (error instanceof LockError) console.error(error.message);
 * }
 * ```
 */
export class LockError extends Error {
  override name = "LockError";
  /**
   * @param message What failed, on which path, and what to do.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The lock was still held by someone else when the timeout ran out.
 *
 * @example
 * ```ts ignore
 * import { FileLock, LockTimeoutError } from "@lockbox/lockbox";
 * try {
 *   await FileLock.acquire("state.json", { timeout: 0 });
 * } catch (error) {
 *   if (error instanceof LockTimeoutError) console.error(error.holder?.pid);
 * }
 * ```
 */
export class LockTimeoutError extends LockError {
  override name = "LockTimeoutError";
  /**
   * @param lockPath The lock file that could not be taken.
   * @param holder What its holder record said, when it could be read.
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly lockPath: string,
    readonly holder: LockHolder | null,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot lock '${lockPath}': still held${
        _by(holder)
      } when the timeout ran out; retry later or raise the timeout`,
      options,
    );
  }
}

/**
 * A single-instance lock is held by another running instance.
 *
 * @example
 * ```ts ignore
 * import { acquireInstanceLock, LockBusyError } from "@lockbox/lockbox";
 * try {
 *   await acquireInstanceLock("archiver.lock");
 * } catch (error) {
 *   if (error instanceof LockBusyError) Deno.exit(1);
 * }
 * ```
 */
export class LockBusyError extends LockError {
  override name = "LockBusyError";
  /**
   * @param lockPath The instance lock file.
   * @param holder The running instance's record, when it could be read.
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly lockPath: string,
    readonly holder: LockHolder | null,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot start: another instance holds '${lockPath}'${
        _by(holder)
      }; wait for it to finish or stop it`,
      options,
    );
  }
}
