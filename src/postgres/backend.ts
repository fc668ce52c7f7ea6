// PostgresBackend: lockbox's locks, stores and logs on PostgreSQL, for
// workers on several hosts. It puts together the rooms of src/postgres/:
// the tables (_tables.ts), the session pool (_pool.ts), locking on the
// server (_server_lock.ts), who holds and waits (_lock_graph.ts) and the
// logs (_logs.ts), plus this process's queue of requests per lock name.

import { _checkTimeout } from "../base/checks.ts";
import {
  _runUnder,
  type RunResult,
  type RunWithLockOptions,
} from "../lock/run_command.ts";
import { LockQueue, LockQueues } from "../lock/queue.ts";
import { LockError, LockTimeoutError } from "../base/errors.ts";
import { _env } from "../runtime/mod.ts";
import {
  _checkName,
  _checkNotPooled,
  _describe,
  _GRACE_MS,
  _MAX_LOCK_TIMEOUT,
  _openSession,
  _rightsHint,
  _SERVER_DEAD_PEER_MS,
  _SERVER_IDLE_MS,
  type _SessionConfig,
} from "./_session.ts";
import {
  _HEARTBEAT_MS,
  _LOSS_DEADLINE_MS,
  type PgLock,
  type PgLockHolder,
} from "./pg_lock.ts";
import { _DEFAULT_SCHEMA, type _Schema, _schema } from "./schema.ts";
import { _Pool } from "./_pool.ts";
import { _makeTables } from "./_tables.ts";
import { _Logs } from "./_logs.ts";
import {
  _inProcess,
  _LockGraph,
  type PgLockInfo,
  type PgLockWaiter,
} from "./_lock_graph.ts";
import {
  type _Guard,
  _ServerLocks,
  type PgLockOptions,
} from "./_server_lock.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import {
  type PgBackupInfo,
  PgJsonStore,
  type PgJsonStoreOptions,
} from "./pg_store.ts";

export type { PgLockInfo, PgLockOptions, PgLockWaiter };

/**
 * How long a command whose lock was lost has between SIGTERM and SIGKILL:
 * short enough that, when the loss is the client's verdict (a silent
 * session), the command is stopped before the server frees the lock for
 * others (its idle limit on a lock's session, or its dead-peer time).
 */
const _STOP_GRACE_MS = Math.max(
  0,
  Math.min(_SERVER_IDLE_MS, _SERVER_DEAD_PEER_MS) - _LOSS_DEADLINE_MS -
    2 * _HEARTBEAT_MS,
);

/** Options of {@linkcode PostgresBackend.connect}. */
export interface PostgresOptions {
  /**
   * How long opening a session may take, in milliseconds.
   *
   * @default {10_000}
   */
  connectTimeout?: number;
  /**
   * `application_name` of lockbox's sessions, shown in `pg_stat_activity`.
   *
   * @default {"lockbox"}
   */
  applicationName?: string;
  /**
   * The PostgreSQL schema that holds lockbox's tables: one per application
   * that must not share lock names, documents and logs with others in the
   * same database. Locks, fencing tokens, holders and notifications of two
   * schemas are independent. A name PostgreSQL takes unquoted: lowercase
   * ASCII letters, digits, `_` and `$`, at most 63 bytes, no reserved word.
   *
   * @default {"lockbox"}
   */
  schema?: string;
  /**
   * Receives warnings: connect gives one when lockbox's tables are an
   * older lockbox's and this role may not upgrade them (see
   * `docs/postgres-stores.md`).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
}

/** A request in a lock name's line in this process. */
interface _Request {
  readonly shared: boolean;
}

function _lockName(name: unknown): string {
  return _checkName(name, "lock", "nightly-import");
}

/**
 * lockbox's locks on PostgreSQL: the same shape as FileLock, for processes
 * on many hosts. The server releases a session's locks when it ends, as the
 * kernel does for flock.
 *
 * @example
 * ```ts ignore
 * import { PostgresBackend } from "@lockbox/lockbox/postgres";
 * await using db = await PostgresBackend.connect("postgres://db/app");
 * await db.withLock("nightly-import", async (lock) => {
 *   console.log("token", lock.token);
 * });
 * ```
 */
export class PostgresBackend implements StoreBackend {
  #pool: _Pool;
  #ids = new Map<string, number>();
  #graph: _LockGraph;
  #locks: _ServerLocks;
  #logs: _Logs;
  /** This process's line of requests per lock name, as FileLock's. */
  #queues = new LockQueues<_Request, LockQueue<_Request>>(
    (name, onIdle) => new LockQueue<_Request>(name, onIdle),
  );
  #held = new Set<PgLock>();

