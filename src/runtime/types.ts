// What every runtime layer provides (Deno: deno.ts; Node: node.ts): the
// shapes, and the helpers that need no runtime.

/** What lockbox needs to know about a file, from `lstat` or `fstat`. */
export interface _FileStat {
  dev: number;
  ino: number;
  nlink: number;
  size: number;
  mtimeMs: number | null;
  /** Permission bits, or `null` where the platform has none. */
  mode: number | null;
  /** Owner and group, or `null` where the platform has none. */
  uid: number | null;
  gid: number | null;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** An open file on which an advisory `flock` can be taken. */
export interface _LockHandle {
  /** `false` for a file opened read-only (one this process may not write). */
  readonly writable: boolean;
  tryLock(exclusive: boolean): boolean;
  /**
   * Waits until the kernel grants it, off the main thread (Deno: a thread of
   * its blocking pool; Node: a waiting thread of node.ts's own, or polls).
   */
  lock(exclusive: boolean): Promise<void>;
  /** Blocks the calling thread until the kernel grants it. */
  lockSync(exclusive: boolean): void;
  unlock(): void;
  stat(): _FileStat;
  /** Reads from offset 0 into `buffer`; returns the bytes read. */
  readFromStart(buffer: Uint8Array): number;
  /** Writes all of `data` at offset 0. */
  writeAtStart(data: Uint8Array): void;
  /** Cuts the file to `size` bytes. */
  truncate(size: number): void;
  /** Its descriptor number in this process. */
  descriptor(): number;
  close(): void;
  /**
   * Releases the lock and closes the file, in one system call where closing
   * the only descriptor of the open file description releases it.
   */
  unlockAndClose(): void;
}

/** How {@linkcode _spawn} starts a command. */
export interface _SpawnOptions {
  env?: Record<string, string>;
  /**
   * An open lock file the command inherits (the same open file
   * description, as flock(1) passes it), so that the lock stays held while
   * the command runs even if this process dies.
   */
  passLock?: _LockHandle;
  /**
   * A descriptor this process inherited, passed on at the same number (a
   * helper that must lock the same open file description).
   */
  passDescriptor?: number;
  /** Descriptors of this process passed on at their own numbers. */
  passDescriptors?: number[];
  /**
   * Start it in a process group (and session) of its own, whose id is its
   * pid, so that a signal can reach everything it starts. Ignored where
   * there are no process groups (Windows).
   */
  newGroup?: boolean;
  /** Give it a pipe from this process as stdin (`_Child.send`). */
  input?: boolean;
  /** A descriptor of this process that it gets as its descriptor 3. */
  descriptor3?: number;
}

/**
 * A value that follows an async call chain (node:async_hooks'
 * `AsyncLocalStorage`): `run` sets it for `fn` and everything `fn` starts.
 */
export interface _AsyncStore<T> {
  run<R>(store: T, fn: () => R): R;
  getStore(): T | undefined;
}

/**
 * Checks what a runtime's `_toPath` gets: a file URL or a non-empty
 * string (each runtime then makes it an absolute path its own way).
 */
export function _checkPathArgument(path: unknown): asserts path is
  | string
  | URL {
  if (path instanceof URL) return;
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(
      `Cannot use path ${
        JSON.stringify(path)
      }: expected a non-empty string or a file URL`,
    );
  }
}

/**
 * `path` itself when it is already what `resolve` from node:path makes of it
 * on a POSIX system (absolute, no empty, `.` or `..` segment, no trailing
 * slash), else `null`.
 */
export function _plainAbsolutePosix(path: string): string | null {
  if (path === "/") return path;
  if (!path.startsWith("/") || path.endsWith("/")) return null;
  for (const part of path.slice(1).split("/")) {
    if (part === "" || part === "." || part === "..") return null;
  }
  return path;
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

/**
 * A file opened for writing new content (temp files and appends), or for
 * reading only (`_openExistingForReading`: then its writes fail).
 */
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
  /** `fstat` of the open file. */
  stat(): _FileStat;
  /** Reads the byte at `offset` (the handle must be readable). */
  byteAt(offset: number): number;
  /** Reads up to `length` bytes from `offset` (fewer at the end of the file). */
  readAt(offset: number, length: number): Uint8Array;
  /** Cuts the file to `size` bytes. */
  truncate(size: number): void;
  /**
   * Gives the file exactly this mode, owner and group (where they differ),
   * through the open file, never a path that could be swapped.
   */
  matchOwnership(like: _FileStat): void;
  close(): void;
}

