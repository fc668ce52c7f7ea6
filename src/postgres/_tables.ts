// lockbox's tables in a schema: the DDL that makes them (and upgrades a
// database an older lockbox made), and the check connect() runs first, so
// that a role that may not make tables can use tables already made.

import { _literal, type _Session, _sqlState } from "./_session.ts";
import type { _Schema } from "./schema.ts";

/**
 * The trigger that keeps a document's changes safe from writers that do
 * not know the document_changes table (an older lockbox, a hand-made
 * UPDATE): a new value or version from them is refused while the document
 * has changes not yet folded into its value (they would write over them),
 * and otherwise gets a new value_id, so that lockbox's cached copies read
 * the value again. lockbox's own transactions say who they are with the
 * setting lockbox.writer. `s` is the schema, as SQL.
 */
const _documentsGuard = (s: string) => `
CREATE OR REPLACE FUNCTION ${s}.documents_guard() RETURNS trigger
LANGUAGE plpgsql AS $guard$
DECLARE
  pending boolean;
BEGIN
  IF current_setting('lockbox.writer', true) = 'changes' THEN
    RETURN NEW;
  END IF;
  IF NEW.version IS DISTINCT FROM OLD.version
     OR NEW.value::text IS DISTINCT FROM OLD.value::text THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.document_changes
      WHERE name = $1 AND version > $2)', TG_TABLE_SCHEMA)
      INTO pending USING OLD.name, OLD.version;
    IF pending THEN
      RAISE EXCEPTION 'Cannot write document % in %.documents: it has changes in %.document_changes that this writer does not read (an older lockbox, or a hand-made UPDATE), and writing over them would lose them',
        OLD.name, TG_TABLE_SCHEMA, TG_TABLE_SCHEMA
        USING ERRCODE = 'LB001',
          HINT = 'Upgrade every lockbox client that writes this document; or write it through lockbox (JsonStore.write folds the changes in)';
    END IF;
    NEW.value_id := txid_current();
  END IF;
  RETURN NEW;
END
$guard$;
DO $make$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'documents_guard'
                 AND tgrelid = '${
  s.replaceAll("'", "''")
}.documents'::regclass) THEN
    CREATE TRIGGER documents_guard BEFORE UPDATE ON ${s}.documents
      FOR EACH ROW EXECUTE FUNCTION ${s}.documents_guard();
  END IF;
END $make$;`;

/**
 * Makes the schema's tables; the schema too unless `made` (CREATE SCHEMA
 * needs CREATE on the database even when the schema exists).
 */
const _setupSql = (schema: _Schema, made: boolean) => {
  const s = schema.sql;
  return `
BEGIN;
SELECT pg_advisory_xact_lock(${schema.lockKey}, 0);
${made ? "" : `CREATE SCHEMA IF NOT EXISTS ${s};`}
CREATE TABLE IF NOT EXISTS ${s}.locks (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE,
  fence bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.holders (
  backend_pid integer PRIMARY KEY,
  lock_id integer NOT NULL,
  shared boolean NOT NULL,
  token bigint NOT NULL,
  pid integer NOT NULL,
  hostname text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  metadata jsonb
);
CREATE TABLE IF NOT EXISTS ${s}.waits (
  backend_pid integer PRIMARY KEY,
  lock_id integer NOT NULL,
  pid integer NOT NULL,
  hostname text NOT NULL,
  since timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.documents (
  name text PRIMARY KEY,
  value json,
  version bigint NOT NULL DEFAULT 0,
  fence bigint,
  updated_at timestamptz NOT NULL DEFAULT now(),
  value_id bigint
);
ALTER TABLE ${s}.documents ADD COLUMN IF NOT EXISTS value_id bigint;
CREATE TABLE IF NOT EXISTS ${s}.document_changes (
  name text NOT NULL REFERENCES ${s}.documents (name)
    ON DELETE CASCADE ON UPDATE CASCADE,
  version bigint NOT NULL,
  ops json NOT NULL,
  PRIMARY KEY (name, version)
);
${_documentsGuard(s)}
CREATE TABLE IF NOT EXISTS ${s}.document_backups (
  name text NOT NULL,
  version bigint NOT NULL,
  value json NOT NULL,
  saved_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS ${s}.quarantine (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  version bigint NOT NULL,
  value json NOT NULL,
  reason text NOT NULL,
  quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.logs (
  name text NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  entry json NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, seq)
);
COMMIT;`;
};

/** lockbox's tables: connect makes them when any is missing. */
const _TABLES = [
  "locks",
  "holders",
  "documents",
  "document_backups",
  "quarantine",
  "logs",
  "waits",
  "document_changes",
];

/** The tables an older lockbox made, before documents had change rows. */
const _OLDER_TABLES = _TABLES.filter((table) => table !== "document_changes");

/** SQL that is true when every one of `tables` exists in the schema. */
const _allExist = (schema: _Schema, tables: string[]) =>
  tables.map((table) =>
    `to_regclass(${_literal(`${schema.sql}.${table}`)}) IS NOT NULL`
  ).join(" AND ");

/**
 * Makes lockbox's tables in `schema` where any is missing, on `session`,
 * within `until`. `changeRows` is `false` when the database is an older
 * lockbox's and this role may not upgrade it (not the tables' owner,
 * 42501): its documents are then read and written whole, as that lockbox
 * does (the upgrade rolled back, the session usable).
 */
export async function _makeTables(
  session: _Session,
  schema: _Schema,
  until: number,
): Promise<{ changeRows: boolean }> {
  // Made already: a user with no CREATE on the database can use it.
  const [{ ready, older, made }] = await session.query<
    { ready: boolean; older: boolean; made: boolean }
  >(
    `SELECT ${_allExist(schema, _TABLES)} AND to_regprocedure(${
      _literal(`${schema.sql}.documents_guard()`)
    }) IS NOT NULL AS ready, ${
      _allExist(schema, _OLDER_TABLES)
    } AS older, EXISTS (SELECT FROM pg_namespace WHERE nspname = $1) AS made`,
    [schema.name],
  );
  if (ready) return { changeRows: true };
  try {
    // It waits for any other process making them at the same time.
    await session.run(_setupSql(schema, made), { until, waits: true });
    return { changeRows: true };
  } catch (error) {
    if (!older || _sqlState(error) !== "42501") throw error;
    await session.run("ROLLBACK");
    return { changeRows: false };
  }
}
