#!/usr/bin/env -S deno run --allow-read --allow-write --allow-run --allow-env --allow-ffi --allow-sys=hostname
/**
 * The `lockbox` command: a `flock(1)`-compatible `run`, lock status and
 * cleanup, and safe tools for lockbox's stores. It parses arguments, calls
 * the library and formats what it returns.
 *
 * ```sh
 * lockbox run -n /var/lock/backup.lock ./backup.sh
 * lockbox status -r /srv/data
 * lockbox store set state.json /paused true
 * ```
 *
 * Exit codes: 0 success; 1 conflict (a lock held elsewhere) or not found; 2
 * usage error; 3 I/O or data error (a file that cannot be read or written, a
 * corrupt store). `run` exits with its command's status (128 + N when signal
 * N killed it, 69 when it could not be started, as `flock(1)`).
 *
 * @module
 */

import { Command, CommanderError, InvalidArgumentError } from "commander";
import denoJson from "./deno.json" with { type: "json" };
import {
  _args,
  _columns,
  _env,
  _exit,
  _isMain,
  _isTerminal,
  _lstat,
  _readStdinLine,
  _selfCommand,
  _writeStderr,
  _writeStdout,
} from "./src/runtime/mod.ts";
import {
  _getPointer,
  _parsePointer,
  _setPointer,
} from "./src/store/_json_pointer.ts";
import { _liveRecord } from "./src/lock/_kernel.ts";
import { _startCommand } from "./src/base/_command.ts";
import { _sleep } from "./src/base/_promise.ts";
import { _hasJournal } from "./src/store/_store_mode.ts";
import { _lockDescriptor } from "./src/lock/_descriptor_lock.ts";
import {
  AlreadyCheckedOutError,
  appendToFailureLog,
  CaptureGroups,
  cleanupStaleLocks,
  CommandNotStartedError,
  ConfigError,
  CorruptStoreError,
  DocumentNotFoundError,
  editStore,
  type FileResult,
  FileService,
  formatLockStatus,
  getIncrementalStartRun,
  GroupNotFoundError,
  JsonStore,
  listLocks,
  loadLockingConfig,
  LockBusyError,
  type LockInfo,
  lockInfo,
  LockTimeoutError,
  NotCheckedOutError,
  NotOwnerError,
  Operations,
  processFiles,
  readState,
  runWithLock,
  StoreError,
  updateAttemptedRunState,
  updateContiguousRunState,
} from "./mod.ts";

const EXIT_OK = 0;
const EXIT_CONFLICT = 1;
const EXIT_USAGE = 2;
const EXIT_IO = 3;
/** `flock(1)`'s status for a command it could not start (EX_UNAVAILABLE). */
const EXIT_NOT_STARTED = 69;

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    conflict (the lock is held elsewhere) or not found
  2    usage error
  3    I/O or data error (a file cannot be read or written, a corrupt store)
  run: the command's own status; 128+N if signal N killed it; 69 if it
       could not be started (as flock(1))

