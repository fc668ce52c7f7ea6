// Journal mode's open files: opening and reading the journal, and keeping
// it open between the calls of one store that are in flight together (and,
// with `keepOpen`, until close()), so that the next update reuses it after
// one lstat instead of an open, a header read and a close.

import { _fsError } from "../base/fs_errors.ts";
import { _stillLinked } from "../base/file_identity.ts";
import {
  _openExistingForAppend,
  _readFile,
  type _WriteHandle,
} from "../runtime/mod.ts";
import { _checkTarget } from "./atomic.ts";
import { _GroupCommit } from "./_group_commit.ts";
import { type _Header, _HEADER_MAX, _parseHeader } from "./_journal_format.ts";

/** Where this process's cached state stands: a journal's id, an offset. */
export interface _Position {
  id: string;
  /** The end of the last line applied. */
  offset: number;
}

/** Reads a file of the store whole; `null` if it does not exist. */
export async function _readIfExists(path: string): Promise<Uint8Array | null> {
  _checkTarget(path, "read");
  try {
    return await _readFile(path);
  } catch (error) {
    throw _fsError("read", path, error);
  }
}

/** The journal of one store, and the handles on it this process keeps. */
export class _JournalFiles {
  readonly journalPath: string;
  readonly nextPath: string;
  #storeFiles: { readonly keepsOpen: boolean };
  /** Where the cached state stands, if there is one (see _JournalCache). */
  #position: () => _Position | null;
  #commit: _GroupCommit;
  /** Reads and updates of the store in flight (see counted). */
  #inFlight = 0;
  /** The journal, held open from the catch-up to this update's append. */
  #held: _WriteHandle | null = null;
  /** The id in the header of the journal #held is open on. */
  #heldId: string | null = null;
  /**
   * The journal kept open after an update, and the id in its header, for
   * the next update of this store to reuse while it is still the file at
   * journalPath. Closed as the last call in flight settles, unless the
   * store keeps its files open (`keepOpen`), until close().
   */
  #idle: _WriteHandle | null = null;
  #idleId: string | null = null;

  /**
   * Creates the journal files of the store at `path`; `storeFiles` says
   * whether it keeps files open, `position` where the cached state stands.
   */
  constructor(
    path: string,
    storeFiles: { readonly keepsOpen: boolean },
    position: () => _Position | null,
  ) {
    this.journalPath = `${path}.journal`;
    this.nextPath = `${path}.journal.next`;
    this.#storeFiles = storeFiles;
    this.#position = position;
    this.#commit = new _GroupCommit(this.journalPath);
  }

  /**
   * Runs `fn` counted as in flight: a read or update of this store, from
   * before it asks for the lock until it is durable (syncSoon waits for the
   * others; closeWhenIdle closes the kept journal once none is left).
   */
  async counted<R>(fn: () => Promise<R>): Promise<R> {
    this.#inFlight++;
    try {
      return await fn();
    } finally {
      this.#inFlight--;
      this.closeWhenIdle();
    }
  }

  /** The group commit of a line appended through `handle` (see _GroupCommit). */
  syncSoon(handle: _WriteHandle): Promise<void> | null {
    return this.#commit.syncSoon(handle, this.#inFlight <= 1);
  }

  /** Opens the journal for appending; `null` if there is none. */
  open(): _WriteHandle | null {
    _checkTarget(this.journalPath);
    try {
      return _openExistingForAppend(this.journalPath);
    } catch (error) {
      throw _fsError("open", this.journalPath, error);
    }
  }

  /** The current journal's header, reading only its start; `null` if none. */
  readHeader(): _Header | null {
    const handle = this.open();
    if (handle === null) return null;
    try {
      return _parseHeader(handle.readAt(0, _HEADER_MAX));
    } finally {
      handle.close();
    }
  }

  /** Closes a journal handle, or after its fdatasync if one is still due. */
  close(handle: _WriteHandle): void {
    this.#commit.close(handle);
  }

  /**
   * Holds `handle` (on the journal whose header has `id`) for this update's
   * append, parking whatever was held before.
   */
  hold(handle: _WriteHandle, id: string): void {
    this.release();
    this.#held = handle;
    this.#heldId = id;
  }

  /** The held journal for an append (else a new open); `null` if none. */
  takeHeld(): _WriteHandle | null {
    const handle = this.#held ?? this.open();
    this.#held = null;
    return handle;
  }

  /** Parks the held journal, if any (see park). */
  release(): void {
    const handle = this.#held;
    this.#held = null;
    if (handle !== null) this.park(handle);
  }

  /**
   * Keeps a journal handle open for the next update, if this process's
   * cache is of that journal; closes it otherwise.
   */
  park(handle: _WriteHandle): void {
    if (this.#idle !== null && this.#idle !== handle) this.close(this.#idle);
    this.#idle = null;
    if (this.#position()?.id !== this.#heldId) {
      this.close(handle);
      return;
    }
    this.#idle = handle;
    this.#idleId = this.#heldId;
  }

  /**
   * Closes the kept journal once no call is in flight, before the last one
   * settles (calls in flight share it), unless the store keeps it open.
   */
  closeWhenIdle(): void {
    const idle = this.#idle;
    if (idle === null || this.#inFlight > 0 || this.#storeFiles.keepsOpen) {
      return;
    }
    this.#idle = null;
    this.close(idle);
  }

  /**
   * The kept journal and its size, if it is still the file at journalPath
   * (a compaction renames a new one over it; a foreign tool may move or
   * replace it) and this process's cache is of it. Closes it otherwise.
   */
  takeIdle(): { handle: _WriteHandle; size: number } | null {
    const handle = this.#idle;
    if (handle === null) return null;
    this.#idle = null;
    try {
      const linked = _stillLinked(handle, this.journalPath);
      const position = this.#position();
      if (
        position !== null && position.id === this.#idleId &&
        linked !== null && position.offset <= linked.size
      ) return { handle, size: linked.size };
    } catch {
      // Cannot tell: open it again the long way.
    }
    this.close(handle);
    return null;
  }
}
