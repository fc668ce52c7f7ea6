// PostgresBackend on Node, against the built package and a throwaway
// cluster: exclusion and tokens across Node processes, a killed session, a
// killed process, a server crash, a paused holder, many clients, timeout,
// abort, shared locks, the in-process queue and bad input.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import process from "node:process";
import { inspect } from "node:util";
import { after, before, test } from "node:test";
import { Cluster, NO_POSTGRES } from "./_cluster.mjs";
import { Child, CLI, nodeWorker, run, withTempDir } from "./_helpers.mjs";
import { lockbox, lockboxPostgres } from "./workers/_lockbox.mjs";

const { LockError, LockLostError, LockTimeoutError, PostgresBackend } =
  await lockboxPostgres();

let cluster;
before(() => {
  if (!NO_POSTGRES) cluster = Cluster.start();
});
after(() => cluster?.stop());

const skip = NO_POSTGRES
  ? "no PostgreSQL server (apt-get install postgresql)"
  : false;
const env = () => ({ ...process.env, ...cluster.env });

test(
  "Cluster.start() starts on another free port when the port asked for is taken",
  { skip },
  async () => {
    const taken = createServer();
    await new Promise((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address();
    // And the port a choice from the pid gives (57000 + pid % 2000, as these
    // tests once chose): another file's cluster could hold it.
    const fromPid = createServer();
    await new Promise((resolve) => {
      fromPid.once("error", resolve); // already someone else's: as good
      fromPid.listen(57000 + process.pid % 2000, "127.0.0.1", resolve);
    });
    try {
      const other = Cluster.start({ port });
      try {
        assert.notEqual(other.port, port);
        assert.equal(other.sql("SELECT 1"), "1");
      } finally {
        other.stop();
      }
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      if (fromPid.listening) {
        await new Promise((resolve) => fromPid.close(resolve));
      }
    }
  },
);

function tokens(child) {
  return child.lines.filter((l) => l.startsWith("token ")).map((l) =>
    Number(l.split(" ")[1])
  );
}

test(
  "PostgreSQL on Node: 4 processes x 50 increments under withLock end at 200, tokens strictly increasing",
  { skip },
  async () => {
    await withTempDir(async (dir) => {
      const counter = `${dir}/counter`;
      const children = [1, 2, 3, 4].map(() =>
        nodeWorker("pg_increment.mjs", [counter, "50"], { env: env() })
      );
      const results = await Promise.all(children.map((c) => c.finish()));
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, children[i].stderr);
      }
      assert.equal(readFileSync(counter, "utf8"), "200");
      const all = children.flatMap(tokens).sort((a, b) => a - b);
      assert.equal(all.length, 200);
      for (let i = 1; i < all.length; i++) assert.ok(all[i] > all[i - 1]);
    });
  },
);

test(
  "PostgreSQL on Node: SIGKILL of a holder frees the lock within a second; a terminated session aborts the signal",
  { skip },
  async () => {
    const holder = nodeWorker("pg_hold.mjs", ["node-killed"], { env: env() });
    await holder.waitFor("locked");
    const db = await PostgresBackend.connect(cluster.url);
    try {
      const waiting = db.acquire("node-killed", { timeout: 20_000 });
      const killedAt = performance.now();
      holder.process.kill("SIGKILL");
      const lock = await waiting;
      assert.ok(performance.now() - killedAt < 1000);
      const lost = new Promise((resolve) =>
        lock.signal.addEventListener("abort", () => resolve(lock.signal.reason))
      );
      const { backendPid } = await db.lockHolder("node-killed");
      cluster.sql(`SELECT pg_terminate_backend(${backendPid})`);
      assert.ok(await lost instanceof LockLostError);
      assert.equal(lock.held, false);
    } finally {
      await holder.finish();
      await db.close();
    }
  },
);

test(
  "PostgreSQL on Node: a server crash aborts the holder's signal; tokens keep growing after it",
  { skip },
  async () => {
    const db = await PostgresBackend.connect(cluster.url);
    const first = await db.acquire("node-crash");
    const lost = new Promise((resolve) =>
      first.signal.addEventListener("abort", () => resolve(first.signal.reason))
    );
    cluster.crash();
    assert.ok(await lost instanceof LockLostError);
    await db.close();
    const again = await PostgresBackend.connect(cluster.url);
    const next = await again.acquire("node-crash");
    assert.ok(next.token > first.token);
    await next.release();
    await again.close();
  },
);

