// PostgreSQL stores (PostgresBackend.jsonStore) against a real throwaway
// cluster: JsonStore's shared contract, Deno and Node processes updating one
// document, SIGKILLed clients, a paused fenced holder, a server crash,
// backups and versions, and bad input.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  CorruptStoreError,
  LockTimeoutError,
  PostgresBackend,
  StoreError,
} from "../../src/postgres/mod.ts";
import { FileLock } from "../../mod.ts";
import { Child } from "../_helpers.ts";
import {
  type ContractOptions,
  storeContract,
  type Subject,
} from "../_store_contract.ts";
import { type Cluster, pgSuite, pgWorker } from "./_cluster.ts";

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL stores");

const NODE_PACKAGE = fileURLToPath(
  new URL("../../dist/node-src/", import.meta.url),
);

function denoUpdater(c: Cluster, args: string[]): Child {
  return new Child(
    Deno.execPath(),
    ["run", "--allow-all", "--quiet", pgWorker("pg_store_update.ts"), ...args],
    { env: c.env },
  );
}

function nodeUpdater(c: Cluster, args: string[]): Child {
  return new Child(
    "node",
    [
      fileURLToPath(
        new URL("../node/workers/pg_store_update.mjs", import.meta.url),
      ),
      ...args,
    ],
    { env: { ...c.env, LOCKBOX_NODE_PACKAGE: NODE_PACKAGE } },
  );
}

/** A SQL string literal, for the test's own psql statements. */
const lit = (text: string) => `'${text.replaceAll("'", "''")}'`;

async function rawValue(c: Cluster, name: string): Promise<unknown> {
  const text = await c.sql(
    `SELECT value FROM lockbox.documents WHERE name = ${lit(name)}`,
  );
  return text === "" ? undefined : JSON.parse(text);
}

let documents = 0;
storeContract({
  label: "PostgreSQL",
  backups: true,
  test: (name, fn) =>
    pgTest(name, async (c) => {
      const db = await PostgresBackend.connect(c.url);
      try {
        await fn(<T>(options: ContractOptions<T>) => {
          const where = options.same?.where ?? `contract-${documents++}`;
          const { same: _same, ...rest } = options;
          const store = db.jsonStore<T>(where, rest);
          const subject: Subject<T> = {
            store,
            where,
            generation: async () =>
              String((await store.readWithVersion()).version),
            putRaw: async (value) => {
              await c.sql(
                `INSERT INTO lockbox.documents (name, value)
                 VALUES (${lit(where)}, ${lit(JSON.stringify(value))})
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`,
              );
            },
            raw: () => rawValue(c, where),
          };
          return Promise.resolve(subject);
        });
      } finally {
        await db.close();
      }
    }),
});

pgTest(
  "PostgreSQL store: 4 Deno + 4 Node processes x 100 updates of one document: exactly 800, each n once, versions strictly increasing",
  async (c) => {
    const children = [
      ...[0, 1, 2, 3].map((i) =>
        denoUpdater(c, ["shared-800", `d${i}`, "100"])
      ),
      ...[0, 1, 2, 3].map((i) =>
        nodeUpdater(c, ["shared-800", `n${i}`, "100"])
      ),
    ];
    const results = await Promise.all(children.map((child) => child.finish()));
    const seen: number[] = [];
    for (const result of results) {
      assert.equal(result.code, 0, result.stderr);
      const ns = result.lines.filter((l) => l.startsWith("n ")).map((l) =>
        Number(l.slice(2))
      );
      assert.equal(ns.length, 100);
      // What one process saw grows: later commits, later versions.
      for (let i = 1; i < ns.length; i++) assert.ok(ns[i] > ns[i - 1]);
      seen.push(...ns);
    }
    seen.sort((a, b) => a - b);
    assert.deepEqual(seen, Array.from({ length: 800 }, (_, i) => i + 1));
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number; items: string[] }>(
        "shared-800",
        { initial: { n: 0, items: [] } },
      );
      const { value, version } = await store.readWithVersion();
      assert.equal(value.n, 800);
      assert.equal(new Set(value.items).size, 800);
      assert.equal(version, 800);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL store: 100 SIGKILLs of Deno and Node clients mid-update lose no acknowledged update and leave nothing half-applied",
  async (c) => {
    const running: Child[] = [];
    const acked = new Set<string>();
    let started = 0;
    const start = () => {
      const tag = `k${started}`;
      const child = started % 2 === 0
        ? denoUpdater(c, ["killed", tag, "0"])
        : nodeUpdater(c, ["killed", tag, "0"]);
      started++;
      running.push(child);
    };
    for (let i = 0; i < 4; i++) start();
    for (let kills = 0; kills < 100; kills++) {
      // Kill one once it has acknowledged an update (or after a while).
      const victim = running.shift()!;
      await victim.waitFor("ack ", 30_000).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 30));
      await victim.kill();
      const result = await victim.finish();
      for (const line of result.lines) {
        if (line.startsWith("ack ")) acked.add(line.slice(4));
      }
      start();
    }
    for (const child of running) {
      await child.kill();
      for (const line of (await child.finish()).lines) {
        if (line.startsWith("ack ")) acked.add(line.slice(4));
      }
    }
    const doc = await rawValue(c, "killed") as { n: number; items: string[] };
    // Each update adds one item and 1 to n: a half-applied one would show.
    assert.equal(doc.n, doc.items.length);
    assert.equal(new Set(doc.items).size, doc.items.length);
    for (const id of acked) assert.ok(doc.items.includes(id), id);
    assert.ok(acked.size >= 100, `only ${acked.size} acknowledged`);
    // Nothing is left holding a row lock or in a transaction.
    const db = await PostgresBackend.connect(c.url);
    try {
      await db.jsonStore("killed", { initial: {}, lockTimeout: 5000 }).update(
        () => {},
      );
    } finally {
      await db.close();
    }
  },
);

