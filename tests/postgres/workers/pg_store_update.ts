// COUNT updates of the PostgreSQL document NAME, each adding TAG-i to its
// items and 1 to n; prints "n N" with the n each committed update made.
// COUNT 0 loops until killed, printing "ack TAG-i" after each commit.
// Usage: pg_store_update.ts NAME TAG COUNT
import { PostgresBackend } from "../../../src/postgres/mod.ts";

const [name, tag, count] = Deno.args;
await using db = await PostgresBackend.connect();
const store = db.jsonStore(name, {
  initial: { n: 0, items: [] as string[] },
});
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
