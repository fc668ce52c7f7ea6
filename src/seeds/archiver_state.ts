// Archiver run state (seed 003): run-state JSON, failure logs, and a
// single-instance lock with a validity monitor. The state is a seed DB
// (`_seed_db.ts`); the logs and the lock are kept through
// `_archiver_storage.ts`; each chooses files or the caller's backend once.

import { LockBusyError } from "../base/errors.ts";
import { FileLock } from "../lock/file_lock.ts";
import type {
  JsonStore,
  StoreVersion,
  WatchOptions,
} from "../store/json_store.ts";
import type { LockTarget } from "../lock/lock_target.ts";
import type { BackendLock, StoreBackend } from "../store/store_backend.ts";
import { _seedDb } from "./_seed_db.ts";
import { _archiverStorage, _checkRuns } from "./_archiver_storage.ts";

/** Where the archiver's state, failure logs and instance lock are. */
export interface ArchiverOptions {
  /**
   * Keep them elsewhere than in files, such as in PostgreSQL
   * (`PostgresBackend` from `@lockbox/lockbox/postgres`): each path
   * argument is then a name, and a failure log is a document holding its
   * list of runs. Behaviour and errors stay the same.
   *
   * @default {the file system}
   */
  backend?: StoreBackend;
}

/** The archiver's state file; unknown keys are kept as they are. */
export interface RunState {
  /** The last run of the unbroken sequence of successful runs. */
  last_contiguous_run?: number;
  /** The highest run ever attempted. */
  last_attempted_run?: number;
  /** Keys other tools keep in the state file, preserved as they are. */
  [key: string]: unknown;
}

function _validateState(value: unknown): RunState {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("expected a JSON object");
  }
  for (const key of ["last_contiguous_run", "last_attempted_run"]) {
    const v = (value as RunState)[key];
    if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 0)) {
      throw new TypeError(`${key} is not a non-negative integer`);
    }
  }
  return value as RunState;
}

/** The state: a seed DB, in seed 003's file or on the backend. */
function _stateStore(
  path: string | URL,
  backend: StoreBackend | undefined,
): JsonStore<RunState> {
  return _seedDb<RunState>(path, _validateState, { backend }, "a state");
}

/**
 * Reads the state file.
 *
 * @param path The state file.
 * @param options The backend, if not files.
 * @returns The state; `{}` when the file does not exist.
 * @throws {CorruptStoreError} If it does not parse or is not a state object
 *   (the seed read it as `{}` and lost its place).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readState } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * assert.ok(Object.keys(await readState(`${dir}/state.json`)).length === 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function readState(
  path: string | URL,
  options: ArchiverOptions = {},
): Promise<RunState> {
  return _stateStore(path, options.backend).read();
}

/**
 * Watches the state: yields it now, then each new version any process
 * commits (see `JsonStore.watch`), such as a worker waiting for the run
 * state to move on.
 *
 * @param path The state file (with a backend: its name).
 * @param options The backend, the signal that ends it, the re-check interval.
 * @returns The state's versions.
 *
 * @example
 * ```ts ignore
 * import { watchState } from "@lockbox/lockbox";
 * for await (const { value } of watchState("state.json")) {
 *   if ((value.last_contiguous_run ?? 0) >= 110) break;
 * }
 * ```
 */
export function watchState(
  path: string | URL,
  options: ArchiverOptions & WatchOptions = {},
): AsyncIterable<StoreVersion<RunState>> {
  return _stateStore(path, options.backend).watch(options);
}

/**
 * Replaces the state file, under its lock, with a durable atomic write.
 *
 * @param path The state file.
 * @param state The new state.
 * @param options The backend, if not files.
 * @returns A promise that resolves once the state is durable.
 * @throws {TypeError} If the state is not a valid state object.
 */
export async function writeState(
  path: string | URL,
  state: RunState,
  options: ArchiverOptions = {},
): Promise<void> {
  try {
    _validateState(state);
  } catch (error) {
    throw new TypeError(`Cannot write state: ${(error as Error).message}`);
  }
  await _stateStore(path, options.backend).write(state);
}

