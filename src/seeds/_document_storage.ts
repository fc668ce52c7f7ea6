// Where a DocumentStore keeps its documents: one interface, two
// implementations, chosen once in DocumentStore's constructor: seed 004's
// files (`_documents_on_files.ts`) or a StoreBackend
// (`_documents_on_backend.ts`). DocumentStore checks the arguments, builds
// the audit events and orders the rebuilt index, once for both.

import type { AuditEvent } from "./document_types.ts";

/** What DocumentStore checked and decided, for the storage it chose. */
export interface _DocumentSettings<T> {
  /** The root directory (on a backend: the names' prefix). */
  root: string;
  validate: ((value: unknown) => T) | undefined;
  /** How many previous versions of a document to keep. */
  backups: number;
  durable: boolean;
  lockTimeout: number;
  /** Receives warnings (a damaged line in an audit log or the index). */
  warn: (message: string) => void;
  /** The error for a document (or a backup) that is not there. */
  notFound: (id: string, message?: string) => Error;
}

/** One entry of the index: a document and when it was first saved. */
export interface _IndexEntry {
  id: string;
  created: string;
}

/** A document store's documents, backups, audit logs and index. */
export interface _DocumentStorage<T> {
  /** The document `id`, validated; `undefined` if it was never saved. */
  read(id: string): Promise<T | undefined>;
  /**
   * One change of the document `id`, under its exclusion: `next` returns
   * the new version (calling `current` for the stored one if it needs it);
   * the storage keeps the stored version as a backup (if it keeps any),
   * adds a new document to the index before writing it, writes the new
   * version and appends `event(backup)` to the document's audit log.
   * With `existing`, a document that was never saved may fail with
   * `notFound` before the change waits for anything.
   *
   * @returns The name of the backup made of the stored version, if any.
   */
  change(
    id: string,
    next: (current: () => Promise<T | undefined>) => Promise<T>,
    event: (backup: string | undefined) => AuditEvent,
    existing: boolean,
  ): Promise<string | undefined>;
  /** The document's audit log, oldest first. */
  history(id: string): Promise<AuditEvent[]>;
  /** The names of the document's kept backups, newest first. */
  backups(id: string): Promise<string[]>;
  /** Whether `name` is shaped like a name `backups()` gives. */
  isBackupName(name: string): boolean;
  /** A kept backup, validated; `undefined` if it is not kept. */
  readBackup(id: string, name: string): Promise<T | undefined>;
  /** The index's entries as stored (unchecked), oldest first. */
  readIndex(): Promise<unknown[]>;
  /** Those of `ids` whose document has been written, in the same order. */
  written(ids: string[]): Promise<string[]>;
  /**
   * Every written document, dated for the rebuilt index's order: when it
   * was first saved, or as near as the storage can tell.
   */
  documents(): Promise<_IndexEntry[]>;
  /** Replaces the index with `entries`. */
  writeIndex(entries: _IndexEntry[]): Promise<void>;
}

/**
 * Checks a document id: a non-empty name without path separators or `..`,
 * on files a directory name under `by_id/`, on a backend the last part of a
 * name.
 */
export function _checkDocumentId(id: string): void {
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
}
