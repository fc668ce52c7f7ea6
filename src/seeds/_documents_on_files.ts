// DocumentStore on files, in seed 004's layout (see DocumentStore): each
// document a directory `by_id/<id>/` with its lock, backups and audit log,
// and the index `index.jsonl` at the root.

import { join } from "node:path";
import {
  _errorCode,
  _link,
  _lstat,
  _readDir,
  _removeIfExists,
  _syncDirectory,
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
import { withLock } from "../lock/with_lock.ts";
import { StoreError } from "../base/errors.ts";
import type { AuditEvent } from "./document_types.ts";
import {
  _checkDocumentId,
  type _DocumentSettings,
  type _DocumentStorage,
  type _IndexEntry,
} from "./_document_storage.ts";

const _DOCUMENT = "document.json";
const _BACKUP = /^document\.json\.(\d{8}T\d{6}_\d{6})\.bak$/;

/** DocumentStore's documents, backups, audit logs and index in files. */
export class _DocumentsOnFiles<T> implements _DocumentStorage<T> {
  #settings: _DocumentSettings<T>;

  constructor(settings: _DocumentSettings<T>) {
    this.#settings = settings;
  }

  async read(id: string): Promise<T | undefined> {
    return await this.#read(this.#documentPath(id));
  }

  async change(
    id: string,
    next: (current: () => Promise<T | undefined>) => Promise<T>,
    event: (backup: string | undefined) => AuditEvent,
    existing: boolean,
  ): Promise<string | undefined> {
    const dir = this.#dir(id);
    const path = join(dir, _DOCUMENT);
    // Before the lock, whose directory a missing document would get.
    if (existing && _lstat(path) === null) throw this.#settings.notFound(id);
    try {
      await _makeDirs(dir, this.#settings.durable);
    } catch (error) {
      throw _fsError("create the directory of document", dir, error);
    }
    return await withLock(path, async () => {
      const doc = await next(() => this.#read(path));
      return await this.#commit(id, doc, event);
    }, { lockPath: join(dir, ".lock"), timeout: this.#settings.lockTimeout });
  }

  async history(id: string): Promise<AuditEvent[]> {
    const path = join(this.#dir(id), "audit.jsonl");
    const { records, torn, invalid } = await readJsonl<AuditEvent>(path, {
      format: "python",
    });
    this.#warnDamage(path, torn, invalid.length);
    return records;
  }

  async backups(id: string): Promise<string[]> {
    return await this.#listBackups(join(this.#dir(id), "backups"));
  }

  isBackupName(name: string): boolean {
    return _BACKUP.test(name);
  }

  async readBackup(id: string, name: string): Promise<T | undefined> {
    return await this.#read(join(this.#dir(id), "backups", name));
  }

  async readIndex(): Promise<unknown[]> {
    const path = this.#indexPath;
    const index = await readJsonl(path, { format: "python" });
    this.#warnDamage(path, index.torn, index.invalid.length);
    return index.records;
  }

  written(ids: string[]): Promise<string[]> {
    return Promise.resolve(ids.filter((id) => {
      try {
        return _lstat(this.#documentPath(id)) !== null;
      } catch {
        return false; // an id the index holds that no document can have
      }
    }));
  }

  /**
   * The directories under `by_id/` that hold a document file, each dated by
   * the file's modification time (its last save: files keep no other date).
   */
  async documents(): Promise<_IndexEntry[]> {
    const byId = join(this.#settings.root, "by_id");
    let entries;
    try {
      entries = _lstat(byId) === null ? [] : await _readDir(byId);
    } catch (error) {
      throw _fsError("rebuild the index from", byId, error);
    }
    const found: _IndexEntry[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory) continue;
      const stat = _lstat(join(byId, entry.name, _DOCUMENT));
      if (stat === null || !stat.isFile) continue;
      found.push({
        id: entry.name,
        created: new Date(stat.mtimeMs ?? 0).toISOString(),
      });
    }
    return found;
  }

  async writeIndex(entries: _IndexEntry[]): Promise<void> {
    const text = entries.map((entry) => _toPython(entry, null, false) + "\n")
      .join("");
    const { root, durable, lockTimeout } = this.#settings;
    await _makeDirs(root, durable);
    await withLock(
      this.#indexPath,
      () => _replaceHoldingLock(this.#indexPath, text, durable),
      { timeout: lockTimeout },
    );
  }

  get #indexPath(): string {
    return join(this.#settings.root, "index.jsonl");
  }

  #dir(id: string): string {
    _checkDocumentId(id);
    return join(this.#settings.root, "by_id", id);
  }

  #documentPath(id: string): string {
    return join(this.#dir(id), _DOCUMENT);
  }

  /** Reads and validates a document file; `undefined` if it does not exist. */
  async #read(path: string): Promise<T | undefined> {
    _checkTarget(path, "read");
    const bytes = await _readStoreFile(path);
    if (bytes === null) return undefined;
    const parsed = _parseJson(
      bytes,
      path,
      this.#settings.validate,
      _parsePython,
    );
    if (!parsed.ok) throw parsed.error;
    return parsed.value;
  }

  /** Backs up, replaces and logs, holding the document's lock. */
  async #commit(
    id: string,
    doc: T,
    event: (backup: string | undefined) => AuditEvent,
  ): Promise<string | undefined> {
    const { validate, durable } = this.#settings;
    const dir = this.#dir(id);
    const path = join(dir, _DOCUMENT);
    const checked = validate ? validate(doc) : doc;
    // As seed 004 writes it: json.dumps(data, indent=2, ensure_ascii=False).
    const text = _toJson(
      checked,
      2,
      path,
      (value, indent) => _toPython(value, indent, false),
    );
    const exists = _checkTarget(path) !== null;
    const backup = exists ? await this.#backUp(dir, path) : undefined;
    if (!exists) await this.#addToIndex(id);
    await _replaceHoldingLock(path, text, durable);
    const audit = join(dir, "audit.jsonl");
    try {
      await _appendHoldingLock(
        audit,
        _toJson(
          event(backup),
          0,
          audit,
          (value) => _toPython(value, null, false),
        ) + "\n",
        durable,
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
    return backup;
  }

  /**
   * The index entry goes first: a crash between it and the document leaves
   * an entry whose document does not exist, which `written` leaves out,
   * never a document that the index does not list.
   */
  async #addToIndex(id: string): Promise<void> {
    const entry = { id, created: new Date().toISOString() };
    try {
      await appendJsonl(this.#indexPath, [entry], {
        durable: this.#settings.durable,
        lockTimeout: this.#settings.lockTimeout,
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

  /**
   * Keeps the current version as a backup (a hard link: the atomic replace
   * that follows moves only `document.json` to the new inode) and removes
   * the oldest beyond the limit. Names always sort newest first, even if
   * the clock steps back.
   */
  async #backUp(dir: string, path: string): Promise<string | undefined> {
    const { backups: keep, durable } = this.#settings;
    if (keep === 0) return undefined;
    const backups = join(dir, "backups");
    try {
      await _makeDirs(backups, durable);
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
      for (const old of existing.slice(keep - 1)) {
        _removeIfExists(join(backups, old));
      }
      if (durable) await _syncDirectory(backups);
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
      this.#settings.warn(
        `Skipped a torn last line in '${path}' (a write cut short by a crash)`,
      );
    }
    if (invalid > 0) {
      this.#settings.warn(
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
