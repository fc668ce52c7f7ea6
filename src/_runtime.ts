// The only module that touches `Deno.*`. Everything above it is
// runtime-agnostic, so a Node implementation can replace this file alone.

import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

const _signals = constants.signals as Record<string, number>;

/** What lockbox needs to know about a file, from `lstat` or `fstat`. */
export interface _FileStat {
  dev: number;
  ino: number;
  nlink: number;
  size: number;
  mtimeMs: number | null;
  /** Permission bits, or `null` where the platform has none. */
  mode: number | null;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** An open file on which an advisory `flock` can be taken. */
export interface _LockHandle {
  /** `false` for a file opened read-only (one this process may not write). */
  readonly writable: boolean;
  tryLock(exclusive: boolean): boolean;
  /** Blocks one thread of the runtime's pool until the kernel grants it. */
  lock(exclusive: boolean): Promise<void>;
  unlock(): void;
  stat(): _FileStat;
  /** Reads from offset 0 into `buffer`; returns the bytes read. */
  readFromStart(buffer: Uint8Array): number;
  /** Writes all of `data` at offset 0. */
  writeAtStart(data: Uint8Array): void;
  close(): void;
}

/** Turns a `string | URL` into an absolute file system path. */
export function _toPath(path: string | URL): string {
  if (path instanceof URL) return fileURLToPath(path);
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(
      `Cannot use path ${
        JSON.stringify(path)
      }: expected a non-empty string or a file URL`,
    );
  }
  return resolve(path);
}

function _stat(info: Deno.FileInfo): _FileStat {
  return {
    dev: info.dev,
    ino: info.ino ?? 0,
    nlink: info.nlink ?? 1,
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? null,
    mode: info.mode === null ? null : info.mode & 0o7777,
    isFile: info.isFile,
    isDirectory: info.isDirectory,
    isSymlink: info.isSymlink,
  };
}

/**
 * Why a path cannot be opened or replaced as a file by lockbox: `null` for a
 * regular file or nothing at all, else what is there instead.
 */
export function _notRegularFile(
  stat: _FileStat | null,
): "a symbolic link" | "a directory" | "not a regular file" | null {
  if (stat === null || stat.isFile) return null;
  return stat.isSymlink
    ? "a symbolic link"
    : stat.isDirectory
    ? "a directory"
    : "not a regular file";
}

