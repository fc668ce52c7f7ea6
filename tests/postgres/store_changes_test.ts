// PostgreSQL stores whose changes cost what changed: a large document's
// update is a row of lockbox.document_changes, folded into the document
// later; readers, other processes, older writers, hand edits, a killed
// session and an older database all keep the store's guarantees.

import assert from "node:assert/strict";
import { PostgresBackend, StoreError } from "../../src/postgres/mod.ts";
import { Child } from "../_helpers.ts";
import { type Cluster, pgSuite, pgWorker } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL changes");

type Doc = { n: number; items: string[]; blob?: string; obj?: unknown };

const N = 70_000;

/** A document well over the size below which every version is written whole. */
function large(): Doc {
  return {
    n: 0,
    items: Array.from({ length: N }, (_, i) => `item-${i}-padding`),
  };
}

const lit = (text: string) => `'${text.replaceAll("'", "''")}'`;

async function changeRows(c: Cluster, name: string): Promise<number> {
  return Number(
    await c.sql(
      `SELECT count(*) FROM lockbox.document_changes WHERE name = ${lit(name)}`,
    ),
  );
}

pgTest(
  "PgJsonStore.update() writes a change row, not the document, when the document is large",
  async (c) => {
    const a = await PostgresBackend.connect(c.url);
    const b = await PostgresBackend.connect(c.url);
    try {
      const store = a.jsonStore<Doc>("big", { initial: { n: 0, items: [] } });
      await store.write(large());
      await store.update((d) => {
        d.n = 1;
        d.items.push("new");
      });
      assert.equal(await changeRows(c, "big"), 1);
      // The stored value is the last whole one; the change is beside it.
      assert.equal(
        await c.sql(
          "SELECT value->>'n' FROM lockbox.documents WHERE name = 'big'",
        ),
        "0",
      );
      const other = b.jsonStore<Doc>("big", { initial: { n: 0, items: [] } });
      const seen = await other.readWithVersion();
      assert.equal(seen.version, 2);
      assert.equal(seen.value.n, 1);
      assert.equal(seen.value.items.length, N + 1);
      assert.equal(seen.value.items.at(-1), "new");
      // A change made through the other backend reaches this one's copy.
      await other.update((d) => void (d.n = 2));
      assert.equal(await store.update((d) => ++d.n), 3);
      assert.equal((await other.readWithVersion()).version, 4);
    } finally {
      await a.close();
      await b.close();
    }
  },
);

pgTest(
  "PgJsonStore.update() folds the changes into the document once they outgrow it",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<Doc>("folded", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      let most = 0;
      for (let i = 1; i <= 40; i++) {
        await store.update((d) => {
          d.n = i;
          d.blob = `${i}:${"x".repeat(100_000)}`;
        });
        most = Math.max(most, await changeRows(c, "folded"));
      }
      assert.ok(most >= 2, `at most ${most} change rows`);
      assert.ok(
        await changeRows(c, "folded") < 40,
        "the changes were never folded",
      );
      const stored = Number(
        await c.sql(
          "SELECT value->>'n' FROM lockbox.documents WHERE name = 'folded'",
        ),
      );
      assert.ok(stored > 0, "the document was never rewritten");
      const { value, version } = await store.readWithVersion();
      assert.equal(value.n, 40);
      assert.equal(value.blob, `40:${"x".repeat(100_000)}`);
      assert.equal(version, 41);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PgJsonStore.update() keeps key order and U+0000 in a change row",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    const other = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<Doc>("order", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      await store.update((d) => void (d.obj = { z: 1, a: "\u0000x", m: [2] }));
      assert.equal(await changeRows(c, "order"), 1);
      const read = await other.jsonStore<Doc>("order", {
        initial: { n: 0, items: [] },
      }).read();
      assert.equal(JSON.stringify(read.obj), '{"z":1,"a":"\\u0000x","m":[2]}');
      assert.equal(
        await c.sql(
          "SELECT ops::text FROM lockbox.document_changes WHERE name = 'order'",
        ),
        '[["s",["obj"],{"z":1,"a":"\\u0000x","m":[2]}]]',
      );
    } finally {
      await db.close();
      await other.close();
    }
  },
);

