// Removing lock files without ever giving a lock two holders, even to users
// that never re-check the inode after locking (flock(1), Python's
// fcntl.flock). ARCHITECTURE.md, "Removing a lock file", says why each step
// is there.

import { _sleep } from "../base/promise.ts";
import { _flockWaiters } from "./kernel.ts";
import {
  _basename,
  _dirname,
  _errorCode,
  type _FileStat,
  _inInitialPidNamespace,
  _join,
  _link,
  type _LockHandle,
  _lstat,
  _openers,
  _openExisting,
  _pid,
  _rename,
  _unlink,
} from "../runtime/mod.ts";

/** Why a lock file is kept when some process's open files cannot be seen. */
export const _UNSEEN =
  "cannot see every process's open files (/proc/PID/fd of other users needs root), so cannot show that no one else has it open";

/** Why a lock file is kept in a PID namespace other than the initial one. */
export const _OTHER_NAMESPACE =
  "in its own PID namespace (a container), this process cannot see the open files of processes outside it, so cannot show that no one else has it open";

/**
 * Why a lock file is kept when the kernel's lock table does not show this
 * process's lock on it alone: a process waits for it, or the table, longer
 * than one read, missed the lock's record.
 */
export const _WAITED_FOR =
  "the kernel's lock table (/proc/locks) did not show this process's lock on it alone (a process may be waiting for it), so cannot show that no one else will lock it";

/** How long moved lock files wait for late openers before they are removed. */
const _GRACE_MS = 50;

/** A lock file this process holds exclusively, still linked at `lockPath`. */
export interface _HeldLockFile {
  handle: _LockHandle;
  lockPath: string;
}

function _key(stat: _FileStat): string {
  return `${stat.dev}:${stat.ino}`;
}

function _openIn(pids: number[]): string {
  return `open in pid ${pids.join(", ")}, which may lock it next`;
}

/**
 * Removes the lock files, each held exclusively by this process and still
 * the file linked at its path. For each, in order: `null` once it is
 * removed, or why it was kept (another process has it open, and may be
 * about to lock it and would then hold a file no one else can see; or that
 * cannot be ruled out). Every look at the open files and every wait is made
 * once for all of them, so many files cost little more than one.
 */
export async function _removeHeldLockFiles(
  files: _HeldLockFile[],
): Promise<(string | null)[]> {
  // /proc lists only this namespace's processes: one outside that has the
  // file open (a container sharing the directory) would go unseen.
  if (!_inInitialPidNamespace()) return files.map(() => _OTHER_NAMESPACE);
  const stats = files.map((file) => file.handle.stat());
  const keys = new Set(stats.map(_key));
  const before = _openers(keys);
  if (!before.complete) return files.map(() => _UNSEEN);
  const result: (string | null)[] = stats.map((stat) => {
    const pids = before.pids.get(_key(stat));
    return pids ? _openIn(pids) : null;
  });
  // Out of the way first: once no name leads to a file, no process can open
  // it, so the next look sees everyone who will ever have it open.
  const moved: { index: number; aside: string }[] = [];
  for (const [index, file] of files.entries()) {
    if (result[index] !== null) continue;
    const aside = _join(
      _dirname(file.lockPath),
      `.${_basename(file.lockPath)}.lockbox-removing-${_pid()}-${
        Math.random().toString(36).slice(2, 10)
      }`,
    );
    _rename(file.lockPath, aside);
    moved.push({ index, aside });
  }
  if (moved.length === 0) return result;
  const after = _openers(keys);
  // An open() that found a file by name just before the move may not have
  // its descriptor in place yet. Give it time to show: as an open file, or
  // as a flock waiting behind ours in the kernel's table.
  await _sleep(_GRACE_MS);
  const waiters = _flockWaiters(moved.map(({ index }) => stats[index]));
  const again = _openers(keys);
  for (const [n, { index, aside }] of moved.entries()) {
    const key = _key(stats[index]);
    const pids = [
      ...new Set([
        ...(after.pids.get(key) ?? []),
        ...(again.pids.get(key) ?? []),
      ]),
    ];
    const clean = after.complete && again.complete && pids.length === 0 &&
      waiters !== null && waiters[n] === 0;
    if (clean) {
      _unlink(aside);
      continue;
    }
    await _putBack(aside, files[index].lockPath);
    result[index] = !(after.complete && again.complete)
      ? _UNSEEN
      : pids.length > 0
      ? _openIn(pids)
      : _WAITED_FOR;
  }
  return result;
}

/**
 * Puts a lock file (held by this process) back at `lockPath`. If a new file
 * was made there meanwhile, that file is removed first, by this same careful
 * removal (it is taken exclusively, and removed only if no one else has it
 * open); until it can be, this waits, still holding the old one, so that the
 * old file's waiters and the new file's users never hold their locks at once.
 */
async function _putBack(aside: string, lockPath: string): Promise<void> {
  for (let delay = 1;; delay = Math.min(delay * 2, 100)) {
    try {
      _link(aside, lockPath);
      _unlink(aside);
      return;
    } catch (error) {
      if (_errorCode(error) !== "EEXIST") throw error;
    }
    let other: _LockHandle;
    try {
      other = _openExisting(lockPath);
    } catch (error) {
      if (_errorCode(error) === "ENOENT") continue;
      throw error;
    }
    let removed = false;
    try {
      if (other.tryLock(true)) {
        const stat = other.stat();
        const linked = _lstat(lockPath);
        if (
          stat.nlink > 0 && linked !== null && linked.dev === stat.dev &&
          linked.ino === stat.ino
        ) {
          const [kept] = await _removeHeldLockFiles([{
            handle: other,
            lockPath,
          }]);
          removed = kept === null;
        }
      }
    } finally {
      other.close();
    }
    if (!removed) await _sleep(delay);
  }
}
