// `--db URL` for the lock commands: lockbox's PostgreSQL backend, loaded
// only when a command names a database, so that file-only use never loads
// a database driver.

import type { PostgresBackend } from "../postgres/backend.ts";

/** What every `--db` help text says about passwords. */
export const DB_PASSWORD_HINT =
  "; a password in a URL here shows in ps: prefer 'env', PGPASSWORD or ~/.pgpass";

/** The help text of every `--db` option. */
export const DB_HELP =
  `use lock NAMEs on this PostgreSQL database instead of lock files (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables)${DB_PASSWORD_HINT}`;

/** Connects to the database `--db` names. */
export async function _connectDb(url: string): Promise<PostgresBackend> {
  const { PostgresBackend } = await import("../postgres/backend.ts");
  return await PostgresBackend.connect(url === "env" ? undefined : url);
}

/** The help text of `--db` where it names a database for stores. */
export const DB_STORE_HELP =
  `keep it on this PostgreSQL database (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables): file arguments are then document names${DB_PASSWORD_HINT}`;

/**
 * Whether an option's value names a database rather than a file: `env`, a
 * postgres: URL, or a libpq key=value string (which connect refuses without
 * showing it, rather than a file of that name being made).
 */
export function _isDbUrl(value: string | undefined): value is string {
  return value !== undefined &&
    (value === "env" || /^postgres(ql)?:/i.test(value) ||
      /^\s*(host|hostaddr|port|dbname|user|password|passfile|sslmode)\s*=/i
        .test(value));
}

/**
 * Runs `fn` with the backend `url` names (connected, and closed after), or
 * with `undefined` for files when no database is named.
 */
export async function _usingDb<R>(
  url: string | undefined,
  fn: (db: PostgresBackend | undefined) => Promise<R>,
): Promise<R> {
  if (url === undefined) return await fn(undefined);
  const db = await _connectDb(url);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
