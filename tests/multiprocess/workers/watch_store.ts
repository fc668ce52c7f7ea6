// Watches a store and prints "v VERSION COUNT ITEMS DISTINCT" per version
// (COUNT: the document's count or n; ITEMS: its items' length; DISTINCT:
// how many of them differ), "ready" after the first, and ends once COUNT
// reaches UNTIL. Usage: watch_store.ts TARGET UNTIL [--journal] [--db]
// (--db: TARGET is a document on the server the PG* variables name).
import { JsonStore } from "../../../mod.ts";

const [target, until, ...flags] = Deno.args;
type Doc = { count?: number; n?: number; items: string[] };
const controller = new AbortController();
let close = () => Promise.resolve();
let store: JsonStore<Doc>;
if (flags.includes("--db")) {
  const { PostgresBackend } = await import("../../../src/postgres/mod.ts");
  const db = await PostgresBackend.connect();
  close = () => db.close();
  store = db.jsonStore<Doc>(target, { initial: { n: 0, items: [] } });
} else {
  store = new JsonStore<Doc>(target, {
    // The writers' initial value, so that a journal store's first
    // snapshot (made before any update) is the same document.
    initial: { count: 0, items: [] },
    journal: flags.includes("--journal"),
  });
}
let first = true;
for await (
  const { value, version } of store.watch({ signal: controller.signal })
) {
  const count = value.count ?? value.n ?? 0;
  console.log(
    `v ${version} ${count} ${value.items.length} ${new Set(value.items).size}`,
  );
  if (first) console.log("ready");
  first = false;
  if (count >= Number(until)) controller.abort();
}
await close();
console.log("ended");
