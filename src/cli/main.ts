// How `lockbox` starts: the usual forms of `lockbox run` go straight to the
// lock layer, everything else through the full program (_program.ts, with
// commander); and how an error becomes an exit status. Nothing is imported
// here that `lockbox run` does not need.

import { _Exit, _say, EXIT_OK } from "./_output.ts";

/**
 * Runs the CLI with `args` (without the program name) and returns its exit
 * status; prints what went wrong on stderr.
 */
export async function _main(args: string[]): Promise<number> {
  try {
    const quick = args[0] === "run"
      ? (await import("./_run.ts"))._quickRunArgs(args.slice(1))
      : null;
    if (quick !== null) {
      const { _runCommand } = await import("./_run.ts");
      await _runCommand(quick.lockfile, quick.argv, quick.options);
    } else {
      const { _parseAndRun } = await import("./_program.ts");
      await _parseAndRun(args);
    }
    return EXIT_OK;
  } catch (error) {
    if (error instanceof _Exit) {
      if (error.message) _say(error.message);
      return error.code;
    }
    // The reader went away (`lockbox status | head -n 1`): stop quietly, as
    // a program killed by SIGPIPE would.
    if ((error as { code?: string })?.code === "EPIPE") return 128 + 13;
    const { _report } = await import("./_report.ts");
    return _report(error);
  }
}
