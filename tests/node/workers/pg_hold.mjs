// The Node twin of tests/postgres/workers/pg_hold.ts: holds a PostgreSQL
// lock, prints "locked TOKEN BACKENDPID", "lost REASON" when lock.signal
// aborts, and with --ticks every 100 ms "tick ABORTED" (what its own timer
// sees). Releases on "release" or when stdin ends.
// Usage: pg_hold.mjs NAME [--ticks]
import process from "node:process";
import { lockboxPostgres } from "./_lockbox.mjs";

const { PostgresBackend } = await lockboxPostgres();
const [name, ...flags] = process.argv.slice(2);
const db = await PostgresBackend.connect();
const lock = await db.acquire(name);
const holder = await db.lockHolder(name);
// Listening before "locked": a test may stop this process right after it.
lock.signal.addEventListener("abort", () => {
  console.log(`lost ${lock.signal.reason.message}`);
});
console.log(`locked ${lock.token} ${holder?.backendPid}`);
const ticks = flags.includes("--ticks")
  ? setInterval(() => console.log(`tick ${lock.signal.aborted}`), 100)
  : undefined;
async function done() {
  clearInterval(ticks);
  await lock.release();
  await db.close();
  console.log("released");
  process.exit(0);
}
process.stdin.on("data", (chunk) => {
  if (String(chunk).includes("release")) done();
});
process.stdin.on("end", done);
