// StoreBackend: where the seed systems keep their state when it is not the
// file system. PostgreSQL's backend (`@lockbox/lockbox/postgres`)
// implements it; the seed systems take it as their `backend` option and
// otherwise behave exactly as on files.

import type { JsonStore } from "./json_store.ts";
import type { LockHolder } from "../base/lock_holder.ts";

/** Options of {@linkcode StoreBackend.jsonStore}. */
export interface BackendStoreOptions<T> {
  /** The value while the document was never written. */
  initial: T | (() => T);
  /** Checks a value read or about to be written; throw to reject it. */
  validate?: (value: unknown) => T;
  /** How long a change waits for exclusion, in milliseconds. */
  lockTimeout?: number;
  /** Whether a write resolves only once it is durable. */
  durable?: boolean;
  /** How many previous versions to keep. */
  backups?: number;
  /**
   * A log that each new version appends one record to, in the same
   * transaction as the change (an audit log that never disagrees with the
   * document): `record` is given the new version's number. With a log,
   * every committed change makes a version, even one that leaves the
   * document as it was.
   */
  log?: { name: string; record: (version: number) => unknown };
}

/** A kept previous version of a backend's document. */
export interface BackendBackup {
  /** The version it was. */
  version: number;
  /** When it was replaced, as an ISO 8601 timestamp. */
  savedAt: string;
}

/** A lock a {@linkcode StoreBackend} holds. */
export interface BackendLock {
  /** The fencing token of this grant. */
  readonly token: number;
  /** Aborts as soon as the lock may have been lost. */
  readonly signal: AbortSignal;
  /** Releases the lock; idempotent. */
  release(): Promise<void>;
}

/** Options of {@linkcode StoreBackend.acquire}. */
export interface BackendLockOptions {
  /** How long to wait, in milliseconds (`0` tries once). */
  timeout?: number;
  /** Gives up waiting. */
  signal?: AbortSignal;
  /** Kept with the holder record. */
  metadata?: Record<string, unknown>;
}

/**
 * A place for the seed systems' documents, logs and locks other than the
 * file system, such as `PostgresBackend` from `@lockbox/lockbox/postgres`:
 * `new CaptureGroups("capture_groups", { backend })`.
 */
export interface StoreBackend {
  /**
   * The JSON document `name`, with the JsonStore API.
   *
   * @param name The document's name.
   * @param options Its initial value and how to read and write it.
   * @returns The store.
   */
  jsonStore<T>(name: string, options: BackendStoreOptions<T>): JsonStore<T>;
  /**
   * Appends records to the log `name`, all or none, in order.
   *
   * @param name The log's name.
   * @param records The records to append.
   * @returns A promise that resolves once they are committed.
   */
  appendLog(name: string, records: readonly unknown[]): Promise<void>;
  /**
   * The records of the log `name`, oldest first.
   *
   * @param name The log's name.
   * @returns The records.
   */
  readLog(name: string): Promise<unknown[]>;
  /**
   * Replaces the records of the log `name`, all or none.
   *
   * @param name The log's name.
   * @param records The records it should hold.
   * @returns A promise that resolves once committed.
   */
  writeLog(name: string, records: readonly unknown[]): Promise<void>;
  /**
   * The kept previous versions of the document `name` (see `backups`),
   * newest first.
   *
   * @param name The document's name.
   * @returns Its backups.
   */
  documentBackups(name: string): Promise<BackendBackup[]>;
  /**
   * One kept previous version of the document `name`.
   *
   * @param name The document's name.
   * @param version A version from `documentBackups`.
   * @returns The document as it was, or `undefined` if not kept.
   */
  readDocumentBackup(name: string, version: number): Promise<unknown>;
  /**
   * The names of the written documents that start with `prefix`, sorted.
   *
   * @param prefix The start of the names.
   * @returns The names.
   */
  documentNames(prefix: string): Promise<string[]>;
  /**
   * Waits for the exclusive lock `name`.
   *
   * @param name The lock's name.
   * @param options Timeout, signal and metadata.
   * @returns The held lock; release it with `release()`.
   */
  acquire(name: string, options?: BackendLockOptions): Promise<BackendLock>;
  /**
   * One try at the exclusive lock `name`.
   *
   * @param name The lock's name.
   * @param options Metadata for the holder record.
   * @returns The held lock, or `null` if another holds it.
   */
  tryAcquire(
    name: string,
    options?: { metadata?: Record<string, unknown> },
  ): Promise<BackendLock | null>;
  /**
   * Who holds the lock `name`.
   *
   * @param name The lock's name.
   * @returns The holder's record, or `null` while free.
   */
  lockHolder(name: string): Promise<LockHolder | null>;
}
