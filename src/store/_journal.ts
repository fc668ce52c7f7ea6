// Journal mode for JsonStore: the snapshot at `path` plus an append-only
// journal of changes beside it, so that an update costs one line and one
// fdatasync whatever the document's size.
//
// Files:
//   <path>               the snapshot: the plain JSON document
//   <path>.journal       line 1, a header: {"lockbox-journal":1,"id","base"},
//                        where base is the SHA-256 of the snapshot's bytes it
//                        applies to; then one line per update:
//                        "<fnv1a-32 hex> {"n":<seq>,"o":[<op>...]}\n"
//                        with ops ["s",[keys],<value>] and ["d",[keys]]
//   <path>.journal.next  a compaction's new journal, before it is renamed
//
// Compaction (under the exclusive lock) writes journal.next for the new
// snapshot, replaces the snapshot, then renames journal.next over the
// journal. A reader takes the snapshot and the journal only when the
// journal's base is the snapshot's hash, so it never combines a snapshot
// with lines that do not belong to it; a crash between the two renames
// leaves journal.next, which the next writer finishes renaming.

import { _fnv1a, _hex8, _hexAt } from "../base/checksum.ts";
import { basename, dirname } from "node:path";
import {
  _createForWrite,
  _errorCode,
  _lstat,
  _openExistingForAppend,
  _openExistingForReading,
  _readFile,
  _removeIfExists,
  _rename,
  _syncDirectory,
  type _WriteHandle,
} from "../runtime/mod.ts";
import {
  _checkTarget,
  _keepOwnership,
  _lockHolderTemp,
  _quarantineAside,
} from "./atomic.ts";
import { _fsError } from "../base/fs_errors.ts";
import { _copyJson } from "./json.ts";
import { _afterIdleTurns, type _Deferred, _deferred } from "../base/promise.ts";
import { _noteOpenFile, _stillLinked } from "../base/file_identity.ts";
import { CorruptStoreError, StoreError } from "../base/errors.ts";
import type {
  _ChangeOptions,
  _DocumentBackend,
  _Next,
} from "./document_backend.ts";
import { _applyOp, type _Op, _opChanges, _Recorder } from "./journal_draft.ts";
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

/** One process's view of the journal, kept between updates. */
interface _Cache<T> {
  id: string;
  /** The end of the last line applied. */
  offset: number;
  /** The last line's sequence number. */
  seq: number;
  state: T;
  snapshotBytes: number;
}

const _encoder = new TextEncoder();
const _decoder = new TextDecoder("utf-8", { fatal: true });
const _HEADER_MAX = 4096;
const _MIN_COMPACT_AT = 1 << 20;
/** The most appends one fdatasync waits for (see #syncSoon). */
const _MAX_UNSYNCED = 256;

async function _sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Why a journal's lines cannot all be applied. */
type _Damage = { line: number; reason: string };

/** The result of {@linkcode _applyLines}. */
interface _Applied {
  state: unknown;
  seq: number;
  /** Bytes of whole lines applied. */
  used: number;
  /** The last line has no newline: a write that never finished. */
  torn: boolean;
  damage: _Damage | null;
  /** A line said a compaction began: the journal may be retired. */
  sealed: boolean;
  /** Some op changed the document (only looked for when asked). */
  changed: boolean;
}

function _damaged(result: _Applied, at: number, reason: string): _Applied {
  result.used = at;
  result.damage = { line: result.seq + 1, reason };
  return result;
}

/**
 * Applies the complete lines of `bytes` (journal content from `start`) to
 * `state`. A last line without its newline is torn: not applied, and
 * reported by `torn`.
 *
 * This runs under the lock for every other writer's update, so the lines are
 * decoded to text in one call (lines split alike in bytes and text: a newline
 * byte is never part of a UTF-8 sequence), and each line costs one checksum
 * loop and one `JSON.parse`.
 */
