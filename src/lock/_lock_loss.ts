// A FileLock's `signal`: it aborts with a LockLostError when the lock is
// released, or when its lock file is no longer the file at its path.

import { LockLostError } from "../base/errors.ts";
import { _stillLinked } from "../base/file_identity.ts";
import { type _LockHandle, _unrefTimer } from "../runtime/mod.ts";

/**
 * The loss signal of one lock, made on first read; then checked every
 * second while the lock is held, and at every read.
 */
export class _LossSignal {
  readonly #lockPath: string;
  readonly #handle: () => _LockHandle | null;
  #lost: AbortController | null = null;
  #watch: ReturnType<typeof setInterval> | undefined;

  /**
   * @param lockPath The lock file.
   * @param handle The lock's open lock file, `null` once released.
   */
  constructor(lockPath: string, handle: () => _LockHandle | null) {
    this.#lockPath = lockPath;
    this.#handle = handle;
  }

  get signal(): AbortSignal {
    if (this.#lost === null) {
      this.#lost = new AbortController();
      if (this.#handle() === null) {
        this.lose("it was released");
      } else {
        this.#watch = setInterval(() => this.#check(), 1000);
        _unrefTimer(this.#watch);
      }
    }
    this.#check();
    return this.#lost.signal;
  }

  /** Aborts the signal, if anyone has read it, and stops watching. */
  lose(reason: string): void {
    // Only when set: on Deno, the first clearInterval loads Node's timers
    // (some 15 ms of CPU that `lockbox run` does not need otherwise).
    if (this.#watch !== undefined) clearInterval(this.#watch);
    this.#watch = undefined;
    if (this.#lost !== null && !this.#lost.signal.aborted) {
      this.#lost.abort(new LockLostError(this.#lockPath, reason));
    }
  }

  #check(): void {
    const handle = this.#handle();
    if (handle === null || this.#lost === null) return;
    let current = false;
    try {
      current = _stillLinked(handle, this.#lockPath) !== null;
    } catch {
      // Cannot look: say nothing rather than a false alarm.
      current = true;
    }
    if (!current) {
      this.lose(
        `its lock file '${this.#lockPath}' was removed or replaced; another process may hold a lock on the new one`,
      );
    }
  }
}
