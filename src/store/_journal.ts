// Journal mode for JsonStore: the snapshot at `path` plus an append-only
// journal of changes beside it, so that an update costs one line and one
// fdatasync whatever the document's size. The format is in
// `_journal_format.ts`; this process's copy of the document and its repair
// in `_journal_cache.ts`; compaction in `_journal_compaction.ts`; the
// journal kept open between calls in `_journal_files.ts`; the shared
// fdatasync in `_group_commit.ts`.

import { _fsError } from "../base/fs_errors.ts";
import { StoreError } from "../base/errors.ts";
import {
  _lstat,
  _openExistingForReading,
  type _WriteHandle,
} from "../runtime/mod.ts";
import { _checkTarget } from "./atomic.ts";
import { _copyJson } from "./json.ts";
import type {
  _ChangeOptions,
  _JsonStoreStorage,
  _Next,
} from "./json_store_storage.ts";
import { _Recorder } from "./journal_draft.ts";
import {
  _applyLines,
  _parseHeader,
  _sha256,
  _updateLine,
} from "./_journal_format.ts";
import { _JournalFiles, _readIfExists } from "./_journal_files.ts";
import { type _Cache, _JournalCache } from "./_journal_cache.ts";
import type { _StoreFiles } from "./_store_files.ts";
import {
  _Changed,
  _UNCHANGED,
  _watchFiles,
  type StoreVersion,
  type WatchOptions,
} from "./watch.ts";

/**
 * What a watch has read of the journal without the lock: the lines of the
 * journal with this id up to `offset`, applied.
 */
interface _View<T> {
  id: string;
  headerLength: number;
  offset: number;
  seq: number;
  state: T;
  /** `state` is what the watch yielded last (see watch). */
  yielded?: boolean;
}

const _MIN_COMPACT_AT = 1 << 20;

/** Journal mode of one JsonStore. */
export class _Journal<T> implements _JsonStoreStorage<T> {
  #storeFiles: _StoreFiles<T>;
  #compactAt: number | undefined;
  #journal: _JournalFiles;
  #cache: _JournalCache<T>;

