// The one interface JsonStore's storages implement (`_JsonStoreStorage`;
// the seeds' DocumentStore has a `_DocumentStorage` of its own): a document
// that is read as a committed version and changed under exclusion, with
// fencing. Whole-file mode (_whole_file.ts) and journal mode (_journal.ts)
// are the two file implementations; nothing in it assumes a file, so a
// database (src/postgres/_pg_document.ts) is the third. ("Storage", not
// "backend": a StoreBackend, store_backend.ts, is where the seed systems
// keep their state.) Beside it, what the storages share: the initial
// value, and the checks of a fence and of the options they have in common.

import type { StoreVersion, WatchOptions } from "./watch.ts";

/** What a change made: the new document and what to return to the caller. */
export interface _Next<T, R> {
  /**
   * `true` when `value` replaces the document (`transform`, `write`);
   * `false` when the change was made in place on the draft it was given.
   */
  replace: boolean;
  /** The new document. */
  value: T;
  /** What the store method returns. */
  result: R;
}

/** Options of one change. */
export interface _ChangeOptions {
  /**
   * A fencing token: refused with `StaleFenceError` if a higher one of its
   * family (`src/lock/fence.ts`) was applied.
   */
  fence?: number;
  /** Gives up waiting for exclusion. */
  signal?: AbortSignal;
  /**
   * The change replaces the document (`transform`, `write`): `fn` returns
   * the new value, so the draft needs no tracking of changes made in place.
   */
  replaces?: boolean;
}

/** A fresh copy of a store's `initial` option (a function is called). */
export function _initialValue<T>(initial: T | (() => T)): T {
  return typeof initial === "function"
    ? (initial as () => T)()
    : structuredClone(initial);
}

/** Checks a fence given to a change: a non-negative safe integer, or none. */
export function _checkFence(fence: number | undefined): number | undefined {
  if (fence === undefined) return undefined;
  if (!Number.isSafeInteger(fence) || fence < 0) {
    throw new RangeError(
      `Cannot use fence ${fence}: expected a non-negative integer such as a lock's token`,
    );
  }
  return fence;
}

/** Checks a store's `backups` option: an integer from 0 to 1000. */
export function _checkBackups(backups: number): number {
  if (!Number.isInteger(backups) || backups < 0 || backups > 1000) {
    throw new RangeError(
      `Cannot use backups ${backups}: expected an integer from 0 to 1000`,
    );
  }
  return backups;
}

/** Checks a store's `onCorrupt` option. */
export function _checkOnCorrupt(onCorrupt: string): "throw" | "quarantine" {
  if (onCorrupt !== "throw" && onCorrupt !== "quarantine") {
    throw new TypeError(
      `Cannot use onCorrupt "${onCorrupt}": expected "throw" or "quarantine"`,
    );
  }
  return onCorrupt;
}

/** A JsonStore's storage: the store picks one in its constructor. */
export interface _JsonStoreStorage<T> {
  /** A committed version of the document, without waiting for writers. */
  read(): Promise<T>;
  /**
   * Under exclusion: loads the current document, checks the fence, calls
   * `fn` with a draft it may change, validates and commits what it returns
   * (nothing when it equals the current document), and records the fence.
   * If `fn` throws, nothing is written and the error is rethrown.
   */
  change<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    options: _ChangeOptions,
  ): Promise<R>;
  /**
   * The current version, then each new committed version made by any
   * process, until the signal aborts or the consumer stops.
   */
  watch(options: WatchOptions): AsyncIterable<StoreVersion<T>>;
  /**
   * Forgets the fences applied so far (every family), under exclusion: the
   * next fenced change is accepted whatever its token.
   */
  resetFence(options: { signal?: AbortSignal }): Promise<void>;
  /**
   * Closes what the storage keeps open between calls (a file store's
   * `keepOpen`); calls still in flight close theirs as they settle.
   */
  close?(): Promise<void>;
}

/**
 * The key under which another storage (PostgreSQL's, in `src/postgres/`)
 * hands JsonStore its document storage, so that one class keeps one
 * contract whatever holds the document. Not exported from mod.ts: a
 * JsonStore option only lockbox's own storages pass.
 */
export const _STORAGE: unique symbol = Symbol("lockbox.storage");

/** What another storage gives JsonStore under {@linkcode _STORAGE}. */
export interface _Storage<T> {
  /** What `path` shows: the document's name. */
  path: string;
  /** What `lockPath` shows: the name of the lock that fences it. */
  lockPath: string;
  /** The document's storage. */
  document: _JsonStoreStorage<T>;
}
