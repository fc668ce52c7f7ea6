// `lockbox clean`: removes stale lock files, never a held one.

import type { Command } from "commander";
import { cleanupStaleLocks } from "../lock/lock_monitor.ts";
import { _Exit, _json, _print, _say, EXIT_IO } from "./_output.ts";
import { _duration } from "./_parse.ts";

/** Adds `lockbox clean` to the program. */
export function _addClean(program: Command): void {
  program.command("clean")
    .description(
      "Remove stale lock files (free, and older than --stale-after); never a held one",
    )
    .argument("[dir...]", "directories to clean (default: .)")
    .option("-r, --recursive", "clean subdirectories too")
    .option(
      "--stale-after <duration>",
      "age after which a free lock file is stale (default 1h)",
      _duration,
    )
    .option("--dry-run", "say what would be removed, remove nothing")
    .option("--json", "print the report as JSON")
    .action(async (dirs: string[], options) => {
      const report = {
        removed: [] as string[],
        kept: [] as { path: string; reason: string }[],
        errors: [] as { path: string; error: string }[],
      };
      for (const dir of dirs.length ? dirs : ["."]) {
        const one = await cleanupStaleLocks(dir, {
          recursive: options.recursive,
          staleAfter: options.staleAfter,
          dryRun: options.dryRun,
        });
        report.removed.push(...one.removed);
        report.kept.push(...one.kept);
        report.errors.push(...one.errors);
      }
      if (options.json) {
        _json(report);
      } else {
        const verb = options.dryRun ? "would remove" : "removed";
        for (const path of report.removed) _print(`${verb} ${path}`);
        for (const { path, error } of report.errors) {
          _say(`cannot clean '${path}': ${error}`);
        }
        _say(
          `${report.removed.length} ${verb}, ${report.kept.length} kept, ${report.errors.length} errors`,
        );
      }
      if (report.errors.length > 0) throw new _Exit(EXIT_IO);
    });
}
