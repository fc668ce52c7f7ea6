// Moving file stores into PostgreSQL: each file's document becomes a
// document of the database, copied while both the file's lock and the
// document's row lock are held, so no writer of either changes it meanwhile.
// A whole file is read as Python's json module reads it, and the document's
// json column gets each value's text (numbers past 2^53, 1.0, -0.0) and
// each object's key order as the file had them: JavaScript's numbers and
// its integer-keys-first order would change a file Python wrote.

import { _toPath } from "../runtime/mod.ts";
import { _lstat } from "../runtime/mod.ts";
import { StoreError } from "../base/errors.ts";
import { JsonStore } from "../store/json_store.ts";
import { _hasJournal } from "../store/store_mode.ts";
import { _parsePython, _toPython } from "../store/python_json.ts";
import type { PostgresBackend } from "./backend.ts";
import { type _DocumentText, _TEXT } from "./_pg_document.ts";
import type { PgJsonStoreOptions } from "./pg_store.ts";

/** A lone UTF-16 surrogate, which UTF-8 (and so the server) cannot hold. */
const _LONE_SURROGATE =
  /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A document's text as migrate stores it: Python's one-line `json.dumps`
 * with the number texts and key order the file had, non-ASCII as is but a
 * lone surrogate escaped (`\udXXX`), as JSON.stringify does.
 */
function _exactText(value: unknown): string {
  return _toPython(value, null, false).replace(
    _LONE_SURROGATE,
    (c) => `\\u${c.charCodeAt(0).toString(16)}`,
  );
}

const _EXACT: _DocumentText = { parse: _parsePython, stringify: _exactText };

/** Options of {@linkcode migrateFileStore}. */
export interface MigrateOptions {
  /**
   * Replace a document that already holds something else. Without it such
   * a document is left as it is and the migration of that file fails.
   *
   * @default {false}
   */
  replace?: boolean;
  /**
   * How long to wait for each lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
}

/** What {@linkcode migrateFileStore} did. */
export interface MigrateResult {
  /** The file store. */
  file: string;
  /** The document it went to. */
  name: string;
  /**
   * `"copied"`: the document now holds the file's; `"same"`: it already
   * did, nothing was written.
   */
  outcome: "copied" | "same";
  /** The document's version after the migration. */
  version: number;
  /** The size of the document as JSON, in bytes. */
  bytes: number;
}

/**
 * Copies a file store (whole-file or journal mode) into the database as the
 * document `name`, holding the file's lock and the document's row lock
 * together. The file is left as it is.
 *
 * @param backend The database.
 * @param file The store file.
 * @param name The document's name.
 * @param options Whether to replace a different document; lock timeout.
 * @returns What was done.
 * @throws {StoreError} If the file does not exist, or the document holds
 *   something else and `replace` is not set.
 * @throws {CorruptStoreError} If the file does not parse.
 *
 * @example
 * ```ts ignore
 * import { migrateFileStore, PostgresBackend } from "@lockbox/lockbox/postgres";
 * await using db = await PostgresBackend.connect();
 * await migrateFileStore(db, "capture_groups.json", "capture_groups");
 * ```
 */
export async function migrateFileStore(
  backend: PostgresBackend,
  file: string | URL,
  name: string,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const path = _toPath(file);
  if (_lstat(path) === null) {
    throw new StoreError(
      path,
      `Cannot migrate '${path}': no such file; check the path`,
    );
  }
  // The journal is lockbox's own JSON; a whole file may be Python's.
  const journal = _hasJournal(path);
  const source = new JsonStore<unknown>(path, {
    initial: null,
    journal,
    ...(journal ? {} : { format: "python" as const }),
    lockTimeout: options.lockTimeout,
  });
  const target = backend.jsonStore<unknown>(name, {
    initial: null,
    lockTimeout: options.lockTimeout,
    [_TEXT]: _EXACT,
  } as PgJsonStoreOptions<unknown>);
  // An update that changes nothing: the file's lock, held while the
  // document is written under its own.
  return await source.update(async (value) => {
    const text = _exactText(value);
    try {
      JSON.parse(text);
    } catch {
      throw new StoreError(
        path,
        `Cannot migrate '${path}': it holds NaN, Infinity or -Infinity, which Python's json writes but JSON (and PostgreSQL's json type) has no place for; nothing was written; change them in the file (to null, or a string) and migrate again`,
      );
    }
    let outcome: "copied" | "same" = "same";
    await target.transform((current) => {
      const currentText = _exactText(current);
      if (currentText === text) return current;
      if (current !== null && !options.replace) {
        throw new StoreError(
          name,
          `Cannot migrate '${path}' to '${name}': the document already holds something else (${currentText.length} bytes); nothing was written; pass replace (--replace) to overwrite it`,
        );
      }
      outcome = "copied";
      return value;
    });
    const { version } = await target.readWithVersion();
    return {
      file: path,
      name,
      outcome,
      version,
      bytes: new TextEncoder().encode(text).length,
    };
  });
}
