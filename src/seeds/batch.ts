// Batch work under locks (seed 001): each file processed under its own lock,
// a file held elsewhere reported as a result instead of stopping the batch.

import { _checkTimeout } from "../base/checks.ts";
import { _lockInternals } from "../lock/lock_internals.ts";
import { _toPath } from "../runtime/mod.ts";
import { _sleep } from "../base/promise.ts";
import { _holderPid } from "../lock/kernel.ts";
import { FileLock } from "../lock/file_lock.ts";
import { LockTimeoutError } from "../base/errors.ts";
import type { StoreBackend } from "../store/store_backend.ts";

/** The outcome for one file of {@linkcode processFiles}. */
export type FileResult<R> =
  | { file: string; ok: true; value: R }
  | { file: string; ok: false; locked: boolean; error: string };

/** How {@linkcode processFiles} runs. */
export interface ProcessFilesOptions<R> {
  /**
   * How many files are processed at once.
   *
   * @default {4}
   */
  concurrency?: number;
  /**
   * How long to wait for each file's lock, in milliseconds, per attempt.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * How many more attempts to make at a lock after a timeout.
   *
   * @default {0}
   */
  retries?: number;
  /**
   * How long to wait between attempts, in milliseconds.
   *
   * @default {0}
   */
  retryDelay?: number;
  /**
   * `false` processes files without locking them (seed 001's
   * `file_locking.enabled: false`).
   *
   * @default {true}
   */
  lock?: boolean;
  /** Stops starting new files; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Lock each file by name on this backend (such as `PostgresBackend`)
   * instead of by a lock file beside it: the path as given is the lock's
   * name, so workers on several hosts that give the same path exclude each
   * other. The files themselves are not touched.
   *
   * @default {lock files}
   */
  backend?: StoreBackend;
  /** Called once per file as it finishes, in completion order. */
  onProgress?: (done: number, total: number, result: FileResult<R>) => void;
}

/**
 * Processes files, each under its own exclusive lock (`<file>.lock`), a few
 * at a time. A file whose lock stays held by another process past
 * `lockTimeout` is a failed result with `locked: true`, naming the holder's
 * pid; an error thrown by `fn` is a failed result too. The rest go on.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @param files The files.
 * @param fn The work for one file; it receives the absolute path.
 * @param options Concurrency, lock timeout and retries, abort, progress.
 * @returns One result per file, in the order of `files`.
 * @throws {RangeError} If `concurrency`, `lockTimeout`, `retries` or
 *   `retryDelay` is out of range.
 * @throws {unknown} `signal.reason`, if the signal aborts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { processFiles } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "hello");
 * const results = await processFiles(
 *   [`${dir}/a.txt`],
 *   async (file) => (await Deno.readTextFile(file)).length,
 * );
 * assert.ok(results[0].ok && results[0].value === 5);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function processFiles<R>(
  files: (string | URL)[],
  fn: (file: string) => Promise<R>,
  options: ProcessFilesOptions<R> = {},
): Promise<FileResult<R>[]> {
  const batch = _batch(files, fn, options);
  const { paths, signal } = batch;
  signal?.throwIfAborted();
  const results: FileResult<R>[] = new Array(paths.length);
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < paths.length) {
      signal?.throwIfAborted();
      const index = next++;
      const result = await _processOne(paths[index], batch);
      results[index] = result;
      options.onProgress?.(++done, paths.length, result);
    }
  };
  const lanes = Array.from(
    { length: Math.min(batch.concurrency, paths.length) },
    lane,
  );
  // Every lane finishes its file before the batch settles, so no lock or
  // callback outlives the promise, even when one lane rejects.
  const settled = await Promise.allSettled(lanes);
  const rejected = settled.find((s) => s.status === "rejected");
  if (rejected) throw (rejected as PromiseRejectedResult).reason;
  return results;
}

/** A file's lock, held, and how to run under it. */
interface _HeldLock {
  run<R>(fn: () => Promise<R>): Promise<R>;
  release(): Promise<void>;
}

/** Waits for one file's lock. */
type _Locker = (
  file: string,
  timeout: number,
  signal: AbortSignal | undefined,
) => Promise<_HeldLock>;

