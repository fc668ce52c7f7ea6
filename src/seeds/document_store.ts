// A store of JSON documents (seed 004): durable atomic saves, rotating
// backups and an append-only audit log per document, and an index that can
// be rebuilt. The constructor chooses where they are kept, once: in seed
// 004's files (`_documents_on_files.ts`) or on a StoreBackend
// (`_documents_on_backend.ts`), both behind `_document_storage.ts`.

import { _checkTimeout } from "../base/checks.ts";
import { _toPath } from "../runtime/mod.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import {
  _checkDocumentId,
  type _DocumentStorage,
} from "./_document_storage.ts";
import { _DocumentsOnBackend } from "./_documents_on_backend.ts";
import { _DocumentsOnFiles } from "./_documents_on_files.ts";
import { _backendName } from "./_seed_db.ts";
import type { AuditEvent, DocumentActionOptions } from "./document_types.ts";

export type { AuditEvent, DocumentActionOptions };

/** How a {@linkcode DocumentStore} reads and writes. */
export interface DocumentStoreOptions<T> {
  /**
   * Checks a document read from disk or about to be saved; throw to reject
   * it. What it returns is what the store uses.
   */
  validate?: (value: unknown) => T;
  /**
   * How many previous versions of each document to keep in its `backups/`
   * directory (oldest removed first); `0` keeps none.
   *
   * @default {10}
   */
  backups?: number;
  /**
   * `true`: fsync every save, backup, audit and index line before resolving,
   * so they survive a power loss. `false`: they survive a crash of the
   * process, not of the machine.
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * How long to wait for a document's lock, in milliseconds.
   *
   * @default {30_000}
   */
  lockTimeout?: number;
  /**
   * Receives warnings (a torn or damaged line in an audit log or the index).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
  /**
   * Keep the documents elsewhere than in files, such as in PostgreSQL
   * (`PostgresBackend` from `@lockbox/lockbox/postgres`): `root` is then a
   * name prefix; each document is the backend's document
   * `<root>/by_id/<id>` with its backups kept as versions (named `v<N>`),
   * its audit log is appended in the same transaction as each change, and
   * the index is a log. Calls, results and errors stay the same.
   *
   * @default {the file system}
   */
  backend?: StoreBackend;
}

/**
 * No document has this id.
 *
 * @example
 * ```ts ignore
 * import { DocumentNotFoundError, DocumentStore } from "@lockbox/lockbox";
 * try {
 *   await new DocumentStore("reports").get("q3");
 * } catch (error) {
 *   if (error instanceof DocumentNotFoundError) console.error(error.id);
 * }
 * ```
 */
export class DocumentNotFoundError extends Error {
  /** Always `"DocumentNotFoundError"`. */
  override name = "DocumentNotFoundError";
  /**
   * Creates a DocumentNotFoundError.
   *
   * @param id The missing document's id (or `<id>/backups/<name>`).
   * @param root The store searched.
   * @param message What to say instead of the usual "save it first".
   */
  constructor(readonly id: string, readonly root: string, message?: string) {
    super(
      message ??
        `Cannot find document '${id}' in '${root}'; save it first, or check the id with list()`,
    );
  }
}

