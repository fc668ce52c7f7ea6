// A lock file one owner keeps open between its acquisitions (a JsonStore
// with `keepOpen`), so that the next one needs no `open`. See
// ARCHITECTURE.md, "Kept open back to back".

import type { _LockHandle } from "../runtime/mod.ts";

/**
 * The unlocked lock file of its owner's last release, kept open until the
 * owner's next acquisition takes it or `close()` closes it. While kept it
 * holds no lock; the inode re-check after the next lock tells whether it is
 * still the file at the lock path.
 */
export class _KeptLockFile {
  #handle: _LockHandle | null = null;
  #lockPath = "";
  #closed = false;

  /** The kept file, if it is one of `lockPath`; it is no longer kept. */
  take(lockPath: string): _LockHandle | null {
    const handle = this.#handle;
    if (handle === null || this.#lockPath !== lockPath) return null;
    this.#handle = null;
    return handle;
  }

  /** Keeps a released, unlocked lock file; closes it once closed. */
  keep(lockPath: string, handle: _LockHandle): void {
    if (this.#closed) {
      handle.close();
      return;
    }
    if (this.#handle !== null && this.#handle !== handle) this.#handle.close();
    this.#handle = handle;
    this.#lockPath = lockPath;
  }

  /** Whether a file is kept open now. */
  get open(): boolean {
    return this.#handle !== null;
  }

  /** Closes the kept file; a file released later is closed at once. */
  close(): void {
    this.#closed = true;
    const handle = this.#handle;
    this.#handle = null;
    handle?.close();
  }
}