test(
  "PostgreSQL on Node: a paused holder finds its signal aborted at its next timer",
  { skip },
  async () => {
    const holder = new Child(process.execPath, [
      new URL("./workers/pg_hold.mjs", import.meta.url).pathname,
      "node-paused",
      "--ticks",
    ], { env: env() });
    const db = await PostgresBackend.connect(cluster.url);
    try {
      await holder.waitFor("locked");
      const [, token, backendPid] = holder.lines.find((l) =>
        l.startsWith("locked")
      )
        .split(" ");
      holder.process.kill("SIGSTOP");
      cluster.sql(`SELECT pg_terminate_backend(${backendPid})`);
      const next = await db.acquire("node-paused", { timeout: 20_000 });
      assert.ok(next.token > Number(token));
      await new Promise((resolve) => setTimeout(resolve, 5500));
      const before = holder.lines.filter((l) => l.startsWith("tick")).length;
      holder.process.kill("SIGCONT");
      const deadline = Date.now() + 30_000;
      while (
        holder.lines.filter((l) => l.startsWith("tick")).length <= before
      ) {
        assert.ok(Date.now() < deadline, "no tick after SIGCONT");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(
        holder.lines.filter((l) => l.startsWith("tick"))[before],
        "tick true",
      );
      await next.release();
    } finally {
      holder.process.kill("SIGCONT");
      holder.process.kill("SIGKILL");
      await holder.finish();
      await db.close();
    }
  },
);

test(
  "PostgreSQL on Node: 60 clients on one name never overlap and get tokens 1..60",
  { skip },
  async () => {
    const name = `node-many-${process.pid}`;
    const backends = await Promise.all(
      Array.from({ length: 60 }, () => PostgresBackend.connect(cluster.url)),
    );
    const sections = [];
    await Promise.all(backends.map((db) =>
      db.withLock(name, async (lock) => {
        const start = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 1));
        sections.push([lock.token, start, performance.now()]);
      })
    ));
    await Promise.all(backends.map((db) => db.close()));
    sections.sort((a, b) => a[0] - b[0]);
    assert.deepEqual(
      sections.map((s) => s[0]),
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
    for (let i = 1; i < sections.length; i++) {
      assert.ok(sections[i][1] >= sections[i - 1][2]);
    }
    assert.equal(
      cluster.sql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
      ),
      "0",
    );
  },
);

test(
  "PostgreSQL on Node: timeout, abort, shared locks, tryAcquire, the in-process queue, bad input",
  { skip },
  async () => {
    const a = await PostgresBackend.connect(cluster.url);
    const b = await PostgresBackend.connect(cluster.url);
    try {
      const held = await a.acquire("node-t");
      const started = performance.now();
      await assert.rejects(
        b.acquire("node-t", { timeout: 300 }),
        LockTimeoutError,
      );
      const waited = performance.now() - started;
      assert.ok(waited >= 300 && waited < 1300, `waited ${waited}`);
      const controller = new AbortController();
      const aborting = b.acquire("node-t", { signal: controller.signal });
      setTimeout(() => controller.abort(new Error("stop")), 100);
      await assert.rejects(aborting, /stop/);
      assert.equal(await b.tryAcquire("node-t"), null);
      let second = false;
      const queued = a.acquire("node-t").then((lock) => (second = true, lock));
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(second, false);
      await held.release();
      await (await queued).release();
      const s1 = await a.acquire("node-s", { shared: true });
      const s2 = await b.acquire("node-s", { shared: true });
      assert.equal(await b.tryAcquire("node-s"), null);
      await s1.release();
      await s2.release();
      await assert.rejects(a.acquire(""), TypeError);
      await assert.rejects(a.acquire("x".repeat(201)), RangeError);
      await assert.rejects(
        PostgresBackend.connect("postgres://postgres@127.0.0.1:1/postgres", {
          connectTimeout: 2000,
        }),
        (error) =>
          error instanceof LockError &&
          /check that the server runs/.test(error.message),
      );
    } finally {
      await a.close();
      await b.close();
    }
  },
);

test(
  "PostgreSQL on Node: the CLI's run --db excludes a second run and holder --db names the holder",
  { skip },
  async () => {
    const holder = new Child(process.execPath, [
      CLI,
      "run",
      "--db",
      cluster.url,
      "node-cli",
      "sh",
      "-c",
      "echo locked; read line",
    ], { env: env() });
    try {
      await holder.waitFor("locked");
      const busy = run(process.execPath, [
        CLI,
        "run",
        "--db",
        cluster.url,
        "-n",
        "node-cli",
        "true",
      ], { env: env() });
      assert.equal(busy.code, 1, busy.stderr);
      const who = run(process.execPath, [
        CLI,
        "holder",
        "--db",
        "env",
        "node-cli",
      ], { env: env() });
      assert.equal(who.code, 0, who.stderr);
      assert.match(who.stdout, /^held exclusive by pid \d+/);
    } finally {
      holder.process.stdin.end("done\n");
      assert.equal((await holder.finish()).code, 0);
    }
    const free = run(process.execPath, [
      CLI,
      "holder",
      "--db",
      cluster.url,
      "node-cli",
    ], { env: env() });
    assert.equal(free.code, 1);
  },
);

