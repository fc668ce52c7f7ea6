// What differs between the systems lockbox runs on, in one place: the OS,
// the C library's constants for the FFI paths (Deno's, and Node's through
// _libc.ts), and whether `/proc` may be used.
// Runtime-agnostic: both runtime layers import it.

/** The operating system, as Deno names it (`"linux"`, `"darwin"`, `"windows"`, ...). */
export const _os: string = (() => {
  const g = globalThis as {
    Deno?: { build?: { os?: string } };
    process?: { platform?: string };
  };
  const os = g.Deno?.build?.os ?? g.process?.platform ?? "unknown";
  return os === "win32" ? "windows" : os;
})();

/** Whether this is Windows (no flock, no descriptors to pass, no `/proc`). */
export const _onWindows: boolean = _os === "windows";

/** The C library and its constants, for `flock(2)` and `fcntl(2)` by FFI. */
export interface _CLibrary {
  /** The file `dlopen` loads. */
  path: string;
  /** The function that returns a pointer to this thread's `errno`. */
  errnoFunction: "__errno_location" | "__error";
  EINTR: number;
  EBADF: number;
  /** What a non-blocking `flock` answers when the lock is held elsewhere. */
  EWOULDBLOCK: number;
  LOCK_SH: number;
  LOCK_EX: number;
  LOCK_NB: number;
  LOCK_UN: number;
  F_GETFD: number;
  F_SETFD: number;
  FD_CLOEXEC: number;
  /**
   * The signal that interrupts a waiting thread's flock on Node (`SIGURG`:
   * ignored by default, so a stray one never ends the process).
   */
  SIGURG: number;
  /**
   * Whether a waiting thread can have the kernel interrupt it on a timer of
   * its own (Linux's `timer_create` with `SIGEV_THREAD_ID`).
   */
  threadTimers: boolean;
}

// flock's and fcntl's numbers, EINTR and EBADF are BSD's on all three;
// EWOULDBLOCK and SIGURG differ.
const _BSD_FLOCK = {
  LOCK_SH: 1,
  LOCK_EX: 2,
  LOCK_NB: 4,
  LOCK_UN: 8,
  F_GETFD: 1,
  F_SETFD: 2,
  FD_CLOEXEC: 1,
  EINTR: 4,
  EBADF: 9,
} as const;

/** The C library of each system lockbox reaches by FFI. */
export const _C_LIBRARIES: Readonly<Record<string, _CLibrary>> = {
  linux: {
    ..._BSD_FLOCK,
    path: "libc.so.6",
    errnoFunction: "__errno_location",
    EWOULDBLOCK: 11,
    SIGURG: 23,
    threadTimers: true,
  },
  darwin: {
    ..._BSD_FLOCK,
    path: "libSystem.B.dylib",
    errnoFunction: "__error",
    EWOULDBLOCK: 35,
    SIGURG: 16,
    threadTimers: false,
  },
  freebsd: {
    ..._BSD_FLOCK,
    path: "libc.so.7",
    errnoFunction: "__error",
    EWOULDBLOCK: 35,
    SIGURG: 16,
    threadTimers: false,
  },
};

/**
 * The C library of `os`.
 *
 * @throws {Error} With `code` `"ENOSYS"` where there is none with flock
 * (Windows).
 */
export function _cLibrary(os: string = _os): _CLibrary {
  const library = Object.hasOwn(_C_LIBRARIES, os)
    ? _C_LIBRARIES[os]
    : undefined;
  if (library !== undefined) return library;
  throw Object.assign(
    new Error(
      os === "windows"
        ? "not on Windows: it has no flock(2) on inherited descriptors"
        : `not on ${os}: lockbox knows no C library with flock(2) there`,
    ),
    { code: "ENOSYS" },
  );
}

/** The environment variable that turns every `/proc` use off (a test aid). */
export const _NO_PROC_VARIABLE = "LOCKBOX_NO_PROC";

let _proc: boolean | undefined;

/**
 * Whether lockbox may read `/proc`: on Linux, unless `LOCKBOX_NO_PROC=1`
 * (read once), which makes it take the paths of systems without one
 * (macOS) so that tests on Linux run them. `readEnv` is the runtime's own.
 */
export function _procAllowed(
  readEnv: (name: string) => string | undefined,
): boolean {
  if (_proc === undefined) {
    let off = false;
    try {
      off = readEnv(_NO_PROC_VARIABLE) === "1";
    } catch {
      // No permission to read it: the default.
    }
    _proc = _os === "linux" && !off;
  }
  return _proc;
}
