// A JsonStore document in PostgreSQL: one row of the documents table (json,
// a version, the highest fence applied). json, not jsonb: it keeps the
// document's text as written (key order, U+0000), so a document reads back
// exactly as from a file; queries can cast it (value::jsonb). A change is
// one transaction that holds the row FOR UPDATE from the read to the
// commit, in two round trips (_pg_row.ts has its statements); the fence is
// checked in the same transaction against the fencing lock's current
// token, read FOR SHARE so that no new holder's token commits in between.
// This module is the change's logic: this process's copy of the document
// and the changes since, fn over a recording draft, validation and
// quarantine, and which commit to make; and the reads a watch
// (_pg_watch.ts) makes.

import { AsyncLocalStorage } from "node:async_hooks";
import {
  CorruptStoreError,
  LockError,
  LockTimeoutError,
  StoreError,
} from "../base/errors.ts";
import {
  type _ChangeOptions,
  _checkFence,
  _initialValue,
  type _JsonStoreStorage,
  type _Next,
} from "../store/json_store_storage.ts";
import { type _Deferred, _deferred } from "../base/promise.ts";
import { _toJson } from "../store/json.ts";
import { _applyOp, type _Op, _Recorder } from "../store/journal_draft.ts";
import { _fenceFamily } from "../lock/fence.ts";
import {
  type _CallLimit,
  _GRACE_MS,
  _rightsHint,
  type _Session,
  _sessionLost,
  _sqlState,
} from "./_session.ts";
import { type _View, _watchDocument } from "./_pg_watch.ts";
import type { _SessionPool } from "./_pool.ts";
import {
  type _Change,
  _PgRow,
  type _Row,
  type _RowSettings,
} from "./_pg_row.ts";
import type { StoreVersion, WatchOptions } from "../store/watch.ts";

/** The largest document a PostgreSQL store writes: 64 MiB of JSON text. */
export const _MAX_PG_DOCUMENT_BYTES = 64 * 1024 * 1024;

/** The documents (of which backend) the current async call chain holds. */
const _holding = new AsyncLocalStorage<
  { pool: _SessionPool; name: string }[]
>();

/** The checked settings of one PostgreSQL store. */
export interface _PgDocumentSettings<T> extends _RowSettings {
  initial: T | (() => T);
  validate: ((value: unknown) => T) | undefined;
  onCorrupt: "throw" | "quarantine";
  warn: (message: string) => void;
  /**
   * How changes read and write the document's text, in place of the
   * driver's JSON.parse and JSON.stringify (`migrateFileStore` keeps number
   * texts and key order so).
   */
  text?: _DocumentText;
}

/** A document's text, parsed and written by other rules than JSON's. */
export interface _DocumentText {
  parse(text: string): unknown;
  stringify(value: unknown): string;
}

/** The option of `PgJsonStore` that sets `_PgDocumentSettings.text`. */
export const _TEXT: unique symbol = Symbol("lockbox.documentText");

/** A committed version of a document. */
export interface _Versioned<T> {
  value: T;
  version: number;
}

/** This process's copy of a document, kept between its changes. */
interface _Cache<T> {
  state: T;
  /** The stored value it is of (the documents table's value_id). */
  valueId: string | null;
  version: number;
  /** The stored value's length, and the changes' since (compaction). */
  baseBytes: number;
  pendingBytes: number;
}

/** Where a change starts: the document, how far past the stored value. */
interface _Start<T> {
  current: T;
  /** Written whole even if unchanged (the first version, a quarantine). */
  mustWrite: boolean;
  latest: number;
  baseBytes: number;
  pendingBytes: number;
}

/** What a change loaded under the row lock, before `fn`. */
interface _Loaded<T> extends _Start<T> {
  row: _Row;
  /** The copy of this process was used (so there is an old version). */
  cached: boolean;
  /** The version of the stored value. */
  baseVersion: number;
  /** The old version's text for its backup, when it is not the stored value. */
  oldText: string | null;
  /** The stored fence (of the counter family, else -1). */
  stored: number;
}

