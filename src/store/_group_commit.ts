// Journal mode's group commit: an update's fdatasync comes after the store's
// lock is released, so that other writers append while this one waits for
// the disk, and one fdatasync per journal serves every update of the store
// in this process that appended meanwhile (see ARCHITECTURE.md, "Journal
// mode").

import { _afterIdleTurns, type _Deferred, _deferred } from "../base/promise.ts";
import { StoreError } from "../base/errors.ts";
import type { _WriteHandle } from "../runtime/mod.ts";

/** The most appends one fdatasync waits for (see syncSoon). */
const _MAX_UNSYNCED = 256;

/** The fdatasyncs due on one store's journals, in this process. */
export class _GroupCommit {
  readonly #journalPath: string;
  /**
   * Journals appended to and not yet fdatasynced, each with the promise its
   * updates wait on (syncSoon), and the appends counted so far.
   */
  #unsynced: Map<_WriteHandle, _Deferred> | null = null;
  #appends = 0;
  /** Handles dropped while their fdatasync was still due: closed after it. */
  #closeAfterSync = new Set<_WriteHandle>();

  /** Creates the group commit of the journal at `journalPath`. */
  constructor(journalPath: string) {
    this.#journalPath = journalPath;
  }

  /**
   * Makes the line just appended through `handle` durable, or returns the
   * promise of it: `alone` (no other update of this store in flight in
   * this process), the fdatasync runs now; otherwise it waits for them, and
   * one fdatasync serves every update that appended meanwhile. It runs once
   * no further append has come for a few turns of the microtask queue (a
   * burst of concurrent updates hands the lock on within the process, each
   * appending in turn), when the last update in flight has appended, or
   * after _MAX_UNSYNCED appends, and settles every update waiting for it.
   */
  syncSoon(handle: _WriteHandle, alone: boolean): Promise<void> | null {
    if (alone && this.#unsynced === null) {
      this.#fdatasync(handle);
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

  /** Closes a journal handle, or after its fdatasync if one is still due. */
  close(handle: _WriteHandle): void {
    if (this.#unsynced?.has(handle)) this.#closeAfterSync.add(handle);
    else handle.close();
  }

  /** fdatasyncs every journal syncSoon has been given, and settles them. */
  #syncDue(): void {
    const due = this.#unsynced;
    if (due === null) return;
    this.#unsynced = null;
    for (const [handle, synced] of due) {
      try {
        this.#fdatasync(handle);
        synced.resolve();
      } catch (error) {
        synced.reject(error);
      }
      if (this.#closeAfterSync.delete(handle)) handle.close();
    }
  }

  /**
   * Waits for appended lines to reach the disk. Other writers may have
   * appended after them (and read them), so a failure cannot take them back
   * out: it is reported as an update of unknown durability.
   */
  #fdatasync(handle: _WriteHandle): void {
    const path = this.#journalPath;
    try {
      // On this thread: a trip to the thread pool costs a thread start and
      // two wake-ups. The lock is free meanwhile; only this process's event
      // loop waits (~0.1-0.3 ms).
      handle.syncDataNow();
    } catch (error) {
      throw new StoreError(
        path,
        `Cannot make an update durable in '${path}': fdatasync failed (${
          (error as Error).message
        }); the update is in the journal and visible, but may not survive a power loss; check the disk`,
        { cause: error },
      );
    }
  }
}
