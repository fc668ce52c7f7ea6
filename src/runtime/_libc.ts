// What Node's runtime layer needs to know about the C library of each
// platform it calls flock(2) in through koffi, taken from the one table of C
// libraries (_platform.ts, which Deno's FFI paths read too), under Node's
// platform names.

import { _C_LIBRARIES } from "./_platform.ts";

/** The C library facts of one platform. */
export interface _LibcFacts {
  /** The file `koffi.load()` opens. */
  library: string;
  /** `EWOULDBLOCK` (= `EAGAIN`): a non-blocking flock found the lock held. */
  EWOULDBLOCK: number;
  /** `EINTR`: a signal interrupted a blocking flock. */
  EINTR: number;
  /** The signal that interrupts a waiting thread's flock (`SIGURG`). */
  SIGURG: number;
  /** Whether a waiting thread can be interrupted by a timer of its own. */
  threadTimers: boolean;
}

/**
 * The C library facts of `platform` (Node's `process.platform`).
 *
 * @throws {Error} Naming the platform, where lockbox has no flock for it
 * (on win32, whose locks are LockFileEx instead).
 */
export function _libcFor(platform: string): _LibcFacts {
  if (platform === "win32") {
    throw new Error(
      "Cannot use flock(2) on Node on win32: Windows has none " +
        "(lockbox locks files there with LockFileEx, _node_windows.ts)",
    );
  }
  const c = Object.hasOwn(_C_LIBRARIES, platform)
    ? _C_LIBRARIES[platform]
    : undefined;
  if (c === undefined) {
    throw new Error(
      `Cannot lock files on Node on ${platform}: lockbox knows no C library there (it runs on Linux, macOS and FreeBSD)`,
    );
  }
  const { path: library, EWOULDBLOCK, EINTR, SIGURG, threadTimers } = c;
  return { library, EWOULDBLOCK, EINTR, SIGURG, threadTimers };
}