/** What `fn` (and validate) made of the document. */
interface _Made<T, R> {
  result: R;
  /** The new text, when text rules made it; else made from `current`. */
  text: string | null;
  ops: string[];
  /** An op replaces the whole document. */
  root: boolean;
  current: T;
}

/** What a change's commit starts from, and what `fn` made of it. */
interface _Commit<T> extends _Loaded<T>, Omit<_Made<T, unknown>, "result"> {
  fence: number | undefined;
}

/**
 * Documents smaller than this are written whole at every change, so that
 * the documents table's value is always current for them (SQL that reads it).
 */
export const _WHOLE_BELOW = 1024 * 1024;

/**
 * The changes of a document are folded into its value once they are
 * longer than this or than the value, whichever is more (as the file
 * journal is compacted).
 */
const _COMPACT_AT_LEAST = 256 * 1024;

/** A JsonStore's document as a row of the documents table. */
export class _PgDocument<T> implements _JsonStoreStorage<T> {
  readonly settings: _PgDocumentSettings<T>;
  #pool: _SessionPool;
  #label: string;
  #row: _PgRow;
  #cache: _Cache<T> | null = null;
  /** A change of this process using #cache, settled when it is done. */
  #busy: _Deferred | null = null;

  constructor(pool: _SessionPool, settings: _PgDocumentSettings<T>) {
    this.#pool = pool;
    this.settings = settings;
    this.#label = `${settings.name} (PostgreSQL)`;
    this.#row = new _PgRow(pool, settings);
  }

  /** The last committed version, without waiting for writers. */
  async read(): Promise<T> {
    return (await this.readVersioned()).value;
  }

