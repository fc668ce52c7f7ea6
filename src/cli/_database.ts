// `--db URL` and `--schema NAME` for every command that takes them (locks,
// stores, the seed systems): lockbox's PostgreSQL backend, loaded only when
// a command names a database, so that file-only use never loads a database
// driver.

import { type Command, InvalidArgumentError } from "commander";
import type { PostgresBackend } from "../postgres/backend.ts";
import { _checkSchema } from "../postgres/schema.ts";
import { _env } from "../runtime/mod.ts";

/** What every `--db` help text says about passwords. */
export const DB_PASSWORD_HINT =
  "; a password in a URL here shows in ps: prefer 'env', PGPASSWORD or ~/.pgpass";

/** The help text of every `--db` option. */
export const DB_HELP =
  `use lock NAMEs on this PostgreSQL database instead of lock files (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables)${DB_PASSWORD_HINT}`;

/** The help text of every `--schema` option. */
export const SCHEMA_HELP =
  "with --db: the PostgreSQL schema of lockbox's tables (default LOCKBOX_DATABASE_SCHEMA, else lockbox); each schema has its own locks, tokens and documents";

/** `--db` and `--schema` as a command's options hold them. */
export interface DbOptions {
  db?: string;
  schema?: string;
}

/** Connects to the database `--db` names, in the schema `--schema` names. */
export async function _connectDb(
  url: string,
  schema?: string,
): Promise<PostgresBackend> {
  const { PostgresBackend } = await import("../postgres/backend.ts");
  return await PostgresBackend.connect(url === "env" ? undefined : url, {
    schema: schema ?? (_env("LOCKBOX_DATABASE_SCHEMA") || undefined),
  });
}

/**
 * Gives every command that takes `--db` a `--schema NAME` (checked as it
 * is parsed), refused where no database is named.
 */
export function _addSchemaOptions(command: Command): void {
  if (command.options.some((option) => option.long === "--db")) {
    command.option("--schema <name>", SCHEMA_HELP, (name: string) => {
      try {
        return _checkSchema(name);
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
    });
    command.hook("preAction", (self) => {
      const { db, schema } = self.opts() as DbOptions;
      if (schema !== undefined && !_isDbUrl(db)) {
        self.error(
          "error: --schema names a PostgreSQL schema: give it with --db URL (or --db env)",
        );
      }
    });
  }
  for (const sub of command.commands) _addSchemaOptions(sub);
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
  options: DbOptions,
  fn: (db: PostgresBackend | undefined) => Promise<R>,
): Promise<R> {
  if (options.db === undefined) return await fn(undefined);
  const db = await _connectDb(options.db, options.schema);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
