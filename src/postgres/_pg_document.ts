// A JsonStore document in PostgreSQL: one row of the documents table (json,
// a version, the highest fence applied). json, not jsonb: it keeps the
// document's text as written (key order, U+0000), so a document reads back
// exactly as from a file; queries can cast it (value::jsonb). A change is one transaction that
// holds the row FOR UPDATE from the read to the commit, in two round trips
// (BEGIN + SELECT ... FOR UPDATE; UPDATE + COMMIT); the fence is checked
// in the same transaction against the fencing lock's current token, read
// FOR SHARE so that no new holder's token commits in between.

import { AsyncLocalStorage } from "node:async_hooks";
import {
  CorruptStoreError,
  LockError,
  LockTimeoutError,
  StaleFenceError,
  StoreError,
} from "../base/errors.ts";
import { _after } from "../base/promise.ts";
import {
  type _ChangeOptions,
  _checkFence,
  type _DocumentBackend,
  _initialValue,
  type _Next,
} from "../store/document_backend.ts";
import { _copyJson, _toJson } from "../store/json.ts";
import { _applyOp, type _Op, _Recorder } from "../store/journal_draft.ts";
import { _fenceFamily, _FILE_TOKEN_MIN } from "../lock/fence.ts";
import {
  _ANSWER_MS,
  type _CallLimit,
  _GRACE_MS,
  _literal,
  _MAX_LOCK_TIMEOUT,
  _rightsHint,
  type _Session,
  _sqlState,
} from "./_session.ts";
import type { _Subscription } from "./_listener.ts";
import type { _SessionPool } from "./_pool.ts";
import { _DEFAULT_SCHEMA, type _Schema } from "./schema.ts";
import {
  _RECHECK_MS,
  _Wakeup,
  type StoreVersion,
  type WatchOptions,
} from "../store/watch.ts";

/** The largest document a PostgreSQL store writes: 64 MiB of JSON text. */
export const _MAX_PG_DOCUMENT_BYTES = 64 * 1024 * 1024;

/** The documents (of which backend) the current async call chain holds. */
const _holding = new AsyncLocalStorage<
  { pool: _SessionPool; name: string }[]
>();

