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
