// The Node twin of tests/postgres/workers/pg_fenced_write.ts.
// Usage: pg_fenced_write.mjs NAME
import process from "node:process";
import { lockboxPostgres } from "./_lockbox.mjs";

const { PostgresBackend, StaleFenceError } = await lockboxPostgres();
const [name] = process.argv.slice(2);
const db = await PostgresBackend.connect();
const store = db.jsonStore(name, { initial: { by: "none" } });
const lock = await db.acquire(name);
const holder = await db.lockHolder(name);
console.log(`token ${lock.token} ${holder?.backendPid}`);
await new Promise((resolve) => process.stdin.once("data", resolve));
try {
  await store.write({ by: "first" }, { fence: lock.token });
  console.log("written");
} catch (error) {
  if (!(error instanceof StaleFenceError)) throw error;
  console.log(`stale ${error.highest}`);
}
await lock.release();
await db.close();
process.stdin.destroy();
