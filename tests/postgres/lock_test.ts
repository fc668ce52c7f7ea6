// PostgresBackend's locks against a real throwaway cluster, with real
// processes on Deno and on Node: exclusion, tokens, killed sessions and
// processes, a server crash, a paused holder, many clients, timeouts,
// aborts, shared locks and bad input.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  LockError,
  LockLostError,
  LockTimeoutError,
  type PgLock,
  PostgresBackend,
} from "../../src/postgres/mod.ts";
import { Child, finishAll, withTempDir } from "../_helpers.ts";
import {
  type Cluster,
  NO_POSTGRES,
  PGBOUNCER,
  pgSuite,
  pgWorker,
  startPgBouncer,
} from "./_cluster.ts";

const { cluster, test: pgTest, stopAfterwards } = pgSuite("PostgreSQL");

const NODE_PACKAGE = fileURLToPath(
  new URL("../../dist/node-src/", import.meta.url),
);

function denoWorker(c: Cluster, name: string, args: string[]): Child {
  return new Child(
    Deno.execPath(),
    ["run", "--allow-all", "--quiet", pgWorker(name), ...args],
    { stdin: true, env: c.env },
  );
}

function nodeWorker(c: Cluster, name: string, args: string[]): Child {
  return new Child(
    "node",
    [
      fileURLToPath(new URL(`../node/workers/${name}`, import.meta.url)),
      ...args,
    ],
    { stdin: true, env: { ...c.env, LOCKBOX_NODE_PACKAGE: NODE_PACKAGE } },
  );
}

function tokensOf(lines: string[]): number[] {
  return lines.filter((l) => l.startsWith("token ")).map((l) =>
    Number(l.split(" ")[1])
  );
}

/** Lockbox's advisory locks the server holds right now. */
async function heldOnServer(c: Cluster): Promise<number> {
  return Number(
    await c.sql(
      `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x6c6f636b}`,
    ),
  );
}

async function waitUntil(
  check: () => Promise<boolean> | boolean,
  what: string,
  guardMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + guardMs;
  while (!await check()) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

pgTest(
  "PostgreSQL: 3 Deno and 3 Node processes x 50 increments under withLock end at exactly 300, tokens strictly increasing",
  async (c) => {
    await withTempDir(async (dir) => {
      const counter = `${dir}/counter`;
      const children = [
        ...[1, 2, 3].map(() =>
          denoWorker(c, "pg_increment.ts", [counter, "50"])
        ),
        ...[1, 2, 3].map(() =>
          nodeWorker(c, "pg_increment.mjs", [counter, "50"])
        ),
      ];
      const lines = await finishAll(children);
      assert.equal(await Deno.readTextFile(counter), "300");
      const all = lines.flatMap(tokensOf).sort((a, b) => a - b);
      assert.equal(all.length, 300);
      for (let i = 1; i < all.length; i++) assert.ok(all[i] > all[i - 1]);
      for (const own of lines.map(tokensOf)) {
        for (let i = 1; i < own.length; i++) assert.ok(own[i] > own[i - 1]);
      }
      assert.equal(await heldOnServer(c), 0);
    });
  },
);

for (const runtime of ["deno", "node"] as const) {
  pgTest(
    `PostgreSQL (${runtime}): pg_terminate_backend on the holder's session aborts lock.signal with LockLostError, and a waiter gets a higher token`,
    async (c) => {
      const holder = runtime === "deno"
        ? denoWorker(c, "pg_hold.ts", ["victim"])
        : nodeWorker(c, "pg_hold.mjs", ["victim"]);
      try {
        const [, token, backendPid] = (await holder.waitFor("locked")).split(
          " ",
        );
        await using db = await PostgresBackend.connect(c.url);
        const waiting = db.acquire("victim", { timeout: 20_000 });
        await c.sql(`SELECT pg_terminate_backend(${backendPid})`);
        const lost = await holder.waitFor("lost", 10_000);
        assert.match(lost, /Lost the lock 'victim'/);
        const lock = await waiting;
        assert.ok(lock.token > Number(token));
        await lock.release();
      } finally {
        await holder.send("release").catch(() => {});
        const result = await holder.finish();
        // No unhandled error: the process ends normally.
        assert.equal(result.code, 0, result.stderr);
      }
    },
  );
}

pgTest(
  "PostgreSQL: SIGKILL of the holder process frees the lock for a waiter within a second",
  async (c) => {
    const holder = denoWorker(c, "pg_hold.ts", ["killed"]);
    await holder.waitFor("locked");
    await using db = await PostgresBackend.connect(c.url);
    const waiting = db.acquire("killed", { timeout: 20_000 });
    const killedAt = performance.now();
    holder.process.kill("SIGKILL");
    const lock = await waiting;
    const took = performance.now() - killedAt;
    await holder.finish();
    assert.ok(took < 1000, `took ${took} ms`);
    await lock.release();
  },
);

pgTest(
  "PostgreSQL: a server crash aborts the holder's signal; after it, locks work and tokens keep growing",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    const before: number[] = [];
    for (let i = 0; i < 3; i++) {
      const lock = await db.acquire("crash");
      before.push(lock.token);
      await lock.release();
    }
    const held = await db.acquire("crash");
    const lost = new Promise<unknown>((resolve) =>
      held.signal.addEventListener("abort", () => resolve(held.signal.reason))
    );
    await c.crash();
    assert.ok(await lost instanceof LockLostError);
    assert.equal(held.held, false);
    await db.close();
    await using again = await PostgresBackend.connect(c.url);
    const after = await again.acquire("crash");
    assert.ok(after.token > Math.max(...before, held.token));
    await after.release();
  },
);

