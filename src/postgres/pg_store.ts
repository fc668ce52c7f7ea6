// PgJsonStore: the JsonStore API and contract on a row of PostgreSQL, for
// processes on many hosts. Made by PostgresBackend.jsonStore().

import { _checkTimeout } from "../base/checks.ts";
import {
  JsonStore,
  type JsonStoreOptions,
  type StoreWriteOptions,
} from "../store/json_store.ts";
import {
  _checkBackups,
  _checkOnCorrupt,
  _STORAGE,
  type _Storage,
} from "../store/json_store_storage.ts";
import { type _DocumentText, _PgDocument, _TEXT } from "./_pg_document.ts";
import type { _SessionPool } from "./_pool.ts";
import { _checkName } from "./_session.ts";

/** How a PostgreSQL {@linkcode PgJsonStore} reads and writes its document. */
export interface PgJsonStoreOptions<T> {
  /** The value while the document was never written (a function is called each time). */
  initial: T | (() => T);
  /**
   * Checks a value read from or about to be written to the database; throw
   * to reject it. What it returns is what the store uses.
   */
  validate?: (value: unknown) => T;
  /**
   * `true`: a write resolves once its commit is durable
   * (`synchronous_commit = on`); `false`: once committed in memory
   * (`synchronous_commit = off`: a server crash may lose the last ~0.6 s of
   * writes, never half of one).
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * How many previous versions to keep in the `document_backups` table (of
   * the backend's schema), readable with `backups()`/`readBackup()` and
   * restorable with `restore()`.
   *
   * @default {0}
   */
  backups?: number;
  /**
   * How long `update` and `write` wait for the document's row lock, in
   * milliseconds: `0` does not wait, `Infinity` waits for ever.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * How long an `update`'s `fn` may keep the document's row locked without
   * a statement reaching the server, in milliseconds (PostgreSQL's
   * `idle_in_transaction_session_timeout`): past it the server ends the
   * session, other writers go on, and the update fails with nothing
   * written. `Infinity` (or `0`) for no limit, as an editor run by a person
   * needs.
   *
   * @default {60_000}
   */
  holdTimeout?: number;
  /**
   * A stored value `validate` rejects: `"throw"` a `CorruptStoreError` and
   * leave it, or `"quarantine"`: move it to the `quarantine` table, continue
   * from the newest backup that validates (else `initial`), and warn.
   *
   * @default {"throw"}
   */
  onCorrupt?: "throw" | "quarantine";
  /**
   * The PostgreSQL lock whose tokens fence this store: a write with
   * `{ fence: lock.token }` is refused if that lock has a later holder.
   *
   * @default {the document's name}
   */
  fenceLock?: string;
  /**
   * A log (in the `logs` table, read with `PostgresBackend.readLog`) that each
   * new version appends `record(version)` to in the same transaction, as
   * an audit trail that never disagrees with the document. With a log,
   * every committed change makes a version and a record, even one that
   * leaves the document as it was: an action happened.
   */
  log?: { name: string; record: (version: number) => unknown };
  /**
   * Receives warnings (a quarantined document).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
}

/** A kept previous version of a PostgreSQL store's document. */
export interface PgBackupInfo {
  /** The version it was. */
  version: number;
  /** When it was replaced, as an ISO 8601 timestamp. */
  savedAt: string;
}

/** Options a file store has and a PostgreSQL store refuses. */
const _FILE_ONLY = [
  "journal",
  "compactAt",
  "format",
  "ensureAscii",
  "lockPath",
  "blockingLock",
  "indent",
];

/** Checks a document name: 1 to 200 characters, no NUL. */
export function _checkDocumentName(name: unknown): string {
  return _checkName(name, "document", "capture_groups");
}

/**
 * A JSON document in a PostgreSQL row, shared by processes on any number
 * of hosts: the {@linkcode JsonStore} API and contract (`read`, `update`,
 * `transform`, `write`, fencing, `validate`, `onCorrupt`), plus a version
 * number and backups in tables. Made by `PostgresBackend.jsonStore()`.
 *
 * @example
 * ```ts ignore
 * import { PostgresBackend } from "@lockbox/lockbox/postgres";
 * await using db = await PostgresBackend.connect();
 * const store = db.jsonStore("counter", { initial: { n: 0 } });
 * await store.update((data) => { data.n++; });
 * console.log(await store.readWithVersion()); // { value: { n: 1 }, version: 1 }
 * ```
 */
export class PgJsonStore<T> extends JsonStore<T> {
  /** The document's name. */
  readonly name: string;
  #document: _PgDocument<T>;

