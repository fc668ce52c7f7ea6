// `lockbox store get|set|edit|check`: a store's document, read and changed
// under its lock, in whole-file or journal mode as the files beside it say.

import type { Command } from "commander";
import { CorruptStoreError, StoreError } from "../base/errors.ts";
import {
  _env,
  _isTerminal,
  _lstat,
  _readStdinLine,
  _writeStderr,
} from "../runtime/mod.ts";
import { _getPointer, _setPointer } from "../store/_json_pointer.ts";
import { _hasJournal } from "../store/_store_mode.ts";
import { editStore } from "../store/edit_store.ts";
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
import { _jsonValue, _pointer } from "./_parse.ts";

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
}

/** `lockbox store get FILE [--pointer P]`: prints the document or one value. */
function _addGet(store: Command): void {
  store.command("get")
    .description("Print a store's document, or the value at a JSON pointer")
    .argument("<file>", "the store file")
    .option(
      "--pointer <pointer>",
      "a JSON pointer such as /users/0/name",
      _pointer,
    )
    .action(async (file: string, options) => {
      if (_lstat(file) === null) {
        throw new _Exit(EXIT_CONFLICT, `Cannot read '${file}': no such file`);
      }
      const doc = await new JsonStore<unknown>(file, {
        initial: null,
        journal: _hasJournal(file),
      }).read();
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
    .argument("<file>", "the store file (created if missing)")
    .argument(
      "<pointer>",
      "a JSON pointer such as /config/retries, or '' for the whole document",
      _pointer,
    )
    .argument("<json-value>", "the new value, as JSON", _jsonValue)
    .action(async (file: string, pointer: string, value: unknown) => {
      await new JsonStore<unknown>(file, {
        initial: () => ({}),
        journal: _hasJournal(file),
      }).transform((doc) => _setPointer(doc, pointer, value));
    });
}

/** `lockbox store edit FILE`: $VISUAL or $EDITOR on a copy, under the lock. */
function _addEdit(store: Command): void {
  store.command("edit")
    .description(
      "Edit a store in $VISUAL or $EDITOR under its lock, as visudo does: invalid JSON is never written",
    )
    .argument("<file>", "the store file")
    .action(async (file: string) => {
      const editor = (_env("VISUAL") || _env("EDITOR") || "vi").trim().split(
        /\s+/,
      );
      const outcome = await editStore(file, {
        editor,
        onInvalid: async (error) => {
          _say(`'${file}': the edit is not valid JSON (${error.message})`);
          if (!_isTerminal("stdin")) return false;
          _writeStderr("What now? (e)dit again, (q)uit without saving [e]: ");
          const answer = (await _readStdinLine())?.trim().toLowerCase();
          return answer === "" || answer === "e";
        },
      });
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
    .argument("<file...>", "the store files")
    .option(
      "--quarantine",
      "move a corrupt file's bytes to <file>.corrupt-<time> and continue from its newest valid backup",
    )
    .action(async (files: string[], options) => {
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
