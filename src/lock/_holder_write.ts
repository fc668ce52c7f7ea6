// Writing the holder record when a lock is taken: the next fencing token
// (from the clock for a new lock file), the record in the lock file (or,
// for a pid file and on Windows, in the record file beside it), and the
// floor a stale fence leaves on release. The record's format is
// _holder_record.ts's.

import {
  _createNew,
  _errorCode,
  type _FileStat,
  _hostname,
  type _LockHandle,
  _lstat,
  _onWindows,
  _openExisting,
  _pid,
} from "../runtime/mod.ts";
import { LockError } from "../base/errors.ts";
import { _octal } from "../base/fs_errors.ts";
import { _FILE_TOKEN_MIN } from "./fence.ts";
import { _checkLockFileStat } from "./kernel.ts";
import { _isExecutable } from "./_lock_file_open.ts";
import {
  _decodeToken,
  _encodeRecord,
  _isDamagedRecord,
  _MAX_RECORD_BYTES,
  _pidBytes,
  _pidInFile,
  _readRecord,
  _recordFileOf,
  _recordText,
} from "./_holder_record.ts";

/** What writing a holder record needs to know of the request. */
export interface _RecordRequest {
  readonly lockPath: string;
  readonly shared: boolean;
  readonly pidFile: boolean;
  readonly metadataJson: string | undefined;
}

/**
 * The lock path of each exclusive token this process handed out lately
 * (bounded; cleared when full), and for a lock path whose token a store
 * refused as stale, the fence that refused it: the next exclusive token of
 * that path exceeds it, so that taking the lock again helps even when the
 * lock file started from a clock that is behind (see _noteStaleFence).
 */
const _tokenPaths = new Map<number, string>();
const _floors = new Map<string, number>();
const _MAX_TOKEN_PATHS = 1024;

/**
 * The first token for a lock file with no usable record (new, emptied by
 * another tool, damaged, or removed and made again): the wall clock in
 * milliseconds times 1000, past every token this process gave before, and
 * never below 2^50 (`_FILE_TOKEN_MIN`). The clock exceeds every token the
 * file's earlier lives handed out, since those started from an earlier
 * clock reading and grew by one per acquisition, and no lock is taken a
 * thousand times a millisecond. (A clock that is behind is caught up with
 * by the fence that refuses its token: `_floors`, below. Across
 * processes, a lock file made, removed and made again within one
 * millisecond could repeat a token; see ARCHITECTURE.md.)
 */
export function _firstToken(): number {
  return Math.max(Date.now() * 1000, _FILE_TOKEN_MIN, _highestToken + 1);
}

// The highest token this process has handed out, for any lock file: a first
// token also exceeds it, so within one process tokens of a lock file that is
// removed and made again within one millisecond still grow.
let _highestToken = 0;

/** Notes a token this process hands out (see {@linkcode _firstToken}). */
export function _noteToken(token: number): void {
  if (token > _highestToken) _highestToken = token;
}

/** A store refused `token` as older than `highest`: raise its lock's floor. */
export function _noteStaleFence(token: number, highest: number): void {
  const lockPath = _tokenPaths.get(token);
  if (lockPath === undefined) return;
  if (_floors.size >= _MAX_TOKEN_PATHS) _floors.clear();
  _floors.set(lockPath, Math.max(_floors.get(lockPath) ?? highest, highest));
}

/** The first bytes of a lock file, as far as a record can reach. */
function _leadingBytes(handle: _LockHandle, stat: _FileStat): Uint8Array {
  const bytes = new Uint8Array(Math.min(stat.size, _MAX_RECORD_BYTES));
  return bytes.subarray(0, handle.readFromStart(bytes));
}

/** Writes the holder record into the lock file; returns the token. */
export function _writeRecord(
  request: _RecordRequest,
  handle: _LockHandle,
  stat: _FileStat,
): number {
  // Under the exclusive lock no one else writes, so one read tells; a
  // shared holder may be writing its record beside ours, so read again.
  const old = _readRecord(
    handle,
    stat.size,
    _decodeToken,
    request.shared ? 1000 : 1,
  );
  // A file with content that is not a lockbox record (a script locked as
  // `flock script.sh` does, a pid another tool wrote), or one this process
  // may not write, is never written. A lockbox record with a bad checksum
  // is rewritten.
  const damaged = old === "torn" &&
    _isDamagedRecord(_leadingBytes(handle, stat));
  const ours = typeof old === "number" || damaged || stat.size === 0;
  if (ours && !handle.writable && !request.shared && !_isExecutable(stat)) {
    // Token 0 here would leave every user who may not write this file
    // with the same token, and their fenced writes could not be told
    // apart: refuse rather than degrade.
    throw new LockError(
      `Cannot lock '${request.lockPath}' exclusively: this process may not write it (owner uid ${stat.uid}, group ${stat.gid}, mode ${
        _octal(stat.mode)
      }), so it could neither advance the fencing token nor record its holder; make the lock file writable by every user of the lock (for a shared group: chmod g+w, in a setgid directory with umask 002), or take the lock shared`,
    );
  }
  // A shared holder keeps the token, which it can read without writing.
  const foreign = !handle.writable || !ours;
  const token = !ours
    ? 0
    : !handle.writable
    ? typeof old === "number" ? old : 0
    : _nextToken(request, typeof old === "number" ? old : null);
  _noteToken(token);
  if (!foreign) {
    const text = _recordText(
      token,
      _pid(),
      _hostname(),
      request.shared,
      request.metadataJson,
    );
    handle.writeAtStart(_encodeRecord(text, stat.size));
  }
  return token;
}

