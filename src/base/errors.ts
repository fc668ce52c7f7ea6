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
  /** Always `"LockError"`. */
  override name = "LockError";
  /**
   * Creates a LockError.
   *
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
  /** Always `"LockTimeoutError"`. */
  override name = "LockTimeoutError";
  /**
   * Creates a LockTimeoutError.
   *
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

/** One step of a deadlock: a process, and the lock it waits for. */
export interface DeadlockStep {
  /** The waiting process. */
  pid: number;
  /** Its host, for a PostgreSQL lock's cycle (processes on several hosts). */
  hostname?: string;
  /**
   * The lock it waits for: a lock file's path (a PostgreSQL lock's name), or
   * `device:inode` where no path could be found.
   */
  lock: string;
}

/**
 * A wait for a lock was part of a deadlock: processes waiting for each
 * other's locks in a cycle, so none of them could ever go on. One process
 * of the cycle (chosen so that no two fail for the same cycle) gets this
 * error instead of the lock; the others go on once it lets go of what it
 * holds. To avoid it, take locks in one fixed order everywhere.
 *
 * @example
 * ```ts ignore
 * import { DeadlockError, withLock } from "@lockbox/lockbox";
 * try {
 *   await withLock("a.json", () => withLock("b.json", () => {}));
 * } catch (error) {
 *   if (error instanceof DeadlockError) console.error(error.cycle);
 * }
 * ```
 */
export class DeadlockError extends LockError {
  /** Always `"DeadlockError"`. */
  override name = "DeadlockError";
  /**
   * Creates a DeadlockError.
   *
   * @param lockPath The lock this process waited for.
   * @param cycle The cycle, from this process round to it again: each
   *   process and the lock it waits for, held by the next one.
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly lockPath: string,
    readonly cycle: DeadlockStep[],
    options?: ErrorOptions,
  ) {
    const who = (step: DeadlockStep) =>
      `pid ${step.pid}${
        step.hostname === undefined ? "" : ` on ${step.hostname}`
      }`;
    super(
      `Cannot lock '${lockPath}': deadlock: ${
        cycle.length === 0
          ? `the server found one (${(options?.cause as Error)?.message})`
          : cycle.map((step, i) =>
            `${who(step)} waits for '${step.lock}' held by ${
              who(cycle[(i + 1) % cycle.length])
            }`
          ).join(", ")
      }; this wait was given up so that the others go on; take locks in one fixed order everywhere`,
      options,
    );
  }
}

/**
 * A held lock may have been lost: its database session ended, its heartbeat
 * missed the deadline, its lock file was removed or replaced, or it was
 * released. `lock.signal` aborts with this as its reason.
 *
 * @example
 * ```ts ignore
 * import { LockLostError } from "@lockbox/lockbox";
 * lock.signal.addEventListener("abort", () => {
 *   if (lock.signal.reason instanceof LockLostError) stopWriting();
 * });
 * ```
 */
export class LockLostError extends LockError {
  /** Always `"LockLostError"`. */
  override name = "LockLostError";
  /**
   * Creates a LockLostError.
   *
   * @param lock The lock: a lock file, or a PostgreSQL lock's name.
   * @param reason Why it may be lost, such as "it was released".
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly lock: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`Lost the lock '${lock}': ${reason}`, options);
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
  /** Always `"LockBusyError"`. */
  override name = "LockBusyError";
  /**
   * Creates a LockBusyError.
   *
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

/**
 * A store's file does not hold a valid document: it does not parse, or
 * `validate` rejected it. The file is left as it was (unless it was
 * quarantined, then `quarantinedTo` says where its bytes went).
 *
 * @example
 * ```ts ignore
 * import { CorruptStoreError, JsonStore } from "@lockbox/lockbox";
 * const store = new JsonStore("state.json", { initial: {} });
 * try {
 *   await store.read();
 * } catch (error) {
 *   if (error instanceof CorruptStoreError) console.error(error.path);
 * }
 * ```
 */
export class CorruptStoreError extends Error {
  /** Always `"CorruptStoreError"`. */
  override name = "CorruptStoreError";
  /**
   * Creates a CorruptStoreError.
   *
   * @param path The store file.
   * @param reason Why it is not a valid document.
   * @param quarantinedTo Where its bytes were moved, if they were.
   * @param options The underlying cause (the parse or validation error).
   */
  constructor(
    readonly path: string,
    readonly reason: string,
    readonly quarantinedTo?: string,
    options?: ErrorOptions,
  ) {
    super(
      quarantinedTo === undefined
        ? `Cannot read store '${path}': ${reason}; the file was left as it is: repair it, restore a backup, or use onCorrupt: "quarantine"`
        : `Store '${path}' was corrupt (${reason}); its bytes were moved to '${quarantinedTo}'`,
      options,
    );
  }
}

/**
 * A write carried a fencing token older than one already applied to the
 * store: its writer stalled past its turn, and the write was refused.
 *
 * @example
 * ```ts ignore
 * import { FileLock, JsonStore, StaleFenceError } from "@lockbox/lockbox";
 * const store = new JsonStore("state.json", { initial: { n: 0 } });
 * const lock = await FileLock.acquire("job");
 * try {
 *   await store.update((s) => { s.n++; }, { fence: lock.token });
 * } catch (error) {
 *   if (error instanceof StaleFenceError) console.error("lost our turn");
 * }
 * ```
 */
export class StaleFenceError extends Error {
  /** Always `"StaleFenceError"`. */
  override name = "StaleFenceError";
  /**
   * Creates a StaleFenceError.
   *
   * @param path The store file.
   * @param fence The fence the write carried.
   * @param highest The highest fence already applied.
   * @param options The underlying cause, if any.
   */
  constructor(
    readonly path: string,
    readonly fence: number,
    readonly highest: number,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot write store '${path}': fence ${fence} is older than ${highest}, already applied; take the lock again for a new token`,
      options,
    );
  }
}

/**
 * A store or file operation failed on the file system (permissions, a full
 * disk, a failed fsync, a path that is a directory or a symlink).
 *
 * @example
 * ```ts ignore
 * import { atomicWriteFile, StoreError } from "@lockbox/lockbox";
 * try {
 *   await atomicWriteFile("/read-only/state.json", "{}");
 * } catch (error) {
 *   if (error instanceof StoreError) console.error(error.path, error.message);
 * }
 * ```
 */
export class StoreError extends Error {
  /** Always `"StoreError"`. */
  override name = "StoreError";
  /**
   * Creates a StoreError.
   *
   * @param path The file the operation was on.
   * @param message What failed and what to do.
   * @param options The underlying cause.
   */
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The command could not be started (not found, not executable). The lock
 * was released.
 *
 * @example
 * ```ts ignore
 * import { CommandNotStartedError, runWithLock } from "@lockbox/lockbox";
 * try {
 *   await runWithLock("job.lock", ["no-such-command"]);
 * } catch (error) {
 *   if (error instanceof CommandNotStartedError) console.error(error.command);
 * }
 * ```
 */
export class CommandNotStartedError extends Error {
  /** Always `"CommandNotStartedError"`. */
  override name = "CommandNotStartedError";
  /**
   * Creates a CommandNotStartedError.
   *
   * @param command The program that could not be started.
   * @param code The error code (`ENOENT`, `EACCES`), if known.
   * @param options The underlying cause.
   */
  constructor(
    readonly command: string,
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot run '${command}': ${
        code === "ENOENT"
          ? "no such command; check the name and PATH"
          : code === "EACCES"
          ? "permission denied; check that it is an executable file"
          : (options?.cause as Error)?.message ?? "it could not be started"
      }`,
      options,
    );
  }
}
