/**
 * lockbox: shared state on disk that many processes can change at once
 * without losing a byte.
 *
 * - {@linkcode FileLock} and {@linkcode withLock}: a cross-process lock on a
 *   sidecar `.lock` file, taken with `flock(2)` and released by the kernel when
 *   its holder dies; timeouts, `AbortSignal`, shared and exclusive modes,
 *   holder records and fencing tokens.
 * - {@linkcode isLocked}, {@linkcode lockHolder} and
 *   {@linkcode waitForRelease}: look at a lock without disturbing it.
 * - {@linkcode JsonStore}: a JSON document with locked read-modify-write,
 *   durable atomic replace, backups, fencing and corrupt-file handling that
 *   never loses data; {@linkcode atomicWriteFile}, {@linkcode appendJsonl} and
 *   {@linkcode readJsonl} underneath.
 * - The seed systems, file-compatible: {@linkcode CaptureGroups},
 *   {@linkcode Operations}, the archiver's run state
 *   ({@linkcode updateContiguousRunState} and friends) and its
 *   single-instance lock ({@linkcode acquireInstanceLock}), file checkout
 *   ({@linkcode FileService}, {@linkcode CheckoutRegistry}), a document store
 *   with backups and an audit log ({@linkcode DocumentStore}), batch work under
 *   locks ({@linkcode processFiles}) and the locking config
 *   ({@linkcode loadLockingConfig}).
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example Count under a lock from any number of processes
 * ```ts
 * import assert from "node:assert/strict";
 * import { withLock } from "@lockbox/lockbox";
 *
 * const dir = await Deno.makeTempDir();
 * const file = `${dir}/count.txt`;
 * await withLock(file, async () => {
 *   const count = Number(await Deno.readTextFile(file).catch(() => "0"));
 *   await Deno.writeTextFile(file, String(count + 1));
 * });
 * assert.ok(await Deno.readTextFile(file) === "1");
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

export * from "./src/base/errors.ts";
export * from "./src/base/lock_holder.ts";
export * from "./src/lock/lock_inspect.ts";
export * from "./src/lock/lock_monitor.ts";
export * from "./src/lock/file_lock.ts";
export * from "./src/lock/with_lock.ts";
export type { LockTarget } from "./src/lock/lock_target.ts";
export * from "./src/store/atomic_write.ts";
export * from "./src/store/jsonl.ts";
export * from "./src/store/json_store.ts";
export * from "./src/store/store_backend.ts";
export * from "./src/seeds/capture_groups.ts";
export * from "./src/seeds/operations.ts";
export * from "./src/seeds/archiver_state.ts";
export * from "./src/seeds/checkout.ts";
export * from "./src/seeds/document_store.ts";
export * from "./src/seeds/batch.ts";
export * from "./src/seeds/config.ts";
export {
  type RunResult,
  runWithLock,
  type RunWithLockOptions,
} from "./src/lock/run_command.ts";
export * from "./src/store/edit_store.ts";
