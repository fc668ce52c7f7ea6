// The Node twin of tests/multiprocess/workers/watch_store.ts.
// Usage: watch_store.mjs TARGET UNTIL [--journal] [--db]
import process from "node:process";
import { lockbox, lockboxPostgres } from "./_lockbox.mjs";

const [target, until, ...flags] = process.argv.slice(2);
const controller = new AbortController();
let close = () => Promise.resolve();
let store;
if (flags.includes("--db")) {
  const { PostgresBackend } = await lockboxPostgres();
  const db = await PostgresBackend.connect();
  close = () => db.close();
  store = db.jsonStore(target, { initial: { n: 0, items: [] } });
} else {
  store = new lockbox.JsonStore(target, {
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
