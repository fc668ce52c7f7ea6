// `lockbox migrate --db URL FILE[=NAME]...`: file stores into PostgreSQL,
// each copied under the file's lock and the document's row lock.

import type { Command } from "commander";
import { _Exit, _print, _say, EXIT_CONFLICT } from "./_output.ts";
import { _usingDb } from "./_database.ts";

/** Adds `lockbox migrate` to the program. */
export function _addMigrate(program: Command): void {
  program.command("migrate")
    .description(
      "Copy file stores into a PostgreSQL database, each under both locks; FILE=NAME names the document (default: the file's name without .json)",
    )
    .argument("<file...>", "the store files, each optionally =NAME")
    .requiredOption(
      "--db <url>",
      "the database (a postgres:// URL, or 'env' for LOCKBOX_DATABASE_URL or the PG* variables)",
    )
    .option("--replace", "overwrite documents that hold something else")
    .action((operands: string[], options) =>
      _usingDb(options.db, async (db) => {
        const { migrateFileStore } = await import("../postgres/migrate.ts");
        let failed = 0;
        for (const operand of operands) {
          const at = operand.lastIndexOf("=");
          const file = at > 0 ? operand.slice(0, at) : operand;
          const name = at > 0
            ? operand.slice(at + 1)
            : (file.split("/").pop() ?? file).replace(/\.json$/i, "");
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
            `${failed} of ${operands.length} stores not migrated`,
          );
        }
      })
    );
}