  private constructor(
    config: _SessionConfig,
    schema: _Schema,
    changeRows: boolean,
  ) {
    this.#pool = new _Pool(config, schema, changeRows);
    this.#graph = new _LockGraph(this.#pool, this.#ids);
    this.#locks = new _ServerLocks(this.#pool, this.#graph, this.#ids);
    this.#logs = new _Logs(this.#pool);
  }

  /** The PostgreSQL schema that holds this backend's tables. */
  get schema(): string {
    return this.#pool.schema.name;
  }

  /**
   * Connects, and creates lockbox's schema on first use (idempotent, safe
   * when many processes connect at once).
   *
   * @param url A `postgres://` URL; default `LOCKBOX_DATABASE_URL`, else
   *   libpq's `PG*` variables.
   * @param options The connect timeout, application name and schema.
   * @returns A backend; close it with `close()` or `await using`.
   * @throws {LockError} If the server cannot be reached or refuses the
   *   login, saying what to fix; or behind a transaction-mode pooler.
   * @throws {TypeError} If `url` is not a `postgres://` URL that parses
   *   (the message never shows it, nor any error a password), or `schema`
   *   is not a name PostgreSQL takes unquoted.
   */
  static async connect(
    url?: string,
    options: PostgresOptions = {},
  ): Promise<PostgresBackend> {
    const connectTimeout = options.connectTimeout ?? 10_000;
    if (!(connectTimeout > 0) || connectTimeout > _MAX_LOCK_TIMEOUT) {
      throw new RangeError(
        `Cannot use connectTimeout ${connectTimeout}: expected milliseconds from 1 to ${_MAX_LOCK_TIMEOUT}`,
      );
    }
    const schema = _schema(
      options.schema === undefined ? _DEFAULT_SCHEMA : options.schema,
    );
    const config = {
      url: url ?? _env("LOCKBOX_DATABASE_URL") ?? undefined,
      connectTimeout,
      applicationName: options.applicationName ?? "lockbox",
    };
    const session = await _openSession(config);
    let changeRows: boolean;
    try {
      const probe = await _openSession(config);
      try {
        await _checkNotPooled(config, session, probe);
      } finally {
        await probe.close();
      }
      ({ changeRows } = await _makeTables(
        session,
        schema,
        performance.now() + connectTimeout,
      ));
    } catch (error) {
      await session.close();
      if (error instanceof LockError) throw error;
      throw new LockError(
        `Cannot set up lockbox's tables in schema ${schema.name} on ${
          _describe(config.url)
        }: ${(error as Error).message}; ${
          _rightsHint(error, schema.name) ??
            `the user needs CREATE on the database (or an administrator creates schema ${schema.name} and grants the user CREATE on it, or makes the tables: connect once as a role that may)`
        }`,
        { cause: error },
      );
    }
    if (!changeRows) {
      (options.onWarning ?? ((message) => console.warn(message)))(
        `lockbox's tables in schema ${schema.name} on ${
          _describe(config.url)
        } are an older lockbox's, and this role may not upgrade them (it does not own them): every version of a document is read and written whole, as that lockbox does, so a large document's update costs its whole size; connect once as the tables' owner to upgrade them`,
      );
    }
    const backend = new PostgresBackend(config, schema, changeRows);
    backend.#pool.giveBack(session, true);
    return backend;
  }

  /**
   * Waits for the lock on `name` and holds it on a session of its own.
   *
   * @param name The lock's name (1 to 200 characters).
   * @param options Shared or exclusive, timeout, signal, metadata.
   * @returns The held lock.
   * @throws {LockTimeoutError} If still held elsewhere when `timeout` ran out.
   * @throws {LockError} If the server cannot be reached.
   */
  async acquire(name: string, options: PgLockOptions = {}): Promise<PgLock> {
    const lock = await this.#acquire(name, options, false);
    return lock!;
  }

  /**
   * One try: the lock on `name`, or `null` if it is held elsewhere.
   *
   * @param name The lock's name.
   * @param options Shared or exclusive, and metadata.
   * @returns The held lock, or `null`.
   */
  tryAcquire(
    name: string,
    options: Omit<PgLockOptions, "timeout"> = {},
  ): Promise<PgLock | null> {
    return this.#acquire(name, { ...options, timeout: 0 }, true);
  }

