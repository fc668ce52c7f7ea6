// Acquires and releases for MS milliseconds, or with "stdin" until stdin
// closes, with metadata of varying size.
// Usage: churn.ts PATH MS|stdin
import { FileLock } from "../../../mod.ts";

const [path, ms] = Deno.args;
let stop = false;
let end = Infinity;
if (ms === "stdin") {
  (async () => {
    for await (const _ of Deno.stdin.readable) { /* until closed */ }
    stop = true;
  })();
  console.log("ready");
} else {
  end = Date.now() + Number(ms);
}
let n = 0;
while (!stop && Date.now() < end) {
  const lock = await FileLock.acquire(path, {
    metadata: { note: "x".repeat((n * 37) % 900), n },
  });
  await lock.release();
  n++;
  // Acquire and release can settle without a trip through the event loop:
  // let the end of stdin be seen.
  if (ms === "stdin" && n % 20 === 0) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
console.log(`done ${n}`);
