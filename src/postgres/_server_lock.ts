// Locking on the server: a lock name's row (its id keys the advisory lock,
// its counter is the fencing token), the wait for the advisory lock (timed
// by lock_timeout, or in slices each with an answer deadline, aborted by a
// cancel from another session), the holder record, the unlock, and the
// guard runWithLock holds while its command runs. The statement that takes
// a lock also sets the session's idle_session_timeout, which the unlock
// clears, so the server ends a holder that stops heartbeating.

import {
  DeadlockError,
  LockError,
  LockLostError,
  LockTimeoutError,
} from "../base/errors.ts";
import { _hostname, _pid } from "../runtime/mod.ts";
import {
  _ANSWER_MS,
  type _CallLimit,
  _describe,
  _GRACE_MS,
  _MAX_LOCK_TIMEOUT,
  _SERVER_IDLE_MS,
  type _Session,
  _sqlState,
} from "./_session.ts";
import {
  _HEARTBEAT_MS,
  _LOSS_DEADLINE_MS,
  type _PgLockOwner,
  PgLock,
} from "./pg_lock.ts";
import type { _Pool } from "./_pool.ts";
import type { _LockGraph } from "./_lock_graph.ts";

/** A wait's deadlockTimeout unless its options say otherwise (ms). */
const _DEADLOCK_TIMEOUT = 1000;
/**
 * A wait the server cannot time (no timeout, or one past lock_timeout's
 * range) is cut into statements this long, so that every statement has an
 * answer deadline: a stalled connection fails it within this plus
 * `_GRACE_MS`.
 */
const _WAIT_SLICE_MS = _ANSWER_MS;
/**
 * Set with the grant, in the statement that takes the lock (so a wait that
 * fails leaves it unset): the server ends the session once it idles past
 * `_SERVER_IDLE_MS`, which a heartbeating holder never lets happen.
 */
const _HOLD = `set_config('idle_session_timeout', '${_SERVER_IDLE_MS}', false)`;

/** Options of {@linkcode PostgresBackend.acquire}, as FileLock's. */
export interface PgLockOptions {
  /** Take a shared lock (many holders) instead of an exclusive one. */
  shared?: boolean;
  /**
   * How long to wait, in milliseconds: `0` tries once, `Infinity` waits.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /** Gives up waiting; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * How long a wait lasts before it looks for a deadlock, and then again
   * every as long while it waits, in milliseconds; `Infinity` never looks.
   * As FileLock's `deadlockTimeout`, across every process (and host) that
   * waits for lockbox's locks on this database.
   *
   * @default {1000}
   */
  deadlockTimeout?: number;
  /** Kept with the holder record, such as `{ job: "import" }`. */
  metadata?: Record<string, unknown>;
}

/** A lock's guard held by `runWithLock`, on a session of its own. */
export interface _Guard {
  session: _Session;
  /** Aborts once the guard may have been lost. */
  lost: AbortSignal;
  /** Ends its heartbeat (before its unlock). */
  stop: () => void;
}

/** The advisory locks of one backend's schema. */
export class _ServerLocks implements _PgLockOwner {
  #pool: _Pool;
  #graph: _LockGraph;
  #ids: Map<string, number>;

  /** `ids`: the lock row ids by name, shared with the graph. */
  constructor(pool: _Pool, graph: _LockGraph, ids: Map<string, number>) {
    this.#pool = pool;
    this.#graph = graph;
    this.#ids = ids;
  }

