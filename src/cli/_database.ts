// `--db URL` for the lock commands: lockbox's PostgreSQL backend, loaded
// only when a command names a database, so that file-only use never loads
// a database driver.

import type { PostgresBackend } from "../postgres/backend.ts";

/** The help text of every `--db` option. */
export const DB_HELP =
  "use lock NAMEs on this PostgreSQL database instead of lock files (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables)";

/** Connects to the database `--db` names. */
export async function _connectDb(url: string): Promise<PostgresBackend> {
  const { PostgresBackend } = await import("../postgres/backend.ts");
  return await PostgresBackend.connect(url === "env" ? undefined : url);
}
