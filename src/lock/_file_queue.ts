// The requests of this process for one lock path, in line: only the head
// touches the OS lock. An uncontended acquire is a handful of non-blocking
// system calls and no trip to the runtime's thread pool. A contended one
// parks one pool thread per path (a blocking flock) and hands the lock on
// as soon as the kernel grants it; a request that timed out or was aborted
// leaves that wait to finish and pass the lock to the next request, or
// release it at once.

import { _stillLinked } from "../base/file_identity.ts";
import {
  type _FileStat,
  type _LockHandle,
  _onWindows,
} from "../runtime/mod.ts";
import { LockError, LockTimeoutError } from "../base/errors.ts";
import { _hint } from "../base/fs_errors.ts";
import type { LockHolder } from "../base/lock_holder.ts";
import type { _KeptLockFile } from "./kept_lock_file.ts";
import { _heldRecord } from "./kernel.ts";
import { LockQueue, LockQueues } from "./queue.ts";
import { _convert, _remember, _tryTake } from "./_lock_file_open.ts";
import { _writePidFile, _writeRecord } from "./_holder_write.ts";
import type { _DeadlockWatch, _WaitingLine } from "./_deadlock_watch.ts";

/** How long a kernel wait lasts before its deadlock watch first looks (ms). */
export const _DEADLOCK_TIMEOUT = 1000;

/** A lock taken for a request: what its `FileLock` is made of. */
export interface _Grant {
  handle: _LockHandle;
  token: number;
  queue: _FileQueue;
}

/** One call to acquire, from its start until it is settled. */
export class _Request {
  constructor(
    readonly path: string,
    readonly lockPath: string,
    readonly shared: boolean,
    readonly metadataJson: string | undefined,
    readonly removeOnRelease: boolean,
    readonly pidFile: boolean,
    readonly nullOnBusy: boolean,
    readonly kept: _KeptLockFile | undefined,
    readonly signal: AbortSignal | undefined,
    readonly deadlockTimeout: number,
    readonly resolve: (grant: _Grant | null) => void,
    readonly reject: (error: unknown) => void,
  ) {}

  /** Waits in `queue`'s line until its turn, its timeout or its signal. */
  waitIn(queue: _FileQueue, timeout: number): void {
    queue.wait(this, {
      timeout,
      signal: this.signal,
      timedOut: () => this.busy(),
      giveUp: (error) => this.settle(null, error),
    });
  }

  /** Hands over the lock, or `null` (`error` undefined) or `error`. */
  settle(grant: _Grant | null, error?: unknown): void {
    if (grant) this.resolve(grant);
    else if (error === undefined) this.resolve(null);
    else this.reject(error);
  }

  /** What a request that found the lock taken settles with. */
  busy(): LockTimeoutError | undefined {
    if (this.nullOnBusy) return undefined;
    let holder: LockHolder | null = null;
    try {
      holder = _heldRecord(this.lockPath);
    } catch {
      // The error names the path either way; the holder is a courtesy.
    }
    return new LockTimeoutError(this.lockPath, holder);
  }
}

/**
 * The requests of this process for one lock path. Only the head touches
 * the OS lock: `serve` tries it, and while the kernel makes it wait,
 * `serving` holds the rest of the line.
 */
export class _FileQueue extends LockQueue<_Request> implements _WaitingLine {
  /** The deadlock check of the kernel wait in progress. */
  watch: _DeadlockWatch | undefined;
  /** How many kernel waits this line has started (see `_watchWait`). */
  waits = 0;
  /**
   * The lock file a release of this path just unlocked, while that release
   * serves the next request in line (`pump`): a hand-off within the
   * process reuses the open file instead of opening it again. Whatever the
   * pump leaves here goes back to the releaser at once (closed, or kept by
   * its owner), so nothing stays open after the release returns.
   */
  spare: _LockHandle | null = null;

  get lockPath(): string {
    return this.key;
  }

  waiting(): boolean {
    return this.serving && this.head !== undefined;
  }

  failHead(error: unknown): void {
    const head = this.head;
    if (head !== undefined) this.fail(head, error);
  }

  stopWatch(): void {
    this.watch?.stop();
    this.watch = undefined;
  }

  /** Takes the OS lock for `head` if it is free, or starts a kernel wait. */
  protected override serve(head: _Request): boolean {
    let attempt;
    try {
      attempt = _tryTake(this, head.shared, head.kept);
    } catch (error) {
      this.shift();
      head.settle(null, _wrap(this.lockPath, error));
      return true;
    }
    if (attempt.stat) {
      this.shift();
      _grant(this, head, attempt.handle, attempt.stat);
      return true;
    }
    _waitInKernel(this, attempt.handle, head.shared);
    return false;
  }
}

const _queues = new LockQueues<_Request, _FileQueue>(
  (lockPath, onIdle) => new _FileQueue(lockPath, onIdle),
);
/** The lock paths this process holds now. */
function _heldPaths(): string[] {
  const paths = [];
  for (const queue of _queues.values()) {
    if (queue.active > 0) paths.push(queue.lockPath);
  }
  return paths;
}