  /**
   * Takes the lock `name` on a session of its own: waits up to `timeout`,
   * the whole call settling by `until`. `null` when it is held elsewhere
   * and `nullOnBusy`, else a LockTimeoutError once the timeout ran out.
   */
  async lock(
    name: string,
    options: PgLockOptions,
    timeout: number,
    until: number,
    nullOnBusy: boolean,
  ): Promise<PgLock | null> {
    const shared = options.shared === true;
    const began = performance.now();
    const limit = { until, signal: options.signal };
    const id = await this.lockId(name, limit);
    const session = await this.#pool.take(limit);
    let locked = false;
    try {
      locked = await this.#wait(
        session,
        name,
        id,
        shared,
        timeout,
        limit,
        this.#pool.schema.lockKey,
        options.deadlockTimeout ?? _DEADLOCK_TIMEOUT,
      );
      // Granted as the signal aborted: given back, no token taken.
      if (locked) options.signal?.throwIfAborted();
      const token = locked
        ? await this.#token(session, name, id, options, timeout, began, limit)
        : null;
      if (token === null) {
        if (locked) {
          locked = false;
          await this.#unlockOnly(session, id, shared);
        }
        if (nullOnBusy) {
          this.#pool.giveBack(session, !session.ended);
          return null;
        }
        throw new LockTimeoutError(
          `${name} (PostgreSQL)`,
          await this.#graph.holders(name, limit).then((h) => h[0] ?? null)
            .catch(() => null),
        );
      }
      if (options.signal?.aborted) throw options.signal.reason;
      return new PgLock(this, session, { name, id, shared, token });
    } catch (error) {
      if (locked) await this._unlock(session, id, shared);
      else this.#pool.giveBack(session, !session.ended);
      // A cancel meant for the wait may land on the statement after it.
      if (options.signal?.aborted) throw options.signal.reason;
      throw error;
    }
  }

  /**
   * The token and holder record of a granted lock, in the statement that
   * checks the guard (no row while it is held); while a command run under
   * this lock by a process that lost it is being stopped, waits for its
   * guard, up to `timeout` from `began`. `null` when that ran out first.
   */
  async #token(
    session: _Session,
    name: string,
    id: number,
    options: PgLockOptions,
    timeout: number,
    began: number,
    limit: _CallLimit,
  ): Promise<number | null> {
    const shared = options.shared === true;
    for (;;) {
      const [row] = await this.#record(
        session,
        shared,
        [
          session.backendPid,
          id,
          _pid(),
          _hostname(),
          options.metadata ? JSON.stringify(options.metadata) : null,
        ],
        timeout > _MAX_LOCK_TIMEOUT,
        limit,
      );
      if (row !== undefined) return Number(row.token);
      // A command run under this lock by a process that lost it is being
      // stopped: the lock is not free until it is.
      const left = Math.max(0, timeout - (performance.now() - began));
      if (
        left === 0 ||
        !await this.#waitForGuard(session, name, id, shared, left, limit)
      ) {
        return null;
      }
    }
  }

  /** Unlocks on the session and returns it for reuse (or closes it). */
  async _unlock(
    session: _Session,
    lockId: number,
    shared: boolean,
  ): Promise<void> {
    let unlocked = false;
    try {
      // One round trip, and no wait for the disk: the holder record is
      // metadata (read only beside pg_locks), so its removal may commit
      // asynchronously. The token, taken at acquisition, commits durably.
      // (Integers only, inlined: a simple query may hold statements.)
      const [row] = await session.query<{ ok: boolean }>(
        `SET idle_session_timeout = 0; SET lock_timeout = 0;
         BEGIN; SET LOCAL synchronous_commit = off;
         DELETE FROM ${this.#pool.schema.sql}.holders WHERE backend_pid = ${session.backendPid};
         SELECT pg_advisory_unlock${
          shared ? "_shared" : ""
        }(${this.#pool.schema.lockKey}, ${lockId}) AS ok;
         COMMIT;`,
      );
      unlocked = row.ok;
    } catch {
      // The session is gone: the server released the lock with it.
    }
    this.#pool.giveBack(session, unlocked);
  }

  /**
   * Takes the guard of `name` (whose lock this process holds) on a session
   * of its own, which the server ends once it idles past `_SERVER_IDLE_MS`
   * (behind a session-mode pooler too), as a lock's session: a heartbeat
   * keeps it busy, and `lost` aborts if that session ends or a heartbeat
   * goes unanswered past `_LOSS_DEADLINE_MS`, before the server could end
   * it. `stop()` ends the heartbeat.
   */
  async holdGuard(name: string, shared: boolean): Promise<_Guard> {
    const id = await this.lockId(name);
    const session = await this.#pool.take();
    const lost = new AbortController();
    try {
      // Only a moment's wait: no other process can hold the lock's guard
      // apart from shared holders (shared) or an acquirer's instant check.
      await session.run(
        `SELECT pg_advisory_lock${
          shared ? "_shared" : ""
        }(${this.#pool.schema.guardKey}, ${id}), ${_HOLD}`,
      );
    } catch (error) {
      this.#pool.giveBack(session, false);
      throw new LockError(
        `Cannot guard the lock '${name}' on ${
          _describe(this.#pool.config.url)
        }: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const lose = (why: string) => {
      clearInterval(timer);
      if (lost.signal.aborted) return;
      lost.abort(new LockLostError(name, why));
      // The server ends the guard with its session.
      session.close().catch(() => {});
    };
    session.onEnd((reason) => lose(`its guard's session ended (${reason})`));
    // When the last answered heartbeat was sent (at first: the grant).
    let lastAnswer = performance.now();
    let beating = false;
    const timer = setInterval(() => {
      const silent = performance.now() - lastAnswer;
      if (silent > _LOSS_DEADLINE_MS) {
        lose(
          `its guard's session has not answered for ${
            Math.round(silent)
          } ms (deadline ${_LOSS_DEADLINE_MS} ms)`,
        );
        return;
      }
      if (beating) return;
      beating = true;
      const sent = performance.now();
      session.query("SELECT 1").then(
        () => {
          beating = false;
          lastAnswer = sent;
        },
        (error: Error) => {
          beating = false;
          lose(`a heartbeat of its guard failed (${error.message})`);
        },
      );
    }, _HEARTBEAT_MS);
    return { session, lost: lost.signal, stop: () => clearInterval(timer) };
  }

  /** Ends a guard's heartbeat and lets it go (its session too, if that failed). */
  async releaseGuard(guard: _Guard, name: string, shared: boolean) {
    guard.stop();
    let unlocked = false;
    try {
      // As _unlock: the session may go back to the pool.
      await guard.session.run(
        `SET idle_session_timeout = 0; SELECT pg_advisory_unlock${
          shared ? "_shared" : ""
        }(${this.#pool.schema.guardKey}, ${this.#ids.get(name)!})`,
      );
      unlocked = true;
    } catch {
      // Its session is gone, and the guard with it.
    }
    this.#pool.giveBack(guard.session, unlocked);
  }

  /** The row id of the lock `name`, made if missing. */
  async lockId(name: string, limit?: _CallLimit): Promise<number> {
    const known = this.#ids.get(name);
    if (known !== undefined) return known;
    const s = this.#pool.schema.sql;
    // A name another session is inserting right now is not in this
    // statement's snapshot: the next try sees it committed.
    let row: { id: number } | undefined;
    for (let attempt = 0; row === undefined; attempt++) {
      if (attempt === 5) {
        throw new LockError(`Cannot find or make the row of lock '${name}'`);
      }
      [row] = await this.#pool.withSession(
        (session) =>
          session.query<{ id: number }>(
            `WITH made AS (
             INSERT INTO ${s}.locks (name) VALUES ($1)
             ON CONFLICT (name) DO NOTHING RETURNING id)
           SELECT id FROM made UNION ALL
           SELECT id FROM ${s}.locks WHERE name = $1 LIMIT 1`,
            [name],
            limit,
          ),
        limit,
      );
    }
    this.#ids.set(name, row.id);
    return row.id;
  }

  /**
   * Records the holder and, for an exclusive lock, takes the next token. The
   * token's row waits for fenced writes in flight (they read it FOR SHARE),
   * under the lock_timeout the wait left set: a wait the server cannot time
   * waits for them in slices too.
   */
  async #record(
    session: _Session,
    shared: boolean,
    params: unknown[],
    sliced: boolean,
    limit: _CallLimit,
  ): Promise<{ token: string }[]> {
    const s = this.#pool.schema.sql;
    const guardKey = this.#pool.schema.guardKey;
    // No row while the lock's guard is held (see the schema's guardKey).
    const kind = shared ? "_shared" : "";
    const guardFree = `(SELECT CASE
        WHEN pg_try_advisory_lock${kind}(${guardKey}, $2)
        THEN pg_advisory_unlock${kind}(${guardKey}, $2) ELSE false END)`;
    const upsert =
      `ON CONFLICT (backend_pid) DO UPDATE SET lock_id = EXCLUDED.lock_id,
               shared = ${shared}, token = EXCLUDED.token, pid = EXCLUDED.pid,
               hostname = EXCLUDED.hostname, acquired_at = now(),
               metadata = EXCLUDED.metadata
             RETURNING token`;
    for (;;) {
      try {
        return await session.query<{ token: string }>(
          shared
            ? `INSERT INTO ${s}.holders
               (backend_pid, lock_id, shared, token, pid, hostname, metadata)
             SELECT $1, $2, true, fence, $3, $4, $5 FROM ${s}.locks
             WHERE id = $2 AND ${guardFree}
             ${upsert}`
            : `WITH f AS (
               UPDATE ${s}.locks SET fence = fence + 1
               WHERE id = $2 AND ${guardFree}
               RETURNING fence)
             INSERT INTO ${s}.holders
               (backend_pid, lock_id, shared, token, pid, hostname, metadata)
             SELECT $1, $2, false, fence, $3, $4, $5 FROM f
             ${upsert}`,
          params,
          {
            ...limit,
            until: sliced
              ? performance.now() + _WAIT_SLICE_MS + _GRACE_MS
              : limit.until,
            waits: true,
          },
        );
      } catch (error) {
        if (!sliced || _sqlState(error) !== "55P03") throw error;
        limit.signal?.throwIfAborted();
      }
    }
  }

  /**
   * Waits up to `timeout` for the guard of lock `id` (held while a command
   * run under the lock is being stopped), and lets it go at once; `false`
   * when the timeout ran out.
   */
  async #waitForGuard(
    session: _Session,
    name: string,
    id: number,
    shared: boolean,
    timeout: number,
    limit: _CallLimit,
  ): Promise<boolean> {
    const guardKey = this.#pool.schema.guardKey;
    if (
      !await this.#wait(session, name, id, shared, timeout, limit, guardKey)
    ) {
      return false;
    }
    await session.run(
      `SELECT pg_advisory_unlock${shared ? "_shared" : ""}(${guardKey}, ${id})`,
    );
    return true;
  }

  /** Unlocks lock `id` on a session that keeps running (no holder record yet). */
  async #unlockOnly(
    session: _Session,
    id: number,
    shared: boolean,
  ): Promise<void> {
    // As _unlock: the session may go back to the pool.
    await session.run(
      `SET idle_session_timeout = 0; SET lock_timeout = 0; SELECT pg_advisory_unlock${
        shared ? "_shared" : ""
      }(${this.#pool.schema.lockKey}, ${id})`,
    );
  }

  /** One try, without waiting; a granted lock's session then times out idle. */
  async #tryOnce(
    session: _Session,
    kind: string,
    hold: boolean,
    namespace: number,
    id: number,
    limit: _CallLimit,
  ): Promise<boolean> {
    const [row] = await session.query<{ ok: boolean }>(
      hold
        ? `SELECT set_config('idle_session_timeout', CASE
             WHEN pg_try_advisory_lock${kind}($1, $2) THEN '${_SERVER_IDLE_MS}'
             ELSE '0' END, false) <> '0' AS ok`
        : `SELECT pg_try_advisory_lock${kind}($1, $2) AS ok`,
      [namespace, id],
      limit,
    );
    return row.ok;
  }

  /** Waits on the server; `false` when the timeout ran out. */
  async #wait(
    session: _Session,
    name: string,
    id: number,
    shared: boolean,
    timeout: number,
    limit: _CallLimit,
    namespace: number,
    deadlockTimeout = Infinity,
  ): Promise<boolean> {
    const kind = shared ? "_shared" : "";
    // Holding the lock itself (not its guard) makes the session one the
    // server ends once idle past _SERVER_IDLE_MS (the heartbeat keeps it
    // busy while its client lives).
    const hold = namespace === this.#pool.schema.lockKey;
    if (timeout === 0) {
      return await this.#tryOnce(session, kind, hold, namespace, id, limit);
    }
    const { signal, looking } = hold && deadlockTimeout !== Infinity
      ? this.#withDeadlockCheck(session, name, id, deadlockTimeout, limit)
      : { signal: limit.signal, looking: null };
    // The server times the wait (lock_timeout); one it cannot time waits
    // in slices. To abort, another session cancels the wait.
    const sliced = timeout > _MAX_LOCK_TIMEOUT;
    const end = performance.now() + timeout;
    let delivered: Promise<boolean> | null = null;
    const onAbort = () => {
      delivered ??= this.#pool.cancel(session.backendPid).then(
        () => true,
        () => false,
      );
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const left = Math.ceil(end - performance.now());
        if (left <= 0) return false;
        const slice = sliced ? Math.min(left, _WAIT_SLICE_MS) : left;
        try {
          // One implicit transaction: a failed wait undoes its SET; a
          // granted one leaves it for the token's statement (#record), and
          // the unlock resets it before the session is reused.
          await session.run(
            `SET lock_timeout = ${slice}; SELECT pg_advisory_lock${kind}(${namespace}, ${id})${
              hold ? `, ${_HOLD}` : ""
            }`,
            {
              until: Math.min(
                limit.until ?? Infinity,
                performance.now() + slice + _GRACE_MS,
              ),
              waits: true,
              signal,
            },
          );
          return true;
        } catch (error) {
          if (signal?.aborted) {
            await this.#afterCancel(session, error, delivered);
            throw signal.reason;
          }
          if (_sqlState(error) !== "55P03") throw this.#waitError(name, error);
          if (!sliced) return false;
        }
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // Granted as the signal aborted: the cancel must have reached the
      // server before the caller lets go of the lock on this session.
      if (delivered !== null && !await delivered) await session.close();
      await looking?.();
    }
  }

  /**
   * Starts the deadlock check of a wait: a deadlock found ends it as an
   * abort of `signal` would, with DeadlockError. `looking` stops the check.
   */
  #withDeadlockCheck(
    session: _Session,
    name: string,
    id: number,
    deadlockTimeout: number,
    limit: _CallLimit,
  ): { signal: AbortSignal; looking: () => Promise<void> } {
    const deadlock = new AbortController();
    const signal = limit.signal
      ? AbortSignal.any([limit.signal, deadlock.signal])
      : deadlock.signal;
    const looking = this.#graph.lookForDeadlock(
      session.backendPid,
      name,
      id,
      deadlockTimeout,
      deadlock,
    );
    return { signal, looking };
  }

  /**
   * After an aborted wait: a cancel still on its way would hit this
   * session's next statement, so nothing more runs on it until the server
   * has it (one that finds the session idle is dropped); one that may not
   * have arrived leaves the session unusable: closed, which also ends its
   * locks.
   */
  async #afterCancel(
    session: _Session,
    error: unknown,
    delivered: Promise<boolean> | null,
  ): Promise<void> {
    if (delivered !== null && !await delivered) await session.close();
    else if (_sqlState(error) === "57014" && !session.ended) {
      // A cancel that lands just after the grant fails the statement, but
      // a session lock outlives its statement.
      await session.run("SELECT pg_advisory_unlock_all()").catch(() =>
        session.close()
      );
    }
  }

  /** A wait's failure (not its timeout) as lockbox's error. */
  #waitError(name: string, error: unknown): unknown {
    if (error instanceof LockError) return error;
    if (_sqlState(error) === "40P01") {
      return new DeadlockError(`${name} (PostgreSQL)`, [], { cause: error });
    }
    return new LockError(
      `Cannot lock '${name}' on ${_describe(this.#pool.config.url)}: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
}
