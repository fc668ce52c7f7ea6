// The `schema` option of PostgresBackend.connect and `--schema` of the CLI,
// on a real throwaway cluster: two schemas of one database are independent
// (locks, guards, tokens, holder rows, documents, notifications), one
// schema excludes across processes, names PostgreSQL would not take
// unquoted are refused, and the default is the schema, keys and channel
// lockbox has always used.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Child, output, withTempDir } from "../_helpers.ts";
import { type Cluster, pgSuite } from "./_cluster.ts";
import { LockError, PostgresBackend } from "../../src/postgres/mod.ts";
import { _schema } from "../../src/postgres/schema.ts";

const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));

const { test: pgTest, stopAfterwards } = pgSuite("PostgreSQL schemas");

async function lockbox(
  c: Cluster,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await output(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", CLI, ...args],
    env: { ...c.env, ...env },
  });
  return {
    code: result.code,
    stdout: new TextDecoder().decode(result.stdout),
    stderr: new TextDecoder().decode(result.stderr),
  };
}

/** The URL of the test cluster for another role. */
const as = (c: Cluster, role: string) => c.url.replace("postgres@", `${role}@`);

/** A raw session (npm pg) that collects the notifications of `channels`. */
async function listen(c: Cluster, channels: string[]) {
  const client = new pg.Client({ connectionString: c.url });
  await client.connect();
  const received: { channel: string; payload: string }[] = [];
  const waiters: (() => void)[] = [];
  client.on(
    "notification",
    (message: { channel: string; payload?: string }) => {
      received.push({
        channel: message.channel,
        payload: message.payload ?? "",
      });
      for (const wake of waiters.splice(0)) wake();
    },
  );
  for (const channel of channels) await client.query(`LISTEN ${channel}`);
  return {
    received,
    /** Waits until `count` notifications have arrived. */
    async waitFor(count: number): Promise<void> {
      while (received.length < count) {
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    end: () => client.end(),
  };
}

pgTest(
  "PostgresBackend.connect() refuses a schema PostgreSQL would not take unquoted, before connecting",
  async (c) => {
    const bad: unknown[] = [
      "Team-A",
      '"x"',
      "a;drop",
      "a b",
      "x".repeat(64),
      "é",
      "",
      "TeamA",
      "1abc",
      "select",
      "user",
      "pg_locks",
      "information_schema",
      null,
      42,
    ];
    for (const schema of bad) {
      await assert.rejects(
        // An unreachable server: the name is refused before any connect.
        PostgresBackend.connect("postgres://nobody@127.0.0.1:1/none", {
          schema: schema as string,
        }),
        (error: Error) =>
          error instanceof TypeError &&
          /^Cannot use schema /.test(error.message),
        `schema ${JSON.stringify(schema)} was not refused`,
      );
    }
    // Each word the server reserves (and so would not take unquoted).
    const reserved = (await c.sql(
      "SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')",
    )).split("\n");
    assert.ok(reserved.length > 50, `${reserved.length} reserved words`);
    for (const word of reserved) {
      await assert.rejects(
        PostgresBackend.connect(c.url, { schema: word }),
        (error: Error) =>
          error instanceof TypeError && /reserved word/.test(error.message),
        `the reserved word ${word} was not refused`,
      );
    }
    // The messages say why.
    await assert.rejects(
      PostgresBackend.connect(c.url, { schema: "x".repeat(64) }),
      /64 bytes long, and PostgreSQL cuts names at 63 bytes/,
    );
    await assert.rejects(
      PostgresBackend.connect(c.url, { schema: "TeamA" }),
      /would read it unquoted as 'teama'/,
    );
    assert.equal(
      await c.sql(
        "SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('public', 'information_schema')",
      ),
      "0",
      "no schema was made",
    );
  },
);

pgTest(
  "PostgresBackend.connect() takes any schema name PostgreSQL takes unquoted, constructor and 63 bytes among them",
  async (c) => {
    for (const schema of ["constructor", "a$b", "_x", "y".repeat(63)]) {
      // PostgreSQL takes it unquoted...
      await c.sql(`CREATE SCHEMA ${schema}; DROP SCHEMA ${schema}`);
      // ...and so does lockbox, whose tables land there.
      const db = await PostgresBackend.connect(c.url, { schema });
      try {
        assert.equal(db.schema, schema);
        const lock = await db.acquire("jobs");
        assert.equal(lock.token, 1);
        await lock.release();
        await db.jsonStore("doc", { initial: 0 }).write(7);
      } finally {
        await db.close();
      }
      assert.equal(
        await c.sql(`SELECT value::text FROM ${schema}.documents`),
        "7",
      );
    }
  },
);

pgTest(
  "PostgresBackend.acquire() in one schema does not exclude the same name in another, and their tokens and holder rows are apart",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url, { schema: "app_a" });
    await using b = await PostgresBackend.connect(c.url, { schema: "app_b" });
    const inA = await a.acquire("jobs", { metadata: { app: "a" } });
    try {
      // Same name, same row id (1) in each schema's table.
      const inB = await b.acquire("jobs", { timeout: 10_000 });
      try {
        assert.equal(inA.token, 1);
        assert.equal(inB.token, 1);
        assert.deepEqual((await a.lockHolder("jobs"))?.metadata, { app: "a" });
        assert.equal((await b.lockHolder("jobs"))?.metadata, undefined);
        // A second holder within one schema still waits.
        await using a2 = await PostgresBackend.connect(c.url, {
          schema: "app_a",
        });
        assert.equal(await a2.tryAcquire("jobs"), null);
      } finally {
        await inB.release();
      }
      assert.equal(await a.isLocked("jobs"), true);
      assert.equal(await b.isLocked("jobs"), false);
      const again = await b.acquire("jobs");
      assert.equal(again.token, 2, "b's tokens are its own");
      await again.release();
    } finally {
      await inA.release();
    }
    assert.equal(
      await c.sql("SELECT fence FROM app_a.locks WHERE name = 'jobs'"),
      "1",
    );
    assert.equal(
      await c.sql("SELECT fence FROM app_b.locks WHERE name = 'jobs'"),
      "2",
    );
    // listLocks: each schema's names only.
    await (await a.acquire("only-a")).release();
    assert.deepEqual((await a.listLocks()).map((l) => l.name), [
      "jobs",
      "only-a",
    ]);
    assert.deepEqual((await b.listLocks()).map((l) => l.name), ["jobs"]);
    // Logs too.
    await a.appendLog("audit", [{ by: "a" }]);
    assert.deepEqual(await a.readLog("audit"), [{ by: "a" }]);
    assert.deepEqual(await b.readLog("audit"), []);
  },
);

