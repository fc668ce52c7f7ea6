// Removing a lock file without ever giving a lock two holders, even to
// users that never re-check the inode after locking (flock(1), Python's
// fcntl.flock). ARCHITECTURE.md, "Removing a lock file", says why each step
// is there.

import { basename, dirname, join } from "node:path";
import { _sleep } from "./_promise.ts";
import { _flockEntries } from "./_kernel.ts";
import {
  _errorCode,
  _link,
  type _LockHandle,
  _lstat,
  _openersOf,
  _openExisting,
  _pid,
  _rename,
  _unlink,
} from "./_runtime.ts";

/** Why a lock file is kept when some process's open files cannot be seen. */
export const _UNSEEN =
  "cannot see every process's open files (/proc/PID/fd of other users needs root), so cannot show that no one else has it open";

function _openIn(pids: number[]): string {
  return `open in pid ${pids.join(", ")}, which may lock it next`;
}

/**
 * Removes the lock file at `lockPath`, which `handle` holds exclusively and
 * which is still the file linked there. Returns `null` once it is removed,
 * or why it was kept: another process has it open (it may be about to lock
 * it, and would then hold a file no one else can see), or that cannot be
 * ruled out.
 */
export async function _removeHeldLockFile(
  handle: _LockHandle,
  lockPath: string,
): Promise<string | null> {
  const own = handle.stat();
  const before = _openersOf(own.dev, own.ino);
  if (!before.complete) return _UNSEEN;
  if (before.pids.length > 0) return _openIn(before.pids);
  // Out of the way first: once no name leads to it, no process can open it,
  // so the second look sees everyone who will ever have it open.
  const aside = join(
    dirname(lockPath),
    `.${basename(lockPath)}.lockbox-removing-${_pid()}-${
      Math.random().toString(36).slice(2, 10)
    }`,
  );
  _rename(lockPath, aside);
  let after = _openersOf(own.dev, own.ino);
  if (after.complete && after.pids.length === 0) {
    // An open() that found the file by name just before the move may not
    // have its descriptor in place yet. Give it time to show: as an open
    // file, or as a flock waiting behind ours in the kernel's table.
    await _sleep(_GRACE_MS);
    const entries = _flockEntries(own);
    after = _openersOf(own.dev, own.ino);
    if (entries === 1 && after.complete && after.pids.length === 0) {
      _unlink(aside);
      return null;
    }
  }
  await _putBack(aside, lockPath);
  return after.complete ? _openIn(after.pids) : _UNSEEN;
}

/** How long a moved lock file waits for late openers before it is removed. */
const _GRACE_MS = 50;

/**
 * Puts the lock file (held by this process) back at `lockPath`. If a new
 * file was made there meanwhile, that file is removed first, by this same
 * careful removal (it is taken exclusively, and removed only if no one else
 * has it open); until it can be, this waits, still holding the old one, so
 * that the old file's waiters and the new file's users never hold their
 * locks at once.
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
          removed = await _removeHeldLockFile(other, lockPath) === null;
        }
      }
    } finally {
      other.close();
    }
    if (!removed) await _sleep(delay);
  }
}
