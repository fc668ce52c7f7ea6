// Promise helpers that every supported runtime has (Node 20 lacks
// Promise.try).

/** Calls `fn` and returns its result as a promise; a throw becomes a rejection. */
export function _promiseTry<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}
