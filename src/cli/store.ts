// `lockbox store get|set|delete|edit|check|watch|reset-fence`: a store's
// document, read and changed under its lock, in whole-file or journal mode
// as the files beside it say, or a PostgreSQL document with `--db`.

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
import {
  _deletePointer,
  _getPointer,
  _initialFor,
  _setPointer,
} from "../store/json_pointer.ts";
import { _hasJournal } from "../store/store_mode.ts";
import { editStore } from "../store/edit_store.ts";
import { _editDocument } from "../store/edit_document.ts";
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
import { _pointer, _seconds } from "./_parse.ts";

/** Adds `lockbox store` to the program. */
export function _addStore(program: Command): void {
  const store = program.command("store")
    .description(
      "Read, change, delete, edit, check and watch JSON store files, under their locks; reset their fences",
    );
  _addGet(store);
  _addSet(store);
  _addDelete(store);
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
      _usingDb(options, async (db) => {
        await _openStore(db, file, null).resetFence();
        _say(`reset the fence of '${file}'`);
      })
    );
}

/**
 * `lockbox store get FILE [POINTER]`: prints the document or one value.
 * `--pointer P` is the older spelling of POINTER, kept for scripts.
 */
function _addGet(store: Command): void {
  store.command("get")
    .description(
      "Print a store's document, or the value at a JSON pointer (--raw: a string without quotes)",
    )
    .argument("<file>", "the store file (with --db: the document's name)")
    .argument(
      "[pointer]",
      "a JSON pointer such as /users/0/name (default: the whole document)",
      _pointer,
    )
    .option("--raw", "print a string value as it is, without JSON quotes")
    .option(
      "--pointer <pointer>",
      "deprecated: give the pointer after FILE instead",
      _pointer,
    )
    .option("--db <url>", DB_STORE_HELP)
    .action(
      async (file: string, given: string | undefined, options, command) => {
        if (given !== undefined && options.pointer !== undefined) {
          command.error(
            "error: the pointer was given twice: give it after FILE, without --pointer",
          );
        }
        const pointer: string = given ?? options.pointer ?? "";
        const doc = await _usingDb(options, async (db) => {
          if (db) return await _readDocument(db, file);
          if (_lstat(file) === null) {
            throw new _Exit(
              EXIT_CONFLICT,
              `Cannot read '${file}': no such file`,
            );
          }
          return await _openStore(undefined, file, null).read();
        });
        const found = _getPointer(doc, pointer);
        if (!found.found) {
          throw new _Exit(
            EXIT_CONFLICT,
            `Cannot read '${pointer}' in '${file}': no value there`,
          );
        }
        if (options.raw && typeof found.value === "string") {
          _print(found.value);
        } else _json(found.value);
      },
    );
}

