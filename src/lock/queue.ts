// The in-process line of requests for one lock: FileLock keeps one per lock
// path, PostgresBackend one per lock name. Requests are served first in,
// first out; shared ones go together, an exclusive one alone. A request may
// leave the line early (its timeout ran out, its signal aborted, or its
// owner failed it). An owner that must do more than count a request in
// (FileLock takes the OS lock first) overrides `serve`.

import { _after } from "../base/promise.ts";

/** A request in a {@linkcode LockQueue}. */
export interface Waiter {
  /** Whether it wants the lock shared rather than exclusive. */
  readonly shared: boolean;
}

/** How a request waits in line: see {@linkcode LockQueue.wait}. */
export interface WaitTerms {
  /** How long it may wait, in milliseconds; `Infinity` for no limit. */
  timeout: number;
  /** Aborting it takes the request out of line with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * The error a request whose timeout ran out fails with, or a promise of
   * it (it stays in line, and may still get its turn, until that settles).
   */
  timedOut: () => unknown;
  /** Called once if the request leaves the line without its turn. */
  giveUp: (error: unknown) => void;
  /** Called when the default {@linkcode LockQueue.serve} lets it in. */
  onTurn?: () => void;
}

/** A queued request's terms, and how to stop its timer and listener. */
interface _InLine {
  terms: WaitTerms;
  disarm: () => void;
}

/**
 * The line of one key, and who holds it in this process: `active` holders,
 * all shared unless `exclusive`.
 */
export class LockQueue<W extends Waiter> {
  readonly #waiting: W[] = [];
  readonly #inLine = new Map<W, _InLine>();
  readonly #onIdle: (queue: LockQueue<W>) => void;
  /** Requests let in and not yet left. */
  active = 0;
  /** Whether the one active request is exclusive. */
  exclusive = false;
  /**
   * Set by an owner whose `serve` is still working on the head (FileLock:
   * a kernel wait is in progress); no one is let in until it clears it.
   */
  serving = false;

  /**
   * @param key The lock this line is for.
   * @param onIdle Called when the line is empty and no one holds the lock.
   */
  constructor(readonly key: string, onIdle: (queue: LockQueue<W>) => void) {
    this.#onIdle = onIdle;
  }

  /** The first request in line. */
  get head(): W | undefined {
    return this.#waiting[0];
  }

  /** How many requests are in line. */
  get length(): number {
    return this.#waiting.length;
  }

  /** Whether a request in `shared` mode could hold the lock beside the active ones. */
  compatible(shared: boolean): boolean {
    return this.active === 0 || (shared && !this.exclusive);
  }

  /** Whether a new request may go ahead at once: no one in line before it. */
  free(shared: boolean): boolean {
    return this.#waiting.length === 0 && !this.serving &&
      this.compatible(shared);
  }

  /** Whether nothing is in line, being served or held. */
  idle(): boolean {
    return this.#waiting.length === 0 && this.active === 0 && !this.serving;
  }

  /** Counts a request in as a holder. */
  enter(shared: boolean): void {
    this.active++;
    this.exclusive = !shared;
  }

  /** Counts a holder out, then serves the line. */
  leave(): void {
    this.active--;
    if (this.active === 0) this.exclusive = false;
    this.pump();
  }

  /** Puts `waiter` at the end of the line, with its timeout and signal. */
  wait(waiter: W, terms: WaitTerms): void {
    const stops: (() => void)[] = [];
    if (terms.timeout !== Infinity) {
      stops.push(_after(terms.timeout, () => this.#timedOut(waiter)));
    }
    const signal = terms.signal;
    if (signal) {
      const onAbort = () => this.fail(waiter, signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      stops.push(() => signal.removeEventListener("abort", onAbort));
    }
    this.#inLine.set(waiter, {
      terms,
      disarm: () => stops.forEach((stop) => stop()),
    });
    this.#waiting.push(waiter);
  }

  /** Takes the head out of line (its turn has come), ending its timeout. */
  shift(): W | undefined {
    const head = this.#waiting.shift();
    if (head !== undefined) this.#out(head);
    return head;
  }

  /**
   * Takes `waiter` out of line and gives it up with `error`, then serves
   * the line; `false` if it was no longer in line.
   */
  fail(waiter: W, error: unknown): boolean {
    const index = this.#waiting.indexOf(waiter);
    if (index === -1) return false;
    this.#waiting.splice(index, 1);
    this.#out(waiter)?.giveUp(error);
    this.pump();
    return true;
  }

  /** Serves the head while it may go; forgets an idle line. */
  pump(): void {
    while (this.#waiting.length > 0) {
      const head = this.#waiting[0];
      if (this.serving || !this.compatible(head.shared)) return;
      if (!this.serve(head)) return;
    }
    this.dropIfIdle();
  }

  /**
   * Serves `head`, whose turn it is: this lets it in at once. An override
   * takes it out of line (`shift`) and returns `true`, or sets `serving`
   * and returns `false` to stop the pump until it calls `pump` again.
   */
  protected serve(head: W): boolean {
    const terms = this.#inLine.get(head)?.terms;
    this.shift();
    this.enter(head.shared);
    terms?.onTurn?.();
    return true;
  }

  /** Calls `onIdle` if nothing is in line, being served or held. */
  dropIfIdle(): void {
    if (this.idle()) this.#onIdle(this);
  }

  #out(waiter: W): WaitTerms | undefined {
    const inLine = this.#inLine.get(waiter);
    if (inLine === undefined) return undefined;
    this.#inLine.delete(waiter);
    inLine.disarm();
    return inLine.terms;
  }

  #timedOut(waiter: W): void {
    const terms = this.#inLine.get(waiter)?.terms;
    if (terms === undefined) return;
    const error = terms.timedOut();
    if (error instanceof Promise) {
      error.then((found) => this.fail(waiter, found));
    } else this.fail(waiter, error);
  }
}

/** The lines of every key, each made on first use and dropped when idle. */
export class LockQueues<W extends Waiter, Q extends LockQueue<W>> {
  readonly #queues = new Map<string, Q>();
  readonly #make: (key: string, onIdle: (queue: LockQueue<W>) => void) => Q;

  /**
   * @param make Makes the line of a key (`new LockQueue(key, onIdle)`, or
   *   an owner's subclass of it).
   */
  constructor(
    make: (key: string, onIdle: (queue: LockQueue<W>) => void) => Q,
  ) {
    this.#make = make;
  }

  /** The line of `key`, made if there is none. */
  get(key: string): Q {
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = this.#make(key, (idle) => {
        if (this.#queues.get(idle.key) === idle) this.#queues.delete(idle.key);
      });
      this.#queues.set(key, queue);
    }
    return queue;
  }

  /** Every line there is now. */
  values(): IterableIterator<Q> {
    return this.#queues.values();
  }
}
