// The runtime layer on Node.js (20 and later), with the same exports as
// _runtime.ts; the Node build (`deno task build:npm`) swaps it in. flock(2)
// comes from the npm package fs-ext.
//
// Waiting for a lock is the hard part. A blocking flock on libuv's pool
// would take one of its four threads for as long as the lock is held
// elsewhere (four such waits stall every fs call), and one in a worker
// thread cannot be interrupted: process.exit() joins workers, so it would
// hang until the lock came free. So a wait runs in a helper process,
// `flock(1)` on our own open file description (inherited as fd 3): the lock
// it takes belongs to that description, the helper exits, and we re-take
// the lock in this process's name (the kernel lists the pid that took it).
// A helper can be killed, so exiting never waits for one. Where flock(1) is
// missing, a worker thread waits instead.

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
import { Worker } from "node:worker_threads";
import {
  _groupRunsByProc,
  _isInitialPidNamespace,
  _readWhole,
} from "./types.ts";
import type {
  _Child,
  _DirEntry,
  _FileStat,
  _LockHandle,
  _SpawnOptions,
  _StopSignal,
  _WriteHandle,
} from "./types.ts";

interface _FsExt {
  flockSync(fd: number, how: "sh" | "ex" | "shnb" | "exnb" | "un"): void;
}

