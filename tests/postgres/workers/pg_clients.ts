// CLIENTS concurrent acquisitions of one name from this process, each on
// its own backend, recording when it held the lock: prints
// "held TOKEN START END" per critical section (performance.timeOrigin-based
// wall times in ms). Usage: pg_clients.ts NAME CLIENTS
import { PostgresBackend } from "../../../src/postgres/mod.ts";

const [name, clients] = Deno.args;
const backends = await Promise.all(
  Array.from({ length: Number(clients) }, () => PostgresBackend.connect()),
);
await Promise.all(backends.map(async (db) => {
  await db.withLock(name, async (lock) => {
    const start = performance.timeOrigin + performance.now();
    await new Promise((resolve) => setTimeout(resolve, 2));
    const end = performance.timeOrigin + performance.now();
    console.log(`held ${lock.token} ${start} ${end}`);
  });
}));
await Promise.all(backends.map((db) => db.close()));
