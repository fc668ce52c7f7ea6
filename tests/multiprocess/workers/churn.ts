// Acquires and releases for MS milliseconds, with metadata of varying size.
// Usage: churn.ts PATH MS
import { FileLock } from "../../../mod.ts";

const [path, ms] = Deno.args;
const end = Date.now() + Number(ms);
let n = 0;
while (Date.now() < end) {
  const lock = await FileLock.acquire(path, {
    metadata: { note: "x".repeat((n * 37) % 900), n },
  });
  await lock.release();
  n++;
}
console.log(`done ${n}`);