function _applyLines(
  bytes: Uint8Array,
  state: unknown,
  seq: number,
  detect = false,
): _Applied {
  const result: _Applied = {
    state,
    seq,
    used: 0,
    torn: false,
    damage: null,
    sealed: false,
    changed: false,
  };
  const complete = bytes.lastIndexOf(0x0a) + 1;
  let text: string | null = null;
  try {
    text = _decoder.decode(bytes.subarray(0, complete));
  } catch {
    // Some line is not UTF-8: find which, line by line.
  }
  let at = 0;
  let textAt = 0;
  while (at < complete) {
    const end = bytes.indexOf(0x0a, at);
    const textEnd = text === null ? -1 : text.indexOf("\n", textAt);
    if (end - at < 10 || bytes[at + 8] !== 0x20) {
      return _damaged(result, at, "it is not a journal line");
    }
    const expected = _hexAt(bytes, at);
    if (expected === -1 || _fnv1a(bytes, end, at + 9) !== expected) {
      return _damaged(result, at, "its checksum does not match");
    }
    let record: { n?: unknown; o?: unknown; seal?: unknown };
    try {
      record = JSON.parse(
        text === null
          ? _decoder.decode(bytes.subarray(at + 9, end))
          : text.slice(textAt + 9, textEnd),
      );
    } catch {
      return _damaged(result, at, "it is not JSON");
    }
    if (record.n !== result.seq + 1 || !Array.isArray(record.o)) {
      return _damaged(
        result,
        at,
        `expected update ${result.seq + 1}, found ${record.n}`,
      );
    }
    try {
      for (const op of record.o as _Op[]) {
        if (detect && !result.changed) {
          result.changed = _opChanges(result.state, op);
        }
        result.state = _applyOp(result.state, op);
      }
    } catch (error) {
      return _damaged(
        result,
        at,
        `it does not apply (${(error as Error).message})`,
      );
    }
    if (record.seal !== undefined) result.sealed = true;
    result.seq++;
    at = end + 1;
    textAt = textEnd + 1;
  }
  result.used = at;
  result.torn = complete < bytes.length;
  return result;
}

/** One journal line: checksum, space, `{"n":seq,...body}`, newline. */
function _encodeLine(seq: number, body: string): Uint8Array {
  const json = _encoder.encode(`{"n":${seq},${body}}`);
  const line = new Uint8Array(json.length + 10);
  line.set(_encoder.encode(_hex8(_fnv1a(json, json.length)) + " "));
  line.set(json, 9);
  line[line.length - 1] = 0x0a;
  return line;
}

function _parseHeader(
  bytes: Uint8Array,
): { id: string; base: string; length: number } | null {
  const end = bytes.indexOf(0x0a);
  if (end === -1) return null;
  try {
    const header = JSON.parse(_decoder.decode(bytes.subarray(0, end)));
    if (
      header?.["lockbox-journal"] !== 1 || typeof header.id !== "string" ||
      typeof header.base !== "string"
    ) return null;
    return { id: header.id, base: header.base, length: end + 1 };
  } catch {
    return null;
  }
}

/** Journal mode of one JsonStore. */
export class _Journal<T> implements _DocumentBackend<T> {
  #files: _StoreFiles<T>;
  #compactAt: number | undefined;
  #cache: _Cache<T> | null = null;
  /** The journal, open from #sync to this update's append. */
  #handle: _WriteHandle | null = null;
  /**
   * The journal kept open after an update, and the id in its header, for
   * the next update of this store to reuse while it is still the file at
   * journalPath (one lstat, instead of lstat, open, header read and
   * close). Closed as the last call in flight settles, unless the store
   * keeps its files open (`keepOpen`), until close().
   */
  #idle: _WriteHandle | null = null;
  #idleId: string | null = null;
  /** The id in the header of the journal #handle is open on. */
  #handleId: string | null = null;
  /**
   * Journals appended to and not yet fdatasynced, each with the promise its
   * updates wait on (#syncSoon), and the appends counted so far.
   */
  #unsynced: Map<_WriteHandle, _Deferred> | null = null;
  #appends = 0;
  /** Handles dropped while their fdatasync was still due: closed after it. */
  #closeAfterSync = new Set<_WriteHandle>();
  #inFlight = 0;
  readonly journalPath: string;
  readonly nextPath: string;

