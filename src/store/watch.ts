// Watching a document: yield the current version, then each new one, woken
// by the kernel's notifications on the store's directory (so that an
// atomic rename into place and a journal append are both seen) and by a
// slow re-check for file systems that send none (NFS). Versions may be
// coalesced, never missed at the end: a wake-up that comes while a read
// runs makes the loop read again.

import { basename, dirname } from "node:path";
import { _lstat, _watchDirectory } from "../runtime/mod.ts";

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

  /** Sets the flag and wakes every waiter. */
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

/**
 * What a watch's read returns when it knows that `value` is a new version
 * (so it is yielded without comparing it with the last one).
 */
export class _Changed<T> {
  constructor(readonly value: T) {}
}

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
 * that it knows nothing changed, `_UNCHANGED`, or that it knows the value
 * is new, `_Changed`: then no whole document is serialized to compare).
 */
export async function* _watchFiles<T>(
  path: string,
  suffixes: string[],
  read: () => Promise<T | typeof _UNCHANGED | _Changed<T>>,
  options: WatchOptions,
): AsyncGenerator<StoreVersion<T>, void, undefined> {
  const signal = options.signal;
  if (signal?.aborted) return;
  const name = basename(path);
  const names = new Set([name, ...suffixes.map((suffix) => name + suffix)]);
  const wakeup = new _Wakeup();
  const watch = new _DirectoryWatch(dirname(path), names, () => wakeup.set());
  watch.arm();
  const timer = setInterval(
    () => wakeup.set(),
    options.recheckInterval ?? _RECHECK_MS,
  );
  // Released as soon as the signal aborts, even while the consumer is not
  // asking for the next version.
  const stop = () => {
    watch.close();
    clearInterval(timer);
  };
  signal?.addEventListener("abort", stop, { once: true });
  try {
    let version = 0;
    let last: string | undefined;
    while (!signal?.aborted) {
      const value = await read();
      if (value instanceof _Changed) {
        // Compared by read itself: the next plain value is compared with
        // nothing, so it is yielded.
        last = undefined;
        yield { value: value.value, version: ++version };
      } else if (value !== _UNCHANGED) {
        const key = JSON.stringify(value);
        if (key !== last) {
          last = key;
          yield { value, version: ++version };
        }
      }
      await wakeup.take(signal);
      // The directory may have gone, or come back: watch the one there now.
      if (!signal?.aborted) watch.arm();
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    stop();
  }
}

/**
 * The kernel watch on a store's directory, kept on the directory that is at
 * that path now: one deleted and made again (a deployment, a cleanup) is
 * watched again, found by a watch on its parent while it is missing (or by
 * the re-check, if the parent is missing too). A watch stays on the inode it
 * was set on, so without this one on a deleted directory would stay silent.
 */
class _DirectoryWatch {
  #dir: string;
  #dirName: string;
  #names: ReadonlySet<string>;
  #wake: () => void;
  /** `dev:ino` of the directory watched, or `null` when none is. */
  #watched: string | null = null;
  #unwatch = () => {};
  #unwatchParent: (() => void) | null = null;

  constructor(dir: string, names: ReadonlySet<string>, wake: () => void) {
    this.#dir = dir;
    this.#dirName = basename(dir);
    this.#names = names;
    this.#wake = wake;
  }

  /** Watches the directory at the path now, unless already watched. */
  arm(): void {
    let id: string | null = null;
    try {
      const stat = _lstat(this.#dir);
      if (stat?.isDirectory) id = `${stat.dev}:${stat.ino}`;
    } catch {
      // Cannot be looked at now: as if missing, the re-check tries again.
    }
    if (id !== null && id === this.#watched) return;
    this.#unwatch();
    this.#unwatch = () => {};
    this.#watched = null;
    if (id !== null) {
      try {
        this.#unwatch = _watchDirectory(this.#dir, (entry) => {
          // The directory itself (the watch reports it by its own name):
          // deleted or moved, so this watch has gone quiet for good. (A file
          // in it with the directory's name only costs an extra look.)
          if (entry === this.#dirName) this.#watched = null;
          if (
            entry === null || entry === this.#dirName || this.#names.has(entry)
          ) this.#wake();
        });
        this.#watched = id;
      } catch {
        // Gone again since the lstat: the parent's watch below.
      }
    }
    if (this.#watched === null && this.#unwatchParent === null) {
      try {
        this.#unwatchParent = _watchDirectory(dirname(this.#dir), (entry) => {
          if (entry === null || entry === this.#dirName) this.#wake();
        });
      } catch {
        // The parent is missing too: the re-check alone looks.
      }
    } else if (this.#watched !== null && this.#unwatchParent !== null) {
      this.#unwatchParent();
      this.#unwatchParent = null;
    }
  }

  /** Stops every watch. */
  close(): void {
    this.#unwatch();
    this.#unwatch = () => {};
    this.#watched = null;
    this.#unwatchParent?.();
    this.#unwatchParent = null;
  }
}