/**
 * Seed 004's document storage on lockbox. Layout under `root`:
 *
 * - `index.jsonl`: one line `{"id", "created"}` per document, appended when
 *   it is first saved; {@linkcode DocumentStore.rebuildIndex} rewrites it
 *   from the directories.
 * - `by_id/<id>/document.json`: the document, replaced atomically (and
 *   durably by default) on every save.
 * - `by_id/<id>/backups/document.json.<YYYYMMDDTHHMMSS_ffffff>.bak`: previous
 *   versions, newest kept.
 * - `by_id/<id>/audit.jsonl`: one {@linkcode AuditEvent} per change, each
 *   appended with one write.
 * - `by_id/<id>/.lock`: the document's lock, as in seed 004, so a Python
 *   process holding it with `portalocker` (flock) excludes lockbox too.
 *
 * A save, its backup and its audit event happen under the document's lock;
 * a failed backup stops the save, and a failed audit append is an error the
 * caller sees.
 *
 * Requires `--allow-read` and `--allow-write`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DocumentStore } from "@lockbox/lockbox";
 * const root = await Deno.makeTempDir();
 * const docs = new DocumentStore<{ title: string }>(root);
 * await docs.save("q3", { title: "Q3 report" }, { actor: "ann" });
 * await docs.update("q3", (doc) => {
 *   doc.title = "Q3 report (final)";
 * });
 * assert.ok((await docs.history("q3")).length === 2);
 * assert.ok((await docs.backups("q3")).length === 1);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class DocumentStore<T> {
  /** The store's root directory (on a backend: the names' prefix). */
  readonly root: string;
  #backups: number;
  #storage: _DocumentStorage<T>;

  /**
   * Creates a DocumentStore.
   *
   * @param root The root directory (created on the first save; with a
   *   backend, the names' prefix).
   * @param options Validation, backups, durability, lock timeout, warnings
   *   and the backend.
   * @throws {RangeError} If `backups` or `lockTimeout` is out of range.
   */
  constructor(root: string | URL, options: DocumentStoreOptions<T> = {}) {
    this.root = options.backend === undefined
      ? _toPath(root)
      : _backendName(root, "a document store");
    const backups = options.backups ?? 10;
    if (!Number.isInteger(backups) || backups < 0) {
      throw new RangeError(
        `Cannot keep ${backups} backups: expected a non-negative integer`,
      );
    }
    const settings = {
      root: this.root,
      validate: options.validate,
      backups,
      durable: options.durable ?? true,
      lockTimeout: _checkTimeout(options.lockTimeout, "lockTimeout", 30_000),
      warn: options.onWarning ?? ((message: string) => console.warn(message)),
      notFound: (id: string, message?: string) =>
        new DocumentNotFoundError(id, this.root, message),
    };
    this.#backups = backups;
    this.#storage = options.backend === undefined
      ? new _DocumentsOnFiles<T>(settings)
      : new _DocumentsOnBackend<T>(options.backend, settings);
  }

  /**
   * Reads a document (a consistent version: saves are atomic renames).
   *
   * @param id The document's id.
   * @returns The document.
   * @throws {DocumentNotFoundError} If there is no such document.
   * @throws {CorruptStoreError} If its file does not parse or validate.
   * @throws {TypeError} If `id` is empty or contains a path separator or `..`.
   */
  async get(id: string): Promise<T> {
    _checkDocumentId(id);
    const value = await this.#storage.read(id);
    if (value === undefined) throw new DocumentNotFoundError(id, this.root);
    return value;
  }

  /**
   * Saves a whole document: backs up the current version, replaces it, and
   * appends a `"save"` audit event, all under the document's lock.
   *
   * @param id The document's id.
   * @param doc The new document.
   * @param options Who saves it.
   * @returns The name of the backup made of the previous version, if any.
   * @throws {TypeError} If `id` is bad, `doc` is not JSON or `actor` is not
   *   a string (checked before the lock is taken).
   * @throws {StoreError} If the backup, the write or the audit append fails.
   * @throws {LockTimeoutError} If the lock was not free within `lockTimeout`.
   */
  async save(
    id: string,
    doc: T,
    options: DocumentActionOptions = {},
  ): Promise<{ backup?: string }> {
    _checkDocumentId(id);
    return await this.#change(id, "save", options, {}, () => doc);
  }

  /**
   * Changes a document under its lock: reads it, lets `fn` change it in
   * place, then saves it as {@linkcode DocumentStore.save} does (with an
   * `"update"` audit event). If `fn` throws, nothing is written.
   *
   * @param id The document's id.
   * @param fn Changes the document in place; what it returns is returned.
   * @param options Who changes it.
   * @returns What `fn` returned.
   * @throws {DocumentNotFoundError} If there is no such document.
   * @throws {CorruptStoreError} If its file does not parse or validate.
   * @throws {StoreError} If the backup, the write or the audit append fails.
   */
  async update<R>(
    id: string,
    fn: (doc: T) => R | Promise<R>,
    options: DocumentActionOptions = {},
  ): Promise<R> {
    _checkDocumentId(id);
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot update document '${id}': fn must be a function`,
      );
    }
    let result!: R;
    await this.#change(id, "update", options, {}, async (current) => {
      const doc = await current();
      if (doc === undefined) throw new DocumentNotFoundError(id, this.root);
      result = await fn(doc);
      return doc;
    }, true);
    return result;
  }

  /**
   * A document's audit log, oldest first. A torn last line (a crash mid
   * append) or a damaged line is left out with a warning naming the count.
   *
   * @param id The document's id.
   * @returns The events.
   * @throws {StoreError} If the log cannot be read.
   */
  async history(id: string): Promise<AuditEvent[]> {
    _checkDocumentId(id);
    return await this.#storage.history(id);
  }

  /**
   * The backups of a document, newest first.
   *
   * @param id The document's id.
   * @returns Backup names, for {@linkcode DocumentStore.restore}.
   */
  async backups(id: string): Promise<string[]> {
    _checkDocumentId(id);
    return await this.#storage.backups(id);
  }

  /**
   * Makes a backup the current version again (itself a change: the current
   * version is backed up first, and a `"restore"` event is logged).
   *
   * @param id The document's id.
   * @param backup A name from {@linkcode DocumentStore.backups}.
   * @param options Who restores it.
   * @throws {DocumentNotFoundError} If there is no such backup.
   * @throws {CorruptStoreError} If the backup does not parse or validate.
   */
  async restore(
    id: string,
    backup: string,
    options: DocumentActionOptions = {},
  ): Promise<void> {
    _checkDocumentId(id);
    if (typeof backup !== "string" || !this.#storage.isBackupName(backup)) {
      throw new TypeError(
        `Cannot restore backup ${
          JSON.stringify(backup)
        } of '${id}': expected a name from backups()`,
      );
    }
    await this.#change(
      id,
      "restore",
      options,
      { restored: backup },
      async () => {
        const doc = await this.#storage.readBackup(id, backup);
        if (doc === undefined) {
          throw new DocumentNotFoundError(
            `${id}/backups/${backup}`,
            this.root,
            `Cannot restore backup '${backup}' of document '${id}' in '${this.root}': it is not kept (only the newest ${this.#backups} are; older ones are rotated away); pick one that backups('${id}') lists`,
          );
        }
        return doc;
      },
    );
  }

  /**
   * The ids in the index, in the order they were first saved.
   *
   * @returns The ids (empty while there is no index).
   */
  async list(): Promise<string[]> {
    const ids = new Set<string>();
    for (const entry of await this.#storage.readIndex()) {
      const id = (entry as { id?: unknown } | null)?.id;
      if (typeof id === "string") ids.add(id);
    }
    // An entry whose save never finished (a crash between the index and the
    // document) names nothing yet.
    return await this.#storage.written([...ids]);
  }

  /**
   * Rewrites the index from the documents stored (on files
   * `by_id/<id>/document.json`, each dated by its file's modification time;
   * on a backend, by its first audit event).
   *
   * @returns How many documents it lists.
   * @throws {StoreError} If the directories cannot be read or the index written.
   */
  async rebuildIndex(): Promise<number> {
    const found = await this.#storage.documents();
    found.sort((a, b) =>
      a.created < b.created ? -1 : a.created > b.created ? 1 : 0
    );
    await this.#storage.writeIndex(found);
    return found.length;
  }

  /** One change with its backup and its audit event, as the storage does it. */
  async #change(
    id: string,
    action: string,
    options: DocumentActionOptions,
    payload: Record<string, unknown>,
    next: (current: () => Promise<T | undefined>) => Promise<T> | T,
    existing = false,
  ): Promise<{ backup?: string }> {
    const actor = options.actor ?? "lockbox";
    if (typeof actor !== "string") {
      throw new TypeError(`Cannot use actor ${actor}: expected a string`);
    }
    const backup = await this.#storage.change(
      id,
      async (current) => await next(current),
      (backup): AuditEvent => ({
        action_id: crypto.randomUUID(),
        document_id: id,
        ts: new Date().toISOString(),
        actor,
        action_type: action,
        payload: backup === undefined ? payload : { ...payload, backup },
      }),
      existing,
    );
    return backup === undefined ? {} : { backup };
  }
}
