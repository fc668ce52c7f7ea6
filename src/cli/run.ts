// `lockbox run`: flock(1)'s command mode (a command runs holding the lock)
// and descriptor mode (the calling shell's open descriptor is locked). The
// options as commander defines them (help, errors, every form); the work is
// in _run.ts, which `main` also reaches without commander for the usual
// forms.

import type { Command } from "commander";
import { DB_HELP } from "./_database.ts";
import { _env } from "../runtime/mod.ts";
import { _integer, _seconds } from "./_parse.ts";
import { _runCommand, _runOnDescriptor, type _RunOptions } from "./_run.ts";

/** Adds `lockbox run` to the program. */
export function _addRun(program: Command): void {
  program.command("run")
    .description(
      "Run a command while holding a lock on LOCKFILE (created if missing), as flock(1) does",
    )
    .usage(
      "[options] LOCKFILE COMMAND [ARG...]  |  [options] LOCKFILE -c 'SHELL COMMAND'",
    )
    .argument("<lockfile>", "the lock file itself")
    .argument("[command...]", "the command and its arguments")
    .option("-s, --shared", "take a shared lock")
    .option("-x, --exclusive", "take an exclusive lock (the default)")
    .option("-n, --nonblock", "fail at once if the lock is held")
    .option(
      "-w, --timeout <seconds>",
      "give up after this many seconds (decimals allowed)",
      _seconds,
    )
    .option(
      "-E, --conflict-exit-code <n>",
      "exit status when the lock is held (default 1)",
      _integer(0, 255),
    )
    .option(
      "-c, --command <command>",
      "run a single command string with $SHELL -c",
    )
    .option(
      "-o, --close",
      "do not pass the lock file on to the command (it holds the lock otherwise, as with flock(1))",
    )
    .option(
      "--no-record-command",
      "do not write the command line into the lock file's holder record (it stays there after the command ends)",
    )
    .option("-u, --unlock", "drop a lock (descriptor mode only)")
    .option(
      "-F, --no-fork",
      "accepted for flock(1) scripts: the command holds the lock either way (lockbox stays as its parent)",
    )
    .option("--db <url>", DB_HELP)
    .option(
      "--verbose",
      "say on stderr how long the lock took, what runs, and why a lock was not taken",
    )
    .passThroughOptions()
    .action(_runAction);
}

/**
 * What `lockbox run` does with what commander parsed: the command to run,
 * checked against the options, in command mode; with no command, LOCKFILE
 * is a descriptor number for descriptor mode.
 */
async function _runAction(
  lockfile: string,
  command: string[],
  options: _RunOptions & { command?: string },
  cmd: Command,
): Promise<void> {
  const argv = _commandLine(command, options.command, cmd);
  if (options.fork === false && options.close) {
    cmd.error("-F (--no-fork) and -o (--close) cannot go together");
  }
  if (options.db !== undefined && (options.unlock || argv.length === 0)) {
    cmd.error(
      "--db takes a lock NAME and a COMMAND: lockbox run --db URL NAME COMMAND",
    );
  }
  if (argv.length === 0) {
    if (!/^\d+$/.test(lockfile)) {
      cmd.error(
        `missing the command to run (or '${lockfile}' is not a descriptor number for descriptor mode: lockbox run -n 9)`,
      );
    }
    return await _runOnDescriptor(Number(lockfile), options);
  }
  if (options.unlock) {
    cmd.error("-u (--unlock) works on a descriptor: lockbox run -u FD");
  }
  await _runCommand(lockfile, argv, options);
}

/**
 * The command to run: COMMAND [ARG...], or `$SHELL -c` with the string
 * that -c gave (as an option, or as the first words after LOCKFILE, where
 * passThroughOptions leaves it); empty for descriptor mode.
 */
function _commandLine(
  command: string[],
  shellOption: string | undefined,
  cmd: Command,
): string[] {
  let argv = command;
  let shellCommand = shellOption;
  if (argv[0] === "-c" || argv[0] === "--command") {
    shellCommand = argv[1];
    if (shellCommand === undefined || argv.length > 2) {
      cmd.error("-c takes exactly one command string");
    }
    argv = [];
  }
  if (shellCommand !== undefined) {
    if (argv.length > 0) {
      cmd.error(
        "give either -c 'SHELL COMMAND' or COMMAND [ARG...], not both",
      );
    }
    argv = [_env("SHELL") || "/bin/sh", "-c", shellCommand];
  }
  return argv;
}