test(
  "PostgreSQL on Node: two schemas do not exclude each other, one schema does, and the CLI's --schema picks one",
  { skip },
  async () => {
    await assert.rejects(
      PostgresBackend.connect(cluster.url, { schema: "Team-A" }),
      (error) =>
        error instanceof TypeError &&
        /^Cannot use schema 'Team-A'/.test(error.message),
    );
    const a = await PostgresBackend.connect(cluster.url, { schema: "node_a" });
    const a2 = await PostgresBackend.connect(cluster.url, { schema: "node_a" });
    const b = await PostgresBackend.connect(cluster.url, { schema: "node_b" });
    try {
      const inA = await a.acquire("node-jobs");
      const inB = await b.acquire("node-jobs", { timeout: 10_000 });
      assert.equal(inA.token, 1);
      assert.equal(inB.token, 1);
      assert.equal(await a2.tryAcquire("node-jobs"), null);
      await inB.release();
      const cli = (schema) =>
        run(process.execPath, [
          CLI,
          "holder",
          "--db",
          cluster.url,
          "--schema",
          schema,
          "node-jobs",
        ], { env: env() });
      const held = cli("node_a");
      assert.equal(held.code, 0, held.stderr);
      assert.match(held.stdout, /^held exclusive by pid \d+/);
      const free = cli("node_b");
      assert.equal(free.code, 1, free.stderr);
      assert.equal(free.stdout.trim(), "free");
      await inA.release();
      const again = await b.acquire("node-jobs");
      assert.equal(again.token, 2);
      await again.release();
    } finally {
      await Promise.all([a.close(), a2.close(), b.close()]);
    }
  },
);

test(
  "PostgreSQL store on Node: update, versions, a stale fence refused, validate, backups, and a SIGKILLed Node writer loses no acknowledged update",
  { skip },
  async () => {
    const { StaleFenceError, CorruptStoreError } = await lockboxPostgres();
    const db = await PostgresBackend.connect(cluster.url);
    try {
      const store = db.jsonStore("node-doc", {
        initial: { n: 0 },
        backups: 1,
        validate: (v) => {
          if (typeof v?.n !== "number") throw new TypeError("n is a number");
          return v;
        },
      });
      assert.equal(await store.update((d) => ++d.n), 1);
      const first = await db.acquire("node-doc");
      await store.update((d) => void d.n++, { fence: first.token });
      await first.release();
      const second = await db.acquire("node-doc");
      await assert.rejects(
        store.update((d) => void d.n++, { fence: first.token }),
        StaleFenceError,
      );
      // One class per error in the package, whichever entry point threw it.
      await assert.rejects(
        store.update((d) => void d.n++, { fence: first.token }),
        lockbox.StaleFenceError,
      );
      assert.equal(lockbox.StaleFenceError, StaleFenceError);
      await second.release();
      assert.deepEqual(await store.readWithVersion(), {
        value: { n: 2 },
        version: 2,
      });
      assert.deepEqual(await store.readBackup(1), { n: 1 });
      await assert.rejects(store.write({ n: "x" }), /n is a number/);
      cluster.sql(
        `UPDATE lockbox.documents SET value = '{"n": "x"}' WHERE name = 'node-doc'`,
      );
      await assert.rejects(store.read(), CorruptStoreError);
      await assert.rejects(store.read(), lockbox.CorruptStoreError);
      assert.ok(store instanceof lockbox.JsonStore);

      const writer = nodeWorker("pg_store_update.mjs", [
        "node-killed-doc",
        "w",
        "0",
      ], {
        env: env(),
      });
      await writer.waitFor("ack w-20");
      writer.process.kill("SIGKILL");
      await writer.finish();
      const acked = writer.lines.filter((l) => l.startsWith("ack ")).map((l) =>
        l.slice(4)
      );
      const doc = await db.jsonStore("node-killed-doc", { initial: {} }).read();
      assert.equal(doc.n, doc.items.length);
      for (const id of acked) assert.ok(doc.items.includes(id), id);
    } finally {
      await db.close();
    }
  },
);

