// Looking for a deadlock while a kernel wait lasts: processes that wait
// for each other's locks in a cycle, read from /proc/locks (Linux). See
// ARCHITECTURE.md, "Deadlocks".

import { DeadlockError } from "../base/errors.ts";
import { _lstat, _pid, _readProcLocks, _unrefTimer } from "../runtime/mod.ts";
import {
  _fileKey,
  _findDeadlock,
  _graphOf,
  _parseFlocks,
  _underHeldLock,
} from "./wait_graph.ts";

/** How long a found deadlock must stay before its victim gives up. */
const _CONFIRM_MS = 100;

/** What the watch needs of the line whose head waits in the kernel. */
export interface _WaitingLine {
  readonly lockPath: string;
  /** Whether the kernel wait still lasts, with a request in line. */
  waiting(): boolean;
  /** Gives up the request first in line with `error`. */
  failHead(error: unknown): void;
}

/**
 * The deadlock check of one kernel wait: after `every` ms, and again every
 * `every` ms while it lasts (a cycle may close after this wait began). A
 * deadlock whose victim is this process must be seen twice, `_CONFIRM_MS`
 * apart, with the same edges: the graph is read from several files, not
 * atomically, and a real deadlock does not go away. In a deadlock, the
 * head of the line fails with a `DeadlockError`, and the watch goes on for
 * the next request in line.
 */
export class _DeadlockWatch {
  readonly #line: _WaitingLine;
  readonly #every: number;
  readonly #heldPaths: () => string[];
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param line The line whose head waits.
   * @param every How long to wait between looks, in milliseconds.
   * @param heldPaths The lock paths this process holds now.
   */
  constructor(line: _WaitingLine, every: number, heldPaths: () => string[]) {
    this.#line = line;
    this.#every = every;
    this.#heldPaths = heldPaths;
    this.#schedule(null, every);
  }

  /** Ends the watch: the kernel wait is over. */
  stop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #schedule(confirming: string | null, ms: number): void {
    this.#timer = setTimeout(() => this.#look(confirming), ms);
    _unrefTimer(this.#timer);
  }

  #look(confirming: string | null): void {
    this.#timer = undefined;
    const line = this.#line;
    if (!line.waiting()) return;
    let found = null;
    try {
      found = _deadlockOf(line.lockPath, this.#heldPaths());
    } catch {
      // Cannot look now: look again later.
    }
    if (found !== null && found.victim === found.self) {
      if (found.key !== confirming) {
        this.#schedule(found.key, _CONFIRM_MS);
        return;
      }
      line.failHead(new DeadlockError(line.lockPath, found.cycle));
      if (!line.waiting()) return;
    }
    this.#schedule(null, this.#every);
  }
}

/** Whether an ancestor held a lock at this process's first deadlock look. */
let _runsUnderLock: boolean | undefined;

/** The deadlock this process's wait for `lockPath` is part of, if any. */
function _deadlockOf(lockPath: string, heldPaths: string[]) {
  // Holding no lock, this process cannot be in a cycle: no one waits for it.
  const holds = heldPaths.length > 0;
  // Holding no lock, this process is in a cycle only as a command run under
  // an ancestor's lock (`lockbox run a.lock -- cmd`), which its first look
  // tells for its whole life; else no one waits for it, and nothing is read.
  if (!holds && _runsUnderLock === false) return null;
  const stat = _lstat(lockPath);
  if (stat === null) return null;
  const text = _readProcLocks();
  if (text === null) return null;
  const table = _parseFlocks(text);
  _runsUnderLock ??= _underHeldLock(table);
  if (!holds && !_runsUnderLock) return null;
  const graph = _graphOf(table);
  const file = _fileKey(stat);
  // Paths of the locks this process holds, for the error's message.
  const known = new Map([[file, lockPath]]);
  for (const path of heldPaths) {
    const held = _lstat(path);
    if (held !== null) known.set(_fileKey(held), path);
  }
  return _findDeadlock(graph, _pid(), file, known);
}
