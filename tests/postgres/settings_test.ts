// PostgresBackend under server, database and role settings that users set
// (ALTER SYSTEM / ALTER DATABASE / ALTER ROLE ... SET): asynchronous commit
// and crashes, statement and lock timeouts, stricter isolation, read-only
// and under-privileged roles; and two inputs that reached the server badly
// (a throwing initial(), a name with a lone surrogate). Each test resets
// what it set.

import assert from "node:assert/strict";
import {
  LockError,
  PostgresBackend,
  StaleFenceError,
  StoreError,
} from "../../src/postgres/mod.ts";
import { output } from "../_helpers.ts";
import { type Cluster, PG_BIN, pgSuite } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL settings");

/** Runs `fn` with `setup` applied, then resets every role and database setting. */
async function withSettings(
  c: Cluster,
  setup: string[],
  fn: () => Promise<void>,
): Promise<void> {
  try {
    for (const statement of setup) await c.sql(statement);
    await c.sql("SELECT pg_reload_conf()");
    await fn();
  } finally {
    await c.sql("ALTER ROLE postgres RESET ALL");
    await c.sql("ALTER DATABASE postgres RESET ALL");
    await c.sql("ALTER SYSTEM RESET ALL");
    await c.sql("SELECT pg_reload_conf()");
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (
  const [where, setup] of [
    ["role's", "ALTER ROLE postgres SET synchronous_commit = off"],
    ["server's", "ALTER SYSTEM SET synchronous_commit = off"],
  ] as const
) {
  pgTest(
    `PostgresBackend.acquire() hands out a token above every acknowledged one after a crash when the ${where} synchronous_commit is off`,
    async (c) => {
      await withSettings(
        c,
        // A slow WAL writer: asynchronous commits stay in memory longer.
        [setup, "ALTER SYSTEM SET wal_writer_delay = '10s'"],
        async () => {
          for (let round = 0; round < 4; round++) {
            let highest = 0;
            {
              await using db = await PostgresBackend.connect(c.url);
              for (let i = 0; i < 10; i++) {
                const lock = await db.acquire(`async-${where}`);
                highest = Math.max(highest, lock.token);
                await lock.release();
              }
            }
            await c.crash();
            await using db = await PostgresBackend.connect(c.url);
            const lock = await db.acquire(`async-${where}`);
            await lock.release();
            assert.ok(
              lock.token > highest,
              `round ${round}: token ${lock.token} after ${highest} was acknowledged`,
            );
          }
        },
      );
    },
  );
}

pgTest(
  "PgJsonStore.update() refuses a stale holder's fenced write after a crash when the role's synchronous_commit is off, and keeps every acknowledged update",
  async (c) => {
    await withSettings(
      c,
      [
        "ALTER ROLE postgres SET synchronous_commit = off",
        "ALTER SYSTEM SET wal_writer_delay = '10s'",
      ],
      async () => {
        for (let round = 0; round < 4; round++) {
          const name = `fenced-${round}`;
          const initial = { by: [] as number[] };
          let stale: number;
          {
            await using db = await PostgresBackend.connect(c.url);
            const store = db.jsonStore(name, { initial });
            await store.update((d) => void d.by.push(0));
            stale = (await db.acquire(name)).token;
            // Its holder pauses past a crash, which ends its lock.
            await c.crash();
          }
          await using db = await PostgresBackend.connect(c.url);
          const store = db.jsonStore(name, { initial });
          const lock = await db.acquire(name);
          await store.update((d) => void d.by.push(lock.token), {
            fence: lock.token,
          });
          await assert.rejects(
            store.update((d) => void d.by.push(-stale), { fence: stale }),
            StaleFenceError,
            `round ${round}: token ${lock.token} after ${stale}`,
          );
          await lock.release();
          await c.crash();
          assert.deepEqual(await store.read(), { by: [0, lock.token] });
        }
      },
    );
  },
);

for (const level of ["ALTER ROLE postgres", "ALTER DATABASE postgres"]) {
  pgTest(
    `PostgresBackend.acquire() and PgJsonStore.update() wait past a statement_timeout set by ${level}`,
    async (c) => {
      await withSettings(
        c,
        [`${level} SET statement_timeout = '1s'`],
        async () => {
          await using a = await PostgresBackend.connect(c.url);
          await using b = await PostgresBackend.connect(c.url);
          await using d = await PostgresBackend.connect(c.url);
          // Locks: one wait with no timeout, one with a timeout past 1 s.
          const held = await a.acquire("statement");
          // Each waiter gets the lock in turn, once the holder lets go.
          const tokens: number[] = [];
          const waits = Promise.allSettled(
            [
              b.acquire("statement"),
              d.acquire("statement", { timeout: 60_000 }),
            ].map((waiting) =>
              waiting.then(async (lock) => {
                tokens.push(lock.token);
                await lock.release();
              })
            ),
          );
          await sleep(2500);
          await held.release();
          for (const wait of await waits) {
            if (wait.status === "rejected") throw wait.reason;
          }
          assert.equal(tokens.filter((token) => token > held.token).length, 2);
          // Stores: an update with lockTimeout past 1 s behind a slow writer.
          const store = (db: PostgresBackend) =>
            db.jsonStore(`statement-${level}`, {
              initial: { n: 0 },
              lockTimeout: 60_000,
            });
          let started!: () => void;
          const writing = new Promise<void>((resolve) => started = resolve);
          const slow = store(a).update(async (doc) => {
            started();
            await sleep(2500);
            doc.n++;
          });
          await writing;
          await store(b).update((doc) => void doc.n++);
          await slow;
          assert.deepEqual(await store(d).read(), { n: 2 });
        },
      );
    },
  );
}

pgTest(
  "PostgresBackend.acquire() and PgJsonStore.update() work when the role sets lock_timeout and idle_in_transaction_session_timeout",
  async (c) => {
    await withSettings(c, [
      "ALTER ROLE postgres SET lock_timeout = '200ms'",
      "ALTER ROLE postgres SET idle_in_transaction_session_timeout = '500ms'",
    ], async () => {
      await using a = await PostgresBackend.connect(c.url);
      await using b = await PostgresBackend.connect(c.url);
      const store = a.jsonStore("short", { initial: { n: 0 } });
      const lock = await a.acquire("short");
      // A fenced update holds the lock's row FOR SHARE while fn runs: the
      // next holder's token waits for its commit.
      let started!: () => void;
      const writing = new Promise<void>((resolve) => started = resolve);
      const fenced = store.update(async (doc) => {
        started();
        await sleep(1500);
        doc.n++;
      }, { fence: lock.token });
      await writing;
      await lock.release();
      // One try: the advisory lock is free, the token waits.
      const next = await b.tryAcquire("short");
      await fenced;
      assert.ok(next !== null && next.token > lock.token);
      await next.release();
      assert.deepEqual(await store.read(), { n: 1 });
    });
  },
);

pgTest(
  "PostgresBackend.tryAcquire() waits for its token behind a fenced update when an earlier acquire with a timeout used the same session",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url);
    await using b = await PostgresBackend.connect(c.url);
    // b's one session waits with lock_timeout 200 ms, then goes back idle.
    const blocker = await a.acquire("earlier");
    await assert.rejects(b.acquire("earlier", { timeout: 200 }));
    await blocker.release();
    const quick = await b.acquire("earlier", { timeout: 200 });
    await quick.release();
    const store = a.jsonStore("later", { initial: { n: 0 } });
    const lock = await a.acquire("later");
    let started!: () => void;
    const writing = new Promise<void>((resolve) => started = resolve);
    const fenced = store.update(async (doc) => {
      started();
      await sleep(1500);
      doc.n++;
    }, { fence: lock.token });
    await writing;
    await lock.release();
    const next = await b.tryAcquire("later");
    await fenced;
    assert.ok(next !== null && next.token > lock.token);
    await next.release();
  },
);