/**
 * Starts `request`: takes the lock at once if it is free, else waits in
 * line (or, first in line, in the kernel), or gives up at `timeout` 0.
 */
export function _start(
  request: _Request,
  timeout: number,
  blocking: boolean,
): void {
  const { lockPath, shared } = request;
  const queue = _queues.get(lockPath);
  if (!queue.free(shared)) {
    // Someone in this process is ahead: wait in line, or give up now.
    if (timeout === 0) request.settle(null, request.busy());
    else request.waitIn(queue, timeout);
    return;
  }
  // First in line: try right away, with no trip to the thread pool.
  let attempt;
  try {
    attempt = _tryTake(queue, shared, request.kept);
  } catch (error) {
    request.settle(null, _wrap(lockPath, error));
    queue.dropIfIdle();
    return;
  }
  if (attempt.stat) {
    _grant(queue, request, attempt.handle, attempt.stat);
    return;
  }
  if (timeout === 0) {
    attempt.handle.close();
    request.settle(null, request.busy());
    queue.dropIfIdle();
    return;
  }
  request.waitIn(queue, timeout);
  if (blocking) _waitBlocking(queue, attempt.handle, shared);
  else _waitInKernel(queue, attempt.handle, shared);
}

/** `error` as a `LockError` naming `lockPath`, with a hint. */
export function _wrap(lockPath: string, error: unknown): unknown {
  if (error instanceof LockError || error instanceof RangeError) return error;
  const hint = _hint(error);
  return new LockError(
    `Cannot lock '${lockPath}': ${
      (error as Error)?.message ?? String(error)
    }; ${hint}`,
    { cause: error },
  );
}

/** Gives `request` the OS lock on `handle`: writes the holder record. */
function _grant(
  queue: _FileQueue,
  request: _Request,
  handle: _LockHandle,
  stat: _FileStat,
): void {
  let token: number;
  try {
    // Windows: the record beside the lock file, which no other handle may
    // read while it is locked, and a shared holder may not write.
    token = request.pidFile || _onWindows
      ? _writePidFile(request, handle, stat, !_onWindows)
      : _writeRecord(request, handle, stat);
  } catch (error) {
    handle.unlock();
    handle.close();
    request.settle(null, _wrap(request.lockPath, error));
    return;
  }
  queue.enter(request.shared);
  request.settle({ handle, token, queue });
}

function _waitInKernel(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = true;
  const wait = ++queue.waits;
  const head = queue.head;
  if (head !== undefined && head.deadlockTimeout !== Infinity) {
    _watchWait(queue, wait, head.deadlockTimeout);
  }
  handle.lock(!shared).then(
    () => _onKernelGrant(queue, handle, shared),
    (error) => _onKernelError(queue, handle, error),
  );
}

/**
 * Starts the deadlock watch of kernel wait number `wait` of `queue`, whose
 * module is loaded on first use (`lockbox run` and most processes never
 * wait that long; it first looks after `every` ms), unless that wait has
 * ended meanwhile.
 */
function _watchWait(queue: _FileQueue, wait: number, every: number): void {
  import("./_deadlock_watch.ts").then(({ _DeadlockWatch }) => {
    if (queue.serving && queue.waits === wait && queue.watch === undefined) {
      queue.watch = new _DeadlockWatch(queue, every, _heldPaths);
    }
  });
}

/**
 * Option `blocking`: waits in this thread until the kernel grants it. (Should
 * the lock file turn out to have been replaced meanwhile, the request starts
 * over through `pump`, which waits on a helper thread: `pump` also runs on
 * release, where blocking the caller would be wrong.)
 */
function _waitBlocking(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = true;
  try {
    handle.lockSync(!shared);
  } catch (error) {
    _onKernelError(queue, handle, error);
    return;
  }
  _onKernelGrant(queue, handle, shared);
}

function _onKernelError(
  queue: _FileQueue,
  handle: _LockHandle,
  error: unknown,
): void {
  queue.serving = false;
  queue.stopWatch();
  handle.close();
  const head = queue.shift();
  head?.settle(null, _wrap(queue.lockPath, error));
  queue.pump();
}

function _onKernelGrant(
  queue: _FileQueue,
  handle: _LockHandle,
  shared: boolean,
): void {
  queue.serving = false;
  queue.stopWatch();
  const head = queue.head;
  let stat: _FileStat | null = null;
  try {
    if (
      head !== undefined && queue.compatible(head.shared) &&
      // The request that started the wait may have given up; the next one
      // may want the other mode. Convert without blocking, or start over.
      (head.shared === shared || _convert(handle, !head.shared))
    ) {
      stat = _stillLinked(handle, queue.lockPath);
      if (stat) _remember(queue.lockPath, stat);
    }
  } catch {
    stat = null;
  }
  if (!stat || head === undefined) {
    handle.unlock();
    handle.close();
    queue.pump();
    return;
  }
  queue.shift();
  _grant(queue, head, handle, stat);
  queue.pump();
}