  /** The last committed version and its number (0: never written). */
  async readVersioned(): Promise<_Versioned<T>> {
    // One statement, one snapshot: the value and the changes after it.
    const [row] = await this.#withSession((session) =>
      session.query<{ value: string | null; version: string; ops: string[] }>(
        `SELECT d.value::text AS value, d.version, ${
          this.#pool.changeRows
            ? `ARRAY(
           SELECT c.ops::text FROM ${this.#pool.schema.sql}.document_changes c
           WHERE c.name = d.name AND c.version > d.version
           ORDER BY c.version)`
            : "ARRAY[]::text[]"
        } AS ops
         FROM ${this.#pool.schema.sql}.documents d WHERE d.name = $1`,
        [this.settings.name],
      )
    );
    if (row === undefined || row.value === null) {
      return { value: this.#initial(), version: Number(row?.version ?? 0) };
    }
    let value = JSON.parse(row.value);
    let version = Number(row.version);
    for (const ops of row.ops) {
      value = this.#apply(value, { version: ++version, ops });
    }
    const checked = this.#check(value);
    if (checked.ok) return { value: checked.value, version };
    if (this.settings.onCorrupt === "throw") throw checked.error;
    // Quarantined under the row lock, by a change that changes nothing.
    const quarantined = await this.change(
      (draft) =>
        Promise.resolve({ replace: false, value: draft, result: draft }),
      {},
      (committed) => version = committed,
    );
    return { value: quarantined, version };
  }

  /**
   * Under the row lock: loads, checks the fence, calls `fn`, validates and
   * commits what it returns (nothing when it equals the stored document,
   * but a newer fence is recorded), keeping a backup of the old version.
   */
  async change<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    options: _ChangeOptions,
    onVersion?: (version: number) => void,
  ): Promise<R> {
    const fence = _checkFence(options.fence);
    if (fence !== undefined && _fenceFamily(fence) === "file") {
      // Compared with this document's PostgreSQL tokens it would fence them
      // all out; it says nothing about the lock that fences the document.
      throw new RangeError(
        `Cannot write '${this.#label}' with fence ${fence}: that is a FileLock token, and a PostgreSQL document is fenced by the tokens of its PostgreSQL lock '${this.settings.fenceLock}'; take that lock (db.withLock) and pass its token`,
      );
    }
    // A change from inside a change of the same document would wait for
    // its own row lock: refused at once, as FileLock refuses it on files.
    const held = _holding.getStore() ?? [];
    if (
      this.settings.lockTimeout > 0 &&
      held.some((h) => h.pool === this.#pool && h.name === this.settings.name)
    ) {
      throw new LockError(
        `Cannot change '${this.#label}': this async context is already changing it (lockbox's stores are not re-entrant: an update from inside another update of the same document would wait for itself); use the value you already have`,
      );
    }
    // A session found dead before fn ran (a server restart since it was
    // last used) is replaced once: nothing was read or written on it.
    for (let attempt = 0;; attempt++) {
      options.signal?.throwIfAborted();
      const outcome = await this.#changeOn(fn, fence, options, attempt === 0);
      if (outcome.retry) continue;
      onVersion?.(outcome.version);
      return outcome.result;
    }
  }

  async #changeOn<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    fence: number | undefined,
    options: _ChangeOptions,
    mayRetry: boolean,
  ): Promise<
    { retry: true } | { retry: false; result: R; version: number }
  > {
    // The wait for the row lock settles by lockTimeout plus the grace.
    const until = performance.now() + this.settings.lockTimeout + _GRACE_MS;
    const session = await this.#pool.borrow({ until, signal: options.signal });
    const rules = this.settings.text;
    // What this process has of the document: the server sends the value
    // only if it is not that one (_PgRow.lock).
    const sent = rules || !this.#pool.changeRows ? null : this.#cache;
    const known = sent && { valueId: sent.valueId, version: sent.version };
    let open = true;
    let called = false;
    let claimed: _Deferred | null = null;
    try {
      // Refused here if fence is stale, or the signal aborted meanwhile.
      const held = await this.#row.lock(session, fence, options, until, known);
      // Another change of this process that held the row lock before this
      // one is committed or rolled back on the server (this one holds the
      // lock now): wait for it to settle the cache.
      while (this.#busy !== null) await this.#busy.promise;
      claimed = this.#busy = _deferred();
      const loaded = await this.#load(session, held, known);
      called = true;
      const made = rules
        ? await this.#callOnText(fn, loaded, rules)
        : await this.#callOnDraft(fn, loaded.current, options.replaces);
      const kept = await this.#commit(session, { ...loaded, ...made, fence });
      open = false;
      if (!rules) this.#cache = { state: made.current, ...kept };
      return { retry: false, result: made.result, version: kept.version };
    } catch (error) {
      // fn's, validate's and initial()'s errors reach the caller unchanged.
      if (error instanceof _ByCaller) throw error.error;
      if (
        mayRetry && !called && _sessionLost(error) && !options.signal?.aborted
      ) {
        open = false;
        session.close().catch(() => {});
        return { retry: true };
      }
      if (open && !session.ended) {
        await session.run("ROLLBACK").then(() => open = false, () => {});
      }
      throw this.#translate(error, options.signal);
    } finally {
      this.#pool.giveBack(session, !session.ended && !open);
      if (claimed !== null) {
        this.#busy = null;
        claimed.resolve();
      }
    }
  }

  /**
   * Under the row lock, with the cache claimed: the document this change
   * starts from. The cache is taken (a failed change leaves none); a stored
   * value the server did not send, and that the cache is no longer of
   * (another change here dropped or moved it), is read again.
   */
  async #load(
    session: _Session,
    held: { row: _Row; changes: _Change[]; stored: number },
    known: { valueId: string | null; version: number } | null,
  ): Promise<_Loaded<T>> {
    let { row, changes } = held;
    let cache = this.#cache;
    this.#cache = null;
    const baseVersion = Number(row.version);
    if (row.value === null && !row.empty) {
      if (
        cache === null || cache.valueId !== row.value_id ||
        cache.version < known!.version
      ) {
        ({ row, changes } = await this.#row.reload(session));
        cache = null;
      }
    } else cache = null;
    const start = cache !== null
      ? this.#catchUp(cache, changes, Number(row.version))
      : await this.#fromStored(session, row, changes);
    // A backup of a version that is not the stored value (changes since).
    const oldText = this.settings.backups > 0 && start.latest > baseVersion &&
        !start.mustWrite
      ? JSON.stringify(start.current)
      : null;
    const cached = cache !== null;
    return { ...start, row, cached, baseVersion, oldText, stored: held.stored };
  }

  /** This process's copy, brought up to date by the changes after its version. */
  #catchUp(cache: _Cache<T>, changes: _Change[], version: number): _Start<T> {
    let current = cache.state;
    let pendingBytes = cache.pendingBytes;
    let latest = Math.max(version, cache.version);
    for (const change of changes) {
      if (change.version <= cache.version) continue;
      current = this.#apply(current, change);
      pendingBytes += change.ops.length;
      latest = change.version;
    }
    const baseBytes = cache.baseBytes;
    return { current, mustWrite: false, baseBytes, pendingBytes, latest };
  }

