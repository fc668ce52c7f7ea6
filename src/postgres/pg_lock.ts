// A lock held on PostgreSQL: an advisory lock on its own session, kept
// alive by a heartbeat, with a fencing token and a signal that aborts as
// soon as the lock may have been lost.

import { LockLostError } from "../base/errors.ts";
import type { LockHolder } from "../base/lock_holder.ts";
import type { _Session } from "./_session.ts";

/** How often a holder asks its session whether it is still there. */
export const _HEARTBEAT_MS = 1000;

/**
 * How long a holder goes without a heartbeat answer before it declares the
 * lock lost, counted from when the last answered heartbeat was sent:
 * shorter than the server's dead-peer time (_SERVER_DEAD_PEER_MS) and its
 * idle limit for lock sessions (_SERVER_IDLE_MS, counted from when that
 * heartbeat arrived), so that the holder always learns first.
 */
export const _LOSS_DEADLINE_MS = 5000;

/** A PostgreSQL lock's holder: its record, plus the server's view of it. */
export interface PgLockHolder extends LockHolder {
  /** The server process of the holder's session (`pg_backend_pid()`). */
  backendPid: number;
  /** The holder's address as the server sees it (`null` over a socket). */
  clientAddress: string | null;
  /** The holder session's `application_name`. */
  applicationName: string;
}

/** What a PgLock needs from its backend when it is released. */
export interface _PgLockOwner {
  /** Unlocks on the session and returns it for reuse (or closes it). */
  _unlock(session: _Session, lockId: number, shared: boolean): Promise<void>;
}

/**
 * A held PostgreSQL lock, from {@linkcode PostgresBackend.acquire}. Release
 * it with `release()` or `await using`.
 */
export class PgLock {
  /** The lock's name. */
  readonly name: string;
  /** Whether it is held shared. */
  readonly shared: boolean;
  /**
   * The fencing token: strictly increasing with every exclusive grant of
   * this name, across processes, hosts, reconnects and server restarts
   * (shared holders see the last exclusive holder's).
   */
  readonly token: number;
  #owner: _PgLockOwner;
  #session: _Session | null;
  #lockId: number;
  #controller = new AbortController();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** When the last answered heartbeat was sent (at first: made). */
  #lastAnswer = performance.now();
  #beating = false;

  /** @internal Made by PostgresBackend only. */
  constructor(
    owner: _PgLockOwner,
    session: _Session,
    lock: { name: string; id: number; shared: boolean; token: number },
  ) {
    this.#owner = owner;
    this.#session = session;
    this.#lockId = lock.id;
    this.name = lock.name;
    this.shared = lock.shared;
    this.token = lock.token;
    session.onEnd((reason) =>
      this.#lose(`${reason}; the server releases the lock with the session`)
    );
    this.#timer = setInterval(() => this.#beat(), _HEARTBEAT_MS);
  }

  /**
   * Aborts with a {@linkcode LockLostError} as soon as the lock may have
   * been lost: its session ended, a heartbeat went unanswered past the
   * deadline (checked again whenever this is read), or it was released.
   */
  get signal(): AbortSignal {
    this.#checkDeadline();
    return this.#controller.signal;
  }

  /** Whether this process still holds the lock, as far as it can tell. */
  get held(): boolean {
    return !this.signal.aborted;
  }

  /** Releases the lock; idempotent. */
  async release(): Promise<void> {
    const session = this.#session;
    if (session === null) return;
    this.#session = null;
    this.#stop(new LockLostError(this.name, "it was released"));
    await this.#owner._unlock(session, this.#lockId, this.shared);
  }

  /**
   * @internal The descriptor of the connection that holds the lock, for a
   * watchdog process to keep open (`null` if unknown or no longer held).
   */
  _descriptor(): number | null {
    return this.#session?.descriptor() ?? null;
  }

  /** Releases the lock (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  #checkDeadline(): void {
    const silent = performance.now() - this.#lastAnswer;
    if (this.#session !== null && silent > _LOSS_DEADLINE_MS) {
      this.#lose(
        `its session has not answered for ${
          Math.round(silent)
        } ms (deadline ${_LOSS_DEADLINE_MS} ms)`,
      );
    }
  }

  #beat(): void {
    this.#checkDeadline();
    const session = this.#session;
    if (session === null || this.#beating) return;
    this.#beating = true;
    const sent = performance.now();
    session.query("SELECT 1").then(
      () => {
        this.#beating = false;
        if (this.#session === session) this.#lastAnswer = sent;
      },
      (error: Error) => {
        this.#beating = false;
        this.#lose(`a heartbeat failed (${error.message})`);
      },
    );
  }

  #lose(reason: string): void {
    const session = this.#session;
    if (session === null) return;
    this.#session = null;
    this.#stop(new LockLostError(this.name, reason));
    // The server ends the session's locks with it.
    session.close().catch(() => {});
  }

  #stop(reason: LockLostError): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }
}
