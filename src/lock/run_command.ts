// Running a command while holding a lock, as `flock(1)` does.

import { _checkTimeout } from "../base/checks.ts";
import {
  type _Child,
  _env,
  _groupAlive,
  _isTerminal,
  _killGroup,
  type _LockHandle,
  _lstat,
  _onTerminationSignals,
  _onWindows,
  _openReadOnly,
  _processGroups,
  _spawn,
  _statFollow,
  type _StopSignal,
} from "../runtime/mod.ts";
import { _after, _sleep } from "../base/promise.ts";
import {
  CommandNotStartedError,
  LockError,
  LockTimeoutError,
} from "../base/errors.ts";
import { _lockInternals } from "./lock_internals.ts";
import { FileLock } from "./file_lock.ts";
import { _resolveTarget, type LockTarget } from "./lock_target.ts";
import { _startCommand } from "../base/command.ts";

/** How {@linkcode runWithLock} locks. */
export interface RunWithLockOptions {
  /**
   * Take the lock shared instead of exclusive.
   *
   * @default {false}
   */
  shared?: boolean;
  /**
   * How long to wait for the lock, in milliseconds; `0` tries once.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /** Gives up waiting for the lock; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Write the command line into the lock file's holder record (as
   * `metadata.command`), where `lockbox holder` and `lockbox status` show
   * it. The record stays in the file after the command ends, readable by
   * anyone who may read the lock file (created with mode 0666 less the
   * umask, so readable by all under the usual umask): pass `false`
   * when its arguments are secret.
   *
   * @default {true}
   */
  recordCommand?: boolean;
  /**
   * Called once the lock is held, just before the command starts, with how
   * long the lock took (`lockbox run --verbose` reports it here, as
   * `flock(1)` does).
   */
  onLocked?: (waitedMs: number) => void;
  /**
   * Do not pass the open lock file on to the command (`flock -o`). By
   * default the command inherits it, as with `flock(1)`: the lock stays
   * held while the command runs even if this process is killed, and a
   * background process the command leaves holding the file keeps it held.
   * On Windows, where a command cannot inherit it, the lock is always held
   * by this process alone, as with `close`.
   *
   * @default {false}
   */
  close?: boolean;
}

/** How the command ended, from {@linkcode runWithLock}. */
export interface RunResult {
  /** Its exit code, or 128 + the signal number if a signal killed it (as a shell reports it). */
  code: number;
  /**
   * The number of the signal that killed it, or that ended the run before
   * the command started; otherwise `null`.
   */
  signal: number | null;
  /** Whether the command was started (a signal may end the wait first). */
  started: boolean;
  /** How long the lock took, in milliseconds. */
  waitedMs: number;
}

const _SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

/** A lock a command runs under, whatever holds it (a file, a database). */
export interface _Held {
  /** The open lock file to pass on to the command, if any. */
  handle?: _LockHandle;
  /** Leaves the lock to a child that inherited it, on release. */
  shareWithChildren(): void;
  release(): Promise<void>;
  /** Aborts if the lock is lost while the command runs. */
  lost?: AbortSignal;
  /**
   * Descriptors that keep the lock held while any process has them open
   * (database connections). A watchdog process keeps copies: if this
   * process dies, the lock stays held until the watchdog has stopped the
   * command's process group. Empty when they cannot be found.
   */
  keepOpen?: number[];
  /**
   * Hold the lock until every process of the command's group has ended,
   * not only the command (what an inherited lock file does by itself).
   */
  untilGroupEnds?: boolean;
  /**
   * How long the command's group has between SIGTERM and SIGKILL when the
   * lock is lost, in milliseconds.
   */
  stopGrace?: number;
}

/** How often the end of a process group is checked for, at first. */
const _GROUP_POLL_MS = 50;
/** ... and at most (a background process may run for hours). */
const _GROUP_POLL_MAX_MS = 1000;

/** Resolves once no process of group `pgid` runs (zombies do not). */
async function _groupEnded(pgid: number): Promise<void> {
  for (let wait = _GROUP_POLL_MS; _groupAlive(pgid);) {
    await _sleep(wait);
    wait = Math.min(wait * 2, _GROUP_POLL_MAX_MS);
  }
}