test(
  "PostgreSQL seeds on Node: capture groups, checkout, the archiver's state and instance lock, and the document store with { backend }",
  { skip },
  async () => {
    const {
      AlreadyCheckedOutError,
      CaptureGroups,
      CheckoutRegistry,
      DocumentStore,
      LockBusyError,
      acquireInstanceLock,
      readState,
      updateContiguousRunState,
    } = lockbox;
    const db = await PostgresBackend.connect(cluster.url);
    try {
      const groups = new CaptureGroups("node-groups", { backend: db });
      const id = await groups.create("constructor");
      await groups.addTransaction(id, "t1");
      assert.deepEqual(await groups.transactions("constructor"), ["t1"]);

      const registry = new CheckoutRegistry("node-checkouts", { backend: db });
      await registry.checkout("a.mcam", "ann");
      await assert.rejects(
        registry.checkout("a.mcam", "bob"),
        AlreadyCheckedOutError,
      );

      const state = await updateContiguousRunState("node-state", [1, 2, 4], {
        backend: db,
      });
      assert.equal(state.last_contiguous_run, 2);
      assert.deepEqual(await readState("node-state", { backend: db }), state);
      const instance = await acquireInstanceLock("node-archiver", {
        backend: db,
      });
      await assert.rejects(
        acquireInstanceLock("node-archiver", { backend: db }),
        LockBusyError,
      );
      await instance.release();

      const docs = new DocumentStore("node-docs", { backend: db, backups: 2 });
      await docs.save("r1", { v: 1 }, { actor: "ann" });
      await docs.update("r1", (doc) => void doc.v++);
      assert.deepEqual(await docs.get("r1"), { v: 2 });
      assert.deepEqual(
        (await docs.history("r1")).map((e) => e.action_type),
        ["save", "update"],
      );
      assert.deepEqual(await docs.backups("r1"), ["v1"]);
      assert.deepEqual(await docs.list(), ["r1"]);
    } finally {
      await db.close();
    }
  },
);

test(
  "PostgreSQL store on Node: every acknowledged update survives a server crash, and the store goes on without manual steps",
  { skip },
  async () => {
    const db = await PostgresBackend.connect(cluster.url);
    try {
      const store = db.jsonStore("node-crash", { initial: { n: 0 } });
      for (let i = 0; i < 10; i++) await store.update((d) => void d.n++);
      cluster.crash();
      assert.deepEqual(await store.read(), { n: 10 });
      await store.update((d) => void d.n++);
      assert.deepEqual(await store.readWithVersion(), {
        value: { n: 11 },
        version: 11,
      });
    } finally {
      await db.close();
    }
  },
);

test(
  "PostgreSQL watch on Node: versions grow, a write made while its LISTEN session is cut off is yielded, and abort ends it",
  { skip },
  async () => {
    const db = await PostgresBackend.connect(cluster.url);
    try {
      const store = db.jsonStore("node-watched", { initial: { n: 0 } });
      const controller = new AbortController();
      const seen = [];
      let first;
      const started = new Promise((resolve) => first = resolve);
      let caught;
      const caughtUp = new Promise((resolve) => caught = resolve);
      const watching = (async () => {
        for await (
          const { value, version } of store.watch({
            signal: controller.signal,
            recheckInterval: 600_000,
          })
        ) {
          seen.push([version, value.n]);
          first();
          if (value.n === 2) caught();
          if (value.n === 3) controller.abort();
        }
      })();
      await started;
      cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN lockbox_documents'",
      );
      await store.write({ n: 1 });
      await store.write({ n: 2 });
      await caughtUp;
      await store.write({ n: 3 });
      await watching;
      assert.deepEqual(seen[0], [0, 0]);
      assert.deepEqual(seen.at(-1), [3, 3]);
      for (let i = 1; i < seen.length; i++) {
        assert.ok(seen[i][0] > seen[i - 1][0]);
      }
    } finally {
      await db.close();
    }
  },
);

