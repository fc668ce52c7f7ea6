// The file work every lockbox writer uses: the durable atomic replace (and
// the ownership it keeps), whole-line appends, whole-file reads within the
// document limit, the checks that refuse a symlink or a directory, moving
// a corrupt file aside, and making durable directories.

import { basename, dirname } from "node:path";
import {
  _createForWrite,
  _errorCode,
  type _FileStat,
  _link,
  _lstat,
  _mkdirp,
  _notRegularFile,
  _openExistingForAppend,
  _openForAppend,
  _readFile,
  _removeIfExists,
  _rename,
  _syncDirectory,
  _unlink,
  type _WriteHandle,
} from "../runtime/mod.ts";
import { StoreError } from "../base/errors.ts";
import { _fsError, _octal, _reason } from "../base/fs_errors.ts";
import { _checkDocumentSize } from "./json.ts";

/** Reads a whole file; `null` if it does not exist, else a `StoreError`. */
export async function _readStoreFile(
  path: string,
  action = "read",
): Promise<Uint8Array | null> {
  // Before reading: a file past the limit is refused without loading it.
  const stat = _lstat(path);
  if (stat !== null && stat.isFile) _checkDocumentSize(path, stat.size);
  try {
    return await _readFile(path);
  } catch (error) {
    throw _fsError(action, path, error);
  }
}

/**
 * Throws a `StoreError` unless `target` is a regular file or missing: a store
 * never writes through a symlink or over a directory.
 */
export function _checkTarget(
  target: string,
  action: "read" | "write" = "write",
): _FileStat | null {
  const stat = _lstat(target);
  const what = _notRegularFile(stat);
  if (what === null) return stat;
  const never = what === "a symbolic link"
    ? ", and lockbox never reads or writes through one"
    : "";
  throw new StoreError(
    target,
    `Cannot ${action} '${target}': it is ${what}${never}; point the store at a regular file`,
  );
}

/**
 * Moves `path` to `<path>.corrupt-<time>` (with `-1`, `-2`... if taken),
 * never over an earlier quarantine: `link` refuses an existing name, where
 * `rename` would replace it. Returns the new name.
 */
export function _quarantineAside(path: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  for (let n = 0;; n++) {
    const aside = `${path}.corrupt-${stamp}${n === 0 ? "" : `-${n}`}`;
    try {
      _link(path, aside);
    } catch (error) {
      if (_errorCode(error) === "EEXIST") continue;
      throw error;
    }
    _unlink(path);
    return aside;
  }
}

/**
 * Replaces `target` with `bytes` through `tempPath`. With `staleTemp`, a file
 * already at `tempPath` is an orphan of a writer that died holding the same
 * lock, and is removed first.
 */
export async function _atomicReplace(
  target: string,
  bytes: Uint8Array,
  options: {
    durable: boolean;
    mode?: number;
    tempPath: string;
    staleTemp: boolean;
  },
): Promise<void> {
  const stat = _checkTarget(target);
  // A new file gets 0666 less the umask, as `touch` makes it (0664 under
  // umask 002, so a shared group can write it).
  const mode = options.mode ?? stat?.mode ?? 0o666;
  const { tempPath, durable } = options;
  let handle: _WriteHandle | undefined;
  try {
    try {
      handle = _createForWrite(tempPath, mode);
    } catch (error) {
      if (!options.staleTemp || _errorCode(error) !== "EEXIST") throw error;
      _removeIfExists(tempPath);
      handle = _createForWrite(tempPath, mode);
    }
    if (stat !== null) {
      _keepOwnership(
        handle,
        options.mode === undefined ? stat : { ...stat, mode: options.mode },
        target,
      );
    } else if (options.mode !== undefined) {
      // An explicit mode is given exactly, as it is to a file replaced.
      handle.matchOwnership({
        ...handle.stat(),
        uid: null,
        gid: null,
        mode: options.mode,
      });
    }
    await handle.write(bytes);
    // A failed fsync is final: the page cache may have dropped the data, so a
    // retry could "succeed" without it. Give up and leave the target alone.
    if (durable) await handle.sync();
    handle.close();
    handle = undefined;
    _rename(tempPath, target);
  } catch (error) {
    handle?.close();
    try {
      _removeIfExists(tempPath);
    } catch {
      // The original error is what the caller needs; the temp name is in it.
    }
    if (error instanceof StoreError) throw error;
    throw _fsError("write", target, error);
  }
  if (durable) await _syncDirectoryOf(target);
}

