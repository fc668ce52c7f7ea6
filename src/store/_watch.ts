// Watching a document: yield the current version, then each new one, woken
// by the kernel's notifications on the store's directory (so that an
// atomic rename into place and a journal append are both seen) and by a
// slow re-check for file systems that send none (NFS). Versions may be
// coalesced, never missed at the end: a wake-up that comes while a read
// runs makes the loop read again.

import { basename, dirname } from "node:path";
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

/** What a watch's read returns when it knows nothing has changed. */
export const _UNCHANGED: unique symbol = Symbol("unchanged");

/** The default of `recheckInterval`, in milliseconds. */
export const _RECHECK_MS = 2_000;

/**
 * Checks `recheckInterval` (once, in `JsonStore.watch`: the storages take
 * the options as checked).
 */
export function _checkRecheck(value: number | undefined): number {
  const interval = value ?? _RECHECK_MS;
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
 * Watches a file store at `path`: its entry and those named `path` plus a
 * suffix in `suffixes` wake the loop, which yields what `read` gives
 * whenever it differs from the last version yielded (`read` may instead say
 * that it knows nothing changed: `_UNCHANGED`).
 */
export async function* _watchFiles<T>(
  path: string,
  suffixes: string[],
  read: () => Promise<T | typeof _UNCHANGED>,
  options: WatchOptions,
): AsyncGenerator<StoreVersion<T>, void, undefined> {
  const signal = options.signal;
  if (signal?.aborted) return;
  const name = basename(path);
  const names = new Set([name, ...suffixes.map((suffix) => name + suffix)]);
  const wakeup = new _Wakeup();
  let unwatch = () => {};
  try {
    unwatch = _watchDirectory(dirname(path), (entry) => {
      if (entry === null || names.has(entry)) wakeup.set();
    });
  } catch {
    // A directory that cannot be watched (not made yet): the re-check
    // alone sees the store.
  }
  const timer = setInterval(
    () => wakeup.set(),
    options.recheckInterval ?? _RECHECK_MS,
  );
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
      const value = await read();
      const key = value === _UNCHANGED ? last : JSON.stringify(value);
      if (key !== last) {
        last = key;
        yield { value: value as T, version: ++version };
      }
      await wakeup.take(signal);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    stop();
  }
}
