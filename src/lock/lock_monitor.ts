// The lock monitor: who holds which lock file, from the kernel, and cleanup
// of stale lock files that can never break a held lock.

import { _promiseTry } from "../base/promise.ts";
import { join } from "node:path";
import { type _LockFileContent, _readLockFile } from "./_holder_record.ts";
import { type _KernelTable, _kernelTable, _liveRecord } from "./kernel.ts";
import {
  _fileKey,
  _pathsOf,
  _readWaitGraph,
  type _WaitGraph,
} from "./wait_graph.ts";
import { _lockInternals } from "./lock_internals.ts";
import { _removeHeldLockFiles } from "./_lock_removal.ts";
import {
  _errorCode,
  _lstat,
  _readCommandLine,
  _readDir,
  _readProcLocks,
  _toPath,
} from "../runtime/mod.ts";
import { StoreError } from "../base/errors.ts";
import { FileLock } from "./file_lock.ts";
import { _resolveTarget, type LockTarget } from "./lock_target.ts";
import type { LockHolder } from "../base/lock_holder.ts";

/** A process waiting for a lock. */
export interface LockWaiter {
  /**
   * The waiting process. A lockbox Node process that waits in a `flock(1)`
   * helper is named, not the helper; so is a process whose command waits
   * under its lock (`flock a.lock cmd`, where `cmd` waits for another).
   */
  pid: number;
  /** The mode it waits for. */
  mode: "exclusive" | "shared";
  /** Its command line, as for holders; `null` when unknown. */
  command: string | null;
}

/** What the monitor knows about one lock file. */
export interface LockInfo {
  /** The lock file. */
  lockPath: string;
  /** Whether any process holds it: the kernel's view. */
  held: boolean;
  /** The mode it is held in, or `null` when free. */
  mode: "exclusive" | "shared" | null;
  /** The pids holding it, from the kernel where it can tell (Linux). */
  holders: number[];
  /** What the lock file's record says (may describe an earlier holder). */
  record: LockHolder | null;
  /**
   * The pid in a lock file written in seed 001's format (the pid alone, as
   * its `FileLock` and {@linkcode processFiles} write it), else `null`. Like
   * `record`, what the file says, possibly about an earlier holder.
   */
  pid: number | null;
  /**
   * The command line of the process holding it (the first of `holders`, else
   * the pid the file names while it is held), from `/proc/PID/cmdline`,
   * arguments joined by spaces; `null` when free or unknown (not Linux, the
   * process gone, not permitted).
   */
  command: string | null;
  /**
   * The processes waiting for it, from the kernel (Linux; empty elsewhere).
   * A wait inside a process (a second request for a lock the same process
   * holds or awaits) is not the kernel's and is not listed.
   */
  waiters: LockWaiter[];
  /** Time since the lock file was last written; never negative. */
  ageMs: number;
  /** Free and older than `staleAfter`. */
  stale: boolean;
}

/** What {@linkcode cleanupStaleLocks} did. */
export interface CleanupReport {
  /** Lock files removed (with `dryRun`: that would be removed). */
  removed: string[];
  /** Lock files kept, and why. */
  kept: { path: string; reason: string }[];
  /** Files or directories that could not be looked at or removed. */
  errors: { path: string; error: string }[];
}

/** Options of the monitor's functions. */
export interface MonitorLockOptions {
  /**
   * How old a free lock file must be to count as stale, in milliseconds.
   *
   * @default {3_600_000}
   */
  staleAfter?: number;
  /**
   * Look in subdirectories too (never through symlinks).
   *
   * @default {false}
   */
  recursive?: boolean;
}

/** Options of {@linkcode cleanupStaleLocks}. */
export interface CleanupOptions extends MonitorLockOptions {
  /**
   * Report what would be removed, and remove nothing.
   *
   * @default {false}
   */
  dryRun?: boolean;
}

const _HOUR = 3_600_000;