/**
 * Advances `last_contiguous_run` through the successful runs that extend it
 * without a gap; with no `last_contiguous_run` yet, the smallest successful
 * run starts the sequence. One locked read-modify-write.
 *
 * @param path The state file.
 * @param successfulRuns Runs that succeeded, in any order.
 * @param options The backend, if not files.
 * @returns The new state.
 * @throws {TypeError} If a run is not a non-negative integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { updateContiguousRunState } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const s = await updateContiguousRunState(`${dir}/s.json`, [101, 102, 104, 105]);
 * assert.ok(s.last_contiguous_run === 102);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function updateContiguousRunState(
  path: string | URL,
  successfulRuns: number[],
  options: ArchiverOptions = {},
): Promise<RunState> {
  _checkRuns(successfulRuns, "successful runs");
  const sorted = [...new Set(successfulRuns)].sort((a, b) => a - b);
  return await _stateStore(path, options.backend).update((state) => {
    if (sorted.length === 0) return { ...state };
    let last = state.last_contiguous_run ?? sorted[0] - 1;
    for (const run of sorted) {
      if (run <= last) continue;
      if (run !== last + 1) break;
      last = run;
    }
    if (last !== state.last_contiguous_run && last >= sorted[0]) {
      state.last_contiguous_run = last;
    }
    return { ...state };
  });
}

/**
 * Raises `last_attempted_run` to the highest attempted run; it never goes
 * down, and an empty list changes nothing. One locked read-modify-write.
 *
 * @param path The state file.
 * @param attemptedRuns Runs attempted, in any order.
 * @param options The backend, if not files.
 * @returns The new state.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function updateAttemptedRunState(
  path: string | URL,
  attemptedRuns: number[],
  options: ArchiverOptions = {},
): Promise<RunState> {
  _checkRuns(attemptedRuns, "attempted runs");
  return await _stateStore(path, options.backend).update((state) => {
    if (attemptedRuns.length > 0) {
      const highest = Math.max(...attemptedRuns);
      if (highest > (state.last_attempted_run ?? -1)) {
        state.last_attempted_run = highest;
      }
    }
    return { ...state };
  });
}

/**
 * Where incremental mode starts: the larger of `last_contiguous_run` and
 * `last_attempted_run`.
 *
 * @param path The state file.
 * @param options The backend, if not files.
 * @returns That run number; 0 when the state file does not exist.
 */
export async function getIncrementalStartRun(
  path: string | URL,
  options: ArchiverOptions = {},
): Promise<number> {
  const state = await readState(path, options);
  return Math.max(
    state.last_contiguous_run ?? 0,
    state.last_attempted_run ?? 0,
  );
}

/**
 * Reads run numbers, one a line; blank and invalid lines are skipped.
 *
 * @param path A run records or failure log file (with a backend: its name).
 * @param options The backend, if not files.
 * @returns The run numbers, in file order.
 * @throws {StoreError} If the file does not exist or cannot be read.
 */
export async function parseRunRecordsFile(
  path: string | URL,
  options: ArchiverOptions = {},
): Promise<number[]> {
  return await _archiverStorage(options.backend).readRuns(path);
}

/**
 * Appends failed runs to a failure log, one a line, durably; creates the log.
 *
 * @param path The failure log.
 * @param runs The failed runs.
 * @param options The backend, if not files.
 * @returns A promise that resolves once the lines are durable.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function appendToFailureLog(
  path: string | URL,
  runs: number[],
  options: ArchiverOptions = {},
): Promise<void> {
  _checkRuns(runs, "failed runs");
  await _archiverStorage(options.backend).appendRuns(path, runs);
}

/**
 * Replaces a failure log with these runs, one a line, under its lock, with a
 * durable atomic write.
 *
 * @param path The failure log.
 * @param runs The runs it should list.
 * @param options The backend, if not files.
 * @returns A promise that resolves once the log is durable.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function writeFailureLog(
  path: string | URL,
  runs: number[],
  options: ArchiverOptions = {},
): Promise<void> {
  _checkRuns(runs, "failed runs");
  await _archiverStorage(options.backend).writeRuns(path, runs);
}

/** Options of {@linkcode acquireInstanceLock}. */
export interface InstanceLockOptions extends ArchiverOptions {
  /** Kept in the holder record, such as `{ command: "archiver import" }`. */
  metadata?: Record<string, unknown>;
}

