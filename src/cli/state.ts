// `lockbox state`: seed 003's archiver run state and failure log.

import type { Command } from "commander";
import {
  appendToFailureLog,
  getIncrementalStartRun,
  readState,
  updateAttemptedRunState,
  updateContiguousRunState,
} from "../seeds/archiver_state.ts";
import { _json, _print } from "./_output.ts";
import { _runs } from "./_parse.ts";
import { _usingDb, DB_STORE_HELP } from "./_database.ts";

/** Adds `lockbox state` to the program. */
export function _addState(program: Command): void {
  const state = program.command("state")
    .description(
      "Archiver run state: show it, the next run to archive, record runs that succeeded or failed (seed 003)",
    )
    .requiredOption("--state <file>", "the state file")
    .option("--failures <file>", "the failure log (one run number a line)")
    .option("--db <url>", DB_STORE_HELP);
  state.command("show").description("Print the state as JSON")
    .action(() =>
      _usingDb(
        state.opts(),
        async (backend) =>
          _json(await readState(state.opts().state, { backend })),
      )
    );
  state.command("next").description(
    "Print the run to start the next incremental import from",
  )
    .action(() =>
      _usingDb(state.opts(), async (backend) =>
        _print(
          String(await getIncrementalStartRun(state.opts().state, { backend })),
        ))
    );
  state.command("record")
    .description(
      "Record runs: succeeded ones advance last_contiguous_run, all advance last_attempted_run, failed ones go to the failure log",
    )
    .option("--succeeded <runs>", "such as 101,102,105-110", _runs)
    .option("--failed <runs>", "such as 103,104", _runs)
    .action(async (options, cmd: Command) => {
      const { state: file, failures } = state.opts();
      const succeeded: number[] = options.succeeded ?? [];
      const failed: number[] = options.failed ?? [];
      if (failed.length > 0 && failures === undefined) {
        cmd.error(
          "--failed needs --failures FILE, the failure log to append to",
        );
      }
      await _usingDb(state.opts(), async (backend) => {
        await updateContiguousRunState(file, succeeded, { backend });
        const result = await updateAttemptedRunState(file, [
          ...succeeded,
          ...failed,
        ], { backend });
        if (failed.length > 0) {
          await appendToFailureLog(failures, failed, { backend });
        }
        _json(result);
      });
    });
}
