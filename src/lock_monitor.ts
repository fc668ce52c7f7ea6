// The lock monitor: who holds which lock file, from the kernel, and cleanup
// of stale lock files that can never break a held lock.

import { _promiseTry } from "./_promise.ts";
import { join } from "node:path";
import { _readHolderRecord } from "./_holder_record.ts";
import { _kernelView, _liveRecord } from "./_kernel.ts";
import { _errorCode, _lstat, _readDir, _toPath } from "./_runtime.ts";
import { StoreError } from "./errors.ts";
import { FileLock } from "./file_lock.ts";
import type { LockHolder } from "./lock_holder.ts";

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

/** The info of a lock file that `lstat` says is a regular file. */
function _info(lockPath: string, staleAfter: number, now: number): LockInfo {
  const stat = _lstat(lockPath);
  if (stat === null || !stat.isFile) {
    throw new TypeError(
      `Cannot inspect '${lockPath}': it is ${
        stat === null ? "missing" : "not a regular file"
      }`,
    );
  }
  const view = _kernelView(lockPath, stat);
  const ageMs = Math.max(0, now - (stat.mtimeMs ?? now));
  const held = view.mode !== null;
  return {
    lockPath,
    held,
    mode: view.mode,
    holders: view.pids,
    record: _readableRecord(lockPath),
    ageMs,
    stale: !held && ageMs > staleAfter,
  };
}

/**
 * The lock file's record; `null` for a file this process may not read (its
 * state and holders still come from the kernel).
 */
function _readableRecord(lockPath: string): LockHolder | null {
  try {
    return _readHolderRecord(lockPath);
  } catch (error) {
    const code = _errorCode(error);
    if (code === "EACCES" || code === "EPERM") return null;
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
 * Lists the lock files (names ending in `.lock`) in a directory, with the
 * kernel's view of each. On Linux this reads `/proc/locks` and never touches
 * a lock, so listing over and over never makes anyone's `tryAcquire` fail.
 * Elsewhere it probes each file with a non-blocking lock, which for an
 * instant holds it. Symlinks and directories named `*.lock` are skipped and
 * never followed; unreadable subdirectories are skipped
 * ({@linkcode cleanupStaleLocks} reports them), and a lock file this process
 * may not read is listed with `record: null`.
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
 * import { FileLock, listLocks } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const lock = await FileLock.acquire(`${dir}/a.json`);
 * const [info] = await listLocks(dir);
 * console.assert(info.held && info.holders[0] === Deno.pid);
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
  const infos: LockInfo[] = [];
  const root = _toPath(dir);
  await _walk(root, options.recursive ?? false, (path, kind) => {
    if (kind !== "file") return;
    try {
      infos.push(_info(path, staleAfter, now));
    } catch {
      // Removed or replaced while we looked: it is simply not listed.
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
 * @param lockFile The lock file itself.
 * @param options `staleAfter`.
 * @returns Its `LockInfo`.
 * @throws {TypeError} If it is missing, a symlink or not a regular file.
 *
 * @example
 * ```ts
 * import { FileLock, lockInfo } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await (await FileLock.acquire(`${dir}/a.json`)).release();
 * console.assert(!(await lockInfo(`${dir}/a.json.lock`)).held);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function lockInfo(
  lockFile: string | URL,
  options: { staleAfter?: number } = {},
): Promise<LockInfo> {
  return _promiseTry(() =>
    _info(_toPath(lockFile), _staleAfter(options.staleAfter), Date.now())
  );
}

/**
 * Whether a lock file is stale: no process holds it (the kernel's view) and
 * it is older than `staleAfter`. A held lock is never stale, however old; a
 * record naming a live pid that does not hold the lock (pid reuse) does not
 * make it held.
 *
 * @param lockFile The lock file itself.
 * @param options `staleAfter`.
 * @returns `true` if stale.
 *
 * @example
 * ```ts
 * import { FileLock, isLockStale } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await (await FileLock.acquire(`${dir}/a.json`)).release();
 * const lockFile = `${dir}/a.json.lock`;
 * const old = new Date(Date.now() - 2 * 3_600_000);
 * await Deno.utime(lockFile, old, old);
 * console.assert(await isLockStale(lockFile));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function isLockStale(
  lockFile: string | URL,
  options: { staleAfter?: number } = {},
): Promise<boolean> {
  return (await lockInfo(lockFile, options)).stale;
}

/**
 * Removes stale lock files. Each is removed only while this process holds
 * its lock and after checking that it is still the same file (the protocol in
 * DESIGN.md), so a held lock is never removed, even one taken between the
 * look and the removal. Errors on one file are reported and the others go on.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @param dir The directory.
 * @param options `staleAfter`, `recursive` and `dryRun`.
 * @returns What was removed, kept (and why), and what failed.
 *
 * @example
 * ```ts
 * import { cleanupStaleLocks } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/old.lock`, "");
 * const old = new Date(Date.now() - 60_000);
 * await Deno.utime(`${dir}/old.lock`, old, old);
 * const report = await cleanupStaleLocks(dir, { staleAfter: 1_000, dryRun: true });
 * console.assert(report.removed.length === 1);
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
        reason: `a ${kind}, not a lock file; never followed or removed`,
      });
    }
  }, (path, error) => report.errors.push({ path, error: _message(error) }));
  const now = Date.now();
  for (const path of candidates) {
    try {
      const info = _info(path, staleAfter, now);
      if (!info.stale) {
        report.kept.push({
          path,
          reason: info.held
            ? `held${
              info.holders.length ? ` by pid ${info.holders.join(", ")}` : ""
            }`
            : `free but younger than ${staleAfter} ms`,
        });
        continue;
      }
      if (options.dryRun) {
        report.removed.push(path);
        continue;
      }
      const lock = await FileLock.tryAcquire(path, {
        lockPath: path,
        removeOnRelease: true,
      });
      if (lock === null) {
        report.kept.push({ path, reason: "taken while we looked" });
        continue;
      }
      await lock.release();
      if (_lstat(path) === null) report.removed.push(path);
      else report.kept.push({ path, reason: "replaced while we looked" });
    } catch (error) {
      report.errors.push({ path, error: _message(error) });
    }
  }
  return report;
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
}

/**
 * Formats lock infos as a table a person reads at a glance: path, state,
 * mode, holder pid and host, age, and a stale mark.
 *
 * @param infos What {@linkcode listLocks} returned.
 * @param options Colour.
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
      : "-";
    const host = record ? record.hostname : "-";
    return [
      info.lockPath,
      info.held ? "held" : "free",
      info.mode ?? "-",
      pid,
      host,
      _age(info.ageMs),
      info.stale ? "stale" : "",
    ];
  });
  const header = ["PATH", "STATE", "MODE", "PID", "HOST", "AGE", "STALE"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (cells: string[], colour = false) =>
    cells.map((cell, i) => {
      const padded = cell.padEnd(widths[i]);
      if (!colour) return padded;
      if (i === 1) return paint(cell === "held" ? "33" : "32", padded);
      if (i === 6 && cell) return paint("31", padded);
      return padded;
    }).join("  ").trimEnd();
  return [line(header), ...rows.map((r) => line(r, true))].join("\n");
}
