// FileLock: a cross-process advisory lock on a sidecar file, taken with
// flock(2). See ARCHITECTURE.md, "The lock protocol".
//
// In one process, requests for one lock path wait in a FIFO queue here; only
// the head touches the OS lock. An uncontended acquire is a handful of
// non-blocking system calls and no trip to the runtime's thread pool. A
// contended one parks one pool thread per path (a blocking flock) and hands
// the lock on as soon as the kernel grants it; a request that timed out or
// was aborted leaves that wait to finish and pass the lock to the next
// request, or release it at once.

import { _checkBlockingWait, _checkTimeout } from "../base/checks.ts";
import { _promiseTry } from "../base/promise.ts";
import { _stillLinked } from "../base/file_identity.ts";
import { AsyncLocalStorage } from "node:async_hooks";
import { dirname } from "node:path";
import {
  _createNew,
  _errorCode,
  type _FileStat,
  _hostname,
  type _LockHandle,
  _lstat,
  _mkdirp,
  _onWindows,
  _openExisting,
  _openReadOnly,
  _pid,
  _readProcLocks,
  _unrefTimer,
} from "../runtime/mod.ts";
import {
  DeadlockError,
  LockError,
  LockLostError,
  LockTimeoutError,
} from "../base/errors.ts";
import { LockQueue, LockQueues } from "./queue.ts";
import { _lockInternals } from "./lock_internals.ts";
import type { _KeptLockFile } from "./kept_lock_file.ts";
import { _FILE_TOKEN_MIN } from "./fence.ts";
import { _hint, _octal } from "../base/fs_errors.ts";
import { _removeHeldLockFiles } from "./_lock_removal.ts";
import { _checkLockFileStat, _heldRecord } from "./kernel.ts";
import {
  _fileKey,
  _findDeadlock,
  _graphOf,
  _parseFlocks,
  _underHeldLock,
} from "./wait_graph.ts";
import {
  _decodeToken,
  _encodeRecord,
  _firstToken,
  _isDamagedRecord,
  _MAX_RECORD_BYTES,
  _metadataJson,
  _noteToken,
  _pidBytes,
  _pidInFile,
  _readRecord,
  _recordFileOf,
  _recordText,
} from "./_holder_record.ts";
import type { LockHolder } from "../base/lock_holder.ts";
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

/** One call to acquire, from its start until it is settled. */
class _Request {
  constructor(
    readonly path: string,
    readonly lockPath: string,
    readonly shared: boolean,
    readonly metadataJson: string | undefined,
    readonly removeOnRelease: boolean,
    readonly pidFile: boolean,
    readonly nullOnBusy: boolean,
    readonly kept: _KeptLockFile | undefined,
    readonly signal: AbortSignal | undefined,
    readonly deadlockTimeout: number,
    readonly resolve: (lock: FileLock | null) => void,
    readonly reject: (error: unknown) => void,
  ) {}

  /** Waits in `queue`'s line until its turn, its timeout or its signal. */
  waitIn(queue: _FileQueue, timeout: number): void {
    queue.wait(this, {
      timeout,
      signal: this.signal,
      timedOut: () => this.busy(),
      giveUp: (error) => this.settle(null, error),
    });
  }

  settle(lock: FileLock | null, error?: unknown): void {
    if (lock) this.resolve(lock);
    else if (error === undefined) this.resolve(null);
    else this.reject(error);
  }

  /** What a request that found the lock taken settles with. */
  busy(): LockTimeoutError | undefined {
    if (this.nullOnBusy) return undefined;
    let holder: LockHolder | null = null;
    try {
      holder = _heldRecord(this.lockPath);
    } catch {
      // The error names the path either way; the holder is a courtesy.
    }
    return new LockTimeoutError(this.lockPath, holder);
  }
}

/**
 * The requests of this process for one lock path. Only the head touches
 * the OS lock: `serve` tries it, and while the kernel makes it wait,
 * `serving` holds the rest of the line.
 */