Colour only on a terminal, and never when NO_COLOR is set.`;

/** A failure that has already been explained; ends `main` with `code`. */
class _Exit extends Error {
  constructor(readonly code: number, message?: string) {
    super(message);
  }
}

function _say(message: string): void {
  _writeStderr(`lockbox: ${message}\n`);
}

/** A line on stdout, written whole before this returns; a failure throws. */
function _print(text: string): void {
  _writeStdout(`${text}\n`);
}

function _json(value: unknown): void {
  _print(JSON.stringify(value, null, 2));
}

function _color(): boolean {
  return _isTerminal("stdout") && !_env("NO_COLOR");
}

/** `90s`, `5m`, `1h`, `2d` or plain seconds, in milliseconds. */
function _duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  if (!match) {
    throw new InvalidArgumentError(
      `expected a duration such as 90s, 5m, 1h, 2d or plain seconds`,
    );
  }
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit * 1000;
}

/** Seconds (a decimal number of at least 0), in milliseconds. */
function _seconds(text: string): number {
  if (!/^\d+(\.\d+)?$|^\.\d+$/.test(text.trim())) {
    throw new InvalidArgumentError(
      "expected a number of seconds, such as 0.5 or 10",
    );
  }
  return Number(text) * 1000;
}

function _integer(min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) {
      throw new InvalidArgumentError(
        `expected a whole number from ${min} to ${max}`,
      );
    }
    return n;
  };
}

/** `101,102,105-110` as run numbers. */
function _runs(text: string): number[] {
  const runs: number[] = [];
  for (const part of text.split(",")) {
    const range = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!range) {
      throw new InvalidArgumentError(
        `expected run numbers such as 101,102,105-110; '${part}' is not one`,
      );
    }
    const from = Number(range[1]);
    const to = Number(range[2] ?? range[1]);
    // Past 2^53 a number no longer grows by one: such a range never ends.
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) {
      throw new InvalidArgumentError(
        `'${part.trim()}' is past the largest run number, ${Number.MAX_SAFE_INTEGER}`,
      );
    }
    if (to < from) {
      throw new InvalidArgumentError(`the range ${part} runs backwards`);
    }
    if (to - from > 1_000_000) {
      throw new InvalidArgumentError(`the range ${part} is too long`);
    }
    for (let run = from; run <= to; run++) runs.push(run);
  }
  return runs;
}

function _jsonValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(
      `expected a JSON value such as 42, true, "text" or {"a":1} (${
        (error as Error).message
      })`,
    );
  }
}

function _pointer(text: string): string {
  try {
    _parsePointer(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return text;
}

/** The exit code for an error the library threw. */
function _exitCodeOf(error: unknown): number {
  if (
    error instanceof LockTimeoutError || error instanceof LockBusyError ||
    error instanceof AlreadyCheckedOutError ||
    error instanceof NotCheckedOutError || error instanceof NotOwnerError ||
    error instanceof GroupNotFoundError ||
    error instanceof DocumentNotFoundError
  ) {
    return EXIT_CONFLICT;
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    return EXIT_USAGE;
  }
  return EXIT_IO;
}

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
  let result;
  try {
    result = await runWithLock(lockfile, argv, {
      shared: options.shared && !options.exclusive,
      timeout,
      close: options.close,
      recordCommand: options.recordCommand,
      onLocked: (waitedMs) => {
        if (!options.verbose) return;
        _say(`getting lock took ${(waitedMs / 1000).toFixed(6)} seconds`);
        _say(`executing ${argv.join(" ")}`);
      },
    });
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

function _program(): Command {
  const program = new Command("lockbox")
    .description(
      "Cross-process file locks and safe JSON state files",
    )
    .version(denoJson.version, "-V, --version")
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => _writeStdout(text),
      writeErr: (text) => _writeStderr(text),
      outputError: (text, write) =>
        write(`lockbox: ${text.replace(/^error: /, "")}`),
    })
    .addHelpText("after", EXIT_CODES_HELP);

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

  program.command("status")
    .description("Show the lock files in directories: state, mode, holder, age")
    .argument("[dir...]", "directories to look in (default: .)")
    .option("-r, --recursive", "look in subdirectories too")
    .option(
      "--stale-after <duration>",
      "age after which a free lock file is stale (90s, 5m, 1h, 2d)",
      _duration,
    )
    .option("--json", "print LockInfo[] as JSON")
    .option(
      "--watch [seconds]",
      "redraw every few seconds until interrupted",
      _seconds,
    )
    .action(async (dirs: string[], options) => {
      const look = async () => {
        const infos: LockInfo[] = [];
        for (const dir of dirs.length ? dirs : ["."]) {
          infos.push(
            ...await listLocks(dir, {
              recursive: options.recursive,
              staleAfter: options.staleAfter,
            }),
          );
        }
        return infos;
      };
      if (options.watch === undefined) {
        const infos = await look();
        if (options.json) _json(infos);
        else _print(formatLockStatus(infos, { color: _color() }));
        return;
      }
      const every = options.watch === true
        ? 2000
        : Math.max(options.watch, 100);
      const terminal = _isTerminal("stdout");
      while (true) {
        const infos = await look();
        const text = options.json
          ? JSON.stringify(infos)
          : formatLockStatus(infos, { color: _color() });
        if (terminal) {
          _writeStdout(
            `\x1b[H\x1b[2J${text}\n\n${
              new Date().toLocaleTimeString()
            }, every ${every / 1000} s; Ctrl-C to stop\n`,
          );
        } else {
          _print(text + (options.json ? "" : "\n"));
        }
        await _sleep(every);
      }
    });

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

  program.command("holder")
    .description("Show who holds LOCKFILE; exit 0 when held, 1 when free")
    .argument("<lockfile>", "the lock file itself")
    .option("--json", "print the LockInfo as JSON")
    .action(async (lockfile: string, options) => {
      if (_lstat(lockfile) === null) {
        // No lock file, no holder: free, but say why, in case of a typo.
        if (options.json) _json(null);
        else _print("free");
        throw new _Exit(EXIT_CONFLICT, `'${lockfile}' does not exist`);
      }
      const info = await lockInfo(lockfile);
      if (options.json) {
        _json(info);
      } else if (!info.held) {
        _print("free");
      } else {
        const record = _liveRecord(info.held, info.holders, info.record);
        const pids = info.holders.length
          ? info.holders.join(", ")
          : record
          ? String(record.pid)
          : "unknown";
        let line = `held ${info.mode} by pid ${pids}`;
        if (record) {
          line +=
            ` on ${record.hostname} since ${record.acquiredAt}, token ${record.token}`;
          if (record.metadata) line += ` ${JSON.stringify(record.metadata)}`;
        }
        _print(line);
      }
      if (!info.held) throw new _Exit(EXIT_CONFLICT);
    });

  const store = program.command("store")
    .description(
      "Read, change, edit and check JSON store files, under their locks",
    );
  store.command("get")
    .description("Print a store's document, or the value at a JSON pointer")
    .argument("<file>", "the store file")
    .option(
      "--pointer <pointer>",
      "a JSON pointer such as /users/0/name",
      _pointer,
    )
    .action(async (file: string, options) => {
      if (_lstat(file) === null) {
        throw new _Exit(EXIT_CONFLICT, `Cannot read '${file}': no such file`);
      }
      const doc = await new JsonStore<unknown>(file, {
        initial: null,
        journal: _hasJournal(file),
      }).read();
      const found = _getPointer(doc, options.pointer ?? "");
      if (!found.found) {
        throw new _Exit(
          EXIT_CONFLICT,
          `Cannot read '${options.pointer}' in '${file}': no value there`,
        );
      }
      _json(found.value);
    });
  store.command("set")
    .description(
      "Set the value at a JSON pointer, in one locked read-modify-write (missing objects on the way are created; - appends to an array)",
    )
    .argument("<file>", "the store file (created if missing)")
    .argument(
      "<pointer>",
      "a JSON pointer such as /config/retries, or '' for the whole document",
      _pointer,
    )
    .argument("<json-value>", "the new value, as JSON", _jsonValue)
    .action(async (file: string, pointer: string, value: unknown) => {
      await new JsonStore<unknown>(file, {
        initial: () => ({}),
        journal: _hasJournal(file),
      }).transform((doc) => _setPointer(doc, pointer, value));
    });
  store.command("edit")
    .description(
      "Edit a store in $VISUAL or $EDITOR under its lock, as visudo does: invalid JSON is never written",
    )
    .argument("<file>", "the store file")
    .action(async (file: string) => {
      const editor = (_env("VISUAL") || _env("EDITOR") || "vi").trim().split(
        /\s+/,
      );
      const outcome = await editStore(file, {
        editor,
        onInvalid: async (error) => {
          _say(`'${file}': the edit is not valid JSON (${error.message})`);
          if (!_isTerminal("stdin")) return false;
          _writeStderr("What now? (e)dit again, (q)uit without saving [e]: ");
          const answer = (await _readStdinLine())?.trim().toLowerCase();
          return answer === "" || answer === "e";
        },
      });
      if (outcome === "aborted") {
        throw new _Exit(EXIT_CONFLICT, `'${file}' left untouched`);
      }
      _say(
        outcome === "changed"
          ? `wrote '${file}'`
          : `'${file}' unchanged, nothing written`,
      );
    });
  store.command("check")
    .description(
      "Check that store files parse; --quarantine moves corrupt ones aside",
    )
    .argument("<file...>", "the store files")
    .option(
      "--quarantine",
      "move a corrupt file's bytes to <file>.corrupt-<time> and continue from its newest valid backup",
    )
    .action(async (files: string[], options) => {
      let code = EXIT_OK;
      for (const file of files) {
        if (_lstat(file) === null) {
          _print(`missing ${file}`);
          code = Math.max(code, EXIT_CONFLICT);
          continue;
        }
        const warnings: string[] = [];
        try {
          const checked = new JsonStore<unknown>(file, {
            initial: null,
            onCorrupt: options.quarantine ? "quarantine" : "throw",
            onWarning: (message) => warnings.push(message),
            journal: _hasJournal(file),
          });
          await checked.read();
          _print(
            warnings.length
              ? `quarantined ${file}: ${warnings.join("; ")}`
              : `ok ${file}`,
          );
        } catch (error) {
          // Every file is checked; the exit status is the worst one.
          if (error instanceof CorruptStoreError) {
            _print(`corrupt ${file}: ${error.reason}`);
          } else if (error instanceof StoreError) {
            _print(`error ${file}: ${error.message}`);
          } else throw error;
          code = EXIT_IO;
        }
      }
      if (code !== EXIT_OK) throw new _Exit(code);
    });

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

  const state = program.command("state")
    .description("Seed 003's archiver run state")
    .requiredOption("--state <file>", "the state file")
    .option("--failures <file>", "the failure log (one run number a line)");
  state.command("show").description("Print the state as JSON")
    .action(async () => _json(await readState(state.opts().state)));
  state.command("next").description(
    "Print the run to start the next incremental import from",
  )
    .action(async () =>
      _print(String(await getIncrementalStartRun(state.opts().state)))
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
      await updateContiguousRunState(file, succeeded);
      const result = await updateAttemptedRunState(file, [
        ...succeeded,
        ...failed,
      ]);
      if (failed.length > 0) await appendToFailureLog(failures, failed);
      _json(result);
    });

  const files = program.command("files")
    .description("Seed 002's file checkout by user")
    .requiredOption("--repo <dir>", "the repository directory")
    .requiredOption("--registry <file>", "the checkout registry")
    .option("--extension <ext>", "the files' extension", ".mcam");
  const service = () => {
    const o = files.opts();
    return new FileService(o.repo, o.registry, { extension: o.extension });
  };
  files.command("list").description("List the files with who has them")
    .option("--json", "print as JSON")
    .action(async (options) => {
      const list = await service().filesWithStatus();
      if (options.json) return _json(list);
      for (const f of list) {
        _print(
          [
            f.name,
            String(f.sizeBytes),
            f.modified.toISOString(),
            f.status === "checked_out"
              ? `checked out by ${f.lockedBy}`
              : "available",
          ].join("\t"),
        );
      }
    });
  files.command("checkout").argument("<name>")
    .description("Check a file out")
    .requiredOption("--user <user>", "who takes it")
    .option("-m, --message <message>", "why", "")
    .action(async (name: string, options) => {
      await service().checkout(name, options.user, options.message);
    });
  files.command("checkin").argument("<name>")
    .description("Check a file back in")
    .requiredOption("--user <user>", "who returns it")
    .action(async (name: string, options) => {
      await service().checkin(name, options.user);
    });

  program.command("batch")
    .description(
      "Run COMMAND for each FILE under that file's lock ({} stands for the file; else it is appended)",
    )
    .usage("[options] FILE... -- COMMAND [ARG...]")
    .argument("<file...>", "the files, then -- and the command")
    .option(
      "--config <file>",
      "a YAML or JSON config with a file_locking section",
    )
    .option("--concurrency <n>", "files at once (default 4)", _integer(1, 1024))
    .option(
      "--lock-timeout <seconds>",
      "how long to wait for each file's lock (default 30, or the config's)",
      _seconds,
    )
    .action(async (operands: string[], options, command: Command) => {
      const dash = _batchArgv;
      if (!dash || dash.length === 0) {
        command.error("missing -- COMMAND [ARG...] after the files");
      }
      const config = options.config
        ? await loadLockingConfig(options.config, { onWarning: _say })
        : undefined;
      const progress = _isTerminal("stderr");
      const results = await processFiles(
        operands,
        async (file) => {
          const argv = dash.includes("{}")
            ? dash.map((a) => a === "{}" ? file : a)
            : [...dash, file];
          const { code, signal } = await (await _startCommand(argv)).status;
          if (signal !== null) throw new Error(`killed by signal ${signal}`);
          if (code !== 0) throw new Error(`exited with ${code}`);
        },
        {
          ...config,
          concurrency: options.concurrency,
          lockTimeout: options.lockTimeout ?? config?.lockTimeout,
          onProgress: (done, total, result) => {
            if (progress) _progressBar(done, total, result.file);
            else _print(_resultLine(result));
          },
        },
      );
      if (progress) {
        _writeStderr("\r\x1b[K");
        for (const result of results) _print(_resultLine(result));
      }
      const ok = results.filter((r) => r.ok).length;
      const locked = results.filter((r) => !r.ok && r.locked).length;
      _say(
        `${results.length} files: ${ok} ok, ${
          results.length - ok - locked
        } failed, ${locked} locked`,
      );
      if (ok < results.length) throw new _Exit(EXIT_CONFLICT);
    });

  _finishHelp(program);
  return program;
}

/** One line of `batch` output: `ok FILE`, or `failed|locked FILE: why`. */
function _resultLine(result: FileResult<void>): string {
  return result.ok
    ? `ok ${result.file}`
    : `${result.locked ? "locked" : "failed"} ${result.file}: ${result.error}`;
}

/** The part of a `batch` command line after `--`. */
let _batchArgv: string[] | undefined;

function _progressBar(done: number, total: number, file: string): void {
  const width = Math.max(10, Math.min(40, _columns() - 40));
  const filled = Math.round((done / total) * width);
  const name = file.length > 30 ? "…" + file.slice(-29) : file;
  _writeStderr(
    `\r\x1b[K[${"#".repeat(filled)}${
      "-".repeat(width - filled)
    }] ${done}/${total} ${name}`,
  );
}

/** Every command prints its usage line and a pointer to --help after an error. */
function _finishHelp(command: Command): void {
  const path = (c: Command): string =>
    c.parent ? `${path(c.parent)} ${c.name()}` : c.name();
  command.showHelpAfterError(
    `Usage: ${path(command)} ${command.usage()}\nTry '${
      path(command)
    } --help' for more information.`,
  );
  for (const sub of command.commands) _finishHelp(sub);
}

async function main(args: string[]): Promise<number> {
  const program = _program();
  // `batch FILE... -- COMMAND`: the command is everything after the first
  // `--`, which commander would otherwise merge into the files.
  let argv = args;
  const dashAt = args.indexOf("--");
  if (args[0] === "batch" && dashAt !== -1) {
    _batchArgv = args.slice(dashAt + 1);
    argv = args.slice(0, dashAt);
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof _Exit) {
      if (error.message) _say(error.message);
      return error.code;
    }
    // The reader went away (`lockbox status | head -n 1`): stop quietly, as
    // a program killed by SIGPIPE would.
    if ((error as { code?: string })?.code === "EPIPE") return 128 + 13;
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (error instanceof ConfigError || error instanceof StoreError) {
      _say(error.message);
      return EXIT_IO;
    }
    _say(error instanceof Error ? error.message : String(error));
    return _exitCodeOf(error);
  }
}

if (_isMain(import.meta)) {
  _exit(await main(_args()));
}
