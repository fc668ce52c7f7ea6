// `lockbox run`: flock(1)'s command mode (a command runs holding the lock)
// and descriptor mode (the calling shell's open descriptor is locked).

import type { Command } from "commander";
import { _connectDb, DB_HELP } from "./_database.ts";
import { CommandNotStartedError, LockTimeoutError } from "../base/errors.ts";
import { _lockDescriptor } from "../lock/_descriptor_lock.ts";
import { runWithLock } from "../lock/run_command.ts";
import { _env, _selfCommand } from "../runtime/mod.ts";
import {
  _Exit,
  _say,
  EXIT_CONFLICT,
  EXIT_NOT_STARTED,
  EXIT_OK,
  EXIT_USAGE,
} from "./_output.ts";
import { _integer, _seconds } from "./_parse.ts";

/** The options `run` takes, as commander parses them. */
interface _RunOptions {
  shared?: boolean;
  exclusive?: boolean;
  nonblock?: boolean;
  timeout?: number;
  conflictExitCode?: number;
  close?: boolean;
  recordCommand?: boolean;
  unlock?: boolean;
  fork?: boolean;
  verbose?: boolean;
  db?: string;
  schema?: string;
}

/** The exit for a lock held elsewhere, said as flock(1) says it with --verbose. */
function _conflict(options: _RunOptions): _Exit {
  if (options.verbose) {
    _say(
      options.nonblock
        ? "failed to get lock"
        : "timeout while waiting to get lock",
    );
  }
  return new _Exit(options.conflictExitCode ?? EXIT_CONFLICT);
}

/** `lockbox run LOCKFILE COMMAND...`: the command runs holding the lock. */
async function _runCommand(
  lockfile: string,
  argv: string[],
  options: _RunOptions,
): Promise<never> {
  const timeout = options.nonblock ? 0 : options.timeout ?? Infinity;
  const runOptions = {
    shared: options.shared && !options.exclusive,
    timeout,
    close: options.close,
    recordCommand: options.recordCommand,
    onLocked: (waitedMs: number) => {
      if (!options.verbose) return;
      _say(`getting lock took ${(waitedMs / 1000).toFixed(6)} seconds`);
      _say(`executing ${argv.join(" ")}`);
    },
  };
  let result;
  try {
    if (options.db === undefined) {
      result = await runWithLock(lockfile, argv, runOptions);
    } else {
      // No `await using`: Node 20 cannot parse it.
      const db = await _connectDb(options.db, options.schema);
      try {
        result = await db.runWithLock(lockfile, argv, {
          ...runOptions,
          onLost: (reason) =>
            _say(`${(reason as Error).message}; stopping the command`),
        });
      } finally {
        await db.close();
      }
    }
  } catch (error) {
    if (error instanceof LockTimeoutError) throw _conflict(options);
    if (error instanceof CommandNotStartedError) {
      throw new _Exit(EXIT_NOT_STARTED, error.message);
    }
    throw error;
  }
  throw new _Exit(result.code);
}

/**
 * `lockbox run [-s|-x|-u] [-n] [-w S] FD`: locks the open file description
 * the calling shell passed as descriptor FD, which keeps the lock after
 * this process exits, as flock(1)'s descriptor mode does.
 */
async function _runOnDescriptor(
  fd: number,
  options: _RunOptions,
): Promise<never> {
  const how = options.unlock
    ? "un"
    : options.shared && !options.exclusive
    ? "sh"
    : "ex";
  const started = performance.now();
  let locked;
  try {
    locked = await _lockDescriptor(fd, how, {
      timeout: options.nonblock ? 0 : options.timeout ?? Infinity,
      helper: (mode, n) => [
        ..._selfCommand(),
        "run",
        mode === "sh" ? "-s" : "-x",
        String(n),
      ],
    });
  } catch (error) {
    if ((error as { code?: string }).code === "EBADF") {
      throw new _Exit(
        EXIT_USAGE,
        `Cannot lock descriptor ${fd}: it is not open; open it in the shell first, as in ( lockbox run -n ${fd} || exit 1; ... ) ${fd}>job.lock`,
      );
    }
    throw error;
  }
  if (!locked) throw _conflict(options);
  if (options.verbose && how !== "un") {
    _say(
      `getting lock took ${
        ((performance.now() - started) / 1000).toFixed(6)
      } seconds`,
    );
  }
  throw new _Exit(EXIT_OK);
}

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
    .action(
      async (lockfile: string, command: string[], options, cmd: Command) => {
        let argv = command;
        let shellCommand: string | undefined = options.command;
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
      },
    );
}
