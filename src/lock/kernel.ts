// The kernel's view of a lock file, and the checks every lock path passes.

import {
  _errorCode,
  type _FileStat,
  _inInitialPidNamespace,
  _lstat,
  _notRegularFile,
  _onWindows,
  _openReadOnly,
  _readProcLocks,
} from "../runtime/mod.ts";
import { LockError } from "../base/errors.ts";
import { _readHolderRecord, _readLockFile } from "./_holder_record.ts";
import type { LockHolder } from "../base/lock_holder.ts";

/** The kernel's view of one lock file. */
export interface _KernelView {
  mode: "exclusive" | "shared" | null;
  pids: number[];
}

/**
 * Throws a clear `LockError` unless `stat` describes something a lock can live
 * in: a regular file (or nothing yet).
 */
export function _checkLockFileStat(
  lockPath: string,
  stat: _FileStat | null,
): void {
  const what = _notRegularFile(stat);
  if (what === null) return;
  const never = what === "a symbolic link"
    ? ", and lockbox never follows one for a lock file"
    : "";
  throw new LockError(
    `Cannot lock '${lockPath}': it is ${what}${never}; remove it or choose another lockPath`,
  );
}

// Linux's st_dev packs major and minor numbers; /proc/locks prints them apart.
export function _devKey(dev: number): string {
  const high = Math.floor(dev / 2 ** 32);
  const low = dev >>> 0;
  const major = ((low >>> 8) & 0xfff) | ((high & ~0xfff) >>> 0);
  const minor = (low & 0xff) | ((low >>> 12) & ~0xff);
  return `${major.toString(16).padStart(2, "0")}:${
    minor.toString(16).padStart(2, "0")
  }`;
}

// A seq_file read returns at most one page of records, all from one moment
// (the kernel holds the lock list for that read); a record of /proc/locks
// (a lock, without waiters) is well under 128 bytes. A table shorter than a
// page less one record therefore ended within the first read: any further
// record would have fit in it.
const _PAGE = 4096;
const _LONGEST_RECORD = 128;

/** Whether a `/proc/locks` text surely came in one read, so is consistent. */
function _inOneRead(text: string): boolean {
  return text.length + _LONGEST_RECORD < _PAGE;
}

/** Parses `/proc/locks` into flock holders by `"maj:min:ino"`. */
function _parseProcLocks(text: string): Map<string, _KernelView> {
  const views = new Map<string, _KernelView>();
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // "1: FLOCK ADVISORY WRITE 2127 fe:00:2146430 0 EOF"; waiters have "->".
    if (fields.length < 6 || fields[1] !== "FLOCK") continue;
    const [, , , access, pid, id] = fields;
    let view = views.get(id);
    if (!view) views.set(id, view = { mode: null, pids: [] });
    view.mode = access === "WRITE" ? "exclusive" : "shared";
    const n = Number(pid);
    if (Number.isInteger(n) && n > 0 && !view.pids.includes(n)) {
      view.pids.push(n);
    }
  }
  return views;
}

/**
 * The kernel's view of one file. With `probe: false`, a file the table
 * cannot vouch for without probing it (no `/proc/locks`, or a lock from
 * outside this PID namespace) is taken as free: for files that are not
 * lockbox's, which the monitor never locks, not even for an instant.
 */
export type _KernelTable = (
  lockPath: string,
  stat: _FileStat,
  options?: { probe?: boolean },
) => _KernelView;

const _FREE: _KernelView = { mode: null, pids: [] };

/**
 * A view of every flock on the machine, read once: on Linux from
 * `/proc/locks`, which never touches a lock. Elsewhere each look probes with
 * a non-blocking lock on a separate handle: for a moment the probe holds the
 * lock, so another process's `tryAcquire` may fail in that instant, and pids
 * are unknown.
 *
 * The table vouches for a file it does not list (free) only when it is
 * complete:
 *
 * - it came in one read. A longer table comes a page per read, and a lock
 *   released before a page's end between two reads shifts the records, so
 *   the next read skips one: a held lock could be missing. Reading it again
 *   only makes that rarer;
 * - this process is in the initial PID namespace: in any other,
 *   `/proc/locks` lists only the locks of processes in this one, so a lock
 *   it does not list may be held from outside.
 *
 * Otherwise the probe, which the kernel answers for every process, decides
 * (unless `probe: false`).
 */
export function _kernelTable(
  procLocks: string | null = _readProcLocks(),
): _KernelTable {
  if (procLocks === null) {
    return (lockPath, stat, options) =>
      options?.probe === false ? _FREE : _probe(lockPath, stat);
  }
  const views = _parseProcLocks(procLocks);
  const initial = _inInitialPidNamespace();
  const complete = _inOneRead(procLocks) && initial;
  return (lockPath, stat, options) => {
    const id = `${_devKey(stat.dev)}:${stat.ino}`;
    const listed = views.get(id);
    if (listed) return listed;
    if (complete || options?.probe === false) return _FREE;
    const probed = _probe(lockPath, stat);
    if (probed.mode === null || !initial) return probed;
    // Held, and the table skipped its record: its holders' pids (which tell
    // the current holder's record from an earlier one's) are in the table
    // whenever a read does not skip it, which is nearly always.
    for (let look = 0; look < _PID_LOOKS; look++) {
      const again = _parseProcLocks(_readProcLocks() ?? "").get(id);
      if (again) return again;
    }
    return probed;
  };
}

/** How many more reads of a long table look for a held lock's pids. */
const _PID_LOOKS = 5;

