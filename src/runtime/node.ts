// The runtime layer on Node.js (20 and later), with the same exports as
// deno.ts; runtime/mod.ts picks one. flock(2) comes from the C library,
// called through koffi (an FFI package whose prebuilt binaries are
// per-platform optional dependencies, so it installs without a compiler).
//
// Waiting for a lock is the hard part (ARCHITECTURE.md, "Waiting for a lock
// on Node"). A wait parks in a blocking flock on a thread of this process,
// so the kernel lists this process as the waiter and, once granted, as the
// holder. On Linux, one wait at a time parks on one of libuv's pool threads
// (koffi's async call: no thread to start), and only while the pool has at
// least four, so three are left for fs calls; other waits park in worker
// threads of our own (`_Waiter`). Either thread would hold up exit (libuv
// and Node join them), so a parked flock can be interrupted: SIGURG sent to
// its thread makes it return EINTR (the handler is installed without
// SA_RESTART), on exit and, in a worker thread on Linux, from a timer of
// the thread's own every 200 ms, which is what ends it when the thread
// that started it is terminated.

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import process from "node:process";
import { spawn as spawnChild } from "node:child_process";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { isatty } from "node:tty";
import { Buffer } from "node:buffer";
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isMainThread, Worker } from "node:worker_threads";
import { AsyncLocalStorage } from "node:async_hooks";
import { basename, dirname, join, resolve } from "node:path";
import {
  _checkPathArgument,
  _groupRunsByProc,
  _isInitialPidNamespace,
  _ppidOf,
  _readWhole,
} from "./types.ts";
import { _onWindows, _procAllowed } from "./_platform.ts";
import {
  _winLockSync,
  _winTryLock,
  _winUnlock,
  _winWaitForLock,
} from "./_node_windows.ts";
import type {
  _AsyncStore,
  _Child,
  _DirEntry,
  _FileStat,
  _LockHandle,
  _SpawnOptions,
  _StopSignal,
  _WriteHandle,
} from "./types.ts";
import { _libcFor } from "./_libc.ts";
import type { _LibcFacts } from "./_libc.ts";

/** Turns a `string | URL` into an absolute file system path. */
export function _toPath(path: string | URL): string {
  _checkPathArgument(path);
  return path instanceof URL ? fileURLToPath(path) : resolve(path);
}

/** The directory part of `path`, as node:path's `dirname`. */
export function _dirname(path: string): string {
  return dirname(path);
}

/** The last part of `path`, as node:path's `basename`. */
export function _basename(path: string): string {
  return basename(path);
}

/** `parts` joined into one path, as node:path's `join`. */
export function _join(...parts: string[]): string {
  return join(...parts);
}

/** A new value that follows an async call chain (node:async_hooks'). */
export function _asyncStore<T>(): _AsyncStore<T> {
  return new AsyncLocalStorage<T>();
}

/** Whether `/proc` may be read: Linux, unless `LOCKBOX_NO_PROC=1`. */
function _proc(): boolean {
  return _procAllowed((name) => process.env[name]);
}

/** The part of koffi lockbox uses. */
interface _Koffi {
  load(path: string): {
    func(signature: string): (...args: unknown[]) => unknown;
    symbol(name: string): unknown;
  };
  errno(): number;
  os: { errno: Record<string, number> };
}

/** flock(2)'s operations. */
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;

// Made on first use: loading this module on Deno (which never calls it)
// must not depend on where the module lives.
let _requireHere: ReturnType<typeof createRequire> | undefined;
function _require(): ReturnType<typeof createRequire> {
  return _requireHere ??= createRequire(import.meta.url);
}

interface _Libc {
  facts: _LibcFacts;
  koffi: _Koffi;
  /** The C library, for functions loaded later (`_poolCalls`). */
  lib: ReturnType<_Koffi["load"]>;
  /** Where koffi's entry point is, for the waiting threads to load it. */
  koffiPath: string;
  flock: ((fd: number, op: number) => number) & {
    async(
      fd: number,
      op: number,
      done: (error: unknown, result: number) => void,
    ): void;
  };
  /** `code` names by errno value, from koffi's table. */
  codes: Map<number, string>;
  /** Makes SIGURG interrupt a blocked flock (see `_armInterrupts`). */
  signal: (sig: number, handler: unknown) => unknown;
  siginterrupt: (sig: number, flag: number) => number;
  sigactionHandler: (sig: number) => bigint;
  pthreadKill: (thread: unknown, sig: number) => number;
  noop: unknown;
}

let _libcLoaded: _Libc | undefined;

/** koffi and the C library, loaded on first use. */
function _libc(): _Libc {
  if (_libcLoaded !== undefined) return _libcLoaded;
  const facts = _libcFor(process.platform);
  let koffi: _Koffi;
  let koffiPath: string;
  try {
    koffiPath = _require().resolve("koffi");
    koffi = _require()(koffiPath) as _Koffi;
  } catch (error) {
    throw new Error(
      `Cannot load koffi, which gives Node flock(2), on ${process.platform}-${process.arch}: ${
        (error as Error).message
      }; install it (npm install koffi: it ships prebuilt binaries for most platforms, this one may have none)`,
      { cause: error },
    );
  }
  const lib = koffi.load(facts.library);
  const sigaction = lib.func("int sigaction(int sig, void *act, void *old)");
  const codes = new Map<number, string>();
  for (const [name, value] of Object.entries(koffi.os.errno)) {
    if (!codes.has(value)) codes.set(value, name);
  }
  codes.set(facts.EWOULDBLOCK, "EAGAIN");
  _libcLoaded = {
    facts,
    koffi,
    lib,
    koffiPath,
    flock: lib.func("int flock(int fd, int op)") as _Libc["flock"],
    codes,
    signal: lib.func("void *signal(int sig, void *handler)"),
    siginterrupt: lib.func("int siginterrupt(int sig, int flag)") as (
      sig: number,
      flag: number,
    ) => number,
    // A struct sigaction begins with its handler on every platform in the
    // table; 256 bytes hold the whole of any of them.
    sigactionHandler: (sig) => {
      const old = new BigUint64Array(32);
      if (sigaction(sig, null, old) !== 0) return 0n;
      return old[0];
    },
    pthreadKill: lib.func("int pthread_kill(uint64_t thread, int sig)") as (
      thread: unknown,
      sig: number,
    ) => number,
    // getpid() as the handler: async-signal-safe, and does nothing that
    // matters; the signal exists only to interrupt a system call.
    noop: lib.symbol("getpid"),
  };
  return _libcLoaded;
}

