// One PostgreSQL session (a connection), behind the small interface the
// PostgreSQL backend uses, so that the driver (npm pg) stays in this file.
// Every session is set up so that the server notices a dead client within
// _SERVER_DEAD_PEER_MS, which is longer than the client's own loss deadline,
// and every call on it settles within a deadline of the client's own.

import { LockError } from "../base/errors.ts";
import { _socketDescriptor, _socketsNow } from "../runtime/mod.ts";
import { _after } from "../base/promise.ts";

/**
 * The part of npm pg's `Client` lockbox uses, typed here: pg ships no types,
 * and `@types/pg` brings Node's, which clash with Deno's in the npm build.
 */
interface _PgClient {
  connect(): Promise<void>;
  query(
    sql: string,
    params?: unknown[],
  ): Promise<{ rows: unknown[] } | { rows: unknown[] }[]>;
  end(): Promise<void>;
  on(event: "error", listener: (error: Error) => void): void;
  on(event: "end", listener: () => void): void;
  on(
    event: "notification",
    listener: (message: { channel: string; payload?: string }) => void,
  ): void;
  /** The socket, destroyed when the server stops answering. */
  connection?: { stream?: { destroy(): void } };
}

type _PgClientClass = new (config: Record<string, unknown>) => _PgClient;
let _clientClass: _PgClientClass | undefined;

/**
 * npm pg's `Client`, loaded on the first connect: pg is an optional peer
 * dependency of the npm package, so a project that uses only files need not
 * install it, and one that uses PostgreSQL without it is told what to do.
 */
