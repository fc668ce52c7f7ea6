/**
 * lockbox's locks on PostgreSQL, for workers on several hosts: the same
 * shape as `FileLock`, with fencing tokens that grow across hosts and
 * server restarts. A separate entry point, so that file-only users never
 * load a database driver.
 *
 * ```ts ignore
 * import { PostgresBackend } from "@lockbox/lockbox/postgres";
 * await using db = await PostgresBackend.connect(); // LOCKBOX_DATABASE_URL
 * await db.withLock("nightly-import", async (lock) => {
 *   lock.signal.throwIfAborted();
 * });
 * ```
 *
 * @module
 */

export {
  type PgLockInfo,
  type PgLockOptions,
  type PgLockWaiter,
  PostgresBackend,
  type PostgresOptions,
} from "./backend.ts";
export { PgLock, type PgLockHolder } from "./pg_lock.ts";
export {
  migrateFileStore,
  type MigrateOptions,
  type MigrateResult,
} from "./migrate.ts";
export {
  type PgBackupInfo,
  PgJsonStore,
  type PgJsonStoreOptions,
} from "./pg_store.ts";
export {
  CorruptStoreError,
  DeadlockError,
  type DeadlockStep,
  LockError,
  LockLostError,
  LockTimeoutError,
  StaleFenceError,
  StoreError,
} from "../base/errors.ts";
