// Takes PostgreSQL lock FIRST, says "holding", waits for "go" on stdin,
// then takes SECOND inside it. Prints "done", or "deadlock <cycle JSON>".
// Usage: pg_nest.ts FIRST SECOND [DEADLOCK_TIMEOUT_MS]
import { DeadlockError, PostgresBackend } from "../../../src/postgres/mod.ts";

const [first, second, deadlockTimeout] = Deno.args;
const options = deadlockTimeout === undefined
  ? {}
  : { deadlockTimeout: Number(deadlockTimeout) };
const db = await PostgresBackend.connect();
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  .getReader();
try {
  await db.withLock(first, async () => {
    console.log("holding");
    let text = "";
    while (!text.includes("go")) {
      const { value, done } = await lines.read();
      if (done) return;
      text += value;
    }
    await db.withLock(second, () => {}, options);
  }, options);
  console.log("done");
} catch (error) {
  if (!(error instanceof DeadlockError)) throw error;
  console.log(`deadlock ${JSON.stringify(error.cycle)}`);
} finally {
  await lines.cancel();
  await db.close();
}