async function _pgClient(): Promise<_PgClientClass> {
  if (_clientClass !== undefined) return _clientClass;
  let pg: { default?: { Client?: unknown }; Client?: unknown };
  try {
    pg = await import("pg");
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    const message = (error as Error)?.message ?? "";
    if (
      (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") &&
      /['"]pg['"]/.test(message)
    ) {
      throw new Error(
        "Cannot load npm package 'pg', which lockbox's PostgreSQL backend needs: it is not installed; install it (npm install pg)",
        { cause: error },
      );
    }
    throw error;
  }
  _clientClass = (pg.default?.Client ?? pg.Client) as _PgClientClass;
  return _clientClass;
}

/** How lockbox reaches the server: a URL plus what `connect` was given. */
export interface _SessionConfig {
  /** A `postgres://` URL, or `undefined` for libpq's `PG*` variables. */
  url: string | undefined;
  /** How long opening a session may take, in milliseconds. */
  connectTimeout: number;
  /** `application_name`, shown in `pg_stat_activity`. */
  applicationName: string;
}

/**
 * How long the server waits for a silent client before it ends the session
 * and releases its locks: keepalives after 5 s idle, every 2 s, 3 missed
 * (about 11 s), or 10 s of unacknowledged data (tcp_user_timeout).
 */
export const _SERVER_DEAD_PEER_MS = 10_000;

/**
 * How long a statement that waits for nothing may go unanswered before the
 * client gives up on its session (plus 1 s per MiB it sends): the lock
 * holder's loss deadline. A stalled link (packets held, socket open) would
 * otherwise leave the call pending until TCP gives up, which can take 15
 * minutes; server-side limits cannot help, as the server's answer (or a
 * cancel) never arrives.
 */
export const _ANSWER_MS = 5000;

/**
 * How long past its timeout, or its signal's abort, a waiting call may take
 * to settle before the client gives up on its session: time for the
 * server's own lock_timeout or a cancel from another session to answer.
 */
export const _GRACE_MS = 2000;

/**
 * The server ends a lock-holding session that has been idle (no statement,
 * no open transaction) this long: idle_session_timeout, set on a session
 * while it holds a lock, so that a client that stopped heartbeating loses
 * its lock through any pooler too. Above the heartbeat interval and above
 * the holder's loss deadline (which it counts from the heartbeat's send):
 * the holder always declares the loss first.
 */
export const _SERVER_IDLE_MS = 8000;

/** How long one call may take, beyond what the session allows by default. */
export interface _CallLimit {
  /**
   * The `performance.now()` by which the call settles; sooner when the
   * statement waits for nothing (then `_ANSWER_MS` from its start).
   */
  until?: number;
  /** The statement waits on the server (for a lock) until `until`. */
  waits?: boolean;
  /**
   * Once it aborts, the call settles within `_GRACE_MS`: with the
   * server's answer to a cancel, else with `signal.reason`.
   */
  signal?: AbortSignal;
}

/**
 * Set on every session right after it opens (a SET, not startup options,
 * which poolers such as PgBouncer refuse).
 */
const _SESSION_SETTINGS = [
  "SET tcp_keepalives_idle = 5",
  "SET tcp_keepalives_interval = 2",
  "SET tcp_keepalives_count = 3",
  `SET tcp_user_timeout = ${_SERVER_DEAD_PEER_MS}`,
  // Kept idle in the backend's pool; a lock's grant sets _SERVER_IDLE_MS.
  "SET idle_session_timeout = 0",
  "SET idle_in_transaction_session_timeout = 60000",
  // String literals lockbox builds (_literal) rely on it (the default).
  "SET standard_conforming_strings = on",
  // What lockbox relies on, whatever the server's, database's or role's
  // default: commits that survive a crash (the tokens; a store with
  // durable: false turns it off per transaction; a stronger setting, such
  // as remote_apply, stays), waits that only lockbox times (lock_timeout is
  // set per wait), and read-modify-writes under row locks, which stricter
  // isolation would fail with 40001.
  "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'",
  "SET statement_timeout = 0",
  "SET lock_timeout = 0",
  "SET default_transaction_isolation = 'read committed'",
].join("; ");

/** An open session. */
export interface _Session {
  /** The server process serving this session (`pg_backend_pid()`). */
  readonly backendPid: number;
  /** Whether the session has ended (closed, or cut off). */
  readonly ended: boolean;
  /**
   * The rows of a statement; with no parameters it may be several
   * statements, and the rows are those of the last one that returned any.
   */
  query<R>(
    sql: string,
    params?: unknown[],
    limit?: _CallLimit,
  ): Promise<R[]>;
  /** Runs statements with no parameters in one round trip. */
  run(sql: string, limit?: _CallLimit): Promise<void>;
  /** The rows of each of several statements, in one round trip. */
  queryAll(sql: string, limit?: _CallLimit): Promise<unknown[][]>;
  /** Called once when the session ends for any reason but `close()`. */
  onEnd(listener: (reason: string) => void): void;
  /** Called with each notification a `LISTEN` of this session receives. */
  onNotification(listener: (channel: string, payload: string) => void): void;
  /**
   * Ends the session; idempotent. The socket is destroyed when the server
   * has not seen the end off within `_GRACE_MS`.
   */
  close(): Promise<void>;
  /**
   * The descriptor of its connection in this process, or `null` when it
   * cannot be found: a process that holds a copy keeps the connection,
   * and the session's locks, open after this process dies.
   */
  descriptor(): number | null;
}

/** A driver error's SQLSTATE, if it has one. */
export function _sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)
    ? code
    : undefined;
}

/** Whether a driver error says the session is gone (not a SQL error). */
export function _sessionLost(error: unknown): boolean {
  const state = _sqlState(error);
  if (state !== undefined) return /^(08|57P0)/.test(state);
  return error instanceof Error && error.constructor === Error;
}

/**
 * A SQL string literal for `text` (standard_conforming_strings is on in
 * every lockbox session, so only quotes are doubled). Lets several
 * statements with values go in one round trip.
 */
export function _literal(text: string): string {
  if (text.includes("\0")) {
    throw new RangeError("Cannot send a NUL character to PostgreSQL");
  }
  return `'${text.replaceAll("'", "''")}'`;
}