function _staleAfter(value: number | undefined): number {
  const ms = value ?? _HOUR;
  if (typeof ms !== "number" || !(ms >= 0)) {
    throw new RangeError(
      `Cannot use staleAfter ${value}: expected milliseconds from 0 up`,
    );
  }
  return ms;
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The info of a lock file that `lstat` says is a regular file. `record` is
 * its holder record, read by the caller.
 */
function _info(
  lockPath: string,
  { record, pid }: _LockFileContent,
  staleAfter: number,
  now: number,
  table: _KernelTable,
  graph: _WaitGraph | null,
  probe = true,
): LockInfo {
  const stat = _lstat(lockPath);
  if (stat === null || !stat.isFile) {
    throw new TypeError(
      `Cannot inspect '${lockPath}': it is ${
        stat === null ? "missing" : "not a regular file"
      }`,
    );
  }
  const view = table(lockPath, stat, { probe });
  const ageMs = Math.max(0, Math.floor(now - (stat.mtimeMs ?? now)));
  const held = view.mode !== null;
  return {
    lockPath,
    held,
    mode: view.mode,
    holders: view.pids,
    record,
    pid,
    command: held ? _commandOf(view.pids, record, pid) : null,
    waiters: _waitersOf(graph, _fileKey(stat)),
    ageMs,
    stale: !held && ageMs > staleAfter,
  };
}

/** The processes the kernel lists as waiting for the file `file`. */
function _waitersOf(graph: _WaitGraph | null, file: string): LockWaiter[] {
  const waiters: LockWaiter[] = [];
  for (const entry of graph?.table.waiters.get(file) ?? []) {
    const pid = graph!.processOf.get(entry.pid) ?? entry.pid;
    if (waiters.some((waiter) => waiter.pid === pid)) continue;
    waiters.push({
      pid,
      mode: entry.exclusive ? "exclusive" : "shared",
      command: _readCommandLine(pid),
    });
  }
  return waiters;
}

/** The holder's command line: a pid the kernel names, else the file's. */
function _commandOf(
  holders: number[],
  record: LockHolder | null,
  pid: number | null,
): string | null {
  const live = _liveRecord(true, holders, record);
  const who = holders[0] ?? live?.pid ?? pid;
  return who === null || who === undefined ? null : _readCommandLine(who);
}

/**
 * What the lock file says; nothing for a file this process may not read (its
 * state and holders still come from the kernel).
 */
function _readableContent(lockPath: string): _LockFileContent {
  try {
    return _readLockFile(lockPath);
  } catch (error) {
    const code = _errorCode(error);
    if (code === "EACCES" || code === "EPERM") {
      return { record: null, pid: null };
    }
    throw error;
  }
}

/** Walks `dir` for `*.lock` entries; reports what it cannot read. */
async function _walk(
  dir: string,
  recursive: boolean,
  onLock: (
    path: string,
    kind: "file" | "symlink" | "directory" | "other",
  ) => void,
  onError: (path: string, error: unknown) => void,
): Promise<void> {
  let entries;
  try {
    entries = await _readDir(dir);
  } catch (error) {
    onError(dir, error);
    return;
  }
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.name.endsWith(".lock")) {
      onLock(
        path,
        entry.isSymlink
          ? "symlink"
          : entry.isFile
          ? "file"
          : entry.isDirectory
          ? "directory"
          : "other",
      );
    }
    if (recursive && entry.isDirectory && !entry.isSymlink) {
      await _walk(path, recursive, onLock, onError);
    }
  }
}