// Made on first use: loading this module on Deno (which never calls it)
// must not depend on where the module lives.
let _requireHere: ReturnType<typeof createRequire> | undefined;
function _require(): ReturnType<typeof createRequire> {
  return _requireHere ??= createRequire(import.meta.url);
}
let _fsExtModule: _FsExt | undefined;
function _fsExt(): _FsExt {
  if (_fsExtModule === undefined) {
    try {
      _fsExtModule = _require()("fs-ext") as _FsExt;
    } catch (error) {
      throw new Error(
        `Cannot load fs-ext, which gives Node flock(2): ${
          (error as Error).message
        }; install it (npm install fs-ext, which builds with node-gyp)`,
        { cause: error },
      );
    }
  }
  return _fsExtModule;
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

const _WAITER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const fsExt = require(workerData.fsExt);
parentPort.on("message", ({ fd, how }) => {
  try {
    fsExt.flockSync(fd, how);
    parentPort.postMessage({ ok: true });
  } catch (error) {
    parentPort.postMessage({ ok: false, message: error.message, code: error.code });
  }
});
`;

/** A worker thread that parks in one blocking flock at a time. */
class _Waiter {
  #worker: Worker;
  #dead = false;
  #settle:
    | ((reply: { ok: boolean; message?: string; code?: string }) => void)
    | null = null;
  constructor() {
    _fsExt(); // fail here, in the caller, if fs-ext is missing
    this.#worker = new Worker(_WAITER_SOURCE, {
      eval: true,
      workerData: { fsExt: _require().resolve("fs-ext") },
    });
    this.#worker.on("message", (reply) => {
      const settle = this.#settle;
      this.#settle = null;
      this.#worker.unref(); // idle: it must not keep the process alive
      settle?.(reply);
    });
    this.#worker.on("error", (error: Error) => {
      // A dead worker is not returned to the pool.
      this.#dead = true;
      const settle = this.#settle;
      this.#settle = null;
      settle?.({ ok: false, message: error.message });
    });
    this.#worker.unref();
  }
  lock(fd: number, exclusive: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#settle = (reply) => {
        if (!this.#dead) _idleWaiters.push(this);
        if (reply.ok) return resolve();
        const error = new Error(reply.message) as Error & { code?: string };
        error.code = reply.code;
        reject(error);
      };
      // Waiting keeps the process alive, as a pending lock does on Deno.
      this.#worker.ref();
      this.#worker.postMessage({ fd, how: exclusive ? "ex" : "sh" });
    });
  }
}

const _idleWaiters: _Waiter[] = [];

/** `undefined` until tried; `false` where there is no flock(1). */
let _flockCommand: boolean | undefined;

const _helpers = new Set<ReturnType<typeof spawnChild>>();
let _helpersReaped = false;

/**
 * Waits for the lock on `fd` in a `flock(1)` helper process. Resolves
 * `true` once the helper has taken it, `false` if there is no flock(1).
 */
function _waitWithHelper(fd: number, exclusive: boolean): Promise<boolean> {
  if (!_helpersReaped) {
    _helpersReaped = true;
    // Exiting never waits for a helper: kill any still waiting.
    process.on("exit", () => {
      for (const helper of _helpers) helper.kill("SIGKILL");
    });
  }
  return new Promise((resolve, reject) => {
    // flock(1) waits on descriptor 3 in the background while the shell
    // reads its stdin, a pipe from this thread: when this process or this
    // worker thread ends, however it ends, the pipe closes and the shell
    // kills flock before it can take the lock for nobody. The reader closes
    // its copy of the lock's descriptor first.
    const mode = exclusive ? "-x" : "-s";
    const argv = [
      "sh",
      "-c",
      // (A background job's stdin is /dev/null: the pipe goes by fd 4.)
      `exec 4<&0; flock ${mode} 3 4<&- & f=$!; ` +
      `(exec 3>&-; read -r _ <&4; kill $f 2>/dev/null) & exec 4<&-; wait $f`,
    ];
    const helper = spawnChild(argv[0], argv.slice(1), {
      stdio: ["pipe", "ignore", "pipe", fd],
    });
    _helpers.add(helper);
    let stderr = "";
    helper.stderr!.setEncoding("utf8").on("data", (chunk) => stderr += chunk);
    helper.once("error", (error) => {
      _helpers.delete(helper);
      if (_errorCode(error) === "ENOENT") {
        _flockCommand = false;
        resolve(false);
      } else {
        reject(error);
      }
    });
    helper.once("exit", (code, signal) => {
      _helpers.delete(helper);
      if (code === 0) {
        _flockCommand = true;
        resolve(true);
        return;
      }
      helper.stdin?.destroy();
      if (code === 127) {
        // The shell found no flock(1).
        _flockCommand = false;
        resolve(false);
        return;
      }
      reject(
        new Error(
          `flock(1) waiting for a lock ended with ${
            signal ?? `status ${code}`
          }: ${stderr.trim()}`,
        ),
      );
    });
  });
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
    try {
      _fsExt().flockSync(this.#fd, exclusive ? "exnb" : "shnb");
      return true;
    } catch (error) {
      const code = _errorCode(error);
      if (code === "EAGAIN" || code === "EWOULDBLOCK") return false;
      throw error;
    }
  }
  lock(exclusive: boolean): Promise<void> {
    if (_flockCommand === false) {
      const waiter = _idleWaiters.pop() ?? new _Waiter();
      return waiter.lock(this.#fd, exclusive);
    }
    return new Promise((resolve, reject) => {
      const attempt = () => {
        _waitWithHelper(this.#fd, exclusive).then((helped) => {
          if (!helped) {
            // No flock(1) here: wait in a worker thread instead.
            const waiter = _idleWaiters.pop() ?? new _Waiter();
            return waiter.lock(this.#fd, exclusive).then(resolve, reject);
          }
          // The helper's lock is ours (same open file description), but
          // the kernel names the helper as its holder: take it again in
          // our own name. Another waiter may slip in between; then wait
          // again.
          try {
            this.unlock();
            if (this.tryLock(exclusive)) resolve();
            else attempt();
          } catch (error) {
            reject(error);
          }
        }, reject);
      };
      attempt();
    });
  }
  lockSync(exclusive: boolean): void {
    _fsExt().flockSync(this.#fd, exclusive ? "ex" : "sh");
  }
  unlock(): void {
    _fsExt().flockSync(this.#fd, "un");
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
    // A flock(1) helper that waited for this lock may still share the open
    // file description for a moment: closing alone would leave it locked.
    this.unlock();
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

/** The other processes that have any of `files` open (see _runtime.ts). */
export function _openers(
  files: ReadonlySet<string>,
): { pids: Map<string, number[]>; complete: boolean } {
  const pids = new Map<string, number[]>();
  if (process.platform !== "linux") return { pids, complete: false };
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

/** See {@linkcode _isInitialPidNamespace}. */
export function _inInitialPidNamespace(): boolean {
  return _isInitialPidNamespace((path) => fs.readlinkSync(path));
}

/**
 * The command line of process `pid` from `/proc/PID/cmdline`, its
 * arguments joined by spaces; `null` where it cannot be read (not Linux, the
 * process gone, a kernel thread, no permission).
 */
export function _readCommandLine(pid: number): string | null {
  if (process.platform !== "linux") return null;
  try {
    const text = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return text.replace(/\0+$/, "").replaceAll("\0", " ") || null;
  } catch {
    return null;
  }
}

/**
 * The text of `/proc/locks`, or `null` where the system has none; read in
 * one large read (see _runtime.ts for why).
 */
export function _readProcLocks(): string | null {
  if (process.platform !== "linux") return null;
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

/** `fsync` on a directory, so that a rename in it is durable. */
export async function _syncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(dir, fs.constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function _rename(from: string, to: string): void {
  fs.renameSync(from, to);
}

export function _link(from: string, to: string): void {
  fs.linkSync(from, to);
}

/** Reads a whole file; `null` if it does not exist. */
export async function _readFile(path: string): Promise<Uint8Array | null> {
  try {
    return new Uint8Array(await fsp.readFile(path));
  } catch (error) {
    if (_errorCode(error) === "ENOENT") return null;
    throw error;
  }
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
export const _processGroups: boolean = process.platform !== "win32";

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
 * dying; returns the undo.
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

/** Writes text to stdout whole, before returning (see _runtime.ts). */
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

/** `flock(2)` on an inherited descriptor (see _runtime.ts). */
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
  try {
    _fsExt().flockSync(fd, how === "un" ? "un" : wait ? how : `${how}nb`);
    return true;
  } catch (error) {
    const code = _errorCode(error);
    if (code === "EAGAIN" || code === "EWOULDBLOCK") return false;
    throw error;
  }
}

/** The command that runs this program again (see _runtime.ts). */
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
