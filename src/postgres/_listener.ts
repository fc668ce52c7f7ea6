// One LISTEN session per PostgresBackend, shared by all of its watches:
// opened by the first subscriber, closed after the last one leaves, and
// when it ends every subscriber is told (it then subscribes again, which
// opens a new session, and reads what was written meanwhile).

import type { _Session } from "./_session.ts";

/** One watch's interest in one document. */
export interface _Subscription {
  /** `false` once the shared session has ended: subscribe again. */
  readonly live: boolean;
  /** Leaves; the last one out closes the session. */
  close(): void;
}

interface _Subscriber {
  name: string;
  wake: () => void;
  live: boolean;
}

/** The shared LISTEN session of one backend. */
export class _Listener {
  #open: () => Promise<_Session>;
  #session: Promise<_Session> | null = null;
  /** The session once its LISTEN is in place. */
  #current: _Session | null = null;
  #subscribers = new Set<_Subscriber>();
  /** Sessions being closed, which `close()` waits for. */
  #closing = new Set<Promise<void>>();

  #channel: string;
  #schema: string | undefined;

  /**
   * Listens on `channel`, for the new versions of documents in `schema`
   * (`undefined`: the default schema, whose notifications name none).
   */
  constructor(
    open: () => Promise<_Session>,
    channel: string,
    schema: string | undefined,
  ) {
    this.#open = open;
    this.#channel = channel;
    this.#schema = schema;
  }

  /**
   * Calls `wake` on every committed version of the document `name`, and
   * once when the session ends; resolves once the LISTEN is in place.
   */
  async subscribe(name: string, wake: () => void): Promise<_Subscription> {
    const subscriber: _Subscriber = { name, wake, live: false };
    this.#subscribers.add(subscriber);
    try {
      const session = await (this.#session ??= this.#connect());
      subscriber.live = !session.ended;
    } catch (error) {
      this.#subscribers.delete(subscriber);
      throw error;
    }
    return {
      get live() {
        return subscriber.live;
      },
      close: () => this.#leave(subscriber),
    };
  }

  /**
   * Closes the session, whoever is subscribed (the backend is closing);
   * resolves once it and any closed before are closed.
   */
  async close(): Promise<void> {
    this.#subscribers.clear();
    this.#closeSession();
    await Promise.all(this.#closing);
  }

  async #connect(): Promise<_Session> {
    let session: _Session;
    try {
      session = await this.#open();
    } catch (error) {
      this.#session = null;
      throw error;
    }
    session.onNotification((channel, payload) => {
      if (channel !== this.#channel) return;
      let name: unknown = null;
      try {
        const sent = JSON.parse(payload) as {
          name?: unknown;
          schema?: unknown;
        };
        // Another schema's whose channel has the same name (a hash).
        if (sent.schema !== this.#schema) return;
        name = sent.name;
      } catch {
        // Not lockbox's: wake everyone, they read and see.
      }
      for (const subscriber of this.#subscribers) {
        if (name === null || subscriber.name === name) subscriber.wake();
      }
    });
    session.onEnd(() => {
      // Only the current session's end concerns anyone (an older one may
      // end after a new one was opened).
      if (this.#current !== session) return;
      this.#current = null;
      this.#session = null;
      for (const subscriber of this.#subscribers) {
        subscriber.live = false;
        subscriber.wake();
      }
    });
    try {
      await session.run(`LISTEN ${this.#channel}`);
    } catch (error) {
      this.#session = null;
      await session.close();
      throw error;
    }
    this.#current = session;
    return session;
  }

  #leave(subscriber: _Subscriber): void {
    if (!this.#subscribers.delete(subscriber)) return;
    if (this.#subscribers.size === 0) this.#closeSession();
  }

  #closeSession(): void {
    const session = this.#session;
    this.#session = null;
    this.#current = null;
    if (session === null) return;
    const closing = session.then((s) => s.close(), () => {}).catch(() => {})
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }
}