/** The largest value of the server's timeouts (lock_timeout and the like), in milliseconds. */
export const _MAX_LOCK_TIMEOUT = 2 ** 31 - 1;

/** The longest name of a lock, document or log, in characters. */
export const _MAX_NAME = 200;

/**
 * Checks the name of a lock, document or log (`what`): 1 to 200
 * characters, no NUL, no lone surrogate.
 */
export function _checkName(
  name: unknown,
  what: "lock" | "document" | "log",
  example: string,
): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(
      `Cannot use a ${what} name that is not a non-empty string; name the ${what}, such as '${example}'`,
    );
  }
  // Sent as UTF-8, a lone surrogate becomes U+FFFD: two such names would
  // share one row.
  if (/[\uD800-\uDFFF]/u.test(name)) {
    throw new TypeError(
      `Cannot use the ${what} name '${
        name.slice(0, 40)
      }': it has a lone surrogate (half of a UTF-16 pair), which PostgreSQL cannot store; use well-formed text`,
    );
  }
  if (name.length > _MAX_NAME || name.includes("\0")) {
    throw new RangeError(
      `Cannot use the ${what} name '${
        name.slice(0, 40)
      }...': expected at most ${_MAX_NAME} characters and no NUL`,
    );
  }
  return name;
}

/**
 * Where a URL points, for messages: its scheme, user, host, port, database
 * and `host` parameter, never a password (in the URL or a parameter).
 */
export function _describe(url: string | undefined): string {
  if (url === undefined) return "the server named by the PG* variables";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "the database URL";
  }
  const host = parsed.searchParams.get("host");
  const user = parsed.username === "" ? "" : `${parsed.username}@`;
  return `'${parsed.protocol}//${user}${parsed.host}${parsed.pathname}${
    host === null ? "" : `?host=${host}`
  }'`;
}

const _NOT_SHOWN = "it is not shown, as it may hold a password";

/**
 * Checks a database URL before the driver sees it: npm pg puts a URL it
 * cannot parse, password included, in its error. A `TypeError` that never
 * shows the URL.
 */
export function _checkUrl(url: string): void {
  if (/^\s*[A-Za-z_]+\s*=/.test(url)) {
    throw new TypeError(
      `Cannot connect with a key=value connection string: lockbox takes a postgres:// URL, or the PG* variables (--db env); ${_NOT_SHOWN}`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `Cannot connect to the database URL: it does not parse as a URL (check the port, the [brackets] of an IPv6 host, and write '@', ':', '/', '?', '#' and '%' in a user name or password as %40, %3A, %2F, %3F, %23 and %25); ${_NOT_SHOWN}`,
    );
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new TypeError(
      `Cannot connect to the database URL: expected a postgres:// URL, got one starting '${parsed.protocol}'; ${_NOT_SHOWN}`,
    );
  }
  if (/%(?![0-9A-Fa-f]{2})/.test(url)) {
    throw new TypeError(
      `Cannot connect to the database URL: it has a '%' that starts no %XX escape (write '%' as %25); ${_NOT_SHOWN}`,
    );
  }
  if (parsed.hash !== "") {
    throw new TypeError(
      `Cannot connect to the database URL: it has a '#' (write '#' in a password as %23); ${_NOT_SHOWN}`,
    );
  }
}

/** The password texts of a URL (as written and decoded), longest first. */
function _secrets(url: string | undefined): string[] {
  if (url === undefined) return [];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [url];
  }
  const found = [parsed.password];
  for (const [key, value] of parsed.searchParams) {
    if (/pass/i.test(key)) found.push(value, encodeURIComponent(value));
  }
  for (const part of parsed.search.slice(1).split("&")) {
    const at = part.indexOf("=");
    if (/pass/i.test(part.slice(0, at))) found.push(part.slice(at + 1));
  }
  for (const text of [...found]) {
    try {
      found.push(decodeURIComponent(text));
    } catch {
      // Not an escape sequence: the text as written is the secret.
    }
  }
  return [...new Set(found.filter((text) => text !== ""))]
    .sort((a, b) => b.length - a.length);
}

