// One process of the PostgreSQL store benchmark: COUNT read-modify-writes
// that push an item and bump a counter, on LOCKBOX_DATABASE_URL (or the
// PG* variables), by MODE.
// Usage: _pg_store_worker.ts MODE NAME COUNT PREFIX
//   MODE: lockbox (backend.jsonStore(NAME).update) |
//         raw (pg: BEGIN; SELECT ... FOR UPDATE; UPDATE; COMMIT on
//         bench_docs, the same work written by hand)
import pg from "pg";
import { PostgresBackend } from "../src/postgres/mod.ts";

type Doc = { count: number; items: string[] };
const [mode, name, countText, prefix] = Deno.args;
const count = Number(countText);
const url = Deno.env.get("LOCKBOX_DATABASE_URL");

if (mode === "lockbox") {
  await using db = await PostgresBackend.connect(url);
  const store = db.jsonStore<Doc>(name, {
    initial: { count: 0, items: [] },
    lockTimeout: Infinity,
  });
  for (let i = 0; i < count; i++) {
    await store.update((d) => {
      d.count++;
      d.items.push(`${prefix}-${i}`);
    });
  }
} else {
  const client = new pg.Client(url ? { connectionString: url } : {});
  await client.connect();
  for (let i = 0; i < count; i++) {
    await client.query("BEGIN");
    const { rows } = await client.query(
      "SELECT body FROM bench_docs WHERE name = $1 FOR UPDATE",
      [name],
    );
    const doc = rows[0].body as Doc;
    doc.count++;
    doc.items.push(`${prefix}-${i}`);
    await client.query("UPDATE bench_docs SET body = $2 WHERE name = $1", [
      name,
      JSON.stringify(doc),
    ]);
    await client.query("COMMIT");
  }
  await client.end();
}