/** The checked settings of one PostgreSQL store. */
export interface _PgDocumentSettings<T> {
  name: string;
  fenceLock: string;
  initial: T | (() => T);
  validate: ((value: unknown) => T) | undefined;
  durable: boolean;
  backups: number;
  lockTimeout: number;
  holdTimeout: number;
  onCorrupt: "throw" | "quarantine";
  warn: (message: string) => void;
  /** A log that every new version appends `record(version)` to, in its transaction. */
  log?: { name: string; record: (version: number) => unknown };
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

/** One row of the documents table, as a change selects it. */
interface _Row {
  /** The value's text; null when missing or not sent (see `empty`). */
  value: string | null;
  /** The value is missing (never written). */
  empty: boolean;
  version: string;
  fence: string | null;
  value_id: string | null;
}

/** What a watch has of a document: a version, and the stored value it is of. */
interface _View<T> {
  state: T;
  valueId: string | null;
  version: number;
}

/** One row of the document_changes table: a version's ops, as JSON text. */
interface _Change {
  version: number;
  ops: string;
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
export class _PgDocument<T> implements _DocumentBackend<T> {
  readonly settings: _PgDocumentSettings<T>;
  #pool: _SessionPool;
  #label: string;
  #cache: _Cache<T> | null = null;
  /** A change of this process using #cache, settled when it is done. */
  #busy: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(pool: _SessionPool, settings: _PgDocumentSettings<T>) {
    this.#pool = pool;
    this.settings = settings;
    this.#label = `${settings.name} (PostgreSQL)`;
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
        `SELECT d.value::text AS value, d.version, ARRAY(
           SELECT c.ops::text FROM ${this.#pool.schema.sql}.document_changes c
           WHERE c.name = d.name AND c.version > d.version
           ORDER BY c.version) AS ops
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
    // only if it is not that one (#lockRow).
    const sent = rules ? null : this.#cache;
    const known = sent && { valueId: sent.valueId, version: sent.version };
    let open = true;
    let called = false;
    // fn's and validate's errors reach the caller unchanged.
    let fromCaller = false;
    let claimed: { promise: Promise<void>; resolve: () => void } | null = null;
    try {
      const locked = await this.#lockRow(
        session,
        fence,
        options,
        until,
        known,
      );
      let { row, changes } = locked;
      const lockToken = locked.lockToken;
      // Aborted before fn ran: rolled back, never committed.
      options.signal?.throwIfAborted();
      // Only counter tokens are compared (a FileLock token an older lockbox
      // recorded here is ignored, so it cannot fence the document shut).
      const stored = _counterFence(row.fence);
      const highest = Math.max(stored, lockToken);
      if (fence !== undefined && fence < highest) {
        throw new StaleFenceError(this.#label, fence, highest);
      }
      // Another change of this process that held the row lock before this
      // one is committed or rolled back on the server (this one holds the
      // lock now): wait for it to settle the cache.
      while (this.#busy !== null) await this.#busy.promise;
      claimed = this.#busy = _busy();
      let cache = this.#cache;
      this.#cache = null;
      const baseVersion = Number(row.version);
      if (row.value === null && !row.empty) {
        // The server sent no value: this process's copy is of the stored
        // one, unless another change here dropped or moved it meanwhile.
        if (
          cache === null || cache.valueId !== row.value_id ||
          cache.version < known!.version
        ) {
          ({ row, changes } = await this.#reload(session));
          cache = null;
        }
      } else cache = null;
      // initial()'s error, like fn's, reaches the caller unchanged, once.
      const initial = () => {
        fromCaller = true;
        const value = this.#initial();
        fromCaller = false;
        return value;
      };
      let current: T;
      // The first version, and the one after a quarantine, are written
      // (whole) even if fn changes nothing.
      let mustWrite = false;
      let baseBytes: number;
      let pendingBytes = 0;
      let latest = Number(row.version);
      if (cache !== null) {
        current = cache.state;
        baseBytes = cache.baseBytes;
        pendingBytes = cache.pendingBytes;
        latest = Math.max(latest, cache.version);
        for (const change of changes) {
          if (change.version <= cache.version) continue;
          current = this.#apply(current, change);
          pendingBytes += change.ops.length;
          latest = change.version;
        }
      } else if (row.value === null) {
        current = initial();
        baseBytes = 0;
        mustWrite = true;
      } else {
        baseBytes = row.value.length;
        let value = (rules ? rules.parse : JSON.parse)(row.value);
        for (const change of changes) {
          value = this.#apply(value, change);
          pendingBytes += change.ops.length;
          latest = change.version;
        }
        const checked = this.#check(value);
        if (checked.ok) current = checked.value;
        else if (this.settings.onCorrupt === "throw") throw checked.error;
        else {
          current = await this.#quarantine(
            session,
            { value, version: String(latest) },
            checked.error,
          ) ?? initial();
          mustWrite = true;
        }
      }
      const backups = this.settings.backups;
      // A backup of a version that is not the stored value (changes since).
      const oldText = backups > 0 && latest > baseVersion && !mustWrite
        ? JSON.stringify(current)
        : null;
      const holding = [...(_holding.getStore() ?? []), {
        pool: this.#pool,
        name: this.settings.name,
      }];
      let result: R;
      let text: string | null = null;
      let ops: string[] = [];
      let root = false;
      called = fromCaller = true;
      if (rules) {
        const before = mustWrite ? undefined : rules.stringify(current);
        const next = await _holding.run(holding, () => fn(current));
        const validate = this.settings.validate;
        const value = validate ? validate(next.value) : next.value;
        fromCaller = false;
        result = next.result;
        text = this.#serialize(value);
        if (text !== before) ops = [""];
      } else {
        const recorder = new _Recorder();
        try {
          // A replacement (transform, write) gets the plain document, as
          // in journal mode.
          const before = options.replaces ? JSON.stringify(current) : undefined;
          const outcome = await _holding.run(
            holding,
            () => fn(options.replaces ? current : recorder.wrap(current, [])),
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
        fromCaller = false;
        ops = recorder.ops;
        root = ops.some((op) => op.startsWith('["s",[],'));
      }
      const newFence = fence !== undefined && fence > stored;
      const changed = ops.length > 0 || mustWrite;
      if (!changed && !newFence && this.settings.log === undefined) {
        await session.run("ROLLBACK");
        open = false;
        this.#keep(
          rules,
          current,
          row.value_id,
          latest,
          baseBytes,
          pendingBytes,
        );
        return { retry: false, result, version: latest };
      }
      // With a log, every change is an action to record, even one that
      // leaves the document as it was.
      const version = changed || this.settings.log !== undefined
        ? latest + 1
        : latest;
      const opsText = `[${ops.join(",")}]`;
      const asChange = !rules && !mustWrite && !root && backups === 0 &&
        baseBytes >= _WHOLE_BELOW &&
        pendingBytes + opsText.length <=
          Math.max(_COMPACT_AT_LEAST, baseBytes) &&
        (baseBytes + pendingBytes + opsText.length) * 3 <=
          _MAX_PG_DOCUMENT_BYTES;
      if (version === latest) {
        await this.#writeFence(session, fence);
        open = false;
        this.#keep(
          rules,
          current,
          row.value_id,
          latest,
          baseBytes,
          pendingBytes,
        );
        return { retry: false, result, version };
      }
      if (asChange) {
        await this.#writeChange(session, version, opsText, fence);
        open = false;
        this.#keep(
          rules,
          current,
          row.value_id,
          version,
          baseBytes,
          pendingBytes + opsText.length,
        );
        return { retry: false, result, version };
      }
      text ??= this.#serialize(current);
      const valueId = await this.#write(session, {
        text,
        version,
        oldText,
        hadValue: row.value !== null || cache !== null,
        pending: latest > baseVersion,
        fence,
      });
      open = false;
      this.#keep(rules, current, valueId, version, text.length, 0);
      return { retry: false, result, version };
    } catch (error) {
      if (fromCaller) throw error;
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

  /** Keeps the committed document for the next change of this process. */
  #keep(
    rules: _DocumentText | undefined,
    state: T,
    valueId: string | null,
    version: number,
    baseBytes: number,
    pendingBytes: number,
  ): void {
    if (rules) return;
    this.#cache = { state, valueId, version, baseBytes, pendingBytes };
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
  async *watch(options: WatchOptions): AsyncGenerator<StoreVersion<T>> {
    const signal = options.signal;
    if (signal?.aborted) return;
    const wakeup = new _Wakeup();
    const wake = () => wakeup.set();
    let subscription: _Subscription | null = null;
    const timer = setInterval(wake, options.recheckInterval ?? _RECHECK_MS);
    const stop = () => {
      clearInterval(timer);
      subscription?.close();
      subscription = null;
      wakeup.set();
    };
    signal?.addEventListener("abort", stop, { once: true });
    try {
      let last = -1;
      let view: _View<T> | null = null;
      while (!signal?.aborted) {
        let current: _Versioned<T>;
        try {
          if (subscription === null || !subscription.live) {
            subscription?.close();
            subscription = null;
            subscription = await this.#pool.subscribe(this.settings.name, wake);
            if (signal?.aborted) break;
          }
          // After every (re)connect too: what was written meanwhile.
          const read = await this.#readSince(view);
          view = read.view;
          current = read.current;
        } catch (error) {
          if (!_outage(error) || this.#pool.closed()) throw error;
          // The server is away: listen again at the next re-check.
          subscription?.close();
          subscription = null;
          await wakeup.take(signal);
          continue;
        }
        if (current.version !== last) {
          last = current.version;
          // The caller's own copy: the watch's stays for the next version.
          yield view === null ? current : {
            value: _copyJson(current.value),
            version: current.version,
          };
        }
        await wakeup.take(signal);
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      stop();
    }
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
   * Begins, waits for the row lock (making the row if it is missing), and
   * reads the document's changes since the stored value: the value itself
   * only if it is not the one `known` is of (a cached copy at that
   * version, which the changes after it bring up to date).
   */
  async #lockRow(
    session: _Session,
    fence: number | undefined,
    options: _ChangeOptions,
    until: number,
    known: { valueId: string | null; version: number } | null,
  ): Promise<{ row: _Row; changes: _Change[]; lockToken: number }> {
    const { lockTimeout, holdTimeout, durable, name, fenceLock } =
      this.settings;
    const idleLimit = holdTimeout === 0 || holdTimeout > _MAX_LOCK_TIMEOUT
      ? 0
      : Math.ceil(holdTimeout);
    // lock_timeout 0 means no limit; "do not wait" is NOWAIT for the row
    // lock, and 1 ms for waits NOWAIT does not cover (another session's
    // uncommitted insert of the same new row).
    const serverTimeout = lockTimeout === 0
      ? 1
      : lockTimeout > _MAX_LOCK_TIMEOUT
      ? 0
      : Math.ceil(lockTimeout);
    const wait = lockTimeout === 0 ? " NOWAIT" : "";
    const literal = _literal(name);
    // The stored value is the cached copy's: same value_id, and no newer
    // than it (a value_id is NULL only on a row no lockbox wrote whole
    // since the trigger came, and then never cached as known).
    const same = known === null || known.valueId === null
      ? "false"
      : `value_id = ${known.valueId} AND version <= ${known.version}`;
    const select =
      `SELECT CASE WHEN ${same} THEN NULL ELSE value::text END AS value,
        value IS NULL AND NOT (${same}) AS empty, version, fence, value_id
      FROM ${this.#pool.schema.sql}.documents WHERE name = ${literal} FOR UPDATE${wait};
      SELECT version, ops::text AS ops FROM ${this.#pool.schema.sql}.document_changes
      WHERE name = ${literal} AND version > (SELECT CASE WHEN ${same}
        THEN ${known?.version ?? 0} ELSE version END
        FROM ${this.#pool.schema.sql}.documents WHERE name = ${literal})
      ORDER BY version`;
    // The fencing lock's token, read FOR SHARE: a new holder's token
    // cannot commit until this transaction has.
    const lockRow = fence === undefined ? "" : `;
      SELECT fence FROM ${this.#pool.schema.sql}.locks WHERE name = ${
      _literal(fenceLock)
    } FOR SHARE${wait}`;
    const limit = { until, waits: true, signal: options.signal };
    const begin = `BEGIN; SET LOCAL lock_timeout = ${serverTimeout};
         SET LOCAL idle_in_transaction_session_timeout = ${idleLimit};
         SET LOCAL synchronous_commit = ${durable ? "on" : "off"};
         SET LOCAL lockbox.writer = 'changes';`;
    // A wait the server does not time (lock_timeout 0) would have no answer
    // deadline: it waits in slices instead, each answered in time.
    const waitFor = serverTimeout === 0
      ? (first: string, wait: string) =>
        this.#waitInSlices(session, `${first} SAVEPOINT lockbox_wait;`, wait, {
          until,
          waits: true,
          signal: options.signal,
        })
      : (first: string, wait: string) =>
        session.queryAll(`${first} ${wait}`, limit);
    const back = fence === undefined ? 0 : 1;
    return await this.#cancellable(session, options.signal, async () => {
      const results = await waitFor(begin, `${select}${lockRow}`);
      let rows = results[results.length - 2 - back];
      let changes = results[results.length - 1 - back];
      if (rows.length === 0) {
        const made = await waitFor(
          "",
          `INSERT INTO ${this.#pool.schema.sql}.documents (name) VALUES (${literal})
           ON CONFLICT (name) DO NOTHING; ${select}`,
        );
        rows = made[made.length - 2];
        changes = made[made.length - 1];
      }
      const token = fence === undefined ? -1 : Number(
        (results[results.length - 1][0] as { fence?: string } | undefined)
          ?.fence ?? -1,
      );
      return {
        row: rows[0] as _Row,
        changes: (changes as { version: string; ops: string }[]).map((c) => ({
          version: Number(c.version),
          ops: c.ops,
        })),
        lockToken: token,
      };
    });
  }

  /** The stored value and every change after it, under the row lock. */
  async #reload(
    session: _Session,
  ): Promise<{ row: _Row; changes: _Change[] }> {
    const literal = _literal(this.settings.name);
    const results = await session.queryAll(
      `SELECT value::text AS value, value IS NULL AS empty, version, fence,
        value_id FROM ${this.#pool.schema.sql}.documents WHERE name = ${literal};
      SELECT version, ops::text AS ops FROM ${this.#pool.schema.sql}.document_changes
      WHERE name = ${literal} AND version > (SELECT version
        FROM ${this.#pool.schema.sql}.documents WHERE name = ${literal})
      ORDER BY version`,
    );
    return {
      row: results[0][0] as _Row,
      changes: (results[1] as { version: string; ops: string }[]).map((c) => ({
        version: Number(c.version),
        ops: c.ops,
      })),
    };
  }

  /**
   * Runs `first` (which ends with `SAVEPOINT lockbox_wait`), then `wait` in
   * slices of `lock_timeout` (_ANSWER_MS), each of which must be answered
   * within its length plus `_GRACE_MS`: a slice that times out is rolled
   * back to the savepoint and tried again (in the next one's statement),
   * until `limit.until` less the grace. `lock_timeout` is 0 again after.
   * The results of `wait`'s statements.
   */
  async #waitInSlices(
    session: _Session,
    first: string,
    wait: string,
    limit: _CallLimit,
  ): Promise<unknown[][]> {
    const end = (limit.until ?? Infinity) - _GRACE_MS;
    let before = first;
    for (;;) {
      limit.signal?.throwIfAborted();
      const left = Math.ceil(end - performance.now());
      if (left <= 0) throw new LockTimeoutError(this.#label, null);
      const slice = Math.min(left, _ANSWER_MS);
      try {
        const results = await session.queryAll(
          `${before} SET LOCAL lock_timeout = ${slice}; ${wait};
           SET LOCAL lock_timeout = 0`,
          {
            ...limit,
            until: Math.min(
              limit.until ?? Infinity,
              performance.now() + slice + _GRACE_MS,
            ),
          },
        );
        return results.slice(0, -1);
      } catch (error) {
        if (_sqlState(error) !== "55P03") throw error;
        before = "ROLLBACK TO SAVEPOINT lockbox_wait;";
      }
    }
  }

  /** The fence to record: a newer one replaces a FileLock token an older lockbox kept. */
  #fenceSql(fence: number | undefined): string {
    return fence === undefined
      ? "fence"
      : `CASE WHEN fence < ${_FILE_TOKEN_MIN} THEN greatest(fence, ${fence}) ELSE ${fence} END`;
  }

  /** Records a newer fence only (no new version), and commits. */
  async #writeFence(
    session: _Session,
    fence: number | undefined,
  ): Promise<void> {
    await session.run(
      `UPDATE ${this.#pool.schema.sql}.documents SET fence = ${
        this.#fenceSql(fence)
      } WHERE name = ${_literal(this.settings.name)};
       COMMIT;`,
    );
  }

  /** The log record of a new version, as SQL (empty without a log). */
  #logSql(version: number): string {
    const log = this.settings.log;
    return log === undefined
      ? ""
      : `INSERT INTO ${this.#pool.schema.sql}.logs (name, entry)
         VALUES (${_literal(log.name)}, ${
        _literal(_toJson(log.record(version), 0, log.name))
      }::json);`;
  }

  /**
   * The notification of a new version, sent at the commit and only if it
   * commits: the name and version only (payloads stop at 8000 bytes).
   */
  #notifySql(version: number): string {
    // The schema too, but for the default's (whose payload older versions
    // read).
    const schema = this.#pool.schema;
    const schemaField = schema.name === _DEFAULT_SCHEMA
      ? ""
      : `, 'schema', ${_literal(schema.name)}`;
    return `SELECT pg_notify('${schema.channel}', json_build_object('name', ${
      _literal(this.settings.name)
    }, 'version', ${version}${schemaField})::text);`;
  }

  /**
   * Writes a new version as a row of the document_changes table (its ops,
   * as the file journal writes them), and commits: the stored value stays
   * as it is, so the cost is the change's.
   */
  async #writeChange(
    session: _Session,
    version: number,
    ops: string,
    fence: number | undefined,
  ): Promise<void> {
    const name = _literal(this.settings.name);
    const fenced = fence === undefined
      ? ""
      : `UPDATE ${this.#pool.schema.sql}.documents
       SET fence = ${this.#fenceSql(fence)} WHERE name = ${name};`;
    await session.run(
      `INSERT INTO ${this.#pool.schema.sql}.document_changes (name, version, ops)
       VALUES (${name}, ${version}, ${_literal(ops)}::json);
       ${fenced}${this.#logSql(version)}${this.#notifySql(version)}
       COMMIT;`,
    );
  }

  /**
   * Writes a new version whole (folding in the changes since the stored
   * value, which it deletes), keeps a backup of the old one, and commits.
   * The new value's id.
   */
  async #write(
    session: _Session,
    write: {
      text: string;
      version: number;
      /** The old version's text, when it is not the stored value. */
      oldText: string | null;
      /** There is an old version (not only initial). */
      hadValue: boolean;
      /** Changes since the stored value are to be deleted. */
      pending: boolean;
      fence: number | undefined;
    },
  ): Promise<string> {
    const name = _literal(this.settings.name);
    const { text, version, oldText } = write;
    const backups = this.settings.backups;
    const old = oldText === null
      ? `SELECT name, version, value FROM ${this.#pool.schema.sql}.documents WHERE name = ${name}`
      : `VALUES (${name}, ${version - 1}, ${_literal(oldText)}::json)`;
    const keep = backups > 0 && write.hadValue
      ? `INSERT INTO ${this.#pool.schema.sql}.document_backups (name, version, value)
           ${old} ON CONFLICT DO NOTHING;
         DELETE FROM ${this.#pool.schema.sql}.document_backups WHERE name = ${name}
           AND version NOT IN (SELECT version FROM ${this.#pool.schema.sql}.document_backups
             WHERE name = ${name} ORDER BY version DESC LIMIT ${backups});`
      : "";
    const folded = write.pending
      ? `DELETE FROM ${this.#pool.schema.sql}.document_changes WHERE name = ${name};`
      : "";
    const results = await session.queryAll(
      `${keep}${folded}${this.#logSql(version)}
       UPDATE ${this.#pool.schema.sql}.documents SET value = ${
        _literal(text)
      }::json,
         version = ${version}, fence = ${this.#fenceSql(write.fence)},
         updated_at = now(), value_id = txid_current()
       WHERE name = ${name} RETURNING value_id;
       ${this.#notifySql(version)}
       COMMIT;`,
    );
    const updated = results[results.length - 3] as { value_id: string }[];
    return String(updated[0].value_id);
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
    const [{ id }] = await session.query<{ id: string }>(
      `INSERT INTO ${this.#pool.schema.sql}.quarantine (name, version, value, reason)
       VALUES ($1, $2, $3::json, $4) RETURNING id`,
      [
        this.settings.name,
        row.version,
        JSON.stringify(row.value),
        error.reason,
      ],
    );
    const backups = await session.query<{ version: string; value: unknown }>(
      `SELECT version, value FROM ${this.#pool.schema.sql}.document_backups
       WHERE name = $1 ORDER BY version DESC`,
      [this.settings.name],
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

  /**
   * Runs `work` on `session`, cancelling it from another session when the
   * signal aborts or a timeout past lock_timeout's range runs out.
   */
  async #cancellable<R>(
    session: _Session,
    signal: AbortSignal | undefined,
    work: () => Promise<R>,
  ): Promise<R> {
    const lockTimeout = this.settings.lockTimeout;
    let cancelled: "timeout" | "abort" | null = null;
    let delivered: Promise<boolean> | null = null;
    const cancel = (why: "timeout" | "abort") => {
      if (cancelled !== null) return;
      cancelled = why;
      delivered = this.#pool.cancel(session.backendPid).then(
        () => true,
        () => false,
      );
    };
    const stopTimer =
      lockTimeout > _MAX_LOCK_TIMEOUT && lockTimeout !== Infinity
        ? _after(lockTimeout, () => cancel("timeout"))
        : () => {};
    const onAbort = () => cancel("abort");
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await work();
    } catch (error) {
      if (_sqlState(error) === "57014" && cancelled === "abort") {
        throw signal!.reason;
      }
      if (_sqlState(error) === "57014" && cancelled === "timeout") {
        throw new LockTimeoutError(this.#label, null);
      }
      throw error;
    } finally {
      stopTimer();
      signal?.removeEventListener("abort", onAbort);
      // As in PostgresBackend's wait: nothing more runs on the session (nor
      // does it go back to the pool) until the cancel has reached the
      // server; if it may not have, the session is closed (rolling back).
      if (delivered !== null && !await delivered) await session.close();
    }
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

  /** Runs one read on a session, on a fresh one if it was found dead. */
  /** Forgets the document's fence (a later fenced change records its own). */
  async resetFence(_options: { signal?: AbortSignal }): Promise<void> {
    await this.#withSession((session) =>
      session.query(
        `UPDATE ${this.#pool.schema.sql}.documents SET fence = NULL WHERE name = $1`,
        [this.settings.name],
      )
    );
  }

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

/** A promise with its resolve function. */
function _busy(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((yes) => resolve = yes);
  return { promise, resolve };
}

/** A stored fence of the counter family, or -1 (none, or a FileLock token). */
function _counterFence(stored: string | null): number {
  const fence = Number(stored ?? -1);
  return _fenceFamily(fence) === "counter" ? fence : -1;
}

/**
 * Whether an error says the server is out of reach (a session lost, a
 * connection refused), not that something is wrong with the request.
 */
function _outage(error: unknown): boolean {
  if (error instanceof LockError) return true; // could not connect
  return error instanceof StoreError && _sessionLost(error.cause);
}

/** Whether a driver error says the session is gone (not a SQL error). */
function _sessionLost(error: unknown): boolean {
  const state = _sqlState(error);
  if (state !== undefined) return /^(08|57P0)/.test(state);
  return error instanceof Error && error.constructor === Error;
}
