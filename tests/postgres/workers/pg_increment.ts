// COUNT locked, deliberately non-atomic increments of a counter file under
// a PostgreSQL lock; prints each token. Usage: pg_increment.ts FILE COUNT
import { PostgresBackend } from "../../../src/postgres/mod.ts";

const [file, count] = Deno.args;
await using db = await PostgresBackend.connect();
for (let i = 0; i < Number(count); i++) {
  await db.withLock("counter", async (lock) => {
    const n = Number(await Deno.readTextFile(file).catch(() => "0"));
    await new Promise((resolve) => setTimeout(resolve, 1));
    await Deno.writeTextFile(file, String(n + 1));
    console.log(`token ${lock.token}`);
  });
}
