// The Node twin of tests/postgres/workers/pg_store_update.ts.
// Usage: pg_store_update.mjs NAME TAG COUNT
import process from "node:process";
import { lockboxPostgres } from "./_lockbox.mjs";

const { PostgresBackend } = await lockboxPostgres();
const [name, tag, count] = process.argv.slice(2);
const db = await PostgresBackend.connect();
const store = db.jsonStore(name, { initial: { n: 0, items: [] } });
const forever = Number(count) === 0;
for (let i = 0; forever || i < Number(count); i++) {
  const id = `${tag}-${i}`;
  const n = await store.update((doc) => {
    doc.n++;
    doc.items.push(id);
    return doc.n;
  });
  console.log(forever ? `ack ${id}` : `n ${n}`);
}
await db.close();
