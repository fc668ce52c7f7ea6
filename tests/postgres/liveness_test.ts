// No PostgreSQL call hangs: every call settles within its limit when the
// connection stalls (a forwarder that holds every byte while it keeps its
// sockets open, _stall_proxy.ts), and a holder that stops heartbeating
// loses its lock on the server, behind a session-mode PgBouncer too.
// Timeouts here are hang guards only: no test asserts how long a call took.

import assert from "node:assert/strict";
import {
  LockError,
  LockLostError,
  PostgresBackend,
} from "../../src/postgres/mod.ts";
import { Child, output } from "../_helpers.ts";
import {
  type Cluster,
  NO_POSTGRES,
  PG_BIN,
  PGBOUNCER,
  pgSuite,
  pgWorker,
  startPgBouncer,
} from "./_cluster.ts";
import { StallProxy } from "./_stall_proxy.ts";

const { cluster, test: pgTest, stopAfterwards } = pgSuite("PostgreSQL");

/** `promise`'s outcome, or a failure when it is still pending after `ms`. */
async function guarded<T>(
  promise: Promise<T>,
  what: string,
  ms = 30_000,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`hang guard: ${what} still pending after ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** How a guarded call ended: its error, or "resolved". */
function outcome(promise: Promise<unknown>, what: string): Promise<unknown> {
  return guarded(promise, what).then(
    () => "resolved",
    (error) => {
      if (/^hang guard/.test((error as Error).message)) throw error;
      return error;
    },
  );
}

/** Waits until `count` lockbox lock requests wait on the server. */
async function waitingOnServer(c: Cluster, count: number): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (
    Number(
      await c.sql(
        `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x6c6f636b} AND NOT granted`,
      ),
    ) < count
  ) {
    if (performance.now() > deadline) {
      throw new Error("no waiter on the server");
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs `fn` with a backend behind a stallable proxy, and one connected directly. */
async function throughProxy(
  c: Cluster,
  fn: (
    db: PostgresBackend,
    direct: PostgresBackend,
    proxy: StallProxy,
  ) => Promise<void>,
): Promise<void> {
  const proxy = StallProxy.start(c.port);
  const direct = await PostgresBackend.connect(c.url);
  let db: PostgresBackend | null = null;
  try {
    db = await PostgresBackend.connect(proxy.url, { connectTimeout: 3000 });
    await fn(db, direct, proxy);
  } finally {
    await guarded(db?.close() ?? Promise.resolve(), "db.close()");
    await proxy.close();
    await direct.close();
    // The closed sessions' sockets finish closing.
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

pgTest(
  "PostgresBackend.acquire() settles by its timeout or signal when the connection stalls mid-wait",
  async (c) => {
    await throughProxy(c, async (db, direct, proxy) => {
      const held = await Promise.all(
        ["mid-timeout", "mid-signal", "mid-forever"].map((name) =>
          direct.acquire(name)
        ),
      );
      const controller = new AbortController();
      const timed = db.acquire("mid-timeout", { timeout: 3000 });
      const signalled = db.acquire("mid-signal", { signal: controller.signal });
      // No timeout and no signal: it waits in slices, each of which must
      // be answered.
      const forever = db.acquire("mid-forever");
      await waitingOnServer(c, 3);
      proxy.stall();
      controller.abort(new Error("stop waiting"));
      const [a, b, f] = await Promise.all([
        outcome(timed, "acquire with a timeout"),
        outcome(signalled, "acquire with a signal"),
        outcome(forever, "acquire with neither"),
      ]);
      assert.ok(a instanceof LockError, String(a));
      assert.match((a as Error).message, /no answer within/);
      assert.equal((b as Error).message, "stop waiting");
      assert.ok(f instanceof LockError, String(f));
      assert.match((f as Error).message, /no answer within/);
      proxy.resume();
      await Promise.all(held.map((lock) => lock.release()));
    });
  },
);

pgTest(
  "PostgresBackend calls settle and a held lock is lost when the connection stalls",
  async (c) => {
    await throughProxy(c, async (db, _direct, proxy) => {
      const store = db.jsonStore<{ n: number }>("stalled-doc", {
        initial: { n: 0 },
      });
      await store.update((doc) => ++doc.n);
      const held = await db.acquire("stalled-held");
      const lost = new Promise<unknown>((resolve) =>
        held.signal.addEventListener(
          "abort",
          () => resolve(held.signal.reason),
        )
      );
      // Idle sessions through the proxy, which the calls below reuse.
      await Promise.all([1, 2, 3, 4, 5, 6].map(() => store.read()));
      const controller = new AbortController();
      proxy.stall();
      let ran = false;
      const results = await Promise.all([
        outcome(db.acquire("stalled-new", { timeout: 1000 }), "acquire"),
        outcome(
          db.acquire("stalled-new2", { signal: controller.signal }),
          "acquire with a signal",
        ),
        outcome(db.tryAcquire("stalled-try"), "tryAcquire"),
        outcome(store.read(), "read"),
        outcome(db.isLocked("stalled-held"), "isLocked"),
        outcome(
          db.withLock("stalled-with", () => {
            ran = true;
            return Promise.resolve();
          }),
          "withLock",
        ),
        guarded(lost, "lock.signal"),
        (async () => {
          await new Promise((resolve) => setTimeout(resolve, 200));
          controller.abort(new Error("stop"));
        })(),
      ]);
      const [timed, signalled, tried, read, locked, withLock, reason] = results;
      assert.ok(timed instanceof LockError, String(timed));
      assert.equal((signalled as Error).message, "stop");
      assert.ok(tried instanceof Error, String(tried));
      assert.ok(read instanceof Error, String(read));
      assert.ok(locked instanceof Error, String(locked));
      assert.ok(withLock instanceof Error, String(withLock));
      assert.equal(ran, false);
      assert.ok(reason instanceof LockLostError, String(reason));
      assert.equal(held.held, false);
      assert.equal(await outcome(held.release(), "release"), "resolved");
      assert.equal(await outcome(db.close(), "close"), "resolved");
    });
  },
);

pgTest(
  "PgJsonStore.update() settles by lockTimeout or its signal when the connection stalls, and writes nothing",
  async (c) => {
    await throughProxy(c, async (db, direct, proxy) => {
      const store = db.jsonStore<{ n: number }>("stalled-update", {
        initial: { n: 0 },
        lockTimeout: 2000,
      });
      await store.update((doc) => ++doc.n);
      await store.read(); // two idle sessions through the proxy
      proxy.stall();
      const controller = new AbortController();
      let ran = 0;
      const [timed, signalled] = await Promise.all([
        outcome(
          store.update((doc) => {
            ran++;
            doc.n += 10;
          }),
          "update with lockTimeout",
        ),
        outcome(
          store.update((doc) => {
            ran++;
            doc.n += 100;
          }, { signal: controller.signal }),
          "update with a signal",
        ),
        (async () => {
          await new Promise((resolve) => setTimeout(resolve, 200));
          controller.abort(new Error("stop"));
        })(),
      ]);
      assert.ok(timed instanceof LockError, String(timed));
      assert.equal((signalled as Error).message, "stop");
      assert.equal(ran, 0);
      // Once the link works again, the abandoned updates are not applied.
      proxy.resume();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const seen = direct.jsonStore<{ n: number }>("stalled-update", {
        initial: { n: 0 },
      });
      assert.deepEqual(await seen.read(), { n: 1 });
      assert.equal(await store.update((doc) => ++doc.n), 2);
    });
  },
);

pgTest(
  "PgJsonStore.update() with lockTimeout: Infinity and no signal fails when the connection stalls mid-wait, and writes nothing",
  async (c) => {
    await throughProxy(c, async (db, direct, proxy) => {
      const name = "stalled-forever";
      const store = db.jsonStore<{ n: number }>(name, {
        initial: { n: 0 },
        lockTimeout: Infinity,
      });
      await store.update((doc) => ++doc.n);
      // Another process holds the row lock, so the update waits for it.
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => finish = resolve);
      let started!: () => void;
      const holding = new Promise<void>((resolve) => started = resolve);
      const other = direct.jsonStore<{ n: number }>(name, {
        initial: { n: 0 },
      }).update(async (doc) => {
        started();
        await finished;
        doc.n += 10;
      });
      await holding;
      let ran = false;
      const waiting = store.update((doc) => {
        ran = true;
        doc.n += 100;
      });
      for (let i = 0;; i++) {
        const found = await c.sql(
          `SELECT count(*) FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND datname = current_database()`,
        );
        if (found === "1") break;
        if (i === 1500) throw new Error("the update never waited");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      proxy.stall();
      const failed = await outcome(waiting, "update with neither");
      assert.ok(failed instanceof LockError, String(failed));
      assert.match((failed as Error).message, /no answer within/);
      assert.equal(ran, false);
      finish();
      await other;
      // Once the link works again, the abandoned update is not applied.
      proxy.resume();
      const seen = direct.jsonStore<{ n: number }>(name, {
        initial: { n: 0 },
      });
      assert.deepEqual(await seen.read(), { n: 11 });
      assert.equal(await store.update((doc) => ++doc.n), 12);
    });
  },
);

pgTest(
  "PgJsonStore.update() with lockTimeout: Infinity waits past the answer deadline for another update of the document",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url);
    await using b = await PostgresBackend.connect(c.url);
    const name = "slow-update";
    const first = a.jsonStore<{ n: number }>(name, { initial: { n: 0 } });
    const second = b.jsonStore<{ n: number }>(name, {
      initial: { n: 0 },
      lockTimeout: Infinity,
    });
    // Both on a missing row (the second waits on the first's insert) and on
    // a written one.
    for (const expected of [11, 22]) {
      let started!: () => void;
      const running = new Promise<void>((resolve) => started = resolve);
      // Longer than a statement that waits for nothing may take to answer,
      // and than a slice of the wait.
      const slow = first.update(async (doc) => {
        started();
        await new Promise((resolve) => setTimeout(resolve, 7000));
        doc.n += 1;
      });
      await running;
      assert.equal(await second.update((doc) => doc.n += 10), expected);
      await slow;
    }
    assert.deepEqual(await first.read(), { n: 22 });
  },
);

pgTest(
  "PgJsonStore.update() with lockTimeout: Infinity rejects with its signal's reason when aborted after a slice of its wait, and writes nothing",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url);
    await using b = await PostgresBackend.connect(c.url);
    const name = "aborted-forever";
    const first = a.jsonStore<{ n: number }>(name, { initial: { n: 0 } });
    await first.update((doc) => ++doc.n);
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => finish = resolve);
    let started!: () => void;
    const running = new Promise<void>((resolve) => started = resolve);
    const holding = first.update(async (doc) => {
      started();
      await finished;
      doc.n += 1;
    });
    await running;
    const controller = new AbortController();
    let ran = false;
    const waiting = b.jsonStore<{ n: number }>(name, {
      initial: { n: 0 },
      lockTimeout: Infinity,
    }).update((doc) => {
      ran = true;
      doc.n += 100;
    }, { signal: controller.signal });
    // Past the first slice of the wait.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    controller.abort(new Error("stop"));
    const result = await outcome(waiting, "aborted update");
    assert.equal((result as Error).message, "stop");
    assert.equal(ran, false);
    finish();
    await holding;
    assert.deepEqual(await first.read(), { n: 2 });
  },
);

pgTest(
  "PostgresBackend.connect() waits past the answer deadline while another process makes lockbox's tables",
  async (c) => {
    await c.sql("CREATE DATABASE fresh_tables");
    // Another process making the tables holds their lock longer than a
    // statement that waits for nothing may take to answer.
    const making = output(`${PG_BIN}/psql`, {
      args: [
        "-h",
        c.dir,
        "-p",
        String(c.port),
        "-U",
        "postgres",
        "-d",
        "fresh_tables",
        "-c",
        `SELECT pg_advisory_lock(${0x6c6f636b}, 0), pg_sleep(7)`,
      ],
    });
    for (let i = 0;; i++) {
      const held = await c.sql(
        `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x6c6f636b} AND objid = 0 AND granted`,
      );
      if (held === "1") break;
      if (i === 1500) throw new Error("the other process never took the lock");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const db = await PostgresBackend.connect(
      `postgres://postgres@127.0.0.1:${c.port}/fresh_tables`,
      { connectTimeout: 30_000 },
    );
    try {
      assert.equal((await making).code, 0);
      const lock = await db.acquire("fresh");
      assert.equal(lock.token, 1);
      await lock.release();
    } finally {
      await db.close();
      await making;
    }
  },
);

