// FileLock: a cross-process advisory lock on a sidecar file, taken with
// flock(2). See ARCHITECTURE.md, "The lock protocol". In one process,
// requests for one lock path wait in line (_file_queue.ts); the holder
// record is written on the way in (_holder_write.ts).

import { _checkBlockingWait, _checkTimeout } from "../base/checks.ts";
import { _promiseTry } from "../base/promise.ts";
import { _stillLinked } from "../base/file_identity.ts";
import {
  type _AsyncStore,
  _asyncStore,
  _errorCode,
  type _LockHandle,
} from "../runtime/mod.ts";
import { LockError } from "../base/errors.ts";
import { _lockInternals } from "./lock_internals.ts";
import type { _KeptLockFile } from "./kept_lock_file.ts";
import { _metadataJson } from "./_holder_record.ts";
import { _noteStaleFence, _recordFloor } from "./_holder_write.ts";
import { _convert } from "./_lock_file_open.ts";
import {
  _DEADLOCK_TIMEOUT,
  type _FileQueue,
  type _Grant,
  _Request,
  _start,
  _wrap,
} from "./_file_queue.ts";
import { _LossSignal } from "./_lock_loss.ts";
import { _resolveTarget, type LockTarget } from "./lock_target.ts";

/** How to take a {@linkcode FileLock}. */
export interface LockOptions {
  /**
   * Take the lock shared (many holders) instead of exclusive (one holder).
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
  /** Gives up waiting; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * The lock file of a guarded file given as a bare path or `{ guards }`
   * (to lock a file itself, pass `{ lockFile }` as the target instead).
   *
   * @default {`${path}.lock`}
   */
  lockPath?: string | URL;
  /** Caller metadata kept in the holder record, such as `{ user, message }`. */
  metadata?: Record<string, unknown>;
  /**
   * Remove the lock file on release, while still holding it, if this process
   * is then its only holder, it is still the file at `lockPath`, and no
   * other process has it open (so none can be waiting for it: a waiter that
   * never re-checks the inode, such as `flock(1)`, would otherwise end up
   * holding a removed file beside the next holder of a new one). On Linux,
   * in the initial PID namespace (not in a container, whose `/proc` hides
   * processes outside it), as root or where every process's `/proc/PID/fd`
   * is readable; elsewhere the file stays.
   *
   * @default {false}
   */
  removeOnRelease?: boolean;
  /**
   * Write the lock file as seed 001's tools write theirs, and read them: the
   * holder's pid alone. The holder record and the fencing token then live in
   * `<lockPath>.lockbox`, where those tools, which look for `*.lock`, never
   * look; it stays when the lock file is removed, so tokens keep growing.
   * Seed 001's monitor then finds a live pid in a held lock file, and its
   * cleanup never removes it. `processFiles` locks this way. A lock file
   * with other content (neither empty, a pid nor a lockbox record) is locked
   * as it is, with no record and token 0.
   *
   * @default {false}
   */
  pidFile?: boolean;
  /**
   * Wait for a lock held by another process by blocking this thread in
   * `flock(2)` until the kernel grants it, instead of on a helper thread. The
   * hand-off is faster, because the kernel wakes this thread directly, but
   * nothing else runs in this thread meanwhile: no timers, no I/O callbacks,
   * no signal listeners (`Deno.addSignalListener`), no other JavaScript. Meant for scripts, CLI commands and worker processes
   * that have nothing else to do while they wait. A blocked thread cannot be
   * woken early, so this cannot be combined with a `signal` or with a
   * `timeout` other than `Infinity` or `0`.
   *
   * When another request in this process already holds or awaits the same
   * lock, this one queues behind it as usual, without blocking.
   *
   * @default {false}
   */
  blocking?: boolean;
  /**
   * How long a wait for a lock another process holds lasts before it looks
   * for a deadlock, in milliseconds, and then again every as long while it
   * waits: processes that wait for each other's locks in a cycle (Linux,
   * from `/proc/locks`). In a deadlock, one lockbox process of the cycle
   * (the same whichever looks: the highest pid) fails its wait with a
   * `DeadlockError` and the others go on. A wait that is merely long is
   * never one. `Infinity` never looks; a `blocking` wait cannot.
   *
   * @default {1000}
   */
  deadlockTimeout?: number;
}