for (const isolation of ["repeatable read", "serializable"]) {
  pgTest(
    `PgJsonStore.update() loses no concurrent update when the role's default_transaction_isolation is ${isolation}`,
    async (c) => {
      await withSettings(c, [
        `ALTER ROLE postgres SET default_transaction_isolation = '${isolation}'`,
      ], async () => {
        const dbs = await Promise.all(
          [1, 2, 3].map(() => PostgresBackend.connect(c.url)),
        );
        try {
          const name = `isolation-${isolation}`;
          const results = await Promise.allSettled(
            dbs.flatMap((db) =>
              Array.from(
                { length: 30 },
                () =>
                  db.jsonStore(name, { initial: { n: 0 } }).update((doc) =>
                    void doc.n++
                  ),
              )
            ),
          );
          const failed = results.filter((r) => r.status === "rejected");
          assert.equal(
            failed.length,
            0,
            `${failed.length} failed, such as ${
              (failed[0] as PromiseRejectedResult | undefined)?.reason
            }`,
          );
          assert.deepEqual(
            await dbs[0].jsonStore(name, { initial: { n: 0 } }).read(),
            { n: 90 },
          );
        } finally {
          await Promise.all(dbs.map((db) => db.close()));
        }
      });
    },
  );
}

/** The URL of the test cluster for another role. */
const as = (c: Cluster, role: string) => c.url.replace("postgres@", `${role}@`);

