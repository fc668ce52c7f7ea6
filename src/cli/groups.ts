// `lockbox groups`: seed 000's capture group DB.

import type { Command } from "commander";
import { CaptureGroups, GroupNotFoundError } from "../seeds/capture_groups.ts";
import { _json, _print } from "./_output.ts";
import { _duration } from "./_parse.ts";

/** Adds `lockbox groups` to the program. */
export function _addGroups(program: Command): void {
  const groups = program.command("groups")
    .description("Seed 000's capture group DB")
    .requiredOption("--db <file>", "the capture group DB");
  const groupsDb = () => new CaptureGroups(groups.opts().db);
  groups.command("create").argument("[id]", "the group id (default: new)")
    .description("Create a group; print its id")
    .action(async (id?: string) => _print(await groupsDb().create(id)));
  groups.command("add").argument("<id>").argument("<txn...>")
    .description("Add transactions to a group")
    .action(async (id: string, txns: string[]) => {
      const db = groupsDb();
      for (const txn of txns) await db.addTransaction(id, txn);
    });
  groups.command("list").description("Print every group id")
    .action(async () => {
      for (const id of await groupsDb().list()) _print(id);
    });
  groups.command("show").argument("<id>").description("Print a group as JSON")
    .action(async (id: string) => {
      const group = await groupsDb().get(id);
      if (!group) throw new GroupNotFoundError(id, groupsDb().dbPath);
      _json(group);
    });
  groups.command("delete").argument("<id>").description("Delete a group")
    .action(async (id: string) => {
      if (!await groupsDb().delete(id)) {
        throw new GroupNotFoundError(id, groupsDb().dbPath);
      }
    });
  groups.command("prune")
    .description("Delete groups older than a duration; print their ids")
    .requiredOption("--older-than <duration>", "90s, 5m, 1h, 2d", _duration)
    .action(async (options) => {
      const pruned = await groupsDb().pruneOlderThan(options.olderThan / 1000);
      for (const id of pruned) _print(id);
    });
}
