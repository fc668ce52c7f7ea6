// What Node's runtime layer needs to know about the C library of each
// platform it calls flock(2) in through koffi: the library to load and the
// numbers that differ between systems. One table, so that a new platform is
// one entry (and its test), never a condition scattered through node.ts.

/** The C library facts of one platform. */
export interface _LibcFacts {
  /** The file `koffi.load()` opens. */
  library: string;
  /** `EWOULDBLOCK` (= `EAGAIN`): a non-blocking flock found the lock held. */
  EWOULDBLOCK: number;
  /** `EINTR`: a signal interrupted a blocking flock. */
  EINTR: number;
  /**
   * The signal that interrupts a waiting thread's flock (`SIGURG`: ignored
   * by default, so a stray one never ends the process).
   */
  SIGURG: number;
  /**
   * Whether a waiting thread can have the kernel interrupt it on a timer of
   * its own (Linux's `timer_create` with `SIGEV_THREAD_ID`).
   */
  threadTimers: boolean;
}

const _TABLE: Record<string, _LibcFacts | string> = {
  linux: {
    library: "libc.so.6",
    EWOULDBLOCK: 11,
    EINTR: 4,
    SIGURG: 23,
    threadTimers: true,
  },
  darwin: {
    library: "libSystem.B.dylib",
    EWOULDBLOCK: 35,
    EINTR: 4,
    SIGURG: 16,
    threadTimers: false,
  },
  freebsd: {
    library: "libc.so.7",
    EWOULDBLOCK: 35,
    EINTR: 4,
    SIGURG: 16,
    threadTimers: false,
  },
  win32: "not supported yet on win32 (Windows has no flock(2); " +
    "lockbox's Node locks run on Linux, macOS and FreeBSD)",
};

/**
 * The C library facts of `platform` (Node's `process.platform`).
 *
 * @throws {Error} Naming the platform, where lockbox has no flock for it.
 */
export function _libcFor(platform: string): _LibcFacts {
  const facts = _TABLE[platform];
  if (facts === undefined) {
    throw new Error(
      `Cannot lock files on Node on ${platform}: lockbox knows no C library there (it runs on Linux, macOS and FreeBSD)`,
    );
  }
  if (typeof facts === "string") {
    throw new Error(`Cannot lock files on Node on ${platform}: ${facts}`);
  }
  return facts;
}
