// `lockbox groups`: seed 000's capture group DB.

import type { Command } from "commander";
import { CaptureGroups, GroupNotFoundError } from "../seeds/capture_groups.ts";
import { _json, _print } from "./_output.ts";
import { _isDbUrl, _usingDb } from "./_database.ts";
import { _duration } from "./_parse.ts";

/** Adds `lockbox groups` to the program. */
export function _addGroups(program: Command): void {
  const groups = program.command("groups")
    .description(
      "Capture groups: create groups, add transaction ids to them, list, show, delete and prune them (seed 000's capture group DB)",
    )
    .requiredOption(
      "--db <file|url>",
      "the capture group DB file, or a PostgreSQL URL (postgres://..., or 'env') that keeps it as the document --name",
    )
    .option(
      "--name <name>",
      "with a database URL: the document's name",
      "capture_groups",
    );
  /** Runs `fn` on the DB, a file or a document. */
  const withDb = <R>(fn: (db: CaptureGroups) => Promise<R>): Promise<R> => {
    const { db, name, schema } = groups.opts();
    return _isDbUrl(db)
      ? _usingDb(
        { db, schema },
        (backend) => fn(new CaptureGroups(name, { backend })),
      )
      : fn(new CaptureGroups(db));
  };
  groups.command("create").argument("[id]", "the group id (default: new)")
    .description("Create a group; print its id")
    .action((id?: string) => withDb(async (db) => _print(await db.create(id))));
  groups.command("add").argument("<id>").argument("<txn...>")
    .description("Add transactions to a group")
    .action((id: string, txns: string[]) =>
      withDb(async (db) => {
        for (const txn of txns) await db.addTransaction(id, txn);
      })
    );
  groups.command("list").description("Print every group id")
    .action(() =>
      withDb(async (db) => {
        for (const id of await db.list()) _print(id);
      })
    );
  groups.command("show").argument("<id>").description("Print a group as JSON")
    .action((id: string) =>
      withDb(async (db) => {
        const group = await db.get(id);
        if (!group) throw new GroupNotFoundError(id, db.dbPath);
        _json(group);
      })
    );
  groups.command("delete").argument("<id>").description("Delete a group")
    .action((id: string) =>
      withDb(async (db) => {
        if (!await db.delete(id)) throw new GroupNotFoundError(id, db.dbPath);
      })
    );
  groups.command("prune")
    .description("Delete groups older than a duration; print their ids")
    .requiredOption("--older-than <duration>", "90s, 5m, 1h, 2d", _duration)
    .action((options) =>
      withDb(async (db) => {
        const pruned = await db.pruneOlderThan(options.olderThan / 1000);
        for (const id of pruned) _print(id);
      })
    );
}