/**
 * The fsync of `target`'s directory after `target` was written or made; a
 * failure is a `StoreError` saying the write may not survive a power loss.
 */
async function _syncDirectoryOf(target: string): Promise<void> {
  try {
    await _syncDirectory(dirname(target));
  } catch (error) {
    throw new StoreError(
      target,
      `Wrote '${target}', but the fsync of its directory failed (${
        _reason(error)
      }): the new content may not survive a power loss; check the disk`,
      { cause: error },
    );
  }
}

/**
 * Gives a new file that is about to replace `target` the owner, group and
 * mode `like` has (those of the file it replaces), through its descriptor:
 * root rewriting a service's file must not take it from the service. A user
 * who is not root cannot give a file away: where `target` is another
 * user's, the new file stays this user's, with the same group and mode,
 * provided this user may write `target` (the replace then does what an
 * update in place could have done); else this throws a `StoreError`, before
 * anything is written. See ARCHITECTURE.md, "Durability".
 */
export function _keepOwnership(
  handle: _WriteHandle,
  like: _FileStat,
  target: string,
): void {
  try {
    handle.matchOwnership(like);
    return;
  } catch (error) {
    if (_errorCode(error) !== "EPERM") throw error;
  }
  const own = handle.stat();
  const whose = `it belongs to uid ${like.uid} (group ${like.gid}, mode ${
    _octal(like.mode)
  })`;
  if (!_mayWrite(target)) {
    throw new StoreError(
      target,
      `Cannot write '${target}': ${whose} and this user (uid ${own.uid}) may not write it, so lockbox will not replace it; make it writable for its group (chmod g+w) and run as a member, or write as its owner`,
    );
  }
  try {
    handle.matchOwnership({ ...like, uid: own.uid });
  } catch (error) {
    if (_errorCode(error) !== "EPERM") throw error;
    throw new StoreError(
      target,
      `Cannot write '${target}': ${whose}, and a replacement made by this user (uid ${own.uid}) cannot keep that group, since this user is not a member of it; add the user to group ${like.gid}, or write as the file's owner`,
      { cause: error },
    );
  }
}

/** Whether this process may open `path` for writing (ACLs included). */
function _mayWrite(path: string): boolean {
  try {
    _openExistingForAppend(path)?.close();
    return true;
  } catch (error) {
    const code = _errorCode(error);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") return false;
    throw error;
  }
}

const _encoder = new TextEncoder();

/**
 * Replaces `target` with `text` for a caller that holds the target's lock.
 * Only a lock holder writes, so one fixed temp name (`.<name>.lockbox-tmp`)
 * is unique, and a file already there is the orphan of a writer that died
 * holding the lock: it is removed first.
 */
export function _replaceHoldingLock(
  target: string,
  text: string,
  durable: boolean,
): Promise<void> {
  return _atomicReplace(target, _encoder.encode(text), {
    durable,
    tempPath: _lockHolderTemp(target),
    staleTemp: true,
  });
}

/**
 * The temp file `_replaceHoldingLock` writes for `target`. Found while
 * holding the lock, it is the orphan of a writer that died.
 */
export function _lockHolderTemp(target: string): string {
  return `${dirname(target)}/.${basename(target)}.lockbox-tmp`;
}

/**
 * Appends whole lines in one write, for a caller that holds the lock that
 * serializes appends to `target`.
 */
export async function _appendHoldingLock(
  target: string,
  text: string,
  durable: boolean,
): Promise<void> {
  const existed = _checkTarget(target) !== null;
  let handle: _WriteHandle | undefined;
  try {
    handle = _openForAppend(target);
    const size = handle.size();
    const cutShort = size > 0 && handle.byteAt(size - 1) !== 0x0a;
    await handle.write(_encoder.encode(cutShort ? "\n" + text : text));
    if (durable) await handle.sync(true);
  } catch (error) {
    throw _fsError("append to", target, error);
  } finally {
    handle?.close();
  }
  if (durable && !existed) await _syncDirectoryOf(target);
}

/**
 * Makes `dir` and its missing parents; with `durable`, fsyncs the parent of
 * each directory it made, so that a power loss cannot take away a directory
 * (and the files later made durable inside it).
 */
export async function _makeDirs(dir: string, durable: boolean): Promise<void> {
  const missing: string[] = [];
  for (let at = dir; _lstat(at) === null; at = dirname(at)) {
    missing.push(at);
    if (dirname(at) === at) break;
  }
  if (missing.length === 0) return;
  _mkdirp(dir);
  if (!durable) return;
  for (const made of missing) await _syncDirectory(dirname(made));
}