/** One directory entry, never followed through a symlink. */
export interface _DirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** A child process started by {@linkcode _spawn}. */
export interface _Child {
  readonly pid: number;
  /** Resolves when it exits: its exit code, or the number of the signal that killed it. */
  readonly status: Promise<{ code: number; signal: number | null }>;
  /** Sends it a signal, if it is still running. */
  kill(signal: _StopSignal): void;
  /** Writes to its stdin (started with `input`). */
  send(text: string): Promise<void>;
  /** Closes its stdin (started with `input`). */
  endInput(): Promise<void>;
  /**
   * The descriptor in this process of the pipe to its stdin (started with
   * `input`), or `null` when it cannot be found.
   */
  inputDescriptor(): number | null;
}

/** The signals lockbox sends to stop a command. */
export type _StopSignal = "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGKILL";

/**
 * Whether a process of group `pgid` still runs, from `/proc/<pid>/stat`
 * (a zombie does not: it has exited, and may wait long to be reaped);
 * `null` where there is no `/proc`. `list` gives the entries of `/proc`,
 * `read` one file's text (`null` when it is gone).
 */
export function _groupRunsByProc(
  pgid: number,
  list: () => string[] | null,
  read: (path: string) => string | null,
): boolean | null {
  const names = list();
  if (names === null) return null;
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const stat = read(`/proc/${name}/stat`);
    if (stat === null) continue;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
  }
  return false;
}

/** The parent pid in the text of `/proc/PID/stat`, or `null`. */
export function _ppidOf(stat: string): number | null {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return Number.isInteger(ppid) && ppid > 0 ? ppid : null;
}

/**
 * The inodes of the TCP sockets from `localPort` to `remotePort`, from the
 * text of `/proc/net/tcp` and `/proc/net/tcp6`.
 */
export function _tcpInodes(
  tables: string[],
  localPort: number,
  remotePort: number,
): Set<string> {
  const inodes = new Set<string>();
  for (const table of tables) {
    for (const line of table.split("\n").slice(1)) {
      // sl local_address rem_address st queues tr retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const port = (address: string) =>
        parseInt(address.slice(address.lastIndexOf(":") + 1), 16);
      if (port(fields[1]) === localPort && port(fields[2]) === remotePort) {
        inodes.add(fields[9]);
      }
    }
  }
  return inodes;
}

/**
 * What `/proc/self/ns/pid` links to in the initial PID namespace: its inode
 * number is fixed (PROC_PID_INIT_INO, 0xEFFFFFFC) since Linux 3.8.
 */
export const _INITIAL_PID_NAMESPACE = "pid:[4026531836]";

let _initialPidNamespace: boolean | undefined;
/**
 * Whether this process is in the initial PID namespace (Linux), the only one
 * where `/proc/locks` can list every process's locks: in any other (a
 * container, `unshare --pid`) it lists only the locks of the processes this
 * one can see, so a lock held from outside looks free there. `readLink` is
 * the runtime's own; the answer is read once.
 */
export function _isInitialPidNamespace(
  readLink: (path: string) => string,
): boolean {
  if (_initialPidNamespace === undefined) {
    try {
      _initialPidNamespace =
        readLink("/proc/self/ns/pid") === _INITIAL_PID_NAMESPACE;
    } catch {
      _initialPidNamespace = false;
    }
  }
  return _initialPidNamespace;
}

let _wholeBuffer = new Uint8Array(64 * 1024);
const _wholeDecoder = new TextDecoder();

/**
 * Reads a file to its end through `read(into)` (which returns the bytes read,
 * 0 at the end) in as few, as large reads as it can: one 64 KiB read for
 * `/proc/locks`, whose seq_file skips a record when a lock goes away between
 * two reads.
 */
export function _readWhole(read: (into: Uint8Array) => number): string {
  let length = 0;
  while (true) {
    if (length === _wholeBuffer.length) {
      const grown = new Uint8Array(_wholeBuffer.length * 2);
      grown.set(_wholeBuffer);
      _wholeBuffer = grown;
    }
    const n = read(_wholeBuffer.subarray(length));
    if (n === 0) break;
    length += n;
  }
  return _wholeDecoder.decode(_wholeBuffer.subarray(0, length));
}
