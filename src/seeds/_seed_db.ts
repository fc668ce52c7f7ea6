// The JsonStore behind each seed-compatible DB (capture groups, operations,
// checkouts, the archiver's run state): `{}` while the file is missing,
// validated on every read and write, with the options the caller gave; in a
// file, or on the caller's StoreBackend, chosen here once.

import { JsonStore } from "../store/json_store.ts";
import type { StoreBackend } from "../store/store_backend.ts";

/** Options shared by the seed-compatible DBs. */
export interface DbOptions {
  /**
   * How long to wait for the DB's lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * Wait for the lock by blocking this thread (see
   * `JsonStoreOptions.blockingLock`); needs `lockTimeout: Infinity` (or 0).
   *
   * @default {false}
   */
  blockingLock?: boolean;
  /**
   * Fsync every write (see `JsonStoreOptions.durable`).
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * How many previous versions of the DB to keep.
   *
   * @default {0}
   */
  backups?: number;
  /**
   * Journal mode (see `JsonStoreOptions.journal`): each change appends one
   * line instead of rewriting the DB. The DB file then shows the state as of
   * the last compaction, so a Python seed process reading it alone sees an
   * older state: use it only where lockbox alone reads and writes the DB.
   *
   * @default {false}
   */
  journal?: boolean;
  /**
   * Keep the DB elsewhere than in a file, such as in PostgreSQL
   * (`PostgresBackend` from `@lockbox/lockbox/postgres`): the path argument
   * is then the document's name. Behaviour and errors stay the same.
   *
   * @default {the file system}
   */
  backend?: StoreBackend;
}

/**
 * The name a seed system's path argument is on a backend: a string, never
 * a URL (a backend has names, not files).
 */
export function _backendName(path: string | URL, what: string): string {
  if (typeof path !== "string") {
    throw new TypeError(
      `Cannot name ${what} with a URL: with a backend, it is a name`,
    );
  }
  return path;
}

/**
 * A seed's JSON DB: `{}` while it was never written, in a file (byte for
 * byte the Python seeds' format) or, with `backend`, the backend's document
 * named `path`. `what` names it in the error for a URL on a backend.
 */
export function _seedDb<T extends object>(
  path: string | URL,
  validate: (value: unknown) => T,
  options: DbOptions,
  what = "a DB",
): JsonStore<T> {
  if (options.backend !== undefined) {
    const name = _backendName(path, what);
    for (const key of ["journal", "blockingLock"] as const) {
      if (options[key]) {
        throw new TypeError(
          `Cannot use ${key} with a backend: it is an option of files`,
        );
      }
    }
    return options.backend.jsonStore<T>(name, {
      initial: () => ({}) as T,
      validate,
      lockTimeout: options.lockTimeout,
      durable: options.durable,
      backups: options.backups,
    });
  }
  return new JsonStore<T>(path, {
    initial: () => ({}) as T,
    validate,
    lockTimeout: options.lockTimeout,
    blockingLock: options.blockingLock,
    durable: options.durable,
    backups: options.backups,
    journal: options.journal,
    // Byte for byte what the Python seed's json.dump(db, f, indent=2)
    // writes; the journal is lockbox's own format.
    format: options.journal ? "json" : "python",
  });
}
