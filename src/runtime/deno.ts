// The runtime layer on Deno, the only module that touches `Deno.*`.
// node.ts has the same exports for Node (the shapes are in types.ts), and
// runtime/mod.ts picks one of the two when it loads, so everything above
// this folder is runtime-agnostic.

import {
  _checkPathArgument,
  _groupRunsByProc,
  _isInitialPidNamespace,
  _plainAbsolutePosix,
  _ppidOf,
  _readWhole,
  _tcpInodes,
} from "./types.ts";
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
import { _cLibrary, _onWindows, _procAllowed } from "./_platform.ts";
import { _isExecutableFile, _spawnByFfi, _spawnsByFfi } from "./_deno_spawn.ts";

/**
 * One of Node's built-in modules, loaded on first use. Loading any of them
 * (an `import` of one, even a look at `globalThis.process`) starts Deno's
 * Node compatibility layer, some 20 to 40 ms of CPU that `lockbox run` and
 * most library calls never need (ARCHITECTURE.md, "Layers").
 */
function _builtin<T>(name: string): T {
  return (globalThis as unknown as {
    process: { getBuiltinModule(name: string): T };
  }).process.getBuiltinModule(name);
}

/** The number of the signal Deno names `name` (`"SIGTERM"`: 15 on Linux). */
function _signalNumber(name: string): number | null {
  const { constants } = _builtin<typeof import("node:os")>("node:os");
  return (constants.signals as Record<string, number>)[name] ?? null;
}

/** Turns a `string | URL` into an absolute file system path. */
export function _toPath(path: string | URL): string {
  _checkPathArgument(path);
  if (path instanceof URL) {
    return _builtin<typeof import("node:url")>("node:url").fileURLToPath(path);
  }
  if (!_onWindows) {
    // Already absolute and plain (the usual case), or plain once the
    // working directory is put before it: what node:path would make of it.
    const plain = _plainAbsolutePosix(path) ??
      (path.startsWith("/") ? null : _plainAbsolutePosix(
        `${Deno.cwd().replace(/\/$/, "")}/${path}`,
      ));
    if (plain !== null) return plain;
  }
  return _builtin<typeof import("node:path")>("node:path").resolve(path);
}

/** The directory part of `path`, as node:path's `dirname`. */
export function _dirname(path: string): string {
  return _builtin<typeof import("node:path")>("node:path").dirname(path);
}

/** The last part of `path`, as node:path's `basename`. */
export function _basename(path: string): string {
  return _builtin<typeof import("node:path")>("node:path").basename(path);
}

/** `parts` joined into one path, as node:path's `join`. */
export function _join(...parts: string[]): string {
  return _builtin<typeof import("node:path")>("node:path").join(...parts);
}

/** A new value that follows an async call chain (node:async_hooks'). */
export function _asyncStore<T>(): _AsyncStore<T> {
  const { AsyncLocalStorage } = _builtin<typeof import("node:async_hooks")>(
    "node:async_hooks",
  );
  return new AsyncLocalStorage<T>();
}

/**
 * Whether `/proc` may be read: Linux, and not turned off by
 * `LOCKBOX_NO_PROC=1` (read only with permission to, never prompting).
 */
function _proc(): boolean {
  return _procAllowed((name) =>
    Deno.permissions.querySync({ name: "env", variable: name }).state ===
        "granted"
      ? Deno.env.get(name)
      : undefined
  );
}

/** Windows' "not locked" (158) and, from Wine, "lock violation" (33). */
function _isUnlockOfUnlocked(error: unknown): boolean {
  return /\(os error (158|33)\)/.test((error as Error)?.message ?? "");
}