pgTest(
  "PostgreSQL: a paused holder whose session was ended finds its signal aborted by its next timer, with a lower token than the new holder",
  async (c) => {
    const holder = denoWorker(c, "pg_hold.ts", ["paused", "--ticks"]);
    try {
      const [, token, backendPid] = (await holder.waitFor("locked")).split(" ");
      holder.process.kill("SIGSTOP");
      await c.sql(`SELECT pg_terminate_backend(${backendPid})`);
      await using db = await PostgresBackend.connect(c.url);
      const next = await db.acquire("paused", { timeout: 20_000 });
      assert.ok(next.token > Number(token));
      // Past the holder's loss deadline (5 s) while it sleeps.
      await new Promise((resolve) => setTimeout(resolve, 5500));
      const ticksBefore = holder.lines.filter((l) => l.startsWith("tick"))
        .length;
      holder.process.kill("SIGCONT");
      await waitUntil(
        () =>
          holder.lines.filter((l) => l.startsWith("tick")).length > ticksBefore,
        "a tick after SIGCONT",
      );
      const firstTick = holder.lines.filter((l) => l.startsWith("tick"))[
        ticksBefore
      ];
      assert.equal(firstTick, "tick true");
      await next.release();
    } finally {
      holder.process.kill("SIGCONT");
      await holder.send("release").catch(() => {});
      await holder.finish();
    }
  },
);

pgTest(
  "PostgreSQL: 150 concurrent clients in 3 processes on one name never overlap, tokens are 1..150, nothing stays held",
  async (c) => {
    const name = `many-${crypto.randomUUID()}`;
    const lines = await finishAll(
      [1, 2, 3].map(() => denoWorker(c, "pg_clients.ts", [name, "50"])),
    );
    const sections = lines.flat().filter((l) => l.startsWith("held ")).map(
      (l) => l.split(" ").slice(1).map(Number),
    ).sort((a, b) => a[0] - b[0]);
    assert.deepEqual(
      sections.map((s) => s[0]),
      Array.from({ length: 150 }, (_, i) => i + 1),
    );
    for (let i = 1; i < sections.length; i++) {
      assert.ok(
        sections[i][1] >= sections[i - 1][2],
        `section ${i + 1} started before ${i} ended`,
      );
    }
    assert.equal(await heldOnServer(c), 0);
  },
);

pgTest(
  "PostgreSQL: a full connection limit is a clear error, not a hang",
  async (c) => {
    // A role's CONNECTION LIMIT fails the same way as max_connections (53300)
    // without restarting the shared cluster.
    await (await PostgresBackend.connect(c.url)).close(); // lockbox's schema
    await c.sql("CREATE ROLE limited LOGIN CONNECTION LIMIT 6");
    await c.sql("GRANT ALL ON SCHEMA lockbox TO limited");
    await c.sql("GRANT ALL ON ALL TABLES IN SCHEMA lockbox TO limited");
    const url = `postgres://limited@127.0.0.1:${c.port}/postgres`;
    const db = await PostgresBackend.connect(url);
    const held: PgLock[] = [];
    try {
      const started = performance.now();
      const error = await (async () => {
        for (let i = 0; i < 20; i++) {
          try {
            held.push(await db.acquire(`limit-${i}`));
          } catch (error) {
            return error as Error;
          }
        }
        return null;
      })();
      assert.ok(error instanceof LockError, String(error));
      assert.match(error.message, /connection limit is reached/);
      assert.ok(performance.now() - started < 10_000);
      assert.ok(held.length >= 3 && held.length <= 6, `${held.length} held`);
    } finally {
      await Promise.all(held.map((lock) => lock.release()));
      await db.close();
    }
  },
);

