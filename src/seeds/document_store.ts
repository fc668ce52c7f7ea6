// A store of JSON documents (seed 004): one directory per document with
// durable atomic saves, rotating backups and an append-only audit log, and a
// global index that can be rebuilt from the files.

import { _checkTimeout } from "../base/checks.ts";
import { join } from "node:path";
import {
  _errorCode,
  _link,
  _lstat,
  _readDir,
  _removeIfExists,
  _syncDirectory,
  _toPath,
} from "../runtime/mod.ts";
import {
  _appendHoldingLock,
  _checkTarget,
  _makeDirs,
  _readStoreFile,
  _replaceHoldingLock,
} from "../store/atomic.ts";
import { _fsError } from "../base/fs_errors.ts";
import { _parseJson, _toJson } from "../store/json.ts";
import { _parsePython, _toPython } from "../store/python_json.ts";
import { appendJsonl, readJsonl } from "../store/jsonl.ts";
import { withLock } from "../lock/file_lock.ts";
import { StoreError } from "../base/errors.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import { _BackendDocuments } from "./_documents_on_backend.ts";
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

const _DOCUMENT = "document.json";
const _BACKUP = /^document\.json\.(\d{8}T\d{6}_\d{6})\.bak$/;

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
  /** The store's root directory. */
  readonly root: string;
  #validate: ((value: unknown) => T) | undefined;
  #backups: number;
  #durable: boolean;
  #lockTimeout: number;
  #warn: (message: string) => void;
  #onBackend: _BackendDocuments<T> | null = null;

  /**
   * Creates a DocumentStore.
   *
   * @param root The root directory (created on the first save).
   * @param options Validation, backups, durability and lock timeout.
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
    const lockTimeout = _checkTimeout(
      options.lockTimeout,
      "lockTimeout",
      30_000,
    );
    this.#validate = options.validate;
    this.#backups = backups;
    this.#durable = options.durable ?? true;
    this.#lockTimeout = lockTimeout;
    this.#warn = options.onWarning ?? ((message) => console.warn(message));
    if (options.backend !== undefined) {
      this.#onBackend = new _BackendDocuments<T>(options.backend, {
        root: this.root,
        validate: this.#validate,
        backups,
        durable: this.#durable,
        lockTimeout,
      }, (id, message) => new DocumentNotFoundError(id, this.root, message));
    }
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
    this.#dir(id);
    if (this.#onBackend) return await this.#onBackend.get(id);
    const value = await this.#read(this.#documentPath(id));
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
   * @throws {TypeError} If `id` is bad or `doc` is not JSON.
   * @throws {StoreError} If the backup, the write or the audit append fails.
   * @throws {LockTimeoutError} If the lock was not free within `lockTimeout`.
   */
  async save(
    id: string,
    doc: T,
    options: DocumentActionOptions = {},
  ): Promise<{ backup?: string }> {
    if (this.#onBackend) {
      this.#dir(id);
      return await this.#onBackend.save(id, doc, options);
    }
    return await this.#locked(id, () => this.#commit(id, doc, "save", options));
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
    const path = this.#documentPath(id);
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot update document '${id}': fn must be a function`,
      );
    }
    if (this.#onBackend) return await this.#onBackend.update(id, fn, options);
    if (_lstat(path) === null) throw new DocumentNotFoundError(id, this.root);
    return await this.#locked(id, async () => {
      const doc = await this.#read(path);
      if (doc === undefined) throw new DocumentNotFoundError(id, this.root);
      const result = await fn(doc);
      await this.#commit(id, doc, "update", options);
      return result;
    });
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
    if (this.#onBackend) {
      this.#dir(id);
      return await this.#onBackend.history(id);
    }
    const path = join(this.#dir(id), "audit.jsonl");
    const { records, torn, invalid } = await readJsonl<AuditEvent>(path, {
      format: "python",
    });
    this.#warnDamage(path, torn, invalid.length);
    return records;
  }

  /**
   * The backups of a document, newest first.
   *
   * @param id The document's id.
   * @returns Backup names, for {@linkcode DocumentStore.restore}.
   */
  async backups(id: string): Promise<string[]> {
    if (this.#onBackend) {
      this.#dir(id);
      return await this.#onBackend.backups(id);
    }
    return await this.#listBackups(join(this.#dir(id), "backups"));
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
    this.#documentPath(id);
    if (this.#onBackend) {
      return await this.#onBackend.restore(id, backup, options);
    }
    if (typeof backup !== "string" || !_BACKUP.test(backup)) {
      throw new TypeError(
        `Cannot restore backup ${
          JSON.stringify(backup)
        } of '${id}': expected a name from backups()`,
      );
    }
    const path = join(this.#dir(id), "backups", backup);
    await this.#locked(id, async () => {
      const doc = await this.#read(path);
      if (doc === undefined) {
        throw new DocumentNotFoundError(
          `${id}/backups/${backup}`,
          this.root,
          `Cannot restore backup '${backup}' of document '${id}' in '${this.root}': it is not kept (only the newest ${this.#backups} are; older ones are rotated away); pick one that backups('${id}') lists`,
        );
      }
      await this.#commit(id, doc, "restore", options, { restored: backup });
    });
  }

  /**
   * The ids in the index, in the order they were first saved.
   *
   * @returns The ids (empty while there is no index).
   */
  async list(): Promise<string[]> {
    if (this.#onBackend) return await this.#onBackend.list();
    const path = this.#indexPath;
    const index = await readJsonl<{ id?: unknown }>(path, { format: "python" });
    this.#warnDamage(path, index.torn, index.invalid.length);
    const ids = new Set<string>();
    for (const entry of index.records) {
      if (typeof entry?.id === "string") ids.add(entry.id);
    }
    // An entry whose save never finished (a crash between the index and the
    // document) names nothing yet.
    return [...ids].filter((id) => {
      try {
        return _lstat(this.#documentPath(id)) !== null;
      } catch {
        return false; // an id the index holds that no document can have
      }
    });
  }

  /**
   * Rewrites `index.jsonl` from the documents on disk (`by_id/<id>/document.json`).
   *
   * @returns How many documents it lists.
   * @throws {StoreError} If the directories cannot be read or the index written.
   */
  async rebuildIndex(): Promise<number> {
    if (this.#onBackend) return await this.#onBackend.rebuildIndex();
    const byId = join(this.root, "by_id");
    let entries;
    try {
      entries = _lstat(byId) === null ? [] : await _readDir(byId);
    } catch (error) {
      throw _fsError("rebuild the index from", byId, error);
    }
    const found: { id: string; created: string }[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory) continue;
      const stat = _lstat(join(byId, entry.name, _DOCUMENT));
      if (stat === null || !stat.isFile) continue;
      found.push({
        id: entry.name,
        created: new Date(stat.mtimeMs ?? 0).toISOString(),
      });
    }
    found.sort((a, b) =>
      a.created < b.created ? -1 : a.created > b.created ? 1 : 0
    );
    const text = found.map((entry) => _toPython(entry, null, false) + "\n")
      .join("");
    await _makeDirs(this.root, this.#durable);
    await withLock(
      this.#indexPath,
      () => _replaceHoldingLock(this.#indexPath, text, this.#durable),
      { timeout: this.#lockTimeout },
    );
    return found.length;
  }

  get #indexPath(): string {
    return join(this.root, "index.jsonl");
  }

  #dir(id: string): string {
    if (
      typeof id !== "string" || id.length === 0 || id === "." ||
      id === ".." || /[/\\\0]/.test(id)
    ) {
      throw new TypeError(
        `Cannot use document id ${
          JSON.stringify(id)
        }: expected a non-empty name without path separators or ".."`,
      );
    }
    return join(this.root, "by_id", id);
  }

  #documentPath(id: string): string {
    return join(this.#dir(id), _DOCUMENT);
  }

  async #locked<R>(id: string, fn: () => Promise<R>): Promise<R> {
    const dir = this.#dir(id);
    try {
      await _makeDirs(dir, this.#durable);
    } catch (error) {
      throw _fsError("create the directory of document", dir, error);
    }
    return await withLock(join(dir, _DOCUMENT), fn, {
      lockPath: join(dir, ".lock"),
      timeout: this.#lockTimeout,
    });
  }

  /** Reads and validates a document file; `undefined` if it does not exist. */
  async #read(path: string): Promise<T | undefined> {
    _checkTarget(path);
    const bytes = await _readStoreFile(path);
    if (bytes === null) return undefined;
    const parsed = _parseJson(bytes, path, this.#validate, _parsePython);
    if (!parsed.ok) throw parsed.error;
    return parsed.value;
  }

  /** Backs up, replaces and logs, holding the document's lock. */
  async #commit(
    id: string,
    doc: T,
    action: string,
    options: DocumentActionOptions,
    payload: Record<string, unknown> = {},
  ): Promise<{ backup?: string }> {
    const actor = options.actor ?? "lockbox";
    if (typeof actor !== "string") {
      throw new TypeError(`Cannot use actor ${actor}: expected a string`);
    }
    const dir = this.#dir(id);
    const path = join(dir, _DOCUMENT);
    const checked = this.#validate ? this.#validate(doc) : doc;
    // As seed 004 writes it: json.dumps(data, indent=2, ensure_ascii=False).
    const text = _toJson(
      checked,
      2,
      path,
      (value, indent) => _toPython(value, indent, false),
    );
    const exists = _checkTarget(path) !== null;
    const backup = exists ? await this.#backUp(dir, path) : undefined;
    if (!exists) {
      // The index entry goes first: a crash between the two leaves an entry
      // whose document does not exist, which list() leaves out, never a
      // document that list() cannot find.
      const entry = { id, created: new Date().toISOString() };
      try {
        await appendJsonl(this.#indexPath, [entry], {
          durable: this.#durable,
          lockTimeout: this.#lockTimeout,
          format: "python",
          ensureAscii: false,
        });
      } catch (error) {
        throw new StoreError(
          this.#indexPath,
          `Cannot save document '${id}': adding it to the index '${this.#indexPath}' failed (${
            (error as Error).message
          }); nothing was saved`,
          { cause: error },
        );
      }
    }
    await _replaceHoldingLock(path, text, this.#durable);
    const event: AuditEvent = {
      action_id: crypto.randomUUID(),
      document_id: id,
      ts: new Date().toISOString(),
      actor,
      action_type: action,
      payload: backup === undefined ? payload : { ...payload, backup },
    };
    const audit = join(dir, "audit.jsonl");
    try {
      await _appendHoldingLock(
        audit,
        _toJson(event, 0, audit, (value) => _toPython(value, null, false)) +
          "\n",
        this.#durable,
      );
    } catch (error) {
      throw new StoreError(
        audit,
        `Saved document '${id}', but could not append to its audit log (${
          (error as Error).message
        })`,
        { cause: error },
      );
    }
    return backup === undefined ? {} : { backup };
  }

  /**
   * Keeps the current version as a backup (a hard link: the atomic replace
   * that follows moves only `document.json` to the new inode) and removes
   * the oldest beyond the limit. Names always sort newest first, even if
   * the clock steps back.
   */
  async #backUp(dir: string, path: string): Promise<string | undefined> {
    if (this.#backups === 0) return undefined;
    const backups = join(dir, "backups");
    try {
      await _makeDirs(backups, this.#durable);
      const existing = await this.#listBackups(backups);
      let micros = _nowMicros();
      const newest = existing[0]?.match(_BACKUP)?.[1];
      if (newest !== undefined) {
        micros = Math.max(micros, _parseStamp(newest) + 1);
      }
      let name: string;
      for (;; micros++) {
        name = `${_DOCUMENT}.${_stamp(micros)}.bak`;
        try {
          _link(path, join(backups, name));
          break;
        } catch (error) {
          if (_errorCode(error) !== "EEXIST") throw error;
        }
      }
      for (const old of existing.slice(this.#backups - 1)) {
        _removeIfExists(join(backups, old));
      }
      if (this.#durable) await _syncDirectory(backups);
      return name;
    } catch (error) {
      throw _fsError(
        "back up",
        path,
        error,
        "; the document was not changed",
      );
    }
  }

  async #listBackups(backups: string): Promise<string[]> {
    let entries;
    try {
      entries = _lstat(backups) === null ? [] : await _readDir(backups);
    } catch (error) {
      throw _fsError("list the backups in", backups, error);
    }
    return entries.filter((e) => e.isFile && _BACKUP.test(e.name))
      .map((e) => e.name).sort().reverse();
  }

  #warnDamage(path: string, torn: number, invalid: number): void {
    if (torn > 0) {
      this.#warn(
        `Skipped a torn last line in '${path}' (a write cut short by a crash)`,
      );
    }
    if (invalid > 0) {
      this.#warn(
        `Skipped ${invalid} damaged line${
          invalid === 1 ? "" : "s"
        } in '${path}'; inspect it with readJsonl()`,
      );
    }
  }
}

function _nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/** `YYYYMMDDTHHMMSS_ffffff` in UTC, as seed 004 names backups. */
function _stamp(micros: number): string {
  const iso = new Date(Math.floor(micros / 1000)).toISOString();
  const digits = iso.replace(/[-:]/g, "").slice(0, 15);
  return `${digits}_${String(micros % 1_000_000).padStart(6, "0")}`;
}

function _parseStamp(stamp: string): number {
  const [, y, mo, d, h, mi, s, f] = stamp.match(
    /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})_(\d{6})$/,
  )!;
  return Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) * 1000 + Number(f);
}