pgTest(
  "PostgresBackend.acquire() gives a role that may only read a LockError saying what to grant, and isLocked() answers it",
  async (c) => {
    await (await PostgresBackend.connect(c.url)).close();
    await c.sql("CREATE ROLE reader LOGIN");
    await c.sql("GRANT USAGE ON SCHEMA lockbox TO reader");
    await c.sql("GRANT SELECT ON ALL TABLES IN SCHEMA lockbox TO reader");
    await using db = await PostgresBackend.connect(as(c, "reader"));
    await assert.rejects(
      db.acquire("reader-lock"),
      (error: Error) =>
        error instanceof LockError &&
        /permission denied.*INSERT, UPDATE and DELETE on lockbox's tables/
          .test(error.message),
    );
    assert.equal(await db.isLocked("reader-lock"), false);
    assert.equal(await db.lockHolder("reader-lock"), null);
    const store = db.jsonStore("reader-doc", { initial: { n: 0 } });
    assert.deepEqual(await store.read(), { n: 0 });
    await assert.rejects(
      store.update((doc) => void doc.n++),
      (error: Error) =>
        error instanceof StoreError &&
        /nothing was written; the role needs SELECT, INSERT/.test(
          error.message,
        ),
    );
  },
);

pgTest(
  "PostgresBackend.connect() tells a role without USAGE on schema lockbox to get USAGE, not CREATE",
  async (c) => {
    await (await PostgresBackend.connect(c.url)).close();
    await c.sql("CREATE ROLE outsider LOGIN");
    await assert.rejects(
      PostgresBackend.connect(as(c, "outsider")),
      (error: Error) =>
        error instanceof LockError &&
        /needs USAGE on schema lockbox/.test(error.message) &&
        !/CREATE/.test(error.message),
    );
  },
);

pgTest(
  "PostgresBackend.acquire() and PgJsonStore.update() tell a read-only role it is read-only",
  async (c) => {
    await (await PostgresBackend.connect(c.url)).close();
    await c.sql("CREATE ROLE readonly LOGIN");
    await c.sql("GRANT USAGE ON SCHEMA lockbox TO readonly");
    await c.sql("GRANT ALL ON ALL TABLES IN SCHEMA lockbox TO readonly");
    await c.sql("ALTER ROLE readonly SET default_transaction_read_only = on");
    await using db = await PostgresBackend.connect(as(c, "readonly"));
    await assert.rejects(
      db.acquire("readonly-lock"),
      (error: Error) =>
        error instanceof LockError &&
        /the session is read-only/.test(error.message),
    );
    await assert.rejects(
      db.jsonStore("readonly-doc", { initial: 0 }).update(() => 1),
      (error: Error) =>
        error instanceof StoreError &&
        /the session is read-only/.test(error.message),
    );
  },
);

