// Journal mode's compaction: folding the journal into a new snapshot, and
// finishing one that a writer killed half way left behind. The order of the
// files (journal.next, the seal, the snapshot, the rename) is what lets a
// reader never combine a snapshot with lines that are not its own (see
// `_journal_format.ts`).

import { basename, dirname } from "node:path";
import { _fsError } from "../base/fs_errors.ts";
import { StoreError } from "../base/errors.ts";
import {
  _createForWrite,
  _errorCode,
  _lstat,
  _removeIfExists,
  _rename,
  _syncDirectory,
  type _WriteHandle,
} from "../runtime/mod.ts";
import { _keepOwnership } from "./atomic.ts";
import {
  _headerLine,
  _parseHeader,
  _sealLine,
  _sha256,
} from "./_journal_format.ts";
import { type _JournalFiles, _readIfExists } from "./_journal_files.ts";
import type { _StoreFiles } from "./_store_files.ts";

const _encoder = new TextEncoder();

/** A journal just put in place: its id and header length, its snapshot's. */
export interface _NewJournal {
  id: string;
  /** The header's length: where its first line will start. */
  length: number;
  snapshotBytes: number;
}

/** The compactions of one store's journal. */
export class _JournalCompaction<T> {
  #storeFiles: _StoreFiles<T>;
  #journal: _JournalFiles;

  /** Creates the compaction of a store's journal. */
  constructor(storeFiles: _StoreFiles<T>, journal: _JournalFiles) {
    this.#storeFiles = storeFiles;
    this.#journal = journal;
  }

  /**
   * Folds the journal into a new snapshot of `state`: journal.next first
   * (durable), then the seal after line `seq` of the current journal (if
   * this process has one cached), then the snapshot, then the rename of
   * journal.next over the journal.
   */
  async compact(state: T, seq: number | null): Promise<_NewJournal> {
    const text = this.#storeFiles.serialize(state);
    const bytes = _encoder.encode(text);
    const header = await this.#writeNext(bytes);
    if (seq !== null) this.#seal(seq, header.id);
    this.#storeFiles.rotateBackups();
    await this.#storeFiles.replace(this.#storeFiles.path, text);
    await this.#putNextInPlace();
    return { ...header, snapshotBytes: bytes.length };
  }

  /** Starts a journal over the snapshot whose bytes are `snapshot`. */
  async start(snapshot: Uint8Array): Promise<_NewJournal> {
    const header = await this.#writeNext(snapshot);
    await this.#putNextInPlace();
    return { ...header, snapshotBytes: snapshot.length };
  }

  /**
   * Finishes a compaction that stopped after replacing the snapshot
   * (`true`); removes a journal.next that never got that far.
   */
  async finish(): Promise<boolean> {
    const next = await _readIfExists(this.#journal.nextPath);
    if (next === null) return false;
    const header = _parseHeader(next);
    const snapshot = await _readIfExists(this.#storeFiles.path);
    const current = this.#journal.readHeader();
    if (
      header === null || snapshot === null ||
      await _sha256(snapshot) !== header.base ||
      // The snapshot is still the journal's own: nothing was replaced, so
      // the journal stands (were the two equal, its lines change nothing).
      header.base === current?.base
    ) {
      // It never got as far as the snapshot: the old journal stands.
      _removeIfExists(this.#journal.nextPath);
      return false;
    }
    await this.#putNextInPlace();
    return true;
  }

  /**
   * Marks the current journal as being compacted into `nextId`, so that a
   * process that has it cached looks for an unfinished compaction before
   * appending to it. (Only live processes read it from the page cache, so it
   * needs no fsync.)
   */
  #seal(seq: number, nextId: string): void {
    const handle = this.#journal.open();
    if (handle === null) return;
    try {
      handle.writeNow(_sealLine(seq + 1, nextId));
    } finally {
      handle.close();
    }
  }

  /** Writes journal.next: the header of a new journal over `snapshot`. */
  async #writeNext(
    snapshot: Uint8Array,
  ): Promise<{ id: string; length: number }> {
    const { journalPath, nextPath } = this.#journal;
    const id = crypto.randomUUID();
    const line = _headerLine(id, await _sha256(snapshot));
    let handle: _WriteHandle | undefined;
    try {
      _removeIfExists(nextPath); // an orphan of a writer that died
      // 0666 less the umask for a new store, as `touch` makes a file.
      handle = _createForWrite(nextPath, 0o666);
      // The journal keeps the owner, group and mode of the store's files.
      for (const like of [journalPath, this.#storeFiles.path]) {
        const stat = _lstat(like);
        if (stat === null) continue;
        _keepOwnership(handle, stat, like);
        break;
      }
      await handle.write(line);
      if (this.#storeFiles.durable) await handle.sync();
    } catch (error) {
      handle?.close();
      handle = undefined;
      try {
        _removeIfExists(nextPath);
      } catch {
        // The error below names the path.
      }
      if (error instanceof StoreError) throw error;
      throw _fsError("write", nextPath, error);
    } finally {
      handle?.close();
    }
    return { id, length: line.length };
  }

  /** Renames journal.next over the journal, and fsyncs the directory. */
  async #putNextInPlace(): Promise<void> {
    const { journalPath, nextPath } = this.#journal;
    try {
      _rename(nextPath, journalPath);
    } catch (error) {
      if (_errorCode(error) !== "ENOENT") {
        throw _fsError("rename", nextPath, error);
      }
    }
    if (!this.#storeFiles.durable) return;
    try {
      await _syncDirectory(dirname(journalPath));
    } catch (error) {
      throw _fsError("fsync the directory of", basename(journalPath), error);
    }
  }
}
