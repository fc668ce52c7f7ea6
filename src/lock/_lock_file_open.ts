// Opening a lock file and one non-blocking try at its OS lock: never
// through a symlink, reusing a file this process has open where it can.
// See ARCHITECTURE.md, "The lock protocol".

import { _stillLinked } from "../base/file_identity.ts";
import {
  _createNew,
  _dirname,
  _errorCode,
  type _FileStat,
  type _LockHandle,
  _lstat,
  _mkdirp,
  _onWindows,
  _openExisting,
  _openReadOnly,
} from "../runtime/mod.ts";
import { LockError } from "../base/errors.ts";
import type { _KeptLockFile } from "./kept_lock_file.ts";
import { _checkLockFileStat } from "./kernel.ts";

/**
 * Where a lock file a release of this process just unlocked waits for the
 * next request of the same lock path (see `_FileQueue.spare`).
 */
export interface _SpareSlot {
  readonly lockPath: string;
  spare: _LockHandle | null;
}

/**
 * Lock files this process has locked, and whether each is executable: such
 * a path is opened at once, without the lstat before the open, because the
 * inode check after the lock (`_stillLinked`: the open file beside lstat)
 * refuses it if it has turned into anything but that file since. Bounded;
 * cleared when full.
 */
const _known = new Map<string, boolean>();
const _MAX_KNOWN = 1024;

export function _remember(lockPath: string, stat: _FileStat): void {
  if (_known.size >= _MAX_KNOWN && !_known.has(lockPath)) _known.clear();
  _known.set(lockPath, _isExecutable(stat));
}

/**
 * Opens the lock file without following symlinks, creating it if needed; or
 * reuses the file a release in this process has just unlocked, or the one
 * `kept` holds open (the inode check after the lock tells whether it is
 * still the file at lockPath).
 */
function _open(
  slot: _SpareSlot,
  kept: _KeptLockFile | undefined,
): _LockHandle {
  const lockPath = slot.lockPath;
  const spare = slot.spare ?? kept?.take(lockPath) ?? null;
  if (spare !== null) {
    if (slot.spare === spare) slot.spare = null;
    return spare;
  }
  const executable = _known.get(lockPath);
  if (executable !== undefined) {
    try {
      return executable ? _openReadOnly(lockPath) : _openExisting(lockPath);
    } catch {
      // Gone or changed: look before opening, below.
      _known.delete(lockPath);
    }
  }
  for (let attempt = 0;; attempt++) {
    const stat = _lstat(lockPath);
    _checkLockFileStat(lockPath, stat);
    try {
      // An executable (a script locked as itself, as `flock "$0"` does) is
      // opened read-only: Linux refuses to run a file open for writing.
      if (stat !== null) {
        return (stat.mode ?? 0) & 0o111
          ? _openReadOnly(lockPath)
          : _openExisting(lockPath);
      }
      try {
        return _createNew(lockPath);
      } catch (error) {
        if (_errorCode(error) !== "ENOENT") throw error;
        _mkdirp(_dirname(lockPath));
        return _createNew(lockPath);
      }
    } catch (error) {
      const code = _errorCode(error);
      // Removed or created between the lstat and the open: look again.
      if ((code === "ENOENT" || code === "EEXIST") && attempt < 100) continue;
      // Windows: a file deleted while another handle has it open stays,
      // pending deletion, until that handle closes, and opening it is
      // denied (ERROR_ACCESS_DENIED) until then.
      if (_onWindows && code === "EACCES" && attempt < 100) continue;
      if (_onWindows && code === "EACCES") {
        throw new LockError(
          `Cannot lock '${lockPath}': it cannot be opened (access denied), as a file pending deletion cannot until every handle to it is closed; retry, or check its permissions`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}

/**
 * One non-blocking attempt. Returns the open handle either way: locked, or
 * ready for a blocking wait.
 */
export function _tryTake(
  slot: _SpareSlot,
  shared: boolean,
  kept: _KeptLockFile | undefined,
): { handle: _LockHandle; stat: _FileStat | null } {
  const lockPath = slot.lockPath;
  while (true) {
    const handle = _open(slot, kept);
    try {
      if (!handle.tryLock(!shared)) return { handle, stat: null };
      const stat = _stillLinked(handle, lockPath);
      if (stat) {
        _remember(lockPath, stat);
        return { handle, stat };
      }
      _known.delete(lockPath);
      handle.unlock();
      handle.close();
    } catch (error) {
      handle.close();
      throw error;
    }
  }
}

/**
 * Turns the lock `handle` holds into `exclusive` or shared without
 * blocking; `false` if it cannot. flock converts in place; Windows locks
 * stack and never convert, so there the lock is let go and tried again in
 * the other mode, and after `false` it is no longer held.
 */
export function _convert(handle: _LockHandle, exclusive: boolean): boolean {
  if (_onWindows) handle.unlock();
  return handle.tryLock(exclusive);
}

/** Whether a file has an execute bit (a script locked as itself). */
export function _isExecutable(stat: _FileStat): boolean {
  return ((stat.mode ?? 0) & 0o111) !== 0;
}
