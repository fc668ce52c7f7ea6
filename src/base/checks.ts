// Checks of the options every module takes alike.

/**
 * Validates a duration option in milliseconds, from 0 to Infinity; a
 * missing one is `fallback`.
 */
export function _checkTimeout(
  timeout: number | undefined,
  name = "timeout",
  fallback = Infinity,
): number {
  if (timeout === undefined) return fallback;
  if (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0) {
    throw new RangeError(
      `Cannot use ${name} ${timeout}: expected milliseconds from 0 to Infinity`,
    );
  }
  return timeout;
}

/**
 * Throws a TypeError if a blocking wait comes with a way to end it early,
 * which a thread asleep in flock(2) cannot honour. A timeout of 0 never waits.
 */
export function _checkBlockingWait(
  option: "blocking" | "blockingLock",
  timeoutOption: "timeout" | "lockTimeout",
  timeout: number,
  signal: AbortSignal | undefined,
): void {
  if (signal === undefined && (timeout === Infinity || timeout === 0)) return;
  throw new TypeError(
    `Cannot wait with ${option}: true and ${
      signal === undefined
        ? `a ${timeoutOption} of ${timeout} ms`
        : "an abort signal"
    }: a thread blocked in flock(2) cannot be woken early; use ${timeoutOption}: Infinity or ${option}: false`,
  );
}
