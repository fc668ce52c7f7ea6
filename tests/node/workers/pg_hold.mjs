// The Node twin of tests/postgres/workers/pg_hold.ts (without --ticks).
// Usage: pg_hold.mjs NAME
import process from "node:process";
import { lockboxPostgres } from "./_lockbox.mjs";

const { PostgresBackend } = await lockboxPostgres();
const [name] = process.argv.slice(2);
const db = await PostgresBackend.connect();
const lock = await db.acquire(name);
const holder = await db.lockHolder(name);
console.log(`locked ${lock.token} ${holder?.backendPid}`);
lock.signal.addEventListener("abort", () => {
  console.log(`lost ${lock.signal.reason.message}`);
});
process.stdin.on("data", async (chunk) => {
  if (!String(chunk).includes("release")) return;
  await lock.release();
  await db.close();
  console.log("released");
  process.exit(0);
});