/**
 * Lists the lock files in a directory: files named `*.lock` that carry a
 * lockbox holder record (or seed 001's pid), held or free, and any other
 * `*.lock` file while a process holds it (an empty file `flock(1)` locks,
 * one this process may not read), with the kernel's view of each. Other
 * tools' files that no one holds (`Cargo.lock`, `yarn.lock`) are not locks:
 * not listed, and never probed; {@linkcode lockInfo} looks at any file you
 * name. On Linux this
 * reads `/proc/locks` once per call and never touches a lock, so listing
 * over and over never makes anyone's `tryAcquire` fail, while the machine's
 * lock table comes in one read (about 70 locks); a longer one may miss a
 * lock, so a lockbox lock file it does not list is probed. Elsewhere it probes
 * each file with a non-blocking lock, which for an instant holds it; so it
 * does, in a PID namespace other than the initial one (a container), for
 * each file `/proc/locks` does not list, since a process outside may hold it.
 * Symlinks and directories named `*.lock` are skipped and never followed;
 * unreadable subdirectories are skipped ({@linkcode cleanupStaleLocks}
 * reports them).
 *
 * Requires `--allow-read`.
 *
 * @param dir The directory.
 * @param options `recursive` and `staleAfter`.
 * @returns One `LockInfo` per lock file, sorted by path.
 * @throws {RangeError} If `staleAfter` is negative.
 * @throws {StoreError} If `dir` itself cannot be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock, listLocks } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const lock = await FileLock.acquire(`${dir}/a.json`);
 * const [info] = await listLocks(dir);
 * assert.ok(info.held && info.holders[0] === Deno.pid);
 * await lock.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function listLocks(
  dir: string | URL,
  options: MonitorLockOptions = {},
): Promise<LockInfo[]> {
  const staleAfter = _staleAfter(options.staleAfter);
  const now = Date.now();
  // One read of the kernel's table for the holders and the waiters alike.
  const procLocks = _readProcLocks();
  const table = _kernelTable(procLocks);
  const graph = _readWaitGraph(procLocks);
  const infos: LockInfo[] = [];
  const root = _toPath(dir);
  await _walk(root, options.recursive ?? false, (path, kind) => {
    if (kind !== "file") return;
    try {
      // Lock files: lockbox's and seed 001's (a pid alone), held or free,
      // and any other `*.lock` file while a process holds it (an empty file
      // `flock(1)` locks), whoever took it. Other tools' files that no one
      // holds (Cargo.lock, yarn.lock) are not locks: left out, and never
      // probed, not even for an instant.
      const content = _readableContent(path);
      const ours = content.record !== null || content.pid !== null;
      const info = _info(path, content, staleAfter, now, table, graph, ours);
      if (ours || info.held) infos.push(info);
    } catch {
      // Unreadable, or removed or replaced while we looked: not listed.
    }
  }, (path, error) => {
    // The directory asked for must be readable; a subdirectory that is not
    // is skipped (cleanupStaleLocks reports it).
    if (path === root) {
      throw new StoreError(
        root,
        `Cannot list lock files in '${root}': ${
          _message(error)
        }; check that it is a readable directory`,
        { cause: error },
      );
    }
  });
  return infos.sort((a, b) => a.lockPath.localeCompare(b.lockPath));
}

/**
 * The monitor's view of one lock file.
 *
 * @param lockFile The lock file: a bare path or `{ lockFile }`; or
 *   `{ guards }`, a file whose sidecar `<file>.lock` to look at.
 * @param options `staleAfter`.
 * @returns Its `LockInfo`.
 * @throws {TypeError} If it is missing, a symlink or not a regular file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock, lockInfo } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await (await FileLock.acquire(`${dir}/a.json`)).release();
 * assert.ok(!(await lockInfo(`${dir}/a.json.lock`)).held);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function lockInfo(
  lockFile: string | URL | LockTarget,
  options: { staleAfter?: number } = {},
): Promise<LockInfo> {
  return _promiseTry(() => {
    const path = _resolveTarget(lockFile, "lockFile", "lockInfo").lockPath;
    const staleAfter = _staleAfter(options.staleAfter);
    const stat = _lstat(path);
    // Named by the caller, so looked at even without a lockbox record.
    const content = stat?.isFile
      ? _readableContent(path)
      : { record: null, pid: null };
    const procLocks = _readProcLocks();
    return _info(
      path,
      content,
      staleAfter,
      Date.now(),
      _kernelTable(procLocks),
      _readWaitGraph(procLocks),
    );
  });
}

/**
 * Whether a lock file is stale: no process holds it (the kernel's view) and
 * it is older than `staleAfter`. A held lock is never stale, however old; a
 * record naming a live pid that does not hold the lock (pid reuse) does not
 * make it held.
 *
 * @param lockFile The lock file: a bare path or `{ lockFile }`; or
 *   `{ guards }`, a file whose sidecar `<file>.lock` to look at.
 * @param options `staleAfter`.
 * @returns `true` if stale.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock, isLockStale } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await (await FileLock.acquire(`${dir}/a.json`)).release();
 * const lockFile = `${dir}/a.json.lock`;
 * const old = new Date(Date.now() - 2 * 3_600_000);
 * await Deno.utime(lockFile, old, old);
 * assert.ok(await isLockStale(lockFile));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function isLockStale(
  lockFile: string | URL | LockTarget,
  options: { staleAfter?: number } = {},
): Promise<boolean> {
  return (await lockInfo(lockFile, options)).stale;
}

/**
 * Removes stale lockbox lock files, and nothing else. A file is removed only
 * when all of these hold:
 *
 * - it is named `*.lock`, is a regular file (never a symlink) and carries a
 *   lockbox holder record: other tools' files are never touched;
 * - it is stale: no process holds it and it is older than `staleAfter`;
 * - this process takes it exclusively, and removes it while holding it,
 *   after checking that it is still the file at that path;
 * - no other process has it open, checked in `/proc/PID/fd` before and
 *   again after moving it out of the way (so nothing can open it during the
 *   second look). A process that has it open may be waiting in `flock(1)` or
 *   Python's `fcntl.flock`, which never re-check the file after locking:
 *   removing it would leave that process holding a file no one else sees.
 *   Such a file is put back and kept. Where `/proc/PID/fd` of some process
 *   cannot be read (not root), nothing can be shown and the file is kept;
 *   so too in a PID namespace other than the initial one (a container),
 *   whose `/proc` hides every process outside it.
 *
 * So cleanup never gives a lock two holders, whoever uses the file. Errors
 * on one file are reported and the others go on.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @param dir The directory.
 * @param options `staleAfter`, `recursive` and `dryRun`.
 * @returns What was removed, kept (and why), and what failed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cleanupStaleLocks, FileLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await (await FileLock.acquire(`${dir}/old`)).release();
 * await Deno.writeTextFile(`${dir}/Cargo.lock`, "# not ours\n");
 * const old = new Date(Date.now() - 60_000);
 * await Deno.utime(`${dir}/old.lock`, old, old);
 * await Deno.utime(`${dir}/Cargo.lock`, old, old);
 * const report = await cleanupStaleLocks(dir, { staleAfter: 1_000, dryRun: true });
 * assert.deepEqual(report.removed, [`${dir}/old.lock`]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function cleanupStaleLocks(
  dir: string | URL,
  options: CleanupOptions = {},
): Promise<CleanupReport> {
  const staleAfter = _staleAfter(options.staleAfter);
  const report: CleanupReport = { removed: [], kept: [], errors: [] };
  const candidates: string[] = [];
  await _walk(_toPath(dir), options.recursive ?? false, (path, kind) => {
    if (kind === "file") candidates.push(path);
    else {
      report.kept.push({
        path,
        reason: `${
          kind === "other" ? "not a regular file" : `a ${kind}`
        }, not a lock file; never followed or removed`,
      });
    }
  }, (path, error) => report.errors.push({ path, error: _message(error) }));
  const now = Date.now();
  const table = _kernelTable();
  const stale: string[] = [];
  for (const path of candidates) {
    try {
      const content = _readLockFile(path);
      if (content.record === null) {
        report.kept.push({
          path,
          reason: content.pid === null
            ? "not a lockbox lock file (no lockbox record); never removed"
            : "seed 001's lock file (its pid, no lockbox record); never removed",
        });
        continue;
      }
      const info = _info(path, content, staleAfter, now, table, null);
      if (info.stale) {
        stale.push(path);
        continue;
      }
      report.kept.push({
        path,
        reason: info.held
          ? `held${
            info.holders.length ? ` by pid ${info.holders.join(", ")}` : ""
          }`
          : `free but younger than ${staleAfter} ms`,
      });
    } catch (error) {
      report.errors.push({ path, error: _message(error) });
    }
  }
  if (options.dryRun) {
    report.removed.push(...stale);
    return report;
  }
  // In batches: each batch holds its files' locks at once (one descriptor
  // each) while one look at every process's open files covers them all.
  for (let start = 0; start < stale.length; start += _BATCH) {
    await _removeBatch(stale.slice(start, start + _BATCH), report);
  }
  return report;
}

const _BATCH = 256;

/** Takes each stale file exclusively and removes those no one else uses. */
async function _removeBatch(
  paths: string[],
  report: CleanupReport,
): Promise<void> {
  const held: { path: string; lock: FileLock }[] = [];
  for (const path of paths) {
    try {
      const lock = await FileLock.tryAcquire(path, { lockPath: path });
      if (lock === null) {
        report.kept.push({ path, reason: "taken while we looked" });
      } else held.push({ path, lock });
    } catch (error) {
      report.errors.push({ path, error: _message(error) });
    }
  }
  try {
    const kept = await _removeHeldLockFiles(
      held.map(({ path, lock }) => ({
        handle: _lockInternals.handleOf(lock)!,
        lockPath: path,
      })),
    );
    for (const [i, reason] of kept.entries()) {
      if (reason === null) report.removed.push(held[i].path);
      else report.kept.push({ path: held[i].path, reason });
    }
  } catch (error) {
    for (const { path } of held) {
      report.errors.push({ path, error: _message(error) });
    }
  } finally {
    for (const { lock } of held) await lock.release();
  }
}