function _probe(lockPath: string, _stat: _FileStat): _KernelView {
  let probe;
  try {
    probe = _openReadOnly(lockPath);
  } catch (error) {
    if (_errorCode(error) === "ENOENT") throw error;
    // Never "free" for a lock that cannot be looked at.
    throw new LockError(
      `Cannot tell whether '${lockPath}' is held: ${
        (error as Error)?.message ?? String(error)
      }; ${
        _readProcLocks() === null
          ? "without /proc/locks"
          : _inInitialPidNamespace()
          ? "with a lock table (/proc/locks) longer than one read, which may miss a lock,"
          : "in its own PID namespace, where /proc/locks lists only this namespace's locks,"
      } lockbox must open the lock file to probe it; run the monitor as a user who may read it`,
      { cause: error },
    );
  }
  try {
    if (!probe.tryLock(false)) return { mode: "exclusive", pids: [] };
    probe.unlock();
    if (!probe.tryLock(true)) return { mode: "shared", pids: [] };
    probe.unlock();
    return _FREE;
  } finally {
    probe.close();
  }
}

/**
 * How many processes the kernel lists as waiting (`->`) for each file in
 * `stats`, a file this process holds exclusively: a number where a read of
 * `/proc/locks` listed the file's lock, `null` where none did. `null` for
 * all where there is no `/proc/locks`.
 *
 * The kernel prints a lock's waiters in the same record as the lock, so a
 * read that lists the lock lists its waiters whole. A table longer than one
 * read may skip a record (see _kernelTable) or repeat one: a file whose lock
 * is missing is looked for again, up to `_PID_LOOKS` more reads, and a
 * repeated record adds no waiters, since the lock's own line is not one.
 */
export function _flockWaiters(stats: _FileStat[]): (number | null)[] | null {
  let text = _readProcLocks();
  if (text === null) return null;
  const ids = stats.map((stat) => `${_devKey(stat.dev)}:${stat.ino}`);
  const waiters: (number | null)[] = ids.map(() => null);
  for (let look = 0;; look++) {
    const listed = _waitersByFile(text);
    for (const [i, id] of ids.entries()) waiters[i] ??= listed.get(id) ?? null;
    if (_inOneRead(text) || look === _PID_LOOKS || !waiters.includes(null)) {
      return waiters;
    }
    text = _readProcLocks() ?? "";
  }
}

/**
 * For each file with a flock in a table, the most waiters any one of its
 * records lists (a repeated record is counted once).
 */
function _waitersByFile(text: string): Map<string, number> {
  const waiters = new Map<string, number>();
  let record: { id: string; waiters: number } | null = null;
  const close = () => {
    if (record === null) return;
    waiters.set(
      record.id,
      Math.max(waiters.get(record.id) ?? 0, record.waiters),
    );
    record = null;
  };
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // "1: FLOCK ADVISORY WRITE 2127 fe:00:2146430 0 EOF", and each waiter
    // after it as "1: -> FLOCK ADVISORY WRITE 2130 fe:00:2146430 0 EOF".
    const waiting = fields[1] === "->";
    const offset = waiting ? 1 : 0;
    if (fields[1 + offset] !== "FLOCK" || fields.length < 6 + offset) {
      if (!waiting) close();
      continue;
    }
    const id = fields[5 + offset];
    if (!waiting) {
      close();
      record = { id, waiters: 0 };
    } else if (record !== null && record.id === id) {
      record.waiters++;
    } else {
      // A waiter whose lock's line was in an earlier read: count it alone.
      waiters.set(id, Math.max(waiters.get(id) ?? 0, 1));
    }
  }
  close();
  return waiters;
}

/** Who holds the lock on the file `stat` describes (see _kernelTable). */
export function _kernelView(lockPath: string, stat: _FileStat): _KernelView {
  return _kernelTable()(lockPath, stat);
}

function _inspectable(lockPath: string): _FileStat | null {
  const stat = _lstat(lockPath);
  _checkLockFileStat(lockPath, stat);
  return stat;
}

/** The kernel's view of `lockPath`, or a free view if the file is missing. */
export function _viewOf(lockPath: string): _KernelView {
  const stat = _inspectable(lockPath);
  return stat === null ? { mode: null, pids: [] } : _kernelView(lockPath, stat);
}

/** The holder record if the kernel says the lock is held, else `null`. */
export function _heldRecord(lockPath: string): LockHolder | null {
  const stat = _inspectable(lockPath);
  if (stat === null) return null;
  const view = _kernelView(lockPath, stat);
  if (view.mode === null) return null;
  const record = _readHolderRecord(lockPath);
  // A record from an earlier holder is not this holder's: trust it only if
  // its pid is among the kernel's holders (when the kernel names them).
  if (record && view.pids.length > 0 && !view.pids.includes(record.pid)) {
    return null;
  }
  return record;
}

/**
 * A pid holding the lock on `lockPath`, for a message: the kernel's (Linux),
 * else the one a held seed 001 lock file names, else (where the kernel names
 * none) the record's; `null` when free or unknown.
 */
export function _holderPid(lockPath: string): number | null {
  try {
    const view = _viewOf(lockPath);
    if (view.mode === null) return null;
    if (view.pids.length > 0) return view.pids[0];
    const content = _readLockFile(lockPath);
    return content.pid ?? (_onWindows ? content.record?.pid ?? null : null);
  } catch {
    return null;
  }
}

/**
 * A lock file's record, if it describes a current holder: the lock is held
 * and the record's pid is among the kernel's holders (or they are unknown).
 */
export function _liveRecord(
  held: boolean,
  holders: number[],
  record: LockHolder | null,
): LockHolder | null {
  if (!held || record === null) return null;
  return holders.length === 0 || holders.includes(record.pid) ? record : null;
}
