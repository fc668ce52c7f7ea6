// Where the archiver (seed 003) keeps its run logs and its instance lock: one
// interface, two implementations, chosen once per call by
// `_archiverStorage`: seed 003's files, or a StoreBackend. Its run state is
// a seed DB (`_seedDb`), which makes the same choice.

import { _toPath } from "../runtime/mod.ts";
import { _readStoreFile, _replaceHoldingLock } from "../store/atomic.ts";
import { StoreError } from "../base/errors.ts";
import type { LockHolder } from "../base/lock_holder.ts";
import { FileLock } from "../lock/file_lock.ts";
import { withLock } from "../lock/with_lock.ts";
import type { JsonStore } from "../store/json_store.ts";
import { appendJsonl } from "../store/jsonl.ts";
import { lockHolder } from "../lock/lock_inspect.ts";
import { _resolveTarget, type LockTarget } from "../lock/lock_target.ts";
import type { BackendLock, StoreBackend } from "../store/store_backend.ts";
import { _backendName } from "./_seed_db.ts";

/** The archiver's run logs (run records, failure logs) and instance lock. */
export interface _ArchiverStorage {
  /**
   * The run numbers of a log, in order.
   *
   * @throws {StoreError} If the log does not exist.
   */
  readRuns(path: string | URL): Promise<number[]>;
  /** Appends runs to a failure log, creating it; none leaves it as it is. */
  appendRuns(path: string | URL, runs: number[]): Promise<void>;
  /** Replaces a failure log with these runs, creating it. */
  writeRuns(path: string | URL, runs: number[]): Promise<void>;
  /** The instance lock's name: on files, the lock file's path. */
  lockName(lockFile: string | URL | LockTarget): string;
  /** One try at the instance lock `name`; `null` if another holds it. */
  tryLock(
    name: string,
    metadata: Record<string, unknown> | undefined,
  ): Promise<FileLock | BackendLock | null>;
  /** Who holds the instance lock `name`, if anyone. */
  lockHolder(name: string): Promise<LockHolder | null>;
}

/** The storage that `backend` (from the caller's options) names. */
export function _archiverStorage(
  backend: StoreBackend | undefined,
): _ArchiverStorage {
  return backend === undefined
    ? new _ArchiverOnFiles()
    : new _ArchiverOnBackend(backend);
}

/** Checks run numbers: an array of non-negative safe integers. */
export function _checkRuns(runs: unknown, what: string): number[] {
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
 * Seed 003's files: a run log has one run number a line; the instance lock
 * is a flock on the lock file itself.
 */
class _ArchiverOnFiles implements _ArchiverStorage {
  async readRuns(path: string | URL): Promise<number[]> {
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

  async appendRuns(path: string | URL, runs: number[]): Promise<void> {
    // A run number is a JSON value, so the log is also a JSONL file.
    await appendJsonl(path, runs);
  }

  async writeRuns(path: string | URL, runs: number[]): Promise<void> {
    const file = _toPath(path);
    const text = runs.map((r) => `${r}\n`).join("");
    await withLock(file, () => _replaceHoldingLock(file, text, true), {
      timeout: 30_000,
    });
  }

  lockName(lockFile: string | URL | LockTarget): string {
    return _resolveTarget(lockFile, "lockFile", "acquireInstanceLock")
      .lockPath;
  }

  tryLock(
    name: string,
    metadata: Record<string, unknown> | undefined,
  ): Promise<FileLock | null> {
    return FileLock.tryAcquire({ lockFile: name }, { metadata });
  }

  lockHolder(name: string): Promise<LockHolder | null> {
    return lockHolder({ lockFile: name });
  }
}

/**
 * On a backend: a run log is a document holding its list of runs (`null`
 * while it does not exist); the instance lock is the backend's lock of
 * that name.
 */
class _ArchiverOnBackend implements _ArchiverStorage {
  #backend: StoreBackend;

  constructor(backend: StoreBackend) {
    this.#backend = backend;
  }

  async readRuns(path: string | URL): Promise<number[]> {
    const name = _backendName(path, "run records");
    const runs = await this.#log(name).read();
    if (runs === null) {
      throw new StoreError(
        name,
        `Cannot read run records '${name}': it does not exist; check the name`,
      );
    }
    return runs;
  }

  async appendRuns(path: string | URL, runs: number[]): Promise<void> {
    // Appending nothing leaves a missing log missing, as with a file.
    if (runs.length === 0) return;
    await this.#log(_backendName(path, "a failure log")).transform(
      (log) => [...(log ?? []), ...runs],
    );
  }

  async writeRuns(path: string | URL, runs: number[]): Promise<void> {
    await this.#log(_backendName(path, "a failure log")).write([...runs]);
  }

  lockName(lockFile: string | URL | LockTarget): string {
    return _backendName(
      typeof lockFile === "object" && lockFile !== null &&
        "lockFile" in lockFile
        ? lockFile.lockFile
        : lockFile as string | URL,
      "an instance lock",
    );
  }

  tryLock(
    name: string,
    metadata: Record<string, unknown> | undefined,
  ): Promise<BackendLock | null> {
    return this.#backend.tryAcquire(name, { metadata });
  }

  lockHolder(name: string): Promise<LockHolder | null> {
    return this.#backend.lockHolder(name);
  }

  #log(name: string): JsonStore<number[] | null> {
    return this.#backend.jsonStore<number[] | null>(name, {
      initial: null,
      validate: (value) => value === null ? null : _checkRuns(value, "the log"),
    });
  }
}
