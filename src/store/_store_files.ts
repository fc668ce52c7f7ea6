// The file work both of JsonStore's file modes share, called downward by
// each: the store's lock, parsing and serializing, the fence file, backups,
// the durable atomic replace, and moving a corrupt file aside.

import { dirname } from "node:path";
import {
  _link,
  _lstat,
  _readFile,
  _removeIfExists,
  _rename,
  _syncDirectory,
} from "../runtime/mod.ts";
import {
  _fenceFamily,
  type _Fences,
  _formatFences,
  _parseFences,
} from "../lock/fence.ts";
import { _fsError } from "../base/fs_errors.ts";
import {
  type CorruptStoreError,
  StaleFenceError,
  StoreError,
} from "../base/errors.ts";
import { FileLock } from "../lock/file_lock.ts";
import { _lockInternals } from "../lock/lock_internals.ts";
import { _KeptLockFile } from "../lock/kept_lock_file.ts";
import {
  _quarantineAside,
  _readStoreFile,
  _replaceHoldingLock,
} from "./atomic.ts";
import { type _Parsed, _parseJson, _toJson } from "./json.ts";
import { _checkFence, _initialValue } from "./json_store_storage.ts";
import { _parsePython, _toPython } from "./python_json.ts";

/** A parsed file, or why it is corrupt. */
export type _Loaded<T> =
  | { ok: true; value: T; exists: boolean }
  | Extract<_Parsed<T>, { ok: false }>;

/** The checked settings of one JsonStore, as its constructor made them. */
export interface _StoreSettings<T> {
  path: string;
  lockPath: string;
  initial: T | (() => T);
  durable: boolean;
  backups: number;
  validate: ((value: unknown) => T) | undefined;
  lockTimeout: number;
  blockingLock: boolean;
  onCorrupt: "throw" | "quarantine";
  indent: number;
  warn: (message: string) => void;
  /** Python's JSON (number text, NaN, key order kept; its escaping), or plain. */
  python: { ensureAscii: boolean } | null;
  /** Keep the lock file (and the journal) open between calls until close(). */
  keepOpen: boolean;
}

/** One store's files: its document, lock, fence, backups and quarantine. */
export class _StoreFiles<T> {
  readonly path: string;
  readonly lockPath: string;
  readonly durable: boolean;
  readonly onCorrupt: "throw" | "quarantine";
  readonly validate: ((value: unknown) => T) | undefined;
  readonly warn: (message: string) => void;
  #settings: _StoreSettings<T>;
  /** The lock file kept open between calls (`keepOpen`), until close(). */
  #kept: _KeptLockFile | undefined;

  /** Creates the file layer of one store. */
  constructor(settings: _StoreSettings<T>) {
    this.#settings = settings;
    this.path = settings.path;
    this.lockPath = settings.lockPath;
    this.durable = settings.durable;
    this.onCorrupt = settings.onCorrupt;
    this.validate = settings.validate;
    this.warn = settings.warn;
    this.#kept = settings.keepOpen ? new _KeptLockFile() : undefined;
  }

  /** Whether files stay open between calls: `keepOpen`, until close(). */
  get keepsOpen(): boolean {
    return this.#kept !== undefined;
  }

  /** Closes the kept lock file; from now on each call closes its own. */
  close(): void {
    const kept = this.#kept;
    this.#kept = undefined;
    kept?.close();
  }

  /** Runs `fn` holding the store's lock (exclusive unless `shared`). */
  async locked<R>(
    fn: () => Promise<R>,
    options: { shared?: boolean; signal?: AbortSignal },
  ): Promise<R> {
    const lockOptions = {
      lockPath: this.lockPath,
      timeout: this.#settings.lockTimeout,
      blocking: this.#settings.blockingLock,
      shared: options.shared,
      signal: options.signal,
    };
    _lockInternals.prepareHolding();
    const lock = this.#kept === undefined
      ? await FileLock.acquire(this.path, lockOptions)
      : await _lockInternals.acquireKept(
        this.path,
        lockOptions,
        this.#kept,
      ) as FileLock;
    try {
      return await _lockInternals.runHolding(lock, fn);
    } finally {
      await lock.release();
    }
  }

  /** A fresh copy of the value the store has while it has no file. */
  initial(): T {
    return _initialValue(this.#settings.initial);
  }

  /** Parses and validates a file's bytes; a failure is a CorruptStoreError. */
  parse(bytes: Uint8Array, path: string = this.path): _Loaded<T> {
    const python = this.#settings.python;
    const parsed = _parseJson(
      bytes,
      path,
      this.validate,
      python ? _parsePython : JSON.parse,
    );
    return parsed.ok ? { ...parsed, exists: true } : parsed;
  }

  /** The document as the store writes it (a `TypeError` if JSON cannot hold it). */
  serialize(value: unknown): string {
    const python = this.#settings.python;
    return _toJson(
      value,
      this.#settings.indent,
      this.path,
      python
        ? (v, indent) => _toPython(v, indent, python.ensureAscii)
        : undefined,
    );
  }

  get #fencePath(): string {
    return `${this.path}.fence`;
  }

