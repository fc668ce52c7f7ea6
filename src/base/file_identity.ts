// Whether a file still open in this process is the one at its path: the
// check a lock file or a journal kept open between uses passes before it is
// used again (a foreign tool, or a compaction, may have replaced it).

import { type _FileStat, _lstat } from "../runtime/mod.ts";

/** Anything open on a file that can `fstat` it. */
interface _Open {
  stat(): _FileStat;
}

/**
 * The file each handle has open, once looked at: it never changes for an
 * open descriptor, and its inode cannot be reused while the descriptor keeps
 * it alive.
 */
const _inodes = new WeakMap<_Open, { dev: number; ino: number }>();

/** Notes the file `handle` has open, from an `fstat` the caller made anyway. */
export function _noteOpenFile(handle: _Open, stat: _FileStat): void {
  _inodes.set(handle, { dev: stat.dev, ino: stat.ino });
}

/**
 * The `lstat` of `path` if it still links to the file `handle` has open
 * (then it is that file's stat), else `null`: removed, replaced, or not a
 * regular file. Costs one `lstat`, and an `fstat` the first time a handle
 * is looked at.
 */
export function _stillLinked(handle: _Open, path: string): _FileStat | null {
  let own = _inodes.get(handle);
  if (own === undefined) {
    const stat = handle.stat();
    if (stat.nlink === 0) return null;
    own = { dev: stat.dev, ino: stat.ino };
    _inodes.set(handle, own);
  }
  const linked = _lstat(path);
  return linked !== null && linked.isFile && linked.dev === own.dev &&
      linked.ino === own.ino
    ? linked
    : null;
}