for (const runtime of ["Deno", "Node"] as const) {
  pgTest(
    `PostgreSQL store: a paused ${runtime} holder's fenced write is refused with StaleFenceError and the new holder's write stays`,
    async (c) => {
      const name = `job-${runtime}`;
      const paused = runtime === "Deno"
        ? new Child(
          Deno.execPath(),
          [
            "run",
            "--allow-all",
            "--quiet",
            pgWorker("pg_fenced_write.ts"),
            name,
          ],
          { stdin: true, env: c.env },
        )
        : new Child(
          "node",
          [
            fileURLToPath(
              new URL("../node/workers/pg_fenced_write.mjs", import.meta.url),
            ),
            name,
          ],
          {
            stdin: true,
            env: { ...c.env, LOCKBOX_NODE_PACKAGE: NODE_PACKAGE },
          },
        );
      try {
        const [, token, backendPid] = (await paused.waitFor("token ")).split(
          " ",
        );
        Deno.kill(paused.pid, "SIGSTOP");
        await c.sql(`SELECT pg_terminate_backend(${backendPid})`);
        const db = await PostgresBackend.connect(c.url);
        try {
          const lock = await db.acquire(name, { timeout: 20_000 });
          assert.ok(lock.token > Number(token));
          const store = db.jsonStore<{ by: string }>(name, {
            initial: { by: "none" },
          });
          await store.write({ by: "second" }, { fence: lock.token });
          Deno.kill(paused.pid, "SIGCONT");
          await paused.send("go");
          assert.equal(await paused.waitFor("stale "), `stale ${lock.token}`);
          assert.deepEqual(await store.read(), { by: "second" });
          await lock.release();
        } finally {
          await db.close();
        }
      } finally {
        try {
          Deno.kill(paused.pid, "SIGCONT");
        } catch {
          // It has ended already; finish() reports how.
        }
        const result = await paused.finish();
        assert.equal(result.code, 0, result.stderr);
      }
    },
  );
}

pgTest(
  "PostgreSQL store refuses a FileLock token as a fence, recording nothing, and is never fenced shut by one an older lockbox recorded",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    const dir = await Deno.makeTempDir();
    try {
      const store = db.jsonStore<{ n: number }>("mixed", { initial: { n: 0 } });
      const fileLock = await FileLock.acquire(`${dir}/worker`);
      await fileLock.release();
      await assert.rejects(
        store.update((d) => void d.n++, { fence: fileLock.token }),
        (error: Error) =>
          error instanceof RangeError && /FileLock token/.test(error.message),
      );
      // Nothing was recorded: the PostgreSQL lock's holders go on.
      for (let i = 0; i < 2; i++) {
        const lock = await db.acquire("mixed");
        await store.update((d) => void d.n++, { fence: lock.token });
        await lock.release();
      }
      // A FileLock token an older lockbox let in is not compared.
      await c.sql(
        `UPDATE lockbox.documents SET fence = ${fileLock.token} WHERE name = 'mixed'`,
      );
      const lock = await db.acquire("mixed");
      await store.update((d) => void d.n++, { fence: lock.token });
      assert.equal(
        await c.sql(
          "SELECT fence FROM lockbox.documents WHERE name = 'mixed'",
        ),
        String(lock.token),
      );
      await lock.release();
      assert.equal((await store.read()).n, 3);
    } finally {
      await db.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

pgTest(
  "PostgreSQL store: a fenced write with a later lock holder is refused even before that holder writes",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number }>("early", { initial: { n: 0 } });
      const first = await db.acquire("early");
      await store.update((d) => void d.n++, { fence: first.token });
      await first.release();
      const second = await db.acquire("early");
      await assert.rejects(
        store.update((d) => void d.n++, { fence: first.token }),
        (error: Error) => error.name === "StaleFenceError",
      );
      await store.update((d) => void d.n++, { fence: second.token });
      await second.release();
      assert.deepEqual(await store.readWithVersion(), {
        value: { n: 2 },
        version: 2,
      });
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL store: every acknowledged update survives a server crash, and the store goes on without manual steps",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number }>("crash", { initial: { n: 0 } });
      for (let i = 0; i < 20; i++) await store.update((d) => void d.n++);
      await c.crash();
      // The backend's idle sessions died with the server: replaced unasked.
      assert.deepEqual(await store.read(), { n: 20 });
      await store.update((d) => void d.n++);
      await c.crash();
      await store.update((d) => void d.n++);
      assert.deepEqual(await store.readWithVersion(), {
        value: { n: 22 },
        version: 22,
      });
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL store: backups keep the previous N versions, readable and restorable; versions count commits only",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const store = db.jsonStore<{ n: number }>("backed", {
        initial: { n: 0 },
        backups: 2,
      });
      for (let i = 1; i <= 4; i++) await store.write({ n: i });
      await store.write({ n: 4 });
      assert.equal((await store.readWithVersion()).version, 4);
      const kept = await store.backups();
      assert.deepEqual(kept.map((b) => b.version), [3, 2]);
      assert.deepEqual(await store.readBackup(2), { n: 2 });
      await assert.rejects(store.readBackup(1), RangeError);
      await store.restore(2);
      assert.deepEqual(await store.readWithVersion(), {
        value: { n: 2 },
        version: 5,
      });
      assert.deepEqual((await store.backups()).map((b) => b.version), [4, 3]);
    } finally {
      await db.close();
    }
  },
);

