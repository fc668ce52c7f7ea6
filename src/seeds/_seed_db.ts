// The JsonStore behind each seed-compatible DB (capture groups, operations,
// checkouts): `{}` while the file is missing, validated on every read and
// write, with the options the caller gave.

import { JsonStore } from "../store/json_store.ts";

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
}

export function _seedDb<T extends object>(
  path: string | URL,
  validate: (value: unknown) => T,
  options: DbOptions,
): JsonStore<T> {
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
