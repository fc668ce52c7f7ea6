// Aborting a PostgreSQL wait as it is granted: the cancel lockbox sends from
// another session must hit only the statement it was meant for, never a
// later one on the same (reused) session, and an update whose signal aborted
// before fn ran must not commit.

import assert from "node:assert/strict";
import { PostgresBackend } from "../../src/postgres/mod.ts";
import { type Cluster, pgSuite } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL aborts");

const TRIALS = 20;

async function waitUntil(
  check: () => Promise<boolean>,
  what: string,
): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!await check()) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sessions of the cluster waiting for a lock (advisory or row). */
async function waiting(c: Cluster): Promise<number> {
  return Number(
    await c.sql(
      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
    ),
  );
}

pgTest(
  "PostgresBackend.acquire() aborted as the lock is granted leaves no cancel for the next statement on its session",
  async (c) => {
    await using holderDb = await PostgresBackend.connect(c.url);
    await using db = await PostgresBackend.connect(c.url);
    for (let trial = 0; trial < TRIALS; trial++) {
      const name = `grant-${trial}`;
      const holder = await holderDb.acquire(name);
      const controller = new AbortController();
      const outcome = db.acquire(name, { signal: controller.signal }).then(
        async (lock) => {
          await lock.release();
          return "granted";
        },
        (error) => {
          if (error !== controller.signal.reason) throw error;
          return "aborted";
        },
      );
      await waitUntil(async () => await waiting(c) === 1, "the waiter");
      // The grant and the abort at once, in either order.
      if (trial % 2 === 0) {
        const releasing = holder.release();
        controller.abort();
        await releasing;
      } else {
        controller.abort();
        await holder.release();
      }
      await outcome;
      // Unrelated statements on the same backend's sessions.
      for (let i = 0; i < 3; i++) {
        const other = await db.acquire(`other-${trial}-${i}`, {
          timeout: 1000,
        });
        await other.release();
      }
      assert.equal(await db.isLocked(name), false);
    }
  },
);

pgTest(
  "PgJsonStore.update() aborted as the row lock is granted never commits after fn was skipped and leaves no cancel for the next statement",
  async (c) => {
    await using writerDb = await PostgresBackend.connect(c.url);
    await using db = await PostgresBackend.connect(c.url);
    const results = { committed: 0, aborted: 0 };
    for (let trial = 0; trial < TRIALS; trial++) {
      const name = `row-${trial}`;
      const initial = { n: 0 };
      let open!: () => void;
      const gate = new Promise<void>((resolve) => open = resolve);
      let started!: () => void;
      const writing = new Promise<void>((resolve) => started = resolve);
      const writer = writerDb.jsonStore(name, { initial }).update(
        async (doc) => {
          started();
          await gate;
          doc.n += 1;
        },
      );
      await writing;
      const controller = new AbortController();
      let calledAborted = false;
      const store = db.jsonStore(name, { initial });
      const outcome = store.update((doc) => {
        calledAborted ||= controller.signal.aborted;
        doc.n += 10;
      }, { signal: controller.signal }).then(
        () => "committed" as const,
        (error) => {
          if (error !== controller.signal.reason) throw error;
          return "aborted" as const;
        },
      );
      await waitUntil(async () => await waiting(c) === 1, "the waiter");
      open();
      controller.abort();
      await writer;
      const result = await outcome;
      results[result]++;
      // Unrelated statements on the same backend's sessions.
      for (let i = 0; i < 3; i++) {
        const other = await db.acquire(`other-row-${trial}-${i}`, {
          timeout: 1000,
        });
        await other.release();
      }
      assert.equal(calledAborted, false, `trial ${trial}: fn ran after abort`);
      assert.deepEqual(await store.read(), {
        n: result === "committed" ? 11 : 1,
      }, `trial ${trial}: ${result}`);
    }
    assert.equal(results.committed + results.aborted, TRIALS);
  },
);

stopAfterwards();