  /**
   * Runs `fn` holding the lock on `name`, and releases it after.
   *
   * @param name The lock's name.
   * @param fn Runs under the lock; given the lock (its token and signal).
   * @param options As for `acquire`.
   * @returns What `fn` returned.
   */
  async withLock<T>(
    name: string,
    fn: (lock: PgLock) => T | Promise<T>,
    options: PgLockOptions = {},
  ): Promise<T> {
    const lock = await this.acquire(name, options);
    try {
      return await fn(lock);
    } finally {
      await lock.release();
    }
  }

  /**
   * Runs a command holding the lock on `name`, as `runWithLock` does with a
   * lock file (`lockbox run --db URL NAME COMMAND`): SIGINT, SIGTERM or
   * SIGHUP during the wait ends it, after the start they go to the command's
   * process group. The command never outlives the lock: the lock is held
   * until no process of the group runs; if it is lost, the group gets
   * SIGTERM, then SIGKILL after a grace, `onLost` is told why, and the lock's
   * guard keeps other acquirers out until none of the group runs; if this
   * process dies, a watchdog process that keeps the sessions open does the
   * same. `docs/postgres-locks.md` says what is not covered.
   *
   * Requires `--allow-run`, and on Deno `--allow-ffi` and `/proc` for the
   * watchdog (without them the command runs without one).
   *
   * @param name The lock's name.
   * @param command The command and its arguments.
   * @param options As `runWithLock`'s (`close` has no effect: there is no
   *   lock file to pass on), plus `onLost`.
   * @returns How the command ended.
   */
  runWithLock(
    name: string,
    command: string[],
    options: RunWithLockOptions & { onLost?: (reason: unknown) => void } = {},
  ): Promise<RunResult> {
    return _runUnder(command, options, async (endWait, metadata) => {
      const lock = await this.acquire(name, {
        shared: options.shared,
        timeout: options.timeout,
        signal: endWait,
        metadata,
      });
      let guard: _Guard;
      try {
        guard = await this.#locks.holdGuard(name, lock.shared);
      } catch (error) {
        await lock.release();
        throw error;
      }
      return {
        shareWithChildren: () => {},
        release: async () => {
          await this.#locks.releaseGuard(guard, name, lock.shared);
          await lock.release();
        },
        lost: AbortSignal.any([lock.signal, guard.lost]),
        keepOpen: [guard.session.descriptor(), lock._descriptor()].filter((
          fd,
        ) => fd !== null),
        untilGroupEnds: true,
        stopGrace: _STOP_GRACE_MS,
      };
    });
  }

  /**
   * A JSON document in the database, with the {@linkcode JsonStore} API:
   * `read`, `update`, `transform`, `write`, fencing with a `PgLock`'s token,
   * plus versions and backups. Several stores (and processes, and hosts)
   * may share one name: each change is one transaction holding the row.
   *
   * @param name The document's name (1 to 200 characters).
   * @param options The initial value and how to read and write.
   * @returns The store (it uses this backend's sessions).
   * @throws {TypeError} If `initial` is missing or a file-only option is given.
   */
  jsonStore<T>(name: string, options: PgJsonStoreOptions<T>): PgJsonStore<T> {
    return new PgJsonStore<T>(this.#pool, name, options);
  }

  /**
   * Appends records to the log `name` (a row each in the schema's `logs`
   * table), all in one transaction, in order: the database's twin of
   * `appendJsonl`.
   *
   * @param name The log's name (1 to 200 characters).
   * @param records JSON values.
   * @returns A promise that resolves once they are committed.
   * @throws {TypeError} If a record is not JSON.
   */
  async appendLog(name: string, records: readonly unknown[]): Promise<void> {
    await this.#logs.append(name, records);
  }

  /**
   * The records of the log `name`, oldest first.
   *
   * @param name The log's name.
   * @returns The records (none while the log is empty).
   */
  async readLog(name: string): Promise<unknown[]> {
    return await this.#logs.read(name);
  }

  /**
   * Replaces the records of the log `name` in one transaction.
   *
   * @param name The log's name.
   * @param records JSON values.
   * @returns A promise that resolves once committed.
   */
  async writeLog(name: string, records: readonly unknown[]): Promise<void> {
    await this.#logs.write(name, records);
  }

  /**
   * The kept previous versions of the document `name`, newest first.
   *
   * @param name The document's name.
   * @returns Its backups.
   */
  async documentBackups(name: string): Promise<PgBackupInfo[]> {
    return await this.jsonStore<unknown>(name, { initial: null }).backups();
  }

  /**
   * One kept previous version of the document `name`.
   *
   * @param name The document's name.
   * @param version A version from `documentBackups`.
   * @returns The document as it was, or `undefined` if not kept.
   */
  async readDocumentBackup(name: string, version: number): Promise<unknown> {
    return await this.jsonStore<unknown>(name, { initial: null }).readBackup(
      version,
    ).catch((error) => {
      if (error instanceof RangeError) return undefined;
      throw error;
    });
  }

  /**
   * The names of the written documents that start with `prefix`, sorted.
   *
   * @param prefix The start of the names.
   * @returns The names.
   */
  async documentNames(prefix: string): Promise<string[]> {
    const rows = await this.#pool.storeQuery(
      `the documents named '${prefix}...'`,
      (session) =>
        session.query<{ name: string }>(
          `SELECT name FROM ${this.#pool.schema.sql}.documents
         WHERE value IS NOT NULL AND left(name, length($1)) = $1
         ORDER BY name COLLATE "C"`,
          [prefix],
        ),
    );
    return rows.map((row) => row.name);
  }

