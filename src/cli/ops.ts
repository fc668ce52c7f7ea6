// `lockbox ops`: seed 000's operation DB.

import type { Command } from "commander";
import { CaptureGroups } from "../seeds/capture_groups.ts";
import { Operations } from "../seeds/operations.ts";
import { _Exit, _print, EXIT_CONFLICT } from "./_output.ts";

/** Adds `lockbox ops` to the program. */
export function _addOps(program: Command): void {
  const ops = program.command("ops")
    .description("Seed 000's operation DB")
    .requiredOption("--db <file>", "the operation DB")
    .requiredOption("--groups-db <file>", "the capture group DB");
  const opsDb = () =>
    new Operations(ops.opts().db, {
      groups: new CaptureGroups(ops.opts().groupsDb),
    });
  ops.command("register").argument("<group>")
    .description("Register an operation for a group; print its id")
    .action(async (group: string) => _print(await opsDb().register(group)));
  ops.command("get").argument("<op>")
    .description("Print an operation's capture group id")
    .action(async (op: string) => {
      const group = await opsDb().captureGroupOf(op);
      if (group === undefined) {
        throw new _Exit(
          EXIT_CONFLICT,
          `Cannot find operation '${op}' in '${ops.opts().db}'`,
        );
      }
      _print(group);
    });
  ops.command("list").description("Print every operation id")
    .action(async () => {
      for (const id of await opsDb().list()) _print(id);
    });
}