/** A path as one line of a table: quoted, escapes and all, if it has control characters. */
function _printable(path: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(path) ? JSON.stringify(path) : path;
}

function _age(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 90) return `${s}s`;
  if (s < 90 * 60) return `${Math.floor(s / 60)}m`;
  if (s < 36 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Options of {@linkcode formatLockStatus}. */
export interface FormatOptions {
  /**
   * Colour the state column with ANSI escapes.
   *
   * @default {false}
   */
  color?: boolean;
  /**
   * The time ages are measured to (for reproducible output).
   *
   * @default {new Date()}
   */
  now?: Date;
  /**
   * The width lines are cut to, by shortening the COMMAND column (to no less
   * than 12 characters, ending in `…`); the other columns are never cut.
   *
   * @default {100}
   */
  width?: number;
}

/** A command line as one cell: control characters as `?`, cut to `room`. */
function _commandCell(command: string | null, room: number): string {
  if (command === null) return "-";
  // deno-lint-ignore no-control-regex
  const text = command.replace(/[\x00-\x1f\x7f]/g, "?");
  return text.length <= room ? text : `${text.slice(0, room - 1)}…`;
}

/**
 * Formats lock infos as a table a person reads at a glance: path, state,
 * mode, holder pid and host, age, a stale mark, and the holder's command
 * line, cut to fit `width`.
 *
 * @param infos What {@linkcode listLocks} returned.
 * @param options Colour, the time ages are measured to, the width.
 * @returns The table, one line per lock, or a line saying there are none.
 *
 * @example
 * ```ts
 * import { formatLockStatus } from "@lockbox/lockbox";
 * console.log(formatLockStatus([]));
 * ```
 */
export function formatLockStatus(
  infos: LockInfo[],
  options: FormatOptions = {},
): string {
  if (infos.length === 0) return "no lock files";
  const paint = (code: string, text: string) =>
    options.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  const rows = infos.map((info) => {
    const record = _liveRecord(info.held, info.holders, info.record);
    const pid = info.holders.length > 0
      ? info.holders.join(",")
      : record
      ? String(record.pid)
      : info.held && info.pid !== null
      ? String(info.pid)
      : "-";
    const host = record ? record.hostname : "-";
    return [
      _printable(info.lockPath),
      info.held ? "held" : "free",
      info.mode ?? "-",
      pid,
      host,
      _age(info.ageMs),
      info.stale ? "stale" : "",
    ];
  });
  // Each waiter on a line of its own under its lock.
  const lines: { row: string[]; command: string | null; shown: boolean }[] = [];
  for (const [i, row] of rows.entries()) {
    const info = infos[i];
    lines.push({ row, command: info.command ?? null, shown: info.held });
    for (const waiter of info.waiters ?? []) {
      lines.push({
        row: ["  waiting", "-", waiter.mode, String(waiter.pid), "-", "", ""],
        command: waiter.command,
        shown: true,
      });
    }
  }
  const header = ["PATH", "STATE", "MODE", "PID", "HOST", "AGE", "STALE"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => l.row[i].length))
  );
  // The command goes last, in what room the other columns leave.
  const used = widths.reduce((sum, w) => sum + w + 2, 0);
  const room = Math.max(12, (options.width ?? 100) - used);
  header.push("COMMAND");
  for (const { row, command, shown } of lines) {
    row.push(shown ? _commandCell(command, room) : "");
  }
  widths.push(0);
  const line = (cells: string[], colour = false) =>
    cells.map((cell, i) => {
      const padded = cell.padEnd(widths[i]);
      if (!colour) return padded;
      if (i === 1) return paint(cell === "held" ? "33" : "32", padded);
      if (i === 6 && cell) return paint("31", padded);
      return padded;
    }).join("  ").trimEnd();
  return [line(header), ...lines.map((l) => line(l.row, true))].join("\n");
}

