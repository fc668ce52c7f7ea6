// Promise helpers shared by the modules (and Promise.try, which Node 20
// lacks).

/** Calls `fn` and returns its result as a promise; a throw becomes a rejection. */
export function _promiseTry<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The longest delay `setTimeout` takes; a longer one fires at once. */
const _MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fn` once `ms` milliseconds have passed on the monotonic clock, for
 * any `ms` up to `Infinity` (never): longer delays than a timer takes are
 * waited in steps. Returns the cancel.
 */
export function _after(ms: number, fn: () => void): () => void {
  if (ms === Infinity) return () => {};
  const deadline = performance.now() + ms;
  let timer: ReturnType<typeof setTimeout>;
  const step = () => {
    const left = deadline - performance.now();
    if (left <= 0) return fn();
    timer = setTimeout(step, Math.min(left, _MAX_TIMER_MS));
  };
  timer = setTimeout(step, Math.min(ms, _MAX_TIMER_MS));
  return () => clearTimeout(timer);
}

/** Resolves after `ms`, or rejects with `signal.reason` when it aborts first. */
export function _sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      cancel();
      reject(signal!.reason);
    };
    const cancel = _after(ms, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * How many turns of the microtask queue `_afterIdleTurns` waits: long enough
 * for a loop of `await` calls (and a few wrapping async functions) to make
 * its next call, far shorter than anything that waits for I/O or a timer.
 */
const _IDLE_TURNS = 32;

/**
 * Calls `then` after _IDLE_TURNS turns of the microtask queue, unless
 * `cancelled()` is true at one of them: for work that waits until the calls
 * started together have had their turn (the journal's shared fdatasync),
 * with no timer for a test's op sanitizer to see.
 */
export function _afterIdleTurns(
  cancelled: () => boolean,
  then: () => void,
): void {
  let turns = _IDLE_TURNS;
  const check = () => {
    if (cancelled()) return;
    if (--turns > 0) queueMicrotask(check);
    else then();
  };
  queueMicrotask(check);
}

/** A promise with its settle functions (Node 20 lacks Promise.withResolvers). */
export interface _Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** A new `_Deferred`. */
export function _deferred(): _Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}
