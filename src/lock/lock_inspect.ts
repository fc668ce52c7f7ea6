// Looking at a lock without taking it: the kernel's view (who holds it, in
// which mode) and the holder record. Nothing here disturbs a holder or waiter.

import { _checkTimeout } from "../base/checks.ts";
import { _promiseTry, _sleep } from "../base/promise.ts";
import { _processExists } from "../runtime/mod.ts";
import { _heldRecord, _viewOf } from "./kernel.ts";
import { _resolveTarget, type LockTarget } from "./lock_target.ts";
import type { LockHolder } from "../base/lock_holder.ts";

/** Where to find the lock of a file. */
export interface LockPathOptions {
  /**
   * The lock file of a guarded file given as a bare path or `{ guards }`
   * (to name a lock file itself, pass `{ lockFile }` as the target instead).
   *
   * @default {`${path}.lock`}
   */
  lockPath?: string | URL;
}

/** How long {@linkcode waitForRelease} waits, and how to give up early. */
export interface WaitOptions extends LockPathOptions {
  /**
   * How long to wait, in milliseconds.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /** Stops the wait; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * Tells whether any process holds the lock of `path`, without taking it.
 *
 * On Linux the answer comes from `/proc/locks` and never disturbs a holder or
 * a waiter, while the machine's lock table comes in one read (about 70
 * locks); when it is longer, a lock file it does not list is confirmed with a
 * non-blocking lock, held for an instant. Requires `--allow-read`.
 *
 * @param path What to look at: `{ lockFile }`, `{ guards }` or a bare path
 *   (the file guarded), as for `FileLock.acquire`.
 * @param options Where the lock file is.
 * @returns `true` while any process holds the lock, shared or exclusive.
 * @throws {LockError} If the lock path is a symlink, a directory, or another non-file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock, isLocked } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const lock = await FileLock.acquire(`${dir}/state.json`);
 * assert.ok(await isLocked(`${dir}/state.json`));
 * await lock.release();
 * assert.ok(!await isLocked(`${dir}/state.json`));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function isLocked(
  path: string | URL | LockTarget,
  options: LockPathOptions = {},
): Promise<boolean> {
  return _promiseTry(() =>
    _viewOf(
      _resolveTarget(path, "guards", "isLocked", options.lockPath).lockPath,
    )
      .mode !== null
  );
}

/**
 * Reads who holds the lock of `path`: the holder record, only while the
 * kernel says the lock is held. After the holder releases it or dies, this is
 * `null`, whatever the lock file still says.
 *
 * Requires `--allow-read`.
 *
 * @param path What to look at: `{ lockFile }`, `{ guards }` or a bare path
 *   (the file guarded), as for `FileLock.acquire`.
 * @param options Where the lock file is.
 * @returns The holder record, or `null` when the lock is free or the holder
 *   wrote no lockbox record (for example `flock(1)`).
 * @throws {LockError} If the lock path is a symlink, a directory, or another non-file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock, lockHolder } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const lock = await FileLock.acquire(`${dir}/state.json`, {
 *   metadata: { user: "ada" },
 * });
 * const holder = await lockHolder(`${dir}/state.json`);
 * assert.ok(holder?.pid === Deno.pid && holder.metadata?.user === "ada");
 * await lock.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function lockHolder(
  path: string | URL | LockTarget,
  options: LockPathOptions = {},
): Promise<LockHolder | null> {
  return _promiseTry(() =>
    _heldRecord(
      _resolveTarget(path, "guards", "lockHolder", options.lockPath).lockPath,
    )
  );
}

/**
 * Waits until no process holds the lock on `path`, without taking it.
 *
 * It checks the kernel's view with a short back-off (1 ms growing to 50 ms),
 * so it never takes the lock from anyone. Requires `--allow-read`.
 *
 * @param path What to watch: `{ lockFile }`, `{ guards }` or a bare path
 *   (the file guarded), as for `FileLock.acquire`.
 * @param options How long to wait and how to give up early.
 * @returns `true` once the lock is free, `false` if `timeout` ran out first.
 * @throws {RangeError} If `timeout` is negative or not a number.
 * @throws {LockError} If the lock path is a symlink, a directory, or another non-file.
 *
 * @example Wait up to two seconds
 * ```ts ignore
 * import { waitForRelease } from "@lockbox/lockbox";
 * if (!await waitForRelease("state.json", { timeout: 2_000 })) {
 *   console.error("still locked");
 * }
 * ```
 */
export async function waitForRelease(
  path: string | URL | LockTarget,
  options: WaitOptions = {},
): Promise<boolean> {
  const timeout = _checkTimeout(options.timeout);
  const { lockPath } = _resolveTarget(
    path,
    "guards",
    "waitForRelease",
    options.lockPath,
  );
  // The monotonic clock: a wall clock stepped back must not stretch the wait.
  const deadline = performance.now() + timeout;
  let delay = 1;
  while (true) {
    options.signal?.throwIfAborted();
    if (_viewOf(lockPath).mode === null) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await _sleep(Math.min(delay, left), options.signal);
    delay = Math.min(delay * 2, 50);
  }
}

/**
 * Tells whether a process with this pid exists. It says nothing about locks:
 * pids are reused, so lockbox never decides who holds a lock from a pid.
 *
 * Requires `--allow-run` (or `--allow-read` for `/proc` on Linux).
 *
 * @param pid The process id.
 * @returns `true` if a process with that pid exists now.
 * @throws {RangeError} If `pid` is not an integer from 1 to 2^31 - 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isProcessRunning } from "@lockbox/lockbox";
 * assert.ok(isProcessRunning(Deno.pid));
 * ```
 */
export function isProcessRunning(pid: number): boolean {
  // kill(2) takes a C int: a larger number would wrap to another pid (2**32
  // to 0, this process's group).
  if (!Number.isInteger(pid) || pid <= 0 || pid > 2 ** 31 - 1) {
    throw new RangeError(
      `Cannot check pid ${pid}: expected an integer from 1 to 2147483647`,
    );
  }
  return _processExists(pid);
}
