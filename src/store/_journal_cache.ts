// Journal mode's cache and recovery: this process's copy of the document,
// brought up to date with the files under the lock by reading only the
// lines it has not seen, and the repair of what a crash or a foreign writer
// can leave (a torn last line, an unfinished compaction, a damaged journal,
// a snapshot that is not the journal's).

import { _noteOpenFile } from "../base/file_identity.ts";
import { _fsError } from "../base/fs_errors.ts";
import { CorruptStoreError } from "../base/errors.ts";
import { _removeIfExists, type _WriteHandle } from "../runtime/mod.ts";
import { _lockHolderTemp, _quarantineAside } from "./atomic.ts";
import {
  _applyLines,
  _HEADER_MAX,
  _parseHeader,
  _sha256,
} from "./_journal_format.ts";
import {
  type _JournalFiles,
  type _Position,
  _readIfExists,
} from "./_journal_files.ts";
import { _JournalCompaction, type _NewJournal } from "./_journal_compaction.ts";
import type { _StoreFiles } from "./_store_files.ts";

const _encoder = new TextEncoder();

/** One process's view of the journal, kept between updates. */
export interface _Cache<T> extends _Position {
  /** The last line's sequence number. */
  seq: number;
  state: T;
  snapshotBytes: number;
}

/** This process's copy of a journal-mode store, and its repair. */
export class _JournalCache<T> {
  #storeFiles: _StoreFiles<T>;
  #journal: _JournalFiles;
  #compaction: _JournalCompaction<T>;
  #cache: _Cache<T> | null = null;

  /** Creates the cache of a store's journal, which `journal` reads. */
  constructor(storeFiles: _StoreFiles<T>, journal: _JournalFiles) {
    this.#storeFiles = storeFiles;
    this.#journal = journal;
    this.#compaction = new _JournalCompaction(storeFiles, journal);
  }

  /** The cached state, if this process has one. */
  get current(): _Cache<T> | null {
    return this.#cache;
  }

  /** Drops the cached state: the next catch-up reads the files again. */
  drop(): void {
    this.#cache = null;
  }

  /**
   * Brings the cached state up to date with the files, holding the lock:
   * reads only the lines it has not seen when the journal is the one it
   * knows, else the snapshot and the whole journal. Repairs what a crash
   * can leave: a torn last line, an unfinished compaction. Leaves the
   * journal held open for this update's append (`_JournalFiles.hold`).
   */
  async catchUp(): Promise<_Cache<T>> {
    const idle = this.#journal.takeIdle();
    if (idle !== null) {
      return await this.#applyNewLines(idle.handle, idle.size, this.#cache!);
    }
    const handle = this.#journal.open();
    if (handle === null) return await this.#start();
    let cache: _Cache<T>;
    let size: number;
    try {
      const own = handle.stat();
      _noteOpenFile(handle, own);
      size = own.size;
      const header = _parseHeader(handle.readAt(0, Math.min(size, 256))) ??
        _parseHeader(handle.readAt(0, Math.min(size, _HEADER_MAX)));
      if (header === null) {
        handle.close();
        return await this.#corrupt(
          new CorruptStoreError(
            this.#journal.journalPath,
            "its first line is not a lockbox journal header",
          ),
          null,
        );
      }
      if (this.#cache?.id === header.id && this.#cache.offset <= size) {
        cache = this.#cache;
      } else {
        this.#cache = null;
        // A writer killed mid-compaction may have left the snapshot's temp
        // file or journal.next; we hold the lock, so nobody is writing them
        // now. A journal.next for the snapshot in place finishes the
        // compaction; any other is an orphan and goes.
        _removeIfExists(_lockHolderTemp(this.#storeFiles.path));
        if (await this.#compaction.finish()) {
          handle.close();
          return await this.catchUp();
        }
        const loaded = await this.#loadSnapshot(header.base);
        if (loaded === null) {
          // The snapshot is not the journal's: a compaction that stopped
          // between its renames (finished now), or a foreign writer.
          handle.close();
          return await this.#recover();
        }
        if (loaded instanceof CorruptStoreError) {
          handle.close();
          return await this.#corrupt(loaded, null);
        }
        cache = {
          id: header.id,
          offset: header.length,
          seq: 0,
          state: loaded.value,
          snapshotBytes: loaded.bytes,
        };
      }
    } catch (error) {
      this.#forget(handle);
      throw error;
    }
    return await this.#applyNewLines(handle, size, cache);
  }

  /** Drops the cached state after a failure, and the journal if still open. */
  #forget(handle: _WriteHandle): void {
    this.#cache = null;
    try {
      this.#journal.close(handle);
    } catch {
      // Already closed on the way to #corrupt or #recover.
    }
  }

