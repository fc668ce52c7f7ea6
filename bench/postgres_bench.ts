// `deno task bench`: PostgresBackend's lock beside its floor, and the
// hand-off between two processes. Against LOCKBOX_DATABASE_URL (or the PG*
// variables) when set; else against a throwaway cluster when PostgreSQL's
// server is installed (fsync on); else it says why it is skipped.

import pg from "pg";
import { fileURLToPath } from "node:url";
import { PostgresBackend } from "../src/postgres/mod.ts";
import { Cluster, PG_BIN } from "../tests/postgres/_cluster.ts";

const configured = Deno.env.get("LOCKBOX_DATABASE_URL") ??
  (Deno.env.get("PGHOST") ? "" : undefined);
let cluster: Cluster | null = null;
if (configured === undefined && PG_BIN !== null) {
  cluster = await Cluster.start();
}
const url = cluster?.url ?? (configured || undefined);
const skip = configured === undefined && cluster === null;
if (skip) {
  console.log(
    "postgres_bench: skipped: set LOCKBOX_DATABASE_URL (or PGHOST) or install PostgreSQL's server",
  );
}

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
// The throwaway cluster stops itself when this process ends (Cluster.start).