  /**
   * The stored value with the changes after it, validated (a corrupt one
   * throws, or is quarantined for a backup or initial), else initial: the
   * first version, and the one after a quarantine, are written (whole)
   * even if fn changes nothing.
   */
  async #fromStored(
    session: _Session,
    row: _Row,
    changes: _Change[],
  ): Promise<_Start<T>> {
    let latest = Number(row.version);
    let pendingBytes = 0;
    if (row.value === null) {
      const current = _byCaller(() => this.#initial());
      return { current, mustWrite: true, baseBytes: 0, pendingBytes, latest };
    }
    const baseBytes = row.value.length;
    let value = (this.settings.text?.parse ?? JSON.parse)(row.value);
    for (const change of changes) {
      value = this.#apply(value, change);
      pendingBytes += change.ops.length;
      latest = change.version;
    }
    const checked = this.#check(value);
    if (!checked.ok && this.settings.onCorrupt === "throw") throw checked.error;
    const current = checked.ok ? checked.value : await this.#quarantine(
      session,
      { value, version: String(latest) },
      checked.error,
    ) ?? _byCaller(() => this.#initial());
    return { current, mustWrite: !checked.ok, baseBytes, pendingBytes, latest };
  }

  /** Runs `work` with this document among those the call chain holds. */
  #holding<X>(work: () => X): X {
    const held = _holding.getStore() ?? [];
    const entry = { pool: this.#pool, name: this.settings.name };
    return _holding.run([...held, entry], work);
  }

  /**
   * Calls `fn` on the document that text rules parsed, then validate: the
   * new text (one op, to mark it changed, if it is not the old one's).
   */
  async #callOnText<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    loaded: _Loaded<T>,
    rules: _DocumentText,
  ): Promise<_Made<T, R>> {
    const { current, mustWrite } = loaded;
    let before: string | undefined;
    let next: _Next<T, R>;
    let value: T;
    try {
      before = mustWrite ? undefined : rules.stringify(current);
      next = await this.#holding(() => fn(current));
      const validate = this.settings.validate;
      value = validate ? validate(next.value) : next.value;
    } catch (error) {
      throw new _ByCaller(error);
    }
    const text = this.#serialize(value);
    const ops = text !== before ? [""] : [];
    return { result: next.result, text, ops, root: false, current };
  }

  /**
   * Calls `fn` on a recording draft of `current` (a replacement, for
   * transform and write, gets the plain document, as in journal mode),
   * then validate: the ops they made, and the document after them.
   */
  async #callOnDraft<R>(
    fn: (draft: T) => Promise<_Next<T, R>>,
    current: T,
    replaces: boolean | undefined,
  ): Promise<_Made<T, R>> {
    try {
      const recorder = new _Recorder();
      let result: R;
      try {
        const before = replaces ? JSON.stringify(current) : undefined;
        const outcome = await this.#holding(() =>
          fn(replaces ? current : recorder.wrap(current, []))
        );
        result = outcome.result;
        if (outcome.replace) {
          current = recorder.replaceRoot(outcome.value) as T;
          if (recorder.ops[0] === `["s",[],${before}]`) recorder.ops = [];
        }
        if (this.settings.validate) {
          const checked = this.settings.validate(current);
          if (checked !== current) {
            current = recorder.conform(current, checked) as T;
          }
        }
        result = recorder.finish(result);
      } finally {
        recorder.end();
      }
      const ops = recorder.ops;
      const root = ops.some((op) => op.startsWith('["s",[],'));
      return { result, text: null, ops, root, current };
    } catch (error) {
      throw new _ByCaller(error);
    }
  }

  /**
   * Ends a change's transaction: rolls back when there is nothing to
   * record, else commits a newer fence only, a row of document_changes, or
   * the value whole. What the process's copy is then of.
   */
  async #commit(
    session: _Session,
    c: _Commit<T>,
  ): Promise<Omit<_Cache<T>, "state">> {
    const { ops, fence, row, latest, baseBytes, pendingBytes } = c;
    const changed = ops.length > 0 || c.mustWrite;
    const logged = this.settings.log !== undefined;
    const same = { valueId: row.value_id, version: latest, baseBytes };
    if (!changed && !(fence !== undefined && fence > c.stored) && !logged) {
      await session.run("ROLLBACK");
      return { ...same, pendingBytes };
    }
    // With a log, every change is an action to record, even one that
    // leaves the document as it was.
    const version = changed || logged ? latest + 1 : latest;
    if (version === latest) {
      await this.#row.writeFence(session, fence);
      return { ...same, pendingBytes };
    }
    const opsText = `[${ops.join(",")}]`;
    const asChange = this.#pool.changeRows && !this.settings.text &&
      !c.mustWrite && !c.root &&
      this.settings.backups === 0 && baseBytes >= _WHOLE_BELOW &&
      pendingBytes + opsText.length <=
        Math.max(_COMPACT_AT_LEAST, baseBytes) &&
      (baseBytes + pendingBytes + opsText.length) * 3 <=
        _MAX_PG_DOCUMENT_BYTES;
    if (asChange) {
      await this.#row.writeChange(session, version, opsText, fence);
      return { ...same, version, pendingBytes: pendingBytes + opsText.length };
    }
    const text = c.text ?? this.#serialize(c.current);
    const valueId = await this.#row.write(session, {
      text,
      version,
      oldText: c.oldText,
      hadValue: row.value !== null || c.cached,
      pending: latest > c.baseVersion,
      fence,
    });
    return { valueId, version, baseBytes: text.length, pendingBytes: 0 };
  }

  /** Applies one stored change to `state`; a change that does not apply is a corrupt store. */
  #apply(state: unknown, change: _Change): T {
    try {
      for (const op of JSON.parse(change.ops) as _Op[]) {
        state = _applyOp(state, op);
      }
      return state as T;
    } catch (error) {
      throw new CorruptStoreError(
        this.#label,
        `change ${change.version} in ${this.#pool.schema.name}.document_changes does not apply (${
          (error as Error).message
        })`,
        undefined,
        { cause: error },
      );
    }
  }

  /**
   * The current version, then each new one: woken by `NOTIFY` on a session
   * of its own that `LISTEN`s, and read again after every reconnect (a
   * write made while the session was down is seen then).
   */
  watch(options: WatchOptions): AsyncGenerator<StoreVersion<T>> {
    return _watchDocument(
      this.#pool,
      this.settings.name,
      (view) => this.#readSince(view),
      options,
    );
  }

  /**
   * The last committed version, read on from `view` (the version a watch
   * has): only the changes since, unless the stored value is no longer the
   * one it has (then all of it). One statement, so one snapshot. The view
   * to keep (`null` while never written, or with text rules).
   */
  async #readSince(
    view: _View<T> | null,
  ): Promise<{ current: _Versioned<T>; view: _View<T> | null }> {
    if (!this.#pool.changeRows) {
      return { current: await this.readVersioned(), view: null };
    }
    const [row] = await this.#withSession((session) =>
      session.query<{
        value: string | null;
        same: boolean;
        version: string;
        value_id: string | null;
        ops: string[];
      }>(
        `SELECT CASE WHEN same THEN NULL ELSE d.value::text END AS value,
           same, d.version, d.value_id, ARRAY(
             SELECT c.ops::text FROM ${this.#pool.schema.sql}.document_changes c
             WHERE c.name = d.name
               AND c.version > CASE WHEN same THEN $3 ELSE d.version END
             ORDER BY c.version) AS ops
         FROM ${this.#pool.schema.sql}.documents d,
           LATERAL (SELECT coalesce(d.value_id = $2 AND d.version <= $3,
             false) AS same) s
         WHERE d.name = $1`,
        [this.settings.name, view?.valueId ?? null, view?.version ?? 0],
      )
    );
    if (this.settings.text !== undefined || row === undefined) {
      return { current: await this.readVersioned(), view: null };
    }
    let state: T;
    let version: number;
    if (row.same) {
      state = view!.state;
      version = view!.version;
    } else if (row.value === null) {
      return { current: await this.readVersioned(), view: null };
    } else {
      state = JSON.parse(row.value);
      version = Number(row.version);
    }
    for (const ops of row.ops) {
      state = this.#apply(state, { version: ++version, ops });
    }
    if (this.settings.validate) {
      const checked = this.#check(state);
      // A corrupt document: as a read handles it (throw, or quarantine).
      if (!checked.ok) {
        return { current: await this.readVersioned(), view: null };
      }
      state = checked.value;
    }
    return {
      current: { value: state, version },
      view: { state, valueId: row.value_id, version },
    };
  }

  /** The stored backups, newest first. */
  async backups(): Promise<{ version: number; savedAt: string }[]> {
    const rows = await this.#withSession((session) =>
      session.query<{ version: string; saved_at: Date }>(
        `SELECT version, saved_at FROM ${this.#pool.schema.sql}.document_backups
         WHERE name = $1 ORDER BY version DESC`,
        [this.settings.name],
      )
    );
    return rows.map((row) => ({
      version: Number(row.version),
      savedAt: row.saved_at.toISOString(),
    }));
  }

  /** One backup's document, or `undefined` if it is not kept. */
  async backup(version: number): Promise<unknown> {
    const [row] = await this.#withSession((session) =>
      session.query<{ value: unknown }>(
        `SELECT value FROM ${this.#pool.schema.sql}.document_backups
         WHERE name = $1 AND version = $2`,
        [this.settings.name, version],
      )
    );
    return row?.value;
  }

  /**
   * Moves a stored value that validate rejects to the quarantine table; the
   * newest backup that validates, else `undefined` (continue from
   * `initial`).
   */
  async #quarantine(
    session: _Session,
    row: { value: unknown; version: string },
    error: CorruptStoreError,
  ): Promise<T | undefined> {
    const { id, backups } = await this.#row.quarantine(
      session,
      row.version,
      JSON.stringify(row.value),
      error.reason,
    );
    let value: T | undefined;
    let source = "the initial value";
    for (const backup of backups) {
      const checked = this.#check(backup.value);
      if (checked.ok) {
        value = checked.value;
        source = `backup version ${backup.version}`;
        break;
      }
    }
    this.settings.warn(
      `Store '${this.#label}' was corrupt (${error.reason}); moved version ${row.version} to ${this.#pool.schema.name}.quarantine (id ${id}) and continued from ${source}`,
    );
    return value;
  }

  #check(value: unknown): { ok: true; value: T } | {
    ok: false;
    error: CorruptStoreError;
  } {
    const validate = this.settings.validate;
    if (!validate) return { ok: true, value: value as T };
    try {
      return { ok: true, value: validate(value) };
    } catch (error) {
      return {
        ok: false,
        error: new CorruptStoreError(
          this.#label,
          `validate rejected it (${(error as Error).message})`,
          undefined,
          { cause: error },
        ),
      };
    }
  }

  #serialize(value: unknown): string {
    const text = _toJson(value, 0, this.#label, this.settings.text?.stringify);
    if (
      text.length * 3 > _MAX_PG_DOCUMENT_BYTES &&
      new TextEncoder().encode(text).length > _MAX_PG_DOCUMENT_BYTES
    ) {
      throw new RangeError(
        `Cannot write '${this.#label}': the JSON is over the PostgreSQL store's limit of ${
          _MAX_PG_DOCUMENT_BYTES / 1024 / 1024
        } MiB for one document; nothing was written`,
      );
    }
    return text;
  }

  #initial(): T {
    return _initialValue(this.settings.initial);
  }

  /** A driver error as lockbox's: what failed and what to do. */
  #translate(error: unknown, signal: AbortSignal | undefined): unknown {
    const state = _sqlState(error);
    if (signal?.aborted && (state === "57014" || error === signal.reason)) {
      return signal.reason;
    }
    // lockbox's own errors, and anything but the driver's, pass unchanged.
    const driver = state !== undefined ||
      (error instanceof Error && error.constructor === Error);
    if (!driver) return error;
    const message = (error as Error).message;
    if (state === undefined || /^(08|57P)/.test(state)) {
      return new StoreError(
        this.#label,
        `Cannot change '${this.#label}': the session ended (${message}); if it ended during the commit, the change may or may not be there: read the document to see`,
        { cause: error },
      );
    }
    switch (state) {
      case "55P03":
        return new LockTimeoutError(this.#label, null, { cause: error });
      case "42P01":
      case "3F000":
        return new StoreError(
          this.#label,
          `Cannot use '${this.#label}': a lockbox table is missing (${message}); PostgresBackend.connect() makes lockbox's tables again (a dropped table's documents are gone unless a database backup has them); nothing was written`,
          { cause: error },
        );
    }
    const hint = _rightsHint(error, this.#pool.schema.name);
    return new StoreError(
      this.#label,
      `Cannot change '${this.#label}': ${message}; nothing was written${
        hint === undefined ? "" : `; ${hint}`
      }`,
      { cause: error },
    );
  }

  /** Forgets the document's fence (a later fenced change records its own). */
  async resetFence(_options: { signal?: AbortSignal }): Promise<void> {
    await this.#withSession((session) =>
      session.query(
        `UPDATE ${this.#pool.schema.sql}.documents SET fence = NULL WHERE name = $1`,
        [this.settings.name],
      )
    );
  }

  /** Runs one read on a session, on a fresh one if it was found dead. */
  async #withSession<R>(fn: (session: _Session) => Promise<R>): Promise<R> {
    for (let attempt = 0;; attempt++) {
      const session = await this.#pool.borrow();
      try {
        return await fn(session);
      } catch (error) {
        if (attempt === 0 && _sessionLost(error)) {
          session.close().catch(() => {});
          continue;
        }
        throw this.#translate(error, undefined);
      } finally {
        this.#pool.giveBack(session, !session.ended);
      }
    }
  }
}

/** An error of the caller's code (fn, validate, initial): passed on unchanged. */
class _ByCaller {
  constructor(readonly error: unknown) {}
}

/** Runs the caller's `work`: what it throws comes out as a `_ByCaller`. */
function _byCaller<X>(work: () => X): X {
  try {
    return work();
  } catch (error) {
    throw new _ByCaller(error);
  }
}