/** `lockbox store set FILE POINTER VALUE`: one locked read-modify-write. */
function _addSet(store: Command): void {
  store.command("set")
    .description(
      "Set the value at a JSON pointer, in one locked read-modify-write (missing objects on the way are created; - appends to an array, made if missing)",
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
    .argument("<value>", "the new value, as JSON (with --string: as it is)")
    .option("--string", "take VALUE as a plain string, not as JSON")
    .option("--db <url>", DB_STORE_HELP)
    .action(
      (file: string, pointer: string, text: string, options, command) => {
        let value: unknown = text;
        if (!options.string) {
          try {
            value = JSON.parse(text);
          } catch (error) {
            command.error(
              `error: the value '${text}' is not JSON (${
                (error as Error).message
              }): write 42, true, "text" or {"a":1}, or use --string for a plain string`,
            );
          }
        }
        return _usingDb(options, async (db) => {
          await _openStore(db, file, () => _initialFor(pointer)).transform((
            doc,
          ) => _setPointer(doc, pointer, value));
        });
      },
    );
}

/**
 * `lockbox store delete FILE POINTER`: removes one value under the lock. A
 * pointer with nothing there is "not found" (status 1, nothing written), as
 * `git config --unset` fails on a missing key; `--force` makes it status 0,
 * as `rm -f` and jq's `del()` treat it.
 */
function _addDelete(store: Command): void {
  store.command("delete")
    .description(
      "Delete the value at a JSON pointer, in one locked read-modify-write (an array element is removed, the rest move up)",
    )
    .argument("<file>", "the store file (with --db: the document's name)")
    .argument("<pointer>", "a JSON pointer such as /users/0", _pointer)
    .option(
      "-f, --force",
      "exit 0 when there is no value there (default: status 1)",
    )
    .option("--db <url>", DB_STORE_HELP)
    .action(async (file: string, pointer: string, options, command) => {
      if (pointer === "") {
        command.error(
          "error: the pointer '' is the whole document, which cannot be deleted; set it to {} instead",
        );
      }
      const absent = new _Exit(
        options.force ? EXIT_OK : EXIT_CONFLICT,
        options.force
          ? undefined
          : `Cannot delete '${pointer}' in '${file}': no value there; nothing written`,
      );
      await _usingDb(options, async (db) => {
        if (!db && _lstat(file) === null) throw absent;
        // Throwing in transform writes nothing: an absent value changes no
        // byte, version or mtime.
        await _openStore(db, file, null).transform((doc) => {
          if (!_deletePointer(doc, pointer)) throw absent;
          return doc;
        });
      });
    });
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
      const outcome = await _usingDb(options, (db) =>
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

/** One line of `store check --json`. */
interface _Checked {
  file: string;
  status: "ok" | "quarantined" | "corrupt" | "missing" | "error";
  /** Why it is corrupt, what went wrong, or what quarantining did. */
  reason?: string;
  /** With `--db`: the document's version. */
  version?: number;
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
    .option(
      "--json",
      'print [{"file","status","reason"?,"version"?}] (status ok, quarantined, corrupt, missing or error)',
    )
    .option("--db <url>", DB_STORE_HELP)
    .action(async (files: string[], options) => {
      const results = options.db !== undefined
        ? await _usingDb(options, (db) => _checkDocuments(db!, files))
        : await _checkFiles(files, options.quarantine ?? false);
      if (options.json) _json(results);
      else {
        for (const { file, status, reason, version } of results) {
          _print(
            `${status} ${file}${reason === undefined ? "" : `: ${reason}`}${
              version === undefined ? "" : ` (version ${version})`
            }`,
          );
        }
      }
      // Every file is checked; the exit status is the worst one.
      const code = Math.max(
        EXIT_OK,
        ...results.map(({ status }) =>
          status === "missing"
            ? EXIT_CONFLICT
            : status === "corrupt" || status === "error"
            ? EXIT_IO
            : EXIT_OK
        ),
      );
      if (code !== EXIT_OK) throw new _Exit(code);
    });
}

async function _checkFiles(
  files: string[],
  quarantine: boolean,
): Promise<_Checked[]> {
  const results: _Checked[] = [];
  for (const file of files) {
    if (_lstat(file) === null) {
      results.push({ file, status: "missing" });
      continue;
    }
    const warnings: string[] = [];
    try {
      const checked = new JsonStore<unknown>(file, {
        initial: null,
        onCorrupt: quarantine ? "quarantine" : "throw",
        onWarning: (message) => warnings.push(message),
        journal: _hasJournal(file),
      });
      await checked.read();
      results.push(
        warnings.length
          ? { file, status: "quarantined", reason: warnings.join("; ") }
          : { file, status: "ok" },
      );
    } catch (error) {
      if (error instanceof CorruptStoreError) {
        results.push({ file, status: "corrupt", reason: error.reason });
      } else if (error instanceof StoreError) {
        results.push({ file, status: "error", reason: error.message });
      } else throw error;
    }
  }
  return results;
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
): Promise<_Checked[]> {
  const results: _Checked[] = [];
  for (const name of names) {
    const { version } = await db.jsonStore<unknown>(name, { initial: null })
      .readWithVersion();
    results.push(
      version === 0
        ? { file: name, status: "missing" }
        : { file: name, status: "ok", version },
    );
  }
  return results;
}

/**
 * `lockbox store watch FILE`: one line per new version until SIGINT or
 * SIGTERM (status 130 or 143) or until stdout is closed (141, at the next
 * line).
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
      _usingDb(options, async (db) => {
        const controller = new AbortController();
        let stoppedBy: keyof typeof _SIGNALS | undefined;
        const stop = _onTerminationSignals((signal) => {
          stoppedBy ??= signal;
          controller.abort();
        });
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
        // As a shell reports a program the signal ended: 128 + its number.
        if (stoppedBy) throw new _Exit(128 + _SIGNALS[stoppedBy]);
      })
    );
}

const _SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