pgTest(
  "PostgreSQL store: an older client's whole-document write is refused while changes are pending, and nothing is lost",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<Doc>("old-client", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      await store.update((d) => void (d.n = 7));
      // What lockbox before lockbox.document_changes did, in one
      // transaction: read the value under the row lock, write it whole.
      await assert.rejects(
        c.sql(
          `BEGIN;
           SELECT version FROM lockbox.documents WHERE name = 'old-client' FOR UPDATE;
           UPDATE lockbox.documents SET value = '{"n": 1, "items": []}',
             version = version + 1 WHERE name = 'old-client';
           COMMIT;`,
        ),
        /Cannot write document old-client.*document_changes/,
      );
      // A hand edit of the value alone is refused as well.
      await assert.rejects(
        c.sql(
          `UPDATE lockbox.documents SET value = '{"n": 1, "items": []}' WHERE name = 'old-client'`,
        ),
        /Cannot write document old-client/,
      );
      const { value, version } = await store.readWithVersion();
      assert.equal(value.n, 7);
      assert.equal(value.items.length, N);
      assert.equal(version, 2);
      // Folded in by a whole write, the document takes old writes again.
      await store.write({ n: 8, items: [] });
      assert.equal(await changeRows(c, "old-client"), 0);
      await c.sql(
        `UPDATE lockbox.documents SET value = '{"n": 9, "items": []}',
           version = version + 1 WHERE name = 'old-client'`,
      );
      assert.deepEqual(await store.read(), { n: 9, items: [] });
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PgJsonStore.update() reads a value changed by hand since its own last change",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<Doc>("by-hand", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      await store.update((d) => void d.n++);
      await store.write(large()); // folds the change in: no change pending
      // Edited on the server: a command line cannot carry the document.
      await c.sql(
        `UPDATE lockbox.documents
         SET value = replace(value::text, '{"n":0,', '{"n":100,')::json
         WHERE name = 'by-hand'`,
      );
      assert.equal(await store.update((d) => ++d.n), 101);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PgJsonStore.update() on a large document writes nothing when its session is terminated mid-update, and the next update starts from the database",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<Doc>("terminated", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      await store.update((d) => void (d.n = 1));
      await assert.rejects(
        store.update(async (d) => {
          d.n = 666;
          d.items.length = 0;
          await c.sql(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'lockbox'
               AND state = 'idle in transaction'`,
          );
        }),
        StoreError,
      );
      const { value, version } = await store.readWithVersion();
      assert.equal(value.n, 1);
      assert.equal(value.items.length, N);
      assert.equal(version, 2);
      // This process's copy was dropped with the failed update.
      assert.equal(await store.update((d) => ++d.n), 2);
      assert.equal((await store.read()).items.length, N);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL store: 4 processes x 40 updates of a large document while 20 are SIGKILLed lose no acknowledged update",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      await db.jsonStore<Doc>("large-race", { initial: { n: 0, items: [] } })
        .write(large());
    } finally {
      await db.close();
    }
    const updater = (args: string[]) =>
      new Child(
        Deno.execPath(),
        [
          "run",
          "--allow-all",
          "--quiet",
          pgWorker("pg_store_update.ts"),
          ...args,
        ],
        { env: c.env },
      );
    const counted = [0, 1, 2, 3].map((i) =>
      updater(["large-race", `c${i}`, "40"])
    );
    const acked = new Set<string>();
    for (let kill = 0; kill < 20; kill++) {
      const victim = updater(["large-race", `k${kill}`, "0"]);
      await victim.waitFor("ack ", 30_000).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
      await victim.kill();
      for (const line of (await victim.finish()).lines) {
        if (line.startsWith("ack ")) acked.add(line.slice(4));
      }
    }
    for (const child of counted) {
      const result = await child.finish();
      assert.equal(result.code, 0, result.stderr);
    }
    const check = await PostgresBackend.connect(c.url);
    try {
      const doc = await check.jsonStore<Doc>("large-race", {
        initial: { n: 0, items: [] },
      }).read();
      const added = doc.items.slice(N);
      assert.equal(doc.n, added.length);
      assert.equal(new Set(added).size, added.length);
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 40; j++) {
          assert.ok(added.includes(`c${i}-${j}`), `c${i}-${j}`);
        }
      }
      for (const id of acked) assert.ok(added.includes(id), id);
      assert.ok(await changeRows(c, "large-race") > 0);
    } finally {
      await check.close();
    }
  },
);

pgTest(
  "PostgresBackend.connect() upgrades a database made before lockbox.document_changes, from many processes at once",
  async (c) => {
    const first = await PostgresBackend.connect(c.url);
    await first.close();
    // The schema as lockbox made it before, with a document in it.
    await c.sql(
      `DROP TRIGGER documents_guard ON lockbox.documents;
       DROP FUNCTION lockbox.documents_guard();
       DROP TABLE lockbox.document_changes;
       ALTER TABLE lockbox.documents DROP COLUMN value_id;
       INSERT INTO lockbox.documents (name, value, version)
         SELECT 'before', json_build_object('n', 0, 'items',
           (SELECT json_agg('item-' || i || '-padding' ORDER BY i)
            FROM generate_series(0, ${N - 1}) i)), 3;`,
    );
    const backends = await Promise.all(
      Array.from({ length: 6 }, () => PostgresBackend.connect(c.url)),
    );
    try {
      const store = backends[0].jsonStore<Doc>("before", {
        initial: { n: 0, items: [] },
      });
      assert.equal(await store.update((d) => ++d.n), 1);
      assert.equal(await changeRows(c, "before"), 1);
      const read = await backends[5].jsonStore<Doc>("before", {
        initial: { n: 0, items: [] },
      }).readWithVersion();
      assert.equal(read.version, 4);
      assert.equal(read.value.n, 1);
      assert.equal(read.value.items.length, N);
    } finally {
      await Promise.all(backends.map((b) => b.close()));
    }
  },
);

pgTest(
  "PgJsonStore.watch() reads only the changes since its last version while the stored value is the one it read, and yields copies",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    const controller = new AbortController();
    try {
      const store = db.jsonStore<Doc & { hidden?: boolean }>("watched-big", {
        initial: { n: 0, items: [] },
      });
      await store.write(large());
      const versions = store.watch({ signal: controller.signal })
        [Symbol.asyncIterator]();
      const next = async () => {
        const timer = setTimeout(() => controller.abort(), 30_000);
        try {
          const { value, done } = await versions.next();
          assert.ok(!done, "the watch ended");
          return value;
        } finally {
          clearTimeout(timer);
        }
      };
      const first = await next();
      assert.equal(first.version, 1);
      await store.update((d) => void (d.n = 1));
      const second = await next();
      assert.deepEqual([second.version, second.value.n], [2, 1]);
      // The caller's own copy: changing it changes nothing yielded later.
      second.value.items.length = 0;
      // The stored value changed behind lockbox's back, with its id and
      // version kept: a watch that read only changes does not see it.
      await c.sql(
        `BEGIN; SET LOCAL lockbox.writer = 'changes';
         UPDATE lockbox.documents
         SET value = ('{"hidden":true,' || substr(value::text, 2))::json
         WHERE name = 'watched-big'; COMMIT;`,
      );
      await store.update((d) => void (d.n = 2));
      const third = await next();
      assert.deepEqual([third.version, third.value.n], [3, 2]);
      assert.equal(third.value.hidden, undefined);
      assert.equal(third.value.items.length, N);
      assert.equal((await store.read()).hidden, true);
      // A whole write gives the stored value a new id: read whole again.
      await store.write({ ...large(), n: 3, hidden: true });
      const fourth = await next();
      assert.deepEqual(
        [fourth.version, fourth.value.n, fourth.value.hidden],
        [4, 3, true],
      );
    } finally {
      controller.abort();
      await db.close();
    }
  },
);

pgTest(
  "PgJsonStore.update() writes a small document, or one with backups, whole, so the stored value is current",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const small = db.jsonStore<Doc>("small", {
        initial: { n: 0, items: [] },
      });
      await small.write({ n: 0, items: ["a"] });
      await small.update((d) => void (d.n = 5));
      assert.equal(await changeRows(c, "small"), 0);
      assert.equal(
        await c.sql(
          "SELECT value->>'n' FROM lockbox.documents WHERE name = 'small'",
        ),
        "5",
      );
      const kept = db.jsonStore<Doc>("kept", {
        initial: { n: 0, items: [] },
        backups: 2,
      });
      await kept.write(large());
      await kept.update((d) => void (d.n = 1));
      await kept.update((d) => void (d.n = 2));
      assert.equal(await changeRows(c, "kept"), 0);
      assert.equal(
        await c.sql(
          "SELECT value->>'n' FROM lockbox.documents WHERE name = 'kept'",
        ),
        "2",
      );
      assert.deepEqual(
        (await kept.backups()).map((b) => b.version),
        [2, 1],
      );
      assert.equal(((await kept.readBackup(2)) as Doc).n, 1);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgresBackend.connect() reads and writes documents whole, with one warning, on an older lockbox's tables that its role may not upgrade",
  async (c) => {
    const schema = "older_app";
    await (await PostgresBackend.connect(c.url, { schema })).close();
    // The tables as a lockbox before change rows made them.
    await c.sql(
      `DROP TRIGGER documents_guard ON ${schema}.documents;
       DROP FUNCTION ${schema}.documents_guard();
       DROP TABLE ${schema}.document_changes;
       ALTER TABLE ${schema}.documents DROP COLUMN value_id;
       CREATE ROLE older_worker LOGIN;
       GRANT USAGE, CREATE ON SCHEMA ${schema} TO older_worker;
       GRANT SELECT, INSERT, UPDATE, DELETE
         ON ALL TABLES IN SCHEMA ${schema} TO older_worker;`,
    );
    const url = c.url.replace("postgres@", "older_worker@");
    const warnings: string[] = [];
    await using db = await PostgresBackend.connect(url, {
      schema,
      onWarning: (message) => warnings.push(message),
    });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /older lockbox's.*read and written whole/);
    await using other = await PostgresBackend.connect(url, {
      schema,
      onWarning: () => {},
    });
    const store = db.jsonStore<Doc>("big", { initial: { n: 0, items: [] } });
    const seen = other.jsonStore<Doc>("big", { initial: { n: 0, items: [] } });
    const lock = await db.acquire("big-lock");
    await store.write(large(), { fence: lock.token });
    await lock.release();
    for (let i = 1; i <= 3; i++) {
      await (i % 2 === 0 ? seen : store).update((d) => void (d.n = i));
    }
    assert.equal(
      await c.sql(
        `SELECT value->>'n' FROM ${schema}.documents WHERE name = 'big'`,
      ),
      "3",
    );
    assert.deepEqual(
      [(await seen.readWithVersion()).version, (await seen.read()).n],
      [4, 3],
    );
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 30_000);
    try {
      const versions = seen.watch({ signal: controller.signal })
        [Symbol.asyncIterator]();
      assert.equal((await versions.next()).value?.version, 4);
      await store.update((d) => void (d.n = 4));
      const next = (await versions.next()).value;
      assert.deepEqual([next?.version, next?.value.n], [5, 4]);
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    assert.equal(
      await c.sql(`SELECT to_regclass('${schema}.document_changes') IS NULL`),
      "t",
    );
    // The owner upgrades the tables and commits a change row: the backend
    // that writes whole is refused as an older lockbox is, and loses nothing.
    await using owner = await PostgresBackend.connect(c.url, { schema });
    const owned = owner.jsonStore<Doc>("big", { initial: { n: 0, items: [] } });
    await owned.update((d) => void (d.n = 10));
    await c.sql(
      `GRANT SELECT, INSERT, UPDATE, DELETE
         ON ALL TABLES IN SCHEMA ${schema} TO older_worker`,
    );
    assert.equal(
      await c.sql(`SELECT count(*) FROM ${schema}.document_changes`),
      "1",
    );
    await assert.rejects(
      store.update((d) => void (d.n = 11)),
      (error: Error) =>
        error instanceof StoreError && /changes in .*document_changes/.test(
          error.message,
        ),
    );
    assert.equal((await owned.read()).n, 10);
  },
);

pgTest(
  "PgJsonStore.update() sets the document's updated_at when it commits a change row, and leaves value and version at the last fold",
  async (c) => {
    await using db = await PostgresBackend.connect(c.url);
    const store = db.jsonStore<Doc>("dated", { initial: { n: 0, items: [] } });
    await store.write(large());
    await c.sql(
      "UPDATE lockbox.documents SET updated_at = '2000-01-01Z' WHERE name = 'dated'",
    );
    await store.update((d) => void (d.n = 1));
    assert.equal(await changeRows(c, "dated"), 1);
    assert.equal(
      await c.sql(
        `SELECT updated_at > '2000-01-02Z', version, value->>'n'
         FROM lockbox.documents WHERE name = 'dated'`,
      ),
      "t|1|0",
    );
    assert.equal((await store.readWithVersion()).version, 2);
  },
);

stopAfterwards();