  /**
   * Whether any session holds the lock on `name` (the server's view).
   *
   * @param name The lock's name.
   * @returns `true` while held.
   */
  async isLocked(name: string): Promise<boolean> {
    return (await this.#graph.holders(name)).length > 0;
  }

  /**
   * Who holds the lock on `name`: the holder's record and the server's view
   * of its session; the earliest holder of a shared lock.
   *
   * @param name The lock's name.
   * @returns The holder, or `null` while free.
   */
  async lockHolder(name: string): Promise<PgLockHolder | null> {
    return (await this.#graph.holders(name))[0] ?? null;
  }

  /**
   * Every lock name lockbox knows on this database, with its state.
   *
   * @returns One entry per name, by name.
   */
  listLocks(): Promise<PgLockInfo[]> {
    return this.#graph.listLocks();
  }

  /**
   * Releases every lock this backend holds and closes its sessions.
   *
   * @returns A promise that resolves once everything is closed.
   */
  async close(): Promise<void> {
    await this.#pool.close(() =>
      Promise.all([...this.#held].map((lock) => lock.release()))
    );
  }

  /** Closes the backend (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #acquire(
    name: string,
    options: PgLockOptions,
    nullOnBusy: boolean,
  ): Promise<PgLock | null> {
    _lockName(name);
    const timeout = _checkTimeout(options.timeout);
    _checkTimeout(options.deadlockTimeout, "deadlockTimeout");
    const shared = options.shared === true;
    const signal = options.signal;
    signal?.throwIfAborted();
    if (this.#pool.closed()) {
      throw new LockError(
        `Cannot lock '${name}': the PostgreSQL backend is closed`,
      );
    }
    const started = performance.now();
    const queue = this.#queues.get(name);
    if (!await this.#enter(queue, shared, nullOnBusy, signal, timeout, name)) {
      queue.dropIfIdle();
      return null;
    }
    let lock: PgLock | null = null;
    try {
      const left = Math.max(0, timeout - (performance.now() - started));
      // The whole call settles by its timeout plus the grace.
      const until = started + timeout + _GRACE_MS;
      lock = await this.#locks.lock(name, options, left, until, nullOnBusy);
      return lock;
    } catch (error) {
      if (error === signal?.reason) throw error;
      throw this.#pool.refusal(`lock '${name}'`, error);
    } finally {
      if (lock === null) queue.leave();
      else {
        this.#held.add(lock);
        _inProcess.held++;
        lock.signal.addEventListener("abort", () => {
          this.#held.delete(lock!);
          _inProcess.held--;
          queue.leave();
        }, { once: true });
      }
    }
  }

  /**
   * Waits for this process's turn at `name`, as FileLock's queue does;
   * `false` at once when it is not free and `nullOnBusy`.
   */
  async #enter(
    queue: LockQueue<_Request>,
    shared: boolean,
    nullOnBusy: boolean,
    signal: AbortSignal | undefined,
    timeout: number,
    name: string,
  ): Promise<boolean> {
    if (queue.free(shared)) {
      queue.enter(shared);
      return true;
    }
    if (nullOnBusy) return false;
    const timedOut = () =>
      this.#graph.holders(name, { until: performance.now() + _GRACE_MS })
        .then((holders) => holders[0] ?? null, () => null)
        .then((found) => new LockTimeoutError(`${name} (PostgreSQL)`, found));
    if (timeout === 0) throw await timedOut();
    await new Promise<void>((resolve, reject) => {
      queue.wait({ shared }, {
        timeout,
        signal,
        timedOut,
        giveUp: reject,
        onTurn: resolve,
      });
    });
    return true;
  }
}
