// Which file a lock entry point flocks. One rule for all of them: the target
// `{ lockFile }` is the lock file itself, as `flock(1)` and py-filelock take
// it; `{ guards }` is a file guarded by its sidecar `<file>.lock`, as
// proper-lockfile does it. A bare path keeps each entry point's old meaning,
// which its parameter name says (`lockFile` or `path`).

import { _toPath } from "../runtime/mod.ts";

/**
 * What a lock entry point locks, said in the name:
 *
 * - `{ lockFile: "/var/lock/nightly.lock" }` flocks exactly that file (as
 *   `flock(1)` and Python's `filelock` do);
 * - `{ guards: "state.json" }` flocks the sidecar `state.json.lock` of the
 *   file it guards (as proper-lockfile does), so that the data file can be
 *   replaced atomically without losing the lock.
 *
 * `FileLock.acquire`, `FileLock.tryAcquire`, `withLock`, `isLocked`,
 * `lockHolder`, `waitForRelease`, `runWithLock`, `lockInfo`, `isLockStale`
 * and `acquireInstanceLock` all take it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock } from "@lockbox/lockbox";
 * const dir = await Deno.makeTempDir();
 * const mutex = await FileLock.acquire({ lockFile: `${dir}/nightly.lock` });
 * assert.equal(mutex.lockPath, `${dir}/nightly.lock`);
 * await mutex.release();
 * const data = await FileLock.acquire({ guards: `${dir}/state.json` });
 * assert.equal(data.lockPath, `${dir}/state.json.lock`);
 * await data.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export type LockTarget =
  | { readonly lockFile: string | URL }
  | { readonly guards: string | URL };

/** A resolved target: the file named and the file flocked. */
export interface _Target {
  /** The file guarded (the lock file itself for `{ lockFile }`). */
  path: string;
  /** The file flocked. */
  lockPath: string;
}

let _warned = false;

/**
 * Resolves `target` for `caller`. A bare path means what `bare` says: the
 * lock file, or the file guarded (then `lockPath`, the old option, may name
 * its lock file). A bare path ending in `.lock` given as a guarded file, with
 * no `lockPath`, is almost always meant as the lock file: it still locks the
 * sidecar, as it always did, but warns once per process.
 */
export function _resolveTarget(
  target: string | URL | LockTarget,
  bare: "lockFile" | "guards",
  caller: string,
  lockPathOption?: string | URL,
): _Target {
  if (typeof target === "string" || target instanceof URL) {
    const path = _toPath(target);
    if (bare === "lockFile") return { path, lockPath: path };
    if (lockPathOption !== undefined) {
      return { path, lockPath: _toPath(lockPathOption) };
    }
    if (path.endsWith(".lock")) _warnSidecar(caller, path);
    return { path, lockPath: `${path}.lock` };
  }
  const hasLockFile = typeof target === "object" && target !== null &&
    "lockFile" in target;
  const hasGuards = typeof target === "object" && target !== null &&
    "guards" in target;
  if (hasLockFile === hasGuards) {
    throw new TypeError(
      `Cannot lock with ${caller}: expected a path, { lockFile } or { guards }, got ${
        _describe(target)
      }`,
    );
  }
  if ("lockFile" in target) {
    const path = _toPath(target.lockFile);
    if (lockPathOption !== undefined) {
      throw new TypeError(
        `Cannot lock '${path}' with ${caller}: { lockFile } names the lock file, so the lockPath option cannot name another`,
      );
    }
    return { path, lockPath: path };
  }
  const path = _toPath(target.guards);
  return {
    path,
    lockPath: lockPathOption === undefined
      ? `${path}.lock`
      : _toPath(lockPathOption),
  };
}

function _describe(value: unknown): string {
  if (value === null || typeof value !== "object") return String(value);
  const keys = Object.keys(value);
  return keys.length === 0 ? "{}" : `{ ${keys.join(", ")} }`;
}

function _warnSidecar(caller: string, path: string): void {
  if (_warned) return;
  _warned = true;
  console.warn(
    `lockbox: ${caller}('${path}') locks '${path}.lock', the sidecar of the file it guards; ` +
      `pass { lockFile: '${path}' } to lock that file itself, or { guards: '${path}' } to keep the sidecar without this warning`,
  );
}
