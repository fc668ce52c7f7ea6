// Batch work under locks (seed 001): each file processed under its own lock,
// a file held elsewhere reported as a result instead of stopping the batch.

import { _checkTimeout } from "../base/checks.ts";
import { _lockInternals } from "../lock/lock_internals.ts";
import { _toPath } from "../runtime/mod.ts";
import { _sleep } from "../base/promise.ts";
import { _holderPid } from "../lock/kernel.ts";
import { FileLock } from "../lock/file_lock.ts";
import { LockTimeoutError } from "../base/errors.ts";
import type { BackendLock, StoreBackend } from "../store/store_backend.ts";

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
  const paths = files.map(_toPath);
  const { signal, onProgress } = options;
  signal?.throwIfAborted();

  const results: FileResult<R>[] = new Array(paths.length);
  let next = 0;
  let done = 0;
  const failed = (file: string, error: unknown): FileResult<R> => ({
    file,
    ok: false,
    locked: false,
    error: error instanceof Error ? error.message : String(error),
  });
  const run = async (file: string): Promise<FileResult<R>> => {
    try {
      return { file, ok: true, value: await fn(file) };
    } catch (error) {
      return failed(file, error);
    }
  };
  /** What a lock that could not be taken makes of this file, or `null` to retry. */
  const notLocked = async (
    file: string,
    error: unknown,
    attempt: number,
  ): Promise<FileResult<R> | null> => {
    if (signal?.aborted) throw error;
    // A lock that cannot be taken at all (its lock file is a directory,
    // say) fails this file, not the batch.
    if (!(error instanceof LockTimeoutError)) return failed(file, error);
    if (attempt >= retries) {
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
    await _sleep(retryDelay, signal);
    return null;
  };
  const backend = options.backend;
  const one = async (file: string): Promise<FileResult<R>> => {
    let lock: FileLock | BackendLock | undefined;
    if (options.lock ?? true) {
      for (let attempt = 0;; attempt++) {
        try {
          lock = await (backend
            ? backend.acquire(file, { timeout: lockTimeout, signal })
            : FileLock.acquire(file, {
              timeout: lockTimeout,
              signal,
              pidFile: true,
            }));
          break;
        } catch (error) {
          const result = await notLocked(file, error, attempt);
          if (result !== null) return result;
        }
      }
    }
    try {
      return lock instanceof FileLock
        ? await _lockInternals.runHolding(lock, () => run(file))
        : await run(file);
    } finally {
      await lock?.release();
    }
  };
  const lane = async () => {
    while (next < paths.length) {
      signal?.throwIfAborted();
      const index = next++;
      const result = await one(paths[index]);
      results[index] = result;
      onProgress?.(++done, paths.length, result);
    }
  };
  const lanes = Array.from(
    { length: Math.min(concurrency, paths.length) },
    lane,
  );
  // Every lane finishes its file before the batch settles, so no lock or
  // callback outlives the promise, even when one lane rejects.
  const settled = await Promise.allSettled(lanes);
  const rejected = settled.find((s) => s.status === "rejected");
  if (rejected) throw (rejected as PromiseRejectedResult).reason;
  return results;
}

function _count(value: number, name: string, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(
      `Cannot use ${name} ${value}: expected an integer of at least ${min}`,
    );
  }
  return value;
}