/** One wait of {@linkcode WaitGraph}: a process waiting for a lock another holds. */
export interface WaitEdge {
  /** The waiting process (see {@linkcode LockWaiter}). */
  waiter: number;
  /** Its command line, or `null`. */
  waiterCommand: string | null;
  /** The lock file, or `device:inode` where no path could be found. */
  lockPath: string;
  /** The mode the waiter asks for. */
  mode: "exclusive" | "shared";
  /** A process holding that lock. */
  holder: number;
  /** Its command line, or `null`. */
  holderCommand: string | null;
}

/** Who waits for whom, machine-wide: {@linkcode readWaitGraph}. */
export interface WaitGraph {
  /** Every wait, one per waiter and holder. */
  edges: WaitEdge[];
  /**
   * The deadlocks: each a set of two or more pids (ascending) that wait for
   * each other in a cycle, so that none can go on by itself.
   */
  cycles: number[][];
}

/**
 * Reads who waits for whom: every `flock` wait on the machine (Linux, from
 * `/proc/locks`; empty elsewhere), as edges from a waiting process to a
 * process that holds the lock it waits for, and the cycles among them
 * (deadlocks). Lock paths are found through the lock files' holders and
 * waiters (`/proc/PID/fd`); `dirs` (lock files in them, as
 * {@linkcode listLocks} finds them) name those it cannot read. Never touches
 * a lock.
 *
 * Requires `--allow-read`.
 *
 * @param dirs Directories whose lock files to name first.
 * @returns The edges and the cycles.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readWaitGraph } from "@lockbox/lockbox";
 * const graph = await readWaitGraph();
 * assert.ok(Array.isArray(graph.edges) && Array.isArray(graph.cycles));
 * ```
 */