  /** @internal Made by PostgresBackend.jsonStore() only. */
  constructor(
    pool: _SessionPool,
    name: string,
    options: PgJsonStoreOptions<T>,
  ) {
    if (options === undefined || !("initial" in options)) {
      throw new TypeError(
        "Cannot create a PostgreSQL store without options.initial: the value while the document was never written",
      );
    }
    _checkDocumentName(name);
    for (const key of _FILE_ONLY) {
      if ((options as unknown as Record<string, unknown>)[key] !== undefined) {
        throw new TypeError(
          `Cannot use ${key} on a PostgreSQL store: it is an option of file stores`,
        );
      }
    }
    const backups = _checkBackups(options.backups ?? 0);
    const onCorrupt = _checkOnCorrupt(options.onCorrupt ?? "throw");
    const fenceLock = _checkDocumentName(options.fenceLock ?? name);
    const document = new _PgDocument<T>(pool, {
      name,
      fenceLock,
      initial: options.initial,
      validate: options.validate,
      durable: options.durable ?? true,
      backups,
      lockTimeout: _checkTimeout(options.lockTimeout, "lockTimeout", 30_000),
      holdTimeout: _checkTimeout(options.holdTimeout, "holdTimeout", 60_000),
      onCorrupt,
      warn: options.onWarning ?? ((message) => console.warn(message)),
      log: options.log === undefined ? undefined : {
        name: _checkDocumentName(options.log.name),
        record: options.log.record,
      },
      text: (options as { [_TEXT]?: _DocumentText })[_TEXT],
    });
    const storage: _Storage<T> = {
      path: name,
      lockPath: fenceLock,
      document,
    };
    super(
      name,
      { initial: options.initial, [_STORAGE]: storage } as JsonStoreOptions<T>,
    );
    this.name = name;
    this.#document = document;
  }

  /**
   * The last committed document and its version: 0 while never written,
   * then one more with every committed change (a change that leaves the
   * document as it was makes no version).
   *
   * @returns The document and its version.
   */
  readWithVersion(): Promise<{ value: T; version: number }> {
    return this.#document.readVersioned();
  }

  /**
   * The kept previous versions (see `backups`), newest first.
   *
   * @returns One entry per kept version.
   */
  backups(): Promise<PgBackupInfo[]> {
    return this.#document.backups();
  }

  /**
   * A kept previous version's document, as it was stored.
   *
   * @param version A version from `backups()`.
   * @returns The document.
   * @throws {RangeError} If that version is not kept.
   */
  async readBackup(version: number): Promise<unknown> {
    const value = await this.#document.backup(version);
    if (value === undefined) {
      throw new RangeError(
        `Cannot read version ${version} of '${this.name}': it is not among the kept backups (see backups())`,
      );
    }
    return value;
  }

  /**
   * Makes a kept previous version the current document again, as a new
   * version, under the row lock (so the current one becomes a backup).
   *
   * @param version A version from `backups()`.
   * @param options A fencing token and an abort signal.
   * @returns A promise that resolves once it is committed.
   * @throws {RangeError} If that version is not kept.
   */
  async restore(
    version: number,
    options: StoreWriteOptions = {},
  ): Promise<void> {
    const value = await this.readBackup(version);
    await this.transform(() => value as T, options);
  }
}
