// The statements of one change of a PostgreSQL document, in its
// transaction: the row lock (waited for by the server, or in slices each
// with a deadline; cancelled from another session on abort or a timeout
// past lock_timeout's range) and the fence's check, the changes since the
// stored value, a corrupt value's quarantine, and the commit of a new
// version: a fence only, a row of document_changes, or the value whole (with
// its backup, log record and notification).

import { LockTimeoutError, StaleFenceError } from "../base/errors.ts";
import { _after } from "../base/promise.ts";
import type { _ChangeOptions } from "../store/json_store_storage.ts";
import { _toJson } from "../store/json.ts";
import { _fenceFamily, _FILE_TOKEN_MIN } from "../lock/fence.ts";
import {
  _ANSWER_MS,
  type _CallLimit,
  _GRACE_MS,
  _literal,
  _MAX_LOCK_TIMEOUT,
  type _Session,
  _sqlState,
} from "./_session.ts";
import type { _SessionPool } from "./_pool.ts";
import { _DEFAULT_SCHEMA } from "./schema.ts";

/** One row of the documents table, as a change selects it. */
export interface _Row {
  /** The value's text; null when missing or not sent (see `empty`). */
  value: string | null;
  /** The value is missing (never written). */
  empty: boolean;
  version: string;
  fence: string | null;
  value_id: string | null;
}

/** One row of the document_changes table: a version's ops, as JSON text. */
export interface _Change {
  version: number;
  ops: string;
}

/** What the row's statements need of a store's settings. */
export interface _RowSettings {
  name: string;
  fenceLock: string;
  durable: boolean;
  backups: number;
  lockTimeout: number;
  holdTimeout: number;
  /** A log that every new version appends `record(version)` to, in its transaction. */
  log?: { name: string; record: (version: number) => unknown };
}

/** The row of one document, as one change reads, locks and writes it. */
export class _PgRow {
  #pool: _SessionPool;
  #settings: _RowSettings;
  #label: string;

  constructor(pool: _SessionPool, settings: _RowSettings) {
    this.#pool = pool;
    this.#settings = settings;
    this.#label = `${settings.name} (PostgreSQL)`;
  }

  /**
   * Begins, waits for the row lock (making the row if it is missing), and
   * reads the document's changes since the stored value: the value itself
   * only if it is not the one `known` is of (a cached copy at that
   * version, which the changes after it bring up to date). Then refuses a
   * stale `fence` (#checkFence), and gives the stored fence too.
   */
  async lock(
    session: _Session,
    fence: number | undefined,
    options: _ChangeOptions,
    until: number,
    known: { valueId: string | null; version: number } | null,
  ): Promise<{ row: _Row; changes: _Change[]; stored: number }> {
    const { lockTimeout, name, fenceLock } = this.#settings;
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
    const select = this.#selectSql(known, wait);
    // The fencing lock's token, read FOR SHARE: a new holder's token
    // cannot commit until this transaction has.
    const lockRow = fence === undefined ? "" : `;
      SELECT fence FROM ${this.#pool.schema.sql}.locks WHERE name = ${
      _literal(fenceLock)
    } FOR SHARE${wait}`;
    const begin = this.#beginSql(serverTimeout);
    const limit = { until, waits: true, signal: options.signal };
    // A wait the server does not time (lock_timeout 0) would have no answer
    // deadline: it waits in slices instead, each answered in time.
    const waitFor = serverTimeout === 0
      ? (first: string, wait: string) =>
        this.#waitInSlices(
          session,
          `${first} SAVEPOINT lockbox_wait;`,
          wait,
          limit,
        )
      : (first: string, wait: string) =>
        session.queryAll(`${first} ${wait}`, limit);
    const back = fence === undefined ? 0 : 1;
    const held = await this.#cancellable(session, options.signal, async () => {
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
    // Aborted before fn ran: rolled back, never committed.
    options.signal?.throwIfAborted();
    const { row, changes, lockToken } = held;
    return { row, changes, stored: this.#checkFence(fence, row, lockToken) };
  }

  /**
   * Refuses `fence` if the stored fence or the fencing lock's token is
   * higher; the stored fence (of the counter family, else -1).
   */
  #checkFence(fence: number | undefined, row: _Row, lockToken: number): number {
    // Only counter tokens are compared (a FileLock token an older lockbox
    // recorded here is ignored, so it cannot fence the document shut).
    const recorded = Number(row.fence ?? -1);
    const stored = _fenceFamily(recorded) === "counter" ? recorded : -1;
    const highest = Math.max(stored, lockToken);
    if (fence !== undefined && fence < highest) {
      throw new StaleFenceError(this.#label, fence, highest);
    }
    return stored;
  }