/**
 * Stops process group `pgid`: SIGTERM, SIGKILL after `graceMs` to whatever
 * still runs, and resolves once none of it runs.
 */
async function _stopGroup(pgid: number, graceMs: number): Promise<void> {
  _killGroup(pgid, "SIGTERM");
  const deadline = performance.now() + graceMs;
  while (_groupAlive(pgid) && performance.now() < deadline) {
    await _sleep(_GROUP_POLL_MS);
  }
  _killGroup(pgid, "SIGKILL");
  await _groupEnded(pgid);
}

/**
 * The watchdog (`sh -c`, argument: the grace in tenths of a second): it
 * keeps copies of the lock's descriptors, reads the command's process group
 * from stdin (the gate writes it), then waits. "done" from lockbox ends it; the end of stdin
 * without it means lockbox died: it stops the group as lockbox would (TERM,
 * the grace, which a zombie may fill, KILL) and exits once none of the
 * group runs (zombies aside: a full /proc scan, too slow for the grace),
 * which closes the last copies of the descriptors and frees the lock. It
 * ignores the signals meant for lockbox and its command.
 */
const _WATCHDOG = `trap '' INT TERM HUP QUIT PIPE
n=$1
IFS= read -r g || exit 0
IFS= read -r _ && exit 0
runs() {
  kill -0 "-$g" 2>/dev/null || return 1
  [ -r /proc/self/stat ] || return 0
  for f in /proc/[0-9]*/stat; do
    { IFS= read -r s < "$f"; } 2>/dev/null || continue
    set -- \${s##*") "}
    [ "$3" = "$g" ] && [ "$1" != Z ] && return 0
  done
  return 1
}
kill -TERM "-$g" 2>/dev/null
t=0
while [ "$t" -lt "$n" ] && kill -0 "-$g" 2>/dev/null; do
  sleep 0.1
  t=$((t + 1))
done
kill -KILL "-$g" 2>/dev/null
while runs; do sleep 0.1; done`;

/**
 * What a watched command starts as (\`sh -c\`, then the command): it
 * writes its pid (its process group's id) to the watchdog's stdin, the pipe
 * it gets as descriptor 3, before the command runs, so the watchdog knows
 * the group whenever lockbox dies; then it closes the pipe and becomes the
 * command. A watchdog that is gone (the write fails) means the command
 * never runs.
 */
const _GATE = 'echo $$ >&3 || exit 125; exec 3>&-; exec "$0" "$@"';

/** Whether `name` is a file that `exec` would run, by PATH if it has no "/". */
function _runnable(name: string): boolean {
  const candidates = name.includes("/")
    ? [name]
    : (_env("PATH") ?? "").split(":").map((dir) => `${dir || "."}/${name}`);
  return candidates.some((path) => {
    const stat = _statFollow(path);
    return stat !== null && stat.isFile && ((stat.mode ?? 0o111) & 0o111) !== 0;
  });
}

/** A held FileLock as a lock a command runs under. */
function _heldFileLock(lock: FileLock): _Held {
  return {
    handle: _lockInternals.handleOf(lock)!,
    shareWithChildren: () => _lockInternals.shareWithChildren(lock),
    release: () => lock.release(),
  };
}

/**
 * Locks a directory itself, as `flock(1)` does: opened read-only, with no
 * holder record (a directory holds none) and no inode re-check (a directory
 * is never removed by lockbox).
 */
