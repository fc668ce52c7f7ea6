// Archiver run state (seed 003): run-state JSON, failure logs, and a
// single-instance lock with a validity monitor.

import { _toPath } from "../runtime/mod.ts";
import { _readStoreFile, _replaceHoldingLock } from "../store/atomic.ts";
import { LockBusyError, StoreError } from "../base/errors.ts";
import { FileLock, withLock } from "../lock/file_lock.ts";
import {
  JsonStore,
  type StoreVersion,
  type WatchOptions,
} from "../store/json_store.ts";
import { appendJsonl } from "../store/jsonl.ts";
import { lockHolder } from "../lock/lock_inspect.ts";
import { _resolveTarget, type LockTarget } from "../lock/lock_target.ts";
import type { BackendLock, StoreBackend } from "../store/store_backend.ts";
import { _backendName } from "./_seed_db.ts";

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

function _store(
  path: string | URL,
  backend: StoreBackend | undefined,
): JsonStore<RunState> {
  if (backend) {
    return backend.jsonStore<RunState>(_backendName(path, "a state"), {
      initial: () => ({}),
      validate: _validateState,
    });
  }
  return new JsonStore<RunState>(path, {
    initial: () => ({}),
    validate: _validateState,
    // Shared with seed 003's Python: its numbers, keys and escaping kept.
    format: "python",
  });
}

function _checkRuns(runs: unknown, what: string): number[] {
  if (!Array.isArray(runs)) {
    throw new TypeError(`Cannot use ${what}: expected an array of run numbers`);
  }
  for (const run of runs) {
    if (!Number.isSafeInteger(run) || run < 0) {
      throw new TypeError(
        `Cannot use ${what}: ${
          JSON.stringify(run)
        } is not a non-negative integer run number`,
      );
    }
  }
  return runs;
}

/**
 * Reads the state file.
 *
 * @param path The state file.
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
  return _store(path, options.backend).read();
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
  return _store(path, options.backend).watch(options);
}

/**
 * Replaces the state file, under its lock, with a durable atomic write.
 *
 * @param path The state file.
 * @param state The new state.
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
  await _store(path, options.backend).write(state);
}

/**
 * Advances `last_contiguous_run` through the successful runs that extend it
 * without a gap; with no `last_contiguous_run` yet, the smallest successful
 * run starts the sequence. One locked read-modify-write.
 *
 * @param path The state file.
 * @param successfulRuns Runs that succeeded, in any order.
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
  return await _store(path, options.backend).update((state) => {
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
 * @returns The new state.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function updateAttemptedRunState(
  path: string | URL,
  attemptedRuns: number[],
  options: ArchiverOptions = {},
): Promise<RunState> {
  _checkRuns(attemptedRuns, "attempted runs");
  return await _store(path, options.backend).update((state) => {
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
 * @param path A run records or failure log file.
 * @returns The run numbers, in file order.
 * @throws {StoreError} If the file does not exist or cannot be read.
 */
export async function parseRunRecordsFile(
  path: string | URL,
  options: ArchiverOptions = {},
): Promise<number[]> {
  if (options.backend) {
    const name = _backendName(path, "run records");
    const runs = await _runLog(options.backend, name).read();
    if (runs === null) {
      throw new StoreError(
        name,
        `Cannot read run records '${name}': it does not exist; check the name`,
      );
    }
    return runs;
  }
  const file = _toPath(path);
  const bytes = await _readStoreFile(file, "read run records");
  if (bytes === null) {
    throw new StoreError(
      file,
      `Cannot read run records '${file}': it does not exist; check the path`,
    );
  }
  const runs: number[] = [];
  for (const line of new TextDecoder().decode(bytes).split("\n")) {
    const text = line.trim();
    if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) {
      runs.push(Number(text));
    }
  }
  return runs;
}

/**
 * Appends failed runs to a failure log, one a line, durably; creates the log.
 *
 * @param path The failure log.
 * @param runs The failed runs.
 * @returns A promise that resolves once the lines are durable.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function appendToFailureLog(
  path: string | URL,
  runs: number[],
  options: ArchiverOptions = {},
): Promise<void> {
  _checkRuns(runs, "failed runs");
  if (options.backend) {
    // Appending nothing leaves a missing log missing, as with a file.
    if (runs.length === 0) return;
    await _runLog(options.backend, _backendName(path, "a failure log"))
      .transform(
        (log) => [...(log ?? []), ...runs],
      );
    return;
  }
  // A run number is a JSON value, so the log is also a JSONL file.
  await appendJsonl(path, runs);
}

/**
 * Replaces a failure log with these runs, one a line, under its lock, with a
 * durable atomic write.
 *
 * @param path The failure log.
 * @param runs The runs it should list.
 * @returns A promise that resolves once the log is durable.
 * @throws {TypeError} If a run is not a non-negative integer.
 */
export async function writeFailureLog(
  path: string | URL,
  runs: number[],
  options: ArchiverOptions = {},
): Promise<void> {
  _checkRuns(runs, "failed runs");
  if (options.backend) {
    await _runLog(options.backend, _backendName(path, "a failure log")).write([
      ...runs,
    ]);
    return;
  }
  const file = _toPath(path);
  const text = runs.map((r) => `${r}\n`).join("");
  await withLock(file, () => _replaceHoldingLock(file, text, true), {
    timeout: 30_000,
  });
}

/** A failure log or run records on a backend: a document of run numbers. */
function _runLog(
  backend: StoreBackend,
  name: string,
): JsonStore<number[] | null> {
  return backend.jsonStore<number[] | null>(name, {
    initial: null,
    validate: (value) => value === null ? null : _checkRuns(value, "the log"),
  });
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
 * A held single-instance lock: the lock file itself is flocked.
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
 * @param options Metadata for the holder record.
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
  const backend = options.backend;
  if (backend) {
    const name = _backendName(
      typeof lockFile === "object" && lockFile !== null &&
        "lockFile" in lockFile
        ? lockFile.lockFile
        : lockFile as string | URL,
      "an instance lock",
    );
    const held = await backend.tryAcquire(name, { metadata: options.metadata });
    if (held === null) {
      throw new LockBusyError(
        name,
        await backend.lockHolder(name).catch(() => null),
      );
    }
    return new InstanceLock(held, name);
  }
  const path = _resolveTarget(lockFile, "lockFile", "acquireInstanceLock")
    .lockPath;
  const lock = await FileLock.tryAcquire({ lockFile: path }, {
    metadata: options.metadata,
  });
  if (lock === null) {
    throw new LockBusyError(
      path,
      await lockHolder({ lockFile: path }).catch(() => null),
    );
  }
  return new InstanceLock(lock);
}
