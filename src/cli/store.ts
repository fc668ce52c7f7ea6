// `lockbox store get|set|edit|check|watch|reset-fence`: a store's document, read and changed
// under its lock, in whole-file or journal mode as the files beside it say.

import type { Command } from "commander";
import { CorruptStoreError, StoreError } from "../base/errors.ts";
import {
  _env,
  _isTerminal,
  _lstat,
  _onTerminationSignals,
  _readStdinLine,
  _writeStderr,
} from "../runtime/mod.ts";
import { _getPointer, _setPointer } from "../store/_json_pointer.ts";
import { _hasJournal } from "../store/_store_mode.ts";
import { editStore } from "../store/edit_store.ts";
import { _editDocument } from "../store/_edit_document.ts";
import type { PostgresBackend } from "../postgres/backend.ts";
import { _usingDb, DB_STORE_HELP } from "./_database.ts";
import { JsonStore } from "../store/json_store.ts";
import {
  _Exit,
  _json,
  _print,
  _say,
  EXIT_CONFLICT,
  EXIT_IO,
  EXIT_OK,
} from "./_output.ts";
import { _jsonValue, _pointer, _seconds } from "./_parse.ts";

/** Adds `lockbox store` to the program. */
export function _addStore(program: Command): void {
  const store = program.command("store")
    .description(
      "Read, change, edit and check JSON store files, under their locks",
    );
  _addGet(store);
  _addSet(store);
  _addEdit(store);
  _addCheck(store);
  _addWatch(store);
  _addResetFence(store);
}

/** `lockbox store reset-fence FILE`: forgets the fences applied to a store. */
function _addResetFence(store: Command): void {
  store.command("reset-fence")
    .description(
      "Forget the fences applied to a store, under its lock, so that the next fenced write is accepted whatever its token",
    )
    .argument("<file>", "the store file (with --db: the document's name)")
    .option("--db <url>", DB_STORE_HELP)
    .action((file: string, options) =>
      _usingDb(options.db, async (db) => {
        await _openStore(db, file, null).resetFence();
        _say(`reset the fence of '${file}'`);
      })
    );
}

/** `lockbox store get FILE [--pointer P]`: prints the document or one value. */
function _addGet(store: Command): void {
  store.command("get")
    .description("Print a store's document, or the value at a JSON pointer")
    .argument("<file>", "the store file (with --db: the document's name)")
    .option(
      "--pointer <pointer>",
      "a JSON pointer such as /users/0/name",
      _pointer,
    )
    .option("--db <url>", DB_STORE_HELP)
    .action(async (file: string, options) => {
      const doc = await _usingDb(options.db, async (db) => {
        if (db) return await _readDocument(db, file);
        if (_lstat(file) === null) {
          throw new _Exit(EXIT_CONFLICT, `Cannot read '${file}': no such file`);
        }
        return await _openStore(undefined, file, null).read();
      });
      const found = _getPointer(doc, options.pointer ?? "");
      if (!found.found) {
        throw new _Exit(
          EXIT_CONFLICT,
          `Cannot read '${options.pointer}' in '${file}': no value there`,
        );
      }
      _json(found.value);
    });
}

/** `lockbox store set FILE POINTER JSON`: one locked read-modify-write. */
function _addSet(store: Command): void {
  store.command("set")
    .description(
      "Set the value at a JSON pointer, in one locked read-modify-write (missing objects on the way are created; - appends to an array)",
    )
    .argument(
      "<file>",
      "the store file, created if missing (with --db: the document's name)",
    )
    .argument(
      "<pointer>",
      "a JSON pointer such as /config/retries, or '' for the whole document",
      _pointer,
    )
    .argument("<json-value>", "the new value, as JSON", _jsonValue)
    .option("--db <url>", DB_STORE_HELP)
    .action((file: string, pointer: string, value: unknown, options) =>
      _usingDb(options.db, async (db) => {
        await _openStore(db, file, () => ({})).transform((doc) =>
          _setPointer(doc, pointer, value)
        );
      })
    );
}

/** `lockbox store edit FILE`: $VISUAL or $EDITOR on a copy, under the lock. */
function _addEdit(store: Command): void {
  store.command("edit")
    .description(
      "Edit a store in $VISUAL or $EDITOR under its lock, as visudo does: invalid JSON is never written",
    )
    .argument("<file>", "the store file (with --db: the document's name)")
    .option("--db <url>", DB_STORE_HELP)
    .action(async (file: string, options) => {
      const editor = (_env("VISUAL") || _env("EDITOR") || "vi").trim().split(
        /\s+/,
      );
      const editOptions = {
        editor,
        onInvalid: async (error: SyntaxError) => {
          _say(`'${file}': the edit is not valid JSON (${error.message})`);
          if (!_isTerminal("stdin")) return false;
          _writeStderr("What now? (e)dit again, (q)uit without saving [e]: ");
          const answer = (await _readStdinLine())?.trim().toLowerCase();
          return answer === "" || answer === "e";
        },
      };
      const outcome = await _usingDb(options.db, (db) =>
        db
          // The row stays locked while a person edits: no hold limit.
          ? _editDocument(
            db.jsonStore<unknown>(file, {
              initial: () => ({}),
              holdTimeout: Infinity,
            }),
            `${file.replace(/[^A-Za-z0-9._-]/g, "_")}.json`,
            editOptions,
          )
          : editStore(file, editOptions));
      if (outcome === "aborted") {
        throw new _Exit(EXIT_CONFLICT, `'${file}' left untouched`);
      }
      _say(
        outcome === "changed"
          ? `wrote '${file}'`
          : `'${file}' unchanged, nothing written`,
      );
    });
}