/** `text` with every password of `url` replaced by `***`. */
function _scrub(text: string, url: string | undefined): string {
  let out = text;
  for (const secret of _secrets(url)) out = out.replaceAll(secret, "***");
  return out;
}

/**
 * A driver error fit to pass on as a `cause`: itself, or, if its message,
 * stack or any string property shows a password of `url`, a copy without.
 */
function _scrubError(error: unknown, url: string | undefined): unknown {
  if (!(error instanceof Error)) return error;
  const secrets = _secrets(url);
  const texts = [
    error.message,
    error.stack ?? "",
    ...Object.values(error).filter((v) => typeof v === "string"),
  ];
  if (!texts.some((text) => secrets.some((s) => text.includes(s)))) {
    return error;
  }
  const copy = new Error(_scrub(error.message, url));
  copy.name = error.name;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}

/** An error for a session that could not be opened, saying what to fix. */
function _connectError(config: _SessionConfig, failure: unknown): Error {
  const where = _describe(config.url);
  const error = _scrubError(failure, config.url);
  const reason = (error as Error)?.message ?? String(error);
  switch (_sqlState(error)) {
    case "28P01":
    case "28000":
      return new LockError(
        `Cannot connect to ${where}: ${reason}; check the user and password (in the URL, or PGUSER and PGPASSWORD)`,
        { cause: error },
      );
    case "3D000":
      return new LockError(
        `Cannot connect to ${where}: ${reason}; create the database or name another one`,
        { cause: error },
      );
    case "53300":
      return new LockError(
        `Cannot connect to ${where}: ${reason}; the server's connection limit is reached (max_connections, or the role's CONNECTION LIMIT; each held or waited-for lock uses a session of its own): raise it or hold fewer locks at once`,
        { cause: error },
      );
  }
  return new LockError(
    `Cannot connect to ${where}: ${reason}; check that the server runs and the host and port are right (LOCKBOX_DATABASE_URL, or PGHOST and PGPORT)`,
    { cause: error },
  );
}

/**
 * Every call on a session settles within its limit: past it, the session
 * is destroyed (its listeners told, so a lock it held is lost) and the call
 * fails, or rejects with the signal's reason after an abort.
 */
class _PgSession implements _Session {
  #client: _PgClient;
  #where: string;
  #ended = false;
  #closing = false;
  #closed: Promise<void> | null = null;
  #listeners: ((reason: string) => void)[] = [];
  backendPid = 0;

  constructor(client: _PgClient, where: string) {
    this.#client = client;
    this.#where = where;
    client.on(
      "error",
      (error: Error) => this.#end(`the session failed (${error.message})`),
    );
    client.on("end", () => this.#end("the session ended"));
  }

  get ended(): boolean {
    return this.#ended;
  }

  #end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#closing) return;
    for (const listener of this.#listeners) listener(reason);
  }

  /** Gives up on the session at once: the server stopped answering. */
  #destroy(reason: string): void {
    this.#end(reason);
    this.#client.connection?.stream?.destroy();
  }