/** `lstat`, with `null` for a path that does not exist. */
export function _lstat(path: string): _FileStat | null {
  try {
    return _stat(Deno.lstatSync(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

class _DenoLockHandle implements _LockHandle {
  #file: Deno.FsFile;
  // Tracked so that a fresh handle reads and writes without a seek.
  #position = 0;
  constructor(file: Deno.FsFile, readonly writable: boolean) {
    this.#file = file;
  }
  #seekToStart(): void {
    if (this.#position !== 0) this.#file.seekSync(0, Deno.SeekMode.Start);
    this.#position = 0;
  }
  tryLock(exclusive: boolean): boolean {
    return this.#file.tryLockSync(exclusive);
  }
  lock(exclusive: boolean): Promise<void> {
    return this.#file.lock(exclusive);
  }
  unlock(): void {
    this.#file.unlockSync();
  }
  stat(): _FileStat {
    return _stat(this.#file.statSync());
  }
  readFromStart(buffer: Uint8Array): number {
    this.#seekToStart();
    let total = 0;
    while (total < buffer.length) {
      const n = this.#file.readSync(buffer.subarray(total));
      if (n === null || n === 0) break;
      total += n;
      this.#position += n;
    }
    return total;
  }
  writeAtStart(data: Uint8Array): void {
    this.#seekToStart();
    let written = 0;
    while (written < data.length) {
      written += this.#file.writeSync(data.subarray(written));
    }
    this.#position = written;
  }
  close(): void {
    this.#file.close();
  }
}

/**
 * Opens an existing file for locking without creating or truncating it: read
 * and write, or read-only where this process may not write it (flock needs
 * only a read).
 */
export function _openExisting(path: string): _LockHandle {
  try {
    return new _DenoLockHandle(
      Deno.openSync(path, { read: true, write: true }),
      true,
    );
  } catch (error) {
    const code = _errorCode(error);
    if (code !== "EACCES" && code !== "EPERM" && code !== "EROFS") throw error;
    return new _DenoLockHandle(Deno.openSync(path, { read: true }), false);
  }
}

/**
 * Creates a new file with `O_CREAT | O_EXCL`, which never follows a symlink
 * and never touches an existing file. Throws `AlreadyExists` if one is there.
 */
export function _createNew(path: string, mode = 0o644): _LockHandle {
  return new _DenoLockHandle(
    Deno.openSync(path, { read: true, write: true, createNew: true, mode }),
    true,
  );
}

/** Opens a file read-only, for readers that must not disturb anyone. */
export function _openReadOnly(path: string): _LockHandle {
  return new _DenoLockHandle(Deno.openSync(path, { read: true }), false);
}

export function _mkdirp(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true });
}

export function _unlink(path: string): void {
  Deno.removeSync(path);
}

/** The error code (`ENOENT`, `EEXIST`, ...) of a runtime error, if any. */
export function _errorCode(error: unknown): string | undefined {
  if (error instanceof Deno.errors.NotFound) return "ENOENT";
  if (error instanceof Deno.errors.AlreadyExists) return "EEXIST";
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

export function _pid(): number {
  return Deno.pid;
}

let _hostnameCache: string | undefined;
/**
 * The host name, or `"unknown"` without `--allow-sys=hostname`: it only labels
 * a holder record, and the lock itself does not depend on it.
 */
export function _hostname(): string {
  if (_hostnameCache === undefined) {
    try {
      _hostnameCache = Deno.hostname();
    } catch {
      _hostnameCache = "unknown";
    }
  }
  return _hostnameCache;
}

/** Whether a process with this pid exists (it may belong to anyone). */
export function _processExists(pid: number): boolean {
  try {
    Deno.kill(pid, 0 as unknown as Deno.Signal);
    return true;
  } catch (error) {
    if (_errorCode(error) === "EPERM") return true;
    if (_errorCode(error) === "ESRCH") return false;
    // Without --allow-run, fall back to /proc where there is one.
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch (statError) {
      if (statError instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }
}

let _procBuffer = new Uint8Array(64 * 1024);
const _procDecoder = new TextDecoder();

/**
 * The text of `/proc/locks`, or `null` where the system has none.
 *
 * `/proc/locks` is a seq_file: each `read()` is consistent on its own, but a
 * lock released between two reads shifts the records, and the next one is
 * skipped. `readTextFileSync` reads it 32 bytes at a time, so a held lock
 * could vanish from the table. One large read returns the first page of
 * records (about 70 locks) in one consistent piece.
 */
export function _readProcLocks(): string | null {
  if (Deno.build.os !== "linux") return null;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync("/proc/locks", { read: true });
  } catch (error) {
    // Deno lets only --allow-all read /proc/locks; without it, probe.
    if (
      error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotCapable
    ) return null;
    throw error;
  }
  try {
    let length = 0;
    while (true) {
      if (length === _procBuffer.length) {
        const grown = new Uint8Array(_procBuffer.length * 2);
        grown.set(_procBuffer);
        _procBuffer = grown;
      }
      const n = file.readSync(_procBuffer.subarray(length));
      if (n === null || n === 0) break;
      length += n;
    }
    return _procDecoder.decode(_procBuffer.subarray(0, length));
  } finally {
    file.close();
  }
}

/** A file opened for writing new content: temp files and appends. */
export interface _WriteHandle {
  write(data: Uint8Array): Promise<void>;
  /** `fsync` (or `fdatasync` with `dataOnly`); a failure is final. */
  sync(dataOnly?: boolean): Promise<void>;
  /**
   * Writes all of `data` on this thread: for short writes, where a trip to
   * the runtime's thread pool costs more than the write.
   */
  writeNow(data: Uint8Array): void;
  /** `fdatasync` on this thread, blocking it until the data is on disk. */
  syncDataNow(): void;
  size(): number;
  /** Reads the byte at `offset` (the handle must be readable). */
  byteAt(offset: number): number;
  /** Reads up to `length` bytes from `offset` (fewer at the end of the file). */
  readAt(offset: number, length: number): Uint8Array;
  /** Cuts the file to `size` bytes. */
  truncate(size: number): void;
  close(): void;
}

class _DenoWriteHandle implements _WriteHandle {
  #file: Deno.FsFile;
  constructor(file: Deno.FsFile) {
    this.#file = file;
  }
  async write(data: Uint8Array): Promise<void> {
    let written = 0;
    while (written < data.length) {
      written += await this.#file.write(data.subarray(written));
    }
  }
  sync(dataOnly = false): Promise<void> {
    return dataOnly ? this.#file.syncData() : this.#file.sync();
  }
  writeNow(data: Uint8Array): void {
    let written = 0;
    while (written < data.length) {
      written += this.#file.writeSync(data.subarray(written));
    }
  }
  syncDataNow(): void {
    this.#file.syncDataSync();
  }
  size(): number {
    return this.#file.statSync().size;
  }
  byteAt(offset: number): number {
    const one = new Uint8Array(1);
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    return this.#file.readSync(one) === 1 ? one[0] : -1;
  }
  readAt(offset: number, length: number): Uint8Array {
    const buffer = new Uint8Array(length);
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    let total = 0;
    while (total < length) {
      const n = this.#file.readSync(buffer.subarray(total));
      if (n === null || n === 0) break;
      total += n;
    }
    return buffer.subarray(0, total);
  }
  truncate(size: number): void {
    this.#file.truncateSync(size);
  }
  close(): void {
    this.#file.close();
  }
}

/** Creates a new file for writing with `O_CREAT | O_EXCL`. */
export function _createForWrite(path: string, mode: number): _WriteHandle {
  return new _DenoWriteHandle(
    Deno.openSync(path, { write: true, createNew: true, mode }),
  );
}

/** Opens (creating if needed) a file for appending; readable too. */
export function _openForAppend(path: string): _WriteHandle {
  return new _DenoWriteHandle(
    Deno.openSync(path, { read: true, append: true, create: true }),
  );
}

/**
 * Opens an existing file for reading and appending; `null` if it does not
 * exist. Never creates one.
 */
export function _openExistingForAppend(path: string): _WriteHandle | null {
  try {
    return new _DenoWriteHandle(
      Deno.openSync(path, { read: true, append: true }),
    );
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** `fsync` on a directory, so that a rename in it is durable. */
export async function _syncDirectory(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

export function _rename(from: string, to: string): void {
  Deno.renameSync(from, to);
}

export function _link(from: string, to: string): void {
  Deno.linkSync(from, to);
}

/** Reads a whole file; `null` if it does not exist. */
export async function _readFile(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Removes a file; `false` if it was not there. */
export function _removeIfExists(path: string): boolean {
  try {
    Deno.removeSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** One directory entry, never followed through a symlink. */
export interface _DirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** Lists a directory's entries. */
export async function _readDir(dir: string): Promise<_DirEntry[]> {
  const entries: _DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  return entries;
}

/** `stat` following symlinks, with `null` for a path (or target) that does not exist. */
export function _statFollow(path: string): _FileStat | null {
  try {
    return _stat(Deno.statSync(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The canonical path, every symlink resolved. */
export function _realPath(path: string): string {
  return Deno.realPathSync(path);
}

/** A child process started by {@linkcode _spawn}. */
export interface _Child {
  readonly pid: number;
  /** Resolves when it exits: its exit code, or the number of the signal that killed it. */
  readonly status: Promise<{ code: number; signal: number | null }>;
  /** Sends it a signal, if it is still running. */
  kill(signal: "SIGINT" | "SIGTERM" | "SIGKILL"): void;
}

/**
 * Starts a command with this process's stdin, stdout and stderr. Throws
 * (code `ENOENT` or `EACCES`) if it cannot be started.
 */
export function _spawn(
  command: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): _Child {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return {
    pid: child.pid,
    status: child.status.then((s) => ({
      code: s.code,
      signal: s.signal === null ? null : _signals[s.signal] ?? null,
    })),
    kill(signal) {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
    },
  };
}

/** Calls `fn` on SIGINT or SIGTERM instead of dying; returns the undo. */
export function _onTerminationSignals(
  fn: (signal: "SIGINT" | "SIGTERM") => void,
): () => void {
  const int = () => fn("SIGINT");
  const term = () => fn("SIGTERM");
  Deno.addSignalListener("SIGINT", int);
  Deno.addSignalListener("SIGTERM", term);
  return () => {
    Deno.removeSignalListener("SIGINT", int);
    Deno.removeSignalListener("SIGTERM", term);
  };
}

/** Whether a standard stream is a terminal. */
export function _isTerminal(stream: "stdin" | "stdout" | "stderr"): boolean {
  return Deno[stream].isTerminal();
}

/** The width of the terminal on stderr, or 80. */
export function _columns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/** An environment variable, or `undefined`. */
export function _env(name: string): string | undefined {
  return Deno.env.get(name);
}

const _out = new TextEncoder();

/** Writes text to stderr as it is, with no newline added. */
export function _writeStderr(text: string): void {
  const bytes = _out.encode(text);
  for (let n = 0; n < bytes.length;) {
    n += Deno.stderr.writeSync(bytes.subarray(n));
  }
}

/** Reads one line from stdin, or `null` at its end. */
export async function _readStdinLine(): Promise<string | null> {
  const buffer = new Uint8Array(1);
  const bytes: number[] = [];
  while (true) {
    const n = await Deno.stdin.read(buffer);
    if (n === null) {
      return bytes.length
        ? new TextDecoder().decode(new Uint8Array(bytes))
        : null;
    }
    if (buffer[0] === 0x0a) {
      return new TextDecoder().decode(new Uint8Array(bytes));
    }
    bytes.push(buffer[0]);
  }
}

/** Makes a private temporary directory. */
export async function _makeTempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/** Removes a directory and everything in it. */
export async function _removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true });
}

/** Ends the process. */
export function _exit(code: number): never {
  Deno.exit(code);
}

/** The command-line arguments. */
export function _args(): string[] {
  return [...Deno.args];
}