pgTest(
  "PostgresBackend.acquire() waits past the answer deadline for a fenced write in flight before it takes its token",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url);
    await using b = await PostgresBackend.connect(c.url);
    // With no timeout (the wait runs in slices) and with one.
    await Promise.all([undefined, 20_000].map(async (timeout) => {
      const name = `in-flight-${timeout ?? "none"}`;
      const store = a.jsonStore<{ n: number }>(name, { initial: { n: 0 } });
      const first = await a.acquire(name);
      let started!: () => void;
      const running = new Promise<void>((resolve) => started = resolve);
      // Longer than a statement that waits for nothing may take to answer.
      const writing = store.update(async (doc) => {
        started();
        await new Promise((resolve) => setTimeout(resolve, 7000));
        doc.n++;
      }, { fence: first.token });
      await running;
      await first.release();
      const second = await b.acquire(name, { timeout });
      await writing;
      assert.ok(second.token > first.token);
      await second.release();
      assert.deepEqual(await store.read(), { n: 1 });
    }));
  },
);

for (const via of ["directly", "behind a session-mode PgBouncer"] as const) {
  Deno.test({
    name:
      `PostgresBackend.acquire() gets a lock whose holder connected ${via} stopped heartbeating (SIGSTOP)`,
    // PgBouncer comes with .ci/run; elsewhere it is optional.
    ignore: NO_POSTGRES ||
      (via !== "directly" && PGBOUNCER === null &&
        Deno.env.get("CI") !== "true"),
    fn: async () => {
      const c = await cluster();
      const bouncer = via === "directly"
        ? null
        : await startPgBouncer(c, "session");
      // The stopped holder's socket stays healthy (its kernel answers), and
      // so does PgBouncer's to the server.
      const holder = new Child(
        Deno.execPath(),
        ["run", "--allow-all", "--quiet", pgWorker("pg_hold.ts"), via],
        {
          stdin: true,
          env: { ...c.env, LOCKBOX_DATABASE_URL: bouncer?.url ?? c.url },
        },
      );
      try {
        const [, token] = (await holder.waitFor("locked")).split(" ");
        holder.process.kill("SIGSTOP");
        await using db = await PostgresBackend.connect(c.url);
        // The acquire's own timeout is the hang guard.
        const lock = await db.acquire(via, { timeout: 60_000 });
        assert.ok(lock.token > Number(token));
        holder.process.kill("SIGCONT");
        assert.match(await holder.waitFor("lost", 60_000), /Lost the lock/);
        await lock.release();
      } finally {
        try {
          holder.process.kill("SIGCONT");
        } catch { /* it has ended */ }
        await holder.send("release").catch(() => {});
        const result = await holder.finish();
        await bouncer?.stop();
        assert.equal(result.code, 0, result.stderr);
      }
    },
  });
}

stopAfterwards();
