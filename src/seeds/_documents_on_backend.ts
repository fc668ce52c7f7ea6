// DocumentStore on a StoreBackend (PostgreSQL): each document a document
// of the backend named `<root>/by_id/<id>`, its backups the backend's kept
// versions (named `v<version>`), its audit log a log `<root>/by_id/<id>/audit`
// appended in the same transaction as each change, and the index a log
// `<root>/index`. Same calls, results and errors as on files.

import { CorruptStoreError } from "../base/errors.ts";
import type { JsonStore } from "../store/json_store.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import type { AuditEvent } from "./document_types.ts";
import type {
  _DocumentSettings,
  _DocumentStorage,
  _IndexEntry,
} from "./_document_storage.ts";

/** DocumentStore's documents, backups, audit logs and index on a backend. */
export class _DocumentsOnBackend<T> implements _DocumentStorage<T> {
  #backend: StoreBackend;
  #settings: _DocumentSettings<T>;

  constructor(backend: StoreBackend, settings: _DocumentSettings<T>) {
    this.#backend = backend;
    this.#settings = settings;
  }

  async read(id: string): Promise<T | undefined> {
    return await this.#store(id).read();
  }

  /** The change, its backup and its audit event in one transaction. */
  async change(
    id: string,
    next: (current: () => Promise<T | undefined>) => Promise<T>,
    event: (backup: string | undefined) => AuditEvent,
    existing: boolean,
  ): Promise<string | undefined> {
    if (!existing) await this.#indexOnce(id);
    let existed = false;
    let backup: string | undefined;
    const store = this.#store(id, (version) => {
      // The version before this one is kept as a backup, if any are.
      if (existed && this.#settings.backups > 0) backup = `v${version - 1}`;
      return event(backup);
    });
    await store.transform(async (current) => {
      existed = current !== undefined;
      return await next(() => Promise.resolve(current));
    });
    return backup;
  }

  async history(id: string): Promise<AuditEvent[]> {
    return await this.#backend.readLog(this.#auditName(id)) as AuditEvent[];
  }

  async backups(id: string): Promise<string[]> {
    const kept = await this.#backend.documentBackups(this.#name(id));
    return kept.map((backup) => `v${backup.version}`);
  }

  isBackupName(name: string): boolean {
    return /^v\d+$/.test(name);
  }

  async readBackup(id: string, name: string): Promise<T | undefined> {
    const stored = await this.#backend.readDocumentBackup(
      this.#name(id),
      Number(name.slice(1)),
    );
    if (stored === undefined) return undefined;
    return this.#validated(stored, `${this.#name(id)} backup ${name}`);
  }

  async readIndex(): Promise<unknown[]> {
    return await this.#backend.readLog(this.#indexName);
  }

  async written(ids: string[]): Promise<string[]> {
    const names = new Set(await this.#backend.documentNames(this.#name("")));
    return ids.filter((id) => names.has(this.#name(id)));
  }

  /** The documents, each created when its first audit event says. */
  async documents(): Promise<_IndexEntry[]> {
    const prefix = this.#name("");
    const found: _IndexEntry[] = [];
    for (const name of await this.#backend.documentNames(prefix)) {
      const id = name.slice(prefix.length);
      // Only a document's own name: its audit log lives below it.
      if (id.includes("/")) continue;
      const [first] = await this.history(id);
      found.push({ id, created: first?.ts ?? new Date(0).toISOString() });
    }
    return found;
  }

  async writeIndex(entries: _IndexEntry[]): Promise<void> {
    await this.#backend.writeLog(this.#indexName, entries);
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

  /**
   * Adds `id` to the index before its first save, as on files (there under
   * the document's lock, here before the change's transaction).
   */
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
