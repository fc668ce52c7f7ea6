// PostgresBackend: lockbox's locks on PostgreSQL, for workers on several
// hosts. Each lock name has a row in the schema's locks table (schema
// lockbox by default); its advisory lock is the pair (the schema's lockKey,
// row id), never a hash of the lock's name. A held lock has its own session;
// sessions go back to the idle list only after their unlock succeeded.

import { _checkTimeout } from "../base/checks.ts";
import {
  _runUnder,
  type RunResult,
  type RunWithLockOptions,
} from "../lock/run_command.ts";
import { _after } from "../base/promise.ts";
import {
  DeadlockError,
  type DeadlockStep,
  LockError,
  LockLostError,
  LockTimeoutError,
} from "../base/errors.ts";
import { _stronglyConnected } from "../lock/wait_graph.ts";
import { _env, _hostname, _pid } from "../runtime/mod.ts";
import {
  _ANSWER_MS,
  type _CallLimit,
  _checkName,
  _checkNotPooled,
  _describe,
  _GRACE_MS,
  _literal,
  _MAX_LOCK_TIMEOUT,
  _openSession,
  _rightsHint,
  _SERVER_DEAD_PEER_MS,
  _SERVER_IDLE_MS,
  type _Session,
  type _SessionConfig,
  _sqlState,
} from "./_session.ts";
import {
  _HEARTBEAT_MS,
  _LOSS_DEADLINE_MS,
  PgLock,
  type PgLockHolder,
} from "./pg_lock.ts";
import type { _SessionPool } from "./_pg_document.ts";
import { _DEFAULT_SCHEMA, type _Schema, _schema } from "./schema.ts";
import { _Listener } from "./_listener.ts";
import type { StoreBackend } from "../store/store_backend.ts";
import { StoreError } from "../base/errors.ts";
import {
  type PgBackupInfo,
  PgJsonStore,
  type PgJsonStoreOptions,
} from "./pg_store.ts";

/** A wait's deadlockTimeout unless its options say otherwise (ms). */
const _DEADLOCK_TIMEOUT = 1000;
/** PostgreSQL locks this process holds, on every backend. */
let _heldInProcess = 0;
/** Sessions kept open for the next acquisition. */
const _MAX_IDLE = 8;
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

/**
/**
 * The trigger that keeps a document's changes safe from writers that do
 * not know the document_changes table (an older lockbox, a hand-made
 * UPDATE): a new value or version from them is refused while the document
 * has changes not yet folded into its value (they would write over them),
 * and otherwise gets a new value_id, so that lockbox's cached copies read
 * the value again. lockbox's own transactions say who they are with the
 * setting lockbox.writer. `s` is the schema, as SQL.
 */
const _documentsGuard = (s: string) => `
CREATE OR REPLACE FUNCTION ${s}.documents_guard() RETURNS trigger
LANGUAGE plpgsql AS $guard$
DECLARE
  pending boolean;
BEGIN
  IF current_setting('lockbox.writer', true) = 'changes' THEN
    RETURN NEW;
  END IF;
  IF NEW.version IS DISTINCT FROM OLD.version
     OR NEW.value::text IS DISTINCT FROM OLD.value::text THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.document_changes
      WHERE name = $1 AND version > $2)', TG_TABLE_SCHEMA)
      INTO pending USING OLD.name, OLD.version;
    IF pending THEN
      RAISE EXCEPTION 'Cannot write document % in %.documents: it has changes in %.document_changes that this writer does not read (an older lockbox, or a hand-made UPDATE), and writing over them would lose them',
        OLD.name, TG_TABLE_SCHEMA, TG_TABLE_SCHEMA
        USING ERRCODE = 'LB001',
          HINT = 'Upgrade every lockbox client that writes this document; or write it through lockbox (JsonStore.write folds the changes in)';
    END IF;
    NEW.value_id := txid_current();
  END IF;
  RETURN NEW;
END
$guard$;
DO $make$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'documents_guard'
                 AND tgrelid = '${
  s.replaceAll("'", "''")
}.documents'::regclass) THEN
    CREATE TRIGGER documents_guard BEFORE UPDATE ON ${s}.documents
      FOR EACH ROW EXECUTE FUNCTION ${s}.documents_guard();
  END IF;
END $make$;`;

/**
 * Makes the schema's tables; the schema too unless `made` (CREATE SCHEMA
 * needs CREATE on the database even when the schema exists).
 */
