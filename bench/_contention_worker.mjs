// One process of bench/node_contention.mjs: COUNT iterations of a durable
// store update and a locked counter increment, by SUBJECT; prints
// "ready" once loaded, waits for a line on stdin, then prints
// "times START END CPU" (ms since the epoch; process.cpuUsage()) around its
// iterations.
// Usage: _contention_worker.mjs SUBJECT STORE COUNTER COUNT
//   SUBJECT: lockbox (the npm build on Node, or mod.ts on Deno) |
//            proper-lockfile (with write-file-atomic)
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";

const [subject, store, counter, countText] = process.argv.slice(2);
const count = Number(countText);
const onDeno = typeof globalThis.Deno !== "undefined";

/** Reads the counter, adds one, writes it back (under the caller's lock). */
function increment() {
  writeFileSync(counter, String(Number(readFileSync(counter, "utf8")) + 1));
}

let iteration;
if (subject === "lockbox") {
  const url = onDeno
    ? new URL("../mod.ts", import.meta.url).href
    : new URL("../dist/npm/mod.js", import.meta.url).href;
  const { JsonStore, withLock } = await import(url);
  // Default options: durable, a lock per update, nothing kept open.
  const json = new JsonStore(store, { initial: { n: 0 } });
  iteration = async () => {
    await json.update((data) => {
      data.n++;
    });
    await withLock(counter, increment);
  };
} else if (subject === "proper-lockfile") {
  const require = createRequire(
    new URL("../dist/bench-node/package.json", import.meta.url),
  );
  const lockfile = require("proper-lockfile");
  const writeFileAtomic = require("write-file-atomic");
  // Retries as a contended user sets them (the default, 0, fails at once).
  const options = {
    retries: { retries: 10_000, minTimeout: 1, maxTimeout: 20 },
  };
  iteration = async () => {
    const release = await lockfile.lock(store, options);
    try {
      const data = JSON.parse(readFileSync(store, "utf8"));
      data.n++;
      // write-file-atomic's defaults: a temporary file, fsync, rename.
      await writeFileAtomic(store, JSON.stringify(data));
    } finally {
      await release();
    }
    const releaseCounter = await lockfile.lock(counter, options);
    try {
      increment();
    } finally {
      await releaseCounter();
    }
  };
} else {
  throw new Error(`unknown subject '${subject}'`);
}

// Every process starts its iterations together: it says it is ready (its
// runtime started, the modules loaded) and waits for the word to go.
console.log("ready");
await new Promise((resolve) => process.stdin.once("data", resolve));
process.stdin.pause();
const start = Date.now();
for (let i = 0; i < count; i++) await iteration();
console.log(
  `times ${start} ${Date.now()} ${JSON.stringify(process.cpuUsage())}`,
);
