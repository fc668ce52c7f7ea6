// The Node twin of tests/postgres/workers/pg_increment.ts.
// Usage: pg_increment.mjs FILE COUNT
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { lockboxPostgres } from "./_lockbox.mjs";

const { PostgresBackend } = await lockboxPostgres();
const [file, count] = process.argv.slice(2);
const db = await PostgresBackend.connect();
for (let i = 0; i < Number(count); i++) {
  await db.withLock("counter", async (lock) => {
    let n = 0;
    try {
      n = Number(readFileSync(file, "utf8"));
    } catch { /* first */ }
    await new Promise((resolve) => setTimeout(resolve, 1));
    writeFileSync(file, String(n + 1));
    console.log(`token ${lock.token}`);
  });
}
await db.close();