export async function readWaitGraph(
  dirs: (string | URL)[] = [],
): Promise<WaitGraph> {
  const known = new Map<string, string>();
  for (const dir of dirs) {
    await _walk(_toPath(dir), false, (path, kind) => {
      if (kind !== "file") return;
      const stat = _lstat(path);
      if (stat !== null) known.set(_fileKey(stat), path);
    }, () => {});
  }
  const graph = _readWaitGraph();
  if (graph === null) return { edges: [], cycles: [] };
  const paths = _pathsOf(graph, graph.edges.map((edge) => edge.file), known);
  const commands = new Map<number, string | null>();
  const command = (pid: number) => {
    if (!commands.has(pid)) commands.set(pid, _readCommandLine(pid));
    return commands.get(pid)!;
  };
  const edges = graph.edges.map((edge) => ({
    waiter: edge.waiter,
    waiterCommand: command(edge.waiter),
    lockPath: paths.get(edge.file) ?? edge.file,
    mode: edge.exclusive ? "exclusive" as const : "shared" as const,
    holder: edge.holder,
    holderCommand: command(edge.holder),
  }));
  edges.sort((a, b) =>
    a.lockPath.localeCompare(b.lockPath) || a.waiter - b.waiter ||
    a.holder - b.holder
  );
  return { edges, cycles: graph.cycles };
}

/**
 * Formats a wait-for graph: one line per wait, `DEADLOCK` before each wait
 * inside a cycle, then a line per cycle.
 *
 * @param graph What {@linkcode readWaitGraph} returned.
 * @returns The text, or a line saying no process waits.
 *
 * @example
 * ```ts
 * import { formatWaitGraph } from "@lockbox/lockbox";
 * console.log(formatWaitGraph({ edges: [], cycles: [] }));
 * ```
 */
export function formatWaitGraph(graph: WaitGraph): string {
  if (graph.edges.length === 0) return "no process waits for a lock";
  const who = (pid: number, command: string | null) =>
    `pid ${pid}${command === null ? "" : ` (${_commandCell(command, 40)})`}`;
  const inCycle = (edge: WaitEdge) =>
    graph.cycles.some((set) =>
      set.includes(edge.waiter) && set.includes(edge.holder)
    );
  const lines = graph.edges.map((edge) =>
    `${inCycle(edge) ? "DEADLOCK " : ""}${
      who(edge.waiter, edge.waiterCommand)
    } waits for ${_printable(edge.lockPath)} (${edge.mode}), held by ${
      who(edge.holder, edge.holderCommand)
    }`
  );
  for (const set of graph.cycles) {
    lines.push(
      `deadlock: pids ${set.join(", ")} wait for each other in a cycle`,
    );
  }
  return lines.join("\n");
}
