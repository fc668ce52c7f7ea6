// Node's file locks on Windows, for node.ts: LockFileEx and UnlockFileEx from
// kernel32, called through koffi on the HANDLE behind a Node descriptor.
//
// The HANDLE comes from libuv's `uv_get_osfhandle`, which node.exe exports
// for native addons. Not the C runtime's `_get_osfhandle`: Node links its C
// runtime statically, so ucrtbase.dll's descriptor table knows none of
// Node's descriptors (it answers -1 for a file Node opened).
//
// The range starts at offset 0, as Deno's `FsFile.lock` does (2^64 - 1
// bytes here), and any two ranges from offset 0 overlap, so Node and Deno
// processes exclude each other. Windows locks are mandatory and per handle:
// this handle may read its own locked file, any other handle may not (the
// holder record lives beside the lock file, see file_lock.ts). They stack:
// each unlock removes one, and a shared lock never turns exclusive in place
// (file_lock.ts's `_convert` lets go and tries the other mode).
//
// A wait polls with non-blocking tries (1 ms doubling to 100 ms) instead of
// parking a thread in a blocking LockFileEx, as Linux parks one in flock:
// a thread blocked there could be ended only by CancelSynchronousIo, and
// Node joins its worker threads at exit. A poller is not queued by the
// kernel: a waiter blocked in LockFileEx (Deno's) is served first, and a
// lock taken again and again can keep a poller waiting.

import { createRequire } from "node:module";
import process from "node:process";

/** The part of koffi this module uses. */
interface _Koffi {
  load(
    path: string,
  ): { func(signature: string): (...args: unknown[]) => unknown };
}

interface _Kernel32 {
  handleOf: (fd: number) => number;
  lockFileEx: (
    handle: number,
    flags: number,
    reserved: number,
    low: number,
    high: number,
    overlapped: Uint8Array,
  ) => number;
  unlockFileEx: (
    handle: number,
    reserved: number,
    low: number,
    high: number,
    overlapped: Uint8Array,
  ) => number;
  getLastError: () => number;
}

const LOCKFILE_FAIL_IMMEDIATELY = 1, LOCKFILE_EXCLUSIVE_LOCK = 2;
/** A lock held against a non-blocking request (and, from Wine, see unlock). */
const ERROR_LOCK_VIOLATION = 33;
/** An unlock of a range this handle has not locked (Windows). */
const ERROR_NOT_LOCKED = 158;
/** Node's names for the Windows errors a lock call may meet. */
const _CODES: Record<number, string> = {
  1: "ENOTSUP", // ERROR_INVALID_FUNCTION: a file system without locks
  5: "EACCES",
  6: "EBADF",
  50: "ENOTSUP",
};

let _loaded: _Kernel32 | undefined;

/** koffi, kernel32 and node.exe's `uv_get_osfhandle`, loaded on first use. */
function _kernel32(): _Kernel32 {
  if (_loaded !== undefined) return _loaded;
  let koffi: _Koffi;
  try {
    koffi = createRequire(import.meta.url)("koffi") as _Koffi;
  } catch (error) {
    throw new Error(
      `Cannot load koffi, which gives Node LockFileEx on Windows: ${
        (error as Error).message
      }; install it (npm install koffi: it ships a prebuilt binary for win32)`,
      { cause: error },
    );
  }
  const kernel32 = koffi.load("kernel32.dll");
  // koffi keeps the thread's last error from one koffi call to the next
  // (it saves it after each call and puts it back before the next), so
  // GetLastError called through koffi sees what the call before it left.
  _loaded = {
    handleOf: koffi.load(process.execPath).func(
      "intptr_t uv_get_osfhandle(int fd)",
    ) as _Kernel32["handleOf"],
    lockFileEx: kernel32.func(
      "int __stdcall LockFileEx(intptr_t file, uint32_t flags, uint32_t reserved, uint32_t low, uint32_t high, void *overlapped)",
    ) as _Kernel32["lockFileEx"],
    unlockFileEx: kernel32.func(
      "int __stdcall UnlockFileEx(intptr_t file, uint32_t reserved, uint32_t low, uint32_t high, void *overlapped)",
    ) as _Kernel32["unlockFileEx"],
    getLastError: kernel32.func(
      "uint32_t __stdcall GetLastError(void)",
    ) as _Kernel32["getLastError"],
  };
  return _loaded;
}

/** An Error for a failed kernel32 call, with a Node `code` where one fits. */
function _winError(what: string, error: number): Error {
  return Object.assign(
    new Error(`${what} failed (Windows error ${error})`),
    { code: _CODES[error] ?? "UNKNOWN", errno: error },
  );
}

/** The HANDLE behind descriptor `fd`. */
function _handle(k: _Kernel32, fd: number): number {
  const handle = k.handleOf(fd);
  if (handle === -1) {
    throw Object.assign(new Error(`descriptor ${fd} is not open`), {
      code: "EBADF",
    });
  }
  return handle;
}

/**
 * LockFileEx on the whole of `fd`'s file: `true` once taken, `false` for a
 * non-blocking request the lock is held against. Blocking (`wait`), it
 * holds up the calling thread until granted.
 */
function _lockFileEx(fd: number, exclusive: boolean, wait: boolean): boolean {
  const k = _kernel32();
  const flags = (exclusive ? LOCKFILE_EXCLUSIVE_LOCK : 0) |
    (wait ? 0 : LOCKFILE_FAIL_IMMEDIATELY);
  // OVERLAPPED (32 bytes on 64-bit Windows, 20 on 32-bit), zero: the range
  // starts at offset 0. Node's handles are synchronous, so the call returns
  // only once it is decided.
  const overlapped = new Uint8Array(32);
  if (k.lockFileEx(_handle(k, fd), flags, 0, ~0 >>> 0, ~0 >>> 0, overlapped)) {
    return true;
  }
  const error = k.getLastError();
  if (!wait && error === ERROR_LOCK_VIOLATION) return false;
  throw _winError("LockFileEx", error);
}

/** A non-blocking try for the lock on `fd`: `true` when taken. */
export function _winTryLock(fd: number, exclusive: boolean): boolean {
  return _lockFileEx(fd, exclusive, false);
}

/** Takes the lock on `fd`, blocking the calling thread until granted. */
export function _winLockSync(fd: number, exclusive: boolean): void {
  _lockFileEx(fd, exclusive, true);
}

/** The longest pause between two tries of a wait. */
const _MAX_PAUSE_MS = 100;

/**
 * Waits for the lock on `fd` by trying again, 1 ms after the first try
 * and doubling to 100 ms. The pending timer keeps the process alive, as a
 * waiting thread does on Linux.
 */
export async function _winWaitForLock(
  fd: number,
  exclusive: boolean,
): Promise<void> {
  for (let pause = 1;; pause = Math.min(pause * 2, _MAX_PAUSE_MS)) {
    if (_lockFileEx(fd, exclusive, false)) return;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/**
 * Removes one lock this handle holds on `fd`'s file. An unlock of nothing
 * is not an error, as flock's is not: Windows answers it with 158
 * (ERROR_NOT_LOCKED), Wine with 33 (ERROR_LOCK_VIOLATION).
 */
export function _winUnlock(fd: number): void {
  const k = _kernel32();
  const overlapped = new Uint8Array(32);
  if (k.unlockFileEx(_handle(k, fd), 0, ~0 >>> 0, ~0 >>> 0, overlapped)) return;
  const error = k.getLastError();
  if (error === ERROR_NOT_LOCKED || error === ERROR_LOCK_VIOLATION) return;
  throw _winError("UnlockFileEx", error);
}