/** `lockbox store check FILE...`: parses each, optionally quarantining. */
function _addCheck(store: Command): void {
  store.command("check")
    .description(
      "Check that store files parse; --quarantine moves corrupt ones aside",
    )
    .argument("<file...>", "the store files (with --db: document names)")
    .option(
      "--quarantine",
      "move a corrupt file's bytes to <file>.corrupt-<time> and continue from its newest valid backup",
    )
    .option("--db <url>", DB_STORE_HELP)
    .action(async (files: string[], options) => {
      if (options.db !== undefined) {
        return await _usingDb(options.db, (db) => _checkDocuments(db!, files));
      }
      let code = EXIT_OK;
      for (const file of files) {
        if (_lstat(file) === null) {
          _print(`missing ${file}`);
          code = Math.max(code, EXIT_CONFLICT);
          continue;
        }
        const warnings: string[] = [];
        try {
          const checked = new JsonStore<unknown>(file, {
            initial: null,
            onCorrupt: options.quarantine ? "quarantine" : "throw",
            onWarning: (message) => warnings.push(message),
            journal: _hasJournal(file),
          });
          await checked.read();
          _print(
            warnings.length
              ? `quarantined ${file}: ${warnings.join("; ")}`
              : `ok ${file}`,
          );
        } catch (error) {
          // Every file is checked; the exit status is the worst one.
          if (error instanceof CorruptStoreError) {
            _print(`corrupt ${file}: ${error.reason}`);
          } else if (error instanceof StoreError) {
            _print(`error ${file}: ${error.message}`);
          } else throw error;
          code = EXIT_IO;
        }
      }
      if (code !== EXIT_OK) throw new _Exit(code);
    });
}

/**
 * The store FILE names: the database's document with `--db`, else the file
 * in whatever mode the files beside it say.
 */
function _openStore(
  db: PostgresBackend | undefined,
  file: string,
  initial: unknown,
): JsonStore<unknown> {
  return db
    ? db.jsonStore<unknown>(file, { initial })
    : new JsonStore<unknown>(file, { initial, journal: _hasJournal(file) });
}

/** A database document for `store get`; a never-written one is an error. */
async function _readDocument(
  db: PostgresBackend,
  name: string,
): Promise<unknown> {
  const { value, version } = await db.jsonStore<unknown>(name, {
    initial: null,
  }).readWithVersion();
  if (version === 0) {
    throw new _Exit(
      EXIT_CONFLICT,
      `Cannot read '${name}': no such document on the database`,
    );
  }
  return value;
}

/**
 * `store check --db`: each document must exist and hold JSON (the server
 * checks JSON on every write, so a stored document cannot be corrupt).
 */
async function _checkDocuments(
  db: PostgresBackend,
  names: string[],
): Promise<void> {
  let code = EXIT_OK;
  for (const name of names) {
    const { version } = await db.jsonStore<unknown>(name, { initial: null })
      .readWithVersion();
    if (version === 0) {
      _print(`missing ${name}`);
      code = EXIT_CONFLICT;
    } else _print(`ok ${name} (version ${version})`);
  }
  if (code !== EXIT_OK) throw new _Exit(code);
}

/**
 * `lockbox store watch FILE`: one line per new version until SIGINT or
 * SIGTERM (status 0) or until stdout is closed (141, at the next line).
 */
function _addWatch(store: Command): void {
  store.command("watch")
    .description(
      "Print the document, then each new version any process commits, one line each, until interrupted",
    )
    .argument("<file>", "the store file (with --db: the document's name)")
    .option("--json", 'print {"version":N,"value":...} JSON lines')
    .option(
      "--recheck <seconds>",
      "also read the store this often, for file systems without change notifications (default 2)",
      _seconds,
    )
    .option("--db <url>", DB_STORE_HELP)
    .action((file: string, options) =>
      _usingDb(options.db, async (db) => {
        const controller = new AbortController();
        const stop = _onTerminationSignals(() => controller.abort());
        try {
          for await (
            const { value, version } of _openStore(db, file, null).watch({
              signal: controller.signal,
              recheckInterval: options.recheck,
            })
          ) {
            _print(
              options.json
                ? JSON.stringify({ version, value })
                : `${version} ${JSON.stringify(value)}`,
            );
          }
        } finally {
          stop();
        }
      })
    );
}