  /** `start()`'s result, or a failure once `limit` has run out. */
  #within<R>(
    start: () => Promise<R>,
    size: number,
    limit: _CallLimit = {},
  ): Promise<R> {
    const now = performance.now();
    const answerBy = now + _ANSWER_MS + Math.floor(size / 2 ** 20) * 1000;
    const until = limit.waits
      ? limit.until ?? Infinity
      : Math.min(limit.until ?? Infinity, answerBy);
    const signal = limit.signal;
    return new Promise<R>((resolve, reject) => {
      let settled = false;
      let stopGrace = () => {};
      const finish = () => {
        settled = true;
        stopTimer();
        stopGrace();
        signal?.removeEventListener("abort", onAbort);
      };
      const giveUp = (error: unknown, reason: string) => {
        if (settled) return;
        finish();
        this.#destroy(reason);
        reject(error);
      };
      const ms = Math.max(0, Math.round(until - now));
      const stopTimer = _after(Math.max(0, until - now), () =>
        giveUp(
          new LockError(
            `Cannot use ${this.#where}: no answer within ${ms} ms (a stalled connection, or an overloaded server), so lockbox closed the session; a statement it sent may or may not have taken effect`,
          ),
          `no answer within ${ms} ms`,
        ));
      const onAbort = () => {
        stopGrace = _after(_GRACE_MS, () =>
          giveUp(
            signal!.reason,
            `no answer within ${_GRACE_MS} ms of an abort`,
          ));
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
      start().then(
        (value) => {
          if (settled) return;
          finish();
          resolve(value);
        },
        (error) => {
          if (settled) return;
          finish();
          reject(error);
        },
      );
    });
  }

  async query<R>(
    sql: string,
    params: unknown[] = [],
    limit?: _CallLimit,
  ): Promise<R[]> {
    const size = params.reduce<number>(
      (sum, param) => sum + (typeof param === "string" ? param.length : 0),
      sql.length,
    );
    const result = await this.#within(
      () => this.#client.query(sql, params),
      size,
      limit,
    );
    // Several statements (a simple query): the rows of the one that had any.
    if (!Array.isArray(result)) return result.rows as R[];
    return (result.findLast((one) => one.rows.length > 0)?.rows ?? []) as R[];
  }

  async run(sql: string, limit?: _CallLimit): Promise<void> {
    await this.#within(() => this.#client.query(sql), sql.length, limit);
  }

  async queryAll(sql: string, limit?: _CallLimit): Promise<unknown[][]> {
    const result = await this.#within(
      () => this.#client.query(sql),
      sql.length,
      limit,
    );
    return Array.isArray(result)
      ? result.map((one) => one.rows)
      : [result.rows];
  }

  onEnd(listener: (reason: string) => void): void {
    this.#listeners.push(listener);
  }

  onNotification(listener: (channel: string, payload: string) => void): void {
    this.#client.on(
      "notification",
      (message) => listener(message.channel, message.payload ?? ""),
    );
  }

  /** Its socket's descriptor, as found right after it connected. */
  connectedAs: number | null = null;

  #stream(): unknown {
    return (this.#client as { connection?: { stream?: unknown } }).connection
      ?.stream;
  }

  /** Notes its socket's descriptor, given the sockets open before it. */
  noteConnected(before: Map<number, string> | null): void {
    const stream = this.#stream() as { remotePort?: unknown } | undefined;
    // A TCP socket is found by its ports when asked for.
    if (stream !== undefined && typeof stream.remotePort !== "number") {
      this.connectedAs = _socketDescriptor(stream, before);
    }
  }

  descriptor(): number | null {
    if (this.#ended) return null;
    const stream = this.#stream();
    return stream === undefined
      ? null
      : _socketDescriptor(stream) ?? this.connectedAs;
  }

  close(): Promise<void> {
    if (this.#closed !== null) return this.#closed;
    this.#closing = true;
    this.#ended = true;
    // A graceful end waits for the server to close its side, which a
    // stalled link never lets happen.
    const stop = _after(
      _GRACE_MS,
      () => this.#client.connection?.stream?.destroy(),
    );
    return this.#closed = this.#client.end().catch(() => {}).finally(stop);
  }
}

function _pooled(config: _SessionConfig, what: string): LockError {
  return new LockError(
    `Cannot use ${
      _describe(config.url)
    } for locks: ${what}, as behind PgBouncer in transaction pooling mode, where a session's lock and its unlock can run on different server sessions; connect to PostgreSQL directly or through a session-mode pool`,
  );
}

/**
 * Refuses a transaction-mode pooler, which a lone client may not see: while
 * `held` pins a server session in an open transaction, `probe` runs a
 * statement; once it commits, a pooler hands that server session to the
 * probe's next statement, and PostgreSQL never changes a session's process.
 */
export async function _checkNotPooled(
  config: _SessionConfig,
  held: _Session,
  probe: _Session,
): Promise<void> {
  await held.run("BEGIN");
  let during: number;
  try {
    [{ pid: during }] = await probe.query<{ pid: number }>(
      "SELECT pg_backend_pid() AS pid",
    );
  } finally {
    await held.run("COMMIT");
  }
  const [{ pid: after }] = await probe.query<{ pid: number }>(
    "SELECT pg_backend_pid() AS pid",
  );
  if (during !== after || during !== probe.backendPid) {
    throw _pooled(
      config,
      `one session's statements ran on server sessions ${probe.backendPid}, ${during} and ${after}`,
    );
  }
}

/**
 * Opens a session, or throws a `LockError` that says what to fix. (A
 * transaction-mode pooler is refused once per backend, by
 * `_checkNotPooled` at connect.) Within `connectTimeout`, and within
 * `limit` (its `until`, or `_GRACE_MS` after its signal aborts) when given.
 */
export async function _openSession(
  config: _SessionConfig,
  limit: _CallLimit = {},
): Promise<_Session> {
  if (config.url !== undefined) _checkUrl(config.url);
  const Client = await _pgClient();
  const left = (limit.until ?? Infinity) - performance.now();
  const connectTimeout = Math.max(1, Math.min(config.connectTimeout, left));
  let client: _PgClient;
  try {
    client = new Client({
      ...(config.url === undefined ? {} : { connectionString: config.url }),
      connectionTimeoutMillis: connectTimeout,
      keepAlive: true,
      application_name: config.applicationName,
    });
  } catch (error) {
    // The driver's message may hold the URL: no cause, passwords out.
    throw new TypeError(
      `Cannot connect to ${_describe(config.url)}: ${
        _scrub((error as Error)?.message ?? String(error), config.url)
      }`,
    );
  }
  const session = new _PgSession(client, _describe(config.url));
  // pg's own timeout covers the connect and the startup; this covers pg.
  const destroy = () => client.connection?.stream?.destroy();
  const stopTimer = _after(connectTimeout + 1000, destroy);
  let stopGrace = () => {};
  const onAbort = () => stopGrace = _after(_GRACE_MS, destroy);
  limit.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    // A Unix socket's descriptor is known on Deno only as the one that
    // connecting adds.
    const before = _socketsNow();
    await client.connect();
    session.noteConnected(before);
    // One round trip: the settings, then which server process this is.
    const [{ pid }] = await session.query<{ pid: number }>(
      `${_SESSION_SETTINGS}; SELECT pg_backend_pid() AS pid`,
      [],
      { until: limit.until, signal: limit.signal },
    );
    session.backendPid = pid;
    return session;
  } catch (error) {
    await session.close();
    if (limit.signal?.aborted) throw limit.signal.reason;
    throw error instanceof LockError ? error : _connectError(config, error);
  } finally {
    stopTimer();
    stopGrace();
    limit.signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * What to do about a refusal that comes from the role's rights or a
 * read-only server, or `undefined` for any other error.
 */
export function _rightsHint(
  error: unknown,
  schema: string,
): string | undefined {
  switch (_sqlState(error)) {
    case "42501":
      if (/ for database /.test((error as Error).message)) {
        return `the role needs CREATE on the database to make schema ${schema} (or an administrator creates schema ${schema} and grants the role USAGE and CREATE on it, or makes lockbox's tables: connect once as a role that may)`;
      }
      return /schema/.test((error as Error).message)
        ? `the role needs USAGE on schema ${schema} (GRANT USAGE ON SCHEMA ${schema} TO the role, as its owner)`
        : `the role needs SELECT, INSERT, UPDATE and DELETE on lockbox's tables (GRANT them ON ALL TABLES IN SCHEMA ${schema} TO the role, as their owner)`;
    case "25006":
      return "the session is read-only (a hot standby, or default_transaction_read_only set for the role or database): connect to the primary as a role that may write";
  }
  return undefined;
}