/** An Error for a failed C call, with Node's `code` and `errno`. */
function _cError(libc: _Libc, errno: number, what: string): Error {
  const code = libc.codes.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${code}: ${what} failed (errno ${errno})`), {
    code,
    errno: -errno,
  });
}

/**
 * flock(2) on `fd`: `true` when taken (or released), `false` for a
 * non-blocking request the lock is held against. Retries on EINTR.
 */
function _flock(fd: number, op: number): boolean {
  const libc = _libc();
  while (true) {
    if (libc.flock(fd, op) === 0) return true;
    const errno = libc.koffi.errno();
    if (errno === libc.facts.EINTR) continue;
    if (errno === libc.facts.EWOULDBLOCK && (op & LOCK_NB) !== 0) return false;
    throw _cError(libc, errno, "flock");
  }
}

/**
 * Makes SIGURG interrupt a blocked flock: a handler (getpid, a no-op here)
 * where it has none, and SA_RESTART off. Checked before each wait: a
 * `process.on("SIGURG")` added since installs libuv's handler with
 * SA_RESTART, which would leave a waiting thread deaf to it.
 */
function _armInterrupts(libc: _Libc): void {
  const sig = libc.facts.SIGURG;
  const handler = libc.sigactionHandler(sig);
  if (handler === 0n || handler === 1n) libc.signal(sig, libc.noop);
  libc.siginterrupt(sig, 1);
}

function _stat(info: fs.Stats): _FileStat {
  return {
    dev: info.dev,
    ino: info.ino,
    nlink: info.nlink,
    size: info.size,
    mtimeMs: info.mtimeMs,
    mode: info.mode & 0o7777,
    uid: info.uid,
    gid: info.gid,
    isFile: info.isFile(),
    isDirectory: info.isDirectory(),
    isSymlink: info.isSymbolicLink(),
  };
}

/** `lstat`, with `null` for a path that does not exist. */
export function _lstat(path: string): _FileStat | null {
  const info = fs.lstatSync(path, { throwIfNoEntry: false });
  return info === undefined ? null : _stat(info);
}

/** `stat` following symlinks, with `null` for a path (or target) that does not exist. */
export function _statFollow(path: string): _FileStat | null {
  const info = fs.statSync(path, { throwIfNoEntry: false });
  return info === undefined ? null : _stat(info);
}

/** The canonical path, every symlink resolved. */
export function _realPath(path: string): string {
  return realpathSync(path);
}

// --- Waiting for a lock in a worker thread --------------------------------

// The thread parks in a blocking flock. state[0] is 1 while it waits,
// state[1] is set to call the wait off (then an interrupted flock returns
// `{ cancelled: true }` instead of trying again), state[2] turns 1 once the
// thread has loaded koffi (or failed to).
const _WAITER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const state = new Int32Array(workerData.state);
let koffi, facts, flock, self, lib;
let arm = () => {};
try {
  koffi = require(workerData.koffi);
  facts = workerData.facts;
  lib = koffi.load(facts.library);
  flock = lib.func("int flock(int fd, int op)");
  self = lib.func("uint64_t pthread_self(void)");
  if (facts.threadTimers) {
    // A timer of this thread's own sends it SIGURG every 200 ms while it
    // waits, so a wait always ends soon after its thread is terminated.
    const gettid = lib.func("int gettid(void)");
    const timerCreate = lib.func("int timer_create(int clock, void *event, _Out_ void **timer)");
    const timerSettime = lib.func("int timer_settime(void *timer, int flags, void *value, void *old)");
    // struct sigevent: sigev_value (8 bytes), sigev_signo, sigev_notify
    // (SIGEV_THREAD_ID, 4), then the thread id; 64 bytes in all.
    const event = new Int32Array(16);
    event[2] = facts.SIGURG;
    event[3] = 4;
    event[4] = gettid();
    const timer = [null];
    if (timerCreate(1, event, timer) === 0) {
      const on = new BigInt64Array([0n, 200000000n, 0n, 200000000n]);
      const off = new BigInt64Array(4);
      arm = (waiting) => timerSettime(timer[0], 0, waiting ? on : off, null);
    }
  }
} finally {
  // Loaded (or failed): process.exit() may now stop this thread.
  Atomics.store(state, 2, 1);
  Atomics.notify(state, 2);
}
parentPort.postMessage({ thread: self() });
parentPort.on("message", ({ fd, op }) => {
  let reply;
  arm(true);
  while (true) {
    if (Atomics.load(state, 1) === 1) {
      reply = { cancelled: true };
      break;
    }
    if (flock(fd, op) === 0) {
      reply = { ok: true };
      break;
    }
    const errno = koffi.errno();
    if (errno !== facts.EINTR) {
      reply = { errno };
      break;
    }
  }
  arm(false);
  Atomics.store(state, 0, 0);
  Atomics.notify(state, 0);
  parentPort.postMessage(reply);
});
`;

/** At most this many waiting threads at once; further waits poll. */
const _MAX_WAITERS = 16;

/** A worker thread that parks in one blocking flock at a time. */
class _Waiter {
  #worker: Worker;
  // [0] 1 while parked in flock; [1] 1 once the wait is called off;
  // [2] 1 once the thread has loaded koffi (or failed to).
  #state = new Int32Array(new SharedArrayBuffer(12));
  #thread: Promise<unknown>;
  #threadId: unknown = null;
  #dead = false;
  #settle: ((reply: { ok?: boolean; errno?: number }) => void) | null = null;
  constructor(libc: _Libc) {
    this.#worker = new Worker(_WAITER_SOURCE, {
      eval: true,
      workerData: {
        koffi: libc.koffiPath,
        facts: libc.facts,
        state: this.#state.buffer,
      },
    });
    this.#thread = new Promise((resolve) => {
      this.#worker.once("message", ({ thread }) => {
        _startingWaiters.delete(this);
        this.#threadId = thread;
        if (!this.waiting) this.#worker.unref();
        resolve(thread);
        this.#worker.on("message", (reply) => {
          const settle = this.#settle;
          this.#settle = null;
          this.#worker.unref(); // idle: it must not keep the process alive
          settle?.(reply);
        });
      });
    });
    this.#worker.on("error", (error: Error) => {
      // A dead worker is not returned to the pool.
      this.#dead = true;
      _startingWaiters.delete(this);
      _waiterCount--;
      const settle = this.#settle;
      this.#settle = null;
      settle?.({ ok: false, errno: -1, message: error.message } as never);
    });
    // Starting keeps the process alive: the wait that asked for it follows.
    _startingWaiters.add(this);
  }
  /**
   * Waits (blocking this thread, at most until `deadline`) until the thread
   * has loaded koffi. Node stops a worker thread at exit wherever it is,
   * and koffi's start-up, stopped halfway, aborts the whole process
   * ("FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw").
   */
  awaitLoaded(deadline: number): void {
    while (Atomics.load(this.#state, 2) === 0) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      Atomics.wait(this.#state, 2, 0, left);
    }
  }
  /** Whether it is parked in a flock now. */
  get waiting(): boolean {
    return Atomics.load(this.#state, 0) === 1;
  }
  lock(libc: _Libc, fd: number, exclusive: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#settle = (reply) => {
        if (!this.#dead) _idleWaiters.push(this);
        _busyWaiters.delete(this);
        if (reply.ok) return resolve();
        const message = (reply as { message?: string }).message;
        reject(
          message !== undefined
            ? new Error(`Cannot wait for a lock in a worker thread: ${message}`)
            : _cError(libc, reply.errno ?? 0, "flock"),
        );
      };
      _busyWaiters.add(this);
      _armInterrupts(libc);
      // Waiting keeps the process alive, as a pending lock does on Deno.
      this.#worker.ref();
      Atomics.store(this.#state, 0, 1);
      this.#worker.postMessage({ fd, op: exclusive ? LOCK_EX : LOCK_SH });
    });
  }
  /**
   * Calls the wait off and interrupts it, then waits (blocking this
   * thread, at most `ms`) until the thread has left flock.
   */
  stopNow(libc: _Libc, ms: number): void {
    Atomics.store(this.#state, 1, 1);
    const deadline = Date.now() + ms;
    while (this.waiting && Date.now() < deadline) {
      // Sent again until it lands: one sent just before the thread entered
      // flock interrupts nothing.
      if (this.#threadId !== null) {
        libc.pthreadKill(this.#threadId, libc.facts.SIGURG);
      }
      Atomics.wait(this.#state, 0, 1, 5);
    }
  }
  /** Resolves once the thread has said which thread it is. */
  ready(): Promise<unknown> {
    return this.#thread;
  }
}

// --- Waiting for a lock on libuv's pool (Linux) ----------------------------

/** flock's number in /proc/self/task/TID/syscall, by `process.arch`. */
const _SYS_FLOCK: Readonly<Record<string, number>> = { x64: 73, arm64: 32 };

/** What a wait on the pool needs beyond `_libc()`: Linux's calls. */
interface _PoolCalls {
  tgkill: (pid: number, tid: number, sig: number) => number;
  dup2: (from: number, to: number) => number;
  pipe: (fds: Int32Array) => number;
}

let _poolCallsLoaded: _PoolCalls | null | undefined;

/** tgkill, dup2 and pipe, or `null` where the C library lacks one. */
function _poolCalls(libc: _Libc): _PoolCalls | null {
  if (_poolCallsLoaded !== undefined) return _poolCallsLoaded;
  try {
    _poolCallsLoaded = {
      // glibc 2.30 and later, musl.
      tgkill: libc.lib.func(
        "int tgkill(int pid, int tid, int sig)",
      ) as _PoolCalls["tgkill"],
      dup2: libc.lib.func("int dup2(int from, int to)") as _PoolCalls["dup2"],
      pipe: libc.lib.func("int pipe(_Out_ int *fds)") as _PoolCalls["pipe"],
    };
  } catch {
    _poolCallsLoaded = null;
  }
  return _poolCallsLoaded;
}

/**
 * Whether libuv's pool has at least four threads: UV_THREADPOOL_SIZE, which
 * libuv reads once when its pool starts (with atoi: a bad value gives one
 * thread), is read here when this module loads, as a later change does not
 * resize the pool.
 */
const _POOL_OF_FOUR = parseInt(process.env.UV_THREADPOOL_SIZE ?? "4", 10) >= 4;

/** The descriptor of the one wait parked on libuv's pool, if any. */
let _poolWaitFd: number | null = null;

/**
 * Whether a wait may park on libuv's pool now: none is parked there yet,
 * this is Linux on an architecture in `_SYS_FLOCK`, the main thread (a
 * worker thread's wait must end when the thread is terminated, which only a
 * thread of its own arranges), `/proc` may be read (to find the thread that
 * parked, on exit), and the pool has at least four threads, so that three
 * are left for `fs` calls.
 */
function _poolUsable(libc: _Libc): boolean {
  if (_poolWaitFd !== null || !_proc() || !isMainThread) return false;
  if (_SYS_FLOCK[process.arch] === undefined) return false;
  if (!_POOL_OF_FOUR) return false;
  return _poolCalls(libc) !== null;
}

/**
 * Waits for the lock on `fd` in a blocking flock on one of libuv's pool
 * threads (through koffi's async call): no thread of our own to start. The
 * kernel lists this process as the waiter, then the holder.
 */
async function _waitOnPool(
  libc: _Libc,
  fd: number,
  exclusive: boolean,
): Promise<void> {
  _armInterrupts(libc);
  _poolWaitFd = fd;
  try {
    while (true) {
      const errno = await new Promise<number>((resolve, reject) =>
        libc.flock.async(
          fd,
          exclusive ? LOCK_EX : LOCK_SH,
          (error, result) =>
            error
              ? reject(error)
              : resolve(result === 0 ? 0 : libc.koffi.errno()),
        )
      );
      if (errno === 0) return;
      // A stray SIGURG (only exit sends one on purpose, and then this
      // never runs again): park again.
      if (errno !== libc.facts.EINTR) throw _cError(libc, errno, "flock");
    }
  } finally {
    _poolWaitFd = null;
  }
}

/**
 * The thread ids of this process blocked in flock on `fd`, read from
 * /proc/self/task/TID/syscall ("73 0x12 0x2 ..." on x64).
 */
function _threadsInFlock(fd: number): number[] {
  const prefix = `${_SYS_FLOCK[process.arch]} 0x${fd.toString(16)} `;
  const threads = [];
  for (const tid of fs.readdirSync("/proc/self/task")) {
    try {
      if (
        fs.readFileSync(`/proc/self/task/${tid}/syscall`, "latin1")
          .startsWith(prefix)
      ) threads.push(Number(tid));
    } catch {
      // The thread has ended.
    }
  }
  return threads;
}

/**
 * On exit: libuv joins its pool threads, so a flock parked there must end.
 * The descriptor first becomes a pipe of our own (a flock that has not
 * started yet, queued behind other work, then returns at once; out of
 * descriptors, it is closed instead, which frees one for the look below),
 * then the thread parked on the lock file gets SIGURG, resent until no
 * thread has been in that flock for 50 ms (one that had the descriptor
 * before dup2 may take a moment to reach the wait). Runs once.
 */
function _endPoolWait(libc: _Libc): void {
  const fd = _poolWaitFd;
  const calls = _poolCalls(libc);
  if (fd === null || calls === null) return;
  _poolWaitFd = null;
  const pipe = new Int32Array(2);
  if (calls.pipe(pipe) !== 0 || calls.dup2(pipe[0], fd) < 0) {
    try {
      fs.closeSync(fd);
    } catch {
      // Already closed.
    }
  }
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 5_000;
  let quietSince = Date.now();
  while (Date.now() - quietSince < 50 && Date.now() < deadline) {
    let threads: number[] = [];
    try {
      threads = _threadsInFlock(fd);
    } catch {
      // Cannot look now: look again.
    }
    for (const tid of threads) {
      calls.tgkill(process.pid, tid, libc.facts.SIGURG);
    }
    if (threads.length > 0) quietSince = Date.now();
    Atomics.wait(pause, 0, 0, 2);
  }
}

const _idleWaiters: _Waiter[] = [];
const _startingWaiters = new Set<_Waiter>();
const _busyWaiters = new Set<_Waiter>();
let _waiterCount = 0;
let _exitHooked = false;

/**
 * Waits for the lock on `fd` in a waiting thread; with `_MAX_WAITERS`
 * threads all waiting, by polling with non-blocking flocks instead.
 */
async function _waitForLock(fd: number, exclusive: boolean): Promise<void> {
  const libc = _libc();
  if (!_exitHooked) {
    _exitHooked = true;
    // Exiting never waits for a waiting thread: interrupt them all. (Node
    // joins worker threads after the "exit" listeners have run.) First of
    // the listeners, as one that exits or throws skips the rest; and again
    // from process.reallyExit, which such an exit (or a direct call) reaches
    // without them.
    process.prependListener("exit", () => {
      const deadline = Date.now() + 5_000;
      for (const waiter of _startingWaiters) waiter.awaitLoaded(deadline);
      for (const waiter of _busyWaiters) waiter.stopNow(libc, 1_000);
      _endPoolWait(libc);
    });
    const host = process as unknown as { reallyExit: (code?: number) => void };
    const reallyExit = host.reallyExit;
    host.reallyExit = function (code?: number): void {
      _endPoolWait(libc);
      return reallyExit.call(this, code);
    };
  }
  // Parked at once: tries at 1, 2, 4 and 8 ms first cost more (timers and
  // lost turns) than they saved (docs/node.md, "Waiting").
  if (_poolUsable(libc)) return await _waitOnPool(libc, fd, exclusive);
  let waiter = _idleWaiters.pop();
  if (waiter === undefined && _waiterCount < _MAX_WAITERS) {
    _waiterCount++;
    waiter = new _Waiter(libc);
  }
  if (waiter === undefined) return await _pollForLock(fd, exclusive);
  await waiter.ready();
  await waiter.lock(libc, fd, exclusive);
}

/** The last resort: non-blocking flocks, 5 ms apart doubling to 200 ms. */
async function _pollForLock(fd: number, exclusive: boolean): Promise<void> {
  const op = (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  for (let pause = 5;; pause = Math.min(pause * 2, 200)) {
    if (_flock(fd, op)) return;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

class _NodeLockHandle implements _LockHandle {
  #fd: number;
  constructor(fd: number, readonly writable: boolean) {
    this.#fd = fd;
  }
  descriptor(): number {
    return this.#fd;
  }
  tryLock(exclusive: boolean): boolean {
    if (_onWindows) return _winTryLock(this.#fd, exclusive);
    return _flock(this.#fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  }
  lock(exclusive: boolean): Promise<void> {
    if (_onWindows) return _winWaitForLock(this.#fd, exclusive);
    return _waitForLock(this.#fd, exclusive);
  }
  lockSync(exclusive: boolean): void {
    if (_onWindows) return _winLockSync(this.#fd, exclusive);
    _flock(this.#fd, exclusive ? LOCK_EX : LOCK_SH);
  }
  unlock(): void {
    if (_onWindows) return _winUnlock(this.#fd);
    _flock(this.#fd, LOCK_UN);
  }
  stat(): _FileStat {
    return _stat(fs.fstatSync(this.#fd));
  }
  readFromStart(buffer: Uint8Array): number {
    let total = 0;
    while (total < buffer.length) {
      const n = fs.readSync(
        this.#fd,
        buffer,
        total,
        buffer.length - total,
        total,
      );
      if (n === 0) break;
      total += n;
    }
    return total;
  }
  writeAtStart(data: Uint8Array): void {
    let written = 0;
    while (written < data.length) {
      written += fs.writeSync(
        this.#fd,
        data,
        written,
        data.length - written,
        written,
      );
    }
  }
  truncate(size: number): void {
    fs.ftruncateSync(this.#fd, size);
  }
  close(): void {
    fs.closeSync(this.#fd);
  }
  unlockAndClose(): void {
    // Windows releases a closed handle's locks only "depending on available
    // system resources" (LockFileEx's documentation): unlock first.
    if (_onWindows) {
      try {
        _winUnlock(this.#fd);
      } catch {
        // Closing releases it in the end.
      }
    }
    // Node opens files close-on-exec and lockbox never duplicates one, so
    // this descriptor is the open file description's only one (a lock
    // shared with a child is closed without unlocking, by FileLock):
    // closing it is what releases the flock.
    this.close();
  }
}

/**
 * Opens an existing file for locking without creating or truncating it: read
 * and write, or read-only where this process may not write it.
 */
export function _openExisting(path: string): _LockHandle {
  try {
    return new _NodeLockHandle(fs.openSync(path, fs.constants.O_RDWR), true);
  } catch (error) {
    const code = _errorCode(error);
    if (code !== "EACCES" && code !== "EPERM" && code !== "EROFS") throw error;
    return new _NodeLockHandle(fs.openSync(path, fs.constants.O_RDONLY), false);
  }
}

/**
 * Creates a new file with `O_CREAT | O_EXCL` (never follows a symlink); the
 * process umask applies to `mode`.
 */
export function _createNew(path: string, mode = 0o666): _LockHandle {
  const { O_RDWR, O_CREAT, O_EXCL } = fs.constants;
  return new _NodeLockHandle(
    fs.openSync(path, O_RDWR | O_CREAT | O_EXCL, mode),
    true,
  );
}

/** Opens a file read-only, for readers that must not disturb anyone. */
export function _openReadOnly(path: string): _LockHandle {
  return new _NodeLockHandle(fs.openSync(path, fs.constants.O_RDONLY), false);
}

export function _mkdirp(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
}

export function _unlink(path: string): void {
  fs.unlinkSync(path);
}

/** The error code (`ENOENT`, `EEXIST`, ...) of a runtime error, if any. */
export function _errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

export function _pid(): number {
  return process.pid;
}

let _hostnameCache: string | undefined;
/** The host name (cached). */
export function _hostname(): string {
  _hostnameCache ??= os.hostname();
  return _hostnameCache;
}

/** Whether a process with this pid exists (it may belong to anyone). */
export function _processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return _errorCode(error) === "EPERM";
  }
}

/** The other processes that have any of `files` open (see deno.ts). */
export function _openers(
  files: ReadonlySet<string>,
): { pids: Map<string, number[]>; complete: boolean } {
  const pids = new Map<string, number[]>();
  if (!_proc()) return { pids, complete: false };
  let complete = true;
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        let target: fs.Stats;
        try {
          target = fs.statSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue; // closed meanwhile, or not a file
        }
        const key = `${target.dev}:${target.ino}`;
        if (!files.has(key)) continue;
        const list = pids.get(key) ?? [];
        if (!list.includes(pid)) list.push(pid);
        pids.set(key, list);
      }
    } catch (error) {
      if (_errorCode(error) !== "ENOENT") complete = false;
    }
  }
  return { pids, complete };
}

/** The files process `pid` has open (see deno.ts). */
export function _openFilesOf(
  pid: number,
): { path: string; dev: number; ino: number }[] | null {
  if (process.platform !== "linux") return null;
  const files: { path: string; dev: number; ino: number }[] = [];
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = `/proc/${pid}/fd/${fd}`;
        const target = fs.statSync(link);
        if (!target.isFile()) continue;
        files.push({
          path: fs.readlinkSync(link),
          dev: target.dev,
          ino: target.ino,
        });
      } catch {
        // Closed meanwhile.
      }
    }
  } catch {
    return null;
  }
  return files;
}

/** The parent of process `pid` (see deno.ts). */
export function _parentPid(pid: number): number | null {
  if (process.platform !== "linux") return null;
  try {
    return _ppidOf(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** See {@linkcode _isInitialPidNamespace}. */
export function _inInitialPidNamespace(): boolean {
  if (!_proc()) return false;
  return _isInitialPidNamespace((path) => fs.readlinkSync(path));
}

/**
 * The command line of process `pid` from `/proc/PID/cmdline`, its
 * arguments joined by spaces; `null` where it cannot be read (not Linux, the
 * process gone, a kernel thread, no permission).
 */
export function _readCommandLine(pid: number): string | null {
  if (!_proc()) return null;
  try {
    const text = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return text.replace(/\0+$/, "").replaceAll("\0", " ") || null;
  } catch {
    return null;
  }
}

/**
 * The text of `/proc/locks`, or `null` where the system has none; read in
 * one large read (deno.ts says why).
 */
export function _readProcLocks(): string | null {
  if (!_proc()) return null;
  let fd: number;
  try {
    fd = fs.openSync("/proc/locks", fs.constants.O_RDONLY);
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
  try {
    return _readWhole((into) => fs.readSync(fd, into, 0, into.length, null));
  } finally {
    fs.closeSync(fd);
  }
}

class _NodeWriteHandle implements _WriteHandle {
  #fd: number;
  constructor(fd: number) {
    this.#fd = fd;
  }
  matchOwnership(like: _FileStat): void {
    const own = fs.fstatSync(this.#fd);
    if (
      like.uid !== null && like.gid !== null &&
      (own.uid !== like.uid || own.gid !== like.gid)
    ) {
      fs.fchownSync(this.#fd, like.uid, like.gid);
    }
    // After chown, which clears set-id bits.
    if (like.mode !== null && (own.mode & 0o7777) !== like.mode) {
      fs.fchmodSync(this.#fd, like.mode);
    }
  }
  async write(data: Uint8Array): Promise<void> {
    if (data.length <= _AT_ONCE) return this.writeNow(data);
    let written = 0;
    while (written < data.length) {
      written += await new Promise<number>((resolve, reject) =>
        fs.write(
          this.#fd,
          data,
          written,
          data.length - written,
          null,
          (error, n) => error ? reject(error) : resolve(n),
        )
      );
    }
  }
  sync(dataOnly = false): Promise<void> {
    return new Promise((resolve, reject) =>
      (dataOnly ? fs.fdatasync : fs.fsync)(
        this.#fd,
        (error) => error ? reject(error) : resolve(),
      )
    );
  }
  writeNow(data: Uint8Array): void {
    let written = 0;
    while (written < data.length) {
      written += fs.writeSync(this.#fd, data, written, data.length - written);
    }
  }
  syncDataNow(): void {
    fs.fdatasyncSync(this.#fd);
  }
  size(): number {
    return fs.fstatSync(this.#fd).size;
  }
  stat(): _FileStat {
    return _stat(fs.fstatSync(this.#fd));
  }
  byteAt(offset: number): number {
    const one = new Uint8Array(1);
    return fs.readSync(this.#fd, one, 0, 1, offset) === 1 ? one[0] : -1;
  }
  readAt(offset: number, length: number): Uint8Array {
    const buffer = new Uint8Array(length);
    let total = 0;
    while (total < length) {
      const n = fs.readSync(
        this.#fd,
        buffer,
        total,
        length - total,
        offset + total,
      );
      if (n === 0) break;
      total += n;
    }
    return buffer.subarray(0, total);
  }
  truncate(size: number): void {
    fs.ftruncateSync(this.#fd, size);
  }
  close(): void {
    fs.closeSync(this.#fd);
  }
}

/** Creates a new file for writing with `O_CREAT | O_EXCL`. */
export function _createForWrite(path: string, mode: number): _WriteHandle {
  const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
  return new _NodeWriteHandle(
    fs.openSync(path, O_WRONLY | O_CREAT | O_EXCL, mode),
  );
}

/**
 * Opens (creating if needed, mode 0666 less the umask) a file for
 * appending; readable too. An existing file is opened without `O_CREAT`
 * (see the Deno twin: `fs.protected_regular`).
 */
export function _openForAppend(path: string): _WriteHandle {
  const { O_RDWR, O_APPEND, O_CREAT, O_EXCL } = fs.constants;
  while (true) {
    const existing = _openExistingForAppend(path);
    if (existing !== null) return existing;
    try {
      return new _NodeWriteHandle(
        fs.openSync(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL, 0o666),
      );
    } catch (error) {
      // Made by someone else since: open theirs.
      if (_errorCode(error) !== "EEXIST") throw error;
    }
  }
}

/** Opens an existing file for reading and appending; `null` if it does not exist. */
export function _openExistingForAppend(path: string): _WriteHandle | null {
  const { O_RDWR, O_APPEND } = fs.constants;
  try {
    return new _NodeWriteHandle(fs.openSync(path, O_RDWR | O_APPEND));
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
}

/**
 * Opens an existing file read-only, for `readAt` and `size` (its writes
 * fail); `null` if it does not exist: a reader that must not need write
 * access, such as a watch.
 */
export function _openExistingForReading(path: string): _WriteHandle | null {
  try {
    return new _NodeWriteHandle(fs.openSync(path, fs.constants.O_RDONLY));
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
}

/**
 * `fsync` on a directory, so that a rename in it is durable. Nothing on
 * Windows, where a directory cannot be opened for FlushFileBuffers (access
 * denied) and NTFS journals a rename itself.
 */
export async function _syncDirectory(dir: string): Promise<void> {
  if (_onWindows) return;
  // Opening and closing touch no disk: only the fsync goes to libuv's
  // thread pool (see _AT_ONCE).
  const fd = fs.openSync(dir, fs.constants.O_RDONLY);
  try {
    await new Promise<void>((resolve, reject) =>
      fs.fsync(fd, (error) => error ? reject(error) : resolve())
    );
  } finally {
    fs.closeSync(fd);
  }
}

export function _rename(from: string, to: string): void {
  fs.renameSync(from, to);
}

export function _link(from: string, to: string): void {
  fs.linkSync(from, to);
}

/**
 * Up to this many bytes are read or written on the main thread, in one
 * system call that copies from or to the page cache; larger ones in libuv's
 * thread pool, so that a large file does not hold up the event loop. Each
 * trip through the pool wakes a pool thread and then the main thread, and
 * a store makes these calls while it holds its lock: under contention on a
 * busy machine each trip costs more than the copy (figures in docs/node.md,
 * from bench/node_contention.mjs).
 */
const _AT_ONCE = 1 << 20;

/** Reads a whole file; `null` if it does not exist. */
export async function _readFile(path: string): Promise<Uint8Array | null> {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY);
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
  try {
    const info = fs.fstatSync(fd);
    // One byte more than its size, so that a file read whole needs no
    // second read to see its end; grown if the file grew meanwhile. (A
    // FIFO or a device is read in the pool: its reads may block.)
    let buffer = new Uint8Array(info.size + 1);
    const limit = info.isFile() ? _AT_ONCE : -1;
    let total = 0;
    while (true) {
      if (total === buffer.length) {
        const larger = new Uint8Array(buffer.length * 2);
        larger.set(buffer);
        buffer = larger;
      }
      const n = buffer.length - total <= limit
        ? fs.readSync(fd, buffer, total, buffer.length - total, total)
        : await _readInPool(fd, buffer, total);
      if (n === 0) return buffer.subarray(0, total);
      total += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** One read into `buffer` from `offset` on, in libuv's thread pool. */
function _readInPool(
  fd: number,
  buffer: Uint8Array,
  offset: number,
): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.read(
      fd,
      buffer,
      offset,
      buffer.length - offset,
      offset,
      (error, n) => error ? reject(error) : resolve(n),
    )
  );
}

/** Removes a file; `false` if it was not there. */
export function _removeIfExists(path: string): boolean {
  try {
    fs.unlinkSync(path);
    return true;
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return false;
    throw error;
  }
}

/** Lists a directory's entries. */
export async function _readDir(dir: string): Promise<_DirEntry[]> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  return entries.map((entry) => ({
    name: entry.name,
    isFile: entry.isFile(),
    isDirectory: entry.isDirectory(),
    isSymlink: entry.isSymbolicLink(),
  }));
}

const _signals = os.constants.signals as Record<string, number>;

/**
 * Starts a command with this process's stdin, stdout and stderr. Rejects
 * (code `ENOENT` or `EACCES`) if it cannot be started.
 */
export function _spawn(
  command: string,
  args: string[],
  options: _SpawnOptions = {},
): Promise<_Child> {
  return new Promise((resolve, reject) => {
    // A passed lock goes in as descriptor 3: the same open file
    // description, so the command holds the lock as flock(1)'s does.
    const stdio: (number | "inherit" | "ignore" | "pipe")[] = [
      options.input ? "pipe" : "inherit",
      "inherit",
      "inherit",
    ];
    if (options.passLock) stdio[3] = options.passLock.descriptor();
    if (options.descriptor3 !== undefined) stdio[3] = options.descriptor3;
    const passed = [
      ...(options.passDescriptor === undefined ? [] : [options.passDescriptor]),
      ...options.passDescriptors ?? [],
    ];
    for (const fd of passed) {
      for (let i = stdio.length; i < fd; i++) stdio[i] = "ignore";
      stdio[fd] = fd;
    }
    const child = spawnChild(command, args, {
      stdio,
      env: options.env ? { ...process.env, ...options.env } : process.env,
      detached: options.newGroup === true && _processGroups,
    });
    const status = new Promise<{ code: number; signal: number | null }>(
      (done) =>
        child.on("exit", (code, signal) =>
          done({
            code: code ?? 128 + (signal ? _signals[signal] ?? 0 : 0),
            signal: signal === null ? null : _signals[signal] ?? null,
          })),
    );
    // A write to a child that has exited fails through send() alone.
    child.stdin?.on("error", () => {});
    child.once("error", reject);
    child.once("spawn", () => {
      child.off("error", reject);
      resolve({
        pid: child.pid!,
        status,
        kill(signal) {
          child.kill(signal);
        },
        send: (text) =>
          new Promise((done, fail) =>
            child.stdin!.write(text, (error) => error ? fail(error) : done())
          ),
        endInput: () => new Promise((done) => child.stdin!.end(() => done())),
        inputDescriptor: () => _socketDescriptor(child.stdin),
      });
    });
  });
}

/** Whether this system has process groups (every one but Windows). */
export const _processGroups: boolean = !_onWindows;

/** Sends `signal` to every process of group `pgid`; `false` if none is left. */
export function _killGroup(pgid: number, signal: _StopSignal): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process of group `pgid` still runs (zombies do not count). */
export function _groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    if (_errorCode(error) !== "EPERM") return false;
  }
  return _groupRunsByProc(pgid, () => {
    if (!_proc()) return null;
    try {
      return fs.readdirSync("/proc");
    } catch {
      return null;
    }
  }, (path) => {
    try {
      return fs.readFileSync(path, "utf8");
    } catch {
      return null;
    }
  }) ?? true;
}

/** Not needed on Node, which gives a socket's descriptor: `null`. */
export function _socketsNow(): Map<number, string> | null {
  return null;
}

/** The descriptor of a node:net socket in this process, or `null`. */
export function _socketDescriptor(
  socket: unknown,
  _before?: Map<number, string> | null,
): number | null {
  const fd = (socket as { _handle?: { fd?: unknown } } | null)?._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : null;
}

/**
 * Calls `fn` on SIGINT or SIGTERM (and SIGHUP with `hangup`) instead of
 * dying; returns the undo. Node resets every signal but SIGPIPE and SIGXFSZ
 * to its default when it starts, so what the caller ignored (`nohup`'s
 * SIGHUP), which deno.ts leaves ignored, cannot be seen here.
 */
export function _onTerminationSignals(
  fn: (signal: "SIGINT" | "SIGTERM" | "SIGHUP") => void,
  hangup = false,
): () => void {
  const signals: ("SIGINT" | "SIGTERM" | "SIGHUP")[] = hangup
    ? ["SIGINT", "SIGTERM", "SIGHUP"]
    : ["SIGINT", "SIGTERM"];
  const listeners = signals.map((signal) =>
    [signal, () => fn(signal)] as const
  );
  for (const [signal, listener] of listeners) process.on(signal, listener);
  return () => {
    for (const [signal, listener] of listeners) {
      process.off(signal, listener);
    }
  };
}

/** Whether a standard stream is a terminal. */
export function _isTerminal(stream: "stdin" | "stdout" | "stderr"): boolean {
  // Not process.stdout.isTTY: touching process.stdout makes a pipe
  // non-blocking for every process that shares it.
  return isatty(stream === "stdin" ? 0 : stream === "stdout" ? 1 : 2);
}

/** The width of the terminal on stderr, or 80. */
export function _columns(): number {
  return process.stderr.columns || 80;
}

/** An environment variable, or `undefined`. */
export function _env(name: string): string | undefined {
  return process.env[name];
}

/** Writes text to stderr as it is, with no newline added. */
export function _writeStderr(text: string): void {
  _writeAll(2, text);
}

/** Writes text to stdout whole, before returning (see deno.ts). */
export function _writeStdout(text: string): void {
  _writeAll(1, text);
}

const _pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `text` to `fd` with blocking writes. Node's process.stdout
 * writes to a pipe later, in the event loop, so process.exit() cuts what is
 * still queued (at 64 KiB), and console.log swallows write errors: neither
 * is used for output.
 */
function _writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  for (let n = 0; n < bytes.length;) {
    try {
      n += fs.writeSync(fd, bytes, n);
    } catch (error) {
      // A pipe someone else made non-blocking: wait for room.
      if (_errorCode(error) !== "EAGAIN") throw error;
      Atomics.wait(_pause, 0, 0, 1);
    }
  }
}

/** Reads one line from stdin, or `null` at its end. */
export function _readStdinLine(): Promise<string | null> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    let answered = false;
    lines.once("line", (line) => {
      answered = true;
      lines.close();
      resolve(line);
    });
    lines.once("close", () => {
      if (!answered) resolve(null);
    });
  });
}

/** Makes a private temporary directory. */
export async function _makeTempDir(prefix: string): Promise<string> {
  return await fsp.mkdtemp(`${os.tmpdir()}/${prefix}`);
}

/** Removes a directory and everything in it. */
export async function _removeTree(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true });
}

/** Lets the process end while `timer` is pending. */
export function _unrefTimer(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

/** Ends the process. */
export function _exit(code: number): never {
  process.exit(code);
}

/** The command-line arguments. */
export function _args(): string[] {
  return process.argv.slice(2);
}

/** `flock(2)` on an inherited descriptor (see deno.ts). */
export function _flockDescriptor(
  fd: number,
  how: "sh" | "ex" | "un",
  wait: boolean,
): boolean {
  // Node marks even inherited descriptors close-on-exec, so (unlike on
  // Deno) that cannot tell the shell's from the runtime's own; those are
  // pipes, sockets and event descriptors, never files or directories.
  let stat: fs.Stats | undefined;
  try {
    stat = fs.fstatSync(fd);
  } catch {
    // not open
  }
  if (stat === undefined || !(stat.isFile() || stat.isDirectory())) {
    throw Object.assign(new Error(`descriptor ${fd} is not open`), {
      code: "EBADF",
    });
  }
  if (how === "un") return _flock(fd, LOCK_UN);
  const op = how === "ex" ? LOCK_EX : LOCK_SH;
  return _flock(fd, wait ? op : op | LOCK_NB);
}

/** The command that runs this program again (see deno.ts). */
export function _selfCommand(): string[] {
  return [process.execPath, process.argv[1]];
}

/** Whether the module with this `import.meta` is the program's entry point. */
export function _isMain(meta: ImportMeta): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(meta.url));
  } catch {
    return false;
  }
}

/**
 * Calls `onChange` with the name of each entry of `dir` the kernel reports
 * changed (inotify), or `null` when it cannot say; returns a function that
 * stops watching. Throws if `dir` cannot be watched (missing, say).
 */
export function _watchDirectory(
  dir: string,
  onChange: (name: string | null) => void,
): () => void {
  const watcher = fs.watch(dir, (_event, filename) => {
    onChange(typeof filename === "string" ? filename : null);
  });
  watcher.on("error", () => onChange(null));
  return () => watcher.close();
}
