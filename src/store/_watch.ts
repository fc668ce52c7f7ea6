// Watching a document: yield the current version, then each new one, woken
// by the kernel's notifications on the store's directory (so that an
// atomic rename into place and a journal append are both seen) and by a
// slow re-check for file systems that send none (NFS). Versions may be
// coalesced, never missed at the end: a wake-up that comes while a read
// runs makes the loop read again.

import { _watchDirectory } from "../runtime/mod.ts";

/** One version of a watched store. */
export interface StoreVersion<T> {
  /** The document. */
  value: T;
  /**
   * Grows with every version yielded. On PostgreSQL it is the document's
   * version; on files, which keep no version number (so that a file stays
   * exactly what other tools expect), it counts the versions this watch
   * has seen.
   */
  version: number;
}

/** Options of `JsonStore.watch`. */
export interface WatchOptions {
  /** Ends the watch (the loop ends; nothing is thrown). */
  signal?: AbortSignal;
  /**
   * How often to read the store even without a notification, in
   * milliseconds: the safety net for file systems that deliver no events
   * (NFS) and for a notification lost in between.
   *
   * @default {2_000}
   */
  recheckInterval?: number;
}

/** A flag a waiter can sleep on: set by events, cleared by the reader. */
export class _Wakeup {
  #set = false;
  #waiters: (() => void)[] = [];

  /** Sets the flag and wakes the waiter. */
  set(): void {
    this.#set = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Waits until the flag is set (or `signal` aborts), and clears it. */
  async take(signal: AbortSignal | undefined): Promise<void> {
    if (!this.#set && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        this.#waiters.push(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
    this.#set = false;
  }
}

/** Checks `recheckInterval`. */
export function _checkRecheck(value: number | undefined): number {
  const interval = value ?? 2_000;
  if (
    typeof interval !== "number" || !(interval >= 10) ||
    interval > 2 ** 31 - 1
  ) {
    throw new RangeError(
      `Cannot use recheckInterval ${interval}: expected milliseconds from 10 to ${
        2 ** 31 - 1
      }`,
    );
  }
  return interval;
}

/**
 * Watches a file store: `read` gives the document and a key that changes
 * with it; `names` are the entries of `dir` whose changes matter.
 */
export async function* _watchFiles<T>(
  dir: string,
  names: (name: string) => boolean,
  read: () => Promise<{ value: T; key: string }>,
  options: WatchOptions,
): AsyncGenerator<StoreVersion<T>, void, undefined> {
  const signal = options.signal;
  const interval = _checkRecheck(options.recheckInterval);
  if (signal?.aborted) return;
  const wakeup = new _Wakeup();
  let unwatch = () => {};
  try {
    unwatch = _watchDirectory(dir, (name) => {
      if (name === null || names(name)) wakeup.set();
    });
  } catch {
    // A directory that cannot be watched (not made yet): the re-check
    // alone sees the store.
  }
  const timer = setInterval(() => wakeup.set(), interval);
  // Released as soon as the signal aborts, even while the consumer is not
  // asking for the next version.
  const stop = () => {
    unwatch();
    clearInterval(timer);
  };
  signal?.addEventListener("abort", stop, { once: true });
  try {
    let version = 0;
    let last: string | undefined;
    while (!signal?.aborted) {
      const { value, key } = await read();
      if (key !== last) {
        last = key;
        yield { value, version: ++version };
      }
      await wakeup.take(signal);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    stop();
  }
}