  /**
   * Creates the journal backend over a store's files; `compactAt` is the
   * journal size past which an update folds it into a new snapshot.
   */
  constructor(files: _StoreFiles<T>, compactAt: number | undefined) {
    this.#files = files;
    this.#compactAt = compactAt;
    this.journalPath = `${files.path}.journal`;
    this.nextPath = `${files.path}.journal.next`;
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
      this.#files.path,
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
    _checkTarget(this.journalPath, "read");
    let tail: Uint8Array;
    try {
      // Header and lines through one descriptor: both of the same file.
      // Lines appended after the size was read wake the watch again.
      const handle = _openExistingForReading(this.journalPath);
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
      throw _fsError("read", this.journalPath, error);
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
      const snapshot = await this.#readFile(this.#files.path);
      const journal = await this.#readFile(this.journalPath);
      if (journal === null) {
        // No journal yet: the snapshot (or nothing) is the whole story,
        // unless a compaction stopped half way; then let #sync finish it.
        if (_lstat(this.nextPath) !== null) break;
        if (snapshot === null) {
          return { state: this.#files.initial(), view: null };
        }
        const parsed = this.#files.parse(snapshot);
        if (!parsed.ok) break;
        return { state: parsed.value, view: null };
      }
      const header = _parseHeader(journal);
      if (header === null || snapshot === null) break;
      if (await _sha256(snapshot) !== header.base) continue; // mid-compaction
      const parsed = this.#files.parse(snapshot);
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
    return await this.#counted(() =>
      this.#files.locked(async () => {
        try {
          return structuredClone((await this.#sync()).state);
        } finally {
          this.#release();
        }
      }, {})
    );
  }

  /**
   * Runs `fn` counted in #inFlight: a read or update of this store, from
   * before it asks for the lock until it is durable (#syncSoon waits for the
   * others; #closeWhenIdle closes the kept journal once none is left).
   */
  async #counted<R>(fn: () => Promise<R>): Promise<R> {
    this.#inFlight++;
    try {
      return await fn();
    } finally {
      this.#inFlight--;
      this.#closeWhenIdle();
    }
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
    // meanwhile (#syncSoon). The update is acknowledged only once its line
    // is on disk.
    let unsynced: _WriteHandle | null = null;
    return await this.#counted(async () => {
      try {
        const result = await this.#files.locked(async () => {
          try {
            const cache = await this.#sync();
            const highest = await this.#files.checkFence(options.fence);
            const recorder = new _Recorder();
            let result: R;
            try {
              // A replacement (transform, write) gets the plain document: it
              // may clone it, and nothing it changes in place is recorded.
              const before = options.replaces
                ? JSON.stringify(cache.state)
                : undefined;
              const outcome = await fn(
                options.replaces ? cache.state : recorder.wrap(cache.state, []),
              );
              result = outcome.result;
              if (outcome.replace) {
                cache.state = recorder.replaceRoot(outcome.value) as T;
                // The same document again writes nothing, as in whole-file mode.
                if (recorder.ops[0] === `["s",[],${before}]`) recorder.ops = [];
              }
              if (this.#files.validate) {
                // What validate returns is what is stored, as in whole-file
                // mode. It gets the document itself, not a draft: a proxy
                // would make a validator that walks the document several
                // times slower.
                const checked = this.#files.validate(cache.state);
                if (checked !== cache.state) {
                  cache.state = recorder.conform(cache.state, checked) as T;
                }
              }
              result = recorder.finish(result);
            } catch (error) {
              // The cached state may be half changed: start again from the files.
              this.#cache = null;
              throw error;
            } finally {
              recorder.end();
            }
            try {
              await this.#files.recordFence(options.fence, highest);
              if (recorder.ops.length === 0) return result;
              unsynced = this.#append(cache, recorder.ops);
            } catch (error) {
              this.#cache = null;
              throw error;
            }
            const threshold = this.#compactAt ??
              Math.max(_MIN_COMPACT_AT, cache.snapshotBytes);
            if (cache.offset > threshold) {
              // The update is in the journal now: a failed compaction must not
              // make it look failed (a caller would apply it twice). Whatever
              // the compaction left is finished or cleared by a later view.
              try {
                await this.#compact(cache.state);
              } catch (error) {
                this.#cache = null;
                this.#files.warn(
                  `lockbox: the update to '${this.#files.path}' is saved, but folding its journal into the file failed (${
                    (error as Error).message
                  }); a later update tries again`,
                );
              }
            }
            return result;
          } finally {
            this.#release();
          }
        }, { signal: options.signal });
        if (unsynced !== null) {
          const synced = this.#syncSoon(unsynced);
          this.#park(unsynced);
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
   * Keeps a journal handle open for the next update, if this process's
   * cache is of that journal; closes it otherwise.
   */
  #park(handle: _WriteHandle): void {
    if (this.#idle !== null && this.#idle !== handle) this.#close(this.#idle);
    this.#idle = null;
    if (this.#cache === null || this.#cache.id !== this.#handleId) {
      this.#close(handle);
      return;
    }
    this.#idle = handle;
    this.#idleId = this.#handleId;
  }

  /**
   * Closes the kept journal once no call is in flight, before the last one
   * settles (calls in flight share it), unless the store keeps it open.
   */
  #closeWhenIdle(): void {
    const idle = this.#idle;
    if (idle === null || this.#inFlight > 0 || this.#files.keepsOpen) return;
    this.#idle = null;
    this.#close(idle);
  }

  /** Forgets the fences applied, under the store's lock. */
  resetFence(options: { signal?: AbortSignal }): Promise<void> {
    return this.#files.resetFence(options);
  }

  /** Closes the kept journal (keepOpen); calls in flight close theirs. */
  close(): Promise<void> {
    this.#files.close();
    this.#closeWhenIdle();
    return Promise.resolve();
  }

  /**
   * The kept journal and its size, if it is still the file at journalPath
   * (a compaction renames a new one over it; a foreign tool may move or
   * replace it) and this process's cache is of it. Closes it otherwise.
   */
  #takeIdle(): { handle: _WriteHandle; size: number } | null {
    const handle = this.#idle;
    if (handle === null) return null;
    this.#idle = null;
    try {
      const linked = _stillLinked(handle, this.journalPath);
      if (
        this.#cache !== null && this.#cache.id === this.#idleId &&
        linked !== null && this.#cache.offset <= linked.size
      ) return { handle, size: linked.size };
    } catch {
      // Cannot tell: open it again the long way.
    }
    this.#close(handle);
    return null;
  }

  /**
   * Makes the line just appended through `handle` durable, or returns the
   * promise of it: with no other update of this store in flight in this
   * process, the fdatasync runs now; otherwise it waits for them, and one
   * fdatasync serves every update that appended meanwhile. It runs once no
   * further append has come for a few turns of the microtask queue (a burst
   * of concurrent updates hands the lock on within the process, each
   * appending in turn), when the last update in flight has appended, or
   * after _MAX_UNSYNCED appends, and settles every update waiting for it.
   */
  #syncSoon(handle: _WriteHandle): Promise<void> | null {
    const alone = this.#inFlight <= 1;
    if (alone && this.#unsynced === null) {
      this.#syncLine(handle);
      return null;
    }
    const due = this.#unsynced ??= new Map();
    let synced = due.get(handle);
    if (synced === undefined) {
      synced = _deferred();
      due.set(handle, synced);
    }
    const appends = ++this.#appends;
    if (alone || appends % _MAX_UNSYNCED === 0) {
      this.#syncDue();
      return synced.promise;
    }
    _afterIdleTurns(
      () => this.#appends !== appends || this.#unsynced !== due,
      () => this.#syncDue(),
    );
    return synced.promise;
  }

  /** fdatasyncs every journal #syncSoon has been given, and settles them. */
  #syncDue(): void {
    const due = this.#unsynced;
    if (due === null) return;
    this.#unsynced = null;
    for (const [handle, synced] of due) {
      try {
        this.#syncLine(handle);
        synced.resolve();
      } catch (error) {
        synced.reject(error);
      }
      if (this.#closeAfterSync.delete(handle)) handle.close();
    }
  }

  /** Closes a journal handle, or after its fdatasync if one is still due. */
  #close(handle: _WriteHandle): void {
    if (this.#unsynced?.has(handle)) this.#closeAfterSync.add(handle);
    else handle.close();
  }

  /**
   * Waits for appended lines to reach the disk. Other writers may have
   * appended after them (and read them), so a failure cannot take them back
   * out: it is reported as an update of unknown durability.
   */
  #syncLine(handle: _WriteHandle): void {
    try {
      // On this thread: a trip to the thread pool costs a thread start and
      // two wake-ups. The lock is free meanwhile; only this process's event
      // loop waits (~0.1-0.3 ms).
      handle.syncDataNow();
    } catch (error) {
      throw new StoreError(
        this.journalPath,
        `Cannot make an update durable in '${this.journalPath}': fdatasync failed (${
          (error as Error).message
        }); the update is in the journal and visible, but may not survive a power loss; check the disk`,
        { cause: error },
      );
    }
  }

  async #readFile(path: string): Promise<Uint8Array | null> {
    _checkTarget(path, "read");
    try {
      return await _readFile(path);
    } catch (error) {
      throw _fsError("read", path, error);
    }
  }

  /**
   * Appends one update's line with one write. Returns the open journal when
   * durable, for the caller to fdatasync once the lock is released.
   */
  #append(cache: _Cache<T>, ops: string[]): _WriteHandle | null {
    const line = _encodeLine(cache.seq + 1, `"o":[${ops.join(",")}]`);
    const handle = this.#handle ?? this.#open();
    this.#handle = null;
    if (handle === null) {
      throw new StoreError(
        this.journalPath,
        `Cannot append to '${this.journalPath}': it was removed while locked; check for tools deleting it`,
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
      this.#close(handle);
      throw _fsError("append to", this.journalPath, error);
    }
    cache.offset += line.length;
    cache.seq++;
    if (this.#files.durable) return handle;
    this.#park(handle);
    return null;
  }

  #open(): _WriteHandle | null {
    _checkTarget(this.journalPath);
    try {
      return _openExistingForAppend(this.journalPath);
    } catch (error) {
      throw _fsError("open", this.journalPath, error);
    }
  }

  /**
   * Brings this process's cached state up to date with the files, holding
   * the lock: reads only the lines it has not seen when the journal is the
   * one it knows, else the snapshot and the whole journal. Repairs what a
   * crash can leave: a torn last line, an unfinished compaction.
   */
  async #sync(): Promise<_Cache<T>> {
    const idle = this.#takeIdle();
    if (idle !== null) {
      return await this.#catchUp(idle.handle, idle.size, this.#cache!);
    }
    const handle = this.#open();
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
            this.journalPath,
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
        _removeIfExists(_lockHolderTemp(this.#files.path));
        if (await this.#finishCompaction()) {
          handle.close();
          return await this.#sync();
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
    return await this.#catchUp(handle, size, cache);
  }

  /** Drops the cached state after a failure, and the journal if still open. */
  #forget(handle: _WriteHandle): void {
    this.#cache = null;
    try {
      this.#close(handle);
    } catch {
      // Already closed on the way to #corrupt or #recover.
    }
  }

  /**
   * Applies the lines appended to the open journal since `cache` (this
   * process's view of it) and keeps the journal open for this update's
   * append. `size` is the journal's size, read under the lock.
   */
  async #catchUp(
    handle: _WriteHandle,
    size: number,
    cache: _Cache<T>,
  ): Promise<_Cache<T>> {
    try {
      const tail = handle.readAt(cache.offset, size - cache.offset);
      const applied = _applyLines(tail, cache.state, cache.seq);
      if (applied.damage) {
        const error = new CorruptStoreError(
          this.journalPath,
          `update ${applied.damage.line} (byte ${
            cache.offset + applied.used
          }) is damaged: ${applied.damage.reason}`,
        );
        this.#cache = null;
        this.#close(handle);
        return await this.#corrupt(error, applied.state as T);
      }
      cache.state = applied.state as T;
      cache.seq = applied.seq;
      cache.offset += applied.used;
      // A compaction began here and may have died after replacing the
      // snapshot: finish it before trusting this journal, or lines appended
      // to it now would be lost with it. (If it never got that far, the seal
      // is stale and the journal stands.)
      if (applied.sealed && await this.#finishCompaction()) {
        this.#cache = null;
        this.#close(handle);
        return await this.#sync();
      }
      if (applied.torn) {
        // Only a writer holding the lock appends, and we hold it: the cut
        // line is the remains of one that died mid-append.
        handle.truncate(cache.offset);
        this.#files.warn(
          `Cut a torn last line (${
            size - cache.offset
          } bytes) from '${this.journalPath}': an update that never finished, never acknowledged`,
        );
      }
    } catch (error) {
      this.#forget(handle);
      throw error;
    }
    // Kept open for this update's append (then parked by #release).
    this.#release();
    this.#handle = handle;
    this.#handleId = cache.id;
    this.#cache = cache;
    return cache;
  }

  /** Parks the journal handle #sync kept, if any (see #park). */
  #release(): void {
    const handle = this.#handle;
    this.#handle = null;
    if (handle !== null) this.#park(handle);
  }

  /**
   * Reads and parses the snapshot if its hash is `base`: `null` if it is not
   * the journal's, a `CorruptStoreError` if it does not parse.
   */
  async #loadSnapshot(
    base: string,
  ): Promise<{ value: T; bytes: number } | CorruptStoreError | null> {
    const bytes = await this.#readFile(this.#files.path);
    if (bytes === null || await _sha256(bytes) !== base) return null;
    const parsed = this.#files.parse(bytes);
    if (!parsed.ok) return parsed.error;
    return { value: parsed.value, bytes: bytes.length };
  }

  /** No journal yet: start one for the snapshot (writing it if missing). */
  async #start(): Promise<_Cache<T>> {
    if (await this.#finishCompaction()) return await this.#sync();
    let bytes = await this.#readFile(this.#files.path);
    let state: T;
    if (bytes === null) {
      state = this.#files.initial();
      const text = this.#files.serialize(state);
      await this.#files.replace(this.#files.path, text);
      bytes = _encoder.encode(text);
    } else {
      const parsed = this.#files.parse(bytes);
      state = parsed.ok
        ? parsed.value
        : await this.#corruptSnapshot(parsed.error);
      if (!parsed.ok) return await this.#compact(state);
    }
    return await this.#newJournal(state, bytes);
  }

  /** A compaction that stopped after replacing the snapshot: finish it. */
  async #finishCompaction(): Promise<boolean> {
    const next = await this.#readFile(this.nextPath);
    if (next === null) return false;
    const header = _parseHeader(next);
    const snapshot = await this.#readFile(this.#files.path);
    const current = this.#readHeader();
    if (
      header === null || snapshot === null ||
      await _sha256(snapshot) !== header.base ||
      // The snapshot is still the journal's own: nothing was replaced, so
      // the journal stands (were the two equal, its lines change nothing).
      header.base === current?.base
    ) {
      // It never got as far as the snapshot: the old journal stands.
      _removeIfExists(this.nextPath);
      return false;
    }
    this.#renameNext();
    if (this.#files.durable) await this.#syncDir();
    return true;
  }

  /** The current journal's header, reading only its start; `null` if none. */
  #readHeader(): { id: string; base: string; length: number } | null {
    const handle = this.#open();
    if (handle === null) return null;
    try {
      return _parseHeader(handle.readAt(0, _HEADER_MAX));
    } finally {
      handle.close();
    }
  }

  async #recover(): Promise<_Cache<T>> {
    if (await this.#finishCompaction()) return await this.#sync();
    return await this.#corrupt(
      new CorruptStoreError(
        this.#files.path,
        `it is not the snapshot '${this.journalPath}' was written for (a writer outside journal mode replaced it, or it was restored by hand)`,
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
    if (this.#files.onCorrupt === "throw") throw error;
    let aside: string;
    try {
      aside = _quarantineAside(this.journalPath);
    } catch (cause) {
      throw _fsError("quarantine the journal", this.journalPath, cause);
    }
    let from = "the updates before the damage";
    if (state === null) {
      from = "the snapshot";
      const bytes = await this.#readFile(this.#files.path);
      const parsed = bytes === null ? null : this.#files.parse(bytes);
      state = parsed?.ok
        ? parsed.value
        : parsed
        ? await this.#corruptSnapshot(parsed.error)
        : this.#files.initial();
    }
    this.#files.warn(
      `${
        error.message.split(";")[0]
      }; moved the journal to '${aside}' and continued from ${from}`,
    );
    return await this.#compact(state);
  }

  async #corruptSnapshot(error: CorruptStoreError): Promise<T> {
    if (this.#files.onCorrupt === "throw") throw error;
    return await this.#files.quarantine(error);
  }

  /**
   * Folds the journal into a new snapshot: journal.next first (durable),
   * then the snapshot, then the rename of journal.next over the journal.
   */
  async #compact(state: T): Promise<_Cache<T>> {
    const text = this.#files.serialize(state);
    const bytes = _encoder.encode(text);
    const header = await this.#writeNext(bytes);
    this.#seal(header.id);
    this.#files.rotateBackups();
    await this.#files.replace(this.#files.path, text);
    this.#renameNext();
    if (this.#files.durable) await this.#syncDir();
    return this.#cacheFor(header, state, bytes.length);
  }

  /**
   * Marks the current journal as being compacted into `nextId`, so that a
   * process that has it cached looks for an unfinished compaction before
   * appending to it. (Only live processes read it from the page cache, so it
   * needs no fsync.)
   */
  #seal(nextId: string): void {
    const cache = this.#cache;
    if (cache === null) return; // no journal, or moved aside
    const handle = this.#open();
    if (handle === null) return;
    try {
      handle.writeNow(
        _encodeLine(cache.seq + 1, `"o":[],"seal":${JSON.stringify(nextId)}`),
      );
    } finally {
      handle.close();
    }
  }

  async #newJournal(state: T, snapshot: Uint8Array): Promise<_Cache<T>> {
    const header = await this.#writeNext(snapshot);
    this.#renameNext();
    if (this.#files.durable) await this.#syncDir();
    return this.#cacheFor(header, state, snapshot.length);
  }

  #cacheFor(
    header: { id: string; length: number },
    state: T,
    snapshotBytes: number,
  ): _Cache<T> {
    this.#cache = {
      id: header.id,
      offset: header.length,
      seq: 0,
      state,
      snapshotBytes,
    };
    return this.#cache;
  }

  async #writeNext(
    snapshot: Uint8Array,
  ): Promise<{ id: string; length: number }> {
    const id = crypto.randomUUID();
    const text = `${
      JSON.stringify({
        "lockbox-journal": 1,
        id,
        base: await _sha256(snapshot),
      })
    }\n`;
    let handle: _WriteHandle | undefined;
    try {
      _removeIfExists(this.nextPath); // an orphan of a writer that died
      // 0666 less the umask for a new store, as `touch` makes a file.
      handle = _createForWrite(this.nextPath, 0o666);
      // The journal keeps the owner, group and mode of the store's files.
      for (const like of [this.journalPath, this.#files.path]) {
        const stat = _lstat(like);
        if (stat === null) continue;
        _keepOwnership(handle, stat, like);
        break;
      }
      await handle.write(_encoder.encode(text));
      if (this.#files.durable) await handle.sync();
    } catch (error) {
      handle?.close();
      handle = undefined;
      try {
        _removeIfExists(this.nextPath);
      } catch {
        // The error below names the path.
      }
      if (error instanceof StoreError) throw error;
      throw _fsError("write", this.nextPath, error);
    } finally {
      handle?.close();
    }
    return { id, length: _encoder.encode(text).length };
  }

  #renameNext(): void {
    try {
      _rename(this.nextPath, this.journalPath);
    } catch (error) {
      if (_errorCode(error) === "ENOENT") return;
      throw _fsError("rename", this.nextPath, error);
    }
  }

  async #syncDir(): Promise<void> {
    try {
      await _syncDirectory(dirname(this.journalPath));
    } catch (error) {
      throw _fsError(
        "fsync the directory of",
        basename(this.journalPath),
        error,
      );
    }
  }
}