/** Runs a server binary as the postgres user (initdb and friends refuse root). */
async function asPostgres(command: string, args: string[]): Promise<void> {
  const argv = Deno.uid() === 0
    ? ["runuser", "-u", "postgres", "--", `${PG_BIN}/${command}`, ...args]
    : [`${PG_BIN}/${command}`, ...args];
  const result = await output(argv[0], { args: argv.slice(1) });
  if (result.code !== 0) {
    throw new Error(
      `${command} exited ${result.code}: ${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
}

pgTest(
  "PostgresBackend.acquire() and PgJsonStore.update() on a hot standby say it is read-only; reads work",
  async (c) => {
    await using primary = await PostgresBackend.connect(c.url);
    await primary.jsonStore("standby-doc", { initial: { n: 0 } }).update(
      (doc) => void doc.n++,
    );
    const dir = await Deno.makeTempDir({ prefix: "lockbox_standby_" });
    await Deno.chmod(dir, 0o755);
    if (Deno.uid() === 0) await output("chown", { args: ["postgres", dir] });
    // A port free right now (the fixed ones may be another cluster's).
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const ctl = ["-D", `${dir}/data`, "-l", `${dir}/log`, "-w"];
    try {
      await asPostgres("pg_basebackup", [
        "-h",
        c.dir,
        "-p",
        String(c.port),
        "-U",
        "postgres",
        "-D",
        `${dir}/data`,
        "-R",
        "-X",
        "stream",
      ]);
      await asPostgres("pg_ctl", [
        ...ctl,
        "start",
        "-o",
        // A hot standby needs at least the primary's max_connections.
        `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c max_connections=300`,
      ]).catch(async (error) => {
        throw new Error(
          `${error.message}${await Deno.readTextFile(`${dir}/log`).catch(() =>
            ""
          )}`,
        );
      });
      await using db = await PostgresBackend.connect(
        `postgres://postgres@127.0.0.1:${port}/postgres`,
      );
      const readOnly = /the session is read-only \(a hot standby/;
      await assert.rejects(
        db.acquire("standby-lock"),
        (error: Error) =>
          error instanceof LockError && readOnly.test(error.message),
      );
      const store = db.jsonStore("standby-doc", { initial: { n: 0 } });
      assert.deepEqual(await store.read(), { n: 1 });
      await assert.rejects(
        store.update((doc) => void doc.n++),
        (error: Error) =>
          error instanceof StoreError && readOnly.test(error.message),
      );
      assert.equal(await db.isLocked("standby-doc"), false);
    } finally {
      await asPostgres("pg_ctl", [...ctl, "-m", "immediate", "stop"]).catch(
        () => {},
      );
      await Deno.remove(dir, { recursive: true });
    }
  },
);

pgTest(
  "PgJsonStore.update() calls a throwing initial() once and passes its error through",
  async (c) => {
    await using db = await PostgresBackend.connect(c.url);
    let calls = 0;
    const failure = new Error("no initial value here");
    const store = db.jsonStore<{ n: number }>("throwing-initial", {
      initial: () => {
        calls++;
        throw failure;
      },
    });
    await assert.rejects(
      store.update((doc) => void doc.n++),
      (error) => error === failure,
    );
    assert.equal(calls, 1);
    // Nothing was written, and the row lock is free.
    assert.equal(
      await c.sql(
        "SELECT count(*) FROM lockbox.documents WHERE name = 'throwing-initial' AND value IS NOT NULL",
      ),
      "0",
    );
    await db.jsonStore("throwing-initial", { initial: { n: 0 } }).update(
      (doc) => void doc.n++,
      { signal: AbortSignal.timeout(30_000) },
    );
  },
);

pgTest(
  "PostgresBackend refuses lock, document and log names with a lone surrogate as a TypeError",
  async (c) => {
    await using db = await PostgresBackend.connect(c.url);
    for (const name of ["pair\uD800", "pair\uDFFF", "\uDC00pair"]) {
      await assert.rejects(db.acquire(name), TypeError);
      await assert.rejects(db.tryAcquire(name), TypeError);
      await assert.rejects(db.isLocked(name), TypeError);
      assert.throws(() => db.jsonStore(name, { initial: 0 }), TypeError);
      assert.throws(
        () => db.jsonStore("ok", { initial: 0, fenceLock: name }),
        TypeError,
      );
      await assert.rejects(db.appendLog(name, [1]), TypeError);
    }
    // A well-formed pair is a name of its own.
    const lock = await db.acquire("pair\uD83D\uDE00");
    assert.equal(await db.isLocked("pair\uFFFD"), false);
    await lock.release();
  },
);

stopAfterwards();