test(
  "PostgreSQL on Node: no error, cause, stack or CLI output shows a password when the URL is malformed",
  { skip },
  async () => {
    const port = cluster.port;
    const shapes = [
      ["postgres://user:S3CRET@127.0.0.1:5540x/db", TypeError],
      ["postgres://user:S3CRET@[::1/db", TypeError],
      [`postgres://user:S3CRET%zzX9Y8@127.0.0.1:${port}/db`, TypeError],
      ["postgres://user:S3CRET@X9Y8@127.0.0.1:1/db", LockError],
      ["postgres://user:S3CRET:X9Y8@127.0.0.1:1/db", LockError],
      ["postgres://user:S3CRET/X9Y8@127.0.0.1:1/db", TypeError],
      ["postgres://user@127.0.0.1:1/db?password=S3CRET", LockError],
      [`host=127.0.0.1 port=${port} password=S3CRET`, TypeError],
      [`postgres://postgres:S3CRET@127.0.0.1:${port}/nodb`, LockError],
    ];
    const clean = (text, what) => {
      for (const secret of ["S3CRET", "X9Y8"]) {
        assert.ok(!text.includes(secret), `${what} shows ${secret}: ${text}`);
      }
    };
    for (const [url, type] of shapes) {
      const error = await PostgresBackend.connect(url).then(
        () => assert.fail(`${url}: connected`),
        (error) => error,
      );
      assert.ok(error instanceof type, `${url}: ${error}`);
      clean(`${error.stack}\n${inspect(error, { depth: 9 })}`, "the error");
      const direct = run(process.execPath, [CLI, "holder", "--db", url, "x"]);
      assert.equal(direct.code, type === TypeError ? 2 : 3, direct.stderr);
      clean(direct.stdout + direct.stderr, "holder --db");
      const fromEnv = run(process.execPath, [
        CLI,
        "status",
        "--db",
        "env",
        "--json",
      ], { env: { ...process.env, LOCKBOX_DATABASE_URL: url } });
      assert.notEqual(fromEnv.code, 0);
      clean(fromEnv.stdout + fromEnv.stderr, "status --db env --json");
    }
  },
);

test(
  "PostgreSQL on Node: lockbox migrate keeps a Python-written file's number texts and key order in the json column",
  { skip },
  async () => {
    await withTempDir((dir) => {
      const file = `${dir}/py.json`;
      const made = run("python3", [
        "-c",
        `import json, sys
json.dump({"b": 1, "10": "ten", "2": "two", "big": 12345678901234567890123,
           "one": 1.0, "negzero": -0.0, "small": 1e-07, "text": "caf\\u00e9"},
          open(sys.argv[1], "w"), indent=2)`,
        file,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const before = readFileSync(file, "utf8");
      const moved = run(process.execPath, [
        CLI,
        "migrate",
        "--db",
        cluster.url,
        `${file}=node/py`,
      ]);
      assert.equal(moved.code, 0, moved.stderr);
      assert.match(moved.stdout, /^copied .* -> node\/py /);
      assert.equal(readFileSync(file, "utf8"), before);
      assert.equal(
        cluster.sql(
          "SELECT value::text FROM lockbox.documents WHERE name = 'node/py'",
        ),
        '{"b": 1, "10": "ten", "2": "two", "big": 12345678901234567890123, "one": 1.0, "negzero": -0.0, "small": 1e-07, "text": "caf\u00e9"}',
      );
      const again = run(process.execPath, [
        CLI,
        "migrate",
        "--db",
        cluster.url,
        `${file}=node/py`,
      ]);
      assert.match(again.stdout, /^same .*already there/);
    });
  },
);

test(
  "lockbox run --db on Node keeps the lock until the command's whole group is stopped when lockbox is SIGKILLed",
  { skip },
  async () => {
    const first = new Child(process.execPath, [
      CLI,
      "run",
      "--db",
      cluster.url,
      "node-oom",
      "sh",
      "-c",
      'sleep 300 & echo "pids $$ $!"; echo locked; wait',
    ]);
    await first.waitFor("locked");
    const pids = first.lines.find((l) => l.startsWith("pids ")).split(" ")
      .slice(1);
    try {
      first.process.kill("SIGKILL");
      // The next command to get the lock finds none of the first's running
      // (a zombie, Z, has exited).
      const states = `for p in ${pids.join(" ")}; do ` +
        `s=$(cat /proc/$p/stat 2>/dev/null) && s=\${s##*") "} && ` +
        `echo "$p \${s%% *}" || echo "$p gone"; done`;
      let next;
      for (let attempt = 0;; attempt++) {
        next = run(process.execPath, [
          CLI,
          "run",
          "-n",
          "--db",
          cluster.url,
          "node-oom",
          "sh",
          "-c",
          states,
        ]);
        if (next.code === 0) break;
        assert.equal(next.code, 1, next.stderr);
        assert.ok(attempt < 500, "the lock never came free");
      }
      const running = next.stdout.trim().split("\n").filter((line) =>
        !/ (gone|Z)$/.test(line)
      );
      assert.deepEqual(running, [], next.stdout);
      await first.finish();
    } finally {
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // Gone.
        }
      }
    }
  },
);
