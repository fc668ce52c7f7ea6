// Whole-file mode of JsonStore: the document is the file, and every change
// is one durable atomic replace of it under the store's lock.

import { StoreError } from "../base/errors.ts";
import { _checkTarget, _readStoreFile } from "./atomic.ts";
import type {
  _ChangeOptions,
  _JsonStoreStorage,
  _Next,
} from "./json_store_storage.ts";
import type { _Loaded, _StoreFiles } from "./_store_files.ts";
import { _hasJournal } from "./store_mode.ts";
import { _watchFiles, type StoreVersion, type WatchOptions } from "./watch.ts";

/** A JsonStore's document as one file. */
export class _WholeFile<T> implements _JsonStoreStorage<T> {
  #files: _StoreFiles<T>;

  /** Creates the whole-file storage over a store's files. */
  constructor(files: _StoreFiles<T>) {
    this.#files = files;
  }

  /**
   * The file as it is (writes are atomic renames, so one whole version). A
   * file that does not parse is read again under a shared lock, in case a
   * tool that writes in place was caught mid-write; only then is it corrupt.
   */
  async read(): Promise<T> {
    const loaded = await this.#load();
    if (loaded.ok) return loaded.value;
    const quarantine = this.#files.onCorrupt === "quarantine";
    return await this.#files.locked(
      async () => (await this.#loadLocked()).value,
      { shared: !quarantine },
    );
  }

  /** Loads, changes and replaces the file under the exclusive lock. */
  async change<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    options: _ChangeOptions,
  ): Promise<R> {
    const files = this.#files;
    return await files.locked(async () => {
      const { value, exists } = await this.#loadLocked();
      const highest = await files.checkFence(options.fence);
      const before = exists ? files.serialize(value) : undefined;
      const next = await fn(value);
      const checked = files.validate ? files.validate(next.value) : next.value;
      const text = files.serialize(checked);
      await files.recordFence(options.fence, highest);
      if (text === before) return next.result;
      files.rotateBackups();
      await files.replace(files.path, text);
      return next.result;
    }, { signal: options.signal });
  }

  /** Forgets the fences applied, under the store's lock. */
  resetFence(options: { signal?: AbortSignal }): Promise<void> {
    return this.#files.resetFence(options);
  }

  /** Closes the lock file kept open between calls (`keepOpen`). */
  close(): Promise<void> {
    this.#files.close();
    return Promise.resolve();
  }

  /** Watches the file: a rename into place or a write in place wakes it. */
  watch(options: WatchOptions): AsyncIterable<StoreVersion<T>> {
    return _watchFiles(this.#files.path, [], () => this.read(), options);
  }

  async #load(): Promise<_Loaded<T>> {
    const path = this.#files.path;
    _checkTarget(path, "read");
    // Updates made in journal mode live in the journal until a compaction
    // folds them in: the file alone is an old version, and a whole-file
    // write would orphan them. (Checked under the lock for writes; journal
    // writers take the same lock.)
    if (_hasJournal(path)) {
      throw new StoreError(
        path,
        `Cannot use '${path}' as a whole file: '${path}.journal' beside it holds updates made in journal mode; open it with { journal: true } (the lockbox store commands do so on their own)`,
      );
    }
    const bytes = await _readStoreFile(path);
    if (bytes === null) {
      return { ok: true, value: this.#files.initial(), exists: false };
    }
    return this.#files.parse(bytes);
  }

  /** Loads under the lock, applying `onCorrupt`. */
  async #loadLocked(): Promise<{ value: T; exists: boolean }> {
    const loaded = await this.#load();
    if (loaded.ok) return loaded;
    const value = await this.#files.applyOnCorrupt(loaded.error);
    return { value, exists: true };
  }
}