function _stat(info: Deno.FileInfo): _FileStat {
  return {
    dev: info.dev,
    ino: info.ino ?? 0,
    nlink: info.nlink ?? 1,
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? null,
    mode: info.mode === null ? null : info.mode & 0o7777,
    uid: info.uid,
    gid: info.gid,
    isFile: info.isFile,
    isDirectory: info.isDirectory,
    isSymlink: info.isSymlink,
  };
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

/**
 * The descriptor number of this process's open file `stat` describes, which
 * Deno does not expose: found in /proc (or /dev/fd). With `locked`, the one whose open
 * file description holds a flock (the kernel lists it under that
 * descriptor), which tells a lock from other opens of the same file.
 */
function _descriptorOf(stat: _FileStat, locked = false): number {
  const dir = _descriptorDirectory();
  const found: number[] = [];
  const entries = Deno.readDirSync(dir);
  // The listing's own descriptor is in it, closed by now: its stat would
  // throw, and a process's first exception costs Deno about 1 ms. Opening
  // the directory again takes the lowest free number, which is that one
  // (were it taken in between by another thread, the stat throws as before).
  let placeholder: Deno.FsFile | undefined;
  try {
    placeholder = Deno.openSync(dir);
  } catch {
    // Then the stat throws.
  }
  for (const entry of entries) {
    const fd = Number(entry.name);
    try {
      const target = Deno.statSync(`${dir}/${fd}`);
      if (target.dev !== stat.dev || target.ino !== stat.ino) continue;
      // /dev/fd (macOS) cannot tell a locked description from another.
      if (
        locked && dir === "/proc/self/fd" &&
        !/^lock:\s.*FLOCK/m.test(
          Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`),
        )
      ) continue;
    } catch {
      continue; // closed while we looked, or not a file
    }
    found.push(fd);
  }
  placeholder?.close();
  if (found.length !== 1) {
    throw new Error(
      `Cannot find the descriptor of inode ${stat.ino}: ${found.length} open descriptors match`,
    );
  }
  return found[0];
}

/**
 * Where this process's descriptors are listed: `/proc/self/fd` (Linux), or
 * else `/dev/fd` (macOS, FreeBSD; on Linux with `LOCKBOX_NO_PROC=1` a link
 * into /proc, which runs the macOS path).
 *
 * @throws {Error} With `code` `"ENOSYS"` where there is neither.
 */
function _descriptorDirectory(): string {
  if (_proc()) return "/proc/self/fd";
  if (!_onWindows) {
    try {
      if (Deno.statSync("/dev/fd").isDirectory) return "/dev/fd";
    } catch {
      // Not there: below.
    }
  }
  throw Object.assign(
    new Error(
      _onWindows
        ? "not on Windows: Deno cannot pass an open file on to a command there"
        : "without /proc or /dev/fd, Deno cannot find the descriptor of an open file",
    ),
    { code: "ENOSYS" },
  );
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
  lockSync(exclusive: boolean): void {
    this.#file.lockSync(exclusive);
  }
  unlock(): void {
    try {
      this.#file.unlockSync();
    } catch (error) {
      // Deno unlocks twice on Windows; the second answers "not locked"
      // (158), or under Wine "lock violation" (33): the lock is released.
      if (!_onWindows || !_isUnlockOfUnlocked(error)) throw error;
    }
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
  truncate(size: number): void {
    this.#file.truncateSync(size);
  }
  close(): void {
    this.#file.close();
  }
  unlockAndClose(): void {
    // Windows releases a closed handle's locks only "depending on available
    // system resources" (LockFileEx's documentation): unlock first.
    if (_onWindows) {
      try {
        this.unlock();
      } catch {
        // Closing releases it in the end.
      }
    }
    // Deno opens every file close-on-exec and never duplicates it, so this
    // descriptor is the open file description's only one (a lock shared with
    // a child is closed without unlocking, by FileLock): closing it is what
    // releases the flock.
    this.#file.close();
  }
  /**
   * The descriptor number, which Deno does not expose (see `_descriptorOf`);
   * found once, as it stays the same while the file is open.
   */
  descriptor(): number {
    return this.#descriptor ??= _descriptorOf(this.stat(), true);
  }
  #descriptor: number | undefined;
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
 * The process umask applies to `mode`, as for `touch`.
 */
export function _createNew(path: string, mode = 0o666): _LockHandle {
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
    // Windows answers a pid that is not there with NotFound.
    if (_onWindows && _errorCode(error) === "ENOENT") return false;
    // Without --allow-run, fall back to /proc where there is one.
    if (!_proc()) throw error;
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch (statError) {
      if (statError instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }
}

/** See {@linkcode _isInitialPidNamespace}. */
export function _inInitialPidNamespace(): boolean {
  if (!_proc()) return false;
  return _isInitialPidNamespace((path) => Deno.readLinkSync(path));
}

/**
 * The command line of process `pid` from `/proc/PID/cmdline`, its
 * arguments joined by spaces; `null` where it cannot be read (not Linux, the
 * process gone, a kernel thread, no permission).
 */
export function _readCommandLine(pid: number): string | null {
  if (!_proc()) return null;
  try {
    const text = new TextDecoder().decode(
      Deno.readFileSync(`/proc/${pid}/cmdline`),
    );
    return text.replace(/\0+$/, "").replaceAll("\0", " ") || null;
  } catch {
    return null;
  }
}

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
  if (!_proc()) return null;
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
    return _readWhole((into) => file.readSync(into) ?? 0);
  } finally {
    file.close();
  }
}

class _DenoWriteHandle implements _WriteHandle {
  #file: Deno.FsFile;
  /** Where the next read starts, when known (a fresh file starts at 0). */
  #readPosition: number | null = 0;
  #path: string;
  constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.#path = path;
  }
  matchOwnership(like: _FileStat): void {
    const own = _stat(this.#file.statSync());
    const owner = like.uid !== null && like.gid !== null &&
      (own.uid !== like.uid || own.gid !== like.gid);
    const mode = like.mode !== null && own.mode !== like.mode;
    if (!owner && !mode) return;
    // Deno has no fchown or fchmod; /proc/self/fd/N leads to the open file
    // itself, not to whatever is at its path now. Without /proc, the path
    // it was opened at, while that is still this file.
    const path = _proc() ? `/proc/self/fd/${_descriptorOf(own)}` : this.#path;
    if (!_proc()) {
      const there = _lstat(path);
      if (there?.dev !== own.dev || there?.ino !== own.ino) {
        throw new Error(
          `Cannot set the owner and mode of '${path}': another file is there now`,
        );
      }
    }
    if (owner) Deno.chownSync(path, like.uid, like.gid);
    // After chown, which clears set-id bits.
    if (like.mode !== null) Deno.chmodSync(path, like.mode);
  }
  async write(data: Uint8Array): Promise<void> {
    this.#readPosition = null;
    let written = 0;
    while (written < data.length) {
      written += await this.#file.write(data.subarray(written));
    }
  }
  sync(dataOnly = false): Promise<void> {
    return dataOnly ? this.#file.syncData() : this.#file.sync();
  }
  writeNow(data: Uint8Array): void {
    this.#readPosition = null;
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
  stat(): _FileStat {
    return _stat(this.#file.statSync());
  }
  byteAt(offset: number): number {
    const one = new Uint8Array(1);
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    const n = this.#file.readSync(one);
    this.#readPosition = offset + (n ?? 0);
    return n === 1 ? one[0] : -1;
  }
  readAt(offset: number, length: number): Uint8Array {
    const buffer = new Uint8Array(length);
    if (length === 0) return buffer;
    // Deno has no pread: seek, unless the file is already there.
    if (this.#readPosition !== offset) {
      this.#file.seekSync(offset, Deno.SeekMode.Start);
    }
    let total = 0;
    while (total < length) {
      const n = this.#file.readSync(buffer.subarray(total));
      if (n === null || n === 0) break;
      total += n;
    }
    this.#readPosition = offset + total;
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
    path,
  );
}

/**
 * Opens (creating if needed, mode 0666 less the umask) a file for
 * appending; readable too. An existing file is opened without `O_CREAT`,
 * which `fs.protected_regular` refuses for another user's file in a sticky
 * world-writable directory such as /tmp.
 */
export function _openForAppend(path: string): _WriteHandle {
  while (true) {
    const existing = _openExistingForAppend(path);
    if (existing !== null) return existing;
    try {
      return new _DenoWriteHandle(
        Deno.openSync(path, {
          read: true,
          append: true,
          createNew: true,
          mode: 0o666,
        }),
        path,
      );
    } catch (error) {
      // Made by someone else since: open theirs.
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
}

/**
 * Opens an existing file for reading and appending; `null` if it does not
 * exist. Never creates one.
 */
export function _openExistingForAppend(path: string): _WriteHandle | null {
  try {
    return new _DenoWriteHandle(
      Deno.openSync(path, { read: true, append: true }),
      path,
    );
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
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
    return new _DenoWriteHandle(Deno.openSync(path, { read: true }), path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
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

/** Lists a directory's entries. */
export async function _readDir(dir: string): Promise<_DirEntry[]> {
  const entries: _DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  return entries;
}

/**
 * The other processes that have any of the files `files` (keys
 * `"<dev>:<ino>"`) open, from one pass over `/proc/PID/fd`: the pids per
 * key. `complete` is `false` where some process's descriptors cannot be read
 * (another user's, without root) or there is no `/proc`.
 */
export function _openers(
  files: ReadonlySet<string>,
): { pids: Map<string, number[]>; complete: boolean } {
  const pids = new Map<string, number[]>();
  if (!_proc()) return { pids, complete: false };
  let complete = true;
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
        let target: Deno.FileInfo;
        try {
          target = Deno.statSync(`/proc/${pid}/fd/${fd.name}`);
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
      if (!(error instanceof Deno.errors.NotFound)) complete = false;
    }
  }
  return { pids, complete };
}

/**
 * The files process `pid` has open, from `/proc/PID/fd`: each one's path (as
 * the kernel names it) and device and inode; `null` where they cannot be
 * read (not Linux, the process gone, another user's without root).
 */
export function _openFilesOf(
  pid: number,
): { path: string; dev: number; ino: number }[] | null {
  if (Deno.build.os !== "linux") return null;
  const files: { path: string; dev: number; ino: number }[] = [];
  try {
    for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const link = `/proc/${pid}/fd/${fd.name}`;
        const target = Deno.statSync(link);
        if (!target.isFile) continue;
        files.push({
          path: Deno.readLinkSync(link),
          dev: target.dev,
          ino: target.ino!,
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

/** The parent of process `pid` (`/proc/PID/stat`), or `null` if unknown. */
export function _parentPid(pid: number): number | null {
  if (Deno.build.os !== "linux") return null;
  try {
    return _ppidOf(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return null;
  }
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

/**
 * Starts a command with this process's stdin, stdout and stderr. Rejects
 * (code `ENOENT` or `EACCES`) if it cannot be started.
 */
export function _spawn(
  command: string,
  args: string[],
  options: _SpawnOptions = {},
): Promise<_Child> {
  if (options.descriptor3 !== undefined) {
    return _spawnWithDescriptor3(command, args, options);
  }
  return Promise.resolve().then(() => _spawnNow(command, args, options));
}

/**
 * Starts a command with `options.descriptor3` as its descriptor 3, through
 * node:child_process (Deno.Command passes descriptors at their own numbers
 * only, and a shell cannot close one above 9). Loaded on first use.
 */
async function _spawnWithDescriptor3(
  command: string,
  args: string[],
  options: _SpawnOptions,
): Promise<_Child> {
  const { spawn } = await import("node:child_process");
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["inherit", "inherit", "inherit", options.descriptor3!],
      env: options.env ? { ...Deno.env.toObject(), ...options.env } : undefined,
      detached: options.newGroup === true && _processGroups,
    });
    const status = new Promise<{ code: number; signal: number | null }>(
      (done) =>
        child.on("exit", (code, signal) => {
          const number = signal === null ? null : _signalNumber(signal);
          done({ code: code ?? 128 + (number ?? 0), signal: number });
        }),
    );
    child.once("error", reject);
    child.once("spawn", () => {
      child.off("error", reject);
      resolve({
        pid: child.pid!,
        status,
        kill(signal) {
          child.kill(signal);
        },
        send: () => Promise.reject(new Error("no input pipe")),
        endInput: () => Promise.resolve(),
        inputDescriptor: () => null,
      });
    });
  });
}

/** What `/proc/self/fd/N` links to, for each descriptor `N`; `null` without /proc. */
function _ownDescriptors(): Map<number, string> | null {
  if (!_proc()) return null;
  const links = new Map<number, string>();
  try {
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      try {
        links.set(
          Number(entry.name),
          Deno.readLinkSync(`/proc/self/fd/${entry.name}`),
        );
      } catch {
        // Closed meanwhile (the listing's own descriptor, for one).
      }
    }
  } catch {
    return null;
  }
  return links;
}

/** The one descriptor of this process that links to `target`, or `null`. */
function _descriptorLinkedTo(target: string): number | null {
  const found = [...(_ownDescriptors() ?? [])].filter(([, link]) =>
    link === target
  );
  return found.length === 1 ? found[0][0] : null;
}

/**
 * Runs `fn` with the C library open, through FFI (`--allow-ffi`), for what
 * Deno has no API for; closed again after, so no test sees it leak.
 */
function _withCLibrary<T>(
  fn: (c: ReturnType<typeof _openLibc>["symbols"]) => T,
): T {
  const library = _openLibc();
  try {
    return fn(library.symbols);
  } finally {
    library.close();
  }
}

function _openLibc() {
  const c = _cLibrary();
  return Deno.dlopen(c.path, {
    fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
    flock: { parameters: ["i32", "i32"], result: "i32" },
    errno: { name: c.errnoFunction, parameters: [], result: "pointer" },
  });
}

/**
 * `flock(2)` on a descriptor this process inherited (Deno has no API for
 * one it did not open), through the C library (`--allow-ffi`). Without
 * `wait` it tries once and returns `false` if the lock is held elsewhere;
 * with it, it blocks this thread until the kernel grants it.
 */
export function _flockDescriptor(
  fd: number,
  how: "sh" | "ex" | "un",
  wait: boolean,
): boolean {
  const c = _cLibrary();
  return _withCLibrary(({ fcntl, flock, errno: errnoOf }) => {
    // The runtime opens its own descriptors close-on-exec; one that came
    // from the calling shell is not. So a number that is open here but
    // close-on-exec is the runtime's, and not open as far as the shell knows.
    const flags = fcntl(fd, c.F_GETFD, 0);
    if (flags < 0 || (flags & c.FD_CLOEXEC) !== 0) {
      throw Object.assign(new Error(`descriptor ${fd} is not open`), {
        code: "EBADF",
      });
    }
    const op =
      (how === "sh" ? c.LOCK_SH : how === "ex" ? c.LOCK_EX : c.LOCK_UN) |
      (wait ? 0 : c.LOCK_NB);
    while (true) {
      if (flock(fd, op) === 0) return true;
      const errno = new Deno.UnsafePointerView(errnoOf()!).getInt32();
      if (errno === c.EINTR) continue;
      if (errno === c.EWOULDBLOCK) return false;
      throw Object.assign(
        new Error(
          errno === c.EBADF
            ? `descriptor ${fd} is not open`
            : `flock(${fd}) failed with errno ${errno}`,
        ),
        { code: errno === c.EBADF ? "EBADF" : `ERRNO${errno}` },
      );
    }
  });
}

/**
 * The command that runs this program again: for a helper process that
 * must be this same CLI. The built CLI (dist/deno, JavaScript) runs as its
 * `#!` line says, without a configuration (the sources need their
 * deno.json, which Deno finds beside them, for commander); both with their
 * dynamic imports loaded lazily.
 */
export function _selfCommand(): string[] {
  if ((Deno.build as { standalone?: boolean }).standalone) {
    return [Deno.execPath()];
  }
  return [
    Deno.execPath(),
    "run",
    "--allow-all",
    "--quiet",
    "--unstable-lazy-dynamic-imports",
    ...Deno.mainModule.endsWith(".js") ? ["--no-config"] : [],
    Deno.mainModule,
  ];
}

/**
 * Runs `fn` with `fd` inheritable by child processes: Deno opens every file
 * close-on-exec, and a child keeps every descriptor that is not.
 */
function _withInheritable<T>(fd: number, fn: () => T): T {
  const c = _cLibrary();
  return _withCLibrary(({ fcntl }) => {
    const flags = fcntl(fd, c.F_GETFD, 0);
    if (flags < 0 || fcntl(fd, c.F_SETFD, flags & ~c.FD_CLOEXEC) < 0) {
      throw new Error(`Cannot pass descriptor ${fd} on to a command`);
    }
    try {
      return fn();
    } finally {
      fcntl(fd, c.F_SETFD, flags);
    }
  });
}

function _spawnNow(
  command: string,
  args: string[],
  options: _SpawnOptions,
): _Child {
  const lock = options.passLock as _DenoLockHandle | undefined;
  const passed = [
    ...(lock ? [lock.descriptor()] : []),
    ...(options.passDescriptor === undefined ? [] : [options.passDescriptor]),
    ...options.passDescriptors ?? [],
  ];
  const inheriting = <T>(start: () => T): T =>
    passed.reduceRight<() => T>(
      (next, fd) => () => _withInheritable(fd, next),
      start,
    )();
  const started = _spawnsByFfi(options)
    ? _spawnByFfi(command, args, options, passed)
    : null;
  if (started !== null) return started;
  // Deno runs a relative path such as ./job.sh by its absolute path, so a
  // script would see an absolute $0 (breaking flock(1)'s FLOCKER idiom,
  // which compares $0). A shell's exec keeps the path as given.
  const relative = command.includes("/") && !command.startsWith("/") &&
    _isExecutableFile(command);
  const start = () =>
    new Deno.Command(relative ? "/bin/sh" : command, {
      args: relative ? ["-c", 'exec "$0" "$@"', command, ...args] : args,
      env: options.env,
      stdin: options.input ? "piped" : "inherit",
      stdout: "inherit",
      stderr: "inherit",
      detached: options.newGroup === true && _processGroups,
    }).spawn();
  const child = inheriting(start);
  const input = options.input ? child.stdin.getWriter() : null;
  const encoder = new TextEncoder();
  return {
    pid: child.pid,
    status: child.status.then((s) => ({
      code: s.code,
      signal: s.signal === null ? null : _signalNumber(s.signal),
    })),
    kill(signal) {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
    },
    send: (text) => input!.write(encoder.encode(text)),
    endInput: () => input!.close(),
    inputDescriptor: () => {
      if (!_proc()) return null;
      // Its stdin and this process's end of the pipe link to one pipe.
      try {
        return _descriptorLinkedTo(
          Deno.readLinkSync(`/proc/${child.pid}/fd/0`),
        );
      } catch {
        return null;
      }
    },
  };
}

/** Whether this system has process groups (every one but Windows). */
export const _processGroups: boolean = !_onWindows;

/** Sends `signal` to every process of group `pgid`; `false` if none is left. */
export function _killGroup(pgid: number, signal: _StopSignal): boolean {
  try {
    Deno.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process of group `pgid` still runs (zombies do not count). */
export function _groupAlive(pgid: number): boolean {
  try {
    Deno.kill(-pgid, 0 as unknown as Deno.Signal);
  } catch (error) {
    if (_errorCode(error) !== "EPERM") return false;
  }
  return _groupRunsByProc(pgid, () => {
    if (!_proc()) return null;
    try {
      return [...Deno.readDirSync("/proc")].map((entry) => entry.name);
    } catch {
      return null;
    }
  }, _readOrNull) ?? true;
}

/** This process's socket descriptors and what each links to (`/proc`). */
export function _socketsNow(): Map<number, string> | null {
  const links = _ownDescriptors();
  if (links === null) return null;
  for (const [fd, link] of links) {
    if (!link.startsWith("socket:")) links.delete(fd);
  }
  return links;
}

/**
 * The descriptor of a node:net socket in this process, or `null` when it
 * cannot be told apart. Deno does not expose it: a TCP socket is found by
 * its ports in `/proc/net/tcp*`; another (a Unix socket) as the one socket
 * that is new since `before` (`_socketsNow()` just before it connected).
 */
export function _socketDescriptor(
  socket: unknown,
  before?: Map<number, string> | null,
): number | null {
  const { localPort, remotePort } = socket as {
    localPort?: unknown;
    remotePort?: unknown;
  };
  if (typeof localPort !== "number" || typeof remotePort !== "number") {
    if (!before) return null;
    const added = [..._socketsNow() ?? []].filter(([fd, link]) =>
      before.get(fd) !== link
    );
    return added.length === 1 ? added[0][0] : null;
  }
  if (!_proc()) return null;
  const read = (path: string) => _readOrNull(path) ?? "";
  const inodes = _tcpInodes(
    [read("/proc/net/tcp"), read("/proc/net/tcp6")],
    localPort,
    remotePort,
  );
  const found = [...(_ownDescriptors() ?? [])].filter(([, link]) =>
    inodes.has(/^socket:\[(\d+)\]$/.exec(link)?.[1] ?? "")
  );
  return found.length === 1 ? found[0][0] : null;
}

/**
 * Calls `fn` on SIGINT or SIGTERM (and SIGHUP with `hangup`) instead of
 * dying; returns the undo. A signal this process was started with ignored
 * (`nohup`'s SIGHUP, a background job's SIGINT; Linux, from /proc) stays
 * ignored by this process, as by `flock(1)`: `fn` never hears of it. (The
 * commands it starts then get it at its default: Deno catches it.)
 */
export function _onTerminationSignals(
  fn: (signal: "SIGINT" | "SIGTERM" | "SIGHUP") => void,
  hangup = false,
): () => void {
  const ignored = _ignoredAtStart ??= _ignoredTerminationSignals(
    _proc() ? _readOrNull("/proc/self/status") ?? "" : "",
  );
  const signals: ("SIGINT" | "SIGTERM" | "SIGHUP")[] = hangup
    ? ["SIGINT", "SIGTERM", "SIGHUP"]
    : ["SIGINT", "SIGTERM"];
  // Deno's first listener, for any signal, replaces the disposition of all
  // three: one that was ignored gets a listener that ignores it.
  const listeners = signals.map((signal) =>
    [signal, ignored.has(signal) ? () => {} : () => fn(signal)] as const
  );
  for (const [signal, listener] of listeners) {
    Deno.addSignalListener(signal, listener);
  }
  return () => {
    for (const [signal, listener] of listeners) {
      Deno.removeSignalListener(signal, listener);
    }
  };
}

/**
 * The termination signals this process was started with ignored, read
 * before lockbox listens for any (a listener replaces the ignoring).
 */
let _ignoredAtStart: Set<string> | undefined;

/**
 * The termination signals a `/proc/PID/status` text says are ignored (its
 * `SigIgn` mask, bit N-1 for signal N). Empty if the text has no mask.
 */
function _ignoredTerminationSignals(status: string): Set<string> {
  const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status);
  const bits = mask === null ? 0n : BigInt(`0x${mask[1]}`);
  const numbers = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  return new Set(
    Object.entries(numbers)
      .filter(([, number]) => ((bits >> BigInt(number - 1)) & 1n) === 1n)
      .map(([name]) => name),
  );
}

/** A file's text, or `null` where it cannot be read (gone, not allowed). */
function _readOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Whether a standard stream is a terminal. */
export function _isTerminal(stream: "stdin" | "stdout" | "stderr"): boolean {
  return Deno[stream].isTerminal();
}

/** The width of the terminal a standard stream is on, or 80. */
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

/**
 * Writes text to stdout whole, before returning; a failed write (a full
 * disk, a closed pipe: code `EPIPE`) throws.
 */
export function _writeStdout(text: string): void {
  const bytes = _out.encode(text);
  try {
    for (let n = 0; n < bytes.length;) {
      n += Deno.stdout.writeSync(bytes.subarray(n));
    }
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) {
      throw Object.assign(new Error("stdout was closed"), { code: "EPIPE" });
    }
    throw error;
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

/** Lets the process end while `timer` is pending. */
export function _unrefTimer(timer: unknown): void {
  Deno.unrefTimer(timer as number);
}

/** Ends the process. */
export function _exit(code: number): never {
  Deno.exit(code);
}

/** The command-line arguments. */
export function _args(): string[] {
  return [...Deno.args];
}

/** Whether the module with this `import.meta` is the program's entry point. */
export function _isMain(meta: ImportMeta): boolean {
  return meta.main;
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
  const watcher = Deno.watchFs(dir, { recursive: false });
  (async () => {
    try {
      for await (const event of watcher) {
        for (const path of event.paths) {
          onChange(path.slice(path.lastIndexOf("/") + 1));
        }
      }
    } catch {
      onChange(null); // the watch ended on its own: look again
    }
  })();
  return () => {
    try {
      watcher.close();
    } catch {
      // Already closed.
    }
  };
}