class _FileQueue extends LockQueue<_Request> {
  /** The timer of the deadlock check of the kernel wait in progress. */
  detector: ReturnType<typeof setTimeout> | undefined;
  /**
   * The lock file a release of this path just unlocked, while that release
   * serves the next request in line (`pump`): a hand-off within the
   * process reuses the open file instead of opening it again. Whatever the
   * pump leaves here goes back to the releaser at once (closed, or kept by
   * its owner), so nothing stays open after the release returns.
   */
  spare: _LockHandle | null = null;

  get lockPath(): string {
    return this.key;
  }

  /** Takes the OS lock for `head` if it is free, or starts a kernel wait. */
  protected override serve(head: _Request): boolean {
    let attempt;
    try {
      attempt = _tryTake(this, head.shared, head.kept);
    } catch (error) {
      this.shift();
      head.settle(null, _wrap(this.lockPath, error));
      return true;
    }
    if (attempt.stat) {
      this.shift();
      _grant(this, head, attempt.handle, attempt.stat);
      return true;
    }
    _waitInKernel(this, attempt.handle, head.shared);
    return false;
  }
}

const _queues = new LockQueues<_Request, _FileQueue>(
  (lockPath, onIdle) => new _FileQueue(lockPath, onIdle),
);
const _context = new AsyncLocalStorage<FileLock[]>();
let _newLock: (
  request: _Request,
  handle: _LockHandle,
  token: number,
  queue: _FileQueue,
) => FileLock;

function _wrap(lockPath: string, error: unknown): unknown {
  if (error instanceof LockError || error instanceof RangeError) return error;
  const hint = _hint(error);
  return new LockError(
    `Cannot lock '${lockPath}': ${
      (error as Error)?.message ?? String(error)
    }; ${hint}`,
    { cause: error },
  );
}

/**
 * Lock files this process has locked, and whether each is executable: such
 * a path is opened at once, without the lstat before the open, because the
 * inode check after the lock (`_stillLinked`: the open file beside lstat)
 * refuses it if it has turned into anything but that file since. Bounded;
 * cleared when full.
 */
const _known = new Map<string, boolean>();
const _MAX_KNOWN = 1024;

function _remember(lockPath: string, stat: _FileStat): void {
  if (_known.size >= _MAX_KNOWN && !_known.has(lockPath)) _known.clear();
  _known.set(lockPath, _isExecutable(stat));
}

/**
 * The lock path of each exclusive token this process handed out lately
 * (bounded; cleared when full), and for a lock path whose token a store
 * refused as stale, the fence that refused it: the next exclusive token of
 * that path exceeds it, so that taking the lock again helps even when the
 * lock file started from a clock that is behind (see _noteStaleFence).
 */
const _tokenPaths = new Map<number, string>();
const _floors = new Map<string, number>();
const _MAX_TOKEN_PATHS = 1024;

/** A store refused `token` as older than `highest`: raise its lock's floor. */
function _noteStaleFence(token: number, highest: number): void {
  const lockPath = _tokenPaths.get(token);
  if (lockPath === undefined) return;
  if (_floors.size >= _MAX_TOKEN_PATHS) _floors.clear();
  _floors.set(lockPath, Math.max(_floors.get(lockPath) ?? highest, highest));
}

/**
 * Opens the lock file without following symlinks, creating it if needed; or
 * reuses the file a release in this process has just unlocked, or the one
 * `kept` holds open (the inode check after the lock tells whether it is
 * still the file at lockPath).
 */
