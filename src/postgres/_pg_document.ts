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
import { _after } from "../base/_promise.ts";
import {
  type _ChangeOptions,
  _checkFence,
  type _DocumentBackend,
  _initialValue,
  type _Next,
} from "../store/_document_backend.ts";
import { _toJson } from "../store/_json.ts";
import { _fenceFamily, _FILE_TOKEN_MIN } from "../lock/_fence.ts";
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
import { _DEFAULT_SCHEMA, type _Schema } from "./_schema.ts";
import {
  _RECHECK_MS,
  _Wakeup,
  type StoreVersion,
  type WatchOptions,
} from "../store/_watch.ts";

/** The largest document a PostgreSQL store writes: 64 MiB of JSON text. */
export const _MAX_PG_DOCUMENT_BYTES = 64 * 1024 * 1024;

/** Sessions, lent by the PostgresBackend that made the store. */
export interface _SessionPool {
  /** A session of its own, idle (opened within `limit`, if given). */
  borrow(limit?: _CallLimit): Promise<_Session>;
  /** Returns a session; `reusable: false` closes it. */
  giveBack(session: _Session, reusable: boolean): void;
  /** Cancels what a session runs, from another session. */
  cancel(backendPid: number): Promise<void>;
  /**
   * Wakes `wake` on each committed version of the document `name` (and
   * once if the shared LISTEN session ends), from the backend's one
   * LISTEN session.
   */
  subscribe(name: string, wake: () => void): Promise<_Subscription>;
  /** Whether the backend was closed. */
  closed(): boolean;
  /** The schema that holds the tables. */
  readonly schema: _Schema;
}

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

/** One row of the documents table, as selected. */
interface _Row {
  value: unknown;
  version: string;
  fence: string | null;
}