const _setupSql = (schema: _Schema, made: boolean) => {
  const s = schema.sql;
  return `
BEGIN;
SELECT pg_advisory_xact_lock(${schema.lockKey}, 0);
${made ? "" : `CREATE SCHEMA IF NOT EXISTS ${s};`}
CREATE TABLE IF NOT EXISTS ${s}.locks (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE,
  fence bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.holders (
  backend_pid integer PRIMARY KEY,
  lock_id integer NOT NULL,
  shared boolean NOT NULL,
  token bigint NOT NULL,
  pid integer NOT NULL,
  hostname text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  metadata jsonb
);
CREATE TABLE IF NOT EXISTS ${s}.waits (
  backend_pid integer PRIMARY KEY,
  lock_id integer NOT NULL,
  pid integer NOT NULL,
  hostname text NOT NULL,
  since timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.documents (
  name text PRIMARY KEY,
  value json,
  version bigint NOT NULL DEFAULT 0,
  fence bigint,
  updated_at timestamptz NOT NULL DEFAULT now(),
  value_id bigint
);
ALTER TABLE ${s}.documents ADD COLUMN IF NOT EXISTS value_id bigint;
CREATE TABLE IF NOT EXISTS ${s}.document_changes (
  name text NOT NULL REFERENCES ${s}.documents (name)
    ON DELETE CASCADE ON UPDATE CASCADE,
  version bigint NOT NULL,
  ops json NOT NULL,
  PRIMARY KEY (name, version)
);
${_documentsGuard(s)}
CREATE TABLE IF NOT EXISTS ${s}.document_backups (
  name text NOT NULL,
  version bigint NOT NULL,
  value json NOT NULL,
  saved_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS ${s}.quarantine (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  version bigint NOT NULL,
  value json NOT NULL,
  reason text NOT NULL,
  quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${s}.logs (
  name text NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  entry json NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, seq)
);
COMMIT;`;
};

/** lockbox's tables: connect makes them when any is missing. */
const _TABLES = [
  "locks",
  "holders",
  "documents",
  "document_backups",
  "quarantine",
  "logs",
  "waits",
  "document_changes",
];

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
}

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

/** A session waiting for a lock, in {@linkcode PgLockInfo}. */
export interface PgLockWaiter {
  /** The waiting session's server process. */
  backendPid: number;
  /**
   * The lockbox process waiting, and its host, once its wait has lasted
   * `deadlockTimeout` (it records itself then); `null` before, or for a
   * session that is not lockbox's.
   */
  pid: number | null;
  hostname: string | null;
  /** The mode it waits for. */
  mode: "exclusive" | "shared";
}

/** One lock name in {@linkcode PostgresBackend.listLocks}. */
export interface PgLockInfo {
  /** The lock's name. */
  name: string;
  /** `"exclusive"`, `"shared"`, or `null` when free. */
  mode: "exclusive" | "shared" | null;
  /** The last fencing token handed out (0: never held exclusively). */
  token: number;
  /** The holders, as `lockHolder` describes one. */
  holders: PgLockHolder[];
  /** The sessions waiting for it (`pg_locks`, `granted = false`). */
  waiters: PgLockWaiter[];
}

/** A lock's guard held by `runWithLock`, on a session of its own. */
interface _Guard {
  session: _Session;
  /** Aborts once the guard may have been lost. */
  lost: AbortSignal;
  /** Ends its heartbeat (before its unlock). */
  stop: () => void;
}

/** The in-process queue of one name: FileLock's rules, FIFO. */
interface _Queue {
  waiting: { shared: boolean; go: () => void }[];
  active: number;
  exclusive: boolean;
}

/** Rows of the holders query. */
interface _HolderRow {
  lock_id: number;
  backend_pid: number;
  mode: string;
  client_addr: string | null;
  application_name: string;
  pid: number | null;
  hostname: string | null;
  acquired_at: Date | null;
  token: string | null;
  shared: boolean | null;
  metadata: Record<string, unknown> | null;
}

/** The holders of the locks whose row ids are in $2, the server's view. */
const _holdersSql = (schema: _Schema) => `
SELECT l.objid::int AS lock_id, l.pid AS backend_pid, l.mode,
       host(a.client_addr) AS client_addr, a.application_name, h.pid,
       h.hostname, h.acquired_at, h.token, h.shared, h.metadata
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN ${schema.sql}.holders h
  ON h.backend_pid = l.pid AND h.lock_id::oid = l.objid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid AND l.objid = ANY($2::oid[])
ORDER BY h.acquired_at NULLS LAST`;

/** The sessions waiting for lockbox's locks, with who records each wait. */
const _waitersSql = (schema: _Schema) => `
SELECT l.objid::int AS lock_id, l.pid AS backend_pid, l.mode, w.pid, w.hostname
FROM pg_locks l
LEFT JOIN ${schema.sql}.waits w ON w.backend_pid = l.pid AND w.lock_id::oid = l.objid
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid
ORDER BY l.objid, l.pid`;

/**
 * The waits-for edges between lockbox processes (host and pid): a session
 * whose wait is recorded in the schema's waits table, waiting for a lock held by a
 * session with a holder record. See ARCHITECTURE.md, "Deadlocks".
 */
const _waitEdgesSql = (schema: _Schema) => `
SELECT k.name, w.pid AS waiter_pid, w.hostname AS waiter_host,
       h.pid AS holder_pid, h.hostname AS holder_host
FROM pg_locks l
JOIN ${schema.sql}.waits w ON w.backend_pid = l.pid AND w.lock_id::oid = l.objid
JOIN pg_locks g ON g.locktype = 'advisory' AND g.granted AND g.objsubid = 2
  AND g.database = l.database AND g.classid = l.classid AND g.objid = l.objid
JOIN ${schema.sql}.holders h ON h.backend_pid = g.pid AND h.lock_id::oid = g.objid
JOIN ${schema.sql}.locks k ON k.id = l.objid::int
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::oid`;

function _holder(row: _HolderRow): PgLockHolder {
  return {
    pid: row.pid ?? 0,
    hostname: row.hostname ?? "unknown",
    acquiredAt: row.acquired_at?.toISOString() ?? "",
    token: Number(row.token ?? 0),
    shared: row.shared ?? row.mode === "ShareLock",
    ...(row.metadata ? { metadata: row.metadata } : {}),
    backendPid: row.backend_pid,
    clientAddress: row.client_addr,
    applicationName: row.application_name,
  };
}