function _open(
  queue: _FileQueue,
  kept: _KeptLockFile | undefined,
): _LockHandle {
  const lockPath = queue.lockPath;
  const spare = queue.spare ?? kept?.take(lockPath) ?? null;
  if (spare !== null) {
    if (queue.spare === spare) queue.spare = null;
    return spare;
  }
  const executable = _known.get(lockPath);
  if (executable !== undefined) {
    try {
      return executable ? _openReadOnly(lockPath) : _openExisting(lockPath);
    } catch {
      // Gone or changed: look before opening, below.
      _known.delete(lockPath);
    }
  }
  for (let attempt = 0;; attempt++) {
    const stat = _lstat(lockPath);
    _checkLockFileStat(lockPath, stat);
    try {
      // An executable (a script locked as itself, as `flock "$0"` does) is
      // opened read-only: Linux refuses to run a file open for writing.
      if (stat !== null) {
        return (stat.mode ?? 0) & 0o111
          ? _openReadOnly(lockPath)
          : _openExisting(lockPath);
      }
      try {
        return _createNew(lockPath);
      } catch (error) {
        if (_errorCode(error) !== "ENOENT") throw error;
        _mkdirp(dirname(lockPath));
        return _createNew(lockPath);
      }
    } catch (error) {
      const code = _errorCode(error);
      // Removed or created between the lstat and the open: look again.
      if ((code === "ENOENT" || code === "EEXIST") && attempt < 100) continue;
      // Windows: a file deleted while another handle has it open stays,
      // pending deletion, until that handle closes, and opening it is
      // denied (ERROR_ACCESS_DENIED) until then.
      if (_onWindows && code === "EACCES" && attempt < 100) continue;
      if (_onWindows && code === "EACCES") {
        throw new LockError(
          `Cannot lock '${lockPath}': it cannot be opened (access denied), as a file pending deletion cannot until every handle to it is closed; retry, or check its permissions`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}

/**
 * One non-blocking attempt. Returns the open handle either way: locked, or
 * ready for a blocking wait.
 */
function _tryTake(
  queue: _FileQueue,
  shared: boolean,
  kept: _KeptLockFile | undefined,
): { handle: _LockHandle; stat: _FileStat | null } {
  const lockPath = queue.lockPath;
  while (true) {
    const handle = _open(queue, kept);
    try {
      if (!handle.tryLock(!shared)) return { handle, stat: null };
      const stat = _stillLinked(handle, lockPath);
      if (stat) {
        _remember(lockPath, stat);
        return { handle, stat };
      }
      _known.delete(lockPath);
      handle.unlock();
      handle.close();
    } catch (error) {
      handle.close();
      throw error;
    }
  }
}

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
  #lost: AbortController | null = null;
  #watch: ReturnType<typeof setInterval> | undefined;

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
    _newLock = (request, handle, token, queue) =>
      new FileLock(request, handle, token, queue);
    _lockInternals.handleOf = (lock) => (lock as FileLock).#handle;
    _lockInternals.shareWithChildren = (lock) => {
      (lock as FileLock).#sharedWithChildren = true;
    };
    _lockInternals.runHolding = (lock, fn) =>
      _context.run([...(_context.getStore() ?? []), lock as FileLock], fn);
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

  private constructor(
    request: _Request,
    handle: _LockHandle,
    token: number,
    queue: _FileQueue,
  ) {
    this.path = request.path;
    this.lockPath = request.lockPath;
    this.shared = request.shared;
    this.token = token;
    this.#handle = handle;
    this.#queue = queue;
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
    if (this.#lost === null) {
      this.#lost = new AbortController();
      if (this.#handle === null) {
        this.#lose("it was released");
      } else {
        this.#watch = setInterval(() => this.#check(), 1000);
        _unrefTimer(this.#watch);
      }
    }
    this.#check();
    return this.#lost.signal;
  }

  #check(): void {
    const handle = this.#handle;
    if (handle === null || this.#lost === null) return;
    let current = false;
    try {
      current = _stillLinked(handle, this.lockPath) !== null;
    } catch {
      // Cannot look: say nothing rather than a false alarm.
      current = true;
    }
    if (!current) {
      this.#lose(
        `its lock file '${this.lockPath}' was removed or replaced; another process may hold a lock on the new one`,
      );
    }
  }

  #lose(reason: string): void {
    clearInterval(this.#watch);
    this.#watch = undefined;
    if (this.#lost !== null && !this.#lost.signal.aborted) {
      this.#lost.abort(new LockLostError(this.lockPath, reason));
    }
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
    let absolute: string;
    let lockPath: string;
    let timeout: number;
    let metadataJson: string | undefined;
    let deadlockTimeout: number;
    try {
      timeout = _checkTimeout(options.timeout);
      deadlockTimeout = _checkTimeout(
        options.deadlockTimeout,
        "deadlockTimeout",
        _DEADLOCK_TIMEOUT,
      );
      if (options.blocking === true) {
        _checkBlockingWait("blocking", "timeout", timeout, options.signal);
      }
      ({ path: absolute, lockPath } = _resolveTarget(
        path,
        "guards",
        nullOnBusy ? "FileLock.tryAcquire" : "FileLock.acquire",
        options.lockPath,
      ));
      options.signal?.throwIfAborted();
      // Waiting for a lock this call chain holds would wait for itself; a
      // single try (tryAcquire, timeout 0) only finds it busy.
      const waits = !nullOnBusy && timeout > 0;
      for (const held of waits ? _context.getStore() ?? [] : []) {
        if (held.held && held.lockPath === lockPath) {
          throw new LockError(
            `Cannot lock '${lockPath}': this async context already holds it ` +
              `(lockbox's locks are not re-entrant: a store's update or ` +
              `withLock called from inside another on the same file would ` +
              `wait for itself); use the lock or value you already have`,
          );
        }
      }
      metadataJson = _metadataJson(options.metadata);
    } catch (error) {
      reject(error);
      return;
    }
    const shared = options.shared === true;
    const request = new _Request(
      absolute,
      lockPath,
      shared,
      metadataJson,
      options.removeOnRelease === true,
      options.pidFile === true,
      nullOnBusy,
      kept,
      options.signal,
      deadlockTimeout,
      resolve,
      reject,
    );
    const queue = _queues.get(lockPath);
    if (!queue.free(shared)) {
      // Someone in this process is ahead: wait in line, or give up now.
      if (timeout === 0) request.settle(null, request.busy());
      else request.waitIn(queue, timeout);
      return;
    }
    // First in line: try right away, with no trip to the thread pool.
    let attempt;
    try {
      attempt = _tryTake(queue, shared, kept);
    } catch (error) {
      request.settle(null, _wrap(lockPath, error));
      queue.dropIfIdle();
      return;
    }
    if (attempt.stat) {
      _grant(queue, request, attempt.handle, attempt.stat);
      return;
    }
    if (timeout === 0) {
      attempt.handle.close();
      request.settle(null, request.busy());
      queue.dropIfIdle();
      return;
    }
    request.waitIn(queue, timeout);
    if (options.blocking === true) _waitBlocking(queue, attempt.handle, shared);
    else _waitInKernel(queue, attempt.handle, shared);
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
    this.#lose("it was released");
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
 * Turns the lock `handle` holds into `exclusive` or shared without
 * blocking; `false` if it cannot. flock converts in place; Windows locks
 * stack and never convert, so there the lock is let go and tried again in
 * the other mode, and after `false` it is no longer held.
 */
function _convert(handle: _LockHandle, exclusive: boolean): boolean {
  if (_onWindows) handle.unlock();
  return handle.tryLock(exclusive);
}

/** Whether a file has an execute bit (a script locked as itself). */
function _isExecutable(stat: _FileStat): boolean {
  return ((stat.mode ?? 0) & 0o111) !== 0;
}

/** The first bytes of a lock file, as far as a record can reach. */
function _head(handle: _LockHandle, stat: _FileStat): Uint8Array {
  const bytes = new Uint8Array(Math.min(stat.size, _MAX_RECORD_BYTES));
  return bytes.subarray(0, handle.readFromStart(bytes));
}

/** Gives `request` the OS lock on `handle`: writes the holder record. */
function _grant(
  queue: _FileQueue,
  request: _Request,
  handle: _LockHandle,
  stat: _FileStat,
): void {
  let lock: FileLock;
  try {
    // Windows: the record beside the lock file, which no other handle may
    // read while it is locked, and a shared holder may not write.
    const token = request.pidFile || _onWindows
      ? _writePidFile(request, handle, stat, !_onWindows)
      : _writeRecord(request, handle, stat);
    lock = _newLock(request, handle, token, queue);
  } catch (error) {
    handle.unlock();
    handle.close();
    request.settle(null, _wrap(request.lockPath, error));
    return;
  }
  queue.enter(request.shared);
  request.settle(lock);
}

/** Writes the holder record into the lock file; returns the token. */
function _writeRecord(
  request: _Request,
  handle: _LockHandle,
  stat: _FileStat,
): number {
  // Under the exclusive lock no one else writes, so one read tells; a
  // shared holder may be writing its record beside ours, so read again.
  const old = _readRecord(
    handle,
    stat.size,
    _decodeToken,
    request.shared ? 1000 : 1,
  );
  // A file with content that is not a lockbox record (a script locked as
  // `flock script.sh` does, a pid another tool wrote), or one this process
  // may not write, is never written. A lockbox record with a bad checksum
  // is rewritten.
  const damaged = old === "torn" && _isDamagedRecord(_head(handle, stat));
  const ours = typeof old === "number" || damaged || stat.size === 0;
  if (ours && !handle.writable && !request.shared && !_isExecutable(stat)) {
    // Token 0 here would leave every user who may not write this file
    // with the same token, and their fenced writes could not be told
    // apart: refuse rather than degrade.
    throw new LockError(
      `Cannot lock '${request.lockPath}' exclusively: this process may not write it (owner uid ${stat.uid}, group ${stat.gid}, mode ${
        _octal(stat.mode)
      }), so it could neither advance the fencing token nor record its holder; make the lock file writable by every user of the lock (for a shared group: chmod g+w, in a setgid directory with umask 002), or take the lock shared`,
    );
  }
  // A shared holder keeps the token, which it can read without writing.
  const foreign = !handle.writable || !ours;
  const token = !ours
    ? 0
    : !handle.writable
    ? typeof old === "number" ? old : 0
    : _nextToken(request, typeof old === "number" ? old : null);
  _noteToken(token);
  if (!foreign) {
    const text = _recordText(
      token,
      _pid(),
      _hostname(),
      request.shared,
      request.metadataJson,
    );
    handle.writeAtStart(_encodeRecord(text, stat.size));
  }
  return token;
}

/**
 * Before an exclusive lock whose token a store refused is let go: its
 * record gets the fence that refused it as its token, so that the next
 * holder, in any process, gets a token above that fence (without it, a
 * holder whose clock is behind, on a lock file it made, would leave the
 * file's tokens below the fence for every later holder that increments
 * them). Best effort: a record that cannot be written stays as it is.
 */
function _recordFloor(
  request: _Request,
  handle: _LockHandle,
  token: number,
): void {
  const floor = _floors.get(request.lockPath);
  if (floor === undefined || floor <= token) return;
  if (_tokenPaths.get(token) !== request.lockPath) return;
  try {
    const text = _recordText(
      floor,
      _pid(),
      _hostname(),
      false,
      request.metadataJson,
    );
    // Where _grant wrote the record: beside the lock file on Windows.
    if (!request.pidFile && !_onWindows) {
      if (handle.writable) {
        handle.writeAtStart(_encodeRecord(text, handle.stat().size));
      }
      return;
    }
    const records = _openRecordFile(_recordFileOf(request.lockPath));
    if (records === null) return;
    try {
      records.writeAtStart(_encodeRecord(text, records.stat().size));
    } finally {
      records.close();
    }
  } catch {
    // The record stays; this process's next token still exceeds the fence.
  }
}

/**
 * The token a holder that may write the record takes after `previous` (the
 * recorded one, `null` for none): a shared holder keeps it; an exclusive one
 * is FileLock's family (2^50 and up, see fence.ts) even after a record
 * another tool wrote with a smaller one, and exceeds a fence that refused
 * this lock path's last one (_floors).
 */
function _nextToken(request: _Request, previous: number | null): number {
  if (request.shared && previous !== null) return previous;
  let token = previous === null
    ? _firstToken()
    : Math.max(previous + 1, _FILE_TOKEN_MIN);
  if (request.shared) return token;
  if (_floors.size > 0) {
    const floor = _floors.get(request.lockPath);
    if (floor !== undefined && floor >= token) token = floor + 1;
    _floors.delete(request.lockPath);
  }
  if (_tokenPaths.size >= _MAX_TOKEN_PATHS) _tokenPaths.clear();
  _tokenPaths.set(token, request.lockPath);
  return token;
}

/**
 * Option `pidFile`: writes the holder's pid alone into the lock file, and
 * the holder record into its record file; returns the token. Without
 * `writePid` (Windows), the lock file is left as it is.
 */
function _writePidFile(
  request: _Request,
  handle: _LockHandle,
  stat: _FileStat,
  writePid = true,
): number {
  const head = _head(handle, stat);
  // A lockbox record here is this file's from before it was a pid file.
  const own = _decodeToken(head);
  const ours = stat.size === 0 || _pidInFile(head) !== null ||
    typeof own === "number" || _isDamagedRecord(head);
  if (!handle.writable || !ours) return 0;
  let token = 0;
  const records = _openRecordFile(_recordFileOf(request.lockPath));
  if (records !== null) {
    try {
      const size = records.stat().size;
      const old = _readRecord(
        records,
        size,
        _decodeToken,
        request.shared ? 1000 : 1,
      );
      const previous = typeof old === "number"
        ? old
        : typeof own === "number"
        ? own
        : null;
      token = _nextToken(request, previous);
      _noteToken(token);
      records.writeAtStart(
        _encodeRecord(
          _recordText(
            token,
            _pid(),
            _hostname(),
            request.shared,
            request.metadataJson,
          ),
          size,
        ),
      );
    } finally {
      records.close();
    }
  }
  if (!writePid) return token;
  const pid = _pidBytes(_pid());
  handle.writeAtStart(pid);
  if (stat.size > pid.length) handle.truncate(pid.length);
  return token;
}

/**
 * Opens (or creates) a record file for writing, never through a symlink;
 * `null` where this process may not write it (the lock is then taken with
 * no record, token 0).
 */
function _openRecordFile(path: string): _LockHandle | null {
  for (let attempt = 0;; attempt++) {
    const stat = _lstat(path);
    _checkLockFileStat(path, stat);
    try {
      if (stat === null) return _createNew(path);
      const handle = _openExisting(path);
      const opened = handle.stat();
      if (
        handle.writable && opened.dev === stat.dev && opened.ino === stat.ino
      ) return handle;
      handle.close();
      if (!handle.writable) return null;
    } catch (error) {
      const code = _errorCode(error);
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
        return null;
      }
      if (code !== "ENOENT" && code !== "EEXIST") throw error;
    }
    if (attempt >= 100) {
      throw new LockError(
        `Cannot write the lock record '${path}': it keeps changing; check what else writes it`,
      );
    }
  }
}

function _waitInKernel(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = true;
  const head = queue.head;
  if (head !== undefined && head.deadlockTimeout !== Infinity) {
    _lookForDeadlock(queue, head.deadlockTimeout);
  }
  handle.lock(!shared).then(
    () => _onKernelGrant(queue, handle, shared),
    (error) => _onKernelError(queue, handle, error),
  );
}

/**
 * Option `blocking`: waits in this thread until the kernel grants it. (Should
 * the lock file turn out to have been replaced meanwhile, the request starts
 * over through `pump`, which waits on a helper thread: `pump` also runs on
 * release, where blocking the caller would be wrong.)
 */
function _waitBlocking(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = true;
  try {
    handle.lockSync(!shared);
  } catch (error) {
    _onKernelError(queue, handle, error);
    return;
  }
  _onKernelGrant(queue, handle, shared);
}

function _onKernelError(
  queue: _FileQueue,
  handle: _LockHandle,
  error: unknown,
): void {
  queue.serving = false;
  _stopLooking(queue);
  handle.close();
  const head = queue.shift();
  head?.settle(null, _wrap(queue.lockPath, error));
  queue.pump();
}

function _onKernelGrant(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = false;
  _stopLooking(queue);
  const head = queue.head;
  let stat: _FileStat | null = null;
  try {
    if (
      head !== undefined && queue.compatible(head.shared) &&
      // The request that started the wait may have given up; the next one
      // may want the other mode. Convert without blocking, or start over.
      (head.shared === shared || _convert(handle, !head.shared))
    ) {
      stat = _stillLinked(handle, queue.lockPath);
      if (stat) _remember(queue.lockPath, stat);
    }
  } catch {
    stat = null;
  }
  if (!stat || head === undefined) {
    handle.unlock();
    handle.close();
    queue.pump();
    return;
  }
  queue.shift();
  _grant(queue, head, handle, stat);
  queue.pump();
}

const _DEADLOCK_TIMEOUT = 1000;
/** How long a found deadlock must stay before its victim gives up. */
const _CONFIRM_MS = 100;

/**
 * Starts the deadlock check of a kernel wait: after `every` ms, and again
 * every `every` ms while it lasts (a cycle may close after this wait
 * began). A deadlock whose victim is this process must be seen twice,
 * `_CONFIRM_MS` apart, with the same edges: the graph is read from several
 * files, not atomically, and a real deadlock does not go away. See
 * ARCHITECTURE.md, "Deadlocks".
 */
function _lookForDeadlock(queue: _FileQueue, every: number): void {
  const look = (confirming: string | null) => {
    queue.detector = undefined;
    const head = queue.head;
    if (!queue.serving || head === undefined) return;
    let found = null;
    try {
      found = _deadlockOf(queue);
    } catch {
      // Cannot look now: look again later.
    }
    if (found !== null && found.victim === found.self) {
      if (found.key === confirming) {
        queue.fail(head, new DeadlockError(head.lockPath, found.cycle));
        if (!queue.serving || queue.length === 0) return;
      } else {
        queue.detector = setTimeout(() => look(found.key), _CONFIRM_MS);
        _unrefTimer(queue.detector);
        return;
      }
    }
    queue.detector = setTimeout(() => look(null), every);
    _unrefTimer(queue.detector);
  };
  queue.detector = setTimeout(() => look(null), every);
  _unrefTimer(queue.detector);
}

function _stopLooking(queue: _FileQueue): void {
  if (queue.detector !== undefined) {
    clearTimeout(queue.detector);
    queue.detector = undefined;
  }
}

/** Whether an ancestor held a lock at this process's first deadlock look. */
let _runsUnderLock: boolean | undefined;

/** The deadlock this process's wait for `queue`'s lock is part of, if any. */
function _deadlockOf(queue: _FileQueue) {
  // Holding no lock, this process cannot be in a cycle: no one waits for it.
  let holds = false;
  for (const other of _queues.values()) {
    if (other.active > 0) {
      holds = true;
      break;
    }
  }
  // Holding no lock, this process is in a cycle only as a command run under
  // an ancestor's lock (`lockbox run a.lock -- cmd`), which its first look
  // tells for its whole life; else no one waits for it, and nothing is read.
  if (!holds && _runsUnderLock === false) return null;
  const stat = _lstat(queue.lockPath);
  if (stat === null) return null;
  const text = _readProcLocks();
  if (text === null) return null;
  const table = _parseFlocks(text);
  _runsUnderLock ??= _underHeldLock(table);
  if (!holds && !_runsUnderLock) return null;
  const graph = _graphOf(table);
  const file = _fileKey(stat);
  // Paths of the locks this process holds, for the error's message.
  const known = new Map([[file, queue.lockPath]]);
  for (const other of _queues.values()) {
    if (other.active === 0) continue;
    const held = _lstat(other.lockPath);
    if (held !== null) known.set(_fileKey(held), other.lockPath);
  }
  return _findDeadlock(graph, _pid(), file, known);
}

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
  const lock = await FileLock.acquire(path, options);
  try {
    return await _lockInternals.runHolding(lock, () => fn(lock));
  } finally {
    await lock.release();
  }
}