pgTest(
  "PostgreSQL store: odd names, an over-large document, a dropped table and file-only options are clear errors, nothing lost",
  async (c) => {
    const db = await PostgresBackend.connect(c.url);
    try {
      const names = [
        "it's; DROP TABLE lockbox.documents; --",
        "constructor",
        "__proto__",
        "naïve/ünïcode ✓",
        "back\\slash\nnewline",
        "x".repeat(200),
      ];
      for (const [i, name] of names.entries()) {
        await db.jsonStore(name, { initial: { i: -1 } }).write({ i });
      }
      for (const [i, name] of names.entries()) {
        assert.deepEqual(await db.jsonStore(name, { initial: {} }).read(), {
          i,
        });
      }
      assert.throws(() => db.jsonStore("", { initial: {} }), TypeError);
      assert.throws(() => db.jsonStore("a\0b", { initial: {} }), RangeError);
      assert.throws(
        () => db.jsonStore("x".repeat(201), { initial: {} }),
        RangeError,
      );
      assert.throws(
        () =>
          db.jsonStore("j", {
            initial: {},
            journal: true,
          } as unknown as { initial: object }),
        /journal on a PostgreSQL store/,
      );
      // The same option checks as a file store's, with the same words.
      for (const backups of [-1, 1001, 1.5]) {
        assert.throws(
          () => db.jsonStore("b", { initial: {}, backups }),
          (error: Error) =>
            error instanceof RangeError &&
            error.message ===
              `Cannot use backups ${backups}: expected an integer from 0 to 1000`,
        );
      }
      assert.throws(
        () =>
          db.jsonStore("c", {
            initial: {},
            onCorrupt: "reset" as "throw",
          }),
        (error: Error) =>
          error instanceof TypeError &&
          error.message ===
            'Cannot use onCorrupt "reset": expected "throw" or "quarantine"',
      );

      const store = db.jsonStore<{ s: string }>("limits", {
        initial: { s: "" },
      });
      await store.write({ s: "kept" });
      await assert.rejects(
        store.write({ s: "x".repeat(65 * 1024 * 1024) }),
        /over the PostgreSQL store's limit of 64 MiB/,
      );
      await assert.rejects(
        store.update(() => {
          throw new Error("mine");
        }),
        /mine/,
      );
      assert.deepEqual(await store.readWithVersion(), {
        value: { s: "kept" },
        version: 1,
      });

      const validated = db.jsonStore<{ n: number }>("validated", {
        initial: { n: 0 },
        validate: (v) => {
          if (typeof (v as { n?: unknown }).n !== "number") {
            throw new TypeError("n must be a number");
          }
          return v as { n: number };
        },
      });
      await c.sql(
        `INSERT INTO lockbox.documents (name, value) VALUES ('validated', '{"n": "x"}')`,
      );
      await assert.rejects(
        validated.read(),
        (e) =>
          e instanceof CorruptStoreError &&
          /n must be a number/.test(e.message),
      );

      const other = db.jsonStore("held", {
        initial: { n: 0 },
        lockTimeout: 200,
      });
      let release!: () => void;
      const holding = db.jsonStore("held", { initial: { n: 0 } }).update(() =>
        new Promise<void>((resolve) => release = resolve)
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      await assert.rejects(other.update(() => {}), LockTimeoutError);
      release();
      await holding;

      await c.sql("DROP TABLE lockbox.document_backups");
      const backed = db.jsonStore("dropped", { initial: { n: 0 }, backups: 1 });
      await backed.write({ n: 1 });
      await assert.rejects(
        backed.write({ n: 2 }),
        (e) =>
          e instanceof StoreError &&
          /a lockbox table is missing/.test(e.message),
      );
      assert.deepEqual(await rawValue(c, "dropped"), { n: 1 });
      // Connecting again makes the missing table; the store goes on.
      await (await PostgresBackend.connect(c.url)).close();
      await backed.write({ n: 2 });
      assert.deepEqual(await backed.read(), { n: 2 });
    } finally {
      await db.close();
    }
  },
);

stopAfterwards();