pgTest(
  "PostgresBackend.tryAcquire() leaves no session open when the lock is busy",
  async (c) => {
    const sessions = async () =>
      Number(
        await c.sql(
          "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lockbox-busy'",
        ),
      );
    await using a = await PostgresBackend.connect(c.url);
    const b = await PostgresBackend.connect(c.url, {
      applicationName: "lockbox-busy",
    });
    const held = await a.acquire("busy");
    try {
      for (let i = 0; i < 20; i++) {
        assert.equal(await b.tryAcquire("busy"), null);
      }
      // One idle session kept for the next call, not one per busy try.
      assert.ok(await sessions() <= 2, `${await sessions()} sessions`);
    } finally {
      await held.release();
      await b.close();
    }
    assert.equal(await sessions(), 0, "close() closed every session");
  },
);

pgTest(
  "PostgreSQL: timeout, abort, shared locks, tryAcquire and the in-process queue",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url);
    await using b = await PostgresBackend.connect(c.url);
    const held = await a.acquire("t");
    // Timeout: at least the timeout, well under a second more.
    const started = performance.now();
    await assert.rejects(
      b.acquire("t", { timeout: 300 }),
      (error: Error) =>
        error instanceof LockTimeoutError &&
        /still held by pid/.test(error.message),
    );
    const waited = performance.now() - started;
    assert.ok(waited >= 300 && waited < 1300, `waited ${waited} ms`);
    // Abort: prompt, with the signal's reason; nothing left held by b.
    const controller = new AbortController();
    const aborting = b.acquire("t", { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop")), 100);
    const abortAt = performance.now() + 100;
    await assert.rejects(aborting, /stop/);
    assert.ok(performance.now() - abortAt < 1000);
    assert.equal(await b.tryAcquire("t"), null);
    // A second acquisition in the same process queues behind the first.
    let second = false;
    const queued = a.acquire("t").then((lock) => {
      second = true;
      return lock;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(second, false);
    await held.release();
    const next = await queued;
    assert.equal(second, true);
    await next.release();
    // Shared: several at once; an exclusive waits for all of them.
    const s1 = await a.acquire("s", { shared: true });
    const s2 = await b.acquire("s", { shared: true });
    assert.equal((await a.lockHolder("s"))?.shared, true);
    assert.equal(await b.tryAcquire("s"), null);
    let exclusive = false;
    const ex = b.acquire("s").then((lock) => {
      exclusive = true;
      return lock;
    });
    await s1.release();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(exclusive, false);
    await s2.release();
    const got = await ex;
    assert.ok(got.token > 0);
    await got.release();
    assert.equal(await a.isLocked("s"), false);
  },
);

pgTest(
  "PostgreSQL: bad input is a clear error naming what to fix",
  async (c) => {
    const started = performance.now();
    await assert.rejects(
      PostgresBackend.connect("postgres://postgres@127.0.0.1:1/postgres", {
        connectTimeout: 2000,
      }),
      (error: Error) =>
        error instanceof LockError &&
        /check that the server runs/.test(error.message),
    );
    assert.ok(performance.now() - started < 5000);
    await c.sql("CREATE ROLE pw LOGIN PASSWORD 'right'");
    await c.sql(
      `ALTER SYSTEM SET password_encryption = 'scram-sha-256'`,
    );
    const hba = `${c.dir}/data/pg_hba.conf`;
    const original = await Deno.readTextFile(hba);
    await Deno.writeTextFile(
      hba,
      `host all pw 127.0.0.1/32 scram-sha-256\n${original}`,
    );
    await c.sql("SELECT pg_reload_conf()");
    try {
      await assert.rejects(
        PostgresBackend.connect(
          `postgres://pw:wrong@127.0.0.1:${c.port}/postgres`,
        ),
        (error: Error) =>
          error instanceof LockError && /password/.test(error.message) &&
          !error.message.includes("wrong"),
      );
    } finally {
      await Deno.writeTextFile(hba, original);
      await c.sql("SELECT pg_reload_conf()");
    }
    await using db = await PostgresBackend.connect(c.url);
    await assert.rejects(db.acquire(""), TypeError);
    await assert.rejects(db.acquire("x".repeat(201)), RangeError);
    const odd = await db.acquire("constructor");
    assert.equal(odd.token, 1);
    await odd.release();
  },
);

Deno.test({
  name:
    "PostgreSQL: behind PgBouncer in transaction mode, connect refuses with a clear error; in session mode locks work",
  // PgBouncer comes with .ci/run; elsewhere it is optional.
  ignore: NO_POSTGRES || (PGBOUNCER === null && Deno.env.get("CI") !== "true"),
  fn: async () => {
    const c = await cluster();
    const transaction = await startPgBouncer(c, "transaction");
    try {
      await assert.rejects(
        PostgresBackend.connect(transaction.url),
        (error: Error) =>
          error instanceof LockError &&
          /transaction pooling mode/.test(error.message),
      );
    } finally {
      await transaction.stop();
    }
    const session = await startPgBouncer(c, "session");
    try {
      await using db = await PostgresBackend.connect(session.url);
      const lock = await db.acquire("through-a-pool");
      assert.ok(lock.token > 0);
      assert.equal(await db.isLocked("through-a-pool"), true);
      await lock.release();
      assert.equal(await db.isLocked("through-a-pool"), false);
    } finally {
      await session.stop();
    }
  },
});

pgTest(
  "PostgresBackend.listLocks() shows a waiting process, which a holder merely slow never fails with DeadlockError",
  async (c) => {
    const holder = denoWorker(c, "pg_hold.ts", ["dl-x"]);
    const waiter = denoWorker(c, "pg_nest.ts", ["dl-y", "dl-x", "100"]);
    try {
      await holder.waitFor("locked");
      await waiter.waitFor("holding");
      await waiter.send("go");
      const db = await PostgresBackend.connect(c.url);
      try {
        let info;
        for (let i = 0; i < 200; i++) {
          info = (await db.listLocks()).find((info) => info.name === "dl-x");
          if (info?.waiters[0]?.pid) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.deepEqual(
          info!.waiters.map((w) => [w.pid, w.hostname, w.mode]),
          [[waiter.pid, Deno.hostname(), "exclusive"]],
        );
        assert.equal(info!.holders[0].pid, holder.pid);
        const cli = fileURLToPath(new URL("../../cli.ts", import.meta.url));
        const status = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-all", cli, "status", "--db", c.url, "dl-x"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(
          new TextDecoder().decode(status.stdout).includes(
            `\n  waiting\texclusive\tpid ${waiter.pid} on ${Deno.hostname()} (session ${
              info!.waiters[0].backendPid
            })\n`,
          ),
          new TextDecoder().decode(status.stdout),
        );
        // Well past the threshold: still waiting, no DeadlockError.
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.deepEqual(waiter.lines, ["holding"]);
      } finally {
        await db.close();
      }
      await holder.send("release");
      const result = await waiter.finish(30_000);
      assert.equal(result.lines.at(-1), "done", result.stderr);
      await holder.finish();
    } finally {
      await holder.kill().catch(() => {});
      await waiter.kill().catch(() => {});
    }
  },
);

pgTest(
  "PostgresBackend.acquire() fails exactly one of three processes with DeadlockError in a cycle of PostgreSQL locks",
  async (c) => {
    const names = ["dl-a", "dl-b", "dl-c"];
    const children = names.map((name, i) =>
      denoWorker(c, "pg_nest.ts", [name, names[(i + 1) % 3], "300"])
    );
    try {
      await Promise.all(children.map((child) => child.waitFor("holding")));
      for (const child of children) await child.send("go");
      const results = await Promise.all(
        children.map((child) => child.finish(30_000)),
      );
      const last = results.map((result) => {
        assert.equal(result.code, 0, result.stderr);
        return result.lines.at(-1)!;
      });
      const failed = last.flatMap((line, i) =>
        line.startsWith("deadlock ") ? [i] : []
      );
      assert.equal(failed.length, 1, last.join("\n"));
      const victim = children[failed[0]];
      assert.equal(victim.pid, Math.max(...children.map((child) => child.pid)));
      const cycle = JSON.parse(last[failed[0]].slice("deadlock ".length));
      assert.deepEqual(
        cycle.map((
          step: { pid: number; lock: string },
        ) => [step.pid, step.lock]),
        [0, 1, 2].map((k) => {
          const i = (failed[0] + k) % 3;
          return [children[i].pid, `${names[(i + 1) % 3]} (PostgreSQL)`];
        }),
      );
      for (const [i, line] of last.entries()) {
        if (i !== failed[0]) assert.equal(line, "done");
      }
      // Every recorded wait is gone with its wait.
      assert.equal(
        await c.sql(
          `SELECT count(*) FROM lockbox.waits WHERE pid IN (${
            children.map((child) => child.pid).join(", ")
          })`,
        ),
        "0",
      );
    } finally {
      for (const child of children) await child.kill().catch(() => {});
    }
  },
);

stopAfterwards();
