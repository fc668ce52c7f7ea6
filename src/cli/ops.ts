// `lockbox ops`: seed 000's operation DB.

import type { Command } from "commander";
import { CaptureGroups } from "../seeds/capture_groups.ts";
import { Operations } from "../seeds/operations.ts";
import { _Exit, _print, EXIT_CONFLICT } from "./_output.ts";
import { _isDbUrl, _usingDb } from "./_database.ts";

/** Adds `lockbox ops` to the program. */
export function _addOps(program: Command): void {
  const ops = program.command("ops")
    .description(
      "Operations: register an operation against a capture group, look one up, list them (seed 000's operation DB)",
    )
    .requiredOption(
      "--db <file|url>",
      "the operation DB file, or a PostgreSQL URL (postgres://..., or 'env') that keeps it as the document --name",
    )
    .option(
      "--name <name>",
      "with a database URL: the document's name",
      "operations",
    )
    .option(
      "--groups-db <file|name>",
      "the capture group DB file (with a database URL: its document name, default capture_groups)",
    );
  /** Runs `fn` on the DBs, files or documents. */
  const withDb = <R>(fn: (db: Operations) => Promise<R>): Promise<R> => {
    const { db, name, groupsDb, schema } = ops.opts();
    if (_isDbUrl(db)) {
      return _usingDb({ db, schema }, (backend) =>
        fn(
          new Operations(name, {
            backend,
            groups: new CaptureGroups(groupsDb ?? "capture_groups", {
              backend,
            }),
          }),
        ));
    }
    if (groupsDb === undefined) {
      ops.error(
        "error: required option '--groups-db <file|name>' not specified",
      );
    }
    return fn(new Operations(db, { groups: new CaptureGroups(groupsDb) }));
  };
  ops.command("register").argument("<group>")
    .description("Register an operation for a group; print its id")
    .action((group: string) =>
      withDb(async (db) => _print(await db.register(group)))
    );
  ops.command("get").argument("<op>")
    .description("Print an operation's capture group id")
    .action((op: string) =>
      withDb(async (db) => {
        const group = await db.captureGroupOf(op);
        if (group === undefined) {
          throw new _Exit(
            EXIT_CONFLICT,
            `Cannot find operation '${op}' in '${db.dbPath}'`,
          );
        }
        _print(group);
      })
    );
  ops.command("list").description("Print every operation id")
    .action(() =>
      withDb(async (db) => {
        for (const id of await db.list()) _print(id);
      })
    );
}