function _lockName(name: unknown): string {
  return _checkName(name, "lock", "nightly-import");
}

function _logName(name: unknown): string {
  return _checkName(name, "log", "audit");
}

/** Appends the JSON array $2's elements, in order, to the log $1. */
const _appendLog = (schema: _Schema) =>
  `INSERT INTO ${schema.sql}.logs (name, entry)
  SELECT $1, value FROM json_array_elements($2::json)
    WITH ORDINALITY AS e(value, at) ORDER BY at`;

/** Records as JSON text, or a TypeError naming the first that is not JSON. */
function _logLines(
  name: string,
  records: readonly unknown[],
  action: "append" | "write",
): string[] {
  return records.map((record) => {
    const text = JSON.stringify(record);
    if (text === undefined) {
      throw new TypeError(
        `Cannot ${action} ${typeof record} to log '${name}': it is not JSON; nothing was ${
          action === "append" ? "appended" : "written"
        }`,
      );
    }
    return text;
  });
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
  #config: _SessionConfig;
  #schema: _Schema;
  #idle: _Session[] = [];
  #ids = new Map<string, number>();
  #queues = new Map<string, _Queue>();
  #held = new Set<PgLock>();
  #closed = false;
  /** The one LISTEN session that every watch of this backend shares. */
  #listener: _Listener;
  /** Sessions being closed, which `close()` waits for. */
  #closing = new Set<Promise<void>>();

  private constructor(config: _SessionConfig, schema: _Schema) {
    this.#config = config;
    this.#schema = schema;
    this.#listener = new _Listener(
      () => _openSession(this.#config),
      schema.channel,
      schema.name === _DEFAULT_SCHEMA ? undefined : schema.name,
    );
    this.#pool = {
      borrow: (limit) => this.#whileOpen(() => this.#borrow(limit)),
      giveBack: (session, reusable) => this.#giveBack(session, reusable),
      cancel: (backendPid) => this.#cancel(backendPid),
      subscribe: (name, wake) =>
        this.#whileOpen(() => this.#listener.subscribe(name, wake)),
      closed: () => this.#closed,
      schema,
    };
  }

  /** The PostgreSQL schema that holds this backend's tables. */
  get schema(): string {
    return this.#schema.name;
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
    const backend = new PostgresBackend({
      url: url ?? _env("LOCKBOX_DATABASE_URL") ?? undefined,
      connectTimeout,
      applicationName: options.applicationName ?? "lockbox",
    }, schema);
    const session = await _openSession(backend.#config);
    try {
      const probe = await _openSession(backend.#config);
      try {
        await _checkNotPooled(backend.#config, session, probe);
      } finally {
        await probe.close();
      }
      // Made already: a user with no CREATE on the database can use it.
      const [{ ready, made }] = await session.query<
        { ready: boolean; made: boolean }
      >(
        `SELECT ${
          _TABLES.map((table) =>
            `to_regclass(${_literal(`${schema.sql}.${table}`)}) IS NOT NULL`
          ).join(" AND ")
        } AND to_regprocedure(${
          _literal(`${schema.sql}.documents_guard()`)
        }) IS NOT NULL AS ready, EXISTS (SELECT FROM pg_namespace WHERE nspname = $1) AS made`,
        [schema.name],
      );
      // It waits for any other process making them at the same time.
      if (!ready) {
        await session.run(_setupSql(schema, made), {
          until: performance.now() + connectTimeout,
          waits: true,
        });
      }
    } catch (error) {
      await session.close();
      if (error instanceof LockError) throw error;
      throw new LockError(
        `Cannot set up lockbox's tables in schema ${schema.name} on ${
          _describe(backend.#config.url)
        }: ${(error as Error).message}; ${
          _rightsHint(error, schema.name) ??
            `the user needs CREATE on the database (or an administrator creates schema ${schema.name} and grants the user CREATE on it, or makes the tables: connect once as a role that may)`
        }`,
        { cause: error },
      );
    }
    backend.#idle.push(session);
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
        guard = await this.#holdGuard(name, lock.shared);
      } catch (error) {
        await lock.release();
        throw error;
      }
      const kind = lock.shared ? "_shared" : "";
      const id = this.#ids.get(name)!;
      return {
        shareWithChildren: () => {},
        release: async () => {
          guard.stop();
          let unlocked = false;
          try {
            // As _unlock: the session may go back to the pool.
            await guard.session.run(
              `SET idle_session_timeout = 0; SELECT pg_advisory_unlock${kind}(${this.#schema.guardKey}, ${id})`,
            );
            unlocked = true;
          } catch {
            // Its session is gone, and the guard with it.
          }
          this.#giveBack(guard.session, unlocked);
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
   * Takes the guard of `name` (whose lock this process holds) on a session
   * of its own, which the server ends once it idles past `_SERVER_IDLE_MS`
   * (behind a session-mode pooler too), as a lock's session: a heartbeat
   * keeps it busy, and `lost` aborts if that session ends or a heartbeat
   * goes unanswered past `_LOSS_DEADLINE_MS`, before the server could end
   * it. `stop()` ends the heartbeat.
   */
  async #holdGuard(name: string, shared: boolean): Promise<_Guard> {
    const id = await this.#lockId(name);
    const session = await this.#borrow();
    const lost = new AbortController();
    try {
      // Only a moment's wait: no other process can hold the lock's guard
      // apart from shared holders (shared) or an acquirer's instant check.
      await session.run(
        `SELECT pg_advisory_lock${
          shared ? "_shared" : ""
        }(${this.#schema.guardKey}, ${id}), ${_HOLD}`,
      );
    } catch (error) {
      this.#giveBack(session, false);
      throw new LockError(
        `Cannot guard the lock '${name}' on ${_describe(this.#config.url)}: ${
          (error as Error).message
        }`,
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
    return {
      session,
      lost: lost.signal,
      stop: () => clearInterval(timer),
    };
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
    _logName(name);
    const lines = _logLines(name, records, "append");
    if (lines.length === 0) return;
    await this.#logQuery(
      name,
      (session) =>
        session.query(_appendLog(this.#schema), [name, `[${lines.join(",")}]`]),
    );
  }

  /**
   * The records of the log `name`, oldest first.
   *
   * @param name The log's name.
   * @returns The records (none while the log is empty).
   */
  async readLog(name: string): Promise<unknown[]> {
    _logName(name);
    const rows = await this.#logQuery(
      name,
      (session) =>
        session.query<{ entry: unknown }>(
          `SELECT entry FROM ${this.#schema.sql}.logs WHERE name = $1 ORDER BY seq`,
          [name],
        ),
    );
    return rows.map((row) => row.entry);
  }

  /**
   * Replaces the records of the log `name` in one transaction.
   *
   * @param name The log's name.
   * @param records JSON values.
   * @returns A promise that resolves once committed.
   */
  async writeLog(name: string, records: readonly unknown[]): Promise<void> {
    _logName(name);
    const lines = _logLines(name, records, "write");
    // One statement, so one transaction: the old records go as the new
    // ones come.
    await this.#logQuery(name, (session) =>
      session.query(
        `WITH gone AS (DELETE FROM ${this.#schema.sql}.logs WHERE name = $1) ${
          _appendLog(this.#schema)
        }`,
        [name, `[${lines.join(",")}]`],
      ));
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
    const rows = await this.#query(
      `the documents named '${prefix}...'`,
      (session) =>
        session.query<{ name: string }>(
          `SELECT name FROM ${this.#schema.sql}.documents
         WHERE value IS NOT NULL AND left(name, length($1)) = $1
         ORDER BY name COLLATE "C"`,
          [prefix],
        ),
    );
    return rows.map((row) => row.name);
  }

  #logQuery<R>(
    name: string,
    fn: (session: _Session) => Promise<R>,
  ): Promise<R> {
    return this.#query(`log '${name}'`, fn, `${name} (PostgreSQL log)`);
  }

  /** Runs `fn` on a session; a failure is a StoreError naming `what`. */
  async #query<R>(
    what: string,
    fn: (session: _Session) => Promise<R>,
    path = `${what} (PostgreSQL)`,
  ): Promise<R> {
    try {
      return await this.#withSession(fn);
    } catch (error) {
      throw new StoreError(
        path,
        `Cannot use ${what} on ${_describe(this.#config.url)}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }

  /** Sessions for the stores this backend made. */
  #pool: _SessionPool;

  /** `fn()`, or a LockError once the backend is closed. */
  #whileOpen<R>(fn: () => Promise<R>): Promise<R> {
    if (this.#closed) {
      return Promise.reject(
        new LockError("Cannot use the PostgreSQL backend: it is closed"),
      );
    }
    return fn();
  }

  /**
   * Whether any session holds the lock on `name` (the server's view).
   *
   * @param name The lock's name.
   * @returns `true` while held.
   */
  async isLocked(name: string): Promise<boolean> {
    return (await this.#holders(name)).length > 0;
  }

  /**
   * Who holds the lock on `name`: the holder's record and the server's view
   * of its session; the earliest holder of a shared lock.
   *
   * @param name The lock's name.
   * @returns The holder, or `null` while free.
   */
  async lockHolder(name: string): Promise<PgLockHolder | null> {
    return (await this.#holders(name))[0] ?? null;
  }

  /**
   * Every lock name lockbox knows on this database, with its state.
   *
   * @returns One entry per name, by name.
   */
  async listLocks(): Promise<PgLockInfo[]> {
    const rows = await this.#withSession((session) =>
      session.query<{ name: string; id: number; fence: string }>(
        `SELECT name, id, fence FROM ${this.#schema.sql}.locks ORDER BY name`,
      )
    );
    // Every name's holders in one query, not one per name.
    const byLock = new Map<number, PgLockHolder[]>();
    for (const row of await this.#holderRows(rows.map((row) => row.id))) {
      if (!byLock.has(row.lock_id)) byLock.set(row.lock_id, []);
      byLock.get(row.lock_id)!.push(_holder(row));
    }
    const waiting = new Map<number, PgLockWaiter[]>();
    const waiterRows = await this.#withSession((session) =>
      session.query<
        {
          lock_id: number;
          backend_pid: number;
          mode: string;
          pid: number | null;
          hostname: string | null;
        }
      >(_waitersSql(this.#schema), [this.#schema.lockKey])
    );
    for (const row of waiterRows) {
      if (!waiting.has(row.lock_id)) waiting.set(row.lock_id, []);
      waiting.get(row.lock_id)!.push({
        backendPid: row.backend_pid,
        pid: row.pid,
        hostname: row.hostname,
        mode: row.mode === "ShareLock" ? "shared" : "exclusive",
      });
    }
    const infos: PgLockInfo[] = [];
    for (const row of rows) {
      this.#ids.set(row.name, row.id);
      const holders = byLock.get(row.id) ?? [];
      infos.push({
        name: row.name,
        mode: holders.length === 0
          ? null
          : holders[0].shared
          ? "shared"
          : "exclusive",
        token: Number(row.fence),
        holders,
        waiters: waiting.get(row.id) ?? [],
      });
    }
    return infos;
  }

  /**
   * Releases every lock this backend holds and closes its sessions.
   *
   * @returns A promise that resolves once everything is closed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const listening = this.#listener.close();
    await Promise.all([...this.#held].map((lock) => lock.release()));
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map((session) => session.close()));
    await listening;
    await Promise.all(this.#closing);
  }

  /** Closes the backend (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal Called by PgLock.release(). */
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
         DELETE FROM ${this.#schema.sql}.holders WHERE backend_pid = ${session.backendPid};
         SELECT pg_advisory_unlock${
          shared ? "_shared" : ""
        }(${this.#schema.lockKey}, ${lockId}) AS ok;
         COMMIT;`,
      );
      unlocked = row.ok;
    } catch {
      // The session is gone: the server released the lock with it.
    }
    this.#giveBack(session, unlocked);
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
    if (this.#closed) {
      throw new LockError(
        `Cannot lock '${name}': the PostgreSQL backend is closed`,
      );
    }
    const started = performance.now();
    const queue = this.#queueFor(name);
    if (!await this.#enter(queue, shared, nullOnBusy, signal, timeout, name)) {
      if (queue.active === 0 && queue.waiting.length === 0) {
        this.#queues.delete(name);
      }
      return null;
    }
    let lock: PgLock | null = null;
    try {
      const left = Math.max(0, timeout - (performance.now() - started));
      // The whole call settles by its timeout plus the grace.
      const until = started + timeout + _GRACE_MS;
      lock = await this.#lockOnServer(name, options, left, until, nullOnBusy);
      return lock;
    } catch (error) {
      if (error === signal?.reason) throw error;
      throw this.#refusal(`lock '${name}'`, error);
    } finally {
      if (lock === null) this.#leave(name, queue, shared);
      else {
        this.#held.add(lock);
        _heldInProcess++;
        lock.signal.addEventListener("abort", () => {
          this.#held.delete(lock!);
          _heldInProcess--;
          this.#leave(name, queue, shared);
        }, { once: true });
      }
    }
  }

  async #lockOnServer(
    name: string,
    options: PgLockOptions,
    timeout: number,
    until: number,
    nullOnBusy: boolean,
  ): Promise<PgLock | null> {
    const shared = options.shared === true;
    const began = performance.now();
    const limit = { until, signal: options.signal };
    const id = await this.#lockId(name, limit);
    const session = await this.#borrow(limit);
    let locked = false;
    try {
      locked = await this.#wait(
        session,
        name,
        id,
        shared,
        timeout,
        limit,
        this.#schema.lockKey,
        options.deadlockTimeout ?? _DEADLOCK_TIMEOUT,
      );
      // Granted as the signal aborted: given back, no token taken.
      if (locked) options.signal?.throwIfAborted();
      // The token and holder record, in the statement that checks the guard
      // (no row while it is held).
      let row: { token: string } | undefined;
      while (locked) {
        [row] = await this.#record(
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
        if (row !== undefined) break;
        // A command run under this lock by a process that lost it is being
        // stopped: the lock is not free until it is.
        const left = Math.max(0, timeout - (performance.now() - began));
        if (
          left === 0 ||
          !await this.#waitForGuard(session, name, id, shared, left, limit)
        ) {
          locked = false;
          await this.#unlockOnly(session, id, shared);
        }
      }
      if (!locked) {
        if (nullOnBusy) {
          this.#giveBack(session, !session.ended);
          return null;
        }
        throw new LockTimeoutError(
          `${name} (PostgreSQL)`,
          await this.#holders(name, limit).then((h) => h[0] ?? null)
            .catch(() => null),
        );
      }
      if (options.signal?.aborted) throw options.signal.reason;
      return new PgLock(this, session, {
        name,
        id,
        shared,
        token: Number(row!.token),
      });
    } catch (error) {
      if (locked) await this._unlock(session, id, shared);
      else this.#giveBack(session, !session.ended);
      // A cancel meant for the wait may land on the statement after it.
      if (options.signal?.aborted) throw options.signal.reason;
      throw error;
    }
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
    // No row while the lock's guard is held (see the schema's guardKey).
    const kind = shared ? "_shared" : "";
    const guardFree = `(SELECT CASE
        WHEN pg_try_advisory_lock${kind}(${this.#schema.guardKey}, $2)
        THEN pg_advisory_unlock${kind}(${this.#schema.guardKey}, $2) ELSE false END)`;
    for (;;) {
      try {
        return await session.query<{ token: string }>(
          shared
            ? `INSERT INTO ${this.#schema.sql}.holders
               (backend_pid, lock_id, shared, token, pid, hostname, metadata)
             SELECT $1, $2, true, fence, $3, $4, $5 FROM ${this.#schema.sql}.locks
             WHERE id = $2 AND ${guardFree}
             ON CONFLICT (backend_pid) DO UPDATE SET lock_id = EXCLUDED.lock_id,
               shared = true, token = EXCLUDED.token, pid = EXCLUDED.pid,
               hostname = EXCLUDED.hostname, acquired_at = now(),
               metadata = EXCLUDED.metadata
             RETURNING token`
            : `WITH f AS (
               UPDATE ${this.#schema.sql}.locks SET fence = fence + 1
               WHERE id = $2 AND ${guardFree}
               RETURNING fence)
             INSERT INTO ${this.#schema.sql}.holders
               (backend_pid, lock_id, shared, token, pid, hostname, metadata)
             SELECT $1, $2, false, fence, $3, $4, $5 FROM f
             ON CONFLICT (backend_pid) DO UPDATE SET lock_id = EXCLUDED.lock_id,
               shared = false, token = EXCLUDED.token, pid = EXCLUDED.pid,
               hostname = EXCLUDED.hostname, acquired_at = now(),
               metadata = EXCLUDED.metadata
             RETURNING token`,
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
    options: PgLockOptions,
  ): Promise<boolean> {
    if (
      !await this.#wait(
        session,
        name,
        id,
        shared,
        timeout,
        options,
        this.#schema.guardKey,
      )
    ) {
      return false;
    }
    await session.run(
      `SELECT pg_advisory_unlock${
        shared ? "_shared" : ""
      }(${this.#schema.guardKey}, ${id})`,
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
      }(${this.#schema.lockKey}, ${id})`,
    );
  }

  /** Waits on the server; `false` when the timeout ran out. */
  async #wait(
    session: _Session,
    name: string,
    id: number,
    shared: boolean,
    timeout: number,
    limit: _CallLimit,
    namespace = this.#schema.lockKey,
    deadlockTimeout = Infinity,
  ): Promise<boolean> {
    const kind = shared ? "_shared" : "";
    // Holding the lock itself (not its guard) makes the session one the
    // server ends once idle past _SERVER_IDLE_MS (the heartbeat keeps it
    // busy while its client lives).
    const hold = namespace === this.#schema.lockKey;
    // A deadlock found ends the wait as an abort would, with DeadlockError.
    const deadlock = hold && timeout > 0 && deadlockTimeout !== Infinity
      ? new AbortController()
      : null;
    const signal = deadlock === null
      ? limit.signal
      : limit.signal
      ? AbortSignal.any([limit.signal, deadlock.signal])
      : deadlock.signal;
    const looking = deadlock === null ? null : this.#lookForDeadlock(
      session.backendPid,
      name,
      id,
      deadlockTimeout,
      deadlock,
    );
    if (timeout === 0) {
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
    // The server times the wait (lock_timeout); one it cannot time waits
    // in slices. To abort, another session cancels the wait.
    const sliced = timeout > _MAX_LOCK_TIMEOUT;
    const end = performance.now() + timeout;
    let delivered: Promise<boolean> | null = null;
    const onAbort = () => {
      delivered ??= this.#cancel(session.backendPid).then(
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
            // A cancel still on its way would hit this session's next
            // statement: nothing more runs on it until the server has it
            // (one that finds the session idle is dropped); one that may not
            // have arrived leaves the session unusable: closed, which also
            // ends its locks.
            if (delivered !== null && !await delivered) await session.close();
            else if (_sqlState(error) === "57014" && !session.ended) {
              // A cancel that lands just after the grant fails the
              // statement, but a session lock outlives its statement.
              await session.run("SELECT pg_advisory_unlock_all()").catch(() =>
                session.close()
              );
            }
            throw signal.reason;
          }
          if (_sqlState(error) === "55P03") {
            if (sliced) continue;
            return false;
          }
          if (error instanceof LockError) throw error;
          if (_sqlState(error) === "40P01") {
            throw new DeadlockError(`${name} (PostgreSQL)`, [], {
              cause: error,
            });
          }
          throw new LockError(
            `Cannot lock '${name}' on ${_describe(this.#config.url)}: ${
              (error as Error).message
            }`,
            { cause: error },
          );
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
   * The deadlock check of a wait on the server (session `backendPid`, lock
   * `id`): after `every` ms it records the wait in the schema's waits table (so other
   * processes see who waits), then reads the waits-for graph between
   * lockbox processes, and again every `every` ms. A cycle through this
   * process whose victim (the highest pid, then host name) is this
   * process, seen twice 100 ms apart, aborts `deadlock` with a
   * DeadlockError. Returns the function that stops it and removes the
   * record.
   */
  #lookForDeadlock(
    backendPid: number,
    name: string,
    id: number,
    every: number,
    deadlock: AbortController,
  ): () => Promise<void> {
    const self = `${_pid()}@${_hostname()}`;
    let stopped = false;
    let recorded: Promise<unknown> | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: () => void = () => {};
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      });
    const look = async (): Promise<string | null> => {
      const rows = await this.#withSession((session) =>
        session.query<{
          name: string;
          waiter_pid: number;
          waiter_host: string;
          holder_pid: number;
          holder_host: string;
        }>(_waitEdgesSql(this.#schema), [this.#schema.lockKey])
      );
      const edges = rows.map((row) => ({
        waiter: `${row.waiter_pid}@${row.waiter_host}`,
        holder: `${row.holder_pid}@${row.holder_host}`,
        name: row.name,
      })).filter((edge) => edge.waiter !== edge.holder);
      const set = _stronglyConnected(edges).find((keys) => keys.includes(self));
      if (set === undefined) return null;
      const order = (key: string) => {
        const at = key.indexOf("@");
        return [Number(key.slice(0, at)), key.slice(at + 1)] as const;
      };
      const victim = set.reduce((a, b) => {
        const [pa, ha] = order(a);
        const [pb, hb] = order(b);
        return pb > pa || (pb === pa && hb > ha) ? b : a;
      });
      if (victim !== self) return null;
      const inSet = edges.filter((edge) =>
        set.includes(edge.waiter) && set.includes(edge.holder)
      );
      const key = inSet.map((e) => `${e.waiter}>${e.name}>${e.holder}`).sort()
        .join(" ");
      // The way round from this process's wait back to it.
      const first = inSet.find((e) => e.waiter === self && e.name === name);
      if (first === undefined) return null;
      const from = new Map([[first.holder, first]]);
      for (const queue = [first.holder]; queue.length > 0;) {
        const at = queue.shift()!;
        for (const e of inSet) {
          if (e.waiter === at && !from.has(e.holder)) {
            from.set(e.holder, e);
            queue.push(e.holder);
          }
        }
      }
      const route: typeof inSet = [];
      for (let at = self; route.length <= set.length;) {
        const e = from.get(at);
        if (e === undefined) return null;
        route.unshift(e);
        at = e.waiter;
        if (at === self) break;
      }
      const cycle: DeadlockStep[] = route.map((e) => {
        const [pid, hostname] = order(e.waiter);
        return { pid, hostname, lock: `${e.name} (PostgreSQL)` };
      });
      confirmed = { key, cycle };
      return key;
    };
    let confirmed: { key: string; cycle: DeadlockStep[] } | null = null;
    const loop = async () => {
      // Looks at every, 2 every, 4 every, ... up to 8 every: each look is a
      // query on a session of its own, and many processes may wait at once.
      let wait = every;
      const next = () => {
        const ms = wait;
        wait = Math.min(wait * 2, every * 8);
        return sleep(ms);
      };
      await next();
      // A process that holds no lock here cannot be in a cycle (no one
      // waits for it): it neither records its wait nor looks.
      while (!stopped && _heldInProcess === 0) await next();
      if (stopped) return;
      recorded = this.#withSession((session) =>
        session.query(
          `INSERT INTO ${this.#schema.sql}.waits (backend_pid, lock_id, pid, hostname)
           VALUES ($1, $2, $3, $4) ON CONFLICT (backend_pid) DO UPDATE SET
           lock_id = EXCLUDED.lock_id, pid = EXCLUDED.pid,
           hostname = EXCLUDED.hostname, since = now()`,
          [backendPid, id, _pid(), _hostname()],
        )
      );
      await recorded;
      while (!stopped) {
        const first = _heldInProcess === 0 ? null : await look();
        if (first !== null) {
          await sleep(100);
          if (stopped) return;
          const found = confirmed;
          if (await look() === first && found !== null) {
            deadlock.abort(
              new DeadlockError(`${name} (PostgreSQL)`, found.cycle),
            );
            return;
          }
        }
        await next();
      }
    };
    const running = loop().catch(() => {
      // Cannot look (the server is gone): the wait itself will say so.
    });
    // Stopping never delays the caller (the lock may just have been
    // granted): the record goes in the background, and close() waits for it.
    return () => {
      stopped = true;
      clearTimeout(timer);
      wake();
      if (recorded === null) return Promise.resolve();
      const removing = running.then(() =>
        this.#withSession((session) =>
          session.query(
            `DELETE FROM ${this.#schema.sql}.waits WHERE backend_pid = $1`,
            [backendPid],
          )
        )
      ).then(() => {}, () => {})
        .finally(() => this.#closing.delete(removing));
      this.#closing.add(removing);
      return Promise.resolve();
    };
  }

  /** Cancels the statement a session is running, from another session. */
  async #cancel(backendPid: number): Promise<void> {
    await this.#withSession((session) =>
      session.query("SELECT pg_cancel_backend($1)", [backendPid])
    );
  }

  /**
   * A server error as a LockError saying what failed and, for a refusal of
   * the role's rights or a read-only server, what to do; others unchanged.
   */
  #refusal(what: string, error: unknown): unknown {
    if (error instanceof LockError || _sqlState(error) === undefined) {
      return error;
    }
    const hint = _rightsHint(error, this.#schema.name);
    return new LockError(
      `Cannot ${what} on ${_describe(this.#config.url)}: ${
        (error as Error).message
      }${hint === undefined ? "" : `; ${hint}`}`,
      { cause: error },
    );
  }

  /** The row id of the lock `name`, made if missing. */
  async #lockId(name: string, limit?: _CallLimit): Promise<number> {
    const known = this.#ids.get(name);
    if (known !== undefined) return known;
    // A name another session is inserting right now is not in this
    // statement's snapshot: the next try sees it committed.
    let row: { id: number } | undefined;
    for (let attempt = 0; row === undefined; attempt++) {
      if (attempt === 5) {
        throw new LockError(`Cannot find or make the row of lock '${name}'`);
      }
      [row] = await this.#withSession(
        (session) =>
          session.query<{ id: number }>(
            `WITH made AS (
             INSERT INTO ${this.#schema.sql}.locks (name) VALUES ($1)
             ON CONFLICT (name) DO NOTHING RETURNING id)
           SELECT id FROM made UNION ALL
           SELECT id FROM ${this.#schema.sql}.locks WHERE name = $1 LIMIT 1`,
            [name],
            limit,
          ),
        limit,
      );
    }
    this.#ids.set(name, row.id);
    return row.id;
  }

  async #holders(name: string, limit?: _CallLimit): Promise<PgLockHolder[]> {
    _lockName(name);
    try {
      // Looked up, not made: a name without a row has no holder, and a
      // role that may only read can ask.
      let id = this.#ids.get(name);
      if (id === undefined) {
        const [row] = await this.#withSession(
          (session) =>
            session.query<{ id: number }>(
              `SELECT id FROM ${this.#schema.sql}.locks WHERE name = $1`,
              [name],
              limit,
            ),
          limit,
        );
        if (row === undefined) return [];
        this.#ids.set(name, id = row.id);
      }
      return (await this.#holderRows([id], limit)).map(_holder);
    } catch (error) {
      throw this.#refusal(`read the holders of lock '${name}'`, error);
    }
  }

  #holderRows(ids: number[], limit?: _CallLimit): Promise<_HolderRow[]> {
    return this.#withSession(
      (session) =>
        session.query<_HolderRow>(_holdersSql(this.#schema), [
          this.#schema.lockKey,
          ids,
        ], limit),
      limit,
    );
  }

  async #withSession<R>(
    fn: (session: _Session) => Promise<R>,
    limit?: _CallLimit,
  ): Promise<R> {
    const session = await this.#borrow(limit);
    try {
      const result = await fn(session);
      this.#giveBack(session, true);
      return result;
    } catch (error) {
      this.#giveBack(session, false);
      throw error;
    }
  }

  async #borrow(limit?: _CallLimit): Promise<_Session> {
    while (this.#idle.length > 0) {
      const session = this.#idle.pop()!;
      if (!session.ended) return session;
    }
    return await _openSession(this.#config, limit);
  }

  /** Keeps a session that holds nothing for reuse; closes any other. */
  #giveBack(session: _Session, reusable: boolean): void {
    if (
      reusable && !session.ended && !this.#closed &&
      this.#idle.length < _MAX_IDLE
    ) {
      this.#idle.push(session);
    } else {
      const closing = session.close().catch(() => {})
        .finally(() => this.#closing.delete(closing));
      this.#closing.add(closing);
    }
  }

  #queueFor(name: string): _Queue {
    let queue = this.#queues.get(name);
    if (!queue) {
      this.#queues.set(
        name,
        queue = { waiting: [], active: 0, exclusive: false },
      );
    }
    return queue;
  }

  /**
   * Waits for this process's turn at `name`, as FileLock's queue does;
   * `false` at once when it is not free and `nullOnBusy`.
   */
  async #enter(
    queue: _Queue,
    shared: boolean,
    nullOnBusy: boolean,
    signal: AbortSignal | undefined,
    timeout: number,
    name: string,
  ): Promise<boolean> {
    const compatible = () => queue.active === 0 || (shared && !queue.exclusive);
    if (queue.waiting.length === 0 && compatible()) {
      queue.active++;
      queue.exclusive = !shared;
      return true;
    }
    if (nullOnBusy) return false;
    const holder = () =>
      this.#holders(name, { until: performance.now() + _GRACE_MS })
        .then((holders) => holders[0] ?? null, () => null);
    if (timeout === 0) {
      throw new LockTimeoutError(`${name} (PostgreSQL)`, await holder());
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        shared,
        go: () => {
          stop();
          resolve();
        },
      };
      const fail = (error: unknown) => {
        const at = queue.waiting.indexOf(entry);
        if (at !== -1) queue.waiting.splice(at, 1);
        stop();
        reject(error);
        this.#admit(queue);
      };
      const onAbort = () => fail(signal!.reason);
      const stopTimer = timeout === Infinity
        ? () => {}
        : _after(timeout, () => {
          holder().then((found) =>
            fail(new LockTimeoutError(`${name} (PostgreSQL)`, found))
          );
        });
      const stop = () => {
        stopTimer();
        signal?.removeEventListener("abort", onAbort);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.waiting.push(entry);
    });
    return true;
  }

  #leave(name: string, queue: _Queue, _shared: boolean): void {
    queue.active--;
    if (queue.active === 0) queue.exclusive = false;
    this.#admit(queue);
    if (queue.active === 0 && queue.waiting.length === 0) {
      this.#queues.delete(name);
    }
  }

  /** Lets waiting requests in, in order, while they are compatible. */
  #admit(queue: _Queue): void {
    while (queue.waiting.length > 0) {
      const next = queue.waiting[0];
      if (queue.active > 0 && (!next.shared || queue.exclusive)) return;
      queue.waiting.shift();
      queue.active++;
      queue.exclusive = !next.shared;
      next.go();
    }
  }
}