/**
 * Before an exclusive lock whose token a store refused is let go: its
 * record gets the fence that refused it as its token, so that the next
 * holder, in any process, gets a token above that fence (without it, a
 * holder whose clock is behind, on a lock file it made, would leave the
 * file's tokens below the fence for every later holder that increments
 * them). Best effort: a record that cannot be written stays as it is.
 */
export function _recordFloor(
  request: _RecordRequest,
  handle: _LockHandle,
  token: number,
): void {
  const floor = _floors.get(request.lockPath);
  if (floor === undefined || floor <= token) return;
  if (_tokenPaths.get(token) !== request.lockPath) return;
  try {
    const text = _recordText(
      floor,
      _pid(),
      _hostname(),
      false,
      request.metadataJson,
    );
    // Where the record was written on acquire: beside the lock file on
    // Windows.
    if (!request.pidFile && !_onWindows) {
      if (handle.writable) {
        handle.writeAtStart(_encodeRecord(text, handle.stat().size));
      }
      return;
    }
    const records = _openRecordFile(_recordFileOf(request.lockPath));
    if (records === null) return;
    try {
      records.writeAtStart(_encodeRecord(text, records.stat().size));
    } finally {
      records.close();
    }
  } catch {
    // The record stays; this process's next token still exceeds the fence.
  }
}

/**
 * The token a holder that may write the record takes after `previous` (the
 * recorded one, `null` for none): a shared holder keeps it; an exclusive one
 * is FileLock's family (2^50 and up, see fence.ts) even after a record
 * another tool wrote with a smaller one, and exceeds a fence that refused
 * this lock path's last one (_floors).
 */
function _nextToken(request: _RecordRequest, previous: number | null): number {
  if (request.shared && previous !== null) return previous;
  let token = previous === null
    ? _firstToken()
    : Math.max(previous + 1, _FILE_TOKEN_MIN);
  if (request.shared) return token;
  if (_floors.size > 0) {
    const floor = _floors.get(request.lockPath);
    if (floor !== undefined && floor >= token) token = floor + 1;
    _floors.delete(request.lockPath);
  }
  if (_tokenPaths.size >= _MAX_TOKEN_PATHS) _tokenPaths.clear();
  _tokenPaths.set(token, request.lockPath);
  return token;
}

/**
 * Option `pidFile`: writes the holder's pid alone into the lock file, and
 * the holder record into its record file; returns the token. Without
 * `writePid` (Windows), the lock file is left as it is.
 */
export function _writePidFile(
  request: _RecordRequest,
  handle: _LockHandle,
  stat: _FileStat,
  writePid = true,
): number {
  const head = _leadingBytes(handle, stat);
  // A lockbox record here is this file's from before it was a pid file.
  const own = _decodeToken(head);
  const ours = stat.size === 0 || _pidInFile(head) !== null ||
    typeof own === "number" || _isDamagedRecord(head);
  if (!handle.writable || !ours) return 0;
  let token = 0;
  const records = _openRecordFile(_recordFileOf(request.lockPath));
  if (records !== null) {
    try {
      const size = records.stat().size;
      const old = _readRecord(
        records,
        size,
        _decodeToken,
        request.shared ? 1000 : 1,
      );
      const previous = typeof old === "number"
        ? old
        : typeof own === "number"
        ? own
        : null;
      token = _nextToken(request, previous);
      _noteToken(token);
      records.writeAtStart(
        _encodeRecord(
          _recordText(
            token,
            _pid(),
            _hostname(),
            request.shared,
            request.metadataJson,
          ),
          size,
        ),
      );
    } finally {
      records.close();
    }
  }
  if (!writePid) return token;
  const pid = _pidBytes(_pid());
  handle.writeAtStart(pid);
  if (stat.size > pid.length) handle.truncate(pid.length);
  return token;
}

/**
 * Opens (or creates) a record file for writing, never through a symlink;
 * `null` where this process may not write it (the lock is then taken with
 * no record, token 0).
 */
function _openRecordFile(path: string): _LockHandle | null {
  for (let attempt = 0;; attempt++) {
    const stat = _lstat(path);
    _checkLockFileStat(path, stat);
    try {
      if (stat === null) return _createNew(path);
      const handle = _openExisting(path);
      const opened = handle.stat();
      if (
        handle.writable && opened.dev === stat.dev && opened.ino === stat.ino
      ) return handle;
      handle.close();
      if (!handle.writable) return null;
    } catch (error) {
      const code = _errorCode(error);
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
        return null;
      }
      if (code !== "ENOENT" && code !== "EEXIST") throw error;
    }
    if (attempt >= 100) {
      throw new LockError(
        `Cannot write the lock record '${path}': it keeps changing; check what else writes it`,
      );
    }
  }
}