  /**
   * Applies the lines appended to the open journal since `cache` (this
   * process's view of it) and holds the journal open for this update's
   * append. `size` is the journal's size, read under the lock.
   */
  async #applyNewLines(
    handle: _WriteHandle,
    size: number,
    cache: _Cache<T>,
  ): Promise<_Cache<T>> {
    const journalPath = this.#journal.journalPath;
    try {
      const tail = handle.readAt(cache.offset, size - cache.offset);
      const applied = _applyLines(tail, cache.state, cache.seq);
      if (applied.damage) {
        const error = new CorruptStoreError(
          journalPath,
          `update ${applied.damage.line} (byte ${
            cache.offset + applied.used
          }) is damaged: ${applied.damage.reason}`,
        );
        this.#cache = null;
        this.#journal.close(handle);
        return await this.#corrupt(error, applied.state as T);
      }
      cache.state = applied.state as T;
      cache.seq = applied.seq;
      cache.offset += applied.used;
      // A compaction began here and may have died after replacing the
      // snapshot: finish it before trusting this journal, or lines appended
      // to it now would be lost with it. (If it never got that far, the seal
      // is stale and the journal stands.)
      if (applied.sealed && await this.#compaction.finish()) {
        this.#cache = null;
        this.#journal.close(handle);
        return await this.catchUp();
      }
      if (applied.torn) {
        // Only a writer holding the lock appends, and we hold it: the cut
        // line is the remains of one that died mid-append.
        handle.truncate(cache.offset);
        this.#storeFiles.warn(
          `Cut a torn last line (${
            size - cache.offset
          } bytes) from '${journalPath}': an update that never finished, never acknowledged`,
        );
      }
    } catch (error) {
      this.#forget(handle);
      throw error;
    }
    this.#journal.hold(handle, cache.id);
    this.#cache = cache;
    return cache;
  }

  /**
   * Reads and parses the snapshot if its hash is `base`: `null` if it is not
   * the journal's, a `CorruptStoreError` if it does not parse.
   */
  async #loadSnapshot(
    base: string,
  ): Promise<{ value: T; bytes: number } | CorruptStoreError | null> {
    const bytes = await _readIfExists(this.#storeFiles.path);
    if (bytes === null || await _sha256(bytes) !== base) return null;
    const parsed = this.#storeFiles.parse(bytes);
    if (!parsed.ok) return parsed.error;
    return { value: parsed.value, bytes: bytes.length };
  }

  /** No journal yet: start one for the snapshot (writing it if missing). */
  async #start(): Promise<_Cache<T>> {
    if (await this.#compaction.finish()) return await this.catchUp();
    let bytes = await _readIfExists(this.#storeFiles.path);
    let state: T;
    if (bytes === null) {
      state = this.#storeFiles.initial();
      const text = this.#storeFiles.serialize(state);
      await this.#storeFiles.replace(this.#storeFiles.path, text);
      bytes = _encoder.encode(text);
    } else {
      const parsed = this.#storeFiles.parse(bytes);
      state = parsed.ok
        ? parsed.value
        : await this.#storeFiles.applyOnCorrupt(parsed.error);
      if (!parsed.ok) return await this.compact(state);
    }
    return this.#cacheOf(await this.#compaction.start(bytes), state);
  }

  /** The snapshot is not the journal's: finish a compaction, or it is corrupt. */
  async #recover(): Promise<_Cache<T>> {
    if (await this.#compaction.finish()) return await this.catchUp();
    return await this.#corrupt(
      new CorruptStoreError(
        this.#storeFiles.path,
        `it is not the snapshot '${this.#journal.journalPath}' was written for (a writer outside journal mode replaced it, or it was restored by hand)`,
      ),
      null,
    );
  }

  /**
   * A damaged journal or a snapshot that is not the journal's: throw, or
   * (quarantine) move the journal aside and continue from `state` (what the
   * lines before the damage give) or else the snapshot.
   */
  async #corrupt(
    error: CorruptStoreError,
    state: T | null,
  ): Promise<_Cache<T>> {
    if (this.#storeFiles.onCorrupt === "throw") throw error;
    const journalPath = this.#journal.journalPath;
    let aside: string;
    try {
      aside = _quarantineAside(journalPath);
    } catch (cause) {
      throw _fsError("quarantine the journal", journalPath, cause);
    }
    let from = "the updates before the damage";
    if (state === null) {
      from = "the snapshot";
      const bytes = await _readIfExists(this.#storeFiles.path);
      const parsed = bytes === null ? null : this.#storeFiles.parse(bytes);
      state = parsed?.ok
        ? parsed.value
        : parsed
        ? await this.#storeFiles.applyOnCorrupt(parsed.error)
        : this.#storeFiles.initial();
    }
    this.#storeFiles.warn(
      `${
        error.message.split(";")[0]
      }; moved the journal to '${aside}' and continued from ${from}`,
    );
    return await this.compact(state);
  }

  /**
   * Folds the journal into a new snapshot of `state` (see
   * `_JournalCompaction.compact`), and caches the new journal.
   */
  async compact(state: T): Promise<_Cache<T>> {
    const seq = this.#cache === null ? null : this.#cache.seq;
    return this.#cacheOf(await this.#compaction.compact(state, seq), state);
  }

  #cacheOf(made: _NewJournal, state: T): _Cache<T> {
    this.#cache = {
      id: made.id,
      offset: made.length,
      seq: 0,
      state,
      snapshotBytes: made.snapshotBytes,
    };
    return this.#cache;
  }
}