  /**
   * The highest fences applied so far, one per family (see `fence.ts`);
   * throws if `fence` is older than its family's. `null` without a fence.
   */
  async checkFence(given: number | undefined): Promise<_Fences | null> {
    const fence = _checkFence(given);
    if (fence === undefined) return null;
    const bytes = await _readStoreFile(this.#fencePath);
    const fences = bytes === null
      ? { file: -Infinity, counter: -Infinity }
      : _parseFences(new TextDecoder().decode(bytes));
    if (fences === null) {
      throw new StoreError(
        this.#fencePath,
        `Cannot read the fence of '${this.path}': '${this.#fencePath}' does not hold fencing tokens; repair it, or reset it with 'lockbox store reset-fence'`,
      );
    }
    const highest = fences[_fenceFamily(fence)];
    if (fence < highest) {
      // Taking that lock again then gives a token above this fence.
      _lockInternals.noteStaleFence(fence, highest);
      throw new StaleFenceError(this.path, fence, highest);
    }
    return fences;
  }

  /**
   * Records `fence` when it is newer than its family's in `fences` (what
   * checkFence returned). Called before the change it guards: if the
   * process dies between the two, the fence has moved on and the change
   * (never acknowledged) is simply not there.
   */
  async recordFence(
    fence: number | undefined,
    fences: _Fences | null,
  ): Promise<void> {
    if (fence === undefined || fences === null) return;
    const family = _fenceFamily(fence);
    if (fence > fences[family]) {
      await this.replace(
        this.#fencePath,
        _formatFences({ ...fences, [family]: fence }),
      );
    }
  }

  /**
   * Forgets every fence applied, under the exclusive lock: the next fenced
   * write of either family is accepted, whatever its token.
   */
  async resetFence(options: { signal?: AbortSignal }): Promise<void> {
    await this.locked(async () => {
      try {
        if (!_removeIfExists(this.#fencePath)) return;
        if (this.durable) await _syncDirectory(dirname(this.#fencePath));
      } catch (error) {
        throw _fsError("reset the fence of", this.path, error);
      }
    }, { signal: options.signal });
  }

  /**
   * Keeps the current document as `<path>.bak.1`, shifting older backups up
   * and dropping the oldest; nothing without `backups`.
   */
  rotateBackups(): void {
    const backups = this.#settings.backups;
    if (backups === 0) return;
    const name = (i: number) => `${this.path}.bak.${i}`;
    try {
      if (_lstat(this.path) === null) return;
      _removeIfExists(name(backups));
      for (let i = backups - 1; i >= 1; i--) {
        if (_lstat(name(i)) !== null) _rename(name(i), name(i + 1));
      }
      // A hard link keeps the current bytes as backup 1 for free; the atomic
      // replace then moves only the store's own name to the new version.
      _link(this.path, name(1));
    } catch (error) {
      throw _fsError(
        "rotate the backups of",
        this.path,
        error,
        "; nothing was written",
      );
    }
  }

  /** Replaces `path` (the document by default) atomically, durably if set. */
  replace(path: string, text: string): Promise<void> {
    return _replaceHoldingLock(path, text, this.durable);
  }

  /**
   * Applies `onCorrupt` to a corrupt document: throws `error`, or
   * (quarantine) moves the document's bytes to `<path>.corrupt-<time>`,
   * continues from the newest backup that parses and validates (else the
   * initial value), writes that in its place, and warns.
   */
  async applyOnCorrupt(error: CorruptStoreError): Promise<T> {
    if (this.onCorrupt === "throw") throw error;
    let destination: string;
    try {
      destination = _quarantineAside(this.path);
    } catch (error) {
      throw _fsError("quarantine corrupt store", this.path, error);
    }
    let value: T | undefined;
    let source = "the initial value";
    for (let i = 1; i <= this.#settings.backups && value === undefined; i++) {
      const backup = `${this.path}.bak.${i}`;
      // A backup that cannot be read is no candidate; the next one may be.
      const bytes = await _readFile(backup).catch(() => null);
      if (bytes === null) continue;
      const parsed = this.parse(bytes, backup);
      if (parsed.ok) {
        value = parsed.value;
        source = `backup '${backup}'`;
      }
    }
    value ??= this.initial();
    await this.replace(this.path, this.serialize(value));
    this.warn(
      `${
        error.message.split(";")[0]
      }; moved its bytes to '${destination}' and continued from ${source}`,
    );
    return value;
  }
}