pgTest(
  "PostgresBackend.runWithLock() guards its lock in its own schema only",
  async (c) => {
    await withTempDir(async (dir) => {
      await using a = await PostgresBackend.connect(c.url, {
        schema: "guard_a",
      });
      await using b = await PostgresBackend.connect(c.url, {
        schema: "guard_b",
      });
      // Row id 1 in both schemas.
      await (await b.acquire("jobs")).release();
      const running = a.runWithLock("jobs", [
        "sh",
        "-c",
        `touch ${dir}/started; while [ ! -e ${dir}/stop ]; do sleep 0.05; done`,
      ]);
      try {
        while (
          !(await Deno.stat(`${dir}/started`).then(() => true, () => false))
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        // The lock of b's "jobs" is free, and so is its guard.
        const lock = await b.acquire("jobs", { timeout: 10_000 });
        await lock.release();
        assert.equal(await a.isLocked("jobs"), true);
      } finally {
        await Deno.writeTextFile(`${dir}/stop`, "");
        assert.equal((await running).code, 0);
      }
    });
  },
);

pgTest(
  "PgJsonStore in two schemas keeps two documents and notifies each schema's watchers only",
  async (c) => {
    await using a = await PostgresBackend.connect(c.url, { schema: "docs_a" });
    await using b = await PostgresBackend.connect(c.url, { schema: "docs_b" });
    const inA = a.jsonStore("doc", { initial: "none" });
    const inB = b.jsonStore("doc", { initial: "none" });
    // A watch on a: its first version, then every write in a, none of b's.
    const seen: [number, string][] = [];
    const controller = new AbortController();
    let seenOne = () => {};
    const watching = (async () => {
      for await (
        const { value, version } of inA.watch({
          signal: controller.signal,
          recheckInterval: 3_600_000,
        })
      ) {
        seen.push([version, value]);
        seenOne();
        if (version === 2) controller.abort();
      }
    })().catch((error) => {
      if (!controller.signal.aborted) throw error;
    });
    const waitSeen = async (count: number) => {
      while (seen.length < count) {
        await new Promise<void>((resolve) => seenOne = resolve);
      }
    };
    await waitSeen(1);
    await inB.write("b1");
    await inB.write("b2");
    await inA.write("a1");
    await waitSeen(2);
    await inB.write("b3");
    await inA.write("a2");
    await watching;
    assert.deepEqual(seen, [[0, "none"], [1, "a1"], [2, "a2"]]);
    assert.equal(await inA.read(), "a2");
    assert.equal(await inB.read(), "b3");
    assert.equal(await c.sql("SELECT version FROM docs_b.documents"), "3");

    // On the wire: b's writes are never sent on a's channel. Notifications
    // arrive in commit order, so had b's been on a's channel, it would
    // come before a's.
    const listener = await listen(c, [
      "lockbox_documents",
      _schema("docs_a").channel,
      _schema("docs_b").channel,
    ]);
    try {
      await inB.write("b4");
      await inA.write("a3");
      await listener.waitFor(2);
      const [fromB, fromA] = listener.received;
      assert.notEqual(fromA.channel, fromB.channel);
      assert.notEqual(fromA.channel, "lockbox_documents");
      assert.deepEqual(JSON.parse(fromB.payload), {
        name: "doc",
        version: 4,
        schema: "docs_b",
      });
      assert.deepEqual(JSON.parse(fromA.payload), {
        name: "doc",
        version: 3,
        schema: "docs_a",
      });
    } finally {
      await listener.end();
    }
  },
);

pgTest(
  "PostgresBackend.acquire() in two schemas whose keys collide waits needlessly but never lets two in, and their watches stay apart",
  async (c) => {
    // Two names whose 31-bit hashes meet (found by search).
    const [one, two] = ["app_339098", "app_1066160"];
    assert.equal(_schema(one).lockKey, _schema(two).lockKey);
    assert.equal(_schema(one).channel, _schema(two).channel);
    await using a = await PostgresBackend.connect(c.url, { schema: one });
    await using b = await PostgresBackend.connect(c.url, { schema: two });
    await (await b.acquire("jobs")).release();
    const held = await a.acquire("jobs");
    try {
      assert.equal(await b.tryAcquire("jobs"), null);
    } finally {
      await held.release();
    }
    const lock = await b.acquire("jobs");
    assert.equal(lock.token, 2, "b's own counter");
    await lock.release();
    // One channel, told apart by the schema in the payload.
    const inA = a.jsonStore("doc", { initial: "none" });
    const inB = b.jsonStore("doc", { initial: "none" });
    const seen: [number, string][] = [];
    for await (const { value, version } of inA.watch()) {
      seen.push([version, value]);
      if (version === 0) {
        await inB.write("b1");
        await inB.write("b2");
        await inA.write("a1");
      } else break;
    }
    assert.deepEqual(seen, [[0, "none"], [1, "a1"]]);
  },
);

pgTest(
  "PostgresBackend.connect() without a schema is schema lockbox with today's keys and channel, and excludes a lock taken with schema: 'lockbox'",
  async (c) => {
    await using plain = await PostgresBackend.connect(c.url);
    await using named = await PostgresBackend.connect(c.url, {
      schema: "lockbox",
    });
    assert.equal(plain.schema, "lockbox");
    const held = await plain.acquire("jobs");
    try {
      assert.equal(await named.tryAcquire("jobs"), null);
      // The advisory key every lockbox version uses on the default: ("lock",
      // row id), as a mixed-version fleet needs.
      assert.equal(
        await c.sql(
          `SELECT classid || ',' || objid FROM pg_locks
           WHERE locktype = 'advisory' AND granted`,
        ),
        `${0x6c6f636b},${await c.sql(
          "SELECT id FROM lockbox.locks WHERE name = 'jobs'",
        )}`,
      );
    } finally {
      await held.release();
    }
    const lock = await named.acquire("jobs");
    assert.equal(lock.token, 2, "one token sequence");
    await lock.release();
    // A run's guard: ("run!", row id), as every version checks it.
    await withTempDir(async (dir) => {
      const running = plain.runWithLock("jobs", [
        "sh",
        "-c",
        `touch ${dir}/started; while [ ! -e ${dir}/stop ]; do sleep 0.05; done`,
      ]);
      try {
        while (
          !await Deno.stat(`${dir}/started`).then(() => true, () => false)
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(
          await c.sql(
            `SELECT string_agg(classid::text, ',' ORDER BY classid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted`,
          ),
          `${0x6c6f636b},${0x72756e21}`,
        );
      } finally {
        await Deno.writeTextFile(`${dir}/stop`, "");
        assert.equal((await running).code, 0);
      }
    });
    // The default's notifications: on lockbox_documents, with no schema.
    const listener = await listen(c, ["lockbox_documents"]);
    try {
      await named.jsonStore("doc", { initial: 0 }).write(1);
      await listener.waitFor(1);
      assert.deepEqual(JSON.parse(listener.received[0].payload), {
        name: "doc",
        version: 1,
      });
    } finally {
      await listener.end();
    }
  },
);

pgTest(
  "PostgresBackend.connect() works for a role with only USAGE on a schema an administrator made, and names the schema in its hints",
  async (c) => {
    await (await PostgresBackend.connect(c.url, { schema: "shared_app" }))
      .close();
    await c.sql("CREATE ROLE app_worker LOGIN");
    await c.sql("GRANT USAGE ON SCHEMA shared_app TO app_worker");
    await c.sql(
      "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA shared_app TO app_worker",
    );
    assert.equal(
      await c.sql(
        "SELECT has_database_privilege('app_worker', current_database(), 'CREATE')",
      ),
      "f",
    );
    await using db = await PostgresBackend.connect(as(c, "app_worker"), {
      schema: "shared_app",
    });
    const lock = await db.acquire("jobs");
    await db.jsonStore("doc", { initial: 0 }).update((n) => n + 1, {
      fence: lock.token,
    });
    await lock.release();
    assert.equal((await db.listLocks())[0].token, 1);
    // An empty schema an administrator made, on which the role may create:
    // the role makes lockbox's tables in it (CREATE SCHEMA IF NOT EXISTS
    // would need CREATE on the database).
    await c.sql("CREATE SCHEMA empty_app");
    await c.sql("GRANT USAGE, CREATE ON SCHEMA empty_app TO app_worker");
    await using made = await PostgresBackend.connect(as(c, "app_worker"), {
      schema: "empty_app",
    });
    await (await made.acquire("jobs")).release();
    // A schema the role may not use: the hint names it.
    await assert.rejects(
      PostgresBackend.connect(as(c, "app_worker"), { schema: "never_made" }),
      (error: Error) =>
        error instanceof LockError &&
        /schema never_made/.test(error.message) &&
        /CREATE on the database/.test(error.message),
    );
    await c.sql("CREATE SCHEMA closed_app");
    await (await PostgresBackend.connect(c.url, { schema: "closed_app" }))
      .close();
    await assert.rejects(
      PostgresBackend.connect(as(c, "app_worker"), { schema: "closed_app" }),
      (error: Error) =>
        error instanceof LockError &&
        /needs USAGE on schema closed_app \(GRANT USAGE ON SCHEMA closed_app/
          .test(error.message),
    );
  },
);

pgTest(
  "lockbox run, holder, status and store with --schema: one schema excludes across processes, two do not",
  async (c) => {
    const holder = new Child(Deno.execPath(), [
      "run",
      "--allow-all",
      "--quiet",
      CLI,
      "run",
      "--db",
      c.url,
      "--schema",
      "cli_a",
      "cli-jobs",
      "sh",
      "-c",
      "echo locked; read line",
    ], { stdin: true, env: c.env });
    try {
      await holder.waitFor("locked");
      const busy = await lockbox(c, [
        "run",
        "-n",
        "--db",
        c.url,
        "--schema",
        "cli_a",
        "cli-jobs",
        "true",
      ]);
      assert.equal(busy.code, 1, busy.stderr);
      // The environment names the schema when --schema does not.
      const busyEnv = await lockbox(
        c,
        ["run", "-n", "--db", "env", "cli-jobs", "true"],
        { LOCKBOX_DATABASE_SCHEMA: "cli_a" },
      );
      assert.equal(busyEnv.code, 1, busyEnv.stderr);
      const held = await lockbox(c, [
        "holder",
        "--db",
        c.url,
        "--schema",
        "cli_a",
        "cli-jobs",
      ]);
      assert.equal(held.code, 0, held.stderr);
      assert.match(held.stdout, /^held exclusive by pid \d+/);
      const freeB = await lockbox(c, [
        "holder",
        "--db",
        c.url,
        "--schema",
        "cli_b",
        "cli-jobs",
      ]);
      assert.equal(freeB.code, 1, freeB.stderr);
      assert.equal(freeB.stdout.trim(), "free");
      const statusB = await lockbox(c, [
        "status",
        "--db",
        c.url,
        "--schema",
        "cli_b",
      ]);
      assert.equal(statusB.stdout.trim(), "no lockbox locks");
      const runB = await lockbox(c, [
        "run",
        "-n",
        "--db",
        c.url,
        "--schema",
        "cli_b",
        "cli-jobs",
        "true",
      ]);
      assert.equal(runB.code, 0, runB.stderr);
      const statusA = await lockbox(c, [
        "status",
        "--db",
        c.url,
        "--schema",
        "cli_a",
        "--json",
      ]);
      const [jobs] = JSON.parse(statusA.stdout);
      assert.equal(jobs.name, "cli-jobs");
      assert.equal(jobs.mode, "exclusive");
      // The default schema has not seen any of it.
      const plain = await lockbox(c, ["status", "--db", c.url, "--json"]);
      assert.deepEqual(
        JSON.parse(plain.stdout).filter((i: { name: string }) =>
          i.name === "cli-jobs"
        ),
        [],
      );
    } finally {
      await holder.send("done");
      assert.equal((await holder.finish()).code, 0);
    }
    // store set and get: one document per schema.
    for (const [schema, value] of [["cli_a", "1"], ["cli_b", "2"]]) {
      const set = await lockbox(c, [
        "store",
        "set",
        "--db",
        c.url,
        "--schema",
        schema,
        "config",
        "/n",
        value,
      ]);
      assert.equal(set.code, 0, set.stderr);
    }
    for (const [schema, value] of [["cli_a", "1"], ["cli_b", "2"]]) {
      const get = await lockbox(c, [
        "store",
        "get",
        "--db",
        c.url,
        "--schema",
        schema,
        "config",
        "/n",
      ]);
      assert.equal(get.stdout.trim(), value, get.stderr);
    }
  },
);

pgTest(
  "lockbox groups and migrate with --schema keep their documents in that schema",
  async (c) => {
    const made = await lockbox(c, [
      "groups",
      "--db",
      c.url,
      "--schema",
      "seed_a",
      "create",
      "g1",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const listed = async (schema: string) =>
      (await lockbox(c, [
        "groups",
        "--db",
        c.url,
        "--schema",
        schema,
        "list",
      ])).stdout.trim();
    assert.equal(await listed("seed_a"), "g1");
    assert.equal(await listed("seed_b"), "");
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/state.json`, '{"n": 1}');
      const moved = await lockbox(c, [
        "migrate",
        "--db",
        c.url,
        "--schema",
        "seed_b",
        `${dir}/state.json`,
      ]);
      assert.equal(moved.code, 0, moved.stderr);
    });
    assert.equal(
      await c.sql(
        "SELECT value::text FROM seed_b.documents WHERE name = 'state'",
      ),
      '{"n": 1}',
    );
    assert.equal(
      await c.sql("SELECT count(*) FROM seed_a.documents WHERE name = 'state'"),
      "0",
    );
  },
);

pgTest(
  "lockbox --schema refuses a bad name and a schema without --db",
  async (c) => {
    const bad = await lockbox(c, [
      "holder",
      "--db",
      c.url,
      "--schema",
      "Team-A",
      "jobs",
    ]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /Cannot use schema 'Team-A'/);
    const noDb = await lockbox(c, ["status", "--schema", "cli_a"]);
    assert.equal(noDb.code, 2, noDb.stderr);
    assert.match(noDb.stderr, /--schema names a PostgreSQL schema/);
    const badEnv = await lockbox(
      c,
      ["status", "--db", "env"],
      { LOCKBOX_DATABASE_SCHEMA: "a;drop" },
    );
    assert.notEqual(badEnv.code, 0);
    assert.match(badEnv.stderr, /Cannot use schema 'a;drop'/);
  },
);

Deno.test("lockbox: every command that takes --db takes --schema", async () => {
  const { _program } = await import("../../src/cli/_program.ts");
  const missing: string[] = [];
  let found = 0;
  const walk = (
    command: Awaited<ReturnType<typeof _program>>,
    path: string,
  ) => {
    const longs = command.options.map((option) => option.long);
    if (longs.includes("--db")) {
      found++;
      if (!longs.includes("--schema")) missing.push(path);
    }
    for (const sub of command.commands) walk(sub, `${path} ${sub.name()}`);
  };
  walk(await _program(), "lockbox");
  assert.ok(found >= 15, `${found} commands with --db`);
  assert.deepEqual(missing, []);
});

stopAfterwards();