/**
 * The locks the current async call chain holds (see `withLock`), made by the
 * first `withLock`: node:async_hooks is loaded only then on Deno.
 */
let _context: _AsyncStore<FileLock[]> | undefined;

/**
 * A held cross-process lock on a lock file: the sidecar `<file>.lock` of a
 * file it guards (`{ guards }` or a bare path), or the file named as
 * `{ lockFile }` (see {@linkcode LockTarget}).
 *
 * The kernel releases it when the holding process dies, so a crash never
 * leaves a lock held. Locks taken by `flock(1)`, Python's `fcntl.flock` and
 * other flock users on the same lock file exclude lockbox and are excluded by
 * it.
 *
 * The holder record is written only into an empty lock file or one that
 * already holds a lockbox record; a file with other content is locked as it
 * is, with no record and token 0. A lockbox lock file this process may not
 * write is refused for an exclusive lock (its token could not advance), and
 * locked shared with its recorded token. A new lock file gets mode `0o666`
 * less the process umask.
 *
 * Requires `--allow-read` and `--allow-write` (and `--allow-sys=hostname` to
 * record the host name).
 *
 * @example Hold a lock for a block of code
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * {
 *   await using lock = await FileLock.acquire(`${dir}/state.json`);
 *   assert.ok(lock.held && lock.token >= 1);
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileLock implements AsyncDisposable {
  #handle: _LockHandle | null;
  #queue: _FileQueue;
  #removeOnRelease: boolean;
  #kept: _KeptLockFile | undefined;
  #acquiredBy: _Request;
  #sharedWithChildren = false;
  #loss: _LossSignal;

  /**
   * The file this lock guards, as given (made absolute); for a
   * `{ lockFile }` target, the lock file.
   */
  readonly path: string;
  /** The lock file. */
  readonly lockPath: string;
  /** The fencing token: it grows by one with every exclusive acquisition. */
  readonly token: number;
  /** Whether this lock is shared. */
  readonly shared: boolean;

  static {
    _lockInternals.handleOf = (lock) => (lock as FileLock).#handle;
    _lockInternals.shareWithChildren = (lock) => {
      (lock as FileLock).#sharedWithChildren = true;
    };
    _lockInternals.prepareHolding = () => {
      _context ??= _asyncStore();
    };
    _lockInternals.runHolding = (lock, fn) => {
      const context = _context ??= _asyncStore();
      return context.run([...context.getStore() ?? [], lock as FileLock], fn);
    };
    _lockInternals.noteStaleFence = _noteStaleFence;
    _lockInternals.acquireKept = (path, options, kept) =>
      new Promise<FileLock | null>((resolve, reject) => {
        FileLock.#request(
          path,
          options as LockOptions,
          false,
          kept,
          resolve,
          reject,
        );
      }) as Promise<FileLock>;
  }

  private constructor(request: _Request, { handle, token, queue }: _Grant) {
    this.path = request.path;
    this.lockPath = request.lockPath;
    this.shared = request.shared;
    this.token = token;
    this.#handle = handle;
    this.#queue = queue;
    this.#loss = new _LossSignal(this.lockPath, () => this.#handle);
    this.#removeOnRelease = request.removeOnRelease;
    this.#kept = request.kept;
    this.#acquiredBy = request;
  }

  /** Whether this lock is still held (not yet released). */
  get held(): boolean {
    return this.#handle !== null;
  }

  /**
   * Aborts with a `LockLostError` when the lock is released, or when
   * {@linkcode FileLock.verify} would turn false (its lock file was removed
   * or replaced): checked every second while someone listens, and whenever
   * this is read. The same as a PostgreSQL lock's `signal`, so code can pass
   * it to work that must stop when the lock is gone.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { FileLock } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const lock = await FileLock.acquire(`${dir}/state.json`);
   * const signal = lock.signal;
   * assert.ok(!signal.aborted);
   * await lock.release();
   * assert.ok(signal.aborted);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  get signal(): AbortSignal {
    return this.#loss.signal;
  }

  /**
   * Takes the lock on `path`, waiting as long as `timeout` allows.
   *
   * Requires `--allow-read` and `--allow-write`.
   *
   * @param path What to lock: `{ lockFile }` locks that file itself,
   *   `{ guards }` (or a bare path, the file to guard) locks its sidecar
   *   `${path}.lock`, unless `options.lockPath` names another. A missing
   *   parent directory of the lock file is created.
   * @param options Mode, timeout, abort signal, lock path and metadata.
   * @returns The held lock.
   * @throws {LockTimeoutError} If the lock was still held elsewhere when the timeout ran out.
   * @throws {LockError} If the lock path is unusable (a symlink, a directory,
   *   an unwritable directory, a lockbox lock file this process may not
   *   write, for an exclusive lock), or this async context already holds it.
   * @throws {RangeError} If `timeout` is negative or not a number.
   *
   * @example
   * ```ts
   * import { FileLock } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const lock = await FileLock.acquire(`${dir}/state.json`, { timeout: 5_000 });
   * try {
   *   // read, change and write state.json
   * } finally {
   *   await lock.release();
   * }
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static acquire(
    path: string | URL | LockTarget,
    options: LockOptions = {},
  ): Promise<FileLock> {
    return new Promise<FileLock | null>((resolve, reject) => {
      FileLock.#request(path, options, false, undefined, resolve, reject);
    }) as Promise<FileLock>;
  }

  /**
   * Takes the lock if it is free now, without waiting.
   *
   * @param path What to lock: `{ lockFile }`, `{ guards }` or a bare path
   *   (the file to guard), as for {@linkcode FileLock.acquire}.
   * @param options Mode, lock path and metadata (`timeout` is ignored).
   * @returns The held lock, or `null` if another holder has it.
   * @throws {LockError} If the lock path is unusable.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { FileLock } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const first = await FileLock.tryAcquire(`${dir}/job`);
   * const second = await FileLock.tryAcquire(`${dir}/job`);
   * assert.ok(first !== null && second === null);
   * await first?.release();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static tryAcquire(
    path: string | URL | LockTarget,
    options: LockOptions = {},
  ): Promise<FileLock | null> {
    return new Promise<FileLock | null>((resolve, reject) => {
      FileLock.#request(
        path,
        { ...options, timeout: 0 },
        true,
        undefined,
        resolve,
        reject,
      );
    });
  }

  static #request(
    path: string | URL | LockTarget,
    options: LockOptions,
    nullOnBusy: boolean,
    kept: _KeptLockFile | undefined,
    resolve: (lock: FileLock | null) => void,
    reject: (error: unknown) => void,
  ): void {
    let checked;
    try {
      checked = _checkRequest(path, options, nullOnBusy);
    } catch (error) {
      reject(error);
      return;
    }
    const request: _Request = new _Request(
      checked.path,
      checked.lockPath,
      options.shared === true,
      checked.metadataJson,
      options.removeOnRelease === true,
      options.pidFile === true,
      nullOnBusy,
      kept,
      options.signal,
      checked.deadlockTimeout,
      (grant) => resolve(grant === null ? null : new FileLock(request, grant)),
      reject,
    );
    _start(request, checked.timeout, options.blocking === true);
  }

  /**
   * Checks that the lock is still held and that the file at `lockPath` is
   * still the one locked: a process that ignores the protocol may have removed
   * or replaced it, and then another process can lock the new file.
   *
   * @returns `true` if held and still the file at `lockPath`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { FileLock } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const lock = await FileLock.acquire(`${dir}/state.json`);
   * assert.ok(await lock.verify());
   * await Deno.remove(lock.lockPath);
   * assert.ok(!await lock.verify());
   * await lock.release();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  verify(): Promise<boolean> {
    return _promiseTry(() =>
      this.#handle !== null &&
      _stillLinked(this.#handle, this.lockPath) !== null
    );
  }

  /**
   * Releases the lock. Calling it again does nothing.
   *
   * The lock file is closed before the returned promise resolves, or
   * handed straight on to a request of this process that is waiting for
   * the same lock (which then needs no `open`).
   *
   * With `removeOnRelease`, the lock file is removed first, while still
   * held, if this is its only holder, it is still the file at `lockPath`,
   * and no other process has it open (see ARCHITECTURE.md, "Removing a lock
   * file"); otherwise it stays.
   *
   * @returns A promise that resolves once the lock is released.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { FileLock } from "@lockbox/lockbox";
   * const dir = await Deno.makeTempDir();
   * const lock = await FileLock.acquire(`${dir}/state.json`);
   * await lock.release();
   * await lock.release(); // no-op
   * assert.ok(!lock.held);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  release(): Promise<void> {
    const handle = this.#handle;
    if (handle === null) return Promise.resolve();
    this.#handle = null;
    if (!this.shared) _recordFloor(this.#acquiredBy, handle, this.token);
    this.#loss.lose("it was released");
    // Converting to exclusive fails if anyone else still shares the file.
    if (
      this.#removeOnRelease && !this.#sharedWithChildren &&
      _convert(handle, true)
    ) {
      return this.#removeAndRelease(handle);
    }
    this.#close(handle);
    return Promise.resolve();
  }

  async #removeAndRelease(handle: _LockHandle): Promise<void> {
    try {
      if (_stillLinked(handle, this.lockPath)) {
        // Loaded on first use: few locks remove their file.
        const { _removeHeldLockFiles } = await import("./_lock_removal.ts");
        await _removeHeldLockFiles([{ handle, lockPath: this.lockPath }]);
      }
    } catch (error) {
      if (_errorCode(error) !== "ENOENT") {
        this.#close(handle, false);
        throw _wrap(this.lockPath, error);
      }
    }
    this.#close(handle, false);
  }

  /**
   * Releases the OS lock and closes the lock file before returning, unless
   * `reuse` lets the next request of this process waiting for it (see
   * `_FileQueue.spare`), or the owner that keeps it (`_KeptLockFile`), have it.
   */
  #close(handle: _LockHandle, reuse = true): void {
    const queue = this.#queue;
    const handOn = reuse && !this.#sharedWithChildren &&
      (queue.length > 0 || this.#kept !== undefined);
    if (!handOn) {
      // A child that inherited the lock file keeps the lock until it closes
      // it; unlocking would take it from the child too. Otherwise one call
      // (on Deno, the close alone).
      // A failed release still leaves the queue: the handle is closed.
      try {
        if (this.#sharedWithChildren) handle.close();
        else handle.unlockAndClose();
      } finally {
        this.#released();
      }
      return;
    }
    try {
      handle.unlock();
    } catch (error) {
      try {
        handle.close();
      } finally {
        this.#released();
      }
      throw error;
    }
    queue.spare = handle;
    this.#released();
    if (queue.spare === handle) {
      queue.spare = null;
      if (this.#kept !== undefined) this.#kept.keep(this.lockPath, handle);
      else handle.close();
    }
  }

  #released(): void {
    this.#queue.leave();
  }

  /** Releases the lock: `await using lock = await FileLock.acquire(p)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Checks the arguments of an acquire, in the order its errors are
 * promised; resolves the target to its paths.
 */
function _checkRequest(
  path: string | URL | LockTarget,
  options: LockOptions,
  nullOnBusy: boolean,
) {
  const timeout = _checkTimeout(options.timeout);
  const deadlockTimeout = _checkTimeout(
    options.deadlockTimeout,
    "deadlockTimeout",
    _DEADLOCK_TIMEOUT,
  );
  if (options.blocking === true) {
    _checkBlockingWait("blocking", "timeout", timeout, options.signal);
  }
  const resolved = _resolveTarget(
    path,
    "guards",
    nullOnBusy ? "FileLock.tryAcquire" : "FileLock.acquire",
    options.lockPath,
  );
  const lockPath = resolved.lockPath;
  options.signal?.throwIfAborted();
  // Waiting for a lock this call chain holds would wait for itself; a
  // single try (tryAcquire, timeout 0) only finds it busy.
  const waits = !nullOnBusy && timeout > 0;
  for (const held of waits ? _context?.getStore() ?? [] : []) {
    if (held.held && held.lockPath === lockPath) {
      throw new LockError(
        `Cannot lock '${lockPath}': this async context already holds it ` +
          `(lockbox's locks are not re-entrant: a store's update or ` +
          `withLock called from inside another on the same file would ` +
          `wait for itself); use the lock or value you already have`,
      );
    }
  }
  const metadataJson = _metadataJson(options.metadata);
  return { ...resolved, timeout, deadlockTimeout, metadataJson };
}
