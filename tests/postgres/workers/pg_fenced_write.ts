// Takes the PostgreSQL lock NAME and prints "token T BACKENDPID"; on a
// line from stdin, writes {by: "first"} to the document NAME fenced with
// that token, and prints "written" or "stale HIGHEST".
// Usage: pg_fenced_write.ts NAME
import { PostgresBackend, StaleFenceError } from "../../../src/postgres/mod.ts";

const [name] = Deno.args;
await using db = await PostgresBackend.connect();
const store = db.jsonStore<{ by: string }>(name, { initial: { by: "none" } });
const lock = await db.acquire(name);
const holder = await db.lockHolder(name);
console.log(`token ${lock.token} ${holder?.backendPid}`);
for await (const _ of Deno.stdin.readable) break;
try {
  await store.write({ by: "first" }, { fence: lock.token });
  console.log("written");
} catch (error) {
  if (!(error instanceof StaleFenceError)) throw error;
  console.log(`stale ${error.highest}`);
}
await lock.release();
