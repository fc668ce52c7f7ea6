// Starts a worker thread that waits for the FileLock on PATH, terminates the
// thread on the line "terminate" on stdin, and exits when stdin ends. A
// process of its own, so that what a terminated thread leaves behind in the
// native flock module cannot reach the test runner's later tests.
// Usage: thread_waits.mjs PATH
import { Worker } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import { PACKAGE } from "./_lockbox.mjs";

const [path] = process.argv.slice(2);
const mod = pathToFileURL(`${PACKAGE}mod.js`).href;
const worker = new Worker(
  `import(${JSON.stringify(mod)}).then(({ FileLock }) => FileLock.acquire(${
    JSON.stringify(path)
  }));`,
  { eval: true },
);
worker.on("online", () => console.log("started"));
let input = "";
process.stdin.setEncoding("utf8").on("data", async (chunk) => {
  input += chunk;
  if (input.includes("terminate\n")) {
    input = "";
    await worker.terminate();
    console.log("terminated");
  }
});
process.stdin.on("end", () => process.exit(0));