  /**
   * Creates the journal storage over a store's files; `compactAt` is the
   * journal size past which an update folds it into a new snapshot.
   */
  constructor(storeFiles: _StoreFiles<T>, compactAt: number | undefined) {
    this.#storeFiles = storeFiles;
    this.#compactAt = compactAt;
    this.#journal = new _JournalFiles(
      storeFiles.path,
      storeFiles,
      () => this.#cache.current,
    );
    this.#cache = new _JournalCache(storeFiles, this.#journal);
  }

  /**
   * Watches the snapshot and the journal: an append or a compaction wakes
   * it. After a first whole read, a wake-up reads only the lines appended
   * since, while the journal is the same one (its header's id); a
   * compaction's new journal, or anything odd, makes it read everything
   * again.
   */
  watch(options: WatchOptions): AsyncIterable<StoreVersion<T>> {
    let view: _View<T> | null = null;
    /** The JSON of the last version a whole read found. */
    let shown: string | undefined;
    return _watchFiles(
      this.#storeFiles.path,
      [".journal"],
      async () => {
        // What was yielded last, if the watch still has it (a view, kept
        // up to date, is always what it yielded last).
        const previous = view;
        if (view !== null) {
          const moved = this.#advance(view);
          if (moved === false) return _UNCHANGED;
          // Lines that changed something: a new version, found without
          // comparing documents.
          if (moved) return new _Changed(_copyJson(view.state));
        }
        const read = await this.#readWithoutLock();
        view = read?.view ?? null;
        const state = read === null ? await this.#readLocked() : read.state;
        // Read whole (the first time, after a compaction, while there is
        // no journal): compared with the last version only then.
        const text = JSON.stringify(state);
        const before = previous === null
          ? shown
          : previous.yielded === false
          ? undefined
          : JSON.stringify(previous.state);
        shown = text;
        if (text === before) return _UNCHANGED;
        return new _Changed(view === null ? state : _copyJson(state));
      },
      options,
    );
  }

  /**
   * Applies to `view` the complete lines appended to its journal since:
   * `true` if there were some, `false` if none, `null` if the journal is no
   * longer the one `view` is of (compacted, replaced, cut short, damaged),
   * when `view` must be dropped.
   */
  #advance(view: _View<T>): boolean | null {
    _checkTarget(this.#journal.journalPath, "read");
    let tail: Uint8Array;
    try {
      // Header and lines through one descriptor: both of the same file.
      // Lines appended after the size was read wake the watch again.
      const handle = _openExistingForReading(this.#journal.journalPath);
      if (handle === null) return null;
      try {
        const size = handle.size();
        if (size < view.offset) return null;
        const header = _parseHeader(handle.readAt(0, view.headerLength));
        if (header?.id !== view.id) return null;
        tail = handle.readAt(view.offset, size - view.offset);
      } finally {
        handle.close();
      }
    } catch (error) {
      throw _fsError("read", this.#journal.journalPath, error);
    }
    const applied = _applyLines(tail, view.state, view.seq, true);
    if (applied.damage) {
      // Lines before the damage changed the state in place: it is no
      // longer what was yielded last.
      if (applied.seq > view.seq) view.yielded = false;
      return null;
    }
    view.state = applied.state as T;
    view.seq = applied.seq;
    view.offset += applied.used;
    // Lines that change nothing (a compaction's seal, an update that set
    // what was there) are no new version.
    return applied.changed;
  }

  /** The document without the lock, else under it (see #readWithoutLock). */
  async read(): Promise<T> {
    const read = await this.#readWithoutLock();
    return read !== null ? read.state : await this.#readLocked();
  }

  /**
   * A consistent state without the lock: a snapshot and the journal that
   * belongs to it, and what a watch needs to read on from there (`view`;
   * `null` while there is no journal). `null` after a few mismatches
   * (compactions racing the read) or anything odd: then read under the lock.
   */
  async #readWithoutLock(): Promise<
    { state: T; view: _View<T> | null } | null
  > {
    for (let attempt = 0; attempt < 5; attempt++) {
      const snapshot = await _readIfExists(this.#storeFiles.path);
      const journal = await _readIfExists(this.#journal.journalPath);
      if (journal === null) {
        // No journal yet: the snapshot (or nothing) is the whole story,
        // unless a compaction stopped half way: the catch-up under the
        // lock finishes it.
        if (_lstat(this.#journal.nextPath) !== null) break;
        if (snapshot === null) {
          return { state: this.#storeFiles.initial(), view: null };
        }
        const parsed = this.#storeFiles.parse(snapshot);
        if (!parsed.ok) break;
        return { state: parsed.value, view: null };
      }
      const header = _parseHeader(journal);
      if (header === null || snapshot === null) break;
      if (await _sha256(snapshot) !== header.base) continue; // mid-compaction
      const parsed = this.#storeFiles.parse(snapshot);
      if (!parsed.ok) break;
      const applied = _applyLines(
        journal.subarray(header.length),
        parsed.value,
        0,
      );
      if (applied.damage) break;
      const state = applied.state as T;
      return {
        state,
        view: {
          id: header.id,
          headerLength: header.length,
          offset: header.length + applied.used,
          seq: applied.seq,
          state,
        },
      };
    }
    return null;
  }

  /** Reads under the lock, catching up with the files as an update does. */
  async #readLocked(): Promise<T> {
    return await this.#journal.counted(() =>
      this.#storeFiles.locked(async () => {
        try {
          return structuredClone((await this.#cache.catchUp()).state);
        } finally {
          this.#journal.release();
        }
      }, {})
    );
  }

  /**
   * Changes the document under the lock: catches up with the journal, lets
   * `fn` change a recording proxy of it (or return a replacement), appends
   * one line, and compacts when the journal has grown past the threshold.
   */
  async change<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    options: _ChangeOptions,
  ): Promise<R> {
    // The fdatasync comes after the lock is released, so that other
    // writers append while this one waits for the disk, and one fdatasync
    // serves every update of this store in this process that appended
    // meanwhile (_group_commit.ts). The update is acknowledged only once
    // its line is on disk.
    let unsynced: _WriteHandle | null = null;
    return await this.#journal.counted(async () => {
      try {
        const result = await this.#storeFiles.locked(async () => {
          try {
            const cache = await this.#cache.catchUp();
            const highest = await this.#storeFiles.checkFence(options.fence);
            const { result, ops } = await this.#record(cache, fn, options);
            try {
              await this.#storeFiles.recordFence(options.fence, highest);
              if (ops.length === 0) return result;
              unsynced = this.#append(cache, ops);
            } catch (error) {
              this.#cache.drop();
              throw error;
            }
            await this.#compactIfDue(cache);
            return result;
          } finally {
            this.#journal.release();
          }
        }, { signal: options.signal });
        if (unsynced !== null) {
          const synced = this.#journal.syncSoon(unsynced);
          this.#journal.park(unsynced);
          unsynced = null;
          if (synced !== null) await synced;
        }
        return result;
      } finally {
        (unsynced as _WriteHandle | null)?.close();
      }
    });
  }

  /**
   * Runs `fn` on the cached document, recording what it changes as ops
   * (the cache then holds the changed document). If `fn` or `validate`
   * throws, the cache is dropped: it may be half changed.
   */
  async #record<R>(
    cache: _Cache<T>,
    fn: (draft: T) => Promise<_Next<T, R>>,
    options: _ChangeOptions,
  ): Promise<{ result: R; ops: string[] }> {
    const recorder = new _Recorder();
    try {
      // A replacement (transform, write) gets the plain document: it may
      // clone it, and nothing it changes in place is recorded.
      const before = options.replaces ? JSON.stringify(cache.state) : undefined;
      const outcome = await fn(
        options.replaces ? cache.state : recorder.wrap(cache.state, []),
      );
      if (outcome.replace) {
        cache.state = recorder.replaceRoot(outcome.value) as T;
        // The same document again writes nothing, as in whole-file mode.
        if (recorder.ops[0] === `["s",[],${before}]`) recorder.ops = [];
      }
      if (this.#storeFiles.validate) {
        // What validate returns is what is stored, as in whole-file mode.
        // It gets the document itself, not a draft: a proxy would make a
        // validator that walks the document several times slower.
        const checked = this.#storeFiles.validate(cache.state);
        if (checked !== cache.state) {
          cache.state = recorder.conform(cache.state, checked) as T;
        }
      }
      const result = recorder.finish(outcome.result);
      return { result, ops: recorder.ops };
    } catch (error) {
      this.#cache.drop();
      throw error;
    } finally {
      recorder.end();
    }
  }

  /**
   * Folds the journal into a new snapshot once it has grown past
   * `compactAt` (by default the larger of 1 MiB and the snapshot).
   */
  async #compactIfDue(cache: _Cache<T>): Promise<void> {
    const threshold = this.#compactAt ??
      Math.max(_MIN_COMPACT_AT, cache.snapshotBytes);
    if (cache.offset <= threshold) return;
    // The update is in the journal now: a failed compaction must not make
    // it look failed (a caller would apply it twice). Whatever the
    // compaction left is finished or cleared by a later catch-up.
    try {
      await this.#cache.compact(cache.state);
    } catch (error) {
      this.#cache.drop();
      this.#storeFiles.warn(
        `lockbox: the update to '${this.#storeFiles.path}' is saved, but folding its journal into the file failed (${
          (error as Error).message
        }); a later update tries again`,
      );
    }
  }

  /** Forgets the fences applied, under the store's lock. */
  resetFence(options: { signal?: AbortSignal }): Promise<void> {
    return this.#storeFiles.resetFence(options);
  }

  /** Closes the kept journal (keepOpen); calls in flight close theirs. */
  close(): Promise<void> {
    this.#storeFiles.close();
    this.#journal.closeWhenIdle();
    return Promise.resolve();
  }

  /**
   * Appends one update's line with one write. Returns the open journal when
   * durable, for the caller to fdatasync once the lock is released.
   */
  #append(cache: _Cache<T>, ops: string[]): _WriteHandle | null {
    const journalPath = this.#journal.journalPath;
    const line = _updateLine(cache.seq + 1, ops);
    const handle = this.#journal.takeHeld();
    if (handle === null) {
      throw new StoreError(
        journalPath,
        `Cannot append to '${journalPath}': it was removed while locked; check for tools deleting it`,
      );
    }
    try {
      // On this thread: the line is short, and a trip to the thread pool
      // would cost more than the write while other writers wait.
      handle.writeNow(line);
    } catch (error) {
      // Take a partly written line back out; if that fails too, the next
      // writer cuts it as a torn line.
      try {
        handle.truncate(cache.offset);
      } catch {
        // The error below is what counts.
      }
      this.#journal.close(handle);
      throw _fsError("append to", journalPath, error);
    }
    cache.offset += line.length;
    cache.seq++;
    if (this.#storeFiles.durable) return handle;
    this.#journal.park(handle);
    return null;
  }
}
