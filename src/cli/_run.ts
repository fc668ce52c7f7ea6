// What `lockbox run` does once its arguments are parsed, and a parser of
// its usual forms that needs no commander (it costs Deno some 80 ms of
// start-up as an npm package), so that `lockbox run -n LOCK cmd` loads the
// lock layer and little else. Any other form (help, -c, --db, descriptor
// mode, joined or `=` values, a malformed value) is left to the full
// program in run.ts, which words its errors.

import { CommandNotStartedError, LockTimeoutError } from "../base/errors.ts";
import { runWithLock } from "../lock/run_command.ts";
import { _selfCommand } from "../runtime/mod.ts";
import {
  _Exit,
  _say,
  EXIT_CONFLICT,
  EXIT_NOT_STARTED,
  EXIT_OK,
  EXIT_USAGE,
} from "./_output.ts";

/** The options `run` takes, as commander parses them. */
export interface _RunOptions {
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
export async function _runCommand(
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
      // Loaded here: _database.ts needs commander for --schema's parser.
      const { _connectDb } = await import("./_database.ts");
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
export async function _runOnDescriptor(
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
    const { _lockDescriptor } = await import("../lock/descriptor_lock.ts");
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

/** A `lockbox run` that needs no more than {@linkcode _quickRunArgs} read. */
export interface _QuickRun {
  lockfile: string;
  argv: string[];
  options: _RunOptions;
}

const _FLAGS: Record<string, (options: _RunOptions) => void> = {
  "-s": (o) => o.shared = true,
  "--shared": (o) => o.shared = true,
  "-x": (o) => o.exclusive = true,
  "--exclusive": (o) => o.exclusive = true,
  "-n": (o) => o.nonblock = true,
  "--nonblock": (o) => o.nonblock = true,
  "-o": (o) => o.close = true,
  "--close": (o) => o.close = true,
  "--no-record-command": (o) => o.recordCommand = false,
  "-F": (o) => o.fork = false,
  "--no-fork": (o) => o.fork = false,
  "--verbose": (o) => o.verbose = true,
};

/**
 * The arguments after `run` in its usual forms, `[FLAG...] LOCKFILE COMMAND
 * [ARG...]` with flags given one to a word and `-w S` / `-E N` with their
 * value in the next word, read as the full program reads them; `null` for
 * anything else, which the full program then parses.
 */
export function _quickRunArgs(args: string[]): _QuickRun | null {
  const options: _RunOptions = { recordCommand: true, fork: true };
  let at = 0;
  for (; at < args.length && args[at].startsWith("-"); at++) {
    const word = args[at];
    const flag = _FLAGS[word];
    if (flag) {
      flag(options);
      continue;
    }
    const value = args[++at];
    if (value === undefined) return null;
    if (word === "-w" || word === "--timeout") {
      if (!/^\d+(\.\d+)?$/.test(value)) return null;
      options.timeout = Number(value) * 1000;
    } else if (word === "-E" || word === "--conflict-exit-code") {
      if (!/^\d+$/.test(value) || Number(value) > 255) return null;
      options.conflictExitCode = Number(value);
    } else return null;
  }
  const lockfile = args[at];
  const argv = args.slice(at + 1);
  if (
    lockfile === undefined || argv.length === 0 || argv[0] === "-c" ||
    argv[0] === "--command" || (options.fork === false && options.close)
  ) {
    return null;
  }
  return { lockfile, argv, options };
}