/** A JsonStore's document as a row of the documents table. */
export class _PgDocument<T> implements _DocumentBackend<T> {
  readonly settings: _PgDocumentSettings<T>;
  #pool: _SessionPool;
  #label: string;

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
    const [row] = await this.#withSession((session) =>
      session.query<_Row>(
        `SELECT value, version, fence FROM ${this.#pool.schema.sql}.documents WHERE name = $1`,
        [this.settings.name],
      )
    );
    if (row === undefined || row.value === null) {
      return { value: this.#initial(), version: Number(row?.version ?? 0) };
    }
    const checked = this.#check(row.value);
    if (checked.ok) {
      return { value: checked.value, version: Number(row.version) };
    }
    if (this.settings.onCorrupt === "throw") throw checked.error;
    // Quarantined under the row lock, by a change that changes nothing.
    let version = 0;
    const value = await this.change(
      (draft) =>
        Promise.resolve({ replace: false, value: draft, result: draft }),
      {},
      (committed) => version = committed,
    );
    return { value, version };
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
    let open = true;
    let called = false;
    // fn's and validate's errors reach the caller unchanged.
    let fromCaller = false;
    try {
      const { row, lockToken } = await this.#lockRow(
        session,
        fence,
        options,
        until,
      );
      // Aborted before fn ran: rolled back, never committed.
      options.signal?.throwIfAborted();
      const rules = this.settings.text;
      if (rules && row.value !== null) {
        row.value = rules.parse(row.value as string);
      }
      // Only counter tokens are compared (a FileLock token an older lockbox
      // recorded here is ignored, so it cannot fence the document shut).
      const stored = _counterFence(row.fence);
      const highest = Math.max(stored, lockToken);
      if (fence !== undefined && fence < highest) {
        throw new StaleFenceError(this.#label, fence, highest);
      }
      // initial()'s error, like fn's, reaches the caller unchanged, once.
      const initial = () => {
        fromCaller = true;
        const value = this.#initial();
        fromCaller = false;
        return value;
      };
      let current: T;
      let quarantined = false;
      if (row.value === null) current = initial();
      else {
        const checked = this.#check(row.value);
        if (checked.ok) current = checked.value;
        else if (this.settings.onCorrupt === "throw") throw checked.error;
        else {
          current = await this.#quarantine(session, row, checked.error) ??
            initial();
          quarantined = true;
        }
      }
      const before = row.value === null || quarantined
        ? undefined
        : rules
        ? rules.stringify(current)
        : JSON.stringify(current);
      called = fromCaller = true;
      const next = await _holding.run(
        [...(_holding.getStore() ?? []), {
          pool: this.#pool,
          name: this.settings.name,
        }],
        () => fn(current),
      );
      const validate = this.settings.validate;
      const value = validate ? validate(next.value) : next.value;
      fromCaller = false;
      const text = this.#serialize(value);
      const newFence = fence !== undefined && fence > stored;
      if (text === before && !newFence && this.settings.log === undefined) {
        await session.run("ROLLBACK");
        open = false;
        return {
          retry: false,
          result: next.result,
          version: Number(row.version),
        };
      }
      // With a log, every change is an action to record, even one that
      // leaves the document as it was.
      const changed = text !== before || this.settings.log !== undefined;
      const version = await this.#write(
        session,
        row,
        changed ? text : null,
        fence,
      );
      open = false;
      return { retry: false, result: next.result, version };
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
          current = await this.readVersioned();
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
          yield current;
        }
        await wakeup.take(signal);
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      stop();
    }
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

  /** Begins, waits for the row lock (making the row if it is missing). */
  async #lockRow(
    session: _Session,
    fence: number | undefined,
    options: _ChangeOptions,
    until: number,
  ): Promise<{ row: _Row; lockToken: number }> {
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
    const value = this.settings.text ? "value::text AS value" : "value";
    const select =
      `SELECT ${value}, version, fence FROM ${this.#pool.schema.sql}.documents
      WHERE name = ${_literal(name)} FOR UPDATE${wait}`;
    // The fencing lock's token, read FOR SHARE: a new holder's token
    // cannot commit until this transaction has.
    const lockRow = fence === undefined ? "" : `;
      SELECT fence FROM ${this.#pool.schema.sql}.locks WHERE name = ${
      _literal(fenceLock)
    } FOR SHARE${wait}`;
    const limit = { until, waits: true, signal: options.signal };
    const begin = `BEGIN; SET LOCAL lock_timeout = ${serverTimeout};
         SET LOCAL idle_in_transaction_session_timeout = ${idleLimit};
         SET LOCAL synchronous_commit = ${durable ? "on" : "off"};`;
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
    return await this.#cancellable(session, options.signal, async () => {
      const results = await waitFor(begin, `${select}${lockRow}`);
      let rows = results[results.length - (fence === undefined ? 1 : 2)];
      if (rows.length === 0) {
        const made = await waitFor(
          "",
          `INSERT INTO ${this.#pool.schema.sql}.documents (name) VALUES (${
            _literal(name)
          })
           ON CONFLICT (name) DO NOTHING; ${select}`,
        );
        rows = made[made.length - 1];
      }
      const token = fence === undefined ? -1 : Number(
        (results[results.length - 1][0] as { fence?: string } | undefined)
          ?.fence ?? -1,
      );
      return { row: rows[0] as _Row, lockToken: token };
    });
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

  /** Writes the new version (and a backup of the old one), and commits. */
  async #write(
    session: _Session,
    row: _Row,
    text: string | null,
    fence: number | undefined,
  ): Promise<number> {
    const name = _literal(this.settings.name);
    const fenceSql = fence === undefined
      ? "fence"
      : `CASE WHEN fence < ${_FILE_TOKEN_MIN} THEN greatest(fence, ${fence}) ELSE ${fence} END`;
    if (text === null) {
      // Only a newer fence to record: no new version.
      await session.run(
        `UPDATE ${this.#pool.schema.sql}.documents SET fence = ${fenceSql} WHERE name = ${name};
         COMMIT;`,
      );
      return Number(row.version);
    }
    const backups = this.settings.backups;
    const keep = backups > 0 && row.value !== null
      ? `INSERT INTO ${this.#pool.schema.sql}.document_backups (name, version, value)
           SELECT name, version, value FROM ${this.#pool.schema.sql}.documents
           WHERE name = ${name} ON CONFLICT DO NOTHING;
         DELETE FROM ${this.#pool.schema.sql}.document_backups WHERE name = ${name}
           AND version NOT IN (SELECT version FROM ${this.#pool.schema.sql}.document_backups
             WHERE name = ${name} ORDER BY version DESC LIMIT ${backups});`
      : "";
    const log = this.settings.log;
    const logged = log === undefined
      ? ""
      : `INSERT INTO ${this.#pool.schema.sql}.logs (name, entry)
         VALUES (${_literal(log.name)}, ${
        _literal(_toJson(log.record(Number(row.version) + 1), 0, log.name))
      }::json);`;
    // The notification is sent at the commit, and only if it commits:
    // the name and version only (payloads stop at 8000 bytes), and the
    // schema but for the default's (whose payload older versions read).
    const schema = this.#pool.schema;
    const schemaField = schema.name === _DEFAULT_SCHEMA
      ? ""
      : `, 'schema', ${_literal(schema.name)}`;
    const results = await session.queryAll(
      `${keep}${logged}
       UPDATE ${this.#pool.schema.sql}.documents SET value = ${
        _literal(text)
      }::json,
         version = version + 1, fence = ${fenceSql}, updated_at = now()
       WHERE name = ${name} RETURNING version;
       SELECT pg_notify('${this.#pool.schema.channel}', json_build_object('name', ${name},
         'version', ${Number(row.version) + 1}${schemaField})::text);
       COMMIT;`,
    );
    const updated = results[results.length - 3] as { version: string }[];
    return Number(updated[0].version);
  }

  /**
   * Moves a stored value that validate rejects to the quarantine table; the
   * newest backup that validates, else `undefined` (continue from
   * `initial`).
   */
  async #quarantine(
    session: _Session,
    row: _Row,
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
