// tryAcquire on a free lock for MS milliseconds; prints how many failed.
// Usage: try_loop.ts PATH MS
import { FileLock } from "../../../mod.ts";

const [path, ms] = Deno.args;
const end = Date.now() + Number(ms);
let tries = 0;
let failed = 0;
while (Date.now() < end) {
  const lock = await FileLock.tryAcquire(path);
  tries++;
  if (lock) await lock.release();
  else failed++;
}
console.log(`tries ${tries} failed ${failed}`);
