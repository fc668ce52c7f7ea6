// Holds a PostgreSQL lock and reports: "locked TOKEN BACKENDPID", then
// "lost REASON" when lock.signal aborts, and every 100 ms "tick ABORTED"
// (what its own timer sees). Releases on "release" from stdin.
// Usage: pg_hold.ts NAME [--shared] [--ticks]
import { PostgresBackend } from "../../../src/postgres/mod.ts";

const [name, ...flags] = Deno.args;
const db = await PostgresBackend.connect();
const lock = await db.acquire(name, { shared: flags.includes("--shared") });
const holder = await db.lockHolder(name);
// Listening before "locked": a test may stop this process right after it.
lock.signal.addEventListener("abort", () => {
  console.log(`lost ${(lock.signal.reason as Error).message}`);
});
console.log(`locked ${lock.token} ${holder?.backendPid}`);
const ticks = flags.includes("--ticks")
  ? setInterval(() => console.log(`tick ${lock.signal.aborted}`), 100)
  : undefined;
for await (const chunk of Deno.stdin.readable) {
  if (new TextDecoder().decode(chunk).includes("release")) break;
}
clearInterval(ticks);
await lock.release();
await db.close();
console.log("released");