  /** The transaction's start: its limits, durability and writer. */
  #beginSql(serverTimeout: number): string {
    const { holdTimeout, durable } = this.#settings;
    const idleLimit = holdTimeout === 0 || holdTimeout > _MAX_LOCK_TIMEOUT
      ? 0
      : Math.ceil(holdTimeout);
    return `BEGIN; SET LOCAL lock_timeout = ${serverTimeout};
         SET LOCAL idle_in_transaction_session_timeout = ${idleLimit};
         SET LOCAL synchronous_commit = ${durable ? "on" : "off"};${
      // Without change rows it writes as an older lockbox does, so the
      // tables' trigger (once an owner adds it) treats it as one.
      this.#pool.changeRows ? " SET LOCAL lockbox.writer = 'changes';" : ""}`;
  }

  /**
   * Locks the row (`wait`: how) and reads the changes since the stored
   * value, or since `known`'s version when the stored value is the one
   * `known` is of: two statements.
   */
  #selectSql(
    known: { valueId: string | null; version: number } | null,
    wait: string,
  ): string {
    const s = this.#pool.schema.sql;
    const literal = _literal(this.#settings.name);
    if (!this.#pool.changeRows) {
      return `SELECT value::text AS value, value IS NULL AS empty, version,
        fence, NULL::text AS value_id
      FROM ${s}.documents WHERE name = ${literal} FOR UPDATE${wait};
      SELECT 1 WHERE false`;
    }
    // The stored value is the cached copy's: same value_id, and no newer
    // than it (a value_id is NULL only on a row no lockbox wrote whole
    // since the trigger came, and then never cached as known).
    const same = known === null || known.valueId === null
      ? "false"
      : `value_id = ${known.valueId} AND version <= ${known.version}`;
    return `SELECT CASE WHEN ${same} THEN NULL ELSE value::text END AS value,
        value IS NULL AND NOT (${same}) AS empty, version, fence, value_id
      FROM ${s}.documents WHERE name = ${literal} FOR UPDATE${wait};
      SELECT version, ops::text AS ops FROM ${s}.document_changes
      WHERE name = ${literal} AND version > (SELECT CASE WHEN ${same}
        THEN ${known?.version ?? 0} ELSE version END
        FROM ${s}.documents WHERE name = ${literal})
      ORDER BY version`;
  }

  /** The stored value and every change after it, under the row lock. */
  async reload(
    session: _Session,
  ): Promise<{ row: _Row; changes: _Change[] }> {
    const literal = _literal(this.#settings.name);
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
   * Moves a corrupt value (its version's JSON text) to the quarantine
   * table: its row's id, and the stored backups, newest first.
   */
  async quarantine(
    session: _Session,
    version: string,
    text: string,
    reason: string,
  ): Promise<{ id: string; backups: { version: string; value: unknown }[] }> {
    const s = this.#pool.schema.sql;
    const [{ id }] = await session.query<{ id: string }>(
      `INSERT INTO ${s}.quarantine (name, version, value, reason)
       VALUES ($1, $2, $3::json, $4) RETURNING id`,
      [this.#settings.name, version, text, reason],
    );
    const backups = await session.query<{ version: string; value: unknown }>(
      `SELECT version, value FROM ${s}.document_backups
       WHERE name = $1 ORDER BY version DESC`,
      [this.#settings.name],
    );
    return { id, backups };
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
  async writeFence(
    session: _Session,
    fence: number | undefined,
  ): Promise<void> {
    await session.run(
      `UPDATE ${this.#pool.schema.sql}.documents SET fence = ${
        this.#fenceSql(fence)
      } WHERE name = ${_literal(this.#settings.name)};
       COMMIT;`,
    );
  }

  /** The log record of a new version, as SQL (empty without a log). */
  #logSql(version: number): string {
    const log = this.#settings.log;
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
      _literal(this.#settings.name)
    }, 'version', ${version}${schemaField})::text);`;
  }

  /**
   * Writes a new version as a row of the document_changes table (its ops,
   * as the file journal writes them), and commits: the stored value stays
   * as it is, so the cost is the change's.
   */
  async writeChange(
    session: _Session,
    version: number,
    ops: string,
    fence: number | undefined,
  ): Promise<void> {
    const name = _literal(this.#settings.name);
    // updated_at is the last version's time; the value and its version stay
    // the last fold's (an unchanged value is not rewritten: its TOAST is kept).
    const fenced = fence === undefined
      ? ""
      : `, fence = ${this.#fenceSql(fence)}`;
    await session.run(
      `INSERT INTO ${this.#pool.schema.sql}.document_changes (name, version, ops)
       VALUES (${name}, ${version}, ${_literal(ops)}::json);
       UPDATE ${this.#pool.schema.sql}.documents SET updated_at = now()${fenced}
       WHERE name = ${name};
       ${this.#logSql(version)}${this.#notifySql(version)}
       COMMIT;`,
    );
  }

  /**
   * Writes a new version whole (folding in the changes since the stored
   * value, which it deletes), keeps a backup of the old one, and commits.
   * The new value's id.
   */
  async write(
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
  ): Promise<string | null> {
    const name = _literal(this.#settings.name);
    const { text, version, oldText } = write;
    const backups = this.#settings.backups;
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
         updated_at = now()${
        this.#pool.changeRows
          ? `, value_id = txid_current() WHERE name = ${name} RETURNING value_id`
          : ` WHERE name = ${name} RETURNING NULL::text AS value_id`
      };
       ${this.#notifySql(version)}
       COMMIT;`,
    );
    const [{ value_id }] = results[results.length - 3] as {
      value_id: string | null;
    }[];
    return value_id === null ? null : String(value_id);
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
    const lockTimeout = this.#settings.lockTimeout;
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
}