async function _lockDirectory(
  dir: string,
  options: RunWithLockOptions,
  signal: AbortSignal,
): Promise<_Held> {
  const timeout = _checkTimeout(options.timeout);
  const exclusive = options.shared !== true;
  const handle = _openReadOnly(dir);
  let shared = false;
  const held: _Held = {
    handle,
    shareWithChildren: () => shared = true,
    release: () => {
      if (!shared) handle.unlock();
      handle.close();
      return Promise.resolve();
    },
  };
  if (handle.tryLock(exclusive)) return held;
  if (timeout === 0 || signal.aborted) {
    handle.close();
    signal.throwIfAborted();
    throw new LockTimeoutError(dir, null);
  }
  let giveUp!: (error: unknown) => void;
  const gaveUp = new Promise<never>((_, reject) => giveUp = reject);
  const cancelTimer = _after(
    timeout,
    () => giveUp(new LockTimeoutError(dir, null)),
  );
  const onAbort = () => giveUp(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  // A kernel wait cannot be called off: if it is given up on, the lock it
  // is granted later is let go at once.
  const granted = handle.lock(exclusive);
  try {
    await Promise.race([granted, gaveUp]);
    return held;
  } catch (error) {
    granted.then(() => handle.unlock(), () => {}).finally(() => handle.close());
    throw error;
  } finally {
    cancelTimer();
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Runs a command while holding the lock on `lockFile` (the lock file itself,
 * created if missing, or a directory, which is locked as it is, with no
 * holder record; `{ guards: file }` locks the sidecar `<file>.lock`), as
 * `flock(1)` does: the lock is taken before the
 * command starts and released as soon as it ends. The command inherits the
 * open lock file (unless `close`), so it keeps the lock even if this process
 * is killed.
 *
 * SIGINT and SIGTERM (and SIGHUP, except on Windows) are caught from the
 * moment this is called until it returns: one that arrives while waiting for
 * the lock ends the wait and the command is never started (`started: false`,
 * `code` 128 + N); one that arrives once the command runs is passed on to its
 * process group. Unless stdin is a terminal, the command runs in a session
 * and process group of its own (except on Windows), so that group is
 * everything it starts that does not leave it; it has no controlling
 * terminal. Started from a terminal, it stays in this process's group and
 * on the terminal, as under `flock(1)`, and a signal is passed on to the
 * command alone.
 *
 * Requires `--allow-read`, `--allow-write`, `--allow-run`, and on Deno
 * `--allow-all` unless `close`: Deno has no API to let a child inherit a
 * file, so lockbox finds its descriptor in /proc/self/fd (which Deno 2.9
 * reads only with `--allow-all`) and clears its close-on-exec flag through
 * the C library (`--allow-ffi`). With less, it throws a `LockError` that
 * says so, before the command starts.
 *
 * @param lockFile The lock file: a bare path or `{ lockFile }`; or
 *   `{ guards }`, a file whose sidecar `<file>.lock` to lock.
 * @param command The program and its arguments.
 * @param options Shared or exclusive, timeout, abort, close.
 * @returns How the command ended, and how long the lock took.
 * @throws {LockTimeoutError} If the lock was held elsewhere past `timeout`;
 *   the command was not run.
 * @throws {CommandNotStartedError} If the command could not be started.
 * @throws {TypeError} If `command` is empty.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runWithLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const result = await runWithLock(`${dir}/job.lock`, ["true"]);
 * assert.equal(result.code, 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runWithLock(
  lockFile: string | URL | LockTarget,
  command: string[],
  options: RunWithLockOptions = {},
): Promise<RunResult> {
  const path = _resolveTarget(lockFile, "lockFile", "runWithLock").lockPath;
  return await _runUnder(
    command,
    options,
    async (endWait, metadata) =>
      _lstat(path)?.isDirectory
        ? await _lockDirectory(path, options, endWait)
        : _heldFileLock(
          await FileLock.acquire({ lockFile: path }, {
            shared: options.shared,
            timeout: options.timeout,
            signal: endWait,
            metadata,
          }),
        ),
  );
}

/**
 * Runs `command` under the lock `take` gets, as `runWithLock` does: the
 * command runs in a process group (and session) of its own, where there are
 * process groups, unless stdin is a terminal and the lock neither keeps
 * descriptors open nor asks for `untilGroupEnds`; a SIGINT or SIGTERM
 * during the wait ends it (the command never starts), one after the start
 * goes to the command's own group (or to the command alone, when it stays
 * in this process's group); a
 * lock lost while the command runs stops the group (SIGTERM, then SIGKILL
 * after `stopGrace`) and is reported through `onLost`. `take` gets the
 * signal that ends its wait and the holder metadata to record (the command
 * line, unless `recordCommand` is false).
 */
export async function _runUnder(
  command: string[],
  options: _RunUnderOptions,
  take: (
    endWait: AbortSignal,
    metadata: Record<string, unknown> | undefined,
  ) => Promise<_Held>,
): Promise<RunResult> {
  _checkCommand(command);
  const run = new _CommandRun(command, options);
  // Listen before anything can start: a signal that found no listener
  // would kill this process and leave the command running unlocked.
  const stopListening = run.listen();
  try {
    // The caller's signal, or a termination signal, ends the wait.
    const endWait = options.signal
      ? AbortSignal.any([options.signal, run.stopWaiting.signal])
      : run.stopWaiting.signal;
    let lock: _Held;
    try {
      lock = await take(
        endWait,
        options.recordCommand === false
          ? undefined
          : { command: command.join(" ") },
      );
    } catch (error) {
      if (run.caught.length > 0) {
        return run.signaled(performance.now() - run.started);
      }
      throw error;
    }
    return await run.holding(lock);
  } finally {
    stopListening();
  }
}

/** `_runUnder`'s options: `runWithLock`'s, and who hears of a lost lock. */
type _RunUnderOptions = RunWithLockOptions & {
  onLost?: (reason: unknown) => void;
};

function _checkCommand(command: string[]): void {
  if (
    !Array.isArray(command) || command.length === 0 ||
    !command.every((part) => typeof part === "string") || command[0] === ""
  ) {
    throw new TypeError(
      "Cannot run a command under a lock: expected a non-empty array of strings",
    );
  }
}

/**
 * One run of `_runUnder`: the termination signals caught while it waits,
 * then the command (and its watchdog) started under the lock.
 */
class _CommandRun {
  readonly started = performance.now();
  /** Termination signals caught before the command started. */
  readonly caught: ("SIGINT" | "SIGTERM" | "SIGHUP")[] = [];
  /** Ends the wait for the lock on a termination signal. */
  readonly stopWaiting = new AbortController();
  #child: _Child | null = null;
  /** The command's process group, once it runs in its own. */
  #group: number | null = null;
  #released = false;
  #stopping: Promise<void> | undefined;

  constructor(
    readonly command: string[],
    readonly options: _RunUnderOptions,
  ) {}

  /** Starts listening for termination signals; returns how to stop. */
  listen(): () => void {
    // SIGHUP too where the command has a session of its own: a terminal's
    // hangup no longer reaches it directly.
    return _onTerminationSignals((signal) => {
      if (this.#child) this.#signalCommand(signal);
      else {
        this.caught.push(signal);
        this.stopWaiting.abort(
          new Error(`${signal} while waiting for the lock`),
        );
      }
    }, _processGroups);
  }

  /** The result of a run that a signal ended before the command started. */
  signaled(waitedMs: number): RunResult {
    const signal = _SIGNAL_NUMBERS[this.caught[0]];
    return { code: 128 + signal, signal, started: false, waitedMs };
  }

  /** Runs the command under `lock`, then releases it. */
  async holding(lock: _Held): Promise<RunResult> {
    const onLost = () => this.#onLost(lock);
    let watchdog: _Child | null = null;
    try {
      const waitedMs = performance.now() - this.started;
      if (this.caught.length > 0) return this.signaled(waitedMs);
      this.options.onLocked?.(waitedMs);
      const passLock = this.options.close || _onWindows
        ? undefined
        : lock.handle;
      if (passLock) _checkPassable(passLock, this.command[0]);
      watchdog = await this.#startWatchdog(lock);
      const child = await this.#start(lock, passLock, watchdog);
      if (passLock) lock.shareWithChildren();
      lock.lost?.addEventListener("abort", onLost, { once: true });
      if (lock.lost?.aborted) onLost();
      // A signal caught while the command was being started goes to it now.
      for (const signal of this.caught) this.#signalCommand(signal);
      const { code, signal } = await child.status;
      // What the command started in its group may run on after it.
      if (lock.untilGroupEnds && this.#group !== null) {
        await _groupEnded(this.#group);
      }
      await this.#stopping;
      return {
        code: signal === null ? code : 128 + signal,
        signal,
        started: true,
        waitedMs,
      };
    } finally {
      this.#released = true;
      lock.lost?.removeEventListener("abort", onLost);
      await this.#stopping;
      await _endWatchdog(watchdog);
      await lock.release();
    }
  }

  /**
   * Starts the watchdog that keeps copies of the lock's `keepOpen`
   * descriptors, if it has any; `null` if not.
   */
  async #startWatchdog(lock: _Held): Promise<_Child | null> {
    const keepOpen = _processGroups ? lock.keepOpen ?? [] : [];
    if (keepOpen.length === 0) return null;
    // The shell would only say "not found" once the command is gated.
    if (!_runnable(this.command[0])) {
      throw new CommandNotStartedError(this.command[0], "ENOENT");
    }
    // In a session of its own, so that a signal to this process's
    // group (a terminal's, a supervisor's) does not reach it.
    return await _spawn("/bin/sh", [
      "-c",
      _WATCHDOG,
      "lockbox-watchdog",
      String(Math.ceil((lock.stopGrace ?? 0) / 100)),
    ], { input: true, passDescriptors: keepOpen, newGroup: true });
  }

  /**
   * Starts the command: passed the lock file, or behind the watchdog's
   * gate; in a process group of its own where it needs one.
   */
  async #start(
    lock: _Held,
    passLock: _LockHandle | undefined,
    watchdog: _Child | null,
  ): Promise<_Child> {
    const gate = watchdog === null ? null : watchdog.inputDescriptor();
    // A session of its own has no controlling terminal (no /dev/tty for
    // ssh or sudo to ask on, Ctrl-Z stops only this process): a command
    // started from a terminal under a file lock, which cannot be lost,
    // stays in this process's group and gets the terminal's signals there.
    const ownGroup = _processGroups &&
      (lock.untilGroupEnds === true || !_isTerminal("stdin"));
    const child = gate === null
      ? await _startCommand(this.command, {
        passLock,
        newGroup: ownGroup,
      })
      : await _startCommand(["/bin/sh", "-c", _GATE, ...this.command], {
        descriptor3: gate,
        newGroup: true,
      });
    this.#child = child;
    if (ownGroup || gate !== null) this.#group = child.pid;
    // Without the gate (no pipe found), the watchdog learns it from here.
    if (gate === null) await watchdog?.send(`${child.pid}\n`);
    return child;
  }

  #signalCommand(signal: _StopSignal): void {
    if (this.#group !== null) _killGroup(this.#group, signal);
    else this.#child?.kill(signal);
  }

  /** Stops the command whose lock was lost, and says so. */
  #onLost(lock: _Held): void {
    if (this.#released) return;
    this.options.onLost?.(lock.lost!.reason);
    if (this.#group === null) this.#child?.kill("SIGTERM");
    else this.#stopping ??= _stopGroup(this.#group, lock.stopGrace ?? 0);
  }
}

/** Tells the watchdog the command is done, and waits for it to end. */
async function _endWatchdog(watchdog: _Child | null): Promise<void> {
  if (watchdog === null) return;
  await watchdog.send("done\n").catch(() => {});
  await watchdog.endInput().catch(() => {});
  await watchdog.status;
}

/**
 * Throws a clear `LockError` where the lock file cannot be passed on to a
 * command (its descriptor cannot be found: no `/proc`, no `/dev/fd`),
 * instead of letting it pass for a command that cannot be started.
 */
function _checkPassable(handle: _LockHandle, command: string): void {
  try {
    handle.descriptor();
  } catch (error) {
    throw new LockError(
      `Cannot pass the lock on to '${command}': ${
        (error as Error)?.message ?? String(error)
      }; hold it in this process only with close: true (lockbox run --close)`,
      { cause: error },
    );
  }
}
