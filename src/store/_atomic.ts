// The durable atomic replace every lockbox writer uses, and the checks and
// messages around it.

import { basename, dirname } from "node:path";
import {
  _createForWrite,
  _errorCode,
  type _FileStat,
  _link,
  _lstat,
  _mkdirp,
  _notRegularFile,
  _openForAppend,
  _readFile,
  _removeIfExists,
  _rename,
  _syncDirectory,
  _unlink,
  type _WriteHandle,
} from "../runtime/mod.ts";
import { StoreError } from "../base/errors.ts";
import { _fsError, _reason } from "../base/_fs_errors.ts";
import { _checkDocumentSize } from "./_json.ts";

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
  const mode = options.mode ?? stat?.mode ?? 0o644;
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
    // The new file keeps the owner, group and mode of the one it replaces
    // (root rewriting a service's file must not take it from the service),
    // or the replace fails here, before anything is written.
    if (stat !== null) {
      handle.matchOwnership(
        options.mode === undefined ? stat : { ...stat, mode: options.mode },
      );
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
    throw _fsError("write", target, error);
  }
  if (!durable) return;
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
  if (durable && !existed) await _syncDirectory(dirname(target));
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
