// The sessions of one PostgresBackend: an idle list for reuse, the sessions
// being closed (which close() waits for), and the one LISTEN session its
// watches share. A session goes back to the idle list only when it holds
// nothing: a lock's session only after its unlock succeeded.

import { LockError, StoreError } from "../base/errors.ts";
import {
  type _CallLimit,
  _describe,
  _openSession,
  _rightsHint,
  type _Session,
  type _SessionConfig,
  _sqlState,
} from "./_session.ts";
import { _Listener, type _Subscription } from "./_listener.ts";
import { _DEFAULT_SCHEMA, type _Schema } from "./schema.ts";

/** Sessions kept open for the next acquisition. */
const _MAX_IDLE = 8;

/** Sessions, lent by the PostgresBackend that made a store. */
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
  /**
   * Large documents' changes are rows of document_changes; `false` on an
   * older lockbox's tables this role could not upgrade (see _tables.ts):
   * every version is then read and written whole.
   */
  readonly changeRows: boolean;
}

/** The session pool of one backend. */
export class _Pool implements _SessionPool {
  readonly config: _SessionConfig;
  readonly schema: _Schema;
  readonly changeRows: boolean;
  #idle: _Session[] = [];
  #closed = false;
  /** The one LISTEN session that every watch of this backend shares. */
  #listener: _Listener;
  /** Sessions being closed (and records being removed), which `close()` waits for. */
  #closing = new Set<Promise<void>>();

  constructor(config: _SessionConfig, schema: _Schema, changeRows: boolean) {
    this.config = config;
    this.schema = schema;
    this.changeRows = changeRows;
    this.#listener = new _Listener(
      () => _openSession(this.config),
      schema.channel,
      schema.name === _DEFAULT_SCHEMA ? undefined : schema.name,
    );
  }

  /** A session for a store: a LockError once the backend is closed. */
  borrow(limit?: _CallLimit): Promise<_Session> {
    return this.#whileOpen(() => this.take(limit));
  }

  /**
   * An idle session, or a new one (opened within `limit`), even once the
   * backend is closed: the lock paths check that themselves, before they
   * start.
   */
  async take(limit?: _CallLimit): Promise<_Session> {
    while (this.#idle.length > 0) {
      const session = this.#idle.pop()!;
      if (!session.ended) return session;
    }
    return await _openSession(this.config, limit);
  }

  /** Keeps a session that holds nothing for reuse; closes any other. */
  giveBack(session: _Session, reusable: boolean): void {
    if (
      reusable && !session.ended && !this.#closed &&
      this.#idle.length < _MAX_IDLE
    ) {
      this.#idle.push(session);
    } else {
      this.track(session.close());
    }
  }

  /**
   * Runs `fn` on a session of its own, which goes back to the pool if `fn`
   * succeeded and is closed if it failed.
   */
  async withSession<R>(
    fn: (session: _Session) => Promise<R>,
    limit?: _CallLimit,
  ): Promise<R> {
    const session = await this.take(limit);
    try {
      const result = await fn(session);
      this.giveBack(session, true);
      return result;
    } catch (error) {
      this.giveBack(session, false);
      throw error;
    }
  }

  /** Runs `fn` on a session; a failure is a StoreError naming `what`. */
  async storeQuery<R>(
    what: string,
    fn: (session: _Session) => Promise<R>,
    path = `${what} (PostgreSQL)`,
  ): Promise<R> {
    try {
      return await this.withSession(fn);
    } catch (error) {
      throw new StoreError(
        path,
        `Cannot use ${what} on ${_describe(this.config.url)}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }

  /**
   * A server error as a LockError saying what failed and, for a refusal of
   * the role's rights or a read-only server, what to do; others unchanged.
   */
  refusal(what: string, error: unknown): unknown {
    if (error instanceof LockError || _sqlState(error) === undefined) {
      return error;
    }
    const hint = _rightsHint(error, this.schema.name);
    return new LockError(
      `Cannot ${what} on ${_describe(this.config.url)}: ${
        (error as Error).message
      }${hint === undefined ? "" : `; ${hint}`}`,
      { cause: error },
    );
  }

  /** Cancels the statement a session is running, from another session. */
  async cancel(backendPid: number): Promise<void> {
    await this.withSession((session) =>
      session.query("SELECT pg_cancel_backend($1)", [backendPid])
    );
  }

  subscribe(name: string, wake: () => void): Promise<_Subscription> {
    return this.#whileOpen(() => this.#listener.subscribe(name, wake));
  }

  closed(): boolean {
    return this.#closed;
  }

  /** Work in the background (its failure ignored) that `close()` waits for. */
  track(work: Promise<unknown>): void {
    const settled: Promise<void> = work.then(() => {}, () => {})
      .finally(() => this.#closing.delete(settled));
    this.#closing.add(settled);
  }

  /**
   * Refuses new work, runs `release` (the held locks' unlocks, whose
   * sessions are then closed), closes the idle sessions and the LISTEN
   * session, and waits for the background work.
   */
  async close(release: () => Promise<unknown>): Promise<void> {
    this.#closed = true;
    const listening = this.#listener.close();
    await release();
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map((session) => session.close()));
    await listening;
    await Promise.all(this.#closing);
  }

  /** `fn()`, or a LockError once the backend is closed. */
  #whileOpen<R>(fn: () => Promise<R>): Promise<R> {
    if (this.#closed) {
      return Promise.reject(
        new LockError("Cannot use the PostgreSQL backend: it is closed"),
      );
    }
    return fn();
  }
}
