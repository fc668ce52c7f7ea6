// `lockbox migrate --db URL FILE[=NAME]...`: file stores into PostgreSQL,
// each copied under the file's lock and the document's row lock.

import type { Command } from "commander";
import { _Exit, _print, _say, EXIT_CONFLICT, EXIT_USAGE } from "./_output.ts";
import { _usingDb, DB_PASSWORD_HINT } from "./_database.ts";
import { _lstat } from "../runtime/mod.ts";

/** One operand's store file and document name. */
interface _Move {
  file: string;
  name: string;
}

/** The document name of a file named without one: its name, less `.json`. */
function _defaultName(file: string): string {
  return (file.split("/").pop() ?? file).replace(/\.json$/i, "");
}

/**
 * Reads `FILE[=NAME]` unambiguously: an operand that is an existing file is
 * that file, whole (`k=v.json`); otherwise it splits at the last `=` whose
 * left part is an existing file (the longest such file), so NAME may hold
 * `=` too. When no part is a file, the operand is the (missing) file.
 */
export function _parseMove(operand: string): _Move {
  if (_lstat(operand) === null) {
    for (
      let at = operand.lastIndexOf("=");
      at > 0;
      at = operand.lastIndexOf("=", at - 1)
    ) {
      const file = operand.slice(0, at);
      const name = operand.slice(at + 1);
      if (name !== "" && _lstat(file) !== null) return { file, name };
    }
  }
  return { file: operand, name: _defaultName(operand) };
}

/** Adds `lockbox migrate` to the program. */
export function _addMigrate(program: Command): void {
  program.command("migrate")
    .description(
      "Copy file stores into a PostgreSQL database, each under both locks, keeping every number's text and every key's place; FILE=NAME names the document (default: the file's name without .json): an existing file is always a file, else it splits at the last '=' that follows an existing file",
    )
    .argument("<file...>", "the store files, each optionally =NAME")
    .requiredOption(
      "--db <url>",
      `the database (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables)${DB_PASSWORD_HINT}`,
    )
    .option(
      "--name <name>",
      "the document's name for a single FILE, taken as it is (no '=' is split)",
    )
    .option("--replace", "overwrite documents that hold something else")
    .action((operands: string[], options) => {
      if (options.name !== undefined && operands.length !== 1) {
        throw new _Exit(
          EXIT_USAGE,
          `Cannot use --name with ${operands.length} files: it names one document; use FILE=NAME for each`,
        );
      }
      const moves = options.name === undefined
        ? operands.map(_parseMove)
        : [{ file: operands[0], name: options.name as string }];
      return _usingDb(options, async (db) => {
        const { migrateFileStore } = await import("../postgres/migrate.ts");
        let failed = 0;
        for (const { file, name } of moves) {
          try {
            const result = await migrateFileStore(db!, file, name, {
              replace: options.replace === true,
            });
            _print(
              result.outcome === "copied"
                ? `copied ${result.file} -> ${result.name} (${result.bytes} bytes, version ${result.version})`
                : `same ${result.file} -> ${result.name} (already there, version ${result.version})`,
            );
          } catch (error) {
            // Every file is tried; the exit status says whether all moved.
            _say(`failed ${file} -> ${name}: ${(error as Error).message}`);
            failed++;
          }
        }
        if (failed > 0) {
          throw new _Exit(
            EXIT_CONFLICT,
            `${failed} of ${moves.length} stores not migrated`,
          );
        }
      });
    });
}
