// `deno task bench`: PostgresBackend's lock beside its floor, and the
// hand-off between two processes. Against LOCKBOX_DATABASE_URL (or the PG*
// variables) when set; else against a throwaway cluster when PostgreSQL's
// server is installed (fsync on); else it says why it is skipped.

import pg from "pg";
import { fileURLToPath } from "node:url";
import { type PgJsonStore, PostgresBackend } from "../src/postgres/mod.ts";
import { benchServer } from "./_postgres.ts";

const { url, skip } = await benchServer("postgres_bench");

const backend = skip ? null : await PostgresBackend.connect(url);
const raw = skip ? null : new pg.Client(url ? { connectionString: url } : {});
// Stopping the throwaway cluster at the end ends this session too.
raw?.on("error", () => {});
await raw?.connect();
// The floor uses lockbox's own row, so both touch the same tables.
const id = skip ? 0 : await (async () => {
  const lock = await backend!.acquire("bench");
  await lock.release();
  const { rows } = await raw!.query(
    "SELECT id FROM lockbox.locks WHERE name = 'bench'",
  );
  return rows[0].id as number;
})();

Deno.bench({
  name: "floor: pg_advisory_lock + committed fence UPDATE + pg_advisory_unlock",
  group: "PostgreSQL acquire+release (uncontended)",
  baseline: true,
  ignore: skip,
  async fn() {
    await raw!.query("SELECT pg_advisory_lock($1, $2)", [0x6c6f636b, id]);
    await raw!.query(
      "UPDATE lockbox.locks SET fence = fence + 1 WHERE id = $1 RETURNING fence",
      [id],
    );
    await raw!.query("SELECT pg_advisory_unlock($1, $2)", [0x6c6f636b, id]);
  },
});

Deno.bench({
  name: "lockbox PostgresBackend.acquire + release (token, holder record)",
  group: "PostgreSQL acquire+release (uncontended)",
  ignore: skip,
  async fn() {
    const lock = await backend!.acquire("bench");
    await lock.release();
  },
});

// Hand-off: this process holds the lock while a child waits for it on the
// server; timed from our release() to the child's first byte after it got
// the lock (one pipe write and read included: an upper bound).
const child = skip ? null : new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--allow-all",
    fileURLToPath(new URL("./_pg_handoff_child.ts", import.meta.url)),
  ],
  env: url ? { LOCKBOX_DATABASE_URL: url } : {},
  stdin: "piped",
  stdout: "piped",
}).spawn();
const toChild = child?.stdin.getWriter();
const fromChild = child?.stdout.getReader();
await fromChild?.read(); // "ready"

Deno.bench({
  name: "lockbox hand-off: release -> waiting process holds it",
  group: "PostgreSQL hand-off between two processes",
  ignore: skip,
  async fn(b) {
    const lock = await backend!.acquire("handoff");
    await toChild!.write(new TextEncoder().encode("go\n"));
    // The child's wait is on the server once pg_locks shows it.
    while (
      (await raw!.query(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
      )).rows.length === 0
    ) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    b.start();
    const from = performance.now();
    await lock.release();
    await fromChild!.read();
    b.end();
    handoffs.push(performance.now() - from);
  },
});

// deno bench prints no median: the hand-off's, from the same samples.
const handoffs: number[] = [];
globalThis.addEventListener("unload", () => {
  if (handoffs.length === 0) return;
  const sorted = handoffs.sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  console.log(
    `PostgreSQL hand-off: median ${at(0.5).toFixed(2)} ms, p99 ${
      at(0.99).toFixed(2)
    } ms over ${sorted.length} hand-offs`,
  );
});

globalThis.addEventListener("unload", () => {
  child?.kill();
});

// Stores: 8 processes x 250 updates of one document (it grows to 2,000
// items), lockbox's PgJsonStore beside the same read-modify-write in raw
// SQL, and the durable file journal on this host.
const PROCESSES = 8;
const UPDATES = 250;
const pgWorker = fileURLToPath(
  new URL("./_pg_store_worker.ts", import.meta.url),
);
const fileWorker = fileURLToPath(
  new URL("./_store_worker.ts", import.meta.url),
);
const fileDir = Deno.makeTempDirSync({ prefix: "lockbox_pg_bench_" });
let runs = 0;
let made = false;

async function race(worker: string, mode: string, name: string) {
  const children = Array.from(
    { length: PROCESSES },
    (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", worker, mode, name, String(UPDATES), `p${i}`],
        env: url ? { LOCKBOX_DATABASE_URL: url } : {},
        stdout: "null",
      }).output(),
  );
  for (const result of await Promise.all(children)) {
    if (!result.success) throw new Error(`a ${mode} worker failed`);
  }
}

Deno.bench({
  name: "floor: raw SQL (BEGIN; SELECT ... FOR UPDATE; UPDATE; COMMIT)",
  group: `PostgreSQL store, ${PROCESSES} processes x ${UPDATES} updates`,
  baseline: true,
  ignore: skip,
  n: 3,
  warmup: 1,
  async fn(b) {
    const name = `raw-${runs++}`;
    if (!made) {
      await raw!.query(
        "CREATE TABLE IF NOT EXISTS bench_docs (name text PRIMARY KEY, body json NOT NULL)",
      );
      made = true;
    }
    await raw!.query(
      'INSERT INTO bench_docs VALUES ($1, \'{"count":0,"items":[]}\')',
      [name],
    );
    b.start();
    await race(pgWorker, "raw", name);
    b.end();
  },
});

Deno.bench({
  name: "lockbox backend.jsonStore(name).update, durable",
  group: `PostgreSQL store, ${PROCESSES} processes x ${UPDATES} updates`,
  ignore: skip,
  n: 3,
  warmup: 1,
  async fn(b) {
    const name = `lockbox-${runs++}`;
    b.start();
    await race(pgWorker, "lockbox", name);
    b.end();
  },
});

Deno.bench({
  name: "one host: JsonStore journal, durable: true (files)",
  group: `PostgreSQL store, ${PROCESSES} processes x ${UPDATES} updates`,
  ignore: skip,
  n: 3,
  warmup: 1,
  async fn(b) {
    const path = `${fileDir}/journal-${runs++}.json`;
    b.start();
    await race(fileWorker, "journal-durable", path);
    b.end();
  },
});

// One update as the document grows: a large document's update sends only
// its change (a row of lockbox.document_changes). Each document is made at
// its bench's first (warm-up) call, so that its writes do not load the
// server while the lock benches above run.
for (const size of [1_000, 100_000, 1_000_000]) {
  let store: PgJsonStore<{ n: number; items: string[] }> | null = null;
  Deno.bench({
    name: `one update of a ${size.toLocaleString("en")}-item document`,
    group: "PostgreSQL store, one update by document size",
    baseline: size === 1_000,
    ignore: skip,
    async fn() {
      if (store === null) {
        store = backend!.jsonStore(`size-${size}`, {
          initial: { n: 0, items: [] },
        });
        await store.write({
          n: 0,
          items: Array.from({ length: size }, (_, i) => `item-${i}`),
        });
      }
      await store.update((d) => void d.n++);
    },
  });
}

globalThis.addEventListener("unload", () => {
  Deno.removeSync(fileDir, { recursive: true });
});
// The throwaway cluster stops itself when this process ends (Cluster.start).