/** Options of {@linkcode InstanceLock.monitor}. */
export interface MonitorOptions {
  /** How often to check, in milliseconds. */
  intervalMs: number;
  /** Called once when the lock is found lost. */
  onLost: () => void;
}

/**
 * A held single-instance lock: a flock on the lock file itself, or a
 * backend's lock.
 */
export class InstanceLock implements AsyncDisposable {
  #lock: FileLock | BackendLock;
  #lockPath: string;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * Wraps a held lock; use {@linkcode acquireInstanceLock} to get one.
   *
   * @param lock The held lock: a FileLock, or a backend's lock.
   * @param name The backend lock's name (a FileLock has its path).
   */
  constructor(lock: FileLock | BackendLock, name?: string) {
    this.#lock = lock;
    this.#lockPath = lock instanceof FileLock ? lock.lockPath : name ?? "";
  }

  /** The lock file (on a backend: the lock's name). */
  get lockPath(): string {
    return this.#lockPath;
  }

  /**
   * Whether the lock is still held and the lock file is still the one locked
   * (not removed or replaced).
   *
   * @returns `true` while this instance still owns the lock file.
   */
  isValid(): Promise<boolean> {
    const lock = this.#lock;
    return lock instanceof FileLock
      ? lock.verify()
      : Promise.resolve(!lock.signal.aborted);
  }

  /**
   * Checks validity every `intervalMs` and calls `onLost` once if the lock
   * file was removed or replaced. Stops on release.
   *
   * @param options The interval and the callback.
   * @throws {RangeError} If `intervalMs` is not a positive number.
   */
  monitor(options: MonitorOptions): void {
    if (!(options?.intervalMs > 0)) {
      throw new RangeError(
        `Cannot monitor with intervalMs ${options?.intervalMs}: expected a positive number`,
      );
    }
    clearInterval(this.#timer);
    this.#timer = setInterval(async () => {
      if (this.#timer === undefined) return;
      if (!await this.isValid() && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        options.onLost();
      }
    }, options.intervalMs);
  }

  /**
   * Releases the lock and stops the monitor; idempotent.
   *
   * @returns A promise that resolves once released.
   */
  release(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#lock.release();
  }

  /** Releases: `await using instance = await acquireInstanceLock(f)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Takes a single-instance lock on `lockFile` (the file itself, as seed 003
 * does), without waiting: if another instance runs, it fails at once.
 *
 * @param lockFile The lock file (created if missing): a bare path or
 *   `{ lockFile }`; or `{ guards }`, a file whose sidecar `<file>.lock` to
 *   lock. With a backend, a name (`{ lockFile }` or a bare string).
 * @param options The backend, if not files; metadata for the holder record.
 * @returns The held lock.
 * @throws {LockBusyError} If another instance holds it, naming its pid and host.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireInstanceLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * {
 *   await using instance = await acquireInstanceLock(`${dir}/archiver.lock`);
 *   assert.ok(await instance.isValid());
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function acquireInstanceLock(
  lockFile: string | URL | LockTarget,
  options: InstanceLockOptions = {},
): Promise<InstanceLock> {
  const storage = _archiverStorage(options.backend);
  const name = storage.lockName(lockFile);
  const held = await storage.tryLock(name, options.metadata);
  if (held === null) {
    throw new LockBusyError(
      name,
      await storage.lockHolder(name).catch(() => null),
    );
  }
  return new InstanceLock(held, name);
}