/** What processFiles checked of its arguments, and how it locks. */
interface _Batch<R> {
  paths: string[];
  fn: (file: string) => Promise<R>;
  concurrency: number;
  retries: number;
  lockTimeout: number;
  retryDelay: number;
  signal: AbortSignal | undefined;
  /** `null` when files are processed without locks. */
  lock: _Locker | null;
}

function _batch<R>(
  files: (string | URL)[],
  fn: (file: string) => Promise<R>,
  options: ProcessFilesOptions<R>,
): _Batch<R> {
  if (!Array.isArray(files)) {
    throw new TypeError("Cannot process files: expected an array of paths");
  }
  if (typeof fn !== "function") {
    throw new TypeError("Cannot process files: fn must be a function");
  }
  const concurrency = _count(options.concurrency ?? 4, "concurrency", 1);
  const retries = _count(options.retries ?? 0, "retries", 0);
  const lockTimeout = _checkTimeout(options.lockTimeout, "lockTimeout", 30_000);
  const retryDelay = _checkTimeout(options.retryDelay, "retryDelay", 0);
  return {
    paths: files.map(_toPath),
    fn,
    concurrency,
    retries,
    lockTimeout,
    retryDelay,
    signal: options.signal,
    lock: options.lock ?? true ? _locker(options.backend) : null,
  };
}

/** How a batch locks its files, chosen once: lock files, or a backend's locks. */
function _locker(backend: StoreBackend | undefined): _Locker {
  if (backend !== undefined) {
    return async (file, timeout, signal) => {
      const lock = await backend.acquire(file, { timeout, signal });
      return { run: (fn) => fn(), release: () => lock.release() };
    };
  }
  return async (file, timeout, signal) => {
    _lockInternals.prepareHolding();
    const lock = await FileLock.acquire(file, {
      timeout,
      signal,
      pidFile: true,
    });
    return {
      // fn runs as the holder: asking for this lock again inside it fails
      // at once instead of waiting for itself.
      run: (fn) => _lockInternals.runHolding(lock, fn),
      release: () => lock.release(),
    };
  };
}

/** One file: its lock (if files are locked), then fn under it. */
async function _processOne<R>(
  file: string,
  batch: _Batch<R>,
): Promise<FileResult<R>> {
  const run = async (): Promise<FileResult<R>> => {
    try {
      return { file, ok: true, value: await batch.fn(file) };
    } catch (error) {
      return _failed(file, error);
    }
  };
  if (batch.lock === null) return await run();
  const held = await _lockFile(file, batch);
  if ("ok" in held) return held;
  try {
    return await held.run(run);
  } finally {
    await held.release();
  }
}

/** Takes a file's lock, retrying timeouts; a failed result if it cannot. */
async function _lockFile<R>(
  file: string,
  batch: _Batch<R>,
): Promise<_HeldLock | FileResult<R>> {
  for (let attempt = 0;; attempt++) {
    try {
      return await batch.lock!(file, batch.lockTimeout, batch.signal);
    } catch (error) {
      const result = await _notLocked<R>(file, error, attempt, batch);
      if (result !== null) return result;
    }
  }
}

/** What a lock that could not be taken makes of this file, or `null` to retry. */
async function _notLocked<R>(
  file: string,
  error: unknown,
  attempt: number,
  batch: _Batch<R>,
): Promise<FileResult<R> | null> {
  if (batch.signal?.aborted) throw error;
  // A lock that cannot be taken at all (its lock file is a directory,
  // say) fails this file, not the batch.
  if (!(error instanceof LockTimeoutError)) return _failed(file, error);
  if (attempt >= batch.retries) {
    // A seed 001 holder writes no lockbox record: its pid then comes from
    // the kernel or its lock file.
    const holderPid = error.holder?.pid ?? _holderPid(error.lockPath);
    const pid = holderPid === null ? "" : ` (pid ${holderPid})`;
    return {
      file,
      ok: false,
      locked: true,
      error: `locked by another process${pid}`,
    };
  }
  await _sleep(batch.retryDelay, batch.signal);
  return null;
}

function _failed(file: string, error: unknown): FileResult<never> {
  return {
    file,
    ok: false,
    locked: false,
    error: error instanceof Error ? error.message : String(error),
  };
}

function _count(value: number, name: string, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected an integer of at least ${min}`,
    );
  }
  return value;
}
