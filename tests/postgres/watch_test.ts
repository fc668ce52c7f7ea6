// PgJsonStore.watch against a real throwaway cluster: Deno and Node
// watchers beside Deno and Node writers, a watcher whose LISTEN session is
// terminated while a write is made, and a watch that ends with nothing
// left open.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { PostgresBackend } from "../../src/postgres/mod.ts";
import { checkWatcher, Child, finishAll } from "../_helpers.ts";
import { type Cluster, pgSuite, pgWorker } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL watch");

const NODE_PACKAGE = fileURLToPath(
  new URL("../../dist/node-src/", import.meta.url),
);

function run(
  c: Cluster,
  runtime: "Deno" | "Node",
  script: string,
  args: string[],
) {
  return runtime === "Deno"
    ? new Child(Deno.execPath(), [
      "run",
      "--allow-all",
      "--quiet",
      script.endsWith("watch_store.ts")
        ? fileURLToPath(
          new URL("../multiprocess/workers/watch_store.ts", import.meta.url),
        )
        : pgWorker(script),
      ...args,
    ], { env: c.env })
    : new Child("node", [
      fileURLToPath(new URL(`../node/workers/${script}`, import.meta.url)),
      ...args,
    ], { env: { ...c.env, LOCKBOX_NODE_PACKAGE: NODE_PACKAGE } });
}

pgTest(
  "PostgreSQL watch: Deno and Node watchers see 2 Deno + 2 Node writers x 100 updates with growing versions, never half an update, ending on the final document",
  async (c) => {
    const watchers = [
      run(c, "Deno", "watch_store.ts", ["watched", "400", "--db"]),
      run(c, "Node", "watch_store.mjs", ["watched", "400", "--db"]),
    ];
    for (const w of watchers) await w.waitFor("ready");
    const writers = [
      run(c, "Deno", "pg_store_update.ts", ["watched", "d0", "100"]),
      run(c, "Deno", "pg_store_update.ts", ["watched", "d1", "100"]),
      run(c, "Node", "pg_store_update.mjs", ["watched", "n0", "100"]),
      run(c, "Node", "pg_store_update.mjs", ["watched", "n1", "100"]),
    ];
    await finishAll(writers);
    for (const lines of await finishAll(watchers)) {
      const seen = checkWatcher(lines, 400);
      // On PostgreSQL the version is the document's: one per update.
      for (const [version, count] of seen) assert.equal(version, count);
      assert.deepEqual(seen.at(-1), [400, 400, 400, 400]);
    }
  },
);

pgTest(
  "PostgreSQL watch: a write made while the watcher's session is cut off is yielded after it reconnects",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number }>("cut", { initial: { n: 0 } });
      await store.write({ n: 1 });
      const controller = new AbortController();
      const seen: number[] = [];
      let first!: () => void;
      const started = new Promise<void>((resolve) => first = resolve);
      let reconnected!: () => void;
      const caughtUp = new Promise<void>((resolve) => reconnected = resolve);
      const watching = (async () => {
        for await (
          const { value } of store.watch({
            signal: controller.signal,
            // No re-check to fall back on: only the reconnect's read and
            // the new LISTEN can see what follows.
            recheckInterval: 600_000,
          })
        ) {
          seen.push(value.n);
          first();
          if (value.n === 3) reconnected();
          if (value.n === 4) controller.abort();
        }
      })();
      await started;
      // Cut the LISTEN session off, and write before it is back.
      await c.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN lockbox_documents'",
      );
      await store.write({ n: 2 });
      await store.write({ n: 3 });
      await caughtUp;
      // Listening again: a later write wakes it too.
      await store.write({ n: 4 });
      await watching;
      assert.equal(seen[0], 1);
      assert.equal(seen.at(-1), 4);
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1]);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL watch ends when the loop breaks or the signal aborts, and closes its session",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number }>("ends", { initial: { n: 0 } });
      for await (const { value, version } of store.watch()) {
        assert.deepEqual([value, version], [{ n: 0 }, 0]);
        break;
      }
      const controller = new AbortController();
      const watching = (async () => {
        for await (const _ of store.watch({ signal: controller.signal })) {
          setTimeout(() => controller.abort(), 20);
        }
      })();
      await watching;
      const listening = async () =>
        Number(
          await c.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN lockbox_documents'",
          ),
        );
      // The server notices a closed session at once; allow it a moment.
      for (let i = 0; i < 50 && await listening() > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(await listening(), 0);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL watch: every watch of one backend shares one LISTEN session, closed after the last one ends",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    const listening = async () =>
      Number(
        await c.sql(
          "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN lockbox_documents'",
        ),
      );
    try {
      const controller = new AbortController();
      const seen = new Map<string, number[]>();
      const ready: Promise<void>[] = [];
      const watches = ["a", "b", "c", "a"].map((name, i) => {
        let first!: () => void;
        ready.push(new Promise<void>((resolve) => first = resolve));
        const key = `${name}${i}`;
        seen.set(key, []);
        return (async () => {
          const store = db.jsonStore<{ n: number }>(`shared-${name}`, {
            initial: { n: 0 },
          });
          for await (
            const { value } of store.watch({ signal: controller.signal })
          ) {
            seen.get(key)!.push(value.n);
            first();
          }
        })();
      });
      await Promise.all(ready);
      assert.equal(await listening(), 1);
      await db.jsonStore("shared-a", { initial: { n: 0 } }).write({ n: 1 });
      await db.jsonStore("shared-b", { initial: { n: 0 } }).write({ n: 2 });
      for (let i = 0; i < 100; i++) {
        if (seen.get("a0")!.at(-1) === 1 && seen.get("b1")!.at(-1) === 2) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      controller.abort();
      await Promise.all(watches);
      assert.deepEqual(seen.get("a0"), [0, 1]);
      assert.deepEqual(seen.get("a3"), [0, 1]);
      assert.deepEqual(seen.get("b1"), [0, 2]);
      // c was never written: woken by nothing but its first read.
      assert.deepEqual(seen.get("c2"), [0]);
      for (let i = 0; i < 50 && await listening() > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(await listening(), 0);
    } finally {
      await db.close();
    }
  },
);

stopAfterwards();
