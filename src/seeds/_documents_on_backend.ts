// DocumentStore on a StoreBackend (PostgreSQL): each document a document
// of the backend named `<root>/by_id/<id>`, its backups the backend's kept
// versions (named `v<version>`), its audit log a log `<root>/by_id/<id>/audit`
// appended in the same transaction as each change, and the index a log
// `<root>/index`. Same calls, results and errors as on files.

import { CorruptStoreError } from "../base/errors.ts";
import type { JsonStore } from "../store/json_store.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import type { AuditEvent, DocumentActionOptions } from "./document_types.ts";

/** The settings DocumentStore checked, for its backend half. */
export interface _DocumentSettings<T> {
  root: string;
  validate: ((value: unknown) => T) | undefined;
  backups: number;
  durable: boolean;
  lockTimeout: number;
}

/** A document that is not there, as DocumentStore reports it. */
export type _NotFound = (id: string, message?: string) => Error;

/** DocumentStore's documents, backups, audit logs and index on a backend. */
export class _BackendDocuments<T> {
  #backend: StoreBackend;
  #settings: _DocumentSettings<T>;
  #notFound: _NotFound;

  constructor(
    backend: StoreBackend,
    settings: _DocumentSettings<T>,
    notFound: _NotFound,
  ) {
    this.#backend = backend;
    this.#settings = settings;
    this.#notFound = notFound;
  }

  async get(id: string): Promise<T> {
    const doc = await this.#store(id).read();
    if (doc === undefined) throw this.#notFound(id);
    return doc;
  }

  async save(
    id: string,
    doc: T,
    options: DocumentActionOptions,
  ): Promise<{ backup?: string }> {
    await this.#indexOnce(id);
    return (await this.#change(id, "save", options, {}, () => doc)).made;
  }

  async update<R>(
    id: string,
    fn: (doc: T) => R | Promise<R>,
    options: DocumentActionOptions,
  ): Promise<R> {
    let result!: R;
    await this.#change(id, "update", options, {}, async (current) => {
      if (current === undefined) throw this.#notFound(id);
      result = await fn(current);
      return current;
    });
    return result;
  }

  async history(id: string): Promise<AuditEvent[]> {
    return await this.#backend.readLog(this.#auditName(id)) as AuditEvent[];
  }

  async backups(id: string): Promise<string[]> {
    const kept = await this.#backend.documentBackups(this.#name(id));
    return kept.map((backup) => `v${backup.version}`);
  }

  async restore(
    id: string,
    backup: string,
    options: DocumentActionOptions,
  ): Promise<void> {
    const version = typeof backup === "string"
      ? /^v(\d+)$/.exec(backup)?.[1]
      : undefined;
    if (version === undefined) {
      throw new TypeError(
        `Cannot restore backup ${
          JSON.stringify(backup)
        } of '${id}': expected a name from backups()`,
      );
    }
    const name = this.#name(id);
    await this.#change(
      id,
      "restore",
      options,
      { restored: backup },
      async () => {
        const stored = await this.#backend.readDocumentBackup(
          name,
          Number(version),
        );
        if (stored === undefined) {
          throw this.#notFound(
            `${id}/backups/${backup}`,
            `Cannot restore backup '${backup}' of document '${id}' in '${this.#settings.root}': it is not kept (only the newest ${this.#settings.backups} are; older ones are rotated away); pick one that backups('${id}') lists`,
          );
        }
        return this.#validated(stored, `${name} backup ${backup}`);
      },
    );
  }

  async list(): Promise<string[]> {
    const written = new Set(
      await this.#backend.documentNames(this.#name("")),
    );
    const ids = new Set<string>();
    for (const entry of await this.#backend.readLog(this.#indexName)) {
      const id = (entry as { id?: unknown } | null)?.id;
      // An entry whose first save never committed names nothing yet.
      if (typeof id === "string" && written.has(this.#name(id))) ids.add(id);
    }
    return [...ids];
  }

  async rebuildIndex(): Promise<number> {
    const prefix = this.#name("");
    const found: { id: string; created: string }[] = [];
    for (const name of await this.#backend.documentNames(prefix)) {
      const id = name.slice(prefix.length);
      // Only a document's own name: its audit log lives below it.
      if (id.includes("/")) continue;
      const [first] = await this.history(id);
      found.push({ id, created: first?.ts ?? new Date(0).toISOString() });
    }
    found.sort((a, b) =>
      a.created < b.created ? -1 : a.created > b.created ? 1 : 0
    );
    await this.#backend.writeLog(this.#indexName, found);
    return found.length;
  }

  /**
   * One change of a document, with its backup and audit event committed in
   * the same transaction.
   */
  async #change(
    id: string,
    action: string,
    options: DocumentActionOptions,
    payload: Record<string, unknown>,
    fn: (current: T | undefined) => Promise<T> | T,
  ): Promise<{ made: { backup?: string } }> {
    const actor = options.actor ?? "lockbox";
    if (typeof actor !== "string") {
      throw new TypeError(`Cannot use actor ${actor}: expected a string`);
    }
    let existed = false;
    const made: { backup?: string } = {};
    const store = this.#store(id, (version) => {
      // The version before this one is kept as a backup, if any are.
      if (existed && this.#settings.backups > 0) {
        made.backup = `v${version - 1}`;
      }
      return {
        action_id: crypto.randomUUID(),
        document_id: id,
        ts: new Date().toISOString(),
        actor,
        action_type: action,
        payload: made.backup === undefined
          ? payload
          : { ...payload, backup: made.backup },
      } satisfies AuditEvent;
    });
    await store.transform(async (current) => {
      existed = current !== undefined;
      return await fn(current);
    });
    return { made };
  }

  #store(
    id: string,
    record?: (version: number) => unknown,
  ): JsonStore<T | undefined> {
    return this.#backend.jsonStore<T | undefined>(this.#name(id), {
      initial: undefined,
      // validate's own error: the store makes it a CorruptStoreError for a
      // stored value, and passes it on for a new one, as on files.
      validate: (value) => {
        const validate = this.#settings.validate;
        return value === undefined || !validate ? value as T : validate(value);
      },
      lockTimeout: this.#settings.lockTimeout,
      durable: this.#settings.durable,
      backups: this.#settings.backups,
      log: record && { name: this.#auditName(id), record },
    });
  }

  #validated(value: unknown, what: string): T {
    const validate = this.#settings.validate;
    if (!validate) return value as T;
    try {
      return validate(value);
    } catch (error) {
      throw new CorruptStoreError(
        what,
        `validate rejected it (${(error as Error).message})`,
        undefined,
        { cause: error },
      );
    }
  }

  /** Adds `id` to the index before its first save, as on files. */
  async #indexOnce(id: string): Promise<void> {
    const existing = await this.#store(id).read();
    if (existing !== undefined) return;
    await this.#backend.appendLog(this.#indexName, [{
      id,
      created: new Date().toISOString(),
    }]);
  }

  #name(id: string): string {
    return `${this.#settings.root}/by_id/${id}`;
  }

  #auditName(id: string): string {
    return `${this.#name(id)}/audit`;
  }

  get #indexName(): string {
    return `${this.#settings.root}/index`;
  }
}
