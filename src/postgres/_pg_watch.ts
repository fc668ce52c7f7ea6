// A PostgreSQL document's watch: woken by NOTIFY through the backend's one
// LISTEN session (and a re-check timer), it reads on from the version it
// has, subscribes again after the session ends, and waits out an outage.

import { LockError, StoreError } from "../base/errors.ts";
import { _copyJson } from "../store/json.ts";
import {
  _RECHECK_MS,
  _Wakeup,
  type StoreVersion,
  type WatchOptions,
} from "../store/watch.ts";
import type { _Subscription } from "./_listener.ts";
import type { _SessionPool } from "./_pool.ts";
import { _sessionLost } from "./_session.ts";

/** What a watch has of a document: a version, and the stored value it is of. */
export interface _View<T> {
  state: T;
  valueId: string | null;
  version: number;
}

/**
 * Yields the current version of the document `name`, then each new one;
 * `readSince` reads the last committed version on from the watch's view
 * (whole when the view is `null`) and gives the view to keep.
 */
export async function* _watchDocument<T>(
  pool: _SessionPool,
  name: string,
  readSince: (
    view: _View<T> | null,
  ) => Promise<{ current: StoreVersion<T>; view: _View<T> | null }>,
  options: WatchOptions,
): AsyncGenerator<StoreVersion<T>> {
  const signal = options.signal;
  if (signal?.aborted) return;
  const wakeup = new _Wakeup();
  const wake = () => wakeup.set();
  let subscription: _Subscription | null = null;
  const timer = setInterval(wake, options.recheckInterval ?? _RECHECK_MS);
  const stop = () => {
    clearInterval(timer);
    subscription?.close();
    subscription = null;
    wakeup.set();
  };
  signal?.addEventListener("abort", stop, { once: true });
  try {
    let last = -1;
    let view: _View<T> | null = null;
    while (!signal?.aborted) {
      let current: StoreVersion<T>;
      try {
        if (subscription === null || !subscription.live) {
          subscription?.close();
          subscription = null;
          subscription = await pool.subscribe(name, wake);
          if (signal?.aborted) break;
        }
        // After every (re)connect too: what was written meanwhile.
        const read = await readSince(view);
        view = read.view;
        current = read.current;
      } catch (error) {
        if (!_outage(error) || pool.closed()) throw error;
        // The server is away: listen again at the next re-check.
        subscription?.close();
        subscription = null;
        await wakeup.take(signal);
        continue;
      }
      if (current.version !== last) {
        last = current.version;
        // The caller's own copy: the watch's stays for the next version.
        yield view === null ? current : {
          value: _copyJson(current.value),
          version: current.version,
        };
      }
      await wakeup.take(signal);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    stop();
  }
}

/**
 * Whether an error says the server is out of reach (a session lost, a
 * connection refused), not that something is wrong with the request.
 */
function _outage(error: unknown): boolean {
  if (error instanceof LockError) return true; // could not connect
  return error instanceof StoreError && _sessionLost(error.cause);
}
